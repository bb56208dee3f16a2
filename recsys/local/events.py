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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recsys.local.curation import Resolver, cdk_out
from settings.config import LOCAL_ACCOUNT, Config


@dataclass(frozen=True)
class Rule:
    stack: str
    logical_id: str
    pattern: dict[str, Any] | None  # None: a schedule rule
    schedule: str | None
    targets: tuple[str, ...]  # target ARNs, resolved to the local account and names


@dataclass(frozen=True)
class Route:
    rule: Rule
    target: str

    @property
    def label(self) -> str:
        return f"{self.rule.stack}/{self.rule.logical_id} -> {self.target.split(':', 5)[-1]}"


def load_rules(cfg: Config, out_dir: Path | None = None) -> list[Rule]:
    """Every AWS::Events::Rule of the environment's stacks, with tokens and cross-stack imports resolved."""
    out_dir = out_dir or cdk_out()
    templates = {
        path.name.removesuffix(".template.json"): json.loads(path.read_text())
        for path in sorted(Path(out_dir).glob(f"{cfg.prefix}-*.template.json"))
    }
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
            targets = tuple(t["Arn"] for t in props.get("Targets", []))
            rules.append(Rule(stack, logical_id, props.get("EventPattern"), props.get("ScheduleExpression"), targets))
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
    return [Route(r, t) for r in rules if r.pattern is not None and matches(r.pattern, evt) for t in r.targets]


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


def databrew_job_state_change(job: str, state: str, region: str) -> dict[str, Any]:
    return event("aws.databrew", "DataBrew Job State Change", {"jobName": job, "state": state}, region)


def model_package_state_change(group: str, status: str, arn: str, region: str) -> dict[str, Any]:
    detail = {"ModelPackageGroupName": group, "ModelApprovalStatus": status, "ModelPackageArn": arn}
    return event("aws.sagemaker", "SageMaker Model Package State Change", detail, region)


def describe(routes: list[Route]) -> str:
    return ", ".join(r.label for r in routes) if routes else "no rule matches: nothing runs on AWS either"
