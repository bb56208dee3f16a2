"""The analytics dashboard, defined once: datasets and charts for QuickSight and for a local HTML file.

:data:`DATASETS` names where each dataset's rows come from (a ``sql/`` query, or the model-metrics
history table) and its column types; :data:`CHARTS` says what each visual shows (dimension, measures,
aggregation, colour, top N). ``stacks/analytics_stack.py`` turns both into a QuickSight data source,
data sets and dashboard; :func:`write_dashboard` runs the same SQL on DuckDB, aggregates as QuickSight
would and draws each chart as inline SVG (matplotlib) in one self-contained HTML file, with no network.

The page marks every chart ``data-chart="<id>"`` and, after load, sets ``<body data-rendered="N">``
(charts whose SVG has a size and drawn paths) and ``data-script-errors`` (errors caught by an
``error`` listener), which the browser test reads.
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from monitoring.metrics import MODEL_METRICS_PREFIX, MODEL_METRICS_TABLE  # noqa: F401 - MODEL_METRICS_PREFIX: for the analytics stack

if TYPE_CHECKING:  # the stacks import this module: no local engine at import time
    from recsys.local.athena import LocalAthena


@dataclass(frozen=True)
class DatasetSpec:
    id: str
    title: str
    columns: tuple[tuple[str, str], ...]  # (name, QuickSight input type: STRING, INTEGER, DECIMAL, DATETIME)
    query: str | None = None  # a sql/ query name; None = the model-metrics table


@dataclass(frozen=True)
class ChartSpec:
    id: str
    sheet: str
    title: str
    dataset: str
    kind: str  # line | bar | hbar
    x: str
    y: tuple[str, ...]
    aggregation: str = "SUM"  # QuickSight SimpleNumericalAggregation
    color: str | None = None
    top_n: int | None = None


DATASETS: dict[str, DatasetSpec] = {
    d.id: d
    for d in (
        DatasetSpec(
            "kpi_daily_funnel",
            "Daily sales and funnel KPIs",
            (
                ("event_date", "DATETIME"),
                ("category", "STRING"),
                ("views", "INTEGER"),
                ("carts", "INTEGER"),
                ("purchases", "INTEGER"),
                ("users", "INTEGER"),
                ("revenue", "DECIMAL"),
                ("view_to_cart_rate", "DECIMAL"),
                ("cart_to_purchase_rate", "DECIMAL"),
            ),
            query="kpi_daily_funnel",
        ),
        DatasetSpec(
            "enriched_interactions",
            "Interactions with product and shopper attributes",
            (
                ("event_time", "DATETIME"),
                ("event_date", "DATETIME"),
                ("user_id", "STRING"),
                ("product_id", "STRING"),
                ("event_type", "STRING"),
                ("category", "STRING"),
                ("sub_category", "STRING"),
                ("price", "DECIMAL"),
                ("revenue", "DECIMAL"),
                ("orders", "INTEGER"),
                ("gender", "STRING"),
                ("location", "STRING"),
            ),
            query="dashboard_enriched_interactions",
        ),
        DatasetSpec(
            MODEL_METRICS_TABLE,
            "Model metrics per evaluated version",
            (
                ("model_version", "STRING"),
                ("evaluated_at", "DATETIME"),
                ("ndcg_at_10", "DECIMAL"),
                ("popularity_ndcg_at_10", "DECIMAL"),
                ("coverage_at_10", "DECIMAL"),
            ),
        ),
    )
}

SHEETS = ("Sales", "Model")

CHARTS: tuple[ChartSpec, ...] = (
    ChartSpec(
        "revenue_by_day", "Sales", "Revenue by day and category (INR)", "kpi_daily_funnel", "line",
        "event_date", ("revenue",), color="category",
    ),
    ChartSpec(
        "orders_by_day", "Sales", "Orders by day and category", "kpi_daily_funnel", "line",
        "event_date", ("purchases",), color="category",
    ),
    ChartSpec(
        "funnel_by_category", "Sales", "Funnel by category: views, carts, purchases", "kpi_daily_funnel", "bar",
        "category", ("views", "carts", "purchases"),
    ),
    ChartSpec(
        "top_products", "Sales", "Top 10 products by revenue (INR)", "enriched_interactions", "hbar",
        "product_id", ("revenue",), top_n=10,
    ),
    ChartSpec(
        "model_ndcg", "Model", "NDCG@10 per evaluation: model vs popularity", MODEL_METRICS_TABLE, "line",
        "evaluated_at", ("ndcg_at_10", "popularity_ndcg_at_10"), aggregation="MAX",
    ),
    ChartSpec(
        "model_coverage", "Model", "Catalogue coverage@10 per evaluation", MODEL_METRICS_TABLE, "line",
        "evaluated_at", ("coverage_at_10",), aggregation="MAX",
    ),
)  # fmt: skip


def dataset_frame(athena: LocalAthena, spec: DatasetSpec, model_metrics: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The dataset's rows: its SQL on DuckDB, or the model-metrics records; only the declared columns."""
    columns = [c for c, _ in spec.columns]
    if spec.query is None:
        frame = pd.DataFrame(list(model_metrics), columns=columns)
    else:
        frame = athena.query(spec.query)
        missing = set(columns) - set(frame.columns)
        if missing:
            raise ValueError(f"dataset {spec.id}: query {spec.query} lacks declared column(s) {sorted(missing)}")
    for name, kind in spec.columns:
        if kind == "DATETIME":
            frame[name] = pd.to_datetime(frame[name])
        elif kind in ("DECIMAL", "INTEGER"):
            frame[name] = pd.to_numeric(frame[name])
    return frame[columns]


def chart_frame(chart: ChartSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """What QuickSight plots: rows grouped by the dimension (and colour), measures aggregated, top N kept."""
    keys = [chart.x] + ([chart.color] if chart.color else [])
    agg = {"SUM": "sum", "MAX": "max", "MIN": "min", "AVERAGE": "mean"}[chart.aggregation]
    out = frame.groupby(keys, dropna=False)[list(chart.y)].agg(agg).reset_index()
    if chart.top_n:
        out = out.sort_values(chart.y[0], ascending=False, kind="stable").head(chart.top_n)
    else:
        out = out.sort_values(keys, kind="stable")
    return out.reset_index(drop=True)


def render_svg(chart: ChartSpec, data: pd.DataFrame) -> str:
    """One chart as an inline ``<svg>`` element (text drawn as paths: no font or network needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.4), dpi=100)
    try:
        if data.empty:
            ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes, color="#777")
            ax.set_xticks([])
            ax.set_yticks([])
        elif chart.kind == "line":
            if chart.color:
                for name, part in data.groupby(chart.color, sort=True):
                    ax.plot(part[chart.x], part[chart.y[0]], marker="o", markersize=3, label=str(name))
            else:
                for col in chart.y:
                    ax.plot(data[chart.x], data[col], marker="o", markersize=4, label=col)
            ax.legend(fontsize=7, ncol=2, frameon=False)
            fig.autofmt_xdate()
        elif chart.kind == "bar":
            data.set_index(chart.x)[list(chart.y)].plot.bar(ax=ax, width=0.8, rot=30)
            ax.legend(fontsize=7, frameon=False)
        elif chart.kind == "hbar":
            part = data.iloc[::-1]
            ax.barh(part[chart.x].astype(str), part[chart.y[0]], color="#4c72b0")
        else:
            raise ValueError(f"chart {chart.id}: unknown kind {chart.kind!r}")
        ax.set_title(chart.title, fontsize=10)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        buf = io.StringIO()
        fig.savefig(buf, format="svg")
    finally:
        plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.index("<svg") :]


_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;background:#fafafa;color:#222}
h1{font-size:22px}h2{font-size:17px;border-bottom:1px solid #ddd;padding-bottom:4px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(640px,1fr));gap:16px}
figure{margin:0;background:#fff;border:1px solid #e2e2e2;border-radius:6px;padding:8px}
figure svg{width:100%;height:auto}figcaption{font-size:12px;color:#666}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:4px 8px;text-align:left}
.ALARM{color:#b00020;font-weight:600}.OK{color:#1b7f3b}.INSUFFICIENT_DATA{color:#8a6d00}
"""

# Records script errors from the very start; counts drawn charts once everything has loaded.
_HEAD_SCRIPT = """
window.__dashboardErrors = [];
window.addEventListener('error', function (e) {
  window.__dashboardErrors.push(String(e.message || e));
  if (document.body) document.body.dataset.scriptErrors = String(window.__dashboardErrors.length);
});
"""
_LOAD_SCRIPT = """
window.addEventListener('load', function () {
  var drawn = Array.prototype.filter.call(document.querySelectorAll('[data-chart]'), function (fig) {
    var svg = fig.querySelector('svg');
    if (!svg) return false;
    var box = svg.getBoundingClientRect();
    return box.width > 0 && box.height > 0 && svg.querySelectorAll('path, use').length > 0;
  });
  document.body.dataset.rendered = String(drawn.length);
  document.body.dataset.scriptErrors = String(window.__dashboardErrors.length);
});
"""


def write_dashboard(
    athena: LocalAthena,
    out: Path,
    model_metrics: Sequence[dict[str, Any]],
    *,
    title: str = "recsys analytics",
    alarms: Sequence[Any] = (),
    extra_script: str = "",
) -> Path:
    """Write the self-contained HTML dashboard to ``out`` (a file path) and return it.

    ``model_metrics`` are :func:`monitoring.metrics.model_metrics_record` rows; ``alarms`` optional
    :class:`monitoring.alarms.AlarmState` objects shown as a table; ``extra_script`` is for tests.
    """
    frames = {d.id: dataset_frame(athena, d, model_metrics) for d in DATASETS.values()}
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style>",
        f"<script>{_HEAD_SCRIPT}</script>",
        "</head>",
        f'<body data-charts="{len(CHARTS)}" data-script-errors="0">',
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC from the same SQL and chart specs as the QuickSight "
        "dashboard (monitoring/dashboard.py).</p>",
    ]
    for sheet in SHEETS:
        parts.append(f"<section><h2>{html.escape(sheet)}</h2><div class='grid'>")
        for chart in (c for c in CHARTS if c.sheet == sheet):
            data = chart_frame(chart, frames[chart.dataset])
            source = DATASETS[chart.dataset].query or f"table {MODEL_METRICS_TABLE}"
            parts.append(
                f'<figure data-chart="{chart.id}">{render_svg(chart, data)}'
                f"<figcaption>{html.escape(chart.title)} - {len(data)} points from {html.escape(source)}"
                "</figcaption></figure>"
            )
        parts.append("</div></section>")
    if alarms:
        rows = "".join(
            f"<tr><td>{html.escape(a.name)}</td><td class='{a.state}'>{a.state}</td>"
            f"<td>{html.escape(a.reason)}</td></tr>"
            for a in alarms
        )
        parts.append(f"<section><h2>Alarms</h2><table><tr><th>alarm</th><th>state</th><th>why</th></tr>{rows}</table>")
        parts.append("</section>")
    parts += [f"<script>{_LOAD_SCRIPT}{extra_script}</script>", "</body></html>"]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(parts), encoding="utf-8")
    return out
