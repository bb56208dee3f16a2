"""Retrieval (huge catalogues): requests score candidates, not every product, and keep their semantics.

The threshold is lowered so a small shop takes the retrieval path. With candidates covering the whole
catalogue, every request kind answers as full scoring does; with few candidates, rules still hold:
exclusions, filters (k products back, filled from best sellers), promotions, exploration, carts,
sessions and product pages.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

N_USERS, N_ITEMS = 300, 240


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from recsys_core.bundle import Bundle, recipe_doc
    from recsys_core.data import clean_interactions
    from recsys_core.features import item_popularity
    from recsys_core.models.content import SegmentPopularity
    from recsys_core.models.ease import EASEConfig
    from recsys_core.models.mf import MFConfig
    from recsys_core.models.user_knn import UserKNNConfig
    from recsys_core.prepare import prepare, user_segments
    from recsys_core.rules import ExplorationConfig
    from recsys_core.selection import Candidate, Recipe, fit_recipe
    from recsys_core.synthetic import SyntheticConfig, synthetic_tables
    from train import _catalogue_and_trending

    tables = synthetic_tables(SyntheticConfig(n_users=N_USERS, n_items=N_ITEMS, events_per_user=15, seed=5))
    clean, _ = clean_interactions(tables["interactions"])
    # New products nobody interacted with (their pages: similar by content) and shoppers known only by the
    # users table (a segment, no history)
    products = pd.concat([tables["products"], tables["products"].head(12).assign(
        product_id=[f"fresh{i}" for i in range(12)], price=lambda d: d["price"] * 1.01)], ignore_index=True)
    users = pd.concat([tables["users"], tables["users"].head(10).assign(user_id=[f"signup{i}" for i in range(10)])],
                      ignore_index=True)
    prep = prepare(clean, products, users, num_threads=1)
    recipe = Recipe([Candidate("ease", EASEConfig(k=40)), Candidate("mf", MFConfig("als", factors=8, iterations=4)),
                     Candidate("user_knn", UserKNNConfig(k=20)), Candidate("popularity", FAMILIES_CONFIG())],
                    [0.5, 0.3, 0.15, 0.05], 2.0, 0.2, 1.0)
    pop = item_popularity(prep.hist)
    catalogue, trending = _catalogue_and_trending(prep, products, ExplorationConfig(share=0.2))
    segments = SegmentPopularity.fit(prep.hist.matrix(), user_segments(prep))
    bundle = Bundle("retrieval-v1", prep.users, prep.items, prep.hist, fit_recipe(recipe, prep),
                    recipe_doc(recipe.candidates, recipe.weights), pop / pop.max(), prep.item_features.category,
                    prep.item_features.category_names, segments, prep.user_features.user_ids,
                    prep.user_features.segment, trending=trending, catalogue=catalogue,
                    exploration=ExplorationConfig(share=0.2))
    path = tmp_path_factory.mktemp("retrieval")
    bundle.save(path)
    return path


def FAMILIES_CONFIG():  # noqa: N802 - the popularity family's default config
    from recsys_core.models.popularity import PopularityConfig

    return PopularityConfig()


def _with_serving(model_dir, tmp_path, **serving):
    """The model re-saved with these serving settings and indexes built, loaded as model_fn loads it."""
    import inference
    from recsys_core.bundle import Bundle

    b = Bundle.load(model_dir)
    b.serving = replace(b.serving, **serving)
    b.build_indexes(threads=1)
    b.save(tmp_path)
    return inference.model_fn(str(tmp_path))


@pytest.fixture(scope="module")
def full(model_dir):
    import inference

    return inference.model_fn(str(model_dir))


@pytest.fixture(scope="module")
def covering(model_dir, tmp_path_factory):
    return _with_serving(model_dir, tmp_path_factory.mktemp("covering"), retrieval_min_items=1,
                         retrieval_candidates=N_ITEMS + 12, index_exact_items=16)


@pytest.fixture(scope="module")
def narrow(model_dir, tmp_path_factory):
    return _with_serving(model_dir, tmp_path_factory.mktemp("narrow"), retrieval_min_items=1, retrieval_candidates=8,
                         index_exact_items=16)


def requests(b) -> list[dict]:
    rng = np.random.default_rng(2)
    users = [str(u) for u in b.users.ids]
    items = [str(i) for i in b.items.ids]
    cats = [str(c) for c in b.category_names]
    out = []
    for n in range(30):
        known = users[int(rng.integers(len(users)))]
        recent = [items[int(i)] for i in rng.choice(len(items), 3, replace=False)]
        out += [
            {"user_id": known, "k": 10},
            {"user_id": known, "k": 10, "exclude": "interacted", "recent_product_ids": recent},
            {"user_id": f"new-{n}", "k": 10, "recent_product_ids": recent},
            {"user_id": known, "k": 12, "category": cats[n % len(cats)], "exclude_product_ids": recent[:1]},
            {"user_id": None, "k": 10, "product_id": recent[0]},
            {"user_id": known, "k": 10, "cart_product_ids": recent},
            {"user_id": known, "k": 10, "filters": {"price_max": 400.0, "in_stock_only": True}},
            {"user_id": known, "k": 10, "promotion": (recent, 2, "promo")},
            {"user_id": known, "k": 10, "exploration_share": 0.3},
            {"user_id": None, "k": 10, "product_id": f"fresh{n % 12}"},  # no history: similar by content
            {"user_id": f"signup{n % 10}", "k": 10},  # a segment, no history
        ]
    return out


def _ids(answer: dict) -> list[str]:
    return [r["product_id"] for r in answer["recommendations"]]


def test_index_is_built_saved_and_loaded_for_the_embedding_member(covering, full):
    assert set(covering.ensemble.indexes) == {1}  # the ALS member; the others name their own candidates
    assert covering._retrieval and not full._retrieval
    report = covering.index_reports[1]
    assert report.recall >= 0.98 and report.n_items == N_ITEMS + 12
    assert "IVF" in report.kind and "16 exact" in report.kind


def test_candidates_covering_the_catalogue_answer_as_full_scoring(covering, full):
    """Every request kind: same products in the same order, scores equal to float rounding."""
    for req in requests(full):
        got, want = covering.recommend(**req), full.recommend(**req)
        assert got["strategy"] == want["strategy"], req
        assert _ids(got) == _ids(want), req
        np.testing.assert_allclose([r["score"] for r in got["recommendations"]],
                                   [r["score"] for r in want["recommendations"]], rtol=1e-5, atol=2e-6)
        assert [sorted(r) for r in got["recommendations"]] == [sorted(r) for r in want["recommendations"]]


def test_few_candidates_keep_every_rule(narrow):
    b = narrow
    owned = {u: set(b._strong.indices[b._strong.indptr[u] : b._strong.indptr[u + 1]].tolist())
             for u in range(b.hist.n_users)}
    for req in requests(b):
        got = b.recommend(**req)
        idx = [b.items.index_one(p) for p in _ids(got)]
        assert len(idx) == len(set(idx)) == req["k"], req  # k products, never one twice
        u = b.users.index_one(req["user_id"]) if req.get("user_id") else -1
        if u >= 0 and "product_id" not in req and "cart_product_ids" not in req:
            assert not owned[u] & set(idx), req  # never a purchased product
        for key in ("product_id",):
            if key in req:
                assert b.items.index_one(req[key]) not in idx
        if "cart_product_ids" in req:
            assert not {b.items.index_one(p) for p in req["cart_product_ids"]} & set(idx)
        if "category" in req:
            assert all(str(b.category_names[b.item_category[i]]) == req["category"] for i in idx), req
        if "exclude_product_ids" in req:
            assert not {b.items.index_one(p) for p in req["exclude_product_ids"]} & set(idx)
        if "filters" in req:
            assert all(b.catalogue.price[i] <= 400.0 and b.catalogue.available[i] for i in idx), req
        if "promotion" in req:
            promoted = [r for r in got["recommendations"] if r.get("promoted")]
            promo = {b.items.index_one(p) for p in req["promotion"][0]} - owned.get(u, set())
            assert len(promoted) == min(2, len(promo)) and got["promotion"] == "promo"
        if "exploration_share" in req:
            explored = [b.items.index_one(r["product_id"]) for r in got["recommendations"] if r.get("explored")]
            assert explored and all(b.catalogue.explorable[i] for i in explored)


def test_a_filter_few_candidates_pass_still_fills_the_list_from_best_sellers(narrow):
    b = narrow
    cheap = float(np.nanquantile(b.catalogue.price, 0.1))
    user = str(b.users.ids[0])
    got = b.recommend(user, k=10, filters={"price_max": cheap})
    idx = [b.items.index_one(p) for p in _ids(got)]
    assert len(idx) == 10 and all(b.catalogue.price[i] <= cheap for i in idx)


def test_training_log_says_which_path(tmp_path):
    """train.py picks retrieval above the catalogue size it is given, and says so."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from recsys_core.synthetic import SyntheticConfig, synthetic_tables

    data = tmp_path / "train"
    data.mkdir()
    for name, df in synthetic_tables(SyntheticConfig(n_users=80, n_items=60, events_per_user=8)).items():
        df.to_csv(data / f"{name}.csv", index=False)
    src = Path(__file__).resolve().parents[2] / "sagemaker_src"
    logs = {}
    for limit in ("50", "1000000"):
        env = {**os.environ, "SM_CHANNEL_TRAIN": str(data), "SM_MODEL_DIR": str(tmp_path / f"m{limit}"),
               "SM_OUTPUT_DATA_DIR": str(tmp_path / f"o{limit}")}
        out = subprocess.run([sys.executable, str(src / "train.py"), "--recipe", "0.7*item_knn,0.3*mf",
                              "--retrieval-min-items", limit], env=env, capture_output=True, text=True, timeout=300,
                             check=True)
        logs[limit] = out.stdout
    assert "retrieval" in logs["50"] and "index over" in logs["50"]
    assert "every product" in logs["1000000"] and "index over" not in logs["1000000"]
    doc = json.loads((tmp_path / "m50" / "model.json").read_text())
    assert doc["serving"]["retrieval_min_items"] == 50 and doc["indexes"]["1"]["n_items"] == 60
    assert (tmp_path / "m50" / "index_m1.head.npz").is_file()


def test_the_index_finds_what_exact_scoring_ranks_first(model_dir, tmp_path):
    """ALS alone, 20 candidates of 240 products: the served top 10 is (nearly) the exact top 10, which the
    best sellers alone would not give."""
    import inference
    from recsys_core.bundle import Bundle
    from recsys_core.ensemble import Ensemble

    b = Bundle.load(model_dir)
    b.ensemble = Ensemble([b.ensemble.models[1]], [1.0])
    b.recipe = [b.recipe[1] | {"weight": 1.0}]
    b.save(tmp_path / "mf")
    exact = inference.model_fn(str(tmp_path / "mf"))
    served = _with_serving(tmp_path / "mf", tmp_path / "served", retrieval_min_items=1, retrieval_candidates=20,
                           index_exact_items=8)
    best_sellers = set(served._popular_head.tolist())
    recall, from_index = [], 0
    for u in [str(x) for x in exact.users.ids[:150]]:
        want, got = _ids(exact.recommend(u, k=10)), _ids(served.recommend(u, k=10))
        recall.append(len(set(want) & set(got)) / 10)
        from_index += len({served.items.index_one(p) for p in got} - best_sellers)
    assert np.mean(recall) >= 0.95
    assert from_index > 150  # most lists hold products the best sellers did not bring


def test_a_member_that_cannot_name_candidates_keeps_full_scoring(model_dir):
    """Content scores by category affinity over the whole catalogue: with it in the blend, every product is scored."""
    from recsys_core.bundle import Bundle
    from recsys_core.ensemble import Ensemble
    from recsys_core.models.content import Content

    b = Bundle.load(model_dir)
    content = Content().fit(b.hist.matrix(), _ctx(b))
    b.ensemble = Ensemble([b.ensemble.models[0], content], [0.8, 0.2])
    b.serving = replace(b.serving, retrieval_min_items=1)
    b.prepare_serving()
    assert b.uses_retrieval and b.ensemble.cannot_retrieve == [content.name] and not b._retrieval
    answer = b.recommend(str(b.users.ids[0]), k=5)
    assert len(answer["recommendations"]) == 5


def _ctx(b):  # noqa: ANN001, ANN202 - a Bundle in, a FitContext out
    from recsys_core.models import FitContext

    return FitContext(item_category=b.item_category, item_sub_category=b.item_category,
                      item_price_band=np.zeros(b.hist.n_items, dtype=np.int8))
