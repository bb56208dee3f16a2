"""The analytics dashboard rendered locally: the specs of ``monitoring/dashboard.py`` on DuckDB, as one HTML page.

:func:`write_dashboard` runs each dataset's SQL as deployed on the local Athena and writes one
self-contained, interactive HTML file: the charting library (Apache ECharts, pinned in ``package.json``)
and the rows are inlined, nothing is fetched when the page is viewed. The page's script
(``dashboard_assets/dashboard.js``) aggregates the rows as :func:`chart_frame` does, for the date range
chosen on the page, and computes the tiles as :func:`kpi_tiles` does. On AWS QuickSight draws the same
specs (``stacks/analytics_stack.py``).

The page marks every chart ``data-chart="<id>"`` and, once drawn, sets ``<body data-rendered="N">``
(charts that drew at least one data point) and ``data-script-errors`` (errors caught by ``error`` and
``unhandledrejection`` listeners and ``console.error`` calls), which the browser test reads.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from monitoring.dashboard import (
    CHARTS,
    DATASETS,
    MODEL_METRICS_TABLE,
    OTHER,
    SHEETS,
    TABLES,
    TILE_SUMS,
    TILES,
    TILES_DATASET,
    ChartSpec,
    DatasetSpec,
    TableSpec,
    TileSpec,
    date_filtered,
    is_dated,
)
from recsys.local.athena import LocalAthena, MissingTableError
from sql.library import deployed_query

ROOT = Path(__file__).resolve().parents[2]
ASSETS = Path(__file__).resolve().parent / "dashboard_assets"
CHART_LIBRARY = "echarts"  # npm package, version pinned in package.json / package-lock.json
CHART_LIBRARY_FILE = "dist/echarts.common.min.js"  # line, bar, scatter, pie + grid, legend, tooltip, markLine, title
DEFAULT_PERIOD_DAYS = 28  # the page opens on the latest 28 days (or all, if the data is shorter)
MAX_SHOPPER_DAYS = 2_000_000  # (day, shopper) pairs inlined for distinct-shopper counts over any date range


class ChartLibraryMissing(FileNotFoundError):
    """The pinned charting library is not in node_modules (``make setup`` runs ``npm ci``)."""


# --- rows and aggregation (what QuickSight computes; the page's script does the same) -------------------------


def dataset_frame(athena: LocalAthena, spec: DatasetSpec, model_metrics: Sequence[Mapping[str, Any]], *,
                  attribution_window_hours: int, experiment_alpha: float) -> pd.DataFrame:
    """The dataset's rows: its SQL as deployed (the settings' window and alpha) on DuckDB, or the model-metrics
    records; only the declared columns."""
    columns = [c for c, _ in spec.columns]
    if spec.query is None:
        frame = pd.DataFrame([dict(r) for r in model_metrics], columns=columns)
    else:
        try:
            frame = athena.query(deployed_query(spec.query, attribution_window_hours, experiment_alpha))
        except MissingTableError:  # no captured impressions yet (a run on your own data): an empty dataset
            frame = pd.DataFrame(columns=columns)
        missing = set(columns) - set(frame.columns)
        if missing:
            raise ValueError(f"dataset {spec.id}: query {spec.query} lacks declared column(s) {sorted(missing)}")
    for name, kind in spec.columns:
        if kind == "DATETIME":
            frame[name] = pd.to_datetime(frame[name])
        elif kind in ("DECIMAL", "INTEGER"):
            frame[name] = pd.to_numeric(frame[name])
    return frame[columns]




def empty_text(chart: ChartSpec) -> str:
    if date_filtered(chart):
        return "No data in the selected dates"
    return "Nothing captured yet" if is_dated(chart.dataset) else "No model evaluated yet"




def fold_other(frame: pd.DataFrame, column: str, measure: str, top_n: int) -> pd.DataFrame:
    """``column`` values beyond the ``top_n`` largest by total ``measure`` (ties: by name) become ``"other"``."""
    totals = frame.groupby(column, dropna=False)[measure].sum()
    ranked = sorted(totals.index, key=lambda k: (-float(totals[k]), str(k)))
    if len(ranked) <= top_n:
        return frame
    out = frame.copy()
    out[column] = out[column].where(out[column].isin(set(ranked[:top_n])), OTHER)
    return out


def _in_range(frame: pd.DataFrame, start: date | None, end: date | None) -> pd.DataFrame:
    days = pd.to_datetime(frame["event_date"]).dt.date
    keep = pd.Series(True, index=frame.index)
    if start is not None:
        keep &= days >= start
    if end is not None:
        keep &= days <= end
    return frame[keep]


def chart_frame(
    chart: ChartSpec, frame: pd.DataFrame, start: date | None = None, end: date | None = None
) -> pd.DataFrame:
    """What QuickSight plots: rows in the date range, the rest beyond the top N folded into "other",
    grouped by the dimension (and colour, and order), measures aggregated, rates as ratios of sums,
    top N kept (or sorted by the dimension)."""
    if is_dated(chart.dataset) and (start is not None or end is not None):
        frame = _in_range(frame, start, end)
    measures = chart.measures()
    fold = chart.color or chart.x
    if chart.top_n and chart.other:
        frame = fold_other(frame, fold, measures[0], chart.top_n)
    keys = [chart.x] + [k for k in (chart.color, chart.order_by) if k]
    agg = {"SUM": "sum", "MAX": "max", "MIN": "min", "AVERAGE": "mean"}[chart.aggregation]
    out = frame.groupby(keys, dropna=False)[measures].agg(agg).reset_index()
    for rate in chart.rates:
        den = out[rate.denominator].astype(float)
        out[rate.name] = (out[rate.numerator].astype(float) / den).where(den != 0)
    if chart.top_n and not chart.other:
        out = out.sort_values(chart.y[0], ascending=False, kind="stable").head(chart.top_n)
    else:
        out = out.sort_values([chart.order_by, *keys] if chart.order_by else keys, kind="stable")
    return out.reset_index(drop=True)


def period_sums(daily: pd.DataFrame, shoppers: pd.DataFrame, start: date, end: date) -> dict[str, float]:
    """The tiles' measures over [start, end]: kpi_daily_funnel sums and distinct shoppers (event_date, user_id)."""
    part = _in_range(daily, start, end)
    sums = {c: float(part[c].sum()) for c in TILE_SUMS}
    sums["shoppers"] = float(_in_range(shoppers, start, end)["user_id"].nunique())
    return sums


def tile_value(tile: TileSpec, sums: Mapping[str, float] | None) -> float | None:
    if sums is None:
        return None
    num = sums[tile.numerator]
    if tile.denominator is None:
        return num
    den = sums[tile.denominator]
    return num / den if den else None


def kpi_tiles(
    daily: pd.DataFrame, shoppers: pd.DataFrame, start: date, end: date, *, data_start: date | None = None
) -> dict[str, Any]:
    """Each tile's value over [start, end], over the previous period of equal length, and the change in %.

    The previous period counts only when the data covers all of it (``data_start``, default the first
    day of ``daily``): a half-covered period would read as a fall. Change is ``None`` without a previous
    value or when it is 0.
    """
    length = (end - start).days + 1
    prev_start, prev_end = start - timedelta(days=length), start - timedelta(days=1)
    if data_start is None and not daily.empty:
        data_start = pd.to_datetime(daily["event_date"]).min().date()
    current = period_sums(daily, shoppers, start, end)
    previous = period_sums(daily, shoppers, prev_start, prev_end) if data_start and prev_start >= data_start else None
    tiles = {}
    for tile in TILES:
        value, before = tile_value(tile, current), tile_value(tile, previous)
        change = (value - before) / before * 100.0 if value is not None and before else None
        tiles[tile.id] = {"value": value, "previous": before, "change_pct": change}
    return {"period": (start, end), "previous_period": (prev_start, prev_end), "tiles": tiles}


def default_range(first: date, last: date, days: int = DEFAULT_PERIOD_DAYS) -> tuple[date, date]:
    """The range the page opens on: the latest ``days`` days of the data, or all of it."""
    return max(first, last - timedelta(days=days - 1)), last


def shopper_days(enriched: pd.DataFrame) -> pd.DataFrame:
    """Distinct (event_date, user_id): what the active-shoppers tile counts over a period."""
    return enriched[["event_date", "user_id"]].dropna().drop_duplicates().reset_index(drop=True)


# --- the page ---------------------------------------------------------------------------------------------


def chart_library() -> tuple[str, str]:
    """(version, minified JS) of the pinned charting library, read from node_modules; one clear line if absent."""
    package = ROOT / "node_modules" / CHART_LIBRARY
    script = package / CHART_LIBRARY_FILE
    pinned = json.loads((ROOT / "package.json").read_text())["dependencies"][CHART_LIBRARY]
    try:
        version = json.loads((package / "package.json").read_text())["version"]
        text = script.read_text(encoding="utf-8")
    except (OSError, ValueError, KeyError):
        raise ChartLibraryMissing(
            f"dashboard: the charting library {CHART_LIBRARY} {pinned} is not installed "
            f"(no node_modules/{CHART_LIBRARY}/{CHART_LIBRARY_FILE}): run `make setup`"
        ) from None
    if version != pinned:
        raise ChartLibraryMissing(
            f"dashboard: node_modules has {CHART_LIBRARY} {version} but package.json pins {pinned}: run `make setup`"
        )
    return version, text.replace("</script", "<\\/script")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _encode_column(series: pd.Series, days_index: Mapping[date, int] | None = None) -> Any:
    """A column for the page: day numbers for dates, a dictionary for strings and times, numbers as they are."""
    if days_index is not None:
        return [days_index[d] for d in pd.to_datetime(series).dt.date]
    if pd.api.types.is_datetime64_any_dtype(series):
        series = series.dt.strftime("%Y-%m-%d %H:%M:%S")
    elif pd.api.types.is_numeric_dtype(series):
        return [_clean(v) for v in series.astype(float).tolist()]
    values = series.astype("object").where(series.notna(), None)
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    return {"dict": [str(u) for u in uniques], "codes": codes.tolist()}


def _dataset_rows(dataset: str, frame: pd.DataFrame, days_index: Mapping[date, int]) -> dict[str, Any]:
    """The columns the dataset's charts use; rows pre-summed by their keys and day when every chart sums."""
    charts = [c for c in CHARTS if c.dataset == dataset]
    dated = is_dated(dataset)
    keys: list[str] = ["event_date"] if dated else []
    measures: list[str] = []
    for c in charts:
        keys += [k for k in (c.x, c.color, c.order_by) if k and k not in keys]
        measures += [m for m in c.measures() if m not in measures]
    if dataset == TILES_DATASET:
        measures += [m for m in TILE_SUMS if m not in measures]
    if dated and all(c.aggregation == "SUM" for c in charts) and not frame.empty:
        frame = frame.groupby(keys, dropna=False)[measures].sum().reset_index()
        frame = frame[(frame[measures] != 0).any(axis=1)]  # all-zero rows (views only) change no sum or top N
    frame = frame[keys + measures].reset_index(drop=True)
    columns = {c: _encode_column(frame[c], days_index if c == "event_date" else None) for c in keys + measures}
    return {"rows": len(frame), "dated": dated, "columns": columns}


def _shopper_lists(shoppers: pd.DataFrame, days_index: Mapping[date, int]) -> list[list[int]] | None:
    """Per day, the active shoppers as delta-encoded sorted user numbers; None when too many to inline."""
    if len(shoppers) > MAX_SHOPPER_DAYS:
        return None
    codes, _ = pd.factorize(shoppers["user_id"].astype(str), sort=True)
    lists: list[list[int]] = [[] for _ in days_index]
    day_numbers = [days_index[d] for d in pd.to_datetime(shoppers["event_date"]).dt.date]
    for day, code in sorted(zip(day_numbers, codes.tolist(), strict=True)):
        lists[day].append(int(code))
    return [[v - (row[i - 1] if i else 0) for i, v in enumerate(row)] for row in lists]


def dashboard_payload(frames: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    """Everything the page's script needs, JSON-ready: days, rows per dataset, chart and tile specs, shoppers."""
    daily, enriched = frames[TILES_DATASET], frames["enriched_interactions"]
    dated = [pd.to_datetime(f["event_date"]) for f in frames.values() if "event_date" in f.columns]
    dates = pd.concat(dated).dropna() if dated else pd.Series([], dtype="datetime64[ns]")  # every dated dataset
    if dates.empty:
        days: list[date] = []
    else:
        days = [d.date() for d in pd.date_range(dates.min().normalize(), dates.max().normalize(), freq="D")]
    days_index = {d: i for i, d in enumerate(days)}
    shoppers = shopper_days(enriched)
    payload: dict[str, Any] = {
        "days": [d.isoformat() for d in days],
        "other": OTHER,
        "datasets": {d: _dataset_rows(d, frames[d], days_index) for d in {c.dataset: None for c in CHARTS}},
        "charts": [{**asdict(c), "filtered": date_filtered(c), "empty": empty_text(c)} for c in CHARTS],
        "tiles": [asdict(t) for t in TILES],
        "shoppers": _shopper_lists(shoppers, days_index),
        "defaultRange": None,
        "defaultTiles": None,
    }
    sales = pd.to_datetime(daily["event_date"]).dropna()
    if days:  # opens on the sales' latest weeks (captured impressions may be newer than a replayed log)
        last = sales.max().date() if not sales.empty else days[-1]
        start, end = default_range(days[0], last)
        payload["defaultRange"] = [days_index[start], days_index[end]]
        payload["defaultTiles"] = {
            k: {n: _clean(v) for n, v in t.items()}
            for k, t in kpi_tiles(daily, shoppers, start, end, data_start=days[0])["tiles"].items()
        }
    # the page's product labels: product -> category
    top = next(c for c in CHARTS if c.id == "top_products")
    labels = enriched[[top.x, "category"]].dropna().drop_duplicates(top.x)
    payload["productCategory"] = dict(zip(labels[top.x].astype(str), labels["category"].astype(str), strict=True))
    return payload


def _json_script(element_id: str, payload: Any) -> str:
    text = json.dumps(payload, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


_SIGNALS = (("data", "data quality"), ("model", "model"), ("endpoint", "endpoint"), ("drift", "drift"),
            ("ctr", "shoppers"))
_STATE_ORDER = {"ALARM": 0, "INSUFFICIENT_DATA": 1, "OK": 2}


def alarm_signal(name: str) -> str:
    """Which dashboard group an alarm belongs to, from its name ``<prefix>-<signal>-...``."""
    return next((label for key, label in _SIGNALS if f"-{key}-" in f"-{name}-"), "other")


def _alarm_section(alarms: Sequence[Any]) -> str:
    if not alarms:
        return (
            "<section id='alarms'><h2>Data quality and alarms</h2><p class='muted'>No alarm states were passed "
            "(the monitoring stage of the local run computes them).</p></section>"
        )
    group_rank = {label: i for i, (_, label) in enumerate(_SIGNALS)}
    rows = sorted(
        alarms,
        key=lambda a: (_STATE_ORDER.get(a.state, 3), group_rank.get(alarm_signal(a.name), 9)),
    )
    counts = {s: sum(a.state == s for a in alarms) for s in ("ALARM", "INSUFFICIENT_DATA", "OK")}
    chips = "".join(
        f"<span class='chip state-{s}'>{n} {html.escape(s.replace('_', ' ').lower())}</span>" for s, n in counts.items()
    )
    body = "".join(
        f"<tr class='state-{html.escape(a.state)}' data-alarm='{html.escape(a.name)}'>"
        f"<td>{html.escape(alarm_signal(a.name))}</td><td>{html.escape(a.name)}</td>"
        f"<td><span class='badge state-{html.escape(a.state)}'>{html.escape(a.state)}</span></td>"
        f"<td>{html.escape(str(getattr(a, 'reason', '')))}</td></tr>"
        for a in rows
    )
    return (
        "<section id='alarms'><h2>Data quality and alarms</h2>"
        f"<p class='chips'>{chips}</p>"
        "<table class='alarms'><thead><tr><th>signal</th><th>alarm</th><th>state</th><th>why (latest values, "
        f"threshold)</th></tr></thead><tbody>{body}</tbody></table></section>"
    )


def format_cell(value: Any, unit: str) -> str:
    """A table cell as the page shows it (QuickSight shows the same values with its own number format)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if unit in ("%", "+%"):
        return f"{float(value):{'+' if unit == '+%' else ''}.2%}"
    if unit == "count":
        return f"{int(value):,}"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _table_section(table: TableSpec, frame: pd.DataFrame) -> str:
    """A :class:`TableSpec` as an HTML table of the dataset's rows (the SQL's result, not recomputed here)."""
    source = DATASETS[table.dataset].query
    head = (f"<figure class='card wide' data-table='{table.id}' data-rows='{len(frame)}'>"
            f"<figcaption><b>{html.escape(table.title)}</b></figcaption>")  # fmt: skip
    foot = f"<p class='source'>from {html.escape(str(source))}; locally the shoppers are SIMULATED</p></figure>"
    if frame.empty:
        return f"{head}<p class='muted'>{html.escape(table.empty)}</p>{foot}"
    header = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c, _ in table.columns)
    rows = []
    for record in frame.to_dict("records"):
        keys = "".join(f" data-{c}='{html.escape(str(record[c]))}'" for c, kind in DATASETS[table.dataset].columns
                       if kind in ("STRING", "BOOLEAN") and c in record)  # fmt: skip
        cells = "".join(f"<td data-column='{c}'>{html.escape(format_cell(record[c], unit))}</td>"
                        for c, unit in table.columns)  # fmt: skip
        rows.append(f"<tr{keys}>{cells}</tr>")
    return (f"{head}<table class='alarms'><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            f"{foot}")  # fmt: skip


def _figure(chart: ChartSpec) -> str:
    source = DATASETS[chart.dataset].query or f"table {MODEL_METRICS_TABLE}"
    return (
        f'<figure class="card" data-chart="{chart.id}" data-drawn="0" data-points="0">'
        f"<figcaption><b>{html.escape(chart.title)}</b><span class='note'></span></figcaption>"
        '<div class="chart"></div>'
        f"<p class='source'>from {html.escape(source)}</p></figure>"
    )


def write_dashboard(
    athena: LocalAthena,
    out: Path,
    model_metrics: Sequence[Mapping[str, Any]],
    *,
    title: str = "recsys analytics",
    alarms: Sequence[Any] = (),
    extra_script: str = "",
    attribution_window_hours: int,
    experiment_alpha: float,
) -> Path:
    """Write the self-contained interactive HTML dashboard to ``out`` (a file path) and return it.

    ``model_metrics`` are :func:`monitoring.metrics.model_metrics_record` rows; ``alarms`` optional
    :class:`recsys.local.alarms.AlarmState` objects shown as a table; ``extra_script`` is for tests;
    ``attribution_window_hours`` and ``experiment_alpha`` are the settings the deployed SQL carries (the attribution
    window; the A/B verdict's significance level).
    Raises :class:`ChartLibraryMissing` (one line: run ``make setup``) when node_modules lacks the library.
    """
    version, library = chart_library()
    frames = {
        d.id: dataset_frame(athena, d, model_metrics, attribution_window_hours=attribution_window_hours,
                            experiment_alpha=experiment_alpha)
        for d in DATASETS.values()
    }
    payload = dashboard_payload(frames)
    days = payload["days"]
    span = f"{days[0]} to {days[-1]}" if days else "no interactions yet"
    tiles = "".join(
        f'<div class="tile" data-tile="{t.id}"><div class="label">{html.escape(t.title)}</div>'
        '<div class="value">-</div><div class="change"></div><div class="previous"></div></div>'
        for t in TILES
    )
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{(ASSETS / 'dashboard.css').read_text(encoding='utf-8')}</style>",
        f"<script>{(ASSETS / 'errors.js').read_text(encoding='utf-8')}</script>",
        "</head>",
        f'<body data-charts="{len(CHARTS)}" data-rendered="0" data-script-errors="0">',
        f"<header><h1>{html.escape(title)}</h1><p class='muted'>Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC "
        f"from the same SQL and chart specs as the QuickSight dashboard (monitoring/dashboard.py). Data: {span}. "
        f"Charts: Apache ECharts {html.escape(version)}, inlined; the page works offline.</p></header>",
        "<nav class='controls' aria-label='date range'>"
        "<label>From <input type='date' id='range-from'></label>"
        "<label>to <input type='date' id='range-to'></label>"
        "<span class='presets'></span><span id='range-label' class='muted'></span></nav>",
        f"<section id='tiles'><div class='tiles'>{tiles}</div><p class='muted' id='tiles-note'></p></section>",
    ]
    for sheet in SHEETS:
        figures = "".join(_figure(c) for c in CHARTS if c.sheet == sheet)
        parts.append(f"<section data-sheet='{html.escape(sheet)}'><h2>{html.escape(sheet)}</h2>")
        if sheet == "Model":
            parts.append("<p class='muted'>One point per evaluated model, oldest first; not date-filtered.</p>")
        tables = "".join(_table_section(t, frames[t.dataset]) for t in TABLES if t.sheet == sheet)
        parts.append(f"<div class='grid'>{figures}</div>{tables}</section>")
    parts += [
        _alarm_section(alarms),
        _json_script("dashboard-data", payload),
        f"<script>/*! Apache ECharts {version} | Apache-2.0 | node_modules/{CHART_LIBRARY} */\n{library}</script>",
        f"<script>{(ASSETS / 'dashboard.js').read_text(encoding='utf-8')}</script>",
        f"<script>{extra_script}</script>" if extra_script else "",
        "</body></html>",
    ]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(p for p in parts if p), encoding="utf-8")
    return out
