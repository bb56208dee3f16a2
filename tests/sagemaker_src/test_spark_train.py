"""The Spark training job (issue 23) on a small shop in ``local[2]``: one run (module fixture), then what it must
give. The bundle is train.py's (loaded by inference.py's model_fn, answering), its id maps and history equal the
pandas path's on the same rows (cleaning, aggregation and the contiguous index agree), dirty rows are quarantined
with their reasons, and the chosen model beats popularity on the job's own validation users."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests import CHILD_BOUND_S, HEAVY_TIMEOUT_S

SRC = Path(__file__).resolve().parents[2] / "sagemaker_src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

pytestmark = [pytest.mark.timeout(HEAVY_TIMEOUT_S), pytest.mark.xdist_group("spark")]

#: Dirty rows appended to the fixture, one per reason the job must quarantine.
DIRTY = [
    {"user_id": "", "product_id": "p1", "event_type": "view", "rating": "", "timestamp": "2025-02-01T00:00:00+00:00"},
    {"user_id": "u1", "product_id": "p1", "event_type": "wishlist", "rating": "",
     "timestamp": "2025-02-01T00:00:00+00:00"},
    {"user_id": "u1", "product_id": "p1", "event_type": "view", "rating": "", "timestamp": "not a time"},
]


@pytest.fixture(scope="module")
def spark_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from recsys_core.synthetic import SyntheticConfig, synthetic_tables

    base = tmp_path_factory.mktemp("spark")
    train = base / "train"
    train.mkdir()
    tables = synthetic_tables(SyntheticConfig(n_users=300, n_items=120, events_per_user=14, seed=3))
    tables["interactions"] = pd.concat([tables["interactions"], pd.DataFrame(DIRTY)], ignore_index=True)
    for name, df in tables.items():
        df.to_csv(train / f"{name}.csv", index=False)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    args = [sys.executable, str(SRC / "spark_train.py"), "--train-dir", str(train), "--model-dir", str(base / "model"),
            "--output-dir", str(base / "out"), "--checkpoint-dir", str(base / "checkpoints"), "--als-rank", "16",
            "--als-iterations", "5", "--als-reg-grid", "0.05", "--rp3-beta-grid", "0.2", "--neighbours", "50",
            "--seq-beta-grid", "0.5"]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=CHILD_BOUND_S)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {"base": base, "train": train, "log": done.stdout}


def test_the_spark_bundle_loads_in_model_fn_and_answers_a_known_shopper(spark_run):
    import inference

    bundle = inference.model_fn(str(spark_run["base"] / "model"))
    assert bundle.meta["engine"] == "spark"
    shopper = str(bundle.users.ids[0])
    body = inference.input_fn(json.dumps({"user_id": shopper, "k": 5}), "application/json")
    answer = json.loads(inference.output_fn(inference.predict_fn(body, bundle), "application/json"))
    assert answer["strategy"] == "personalized" and len(answer["recommendations"]) == 5
    owned = set(bundle.items.ids[bundle._strong.indices[bundle._strong.indptr[0]:bundle._strong.indptr[1]]])
    assert not owned & {r["product_id"] for r in answer["recommendations"]}
    assert inference.predict_fn({"user_id": "never-seen", "k": 3}, bundle)["strategy"].startswith("popular")


def test_spark_ids_and_history_equal_the_pandas_path_on_the_same_rows(spark_run):
    from recsys_core.bundle import Bundle
    from recsys_core.data import load_interactions, load_optional
    from recsys_core.prepare import prepare

    clean, _ = load_interactions(spark_run["train"])
    prep = prepare(clean, load_optional(spark_run["train"], "products"))
    bundle = Bundle.load(spark_run["base"] / "model")
    assert np.array_equal(bundle.users.ids, prep.users.ids) and np.array_equal(bundle.items.ids, prep.items.ids)
    for name in ("indptr", "indices", "strong", "recency"):
        assert np.array_equal(getattr(bundle.hist, name), getattr(prep.hist, name)), name
    assert np.allclose(bundle.hist.value, prep.hist.value, rtol=1e-6)


def test_dirty_rows_are_quarantined_with_their_reasons(spark_run):
    meta = json.loads((spark_run["base"] / "model" / "model.json").read_text())["meta"]
    assert meta["quarantine_reasons"] == {"missing_user_id": 1, "unknown_event_type": 1, "invalid_timestamp": 1}
    written = pd.read_csv(spark_run["base"] / "out" / "quarantine_interactions.csv")
    assert sorted(written["quarantine_reason"]) == sorted(meta["quarantine_reasons"])


def test_the_job_selects_on_validation_and_reports_its_stages(spark_run):
    meta = json.loads((spark_run["base"] / "model" / "model.json").read_text())["meta"]
    assert meta["validation_ndcg"] > meta["validation_popularity_ndcg"]
    models = {row["model"].split("(")[0] for row in meta["selection"]}
    assert {"popularity", "segment_pop", "als", "rp3beta", "sequence"} <= models
    steps = {row.get("step") for row in meta["selection"]}
    assert {"blend", "recency"} <= steps  # train.py's selection steps after the single models
    stages = json.loads((spark_run["base"] / "out" / "spark_stages.json").read_text())
    assert [s["stage"] for s in stages["stages"]][:3] == ["read + clean", "aggregate + index", "validation split"]
    assert "[spark] stage" in spark_run["log"]


def test_auto_below_the_threshold_hands_the_data_to_train_py_without_starting_spark(spark_run, tmp_path):
    args = [sys.executable, str(SRC / "spark_train.py"), "--train-dir", str(spark_run["train"]),
            "--model-dir", str(tmp_path / "model"), "--output-dir", str(tmp_path / "out"), "--engine", "auto",
            "--spark-min-interactions", str(10**9)]
    done = subprocess.run(args, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=CHILD_BOUND_S)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "engine: single" in done.stdout and "[train] done" in done.stdout and "Spark 3.5" not in done.stdout
    assert json.loads((tmp_path / "out" / "spark_stages.json").read_text())["engine"] == "single"
    assert "engine" not in json.loads((tmp_path / "model" / "model.json").read_text())["meta"]  # train.py's bundle
