"""Item-kNN: items are similar when the same users interact with both.

Weightings: ``cosine`` (plain), ``bm25`` and ``tfidf`` (down-weight heavy users, whose long
histories say little about any pair). ``shrink`` s damps similarities resting on few shared
users: sim = <x_i, x_j> / (|x_i| |x_j| + s). The all-pairs top-k search is implicit's C++ routine;
with shrinkage it keeps twice the neighbours, rescales them and keeps the best ``k``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
from implicit.nearest_neighbours import all_pairs_knn, bm25_weight, tfidf_weight

from ..features import keep_top_k_per_row
from .base import DataShape, FitContext, ItemItemModel, drop_diagonal, item_item_cost


@dataclass(frozen=True)
class ItemKNNConfig:
    weighting: Literal["cosine", "bm25", "tfidf"] = "cosine"
    k: int = 100  # neighbours kept per item
    #: Shrinkage of cosine similarities towards 0 when the item vectors are small (few users).
    shrink: float = 0.0
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    max_nnz: int = 50_000_000  # beyond this the all-pairs search is too slow for the training budget


def _col_normalize(X: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=0)).ravel())
    norms[norms == 0] = 1.0
    return (X @ sp.diags(1.0 / norms)).tocsr()


class ItemKNN(ItemItemModel):
    family = "item_knn"
    Config = ItemKNNConfig

    search_axes = (("shrink", (0.0, 10.0, 50.0)), ("k", (50, 100, 200, 400)))

    @property
    def name(self) -> str:
        shrink = f",shrink={self.config.shrink:g}" if self.config.shrink else ""
        return f"item_knn({self.config.weighting},k={self.config.k}{shrink})"

    @classmethod
    def cost(cls, config: ItemKNNConfig, shape: DataShape) -> float:
        return item_item_cost(config.k * (2 if config.shrink else 1), shape)

    @classmethod
    def fits(cls, config: ItemKNNConfig, shape: DataShape) -> str | None:
        if shape.nnz > config.max_nnz:
            return f"{shape.nnz} interactions > max_nnz {config.max_nnz}"
        return None

    def fit(self, X: sp.csr_matrix, ctx: FitContext) -> ItemKNN:
        X = X.tocsr().astype(np.float64)
        if self.config.weighting == "cosine":
            weighted = _col_normalize(X)
        elif self.config.weighting == "bm25":
            weighted = bm25_weight(X.T, self.config.bm25_k1, self.config.bm25_b).T.tocsr()
        elif self.config.weighting == "tfidf":
            weighted = _col_normalize(tfidf_weight(X.T).T.tocsr())
        else:
            raise ValueError(f"unknown weighting {self.config.weighting!r}")
        shrink = self.config.shrink if self.config.weighting == "cosine" else 0.0
        n_neighbours = (2 * self.config.k if shrink else self.config.k) + 1
        sim = all_pairs_knn(weighted.tocsr(), n_neighbours, show_progress=False, num_threads=ctx.num_threads).tocsr()
        if shrink:
            norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=0)).ravel())
            rows = np.repeat(np.arange(sim.shape[0]), np.diff(sim.indptr))
            both = norms[rows] * norms[sim.indices]
            sim.data = sim.data * both / (both + shrink)
            sim = keep_top_k_per_row(drop_diagonal(sim), self.config.k)
        self.W = drop_diagonal(sim)
        return self
