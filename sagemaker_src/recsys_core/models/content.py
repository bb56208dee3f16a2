"""Content-based scoring for cold start: what a user's history says about categories and price.

``Content`` scores items by the user's affinity to the item's category, sub-category and
(category, price band), plus a small popularity tie-break. It is the only model that can rank an
item nobody has interacted with yet. ``SegmentPopularity`` answers users who have a demographic
record (age band x gender x location) but no history: what similar people interact with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .base import FitContext, Model, Sequences, sorted_lookup, sparse_from_state, sparse_state
from .popularity import best_of


@dataclass(frozen=True)
class ContentConfig:
    category_weight: float = 1.0
    sub_category_weight: float = 1.0
    price_band_weight: float = 0.5
    popularity_weight: float = 0.1


def item_feature_matrix(ctx: FitContext, n_items: int, config: ContentConfig) -> sp.csr_matrix:
    """One-hot item x feature matrix (category | sub-category | category x price band), weighted."""
    blocks = []
    for codes, weight in (
        (ctx.item_category, config.category_weight),
        (ctx.item_sub_category, config.sub_category_weight),
    ):
        if codes is None or weight == 0:
            continue
        blocks.append((np.asarray(codes, dtype=np.int64), weight))
    if ctx.item_category is not None and ctx.item_price_band is not None and config.price_band_weight:
        cat = np.asarray(ctx.item_category, dtype=np.int64)
        band = np.asarray(ctx.item_price_band, dtype=np.int64)
        blocks.append((np.where((cat >= 0) & (band >= 0), cat * 16 + band, -1), config.price_band_weight))
    mats = []
    for codes, weight in blocks:
        ok = codes >= 0
        _, dense = np.unique(codes[ok], return_inverse=True)
        m = sp.csr_matrix(
            (np.full(ok.sum(), weight, dtype=np.float32), (np.nonzero(ok)[0], dense)),
            shape=(n_items, int(dense.max(initial=-1)) + 1),
        )
        mats.append(m)
    return sp.hstack(mats).tocsr() if mats else sp.csr_matrix((n_items, 0), dtype=np.float32)


class Content(Model):
    family = "content"
    Config = ContentConfig
    needs_item_features = True

    def fit(self, X: sp.csr_matrix, ctx: FitContext) -> Content:
        self.A = item_feature_matrix(ctx, X.shape[1], self.config)
        pop = np.bincount(X.indices, minlength=X.shape[1]).astype(np.float32)
        self.pop = pop / max(pop.max(initial=0.0), 1.0)
        return self

    def score(self, profiles: sp.csr_matrix, users: np.ndarray, *, sequences: Sequences | None = None) -> np.ndarray:
        sums = np.asarray(profiles.sum(axis=1)).ravel()
        sums[sums == 0] = 1.0
        affinity = sp.diags(1.0 / sums) @ profiles @ self.A
        s = np.asarray((affinity @ self.A.T).toarray(), dtype=np.float32)
        return s + self.config.popularity_weight * self.pop[None, :]

    def state(self) -> dict[str, np.ndarray]:
        return sparse_state("A", self.A) | {"pop": self.pop}

    @classmethod
    def from_state(cls, config: ContentConfig, state: dict[str, np.ndarray]) -> Content:
        m = cls(config)
        m.A, m.pop = sparse_from_state("A", state), state["pop"]
        return m


@dataclass(frozen=True)
class SegmentPopConfig:
    n_top: int = 1000  # items kept per segment; the rest fall back to overall popularity


class SegmentPop(Model):
    """Popularity among users of the same demographic segment: a hybrid signal for warm users too,
    since tastes follow age, gender and place. Needs a users table; unknown segments get overall
    popularity."""

    family = "segment_pop"
    Config = SegmentPopConfig
    needs_user_features = True

    def fit(self, X: sp.csr_matrix, ctx: FitContext) -> SegmentPop:
        if ctx.user_segment is None:
            raise ValueError("segment_pop needs user demographics (a users table)")
        self.segment_of = np.asarray(ctx.user_segment, dtype=np.int32)
        top = SegmentPopularity.fit(X, self.segment_of, self.config.n_top).top
        peak = np.asarray(top.max(axis=1).toarray()).ravel()
        peak[peak == 0] = 1.0
        self.top = (sp.diags(1.0 / peak) @ top).tocsr().astype(np.float32)
        self.top.sort_indices()  # score_row looks items up in a segment's row
        pop = np.bincount(X.indices, minlength=X.shape[1]).astype(np.float32)
        self.pop = pop / max(pop.max(initial=0.0), 1.0)
        return self

    def score(self, profiles: sp.csr_matrix, users: np.ndarray, *, sequences: Sequences | None = None) -> np.ndarray:
        users = np.asarray(users)
        seg = np.where(users >= 0, self.segment_of[np.maximum(users, 0)], -1)
        out = np.broadcast_to(0.01 * self.pop, (len(users), len(self.pop))).copy()
        known = np.nonzero(seg >= 0)[0]
        if len(known):
            out[known] += self.top[seg[known]].toarray()
        out[seg < 0] = self.pop
        return out

    def score_row(self, indices: np.ndarray, data: np.ndarray, user: int, n_items: int, *,
                  sequence: np.ndarray | None = None, candidates: np.ndarray | None = None) -> np.ndarray:
        """``score`` for one user: the segment's stored entries added to the popularity floor, no dense
        segment row built (a million-product catalogue makes that the cost of a request)."""
        seg = int(self.segment_of[user]) if user >= 0 else -1
        if seg < 0:
            return self.pop.copy() if candidates is None else self.pop[candidates]
        lo, hi = self.top.indptr[seg], self.top.indptr[seg + 1]
        cols, vals = self.top.indices[lo:hi], self.top.data[lo:hi]  # each item once, sorted
        if candidates is None:
            out = 0.01 * self.pop
            out[cols] += vals
            return out
        out = 0.01 * self.pop[candidates]
        at, hit = sorted_lookup(cols, np.asarray(candidates))
        out[hit] += vals[at[hit]]
        return out

    def candidates(self, indices: np.ndarray, data: np.ndarray, user: int, n_items: int, *,
                   sequence: np.ndarray | None = None, limit: int = 1000) -> np.ndarray | None:
        """The shopper's segment favourites and the overall best sellers."""
        seg = int(self.segment_of[user]) if user >= 0 else -1
        best = best_of(self, self.pop, limit)
        if seg < 0:
            return best
        return np.union1d(self.top.indices[self.top.indptr[seg] : self.top.indptr[seg + 1]], best)

    def state(self) -> dict[str, np.ndarray]:
        return sparse_state("top", self.top) | {"pop": self.pop, "segment_of": self.segment_of}

    @classmethod
    def from_state(cls, config: SegmentPopConfig, state: dict[str, np.ndarray]) -> SegmentPop:
        m = cls(config)
        m.top, m.pop, m.segment_of = sparse_from_state("top", state), state["pop"], state["segment_of"]
        m.top.sort_indices()  # models saved before the candidates keyword kept the matmul's order
        return m


class SegmentPopularity:
    """Top items per demographic segment, from users that have both a segment and a history."""

    def __init__(self, top: sp.csr_matrix):
        self.top = top  # segments x items, normalised counts (top-n per segment kept)

    @classmethod
    def fit(cls, X: sp.csr_matrix, user_segment: np.ndarray, n_top: int = 200) -> SegmentPopularity:
        from ..features import keep_top_k_per_row

        seg = np.asarray(user_segment)
        ok = seg >= 0
        n_seg = int(seg.max(initial=-1)) + 1
        onehot = sp.csr_matrix((np.ones(ok.sum(), np.float32), (seg[ok], np.nonzero(ok)[0])), shape=(n_seg, X.shape[0]))
        binary = X.copy().astype(np.float32)
        binary.data[:] = 1.0
        counts = keep_top_k_per_row((onehot @ binary).tocsr(), n_top)
        return cls(counts)

    def scores(self, segment: int) -> np.ndarray | None:
        if segment < 0 or segment >= self.top.shape[0] or self.top[segment].nnz == 0:
            return None
        return np.asarray(self.top[segment].toarray()).ravel()
