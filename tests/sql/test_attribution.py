"""sql/attribution_daily.sql on a hand-made capture log and clickstream: hand-computed CTR, conversion, revenue."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from glue_jobs.schema import CURATED_COLUMNS
from monitoring.ab_test import verdict_from_attribution
from recsys.local.athena import LocalAthena
from recsys.local.capture import capture_glob, capture_key, capture_record, register_capture_table
from sql.library import ATTRIBUTION_QUERY, attribution_query, read_query

PRICES = {"pA": 100.0, "pB": 200.0, "pC": 50.0, "pD": 80.0}


def _answer(rid: str | None, version: str, strategy: str, products: list[str]) -> dict:
    answer = {"user_id": "u1", "recommendations": [{"product_id": p, "score": 1.0} for p in products],
              "strategy": strategy, "model_version": version}
    return answer if rid is None else {**answer, "recommendation_id": rid}


SERVED = [  # (recommendation_id, served at, model version, strategy, products in slot order)
    ("R1", "2024-03-01T10:00:00", "v1", "personalized", ["pA", "pB", "pC"]),
    ("R2", "2024-03-01T12:00:00", "v2", "personalized", ["pA", "pD"]),
    ("R3", "2024-03-02T09:00:00", "v1", "popular", ["pB"]),
]

EVENTS = [  # (recommendation_id, product, event type, time, quantity, unit price)
    ("R1", "pA", "view", "2024-03-01 10:05:00", None, None),  # click, slot 1
    ("R1", "pA", "view", "2024-03-01 10:20:00", None, None),  # a second view: still one click
    ("R1", "pA", "add_to_cart", "2024-03-01 10:06:00", None, None),
    ("R1", "pA", "purchase", "2024-03-01 10:10:00", 2.0, None),  # 2 x catalogue 100 = 200
    ("R1", "pB", "purchase", "2024-03-01 11:00:00", 1.0, 150.0),  # bought without a click: 150
    ("R1", "pC", "view", "2024-03-02 11:00:00", None, None),  # 25 h after serving: outside 24 h
    ("R1", "pD", "view", "2024-03-01 10:30:00", None, None),  # pD was not in R1's list
    ("R2", "pD", "view", "2024-03-01 12:30:00", None, None),  # click, slot 2 of v2
    ("R9", "pA", "purchase", "2024-03-01 12:40:00", 1.0, None),  # an id never served
    ("", "pA", "purchase", "2024-03-01 12:41:00", 1.0, None),  # no recommendation
    ("R3", "pB", "view", "2024-03-02 08:00:00", None, None),  # before R3 was served
]


def _write_capture(folder: Path, variant: str, served: list[tuple], name: str = "a", batch: bool = False) -> None:
    """``served`` answers as SageMaker captures them for ``variant``: capture/<endpoint>/<variant>/yyyy/mm/dd/hh/."""
    records = [
        capture_record(json.dumps({"user_id": "u1"}), json.dumps(_answer(rid, v, s, items)),
                       when=datetime.fromisoformat(t).replace(tzinfo=UTC))
        for rid, t, v, s, items in served
    ]
    if batch:  # a batch answer is not an impression (documented)
        answer = {"predictions": [_answer("RB", "v1", "personalized", ["pA"])]}
        records.append(capture_record("{}", json.dumps(answer), when=datetime(2024, 3, 1, 10, tzinfo=UTC)))
    path = folder / capture_key("recsys-dev-recommender", variant, datetime(2024, 3, 1, tzinfo=UTC), name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")


@pytest.fixture
def athena(tmp_path: Path) -> LocalAthena:
    _write_capture(tmp_path, "AllTraffic", SERVED, batch=True)
    return _engine(tmp_path)


def _engine(tmp_path: Path) -> LocalAthena:
    schema = pa.schema(list(CURATED_COLUMNS["interactions"].items()))
    rows = [
        {"user_id": "u1", "product_id": p, "event_type": e, "rating": None, "event_time": datetime.fromisoformat(t),
         "quantity": q, "unit_price": up, "recommendation_id": rid}
        for rid, p, e, t, q, up in EVENTS
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp_path / "clickstream.parquet")
    products = pa.table({"product_id": list(PRICES), "price": list(PRICES.values())})
    pq.write_table(products, tmp_path / "products.parquet")
    engine = LocalAthena({"clickstream": tmp_path / "clickstream.parquet", "products": tmp_path / "products.parquet"})
    register_capture_table(engine, capture_glob(tmp_path))
    return engine


def _rows(frame) -> dict[tuple, tuple]:  # noqa: ANN001 - a DataFrame
    return {
        (str(r.event_date)[:10], r.model_version, r.strategy, int(r.position)):
            (int(r.impressions), int(r.clicks), int(r.carts), int(r.purchases), round(float(r.revenue), 2))
        for r in frame.itertuples()
    }


def test_attribution_counts_each_slot_once_within_the_window_for_its_own_list(athena: LocalAthena) -> None:
    got = _rows(athena.query(ATTRIBUTION_QUERY))
    assert got == {
        ("2024-03-01", "v1", "personalized", 1): (1, 1, 1, 1, 200.0),
        ("2024-03-01", "v1", "personalized", 2): (1, 0, 0, 1, 150.0),
        ("2024-03-01", "v1", "personalized", 3): (1, 0, 0, 0, 0.0),
        ("2024-03-01", "v2", "personalized", 1): (1, 0, 0, 0, 0.0),
        ("2024-03-01", "v2", "personalized", 2): (1, 1, 0, 0, 0.0),
        ("2024-03-02", "v1", "popular", 1): (1, 0, 0, 0, 0.0),
    }


def test_rates_are_per_impression_and_purchases_per_click(athena: LocalAthena) -> None:
    frame = athena.query(ATTRIBUTION_QUERY)
    v1 = frame[(frame.model_version == "v1") & (frame.strategy == "personalized")]
    assert v1.click_through_rate.tolist() == [1.0, 0.0, 0.0]
    assert v1.purchase_rate.tolist() == [1.0, 1.0, 0.0]
    assert v1.purchases_per_click.iloc[0] == 1.0 and v1.purchases_per_click.iloc[1:].isna().all()
    day = frame[frame.event_date.astype(str).str.startswith("2024-03-01")]
    assert day.clicks.sum() / day.impressions.sum() == pytest.approx(2 / 5)  # CTR of the day: 2 clicks, 5 slots
    assert day.revenue.sum() == pytest.approx(350.0)


def test_the_window_setting_changes_what_is_attributed(athena: LocalAthena) -> None:
    got = _rows(athena.query(attribution_query(48)))
    assert got[("2024-03-01", "v1", "personalized", 3)] == (1, 1, 0, 0, 0.0)  # the view 25 h later now counts
    assert _rows(athena.query(attribution_query(24))) == _rows(athena.query(ATTRIBUTION_QUERY))


def test_the_window_is_one_literal_in_the_file_and_must_be_positive() -> None:
    assert "INTERVAL '6' HOUR" in attribution_query(6) and "INTERVAL '24' HOUR" not in attribution_query(6)
    assert read_query(ATTRIBUTION_QUERY).count("INTERVAL '24' HOUR") == 1
    with pytest.raises(ValueError, match="positive"):
        attribution_query(0)


def test_the_ab_verdict_reads_impressions_and_clicks_per_model_version_from_the_attribution_rows(athena) -> None:
    rows = athena.query(ATTRIBUTION_QUERY).to_dict("records")
    verdict = verdict_from_attribution(rows, "v1", "v2")
    # v1: 4 impressions (3 on day 1, 1 on day 2), 1 click; v2: 2 impressions, 1 click
    assert (verdict.a_shown, verdict.a_clicks, verdict.b_shown, verdict.b_clicks) == (4, 1, 2, 1)
    assert verdict.difference == pytest.approx(0.5 - 0.25)


def test_a_single_variant_endpoint_serves_everything_as_alltraffic(athena: LocalAthena) -> None:
    assert set(athena.query(ATTRIBUTION_QUERY).variant) == {"AllTraffic"}


@pytest.fixture
def ab_athena(tmp_path: Path) -> LocalAthena:
    """An A/B test: R1 and R3 answered by the Champion, R2 by the Challenger, RS by a shadow variant whose
    answer nobody saw (a click echoing RS cannot be attributed to it either)."""
    _write_capture(tmp_path, "Champion", [SERVED[0], SERVED[2]])
    _write_capture(tmp_path, "Challenger", [SERVED[1]])
    _write_capture(tmp_path, "Shadow", [("RS", "2024-03-01T10:00:00", "v2", "personalized", ["pA", "pB"])])
    return _engine(tmp_path)


def test_each_variant_gets_its_own_impressions_clicks_purchases_and_revenue(ab_athena: LocalAthena) -> None:
    frame = ab_athena.query(ATTRIBUTION_QUERY)
    sums = frame.groupby("variant")[["impressions", "clicks", "carts", "purchases", "revenue"]].sum()
    assert sums.astype(float).round(2).to_dict("index") == {
        # Champion: R1 (3 slots: pA clicked, carted, bought 2 x 100; pB bought at 150) + R3 (1 slot, a view before it)
        "Champion": {"impressions": 4.0, "clicks": 1.0, "carts": 1.0, "purchases": 2.0, "revenue": 350.0},
        # Challenger: R2 (2 slots: pD clicked)
        "Challenger": {"impressions": 2.0, "clicks": 1.0, "carts": 0.0, "purchases": 0.0, "revenue": 0.0},
    }  # no Shadow row: its answers were never shown
    verdict = verdict_from_attribution(frame.to_dict("records"), "Champion", "Challenger", key="variant")
    assert (verdict.a_shown, verdict.a_clicks, verdict.b_shown, verdict.b_clicks) == (4, 1, 2, 1)


def test_the_shadow_variant_name_is_the_deploy_lambdas() -> None:
    from lambdas.deploy_endpoint.handler import SHADOW

    assert f"<> '{SHADOW}'" in read_query(ATTRIBUTION_QUERY)
