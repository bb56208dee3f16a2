"""SASRec (Kang & McAuley 2018): causal self-attention over a shopper's latest items predicts the next one.

The other families see a history as a set (recency enters only as a weight); in a shop the next
purchase follows the last few (a cart of kurtis predicts dupattas). Here each shopper's items,
oldest to newest, pass through learned item and position embeddings and ``blocks`` pre-norm
self-attention blocks in which a position sees only itself and earlier items; the output at the
newest position is the query, and an item's score is its embedding (shared with the input) dotted
with it, so the model is an embedding model: ``item_vectors() @ query_vector(...)`` are its scores
and the retrieval index serves it as it serves MF.

Training (JAX, CPU or GPU, the same code) minimises next-item cross-entropy at every position,
over the whole catalogue (``loss="full"``) or, for large catalogues, over the target and a shared
draw of ``negatives`` items by popularity with the log-Q correction (``"sampled"``). Sequences are
grouped by length into batches of about ``batch_tokens`` positions (a 5-core purchase log has
histories of ~8 items: padding every one to ``max_len`` would be 80 % wasted work). Training stops
early on NDCG@10 of the next items of the selection's validation users (``FitContext.validation``),
or, without one, of each shopper's last item; ``refit_config`` then fixes the epoch count for the
refit on all rows. Serving needs numpy only: ``forward`` below is written once against the numpy
API and runs on numpy arrays (serving, validation) and on ``jax.numpy`` arrays (training).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from ..metrics import hit_matrix, ndcg_per_user
from .base import DataShape, FitContext, Model, Sequences

#: Sequence lengths are padded up to one of these (then capped at ``max_len``): few distinct batch
#: shapes, so JAX compiles the training step a handful of times, and little padding.
LENGTH_BUCKETS = (4, 8, 16, 32, 64, 128, 256)


@dataclass(frozen=True)
class SASRecConfig:
    #: The latest items of a history the model reads; a served request costs one pass over at most these.
    max_len: int = 50
    #: Width of the item and position embeddings and of every layer.
    dim: int = 64
    #: Self-attention blocks (attention + position-wise feed-forward), each pre-normalised and residual.
    blocks: int = 2
    #: Attention heads; ``dim`` must be a multiple.
    heads: int = 1
    #: Dropout on embeddings, attention weights and feed-forward layers while training (0.5 suits sparse
    #: purchase logs; the SASRec paper used 0.2 on the dense MovieLens-1M).
    dropout: float = 0.5
    #: Adam step size.
    learning_rate: float = 1e-3
    #: L2 penalty on the item embeddings, per unit of loss.
    l2: float = 0.0
    #: Training epochs. 0 = stop early (validation NDCG@10 checked every ``eval_every`` epochs, stop after
    #: ``patience`` checks without a gain, keep the best weights), at most ``max_epochs``.
    epochs: int = 0
    max_epochs: int = 200
    eval_every: int = 2
    patience: int = 4
    #: A refit warm-started from the selection's fit (``SASRec.warm_start``) trains this share of the epochs
    #: early stopping chose (at least one), not all of them again: it has learned the catalogue and the
    #: order on the fit part (~95 % of the rows on the Amazon logs) already; the held-out rows are new.
    warm_refit_share: float = 0.25
    #: Positions per training batch (about: sequences of one length bucket are stacked up to it).
    batch_tokens: int = 2048
    #: "full" softmax over the catalogue, "sampled" over the target + ``negatives`` items drawn by
    #: popularity (log-Q corrected); "auto" = full up to ``full_softmax_max_items`` items. Sampled trains
    #: 4.7x faster at 12k items (measured) and its cost does not grow with the catalogue.
    loss: Literal["auto", "full", "sampled"] = "auto"
    negatives: int = 1024
    full_softmax_max_items: int = 5_000
    #: Wall-clock cap on one fit in seconds (0 = none): the selection's cost estimate is in reference
    #: seconds, this bounds the real time on a slow or shared machine; the best weights so far are kept.
    max_fit_seconds: float = 0.0
    #: Below this many user-item pairs the family declares itself unfit: too few transitions to learn an
    #: order from, and minutes of training where the item-item families take seconds (make run's generated
    #: log has ~40k; the Amazon 5-core logs 125k-240k; MovieLens-small 75k).
    min_nnz: int = 100_000
    #: The embedding table, Adam's two moments and the gradient are four items x dim float32 tables;
    #: beyond this many items the family declares itself unfit (the retrieval index and sampled loss
    #: would carry it further, but training time grows with the catalogue under either loss).
    max_items: int = 2_000_000


def _layer_norm(x: Any, gain: Any, bias: Any, xp: Any) -> Any:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / xp.sqrt(var + 1e-6) * gain + bias


def forward(params: dict[str, Any], seqs: Any, xp: Any = np, drop: Callable[[Any, str], Any] | None = None,
            last_only: bool = False) -> Any:
    """Hidden states (batch, length, dim) of left-padded item sequences (0 = padding, items are 1-based).

    ``xp`` is ``numpy`` or ``jax.numpy``; ``drop(x, site)`` applies dropout while training. With
    ``last_only`` the last block computes the newest position only (what serving needs): (batch, dim).
    """
    drop = drop or (lambda x, site: x)
    n_batch, length = seqs.shape
    dim = params["item"].shape[1]
    heads = int(params["heads"].shape[0])
    head_dim = dim // heads
    valid = (seqs > 0)[..., None]
    x = params["item"][seqs] * math.sqrt(dim) + params["pos"][params["pos"].shape[0] - length:][None]
    x = drop(x * valid, "emb")
    pos = xp.arange(length)
    # A position sees itself and earlier non-padding items (itself always: no empty softmax row).
    allowed = (pos[None, :] <= pos[:, None])[None, None] & ((seqs > 0)[:, None, None, :] | xp.eye(length, dtype=bool))
    n_blocks = int(params["blocks"].shape[0])
    for b in range(n_blocks):
        p = {k[len(f"b{b}_"):]: v for k, v in params.items() if k.startswith(f"b{b}_")}
        y = _layer_norm(x, p["ln1_g"], p["ln1_b"], xp)
        last = last_only and b == n_blocks - 1
        q_in = y[:, -1:] if last else y
        q = (q_in @ p["wq"] + p["bq"]).reshape(n_batch, -1, heads, head_dim)
        k = (y @ p["wk"] + p["bk"]).reshape(n_batch, length, heads, head_dim)
        v = (y @ p["wv"] + p["bv"]).reshape(n_batch, length, heads, head_dim)
        logits = xp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(head_dim)
        mask = allowed[:, :, -1:] if last else allowed
        logits = xp.where(mask, logits, -1e9)
        logits = logits - logits.max(axis=-1, keepdims=True)
        w = xp.exp(logits)
        w = drop(w / w.sum(axis=-1, keepdims=True), "attn")
        a = xp.einsum("bhqk,bkhd->bqhd", w, v).reshape(n_batch, -1, dim) @ p["wo"] + p["bo"]
        x = (x[:, -1:] if last else x) + drop(a, "res")
        y = _layer_norm(x, p["ln2_g"], p["ln2_b"], xp)
        hidden = drop(xp.maximum(y @ p["w1"] + p["b1"], 0.0), "ffn")
        x = x + drop(hidden @ p["w2"] + p["b2"], "res")
        x = x * (valid[:, -1:] if last else valid)
    out = _layer_norm(x, params["ln_g"], params["ln_b"], xp)
    return out[:, -1] if last_only else out


def init_params(n_items: int, config: SASRecConfig, seed: int) -> dict[str, np.ndarray]:
    """Float32 parameters; ``heads`` and ``blocks`` are stored as arrays so the state alone describes the net."""
    rng = np.random.default_rng(seed)
    d = config.dim
    if d % config.heads:
        raise ValueError(f"sasrec: dim {d} is not a multiple of heads {config.heads}")

    def normal(*shape: int, scale: float) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    params = {
        "item": normal(n_items + 1, d, scale=1.0 / math.sqrt(d)),
        "pos": normal(config.max_len, d, scale=1.0 / math.sqrt(d)),
        "ln_g": np.ones(d, np.float32), "ln_b": np.zeros(d, np.float32),
        "heads": np.zeros(config.heads, np.int8), "blocks": np.zeros(config.blocks, np.int8),
    }
    params["item"][0] = 0.0
    for b in range(config.blocks):
        for name in ("wq", "wk", "wv", "wo", "w1", "w2"):
            params[f"b{b}_{name}"] = normal(d, d, scale=math.sqrt(2.0 / (d + d)))
        for name in ("bq", "bk", "bv", "bo", "b1", "b2", "ln1_b", "ln2_b"):
            params[f"b{b}_{name}"] = np.zeros(d, np.float32)
        params[f"b{b}_ln1_g"] = np.ones(d, np.float32)
        params[f"b{b}_ln2_g"] = np.ones(d, np.float32)
    return params


#: Parameters that describe the architecture, not trained.
_STRUCTURAL = ("heads", "blocks")


def user_sequences(X: sp.csr_matrix, recency: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Each user's latest ``max_len`` items, oldest -> newest, as CSR ``(indptr, items)`` (0-based item indices).

    ``recency`` is per entry of X (0 = the user's most recent item), as ``History.recency``.
    """
    X = X.tocsr()
    counts = np.diff(X.indptr)
    users = np.repeat(np.arange(X.shape[0]), counts)
    recency = np.asarray(recency)
    keep = recency < max_len
    order = np.lexsort((-recency[keep], users[keep]))  # per user, oldest first
    items = X.indices[keep][order].astype(np.int32)
    indptr = np.zeros(X.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.minimum(counts, max_len), out=indptr[1:])
    return indptr, items


def _pad_left(seqs: list[np.ndarray], length: int) -> np.ndarray:
    """Rows of 1-based items, right-aligned in a zero matrix (the newest item is always the last column)."""
    out = np.zeros((len(seqs), length), dtype=np.int32)
    for r, s in enumerate(seqs):
        s = s[-length:]
        if len(s):
            out[r, length - len(s):] = s + 1
    return out


def _bucket(n: int, max_len: int) -> int:
    return min(next((b for b in LENGTH_BUCKETS if b >= n), n), max_len)


class SASRec(Model):
    family = "sasrec"
    Config = SASRecConfig
    needs_order = True

    @property
    def name(self) -> str:
        c = self.config
        return f"sasrec(d={c.dim},b={c.blocks},drop={c.dropout:g}" + (f",e={c.epochs})" if c.epochs else ")")

    #: Not tuned by selection: every trial is a full training (minutes where the other families take
    #: seconds), and its early stopping already adapts the epoch count; dropout 0.5 suits sparse shop logs.
    search_axes = ()

    @classmethod
    def _loss_kind(cls, config: SASRecConfig, n_items: int) -> str:
        if config.loss != "auto":
            return config.loss
        return "full" if n_items <= config.full_softmax_max_items else "sampled"

    @classmethod
    def fits(cls, config: SASRecConfig, shape: DataShape) -> str | None:
        if shape.n_items > config.max_items:
            return f"{shape.n_items} items > max_items {config.max_items}"
        if shape.nnz < config.min_nnz:
            return f"{shape.nnz} user-item pairs < min_nnz {config.min_nnz}: too few transitions to learn an order from"
        if shape.nnz < 2 * shape.n_users:
            return "histories too short: fewer than two items per user on average, nothing to learn an order from"
        return None

    @classmethod
    def cost(cls, config: SASRecConfig, shape: DataShape) -> float:
        """Reference seconds: epochs x training positions x (transformer + softmax) work per position.

        The constants come from the measured training step (docs/recommender.md): 4,800 positions per
        CPU-second with the full softmax over 12k items, 22,500 with 1,024 sampled negatives, i.e. on the
        2-core reference machine ~4.5e-11 s per multiply-add of the softmax and ~7e-11 s of the blocks.
        """
        epochs = config.epochs or 40  # early stopping on the logs tried stops after 20-60 epochs
        positions = float(min(shape.nnz, shape.n_users * config.max_len))
        d = config.dim
        classes = shape.n_items if cls._loss_kind(config, shape.n_items) == "full" else config.negatives
        softmax = 3.0 * d * classes * 4.5e-11
        blocks = 3.0 * config.blocks * (6 * d * d + 2 * config.max_len * d) * 7e-11
        return epochs * positions * (softmax + blocks) + 1e-6 * shape.n_users * config.max_len * d

    @classmethod
    def bounded(cls, config: SASRecConfig, shape: DataShape, reference_seconds: float) -> SASRecConfig:
        """At most the epochs ``reference_seconds`` pay for (by ``cost``; at least ``eval_every``)."""
        if config.epochs:
            return config
        fixed = cls.cost(replace(config, epochs=1), shape)
        per_epoch = max(cls.cost(replace(config, epochs=2), shape) - fixed, 1e-9)
        cap = max(config.eval_every, int((reference_seconds - fixed) / per_epoch) + 1)
        return replace(config, max_epochs=min(config.max_epochs, cap))

    def charged(self, shape: DataShape) -> float | None:
        log = getattr(self, "fit_log", None)
        return self.cost(replace(self.config, epochs=int(log["epochs_run"])), shape) if log else None

    # ------------------------------------------------------------------------- training
    def fit(self, X: sp.csr_matrix, ctx: FitContext) -> SASRec:
        if ctx.entry_recency is None:
            raise ValueError("sasrec needs each user's order (entry recency)")
        c = self.config
        X = X.tocsr()
        n_items = X.shape[1]
        # One more item than the model reads: the oldest is only ever a target's input, never a target.
        indptr, items = user_sequences(X, ctx.entry_recency, c.max_len + 1)
        seqs = [items[indptr[u]:indptr[u + 1]] for u in range(X.shape[0])]
        if c.epochs:  # a fixed epoch count (the refit after selection): every item trains, nothing is held out
            val_users, val_targets, train_seqs, val_inputs = np.zeros(0, np.int64), [], seqs, []
        elif ctx.validation is not None:
            val_users, val_targets = ctx.validation
            train_seqs = seqs
            val_inputs = [seqs[u][-c.max_len:] for u in val_users]
        else:  # no selection split: each user's last item is the early-stopping target
            val_users = np.flatnonzero(np.diff(indptr) >= 3)
            val_targets = [seqs[u][-1:] for u in val_users]
            train_seqs = [s[:-1] if len(s) >= 3 else s for s in seqs]
            val_inputs = [seqs[u][:-1][-c.max_len:] for u in val_users]
        warm = getattr(self, "_warm", None)
        run = c
        if warm is not None and c.epochs:
            run = replace(c, epochs=max(1, math.ceil(c.epochs * c.warm_refit_share)))
        else:
            warm = None
        pop = np.bincount(X.indices, minlength=n_items).astype(np.float64)
        exclude = None
        if len(val_users):  # the users' fitted items, less the held-out targets when they come from X itself
            exclude = (X[np.asarray(val_users, dtype=np.int64)] != 0).astype(np.float32)
            if ctx.validation is None:
                exclude = (exclude - sp.csr_matrix((np.ones(len(val_users), np.float32),
                                                    (np.arange(len(val_users)), [t[0] for t in val_targets])),
                                                   shape=exclude.shape)).tocsr()
                exclude.eliminate_zeros()
        self.params, self.fit_log = _train(train_seqs, n_items, run, ctx.seed, pop, (val_inputs, val_targets, exclude),
                                           init=warm)
        self.fit_log["warm"] = warm is not None
        self._warm = None
        self._prepare()
        return self

    def warm_start(self, fitted: Model, item_rows: np.ndarray) -> bool:
        """Continue from ``fitted``'s weights: its item embeddings where it knew the item, fresh ones (as
        ``init_params`` draws them) for the others; the refit then trains ``warm_refit_share`` of its epochs."""
        if not isinstance(fitted, SASRec) or getattr(fitted, "params", None) is None:
            return False
        old = fitted.params
        if any(old[k].shape != v.shape for k, v in init_params(1, self.config, 0).items() if k != "item"):
            return False  # another architecture: nothing to continue from
        rows = np.asarray(item_rows, dtype=np.int64)
        fresh = init_params(len(rows), self.config, 0)["item"]
        known = np.flatnonzero(rows >= 0)
        fresh[1 + known] = old["item"][1 + rows[known]]
        self._warm = {**{k: np.array(v) for k, v in old.items()}, "item": fresh}
        return True

    def refit_config(self) -> SASRecConfig:
        """The config that repeats this fit on all rows: the epoch count early stopping chose."""
        best = int(self.fit_log.get("best_epoch", 0)) if getattr(self, "fit_log", None) else 0
        return replace(self.config, epochs=best) if best and not self.config.epochs else self.config

    def fit_note(self) -> str | None:
        log = getattr(self, "fit_log", None)
        if not log:
            return None
        rate = f"{log['seconds']:.0f}s, {log['positions_per_second']:,} positions/s, {log['loss']} softmax"
        if log.get("warm"):
            return (f"warm-started from the selection's fit: {log['epochs_run']} epochs "
                    f"({self.config.warm_refit_share:g} of {self.config.epochs}) in {rate}")
        if self.config.epochs:
            return f"{log['epochs_run']} epochs (fixed) in {rate}"
        return (f"early stopping kept epoch {log['best_epoch']} of {log['epochs_run']} "
                f"(at most {self.config.max_epochs}; "
                f"its validation ndcg@10 {log['validation_ndcg']:.4f}) in {rate}; the refit continues from it for "
                f"{self.config.warm_refit_share:g} of that many")

    def _prepare(self) -> None:
        self._items = np.ascontiguousarray(self.params["item"][1:])

    # ------------------------------------------------------------------------- scoring
    @property
    def sequence_length(self) -> int:
        return self.config.max_len

    @staticmethod
    def _sequence_of(indices: np.ndarray, sequence: np.ndarray | None) -> np.ndarray:
        """The request's sequence; without one (a caller that sends none), the profile's items as stored."""
        return np.asarray(indices if sequence is None else sequence, dtype=np.int64)

    def query_vectors(self, seqs: list[np.ndarray], batch: int = 512) -> np.ndarray:
        """(len(seqs), dim) queries; an empty sequence gets zeros (scores 0: the blend's other members decide)."""
        out = np.zeros((len(seqs), self.params["item"].shape[1]), dtype=np.float32)
        lengths = np.array([min(len(s), self.config.max_len) for s in seqs])
        for length in np.unique(lengths[lengths > 0]):
            rows = np.flatnonzero(lengths == length)
            for lo in range(0, len(rows), batch):
                part = rows[lo:lo + batch]
                out[part] = forward(self.params, _pad_left([seqs[r] for r in part], int(length)), last_only=True)
        return out

    def score(self, profiles: sp.csr_matrix, users: np.ndarray, *, sequences: Sequences | None = None) -> np.ndarray:
        profiles = profiles.tocsr()
        seqs = [self._sequence_of(profiles.indices[profiles.indptr[r]:profiles.indptr[r + 1]],
                                  None if sequences is None else sequences[1][sequences[0][r]:sequences[0][r + 1]])
                for r in range(profiles.shape[0])]
        return self.query_vectors(seqs) @ self._items.T

    def query_vector(self, indices: np.ndarray, data: np.ndarray, user: int,
                     sequence: np.ndarray | None = None) -> np.ndarray:
        seq = self._sequence_of(indices, sequence)
        if not len(seq):
            return np.zeros(self._items.shape[1], dtype=np.float32)
        return forward(self.params, _pad_left([seq], min(len(seq), self.config.max_len)), last_only=True)[0]

    def item_vectors(self) -> np.ndarray:
        return self._items

    def score_row(self, indices: np.ndarray, data: np.ndarray, user: int, n_items: int, *,
                  sequence: np.ndarray | None = None, candidates: np.ndarray | None = None) -> np.ndarray:
        """One forward pass over the sequence's newest ``max_len`` items, then one product with the
        catalogue's (or the candidates') vectors; the same (1 x d) @ (d x n) product as ``score``."""
        q = self.query_vector(indices, data, user, sequence)[None, :]
        items = self._items if candidates is None else self._items[np.asarray(candidates, dtype=np.int64)]
        return (q @ items.T)[0]

    def state(self) -> dict[str, np.ndarray]:
        return dict(self.params)

    @classmethod
    def from_state(cls, config: SASRecConfig, state: dict[str, np.ndarray]) -> SASRec:
        m = cls(config)
        m.params = {k: np.asarray(v) for k, v in state.items()}
        m._prepare()
        return m


# ----------------------------------------------------------------------------- JAX training
def _batches(seqs: list[np.ndarray], config: SASRecConfig, rng: np.random.Generator
             ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(inputs, targets) batches of left-padded 1-based items, one length bucket per batch, shuffled.

    A sequence s of n items trains positions 0..n-2 (input s[:-1], target s[1:]). Every batch of a
    bucket has the same number of rows (padding rows have no targets), so shapes repeat.
    """
    lengths = np.array([len(s) - 1 for s in seqs])
    out = []
    for length in sorted({_bucket(n, config.max_len) for n in lengths if n >= 1}):
        rows = [i for i, n in enumerate(lengths) if n >= 1 and _bucket(n, config.max_len) == length]
        rows = list(rng.permutation(rows))
        per = max(1, config.batch_tokens // length)
        per = min(per, len(rows)) if len(rows) < per else per
        for lo in range(0, len(rows), per):
            part = rows[lo:lo + per]
            full = _pad_left([seqs[i] for i in part], length + 1)
            inp, tgt = full[:, :-1], full[:, 1:]
            tgt = np.where(inp > 0, tgt, 0)
            if len(part) < per:
                pad = per - len(part)
                inp = np.vstack([inp, np.zeros((pad, length), np.int32)])
                tgt = np.vstack([tgt, np.zeros((pad, length), np.int32)])
            out.append((inp, tgt))
    return [out[i] for i in rng.permutation(len(out))]


def _ndcg_at_10(queries: np.ndarray, items: np.ndarray, targets: list[np.ndarray],
                exclude: sp.csr_matrix | None, batch_cells: int = 20_000_000) -> float:
    """Mean NDCG@10 of ``queries @ items.T``'s top 10 (``exclude``'s items never shown) over rows with a
    target, in row batches: a full users x catalogue matrix and its sort indices would take gigabytes."""
    has = np.array([i for i, rel in enumerate(targets) if len(rel)], dtype=np.int64)
    if not len(has):
        return 0.0
    k = min(10, items.shape[0])
    step = max(1, batch_cells // max(items.shape[0], 1))
    total = 0.0
    for lo in range(0, len(has), step):
        rows = has[lo:lo + step]
        scores = queries[rows] @ items.T
        if exclude is not None and exclude.nnz:
            coo = exclude[rows].tocoo()
            scores[coo.row, coo.col] = -np.inf
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1), axis=1)
        hits = hit_matrix(top, [targets[i] for i in rows], k)
        total += float(ndcg_per_user(hits, np.array([len(targets[i]) for i in rows])).sum())
    return total / len(has)


@functools.lru_cache(maxsize=8)
def _training_step(kind: str, rate: float, learning_rate: float, l2: float, heads: int, blocks: int,
                   n_items: int) -> Callable:
    """The jitted Adam step for one set of hyperparameters, built once per process: selection fits the
    same configuration on each fold and again on all rows, and JAX keeps each compiled shape."""
    import jax
    import jax.numpy as jnp

    structural = {"heads": jnp.zeros(heads, jnp.int8), "blocks": jnp.zeros(blocks, jnp.int8)}

    def loss_fn(p: dict, inp: Any, tgt: Any, key: Any, neg: Any) -> Any:
        keys = iter(jax.random.split(key, 4 * blocks + 2))

        def drop(x: Any, site: str) -> Any:
            if rate <= 0:
                return x
            keep = jax.random.bernoulli(next(keys), 1.0 - rate, x.shape)
            return jnp.where(keep, x / (1.0 - rate), 0.0)

        h = forward({**p, **structural}, inp, jnp, drop)
        mask = (tgt > 0).astype(jnp.float32)
        table = p["item"][1:]
        if kind == "full":
            logits = h @ table.T
            pos_logit = jnp.take_along_axis(logits, jnp.maximum(tgt - 1, 0)[..., None], axis=-1)[..., 0]
            lse = jax.nn.logsumexp(logits, axis=-1)
        else:
            neg_ids, neg_logq = neg
            pos_logit = jnp.einsum("bld,bld->bl", h, table[jnp.maximum(tgt - 1, 0)])
            neg_logits = h @ table[neg_ids].T - neg_logq
            # A sampled negative that is the target itself is not a negative.
            neg_logits = jnp.where(neg_ids[None, None, :] == (tgt - 1)[..., None], -1e9, neg_logits)
            lse = jax.nn.logsumexp(jnp.concatenate([pos_logit[..., None], neg_logits], axis=-1), axis=-1)
        loss = ((lse - pos_logit) * mask).sum() / jnp.maximum(mask.sum(), 1.0)
        if l2:
            loss = loss + l2 * (p["item"] ** 2).sum() / n_items
        return loss

    b1, b2, eps = 0.9, 0.98, 1e-9

    @jax.jit
    def step(p: dict, m: dict, v: dict, t: Any, inp: Any, tgt: Any, key: Any, neg: Any) -> tuple:
        loss, g = jax.value_and_grad(loss_fn)(p, inp, tgt, key, neg)
        m = jax.tree_util.tree_map(lambda a, b: b1 * a + (1 - b1) * b, m, g)
        v = jax.tree_util.tree_map(lambda a, b: b2 * a + (1 - b2) * b * b, v, g)
        lr = learning_rate * jnp.sqrt(1 - b2**t) / (1 - b1**t)
        p = jax.tree_util.tree_map(lambda w, a, b: w - lr * a / (jnp.sqrt(b) + eps), p, m, v)
        p["item"] = p["item"].at[0].set(0.0)
        return p, m, v, loss

    return step


def _train(seqs: list[np.ndarray], n_items: int, config: SASRecConfig, seed: int, popularity: np.ndarray,
           validation: tuple[list[np.ndarray], list[np.ndarray], sp.csr_matrix | None],
           init: dict[str, np.ndarray] | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Adam on next-item cross-entropy from ``init`` (else fresh weights); returns the best parameters
    (numpy) and a log of the fit."""
    import jax
    import jax.numpy as jnp

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    params = dict(init) if init is not None else init_params(n_items, config, seed)
    structural = {k: params.pop(k) for k in _STRUCTURAL}
    kind = SASRec._loss_kind(config, n_items)
    rate = float(config.dropout)
    log_q = np.log(np.maximum(popularity, 1.0) ** 0.75)
    sample_p = np.exp(log_q - log_q.max())
    sample_p /= sample_p.sum()
    n_neg = min(config.negatives, n_items)

    step = _training_step(kind, rate, config.learning_rate, config.l2, config.heads, config.blocks, n_items)

    p = {k: jnp.asarray(v) for k, v in params.items()}
    m = jax.tree_util.tree_map(jnp.zeros_like, p)
    v = jax.tree_util.tree_map(jnp.zeros_like, p)
    key = jax.random.PRNGKey(seed)
    val_inputs, val_targets, val_exclude = validation
    scorer = SASRec(config)

    def evaluate(current: dict) -> float:
        scorer.params = {**{k: np.asarray(x) for k, x in current.items()}, **structural}
        scorer._prepare()
        return _ndcg_at_10(scorer.query_vectors(val_inputs), scorer._items, val_targets, val_exclude)

    epochs = config.epochs or config.max_epochs
    early = not config.epochs and len(val_inputs) > 0
    best, best_epoch, best_params, bad, t, history = -1.0, 0, None, 0, 0, []
    positions = sum(max(len(s) - 1, 0) for s in seqs)
    for epoch in range(1, epochs + 1):
        losses = []
        for inp, tgt in _batches(seqs, config, rng):
            t += 1
            key, sub = jax.random.split(key)
            neg = (jnp.zeros(1, jnp.int32), jnp.zeros(1, jnp.float32))
            if kind == "sampled":
                ids = rng.choice(n_items, n_neg, replace=False, p=sample_p)
                neg = (jnp.asarray(ids, jnp.int32), jnp.asarray(np.log(n_neg * sample_p[ids]), jnp.float32))
            p, m, v, loss = step(p, m, v, t, inp, tgt, sub, neg)
            losses.append(loss)
        history.append(float(np.mean([float(x) for x in losses])) if losses else 0.0)
        out_of_time = config.max_fit_seconds and time.perf_counter() - t0 > config.max_fit_seconds
        if early and (epoch % config.eval_every == 0 or epoch == epochs or out_of_time):
            score = evaluate(p)
            if score > best:
                best, best_epoch, bad = score, epoch, 0
                best_params = {k: np.asarray(x) for k, x in p.items()}
            else:
                bad += 1
                if bad >= config.patience:
                    break
        if out_of_time:
            break
    if best_params is None:
        best_params, best_epoch = {k: np.asarray(x) for k, x in p.items()}, epoch
    seconds = time.perf_counter() - t0
    fit_log = {"epochs_run": epoch, "best_epoch": best_epoch, "validation_ndcg": best, "loss": kind,
               "positions": positions, "seconds": round(seconds, 1),
               "positions_per_second": round(positions * epoch / max(seconds, 1e-9)), "loss_history": history}
    return {**best_params, **structural}, fit_log
