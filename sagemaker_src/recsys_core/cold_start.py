"""What a shopper the model has never seen gets: plain popularity, or trending where it predicts better.

Checked on the training log itself, only where it has a shared clock: the latest tenth of the rows (by
time) is held out, popularity and trending are computed from the rest, and each newly active shopper's
held-out products are the targets of one list (a new shopper has no history to exclude). Trending wins
only with a clear margin: NDCG@k at least 2 % higher and a paired z of at least 1.5 over those shoppers,
the rule model selection applies to every other step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Share of the latest rows held out, the margin trending must clear, and trending's half-life as a
#: fraction of the log's span (the same as the served trending list).
HOLDOUT_SHARE, MIN_GAIN, MIN_Z, HALF_LIFE_FRACTION = 0.1, 1.02, 1.5, 0.1


@dataclass(frozen=True)
class ColdStartChoice:
    strategy: str  # "popular" or "trending"
    reason: str


def _ranked(frame: pd.DataFrame, weights: np.ndarray, k: int) -> np.ndarray:
    pairs = frame.assign(w=weights).groupby(["product_id", "user_id"])["w"].max()
    return pairs.groupby(level=0).sum().sort_values(ascending=False, kind="stable").index[:k].to_numpy()


def _ndcg(ranked: np.ndarray, targets: pd.Series, k: int) -> np.ndarray:
    gains = 1.0 / np.log2(np.arange(2, k + 2))
    position = {item: i for i, item in enumerate(ranked)}
    out = []
    for items in targets:
        hits = [position[i] for i in items if i in position]
        ideal = gains[: min(len(items), k)].sum()
        out.append(gains[hits].sum() / ideal if ideal else 0.0)
    return np.asarray(out)


def choose_cold_start(clean: pd.DataFrame, k: int = 10, has_clock: bool = True) -> ColdStartChoice:
    """``clean``: user_id, product_id, ts (epoch seconds) rows, as train.py cleans them."""
    if not has_clock:
        return ColdStartChoice("popular", "no shared clock: trending cannot be checked")
    cut = clean["ts"].quantile(1 - HOLDOUT_SHARE)
    before, after = clean[clean["ts"] < cut], clean[clean["ts"] >= cut]
    if before.empty or after.empty:
        return ColdStartChoice("popular", "too few rows to hold out the latest tenth")
    span = max(float(before["ts"].max() - before["ts"].min()), 1.0)
    decay = 0.5 ** ((before["ts"].max() - before["ts"].to_numpy()) / (HALF_LIFE_FRACTION * span))
    targets = after.groupby("user_id")["product_id"].agg(lambda s: set(s))
    pop = _ndcg(_ranked(before, np.ones(len(before)), k), targets, k)
    trend = _ndcg(_ranked(before, decay, k), targets, k)
    diff = trend - pop
    z = diff.mean() / (diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 and diff.std(ddof=1) > 0 else 0.0
    summary = f"NDCG@{k} on the latest tenth: trending {trend.mean():.4f} vs popularity {pop.mean():.4f}, z {z:.1f}"
    if trend.mean() >= MIN_GAIN * pop.mean() and z >= MIN_Z:
        return ColdStartChoice("trending", summary)
    return ColdStartChoice("popular", summary)
