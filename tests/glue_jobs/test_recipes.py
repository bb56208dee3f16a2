"""Per-table recipes: every dirty kind lands in quarantine with its reason, clean rows survive, counts reconcile."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pytest

from glue_jobs.recipe import RECIPES_DIR, load_recipe, recipe_steps
from glue_jobs.recipe_executor import SUPPORTED_OPERATIONS, apply_steps
from glue_jobs.recipe_jobs import curated_arrow_table, run_recipe
from glue_jobs.schema import (
    CURATED_COLUMNS,
    OPTIONAL_RAW_COLUMNS,
    QUARANTINE_REASON_COLUMN,
    QUARANTINE_STEP_COLUMN,
    RAW_COLUMNS,
)

TABLES = tuple(RAW_COLUMNS)


def raw(rows: list[tuple], table: str) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(RAW_COLUMNS[table])).astype("str")


def reasons(result, key: str) -> dict[str, str]:
    q = result.quarantine
    return dict(zip(q[key], q[QUARANTINE_REASON_COLUMN], strict=True))


INTERACTIONS = raw(
    [
        ("u1", "p1", "view", None, "2024-05-01T10:00:00+05:30"),  # clean, ISO with offset
        ("u2", "p2", "rating", "4", "1714557600"),  # clean, epoch seconds
        ("u3", "p3", "purchase", None, "2024-05-01T10:00:00Z"),  # clean, ISO in UTC
        ("u11", "p11", "purchase", "5", "2024-05-01T10:00:00Z"),  # rating on a non-rating event
        (None, "p4", "view", None, "1714557600"),  # missing user_id
        ("u5", " ", "view", None, "1714557600"),  # blank product_id
        ("u6", "p6", "click", None, "1714557600"),  # unknown event type
        ("u7", "p7", "rating", "9", "1714557600"),  # rating out of 1-5
        ("u8", "p8", "rating", None, "1714557600"),  # rating event without rating
        ("u9", "p9", "view", None, "yesterday"),  # unparseable timestamp
        ("u10", "p10", "view", None, "1714557600000"),  # epoch milliseconds: implausible
        ("u1", "p1", "view", None, "2024-05-01T10:00:00+05:30"),  # exact duplicate of row 0
    ],
    "interactions",
)


def test_interactions_dirty_rows_are_quarantined_with_their_reason():
    result = run_recipe("interactions", INTERACTIONS)
    by_user = reasons(result, "user_id")
    assert by_user["u5"] == "missing_product_id"
    assert by_user["u6"] == "unknown_event_type"
    assert by_user["u7"] == by_user["u8"] == "invalid_rating"
    assert by_user["u9"] == by_user["u10"] == "invalid_timestamp"
    assert by_user["u1"] == "duplicate_row"
    assert by_user["u11"] == "rating_on_non_rating_event"
    assert result.quarantine[QUARANTINE_REASON_COLUMN].tolist().count("missing_user_id") == 1
    assert set(result.quarantine[QUARANTINE_STEP_COLUMN]) == {"recipe:interactions"}


def test_interactions_clean_rows_survive_with_utc_event_time():
    cur = run_recipe("interactions", INTERACTIONS).curated.set_index("user_id")
    assert list(cur.index) == ["u1", "u2", "u3"]
    assert cur.loc["u1", "event_time"] == pd.Timestamp("2024-05-01 04:30:00")
    assert cur.loc["u2", "event_time"] == pd.Timestamp("2024-05-01 10:00:00")
    assert cur.loc["u2", "rating"] == 4.0 and pd.isna(cur.loc["u3", "rating"])


def test_quarantine_keeps_the_raw_text_of_every_raw_column():
    q = run_recipe("interactions", INTERACTIONS).quarantine
    raw_columns = [*RAW_COLUMNS["interactions"], *OPTIONAL_RAW_COLUMNS["interactions"]]
    assert list(q.columns) == [*raw_columns, QUARANTINE_REASON_COLUMN, QUARANTINE_STEP_COLUMN]
    assert q.set_index("user_id").loc["u9", "timestamp"] == "yesterday"


ORDER_LINES = pd.DataFrame(
    [
        ("u1", "p1", "purchase", None, "1714557600", "3", "12.50"),  # quantity and unit price
        ("u2", "p2", "purchase", None, "1714557600", "", ""),  # neither: 1 unit, catalogue price
        ("u3", "p3", "purchase", None, "1714557600", "-2", "4.0"),  # a return: not a purchase
        ("u4", "p4", "purchase", None, "1714557600", "1", "free"),  # unit price not a number
        ("u5", "p5", "purchase", None, "1714557600", " 2 ", None),  # blanks around a number are fine
    ],
    columns=[*RAW_COLUMNS["interactions"], "quantity", "unit_price"],
)


def test_order_lines_carry_quantity_and_unit_price_and_bad_ones_are_quarantined():
    result = run_recipe("interactions", ORDER_LINES)
    assert reasons(result, "user_id") == {"u3": "invalid_quantity", "u4": "invalid_unit_price"}
    cur = result.curated.set_index("user_id")
    assert cur["quantity"].to_dict() == {"u1": 3.0, "u2": 1.0, "u5": 2.0}
    assert cur.loc["u1", "unit_price"] == 12.5
    assert cur[["unit_price"]].loc[["u2", "u5"]].isna().all().all()
    quarantined = result.quarantine.set_index("user_id")
    assert quarantined.loc["u3", "quantity"] == "-2"  # the raw text is kept


def test_files_without_quantity_columns_get_one_unit_per_line():
    cur = run_recipe("interactions", INTERACTIONS).curated
    assert cur["quantity"].tolist() == [1.0, 1.0, 1.0] and cur["unit_price"].isna().all()


def test_a_row_with_two_problems_lists_both_reasons():
    df = raw([("u1", "p1", "click", None, "never")], "interactions")
    reason = run_recipe("interactions", df).quarantine[QUARANTINE_REASON_COLUMN].iloc[0]
    assert reason.split() == ["unknown_event_type", "invalid_timestamp"]


USERS = raw(
    [
        ("u1", "25", " Female ", "Mumbai", "2024-01-02"),
        ("u2", "7", "", "Atlantis", "not a date"),  # implausible age -> null; blank gender -> unknown; new place
        ("u3", "abc", None, "Goa", "2023-05-06"),  # non-numeric age -> null
        ("u1", "40", "M", "Delhi", "2024-01-03"),  # repeated user_id: the first wins
        (None, "30", "F", "Goa", "2024-01-01"),  # missing user_id
    ],
    "users",
)


def _location_code(key: str) -> int:
    step = next(
        s
        for s in load_recipe("users")["curated_steps"]
        if s["Action"]["Parameters"].get("targetColumn") == "location_code"
    )
    return int(json.loads(step["Action"]["Parameters"]["categoryMap"])[key])


def test_users_fix_types_without_quarantining_soft_problems():
    result = run_recipe("users", USERS)
    cur = result.curated.set_index("user_id")
    assert list(cur.index) == ["u1", "u2", "u3"]
    assert cur.loc["u1", "age"] == 25 and pd.isna(cur.loc["u2", "age"]) and pd.isna(cur.loc["u3", "age"])
    assert cur["gender"].tolist() == ["female", "unknown", "unknown"]
    assert cur.loc["u1", "location_code"] == _location_code("maharashtra")  # a known city maps to its state
    assert pd.isna(cur.loc["u2", "signup_date"])
    assert sorted(result.quarantine[QUARANTINE_REASON_COLUMN]) == ["duplicate_user_id", "missing_user_id"]


def test_a_category_or_place_missing_from_the_static_map_gets_code_zero():
    users = run_recipe("users", USERS).curated.set_index("user_id")
    assert users.loc["u2", "location_code"] == 0 and users.loc["u3", "location_code"] > 0
    products = run_recipe("products", PRODUCTS).curated.set_index("product_id")
    assert products.loc["p2", "category"] == "Brand New Category" and products.loc["p2", "category_code"] == 0
    assert products.loc["p1", "category_code"] > 0


PRODUCTS = raw(
    [
        ("p1", "https://x/p1", "Sarees", "Silk", "100"),
        ("p2", "https://x/p2", "Brand New Category", None, "300.00"),
        ("p3", "https://x/p3", "Kurtis", None, "-5"),  # negative
        ("p4", "https://x/p4", "Kurtis", None, "0"),  # zero
        ("p5", "https://x/p5", "Kurtis", None, "cheap"),  # non-numeric
        ("p1", "https://x/p1b", "Sarees", None, "120"),  # repeated product_id
        ("p6", "https://x/p6", None, None, "200"),  # no category: kept as 'unknown'
        ("p8", "https://x/p8", "  ", None, "250"),  # blank category: the same
        ("p7", "https://x/p7", "Kurtis", None, " 200.0 "),  # blanks around a valid price are fine
    ],
    "products",
)


def test_products_quarantine_bad_prices_and_normalise_the_rest():
    result = run_recipe("products", PRODUCTS)
    assert reasons(result, "product_id") == {
        "p3": "invalid_price",
        "p4": "invalid_price",
        "p5": "invalid_price",
        "p1": "duplicate_product_id",
    }
    cur = result.curated.set_index("product_id")
    assert cur["price_normalized"].to_dict() == {"p1": 0.0, "p2": 1.0, "p6": 0.5, "p7": 0.5, "p8": 0.75}
    assert cur.loc["p6", "category"] == cur.loc["p8", "category"] == "unknown"
    assert cur.loc["p6", "category_code"] == 0 and cur.loc["p1", "category"] == "Sarees"


@pytest.mark.parametrize(("table", "frame"), [("users", USERS), ("products", PRODUCTS), ("interactions", INTERACTIONS)])
def test_counts_reconcile_and_curated_types_match_the_schema(table, frame):
    result = run_recipe(table, frame)
    c = result.counts
    assert c["rows_in"] == len(frame) == c["curated"] + c["quarantined"]
    assert sum(v for k, v in c.items() if k.startswith("reason:")) >= c["quarantined"] > 0
    schema = curated_arrow_table(table, result.curated).schema
    assert {n: schema.field(n).type for n in CURATED_COLUMNS[table]} == CURATED_COLUMNS[table]


@pytest.mark.parametrize(("table", "frame"), [("users", USERS), ("products", PRODUCTS), ("interactions", INTERACTIONS)])
def test_run_recipe_equals_running_the_two_composed_recipes(table, frame):
    result = run_recipe(table, frame)
    # DataBrew sees the file's header: one that names the optional columns (empty values are fine)
    frame = frame.assign(**{c: pd.Series(pd.NA, index=frame.index, dtype="str") for c in OPTIONAL_RAW_COLUMNS[table]})
    curated = apply_steps(frame, recipe_steps(table, "curated"))
    quarantine = apply_steps(frame, recipe_steps(table, "quarantine"))
    pd.testing.assert_frame_equal(result.curated.astype(curated.dtypes.to_dict()), curated)
    pd.testing.assert_frame_equal(result.quarantine, quarantine)


def test_an_empty_input_gives_empty_outputs_with_the_curated_columns():
    result = run_recipe("interactions", raw([], "interactions"))
    assert result.counts == {"rows_in": 0, "curated": 0, "quarantined": 0}
    assert set(CURATED_COLUMNS["interactions"]) <= set(result.curated.columns)


def test_extra_raw_columns_pass_through_and_missing_optional_columns_are_tolerated():
    df = INTERACTIONS.drop(columns=["rating"]).assign(campaign="c1")
    result = run_recipe("interactions", df)
    assert (result.curated["campaign"] == "c1").all() and (result.quarantine["campaign"] == "c1").all()


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("output", ["curated", "quarantine"])
def test_recipe_steps_are_valid_cloudformation_recipe_steps(table, output):
    steps = recipe_steps(table, output)
    assert 0 < len(steps) <= 100  # DataBrew: at most 100 transformations per recipe
    for s in steps:
        assert set(s) <= {"Action", "ConditionExpressions"}
        assert s["Action"]["Operation"] in SUPPORTED_OPERATIONS
        assert all(isinstance(v, str) and v for v in s["Action"].get("Parameters", {}).values())
        for c in s.get("ConditionExpressions", []):
            assert all(isinstance(v, str) for v in c.values())
    json.dumps(steps)  # serialisable as-is into a template


def test_load_recipe_rejects_an_unknown_operation(tmp_path, monkeypatch):
    import glue_jobs.recipe as recipe_mod

    bad = json.loads((RECIPES_DIR / "users.json").read_text())
    bad["flag_steps"].append({"Action": {"Operation": "MAKE_IT_CLEAN", "Parameters": {}}})
    (tmp_path / "users.json").write_text(json.dumps(bad))
    monkeypatch.setattr(recipe_mod, "RECIPES_DIR", tmp_path)
    recipe_mod._load.cache_clear()
    try:
        with pytest.raises(ValueError, match="MAKE_IT_CLEAN"):
            load_recipe("users")
    finally:
        recipe_mod._load.cache_clear()


def test_curated_arrow_table_writes_dates_and_timestamps_with_schema_types():
    t = curated_arrow_table("users", run_recipe("users", USERS).curated)
    assert t.schema.field("signup_date").type == pa.date32()
