"""Product pages, carts, trending, filters, promotions and exploration (issue 13) on a tiny shop with obvious answers.

Shop: p1 is always bought with p2 and p3 (group A, Sarees); q1..q4 are bought together by another group
(Kurtis); cheap c1..c3 are Bags bought by a third group. x9 was first seen in the last days of the log
(new); z1 is out of stock.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from .conftest import make_log

DAY = 86_400


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    import inference
    import train
    from recsys_core.bundle import Bundle, recipe_doc
    from recsys_core.features import item_popularity
    from recsys_core.models.item_knn import ItemKNNConfig
    from recsys_core.prepare import prepare
    from recsys_core.selection import Candidate, Recipe, fit_recipe

    rows, t = [], 0
    groups = {"a": ["p1", "p2", "p3"], "b": ["q1", "q2", "q3", "q4"], "c": ["c1", "c2", "c3", "z1"]}
    for g, items in groups.items():
        for n in range(8):
            for item in items:
                t += DAY // 10
                rows.append((f"{g}{n}", item, "purchase", None, t))
    rows += [("c0", "x9", "view", None, t + 30 * DAY), ("b0", "p1", "view", None, t + 30 * DAY)]
    log = make_log(rows)
    products = pd.DataFrame({
        "product_id": ["p1", "p2", "p3", "q1", "q2", "q3", "q4", "c1", "c2", "c3", "z1", "x9", "new-kurti"],
        "category": ["Sarees"] * 3 + ["Kurtis"] * 4 + ["Bags"] * 4 + ["Bags", "Kurtis"],
        "price": [900, 800, 700, 400, 300, 200, 100, 50, 60, 70, 55, 65, 210],
        "in_stock": ["yes"] * 10 + ["no", "yes", "yes"],
    })
    prep = prepare(log, products, None, num_threads=1)
    recipe = Recipe([Candidate("item_knn", ItemKNNConfig("cosine", k=20))], [1.0])
    catalogue, trending = train._catalogue_and_trending(prep, products)
    pop = item_popularity(prep.hist)
    bundle = Bundle("rules-v1", prep.users, prep.items, prep.hist, fit_recipe(recipe, prep),
                    recipe_doc(recipe.candidates, recipe.weights), pop / pop.max(),
                    prep.item_features.category, prep.item_features.category_names,
                    trending=trending, catalogue=catalogue)
    path = tmp_path_factory.mktemp("rules_model")
    bundle.save(path)
    return inference.model_fn(str(path))


def ask(model, request: dict) -> dict:
    import inference

    return json.loads(inference.output_fn(inference.predict_fn(inference.input_fn(json.dumps(request)), model)))


def ids(response: dict) -> list[str]:
    return [r["product_id"] for r in response["recommendations"]]


def test_a_product_page_shows_what_is_bought_with_it(shop):
    answer = ask(shop, {"product_id": "p1", "k": 2})
    assert answer["strategy"] == "similar" and answer["user_id"] is None
    assert set(ids(answer)) == {"p2", "p3"}


def test_a_cart_gets_what_is_bought_with_it_and_never_what_is_in_it(shop):
    answer = ask(shop, {"cart_product_ids": ["q1", "q2"], "k": 2})
    assert answer["strategy"] == "cart" and set(ids(answer)) == {"q3", "q4"}


def test_an_unknown_product_falls_back_to_the_popular_list(shop):
    assert ask(shop, {"product_id": "never-sold", "k": 3})["strategy"] == "popular"


def test_a_catalogue_product_without_history_gets_its_category_nearest_in_price_first(shop):
    answer = ask(shop, {"product_id": "new-kurti", "k": 2})  # a Kurti at 210 INR nobody has seen yet
    assert answer["strategy"] == "similar_content"
    assert ids(answer) == ["q3", "q2"]  # Kurtis at 200 and 300 INR, before the ones at 100 and 400


def test_trending_ranks_what_is_bought_lately_first(shop):
    answer = ask(shop, {"strategy": "trending", "k": 4})
    assert answer["strategy"] == "trending"
    assert set(ids(answer)) <= {"c1", "c2", "c3", "z1", "x9", "p1"}  # the latest group, and the late views


def test_a_price_range_excludes_what_it_should_and_still_returns_k(shop):
    answer = ask(shop, {"user_id": "a0", "k": 3, "filters": {"price_min": 100, "price_max": 400}})
    in_range = {"q1", "q2", "q3", "q4", "new-kurti"}  # 100..400 INR; everything else costs more or less
    assert len(ids(answer)) == 3 and set(ids(answer)) <= in_range
    fewer = ask(shop, {"user_id": "a0", "k": 8, "filters": {"price_min": 100, "price_max": 400}})
    assert set(ids(fewer)) == in_range  # 5 of the 8 asked for: never padded with a product outside the range


def test_categories_and_stock_filters(shop):
    bags = ask(shop, {"product_id": "c1", "k": 10, "filters": {"categories": ["bags"], "in_stock_only": True}})
    assert set(ids(bags)) == {"c2", "c3", "x9"}  # z1 is out of stock, c1 is the page's own product
    no_kurtis = ask(shop, {"user_id": "b1", "k": 10, "filters": {"exclude_categories": ["Kurtis"]}})
    assert not {"q1", "q2", "q3", "q4"} & set(ids(no_kurtis))


def test_a_promotion_gets_exactly_its_slots_without_duplicates(shop):
    promo = {"name": "bags-week", "product_ids": ["c1", "c2", "c3"], "slots": 2}
    answer = ask(shop, {"user_id": "a1", "k": 5, "promotion": promo})
    flagged = [r["product_id"] for r in answer["recommendations"] if r.get("promoted")]
    assert len(flagged) == 2 and set(flagged) <= {"c1", "c2", "c3"}
    assert len(ids(answer)) == len(set(ids(answer))) == 5 and answer["promotion"] == "bags-week"
    assert answer["recommendations"][0].get("promoted") is None  # the first slot stays the model's


def test_a_promotion_never_breaks_the_other_rules(shop):
    promo = {"product_ids": ["c1", "z1", "p2"], "percent": 50}
    answer = ask(shop, {"user_id": "a1", "k": 4, "promotion": promo,
                        "filters": {"in_stock_only": True, "categories": ["Bags"]}})
    assert "z1" not in ids(answer) and "p2" not in ids(answer)  # out of stock; wrong category
    assert [r["product_id"] for r in answer["recommendations"] if r.get("promoted")] == ["c1"]


def test_exploration_only_adds_products_that_match_the_rules(shop):
    answer = ask(shop, {"user_id": "c1", "k": 4, "exploration": {"share": 0.5},
                        "filters": {"categories": ["Bags"], "in_stock_only": True}})
    explored = [r["product_id"] for r in answer["recommendations"] if r.get("explored")]
    assert explored and set(explored) <= {"x9", "c1", "c2", "c3"}  # x9 is new; z1 is out of stock
    assert "z1" not in ids(answer)


def test_without_the_new_fields_the_answer_is_unchanged(shop):
    plain = ask(shop, {"user_id": "a0", "k": 5})
    same = ask(shop, {"user_id": "a0", "k": 5, "filters": {}, "exploration": False})
    assert ids(plain) == ids(same) and plain["strategy"] == "personalized"


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"product_id": ""}, "'product_id'"),
        ({"cart_product_ids": []}, "'cart_product_ids'"),
        ({"product_id": "p1", "cart_product_ids": ["p2"]}, "at most one"),
        ({"user_id": "a0", "strategy": "hot"}, "'strategy'"),
        ({"user_id": "a0", "filters": {"price_min": "cheap"}}, "filters.price_min"),
        ({"user_id": "a0", "filters": {"price_min": 5, "price_max": 1}}, "above"),
        ({"user_id": "a0", "filters": {"colour": "red"}}, "unknown filter"),
        ({"user_id": "a0", "promotion": {"product_ids": ["p1"]}}, "exactly one"),
        ({"user_id": "a0", "promotion": {"product_ids": ["p1"], "percent": 120}}, "between 0 and 100"),
        ({"user_id": "a0", "exploration": {"share": 2}}, "between 0 and 1"),
        ({"k": 3}, "'user_id' is required"),
    ],
)
def test_bad_new_fields_are_a_400_with_a_clear_message(shop, request_, message):
    import inference

    with pytest.raises(inference.BadRequest, match=message):
        inference.predict_fn(request_, shop)


def test_exploration_share_and_new_age_are_training_settings(tmp_path):
    import train
    from recsys_core.synthetic import SyntheticConfig, synthetic_tables

    data = tmp_path / "train"
    data.mkdir()
    for name, df in synthetic_tables(SyntheticConfig(n_users=40, n_items=30, events_per_user=6)).items():
        df.to_csv(data / f"{name}.csv", index=False)
    args = ["--train-dir", str(data), "--model-dir", str(tmp_path / "model"), "--output-dir", str(tmp_path / "out"),
            "--models", "item_knn", "--no-blend", "--exploration-share", "0.3", "--new-days", "7"]
    assert train.main(args) == 0
    saved = json.loads((tmp_path / "model" / "model.json").read_text())["exploration"]
    assert saved["share"] == 0.3 and saved["new_days"] == 7.0


def test_ranked_on_a_large_catalogue_is_the_full_ranking_with_ties_blocks_and_non_finite_scores() -> None:
    from recsys_core.rules import ranked, ranked_full

    rng = np.random.default_rng(3)
    n_items = 200_000
    for trial in range(12):
        scores = rng.integers(0, 50 if trial % 2 else 10_000, n_items).astype(np.float64)  # many ties, or few
        scores[rng.integers(0, n_items, 500)] = np.nan
        scores[rng.integers(0, n_items, 50)] = np.inf if trial % 3 == 0 else -np.inf
        if trial == 5:
            scores[:] = 0.0  # ties flood the bound: the reference path
        blocked = rng.random(n_items) < (0.9 if trial % 4 == 0 else 0.1)
        for n in (1, 10, 40):
            assert ranked(scores, blocked, n).tolist() == ranked_full(scores, blocked, n).tolist()


def test_exploration_scores_rank_explorable_items_by_the_users_category_share_then_popularity() -> None:
    from recsys_core.rules import Catalogue, ExplorationIndex, exploration_scores_of, explore_picks

    category = np.array([0, 1, 1, 2, -1, 0])
    explorable = np.array([True, True, True, False, True, False])
    catalogue = Catalogue(np.zeros(6, np.float32), np.ones(6, bool), category, np.array(["a", "b", "c"]), explorable)
    popularity = np.array([5.0, 1.0, 2.0, 9.0, 3.0, 4.0])
    items = np.array([0, 1, 2, 4])
    scores = exploration_scores_of(items, catalogue, np.array([1, 1, 0, -1]), popularity)
    # shares of the user's known categories: a 1/3, b 2/3; unknown category: 0
    expected = [1 / 3 + 5e-3, 2 / 3 + 1e-3, 2 / 3 + 2e-3, 3e-3]
    assert scores.tolist() == pytest.approx(expected)
    assert exploration_scores_of(items[:3], catalogue, np.array([], dtype=np.int64), popularity).tolist() == (
        pytest.approx([5e-3, 1e-3, 2e-3])
    )
    picks = explore_picks(ExplorationIndex.build(catalogue, popularity), catalogue, np.array([1, 1, 0, -1]),
                          popularity, np.zeros(6, bool), 6)  # fmt: skip
    assert picks.tolist() == [2, 1, 0, 4]  # best share first; items 3 and 5 are not explorable: never picked


def test_exploration_picks_are_the_top_of_the_full_exploration_ranking() -> None:
    from recsys_core.rules import Catalogue, ExplorationIndex, exploration_scores_of, explore_picks, ranked

    rng = np.random.default_rng(5)
    n_items = 5_000
    for trial in range(10):
        category = rng.integers(-1, 6, n_items)
        explorable = rng.random(n_items) < (0.9 if trial % 2 else 0.05)
        catalogue = Catalogue(np.zeros(n_items, np.float32), np.ones(n_items, bool), category,
                              np.array(list("abcdef")), explorable)  # fmt: skip
        popularity = rng.integers(0, 5 if trial % 3 else 500, n_items).astype(np.float64)  # ties, or few
        index = ExplorationIndex.build(catalogue, popularity)
        blocked = rng.random(n_items) < 0.5
        user = rng.integers(-1, 6, rng.integers(0, 8))
        for n in (1, 2, 5):
            full = np.full(n_items, -np.inf)  # the reference: every explorable item scored, then ranked
            idx = np.flatnonzero(explorable)
            full[idx] = exploration_scores_of(idx, catalogue, user, popularity)
            expected = ranked(full, blocked, n)
            assert explore_picks(index, catalogue, user, popularity, blocked, n).tolist() == expected.tolist()


def _catalogue(rng: np.random.Generator, n_items: int, explorable_share: float = 0.3):
    from recsys_core.rules import Catalogue

    price = rng.lognormal(5, 1, n_items).astype(np.float32)
    price[rng.random(n_items) < 0.05] = np.nan  # unknown prices fail a price filter
    return Catalogue(price, rng.random(n_items) > 0.2, rng.integers(-1, 20, n_items),
                     np.array([f"cat{i}" for i in range(20)]), rng.random(n_items) < explorable_share)


FILTERS = [
    {"price_min": 100.0, "price_max": 300.0, "in_stock_only": True},
    {"categories": ["cat3"]},  # about 5 % of the catalogue passes
    {"exclude_categories": ["cat1", "cat2"], "price_max": 50.0},
    {"categories": ["no-such-category"]},  # nothing passes
]


def test_filters_checked_lazily_rank_as_the_whole_catalogue_mask_does() -> None:
    """ranked() with a Blocked checks the filters only on the items it looks at; the list is the one the
    whole-catalogue mask gives (ties, NaN, narrow filters and a filter nothing passes included)."""
    from recsys_core.rules import Blocked, filter_mask, ranked, ranked_full

    rng = np.random.default_rng(7)
    n_items = 200_000
    catalogue = _catalogue(rng, n_items)
    for trial, filters in enumerate(FILTERS * 3):
        scores = rng.integers(0, 30 if trial % 2 else 100_000, n_items).astype(np.float32)
        scores[rng.integers(0, n_items, 300)] = np.nan
        mask = rng.random(n_items) < 0.01
        blocked = Blocked(mask, catalogue, filters)
        dense = mask | filter_mask(catalogue, filters)
        assert np.array_equal(blocked.dense(), dense)
        some = rng.integers(0, n_items, 1000)
        assert np.array_equal(blocked.at(some), dense[some])
        for n in (1, 10, 50):
            assert ranked(scores, blocked, n).tolist() == ranked_full(scores, dense, n).tolist(), (trial, n)


def test_a_promotions_ranking_reads_only_its_products_and_matches_the_masked_full_ranking() -> None:
    from recsys_core.rules import Blocked, ranked, ranked_among

    rng = np.random.default_rng(8)
    n_items = 100_000
    catalogue = _catalogue(rng, n_items)
    for filters in [None, *FILTERS]:
        scores = rng.integers(0, 20, n_items).astype(np.float64)  # ties: broken by index
        scores[rng.integers(0, n_items, 100)] = -np.inf
        promoted = rng.integers(0, n_items, 300)  # repeats allowed, as requests may repeat ids
        blocked = Blocked(rng.random(n_items) < 0.3, catalogue, filters)
        only = np.zeros(n_items, dtype=bool)
        only[promoted] = True
        for n in (0, 1, 3, 400):
            expected = ranked(np.where(only, scores, -np.inf), blocked, n)
            assert ranked_among(promoted, scores, blocked, n).tolist() == expected.tolist()


def test_exploration_picks_under_filters_and_heavy_blocking_are_the_top_of_the_full_ranking() -> None:
    """Groups whose first items are mostly blocked read further; the picks stay the exact top."""
    from recsys_core.rules import (
        Blocked,
        ExplorationIndex,
        exploration_scores_of,
        explore_picks,
        filter_mask,
        ranked_full,
    )

    rng = np.random.default_rng(9)
    n_items = 20_000
    for trial, filters in enumerate([None, *FILTERS]):
        catalogue = _catalogue(rng, n_items, explorable_share=0.5)
        popularity = rng.integers(0, 3 if trial % 2 else 1000, n_items).astype(np.float64)
        index = ExplorationIndex.build(catalogue, popularity)
        blocked = Blocked(rng.random(n_items) < 0.9, catalogue, filters)  # most heads hold < n unblocked
        user = rng.integers(-1, 20, 6)
        idx = np.flatnonzero(catalogue.explorable)
        full = np.full(n_items, -np.inf)
        full[idx] = exploration_scores_of(idx, catalogue, user, popularity)
        dense = blocked.mask | filter_mask(catalogue, filters)
        for n in (1, 3, 8):
            expected = ranked_full(full, dense, n)
            assert explore_picks(index, catalogue, user, popularity, blocked, n).tolist() == expected.tolist()
