"""Temporal splits: nothing in training is newer than what it is evaluated on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from recsys_core.split import leave_last_out, temporal_split

from .conftest import make_log


@pytest.fixture
def log() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = [(f"u{rng.integers(20)}", f"p{rng.integers(30)}", "view", None, int(t)) for t in rng.integers(0, 1000, 400)]
    return make_log(rows)


def test_temporal_split_puts_every_test_row_after_every_train_row(log):
    train, test = temporal_split(log, 0.25)
    assert len(train) + len(test) == len(log)
    assert train["ts"].max() < test["ts"].min()
    assert 0.2 < len(test) / len(log) < 0.3


def test_leave_last_out_holds_out_each_users_latest_rows_only(log):
    train, test = leave_last_out(log)
    assert len(train) + len(test) == len(log)
    last_train = train.groupby("user_id")["ts"].max()
    for user, rows in test.groupby("user_id"):
        assert rows["ts"].nunique() == 1
        assert rows["ts"].iloc[0] == log.loc[log["user_id"] == user, "ts"].max()
        assert last_train[user] < rows["ts"].iloc[0]


def test_user_with_a_single_timestamp_stays_in_training():
    df = make_log([("solo", "p1", "view", None, 5), ("solo", "p2", "view", None, 5), ("x", "p1", "view", None, 1),
                   ("x", "p2", "view", None, 2)])
    train, test = leave_last_out(df)
    assert set(train["user_id"]) == {"solo", "x"} and test["user_id"].tolist() == ["x"]


def test_validation_carved_from_train_never_reaches_into_test(log):
    train, test = temporal_split(log, 0.2)
    fit, val = temporal_split(train, 0.1)
    assert fit["ts"].max() < val["ts"].min() <= val["ts"].max() < test["ts"].min()
