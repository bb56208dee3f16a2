"""bench/bench_public_data.py: earlier runs' baseline rows are merged per cell and split, never across splits."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import bench_public_data  # noqa: E402


def _run(path: Path, split: str, *methods: str) -> Path:
    rows = [{"method": m, "family": m.split("(")[0], "ndcg": 0.1} for m in methods]
    path.write_text(json.dumps({"summary": [], "results": {"Toys/user_temporal": {"split": split, "baselines": rows}}}))
    return path


def test_baseline_runs_merge_per_cell_and_split_each_configuration_once(tmp_path):
    first = _run(tmp_path / "a.json", "s1", "EASE(lambda=10)", "RP3beta(a=1,b=0)")
    second = _run(tmp_path / "b.json", "s1", "SASRec(drop=0.5)", "EASE(lambda=10)")
    other_split = _run(tmp_path / "c.json", "s2", "ALS(f=64)")
    merged = bench_public_data.merged_baselines([first, second, other_split])
    assert sorted(r["method"] for r in merged[("Toys/user_temporal", "s1")]) == [
        "EASE(lambda=10)", "RP3beta(a=1,b=0)", "SASRec(drop=0.5)"]
    assert [r["method"] for r in merged[("Toys/user_temporal", "s2")]] == ["ALS(f=64)"]


def test_a_file_that_is_not_a_bench_result_is_named_in_one_line(tmp_path):
    bad = tmp_path / "notes.json"
    bad.write_text("[1, 2]")
    with pytest.raises(SystemExit, match=r"--reuse-baselines .*notes.json: not a bench_public_data JSON"):
        bench_public_data.merged_baselines([bad])
