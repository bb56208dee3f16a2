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


def test_top_k_of_one_large_row_equals_the_general_path_with_ties_and_non_finite_scores() -> None:
    """A single request's row takes a sampled-bound shortcut on large catalogues; the list is the one the
    multi-row path gives (ties by item index, finite scores only)."""
    import numpy as np
    from recsys_core.ensemble import top_k

    rng = np.random.default_rng(4)
    n_items = 300_000
    for trial in range(10):
        row = rng.integers(0, 20 if trial % 2 else 1_000_000, n_items).astype(np.float32)
        row[rng.integers(0, n_items, 400)] = np.nan
        row[rng.integers(0, n_items, 30)] = -np.inf
        if trial == 4:
            row[:] = 1.0  # ties flood any bound
        for k in (1, 10, 100):
            one = top_k(row[None, :], k)[0]
            general = top_k(np.vstack([row, row]), k)[0]  # two rows: the general code
            assert one.tolist() == general.tolist(), (trial, k)
