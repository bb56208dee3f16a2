"""Holds every call of :mod:`calls` against the policies of :mod:`templates` with :mod:`evaluator`, both ways:
calls that no policy allows (a deployment that would fail) and grants that no call uses (privilege to trim)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from settings.config import load_project_config
from tests.permissions.calls import Call, CallModel
from tests.permissions.evaluator import Decision, Policy, Request, action_matches, evaluate
from tests.permissions.recorder import Entry
from tests.permissions.templates import Json, Templates


@dataclass
class Report:
    model: CallModel
    decisions: list[tuple[Call, Decision]]

    @property
    def denied(self) -> list[tuple[Call, Decision]]:
        return [(c, d) for c, d in self.decisions if not d.allowed]

    def denied_text(self) -> list[str]:
        return [f"DENIED {c.describe()}: {d.reason}" for c, d in self.denied]


def decide(t: Templates, model: CallModel, call: Call, resource_policies: list[tuple[list[str], Policy]],
           key_policies: dict[str, Policy]) -> Decision:  # fmt: skip
    principal = call.principal
    identity = model.roles[principal.arn].policies if principal.arn else []
    guarding = [p for patterns, p in resource_policies if any(_same(pattern, call.resource) for pattern in patterns)]
    request = Request(principal, call.action, call.resource, call.context_dict)
    return evaluate(request, identity, guarding, key_policy=key_policies.get(call.resource))


def _same(pattern: str, resource: str) -> bool:
    """A resource policy guards ``resource`` (its patterns may end in ``/*`` for a bucket's objects)."""
    return pattern == resource or (pattern.endswith("/*") and resource.startswith(pattern[:-1]))


def run(outdir: Path, env: str, record: set[Entry], mutate: Callable[[dict[str, Json]], None] | None = None) -> Report:
    cfg = load_project_config(env)
    t = Templates.load(outdir, cfg.region, mutate)
    model = CallModel(t, outdir, translate_record(record, env))
    resource_policies, key_policies = t.resource_policies(), t.key_policies()
    decisions = [(call, decide(t, model, call, resource_policies, key_policies)) for call in model.calls]
    return Report(model, decisions)


def translate_record(record: set[Entry], env: str) -> set[Entry]:
    """The Lambda tests run with either environment's names; the calls are the same code's in both, so each
    recorded resource is renamed to ``env`` (prefix, Glue database)."""
    target = load_project_config(env)
    out: set[Entry] = set()
    for folder, action, resource, context in record:
        for other in ("dev", "prod"):
            cfg = load_project_config(other)
            renamed = resource.replace(f"{cfg.prefix}-", f"{target.prefix}-")
            resource = renamed.replace(cfg.glue_database, target.glue_database)
        out.add((folder, action, resource, context))
    return out


# ---- the other direction: grants no call uses ---------------------------------------------------------------------


def unused_grants(report: Report) -> set[tuple[str, str, str]]:
    """(role, action pattern, resources) for every Allow of a role's identity policies that allowed no call."""
    used: set[tuple[str, int, str]] = set()
    for call, decision in report.decisions:
        for allowing in decision.allowing:
            source, _, index = allowing.rpartition("#")
            used.add((source, int(index), call.action))
    unused: set[tuple[str, str, str]] = set()
    for role in report.model.roles.values():
        for policy in role.policies:
            for i, statement in enumerate(policy.statements):
                if statement["Effect"] != "Allow":
                    continue
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                resources = statement.get("Resource", "*")
                resources = ",".join(resources) if isinstance(resources, list) else resources
                for action in actions:
                    if not any(action_matches([action], a) for s, j, a in used if s == policy.source and j == i):
                        unused.add((stable_name(role.logical_id), action, resources))
    return unused


def stable_name(logical_id: str) -> str:
    """A role's logical id without CDK's hash suffix (stable across refactors that keep the construct path)."""
    return re.sub(r"[0-9A-F]{8}$", "", logical_id)
