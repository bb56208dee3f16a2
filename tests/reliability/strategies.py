"""Hypothesis strategies for inference requests (CONTRACTS §3) and ``expected_problem``, the contract as
an oracle: which field a request gets wrong, decided from the contract's wording, not from the handler.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

MAX_K = MAX_IDS = MAX_BATCH = 1000  # CONTRACTS §3 limits, as sagemaker_src/inference.py documents them
EXCLUDE_MODES = ("purchased", "interacted", "none")
FIELDS = ("user_id", "k", "recent_product_ids", "exclude_product_ids", "exclude", "category")

# Every code point, lone surrogates included (JSON can carry them as \ud800 escapes).
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=30)
ints = st.integers(-(2**70), 2**70) | st.sampled_from([0, -1, 1, MAX_K, MAX_K + 1, 2**31, 2**63, -(2**63)])
floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([1.0, 10.0, 2.5, -0.0, 1e308])
leaves = (
    st.none()
    | st.booleans()
    | ints
    | floats
    | any_text
    | st.sampled_from(
        ["u1", "u2", "p1", "p2", "cat1", "purchased", "interacted", "none", "", " ", "\x00", "\ufeff", "\ud800"]
    )
)
json_values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.sampled_from(FIELDS) | any_text, inner, max_size=5),
    max_leaves=10,
)


def request_strategy(users: list[str], items: list[str], categories: list[str]) -> st.SearchStrategy[dict]:
    """Single requests mixing valid and junk values for every field, plus extra keys."""
    ids = st.sampled_from(items) | st.sampled_from(["nope", "", "\ud800", "p" * 300]) | st.integers(0, 99)
    valid = {
        "user_id": st.sampled_from(users) | st.sampled_from(["new-user", " u1 ", "ü𝄞", "u\x00"]) | st.integers(0, 50),
        "k": st.integers(1, MAX_K),
        "recent_product_ids": st.none() | st.lists(ids, max_size=8),
        "exclude_product_ids": st.none() | st.lists(ids, max_size=8),
        "exclude": st.sampled_from(EXCLUDE_MODES),
        "category": st.none() | st.sampled_from(categories) | st.sampled_from(["CAT1", "no-such", ""]),
    }
    junk = {
        "user_id": leaves | json_values | st.sampled_from(["", "   ", True, 1.5, None]),
        "k": leaves | json_values | st.sampled_from([0, -5, 2.0, True, "10", MAX_K + 1, 10**30, float("nan")]),
        "recent_product_ids": json_values
        | st.lists(leaves, min_size=1, max_size=4)
        | st.integers(MAX_IDS + 1, MAX_IDS + 3).map(lambda n: [f"p{i}" for i in range(n)]),
        "exclude_product_ids": json_values | st.lists(leaves, min_size=1, max_size=4),
        "exclude": leaves | json_values,
        "category": leaves | json_values,
    }
    field = {name: valid[name] | junk[name] for name in FIELDS}
    return st.fixed_dictionaries({}, optional={**field, "extra": json_values})


def batch_strategy(single: st.SearchStrategy[dict]) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(
        {"instances": st.lists(single, max_size=4) | json_values}, optional={"user_id": json_values, "k": json_values}
    )


def _is_id(value: Any) -> bool:
    """A string, or an int (not a bool) short enough to print as one (Python's 4300-digit limit)."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool) and abs(value) < 10**4300)


def single_problems(req: Any) -> list[str]:
    """The contract's verdict on one request: [] if valid, else the fields it gets wrong (as quoted in messages)."""
    if not isinstance(req, dict):
        return ["object"]
    found = []
    uid = req.get("user_id")
    if not _is_id(uid) or not str(uid).strip():  # _is_id first: str() of a too-long int raises
        found.append("'user_id'")
    k = req.get("k", 10)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        found.append("'k'")
    for key in ("recent_product_ids", "exclude_product_ids"):
        value = req.get(key)
        if value is not None and (
            not isinstance(value, list) or len(value) > MAX_IDS or not all(_is_id(v) for v in value)
        ):
            found.append(f"'{key}'")
    if req.get("exclude", "purchased") not in EXCLUDE_MODES:
        found.append("'exclude'")
    if req.get("category") is not None and not isinstance(req.get("category"), str):
        found.append("'category'")
    return found


def expected_problems(req: Any) -> list[str]:
    """Like ``single_problems``, for a single or an ``instances`` batch request."""
    if isinstance(req, dict) and "instances" in req:
        inst = req["instances"]
        if not isinstance(inst, list) or not inst or len(inst) > MAX_BATCH or any(single_problems(i) for i in inst):
            return ["instances"]
        return []
    return single_problems(req)


def dumps(value: Any) -> bytes:
    """JSON as a client would send it (NaN/Infinity literals included; lone surrogates as escapes)."""
    return json.dumps(value).encode()


# The tiny test shop's ids (tests/reliability/conftest.py: users u0..u59, products p0..p49, categories cat0..);
# unknown ones are drawn too, and the oracle does not depend on which exist.
SHOP_USERS = [f"u{n}" for n in range(60)]
SHOP_ITEMS = [f"p{n}" for n in range(50)]
SHOP_CATEGORIES = [f"cat{n}" for n in range(8)]
single_requests = request_strategy(SHOP_USERS, SHOP_ITEMS, SHOP_CATEGORIES)
any_requests = single_requests | batch_strategy(single_requests) | json_values
