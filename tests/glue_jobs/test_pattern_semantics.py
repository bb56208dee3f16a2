"""Every FLAG_COLUMN_FROM_PATTERN pattern in the recipes means the same whether DataBrew searches the value
or matches all of it (its guide says neither), and the local executor takes the stricter, whole-value reading.
"""

from __future__ import annotations

import re

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glue_jobs.recipe import STEP_SECTIONS, load_recipe
from glue_jobs.recipe_executor import apply_step
from glue_jobs.schema import RAW_COLUMNS


def _patterns() -> list[tuple[str, str, str]]:
    out = []
    for table in sorted(RAW_COLUMNS):
        recipe = load_recipe(table)
        for section in STEP_SECTIONS:
            for step in recipe[section]:
                action = step["Action"]
                if action["Operation"] == "FLAG_COLUMN_FROM_PATTERN":
                    out.append((table, action["Parameters"]["targetColumn"], action["Parameters"]["pattern"]))
    return out


PATTERNS = _patterns()
IDS = [f"{table}.{target}" for table, target, _ in PATTERNS]

#: Values the recipes' columns can hold at the step, and the edges where the two readings part: a value with
#: text around a valid one, blanks, a trailing line terminator, a prefix of "rating|".
EDGES = [
    "", " ", "\t", "\n", " \n", "a", " a ", "a\n", "\na", "x\ny", "u1", "p17", "view", "view\n", "view ", " view",
    "xview", "viewx", "add_to_cart", "purchase", "rating", "ratings", "rating|4", "rating|4.0", "rating| 5 ",
    "rating|6", "rating|none", "rating|", "rating|4\n", "rating|4\nx", "view|none", "view|", "view| ", "view|3",
    "view|none\n", "xview|none", "r", "rat", "ratin|4", "|none", "a|b|none", "2", "+2", "-2", "2.5", "0", "0.0",
    ".5", "5.", "none", " none ", "free", "2\n", "2\nx", "duplicate_row", "missing_user_id invalid_rating",
    "curated", "quarantine",
]
TEXT = st.text(alphabet=st.sampled_from(list("viewratng|_ 0123456789.+-\n\tx")), max_size=14)


def _python(pattern: str) -> re.Pattern[str]:
    """Python's ``re`` spells the absolute end ``\\Z`` (Java and RE2 spell it ``\\z``)."""
    return re.compile(pattern.replace(r"\z", r"\Z"))


def _re2(values: list[str], pattern: str) -> list[bool]:
    return pc.match_substring_regex(pa.array(values, pa.string()), pattern).to_pylist()


def _readings_agree(pattern: str, values: list[str]) -> None:
    compiled = _python(pattern)
    searched = _re2(values, pattern)
    whole = _re2(values, f"^(?:{pattern})$")
    for value, anywhere, all_of_it in zip(values, searched, whole, strict=True):
        assert anywhere == all_of_it, f"RE2: {pattern!r} on {value!r}: search {anywhere}, whole value {all_of_it}"
        assert bool(compiled.search(value)) == bool(compiled.fullmatch(value)) == anywhere, (
            f"Python re: {pattern!r} on {value!r}"
        )


@pytest.mark.parametrize(("table", "target", "pattern"), PATTERNS, ids=IDS)
def test_each_recipe_pattern_means_the_same_searched_or_matched_whole_on_the_edges(table, target, pattern):
    _readings_agree(pattern, EDGES)


@settings(max_examples=150, deadline=None)
@given(values=st.lists(TEXT, min_size=1, max_size=20))
def test_each_recipe_pattern_means_the_same_searched_or_matched_whole_on_generated_values(values):
    for _, _, pattern in PATTERNS:
        _readings_agree(pattern, values)


def test_a_pattern_relying_on_partial_matching_is_caught_by_the_check_and_refused_by_the_executor():
    """The old forms (``\\S``, ``^rating\\||\\|(none|\\s*)$``) would pass under search only."""
    for partial in (r"\S", r"^rating\||\|(none|\s*)$"):
        with pytest.raises(AssertionError):
            _readings_agree(partial, EDGES)
    df = pd.DataFrame({"user_id": pd.Series(["u1", " ", None], dtype="string")})
    step = {
        "Action": {
            "Operation": "FLAG_COLUMN_FROM_PATTERN",
            "Parameters": {"sourceColumn": "user_id", "targetColumn": "f", "flagType": "Pattern",
                           "pattern": r"\S", "trueString": "ok", "falseString": "missing"},
        }
    }  # fmt: skip
    assert apply_step(df, step)["f"].tolist() == ["missing", "missing", "missing"]  # "u1" is two characters
    step["Action"]["Parameters"]["pattern"] = next(p for _, t, p in PATTERNS if t == "_flag_missing_user_id")
    assert apply_step(df, step)["f"].tolist() == ["ok", "missing", "missing"]


def test_the_executor_falls_back_to_python_for_constructs_re2_lacks_with_the_same_whole_value_reading():
    df = pd.DataFrame({"a": pd.Series(["view", "view\n", "viewx"], dtype="string")})
    step = {
        "Action": {
            "Operation": "FLAG_COLUMN_FROM_PATTERN",
            "Parameters": {"sourceColumn": "a", "targetColumn": "f", "flagType": "Pattern",
                           "pattern": r"view(?!x)", "trueString": "y", "falseString": "n"},
        }
    }  # fmt: skip
    assert apply_step(df, step)["f"].tolist() == ["y", "n", "n"]
