"""train.py accepts the logs public datasets come as: ratings only, purchases only, numeric ids."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest


def low_rank_log(kind: str, n_users: int = 120, n_items: int = 60, seed: int = 0) -> pd.DataFrame:
    """Two taste groups; a user mostly picks from their group's half of the catalogue."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        group = u % 2
        for t, item in enumerate(rng.choice(n_items // 2, 8, replace=False) + group * (n_items // 2)):
            rows.append({"user_id": u + 1000, "product_id": int(item), "timestamp": 1_700_000_000 + 3600 * t + u})
    df = pd.DataFrame(rows)
    if kind == "ratings":
        df["rating"] = rng.integers(1, 6, len(df))
    else:
        df["event_type"] = "purchase"
    return df


@pytest.mark.parametrize("kind", ["ratings", "purchases"])
def test_train_and_serve_a_log_with_a_single_event_kind(tmp_path, kind):
    import inference
    import train

    (tmp_path / "train").mkdir()
    log = low_rank_log(kind)
    log.to_csv(tmp_path / "train" / "interactions.csv", index=False)
    code = train.main(["--train-dir", str(tmp_path / "train"), "--model-dir", str(tmp_path / "model"),
                       "--output-dir", str(tmp_path / "out"), "--models", "rp3beta,item_knn", "--num-threads", "1"])
    assert code == 0
    doc = json.loads((tmp_path / "model" / "model.json").read_text())
    assert doc["n_users"] == log["user_id"].nunique() and doc["n_items"] == log["product_id"].nunique()
    model = inference.model_fn(str(tmp_path / "model"))
    resp = inference.predict_fn({"user_id": "1000", "k": 5}, model)  # numeric ids arrive as strings
    assert resp["strategy"] == "personalized"
    owned = set(log.loc[log["user_id"] == 1000, "product_id"].astype(str))
    recs = [r["product_id"] for r in resp["recommendations"]]
    assert len(recs) == 5 and not owned & set(recs)  # everything rated/purchased is excluded
    assert all(int(r) < 30 for r in recs)  # user 1000 is in group 0: items 0-29
