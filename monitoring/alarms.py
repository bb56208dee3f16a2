"""Alarm and event-rule specs: the one definition the CDK monitoring stack and the local run both use.

On AWS each :class:`AlarmSpec` becomes a CloudWatch alarm (``stacks/monitoring_stack.py``) and each
:class:`EventRuleSpec` an EventBridge rule; both notify the SNS topic. Locally :func:`create_alarms`
puts the same alarms into moto CloudWatch and :func:`evaluate` computes their state from the metric
values there, with CloudWatch's rule: ALARM when every evaluated period breaches, missing periods
treated per ``treat_missing``, INSUFFICIENT_DATA when nothing can be evaluated.

Local limits (moto): no percentiles, so a ``pNN`` statistic is evaluated on ``Maximum`` (an upper
bound: it can alarm where p99 would not, never the reverse); metric math supports ``FILL`` and
arithmetic, which is all the specs use.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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

_COMPARE = {
    "GreaterThanThreshold": lambda v, t: v > t,
    "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
    "LessThanThreshold": lambda v, t: v < t,
    "LessThanOrEqualToThreshold": lambda v, t: v <= t,
}
_BASIC_STATS = ("Sum", "Average", "Minimum", "Maximum", "SampleCount")


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


@dataclass
class AlarmState:
    name: str
    state: str
    reason: str
    values: list[float | None] = field(default_factory=list)


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


# ---- local: the same alarms in moto CloudWatch -----------------------------------------------------


def _metric_stat(ref: m.MetricRef, stat: str, period: int) -> dict[str, Any]:
    return {
        "Metric": {"Namespace": ref.namespace, "MetricName": ref.name, "Dimensions": ref.api_dimensions()},
        "Period": period,
        "Stat": stat,
    }


def put_alarm_kwargs(cfg: Config, spec: AlarmSpec, topic_arn: str) -> dict[str, Any]:
    """PutMetricAlarm arguments for a spec (what the CDK alarm declares too)."""
    kwargs: dict[str, Any] = {
        "AlarmName": spec.name(cfg),
        "AlarmDescription": spec.description,
        "Threshold": spec.threshold,
        "ComparisonOperator": spec.comparison,
        "EvaluationPeriods": spec.evaluation_periods,
        "TreatMissingData": spec.treat_missing,
        "AlarmActions": [topic_arn],
        "OKActions": [topic_arn],
    }
    if spec.expression is None:
        _, ref, stat = spec.metrics[0]
        kwargs.update(
            Namespace=ref.namespace, MetricName=ref.name, Dimensions=ref.api_dimensions(), Period=spec.period_s
        )
        kwargs["Statistic" if stat in _BASIC_STATS else "ExtendedStatistic"] = stat
    else:
        kwargs["Metrics"] = [
            {"Id": mid, "MetricStat": _metric_stat(ref, stat, spec.period_s), "ReturnData": False}
            for mid, ref, stat in spec.metrics
        ] + [{"Id": "expr", "Expression": spec.expression, "Label": spec.key, "ReturnData": True}]
    return kwargs


def create_alarms(cloudwatch: Any, cfg: Config, topic_arn: str) -> list[AlarmSpec]:
    specs = alarm_specs(cfg)
    for spec in specs:
        cloudwatch.put_metric_alarm(**put_alarm_kwargs(cfg, spec, topic_arn))
    return specs


def create_event_rules(events: Any, cfg: Config, topic_arn: str) -> list[EventRuleSpec]:
    specs = event_rule_specs(cfg)
    for spec in specs:
        events.put_rule(Name=spec.name(cfg), EventPattern=json.dumps(spec.pattern), Description=spec.description)
        events.put_targets(Rule=spec.name(cfg), Targets=[{"Id": "alarm-topic", "Arn": topic_arn}])
    return specs


def _period_value(cloudwatch: Any, ref: m.MetricRef, stat: str, start: datetime, end: datetime) -> float | None:
    local_stat = stat if stat in _BASIC_STATS else "Maximum"  # moto has no percentiles (module docstring)
    points = cloudwatch.get_metric_statistics(
        Namespace=ref.namespace,
        MetricName=ref.name,
        Dimensions=ref.api_dimensions(),
        StartTime=start,
        EndTime=end,
        Period=int((end - start).total_seconds()),
        Statistics=[local_stat],
    )["Datapoints"]
    values = [p[local_stat] for p in points if p.get(local_stat) is not None]
    if not values:
        return None
    return {"Sum": sum, "Minimum": min, "Maximum": max}.get(local_stat, lambda v: v[0])(values)


def _fill(value: float | None, default: float) -> float:
    return default if value is None else value


def _math(expression: str, values: dict[str, float | None]) -> float | None:
    """CloudWatch metric math for what the specs use (FILL, + - * /); None = no datapoint."""
    if any(v is None for k, v in values.items() if f"FILL({k}" not in expression.replace(" ", "")):
        return None
    try:
        result = eval(expression, {"__builtins__": {}, "FILL": _fill}, dict(values))  # noqa: S307 - our own specs
    except ZeroDivisionError:
        return None
    return None if result is None or not math.isfinite(result) else float(result)


def evaluate(cloudwatch: Any, spec: AlarmSpec, now: datetime | None = None) -> tuple[str, list[float | None]]:
    """(state, value per period, oldest first) of one spec over its last ``evaluation_periods`` periods."""
    now = (now or datetime.now(UTC)).replace(microsecond=0) + timedelta(seconds=1)
    period = timedelta(seconds=spec.period_s)
    values: list[float | None] = []
    for i in range(spec.evaluation_periods, 0, -1):
        start, end = now - i * period, now - (i - 1) * period
        raw = {mid: _period_value(cloudwatch, ref, stat, start, end) for mid, ref, stat in spec.metrics}
        values.append(raw[spec.metrics[0][0]] if spec.expression is None else _math(spec.expression, raw))
    breaches: list[bool] = []
    for v in values:
        if v is not None:
            breaches.append(_COMPARE[spec.comparison](v, spec.threshold))
        elif spec.treat_missing in ("breaching", "notBreaching"):
            breaches.append(spec.treat_missing == "breaching")
    if not breaches:
        return INSUFFICIENT, values
    return (ALARM if all(breaches) else OK), values


def evaluate_alarms(cloudwatch: Any, cfg: Config, now: datetime | None = None) -> list[AlarmState]:
    """Compute every alarm's state and record it in (moto) CloudWatch, as the service itself would."""
    states = []
    for spec in alarm_specs(cfg):
        state, values = evaluate(cloudwatch, spec, now)
        shown = ", ".join("-" if v is None else f"{v:.4g}" for v in values)
        reason = f"[{shown}] {spec.comparison} {spec.threshold:.4g} ({spec.threshold_source})"
        cloudwatch.set_alarm_state(AlarmName=spec.name(cfg), StateValue=state, StateReason=reason[:1023])
        states.append(AlarmState(spec.name(cfg), state, reason, values))
    return states
