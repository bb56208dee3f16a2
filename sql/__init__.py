"""The Athena SQL library (see ``sql/library.py`` and ``sql/README.md``)."""
