"""The alarms of ``monitoring/alarms.py`` in the local (moto) CloudWatch: created, then evaluated.

:func:`create_alarms` puts the specs' alarms into moto CloudWatch and :func:`evaluate` computes their state
from the metric values there, with CloudWatch's rule: ALARM when every evaluated period breaches, missing
periods treated per ``treat_missing``, INSUFFICIENT_DATA when nothing can be evaluated.

Local limits (moto): no percentiles, so a ``pNN`` statistic is evaluated on ``Maximum`` (an upper
bound: it can alarm where p99 would not, never the reverse); metric math supports ``FILL`` and
arithmetic, which is all the specs use.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from monitoring import metrics as m
from monitoring.alarms import ALARM, INSUFFICIENT, OK, AlarmSpec, EventRuleSpec, alarm_specs, event_rule_specs
from settings.config import Config

_COMPARE = {
    "GreaterThanThreshold": lambda v, t: v > t,
    "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
    "LessThanThreshold": lambda v, t: v < t,
    "LessThanOrEqualToThreshold": lambda v, t: v <= t,
}
_BASIC_STATS = ("Sum", "Average", "Minimum", "Maximum", "SampleCount")


@dataclass
class AlarmState:
    name: str
    state: str
    reason: str
    values: list[float | None] = field(default_factory=list)


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
