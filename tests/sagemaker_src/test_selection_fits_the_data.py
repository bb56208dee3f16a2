"""Selection validates on what the data supports, says why, and chooses the same on any machine."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from recsys_core.data import clean_interactions
from recsys_core.selection import Candidate, SelectionConfig, select
from recsys_core.split import HoldoutConfig, plan_validation, user_holdout
from recsys_core.synthetic import SyntheticConfig, synthetic_tables

# CPU-bound (selection fits every family on each fold): one such test at a time, so the other worker keeps a core
pytestmark = pytest.mark.xdist_group("selection")


def per_user_sequences(n_users: int = 300, n_items: int = 120, length: int = 8, seed: int = 0) -> pd.DataFrame:
    """A purchase log like the public Amazon sets: users one after another, timestamps = row numbers
    (each user's order is kept, no clock is shared). Two taste groups, so there is signal."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        half = (u % 2) * (n_items // 2)
        for item in rng.choice(n_items // 2, length, replace=False) + half:
            rows.append({"user_id": f"u{u}", "product_id": f"p{item}", "event_type": "purchase"})
    df = pd.DataFrame(rows)
    df["timestamp"] = np.arange(len(df))
    return clean_interactions(df)[0]


def shop_with_a_clock(seed: int = 3) -> pd.DataFrame:
    return clean_interactions(synthetic_tables(SyntheticConfig(n_users=400, n_items=200, seed=seed))["interactions"])[0]


def quiet(_msg: str) -> None:
    pass


def test_a_log_without_a_shared_clock_is_validated_on_each_users_latest_and_random_rows():
    log = per_user_sequences()
    folds, plan = plan_validation(log)
    assert plan.kind == "user_holdout"
    assert "no shared clock" in plan.reason
    fit, (latest, rand) = folds[0]
    assert len(latest) and len(rand)
    last_ts = log.groupby("user_id")["ts"].max()
    held_latest = latest.groupby("user_id")["ts"]
    # The latest part holds each validation user's newest row; the random part only older rows; the
    # fit part keeps nothing newer than what is held out.
    assert (held_latest.max() == last_ts.reindex(held_latest.max().index)).all()
    held_random = rand.groupby("user_id")["ts"].max()
    assert (held_random < last_ts.reindex(held_random.index)).all()
    kept = fit.groupby("user_id")["ts"].max().reindex(held_latest.min().index)
    assert (kept < held_latest.min()).all()
    assert len(fit) + sum(len(p) for p in folds[0][1]) == len(log)


def test_a_log_with_a_shared_clock_is_validated_on_a_global_time_cut():
    folds, plan = plan_validation(shop_with_a_clock(), HoldoutConfig(global_min_users=50))
    assert plan.kind == "global_cut" and "shared clock" in plan.reason
    fit, (after,) = folds[0]
    assert fit["ts"].max() < after["ts"].min()


def test_few_users_get_more_folds_each_on_an_earlier_block_of_rows():
    log = per_user_sequences(n_users=60, length=12)
    folds, plan = plan_validation(log, HoldoutConfig(max_users=1000, max_folds=3))
    assert len(folds) == 3 and plan.val_users == 3 * 60
    first_latest, second_latest = folds[0][1][0], folds[1][1][0]
    # Fold 1 holds out the block before fold 0's, and its fit part never sees fold 0's rows.
    assert set(map(tuple, first_latest[["user_id", "ts"]].values)).isdisjoint(
        map(tuple, second_latest[["user_id", "ts"]].values))
    assert folds[1][0]["ts"].isin(first_latest["ts"]).sum() == 0


def test_user_holdout_keeps_short_histories_whole():
    log = per_user_sequences(n_users=20, length=3)
    fit, latest, rand = user_holdout(log, HoldoutConfig(min_user_rows=4))
    assert len(latest) == len(rand) == 0 and len(fit) == len(log)


def test_a_randomly_split_log_does_not_end_up_on_trending_popularity():
    """Taste, not time, drives this shop; a random quarter of each user's rows is held out."""
    log = shop_with_a_clock()
    rng = np.random.default_rng(0)
    train = log[rng.random(len(log)) >= 0.25]
    result = select(train, None, None, SelectionConfig(), num_threads=1, log=quiet)
    chosen = {(c.family, getattr(c.config, "half_life_fraction", 0)) for c in result.recipe.candidates}
    assert not any(family == "popularity" for family, _ in chosen), chosen
    assert result.val_ndcg > result.popularity_val_ndcg


def test_on_a_log_without_a_clock_trending_is_never_a_candidate_and_the_log_says_why():
    lines: list[str] = []
    result = select(per_user_sequences(), None, None, SelectionConfig(), num_threads=1, log=lines.append)
    skipped = {r["model"]: r["skipped"] for r in result.table if r["skipped"]}
    assert any("trending" in m and "shared clock" in why for m, why in skipped.items())
    assert any("validation: user_holdout" in line for line in lines)
    assert result.summary()["split"] == "user_holdout" and result.summary()["validation_users"] > 0


class _SlowClock:
    """A clock on a machine so busy that every reading is ``step`` seconds after the last one."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def perf_counter(self) -> float:
        self.now += self.step
        return self.now

    monotonic = time = process_time = perf_counter


def test_the_same_data_and_seed_give_the_same_recipe_on_a_busy_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """A busy machine changes only what clocks say: with every reading of selection's clock 1,000 s after the
    last (each fit looking 1,000 s long), the same candidates are tried and the same recipe is chosen. (A clock
    instead of CPU burners beside the test: as strong, since no other input differs, and it leaves the cores to
    the rest of the suite.)"""
    import recsys_core.selection as selection

    log = per_user_sequences(n_users=400)
    config = SelectionConfig(work_budget=0.05)  # small: the budget decides what is tried
    idle = select(log, None, None, config, num_threads=1, log=quiet)
    monkeypatch.setattr(selection, "time", _SlowClock(1000.0))
    busy = select(log, None, None, config, num_threads=1, log=quiet)
    assert selection.time.now > 0  # the clock was read
    assert busy.recipe == idle.recipe
    assert [r["model"] for r in busy.table] == [r["model"] for r in idle.table]
    assert any("work budget" in (r["skipped"] or "") for r in idle.table)  # the small budget did bind


def test_work_is_bounded_by_the_datas_shape_not_by_seconds():
    log = per_user_sequences(n_users=200)
    small = select(log, None, None, SelectionConfig(work_budget=0.05), num_threads=1, log=quiet)
    large = select(log, None, None, SelectionConfig(work_budget=500.0), num_threads=1, log=quiet)
    assert small.spent <= small.budget < large.spent  # (the budget is per fold: x folds)
    def scored(result) -> int:  # noqa: ANN001
        return sum(r["ndcg"] is not None for r in result.table)

    assert scored(small) < scored(large)


@pytest.mark.parametrize("n_users", [3])
def test_a_log_too_small_to_select_on_says_so_in_the_log_and_in_evaluation_json(tmp_path, capsys, n_users):
    import evaluate
    import train

    log = per_user_sequences(n_users=n_users, length=3)  # 3 rows each: nobody can give up validation rows
    raw = log.rename(columns={"ts": "timestamp"})[["user_id", "product_id", "event_type", "timestamp"]]
    (tmp_path / "train").mkdir()
    raw.to_csv(tmp_path / "train" / "interactions.csv", index=False)
    assert train.main(["--train-dir", str(tmp_path / "train"), "--model-dir", str(tmp_path / "model"),
                       "--output-dir", str(tmp_path / "out"), "--num-threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "selection did not run" in out and "strongest model that fits" in out
    (tmp_path / "test").mkdir()
    raw.to_csv(tmp_path / "test" / "interactions.csv", index=False)
    assert evaluate.main(["--model-dir", str(tmp_path / "model"), "--test-dir", str(tmp_path / "test"),
                          "--output-dir", str(tmp_path / "eval")]) == 0
    doc = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert doc["selection"]["split"] == "none"
    assert any("selection did not run" in note for note in doc["selection"]["notes"])


def test_a_candidate_list_restricted_by_family_is_respected():
    log = per_user_sequences(n_users=200)
    from recsys_core.models.popularity import PopularityConfig
    from recsys_core.models.rp3beta import RP3betaConfig

    config = replace(SelectionConfig(), candidates=(Candidate("popularity", PopularityConfig()),
                                                   Candidate("rp3beta", RP3betaConfig())))
    result = select(log, None, None, config, num_threads=1, log=quiet)
    assert {c.family for c in result.recipe.candidates} <= {"popularity", "rp3beta"}
