"""The local dashboard renders every chart in a real headless Chromium with no script error.

The browser is the one ``npm ci`` brings (``tests/browser.py``): no root, nothing installed system-wide. It is
required, not optional: when it cannot start, these tests fail and say why.
"""

from __future__ import annotations

import re
from pathlib import Path

from monitoring.dashboard import CHARTS, DATASETS
from recsys.local.athena import LocalAthena
from recsys.local.dashboard import chart_frame, dataset_frame, write_dashboard
from tests.browser import render

#: The page is done when every chart drew its first frame (``dashboard.js`` counts them in ``data-rendered``).
DRAWN = "document.body.dataset.rendered === document.body.dataset.charts"
SETTINGS = {"attribution_window_hours": 24, "experiment_alpha": 0.05}  # what the deployed SQL carries
HISTORY = [
    {"model_version": "v1", "evaluated_at": "2024-03-01 02:00:00", "ndcg_at_10": 0.04,
     "popularity_ndcg_at_10": 0.03, "coverage_at_10": 0.2},
    {"model_version": "v2", "evaluated_at": "2024-03-02 02:00:00", "ndcg_at_10": 0.05,
     "popularity_ndcg_at_10": 0.03, "coverage_at_10": 0.25},
]  # fmt: skip


def test_every_chart_renders_without_script_errors(tiny_athena: LocalAthena, tmp_path: Path) -> None:
    page = write_dashboard(tiny_athena, tmp_path / "dashboard.html", HISTORY, **SETTINGS)
    markup = re.sub(r"<script\b[^>]*>.*?</script>", "", page.read_text(), flags=re.S)  # the library's code aside
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", markup)  # self-contained: nothing to fetch
    assert "<link" not in markup and "<img" not in markup and "<script src" not in page.read_text()
    shown = render(page, DRAWN)
    assert shown.attributes.get("data-rendered") == str(len(CHARTS)), shown
    assert shown.attributes.get("data-script-errors") == "0", shown
    assert shown.errors == [], shown.errors


def test_a_script_error_is_reported_by_the_page(tiny_athena: LocalAthena, tmp_path: Path) -> None:
    """The error hook is real: a throwing script shows up in the dumped DOM."""
    page = write_dashboard(tiny_athena, tmp_path / "broken.html", HISTORY, extra_script="undefinedFunction();",
                           **SETTINGS)
    shown = render(page, DRAWN)
    assert shown.attributes.get("data-script-errors") == "1", shown
    assert any("undefinedFunction" in e for e in shown.errors), shown.errors


def test_the_browser_is_the_one_npm_ci_pinned_into_node_modules_not_a_system_chromium(
    tiny_athena: LocalAthena, tmp_path: Path
) -> None:
    import json

    from tests.browser import ROOT

    shown = render(write_dashboard(tiny_athena, tmp_path / "dashboard.html", HISTORY, **SETTINGS), DRAWN)
    pinned = json.loads((ROOT / "node_modules" / "@sparticuz" / "chromium" / "package.json").read_text())["version"]
    unpacked = (ROOT / "node_modules" / ".cache" / f"sparticuz-chromium-{pinned}").resolve()  # by tests/browser.mjs
    assert shown.executable.resolve().is_relative_to(unpacked), shown
    assert shown.executable.name == "chromium" and shown.version.startswith("HeadlessChrome/"), shown


def test_a_missing_pinned_browser_fails_the_test_not_skips_it(tmp_path: Path, monkeypatch) -> None:
    import pytest

    from tests import browser

    monkeypatch.setattr(browser, "PACKAGES", ("@sparticuz/chromium-not-installed",))
    with pytest.raises(pytest.fail.Exception, match="node_modules lacks @sparticuz/chromium-not-installed"):
        browser.render(tmp_path / "any.html", "true")


def test_charts_aggregate_the_dataset_rows_like_quicksight(tiny_athena: LocalAthena) -> None:
    kpi = dataset_frame(tiny_athena, DATASETS["kpi_daily_funnel"], HISTORY, **SETTINGS)
    funnel = chart_frame(next(c for c in CHARTS if c.id == "funnel_by_category"), kpi)
    assert funnel.set_index("category")["purchases"].to_dict() == {"Kurtis": 5, "Sarees": 4}
    enriched = dataset_frame(tiny_athena, DATASETS["enriched_interactions"], HISTORY, **SETTINGS)
    top = chart_frame(next(c for c in CHARTS if c.id == "top_products"), enriched)
    assert top["product_id"].tolist()[0] == "p4" and top["revenue"].iloc[0] == 2000.0  # two purchases at 1000
