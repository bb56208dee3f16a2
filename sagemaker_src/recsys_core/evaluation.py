"""Offline evaluation: rank for users seen in training, compare with what they did next.

Relevant items for a user are the distinct items they interacted with in the evaluation period,
minus those they had already purchased or rated in training (the recommender may never show
those, so counting them would only add noise). Items new in the evaluation period stay relevant
(they count against recall for every model alike). Users unseen in training are evaluated
separately: they all get the popularity fallback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .data import IdMap
from .ensemble import top_k
from .features import History
from .metrics import coverage, hit_matrix, novelty, ranking_metrics


@dataclass
class Targets:
    users: np.ndarray  # warm user indices
    relevant: list[np.ndarray]  # known item indices per warm user
    n_relevant: np.ndarray  # incl. items unknown to the model
    cold_relevant: list[np.ndarray]  # per cold user (known items only)
    cold_n_relevant: np.ndarray

    def sample(self, n: int, seed: int = 0) -> Targets:
        if len(self.users) <= n:
            return self
        idx = np.sort(np.random.default_rng(seed).choice(len(self.users), n, replace=False))
        return Targets(self.users[idx], [self.relevant[i] for i in idx], self.n_relevant[idx],
                       self.cold_relevant, self.cold_n_relevant)


def build_targets(test: pd.DataFrame, users: IdMap, items: IdMap, hist: History) -> Targets:
    pairs = test[["user_id", "product_id"]].drop_duplicates()
    u = users.index(pairs["user_id"].to_numpy())
    i = items.index(pairs["product_id"].to_numpy())
    # Drop pairs already purchased/rated in training: they are never recommended.
    strong = hist.matrix(hist.strong.astype(np.float32))
    warm_known = (u >= 0) & (i >= 0)
    owned = np.zeros(len(u), dtype=bool)
    if warm_known.any():
        owned[warm_known] = np.asarray(strong[u[warm_known], i[warm_known]]).ravel() > 0
    u, i = u[~owned], i[~owned]
    cold_ids = pairs["user_id"].to_numpy()[~owned]

    warm = u >= 0
    wu, wi = u[warm], i[warm]
    order = np.argsort(wu, kind="stable")
    wu, wi = wu[order], wi[order]
    uniq, start, counts = np.unique(wu, return_index=True, return_counts=True)
    relevant = [wi[s : s + c][wi[s : s + c] >= 0] for s, c in zip(start, counts, strict=True)]

    cu, ci = cold_ids[~warm], i[~warm]
    cold_groups = pd.Series(ci).groupby(cu, sort=True)
    cold_relevant = [g.to_numpy()[g.to_numpy() >= 0] for _, g in cold_groups]
    cold_n = cold_groups.size().to_numpy() if len(cu) else np.zeros(0, dtype=np.int64)
    return Targets(uniq, relevant, counts.astype(np.int64), cold_relevant, cold_n)


def evaluate_scores(
    score_fn: Callable[[np.ndarray], np.ndarray],
    hist: History,
    targets: Targets,
    k: int = 10,
    popularity: np.ndarray | None = None,
    batch_cells: int = 20_000_000,
) -> tuple[dict[str, float], list[np.ndarray]]:
    """Metrics@k for ``score_fn(user_indices) -> dense scores``, default exclusions applied."""
    strong = hist.matrix(hist.strong.astype(np.float32)).copy()  # own arrays: eliminate_zeros works in place
    strong.eliminate_zeros()
    batch = max(1, batch_cells // max(hist.n_items, 1))
    recs: list[np.ndarray] = []
    for lo in range(0, len(targets.users), batch):
        users = targets.users[lo : lo + batch]
        recs.extend(top_k(score_fn(users), k, strong[users]))
    out = ranking_metrics(hit_matrix(recs, targets.relevant, k), targets.n_relevant)
    item_users = np.bincount(hist.indices, minlength=hist.n_items)
    out["coverage"] = coverage(recs, hist.n_items)
    out["novelty"] = novelty(recs, item_users, hist.n_users)
    if popularity is not None and len(targets.cold_relevant):
        cold_rec = top_k(popularity[None, :], k)[0]
        cold = ranking_metrics(hit_matrix([cold_rec] * len(targets.cold_relevant), targets.cold_relevant, k),
                               targets.cold_n_relevant)
        n_w, n_c = out["users"], cold["users"]
        out["all_users_ndcg"] = (out["ndcg"] * n_w + cold["ndcg"] * n_c) / max(n_w + n_c, 1)
        out["cold_users"] = n_c
        out["cold_ndcg"] = cold["ndcg"]
    return out, recs
