"""Alarm and event-rule specs: the one definition the CDK monitoring stack and the local run both use.

On AWS each :class:`AlarmSpec` becomes a CloudWatch alarm (``stacks/monitoring_stack.py``) and each
:class:`EventRuleSpec` an EventBridge rule; both notify the SNS topic. Locally ``recsys/local/alarms.py``
puts the synthesized template's alarms and rules into moto and evaluates them. Definitions only: nothing here calls AWS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from monitoring import metrics as m
from settings.config import TABLES, Config

OK, ALARM, INSUFFICIENT = "OK", "ALARM", "INSUFFICIENT_DATA"

#: Instance endpoints: average CPU above this share of all vCPUs (CPUUtilization is 100 % per vCPU).
CPU_SHARE = 0.8
MEMORY_PERCENT = 85.0
#: No invocation at all in this many seconds: the storefront stopped calling the recommender.
NO_TRAFFIC_SECONDS = 3600
DAY = 86400



@dataclass(frozen=True)
class AlarmSpec:
    key: str  # alarm name = "<prefix>-<key>"
    signal: str  # endpoint | model | data | drift: the dashboard row it belongs to
    description: str
    metrics: tuple[tuple[str, m.MetricRef, str], ...]  # (id, metric, statistic)
    threshold: float
    threshold_source: str  # the config key (or constant) it comes from
    comparison: str
    period_s: int
    evaluation_periods: int = 1
    treat_missing: str = "notBreaching"  # missing | notBreaching | breaching
    expression: str | None = None  # metric math over the ids; None = the one metric

    def name(self, cfg: Config) -> str:
        return f"{cfg.prefix}-{self.key}"


@dataclass(frozen=True)
class EventRuleSpec:
    key: str
    description: str
    pattern: dict[str, Any]

    def name(self, cfg: Config) -> str:
        return f"{cfg.prefix}-{self.key}"


def instance_vcpus(instance_type: str) -> int:
    """vCPUs of an ml.<family>.<size> type: large 2, xlarge 4, Nxlarge 4N (m5/c5/r5 families)."""
    size = instance_type.rsplit(".", 1)[-1]
    if size == "large":
        return 2
    match = re.fullmatch(r"(\d*)xlarge", size)
    if not match:
        return 1
    return 4 * int(match.group(1) or 1)


def endpoint_specs(cfg: Config) -> list[AlarmSpec]:
    """Endpoint health; the deploy rollback may watch these by name (:func:`endpoint_alarm_names`)."""
    ep = cfg.endpoint_name

    def metric(name: str) -> m.MetricRef:
        return m.endpoint_metric(ep, name)

    specs = [
        AlarmSpec(
            "endpoint-latency-p99",
            "endpoint",
            f"{ep}: p99 ModelLatency above {cfg.alarm_latency_p99_ms} ms for 15 minutes",
            (("latency", metric(m.MODEL_LATENCY), "p99"),),
            threshold=cfg.alarm_latency_p99_ms * 1000.0,  # ModelLatency is in microseconds
            threshold_source="alarm_latency_p99_ms (x1000: microseconds)",
            comparison="GreaterThanThreshold",
            period_s=300,
            evaluation_periods=3,
            treat_missing="missing",
        ),
        AlarmSpec(
            "endpoint-5xx-rate",
            "endpoint",
            f"{ep}: Invocation5XXErrors / Invocations above {cfg.alarm_5xx_rate:.2%} in 5 minutes",
            (("e5xx", metric(m.INVOCATION_5XX), "Sum"), ("inv", metric(m.INVOCATIONS), "Sum")),
            expression="FILL(e5xx, 0) / inv",
            threshold=cfg.alarm_5xx_rate,
            threshold_source="alarm_5xx_rate",
            comparison="GreaterThanThreshold",
            period_s=300,
        ),
        AlarmSpec(
            "endpoint-4xx-rate",
            "endpoint",
            f"{ep}: Invocation4XXErrors / Invocations above {cfg.alarm_4xx_rate:.2%} for 15 minutes",
            (("e4xx", metric(m.INVOCATION_4XX), "Sum"), ("inv", metric(m.INVOCATIONS), "Sum")),
            expression="FILL(e4xx, 0) / inv",
            threshold=cfg.alarm_4xx_rate,
            threshold_source="alarm_4xx_rate",
            comparison="GreaterThanThreshold",
            period_s=300,
            evaluation_periods=3,
        ),
        AlarmSpec(
            "endpoint-no-invocations",
            "endpoint",
            f"{ep}: no invocation in {NO_TRAFFIC_SECONDS // 60} minutes (nobody is asking for recommendations)",
            (("inv", metric(m.INVOCATIONS), "Sum"),),
            threshold=1,
            threshold_source="constant NO_TRAFFIC_SECONDS",
            comparison="LessThanThreshold",
            period_s=NO_TRAFFIC_SECONDS,
            treat_missing="breaching",
        ),
    ]
    if not cfg.serverless_endpoint:  # serverless endpoints publish no instance metrics
        vcpus = instance_vcpus(cfg.endpoint_instance_type)
        specs += [
            AlarmSpec(
                "endpoint-cpu",
                "endpoint",
                f"{ep}: average CPU above {CPU_SHARE:.0%} of {vcpus} vCPUs for 15 minutes",
                (("cpu", metric(m.CPU_UTILIZATION), "Average"),),
                threshold=CPU_SHARE * 100.0 * vcpus,
                threshold_source=f"constant CPU_SHARE x vCPUs of {cfg.endpoint_instance_type}",
                comparison="GreaterThanThreshold",
                period_s=300,
                evaluation_periods=3,
                treat_missing="missing",
            ),
            AlarmSpec(
                "endpoint-memory",
                "endpoint",
                f"{ep}: average memory above {MEMORY_PERCENT:.0f} % for 15 minutes",
                (("mem", metric(m.MEMORY_UTILIZATION), "Average"),),
                threshold=MEMORY_PERCENT,
                threshold_source="constant MEMORY_PERCENT",
                comparison="GreaterThanThreshold",
                period_s=300,
                evaluation_periods=3,
                treat_missing="missing",
            ),
        ]
    return specs


def alarm_specs(cfg: Config) -> list[AlarmSpec]:
    """Every alarm of the environment, in dashboard order: endpoint, model, data, drift."""
    group = cfg.model_package_group
    specs = endpoint_specs(cfg)
    specs.append(
        AlarmSpec(
            "model-ndcg-below-gate",
            "model",
            f"{group}: NDCG@10 of the latest evaluated model below the quality gate {cfg.quality_threshold_ndcg_at_10}",
            (("ndcg", m.model_metric(group, m.NDCG_AT_10), "Minimum"),),
            threshold=cfg.quality_threshold_ndcg_at_10,
            threshold_source="quality_threshold_ndcg_at_10",
            comparison="LessThanThreshold",
            period_s=DAY,
        )
    )
    for table in TABLES:
        specs.append(
            AlarmSpec(
                f"data-quarantine-{table}",
                "data",
                f"{cfg.glue_database}.{table}: quarantined share of input rows above {cfg.alarm_quarantine_ratio:.1%}",
                (("ratio", m.data_metric(cfg.glue_database, table, m.QUARANTINED_RATIO), "Maximum"),),
                threshold=cfg.alarm_quarantine_ratio,
                threshold_source="alarm_quarantine_ratio",
                comparison="GreaterThanThreshold",
                period_s=DAY,
            )
        )
    specs.append(
        AlarmSpec(
            "data-curation-job-skipped",
            "data",
            f"{cfg.curation_state_machine}: a users/products/clickstream recipe job failed and was skipped; the "
            "workflow still succeeded and training went on without that table's fresh data",
            (("skipped", m.curation_metric(cfg.curation_state_machine), "Maximum"),),
            threshold=0.0,
            threshold_source="any skipped job",
            comparison="GreaterThanThreshold",
            period_s=DAY,
        )
    )
    specs.append(
        AlarmSpec(
            "online-ctr-drop",
            "model",
            f"{cfg.endpoint_name}: attributed click-through of the latest day below {cfg.alarm_ctr_drop_share:.0%} of "
            f"its trailing 7-day level (attribution window {cfg.attribution_window_hours} h)",
            (("ratio", m.online_metric(cfg.endpoint_name, m.CLICK_THROUGH_RATIO), "Minimum"),),
            threshold=cfg.alarm_ctr_drop_share,
            threshold_source="alarm_ctr_drop_share",
            comparison="LessThanThreshold",
            period_s=DAY,
        )
    )
    specs.append(
        AlarmSpec(
            "drift-score",
            "drift",
            f"{group}: input drift (max PSI over category mix, price, activity per user) above {cfg.alarm_drift_score}",
            (("drift", m.drift_metric(group), "Maximum"),),
            threshold=cfg.alarm_drift_score,
            threshold_source="alarm_drift_score",
            comparison="GreaterThanThreshold",
            period_s=DAY,
        )
    )
    return specs


def endpoint_alarm_names(cfg: Config) -> list[str]:
    return [s.name(cfg) for s in endpoint_specs(cfg)]


def event_rule_specs(cfg: Config) -> list[EventRuleSpec]:
    """Failures that are events, not metrics: the training pipeline, DataBrew jobs, Glue crawlers.

    DataBrew jobs and crawlers are matched by the environment's name prefix (every one the data stack
    creates starts with ``<prefix>-``), so adding a table needs no change here.
    """
    prefix = [{"prefix": f"{cfg.prefix}-"}]
    return [
        EventRuleSpec(
            "pipeline-failed",
            f"SageMaker pipeline {cfg.pipeline_name} execution failed",
            {
                "source": ["aws.sagemaker"],
                "detail-type": ["SageMaker Model Building Pipeline Execution Status Change"],
                "detail": {
                    "currentPipelineExecutionStatus": ["Failed"],
                    "pipelineArn": [{"suffix": f":pipeline/{cfg.pipeline_name}"}],
                },
            },
        ),
        EventRuleSpec(
            "databrew-job-failed",
            f"a DataBrew job of {cfg.prefix} failed or timed out",
            {
                "source": ["aws.databrew"],
                "detail-type": ["DataBrew Job State Change"],
                "detail": {"state": ["FAILED", "TIMEOUT"], "jobName": prefix},
            },
        ),
        EventRuleSpec(
            "crawler-failed",
            f"a Glue crawler of {cfg.prefix} failed",
            {
                "source": ["aws.glue"],
                "detail-type": ["Glue Crawler State Change"],
                "detail": {"state": ["Failed"], "crawlerName": prefix},
            },
        ),
    ]
