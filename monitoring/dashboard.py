"""The analytics dashboard, defined once: datasets, charts and KPI tiles for QuickSight and for a local HTML file.

:data:`DATASETS` names where each dataset's rows come from (a ``sql/`` query, or the model-metrics
history table) and its column types; :data:`CHARTS` says what each visual shows (dimension, measures,
aggregation, colour, top N with the rest folded into "other", rates as ratios of sums, order); :data:`TILES`
are the headline figures; :data:`TABLES` show a dataset's rows as they are (the A/B verdict, computed by
``sql/ab_verdict.sql``). ``stacks/analytics_stack.py`` turns datasets, charts and tables into a QuickSight data
source, data sets and dashboard; the local run renders the same specs as one HTML page
(``recsys/local/dashboard.py``). Definitions only: nothing here runs a query.
"""

from __future__ import annotations

from dataclasses import dataclass

from monitoring.metrics import MODEL_METRICS_PREFIX, MODEL_METRICS_TABLE  # noqa: F401 - MODEL_METRICS_PREFIX: for the analytics stack
from sql.library import AB_VERDICT_QUERY

OTHER = "other"  # the value categories beyond a chart's top N are folded into


@dataclass(frozen=True)
class DatasetSpec:
    id: str
    title: str
    columns: tuple[tuple[str, str], ...]  # (name, QuickSight input type: STRING, INTEGER, DECIMAL, DATETIME, BOOLEAN)
    query: str | None = None  # a sql/ query name (run as sql.library.deployed_query); None = the model-metrics table


@dataclass(frozen=True)
class Rate:
    """A measure computed after grouping as SUM(numerator) / SUM(denominator) (empty when the sum is 0)."""

    name: str
    numerator: str
    denominator: str


@dataclass(frozen=True)
class ChartSpec:
    id: str
    sheet: str
    title: str
    dataset: str
    kind: str  # line | bar | hbar
    x: str
    y: tuple[str, ...]  # dataset columns, or names of ``rates``
    aggregation: str = "SUM"  # QuickSight SimpleNumericalAggregation
    color: str | None = None
    top_n: int | None = None  # keep the N largest by y[0]: the colour values if ``color``, else the x values
    other: bool = False  # with top_n: fold the rest into one "other" value (QuickSight OtherCategories INCLUDE)
    rates: tuple[Rate, ...] = ()
    order_by: str | None = None  # one point per (x, order_by), x ordered by it (e.g. evaluations by time)
    unit: str = ""  # INR | % (a fraction shown as per cent) | "" : how the page formats values

    def rate(self, name: str) -> Rate | None:
        return next((r for r in self.rates if r.name == name), None)

    def measures(self) -> list[str]:
        """The dataset columns aggregated: each plain y, and each rate's numerator and denominator."""
        out: list[str] = []
        for y in self.y:
            rate = self.rate(y)
            for col in (rate.numerator, rate.denominator) if rate else (y,):
                if col not in out:
                    out.append(col)
        return out


@dataclass(frozen=True)
class TileSpec:
    """A headline figure: SUM(numerator) [/ SUM(denominator)] over kpi_daily_funnel rows of a period.

    ``shoppers`` is the one non-additive measure: distinct users with any interaction in the period.
    """

    id: str
    title: str
    numerator: str
    denominator: str | None = None
    unit: str = ""


@dataclass(frozen=True)
class TableSpec:
    """A dataset's rows shown as they are, one line each (no aggregation): a QuickSight table visual, an HTML table.

    ``columns`` are (dataset column, unit): text columns are QuickSight's group-by, numbers its values (MAX of the
    one row per group); the page formats ``%`` (a fraction as per cent), ``+%`` (signed), ``count`` and ``""``."""

    id: str
    sheet: str
    title: str
    dataset: str
    columns: tuple[tuple[str, str], ...]
    empty: str  # what the page says when the query returns no row


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
            "attribution_daily",
            "Attributed clicks, carts, purchases and revenue per day, production variant, model version, strategy "
            "and position",
            (
                ("event_date", "DATETIME"),
                ("variant", "STRING"),  # AllTraffic, or Champion / Challenger during an A/B test
                ("model_version", "STRING"),
                ("strategy", "STRING"),
                ("position", "INTEGER"),
                ("impressions", "INTEGER"),
                ("clicks", "INTEGER"),
                ("carts", "INTEGER"),
                ("purchases", "INTEGER"),
                ("revenue", "DECIMAL"),
                ("click_through_rate", "DECIMAL"),  # per row; charts use the rates of sums (ONLINE_RATES)
                ("add_to_cart_rate", "DECIMAL"),
                ("purchase_rate", "DECIMAL"),
                ("purchases_per_click", "DECIMAL"),
            ),
            query="attribution_daily",
        ),
        DatasetSpec(
            AB_VERDICT_QUERY,
            "A/B test verdict: Challenger against Champion per metric (two-proportion z-test)",
            (
                ("metric", "STRING"),  # CTR, purchase rate
                ("champion_impressions", "INTEGER"),
                ("champion_outcomes", "INTEGER"),  # clicks or purchases
                ("champion_rate", "DECIMAL"),
                ("challenger_impressions", "INTEGER"),
                ("challenger_outcomes", "INTEGER"),
                ("challenger_rate", "DECIMAL"),
                ("difference", "DECIMAL"),  # challenger - champion
                ("standard_error", "DECIMAL"),
                ("ci_low", "DECIMAL"),
                ("ci_high", "DECIMAL"),
                ("z", "DECIMAL"),
                ("z_critical", "DECIMAL"),
                ("alpha", "DECIMAL"),
                ("significant", "BOOLEAN"),
                ("verdict", "STRING"),
            ),
            query=AB_VERDICT_QUERY,
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

FUNNEL_RATES = (Rate("view_to_cart", "carts", "views"), Rate("cart_to_purchase", "purchases", "carts"))
#: Attributed outcomes per impression (sql/attribution_daily.sql), as rates of sums so any grouping is right.
ONLINE_RATES = (
    Rate("click_through", "clicks", "impressions"),
    Rate("add_to_cart", "carts", "impressions"),
    Rate("purchase", "purchases", "impressions"),
)

CHARTS: tuple[ChartSpec, ...] = (
    ChartSpec(
        "revenue_by_day", "Sales", "Revenue by day: top 5 categories, the rest as other (INR)", "kpi_daily_funnel",
        "line", "event_date", ("revenue",), color="category", top_n=5, other=True, unit="INR",
    ),
    ChartSpec(
        "orders_by_day", "Sales", "Orders by day: top 5 categories, the rest as other", "kpi_daily_funnel",
        "line", "event_date", ("purchases",), color="category", top_n=5, other=True,
    ),
    ChartSpec(
        "funnel_by_category", "Sales", "Conversion by category: view to cart, cart to purchase", "kpi_daily_funnel",
        "hbar", "category", ("view_to_cart", "cart_to_purchase"), rates=FUNNEL_RATES, unit="%",
    ),
    ChartSpec(
        "top_products", "Sales", "Top 10 products by revenue (INR)", "enriched_interactions", "hbar",
        "product_id", ("revenue",), top_n=10, unit="INR",
    ),
    ChartSpec(
        "model_ndcg", "Model", "NDCG@10 per evaluated model: model vs popularity", MODEL_METRICS_TABLE, "line",
        "model_version", ("ndcg_at_10", "popularity_ndcg_at_10"), aggregation="MAX", order_by="evaluated_at",
    ),
    ChartSpec(
        "model_coverage", "Model", "Catalogue coverage@10 per evaluated model", MODEL_METRICS_TABLE, "line",
        "model_version", ("coverage_at_10",), aggregation="MAX", order_by="evaluated_at", unit="%",
    ),
    ChartSpec(
        "ctr_by_position", "Model", "Click-through by position in the served list (attributed)", "attribution_daily",
        "bar", "position", ("click_through",), rates=ONLINE_RATES[:1], unit="%",
    ),
    ChartSpec(
        "conversion_by_model", "Model", "Click-through, add-to-cart and purchase per impression, per model version",
        "attribution_daily", "hbar", "model_version", ("click_through", "add_to_cart", "purchase"),
        rates=ONLINE_RATES, unit="%",
    ),
    ChartSpec(
        "attributed_revenue_by_model", "Model", "Attributed revenue per model version (INR)", "attribution_daily",
        "hbar", "model_version", ("revenue",), unit="INR",
    ),
    ChartSpec(
        "conversion_by_variant", "Model",
        "A/B test: click-through, add-to-cart and purchase per impression, per production variant (Champion = the "
        "serving version, Challenger = the new one)", "attribution_daily", "hbar", "variant",
        ("click_through", "add_to_cart", "purchase"), rates=ONLINE_RATES, unit="%",
    ),
)  # fmt: skip

TABLES: tuple[TableSpec, ...] = (
    TableSpec(
        "ab_verdict", "Model",
        "A/B verdict, Challenger against Champion over every attributed day: difference with its (1 - alpha) Wald "
        "interval, pooled two-proportion z, significant when |z| > z_critical", AB_VERDICT_QUERY,
        (("metric", ""), ("champion_rate", "%"), ("champion_outcomes", "count"), ("champion_impressions", "count"),
         ("challenger_rate", "%"), ("challenger_outcomes", "count"), ("challenger_impressions", "count"),
         ("difference", "+%"), ("ci_low", "+%"), ("ci_high", "+%"), ("z", ""), ("z_critical", ""), ("alpha", ""),
         ("verdict", "")),
        "No A/B test in the attribution rows (no impressions served by both a Champion and a Challenger variant).",
    ),
)

TILES: tuple[TileSpec, ...] = (
    TileSpec("revenue", "Revenue", "revenue", unit="INR"),
    TileSpec("orders", "Orders", "purchases"),
    TileSpec("conversion", "Conversion (purchases / views)", "purchases", "views", unit="%"),
    TileSpec("aov", "Average order value", "revenue", "purchases", unit="INR"),
    TileSpec("shoppers", "Active shoppers", "shoppers"),
)
TILES_DATASET = "kpi_daily_funnel"
TILE_SUMS = ("views", "carts", "purchases", "revenue")  # its additive columns that the tiles use


def date_filtered(chart: ChartSpec) -> bool:
    """The date-range filter covers the first sheet's dated charts (as the QuickSight filter group is scoped)."""
    return chart.sheet == SHEETS[0] and is_dated(chart.dataset)


def is_dated(dataset: str) -> bool:
    """Rows with an ``event_date``: the page's date-range filter applies to their charts."""
    return "event_date" in dict(DATASETS[dataset].columns)
