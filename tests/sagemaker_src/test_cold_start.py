"""New shoppers get trending only where the log shows it predicts better than all-time popularity."""

from __future__ import annotations

import numpy as np

from .conftest import make_log

DAY = 86_400


def _shop(shifting: bool):
    """100 days, 6 shoppers a day buying 3 of 5 products. With ``shifting``, the 5 products on sale slide by
    one every 4 days (old bestsellers stop selling); without it, the same 5 sell all along."""
    rng = np.random.default_rng(0)
    rows = []
    for day in range(100):
        for s in range(6):
            pool = [f"p{day // 4 + i}" for i in range(5)] if shifting else [f"p{i}" for i in range(5)]
            for item in rng.choice(pool, 3, replace=False):
                rows.append((f"d{day}s{s}", item, "purchase", None, day * DAY + s * 60))
    return make_log(rows)


def test_trending_is_chosen_where_tastes_move():
    from recsys_core.cold_start import choose_cold_start

    choice = choose_cold_start(_shop(shifting=True), k=5)
    assert choice.strategy == "trending", choice.reason


def test_popularity_stays_where_nothing_moves_or_there_is_no_clock():
    from recsys_core.cold_start import choose_cold_start

    assert choose_cold_start(_shop(shifting=False), k=5).strategy == "popular"
    assert choose_cold_start(_shop(shifting=True), k=5, has_clock=False).strategy == "popular"


def test_a_new_shopper_gets_the_trending_list_when_it_was_chosen(tmp_path):
    import inference
    import train
    from recsys_core.bundle import Bundle, recipe_doc
    from recsys_core.features import item_popularity
    from recsys_core.models.item_knn import ItemKNNConfig
    from recsys_core.prepare import prepare
    from recsys_core.selection import Candidate, Recipe, fit_recipe

    log = _shop(shifting=True)
    prep = prepare(log, None, None, num_threads=1)
    recipe = Recipe([Candidate("item_knn", ItemKNNConfig("cosine", k=20))], [1.0])
    catalogue, trending = train._catalogue_and_trending(prep, None)
    pop = item_popularity(prep.hist)
    Bundle("cold-v1", prep.users, prep.items, prep.hist, fit_recipe(recipe, prep),
           recipe_doc(recipe.candidates, recipe.weights), pop / pop.max(), prep.item_features.category,
           prep.item_features.category_names, trending=trending, catalogue=catalogue,
           cold_start="trending").save(tmp_path)
    model = inference.model_fn(str(tmp_path))
    answer = inference.predict_fn({"user_id": "someone-new", "k": 5}, model)
    assert answer["strategy"] == "trending"
    on_sale_lately = {f"p{99 // 4 + i}" for i in range(-2, 5)}  # what the last days sold
    assert {r["product_id"] for r in answer["recommendations"]} <= on_sale_lately
