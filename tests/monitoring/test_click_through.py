"""The online click-through metrics (latest day vs its trailing 7 days) and the alarm on their ratio."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from monitoring import metrics as m
from monitoring.alarms import alarm_specs
from recsys.local.alarms import evaluate
from recsys.local.athena import LocalAthena
from settings.config import load_project_config

CFG = load_project_config("dev")


def _athena(tmp_path: Path, days: list[tuple[date, int, int]]) -> LocalAthena:
    table = pa.table({"event_date": [d for d, _, _ in days], "clicks": [c for _, c, _ in days],
                      "impressions": [i for _, _, i in days]})
    pq.write_table(table, tmp_path / "attr.parquet")
    return LocalAthena({"attr": tmp_path / "attr.parquet"})


def test_latest_day_and_trailing_week_are_hand_computed(tmp_path: Path) -> None:
    last = date(2024, 3, 8)
    days = [(last - timedelta(days=n), 10, 100) for n in range(1, 8)]  # trailing: 70 / 700
    days += [(last, 5, 100), (last, 0, 100), (date(2024, 2, 20), 100, 100)]  # latest 5 / 200; 02-20 is too old
    row = _athena(tmp_path, days).query(m.click_through_sql("SELECT * FROM attr")).iloc[0]
    assert row.ctr == pytest.approx(0.025) and row.ctr_trailing == pytest.approx(0.1)
    assert m.click_through_row(row)["ctr_ratio"] == pytest.approx(0.25)


def test_no_trailing_level_reads_as_ratio_one_and_no_impressions_as_zero(tmp_path: Path) -> None:
    row = _athena(tmp_path, [(date(2024, 3, 8), 3, 30)]).query(m.click_through_sql("SELECT * FROM attr")).iloc[0]
    assert (row.ctr, row.ctr_trailing) == (pytest.approx(0.1), 0.0)
    assert m.click_through_row(row)["ctr_ratio"] == 1.0


def test_alarm_fires_when_click_through_falls_below_the_configured_share_of_its_trailing_level(aws_env) -> None:
    cw = aws_env.client("cloudwatch")
    [spec] = [s for s in alarm_specs(CFG) if s.key == "online-ctr-drop"]
    assert spec.threshold == CFG.alarm_ctr_drop_share
    assert evaluate(cw, spec)[0] == "OK"  # no impressions yet: not breaching
    drop = CFG.alarm_ctr_drop_share * 0.9
    m.publish_click_through(cw, CFG.endpoint_name, {"ctr": 0.1 * drop, "ctr_trailing": 0.1})
    assert evaluate(cw, spec)[0] == "ALARM"
    aws_env.reset()
    m.publish_click_through(cw, CFG.endpoint_name, {"ctr": 0.1, "ctr_trailing": 0.1})
    assert evaluate(cw, spec)[0] == "OK"


def test_the_click_through_query_has_no_dialect_traps() -> None:
    from recsys.local.athena import dialect_traps
    from sql.library import attribution_query

    assert dialect_traps(m.click_through_sql(attribution_query(24))) == []
