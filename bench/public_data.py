"""Real public logs, their protocols, honest metrics and independent baselines (for ``bench_public_data``).

Nothing here imports the project's recommender: the baselines are written from their papers so
that they are an independent bar, and the metrics are computed from recommendation lists alone.

Data sets (``../shared/data`` next to the repository, see its README): two Amazon purchase logs
with no timestamps (each user's rows are in order; no clock is shared across users) and a
MovieLens ratings log with real timestamps. Protocols, k = 10, fixed seed:

- ``random``: per user, 25% of the rows (rounded, at least 1, at most n - 1), drawn at random;
- ``user_temporal``: per user, the last 20% of the rows by timestamp, ties in file order;
- ``global_temporal``: the last 20% of all rows by timestamp (only where a global clock exists).

Evaluation (the same for every method): evaluated users are test users with training rows; a
user's relevant items are their distinct test items minus those they had in training (nobody may
recommend those); items never seen in training stay relevant and count in the recall and NDCG
denominators; candidates are the training items; every user's training items are excluded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT.parent / "shared" / "data"
K = 10
SETS = ("Amazon_Toys_and_Games", "Amazon_Sports_and_Outdoors", "ml-latest-small-ratings")
PROTOCOLS = ("random", "user_temporal", "global_temporal")


def has_global_clock(name: str) -> bool:
    """Only the MovieLens log carries real timestamps shared by all users."""
    return name.startswith("ml-")


def protocols_for(name: str) -> list[str]:
    return [p for p in PROTOCOLS if p != "global_temporal" or has_global_clock(name)]


def load_set(name: str, data_dir: Path | None = None) -> pd.DataFrame:
    """A public log in the raw-data contract: user_id, product_id, event_type, rating, timestamp."""
    data_dir = Path(data_dir or DATA_DIR)
    if name.startswith("Amazon_"):
        df = pd.read_csv(data_dir / f"{name}.inter", sep="\t", dtype=str)
        df.columns = ["user_id", "product_id"]
        # No clock: the row number keeps each user's order (the only order the file has).
        return df.assign(event_type="purchase", rating="", timestamp=np.arange(len(df), dtype=np.int64))
    if name.startswith("ml-"):
        df = pd.read_csv(data_dir / f"{name}.csv", usecols=[0, 1, 2, 3], dtype={"userId": str, "movieId": str})
        return pd.DataFrame({
            "user_id": df["userId"], "product_id": df["movieId"], "event_type": "rating",
            "rating": np.ceil(df["rating"].to_numpy()).astype(int).astype(str),  # half stars rounded up
            "timestamp": df["timestamp"].astype(np.int64),
        })
    raise ValueError(f"unknown data set {name!r} (known: {', '.join(SETS)})")


def split_protocol(df: pd.DataFrame, protocol: str, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) rows of ``df`` under one protocol."""
    df = df.reset_index(drop=True)
    if protocol == "global_temporal":
        cut = np.quantile(df["timestamp"].to_numpy(), 0.8, method="higher")
        test = df["timestamp"].to_numpy() >= cut
        return df.loc[~test].reset_index(drop=True), df.loc[test].reset_index(drop=True)
    codes = pd.factorize(df["user_id"])[0]
    n = np.bincount(codes)[codes]
    if protocol == "random":
        frac = 0.25
        key = np.random.default_rng(seed).random(len(df))
        order = np.lexsort((key, codes))
    elif protocol == "user_temporal":
        frac = 0.2
        order = np.lexsort((-np.arange(len(df)), -df["timestamp"].to_numpy(), codes))  # newest first
    else:
        raise ValueError(f"unknown protocol {protocol!r}")
    rank = np.empty(len(df), dtype=np.int64)
    starts = np.r_[0, np.cumsum(np.bincount(codes))[:-1]]
    rank[order] = np.arange(len(df)) - starts[codes[order]]
    n_test = np.clip(np.round(frac * n), 1, np.maximum(n - 1, 1))
    test = (rank < n_test) & (n > 1)
    return df.loc[~test].reset_index(drop=True), df.loc[test].reset_index(drop=True)


@dataclass
class Eval:
    """Who is evaluated and on what; scores recommendation lists keyed by user id."""

    users: np.ndarray  # user ids evaluated, in matrix row order
    items: np.ndarray  # training item ids (candidates), in matrix column order
    X: sp.csr_matrix  # binary training matrix, evaluated users first: rows of ``users`` then others
    relevant: list[np.ndarray]  # per evaluated user: column indices of relevant training items
    n_relevant: np.ndarray  # per evaluated user: relevant items incl. those unseen in training
    train_users: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=str))  # all rows of X

    def hits(self, recs: dict[str, list[str]]) -> np.ndarray:
        """Evaluated users x K: whether each listed item is relevant."""
        col = pd.Index(self.items)
        hits = np.zeros((len(self.users), K), dtype=bool)
        for r, (u, rel) in enumerate(zip(self.users, self.relevant, strict=True)):
            idx = col.get_indexer(list(recs.get(u, []))[:K])
            hits[r, : len(idx)] = np.isin(idx, rel) & (idx >= 0)
        return hits

    def score(self, recs: dict[str, list[str]]) -> dict[str, float]:
        """NDCG, precision, recall, MAP, hit rate @K and catalogue coverage of lists per user id."""
        shown = {p for u in self.users for p in list(recs.get(u, []))[:K]}
        coverage = len(shown & set(self.items)) / len(self.items)
        return metrics(self.hits(recs), self.n_relevant) | {"coverage": coverage}


def ndcg_per_user(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """NDCG@K of each row of a users x K hit matrix (NaN where nothing is relevant)."""
    k = hits.shape[1]
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.minimum(n_relevant, k).astype(int)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ideal > 0, (hits @ disc) / np.cumsum(disc)[np.maximum(ideal, 1) - 1], np.nan)


def metrics(hits: np.ndarray, n_relevant: np.ndarray) -> dict[str, float]:
    """Binary-relevance metrics@K from a users x K hit matrix; users with nothing relevant are skipped."""
    keep = n_relevant > 0
    hits, n_rel = hits[keep], n_relevant[keep].astype(np.float64)
    k = hits.shape[1]
    ideal = np.minimum(n_rel, k).astype(int)
    n_hits = hits.sum(axis=1)
    ap = (np.cumsum(hits, axis=1) / np.arange(1, k + 1) * hits).sum(axis=1) / ideal
    return {"ndcg": float(ndcg_per_user(hits, n_rel).mean()),
            "precision": float((n_hits / k).mean()), "recall": float((n_hits / n_rel).mean()),
            "map": float(ap.mean()), "hit_rate": float((n_hits > 0).mean()), "users": int(len(hits))}


def self_check() -> None:
    """The metric code against a hand-computed three-user example."""
    hits = np.array([[1, 0, 1] + [0] * 7, [0] * 10, [0, 1] + [0] * 8], dtype=bool)
    m = metrics(hits, np.array([2, 3, 4]))
    d = 1 / np.log2(np.arange(2, 12))
    ndcg = [(d[0] + d[2]) / (d[0] + d[1]), 0.0, d[1] / (d[0] + d[1] + d[2] + d[3])]
    assert abs(m["ndcg"] - np.mean(ndcg)) < 1e-12, m
    assert abs(m["precision"] - (2 + 0 + 1) / 30) < 1e-12
    assert abs(m["recall"] - (1.0 + 0 + 0.25) / 3) < 1e-12
    assert abs(m["map"] - ((1 + 2 / 3) / 2 + 0 + 0.5 / 4) / 3) < 1e-12
    assert abs(m["hit_rate"] - 2 / 3) < 1e-12


def build_eval(train: pd.DataFrame, test: pd.DataFrame) -> Eval:
    items = np.sort(train["product_id"].unique().astype(str))
    train_users = np.sort(train["user_id"].unique().astype(str))
    tested = pd.unique(test["user_id"].astype(str))
    users = np.sort(tested[np.isin(tested, train_users)])
    order = np.r_[np.searchsorted(train_users, users), np.flatnonzero(~np.isin(train_users, users))]
    row_users = train_users[order]
    rows = pd.Index(row_users).get_indexer(train["user_id"].astype(str))
    cols = np.searchsorted(items, train["product_id"].astype(str))
    X = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(row_users), len(items)))
    X.data[:] = 1.0  # duplicates summed: back to 0/1
    pairs = test[test["user_id"].isin(users)][["user_id", "product_id"]].astype(str).drop_duplicates()
    r = np.searchsorted(users, pairs["user_id"].to_numpy())
    c = pd.Index(items).get_indexer(pairs["product_id"].to_numpy())
    owned = np.zeros(len(r), dtype=bool)
    known = c >= 0
    owned[known] = np.asarray(X[r[known], c[known]]).ravel() > 0
    r, c = r[~owned], c[~owned]
    n_rel = np.bincount(r, minlength=len(users))
    return Eval(users, items, X, _group(r, c, len(users)), n_rel, row_users)


def _group(r: np.ndarray, c: np.ndarray, n: int) -> list[np.ndarray]:
    order = np.argsort(r, kind="stable")
    r, c = r[order], c[order]
    bounds = np.searchsorted(r, np.arange(n + 1))
    return [np.sort(c[a:b][c[a:b] >= 0]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


# ----------------------------------------------------------------------------------------- baselines
Scorer = Callable[[np.ndarray], np.ndarray]  # rows of X (evaluated users) -> dense scores


def recommend(ev: Eval, scorer: Scorer, batch_cells: int = 40_000_000) -> dict[str, list[str]]:
    """Top-K training items per evaluated user, training items excluded."""
    n_items = len(ev.items)
    batch = max(1, batch_cells // max(n_items, 1))
    out: dict[str, list[str]] = {}
    for lo in range(0, len(ev.users), batch):
        hi = min(lo + batch, len(ev.users))
        s = np.array(scorer(np.arange(lo, hi)), dtype=np.float32)  # own copy: exclusions are written in
        seen = ev.X[lo:hi].tocoo()
        s[seen.row, seen.col] = -np.inf
        top = np.argpartition(-s, K, axis=1)[:, :K]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(s, top, axis=1), axis=1, kind="stable"), axis=1)
        for j, u in enumerate(ev.users[lo:hi]):
            out[u] = list(ev.items[top[j]])
    return out


def most_pop(X: sp.csr_matrix) -> Scorer:
    pop = np.asarray(X.sum(axis=0)).ravel()
    return lambda rows: np.broadcast_to(pop, (len(rows), len(pop)))


def _top_k_rows(S: sp.csr_matrix, k: int) -> sp.csr_matrix:
    S = S.tocsr()
    S.setdiag(0)
    S.eliminate_zeros()
    rows, cols, vals = [], [], []
    for i in range(S.shape[0]):
        lo, hi = S.indptr[i], S.indptr[i + 1]
        keep = np.argpartition(-S.data[lo:hi], k)[:k] + lo if hi - lo > k else np.arange(lo, hi)
        rows.append(np.full(len(keep), i))
        cols.append(S.indices[keep])
        vals.append(S.data[keep])
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=S.shape)


def item_knn(X: sp.csr_matrix, k: int, shrink: float) -> Scorer:
    """Cosine item-item similarity with shrinkage (Sarwar et al. 2001), k neighbours per item."""
    G = (X.T @ X).tocsr().astype(np.float64)
    norms = np.sqrt(G.diagonal())
    G = G.tocoo()
    G.data = G.data / (norms[G.row] * norms[G.col] + shrink + 1e-12)
    W = _top_k_rows(G, k)
    return lambda rows: (X[rows] @ W).toarray()


def rp3beta(X: sp.csr_matrix, alpha: float, beta: float, k: int = 200) -> Scorer:
    """RP3beta (Paudel et al. 2017): P_ui P_iu walk with the target's popularity ^ -beta."""
    du = np.asarray(X.sum(axis=1)).ravel()
    di = np.asarray(X.sum(axis=0)).ravel()
    Pui = sp.diags(1 / np.maximum(du, 1)) @ X
    Piu = sp.diags(1 / np.maximum(di, 1)) @ X.T.tocsr()
    Pui.data **= alpha
    Piu = Piu.tocsr()
    Piu.data **= alpha
    W = (Piu @ Pui).tocsr()
    W = W @ sp.diags(np.power(np.maximum(di, 1), -beta))
    W = _top_k_rows(W, k)
    return lambda rows: (X[rows] @ W).toarray()


def _mirror_upper(P: np.ndarray, step: int = 2048) -> None:
    """Copy the upper triangle onto the lower, in place and block by block (no full-size temporary)."""
    for i in range(0, len(P), step):
        j = min(i + step, len(P))
        block = P[i:j, i:j]
        block[...] = np.triu(block) + np.triu(block, 1).T
        P[j:, i:j] = P[i:j, j:].T


def ease(X: sp.csr_matrix, lambdas: list[float]) -> Iterator[tuple[float, Scorer]]:
    """EASE (Steck 2019), dense closed form per lambda: a float32 Cholesky, then the inverse from it.

    ``spotrf`` + ``spotri`` in place, as the project's own EASE does. The float64 routines (``cho_solve``,
    ``dpotrf``, numpy's ``cholesky``) segfaulted inside both bundled OpenBLAS builds on this machine at
    18k items (Amazon Sports), with one thread or two; float32 holds the gram counts exactly up to 2^24.
    """
    from scipy.linalg import lapack

    G = (X.T @ X).toarray().astype(np.float32)
    diag = np.diag_indices_from(G)
    for lam in lambdas:
        A = G.copy()
        A[diag] += np.float32(lam)
        c, info = lapack.spotrf(A, lower=False, overwrite_a=True, clean=False)
        if info != 0:
            raise np.linalg.LinAlgError(f"EASE lambda={lam:g}: cholesky failed ({info})")
        P, info = lapack.spotri(c, lower=False, overwrite_c=True)
        if info != 0:
            raise np.linalg.LinAlgError(f"EASE lambda={lam:g}: inverse failed ({info})")
        del A, c
        _mirror_upper(P)  # spotri fills the upper triangle only
        P /= -np.diag(P).copy()[None, :]
        np.fill_diagonal(P, 0.0)
        yield lam, (lambda rows, B=P: np.asarray(X[rows] @ B))


def als(X: sp.csr_matrix, factors: int, reg: float, alpha: float, seed: int = 0) -> Scorer:
    """implicit's ALS (Hu et al. 2008) on confidence 1 + alpha * x."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(factors=factors, regularization=reg, alpha=alpha, iterations=15,
                                        random_state=seed)
        model.fit(X.tocsr(), show_progress=False)
    U, V = np.asarray(model.user_factors), np.asarray(model.item_factors)
    return lambda rows: U[rows] @ V.T


def train_sequences(ev: Eval, train: pd.DataFrame) -> list[np.ndarray]:
    """Per row of ``ev.X`` (evaluated users first, then the other training users), the user's training
    items as ``ev`` columns, oldest first (timestamp, ties in file order), a repeat kept at its last time."""
    df = train.reset_index(drop=True)
    order = np.lexsort((np.arange(len(df)), df["timestamp"].to_numpy()))
    df = df.iloc[order].drop_duplicates(["user_id", "product_id"], keep="last")
    cols = np.searchsorted(ev.items, df["product_id"].astype(str).to_numpy())
    rows = pd.Index(ev.train_users).get_indexer(df["user_id"].astype(str).to_numpy())
    keep = rows >= 0
    rows, cols = rows[keep], cols[keep]
    grouped = np.argsort(rows, kind="stable")  # stable: each user's items stay oldest first
    bounds = np.searchsorted(rows[grouped], np.arange(len(ev.train_users) + 1))
    return [cols[grouped[a:b]] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def sasrec(seqs: list[np.ndarray], n_items: int, dim: int = 64, blocks: int = 2, dropout: float = 0.5,
           max_len: int = 50, lr: float = 1e-3, max_epochs: int = 200, patience: int = 3,
           log: Callable[[str], None] = print, seed: int = 0) -> tuple[Scorer, dict]:
    """SASRec (Kang & McAuley 2018) with the full-softmax cross-entropy loss, as commonly run on these logs:
    item + learned position embeddings, ``blocks`` pre-norm causal self-attention blocks (one head) with
    point-wise feed-forward layers, shared input/output item embeddings, Adam. Early stopping on each
    user's last training item (NDCG@10, checked every 2 epochs), then a retrain on the full sequences for
    the best epoch count. Written from the paper in JAX, independently of the project's implementation.
    """
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(seed)
    scale = 1.0 / np.sqrt(dim)
    names = [f"{b}{w}" for b in range(blocks) for w in ("q", "k", "v", "f1", "f2")]

    def init() -> dict:
        p = {"E": rng.normal(0, scale, (n_items + 1, dim)), "P": rng.normal(0, scale, (max_len, dim))}
        p |= {n: rng.normal(0, scale, (dim, dim)) for n in names}
        p |= {f"{n}_b": np.zeros(dim) for n in names}
        p |= {f"{b}{ln}{s}": (np.ones(dim) if s == "g" else np.zeros(dim))
              for b in [*range(blocks), "out"] for ln in ("a", "f") for s in ("g", "b")}
        return {k: jnp.asarray(v, jnp.float32) for k, v in p.items()}

    def norm(x, g, b):  # noqa: ANN001, ANN202
        mu = x.mean(-1, keepdims=True)
        return (x - mu) / jnp.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + 1e-8) * g + b

    def encode(p, seq, key=None):  # noqa: ANN001, ANN202 - seq (B, L) left-padded, items 1-based
        def drop(x, k):  # noqa: ANN001, ANN202
            if key is None or dropout == 0:
                return x
            keep = jax.random.bernoulli(jax.random.fold_in(key, k), 1 - dropout, x.shape)
            return jnp.where(keep, x / (1 - dropout), 0)

        L = seq.shape[1]
        pad = (seq > 0)[..., None]
        h = drop((p["E"][seq] * np.sqrt(dim) + p["P"][-L:]) * pad, 0)
        causal = jnp.tril(jnp.ones((L, L), bool))[None] & (seq > 0)[:, None, :] | jnp.eye(L, dtype=bool)[None]
        for b in range(blocks):
            x = norm(h, p[f"{b}ag"], p[f"{b}ab"])
            q, k, v = (x @ p[f"{b}{w}"] + p[f"{b}{w}_b"] for w in "qkv")
            att = jnp.where(causal, q @ k.transpose(0, 2, 1) / np.sqrt(dim), -jnp.inf)
            h = h + drop(drop(jax.nn.softmax(att, -1), 10 * b + 1) @ v, 10 * b + 2)
            x = norm(h, p[f"{b}fg"], p[f"{b}fb"])
            f = drop(jax.nn.relu(x @ p[f"{b}f1"] + p[f"{b}f1_b"]), 10 * b + 3) @ p[f"{b}f2"] + p[f"{b}f2_b"]
            h = (h + drop(f, 10 * b + 4)) * pad
        return norm(h, p["outag"], p["outab"])

    def loss(p, seq, tgt, key):  # noqa: ANN001, ANN202
        logits = encode(p, seq, key) @ p["E"][1:].T
        ce = jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, jnp.maximum(tgt - 1, 0)[..., None], -1)[..., 0]
        w = (tgt > 0).astype(jnp.float32)
        return (ce * w).sum() / jnp.maximum(w.sum(), 1)

    @jax.jit
    def update(p, m, v, t, seq, tgt, key):  # noqa: ANN001, ANN202 - Adam (0.9, 0.98)
        g = jax.grad(loss)(p, seq, tgt, key)
        m = {k: 0.9 * m[k] + 0.1 * g[k] for k in p}
        v = {k: 0.98 * v[k] + 0.02 * g[k] ** 2 for k in p}
        step = lr * jnp.sqrt(1 - 0.98**t) / (1 - 0.9**t)
        return {k: p[k] - step * m[k] / (jnp.sqrt(v[k]) + 1e-9) for k in p}, m, v

    query = jax.jit(lambda p, seq: encode(p, seq)[:, -1])

    def left_pad(rows: list[np.ndarray], L: int) -> np.ndarray:
        out = np.zeros((len(rows), L), np.int32)
        for i, r in enumerate(rows):
            r = r[-L:]
            out[i, L - len(r):] = r + 1
        return out

    def queries(p: dict, inputs: list[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(inputs), dim), np.float32)
        for lo in range(0, len(inputs), 256):
            part = inputs[lo:lo + 256]
            L = min(max_len, max(8, -(-max(len(s) for s in part) // 8) * 8))
            out[lo:lo + len(part)] = np.asarray(query(p, left_pad(part, L)))
        return out

    def run(train_seqs: list[np.ndarray], epochs: int, val: tuple | None) -> tuple[dict, int, float]:
        p = init()
        m, v = {k: jnp.zeros_like(x) for k, x in p.items()}, {k: jnp.zeros_like(x) for k, x in p.items()}
        usable = [s[-(max_len + 1):] for s in train_seqs if len(s) >= 2]
        by_len = sorted(range(len(usable)), key=lambda i: len(usable[i]))
        batches = [by_len[i:i + 128] for i in range(0, len(by_len), 128)]
        key, t, best, best_epoch, best_p, waited = jax.random.PRNGKey(seed), 0, -1.0, 0, p, 0
        for epoch in range(1, epochs + 1):
            for bi in rng.permutation(len(batches)):
                rows = [usable[i] for i in batches[bi]]
                L = min(max_len, -(-max(len(r) - 1 for r in rows) // 8) * 8)
                full = left_pad(rows, L + 1)
                t += 1
                p, m, v = update(p, m, v, t, full[:, :-1], np.where(full[:, :-1] > 0, full[:, 1:], 0),
                                 jax.random.fold_in(key, t))
            if val is not None and epoch % 2 == 0:
                inputs, targets, seen = val
                Q, E = queries(p, inputs), np.asarray(p["E"][1:])
                gains = []
                for lo in range(0, len(inputs), 2048):  # row blocks: users x catalogue at once took ~6 GB
                    s = Q[lo:lo + 2048] @ E.T
                    s[seen[lo:lo + 2048].nonzero()] = -np.inf
                    top = np.argpartition(-s, K - 1, axis=1)[:, :K]
                    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(s, top, 1), axis=1), 1)
                    gains += [1 / np.log2(2 + list(r).index(tg)) if tg in r else 0.0
                              for r, tg in zip(top, targets[lo:lo + 2048], strict=True)]
                score = float(np.mean(gains))
                if score > best:
                    best, best_epoch, best_p, waited = score, epoch, p, 0
                else:
                    waited += 1
                    if waited >= patience:
                        break
        return (best_p, best_epoch, best) if val is not None else (p, epochs, float("nan"))

    held = [i for i, s in enumerate(seqs) if len(s) >= 3]
    train_part = [s[:-1] if len(s) >= 3 else s for s in seqs]
    inputs = [seqs[i][:-1] for i in held]
    seen = sp.lil_matrix((len(held), n_items), dtype=bool)
    for r, i in enumerate(held):
        seen[r, seqs[i][:-1]] = True
    _, best_epoch, val_ndcg = run(train_part, max_epochs, (inputs, [seqs[i][-1] for i in held], seen.tocsr()))
    log(f"      early stopping: best epoch {best_epoch} (validation ndcg@{K} {val_ndcg:.4f}); retraining on all")
    p, _, _ = run(seqs, max(best_epoch, 1), None)
    U = queries(p, [s if len(s) else np.zeros(0, np.int64) for s in seqs])
    V = np.asarray(p["E"][1:])
    return (lambda rows: U[rows] @ V.T), {"best_epoch": best_epoch}


#: The baseline families, in the order they run.
FAMILIES = ("MostPop", "ItemKNN", "RP3beta", "EASE", "ALS", "SASRec")


def baseline_grid(quick: bool = False) -> list[tuple[str, dict]]:
    """(family, settings) of every baseline configuration, in the order they are run."""
    grid: list[tuple[str, dict]] = [("MostPop", {})]
    grid += [("ItemKNN", {"k": k, "shrink": s}) for k in ((100,) if quick else (50, 100, 200, 500))
             for s in (0.0, 10.0)]
    grid += [("RP3beta", {"alpha": a, "beta": b}) for a in ((0.75,) if quick else (0.5, 0.75, 1.0))
             for b in (0.0, 0.25, 0.5)]
    grid += [("EASE", {"lambdas": [30.0, 300.0] if quick else [10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0]})]
    grid += [("ALS", {"factors": f, "reg": r, "alpha": a}) for f in ((128,) if quick else (64, 128, 256))
             for r in ((0.1,) if quick else (0.01, 0.1, 1.0)) for a in (1.0, 10.0, 40.0)]
    # The paper's dropout for sparse logs (0.5) and for dense ones (0.2); 2 blocks, d = 64, the last 50 items.
    grid += [("SASRec", {"dropout": d}) for d in ((0.5,) if quick else (0.2, 0.5))]
    return grid


def run_baselines(ev: Eval, quick: bool = False, log: Callable[[str], None] = print,
                  families: tuple[str, ...] = FAMILIES, train: pd.DataFrame | None = None) -> list[dict]:
    """Every baseline configuration of ``families`` fitted on the training matrix and scored on ``ev``
    (SASRec reads each user's order from ``train``, and is skipped without it)."""
    rows = []
    X = ev.X
    seqs = None
    for family, params in baseline_grid(quick):
        if family not in families or (family == "SASRec" and train is None):
            continue
        if family == "SASRec":
            seqs = seqs if seqs is not None else train_sequences(ev, train)
            t = time.perf_counter()
            scorer, info = sasrec(seqs, len(ev.items), log=log, **params)
            name = f"SASRec(d=64,b=2,drop={params['dropout']:g},e={info['best_epoch']})"
            rows.append(_row(ev, name, family, scorer, time.perf_counter() - t, log))
            continue
        t = time.perf_counter()
        if family == "EASE":
            for lam, scorer in ease(X, params["lambdas"]):
                fit = time.perf_counter() - t
                rows.append(_row(ev, f"EASE(lambda={lam:g})", family, scorer, fit, log))
                t = time.perf_counter()
            continue
        if family == "MostPop":
            scorer, name = most_pop(X), "MostPop"
        elif family == "ItemKNN":
            scorer, name = item_knn(X, **params), f"ItemKNN(k={params['k']},shrink={params['shrink']:g})"
        elif family == "RP3beta":
            scorer, name = rp3beta(X, **params), f"RP3beta(a={params['alpha']:g},b={params['beta']:g})"
        else:
            scorer = als(X, **params)
            name = f"ALS(f={params['factors']},reg={params['reg']:g},alpha={params['alpha']:g})"
        rows.append(_row(ev, name, family, scorer, time.perf_counter() - t, log))
    return rows


def _row(ev: Eval, name: str, family: str, scorer: Scorer, fit_s: float, log: Callable[[str], None]) -> dict:
    t = time.perf_counter()
    recs = recommend(ev, scorer)
    m = ev.score(recs)
    per_user_ms = 1000 * (time.perf_counter() - t) / max(len(ev.users), 1)
    log(f"    {name}: ndcg@{K}={m['ndcg']:.4f} (fit {fit_s:.1f}s)")
    return {"method": name, "family": family, **m, "train_s": round(fit_s, 2), "predict_ms": round(per_user_ms, 3)}
