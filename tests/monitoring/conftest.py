"""Tiny curated tables (the SQL tests' hand-countable fixture) as a LocalAthena, shared by the monitoring tests."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from recsys.local.athena import LocalAthena
from tests.sql.test_queries import INTERACTIONS, PRODUCTS, USERS, _interaction_rows, _write

EVALUATION = {
    "metrics": {
        "ndcg_at_10": {"value": 0.01},
        "popularity_ndcg_at_10": {"value": 0.008},
        "coverage_at_10": {"value": 0.3},
        "ndcg_lift_over_popularity_at_10": {"value": 1.25},
    }
}


@pytest.fixture(scope="session")
def tiny_athena(tmp_path_factory: pytest.TempPathFactory) -> LocalAthena:
    root: Path = tmp_path_factory.mktemp("tiny_curated")
    users = [
        {"user_id": u, "age": a, "gender": g, "location": loc, "signup_date": datetime.fromisoformat(d).date()}
        for u, a, g, loc, d in USERS
    ]
    products = [
        {"product_id": p, "product_url": url, "category": c, "sub_category": s, "price": pr, "price_normalized": 0.0}
        for p, url, c, s, pr in PRODUCTS
    ]
    return LocalAthena(
        {
            "users": _write(root / "users.parquet", "users", users),
            "products": _write(root / "products.parquet", "products", products),
            "interactions": _write(root / "interactions.parquet", "interactions", _interaction_rows(INTERACTIONS)),
        }
    )
