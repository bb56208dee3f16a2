"""Lambda deploying approved model packages to the recommender endpoint (see README.md)."""
