"""User-kNN: score items by what the ``k`` most similar users (cosine on histories) interacted with.

Needs the whole training matrix at serving time and a pass over all co-interacting users per
request, so it declares itself unfit for very large user bases.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .base import (
    DataShape,
    FitContext,
    Model,
    Sequences,
    accumulate_rows,
    accumulate_rows_at,
    entries_read,
    row_normalize_entries,
    rows_support,
    sparse_from_state,
    sparse_state,
)


@dataclass(frozen=True)
class UserKNNConfig:
    k: int = 100
    max_users: int = 300_000
    max_nnz: int = 10_000_000


def _row_normalize(X: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return (sp.diags(1.0 / norms) @ X).tocsr()


class UserKNN(Model):
    family = "user_knn"
    Config = UserKNNConfig

    @property
    def name(self) -> str:
        return f"user_knn(k={self.config.k})"

    search_axes = (("k", (50, 100, 200, 400)),)

    @classmethod
    def cost(cls, config: UserKNNConfig, shape: DataShape) -> float:
        # Fitting only normalises; scoring (user x user similarities) costs about two evaluations.
        return 5e-8 * shape.nnz

    @classmethod
    def fits(cls, config: UserKNNConfig, shape: DataShape) -> str | None:
        if shape.n_users > config.max_users:
            return f"{shape.n_users} users > max_users {config.max_users} (per-request scan of users)"
        if shape.nnz > config.max_nnz:
            return f"{shape.nnz} interactions > max_nnz {config.max_nnz}"
        return None

    def fit(self, X: sp.csr_matrix, ctx: FitContext) -> UserKNN:
        self.X = X.tocsr().astype(np.float32)
        self.Xn_T = _row_normalize(self.X).T.tocsr()  # items x users, for profile -> user similarity
        return self

    def score(self, profiles: sp.csr_matrix, users: np.ndarray, *, sequences: Sequences | None = None) -> np.ndarray:
        users = np.asarray(users)
        out = np.empty((profiles.shape[0], self.X.shape[1]), dtype=np.float32)
        batch = max(1, 10_000_000 // max(self.X.shape[0], 1))  # bounds the dense users x users block
        for lo in range(0, profiles.shape[0], batch):
            out[lo : lo + batch] = self._score(profiles[lo : lo + batch], users[lo : lo + batch])
        return out

    def _score(self, profiles: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        sims = np.asarray((_row_normalize(profiles.astype(np.float32)) @ self.Xn_T).toarray(), dtype=np.float32)
        rows = np.nonzero(users >= 0)[0]
        sims[rows, users[rows]] = 0.0  # a user is not their own neighbour
        k = min(self.config.k, sims.shape[1])
        if k < sims.shape[1]:  # keep each row's k nearest users, built sparse directly
            cut = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            vals = np.take_along_axis(sims, cut, axis=1)
            indptr = np.arange(0, len(sims) * k + 1, k)
            neighbours = sp.csr_matrix((vals.ravel(), cut.ravel(), indptr), shape=sims.shape)
        else:
            neighbours = sp.csr_matrix(sims)
        return np.asarray((neighbours @ self.X).toarray(), dtype=np.float32)

    def score_row(self, indices: np.ndarray, data: np.ndarray, user: int, n_items: int, *,
                  sequence: np.ndarray | None = None, candidates: np.ndarray | None = None) -> np.ndarray:
        """``_score`` for one row without building scipy matrices: ~16 per call made scipy's overhead
        most of a request's cost. Same float operations in the same order, so identical results."""
        cut, weights = self._neighbours(indices, data, user, n_items)
        dtype = np.result_type(weights, self.X.data)
        if candidates is not None:
            return accumulate_rows_at(self.X, cut, weights, candidates, dtype).astype(np.float32, copy=False)
        out = np.zeros(self.X.shape[1], dtype=dtype)
        accumulate_rows(out, self.X, cut, weights)
        return out.astype(np.float32, copy=False)

    def candidates(self, indices: np.ndarray, data: np.ndarray, user: int, n_items: int, *,
                   sequence: np.ndarray | None = None, limit: int = 1000) -> np.ndarray | None:
        """The neighbours' items: every item this model scores other than zero."""
        return rows_support(self.X, self._neighbours(indices, data, user, n_items)[0])

    def _neighbours(self, indices: np.ndarray, data: np.ndarray, user: int,
                    n_items: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest users of the row as ``_score`` picks them (same call, same order), and their similarities."""
        n_users = self.X.shape[0]
        cols, vals = row_normalize_entries(indices, data.astype(np.float32, copy=False), n_items)
        sims = np.zeros(n_users, dtype=np.result_type(vals, self.Xn_T.data))
        accumulate_rows(sims, self.Xn_T, cols, vals)
        sims = sims.astype(np.float32, copy=False)
        if user >= 0:
            sims[user] = 0.0  # a user is not their own neighbour
        k = min(self.config.k, n_users)
        # else every user with a similarity, as csr_matrix(sims) keeps them
        cut = np.argpartition(-sims[None, :], k - 1, axis=1)[0, :k] if k < n_users else np.flatnonzero(sims)
        return cut, sims[cut]

    def heavy_cost(self, profiles: sp.csr_matrix) -> np.ndarray | None:
        """Similarities read every user of every profile item (then k neighbours' items)."""
        return self.SECONDS_PER_ENTRY * entries_read(profiles, self.Xn_T)

    def state(self) -> dict[str, np.ndarray]:
        return sparse_state("X", self.X)

    @classmethod
    def from_state(cls, config: UserKNNConfig, state: dict[str, np.ndarray]) -> UserKNN:
        m = cls(config)
        return m.fit(sparse_from_state("X", state), FitContext())
