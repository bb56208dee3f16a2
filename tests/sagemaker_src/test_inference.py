"""The inference handlers against CONTRACTS §3, on a model trained from a tiny two-group shop."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from .conftest import make_log


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    import inference
    from recsys_core.bundle import Bundle, recipe_doc
    from recsys_core.features import item_popularity
    from recsys_core.models.content import SegmentPopularity
    from recsys_core.models.item_knn import ItemKNNConfig
    from recsys_core.prepare import prepare, user_segments
    from recsys_core.selection import Candidate, Recipe, fit_recipe

    rng = np.random.default_rng(3)
    rows, t = [], 0
    for group, prefix in (("u", "a"), ("v", "b")):
        for n in range(12):
            for item in np.nonzero(rng.random(6) < 0.6)[0]:
                t += 1
                rows.append((f"{group}{n}", f"{prefix}{item}", "view", None, t))
    # u0 bought a5 and only viewed a4: a4 may be shown again, a5 never (by default).
    rows += [("u0", "a5", "purchase", None, t + 1), ("u0", "a4", "view", None, t + 2)]
    log = make_log(rows)
    products = pd.DataFrame({"product_id": [f"{p}{i}" for p in "ab" for i in range(6)],
                             "category": ["Sarees"] * 3 + ["Kurtis"] * 3 + ["Shoes"] * 6, "price": 100.0})
    users = pd.DataFrame({"user_id": [f"v{n}" for n in range(12)] + ["newcomer"],
                          "gender": "m", "location": "Pune"})
    prep = prepare(log, products, users, num_threads=1)
    recipe = Recipe([Candidate("item_knn", ItemKNNConfig("cosine", k=20))], [1.0])
    seg = user_segments(prep)
    bundle = Bundle("test-v1", prep.users, prep.items, prep.hist, fit_recipe(recipe, prep),
                    recipe_doc(recipe.candidates, recipe.weights),
                    item_popularity(prep.hist) / item_popularity(prep.hist).max(),
                    prep.item_features.category, prep.item_features.category_names,
                    SegmentPopularity.fit(prep.hist.matrix(), seg), prep.user_features.user_ids,
                    prep.user_features.segment)
    path = tmp_path_factory.mktemp("model")
    bundle.save(path)
    return inference.model_fn(str(path))


def ask(model, request: dict) -> dict:
    import inference

    body = inference.output_fn(inference.predict_fn(inference.input_fn(json.dumps(request), "application/json"),
                                                    model), "application/json")
    return json.loads(body)


def ids(response: dict) -> list[str]:
    return [r["product_id"] for r in response["recommendations"]]


def test_single_request_returns_the_contract_shape_sorted_by_score(model):
    resp = ask(model, {"user_id": "u1", "k": 3})
    assert set(resp) == {"user_id", "recommendations", "strategy", "model_version", "recommendation_id"}
    assert resp["user_id"] == "u1" and resp["strategy"] == "personalized" and resp["model_version"] == "test-v1"
    assert len(resp["recommendations"]) == 3
    scores = [r["score"] for r in resp["recommendations"]]
    assert scores == sorted(scores, reverse=True)
    assert all(i.startswith("a") for i in ids(resp))  # u-users only ever touched a-items


def test_batch_answers_each_instance_in_order(model):
    resp = ask(model, {"instances": [{"user_id": "u1"}, {"user_id": "v2", "k": 2}]})
    assert [p["user_id"] for p in resp["predictions"]] == ["u1", "v2"]
    assert len(resp["predictions"][0]["recommendations"]) == 10
    assert len(resp["predictions"][1]["recommendations"]) == 2


def test_unknown_user_gets_the_most_popular_items(model):
    resp = ask(model, {"user_id": "stranger", "k": 2})
    assert resp["strategy"] == "popular"
    order = np.argsort(-model.popularity, kind="stable")[:2]
    assert ids(resp) == model.items.ids[order].tolist()


def test_unknown_user_with_a_demographic_record_gets_their_segments_favourites(model):
    resp = ask(model, {"user_id": "newcomer", "k": 3})
    assert resp["strategy"] == "popular_segment"
    assert all(i.startswith("b") for i in ids(resp))  # the segment is made of v-users


def test_unknown_user_with_recent_products_gets_session_based_recommendations(model):
    resp = ask(model, {"user_id": "stranger", "k": 3, "recent_product_ids": ["b1", "b2", "not-a-product"]})
    assert resp["strategy"] == "session"
    assert all(i.startswith("b") for i in ids(resp))


def test_recent_products_steer_a_known_users_recommendations(model):
    plain = ask(model, {"user_id": "u1", "k": 3})
    steered = ask(model, {"user_id": "u1", "k": 3, "recent_product_ids": ["b0", "b1", "b2", "b3"]})
    assert steered["strategy"] == "personalized+session"
    assert sum(i.startswith("b") for i in ids(steered)) > sum(i.startswith("b") for i in ids(plain))


def test_purchased_items_are_excluded_by_default_but_viewed_items_are_not(model):
    default = ids(ask(model, {"user_id": "u0", "k": 12}))
    assert "a5" not in default and "a4" in default
    assert "a4" not in ids(ask(model, {"user_id": "u0", "k": 12, "exclude": "interacted"}))
    assert "a5" in ids(ask(model, {"user_id": "u0", "k": 12, "exclude": "none"}))


def test_explicit_exclusions_and_category_filter_are_respected(model):
    resp = ask(model, {"user_id": "u1", "k": 5, "exclude_product_ids": ["a0", "a1"], "category": "Sarees"})
    assert set(ids(resp)) <= {"a2"}
    assert ids(ask(model, {"user_id": "u1", "k": 5, "category": "No such category"})) == []
    assert all(i.startswith("b") for i in ids(ask(model, {"user_id": "stranger", "k": 3, "category": "shoes"})))


def test_predict_fn_accepts_a_parsed_dict_directly(model):
    import inference

    assert inference.predict_fn({"user_id": "u1", "k": 1}, model)["strategy"] == "personalized"


@pytest.mark.parametrize(("body", "content_type", "message"), [
    ("{not json", "application/json", "not valid JSON"),
    (json.dumps({"k": 3}), "application/json", "user_id"),
    (json.dumps({"user_id": ""}), "application/json", "user_id"),
    (json.dumps({"user_id": "u1", "k": 0}), "application/json", "'k'"),
    (json.dumps({"user_id": "u1", "k": "5"}), "application/json", "'k'"),
    (json.dumps({"user_id": "u1", "k": True}), "application/json", "'k'"),
    (json.dumps({"user_id": "u1", "k": 2.5}), "application/json", "'k'"),
    (json.dumps({"user_id": "u1", "exclude": "everything"}), "application/json", "exclude"),
    (json.dumps({"user_id": "u1", "recent_product_ids": "p1"}), "application/json", "recent_product_ids"),
    (json.dumps({"instances": []}), "application/json", "instances"),
    (json.dumps({"instances": [{"user_id": "u1"}, {"k": 1}]}), "application/json", "instances[1]"),
    (json.dumps(["u1"]), "application/json", "object"),
    (json.dumps({"user_id": "u1"}), "text/csv", "content type"),
])
def test_bad_input_raises_a_400_error_with_a_clear_message(body, content_type, message):
    import inference

    with pytest.raises(inference.BadRequest) as err:
        inference.input_fn(body, content_type)
    assert err.value.status_code == 400
    assert message in inference.error_body(err.value)["error"]


def test_predict_fn_rejects_bad_dicts_and_output_fn_rejects_unknown_accept(model):
    import inference

    with pytest.raises(inference.BadRequest):
        inference.predict_fn({"user_id": "u1", "k": -1}, model)
    with pytest.raises(inference.BadRequest):
        inference.output_fn({"x": 1}, "text/csv")
    assert json.loads(inference.output_fn({"x": 1}, "application/json; charset=utf-8")) == {"x": 1}
