"""sql/ab_verdict.sql: hand-computed verdicts on hand-made attribution rows, the same numbers as monitoring.ab_test,
alpha set from the settings, and only functions both Athena and DuckDB have."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlglot
from sqlglot import exp

from monitoring.ab_test import CHALLENGER, CHAMPION, OUTCOMES, experiment_verdicts
from recsys.local.athena import LocalAthena, dialect_traps, to_duckdb
from sql.library import AB_VERDICT_QUERY, READ_DIALECT, ab_verdict_query, ab_verdict_sql, read_query
from sql.stats import critical_z
from tests.sql.test_attribution import SERVED, _engine, _write_capture


def _verdict(tmp_path: Path, rows: list[tuple[str, int, int, int]], alpha: float = 0.05) -> pd.DataFrame:
    """The query over hand-made attribution_daily rows (variant, impressions, clicks, purchases)."""
    frame = pd.DataFrame(rows, columns=["variant", "impressions", "clicks", "purchases"]).astype(
        {"impressions": "int64", "clicks": "int64", "purchases": "int64"}
    )
    path = tmp_path / f"attribution_{len(list(tmp_path.glob('*.parquet')))}.parquet"
    frame.to_parquet(path)
    return LocalAthena({"attribution_daily": path}).query(ab_verdict_sql(alpha))


ROWS = [  # Champion 1000 impressions, 100 clicks, 10 purchases; Challenger 1000, 115, 30; AllTraffic is no arm
    (CHAMPION, 600, 60, 6), (CHAMPION, 400, 40, 4), (CHALLENGER, 1000, 115, 30), ("AllTraffic", 5000, 1, 0),
]


def test_the_verdict_per_metric_is_the_hand_computed_one(tmp_path: Path) -> None:
    ctr, purchase = _verdict(tmp_path, ROWS).to_dict("records")
    # CTR: 0.100 vs 0.115; Wald SE sqrt(.1 x .9 / 1000 + .115 x .885 / 1000) = 0.0138483; pooled .1075,
    # z = 0.015 / sqrt(.1075 x .8925 x 2 / 1000) = 1.082849 < 1.959964: no significant difference
    assert (ctr["metric"], ctr["champion_impressions"], ctr["champion_outcomes"]) == ("CTR", 1000, 100)
    assert (ctr["challenger_impressions"], ctr["challenger_outcomes"]) == (1000, 115)
    assert ctr["champion_rate"] == pytest.approx(0.1) and ctr["challenger_rate"] == pytest.approx(0.115)
    assert ctr["difference"] == pytest.approx(0.015)
    assert ctr["standard_error"] == pytest.approx(0.0138483, rel=1e-5)
    assert ctr["ci_low"] == pytest.approx(0.015 - 1.959964 * 0.0138483, rel=1e-5)
    assert ctr["ci_high"] == pytest.approx(0.015 + 1.959964 * 0.0138483, rel=1e-5)
    assert ctr["z"] == pytest.approx(1.082849, rel=1e-6)
    assert not ctr["significant"] and ctr["verdict"] == "no significant difference"
    # purchase rate: 0.01 vs 0.03; SE sqrt(.01 x .99 / 1000 + .03 x .97 / 1000) = 0.0062450; pooled .02,
    # z = 0.02 / sqrt(.02 x .98 x 2 / 1000) = 3.194383: Challenger better
    assert (purchase["metric"], purchase["champion_outcomes"], purchase["challenger_outcomes"]) == (
        "purchase rate", 10, 30)
    assert purchase["difference"] == pytest.approx(0.02)
    assert purchase["standard_error"] == pytest.approx(0.0062450, rel=1e-4)
    assert purchase["z"] == pytest.approx(3.194383, rel=1e-6)
    assert purchase["significant"] and purchase["verdict"] == "Challenger better"
    assert ctr["alpha"] == purchase["alpha"] == 0.05 and ctr["z_critical"] == pytest.approx(1.959964, abs=1e-6)


def test_a_worse_challenger_makes_the_champion_better(tmp_path: Path) -> None:
    (ctr, _) = _verdict(tmp_path, [(CHAMPION, 2000, 300, 0), (CHALLENGER, 2000, 200, 0)]).to_dict("records")
    assert ctr["difference"] < 0 and ctr["significant"] and ctr["verdict"] == "Champion better"


def test_no_outcome_at_all_is_z_zero_not_a_division_error(tmp_path: Path) -> None:
    (_, purchase) = _verdict(tmp_path, [(CHAMPION, 10, 1, 0), (CHALLENGER, 10, 2, 0)]).to_dict("records")
    assert purchase["z"] == 0.0 and purchase["standard_error"] == 0.0 and not purchase["significant"]


def test_no_row_without_impressions_in_both_arms(tmp_path: Path) -> None:
    assert _verdict(tmp_path, [("AllTraffic", 5000, 300, 9)]).empty
    assert _verdict(tmp_path, [(CHAMPION, 10, 1, 0), (CHALLENGER, 0, 0, 0)]).empty


def _records(rows: list[tuple[str, int, int, int]]) -> list[dict]:
    return [dict(zip(("variant", "impressions", "clicks", "purchases"), r, strict=True)) for r in rows]


@pytest.mark.parametrize("alpha", [0.05, 0.01, 0.2])
def test_the_sql_and_the_python_verdict_agree_to_1e_9(tmp_path: Path, alpha: float) -> None:
    rng = np.random.default_rng(int(alpha * 1000))
    for _ in range(8):
        rows = []
        for variant in (CHAMPION, CHALLENGER):
            for _part in range(int(rng.integers(1, 4))):
                shown = int(rng.integers(1, 3000))
                clicks = int(rng.binomial(shown, rng.uniform(0.0, 0.3)))
                rows.append((variant, shown, clicks, int(rng.binomial(clicks, 0.4))))
        sql = _verdict(tmp_path, rows, alpha).to_dict("records")
        python = experiment_verdicts(_records(rows), alpha)
        assert [r["metric"] for r in sql] == [v.metric for v in python] == list(OUTCOMES.values())
        for row, v in zip(sql, python, strict=True):
            lo, hi = v.interval
            assert (row["champion_impressions"], row["champion_outcomes"]) == (v.a_shown, v.a_clicks)
            assert (row["challenger_impressions"], row["challenger_outcomes"]) == (v.b_shown, v.b_clicks)
            for got, want in ((row["champion_rate"], v.a_rate), (row["challenger_rate"], v.b_rate),
                              (row["difference"], v.difference), (row["ci_low"], lo), (row["ci_high"], hi),
                              (row["z"], v.z)):  # fmt: skip
                assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9), (row, v)
            assert bool(row["significant"]) == v.significant
            assert row["verdict"] == (f"{v.winner} better" if v.winner else "no significant difference")


def test_over_the_captured_impressions_the_deployed_query_gives_the_hand_computed_verdict(tmp_path: Path) -> None:
    """The whole chain: capture -> attribution (as a CTE) -> verdict. Champion answered R1 and R3 (4 slots, 1 click,
    2 purchases), Challenger R2 (2 slots, 1 click): CTR 0.25 vs 0.5, Wald SE sqrt(.25 x .75 / 4 + .5 x .5 / 2),
    pooled 1/3, z = 0.25 / sqrt(1/3 x 2/3 x (1/4 + 1/2)) = 0.612372."""
    _write_capture(tmp_path, CHAMPION, [SERVED[0], SERVED[2]])
    _write_capture(tmp_path, CHALLENGER, [SERVED[1]])
    ctr, purchase = _engine(tmp_path).query(ab_verdict_query(24, 0.05)).to_dict("records")
    assert (ctr["champion_impressions"], ctr["champion_outcomes"], ctr["challenger_impressions"]) == (4, 1, 2)
    assert ctr["standard_error"] == pytest.approx(math.sqrt(0.25 * 0.75 / 4 + 0.5 * 0.5 / 2))
    assert ctr["z"] == pytest.approx(0.612372, rel=1e-6)
    assert (purchase["champion_outcomes"], purchase["challenger_outcomes"], purchase["difference"]) == (2, 0, -0.5)


def test_alpha_and_its_critical_z_are_one_params_line_set_from_the_setting() -> None:
    text = ab_verdict_sql(0.01)
    assert f"CAST(0.01 AS DOUBLE) AS alpha, CAST({critical_z(0.01)!r} AS DOUBLE) AS z_critical" in text
    assert "1.959963984540054" in read_query(AB_VERDICT_QUERY) and "1.959963984540054" not in text
    assert critical_z(0.01) == pytest.approx(2.575829, abs=1e-6)
    with pytest.raises(ValueError):
        ab_verdict_sql(1.5)


def test_the_deployed_query_is_one_statement_with_the_window_and_alpha_set() -> None:
    text = ab_verdict_query(48, 0.1)
    (statement,) = sqlglot.parse(text, read=READ_DIALECT)
    assert isinstance(statement, exp.Query)
    assert "INTERVAL '48' HOUR" in text and "CAST(0.1 AS DOUBLE) AS alpha" in text
    assert dialect_traps(text) == [] and dialect_traps(read_query(AB_VERDICT_QUERY)) == []


def test_only_functions_both_engines_know() -> None:
    """Athena (Trino) and DuckDB both have sqrt and abs; sqlglot carries them over unchanged, and nothing passes
    through as an unknown (Anonymous) function."""
    tree = sqlglot.parse_one(read_query(AB_VERDICT_QUERY), read=READ_DIALECT)
    functions = {type(f).__name__ for f in tree.find_all(exp.Func) if not isinstance(f, exp.AggFunc | exp.Cast)}
    assert not any(isinstance(f, exp.Anonymous) for f in tree.find_all(exp.Func))
    assert {"Sqrt", "Abs"} <= functions
    duck = to_duckdb(read_query(AB_VERDICT_QUERY)).upper()
    assert "SQRT(" in duck and "ABS(" in duck
