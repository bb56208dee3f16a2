"""The one-row serving path (``score_row``, no scipy matrices per request) must answer exactly as the
batch sparse path it replaced: same products in the same order, same scores.

``reference_recommend`` is ``Bundle.recommend`` as it was before the fast path: it scores scipy CSR
rows with ``Ensemble.score`` (still the batch path used by selection and evaluation) and ranks with
the multi-row ``top_k``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

N_USERS, N_ITEMS = 300, 200


def _bundle(tmp_path, decay: float, repeat: float, boost: float = 0.0):
    import inference
    from recsys_core.bundle import Bundle, recipe_doc
    from recsys_core.data import clean_interactions
    from recsys_core.features import item_popularity
    from recsys_core.models.ease import EASEConfig
    from recsys_core.models.item_knn import ItemKNNConfig
    from recsys_core.models.mf import MFConfig
    from recsys_core.models.rp3beta import RP3betaConfig
    from recsys_core.models.sequence import SequenceConfig
    from recsys_core.models.user_knn import UserKNNConfig
    from recsys_core.prepare import prepare
    from recsys_core.selection import Candidate, Recipe, fit_recipe
    from recsys_core.synthetic import SyntheticConfig, synthetic_tables

    tables = synthetic_tables(SyntheticConfig(n_users=N_USERS, n_items=N_ITEMS, events_per_user=15, seed=4))
    clean, _ = clean_interactions(tables["interactions"])
    prep = prepare(clean, tables["products"], num_threads=1)
    candidates = [
        Candidate("user_knn", UserKNNConfig(k=20)),  # fewer neighbours than users: the argpartition cut
        Candidate("user_knn", UserKNNConfig(k=10_000)),  # every user a neighbour
        Candidate("ease", EASEConfig(lambda_factor=0.5, k=50)),
        Candidate("sequence", SequenceConfig(window=3, k=30)),
        Candidate("rp3beta", RP3betaConfig(k=30)),
        Candidate("item_knn", ItemKNNConfig("cosine", k=20)),
        Candidate("mf", MFConfig("als", factors=8, iterations=3)),
        Candidate("mf", MFConfig("bpr", factors=8, iterations=2)),
    ]
    recipe = Recipe(candidates, [0.3, 0.1, 0.15, 0.05, 0.1, 0.1, 0.15, 0.05], decay, repeat, boost)
    pop = item_popularity(prep.hist)
    bundle = Bundle("fast-v1", prep.users, prep.items, prep.hist, fit_recipe(recipe, prep),
                    recipe_doc(recipe.candidates, recipe.weights), pop / pop.max(),
                    prep.item_features.category, prep.item_features.category_names)
    bundle.save(tmp_path)
    return inference.model_fn(str(tmp_path))


@pytest.fixture(scope="module", params=[(0.0, 0.0, 0.0), (5.0, 0.3, 0.0), (2.0, 0.3, 1.0)],
                ids=["plain", "decay+repeat", "boost+repeat"])
def bundle(request, tmp_path_factory):
    return _bundle(tmp_path_factory.mktemp("model"), *request.param)


def reference_recommend(b, user_id: str, k: int = 10, recent_product_ids: list[str] | None = None,
                        exclude_product_ids: list[str] | None = None, exclude: str = "purchased",
                        category: str | None = None) -> tuple[list[int], np.ndarray, str]:
    """The pre-fast-path ranking: (item indices best first, raw scores, strategy)."""
    from recsys_core.ensemble import top_k

    n = b.hist.n_items
    u = b.users.index_one(user_id)
    recent = b.items.index(list(recent_product_ids or []))
    recent = recent[recent >= 0]
    session = None
    if len(recent):
        session = sp.csr_matrix((np.ones(len(recent), np.float32), (np.zeros(len(recent), int), recent)), shape=(1, n))
        session.sum_duplicates()
        session.data[:] = 1.0
    mask = np.zeros(n, dtype=bool)
    if u >= 0:
        profile = b._profiles[u]
        if session is not None:
            peak = float(profile.data.max(initial=0.0)) or 1.0
            scores, strategy = b.ensemble.score(profile + session * peak, np.array([-1]))[0], "personalized+session"
        else:
            scores, strategy = b.ensemble.score(profile, np.array([u]))[0], "personalized"
        if exclude != "none":
            owned = b._strong if exclude == "purchased" else b._any
            mask[owned.indices[owned.indptr[u] : owned.indptr[u + 1]]] = True
    elif session is not None:
        scores, strategy = b.ensemble.score(session, np.array([-1]))[0], "session"
    else:
        scores, strategy = b._cold_scores(user_id)
    if exclude == "interacted" and len(recent):
        mask[recent] = True
    if exclude_product_ids:
        ex = b.items.index(list(exclude_product_ids))
        mask[ex[ex >= 0]] = True
    if category is not None:
        mask |= ~b._category_mask(category)
    k = min(k, n)
    scores = np.where(mask, -np.inf, scores)
    # two copies of the row force top_k's general multi-row code, not its one-row shortcut
    ranked = top_k(np.vstack([scores, scores]), k)[0]
    return list(ranked), scores, strategy


def requests(b) -> list[dict[str, Any]]:
    rng = np.random.default_rng(11)
    users = [str(x) for x in b.users.ids]
    items = [str(x) for x in b.items.ids]
    cats = [str(c) for c in b.category_names]
    out: list[dict[str, Any]] = []
    for exclude in ("purchased", "interacted", "none"):
        for n in range(40):
            known = users[int(rng.integers(len(users)))]
            recent = [items[int(i)] for i in rng.choice(len(items), int(rng.integers(1, 6)))]  # may repeat
            out += [
                {"user_id": known, "k": 10, "exclude": exclude},
                {"user_id": known, "k": 25, "exclude": exclude, "recent_product_ids": recent},
                {"user_id": f"new-{n}", "k": 10, "exclude": exclude, "recent_product_ids": recent + ["no-such-id"]},
                {"user_id": f"new-{n}", "k": 5, "exclude": exclude},
                {"user_id": known, "k": 300, "exclude": exclude, "category": cats[n % len(cats)],
                 "exclude_product_ids": recent},
            ]
    return out


def test_profiles_are_canonical_history_rows(bundle):
    """Each profile row lists distinct items in ascending order, as build_history made it. Building the
    serving matrices once compacted the history's shared index array in place (eliminate_zeros), which
    scrambled profiles and the purchased-item exclusions of every saved model."""
    P = bundle._profiles
    assert all(np.all(np.diff(P.indices[P.indptr[u] : P.indptr[u + 1]]) > 0) for u in range(P.shape[0]))


def test_responses_match_the_sparse_path(bundle):
    seen = set()
    for req in requests(bundle):
        got = bundle.recommend(**req)
        ranked, scores, strategy = reference_recommend(bundle, **req)
        seen.add((strategy, req["exclude"]))
        assert got["strategy"] == strategy, req
        assert [r["product_id"] for r in got["recommendations"]] == [str(bundle.items.ids[i]) for i in ranked], req
        assert [r["score"] for r in got["recommendations"]] == [round(float(scores[i]), 6) for i in ranked], req
    strategies = {s for s, _ in seen}
    assert strategies >= {"personalized", "personalized+session", "session", "popular"}
    assert len(seen) == len(strategies) * 3  # every strategy under every exclude mode


def test_raw_scores_match_for_every_user_and_model(bundle):
    """Before rounding and ranking: each model and the ensemble, known users and folded-in rows."""
    ens, P, n = bundle.ensemble, bundle._profiles, bundle.hist.n_items
    for u in range(P.shape[0]):
        row = P[u]
        for user in (u, -1):
            np.testing.assert_allclose(ens.score_row(row.indices, row.data, user, n),
                                       ens.score(row, np.array([user]))[0], rtol=0, atol=1e-9)
            for model in ens.models:
                np.testing.assert_allclose(model.score_row(row.indices, row.data, user, n),
                                           model.score(row, np.array([user]))[0], rtol=0, atol=1e-9,
                                           err_msg=f"{model.name} user {u}")


def test_empty_profile_row_matches(bundle):
    ens, n = bundle.ensemble, bundle.hist.n_items
    empty = sp.csr_matrix((1, n), dtype=np.float32)
    got = ens.score_row(np.zeros(0, np.int32), np.zeros(0, np.float32), -1, n)
    np.testing.assert_allclose(got, ens.score(empty, np.array([-1]))[0], rtol=0, atol=1e-9)


def test_one_row_top_k_matches_the_general_one():
    from recsys_core.ensemble import top_k

    rng = np.random.default_rng(5)
    for n in (7, 50, 2000):
        scores = rng.integers(0, 5, n).astype(np.float32)  # many ties
        scores[rng.integers(0, n, n // 3)] = -np.inf
        for k in (1, 3, 10, n // 2, n, n + 4):
            assert list(top_k(scores[None, :], k)[0]) == list(top_k(np.vstack([scores, scores]), k)[0])


# ------------------------------------------------------------------ shoppers with precomputed state
@pytest.fixture(scope="module")
def held(bundle):
    """The same model with every shopper's state precomputed (as load does for the costliest ones)."""
    import copy

    from recsys_core.serving import ServingConfig

    b = copy.copy(bundle)
    b.ensemble = copy.copy(bundle.ensemble)
    b.serving = ServingConfig(heavy_ms=1e-9, heavy_memory_mb=1e4)
    b.prepare_serving()
    assert b.ensemble.heavy.n_shoppers == N_USERS  # everyone, in every member that holds state
    return b


def test_held_rows_answer_exactly_as_scoring_them(held):
    """A held shopper's own row is that row: same products, same scores, bit for bit."""
    for req in requests(held):
        if "recent_product_ids" in req:
            continue
        got = held.recommend(**req)
        ranked, scores, _ = reference_recommend(held, **req)
        assert [r["product_id"] for r in got["recommendations"]] == [str(held.items.ids[i]) for i in ranked], req
        assert [r["score"] for r in got["recommendations"]] == [round(float(scores[i]), 6) for i in ranked], req


def test_held_state_steered_by_a_session_ranks_as_scoring_the_summed_profile(held, bundle):
    """A session added to held state (item-item rows plus the session's row; ALS fold-in terms plus the
    session's) sums in another order than scoring the summed profile: same ranking, scores to float rounding."""
    n_steered = 0
    for req in requests(held):
        if "recent_product_ids" not in req or held.users.index_one(req["user_id"]) < 0:
            continue
        n_steered += 1
        got, want = held.recommend(**req), bundle.recommend(**req)
        assert got["strategy"] == want["strategy"] == "personalized+session"
        assert [r["product_id"] for r in got["recommendations"]] == [r["product_id"] for r in want["recommendations"]]
        np.testing.assert_allclose([r["score"] for r in got["recommendations"]],
                                   [r["score"] for r in want["recommendations"]], rtol=0, atol=2e-6)
    assert n_steered >= 100


def test_heavy_shoppers_are_the_costliest_within_the_budget(bundle):
    """The memory budget goes to the shoppers whose rows cost most, and no further."""
    from recsys_core.serving import HeavyShoppers, ServingConfig

    ease = next(m for m in bundle.ensemble.models if m.family == "ease")
    profiles = bundle._profiles
    cost = ease.heavy_cost(profiles)
    row_mb = ease.held_bytes(bundle.hist.n_items) / 2**20
    held = HeavyShoppers.build([ease], profiles, ServingConfig(heavy_ms=1e-9, heavy_memory_mb=3.5 * row_mb))
    chosen = np.flatnonzero(held.slots[0] >= 0)
    assert len(chosen) == 3
    assert set(chosen.tolist()) == set(np.argsort(-cost, kind="stable")[:3].tolist())
    assert HeavyShoppers.build([ease], profiles, ServingConfig(heavy_ms=0.0)).n_shoppers == 0  # off
    threshold = float(np.sort(cost)[-5])
    above = HeavyShoppers.build([ease], profiles, ServingConfig(heavy_ms=threshold * 1000))
    assert above.n_shoppers == int((cost >= threshold).sum()) < len(cost)
