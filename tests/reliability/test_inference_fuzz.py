"""The inference handler in-process under generated input (CONTRACTS §3): every request is either answered
within the contract or refused with ``BadRequest`` naming the problem; no other exception ever escapes
(SageMaker's model server would turn it into a 500).

The oracle (``strategies.expected_problems``) is the contract's wording, so these tests also catch a
handler that accepts what it should refuse, or refuses a valid request.
"""

from __future__ import annotations

import json
import math
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .strategies import EXCLUDE_MODES, MAX_K, any_requests, dumps, expected_problems

pytestmark = pytest.mark.xdist_group("reliability-inference")  # trains the tiny model once per worker
#: Per example: a hang detector, not a speed check (a loaded 2-core machine stretches milliseconds to seconds).
DEADLINE_MS = 20_000
FUZZ = settings(
    max_examples=200, deadline=DEADLINE_MS, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
STRATEGIES = {"personalized", "personalized+session", "session", "popular", "popular_segment"}


def run(inference: ModuleType, model: Any, body: Any, content_type: str = "application/json") -> dict[str, Any]:
    """The SageMaker sequence input_fn -> predict_fn -> output_fn, answer parsed back."""
    return json.loads(
        inference.output_fn(inference.predict_fn(inference.input_fn(body, content_type), model), "application/json")
    )


def check_answer(req: dict[str, Any], answer: dict[str, Any], shop: dict[str, Any], model: Any) -> None:
    """One response object against CONTRACTS §3 and the training data."""
    assert set(answer) == {"user_id", "recommendations", "strategy", "model_version", "recommendation_id"}, answer
    assert len(answer["recommendation_id"]) == 32 and int(answer["recommendation_id"], 16) >= 0
    assert answer["user_id"] == str(req["user_id"]).strip()
    assert answer["strategy"] in STRATEGIES and answer["model_version"] == model.model_version
    ids = [r["product_id"] for r in answer["recommendations"]]
    scores = [r["score"] for r in answer["recommendations"]]
    k = req.get("k", 10)
    assert len(ids) <= k and len(ids) == len(set(ids)), "at most k distinct products"
    assert set(ids) <= set(shop["category_of"]) | set(shop["items"]), "only known products"
    assert all(math.isfinite(s) for s in scores) and scores == sorted(scores, reverse=True)
    assert not set(ids) & {str(p) for p in req.get("exclude_product_ids") or []}
    user, exclude = answer["user_id"], req.get("exclude", "purchased")
    if exclude == "purchased":
        assert not set(ids) & shop["owned"].get(user, set()), f"recommended {user}'s own purchases"
    if exclude == "interacted":
        seen = shop["interacted"].get(user, set()) | {str(p) for p in req.get("recent_product_ids") or []}
        assert not set(ids) & seen
    category = req.get("category")
    if category in shop["categories"]:
        assert all(shop["category_of"][p] == category for p in ids)
    if exclude == "none" and category is None and not req.get("exclude_product_ids"):
        assert len(ids) == min(k, len(shop["category_of"])), "a full list when nothing is filtered out"


def outcome(inference: ModuleType, fn: Any) -> tuple[Any, str | None]:
    """(result, None) or (None, BadRequest message); any other exception propagates and fails the test."""
    try:
        return fn(), None
    except inference.BadRequest as exc:
        return None, str(exc)


@FUZZ
@given(req=any_requests)
def test_any_json_request_is_answered_within_the_contract_or_refused_naming_the_field(
    req: Any, inference: ModuleType, tiny_model: Any, shop: dict[str, Any]
) -> None:
    answer, error = outcome(inference, lambda: run(inference, tiny_model, dumps(req)))
    problems = expected_problems(req)
    if problems:
        assert error, f"accepted a bad request {req!r}"
        assert any(p in error for p in problems), (error, problems)
        assert len(error) < 300, "error messages stay short whatever was sent"
    else:
        assert error is None, (error, req)
        for single, got in zip(req.get("instances", [req]), answer.get("predictions", [answer]), strict=True):
            check_answer(single, got, shop, tiny_model)


HUGE = 10**5000  # a Python int that str() refuses (4300-digit limit); JSON cannot even carry it


@FUZZ
@given(data=st.data())
def test_predict_fn_called_directly_validates_like_input_fn(
    data: st.DataObject, inference: ModuleType, tiny_model: Any
) -> None:
    """CONTRACTS §3: predict_fn takes a parsed dict, so it must refuse bad ones itself, including values
    only Python can hold (an int too long to print)."""
    req = data.draw(any_requests)
    if isinstance(req, dict) and "instances" not in req and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(["user_id", "k", "recent_product_ids"]))
        req = {**req, key: ["p1", HUGE] if key == "recent_product_ids" else HUGE}
    problems = expected_problems(req)
    _, error = outcome(inference, lambda: inference.predict_fn(req, tiny_model))
    assert (error is not None) == bool(problems), (error, problems)
    if error is not None:
        assert any(p in error for p in problems), (error, problems)


valid_body = st.sampled_from([b'{"user_id": "u1", "k": 3}', b'{"instances": [{"user_id": "u2"}]}'])


def _mutate(body: bytes, cuts: list[tuple[int, bytes]]) -> bytes:
    for pos, new in cuts:
        pos %= len(body) + 1
        body = body[:pos] + new + body[pos + 1 :]
    return body


raw_bodies = st.binary(max_size=200) | st.builds(
    _mutate, valid_body, st.lists(st.tuples(st.integers(0, 60), st.binary(max_size=3)), min_size=1, max_size=4)
)


@FUZZ
@given(body=raw_bodies, as_text=st.booleans())
def test_arbitrary_bytes_are_refused_with_a_reason_unless_they_are_a_valid_request(
    body: bytes, as_text: bool, inference: ModuleType, tiny_model: Any
) -> None:
    """Random and mutated bodies, as bytes or as already-decoded text (both reach input_fn in practice)."""
    payload: bytes | str = body.decode("utf-8", "surrogatepass") if as_text and _utf8(body) else body
    _, error = outcome(inference, lambda: run(inference, tiny_model, payload))
    try:
        parsed = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        assert error and any(w in error for w in ("JSON", "UTF-8", "number", "nested")), error
        return
    problems = expected_problems(parsed)
    assert (error is not None) == bool(problems), (error, problems, body)


def _utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


content_types = st.text(max_size=40) | st.sampled_from(
    [
        "application/json",
        "APPLICATION/JSON",
        "application/json; charset=utf-8",
        " application/json ;x=1",
        "application/jsonx",
        "application/json-seq",
        "text/json",
        "application/*",
        "*/*",
        "",
        "text/csv",
    ]
)


@settings(max_examples=200, deadline=DEADLINE_MS)
@given(content_type=content_types)
def test_only_the_json_media_type_is_accepted(content_type: str, inference: ModuleType) -> None:
    accepted = content_type.split(";")[0].strip().lower() == "application/json"
    _, error = outcome(inference, lambda: inference.input_fn(b'{"user_id": "u1"}', content_type))
    assert (error is None) == accepted, (content_type, error)
    if error is not None:
        assert "content type" in error


@settings(max_examples=100, deadline=DEADLINE_MS)
@given(accept=content_types | st.none())
def test_output_is_json_for_any_accept_that_allows_it(accept: str | None, inference: ModuleType) -> None:
    media = (accept or "").split(";")[0].strip().lower()
    result, error = outcome(inference, lambda: inference.output_fn({"x": 1}, accept))
    assert (error is None) == (media in ("", "application/json", "*/*", "application/*")), (accept, error)
    if error is None:
        assert json.loads(result) == {"x": 1}


@settings(max_examples=150, deadline=DEADLINE_MS)
@given(data=st.data())
def test_valid_requests_get_at_most_k_distinct_products_without_excluded_or_owned_ones(
    data: st.DataObject, inference: ModuleType, tiny_model: Any, shop: dict[str, Any]
) -> None:
    items = st.sampled_from(shop["items"])
    req = data.draw(
        st.fixed_dictionaries(
            {"user_id": st.sampled_from(shop["users"]) | st.sampled_from(["new-user", "u9999"])},
            optional={
                "k": st.integers(1, MAX_K) | st.integers(1, 12),
                "exclude": st.sampled_from(EXCLUDE_MODES),
                "recent_product_ids": st.lists(items, max_size=5),
                "exclude_product_ids": st.lists(items, max_size=5),
                "category": st.sampled_from(shop["categories"]),
            },
        )
    )
    check_answer(req, run(inference, tiny_model, dumps(req)), shop, tiny_model)


def test_no_known_user_is_ever_recommended_a_product_they_bought(
    inference: ModuleType, tiny_model: Any, shop: dict[str, Any]
) -> None:
    """Regression: building the serving matrices compacted the history's shared index array in place
    (scipy eliminate_zeros), so saved models excluded the wrong products and scored scrambled profiles."""
    buyers = [u for u in shop["users"] if shop["owned"].get(u)]
    assert buyers, "the fixture shop must have purchases"
    for user in buyers:
        answer = run(inference, tiny_model, dumps({"user_id": user, "k": MAX_K}))
        assert not {r["product_id"] for r in answer["recommendations"]} & shop["owned"][user], user


@pytest.mark.parametrize(
    "body",
    [
        b'{"user_id": ' + b"1" * 5000 + b"}",
        b'{"user_id": "u1", "k": ' + b"9" * 4301 + b"}",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"user_id": "u1", "exclude": ' + b"[" * 900 + b"]" * 900 + b"}",
    ],
    ids=["5000-digit user_id", "4301-digit k", "100k-deep nesting", "deep exclude echoed"],
)
def test_json_python_cannot_hold_is_a_bad_request_not_a_crash(body: bytes, inference: ModuleType) -> None:
    """Regression: json.loads raises ValueError (int digit limit) or RecursionError, which escaped input_fn."""
    _, error = outcome(inference, lambda: inference.input_fn(body, "application/json"))
    assert error and len(error) < 300


@pytest.mark.parametrize(
    "req,field",
    [
        ({"user_id": HUGE}, "'user_id'"),
        ({"user_id": "u1", "k": HUGE}, "'k'"),
        ({"user_id": "u1", "recent_product_ids": ["p1", HUGE]}, "'recent_product_ids'"),
    ],
)
def test_predict_fn_refuses_an_int_too_long_to_print(
    req: dict[str, Any], field: str, inference: ModuleType, tiny_model: Any
) -> None:
    """Regression: str() of such an int raised ValueError inside predict_fn."""
    _, error = outcome(inference, lambda: inference.predict_fn(req, tiny_model))
    assert error and field in error and len(error) < 300
