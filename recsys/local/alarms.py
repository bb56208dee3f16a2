"""The monitoring stack's alarms in the local (moto) CloudWatch: created from ``cdk.out``, then evaluated.

:func:`create_alarms` puts every ``AWS::CloudWatch::Alarm`` of ``cdk.out/<prefix>-monitoring.template.json``
(properties resolved as the rest of the local run resolves templates) into moto CloudWatch, and
:func:`create_event_rules` that template's EventBridge rules (as :func:`recsys.local.events.load_rules` reads
them, which also routes them); so an alarm changed or missing in the template is changed or missing locally.
:func:`evaluate` computes an alarm's state
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
from pathlib import Path
from typing import Any

from monitoring import metrics as m
from monitoring.alarms import ALARM, INSUFFICIENT, OK, AlarmSpec, alarm_specs
from recsys.local.curation import Resolver, cdk_out
from recsys.local.events import Rule, load_rules
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


def monitoring_stack(cfg: Config) -> str:
    return f"{cfg.prefix}-monitoring"


def template_alarms(cfg: Config, out_dir: Path | None = None) -> list[dict[str, Any]]:
    """Every AWS::CloudWatch::Alarm of the monitoring template, its properties resolved (Ref of the topic -> ARN)."""
    path = Path(out_dir or cdk_out()) / f"{monitoring_stack(cfg)}.template.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no monitoring template; run make synth")
    doc = json.loads(path.read_text())
    resolve = Resolver(doc, cfg.region)
    return [
        resolve(r["Properties"]) for r in doc.get("Resources", {}).values() if r.get("Type") == "AWS::CloudWatch::Alarm"
    ]


def _ref(metric: dict[str, Any]) -> m.MetricRef:
    dims = tuple((d["Name"], d["Value"]) for d in metric.get("Dimensions", []))
    return m.MetricRef(metric["Namespace"], metric["MetricName"], dims)


def spec_of(cfg: Config, props: dict[str, Any]) -> AlarmSpec:
    """What :func:`evaluate` needs of a template alarm; the spec of the same name only labels it (its dashboard
    row and the config key its threshold comes from), every number is the template's."""
    name = props["AlarmName"]
    known = {s.name(cfg): s for s in alarm_specs(cfg)}.get(name)
    if "Metrics" in props:
        stats = [q for q in props["Metrics"] if "MetricStat" in q]
        metrics = tuple((q["Id"], _ref(q["MetricStat"]["Metric"]), q["MetricStat"]["Stat"]) for q in stats)
        expression = next(q["Expression"] for q in props["Metrics"] if q.get("Expression"))
        period = int(stats[0]["MetricStat"]["Period"])
    else:
        stat = props.get("Statistic") or props["ExtendedStatistic"]
        metrics, expression, period = (("m", _ref(props), stat),), None, int(props["Period"])
    return AlarmSpec(
        key=name.removeprefix(f"{cfg.prefix}-"),
        signal=known.signal if known else "",
        description=props.get("AlarmDescription", ""),
        metrics=metrics,
        threshold=float(props["Threshold"]),
        threshold_source=known.threshold_source if known else "template",
        comparison=props["ComparisonOperator"],
        period_s=period,
        evaluation_periods=int(props["EvaluationPeriods"]),
        treat_missing=props.get("TreatMissingData", "missing"),
        expression=expression,
    )


def create_alarms(cloudwatch: Any, cfg: Config, out_dir: Path | None = None) -> list[AlarmSpec]:
    """PutMetricAlarm for each template alarm (its properties are the API's arguments); returns what to evaluate."""
    specs = []
    for props in template_alarms(cfg, out_dir):
        cloudwatch.put_metric_alarm(**{**props, "Threshold": float(props["Threshold"])})
        specs.append(spec_of(cfg, props))
    return specs


def create_event_rules(events: Any, cfg: Config, out_dir: Path | None = None) -> list[Rule]:
    """The monitoring template's EventBridge rules (as the local router reads them) put into moto EventBridge."""
    rules = [r for r in load_rules(cfg, out_dir) if r.stack == monitoring_stack(cfg)]
    for rule in rules:
        name = rule.name or rule.logical_id
        trigger = (
            {"ScheduleExpression": rule.schedule}
            if rule.pattern is None
            else {"EventPattern": json.dumps(rule.pattern)}
        )
        events.put_rule(Name=name, Description=f"{rule.stack}/{rule.logical_id}", **trigger)
        events.put_targets(Rule=name, Targets=[{"Id": s["Id"], "Arn": s["Arn"]} for s in rule.specs])
    return rules


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


def evaluate_alarms(
    cloudwatch: Any, cfg: Config, now: datetime | None = None, specs: list[AlarmSpec] | None = None
) -> list[AlarmState]:
    """Compute every alarm's state (``specs``, else the monitoring template's) and record it in (moto) CloudWatch,
    as the service itself would."""
    states = []
    for spec in specs if specs is not None else [spec_of(cfg, p) for p in template_alarms(cfg)]:
        state, values = evaluate(cloudwatch, spec, now)
        shown = ", ".join("-" if v is None else f"{v:.4g}" for v in values)
        reason = f"[{shown}] {spec.comparison} {spec.threshold:.4g} ({spec.threshold_source})"
        cloudwatch.set_alarm_state(AlarmName=spec.name(cfg), StateValue=state, StateReason=reason[:1023])
        states.append(AlarmState(spec.name(cfg), state, reason, values))
    return states
