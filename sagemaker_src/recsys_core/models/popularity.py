"""Popularity: the baseline every model must beat, and the fallback for users we know nothing about."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .base import FitContext, Model, Sequences


@dataclass(frozen=True)
class PopularityConfig:
    #: 0 = all-time distinct users per item; > 0 = "trending": a user's interaction loses half its
    #: weight every ``half_life_fraction`` of the log's time span.
    half_life_fraction: float = 0.0


def top_items(values: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` largest values, ties by index (sorted by index, not by value)."""
    n = min(n, len(values))
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    if n == len(values):
        return np.arange(n)
    nth = values[np.argpartition(-values, n - 1)[n - 1]]
    above, tied = np.flatnonzero(values > nth), np.flatnonzero(values == nth)
    return np.sort(np.concatenate([above, tied[: n - len(above)]]))


def best_of(model: Model, values: np.ndarray, n: int) -> np.ndarray:
    """``top_items(values, n)``, computed once per model and n (a partition of the catalogue per request
    would cost more than the rest of the request)."""
    cache = model.__dict__.setdefault("_best_items", {})
    if n not in cache:
        cache[n] = top_items(values, n)
    return cache[n]


class Popularity(Model):
    family = "popularity"
    Config = PopularityConfig

    @property
    def name(self) -> str:
        return "popularity" if self.config.half_life_fraction <= 0 else f"trending(h={self.config.half_life_fraction})"

    def fit(self, X: sp.csr_matrix, ctx: FitContext) -> Popularity:
        X = X.tocsr()
        if self.config.half_life_fraction > 0 and ctx.entry_last_ts is not None and X.nnz:
            ts = ctx.entry_last_ts  # per-entry last timestamp, aligned with X.data
            span = max(float(ts.max() - ts.min()), 1.0)
            w = 0.5 ** ((ts.max() - ts) / (self.config.half_life_fraction * span))
            pop = np.bincount(X.indices, weights=w, minlength=X.shape[1])
        else:
            pop = np.bincount(X.indices, minlength=X.shape[1]).astype(np.float64)
        self.pop = (pop / max(pop.max(initial=0.0), 1e-12)).astype(np.float32)
        return self

    def score(self, profiles: sp.csr_matrix, users: np.ndarray, *, sequences: Sequences | None = None) -> np.ndarray:
        return np.broadcast_to(self.pop, (profiles.shape[0], len(self.pop))).copy()

    def score_row(self, indices: np.ndarray, data: np.ndarray, user: int, n_items: int, *,
                  sequence: np.ndarray | None = None, candidates: np.ndarray | None = None) -> np.ndarray:
        return self.pop.copy() if candidates is None else self.pop[candidates]

    def candidates(self, indices: np.ndarray, data: np.ndarray, user: int, n_items: int, *,
                   sequence: np.ndarray | None = None, limit: int = 1000) -> np.ndarray | None:
        """The ``limit`` best sellers (ties by index)."""
        return best_of(self, self.pop, limit)

    def state(self) -> dict[str, np.ndarray]:
        return {"pop": self.pop}

    @classmethod
    def from_state(cls, config: PopularityConfig, state: dict[str, np.ndarray]) -> Popularity:
        m = cls(config)
        m.pop = state["pop"]
        return m
