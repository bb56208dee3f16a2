"""Every Athena query in sql/ runs on DuckDB through LocalAthena and gives hand-computed answers.

The fixture is small enough to count by hand: 3 users, 4 products (p1, p2 Sarees; p3, p4 Kurtis),
23 interactions, mostly on 2024-03-01/02 plus two late purchases that fall outside the 7-day
purchased-together window.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot
from sqlglot import exp

from glue_jobs.schema import CURATED_COLUMNS, RAW_COLUMNS
from recsys.local.athena import (
    SQL_DIR,
    AthenaQueryError,
    LocalAthena,
    MissingTableError,
    ctas_statement,
    dialect_traps,
    feature_queries,
    list_queries,
    read_query,
    to_duckdb,
)
from recsys.local.capture import capture_glob, capture_key, capture_record, register_capture_table
from sql.library import AB_VERDICT_QUERY, deployed_query, parse_unload, unload_statement

RAW_INTERACTION_COLUMNS = RAW_COLUMNS["interactions"]  # the training set stays in the raw contract

USERS = [
    ("u1", 25, "female", "Maharashtra", "2023-01-05"),
    ("u2", None, "unknown", "Delhi", "2023-02-10"),
    ("u3", 34, "male", "Karnataka", "2023-03-15"),
]
PRODUCTS = [
    ("p1", "https://shop.example/p1", "Sarees", "Silk", 500.0),
    ("p2", "https://shop.example/p2", "Sarees", "Cotton", 300.0),
    ("p3", "https://shop.example/p3", "Kurtis", "Cotton", 200.0),
    ("p4", "https://shop.example/p4", "Kurtis", None, 1000.0),
]
INTERACTIONS = [
    ("u1", "p1", "view", None, "2024-03-01 09:00:00"),
    ("u1", "p2", "view", None, "2024-03-01 09:05:00"),
    ("u1", "p1", "add_to_cart", None, "2024-03-01 09:10:00"),
    ("u1", "p1", "purchase", None, "2024-03-01 09:20:00"),
    ("u2", "p1", "view", None, "2024-03-01 10:00:00"),
    ("u2", "p1", "add_to_cart", None, "2024-03-01 10:05:00"),
    ("u2", "p1", "purchase", None, "2024-03-01 10:10:00"),
    ("u2", "p2", "purchase", None, "2024-03-01 10:15:00"),
    ("u3", "p3", "view", None, "2024-03-01 11:00:00"),
    ("u1", "p1", "rating", 5.0, "2024-03-01 12:00:00"),
    ("u1", "p2", "purchase", None, "2024-03-02 08:00:00"),
    ("u3", "p4", "view", None, "2024-03-02 09:00:00.700"),
    ("u3", "p3", "view", None, "2024-03-02 09:30:00"),
    ("u3", "p3", "add_to_cart", None, "2024-03-02 09:40:00"),
    ("u3", "p3", "purchase", None, "2024-03-02 09:50:00"),
    ("u2", "p2", "view", None, "2024-03-02 10:00:00"),
    ("u2", "p4", "view", None, "2024-03-02 11:00:00"),
    ("u1", "p4", "view", None, "2024-03-02 11:30:00"),
    ("u3", "p4", "purchase", None, "2024-03-02 12:00:00"),
    ("u2", "p3", "purchase", None, "2024-03-02 13:00:00"),
    ("u3", "p2", "view", None, "2024-03-02 14:00:00"),
    ("u1", "p3", "purchase", None, "2024-03-10 09:00:00"),  # 8+ days after u1's p2: no pair
    ("u1", "p4", "purchase", None, "2024-03-20 09:00:00"),  # 10 days after u1's p3: no pair
]


def _write(path: Path, table: str, rows: list[dict]) -> Path:
    """Parquet with exactly the curated column types, as the recipes would write it."""
    schema = pa.schema(list(CURATED_COLUMNS[table].items()))
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def _interaction_rows(rows: list[tuple]) -> list[dict]:
    keys = ("user_id", "product_id", "event_type", "rating", "event_time")
    return [dict(zip(keys, (*r[:4], datetime.fromisoformat(r[4])), strict=True)) for r in rows]


def write_tiny_curated(root: Path) -> dict[str, Path]:
    """The hand-countable curated tables as Parquet under ``root``; interactions as a folder of parts,
    as a CTAS or recipe job writes it. Shared with the monitoring tests."""
    users = [
        {"user_id": u, "age": a, "gender": g, "location": loc, "signup_date": datetime.fromisoformat(d).date()}
        for u, a, g, loc, d in USERS
    ]
    products = [
        {"product_id": p, "product_url": url, "category": c, "sub_category": s, "price": pr, "price_normalized": 0.0}
        for p, url, c, s, pr in PRODUCTS
    ]
    (root / "interactions").mkdir()
    (root / "clickstream").mkdir()
    return {
        # Declared in the catalogue before the stream delivers anything: empty, with the curated schema.
        "clickstream": _write(root / "clickstream" / "part-0.parquet", "interactions", []).parent,
        "users": _write(root / "users.parquet", "users", users),
        "products": _write(root / "products.parquet", "products", products),
        "interactions": _write(
            root / "interactions" / "part-0.parquet", "interactions", _interaction_rows(INTERACTIONS)
        ).parent,
    }


@pytest.fixture(scope="module")
def curated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_tiny_curated(tmp_path_factory.mktemp("curated"))


def write_tiny_capture(root: Path) -> str:
    """Two captured answers of the endpoint (impressions; the tiny clickstream has no clicks on them), as SageMaker
    data capture writes them; returns the glob for ``LocalAthena.register_json``. Shared with the monitoring tests."""
    path = root / capture_key("e", "AllTraffic", datetime(2024, 3, 1, tzinfo=UTC), "tiny")
    path.parent.mkdir(parents=True)
    answers = [
        ({"recommendation_id": "r1", "model_version": "v1", "strategy": "personalized",
          "recommendations": [{"product_id": "p1"}, {"product_id": "p2"}]}, datetime(2024, 3, 1, 9, tzinfo=UTC)),
        ({"recommendation_id": "r2", "model_version": "v2", "strategy": "popular",
          "recommendations": [{"product_id": "p3"}]}, datetime(2024, 3, 2, 9, tzinfo=UTC)),
    ]
    path.write_text("".join(json.dumps(capture_record("{}", json.dumps(a), when=t)) + "\n" for a, t in answers))
    return capture_glob(root)


@pytest.fixture(scope="module")
def engine(curated: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> LocalAthena:
    athena = LocalAthena(curated)
    register_capture_table(athena, write_tiny_capture(tmp_path_factory.mktemp("capture")))
    return athena


# --- the query files -------------------------------------------------------------------------


def test_list_queries_finds_every_sql_file_by_stem() -> None:
    assert set(list_queries()) == {p.stem for p in SQL_DIR.rglob("*.sql")}
    assert {"training_set", "kpi_daily_funnel", "top_products_by_category"} <= set(list_queries())


def test_feature_queries_are_the_feature_prefixed_ones() -> None:
    assert feature_queries() == [
        "feature_category_popularity",
        "feature_purchased_together",
        "feature_recently_viewed",
    ]


@pytest.mark.parametrize("name", sorted(list_queries()))
def test_each_query_is_one_select_in_athena_dialect_with_a_header(name: str) -> None:
    text = read_query(name)
    assert text.startswith(f"-- {name}:"), "header comment names the query"
    assert "Output columns:" in text
    statements = sqlglot.parse(text, read="athena")
    assert len(statements) == 1 and isinstance(statements[0], exp.Query)


@pytest.mark.parametrize("name", sorted(list_queries()))
def test_each_query_is_free_of_dialect_traps(name: str) -> None:
    assert dialect_traps(read_query(name)) == []


@pytest.mark.parametrize("name", sorted(list_queries()))
def test_each_query_runs_locally_as_deployed(engine: LocalAthena, name: str) -> None:
    frame = engine.query(deployed_query(name, attribution_window_hours=24, experiment_alpha=0.05))
    # the tiny capture is AllTraffic only, so no A/B verdict row (tests/sql/test_ab_verdict.py has one)
    assert frame.empty == (name == AB_VERDICT_QUERY)


def test_read_query_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="training_set"):
        read_query("no_such_query")


# --- answers -------------------------------------------------------------------------------------


def test_training_set_keeps_raw_contract_columns_plus_joins_in_time_order(engine: LocalAthena) -> None:
    df = engine.query("training_set")
    assert tuple(df.columns) == RAW_INTERACTION_COLUMNS + (
        "category",
        "sub_category",
        "price",
        "age",
        "gender",
        "location",
    )
    assert len(df) == len(INTERACTIONS)
    assert df["timestamp"].is_monotonic_increasing
    first = df.iloc[0]
    assert (first.user_id, first.product_id, first.event_type) == ("u1", "p1", "view")
    assert first["timestamp"] == 1709283600  # 2024-03-01T09:00:00Z
    assert (first.category, first.price, first.age, first.gender) == ("Sarees", 500.0, 25, "female")
    # Epoch seconds are floored, not rounded: 09:00:00.700 stays 09:00:00.
    view_p4 = df[(df.user_id == "u3") & (df.product_id == "p4") & (df.event_type == "view")]
    assert view_p4["timestamp"].tolist() == [1709370000]
    rating = df[df.event_type == "rating"].iloc[0]
    assert rating.rating == 5.0 and math.isnan(df.iloc[1].rating)
    assert df[df.user_id == "u2"]["age"].isna().all()


def test_training_set_adds_clickstream_events_and_counts_an_event_in_both_sources_once(
    tmp_path: Path, curated: dict[str, Path]
) -> None:
    overlap = INTERACTIONS[0]  # also in the export: must not be counted twice
    fresh = ("u9", "p2", "view", None, "2024-04-01 10:00:00")
    stream = _write(tmp_path / "c.parquet", "interactions", _interaction_rows([overlap, fresh]))
    engine = LocalAthena({**curated, "clickstream": stream})
    df = engine.query("training_set")
    assert len(df) == len(INTERACTIONS) + 1
    assert df.iloc[-1][["user_id", "product_id", "event_type"]].tolist() == ["u9", "p2", "view"]
    assert df.iloc[-1]["category"] == "Sarees"  # clickstream rows get the same joins


def test_training_set_keeps_interactions_whose_product_is_unknown(tmp_path: Path, curated: dict[str, Path]) -> None:
    rows = _interaction_rows([("u9", "p404", "view", None, "2024-03-01 00:00:00")])
    engine = LocalAthena({**curated, "interactions": _write(tmp_path / "i.parquet", "interactions", rows)})
    df = engine.query("training_set")
    assert df[["user_id", "product_id"]].values.tolist() == [["u9", "p404"]]
    assert df.category.isna().all() and df.age.isna().all()


def _funnel_row(df: pd.DataFrame, day: str, category: str) -> pd.Series:
    match = df[(df.event_date.astype(str).str[:10] == day) & (df.category == category)]
    assert len(match) == 1
    return match.iloc[0]


def test_daily_funnel_counts_revenue_and_conversion_per_day_and_category(engine: LocalAthena) -> None:
    df = engine.query("kpi_daily_funnel")
    assert tuple(df.columns) == ("event_date", "category", "views", "carts", "purchases", "users", "revenue") + (
        "view_to_cart_rate",
        "cart_to_purchase_rate",
    )
    sarees = _funnel_row(df, "2024-03-01", "Sarees")
    assert (sarees.views, sarees.carts, sarees.purchases, sarees.users) == (3, 2, 3, 2)
    assert sarees.revenue == 1300.0  # 500 + 500 + 300
    assert sarees.view_to_cart_rate == 0.6667 and sarees.cart_to_purchase_rate == 1.5
    kurtis = _funnel_row(df, "2024-03-02", "Kurtis")
    assert (kurtis.views, kurtis.carts, kurtis.purchases, kurtis.users) == (4, 1, 3, 3)
    assert kurtis.revenue == 1400.0 and kurtis.view_to_cart_rate == 0.25 and kurtis.cart_to_purchase_rate == 3.0


def test_daily_funnel_rate_is_null_without_carts_and_zero_without_purchases(engine: LocalAthena) -> None:
    kurtis = _funnel_row(engine.query("kpi_daily_funnel"), "2024-03-01", "Kurtis")
    assert (kurtis.views, kurtis.carts, kurtis.purchases, kurtis.revenue) == (1, 0, 0, 0.0)
    assert kurtis.view_to_cart_rate == 0.0 and pd.isna(kurtis.cart_to_purchase_rate)


def test_top_products_rank_by_purchases_then_views(engine: LocalAthena) -> None:
    df = engine.query("top_products_by_category")
    assert list(df.columns) == ["category", "category_rank", "product_id", "purchases", "views"]
    # Kurtis: p3 has 3 purchases and 2 views, p4 2 purchases and 3 views: purchases win.
    # Sarees: both 2 purchases; p2 has 3 views to p1's 2, so p2 wins despite sorting after p1.
    assert df[["category", "category_rank", "product_id", "purchases", "views"]].values.tolist() == [
        ["Kurtis", 1, "p3", 3, 2],
        ["Kurtis", 2, "p4", 2, 3],
        ["Sarees", 1, "p2", 2, 3],
        ["Sarees", 2, "p1", 2, 2],
    ]


def test_recently_viewed_orders_distinct_products_by_last_view(engine: LocalAthena) -> None:
    df = engine.query("feature_recently_viewed").sort_values(["user_id", "recency_rank"])
    assert list(df.columns) == ["user_id", "recency_rank", "product_id", "last_viewed_at", "view_count"]
    u3 = df[df.user_id == "u3"]
    assert u3.product_id.tolist() == ["p2", "p3", "p4"]
    assert u3.recency_rank.tolist() == [1, 2, 3]
    assert u3.view_count.tolist() == [1, 2, 1]
    assert str(u3.iloc[1].last_viewed_at) == "2024-03-02 09:30:00"
    assert df[df.user_id == "u1"].product_id.tolist() == ["p4", "p2", "p1"]


def test_recently_viewed_keeps_only_the_last_20_per_user(tmp_path: Path) -> None:
    rows = _interaction_rows([("u1", f"p{n:02d}", "view", None, f"2024-03-01 10:{n:02d}:00") for n in range(25)])
    engine = LocalAthena({"interactions": _write(tmp_path / "i.parquet", "interactions", rows)})
    df = engine.query("feature_recently_viewed").sort_values("recency_rank")
    assert len(df) == 20
    assert df.product_id.iloc[0] == "p24" and df.product_id.iloc[-1] == "p05"


def test_purchased_together_keeps_pairs_of_two_users_within_7_days(engine: LocalAthena) -> None:
    df = engine.query("feature_purchased_together").sort_values(["product_id", "related_product_id"])
    assert list(df.columns) == ["product_id", "related_product_id", "pair_count", "pair_rank"]
    # p1+p2: u1 (a day apart) and u2 (same day). p3+p4 was bought by u3 within the window and by
    # u1 10 days apart, so it counts once and is dropped; likewise p1+p3 and p2+p3.
    assert df.values.tolist() == [["p1", "p2", 2, 1], ["p2", "p1", 2, 1]]


def test_category_popularity_weights_view_1_cart_3_purchase_5(engine: LocalAthena) -> None:
    df = engine.query("feature_category_popularity").sort_values(["category", "popularity_rank"])
    assert tuple(df.columns) == ("category", "product_id", "views", "carts", "purchases") + (
        "popularity_score",
        "popularity_rank",
    )
    # p3: 2 views + 1 cart + 3 purchases = 2 + 3 + 15 = 20; p4: 3 + 0 + 10 = 13;
    # p1: 2 + 6 + 10 = 18 (its rating event counts nothing); p2: 3 + 0 + 10 = 13.
    assert df[["category", "product_id", "popularity_score", "popularity_rank"]].values.tolist() == [
        ["Kurtis", "p3", 20, 1],
        ["Kurtis", "p4", 13, 2],
        ["Sarees", "p1", 18, 1],
        ["Sarees", "p2", 13, 2],
    ]


# --- CTAS ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", feature_queries())
def test_ctas_statement_parses_back_as_athena_ctas(name: str) -> None:
    text = ctas_statement(name, "s3://features-bucket/features/" + name)
    tree = sqlglot.parse_one(text, read="athena")
    assert isinstance(tree, exp.Create) and tree.kind == "TABLE"
    assert tree.this.name == name
    assert isinstance(tree.expression, exp.Query)
    props = {p.name.lower(): p.text("value") for p in tree.find_all(exp.Property) if type(p) is exp.Property}
    assert props == {"external_location": f"s3://features-bucket/features/{name}/", "write_compression": "SNAPPY"}
    assert tree.find(exp.FileFormatProperty).text("this") == "PARQUET"


def test_ctas_statement_without_location_leaves_it_to_the_workgroup() -> None:
    tree = sqlglot.parse_one(ctas_statement("feature_recently_viewed", None), read="athena")
    assert isinstance(tree, exp.Create)
    assert "external_location" not in {p.name for p in tree.find_all(exp.Property)}


def test_ctas_statement_quotes_the_location_and_rejects_bad_input() -> None:
    text = ctas_statement("feature_recently_viewed", "s3://b/it's/")
    assert "external_location = 's3://b/it''s/'" in text
    sqlglot.parse_one(text, read="athena")
    with pytest.raises(ValueError, match="s3://"):
        ctas_statement("feature_recently_viewed", "/tmp/out")
    with pytest.raises(ValueError, match="format"):
        ctas_statement("feature_recently_viewed", "s3://b/", fmt="XLSX")


def test_unload_statement_parses_back_into_the_query_its_location_and_format() -> None:
    select, location, props = parse_unload(unload_statement("training_set", "s3://b/training/interactions"))
    assert location == "s3://b/training/interactions/" and props == {"format": "PARQUET", "compression": "SNAPPY"}
    assert isinstance(sqlglot.parse_one(select, read="athena"), exp.Select)
    assert parse_unload("SELECT 1") is None
    with pytest.raises(ValueError, match="s3://"):
        unload_statement("training_set", "/tmp/out")
    with pytest.raises(ValueError, match="format"):
        unload_statement("training_set", "s3://b/", fmt="XLSX")


def test_ctas_writes_parquet_and_registers_the_table_for_later_queries(
    curated: dict[str, Path], tmp_path: Path
) -> None:
    engine = LocalAthena(curated)
    out = engine.ctas("feature_category_popularity", tmp_path)
    assert out == tmp_path / "feature_category_popularity"
    assert pq.read_table(next(out.glob("*.parquet"))).num_rows == 4
    top = engine.query("SELECT product_id FROM feature_category_popularity WHERE popularity_rank = 1 ORDER BY 1")
    assert top.product_id.tolist() == ["p1", "p3"]
    engine.ctas("feature_category_popularity", tmp_path)  # a re-run replaces, never appends
    assert len(engine.query("SELECT * FROM feature_category_popularity")) == 4


# --- errors --------------------------------------------------------------------------------------


def test_missing_table_names_the_query_and_the_table(curated: dict[str, Path]) -> None:
    engine = LocalAthena({"interactions": curated["interactions"]})
    missing = r"'training_set'.*clickstream, products, users.*registered: interactions"
    with pytest.raises(MissingTableError, match=missing):
        engine.query("training_set")


def test_absent_source_fails_only_the_queries_that_read_it(curated: dict[str, Path], tmp_path: Path) -> None:
    engine = LocalAthena({"interactions": curated["interactions"], "users": tmp_path / "nope.parquet"})
    assert len(engine.query("feature_recently_viewed")) == 9  # interactions alone still work
    with pytest.raises(MissingTableError, match=r"users \(no such file: .*nope\.parquet\)"):
        engine.query("training_set")


def test_failing_query_carries_duckdb_message(engine: LocalAthena) -> None:
    with pytest.raises(AthenaQueryError, match="no_such_column") as info:
        engine.query("SELECT no_such_column FROM interactions")
    assert "Binder Error" in info.value.message and info.value.sql


# --- dialect differences, checked on DuckDB 2.0 ----------------------------------------------------


def test_athena_date_and_time_functions_give_trino_answers_on_duckdb(engine: LocalAthena) -> None:
    row = engine.query(
        """
        SELECT
            date_trunc('month', TIMESTAMP '2024-03-17 10:11:12') AS month_start,
            date_trunc('day', TIMESTAMP '2024-03-17 10:11:12') AS day_start,
            date_add('day', 7, DATE '2024-02-25') AS plus_week,
            CAST(to_unixtime(TIMESTAMP '2024-03-01 09:00:00') AS BIGINT) AS epoch,
            to_unixtime(from_unixtime(1709283600)) AS round_trip,
            date_format(TIMESTAMP '2024-03-01 09:05:00', '%Y-%m-%d %H:%i') AS formatted,
            day_of_week(DATE '2024-03-03') AS dow
        """
    ).iloc[0]
    assert str(row.month_start) == "2024-03-01 00:00:00"
    assert str(row.day_start) == "2024-03-17 00:00:00"
    assert str(row.plus_week)[:10] == "2024-03-03"  # across a leap day
    assert row.epoch == 1709283600 and row.round_trip == 1709283600
    assert row.formatted == "2024-03-01 09:05"
    assert row.dow == 7  # ISO: Sunday is 7 in Trino


def test_approx_and_window_functions_translate(engine: LocalAthena) -> None:
    row = engine.query(
        """
        SELECT approx_distinct(user_id) AS users,
               approx_percentile(rating, 0.5) AS median_rating,
               max_by(product_id, event_time) AS last_product
        FROM interactions
        """
    ).iloc[0]
    assert (row.users, row.median_rating, row.last_product) == (3, 5.0, "p4")
    lagged = engine.query(
        "SELECT product_id, lag(product_id) OVER (PARTITION BY user_id ORDER BY event_time) AS prev "
        "FROM interactions WHERE user_id = 'u3' ORDER BY event_time"
    )
    assert lagged.prev.isna().iloc[0] and lagged.prev.tolist()[1:3] == ["p3", "p4"]


def test_dialect_traps_flag_integer_division_date_diff_and_untranslated_functions() -> None:
    assert dialect_traps("SELECT count(*) / 2 FROM t")[0].startswith("possible integer division")
    assert dialect_traps("SELECT CAST(a AS DOUBLE) / NULLIF(b, 0) FROM t") == []
    assert "date_diff" in dialect_traps("SELECT date_diff('day', a, b) FROM t")[0]
    assert "to_iso8601" in dialect_traps("SELECT to_iso8601(a) FROM t")[0]


def test_integer_division_trap_is_real_on_duckdb(engine: LocalAthena) -> None:
    """Why dialect_traps exists: Trino says 7 / 2 = 3; the transpiled query says otherwise."""
    with pytest.warns(UserWarning, match="integer division"):
        assert engine.query("SELECT 7 / 2 AS x").x.iloc[0] != 3
    assert to_duckdb("SELECT CAST(7 AS DOUBLE) / 2") == "SELECT CAST(7 AS DOUBLE) / 2"


def test_revenue_uses_the_order_lines_quantity_and_unit_price_else_the_catalogue_price(
    tmp_path: Path, curated: dict[str, Path]
) -> None:
    lines = _interaction_rows(
        [
            ("u1", "p1", "purchase", None, "2024-04-01 09:00:00"),  # 1 x catalogue 500
            ("u2", "p1", "purchase", None, "2024-04-01 10:00:00"),  # 3 x 450 on the line
            ("u3", "p404", "purchase", None, "2024-04-01 11:00:00"),  # not in the catalogue: 2 x 40
            ("u3", "p405", "purchase", None, "2024-04-01 12:00:00"),  # not in the catalogue, no price: 0
        ]
    )
    for row, (quantity, unit_price) in zip(lines, [(None, None), (3.0, 450.0), (2.0, 40.0), (None, None)], strict=True):
        row |= {"quantity": quantity, "unit_price": unit_price}
    engine = LocalAthena({**curated, "interactions": _write(tmp_path / "i.parquet", "interactions", lines)})
    funnel = engine.query("kpi_daily_funnel")
    assert _funnel_row(funnel, "2024-04-01", "Sarees").revenue == 1850.0  # 500 + 1350
    assert _funnel_row(funnel, "2024-04-01", "unknown").revenue == 80.0
    enriched = engine.query("dashboard_enriched_interactions")
    assert enriched["revenue"].tolist() == [500.0, 1350.0, 80.0, 0.0]
