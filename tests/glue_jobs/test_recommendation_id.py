"""The interactions recipe (which also curates the clickstream) passes an event's recommendation_id through."""

from __future__ import annotations

import pandas as pd

from glue_jobs.recipe_jobs import run_recipe

ROWS = pd.DataFrame(
    {
        "user_id": ["u1", "u1", "u2"],
        "product_id": ["p1", "p2", "p3"],
        "event_type": ["view", "purchase", "view"],
        "rating": ["", "", ""],
        "timestamp": ["1700000000", "1700000100", "1700000200"],
    }
)


def test_recommendation_id_is_curated_as_given_and_blank_stays_blank() -> None:
    result = run_recipe("interactions", ROWS.assign(recommendation_id=["r1", "r1", ""]))
    assert result.curated["recommendation_id"].tolist() == ["r1", "r1", ""]
    assert result.counts["curated"] == 3


def test_files_without_the_column_are_curated_as_before_with_it_null() -> None:
    result = run_recipe("interactions", ROWS)
    assert result.counts["curated"] == 3 and result.curated["recommendation_id"].isna().all()
