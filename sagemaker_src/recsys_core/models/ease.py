"""EASE (Steck 2019): a closed-form item x item linear model, B = I - P diagMat(1 / diag(P)),
P = (X^T X + lambda I)^-1. Among the strongest models on catalogues up to ~20k items, but the
solve is dense and cubic in the number of items, so it declares itself unfit beyond
``max_items``. The served matrix keeps the ``k`` largest-magnitude weights per item, and
validation scores that pruned matrix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.linalg import lapack

from .base import DataShape, FitContext, ItemItemModel, drop_diagonal


@dataclass(frozen=True)
class EASEConfig:
    #: lambda = lambda_factor x 4 x the users' mean squared profile norm (mean items per user on a
    #: 0/1 log): the regulariser follows the scale of the Gram matrix, so one default travels
    #: across data sets and selection searches factors around it.
    lambda_factor: float = 1.0
    #: Weights kept per item in the served (sparse) matrix (200 cost ~1% NDCG against 500 on MovieLens).
    k: int = 500
    #: The solve holds one dense float32 items x items matrix: 20k items = 1.6 GB (about 2 GB peak
    #: with the Gram matrix build) and ~100 s on 2 cores; beyond it the model declares itself unfit.
    max_items: int = 20_000


class EASE(ItemItemModel):
    family = "ease"
    Config = EASEConfig
    search_axes = (("lambda_factor", (0.25, 0.5, 1.0, 2.0, 4.0)),)

    @property
    def name(self) -> str:
        return f"ease(l={self.config.lambda_factor:g}x)"

    @classmethod
    def fits(cls, config: EASEConfig, shape: DataShape) -> str | None:
        if shape.n_items > config.max_items:
            return f"{shape.n_items} items > max_items {config.max_items} (dense O(n^3) solve)"
        return None

    @classmethod
    def cost(cls, config: EASEConfig, shape: DataShape) -> float:
        n = float(shape.n_items)
        return 1.3e-11 * n**3 + 2e-9 * shape.user_pairs + 1e-8 * n * n

    @staticmethod
    def base_lambda(X: sp.csr_matrix) -> float:
        """4 x mean over users of sum_i x_ui^2 (the mean diagonal of X X^T)."""
        n_users = max(int(np.count_nonzero(np.diff(X.indptr))), 1)
        return max(4.0 * float(np.square(X.data, dtype=np.float64).sum()) / n_users, 1e-3)

    def fit(self, X: sp.csr_matrix, ctx: FitContext) -> EASE:
        X = X.tocsr().astype(np.float32)
        G = np.asarray((X.T @ X).toarray(), dtype=np.float32)
        G[np.diag_indices_from(G)] += self.config.lambda_factor * self.base_lambda(X)
        # The dense solve is the one step that BLAS threads speed up (train.py pins BLAS to one
        # thread for implicit's own threads): use every core for it.
        from threadpoolctl import threadpool_limits

        with threadpool_limits(ctx.num_threads or os.cpu_count() or 1, "blas"):
            c, info = lapack.spotrf(G, lower=False, overwrite_a=True, clean=False)
            if info != 0:
                raise np.linalg.LinAlgError(f"cholesky failed ({info})")
            P, info = lapack.spotri(c, lower=False, overwrite_c=True)
            if info != 0:
                raise np.linalg.LinAlgError(f"inverse failed ({info})")
        _symmetrize_upper(P)
        diag = np.diag(P).copy()
        P /= -diag[None, :]  # B = I - P diag(1/diag(P)); the identity is the diagonal, dropped below
        np.fill_diagonal(P, 0.0)
        self.W = drop_diagonal(dense_top_k(P, self.config.k))
        return self


def _symmetrize_upper(P: np.ndarray, block: int = 2048) -> None:
    """Copy the upper triangle onto the lower one in place (LAPACK leaves the lower one stale),
    block by block so no second dense matrix is allocated."""
    n = P.shape[0]
    for lo in range(0, n, block):
        hi = min(lo + block, n)
        tile = P[lo:hi, lo:hi]
        tile[np.tril_indices(hi - lo, -1)] = tile.T[np.tril_indices(hi - lo, -1)]
        if lo:
            P[lo:hi, :lo] = P[:lo, lo:hi].T


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
