"""Retrieval for catalogues of millions of products: a few thousand candidates, then the ensemble ranks them.

Scoring every product for every request costs time and memory in proportion to the catalogue (a dense
row of ten million scores is 40 MB per request). Above ``ServingConfig.retrieval_min_items`` the server
scores only candidates: each member names the items it would score highest - an item-item model the
neighbours of the shopper's items (its stored top-k lists: exactly the items it scores above zero),
popularity its best sellers, an embedding model (``item_vectors`` / ``query_vector``: MF, sequential
models) its nearest item vectors from the ``ItemIndex`` built here at training time - and the ensemble
scores the union (``Ensemble.score_row(candidates=...)``).

``ItemIndex``: FAISS over the model's item vectors. Inner-product search is turned into nearest-neighbour
search by one extra coordinate (Bachrach et al. 2014: ``sqrt(M^2 - |y|^2)`` for items, 0 for queries, so
the distance orders items as the inner product does), which lets the index partition well-spread points
on a sphere instead of vectors of every length. Its search breadth (``nprobe`` / ``efSearch``) is tuned
at build time on sampled shoppers' query vectors: the smallest that finds ``index_recall`` of the exact
top ``recall_at`` (the measured recall is saved with the model and printed in the training log).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

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
    """Nearest item vectors by inner product, for one embedding model."""

    def __init__(self, index: Any, breadth: int) -> None:
        self.index = index
        self.set_breadth(breadth)

    def set_breadth(self, breadth: int) -> None:
        """Inverted lists searched per query (``nprobe``; a flat index searches everything)."""
        import faiss

        self.breadth = int(breadth)
        ivf = faiss.try_extract_index_ivf(self.index)
        if ivf is not None:
            ivf.nprobe = self.breadth

    def search(self, queries: np.ndarray, n: int) -> np.ndarray:
        """Item indices of the (up to) ``n`` best items per query row (-1 padded), best first."""
        q = np.zeros((len(queries), self.index.d), dtype=np.float32)
        q[:, :-1] = queries
        _, ids = self.index.search(q, int(n))
        return ids

    @classmethod
    def build(cls, vectors: np.ndarray, queries: np.ndarray, *, recall: float = 0.98, recall_at: int = 100,
              candidates: int = 1000, lists: int = 0, threads: int = 0) -> tuple[ItemIndex, IndexReport]:
        """Index ``vectors`` (n x d) and tune its breadth so that a search for ``candidates`` items finds
        ``recall`` of each query's exact top ``recall_at`` (mean over ``queries``)."""
        import faiss

        t0 = time.perf_counter()
        if threads:
            faiss.omp_set_num_threads(threads)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, d = vectors.shape
        norms = np.linalg.norm(vectors, axis=1)
        max_norm = float(norms.max(initial=0.0)) or 1.0
        augmented = np.empty((n, d + 1), dtype=np.float32)
        augmented[:, :d] = vectors
        augmented[:, d] = np.sqrt(np.maximum(max_norm**2 - norms.astype(np.float64) ** 2, 0.0))
        n_lists = lists or max(1, min(int(4 * math.sqrt(n)), n // 64))
        spec = f"IVF{n_lists},SQ8" if n_lists > 1 else "Flat"
        index = faiss.index_factory(d + 1, spec, faiss.METRIC_L2)
        if n_lists > 1:
            faiss.extract_index_ivf(index).cp.niter = 10  # k-means on 64 points per list converges early
            rng = np.random.default_rng(0)
            index.train(augmented[rng.choice(n, size=min(n, 64 * n_lists), replace=False)])
        index.add(augmented)
        del augmented
        built = cls(index, 1)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        exact = exact_top(vectors, queries, recall_at)
        got, breadth = 0.0, 1
        for breadth in [b for b in BREADTHS if b < n_lists] + [n_lists]:  # n_lists: every list, exact
            built.set_breadth(breadth)
            got = recall_of(built.search(queries, candidates), exact)
            if got >= recall:
                break
        report = IndexReport(spec, n, d, breadth, round(got, 4), recall_at, round(time.perf_counter() - t0, 1),
                             int(faiss.serialize_index(index).nbytes))
        return built, report

    def save(self, path: Path) -> None:
        import faiss

        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path, breadth: int) -> ItemIndex:
        import faiss

        return cls(faiss.read_index(str(path)), breadth)


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int, chunk: int = 8) -> np.ndarray:
    """Each query's k best items by inner product, by brute force (a few queries at a time: bounded memory)."""
    k = min(k, len(vectors))
    out = np.empty((len(queries), k), dtype=np.int64)
    for lo in range(0, len(queries), chunk):
        scores = queries[lo : lo + chunk] @ vectors.T
        out[lo : lo + chunk] = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < len(vectors) else np.arange(k)
    return out


def recall_of(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each row of ``exact`` found in the same row of ``found``."""
    if not len(exact):
        return 1.0
    hits = [len(np.intersect1d(f[f >= 0], e)) / max(len(e), 1) for f, e in zip(found, exact, strict=True)]
    return float(np.mean(hits))
