"""The one interface every model implements.

A model is fitted on the aggregated user x item matrix and scores *profiles* (rows in item space)
rather than user ids: that way a known user, an unknown user with a few ``recent_product_ids``
(session-based) and a known user steered by a session are all scored by the same code. Models
that have per-user state (MF) use it when the caller passes the user's index.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class DataShape:
    n_users: int
    n_items: int
    nnz: int


@dataclass(frozen=True)
class FitContext:
    """Side information some models use (popularity, catalogue features); all optional."""

    item_category: np.ndarray | None = None
    item_sub_category: np.ndarray | None = None
    item_price_band: np.ndarray | None = None
    entry_last_ts: np.ndarray | None = None
    user_segment: np.ndarray | None = None  # demographic segment per user index, -1 unknown
    num_threads: int = 0
    seed: int = 42


class Model(ABC):
    """Fit on a user x item matrix; score profiles; persist as flat numpy arrays."""

    family: ClassVar[str]
    Config: ClassVar[type]

    def __init__(self, config: Any = None):
        self.config = config if config is not None else self.Config()

    @property
    def name(self) -> str:
        return self.family

    @classmethod
    def fits(cls, config: Any, shape: DataShape) -> str | None:
        """None if this model is sensible at this data size, else the reason it is skipped."""
        return None

    @abstractmethod
    def fit(self, X: sp.csr_matrix, ctx: FitContext) -> Model: ...

    @abstractmethod
    def score(self, profiles: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        """Dense float32 scores (len(profiles) x n_items); ``users`` holds indices or -1 (unknown)."""

    @abstractmethod
    def state(self) -> dict[str, np.ndarray]: ...

    @classmethod
    @abstractmethod
    def from_state(cls, config: Any, state: dict[str, np.ndarray]) -> Model: ...

    def params(self) -> dict[str, Any]:
        return asdict(self.config)


def sparse_state(prefix: str, m: sp.csr_matrix) -> dict[str, np.ndarray]:
    m = m.tocsr()
    return {
        f"{prefix}_data": m.data.astype(np.float32),
        f"{prefix}_indices": m.indices.astype(np.int32),
        f"{prefix}_indptr": m.indptr.astype(np.int64),
        f"{prefix}_shape": np.asarray(m.shape, dtype=np.int64),
    }


def sparse_from_state(prefix: str, state: dict[str, np.ndarray]) -> sp.csr_matrix:
    shape = tuple(int(x) for x in state[f"{prefix}_shape"])
    return sp.csr_matrix((state[f"{prefix}_data"], state[f"{prefix}_indices"], state[f"{prefix}_indptr"]), shape=shape)


class ItemItemModel(Model):
    """Models whose whole state is a sparse item x item matrix W: score = profile @ W."""

    W: sp.csr_matrix

    def score(self, profiles: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        return np.asarray((profiles @ self.W).toarray(), dtype=np.float32)

    def state(self) -> dict[str, np.ndarray]:
        return sparse_state("W", self.W)

    @classmethod
    def from_state(cls, config: Any, state: dict[str, np.ndarray]) -> ItemItemModel:
        m = cls(config)
        m.W = sparse_from_state("W", state)
        return m


def drop_diagonal(m: sp.csr_matrix) -> sp.csr_matrix:
    """Remove self-similarity: re-showing a user's own items is the serving layer's decision."""
    m = m.tocsr().astype(np.float32)
    m.setdiag(0)
    m.eliminate_zeros()
    return m
