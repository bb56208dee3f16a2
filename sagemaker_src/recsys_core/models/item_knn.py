"""Item-kNN: items are similar when the same users interact with both.

Weightings: ``cosine`` (plain), ``bm25`` and ``tfidf`` (down-weight heavy users, whose long
histories say little about any pair). The all-pairs top-k search is implicit's C++ routine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
from implicit.nearest_neighbours import all_pairs_knn, bm25_weight, tfidf_weight

from .base import DataShape, FitContext, ItemItemModel, drop_diagonal


@dataclass(frozen=True)
class ItemKNNConfig:
    weighting: Literal["cosine", "bm25", "tfidf"] = "cosine"
    k: int = 100  # neighbours kept per item
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

    @property
    def name(self) -> str:
        return f"item_knn({self.config.weighting},k={self.config.k})"

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
        sim = all_pairs_knn(weighted.tocsr(), self.config.k + 1, show_progress=False, num_threads=ctx.num_threads)
        self.W = drop_diagonal(sim.tocsr())
        return self
