"""Event weighting, aggregation, recency and time decay."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from recsys_core.data import IdMap
from recsys_core.features import EventWeights, build_history, build_item_features, keep_top_k_per_row

from .conftest import make_log


def test_event_weights_order_view_below_cart_below_purchase_and_ratings_grow_with_stars():
    w = EventWeights().of(np.array(["view", "add_to_cart", "purchase", "rating", "rating"]),
                          np.array([np.nan, np.nan, np.nan, 1.0, 5.0]))
    assert w[0] < w[1] < w[2]
    assert w[3] < w[4]


def test_history_sums_events_per_pair_flags_purchases_and_ranks_recency():
    df = make_log([("u", "a", "view", None, 1), ("u", "a", "purchase", None, 2), ("u", "b", "view", None, 3),
                   ("w", "b", "rating", 4.0, 1)])
    users, items = IdMap.from_values(df["user_id"]), IdMap.from_values(df["product_id"])
    hist = build_history(df, users, items)
    X = hist.matrix().toarray()
    assert X[0, 0] > X[0, 1] > 0  # view+purchase beats a single view
    strong = hist.matrix(hist.strong.astype(float)).toarray()
    assert strong.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    recency = hist.matrix(hist.recency.astype(float) + 1).toarray() - 1  # +1 so rank 0 survives sparsity
    assert recency[0].tolist() == [1.0, 0.0]  # b is u's most recent item


def test_decay_halves_weight_per_half_life_of_newer_items():
    df = make_log([("u", f"p{n}", "purchase", None, n) for n in range(4)])
    hist = build_history(df, IdMap.from_values(df["user_id"]), IdMap.from_values(df["product_id"]))
    plain, decayed = hist.profile().toarray()[0], hist.profile(1.0).toarray()[0]
    assert decayed / plain == pytest.approx([1 / 8, 1 / 4, 1 / 2, 1])


def test_keep_top_k_per_row_keeps_the_largest_entries():
    m = sp.csr_matrix(np.array([[1.0, 5.0, 3.0], [0.0, 2.0, 0.0]]))
    assert keep_top_k_per_row(m, 2).toarray().tolist() == [[0.0, 5.0, 3.0], [0.0, 2.0, 0.0]]


def test_item_features_encode_categories_and_price_with_unknowns():
    import pandas as pd

    products = pd.DataFrame({"product_id": ["a", "b"], "category": ["Sarees", "Kurtis"], "price": ["100", "-5"]})
    f = build_item_features(products, IdMap.from_values(np.array(["a", "b", "c"])))
    assert f.category_names.tolist() == ["Kurtis", "Sarees"]
    assert f.category.tolist() == [1, 0, -1]
    assert f.price_norm[0] == 0.0 and np.isnan(f.price_norm[1]) and np.isnan(f.price_norm[2])


def test_recently_interacted_lists_a_users_items_newest_first():
    from recsys_core.features import recently_interacted

    df = make_log([("u", "old", "view", None, 1), ("u", "mid", "view", None, 2), ("u", "new", "view", None, 3),
                   ("u", "old", "view", None, 0)])
    users, items = IdMap.from_values(df["user_id"]), IdMap.from_values(df["product_id"])
    hist = build_history(df, users, items)
    assert items.ids[recently_interacted(hist, 0, 2)].tolist() == ["new", "mid"]


def test_cooccurrence_counts_users_sharing_both_items_without_self_pairs():
    from recsys_core.features import cooccurrence

    df = make_log([("u1", "a", "view", None, 1), ("u1", "b", "view", None, 2), ("u2", "a", "view", None, 1),
                   ("u2", "b", "view", None, 2), ("u3", "a", "view", None, 1), ("u3", "c", "view", None, 2)])
    users, items = IdMap.from_values(df["user_id"]), IdMap.from_values(df["product_id"])
    co = cooccurrence(build_history(df, users, items)).toarray()
    assert co.tolist() == [[0, 2, 1], [2, 0, 0], [1, 0, 0]]


def test_category_popularity_is_relative_to_the_categorys_bestseller():
    from recsys_core.features import category_popularity

    pop = np.array([10.0, 5.0, 2.0, 1.0, 7.0])
    cat = np.array([0, 0, 1, 1, -1])
    assert category_popularity(pop, cat).tolist() == [1.0, 0.5, 1.0, 0.5, 0.0]
