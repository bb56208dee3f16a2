"""A/B verdicts: hand-computed statistics, a known better variant found, identical variants not split."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monitoring.ab_test import CHALLENGER, CHAMPION, Verdict, _normal_quantile, experiment_verdicts
from monitoring.dashboard import TABLES
from recsys.generator import GeneratorConfig, build_world, product_ids
from recsys.local.dashboard import _table_section, write_dashboard
from recsys.shopper_sim import simulated_ab
from tests.sql.test_ab_verdict import _verdict as sql_verdict


def test_the_statistics_match_a_hand_computation():
    v = Verdict("A", "B", a_shown=1000, a_clicks=100, b_shown=1000, b_clicks=130)
    assert v.a_rate == 0.10 and v.b_rate == 0.13 and math.isclose(v.difference, 0.03)
    pooled = 230 / 2000
    z = 0.03 / math.sqrt(pooled * (1 - pooled) * (2 / 1000))  # 2.1063...
    assert math.isclose(v.z, z) and math.isclose(v.p_value, math.erfc(z / math.sqrt(2)))
    se = math.sqrt(0.1 * 0.9 / 1000 + 0.13 * 0.87 / 1000)
    lo, hi = v.interval
    assert math.isclose(lo, 0.03 - 1.959964 * se, rel_tol=1e-5) and math.isclose(hi, 0.03 + 1.959964 * se, rel_tol=1e-5)
    assert v.significant and v.winner == "B" and "B wins" in v.summary()


def test_normal_quantile_is_accurate_in_the_tails_and_the_middle():
    for p, q in ((0.975, 1.959964), (0.5, 0.0), (0.995, 2.575829), (0.001, -3.090232)):
        assert math.isclose(_normal_quantile(p), q, abs_tol=1e-6)


def test_no_clicks_at_all_is_no_difference_not_an_error():
    v = Verdict("A", "B", 10, 0, 10, 0)
    assert v.z == 0.0 and v.p_value == 1.0 and v.winner is None


@pytest.mark.parametrize("bad", [(0, 0, 10, 1), (10, 11, 10, 1), (10, -1, 10, 1)])
def test_impossible_counts_are_refused(bad):
    with pytest.raises(ValueError):
        Verdict("A", "B", *bad)


def test_identical_variants_are_declared_different_no_more_often_than_alpha():
    rng = np.random.default_rng(0)
    trials, alpha = 2000, 0.05
    false = sum(
        Verdict("A", "B", 5000, int(rng.binomial(5000, 0.08)), 5000, int(rng.binomial(5000, 0.08)), alpha).significant
        for _ in range(trials)
    )
    assert false / trials <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / trials)


CFG = GeneratorConfig(n_users=300, n_products=120, n_interactions=3000, seed=5)


def _taste_ranked(cfg: GeneratorConfig):
    world = build_world(cfg)
    ids = np.array(product_ids(len(world.item_vec)))
    return lambda user: ids[np.argsort(-(world.item_vec @ world.user_vec[int(user[1:]) - 1]))[:10]].tolist()


def test_simulated_shoppers_prefer_the_variant_that_serves_their_taste():
    ids = product_ids(120)
    random_pick = np.random.default_rng(1)
    verdict = simulated_ab(CFG, ("random", lambda _u: random_pick.choice(ids, 10, replace=False).tolist()),
                           ("taste", _taste_ranked(CFG)), requests=3000, seed=2)
    assert verdict.winner == "taste" and verdict.difference > 0


def test_simulated_identical_variants_rarely_get_a_verdict():
    same = _taste_ranked(CFG)
    verdicts = [simulated_ab(CFG, ("A", same), ("B", same), requests=400, seed=s).significant for s in range(40)]
    assert sum(verdicts) <= 6  # alpha 0.05 over 40 runs: 2 expected, 6 is beyond 3 standard deviations


def test_the_variant_names_are_the_deploy_lambdas():
    from lambdas.deploy_endpoint import handler

    assert (CHAMPION, CHALLENGER) == (handler.CHAMPION, handler.CHALLENGER)


def _rows(variant: str, shown: int, clicks: int, purchases: int) -> dict:
    return {"variant": variant, "impressions": shown, "clicks": clicks, "purchases": purchases}


def test_experiment_verdicts_compare_clicks_and_purchases_of_challenger_against_champion():
    rows = [_rows(CHAMPION, 600, 60, 6), _rows(CHAMPION, 400, 40, 4), _rows(CHALLENGER, 1000, 130, 30),
            _rows("AllTraffic", 5000, 1, 0)]  # before the test: not part of it
    ctr, conversion = experiment_verdicts(rows, alpha=0.05)
    assert (ctr.metric, ctr.a_shown, ctr.a_clicks, ctr.b_shown, ctr.b_clicks) == ("CTR", 1000, 100, 1000, 130)
    assert (conversion.metric, conversion.a_clicks, conversion.b_clicks) == ("purchase rate", 10, 30)
    assert ctr.winner == CHALLENGER and "purchase rate 1.00%" in conversion.summary()
    assert experiment_verdicts([_rows("AllTraffic", 5000, 300, 9)], alpha=0.05) == []  # no A/B test ran
    assert experiment_verdicts([_rows(CHAMPION, 10, 1, 0), _rows(CHALLENGER, 0, 0, 0)], alpha=0.05) == []


def test_the_pages_verdict_table_shows_the_sql_result_with_the_python_verdicts_numbers(tiny_athena, tmp_path):
    """The page reads sql/ab_verdict.sql's rows (as QuickSight does) and recomputes nothing; the numbers it shows are
    monitoring.ab_test's."""
    rows = [(CHAMPION, 1000, 100, 10), (CHALLENGER, 1000, 130, 10)]
    (table,) = TABLES
    section = _table_section(table, sql_verdict(tmp_path, rows))
    v = Verdict(CHAMPION, CHALLENGER, 1000, 100, 1000, 130)
    lo, hi = v.interval
    assert f">{lo:+.2%}<" in section and f">{hi:+.2%}<" in section and f">{v.z:.4g}<" in section
    assert "data-metric='CTR' data-significant='True'" in section and ">Challenger better<" in section
    assert "data-metric='purchase rate' data-significant='False'" in section  # equal purchase rates: no verdict
    settings = {"attribution_window_hours": 24, "experiment_alpha": 0.05}
    page = write_dashboard(tiny_athena, tmp_path / "d.html", [], **settings).read_text()  # the tiny capture: AllTraffic
    assert "data-table='ab_verdict' data-rows='0'" in page and "No A/B test in the attribution rows" in page
