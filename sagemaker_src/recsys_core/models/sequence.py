"""Sequence neighbours: items are similar when users take them *close together* in their own order.

Co-occurrence models (item-kNN, RP3beta, EASE) treat a user's history as a set; a shop's logs are
sequences (a phone, then its case; a toy, then its batteries). This model counts, in every
user's items ordered by time, pairs at most ``window`` positions apart (both directions, weight
``decay`` ** (distance - 1)), then divides out popularity like RP3beta: W[i, j] = c_ij /
(deg_i^(1 - beta) deg_j^beta), top-k per item. It needs only each user's own order, not a shared
clock, and helps both "what next" (neighbours of the latest items) and "what else" (neighbours
of any item) - so selection can blend it in without trading one for the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..features import keep_top_k_per_row
from .base import DataShape, FitContext, ItemItemModel, drop_diagonal


@dataclass(frozen=True)
class SequenceConfig:
    #: Pairs at most this many positions apart in a user's order count.
    window: int = 3
    #: Weight of a pair ``d`` positions apart: decay ** (d - 1).
    decay: float = 0.7
    #: How much the target item's popularity is divided out (0.5 = symmetric, cosine-like).
    beta: float = 0.5
    #: Neighbours kept per item.
    k: int = 200


class SequenceNeighbours(ItemItemModel):
    family = "sequence"
    Config = SequenceConfig
    needs_order = True
    search_axes = (("window", (1, 3, 10)), ("beta", (0.3, 0.5, 0.7)))

    @property
    def name(self) -> str:
        c = self.config
        return f"sequence(w={c.window},b={c.beta})"

    @classmethod
    def cost(cls, config: SequenceConfig, shape: DataShape) -> float:
        return 2e-7 * shape.nnz * config.window + 2e-8 * shape.n_items * config.k

    @classmethod
    def fits(cls, config: SequenceConfig, shape: DataShape) -> str | None:
        return None

    def fit(self, X: sp.csr_matrix, ctx: FitContext) -> SequenceNeighbours:
        if ctx.entry_recency is None:
            raise ValueError("sequence neighbours need each user's order (entry recency)")
        c = self.config
        X = X.tocsr()
        n = X.shape[1]
        users = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
        order = np.lexsort((-np.asarray(ctx.entry_recency), users))  # each user's items, oldest first
        u, item = users[order], X.indices[order]
        rows, cols, vals = [], [], []
        for d in range(1, c.window + 1):
            same = u[d:] == u[:-d]
            a, b = item[:-d][same], item[d:][same]
            w = np.full(len(a), c.decay ** (d - 1), dtype=np.float32)
            rows += [a, b]
            cols += [b, a]
            vals += [w, w]
        if not rows:
            self.W = sp.csr_matrix((n, n), dtype=np.float32)
            return self
        counts = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
        deg = np.bincount(X.indices, minlength=n).astype(np.float64) + 1.0
        W = (sp.diags(deg ** -(1.0 - c.beta)) @ counts @ sp.diags(deg**-c.beta)).tocsr()
        self.W = drop_diagonal(keep_top_k_per_row(drop_diagonal(W), c.k))
        return self
