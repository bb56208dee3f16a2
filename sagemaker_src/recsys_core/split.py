"""Train/test and validation splits.

- ``temporal``: one global time cut; everything at or after the cut is test. This is what a
  deployed model faces (train on the past, serve the future; new users and items appear), but it
  needs a real clock shared by all users.
- ``leave_last_out``: per user, the rows at the user's latest timestamp are test; users with a
  single timestamp stay wholly in train. Common in the literature; every user gets evaluated.
- ``user_holdout``: per (sampled) user, the most recent rows *and* a random draw of the older
  ones are held out. Needs only each user's own order, so it works on logs whose timestamps are
  per-user sequence numbers; the recent part asks "what next", the random part "what else".

``plan_validation`` picks the split model selection uses, from what the data supports.
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


@dataclass(frozen=True)
class HoldoutConfig:
    """How validation rows are carved from the training rows (never from test rows)."""

    #: Share of a validation user's rows held out as "most recent" rows (at least one).
    recent_fraction: float = 0.1
    #: Share held out as a random draw of the user's older rows (at least one).
    random_fraction: float = 0.1
    #: Users with fewer rows are never validation users (the fit part must keep some of them).
    min_user_rows: int = 4
    #: Validation users drawn at random; the others keep all their rows in the fit part.
    max_users: int = 4000
    #: Logs with fewer eligible users get up to this many folds (earlier blocks of each user's rows).
    max_folds: int = 3
    #: Share of the global cut's rows for the time-cut validation.
    global_fraction: float = 0.1
    #: A global cut is used only if at least this share of the users active after it were active
    #: before it (a shared clock: returning users, not per-user sequence numbers) ...
    global_min_warm_share: float = 0.5
    #: ... and at least this many such returning users remain to score.
    global_min_users: int = 200
    seed: int = 0


@dataclass(frozen=True)
class ValidationPlan:
    """Which split selection uses and why: reported in the training log and evaluation.json."""

    kind: Literal["global_cut", "user_holdout", "none"]
    reason: str
    fit_rows: int
    val_rows: int
    val_users: int


def clock_check(df: pd.DataFrame, fraction: float) -> tuple[int, int]:
    """(returning users, users active after a global cut at the 1 - ``fraction`` quantile of time)."""
    fit, val = temporal_split(df, fraction)
    if len(val) == 0 or len(fit) == 0:
        return 0, int(val["user_id"].nunique())
    after = pd.unique(val["user_id"])
    # A hash lookup: np.isin on string (object) arrays compares every pair, hours at a million users.
    returning = pd.Index(after).isin(pd.unique(fit["user_id"]))
    return int(returning.sum()), len(after)


def user_holdout(
    df: pd.DataFrame, config: HoldoutConfig, fold: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(fit, recent, random): per sampled user, the latest rows and a random draw of the older ones.

    Rows are ordered per user by time, ties by their order in the file (a log without a clock keeps
    its sequence in row order). Users with too few rows stay wholly in fit. Fold ``f`` > 0 holds
    out the block of rows ``f`` blocks before the latest (and leaves out the newer ones, which a
    model at that point could not have seen), with its own random draw: more validation signal
    from logs with few users.
    """
    df = df.reset_index(drop=True)
    if df.empty:
        return df, df.iloc[:0], df.iloc[:0]
    rng = np.random.default_rng(config.seed + fold)
    codes, uniques = pd.factorize(df["user_id"])
    n_rows = np.bincount(codes, minlength=len(uniques))
    per_block = np.maximum(1, np.round(config.recent_fraction * n_rows)).astype(np.int64)
    eligible = np.flatnonzero(n_rows - fold * per_block >= config.min_user_rows)
    if len(eligible) > config.max_users:
        eligible = np.sort(rng.choice(eligible, config.max_users, replace=False))
    chosen = np.zeros(len(uniques), dtype=bool)
    chosen[eligible] = True
    # Position of each row within its user's history, 0 = newest (stable: ties keep file order).
    order = np.lexsort((np.arange(len(df)), df["ts"].to_numpy(dtype=np.float64), codes))
    start = np.r_[0, np.cumsum(n_rows)[:-1]]
    pos = np.empty(len(df), dtype=np.int64)
    pos[order] = np.arange(len(df)) - start[codes[order]]
    newest_rank = n_rows[codes] - 1 - pos
    block = per_block[codes]
    n_random = np.maximum(1, np.round(config.random_fraction * n_rows)).astype(np.int64)[codes]
    in_val = chosen[codes]
    future = in_val & (newest_rank < fold * block)
    recent = in_val & ~future & (newest_rank < (fold + 1) * block)
    # Random part: among each chosen user's older rows, the n_random with the smallest random keys.
    key = rng.random(len(df))
    older = in_val & ~recent & ~future
    rank = np.full(len(df), np.iinfo(np.int64).max)
    idx = np.flatnonzero(older)
    if len(idx):
        sub = np.lexsort((key[idx], codes[idx]))
        sorted_idx = idx[sub]
        first = np.r_[0, np.flatnonzero(np.diff(codes[sorted_idx])) + 1]
        counts = np.diff(np.r_[first, len(sorted_idx)])
        rank[sorted_idx] = np.arange(len(sorted_idx)) - np.repeat(first, counts)
    rand = older & (rank < n_random)
    fit = ~(recent | rand | future)
    return (df.loc[fit].reset_index(drop=True), df.loc[recent].reset_index(drop=True),
            df.loc[rand].reset_index(drop=True))


def plan_validation(
    df: pd.DataFrame, config: HoldoutConfig | None = None
) -> tuple[list[tuple[pd.DataFrame, list[pd.DataFrame]]], ValidationPlan]:
    """The split selection validates on: a global time cut where the log has a shared clock and
    enough returning users, else a per-user holdout (latest + random rows).

    Returns ([(fit part, validation parts), ...] one per fold, plan). The per-user holdout has two
    parts, latest and random, scored on the same users, and as many folds (up to ``max_folds``) as
    it takes to reach ``max_users`` validation users on logs with few users.
    """
    config = config or HoldoutConfig()
    returning, after = clock_check(df, config.global_fraction)
    share = returning / after if after else 0.0
    if returning >= config.global_min_users and share >= config.global_min_warm_share:
        fit, val = temporal_split(df, config.global_fraction)
        reason = (f"shared clock: {returning} of {after} users active in the last "
                  f"{config.global_fraction:.0%} of time were active before it")
        return [(fit, [val])], ValidationPlan("global_cut", reason, len(fit), len(val), returning)
    why = (f"no shared clock to cut on ({returning} of {after} users after a global cut were seen before it, "
           f"need >= {config.global_min_users} and >= {config.global_min_warm_share:.0%})")
    folds, users, rows = [], 0, 0
    for fold in range(config.max_folds):
        fit, recent, rand = user_holdout(df, config, fold)
        n = int(recent["user_id"].nunique())
        if n == 0:
            break
        folds.append((fit, [recent, rand]))
        users, rows = users + n, rows + len(recent) + len(rand)
        if users >= config.max_users:
            break
    if not folds:
        return [], ValidationPlan("none", f"{why}; no user has {config.min_user_rows}+ rows to hold out",
                                  len(df), 0, 0)
    reason = (f"{why}: per-user holdout of the latest and a random draw of older rows"
              + (f", {len(folds)} folds" if len(folds) > 1 else ""))
    return folds, ValidationPlan("user_holdout", reason, len(folds[0][0]), rows, users)
