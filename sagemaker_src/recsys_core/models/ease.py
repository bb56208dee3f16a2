"""EASE (Steck 2019): a closed-form item x item linear model, B = I - P diagMat(1 / diag(P)),
P = (X^T X + lambda I)^-1. Strong on dense logs, but the solve is dense and cubic in the number
of items, so it declares itself unfit beyond ``max_items``. The served matrix keeps the ``k``
largest-magnitude weights per item, and validation scores that pruned matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.linalg import lapack

from .base import DataShape, FitContext, ItemItemModel, drop_diagonal


@dataclass(frozen=True)
class EASEConfig:
    #: lambda = lambda_rel * mean item "degree" (diag of X^T X), so it scales with the data.
    lambda_rel: float = 0.5
    k: int = 200
    max_items: int = 12_000


class EASE(ItemItemModel):
    family = "ease"
    Config = EASEConfig

    @property
    def name(self) -> str:
        return f"ease(l={self.config.lambda_rel})"

    @classmethod
    def fits(cls, config: EASEConfig, shape: DataShape) -> str | None:
        if shape.n_items > config.max_items:
            return f"{shape.n_items} items > max_items {config.max_items} (dense O(n^3) solve)"
        return None

    def fit(self, X: sp.csr_matrix, ctx: FitContext) -> EASE:
        X = X.tocsr().astype(np.float32)
        G = np.asarray((X.T @ X).toarray(), dtype=np.float32)
        diag = np.diag(G).copy()
        lam = max(float(self.config.lambda_rel * diag[diag > 0].mean()) if (diag > 0).any() else 1.0, 1e-3)
        G[np.diag_indices_from(G)] += lam
        c, info = lapack.spotrf(G, lower=False, overwrite_a=True, clean=False)
        if info != 0:
            raise np.linalg.LinAlgError(f"cholesky failed ({info})")
        P, info = lapack.spotri(c, lower=False, overwrite_c=True)
        if info != 0:
            raise np.linalg.LinAlgError(f"inverse failed ({info})")
        P = np.triu(P) + np.triu(P, 1).T
        B = P / (-np.diag(P))[None, :]
        np.fill_diagonal(B, 0.0)
        self.W = drop_diagonal(dense_top_k(B, self.config.k))
        return self


def dense_top_k(B: np.ndarray, k: int, block: int = 1024) -> sp.csr_matrix:
    """CSR keeping the ``k`` largest-magnitude entries of each row of a dense matrix."""
    n, m = B.shape
    k = min(k, m)
    cols = np.empty((n, k), dtype=np.int32)
    for lo in range(0, n, block):
        part = np.abs(B[lo : lo + block])
        cols[lo : lo + block] = np.argpartition(-part, k - 1, axis=1)[:, :k] if k < m else np.arange(m)
    cols.sort(axis=1)
    vals = np.take_along_axis(B, cols, axis=1).astype(np.float32)
    indptr = np.arange(0, n * k + 1, k, dtype=np.int64)
    return sp.csr_matrix((vals.ravel(), cols.ravel(), indptr), shape=(n, m))
