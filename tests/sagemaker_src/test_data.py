"""Raw-schema loading: dirty rows are quarantined with a reason, other logs' shapes are accepted."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from recsys_core.data import DataError, IdMap, clean_interactions, load_interactions, parse_timestamps


def test_dirty_rows_are_quarantined_with_their_reason_and_clean_rows_kept():
    raw = pd.DataFrame({
        "user_id": ["u1", "", "u3", "u4", "u5", "u6", "u1"],
        "product_id": ["p1", "p2", "p3", "p4", "p5", "p6", "p1"],
        "event_type": ["view", "view", "click", "rating", "view", "purchase", "view"],
        "rating": ["", "", "", "7", "", "", ""],
        "timestamp": ["2025-01-01T00:00:00+00:00", "1700000000", "1700000000", "1700000000", "yesterday",
                      "1700000000", "2025-01-01T00:00:00+00:00"],
    })
    clean, quarantine = clean_interactions(raw)
    assert sorted(clean["user_id"]) == ["u1", "u6"]
    assert quarantine["quarantine_reason"].tolist() == [
        "missing_user_id", "unknown_event_type", "invalid_rating", "invalid_timestamp", "duplicate_row"]
    assert len(clean) + len(quarantine) == len(raw)


def test_timestamps_accept_iso_with_timezone_epoch_seconds_and_milliseconds():
    ts = parse_timestamps(pd.Series(["2024-01-01T05:30:00+05:30", "1704067200", "1704067200000", "nope"]))
    assert ts[:3].tolist() == [1704067200.0] * 3
    assert np.isnan(ts[3])


def test_ratings_only_log_without_event_type_column_becomes_rating_events():
    raw = pd.DataFrame({"user_id": [1, 2], "product_id": [10, 20], "rating": [4, 5], "timestamp": [1, 2]})
    clean, quarantine = clean_interactions(raw)
    assert clean["event_type"].tolist() == ["rating", "rating"]
    assert clean["user_id"].tolist() == ["1", "2"] and len(quarantine) == 0


def test_curated_event_time_column_is_accepted_as_timestamp():
    raw = pd.DataFrame({"user_id": ["a"], "product_id": ["p"], "event_type": ["purchase"],
                        "event_time": ["2025-03-01 10:00:00"]})
    clean, _ = clean_interactions(raw)
    assert len(clean) == 1 and clean["ts"].iloc[0] > 0


def test_load_interactions_reads_parquet_and_fails_clearly_without_a_file(tmp_path):
    pd.DataFrame({"user_id": ["a"], "product_id": ["p"], "event_type": ["view"], "rating": [None],
                  "timestamp": ["2025-01-01T00:00:00Z"]}).to_parquet(tmp_path / "interactions.parquet")
    clean, _ = load_interactions(tmp_path)
    assert clean["product_id"].tolist() == ["p"]
    with pytest.raises(DataError, match="no interactions"):
        load_interactions(tmp_path / "missing")


def test_id_map_looks_up_known_ids_and_marks_unknown_ones():
    ids = IdMap.from_values(np.array(["b", "a"]), np.array(["c", "a"]))
    assert ids.ids.tolist() == ["a", "b", "c"]
    assert ids.index(["c", "zzz", "a"]).tolist() == [2, -1, 0]


def test_id_map_lookup_of_long_columns_with_many_distinct_ids_matches_the_short_path():
    ids = IdMap.from_values(np.array([f"u{n}" for n in range(60_000)]))
    values = np.array([f"u{n}" for n in range(0, 120_000, 2)])  # 60k values, half unknown
    expected = np.array([n if n < 60_000 else -1 for n in range(0, 120_000, 2)])
    got = ids.index(values)
    assert np.array_equal(ids.ids[got[got >= 0]], values[got >= 0])
    assert np.array_equal(got >= 0, expected >= 0)


def test_id_map_rejects_longer_ids_that_share_a_known_prefix():
    ids = IdMap.from_values(np.array(["ab", "abc"]))
    assert ids.index(["abcd", "abc", "a"]).tolist() == [-1, 1, -1]


def test_training_quarantine_reasons_are_the_recipes_own_names():
    """train.py's own cleaning (raw CSVs outside the data plane) names reasons as the interactions recipe does."""
    from glue_jobs.recipe import load_recipe

    recipe = json.dumps(load_recipe("interactions"))
    raw = pd.DataFrame({"user_id": ["", "u2", "u3", "u4", "u4"], "product_id": ["p1"] * 5,
                        "event_type": ["view", "click", "rating", "view", "view"], "rating": ["", "", "9", "", ""],
                        "timestamp": ["1700000000", "1700000000", "1700000000", "never", "1700000001"]})
    _, quarantine = clean_interactions(pd.concat([raw, raw.tail(1)], ignore_index=True))
    reasons = set(quarantine["quarantine_reason"])
    assert len(reasons) == 5
    assert all(f'"{reason}"' in recipe for reason in reasons), reasons


def test_an_unload_folder_of_extensionless_parquet_files_is_the_interactions_table(tmp_path):
    """The curation workflow's UNLOAD writes ``training/interactions/<query-id>_<n>`` (no extension) beside the
    suppression list; PrepareData receives both and must read the folder as the table."""
    from recsys_core.data import find_table, read_table

    folder = tmp_path / "interactions"
    folder.mkdir()
    for i in range(2):
        pd.DataFrame({"user_id": [f"u{i}"], "product_id": ["p1"]}).to_parquet(folder / f"3f9c1e2a_0000{i}")
    (tmp_path / "erasure_suppression.json").write_text("{}")
    assert find_table(tmp_path, "interactions") == folder
    assert sorted(read_table(folder)["user_id"]) == ["u0", "u1"]
    (tmp_path / "users").mkdir()  # a folder with nothing but a marker is no table
    (tmp_path / "users" / "_SUCCESS").write_text("")
    assert find_table(tmp_path, "users") is None
