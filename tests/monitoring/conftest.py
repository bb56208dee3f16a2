"""Tiny curated tables (the SQL tests' hand-countable fixture) as a LocalAthena, shared by the monitoring tests."""

from __future__ import annotations

import pytest

from recsys.local.athena import LocalAthena
from recsys.local.capture import register_capture_table
from tests.sql.test_queries import write_tiny_capture, write_tiny_curated

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
    athena = LocalAthena(write_tiny_curated(tmp_path_factory.mktemp("tiny_curated")))
    register_capture_table(athena, write_tiny_capture(tmp_path_factory.mktemp("tiny_capture")))
    return athena
