"""How fitted models turn into one ranking: the same code scores validation, test and live requests.

An ``Ensemble`` is one model or a weighted blend of several, plus knobs chosen on validation:
``decay_half_life`` and ``recency_boost`` (how a user's items are weighted by how many newer items
the user has when their profile is scored; see ``History.profile``) and ``repeat_weight`` (how
much a user's own, not excluded, items - viewed or carted but not bought - are shown again; 0 for
logs where everything interacted with is excluded anyway).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .features import History
from .models.base import Model, Sequences, distinct, embedding_query, embedding_scores, sorted_lookup
from .retrieval import ItemIndex
from .rules import sampled_top
from .serving import HeavyShoppers, ServingConfig


def row_max_normalize(scores: np.ndarray) -> np.ndarray:
    """Scale each row so its largest magnitude is 1, making scores of different models blendable."""
    peak = np.maximum(scores.max(axis=1, keepdims=True), -scores.min(axis=1, keepdims=True))  # |.|max, no copy
    peak[peak == 0] = 1.0
    return scores / peak


def sequences_for(reader: Model | Ensemble, hist: History, users: np.ndarray) -> Sequences | None:
    """The users' item sequences (oldest -> newest) as ``reader`` (a model or an ensemble) reads them;
    None when it reads none, so batch scoring builds them only for sequential models."""
    n = reader.sequence_length
    return hist.sequences(users, n) if n > 0 else None


@dataclass
class Ensemble:
    models: list[Model]
    weights: list[float]
    decay_half_life: float = 0.0
    repeat_weight: float = 0.0
    popularity: np.ndarray | None = None  # tie-break and back-fill when models have no opinion
    names: list[str] = field(default_factory=list)
    recency_boost: float = 0.0
    #: Precomputed state of the costliest shoppers (``prepare_serving``; serving only, never saved).
    heavy: HeavyShoppers | None = field(default=None, repr=False, compare=False)
    #: Retrieval indexes of embedding members, by member position (``retrieve``; built by train.py).
    indexes: dict[int, ItemIndex] = field(default_factory=dict, repr=False, compare=False)

    @property
    def name(self) -> str:
        parts = [m.name if w == 1.0 else f"{w:g}*{m.name}" for m, w in zip(self.models, self.weights, strict=True)]
        extra = []
        if self.decay_half_life and self.recency_boost:
            extra.append(f"recent x{1 + self.recency_boost:g} (half-life {self.decay_half_life:g})")
        elif self.decay_half_life:
            extra.append(f"decay={self.decay_half_life:g}")
        if self.repeat_weight:
            extra.append(f"repeat={self.repeat_weight:g}")
        return " + ".join(parts) + (f" [{', '.join(extra)}]" if extra else "")

    def profiles(self, hist: History) -> sp.csr_matrix:
        """Every user's profile as this ensemble scores it (recency weighting applied)."""
        return hist.profile(self.decay_half_life, self.recency_boost)

    @property
    def sequence_length(self) -> int:
        """The longest item sequence any member reads (0: none reads sequences, callers skip them)."""
        return max((m.sequence_length for m in self.models), default=0)

    def score(self, profiles: sp.csr_matrix, users: np.ndarray, *, sequences: Sequences | None = None) -> np.ndarray:
        """Dense scores for profile rows (from ``profiles``) of users (-1 = unknown); ``sequences`` as
        in ``Model.score``, passed to every member."""
        total = np.zeros(profiles.shape, dtype=np.float32)
        for model, weight in zip(self.models, self.weights, strict=True):
            total += weight * row_max_normalize(model.score(profiles, users, sequences=sequences))
        if self.repeat_weight:
            total += self.repeat_weight * row_max_normalize(profiles.toarray().astype(np.float32))
        if self.popularity is not None:
            total += 1e-4 * self.popularity[None, :]
        return total

    def score_row(self, indices: np.ndarray, data: np.ndarray, user: int, n_items: int, *,
                  sequence: np.ndarray | None = None, candidates: np.ndarray | None = None) -> np.ndarray:
        """``score`` for one profile row given as its stored CSR entries (duplicates and order kept):
        the serving path, with no scipy matrix built. Identical results, operation for operation (a
        member's precomputed row for a heavy shopper, ``prepare_serving``, is that row).

        With ``candidates`` (item indices) only those items are scored, and each member's scores are
        scaled by their largest magnitude *among the candidates*: equal to the full row when the
        candidates hold each member's largest-magnitude item (retrieval takes every member's best
        items), an approximation otherwise. ``sequence`` goes to every member.
        """
        raws = []
        for j, model in enumerate(self.models):
            got = self.heavy.get(j, user) if self.heavy is not None else None
            raw = got[0].row(got[1], candidates) if got is not None else None
            if raw is None:
                raw = model.score_row(indices, data, user, n_items, sequence=sequence, candidates=candidates)
            raws.append(raw)
        return self._blend(raws, indices, data, n_items, candidates)

    def score_steered(self, user: int, session: np.ndarray, peak: float, indices: np.ndarray, data: np.ndarray,
                      n_items: int, *, sequence: np.ndarray | None = None,
                      candidates: np.ndarray | None = None) -> np.ndarray:
        """``score_row(indices, data, -1, ...)`` of a known shopper's profile plus ``peak`` on each session
        item (the summed row is ``indices``/``data``): members holding the shopper's state (``prepare_serving``)
        add the session to it, equal to scoring the summed row up to float rounding; the others score it."""
        raws = []
        for j, model in enumerate(self.models):
            got = self.heavy.get(j, user) if self.heavy is not None else None
            raw = got[0].steered(got[1], session, peak, n_items, candidates) if got is not None else None
            if raw is None:
                raw = model.score_row(indices, data, -1, n_items, sequence=sequence, candidates=candidates)
            raws.append(raw)
        return self._blend(raws, indices, data, n_items, candidates)

    @property
    def cannot_retrieve(self) -> list[str]:
        """Members that cannot name their candidates (no ``candidates``, no index): requests score every item."""
        return [m.name for j, m in enumerate(self.models)
                if j not in self.indexes and type(m).candidates is Model.candidates]

    def retrieve(self, indices: np.ndarray, data: np.ndarray, user: int, n_items: int, *,
                 sequence: np.ndarray | None = None, steer: tuple[int, np.ndarray, float] | None = None,
                 extra: np.ndarray | None = None, limit: int = 1000) -> tuple[np.ndarray, np.ndarray] | None:
        """(candidates sorted, their scores): each member's candidates (``Model.candidates``; an embedding
        member's ``limit`` nearest item vectors from its index), the profile's items when repeats count, and
        ``extra`` (e.g. best sellers to fill a list, a promotion's products), scored as ``score_row`` scores
        them (``steer`` = (known shopper, session, peak): ``score_steered`` of that shopper). None when a
        member cannot name candidates: score every item then."""
        parts, queries = [np.zeros(0, dtype=np.int64)], {}
        for j, model in enumerate(self.models):
            if j in self.indexes:
                queries[j] = model.query_vector(indices, data, user, sequence)
                parts.append(self.indexes[j].search(embedding_query(model, queries[j])[None, :], limit)[0])
            else:
                got = model.candidates(indices, data, user, n_items, sequence=sequence, limit=limit)
                if got is None:
                    return None
                parts.append(got)
        if self.repeat_weight:
            parts.append(indices)
        if extra is not None:
            parts.append(extra)
        cand = distinct(np.concatenate([np.asarray(p, dtype=np.int64) for p in parts]))
        raws = []
        for j, model in enumerate(self.models):
            if j in queries:
                raws.append(embedding_scores(model, queries[j], cand))
                continue
            got = self.heavy.get(j, steer[0] if steer else user) if self.heavy is not None else None
            raw = None
            if got is not None:
                raw = got[0].steered(got[1], steer[1], steer[2], n_items, cand) if steer else got[0].row(got[1], cand)
            if raw is None:
                raw = model.score_row(indices, data, user, n_items, sequence=sequence, candidates=cand)
            raws.append(raw)
        return cand, self._blend(raws, indices, data, n_items, cand)

    def prepare_serving(self, profiles: sp.csr_matrix, config: ServingConfig) -> None:
        """Precompute what the costliest shoppers' requests need (``serving.HeavyShoppers``)."""
        self.heavy = HeavyShoppers.build(self.models, profiles, config)

    def _blend(self, raws: list[np.ndarray], indices: np.ndarray, data: np.ndarray, n_items: int,
               candidates: np.ndarray | None) -> np.ndarray:
        width = n_items if candidates is None else len(candidates)
        total = None  # the first term as is: 0 + x is x, one pass over the catalogue fewer
        for raw, weight in zip(raws, self.weights, strict=True):
            term = row_max_normalize(raw[None, :])
            term *= np.float32(weight) if term.dtype == np.float32 else weight
            if total is None:
                total = term.astype(np.float32, copy=False)
            else:
                total += term
        if total is None:
            total = np.zeros((1, width), dtype=np.float32)
        if self.repeat_weight:
            total += self.repeat_weight * _repeat_row(indices, data, n_items, candidates)
        if self.popularity is not None:
            total += 1e-4 * (self.popularity[None, :] if candidates is None else self.popularity[None, candidates])
        return total[0]


def _repeat_row(indices: np.ndarray, data: np.ndarray, n_items: int, candidates: np.ndarray | None) -> np.ndarray:
    """The profile row itself, max-normalised, as (1, n_items) or (1, len(candidates)); duplicates
    summed in stored order as ``toarray()`` does, without a catalogue-sized row when candidates are given."""
    if candidates is None:
        dense = np.zeros((1, n_items), dtype=data.dtype)
        np.add.at(dense[0], indices, data)
        return row_max_normalize(dense.astype(np.float32))
    cols, where = np.unique(indices, return_inverse=True)
    sums = np.zeros(len(cols), dtype=data.dtype)
    np.add.at(sums, where, data)
    sums = sums.astype(np.float32)
    # the full row's empty entries take part in its max and min
    seen = np.append(sums, np.float32(0.0)) if len(cols) < n_items else sums
    peak = max(float(seen.max()), -float(seen.min())) if len(seen) else 0.0
    at, hit = sorted_lookup(cols, np.asarray(candidates))
    out = np.zeros((1, len(candidates)), dtype=np.float32)
    out[0, hit] = sums[at[hit]]
    return out / np.float32(peak or 1.0)


def top_k(scores: np.ndarray, k: int, exclude: sp.csr_matrix | None = None) -> list[np.ndarray]:
    """Per row, indices of the k best items (best first), never one flagged in ``exclude``."""
    scores = np.ascontiguousarray(scores, dtype=np.float32)
    if exclude is not None and exclude.nnz:
        scores = scores.copy()
        exclude = exclude.tocoo()
        scores[exclude.row, exclude.col] = -np.inf
    n_rows, n_items = scores.shape
    k = min(k, n_items)
    if k <= 0:
        return [np.zeros(0, dtype=np.int64) for _ in range(n_rows)]
    if n_rows == 1:
        return [_top_k_row(scores[0], k)]
    # Exact selection without a full sort: any lower bound on a row's k-th best value leaves few
    # candidates above it. The k-th best of every 16th column is such a bound and is cheap; if ties
    # flood it, the exact k-th value is used. Candidates are ordered by score, then item index.
    stride = 16
    bound = None
    if n_items >= 64 * k and n_items // stride >= k:
        bound = -np.partition(-scores[:, ::stride], k - 1, axis=1)[:, k - 1]
        if np.count_nonzero(scores >= bound[:, None]) > 64 * k * n_rows:
            bound = None
    if bound is None:
        bound = -np.partition(-scores, k - 1, axis=1)[:, k - 1] if k < n_items else np.full(n_rows, -np.inf)
    mask = scores >= bound[:, None]
    if not np.isfinite(bound).all():
        mask &= np.isfinite(scores)
    flat = np.flatnonzero(mask)  # much faster than a 2-D nonzero
    rows, cols = np.divmod(flat, n_items)
    vals = scores.ravel()[flat]
    order = np.lexsort((cols, -vals, rows))
    rows, cols = rows[order], cols[order].astype(np.int64)
    starts = np.searchsorted(rows, np.arange(n_rows))
    ends = np.minimum(np.searchsorted(rows, np.arange(n_rows), side="right"), starts + k)
    return [cols[a:b] for a, b in zip(starts, ends, strict=True)]


def _top_k_row(scores: np.ndarray, k: int) -> np.ndarray:
    """``top_k`` for a single row (one request), same order and same items with fewer array passes:
    everything at or above the k-th best value, finite only, by score then item index."""
    n_items = len(scores)
    top = sampled_top(scores, k)  # a large catalogue: no whole-row partition
    if top is not None:
        return top.astype(np.int64)
    bound = -np.partition(-scores, k - 1)[k - 1] if k < n_items else -np.inf
    mask = scores >= bound
    if not np.isfinite(bound):
        mask &= np.isfinite(scores)
    cand = np.flatnonzero(mask)
    order = np.lexsort((cand, -scores[cand]))
    return cand[order[:k]].astype(np.int64)
