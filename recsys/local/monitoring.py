"""The monitoring stage of the local run: what CloudWatch, SNS, EventBridge and QuickSight do after a deploy.

Model-quality and drift metrics are not published here: the pipeline's PublishMetrics step publishes them
in both runtimes (``sagemaker_src/publish_metrics.py``), so an alarm that is fed locally is fed on AWS.
Publishes the data-quality metrics (the curation workflow's query, on DuckDB), creates the SNS topic, the alarms and
event rules of the monitoring template in ``cdk.out`` (``recsys/local/alarms.py``) and the operations dashboard (from
the specs of ``monitoring/``), computes and prints every alarm's state, and writes the analytics dashboard as a
self-contained HTML file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from monitoring import metrics as m
from monitoring.alarms import alarm_specs
from monitoring.metrics import MODEL_METRICS_PREFIX
from recsys.local.alarms import create_alarms, create_event_rules, evaluate_alarms
from recsys.local.athena import AthenaQueryError, LocalAthena, MissingTableError
from recsys.local.dashboard import write_dashboard
from recsys.local.moto_server import LocalAws
from recsys.local.provision import LocalResources
from settings.config import TABLES, Config


class _Progress(Protocol):
    def info(self, line: str) -> None: ...


def operations_dashboard_body(cfg: Config, region: str) -> str:
    """A CloudWatch dashboard body with one metric widget per alarm (the local stand-in of the CDK one)."""
    widgets = []
    for i, spec in enumerate(alarm_specs(cfg)):
        series = [
            [ref.namespace, ref.name, *[x for kv in ref.dimensions for x in kv], {"stat": stat, "id": mid}]
            for mid, ref, stat in spec.metrics
        ]
        widgets.append(
            {
                "type": "metric",
                "x": (i % 3) * 8,
                "y": (i // 3) * 6,
                "width": 8,
                "height": 6,
                "properties": {"title": spec.key, "region": region, "metrics": series, "period": spec.period_s},
            }
        )
    return json.dumps({"widgets": widgets})


def run_monitoring(
    cfg: Config,
    aws: Any,
    athena: LocalAthena,
    out_dir: Path,
    progress: _Progress,
    *,
    model_metrics_history: Sequence[Mapping[str, Any]] = (),
    endpoint_latencies_ms: Sequence[float] | None = None,
    endpoint_errors: tuple[int, int] = (0, 0),
    data_quality_published: bool = False,
) -> Path:
    """Run the monitoring stage against the local AWS ``aws`` (``LocalAws``); returns the dashboard path.

    ``athena`` has the curated tables and the quarantine tables the crawler would catalogue.
    ``model_metrics_history``: the ``model_metrics`` rows PublishMetrics wrote (the dashboard's model sheet).
    ``endpoint_latencies_ms`` / ``endpoint_errors`` (4xx, 5xx): a measured burst against the local
    endpoint, published as SageMaker would, so the endpoint alarms evaluate real numbers.
    ``data_quality_published``: the curation state machine was executed and published the data-quality
    metrics itself; nothing is republished, so a producer missing from the template shows as missing data.
    """
    now = datetime.now(UTC)
    cloudwatch = aws.client("cloudwatch")
    topic_arn = aws.client("sns").create_topic(Name=f"{cfg.prefix}-alarms")["TopicArn"]

    history = sorted((dict(r) for r in model_metrics_history), key=lambda r: str(r.get("evaluated_at", "")))
    if data_quality_published:  # the curation state machine's own states did (the local run executes it)
        progress.info("data quality: published by the curation workflow's states (no second producer here)")
    for table in () if data_quality_published else TABLES:  # the workflow's query, when it did not run
        try:
            row = athena.query(m.data_quality_sql(table)).iloc[0].to_dict()
        except MissingTableError as err:  # the crawler catalogues only what a job wrote
            progress.info(f"data {table:<13} nothing published: no {', '.join(err.missing)} table (as on AWS)")
            continue
        except AthenaQueryError as err:
            progress.info(f"data {table:<13} nothing published: {err.message}")
            continue
        ratio = m.publish_data_quality_row(cloudwatch, table, row, database=cfg.glue_database, when=now)
        progress.info(
            f"data {table:<13} quarantined ratio {ratio:.4f} "
            f"({int(row['rows_quarantined']):,} of {int(row['rows_in']):,} rows)"
        )
    if endpoint_latencies_ms is not None:
        m.publish_endpoint_sample(cloudwatch, cfg.endpoint_name, endpoint_latencies_ms, *endpoint_errors, when=now)

    specs = create_alarms(cloudwatch, cfg)  # the monitoring template's alarms and rules, acting on its topic
    rules = create_event_rules(aws.client("events"), cfg)
    cloudwatch.put_dashboard(
        DashboardName=f"{cfg.prefix}-operations", DashboardBody=operations_dashboard_body(cfg, aws.region)
    )
    names = ", ".join((r.name or r.logical_id).removeprefix(f"{cfg.prefix}-") for r in rules)
    progress.info(f"{len(specs)} alarms, {len(rules)} event rules ({names}) -> SNS {topic_arn}")
    states = evaluate_alarms(cloudwatch, cfg, now, specs)
    for s in states:
        progress.info(f"  {s.state:<17} {s.name:<40} {s.reason}")
    path = write_dashboard(
        athena,
        Path(out_dir) / "dashboard.html",
        history,
        title=f"{cfg.prefix} analytics",
        alarms=states,
        attribution_window_hours=cfg.attribution_window_hours,
        experiment_alpha=cfg.experiment_alpha,
    )
    return path


def model_metrics_history(aws: LocalAws, res: LocalResources, lake: Path) -> list[dict]:
    """Every model_metrics row: this run's (from the bucket, where PublishMetrics put them) and, since the
    local AWS starts empty each run, the earlier runs' rows kept in the workdir's lake."""
    folder = lake / MODEL_METRICS_PREFIX
    folder.mkdir(parents=True, exist_ok=True)
    s3 = aws.client("s3")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=res.destination_bucket, Prefix=MODEL_METRICS_PREFIX)
    for obj in (o for page in pages for o in page.get("Contents", [])):
        body = s3.get_object(Bucket=res.destination_bucket, Key=obj["Key"])["Body"].read()
        (folder / Path(obj["Key"]).name).write_bytes(body)
    rows = []
    for path in sorted(folder.glob("*.json")):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows
