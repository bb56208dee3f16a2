"""Input drift between the data a model was trained on and what shoppers do now.

Three features describe the traffic the recommender sees, each compared with the population
stability index (PSI) of its distribution, reference vs current:

- ``category_mix``: share of interactions per product category (categorical);
- ``price``: price of the interacted products, binned at the reference's deciles;
- ``activity_per_user``: interactions per active day per user (window-length free), binned at the reference's deciles.

PSI = sum over bins of (c - r) * ln(c / r), with shares floored at :data:`EPSILON` so an empty bin
does not give infinity. Reading it: < 0.1 stable, 0.1-0.25 moderate, > 0.25 a major shift. The score
is the **maximum** over features: one feature moving is enough to retrain, and the per-feature values
say which one moved.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

EPSILON = 1e-4
BINS = 10
FEATURES = ("category_mix", "price", "activity_per_user")


@dataclass(frozen=True)
class DriftReport:
    score: float  # max of per_feature
    per_feature: dict[str, float]
    reference_rows: int
    current_rows: int

    @property
    def worst_feature(self) -> str:
        return max(self.per_feature, key=self.per_feature.__getitem__)


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index of two aligned share vectors (each summing to 1)."""
    r = np.maximum(np.asarray(reference, dtype=float), EPSILON)
    c = np.maximum(np.asarray(current, dtype=float), EPSILON)
    return float(np.sum((c - r) * np.log(c / r)))


def categorical_psi(reference: pd.Series, current: pd.Series) -> float:
    """PSI over the union of categories (a category new in ``current`` counts fully)."""
    ref = reference.fillna("unknown").value_counts(normalize=True)
    cur = current.fillna("unknown").value_counts(normalize=True)
    cats = ref.index.union(cur.index)
    return psi(ref.reindex(cats, fill_value=0.0).to_numpy(), cur.reindex(cats, fill_value=0.0).to_numpy())


def numeric_psi(reference: pd.Series, current: pd.Series, bins: int = BINS) -> float:
    """PSI over bins cut at the reference's quantiles; values outside fall in the open end bins."""
    ref = reference.dropna().to_numpy(dtype=float)
    cur = current.dropna().to_numpy(dtype=float)
    if len(ref) == 0 or len(cur) == 0:
        return 0.0 if len(ref) == len(cur) else float("inf")
    inner = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    edges = np.concatenate(([-np.inf], inner, [np.inf]))
    r = np.histogram(ref, edges)[0] / len(ref)
    c = np.histogram(cur, edges)[0] / len(cur)
    return psi(r, c)


def _activity(frame: pd.DataFrame) -> pd.Series:
    """Interactions per active day per user. Raw counts per user grow with the window's length, so a
    short "current" window against a long reference would always look like drift; per active day does not."""
    if "timestamp" not in frame.columns:
        return frame.groupby("user_id").size().astype(float)
    days = pd.to_numeric(frame["timestamp"], errors="coerce") // 86_400
    grouped = frame.assign(_day=days).groupby("user_id")
    return (grouped.size() / grouped["_day"].nunique().clip(lower=1)).astype(float)


def drift_score(reference: pd.DataFrame, current: pd.DataFrame) -> DriftReport:
    """Drift of ``current`` against ``reference``; both need ``user_id``, ``category``, ``price``
    (the training set's columns, one row per interaction)."""
    for name, frame in (("reference", reference), ("current", current)):
        missing = {"user_id", "category", "price"} - set(frame.columns)
        if missing:
            raise ValueError(f"{name} frame lacks column(s) {sorted(missing)}")
        if frame.empty:
            raise ValueError(f"{name} frame is empty: drift needs interactions on both sides")
    per_feature = {
        "category_mix": categorical_psi(reference["category"], current["category"]),
        "price": numeric_psi(reference["price"], current["price"]),
        "activity_per_user": numeric_psi(_activity(reference), _activity(current)),
    }
    per_feature = {k: round(max(v, 0.0), 6) for k, v in per_feature.items()}
    return DriftReport(
        score=max(per_feature.values()),
        per_feature=per_feature,
        reference_rows=len(reference),
        current_rows=len(current),
    )


def split_by_time(frame: pd.DataFrame, time_column: str = "timestamp", current_share: float = 0.2) -> tuple:
    """(reference, current): the latest ``current_share`` of interactions against everything before.

    Locally there is one data set, so "now" is its most recent fifth; on AWS the reference is the
    training window and the current frame the newest curated data.
    """
    ordered = frame.sort_values(time_column, kind="stable")
    cut = int(round(len(ordered) * (1.0 - current_share)))
    return ordered.iloc[:cut], ordered.iloc[cut:]
