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
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return False
        ops = {"<": value.__lt__, "<=": value.__le__, "=": value.__eq__, ">": value.__gt__, ">=": value.__ge__}
        return all(ops[arg[i]](arg[i + 1]) for i in range(0, len(arg), 2))
    raise ValueError(f"event pattern operator {op!r} is not interpreted locally")


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
