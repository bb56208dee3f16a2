"""Top-k selection and score blending."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from recsys_core.ensemble import row_max_normalize, top_k


def brute_force(scores: np.ndarray, k: int, exclude: np.ndarray) -> list[list[int]]:
    out = []
    for row, ex in zip(scores, exclude, strict=True):
        items = [i for i in np.lexsort((np.arange(len(row)), -row)) if not ex[i]]
        out.append(items[:k])
    return out


@pytest.mark.parametrize("n_items", [7, 50, 3000])
@pytest.mark.parametrize("ties", [False, True])
def test_top_k_matches_a_full_sort_with_exclusions_and_ties(n_items, ties):
    rng = np.random.default_rng(n_items)
    scores = rng.random((20, n_items)).astype(np.float32)
    if ties:
        scores = np.round(scores * 3) / 3  # few distinct values: the shortcut must fall back
        scores[:5] = 0.0
    exclude = rng.random((20, n_items)) < 0.2
    got = top_k(scores, 10, sp.csr_matrix(exclude.astype(np.float32)))
    assert [g.tolist() for g in got] == brute_force(scores, 10, exclude)


def test_top_k_returns_fewer_items_when_everything_else_is_excluded():
    scores = np.array([[0.3, 0.2, 0.1]], dtype=np.float32)
    got = top_k(scores, 5, sp.csr_matrix(np.array([[1.0, 0.0, 1.0]])))
    assert got[0].tolist() == [1]


def test_row_max_normalize_makes_the_largest_magnitude_one_and_keeps_zero_rows():
    out = row_max_normalize(np.array([[2.0, -4.0], [0.0, 0.0]]))
    assert out.tolist() == [[0.5, -1.0], [0.0, 0.0]]
