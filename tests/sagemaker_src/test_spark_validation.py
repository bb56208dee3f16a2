"""spark_train's validation at scale, without Spark: past ``--val-dense-cells`` each candidate keeps only its top-M
scores per user, and with M at least the whole catalogue that must measure exactly what the dense fold measures
(blends included); with a small M only the top of each list may change, never the users or the parts."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SRC = Path(__file__).resolve().parents[2] / "sagemaker_src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))


@pytest.fixture(scope="module")
def fold_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    from recsys_core.data import load_interactions
    from recsys_core.evaluation import build_targets
    from recsys_core.prepare import prepare
    from recsys_core.synthetic import SyntheticConfig, synthetic_tables

    base = tmp_path_factory.mktemp("val")
    synthetic_tables(SyntheticConfig(n_users=150, n_items=60, events_per_user=10, seed=5))["interactions"].to_csv(
        base / "interactions.csv", index=False)
    clean, _ = load_interactions(base)
    prep = prepare(clean, None)
    rng = np.random.default_rng(0)
    users = prep.users.ids[:80]
    parts = []
    for _ in ("latest", "random"):
        frame = pd.DataFrame({"user_id": users, "product_id": prep.items.ids[rng.integers(0, len(prep.items), 80)]})
        parts.append(build_targets(frame, prep.users, prep.items, prep.hist))
    return prep, parts


def _measure(fold_cls: type, prep, parts) -> list:  # noqa: ANN001 - Prepared, Targets
    from recsys_core.models.popularity import Popularity, PopularityConfig
    from recsys_core.models.rp3beta import RP3beta, RP3betaConfig
    from recsys_core.selection import _Validator

    fold = fold_cls(prep, parts, 10)
    val = _Validator([fold], ("latest", "random"))
    X = prep.hist.matrix()
    a = fold.component(RP3beta(RP3betaConfig()).fit(X, prep.ctx))
    b = fold.component(Popularity(PopularityConfig()).fit(X, prep.ctx))
    return [val.measure([a]), val.measure([0.6 * a + 0.4 * b]), val.measure([fold.component(
        RP3beta(RP3betaConfig()).fit(X, prep.ctx), 1.0, 1.0)])]


def test_top_m_scores_with_m_at_the_catalogue_measure_what_the_dense_fold_measures(fold_inputs) -> None:
    import spark_train
    from recsys_core.selection import _Fold

    prep, parts = fold_inputs
    dense = _measure(_Fold, prep, parts)
    sparse = _measure(spark_train.top_m_fold(_Fold, dense_cells=0, top_m=prep.hist.n_items), prep, parts)
    for d, s in zip(dense, sparse, strict=True):
        assert s.value == pytest.approx(d.value) and s.parts == pytest.approx(d.parts)


def test_a_small_top_m_keeps_the_users_and_parts(fold_inputs) -> None:
    import spark_train
    from recsys_core.selection import _Fold

    prep, parts = fold_inputs
    dense = _measure(_Fold, prep, parts)
    small = _measure(spark_train.top_m_fold(_Fold, dense_cells=0, top_m=15), prep, parts)
    for d, s in zip(dense, small, strict=True):
        assert [len(x) for x in s.per_user] == [len(x) for x in d.per_user]
        assert s.value == pytest.approx(d.value, rel=0.25)
