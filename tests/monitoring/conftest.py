"""Tiny curated tables (the SQL tests' hand-countable fixture) as a LocalAthena, shared by the monitoring tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from recsys.local.athena import LocalAthena
from recsys.local.capture import CAPTURE_COLUMNS, CAPTURE_TABLE, capture_glob, capture_key, capture_record
from tests.sql.test_queries import write_tiny_curated

EVALUATION = {
    "metrics": {
        "ndcg_at_10": {"value": 0.01},
        "popularity_ndcg_at_10": {"value": 0.008},
        "coverage_at_10": {"value": 0.3},
        "ndcg_lift_over_popularity_at_10": {"value": 1.25},
    }
}


def _write_tiny_capture(root: Path) -> str:
    """Two captured answers (impressions, no clicks: the tiny clickstream is empty), so the attribution
    dataset and its charts have rows."""
    path = root / capture_key("e", "AllTraffic", datetime(2024, 3, 1, tzinfo=UTC), "tiny")
    path.parent.mkdir(parents=True)
    answers = [
        ({"recommendation_id": "r1", "model_version": "v1", "strategy": "personalized",
          "recommendations": [{"product_id": "p1"}, {"product_id": "p2"}]}, datetime(2024, 3, 1, 9, tzinfo=UTC)),
        ({"recommendation_id": "r2", "model_version": "v2", "strategy": "popular",
          "recommendations": [{"product_id": "p3"}]}, datetime(2024, 3, 2, 9, tzinfo=UTC)),
    ]
    path.write_text("".join(json.dumps(capture_record("{}", json.dumps(a), when=t)) + "\n" for a, t in answers))
    return capture_glob(root)


@pytest.fixture(scope="session")
def tiny_athena(tmp_path_factory: pytest.TempPathFactory) -> LocalAthena:
    athena = LocalAthena(write_tiny_curated(tmp_path_factory.mktemp("tiny_curated")))
    athena.register_json(CAPTURE_TABLE, _write_tiny_capture(tmp_path_factory.mktemp("tiny_capture")), CAPTURE_COLUMNS)
    return athena
