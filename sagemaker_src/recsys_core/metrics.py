"""Top-k ranking metrics with binary relevance, computed per user then averaged over users.

Conventions (stated because libraries differ): recall@k = hits / |relevant| ; F1@k is the per-user
harmonic mean of precision@k and recall@k, averaged ; NDCG@k ideal DCG places min(k, |relevant|)
hits first ; AP@k divides by min(k, |relevant|) ; novelty is the mean self-information
-log2(share of training users who interacted with the item) of recommended items ; coverage is
the share of the catalogue recommended to at least one evaluated user.
"""

from __future__ import annotations

import numpy as np


def hit_matrix(recs: list[np.ndarray] | np.ndarray, relevant: list[set[int]] | list[np.ndarray], k: int) -> np.ndarray:
    """Bool matrix (users x k): whether the item at each rank is relevant (short lists pad False)."""
    hits = np.zeros((len(recs), k), dtype=bool)
    for row, (rec, rel) in enumerate(zip(recs, relevant, strict=True)):
        rec = np.asarray(rec)[:k]
        if len(rec):
            hits[row, : len(rec)] = np.isin(rec, np.fromiter(rel, dtype=np.int64) if isinstance(rel, set) else rel)
    return hits


def ranking_metrics(hits: np.ndarray, n_relevant: np.ndarray) -> dict[str, float]:
    """precision, recall, f1, ndcg, map, hit_rate at k = hits.shape[1], averaged over users.

    Users with no relevant items are skipped (they carry no signal).
    """
    n_relevant = np.asarray(n_relevant, dtype=np.float64)
    keep = n_relevant > 0
    hits, n_relevant = hits[keep], n_relevant[keep]
    if len(hits) == 0:
        return {m: 0.0 for m in ("precision", "recall", "f1", "ndcg", "map", "hit_rate")} | {"users": 0}
    k = hits.shape[1]
    n_hits = hits.sum(axis=1)
    precision = n_hits / k
    recall = n_hits / n_relevant
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(n_hits > 0, 2 * precision * recall / (precision + recall), 0.0)
    ndcg = ndcg_per_user(hits, n_relevant)
    ideal_n = np.minimum(n_relevant, k).astype(int)
    prec_at_rank = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    ap = (prec_at_rank * hits).sum(axis=1) / ideal_n
    return {
        "precision": float(precision.mean()),
        "recall": float(recall.mean()),
        "f1": float(f1.mean()),
        "ndcg": float(ndcg.mean()),
        "map": float(ap.mean()),
        "hit_rate": float((n_hits > 0).mean()),
        "users": int(len(hits)),
    }


def ndcg_per_user(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """NDCG@k of each row of ``hits`` (users with no relevant item must be removed first)."""
    k = hits.shape[1]
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    ideal_n = np.minimum(np.asarray(n_relevant), k).astype(int)
    return (hits @ discount) / np.cumsum(discount)[ideal_n - 1]


def coverage(recs: list[np.ndarray] | np.ndarray, n_items: int) -> float:
    """Share of the catalogue that appears in at least one recommendation list."""
    if n_items == 0:
        return 0.0
    seen = np.unique(np.concatenate([np.asarray(r, dtype=np.int64) for r in recs])) if len(recs) else []
    return float(len(seen) / n_items)


def novelty(recs: list[np.ndarray] | np.ndarray, item_user_counts: np.ndarray, n_users: int) -> float:
    """Mean self-information of recommended items; unseen items use add-one smoothing."""
    flat = np.concatenate([np.asarray(r, dtype=np.int64) for r in recs]) if len(recs) else np.zeros(0, np.int64)
    if len(flat) == 0:
        return 0.0
    share = (np.asarray(item_user_counts, dtype=np.float64)[flat] + 1.0) / (n_users + 1.0)
    return float(np.mean(-np.log2(share)))
