"""Temporal splits. Training rows are never newer than the rows they are evaluated on.

- ``temporal``: one global time cut; everything at or after the cut is test. This is what a
  deployed model faces (train on the past, serve the future; new users and items appear).
- ``leave_last_out``: per user, the rows at the user's latest timestamp are test; users with a
  single timestamp stay wholly in train. Common in the literature; every user gets evaluated.

Validation is carved from the training part with the same function, never from the test part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

SplitKind = Literal["temporal", "leave_last_out"]


@dataclass(frozen=True)
class SplitConfig:
    kind: SplitKind = "temporal"
    test_fraction: float = 0.2  # share of rows after the global cut (temporal only)


def temporal_split(df: pd.DataFrame, test_fraction: float = 0.2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Global cut at the (1 - test_fraction) quantile of time; test = rows at or after it."""
    if not 0 < test_fraction < 1:
        raise ValueError("test_fraction must be in (0, 1)")
    ts = df["ts"].to_numpy(dtype=np.float64)
    cut = np.quantile(ts, 1 - test_fraction, method="higher")
    test_mask = ts >= cut
    if test_mask.all():  # every row shares one timestamp: nothing is older than anything
        test_mask = np.zeros(len(df), dtype=bool)
    return df.loc[~test_mask].reset_index(drop=True), df.loc[test_mask].reset_index(drop=True)


def leave_last_out(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per user, rows at the user's latest timestamp go to test (if the user has older rows too)."""
    ts = df["ts"].to_numpy(dtype=np.float64)
    grp = df.groupby("user_id", sort=False)["ts"]
    last = grp.transform("max").to_numpy(dtype=np.float64)
    first = grp.transform("min").to_numpy(dtype=np.float64)
    test_mask = (ts == last) & (first < last)
    return df.loc[~test_mask].reset_index(drop=True), df.loc[test_mask].reset_index(drop=True)


def split(df: pd.DataFrame, config: SplitConfig | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    config = config or SplitConfig()
    if config.kind == "temporal":
        return temporal_split(df, config.test_fraction)
    if config.kind == "leave_last_out":
        return leave_last_out(df)
    raise ValueError(f"unknown split kind {config.kind!r}")
