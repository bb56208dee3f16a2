"""EventBridge rules from the synthesized templates, routing the local run's events to their targets.

On AWS the flow is chained by rules, not by a script: an object under ``raw/interactions/`` starts the
curation workflow, its success starts the training pipeline, an approved model package invokes the deploy
function, a failed DataBrew job notifies the alarm topic. The local run emits the same events and asks the
rules of ``cdk.out/<prefix>-*.template.json`` where each goes, so a rule missing from a template (or a
pattern that no longer matches) is a step the local run does not take either.

Pattern matching follows EventBridge's content filtering for what the templates use: exact values (a list
means any of them; an array field in the event matches if any element does), ``prefix``, ``suffix``,
``anything-but``, ``exists``, ``equals-ignore-case`` and ``numeric`` comparisons.
"""

from __future__ import annotations

import json
import operator
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from recsys.local.curation import Resolver, stack_templates
from recsys.local.states import StatesError, read_path
from settings.config import LOCAL_ACCOUNT, Config


@dataclass(frozen=True)
class Rule:
    stack: str
    logical_id: str
    pattern: dict[str, Any] | None  # None: a schedule rule
    schedule: str | None
    targets: tuple[str, ...]  # target ARNs, resolved to the local account and names
    specs: tuple[dict[str, Any], ...] = ()  # each target as the template declares it (Input, InputPath, ...)
    name: str = ""  # the rule's Name, else its logical id
    region: str = ""

    @property
    def arn(self) -> str:
        return f"arn:aws:events:{self.region}:{LOCAL_ACCOUNT}:rule/{self.name or self.logical_id}"


#: What a target ARN is, by its service and resource type: the action a route means (``kind``).
_KINDS = (("states", "stateMachine:", "state machine"), ("sagemaker", "pipeline/", "pipeline"),
          ("lambda", "function:", "function"), ("sns", "", "topic"), ("sqs", "", "queue"))  # fmt: skip


@dataclass(frozen=True)
class Route:
    rule: Rule
    target: str
    spec: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def label(self) -> str:
        return f"{self.rule.stack}/{self.rule.logical_id} -> {self.target.split(':', 5)[-1]}"

    @property
    def kind(self) -> str:
        """``state machine``, ``pipeline``, ``function``, ``topic``, ``queue``: read from the target's ARN in the
        template (its service and resource type), so the local run acts on what the template routes to."""
        parts = self.target.split(":", 5)
        service, resource = (parts[2], parts[5]) if len(parts) == 6 else ("", "")
        for svc, prefix, kind in _KINDS:
            if service == svc and resource.startswith(prefix):
                return kind
        raise ValueError(f"{self.rule.stack}/{self.rule.logical_id}: target {self.target} is of no kind the "
                         "local run serves")  # fmt: skip

    @property
    def resource(self) -> str:
        """The target's name: ``recsys-dev-curation`` of ``...:stateMachine:recsys-dev-curation``."""
        return re.split(r"[:/]", self.target.split(":", 5)[-1], maxsplit=1)[-1]

    def input(self, evt: dict[str, Any]) -> Any:
        """What the target receives, as EventBridge delivers it: the event, or the target's constant ``Input``,
        its ``InputPath`` of the event, or its ``InputTransformer`` applied to the event."""
        if "Input" in self.spec:
            return json.loads(self.spec["Input"])
        if "InputPath" in self.spec:
            return read_path(evt, self.spec["InputPath"])
        if "InputTransformer" in self.spec:
            return _transform(self.spec["InputTransformer"], evt, self.rule)
        return evt


def _transform(transformer: dict[str, Any], evt: dict[str, Any], rule: Rule) -> Any:
    """An InputTransformer: ``<name>`` placeholders of InputTemplate filled from InputPathsMap (a missing path is
    null); inside quotes a value goes in as text, elsewhere as JSON. The result is JSON if it parses."""
    values: dict[str, Any] = {"aws.events.rule-arn": rule.arn, "aws.events.rule-name": rule.name or rule.logical_id,
                              "aws.events.event.ingestion-time": evt.get("time"), "aws.events.event": evt,
                              "aws.events.event.json": evt}  # fmt: skip
    for name, path in transformer.get("InputPathsMap", {}).items():
        try:
            values[name] = read_path(evt, path)
        except StatesError:
            values[name] = None

    def fill(m: re.Match[str]) -> str:
        quoted, name = m.group(1) is not None, m.group(2)
        if name not in values:
            raise ValueError(f"{rule.stack}/{rule.logical_id}: InputTemplate placeholder <{name}> is not in "
                             "InputPathsMap")  # fmt: skip
        value = values[name]
        if quoted:
            text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
            return json.dumps(text)
        return json.dumps(value, separators=(",", ":"))

    text = re.sub(r'(")?<([\w.\-]+)>(?(1)")', fill, transformer["InputTemplate"])
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def load_rules(cfg: Config, out_dir: Path | None = None) -> list[Rule]:
    """Every AWS::Events::Rule of the environment's stacks, with tokens and cross-stack imports resolved."""
    templates = stack_templates(cfg, out_dir)
    exports: dict[str, tuple[Any, dict]] = {}
    for doc in templates.values():
        for output in doc.get("Outputs", {}).values():
            if "Export" in output:
                exports[output["Export"]["Name"]] = (output["Value"], doc)
    rules = []
    for stack, doc in templates.items():
        resolve = Resolver(doc, cfg.region, exports=exports)
        for logical_id, resource in doc["Resources"].items():
            if resource["Type"] != "AWS::Events::Rule":
                continue
            props = resolve(resource["Properties"])
            if "EventPattern" in props:
                try:
                    check_pattern(props["EventPattern"])
                except ValueError as err:
                    raise ValueError(f"{stack}/{logical_id}: {err}") from None
            if props.get("State", "ENABLED") != "ENABLED":
                continue  # a disabled rule routes nothing
            specs = tuple(props.get("Targets", []))
            targets = tuple(t["Arn"] for t in specs)
            schedule = props.get("ScheduleExpression")
            if schedule is not None:
                try:
                    parse_schedule(schedule)
                except ValueError as err:
                    raise ValueError(f"{stack}/{logical_id}: {err}") from None
            rules.append(Rule(stack, logical_id, props.get("EventPattern"), schedule, targets, specs,
                              props.get("Name", ""), cfg.region))  # fmt: skip
    return rules


def event(source: str, detail_type: str, detail: dict[str, Any], region: str) -> dict[str, Any]:
    """An EventBridge event envelope as AWS services put it on the default bus."""
    return {
        "version": "0",
        "source": source,
        "detail-type": detail_type,
        "account": LOCAL_ACCOUNT,
        "region": region,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "resources": [],
        "detail": detail,
    }


def route(rules: list[Rule], evt: dict[str, Any]) -> list[Route]:
    """Each (rule, target) the event reaches."""
    return [rt for r in rules if r.pattern is not None and matches(r.pattern, evt) for rt in _targets(r)]


def matches(pattern: dict[str, Any], evt: Any) -> bool:
    for key, expected in pattern.items():
        present = isinstance(evt, dict) and key in evt
        value = evt.get(key) if present else None
        if isinstance(expected, dict):
            if not present or not matches(expected, value):
                return False
        elif not _field_matches(expected, present, value):
            return False
    return True


def _field_matches(allowed: list[Any], present: bool, value: Any) -> bool:
    values = value if isinstance(value, list) else [value]
    for matcher in allowed:
        if isinstance(matcher, dict) and "exists" in matcher:
            if matcher["exists"] == present:
                return True
            continue
        if present and any(_value_matches(matcher, v) for v in values):
            return True
    return False


def _value_matches(matcher: Any, value: Any) -> bool:
    if not isinstance(matcher, dict):
        return matcher == value
    (op, arg), *more = matcher.items()
    if more:
        raise ValueError(f"event pattern matcher with several operators: {matcher}")
    if op == "prefix":
        return isinstance(value, str) and value.startswith(arg)
    if op == "suffix":
        return isinstance(value, str) and value.endswith(arg)
    if op == "equals-ignore-case":
        return isinstance(value, str) and value.lower() == str(arg).lower()
    if op == "anything-but":
        excluded = arg if isinstance(arg, list) else [arg]
        return not any(_value_matches(e, value) for e in excluded)
    if op == "numeric":
        check_numeric(arg)
        if not _is_number(value):
            return False  # a string, boolean or null never matches a numeric comparison, as on EventBridge
        return all(_NUMERIC[arg[i]](value, arg[i + 1]) for i in range(0, len(arg), 2))
    raise ValueError(f"event pattern operator {op!r} is not interpreted locally")


#: EventBridge's numeric operators; ``operator`` functions compare an int with a float bound correctly (the
#: bound methods ``int.__gt__(float)`` answer NotImplemented, which is truthy).
_NUMERIC: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt, "<=": operator.le, "=": operator.eq, ">": operator.gt, ">=": operator.ge}  # fmt: skip
_LOWER, _UPPER = (">", ">="), ("<", "<=")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_numeric(arg: Any) -> None:
    """A ``numeric`` matcher as EventBridge accepts it: ``[op, n]`` or a range ``[lower op, n, upper op, n]``
    (``>``/``>=`` then ``<``/``<=``) with number bounds; anything else is refused, as PutRule refuses it."""
    if not isinstance(arg, list) or len(arg) not in (2, 4):
        raise ValueError(f"numeric matcher {arg!r}: expected [op, number] or [lower op, number, upper op, number]")
    ops, bounds = arg[0::2], arg[1::2]
    if any(o not in _NUMERIC for o in ops):
        raise ValueError(f"numeric matcher {arg!r}: operators are {', '.join(_NUMERIC)}")
    if not all(_is_number(b) for b in bounds):
        raise ValueError(f"numeric matcher {arg!r}: bounds must be numbers")
    if len(ops) == 2 and not (ops[0] in _LOWER and ops[1] in _UPPER):
        raise ValueError(f"numeric matcher {arg!r}: a range is a lower bound (> or >=) then an upper (< or <=)")


def check_pattern(pattern: Any, where: str = "") -> None:
    """Refuse a pattern EventBridge would refuse or this module cannot match (one line naming the field)."""
    if not isinstance(pattern, dict):
        raise ValueError(f"event pattern{where}: expected an object, got {pattern!r}")
    for key, expected in pattern.items():
        field = f"{where}.{key}" if where else key
        if isinstance(expected, dict):
            check_pattern(expected, field)
            continue
        if not isinstance(expected, list) or not expected:
            raise ValueError(f"event pattern field {field}: expected a non-empty list of values, got {expected!r}")
        for matcher in expected:
            if not isinstance(matcher, dict):
                continue
            if len(matcher) != 1:
                raise ValueError(f"event pattern field {field}: one operator per matcher, got {matcher!r}")
            ((op, arg),) = matcher.items()
            if op not in _OPERATORS:
                raise ValueError(f"event pattern field {field}: operator {op!r} is not interpreted locally")
            try:
                if op == "numeric":
                    check_numeric(arg)
                elif op == "exists" and not isinstance(arg, bool):
                    raise ValueError(f"exists takes true or false, got {arg!r}")
                elif op in ("prefix", "suffix", "equals-ignore-case") and not isinstance(arg, str):
                    raise ValueError(f"{op} takes a string, got {arg!r}")
            except ValueError as err:
                raise ValueError(f"event pattern field {field}: {err}") from None


_OPERATORS = frozenset({"prefix", "suffix", "equals-ignore-case", "anything-but", "numeric", "exists"})


# ---- the events the local run emits, as the services would -------------------------------------------------


def s3_object_created(bucket: str, key: str, region: str) -> dict[str, Any]:
    return event("aws.s3", "Object Created", {"bucket": {"name": bucket}, "object": {"key": key}}, region)


def execution_status_change(state_machine_arn: str, status: str, region: str) -> dict[str, Any]:
    return event("aws.states", "Step Functions Execution Status Change",
                 {"status": status, "stateMachineArn": state_machine_arn}, region)  # fmt: skip


def pipeline_status_change(pipeline_arn: str, status: str, region: str) -> dict[str, Any]:
    """SageMaker's pipeline execution status event (``Failed``, ``Succeeded`` ...)."""
    detail = {"pipelineArn": pipeline_arn, "pipelineExecutionArn": f"{pipeline_arn}/execution/local",
              "currentPipelineExecutionStatus": status, "previousPipelineExecutionStatus": "Executing"}  # fmt: skip
    return event("aws.sagemaker", "SageMaker Model Building Pipeline Execution Status Change", detail, region)


def crawler_state_change(crawler: str, state: str, message: str, region: str) -> dict[str, Any]:
    """Glue's crawler state event (``Failed``, ``Succeeded``)."""
    detail = {"crawlerName": crawler, "state": state, "errorMessage": message}
    return event("aws.glue", "Glue Crawler State Change", detail, region)


def databrew_job_state_change(job: str, state: str, region: str) -> dict[str, Any]:
    return event("aws.databrew", "DataBrew Job State Change", {"jobName": job, "state": state}, region)


def model_package_state_change(group: str, status: str, arn: str, region: str) -> dict[str, Any]:
    detail = {"ModelPackageGroupName": group, "ModelApprovalStatus": status, "ModelPackageArn": arn}
    return event("aws.sagemaker", "SageMaker Model Package State Change", detail, region)


def endpoint_state_change(endpoint: dict[str, Any], status: str, region: str) -> dict[str, Any]:
    """SageMaker's endpoint state event for a DescribeEndpoint answer: ``EndpointStatus`` in upper snake case
    (``IN_SERVICE``, ``FAILED``, ``UPDATE_ROLLBACK_FAILED``), the endpoint's ARN in ``resources``."""
    detail = {"EndpointName": endpoint["EndpointName"], "EndpointArn": endpoint["EndpointArn"],
              "EndpointConfigName": endpoint.get("EndpointConfigName", ""), "EndpointStatus": status}  # fmt: skip
    return {**event("aws.sagemaker", "SageMaker Endpoint State Change", detail, region),
            "resources": [endpoint["EndpointArn"]]}  # fmt: skip


def describe(routes: list[Route]) -> str:
    return ", ".join(r.label for r in routes) if routes else "no rule matches: nothing runs on AWS either"


# ---- schedule rules: the local clock fires them --------------------------------------------------------------

_MONTHS = {
    m: i + 1 for i, m in enumerate(["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"])
}
_DAYS = {d: i + 1 for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}  # EventBridge: 1 = Sunday
_CRON_FIELDS = (("minutes", 0, 59, {}), ("hours", 0, 23, {}), ("day-of-month", 1, 31, {}),
                ("month", 1, 12, _MONTHS), ("day-of-week", 1, 7, _DAYS), ("year", 1970, 2199, {}))  # fmt: skip
_RATE_UNITS = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}


@dataclass(frozen=True)
class Schedule:
    """A parsed ``cron(...)`` (the allowed values of each field; None: ``?``) or ``rate(...)`` (its seconds)."""

    fields: tuple[frozenset[int] | None, ...] = ()
    rate: int = 0

    def due(self, moment: datetime, since: datetime) -> bool:
        """Whether the schedule fires at ``moment`` (a whole minute, UTC); a rate counts from ``since``."""
        if self.rate:
            return (moment - since).total_seconds() % self.rate == 0 and moment > since
        minute, hour, dom, month, dow, year = self.fields
        weekday = moment.isoweekday() % 7 + 1  # Monday 1 -> 2, Sunday 7 -> 1
        return (moment.minute in minute and moment.hour in hour and moment.month in month  # type: ignore[operator]
                and moment.year in year and (dom is None or moment.day in dom)  # type: ignore[operator]
                and (dow is None or weekday in dow))  # fmt: skip


def parse_schedule(expression: str) -> Schedule:
    """EventBridge's ``rate(value unit)`` or ``cron(minutes hours day-of-month month day-of-week year)``;
    what it cannot evaluate (``L``, ``W``, ``#``) or EventBridge would refuse is a one-line ValueError."""
    if m := re.fullmatch(r"rate\((\d+) (\w+)\)", expression.strip()):
        value, unit = int(m.group(1)), m.group(2)
        if unit not in _RATE_UNITS or value < 1 or (value == 1) != (not unit.endswith("s")):
            raise ValueError(f"schedule {expression!r}: expected rate(1 minute|hour|day) or rate(N minutes|hours|days)")
        return Schedule(rate=value * _RATE_UNITS[unit])
    m = re.fullmatch(r"cron\((.*)\)", expression.strip())
    parts = m.group(1).split() if m else []
    if len(parts) != 6:
        raise ValueError(f"schedule {expression!r}: expected rate(...) or cron() with 6 fields")
    if (parts[2] == "?") == (parts[4] == "?"):
        raise ValueError(f"schedule {expression!r}: exactly one of day-of-month and day-of-week must be '?'")
    fields = []
    for text, (name, low, high, names) in zip(parts, _CRON_FIELDS, strict=True):
        fields.append(None if text == "?" else _cron_field(text, name, low, high, names, expression))
    return Schedule(fields=tuple(fields))


def _cron_field(text: str, name: str, low: int, high: int, names: dict[str, int], expression: str) -> frozenset[int]:
    def value(token: str) -> int:
        number = names.get(token.upper()) if token.upper() in names else int(token) if token.isdigit() else None
        if number is None or not low <= number <= high:
            raise ValueError(f"schedule {expression!r}: {name} {token!r} is not a value from {low} to {high}"
                             + (" or a name" if names else ""))  # fmt: skip
        return number

    out: set[int] = set()
    for item in text.split(","):
        if any(ch in item for ch in "LW#"):
            raise ValueError(f"schedule {expression!r}: {name} {item!r} (L, W, #) is not evaluated locally")
        body, _, step = item.partition("/")
        first, last = (low, high) if body == "*" else (value(body.split("-")[0]), value(body.split("-")[-1]))
        if step and "-" not in body and body != "*":
            last = high  # "5/15": from 5 to the end, every 15
        every = int(step) if step.isdigit() and int(step) > 0 else None if step else 1
        if every is None:
            raise ValueError(f"schedule {expression!r}: {name} step {step!r} is not a positive number")
        out.update(range(first, last + 1, every))
    return frozenset(out)


def scheduled_event(rule: Rule, moment: datetime, region: str) -> dict[str, Any]:
    """The event EventBridge sends a schedule rule's targets."""
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
            "account": LOCAL_ACCOUNT, "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"), "region": region,
            "resources": [rule.arn], "detail": {}}  # fmt: skip


@dataclass
class Firing:
    """A schedule rule due at ``moment``: its event and the (rule, target) routes it takes."""

    moment: datetime
    rule: Rule
    event: dict[str, Any]
    routes: list[Route]

    @property
    def label(self) -> str:
        return f"{self.moment:%a %Y-%m-%d %H:%M} UTC, {self.rule.schedule}"


class LocalClock:
    """The rehearsal's time: advanced minute by minute (never slept), it fires the schedule rules of ``cdk.out``
    that fall due, as EventBridge Scheduler would; nothing else starts a scheduled step."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
        self.since = self.now  # rate() schedules count from here, as from the rule's creation

    def advance(
        self,
        rules: list[Rule],
        region: str,
        *,
        until: datetime | None = None,
        stop: Callable[[Firing], bool] | None = None,
        limit: timedelta = timedelta(days=8),
    ) -> list[Firing]:
        """Move the clock up to ``until`` (or ``limit``), firing every schedule rule due on the way, in time
        order; with ``stop``, the clock stops at the first minute whose firings it accepts."""
        schedules = [(r, parse_schedule(r.schedule)) for r in rules if r.schedule]
        end = until or self.now + limit
        fired: list[Firing] = []
        while self.now < end:
            self.now += timedelta(minutes=1)
            due = [Firing(self.now, r, scheduled_event(r, self.now, region), _targets(r))
                   for r, s in schedules if s.due(self.now, self.since)]  # fmt: skip
            fired += due
            if stop is not None and any(stop(f) for f in due):
                break
        return fired


def _targets(rule: Rule) -> list[Route]:
    return [Route(rule, t, spec) for t, spec in zip(rule.targets, rule.specs or [{}] * len(rule.targets), strict=True)]
