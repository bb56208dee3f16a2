"""The local dashboard renders every chart in a real headless Chromium with no script error.

Chromium is required, not optional: without it this test fails and says how to install it
(``make setup`` does it as root: ``apt-get install -y chromium``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from monitoring.dashboard import CHARTS, DATASETS, chart_frame, dataset_frame, write_dashboard
from recsys.local.athena import LocalAthena

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--virtual-time-budget=3000",
]
SETTINGS = {"attribution_window_hours": 24, "experiment_alpha": 0.05}  # what the deployed SQL carries
HISTORY = [
    {"model_version": "v1", "evaluated_at": "2024-03-01 02:00:00", "ndcg_at_10": 0.04,
     "popularity_ndcg_at_10": 0.03, "coverage_at_10": 0.2},
    {"model_version": "v2", "evaluated_at": "2024-03-02 02:00:00", "ndcg_at_10": 0.05,
     "popularity_ndcg_at_10": 0.03, "coverage_at_10": 0.25},
]  # fmt: skip


def _chromium() -> str:
    path = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if not path:
        pytest.fail(
            "headless Chromium not found at /usr/bin/chromium: install it with "
            "`sudo apt-get update && sudo apt-get install -y chromium` (or run `make setup` as root)"
        )
    return path


def _body(page: Path, tmp_path: Path) -> str:
    run = subprocess.run(
        [_chromium(), *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"<body[^>]*>", run.stdout)
    assert match, f"no DOM dumped (exit {run.returncode}): {run.stderr[-2000:]}"
    return match.group(0)


def _attr(body: str, name: str) -> str | None:
    match = re.search(rf'{name}="([^"]*)"', body)
    return match.group(1) if match else None


def test_every_chart_renders_without_script_errors(tiny_athena: LocalAthena, tmp_path: Path) -> None:
    page = write_dashboard(tiny_athena, tmp_path / "dashboard.html", HISTORY, **SETTINGS)
    markup = re.sub(r"<script\b[^>]*>.*?</script>", "", page.read_text(), flags=re.S)  # the library's code aside
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", markup)  # self-contained: nothing to fetch
    assert "<link" not in markup and "<img" not in markup and "<script src" not in page.read_text()
    body = _body(page, tmp_path)
    assert _attr(body, "data-rendered") == str(len(CHARTS)), body
    assert _attr(body, "data-script-errors") == "0", body


def test_a_script_error_is_reported_by_the_page(tiny_athena: LocalAthena, tmp_path: Path) -> None:
    """The error hook is real: a throwing script shows up in the dumped DOM."""
    page = write_dashboard(tiny_athena, tmp_path / "broken.html", HISTORY, extra_script="undefinedFunction();",
                           **SETTINGS)
    assert _attr(_body(page, tmp_path), "data-script-errors") == "1"


def test_charts_aggregate_the_dataset_rows_like_quicksight(tiny_athena: LocalAthena) -> None:
    kpi = dataset_frame(tiny_athena, DATASETS["kpi_daily_funnel"], HISTORY, **SETTINGS)
    funnel = chart_frame(next(c for c in CHARTS if c.id == "funnel_by_category"), kpi)
    assert funnel.set_index("category")["purchases"].to_dict() == {"Kurtis": 5, "Sarees": 4}
    enriched = dataset_frame(tiny_athena, DATASETS["enriched_interactions"], HISTORY, **SETTINGS)
    top = chart_frame(next(c for c in CHARTS if c.id == "top_products"), enriched)
    assert top["product_id"].tolist()[0] == "p4" and top["revenue"].iloc[0] == 2000.0  # two purchases at 1000
