"""Metric values computed by hand for tiny lists."""

from __future__ import annotations

import math

import numpy as np
import pytest
from recsys_core.metrics import coverage, hit_matrix, novelty, ranking_metrics


def test_single_user_metrics_match_hand_computation():
    # recs [1, 2, 3], relevant {2, 4}: one hit at rank 2.
    m = ranking_metrics(hit_matrix([np.array([1, 2, 3])], [{2, 4}], 3), np.array([2]))
    assert m["precision"] == pytest.approx(1 / 3)
    assert m["recall"] == pytest.approx(1 / 2)
    assert m["f1"] == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    assert m["ndcg"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert m["map"] == pytest.approx((1 / 2) / 2)
    assert m["hit_rate"] == 1.0


def test_perfect_ranking_scores_one_and_empty_ranking_scores_zero():
    perfect = ranking_metrics(hit_matrix([np.array([5, 6])], [{5, 6}], 2), np.array([2]))
    assert perfect["ndcg"] == pytest.approx(1.0) and perfect["map"] == pytest.approx(1.0)
    miss = ranking_metrics(hit_matrix([np.array([1, 2])], [{9}], 2), np.array([1]))
    assert miss["ndcg"] == 0.0 and miss["hit_rate"] == 0.0 and miss["f1"] == 0.0


def test_metrics_average_over_users_and_skip_users_without_relevant_items():
    recs = [np.array([1, 2]), np.array([3, 4]), np.array([7, 8])]
    m = ranking_metrics(hit_matrix(recs, [{1}, {9}, set()], 2), np.array([1, 1, 0]))
    assert m["users"] == 2
    assert m["hit_rate"] == pytest.approx(0.5)
    assert m["ndcg"] == pytest.approx(0.5)


def test_relevant_items_unknown_to_the_model_lower_recall():
    # One hit, but the user had 4 relevant items of which 3 are unknown to the model.
    m = ranking_metrics(hit_matrix([np.array([1, 2])], [{1}], 2), np.array([4]))
    assert m["recall"] == pytest.approx(0.25)


def test_short_lists_are_padded_as_misses():
    m = ranking_metrics(hit_matrix([np.array([3])], [{3}], 5), np.array([1]))
    assert m["precision"] == pytest.approx(1 / 5)
    assert m["ndcg"] == pytest.approx(1.0)


def test_coverage_and_novelty():
    recs = [np.array([0, 1]), np.array([1, 2])]
    assert coverage(recs, 10) == pytest.approx(0.3)
    counts = np.array([3, 1, 0])  # users per item, out of 3 users
    expected = np.mean([-math.log2(4 / 4), -math.log2(2 / 4), -math.log2(2 / 4), -math.log2(1 / 4)])
    assert novelty(recs, counts, 3) == pytest.approx(expected)
