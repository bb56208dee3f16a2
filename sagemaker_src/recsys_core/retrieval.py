"""Retrieval for catalogues of millions of products: a few thousand candidates, then the ensemble ranks them.

Scoring every product for every request costs time and memory in proportion to the catalogue (a dense
row of ten million scores is 40 MB per request). Above ``ServingConfig.retrieval_min_items`` the server
scores only candidates: each member names the items it would score highest - an item-item model the
neighbours of the shopper's items (its stored top-k lists: exactly the items it scores above zero),
popularity its best sellers, an embedding model (``item_vectors`` / ``query_vector``: MF, sequential
models) its nearest item vectors from the ``ItemIndex`` built here at training time - and the ensemble
scores the union (``Ensemble.score_row(candidates=...)``).

``ItemIndex``: inner-product search over a model's item vectors, in three parts. Items whose vector is zero
(ALS leaves products nobody bought at zero) score 0 for every shopper and are left out. The ``head_items``
longest vectors (a factor model's best sellers, up to a hundred times longer than the rest) are searched
exactly. The rest go to a FAISS inverted file (``IVF<sqrt n>,Flat``) over the vectors with one extra
coordinate ``sqrt(M^2 - |y|^2)``, M the longest of them, so that nearest-neighbour search orders items by
inner product (Bachrach et al. 2014); leaving the head out keeps M small, and with it the float error of
the distances (a single item 150 times longer than the median put every distance's error above the
score gaps that order a shopper's top 100, and 8-bit codes lost the short vectors entirely). Queries are
scaled to unit length (the order is the same, the distances better conditioned). The lists searched per
query (``nprobe``) are tuned at build time on sampled shoppers' query vectors: the smallest that finds
``recall`` of each one's exact top ``recall_at`` among the candidates returned (items tied with the k-th
best count as found); the measured recall is saved with the model and printed in the training log.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .models.base import distinct

#: Search breadths tried, smallest first, when tuning for recall.
BREADTHS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


@dataclass
class IndexReport:
    """What building an index measured (saved in model.json, printed by train.py)."""

    kind: str
    n_items: int
    dims: int
    breadth: int
    recall: float
    recall_at: int
    build_s: float
    bytes: int


class ItemIndex:
    """Nearest item vectors by inner product, for one embedding model (see the module docstring)."""

    def __init__(self, index: Any, breadth: int, head_ids: np.ndarray, head_vectors: np.ndarray) -> None:
        self.index, self.head_ids, self.head_vectors = index, head_ids, head_vectors
        self.set_breadth(breadth)

    def set_breadth(self, breadth: int) -> None:
        """Inverted lists searched per query (``nprobe``; a flat index searches everything)."""
        import faiss

        self.breadth = int(breadth)
        ivf = faiss.try_extract_index_ivf(self.index) if self.index is not None else None
        if ivf is not None:
            ivf.nprobe = self.breadth

    def search(self, queries: np.ndarray, n: int) -> list[np.ndarray]:
        """Per query row, item indices of (about) its ``n`` best items: the head's exact best and the rest's
        nearest (distinct, sorted by index)."""
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        head_scores = queries @ self.head_vectors.T if len(self.head_ids) else None
        found = None
        if self.index is not None and self.index.ntotal:
            norms = np.linalg.norm(queries, axis=1, keepdims=True)
            q = np.zeros((len(queries), self.index.d), dtype=np.float32)
            q[:, :-1] = queries / np.where(norms > 0, norms, 1.0)
            _, found = self.index.search(q, int(n))
        out = []
        for r in range(len(queries)):
            parts = [found[r][found[r] >= 0]] if found is not None else []
            if head_scores is not None:
                top = min(n, len(self.head_ids))
                parts.append(self.head_ids[np.argpartition(-head_scores[r], top - 1)[:top]])
            out.append(distinct(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64))
        return out

    @classmethod
    def build(cls, vectors: np.ndarray, queries: np.ndarray, *, recall: float = 0.98, recall_at: int = 100,
              candidates: int = 1000, head_items: int = 2048, threads: int = 0) -> tuple[ItemIndex, IndexReport]:
        """Index ``vectors`` (n x d) and tune its breadth so that a search for ``candidates`` items finds
        ``recall`` of each query's exact top ``recall_at`` (mean over ``queries``)."""
        import faiss

        t0 = time.perf_counter()
        if threads:
            faiss.omp_set_num_threads(threads)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, d = vectors.shape
        norms = np.linalg.norm(vectors, axis=1)
        nonzero = np.flatnonzero(norms > 0)
        by_norm = nonzero[np.argsort(-norms[nonzero], kind="stable")]
        head_ids, rest = np.sort(by_norm[:head_items]), by_norm[head_items:]
        index, spec, n_lists = None, "exact", 1
        if len(rest):
            cap = float(norms[rest].max())
            augmented = np.empty((len(rest), d + 1), dtype=np.float32)
            augmented[:, :d] = vectors[rest] / cap
            augmented[:, d] = np.sqrt(np.maximum(1.0 - (norms[rest].astype(np.float64) / cap) ** 2, 0.0))
            n_lists = max(1, min(int(math.sqrt(len(rest))), len(rest) // 64))
            spec = f"IVF{n_lists},Flat" if n_lists > 1 else "Flat"
            index = faiss.index_factory(d + 1, spec, faiss.METRIC_L2)
            if n_lists > 1:
                faiss.extract_index_ivf(index).cp.niter = 10  # k-means on 64 points per list converges early
                rng = np.random.default_rng(0)
                index.train(augmented[rng.choice(len(rest), size=min(len(rest), 64 * n_lists), replace=False)])
            else:
                index = faiss.IndexIDMap(index)
            index.add_with_ids(augmented, rest.astype(np.int64))
            del augmented
        built = cls(index, 1, head_ids, vectors[head_ids].copy())
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        kth = kth_best(vectors, queries, recall_at)
        got, breadth = 0.0, 1
        for breadth in [b for b in BREADTHS if b < n_lists] + [n_lists]:  # n_lists: every list, exact
            built.set_breadth(breadth)
            got = recall_of(built.search(queries, candidates), vectors, queries, kth, recall_at)
            if got >= recall:
                break
        size = (int(faiss.serialize_index(index).nbytes) if index is not None else 0) + built.head_vectors.nbytes
        report = IndexReport(f"{spec} + {len(head_ids)} exact", n, d, breadth, round(got, 4), recall_at,
                             round(time.perf_counter() - t0, 1), size)
        return built, report

    def save(self, path: Path) -> None:
        import faiss

        if self.index is not None:
            faiss.write_index(self.index, str(path))
        np.savez(path.with_suffix(".head.npz"), ids=self.head_ids, vectors=self.head_vectors)

    @classmethod
    def load(cls, path: Path, breadth: int) -> ItemIndex:
        import faiss

        with np.load(path.with_suffix(".head.npz")) as head:
            ids, vectors = head["ids"], head["vectors"]
        return cls(faiss.read_index(str(path)) if path.is_file() else None, breadth, ids, vectors)


def kth_best(vectors: np.ndarray, queries: np.ndarray, k: int, chunk: int = 8) -> np.ndarray:
    """Each query's k-th best inner product over ``vectors``, by brute force (a few queries at a time)."""
    k = min(k, len(vectors))
    out = np.empty(len(queries), dtype=np.float32)
    for lo in range(0, len(queries), chunk):
        scores = queries[lo : lo + chunk] @ vectors.T
        out[lo : lo + chunk] = -np.partition(-scores, k - 1, axis=1)[:, k - 1]
    return out


def recall_of(found: list[np.ndarray], vectors: np.ndarray, queries: np.ndarray, kth: np.ndarray, k: int) -> float:
    """Mean over queries of the share of the exact top k found: found items scoring at least the k-th best
    (ties with it count), at most k."""
    if not len(queries):
        return 1.0
    k = min(k, len(vectors))
    hits = [min(k, int(np.count_nonzero(vectors[f] @ q >= t))) / k for f, q, t in zip(found, queries, kth, strict=True)]
    return float(np.mean(hits))
