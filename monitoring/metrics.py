"""Every CloudWatch metric the project watches, named in ONE place, and the functions that publish ours.

The alarm specs (``monitoring/alarms.py``), the CDK monitoring stack, the pipeline's evaluation step
and the local run all import these names, so an alarm can never watch a metric nobody publishes.

Custom metrics live in :data:`NAMESPACE`. Their dimensions are chosen so an alarm can match them
exactly (CloudWatch treats every dimension set as a separate metric):

- model quality: ``ModelPackageGroup`` (alarmed) and ``ModelPackageGroup, ModelVersion`` (history);
- data quality: ``Database, Table``; skipped curation jobs: ``StateMachine``;
- drift: ``ModelPackageGroup`` (the score) and ``ModelPackageGroup, Feature`` (per feature).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from monitoring.drift import DriftReport

#: Namespace of the metrics this project publishes itself.
NAMESPACE = "RecSys/MLOps"

# ---- SageMaker's own endpoint metrics (published by AWS) -----------------------------------------
SAGEMAKER_NAMESPACE = "AWS/SageMaker"
#: CPU/memory of instance endpoints (not published for serverless endpoints).
ENDPOINT_INSTANCE_NAMESPACE = "/aws/sagemaker/Endpoints"
VARIANT_NAME = "AllTraffic"
INVOCATIONS = "Invocations"
INVOCATION_4XX = "Invocation4XXErrors"
INVOCATION_5XX = "Invocation5XXErrors"
MODEL_LATENCY = "ModelLatency"  # microseconds
CPU_UTILIZATION = "CPUUtilization"  # percent, summed over vCPUs (400 % max on 4 vCPUs)
MEMORY_UTILIZATION = "MemoryUtilization"  # percent

# ---- our custom metrics ------------------------------------------------------------------------
NDCG_AT_10 = "NdcgAt10"
POPULARITY_NDCG_AT_10 = "PopularityNdcgAt10"
COVERAGE_AT_10 = "CoverageAt10"
NDCG_LIFT = "NdcgLiftOverPopularityAt10"
ROWS_IN = "RowsIn"
ROWS_CURATED = "RowsCurated"
ROWS_QUARANTINED = "RowsQuarantined"
QUARANTINED_RATIO = "QuarantinedRatio"
DRIFT_SCORE = "DriftScore"
FEATURE_DRIFT = "FeatureDrift"
#: 1 for each optional recipe job (users, products, clickstream) the curation workflow caught failing and
#: skipped, 0 for each that ran: published by the workflow's own states, so every run gives a datapoint.
CURATION_JOBS_SKIPPED = "CurationJobsSkipped"

#: The model-metrics history: one JSON line per evaluated model (the pipeline's PublishMetrics step writes
#: them under the destination bucket; the Glue table of that name and the dashboards' model sheet read them).
MODEL_METRICS_TABLE = "model_metrics"
MODEL_METRICS_PREFIX = "monitoring/model_metrics"

#: evaluation.json key -> metric name (``metrics.<key>.value``, see sagemaker_src/evaluate.py).
MODEL_QUALITY_METRICS: dict[str, str] = {
    "ndcg_at_10": NDCG_AT_10,
    "popularity_ndcg_at_10": POPULARITY_NDCG_AT_10,
    "coverage_at_10": COVERAGE_AT_10,
    "ndcg_lift_over_popularity_at_10": NDCG_LIFT,
}


@dataclass(frozen=True)
class MetricRef:
    """One CloudWatch metric: what an alarm, a dashboard widget or a query needs to find it."""

    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]

    @property
    def dimensions_map(self) -> dict[str, str]:
        return dict(self.dimensions)

    def api_dimensions(self) -> list[dict[str, str]]:
        return [{"Name": k, "Value": v} for k, v in self.dimensions]


def endpoint_metric(endpoint_name: str, name: str, variant: str = VARIANT_NAME) -> MetricRef:
    """One endpoint metric of one production variant (SageMaker publishes them per variant: ``AllTraffic``, or an
    experiment's ``Champion`` / ``Challenger`` / ``Shadow``)."""
    namespace = ENDPOINT_INSTANCE_NAMESPACE if name in (CPU_UTILIZATION, MEMORY_UTILIZATION) else SAGEMAKER_NAMESPACE
    return MetricRef(namespace, name, (("EndpointName", endpoint_name), ("VariantName", variant)))


def model_metric(model_group: str, name: str) -> MetricRef:
    return MetricRef(NAMESPACE, name, (("ModelPackageGroup", model_group),))


def data_metric(database: str, table: str, name: str) -> MetricRef:
    return MetricRef(NAMESPACE, name, (("Database", database), ("Table", table)))


def curation_metric(state_machine: str) -> MetricRef:
    return MetricRef(NAMESPACE, CURATION_JOBS_SKIPPED, (("StateMachine", state_machine),))


def drift_metric(model_group: str) -> MetricRef:
    return MetricRef(NAMESPACE, DRIFT_SCORE, (("ModelPackageGroup", model_group),))


def _datum(ref: MetricRef, value: float, unit: str, when: datetime) -> dict[str, Any]:
    return {
        "MetricName": ref.name,
        "Dimensions": ref.api_dimensions(),
        "Value": float(value),
        "Unit": unit,
        "Timestamp": when,
    }


def _put(cloudwatch: Any, namespace: str, data: list[dict[str, Any]]) -> int:
    for start in range(0, len(data), 1000):  # PutMetricData takes at most 1000 data per call
        cloudwatch.put_metric_data(Namespace=namespace, MetricData=data[start : start + 1000])
    return len(data)


def model_quality_values(evaluation: Mapping[str, Any]) -> dict[str, float]:
    """evaluation.json's headline metrics by metric name; absent or non-finite ones are left out."""
    metrics = evaluation.get("metrics", {})
    values: dict[str, float] = {}
    for key, name in MODEL_QUALITY_METRICS.items():
        raw = metrics.get(key, {})
        value = raw.get("value") if isinstance(raw, Mapping) else None
        if isinstance(value, (int, float)) and math.isfinite(value):
            values[name] = float(value)
    if NDCG_AT_10 not in values:
        raise ValueError("evaluation has no finite metrics.ndcg_at_10.value (see sagemaker_src/evaluate.py)")
    return values


def publish_model_quality(
    cloudwatch: Any,
    evaluation: Mapping[str, Any],
    model_version: str,
    *,
    model_group: str,
    when: datetime | None = None,
) -> dict[str, float]:
    """NDCG@10 and friends of one evaluated model: once per group (alarmed) and once per version (history)."""
    when = when or datetime.now(UTC)
    values = model_quality_values(evaluation)
    data = []
    for name, value in values.items():
        ref = model_metric(model_group, name)
        data.append(_datum(ref, value, "None", when))
        versioned = MetricRef(NAMESPACE, name, (*ref.dimensions, ("ModelVersion", str(model_version))))
        data.append(_datum(versioned, value, "None", when))
    _put(cloudwatch, NAMESPACE, data)
    return values


def quarantined_ratio(rows_in: int, quarantined: int) -> float:
    return quarantined / rows_in if rows_in else 0.0


#: The data-quality query's columns, in order, with the metric each one feeds and its unit.
DATA_QUALITY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("rows_in", ROWS_IN, "Count"),
    ("rows_curated", ROWS_CURATED, "Count"),
    ("rows_quarantined", ROWS_QUARANTINED, "Count"),
    ("quarantined_ratio", QUARANTINED_RATIO, "None"),
)


def data_quality_sql(table: str) -> str:
    """One row of :data:`DATA_QUALITY_COLUMNS` over the catalogued curated and quarantine tables.

    The one definition both producers run: the curation workflow on Athena after its crawlers, and the
    local run on DuckDB. Never NULL (an empty table gives ratio 0), because Step Functions cannot catch
    the runtime error of parsing a missing value; a missing table fails the query instead.
    """
    if not table.replace("_", "").isalnum():
        raise ValueError(f"not a table name: {table!r}")
    return (
        "SELECT c.n + q.n AS rows_in, c.n AS rows_curated, q.n AS rows_quarantined, "
        "COALESCE(CAST(q.n AS DOUBLE) / NULLIF(c.n + q.n, 0), 0.0) AS quarantined_ratio "
        f'FROM (SELECT count(*) AS n FROM "{table}") AS c '
        f'CROSS JOIN (SELECT count(*) AS n FROM "quarantine_{table}") AS q'
    )


def publish_data_quality_row(
    cloudwatch: Any, table: str, row: Mapping[str, float], *, database: str, when: datetime | None = None
) -> float:
    """Publish a :func:`data_quality_sql` row; returns the quarantined ratio."""
    when = when or datetime.now(UTC)
    data = [
        _datum(data_metric(database, table, name), row[col], unit, when) for col, name, unit in DATA_QUALITY_COLUMNS
    ]
    _put(cloudwatch, NAMESPACE, data)
    return float(row["quarantined_ratio"])


def publish_data_quality(
    cloudwatch: Any,
    table: str,
    rows_in: int,
    curated: int,
    quarantined: int,
    *,
    database: str,
    when: datetime | None = None,
) -> float:
    """Row counts of one curation run and the quarantined share (what the data alarm watches)."""
    if rows_in != curated + quarantined:
        raise ValueError(f"{table}: rows in {rows_in} != curated {curated} + quarantined {quarantined}")
    row = {
        "rows_in": rows_in,
        "rows_curated": curated,
        "rows_quarantined": quarantined,
        "quarantined_ratio": quarantined_ratio(rows_in, quarantined),
    }
    return publish_data_quality_row(cloudwatch, table, row, database=database, when=when)


def publish_drift(cloudwatch: Any, report: DriftReport, *, model_group: str, when: datetime | None = None) -> None:
    """The drift score (alarmed) and each feature's own index (to see which one moved)."""
    when = when or datetime.now(UTC)
    ref = drift_metric(model_group)
    data = [_datum(ref, report.score, "None", when)]
    for feature, value in report.per_feature.items():
        per = MetricRef(NAMESPACE, FEATURE_DRIFT, (*ref.dimensions, ("Feature", feature)))
        data.append(_datum(per, value, "None", when))
    _put(cloudwatch, NAMESPACE, data)


def publish_endpoint_sample(
    cloudwatch: Any,
    endpoint_name: str,
    latencies_ms: Sequence[float],
    errors_4xx: int = 0,
    errors_5xx: int = 0,
    *,
    when: datetime | None = None,
) -> None:
    """Locally only: what SageMaker would publish for a burst of requests to the local endpoint.

    On AWS SageMaker publishes these itself; the local run feeds measured latencies so the endpoint
    alarms are evaluated on real numbers instead of sitting in INSUFFICIENT_DATA.
    """
    when = when or datetime.now(UTC)
    data = [
        _datum(endpoint_metric(endpoint_name, INVOCATIONS), len(latencies_ms), "Count", when),
        _datum(endpoint_metric(endpoint_name, INVOCATION_4XX), errors_4xx, "Count", when),
        _datum(endpoint_metric(endpoint_name, INVOCATION_5XX), errors_5xx, "Count", when),
    ]
    ref = endpoint_metric(endpoint_name, MODEL_LATENCY)
    micros = [float(ms) * 1000.0 for ms in latencies_ms]  # SageMaker reports ModelLatency in microseconds
    for start in range(0, len(micros), 150):  # at most 150 values per datum
        data.append(
            {
                "MetricName": ref.name,
                "Dimensions": ref.api_dimensions(),
                "Values": micros[start : start + 150],
                "Unit": "Microseconds",
                "Timestamp": when,
            }
        )
    _put(cloudwatch, SAGEMAKER_NAMESPACE, data)


def model_metrics_record(evaluation: Mapping[str, Any], model_version: str, evaluated_at: datetime) -> dict[str, Any]:
    """One row of the model-metrics history (the ``model_metrics`` table and the dashboard's model sheet)."""
    metrics = evaluation.get("metrics", {})

    def value(key: str) -> float | None:
        v = metrics.get(key, {}).get("value")
        return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None

    return {
        "model_version": str(model_version),
        "evaluated_at": evaluated_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "ndcg_at_10": value("ndcg_at_10"),
        "popularity_ndcg_at_10": value("popularity_ndcg_at_10"),
        "coverage_at_10": value("coverage_at_10"),
    }


# ---- online click-through (issue 14): attributed impressions -> CloudWatch ---------------------------------
CLICK_THROUGH_RATE = "ClickThroughRate"  # attributed clicks / impressions on the latest served day
CLICK_THROUGH_TRAILING = "ClickThroughRateTrailing7d"  # the same over the 7 days before it
CLICK_THROUGH_RATIO = "ClickThroughRatioToTrailing"  # latest / trailing (1 when there is no trailing level)
#: (sql column, metric name, unit) of :func:`click_through_sql`'s row.
CLICK_THROUGH_COLUMNS = (
    ("ctr", CLICK_THROUGH_RATE, "None"),
    ("ctr_trailing", CLICK_THROUGH_TRAILING, "None"),
    ("ctr_ratio", CLICK_THROUGH_RATIO, "None"),
)


def online_metric(endpoint_name: str, name: str) -> MetricRef:
    return MetricRef(NAMESPACE, name, (("EndpointName", endpoint_name),))


def click_through_sql(attribution_sql: str) -> str:
    """One row over ``sql/attribution_daily.sql`` (pass ``sql.library.attribution_query(window)``): click-through
    of the latest served day, of the 7 days before it, and their ratio. Never NULL (no impressions: 0; no
    trailing level: ratio 1), so a Step Functions producer can parse it as the data-quality row is."""
    body = attribution_sql.rstrip().rstrip(";")
    return (
        f"WITH a AS ({body}), last AS (SELECT max(event_date) AS d FROM a), r AS ("
        "SELECT COALESCE(CAST(sum(CASE WHEN a.event_date = last.d THEN a.clicks ELSE 0 END) AS DOUBLE) "
        "/ NULLIF(sum(CASE WHEN a.event_date = last.d THEN a.impressions ELSE 0 END), 0), 0.0) AS ctr, "
        "COALESCE(CAST(sum(CASE WHEN a.event_date < last.d AND a.event_date >= last.d - INTERVAL '7' DAY "
        "THEN a.clicks ELSE 0 END) AS DOUBLE) / NULLIF(sum(CASE WHEN a.event_date < last.d "
        "AND a.event_date >= last.d - INTERVAL '7' DAY THEN a.impressions ELSE 0 END), 0), 0.0) AS ctr_trailing "
        "FROM a CROSS JOIN last) "
        "SELECT ctr, ctr_trailing, COALESCE(CAST(ctr AS DOUBLE) / NULLIF(ctr_trailing, 0.0), 1.0) AS ctr_ratio FROM r"
    )


def click_through_row(row: Mapping[str, float]) -> dict[str, float]:
    """The published values of a :func:`click_through_sql` row (the ratio is 1 without a trailing level)."""
    ctr, trailing = float(row["ctr"]), float(row["ctr_trailing"])
    return {"ctr": ctr, "ctr_trailing": trailing, "ctr_ratio": ctr / trailing if trailing > 0 else 1.0}


def publish_click_through(
    cloudwatch: Any, endpoint_name: str, row: Mapping[str, float], when: datetime | None = None
) -> dict[str, float]:
    """Publish a :func:`click_through_sql` row (with the ratio the alarm watches); returns the values."""
    when = when or datetime.now(UTC)
    values = click_through_row(row)
    _put(cloudwatch, NAMESPACE, [
        _datum(online_metric(endpoint_name, name), values[col], unit, when) for col, name, unit in CLICK_THROUGH_COLUMNS
    ])  # fmt: skip
    return values
