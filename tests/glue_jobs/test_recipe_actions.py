"""One test per DataBrew operation the recipes use: the local pandas semantics on a tiny, obvious frame."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from glue_jobs.recipe_executor import SUPPORTED_OPERATIONS, RecipeStepError, apply_step, validate_step


def step(op: str, conds: list[dict] | None = None, **params: str) -> dict:
    s: dict = {"Action": {"Operation": op, "Parameters": params}}
    if conds:
        s["ConditionExpressions"] = conds
    return s


def frame(**cols: list) -> pd.DataFrame:
    return pd.DataFrame({k: pd.Series(v, dtype="str") for k, v in cols.items()})


def test_flag_column_from_null_marks_null_and_empty_cells():
    df = frame(a=["x", None, ""])
    out = apply_step(
        df,
        step(
            "FLAG_COLUMN_FROM_NULL",
            sourceColumn="a",
            targetColumn="f",
            flagType="Null values",
            trueString="missing",
            falseString="ok",
        ),
    )
    assert out["f"].tolist() == ["ok", "missing", "missing"]


def test_flag_column_from_pattern_matches_the_whole_value_and_never_matches_null():
    """The stricter of the two readings DataBrew's guide allows: "N" alone would not flag "North"."""
    df = frame(a=["North", "south", None, "Nor\nth"])
    out = apply_step(
        df,
        step(
            "FLAG_COLUMN_FROM_PATTERN",
            sourceColumn="a",
            targetColumn="f",
            flagType="Pattern",
            pattern="N.*",
            trueString="yes",
            falseString="no",
        ),
    )
    assert out["f"].tolist() == ["yes", "no", "no", "no"]  # "." stops at a newline: not the whole value


def test_flag_duplicate_rows_leaves_the_first_occurrence_unflagged():
    df = frame(a=["1", "1", "1"], b=["x", "y", "x"])
    out = apply_step(df, step("FLAG_DUPLICATE_ROWS", targetColumn="d", trueString="dup", falseString="-"))
    assert out["d"].tolist() == ["-", "-", "dup"]


def test_flag_duplicates_in_column_flags_later_repeats_of_a_value():
    df = frame(id=["a", "b", "a", "a", None, None])
    out = apply_step(
        df, step("FLAG_DUPLICATES_IN_COLUMN", sourceColumn="id", targetColumn="d", trueString="dup", falseString="-")
    )
    assert out["d"].tolist() == ["-", "-", "dup", "dup", "-", "-"]  # missing ids are not duplicates


def test_merge_joins_columns_with_the_delimiter_and_writes_null_as_empty():
    df = frame(a=["x", "y"], b=["1", None])
    out = apply_step(df, step("MERGE", sourceColumns=json.dumps(["a", "b"]), delimiter="|", targetColumn="m"))
    assert out["m"].tolist() == ["x|1", "y|"]


def test_remove_combined_collapses_and_trims_whitespace_in_place():
    df = frame(a=["  a   b  ", " ", None])
    out = apply_step(
        df,
        step(
            "REMOVE_COMBINED",
            sourceColumn="a",
            collapseConsecutiveWhitespace="true",
            removeLeadingAndTrailingWhitespace="true",
        ),
    )
    assert out["a"].tolist()[:2] == ["a b", ""] and pd.isna(out["a"].iloc[2])


def test_remove_values_drops_only_rows_matching_every_condition():
    df = frame(s=["keep", "drop", "keep"], n=["1", "2", "3"])
    out = apply_step(
        df, step("REMOVE_VALUES", [{"Condition": "IS", "Value": '["drop"]', "TargetColumn": "s"}], sourceColumn="s")
    )
    assert out["n"].tolist() == ["1", "3"]


def test_remove_values_without_a_condition_is_refused():
    with pytest.raises(RecipeStepError, match="ConditionExpressions"):
        apply_step(frame(s=["a"]), step("REMOVE_VALUES", sourceColumn="s"))


def test_delete_removes_the_column():
    assert list(apply_step(frame(a=["1"], b=["2"]), step("DELETE", sourceColumn="a")).columns) == ["b"]


def test_duplicate_copies_a_column_under_a_new_name():
    out = apply_step(frame(a=["1", None]), step("DUPLICATE", sourceColumn="a", targetColumn="b"))
    assert out["b"].tolist()[0] == "1" and pd.isna(out["b"].iloc[1]) and "a" in out


@pytest.mark.parametrize(
    ("kind", "values", "expected"),
    [
        ("int", ["25", "25.0", "x", None], [25, 25, None, None]),
        ("double", ["1.5", "abc", " 2 "], [1.5, None, 2.0]),
        ("date", ["2024-01-02", "nope"], [pd.Timestamp("2024-01-02").date(), None]),
        ("timestamp", ["2024-01-02 03:04:05"], [pd.Timestamp("2024-01-02 03:04:05")]),
    ],
)
def test_change_data_type_converts_or_writes_null(kind, values, expected):
    out = apply_step(frame(a=values), step("CHANGE_DATA_TYPE", sourceColumn="a", columnDataType=kind))["a"]
    got = [None if pd.isna(v) else v for v in out.tolist()]
    assert got == expected


def test_unix_time_parses_iso_with_offset_and_ignores_bare_numbers():
    df = frame(t=["1970-01-01T05:30:00+05:30", "1970-01-01T00:01:00Z", "1700000000", "junk"])
    out = apply_step(df, step("UNIX_TIME", sourceColumn="t", targetColumn="e"))["e"]
    assert out.tolist()[:2] == [0.0, 60.0] and out.iloc[2:].isna().all()


def test_unix_time_format_renders_epoch_seconds_in_utc():
    df = pd.DataFrame({"e": [0.0, 86461.9, None]})
    out = apply_step(
        df, step("UNIX_TIME_FORMAT", sourceColumn="e", targetColumn="t", dateTimeFormat="yyyy-mm-dd HH:MM:SS")
    )["t"]
    assert out.tolist()[:2] == ["1970-01-01 00:00:00", "1970-01-02 00:01:01"] and pd.isna(out.iloc[2])


def test_coalesce_takes_the_first_non_null_in_column_order():
    df = pd.DataFrame({"a": [1.0, None, None], "b": [9.0, 2.0, None]})
    out = apply_step(df, step("COALESCE", sourceColumns='["a", "b"]', targetColumn="c"))["c"]
    assert out.tolist()[:2] == [1.0, 2.0] and pd.isna(out.iloc[2])


def test_fill_with_null_only_touches_rows_meeting_the_condition():
    df = frame(age=["5", "30", "x"])
    out = apply_step(
        df,
        step("FILL_WITH_NULL", [{"Condition": "LESS_THAN", "Value": "13", "TargetColumn": "age"}], sourceColumn="age"),
    )["age"]
    assert pd.isna(out.iloc[0]) and out.iloc[1:].tolist() == ["30", "x"]


def test_fill_with_custom_replaces_missing_and_empty_only():
    out = apply_step(
        frame(g=["f", None, ""]), step("FILL_WITH_CUSTOM", sourceColumn="g", columnDataType="string", value="unknown")
    )["g"]
    assert out.tolist() == ["f", "unknown", "unknown"]


def test_lower_case_changes_the_column_in_place():
    assert apply_step(frame(a=["MiXed"]), step("LOWER_CASE", sourceColumn="a"))["a"].tolist() == ["mixed"]


def test_categorical_mapping_sends_unmapped_values_to_other():
    df = frame(c=["a", "b", "new", None])
    out = apply_step(
        df,
        step(
            "CATEGORICAL_MAPPING",
            sourceColumn="c",
            targetColumn="code",
            categoryMap='{"a": "1", "b": "2"}',
            mapType="NUMERIC",
            other="0",
            keepOthers="false",
            deleteOtherRows="false",
        ),
    )
    assert out["code"].tolist() == [1, 2, 0, 0] and out["c"].tolist()[:3] == ["a", "b", "new"]


def test_normalization_min_max_rescales_to_unit_range():
    df = pd.DataFrame({"p": [10.0, 20.0, 30.0]})
    out = apply_step(df, step("NORMALIZATION", sourceColumn="p", strategy="MIN_MAX", targetColumn="n"))
    assert out["n"].tolist() == [0.0, 0.5, 1.0]


def test_every_supported_operation_has_a_unit_test_here():
    tested = {
        "FLAG_COLUMN_FROM_NULL",
        "FLAG_COLUMN_FROM_PATTERN",
        "FLAG_DUPLICATE_ROWS",
        "FLAG_DUPLICATES_IN_COLUMN",
        "MERGE",
        "REMOVE_COMBINED",
        "REMOVE_VALUES",
        "DELETE",
        "DUPLICATE",
        "CHANGE_DATA_TYPE",
        "UNIX_TIME",
        "UNIX_TIME_FORMAT",
        "COALESCE",
        "FILL_WITH_NULL",
        "FILL_WITH_CUSTOM",
        "LOWER_CASE",
        "CATEGORICAL_MAPPING",
        "NORMALIZATION",
    }
    assert tested == SUPPORTED_OPERATIONS


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (step("NOT_AN_OP", sourceColumn="a"), "SUPPORTED_OPERATIONS"),
        (step("DELETE", sourceColum="a"), "undocumented"),
        (step("DELETE", sourceColumn=""), "non-empty strings"),
        ({"Action": {"Operation": "DELETE", "Parameters": {"sourceColumn": 1}}}, "non-empty strings"),
        (step("DELETE", [{"Condition": "IS", "TargetColumn": "a"}], sourceColumn="a"), "only used with"),
    ],
)
def test_malformed_steps_are_rejected_before_running(bad, message):
    with pytest.raises(RecipeStepError, match=message):
        validate_step(bad)
