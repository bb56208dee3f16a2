"""train.py -> model dir -> evaluate.py -> inference handlers, as processes with SM_* variables only."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests import CHILD_BOUND_S

from .conftest import SRC

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from recsys_core.data import clean_interactions
    from recsys_core.split import temporal_split
    from recsys_core.synthetic import SyntheticConfig, synthetic_tables

    root = tmp_path_factory.mktemp("e2e")
    tables = synthetic_tables(SyntheticConfig(n_users=400, n_items=300, events_per_user=15, seed=1))
    clean, _ = clean_interactions(tables["interactions"])
    train, test = temporal_split(clean, 0.2)
    (root / "train").mkdir()
    (root / "test").mkdir()
    raw = tables["interactions"]
    cut = test["ts"].min()
    from recsys_core.data import parse_timestamps

    is_test = parse_timestamps(raw["timestamp"]) >= cut
    dirty = raw.iloc[:2].assign(event_type=["teleport", "view"], user_id=["u1", ""])
    import pandas as pd

    pd.concat([raw[~is_test], dirty]).to_csv(root / "train" / "interactions.csv", index=False)
    raw[is_test].to_parquet(root / "test" / "interactions.parquet")
    tables["products"].to_csv(root / "train" / "products.csv", index=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    env |= {"SM_CHANNEL_TRAIN": str(root / "train"), "SM_MODEL_DIR": str(root / "model"),
            "SM_OUTPUT_DATA_DIR": str(root / "output"), "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(SRC / "train.py"), "--time-budget", "20"], env=env,
                          capture_output=True, text=True, timeout=CHILD_BOUND_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, proc.stdout


def test_train_prints_progress_quarantines_dirty_rows_and_writes_artefacts(trained):
    root, stdout = trained
    assert "[select]" in stdout and "[train] saved model" in stdout
    assert {p.name for p in (root / "model").iterdir()} >= {"model.json", "arrays.npz"}
    quarantine = (root / "output" / "quarantine_interactions.csv").read_text()
    assert "unknown_event_type" in quarantine and "missing_user_id" in quarantine
    assert (root / "output" / "selection_report.md").is_file()


def test_evaluate_writes_model_quality_json_with_the_popularity_baseline(trained):
    root, _ = trained
    proc = subprocess.run([sys.executable, str(SRC / "evaluate.py"), "--model-dir", str(root / "model"),
                           "--test-dir", str(root / "test"), "--output-dir", str(root / "evaluation")],
                          capture_output=True, text=True, timeout=CHILD_BOUND_S,
                          env=os.environ | {"OPENBLAS_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((root / "evaluation" / "evaluation.json").read_text())
    metrics = doc["metrics"]
    for name in ("ndcg_at_10", "popularity_ndcg_at_10", "precision_at_10", "recall_at_10", "map_at_10",
                 "hit_rate_at_10", "coverage_at_10", "novelty_at_10", "f1_at_10"):
        assert isinstance(metrics[name]["value"], float), name
    assert 0.0 <= metrics["ndcg_at_10"]["value"] <= 1.0
    # The synthetic shop has style structure beyond popularity; the chosen model must find it.
    assert metrics["ndcg_at_10"]["value"] > metrics["popularity_ndcg_at_10"]["value"]
    report = (root / "evaluation" / "report.md").read_text()
    assert "model_vs_popularity.png" in report and (root / "evaluation" / "model_vs_popularity.png").is_file()


def test_trained_model_serves_through_the_handlers(trained):
    import inference

    root, _ = trained
    model = inference.model_fn(str(root / "model"))
    known = model.users.ids[0]
    resp = json.loads(inference.output_fn(inference.predict_fn(
        inference.input_fn(json.dumps({"instances": [{"user_id": str(known), "k": 5}, {"user_id": "nobody"}]}),
                           "application/json"), model), "application/json"))
    first, second = resp["predictions"]
    assert first["strategy"] == "personalized" and len(first["recommendations"]) == 5
    assert second["strategy"] == "popular" and len(second["recommendations"]) == 10
