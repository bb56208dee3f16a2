"""Every model family on a log with an obvious answer: two groups of users who never share items."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from recsys_core.models import FAMILIES, DataShape
from recsys_core.models.content import Content, SegmentPopularity
from recsys_core.models.ease import EASE, EASEConfig
from recsys_core.models.item_knn import ItemKNNConfig
from recsys_core.models.mf import MFConfig
from recsys_core.models.popularity import Popularity
from recsys_core.models.rp3beta import RP3betaConfig
from recsys_core.models.sequence import SequenceConfig
from recsys_core.models.user_knn import UserKNN, UserKNNConfig
from recsys_core.prepare import prepare

COLLABORATIVE = [
    ("item_knn", ItemKNNConfig("cosine", k=10)),
    ("item_knn", ItemKNNConfig("bm25", k=10)),
    ("item_knn", ItemKNNConfig("tfidf", k=10)),
    ("item_knn", ItemKNNConfig("cosine", k=10, shrink=10.0)),
    ("rp3beta", RP3betaConfig(k=10)),
    ("ease", EASEConfig(lambda_factor=0.1)),
    ("sequence", SequenceConfig(window=2, k=10)),
    ("user_knn", UserKNNConfig(k=3)),
    ("mf", MFConfig("als", factors=4, regularization=0.01, alpha=5.0, iterations=10)),
]


def profile_of(prep, items: list[str]) -> sp.csr_matrix:
    idx = prep.items.index(items)
    return sp.csr_matrix((np.ones(len(idx), np.float32), (np.zeros(len(idx), int), idx)), shape=(1, len(prep.items)))


@pytest.mark.parametrize(("family", "config"), COLLABORATIVE, ids=lambda x: getattr(x, "__name__", str(x))[:30])
def test_session_of_group_a_items_ranks_every_other_group_a_item_above_group_b(two_groups, family, config):
    prep = prepare(two_groups, num_threads=1)
    model = FAMILIES[family](config).fit(prep.hist.matrix(), prep.ctx)
    scores = model.score(profile_of(prep, ["a1", "a2"]), np.array([-1]))[0]
    a_rest = scores[prep.items.index(["a0", "a3", "a4"])]
    b_all = scores[prep.items.index(["b0", "b1", "b2", "b3", "b4"])]
    assert a_rest.min() > b_all.max()


@pytest.mark.parametrize(("family", "config"), COLLABORATIVE, ids=lambda x: getattr(x, "__name__", str(x))[:30])
def test_saved_state_reproduces_scores(two_groups, family, config):
    prep = prepare(two_groups, num_threads=1)
    model = FAMILIES[family](config).fit(prep.hist.matrix(), prep.ctx)
    clone = FAMILIES[family].from_state(config, model.state())
    rows, users = prep.hist.matrix()[:3], np.array([0, 1, -1])
    np.testing.assert_allclose(clone.score(rows, users), model.score(rows, users), rtol=1e-5, atol=1e-6)


def test_als_known_user_scores_own_group_higher(two_groups):
    prep = prepare(two_groups, num_threads=1)
    # Two groups: a rank-2 model captures the structure exactly.
    model = FAMILIES["mf"](MFConfig("als", factors=2, regularization=0.1, alpha=5.0)).fit(prep.hist.matrix(), prep.ctx)
    X = prep.hist.matrix()
    scores = model.score(X, np.arange(X.shape[0]))
    a = prep.items.index(["a0", "a1", "a2", "a3", "a4"])
    b = prep.items.index(["b0", "b1", "b2", "b3", "b4"])
    assert (scores[:10][:, a].min(axis=1) > scores[:10][:, b].max(axis=1)).all()
    assert (scores[10:][:, b].min(axis=1) > scores[10:][:, a].max(axis=1)).all()


def test_bpr_learns_the_group_structure(two_groups):
    prep = prepare(two_groups, num_threads=1)
    cfg = MFConfig("bpr", factors=4, regularization=0.001, learning_rate=0.1, iterations=60)
    model = FAMILIES["mf"](cfg).fit(prep.hist.matrix(), prep.ctx)
    X = prep.hist.matrix()
    scores = model.score(X, np.arange(X.shape[0]))
    a = prep.items.index(["a0", "a1", "a2", "a3", "a4"])
    in_group_u = scores[:10][:, a].mean()  # users are sorted: u0..u9 then v0..v9
    assert in_group_u > scores[10:][:, a].mean()


def test_popularity_ranks_by_distinct_users_and_trending_prefers_recent_items():
    from .conftest import make_log

    df = make_log([("u1", "old", "view", None, 0), ("u2", "old", "view", None, 1), ("u3", "new", "view", None, 100)])
    prep = prepare(df)
    pop = Popularity().fit(prep.hist.matrix(), prep.ctx).score(prep.hist.matrix()[:1], np.array([0]))[0]
    assert pop[prep.items.index_one("old")] > pop[prep.items.index_one("new")]
    trend = Popularity(Popularity.Config(half_life_fraction=0.01)).fit(prep.hist.matrix(), prep.ctx)
    assert trend.pop[prep.items.index_one("new")] > trend.pop[prep.items.index_one("old")]


def test_content_ranks_an_unseen_item_of_the_users_category_above_other_categories(two_groups):
    products = pd.DataFrame({
        "product_id": ["a0", "a1", "a2", "a3", "a4", "b0", "b1", "b2", "b3", "b4", "a_new", "b_new"],
        "category": ["A"] * 5 + ["B"] * 5 + ["A", "B"],
        "price": [100] * 12,
    })
    prep = prepare(two_groups, products)
    model = Content().fit(prep.hist.matrix(), prep.ctx)
    scores = model.score(profile_of(prep, ["a1"]), np.array([-1]))[0]
    assert scores[prep.items.index_one("a_new")] > scores[prep.items.index(["b0", "b_new"])].max()


def test_segment_popularity_answers_with_what_similar_users_bought(two_groups):
    prep = prepare(two_groups)
    segment = np.where(np.char.startswith(prep.users.ids.astype(str), "u"), 0, 1)
    seg = SegmentPopularity.fit(prep.hist.matrix(), segment)
    top = int(np.argmax(seg.scores(1)))
    assert prep.items.ids[top].startswith("b")
    assert seg.scores(7) is None


def test_models_declare_when_the_data_is_too_big_for_them():
    assert EASE.fits(EASEConfig(max_items=1000), DataShape(10, 5000, 100)) is not None
    assert EASE.fits(EASEConfig(max_items=1000), DataShape(10, 500, 100)) is None
    assert "users" in UserKNN.fits(UserKNNConfig(max_users=10), DataShape(11, 5, 20))


def test_segment_pop_ranks_what_the_users_demographic_segment_interacts_with(two_groups):
    from recsys_core.models.content import SegmentPop

    users = pd.DataFrame({"user_id": [f"u{n}" for n in range(10)] + [f"v{n}" for n in range(10)],
                          "gender": ["f"] * 10 + ["m"] * 10})
    prep = prepare(two_groups, users=users)
    model = SegmentPop().fit(prep.hist.matrix(), prep.ctx)
    v0 = prep.users.index_one("v0")
    scores = model.score(prep.hist.matrix()[[v0]], np.array([v0]))[0]
    assert scores[prep.items.index(["b0", "b1", "b2", "b3", "b4"])].min() > scores[prep.items.index(["a0"])].max()
    clone = SegmentPop.from_state(model.config, model.state())
    np.testing.assert_allclose(clone.score(prep.hist.matrix()[[v0]], np.array([v0])), [scores])


def test_segment_pop_serves_one_request_exactly_as_it_scores_a_batch(two_groups):
    """score_row (the serving path, no dense segment row) equals score() bit for bit, known user or not."""
    from recsys_core.models.content import SegmentPop

    users = pd.DataFrame({"user_id": [f"u{n}" for n in range(10)] + [f"v{n}" for n in range(5)],
                          "gender": ["f"] * 10 + ["m"] * 5})  # v5..v9 have no segment
    prep = prepare(two_groups, users=users)
    model = SegmentPop().fit(prep.hist.matrix(), prep.ctx)
    X = prep.hist.matrix()
    for user in [*range(X.shape[0]), -1]:
        row = X[[max(user, 0)]]
        expected = model.score(row, np.array([user]))[0]
        got = model.score_row(row.indices, row.data, user, X.shape[1])
        assert got.dtype == expected.dtype and np.array_equal(got, expected), user
