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

from ..features import range_positions

#: Item sequences of many profile rows, CSR-style: row r's items (oldest -> newest) are
#: ``items[indptr[r]:indptr[r + 1]]``.
Sequences = tuple[np.ndarray, np.ndarray]


def one_sequence(sequence: np.ndarray | None) -> Sequences | None:
    """``Sequences`` holding one row (None stays None)."""
    if sequence is None:
        return None
    return np.array([0, len(sequence)], dtype=np.int64), np.asarray(sequence, dtype=np.int64)


@dataclass(frozen=True)
class DataShape:
    """What a model's cost and fitness depend on; derived from the data, never from the machine."""

    n_users: int
    n_items: int
    nnz: int
    #: Sum over users of (items per user)^2: the co-occurring pairs an item-item model touches.
    user_pairs: float = 0.0


#: Cost estimates are in "reference seconds": seconds on the 2-core build machine, from the data's
#: shape only, so the work selection does (and so the model it picks) is the same on any machine.
EVAL_SECONDS_PER_CELL = 2.5e-8  # scoring + top-k of one validation user x one item


@dataclass(frozen=True)
class FitContext:
    """Side information some models use (popularity, catalogue features); all optional."""

    item_category: np.ndarray | None = None
    item_sub_category: np.ndarray | None = None
    item_price_band: np.ndarray | None = None
    entry_last_ts: np.ndarray | None = None
    entry_recency: np.ndarray | None = None  # per entry of X: 0 = the user's most recent item
    user_segment: np.ndarray | None = None  # demographic segment per user index, -1 unknown
    num_threads: int = 0
    seed: int = 42
    #: (user indices, next items per user) of the selection's validation split: models that train
    #: iteratively (SASRec) stop early on it. None outside selection.
    validation: tuple[np.ndarray, list[np.ndarray]] | None = None


class Model(ABC):
    """Fit on a user x item matrix; score profiles; persist as flat numpy arrays."""

    family: ClassVar[str]
    Config: ClassVar[type]

    def __init__(self, config: Any = None):
        self.config = config if config is not None else self.Config()

    @property
    def name(self) -> str:
        return self.family

    #: Hyperparameters selection may tune, as (config field, values in order); the config's
    #: default is the starting point of a coordinate search along these axes.
    search_axes: ClassVar[tuple[tuple[str, tuple[Any, ...]], ...]] = ()

    @classmethod
    def fits(cls, config: Any, shape: DataShape) -> str | None:
        """None if this model is sensible at this data size, else the reason it is skipped."""
        return None

    @classmethod
    def cost(cls, config: Any, shape: DataShape) -> float:
        """Estimated fit time in reference seconds (see ``EVAL_SECONDS_PER_CELL``)."""
        return 1e-8 * shape.nnz

    @classmethod
    def bounded(cls, config: Any, shape: DataShape, reference_seconds: float) -> Any:
        """``config`` bounded to about ``reference_seconds`` of fit work: families that train until early
        stopping says stop (SASRec) cap their epochs so one fit cannot eat the work the blend and the
        other families need; the others return it as is."""
        return config

    def charged(self, shape: DataShape) -> float | None:
        """Reference seconds this fit did by the cost model once it is done (SASRec: the epochs it actually
        ran, where ``cost`` assumed a typical count); None = ``cost``'s estimate stands."""
        return None

    @abstractmethod
    def fit(self, X: sp.csr_matrix, ctx: FitContext) -> Model: ...

    @property
    def sequence_length(self) -> int:
        """How many of a shopper's newest items this model reads from ``sequence(s)``; 0 = it does not
        read them (callers then skip building sequences)."""
        return 0

    @abstractmethod
    def score(self, profiles: sp.csr_matrix, users: np.ndarray, *, sequences: Sequences | None = None) -> np.ndarray:
        """Dense float32 scores (len(profiles) x n_items); ``users`` holds indices or -1 (unknown).

        ``sequences`` (``(indptr, items)``, one oldest -> newest item sequence per profile row) is read by
        sequential models and ignored by the others.
        """

    def score_row(self, indices: np.ndarray, data: np.ndarray, user: int, n_items: int, *,
                  sequence: np.ndarray | None = None, candidates: np.ndarray | None = None) -> np.ndarray:
        """Scores of one profile row given as its stored CSR entries, for serving one request.

        Without ``candidates``: shape (n_items,), equal to ``score(row, [user])[0]`` bit for bit. With
        ``candidates`` (item indices): shape (len(candidates),), the full row's values at those positions,
        so a retrieval step can rank a few thousand items of a catalogue of millions. ``sequence`` is the
        shopper's items oldest -> newest (sequential models read it). This default builds the row; models
        on the request path override it to skip scipy's per-call overhead, which dominates one-row requests.
        """
        row = sp.csr_matrix((data, indices, np.array([0, len(indices)])), shape=(1, n_items))
        out = self.score(row, np.array([user]), sequences=one_sequence(sequence))[0]
        return out if candidates is None else out[candidates]

    # ------------------------------------------------------------ serving: retrieval (huge catalogues)
    def candidates(self, indices: np.ndarray, data: np.ndarray, user: int, n_items: int, *,
                   sequence: np.ndarray | None = None, limit: int = 1000) -> np.ndarray | None:
        """Items this model scores highest for the row (about ``limit`` of them, or every item it scores
        above zero), without scoring the catalogue; None if it cannot say (the server then scores every
        item). Embedding models get theirs from a ``retrieval.ItemIndex`` over ``item_vectors`` instead."""
        return None

    # ------------------------------------------------------------ serving: shoppers with long histories
    #: Request-path seconds per unit of ``heavy_cost``'s work (one stored weight read and added).
    SECONDS_PER_ENTRY: ClassVar[float] = 2e-8

    def heavy_cost(self, profiles: sp.csr_matrix) -> np.ndarray | None:
        """Estimated seconds ``score_row`` takes on each of these profile rows (its own user's or folded in);
        None where every row is cheap. The server precomputes what the costliest shoppers need
        (``serving.HeavyShoppers``), so a wholesale buyer with thousands of items is answered as fast as anyone."""
        return None

    def hold(self, profiles: sp.csr_matrix, users: np.ndarray) -> Held:
        """What to keep for these (costly) shoppers: by default their rows, exactly as ``score`` gives them
        (equal to ``score_row`` bit for bit)."""
        return HeldRows(np.ascontiguousarray(self.score(profiles, users), dtype=np.float32), None)

    def held_bytes(self, n_items: int) -> int:
        """Memory ``hold`` takes per shopper."""
        return 4 * n_items

    @abstractmethod
    def state(self) -> dict[str, np.ndarray]: ...

    @classmethod
    @abstractmethod
    def from_state(cls, config: Any, state: dict[str, np.ndarray]) -> Model: ...

    def params(self) -> dict[str, Any]:
        return asdict(self.config)

    def refit_config(self) -> Any:
        """The config that repeats this fit on all training rows (models that learn, e.g., an epoch
        count from early stopping return it fixed); most models: their config as is."""
        return self.config

    def warm_start(self, fitted: Model, item_rows: np.ndarray) -> bool:
        """Start the next ``fit`` from ``fitted`` (this family, fitted by selection on part of the rows) rather
        than from scratch; ``item_rows[i]`` is ``fitted``'s index of this fit's item i (-1: an item it never
        saw). Models that train for minutes (SASRec) fine-tune instead of retraining; False = not supported,
        the fit starts from scratch."""
        return False

    def fit_note(self) -> str | None:
        """What the fit decided about itself that the training log should say (SASRec: where early
        stopping stopped); None for models with nothing to report."""
        return None


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


class Held:
    """A model's precomputed state for a few shoppers (``slot`` = their position in it)."""

    nbytes: int = 0

    def row(self, slot: int, candidates: np.ndarray | None) -> np.ndarray | None:
        """The shopper's own row (at ``candidates``), or None: score it as usual."""
        return None

    def steered(self, slot: int, session: np.ndarray, peak: float, n_items: int,
                candidates: np.ndarray | None) -> np.ndarray | None:
        """The row of the shopper's profile plus ``peak`` on each session item (scored as a profile without a
        user, as the server does for a known shopper with a session), or None: score the summed row as usual."""
        return None


class HeldRows(Held):
    """Raw score rows; with ``linear`` (a model whose scores are linear in the profile) a session adds its
    own row, so steered requests reuse them too."""

    def __init__(self, rows: np.ndarray, linear: Model | None) -> None:
        self.rows, self.linear, self.nbytes = rows, linear, rows.nbytes

    def row(self, slot: int, candidates: np.ndarray | None) -> np.ndarray | None:
        return self.rows[slot] if candidates is None else self.rows[slot, candidates]

    def steered(self, slot: int, session: np.ndarray, peak: float, n_items: int,
                candidates: np.ndarray | None) -> np.ndarray | None:
        """(profile + peak x session) @ W = profile @ W + (peak x session) @ W: equal to scoring the summed row
        up to float rounding (the sums run in another order), not bit for bit."""
        if self.linear is None:
            return None
        extra = self.linear.score_row(session.astype(np.int32), np.full(len(session), peak, np.float32), -1, n_items,
                                      candidates=candidates)
        return self.row(slot, candidates) + extra


class ItemItemModel(Model):
    """Models whose whole state is a sparse item x item matrix W: score = profile @ W."""

    W: sp.csr_matrix

    def heavy_cost(self, profiles: sp.csr_matrix) -> np.ndarray | None:
        """Stored weights a row reads: the W row lengths of its items."""
        return self.SECONDS_PER_ENTRY * entries_read(profiles, self.W)

    def hold(self, profiles: sp.csr_matrix, users: np.ndarray) -> Held:
        return HeldRows(np.ascontiguousarray(self.score(profiles, users), dtype=np.float32), self)

    def score(self, profiles: sp.csr_matrix, users: np.ndarray, *, sequences: Sequences | None = None) -> np.ndarray:
        return np.asarray((profiles @ self.W).toarray(), dtype=np.float32)

    def score_row(self, indices: np.ndarray, data: np.ndarray, user: int, n_items: int, *,
                  sequence: np.ndarray | None = None, candidates: np.ndarray | None = None) -> np.ndarray:
        dtype = np.result_type(data, self.W.data)
        if candidates is not None:
            return accumulate_rows_at(self.W, indices, data, candidates, dtype).astype(np.float32, copy=False)
        out = np.zeros(self.W.shape[1], dtype=dtype)
        accumulate_rows(out, self.W, indices, data)
        return out.astype(np.float32, copy=False)

    def candidates(self, indices: np.ndarray, data: np.ndarray, user: int, n_items: int, *,
                   sequence: np.ndarray | None = None, limit: int = 1000) -> np.ndarray | None:
        """The stored neighbours of the row's items: every item this model scores other than zero."""
        return rows_support(self.W, indices)

    def state(self) -> dict[str, np.ndarray]:
        return sparse_state("W", self.W)

    @classmethod
    def from_state(cls, config: Any, state: dict[str, np.ndarray]) -> ItemItemModel:
        m = cls(config)
        m.W = sparse_from_state("W", state)
        return m


def rows_support(M: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
    """The distinct columns stored in these rows of M (sorted)."""
    rows = np.asarray(rows, dtype=np.int64)
    starts = M.indptr[rows]
    return distinct(M.indices[range_positions(starts, M.indptr[rows + 1] - starts)])


def is_embedding(model: Model) -> bool:
    """Whether the model scores ``item_vectors() @ query_vector(...)`` (plus ``item_bias()`` if it has one)."""
    return callable(getattr(model, "item_vectors", None)) and callable(getattr(model, "query_vector", None))


def embedding_vectors(model: Any) -> np.ndarray:
    """The vectors an index searches: ``item_vectors``, with ``item_bias`` as one more coordinate if any."""
    Y = model.item_vectors()
    bias = getattr(model, "item_bias", None)
    return np.hstack([Y, bias()[:, None]]).astype(np.float32) if callable(bias) else Y


def embedding_query(model: Any, query: np.ndarray) -> np.ndarray:
    """The query vector matching ``embedding_vectors`` (a 1 against the bias coordinate)."""
    q = np.asarray(query, dtype=np.float32)
    return np.append(q, np.float32(1.0)) if callable(getattr(model, "item_bias", None)) else q


def embedding_scores(model: Any, query: np.ndarray, candidates: np.ndarray | None) -> np.ndarray:
    """An embedding model's scores from its query vector, at ``candidates`` (None: every item)."""
    Y = model.item_vectors()
    Y = Y if candidates is None else Y[candidates]
    out = (np.asarray(query, dtype=np.float32)[None, :] @ Y.T)[0]
    bias = getattr(model, "item_bias", None)
    if callable(bias):
        out = out + (bias() if candidates is None else bias()[candidates])
    return out


def entries_read(profiles: sp.csr_matrix, M: sp.csr_matrix) -> np.ndarray:
    """Per profile row, the stored entries of M's rows at its items (what ``accumulate_rows`` reads)."""
    per_entry = np.diff(M.indptr)[profiles.indices].astype(np.float64)
    rows = np.repeat(np.arange(profiles.shape[0]), np.diff(profiles.indptr))
    return np.bincount(rows, weights=per_entry, minlength=profiles.shape[0])


def item_item_cost(k: int, shape: DataShape) -> float:
    """Reference seconds of an all-pairs top-k search: co-occurring pairs, plus sorting k per item."""
    return 1e-7 * shape.user_pairs + 2e-8 * shape.n_items * k + 1e-8 * shape.nnz


def drop_diagonal(m: sp.csr_matrix) -> sp.csr_matrix:
    """Remove self-similarity: re-showing a user's own items is the serving layer's decision."""
    m = m.tocsr().astype(np.float32)
    m.setdiag(0)
    m.eliminate_zeros()
    return m


# ------------------------------------------------------------------- one-row sparse arithmetic
# The single-request path must reproduce scipy's results bit for bit, so these helpers repeat the
# exact float operations (and their order) of scipy's CSR kernels on one row, in plain numpy.


def row_entries(M: sp.csr_matrix, rows: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(columns, weighted values) of ``weights[j] * M[rows[j]]`` for every j, in stored order."""
    rows = np.asarray(rows)
    if not len(rows):
        return np.zeros(0, dtype=M.indices.dtype), np.zeros(0, dtype=np.result_type(weights, M.data))
    starts = M.indptr[rows]
    lens = M.indptr[rows + 1] - starts
    pos = range_positions(starts, lens)
    return M.indices[pos], np.repeat(weights, lens) * M.data[pos]


def accumulate_rows(out: np.ndarray, M: sp.csr_matrix, rows: np.ndarray, weights: np.ndarray) -> None:
    """``out += sum_j weights[j] * M[rows[j]]`` in place, as scipy's ``row @ M`` (csr_matmat) computes it.

    csr_matmat adds ``w * m`` into each output column in the order of the row's stored entries, then
    of M's stored entries; ``np.add.at`` is unbuffered and sequential, so it repeats that order.
    """
    cols, vals = row_entries(M, rows, weights)
    if len(cols):
        np.add.at(out, cols, vals)


def distinct(values: np.ndarray) -> np.ndarray:
    """``np.unique`` of an int array, by sorting: numpy 2's hash-based ``unique`` took 3x as long on the few
    thousand candidates of a request."""
    s = np.sort(np.asarray(values, dtype=np.int64), kind="stable")
    return s[np.r_[True, s[1:] != s[:-1]]] if len(s) else s


def sorted_lookup(keys: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions, found): where each query sits in the sorted, distinct ``keys``, and whether it is there."""
    if not len(keys):
        return np.zeros(np.shape(queries), dtype=np.intp), np.zeros(np.shape(queries), dtype=bool)
    at = np.minimum(np.searchsorted(keys, queries), len(keys) - 1)
    return at, keys[at] == queries


def accumulate_rows_at(M: sp.csr_matrix, rows: np.ndarray, weights: np.ndarray, columns: np.ndarray,
                       dtype: np.dtype) -> np.ndarray:
    """``accumulate_rows`` into a zero row, read at ``columns`` only: the same additions in the same
    order per column (so the same values), touching the rows' stored entries and no catalogue-sized array."""
    columns = np.asarray(columns, dtype=np.int64)
    cols = distinct(columns)
    where = np.searchsorted(cols, columns)
    out = np.zeros(len(cols), dtype=dtype)
    entry_cols, vals = row_entries(M, rows, weights)
    at, hit = sorted_lookup(cols, entry_cols)
    if hit.any():
        np.add.at(out, at[hit], vals[hit])
    return out[where]


def _first_seen_reversed(indices: np.ndarray) -> np.ndarray:
    """Distinct columns in reverse order of first appearance: the output order of scipy's row kernels
    that accumulate into a linked list (csr_matmat, binops on non-canonical rows)."""
    uniq, first = np.unique(indices, return_index=True)
    return uniq[np.argsort(first)[::-1]]


def _is_canonical(indices: np.ndarray) -> bool:
    return bool(np.all(indices[1:] > indices[:-1]))


def row_normalize_entries(indices: np.ndarray, data: np.ndarray, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Stored entries of ``diags(1 / ||row||) @ row`` exactly as scipy produces them for one CSR row.

    Mirrors ``X.multiply(X).sum(axis=1)`` (duplicates summed first, on non-canonical rows in linked-list
    order; explicit zeros dropped; summed with ``np.add.reduceat``) and the matmul (each entry scaled,
    then duplicates added in stored order; output in linked-list order, zeros dropped).
    """
    if _is_canonical(indices):
        sums = data
    else:
        dense = np.zeros(n_cols, dtype=data.dtype)
        np.add.at(dense, indices, data)
        sums = dense[_first_seen_reversed(indices)]
    sq = sums * sums
    sq = sq[sq != 0]
    norm = np.zeros(1, dtype=sq.dtype)
    if len(sq):
        norm[0] = np.add.reduceat(sq, np.zeros(1, dtype=np.intp))[0]
    norm = np.sqrt(norm)
    norm[norm == 0] = 1.0
    inv = 1.0 / norm
    scaled = np.zeros(n_cols, dtype=np.result_type(inv, data))
    np.add.at(scaled, indices, inv[0] * data)
    cols = _first_seen_reversed(indices) if len(indices) else indices
    vals = scaled[cols]
    keep = vals != 0
    return cols[keep], vals[keep]
