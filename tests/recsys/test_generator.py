"""Behaviour of the synthetic marketplace generator (recsys/generator.py).

One small world is generated per module and shared; each test checks one property with an
answer that is obvious from the design (e.g. women buy more sarees than men do).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from glue_jobs.schema import EVENT_TYPES, RAW_COLUMNS
from recsys import generator as gen
from recsys.generator import GenerationSummary, GeneratorConfig, build_world, generate_tables, generate_to_dir

SMALL = GeneratorConfig(n_users=400, n_products=150, n_interactions=12_000, days=40, seed=7)


def read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str)


def parse_timestamps(ts: pd.Series) -> pd.Series:
    """UTC datetimes for ISO-8601 and epoch-second strings; NaT when unparseable."""
    digits = ts.str.fullmatch(r"\d+").fillna(False).astype(bool)
    iso = pd.to_datetime(ts.where(~digits), utc=True, format="ISO8601", errors="coerce")
    epoch = pd.to_datetime(pd.to_numeric(ts.where(digits)), unit="s", utc=True)
    return iso.where(~digits, epoch)


def detect_dirt(tables: dict[str, pd.DataFrame]) -> dict[str, dict[str, int]]:
    """Count each dirty kind from the data alone, independently of the generator's bookkeeping."""
    u, p, i = tables["users"], tables["products"], tables["interactions"]
    age = pd.to_numeric(u["age"], errors="coerce")
    price = pd.to_numeric(p["price"], errors="coerce")
    valid_event = i["event_type"].isin(EVENT_TYPES)
    is_rating = i["event_type"] == "rating"
    return {
        "users": {
            "missing_user_id": int(u["user_id"].isna().sum()),
            "impossible_age": int((~age.between(13, 100)).sum()),
            "blank_gender": int(u["gender"].isna().sum()),
        },
        "products": {
            "negative_price": int((price < 0).sum()),
            "zero_price": int((price == 0).sum()),
            "non_numeric_price": int((price.isna() & p["price"].notna()).sum()),
            "missing_category": int(p["category"].isna().sum()),
            "duplicate_product_id": int(p["product_id"].duplicated().sum()),
        },
        "interactions": {
            "missing_user_id": int(i["user_id"].isna().sum()),
            "missing_product_id": int(i["product_id"].isna().sum()),
            "unknown_event_type": int((~valid_event).sum()),
            "rating_out_of_range": int((is_rating & ~i["rating"].isin(list("12345"))).sum()),
            "rating_on_non_rating_event": int((valid_event & ~is_rating & i["rating"].notna()).sum()),
            "unparseable_timestamp": int(parse_timestamps(i["timestamp"]).isna().sum()),
            "duplicate_row": int(i.duplicated().sum()),
        },
    }


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[GenerationSummary, dict[str, pd.DataFrame]]:
    summary = generate_to_dir(tmp_path_factory.mktemp("gen"), SMALL)
    return summary, {t: read_csv(path) for t, path in summary.paths.items()}


@pytest.fixture(scope="module")
def tables(written: tuple[GenerationSummary, dict[str, pd.DataFrame]]) -> dict[str, pd.DataFrame]:
    return written[1]


@pytest.fixture(scope="module")
def pristine() -> dict[str, pd.DataFrame]:
    """The same world with no injected dirt, for checks of behaviour that dirt would blur."""
    return generate_tables(dataclasses.replace(SMALL, dirty_fraction=0.0))


@pytest.fixture(scope="module")
def clean(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Valid interactions joined to clean products and users, with parsed UTC time."""
    i = tables["interactions"].dropna(subset=["user_id", "product_id"])
    i = i[i["event_type"].isin(EVENT_TYPES)].assign(ts=lambda d: parse_timestamps(d["timestamp"]))
    i = i.dropna(subset=["ts"])
    products = tables["products"].drop_duplicates("product_id").dropna(subset=["category"])
    users = tables["users"].dropna(subset=["user_id"])
    return i.merge(products, on="product_id").merge(users, on="user_id")


# ------------------------------------------------------------------------------------ determinism


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_same_seed_writes_byte_identical_files(tmp_path: Path, fmt: str) -> None:
    cfg = dataclasses.replace(SMALL, n_interactions=3000, fmt=fmt)
    a = generate_to_dir(tmp_path / "a", cfg)
    b = generate_to_dir(tmp_path / "b", cfg)
    for table in RAW_COLUMNS:
        assert a.paths[table].read_bytes() == b.paths[table].read_bytes(), table


def test_different_seed_gives_different_data(tmp_path: Path) -> None:
    cfg = dataclasses.replace(SMALL, n_interactions=3000)
    a = generate_to_dir(tmp_path / "a", cfg)
    b = generate_to_dir(tmp_path / "b", dataclasses.replace(cfg, seed=cfg.seed + 1))
    for table in RAW_COLUMNS:
        assert a.paths[table].read_bytes() != b.paths[table].read_bytes(), table


def test_generate_tables_equals_what_generate_to_dir_writes(tables: dict[str, pd.DataFrame]) -> None:
    in_memory = generate_tables(SMALL)
    for name, df in tables.items():
        pd.testing.assert_frame_equal(in_memory[name].astype(object), df.astype(object), check_dtype=False)


# ---------------------------------------------------------------------------------------- schema


def test_csv_headers_are_exactly_the_raw_contract(written: tuple[GenerationSummary, dict]) -> None:
    summary, _ = written
    for table, path in summary.paths.items():
        assert path.name == f"{table}.csv"
        assert tuple(path.read_text().splitlines()[0].split(",")) == RAW_COLUMNS[table]


def test_parquet_has_contract_columns_all_strings(tmp_path: Path) -> None:
    summary = generate_to_dir(tmp_path, dataclasses.replace(SMALL, n_interactions=2000, fmt="parquet"))
    for table, path in summary.paths.items():
        schema = pq.read_schema(path)
        assert tuple(schema.names) == RAW_COLUMNS[table]
        assert {str(t) for t in schema.types} == {"string"}
        assert pq.read_metadata(path).num_rows == summary.rows[table]


def test_summary_row_counts_match_files(written: tuple[GenerationSummary, dict[str, pd.DataFrame]]) -> None:
    summary, tables = written
    assert summary.rows == {t: len(df) for t, df in tables.items()}
    assert summary.rows["users"] == SMALL.n_users


def test_interaction_count_is_near_the_target(tables: dict[str, pd.DataFrame]) -> None:
    assert abs(len(tables["interactions"]) / SMALL.n_interactions - 1) < 0.1


def test_product_urls_follow_meesho_pattern(tables: dict[str, pd.DataFrame]) -> None:
    p = tables["products"]
    slug_ok = p["product_url"].str.fullmatch(r"https://www\.meesho\.com/[a-z0-9-]+/p/[a-z0-9]+")
    assert slug_ok.all()
    assert (p["product_url"].str.rsplit("/", n=1).str[1] == p["product_id"]).all()


def test_most_valid_prices_are_cheap_long_tail(tables: dict[str, pd.DataFrame]) -> None:
    price = pd.to_numeric(tables["products"]["price"], errors="coerce")
    price = price[price > 0]
    assert price.between(150, 1500).mean() > 0.8
    assert price.max() > 2 * price.median()


# ----------------------------------------------------------------------------------------- dirt


def test_reported_dirty_counts_match_the_files(written: tuple[GenerationSummary, dict[str, pd.DataFrame]]) -> None:
    summary, tables = written
    assert detect_dirt(tables) == summary.dirty_rows
    assert all(n > 0 for kinds in summary.dirty_rows.values() for n in kinds.values())


def test_dirty_rows_are_about_the_requested_share(written: tuple[GenerationSummary, dict]) -> None:
    summary, _ = written
    share = sum(summary.dirty_rows["interactions"].values()) / summary.rows["interactions"]
    assert 0.5 * SMALL.dirty_fraction < share < 1.5 * SMALL.dirty_fraction


def test_event_types_are_valid_except_the_injected_unknowns(written: tuple[GenerationSummary, dict]) -> None:
    summary, tables = written
    events = tables["interactions"]["event_type"]
    assert set(EVENT_TYPES) <= set(events)
    assert (~events.isin(EVENT_TYPES)).sum() == summary.dirty_rows["interactions"]["unknown_event_type"]


def test_zero_dirty_fraction_gives_clean_tables(tmp_path: Path) -> None:
    summary = generate_to_dir(tmp_path, dataclasses.replace(SMALL, n_interactions=3000, dirty_fraction=0.0))
    found = detect_dirt({t: read_csv(p) for t, p in summary.paths.items()})
    assert all(n == 0 for kinds in found.values() for n in kinds.values()), found
    assert all(n == 0 for kinds in summary.dirty_rows.values() for n in kinds.values())


# ------------------------------------------------------------------------------------- behaviour


def test_popularity_has_a_long_tail(clean: pd.DataFrame) -> None:
    counts = clean["product_id"].value_counts()
    top_decile = counts.iloc[: SMALL.n_products // 10].sum()
    assert top_decile / counts.sum() > 0.4


def test_user_activity_is_heavy_tailed(clean: pd.DataFrame) -> None:
    counts = clean["user_id"].value_counts()
    assert counts.iloc[: SMALL.n_users // 10].sum() / counts.sum() > 0.3


def test_funnel_narrows_from_views_to_ratings(clean: pd.DataFrame) -> None:
    n = clean["event_type"].value_counts()
    assert n["view"] > 3 * n["add_to_cart"] > 3 * n["purchase"] / 2 > 0
    assert n["purchase"] > n["rating"] > 0


def test_ratings_are_for_purchased_products_and_skew_high(pristine: dict[str, pd.DataFrame]) -> None:
    clean = pristine["interactions"].assign(ts=lambda d: parse_timestamps(d["timestamp"]))
    bought = clean[clean["event_type"] == "purchase"]
    first_buy = bought.groupby(["user_id", "product_id"])["ts"].min().rename("ts_buy").reset_index()
    rated = clean[clean["event_type"] == "rating"].merge(first_buy, on=["user_id", "product_id"], how="left")
    assert len(rated) > 0 and rated["ts_buy"].notna().all()
    assert (rated["ts"] > rated["ts_buy"]).all()
    stars = pd.to_numeric(rated["rating"])
    assert stars.mean() > 3.8 and (stars >= 4).mean() > 0.6


def test_sessions_stay_within_few_categories(clean: pd.DataFrame) -> None:
    views = clean[clean["event_type"] == "view"].sort_values("ts")
    # a "session" here: same user, gaps under 10 minutes
    gap = views.groupby("user_id")["ts"].diff() > pd.Timedelta(minutes=10)
    session = (gap | views["user_id"].ne(views["user_id"].shift())).cumsum()
    per_session = views.groupby(session)["category"].agg(["size", "nunique"])
    long_sessions = per_session[per_session["size"] >= 4]
    assert (long_sessions["nunique"] <= 2).mean() > 0.6


def test_women_buy_more_sarees_and_men_more_tshirts(clean: pd.DataFrame) -> None:
    bought = clean[clean["event_type"].isin(["view", "purchase"])]
    share = pd.crosstab(bought["gender"], bought["category"], normalize="index")
    assert share.loc["female", "Sarees"] > 2 * share.loc["male", "Sarees"]
    assert share.loc["male", "Men Tshirts"] > 2 * share.loc["female", "Men Tshirts"]


def test_price_sensitive_users_buy_cheaper_items(pristine: dict[str, pd.DataFrame]) -> None:
    world = build_world(SMALL)
    i = pristine["interactions"]
    views = i[i["event_type"] == "view"]
    user = views["user_id"].str[1:].astype(int).to_numpy() - 1
    index = {pid: k for k, pid in enumerate(gen.product_ids(world.n_products))}
    rel_price = world.rel_log_price[views["product_id"].map(index).to_numpy()]
    beta = world.price_beta[user]
    lo, hi = np.quantile(beta, [0.25, 0.75])
    assert rel_price[beta >= hi].mean() < rel_price[beta <= lo].mean() - 0.1


def test_chosen_products_reflect_latent_taste_beyond_category(pristine: dict[str, pd.DataFrame]) -> None:
    world = build_world(SMALL)
    i = pristine["interactions"]
    index = {pid: k for k, pid in enumerate(gen.product_ids(world.n_products))}
    user = i["user_id"].str[1:].astype(int).to_numpy() - 1
    item = i["product_id"].map(index).to_numpy()
    rng = np.random.default_rng(0)
    # a random product from the same category, as the baseline
    same_cat = np.array([rng.choice(np.flatnonzero(world.category == world.category[j])) for j in item[:3000]])
    taste = np.einsum("nk,nk->n", world.user_vec[user[:3000]], world.item_vec[item[:3000]])
    baseline = np.einsum("nk,nk->n", world.user_vec[user[:3000]], world.item_vec[same_cat])
    assert taste.mean() > baseline.mean() + 0.2


def test_festive_peak_raises_daily_traffic(clean: pd.DataFrame) -> None:
    day = (clean["ts"] + pd.Timedelta(hours=5, minutes=30)).dt.floor("D")
    per_day = day.value_counts().sort_index()
    peak = pd.Timestamp(SMALL.start_date, tz="UTC") + pd.Timedelta(days=round(0.6 * (SMALL.days - 1)))
    assert per_day.loc[peak] > 1.8 * per_day.median()


def test_new_products_have_no_interactions_before_launch(clean: pd.DataFrame) -> None:
    world = build_world(SMALL)
    ids = np.array(gen.product_ids(world.n_products))
    launch = pd.Series(world.launch_day, index=ids)
    new = launch[launch >= 0]
    assert len(new) == round(SMALL.new_product_fraction * SMALL.n_products)
    events = clean[clean["product_id"].isin(new.index)]
    launched_at = pd.Timestamp(SMALL.start_date, tz="Asia/Kolkata") + pd.to_timedelta(
        events["product_id"].map(new), unit="D"
    )
    assert len(events) > 0
    assert (events["ts"] >= launched_at).all()


def test_users_never_act_before_signup(clean: pd.DataFrame) -> None:
    signup = pd.to_datetime(clean["signup_date"]).dt.tz_localize("Asia/Kolkata")
    assert (clean["ts"] >= signup).all()


def test_new_users_have_fewer_events(pristine: dict[str, pd.DataFrame]) -> None:
    users = pristine["users"].set_index("user_id")
    per_user = pristine["interactions"].groupby("user_id").size().reindex(users.index, fill_value=0)
    new = users["signup_date"] >= SMALL.start_date
    assert new.sum() == round(SMALL.new_user_fraction * SMALL.n_users)
    assert per_user[new].median() < 0.5 * per_user[~new].median()


def test_timestamps_are_in_range_and_mix_iso_with_epoch(tables: dict[str, pd.DataFrame]) -> None:
    raw = tables["interactions"]["timestamp"]
    ts = parse_timestamps(raw).dropna()
    start = pd.Timestamp(SMALL.start_date, tz="Asia/Kolkata")
    assert ts.min() >= start and ts.max() < start + pd.Timedelta(days=SMALL.days)
    epoch = raw.str.fullmatch(r"\d{10}").mean()
    ist = raw.str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+05:30").mean()
    assert 0.03 < epoch < 0.2 and ist > 0.7


# ---------------------------------------------------------------------------------- interface


def test_progress_reports_each_chunk_of_a_long_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gen, "DEFAULT_PARAMS", dataclasses.replace(gen.DEFAULT_PARAMS, max_sessions_per_chunk=200))
    messages: list[str] = []
    summary = generate_to_dir(tmp_path, dataclasses.replace(SMALL, n_interactions=3000), messages.append)
    chunk_msgs = [m for m in messages if m.startswith("interactions:")]
    assert len(chunk_msgs) > 3
    assert re.fullmatch(r"interactions: [\d,]+ / ~3,000 rows", chunk_msgs[-1])
    assert chunk_msgs[-1].split()[1] == f"{summary.rows['interactions']:,}"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_users", 0),
        ("n_products", -1),
        ("n_interactions", 2.5),
        ("days", 0),
        ("seed", -3),
        ("dirty_fraction", 0.9),
        ("new_user_fraction", -0.1),
        ("new_product_fraction", 1.0),
        ("start_date", "01/01/2026"),
        ("fmt", "json"),
    ],
)
def test_invalid_config_is_rejected_naming_the_field(tmp_path: Path, field: str, value: object) -> None:
    cfg = dataclasses.replace(SMALL, **{field: value})
    with pytest.raises(ValueError, match=field):
        generate_to_dir(tmp_path, cfg)
    assert not any(tmp_path.iterdir())


def test_tiny_catalogue_still_generates(tmp_path: Path) -> None:
    cfg = GeneratorConfig(n_users=3, n_products=2, n_interactions=50, days=3, dirty_fraction=0.0)
    tables = generate_tables(cfg)
    assert len(tables["interactions"]) > 0
    assert set(tables["interactions"]["product_id"]) <= set(tables["products"]["product_id"])


def test_csv_quotes_only_chunks_whose_values_need_it(tmp_path: Path) -> None:
    writer = gen._Writer(tmp_path / "t.csv", "csv", ("a", "b"))
    writer.write(pa.table({"a": ["x y", "z"], "b": ["1", None]}))
    writer.write(pa.table({"a": ["x,y"], "b": ["2"]}))
    writer.close()
    assert (tmp_path / "t.csv").read_text().splitlines() == ["a,b", "x y,1", "z,", '"x,y","2"']


def test_the_generate_command_writes_the_three_tables_with_the_counts_it_prints(tmp_path: Path, capsys) -> None:
    """`python -m recsys generate` (docs/generator.md): the options reach the generator, the files are there."""
    from recsys.cli import main

    out = tmp_path / "raw"
    args = ["generate", "--out", str(out), "--users", "60", "--products", "30", "--interactions", "900", "--seed", "3"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    for table in ("users", "products", "interactions"):
        reported = re.search(rf"^\s+{table}\s+([\d,]+) rows\s+\(", printed, re.M)
        assert reported, printed
        assert int(reported.group(1).replace(",", "")) == len(read_csv(out / f"{table}.csv"))
    assert len(read_csv(out / "users.csv")) == 60
