"""Matrix factorisation with ``implicit``: ALS (weighted least squares on confidences) and BPR.

Only training needs ``implicit``; serving keeps the factor matrices. Users scored without a
stored factor (unknown users, session-steered requests) are *folded in*: ALS solves the user's
least-squares system against the fixed item factors exactly as implicit does; BPR uses the
weighted mean of the profile's item factors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp

from .base import DataShape, FitContext, Held, Model, Sequences, embedding_scores, sorted_lookup


@dataclass(frozen=True)
class MFConfig:
    method: Literal["als", "bpr"] = "als"
    factors: int = 128
    regularization: float = 0.1
    alpha: float = 10.0  # ALS confidence = alpha * value
    iterations: int = 15  # ALS sweeps; BPR epochs = 5x this
    learning_rate: float = 0.05  # BPR only
    max_nnz: int = 200_000_000


class MatrixFactorization(Model):
    family = "mf"
    Config = MFConfig

    @property
    def name(self) -> str:
        c = self.config
        return f"{c.method}(f={c.factors},reg={c.regularization}" + (f",a={c.alpha})" if c.method == "als" else ")")

    search_axes = (("alpha", (2.0, 5.0, 10.0, 20.0, 40.0)), ("factors", (64, 128, 256)),
                   ("regularization", (0.01, 0.1, 1.0, 10.0)))

    @classmethod
    def cost(cls, config: MFConfig, shape: DataShape) -> float:
        sweeps = config.iterations * (5 if config.method == "bpr" else 1)
        return 1.2e-8 * sweeps * (shape.nnz + shape.n_users + shape.n_items) * config.factors

    @classmethod
    def fits(cls, config: MFConfig, shape: DataShape) -> str | None:
        if shape.nnz > config.max_nnz:
            return f"{shape.nnz} interactions > max_nnz {config.max_nnz}"
        if config.method == "bpr" and shape.n_items < 3:
            return "BPR needs at least 3 items to sample negatives"
        return None

    def fit(self, X: sp.csr_matrix, ctx: FitContext) -> MatrixFactorization:
        X = X.tocsr().astype(np.float32)
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"):  # implicit parallelises itself; nested BLAS threads thrash
            model = self._build(ctx)
            model.fit(X, show_progress=False)
        self.user_factors = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        self._prepare()
        return self

    def _build(self, ctx: FitContext):  # noqa: ANN202 - an implicit model
        c = self.config
        if c.method == "als":
            from implicit.cpu.als import AlternatingLeastSquares

            return AlternatingLeastSquares(
                factors=c.factors, regularization=c.regularization, alpha=c.alpha, iterations=c.iterations,
                num_threads=ctx.num_threads, random_state=ctx.seed,
            )
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking(
            factors=c.factors, learning_rate=c.learning_rate, regularization=c.regularization,
            iterations=5 * c.iterations, num_threads=ctx.num_threads, random_state=ctx.seed,
        )

    def _prepare(self) -> None:
        self.YtY = (self.item_factors.T @ self.item_factors).astype(np.float64)

    def fold_in(self, profiles: sp.csr_matrix) -> np.ndarray:
        Y = self.item_factors
        out = np.zeros((profiles.shape[0], Y.shape[1]), dtype=np.float32)
        profiles = profiles.tocsr()
        for r in range(profiles.shape[0]):
            lo, hi = profiles.indptr[r], profiles.indptr[r + 1]
            if lo < hi:
                out[r] = self._fold_in_row(profiles.indices[lo:hi], profiles.data[lo:hi])
        return out

    def _fold_in_row(self, items: np.ndarray, data: np.ndarray) -> np.ndarray:
        if self.config.method == "als":
            return self.solve_fold_in(*self.fold_in_parts(items, data))
        vals = data.astype(np.float64)
        Yi = self.item_factors[items].astype(np.float64)
        vec = (vals[:, None] * Yi).sum(axis=0) / max(vals.sum(), 1e-9)
        vec[-1] = 1.0  # implicit's BPR keeps an item-bias column matched by a constant user 1
        return vec

    def score(self, profiles: sp.csr_matrix, users: np.ndarray, *, sequences: Sequences | None = None) -> np.ndarray:
        users = np.asarray(users)
        U = np.empty((len(users), self.item_factors.shape[1]), dtype=np.float32)
        known = users >= 0
        U[known] = self.user_factors[users[known]]
        if (~known).any():
            U[~known] = self.fold_in(profiles[np.nonzero(~known)[0]])
        return U @ self.item_factors.T

    def score_row(self, indices: np.ndarray, data: np.ndarray, user: int, n_items: int, *,
                  sequence: np.ndarray | None = None, candidates: np.ndarray | None = None) -> np.ndarray:
        """``score`` for one row, skipping the sparse row slice; same (1 x f) @ (f x n) product. With
        ``candidates`` the product over those items' factors only: equal to the full row up to float32
        rounding (BLAS sums in an order that depends on the matrix size), not bit for bit."""
        return embedding_scores(self, self.query_vector(indices, data, user), candidates)

    # ---------------------------------------------------------------- serving shoppers with long histories
    def heavy_cost(self, profiles: sp.csr_matrix) -> np.ndarray | None:
        """ALS folds a session-steered profile in with an f x f system built from every profile item
        (h f^2 work); a shopper's own row is their stored factor, and BPR's fold-in is a mean (cheap)."""
        if self.config.method != "als":
            return None
        f = self.item_factors.shape[1]
        return 1e-10 * np.diff(profiles.indptr).astype(np.float64) * f * f  # ~0.1 ns per multiply-add

    def held_bytes(self, n_items: int) -> int:
        f = self.item_factors.shape[1]
        return 8 * (f * f + f)

    def hold(self, profiles: sp.csr_matrix, users: np.ndarray) -> Held:
        return HeldFoldIn(self, profiles.tocsr())

    def fold_in_parts(self, items: np.ndarray, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """ALS fold-in's profile terms: sum_i (c_i - 1) y_i y_i^T and sum_i c_i y_i, c = alpha x value."""
        Yi = self.item_factors[items].astype(np.float64)
        conf = self.config.alpha * data.astype(np.float64)
        return (Yi.T * (conf - 1.0)) @ Yi, Yi.T @ conf

    def solve_fold_in(self, gram: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        f = self.item_factors.shape[1]
        return np.linalg.solve(self.YtY + self.config.regularization * np.eye(f) + gram, rhs)

    # ---------------------------------------------------------------- embedding model (retrieval)
    def item_vectors(self) -> np.ndarray:
        """(n_items, d) float32: scores are ``item_vectors() @ query_vector(...)`` (BPR's item bias is
        its last column, matched by a constant 1 in every user vector)."""
        return self.item_factors

    def query_vector(self, indices: np.ndarray, data: np.ndarray, user: int,
                     sequence: np.ndarray | None = None) -> np.ndarray:
        """(d,) float32: the stored user factor, or the profile folded in for a user without one."""
        q = np.zeros(self.item_factors.shape[1], dtype=np.float32)
        if user >= 0:
            q[:] = self.user_factors[user]
        elif len(indices):
            q[:] = self._fold_in_row(indices, data)
        return q

    def state(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors, "item_factors": self.item_factors}

    @classmethod
    def from_state(cls, config: MFConfig, state: dict[str, np.ndarray]) -> MatrixFactorization:
        m = cls(config)
        m.user_factors, m.item_factors = state["user_factors"], state["item_factors"]
        m._prepare()
        return m


class HeldFoldIn(Held):
    """ALS fold-in terms of a few shoppers' profiles, so a session steers them with |session| f^2 work
    instead of |profile| f^2: a session item adds alpha x peak to its value (its term appears when it is new)."""

    def __init__(self, model: MatrixFactorization, profiles: sp.csr_matrix) -> None:
        self.model, self.profiles = model, profiles
        parts = [model.fold_in_parts(*_row(profiles, r)) for r in range(profiles.shape[0])]
        f = model.item_factors.shape[1]
        self.gram = np.array([g for g, _ in parts]).reshape(-1, f, f)
        self.rhs = np.array([b for _, b in parts]).reshape(-1, f)
        self.nbytes = self.gram.nbytes + self.rhs.nbytes

    def steered(self, slot: int, session: np.ndarray, peak: float, n_items: int,
                candidates: np.ndarray | None) -> np.ndarray | None:
        """Equal to folding in the summed profile up to float rounding (the sums run in another order)."""
        m = self.model
        items, _ = _row(self.profiles, slot)
        _, present = sorted_lookup(items, session)
        Ys = m.item_factors[session].astype(np.float64)
        step = m.config.alpha * np.float64(np.float32(peak))
        gram = self.gram[slot] + (Ys.T * (step - (~present))) @ Ys
        q = m.solve_fold_in(gram, self.rhs[slot] + step * Ys.sum(axis=0)).astype(np.float32)
        Y = m.item_factors if candidates is None else m.item_factors[candidates]
        return (q[None, :] @ Y.T)[0]


def _row(m: sp.csr_matrix, r: int) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = m.indptr[r], m.indptr[r + 1]
    return m.indices[lo:hi], m.data[lo:hi]
