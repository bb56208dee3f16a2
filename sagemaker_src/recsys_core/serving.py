"""How a trained model is served: the settings saved with it, and what is precomputed when it loads.

A shop's heaviest shoppers (wholesale buyers with thousands of order lines) are where one request
costs most: an item-item model reads the neighbours of every item in the profile, ALS folds in a
system built from all of them. ``HeavyShoppers`` precomputes, at load, what those few shoppers need
(their rows; their fold-in terms), within a memory budget, so every request costs about the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .models.base import Held, Model


@dataclass(frozen=True)
class ServingConfig:
    """Serving settings, saved in ``model.json`` (``train.py`` hyperparameters set them)."""

    heavy_ms: float = 1.0
    """A shopper whose row a model would take at least this long to score (estimated from the work it
    reads) gets that model's state precomputed when the model loads; 0 turns precomputing off."""
    heavy_memory_mb: float = 128.0
    """Memory per worker for that state, given to the costliest shoppers first."""
    retrieval_min_items: int = 1_000_000
    """From this many products on, requests score retrieved candidates instead of the whole catalogue
    (``recsys_core/retrieval.py``), and training builds an index over each embedding model's item vectors."""
    retrieval_candidates: int = 1000
    """Items each embedding model's index returns per request (and best sellers added to fill lists)."""
    index_recall: float = 0.98
    """Training tunes each index to find this share of a shopper's exact top 100 among its candidates."""
    index_exact_items: int = 2048
    """The longest item vectors, searched exactly rather than through the index (see retrieval.py)."""


@dataclass
class HeavyShoppers:
    """Per ensemble member: which shoppers have precomputed state (``slots[j][u]``, -1 none) and the state."""

    slots: list[np.ndarray | None]
    held: list[Held | None]

    @property
    def nbytes(self) -> int:
        return sum(h.nbytes for h in self.held if h is not None)

    @property
    def n_shoppers(self) -> int:
        return int(max((int((s >= 0).sum()) for s in self.slots if s is not None), default=0))

    def get(self, member: int, user: int) -> tuple[Held, int] | None:
        slots = self.slots[member]
        if user < 0 or slots is None or slots[user] < 0:
            return None
        held = self.held[member]
        return (held, int(slots[user])) if held is not None else None

    @classmethod
    def build(cls, models: list[Model], profiles: sp.csr_matrix, config: ServingConfig) -> HeavyShoppers:
        """The costliest (member, shopper) pairs above ``heavy_ms``, most costly first, within the budget."""
        n_users, n_items = profiles.shape
        cost, member, user = [np.zeros(0)], [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
        for j, model in enumerate(models):
            c = model.heavy_cost(profiles) if config.heavy_ms > 0 else None
            if c is not None:
                heavy = np.flatnonzero(c >= config.heavy_ms / 1000.0)
                cost.append(c[heavy])
                member.append(np.full(len(heavy), j))
                user.append(heavy)
        order = np.argsort(-np.concatenate(cost), kind="stable")
        member_arr, user_arr = np.concatenate(member)[order], np.concatenate(user)[order]
        size = np.array([m.held_bytes(n_items) for m in models], dtype=np.float64)
        fits = np.cumsum(size[member_arr]) <= config.heavy_memory_mb * 2**20  # the costliest first
        chosen = [user_arr[(member_arr == j) & fits] for j in range(len(models))]
        slots: list[np.ndarray | None] = []
        held: list[Held | None] = []
        for model, users in zip(models, chosen, strict=True):
            if not len(users):
                slots.append(None)
                held.append(None)
                continue
            users_arr = np.sort(users)
            slot = np.full(n_users, -1, dtype=np.int32)
            slot[users_arr] = np.arange(len(users_arr), dtype=np.int32)
            slots.append(slot)
            held.append(model.hold(profiles[users_arr], users_arr))
        return cls(slots, held)
