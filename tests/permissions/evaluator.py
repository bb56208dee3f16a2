"""A small IAM policy evaluator for one account: is a request allowed by the policies the templates attach?

Why our own: the Python packages on PyPI either call AWS's online simulator (``aws-why``, ``sibyl-aws``) or
compute effective permission sets without evaluating conditions (``iam-ape``, GPL-3.0); the maintained offline
simulator (``@cloud-copilot/iam-simulate``) is Node and AGPL-3.0. What the project's policies use is small, so
this module implements exactly that and refuses anything else (an unknown condition operator raises rather than
guessing), with its own tests in ``test_evaluator.py``.

The logic (IAM policy evaluation logic, same-account requests):

- an explicit ``Deny`` in any applicable policy (identity or resource) wins;
- otherwise an ``Allow`` in the principal's identity policies *or* in the resource's policy allows, except for a
  KMS key, whose key policy must allow the principal itself or the account (``arn:aws:iam::<account>:root``,
  which is what lets identity policies count at all);
- a service principal (``cloudwatch.amazonaws.com``) has no identity policies: only resource policies allow it.

Supported: ``Action``/``NotAction``, ``Resource``/``NotResource`` with ``*`` and ``?`` wildcards (case-insensitive
actions, case-sensitive resources), ``Principal`` (``*``, ``AWS`` role ARN or account, ``Service``), and the
condition operators in :data:`OPERATORS` with the ``IfExists`` suffix and ``ForAnyValue:``/``ForAllValues:``
set prefixes.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]


class UnsupportedPolicy(ValueError):
    """A policy uses something this evaluator does not implement (so no answer would be trustworthy)."""


@dataclass(frozen=True)
class Principal:
    """Who makes the request: an IAM role (``arn``) or an AWS service (``service``, e.g. ``events.amazonaws.com``)."""

    name: str  # how reports name it, e.g. "recsys-dev-data/CurationWorkflowRole"
    account: str
    arn: str | None = None
    service: str | None = None


@dataclass(frozen=True)
class Request:
    principal: Principal
    action: str  # "s3:GetObject"
    resource: str  # an ARN, or "*" for actions without resource-level permissions
    context: Mapping[str, str | list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Policy:
    """A policy document with where it came from (named in failure messages)."""

    source: str
    document: Json

    @property
    def statements(self) -> list[Json]:
        statements = self.document.get("Statement", [])
        return statements if isinstance(statements, list) else [statements]


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    allowing: tuple[str, ...] = ()  # "source#index" of the statements that allowed


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _glob(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """IAM wildcards: ``*`` any run of characters (across ``:`` and ``/``), ``?`` one character."""
    if ignore_case:
        pattern, value = pattern.lower(), value.lower()
    if "$" in pattern and "${" in pattern:
        raise UnsupportedPolicy(f"policy variables are not supported: {pattern}")
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.DOTALL) is not None


def action_matches(patterns: Iterable[str], action: str) -> bool:
    return any(_glob(p, action, ignore_case=True) for p in patterns)


def resource_matches(patterns: Iterable[str], resource: str) -> bool:
    return any(_glob(p, resource) for p in patterns)


# ---- conditions -------------------------------------------------------------------------------------------------


def _string_equals(policy: str, value: str) -> bool:
    return policy == value


def _string_like(policy: str, value: str) -> bool:
    return _glob(policy, value)


def _string_equals_ignore_case(policy: str, value: str) -> bool:
    return policy.lower() == value.lower()


def _arn_like(policy: str, value: str) -> bool:
    """ArnLike: per-component wildcard match of the six ARN fields (a ``*`` does not cross a ``:`` boundary
    between the first five fields, but the resource part may contain ``:``)."""
    p, v = policy.split(":", 5), value.split(":", 5)
    if len(p) != 6 or len(v) != 6:
        return False
    pairs = enumerate(zip(p, v, strict=True))
    return all(fnmatch.fnmatchcase(vv, pp) if i < 5 else _glob(pp, vv) for i, (pp, vv) in pairs)


def _bool(policy: str, value: str) -> bool:
    return str(policy).lower() == str(value).lower()


#: operator -> (value test, negated). A negated operator matches when no value matches.
OPERATORS: dict[str, tuple[Callable[[str, str], bool], bool]] = {
    "StringEquals": (_string_equals, False),
    "StringNotEquals": (_string_equals, True),
    "StringEqualsIgnoreCase": (_string_equals_ignore_case, False),
    "StringLike": (_string_like, False),
    "StringNotLike": (_string_like, True),
    "ArnEquals": (_string_equals, False),
    "ArnLike": (_arn_like, False),
    "ArnNotEquals": (_string_equals, True),
    "ArnNotLike": (_arn_like, True),
    "Bool": (_bool, False),
}


def condition_matches(conditions: Json, context: Mapping[str, str | list[str]]) -> bool:
    """Every operator block and every key in it must match (AND); the values listed for one key are ORed."""
    lowered = {k.lower(): v for k, v in context.items()}
    for operator, block in conditions.items():
        set_op, _, name = operator.rpartition(":")
        if_exists = name.endswith("IfExists")
        name = name.removesuffix("IfExists")
        if name == "Null":
            for key, wanted in block.items():
                absent = key.lower() not in lowered
                if absent != _bool(str(wanted), "true"):
                    return False
            continue
        if name not in OPERATORS or set_op not in ("", "ForAnyValue", "ForAllValues"):
            raise UnsupportedPolicy(f"condition operator {operator!r} is not supported by this evaluator")
        test, negated = OPERATORS[name]
        for key, wanted in block.items():
            wanted_values = [str(w) for w in _as_list(wanted)]
            if key.lower() not in lowered:
                if if_exists or negated or set_op == "ForAllValues":
                    continue
                return False
            values = [str(v) for v in _as_list(lowered[key.lower()])]
            hits = [any(test(w, v) for w in wanted_values) for v in values]
            if set_op == "ForAllValues":
                ok = all(hits)
            elif negated:
                ok = not any(hits)
            else:
                ok = any(hits)
            if not ok:
                return False
    return True


# ---- statements --------------------------------------------------------------------------------------------------


def _principal_matches(statement: Json, principal: Principal) -> str | None:
    """``"direct"`` when the statement names this principal (or ``*``), ``"account"`` when it names the principal's
    account (a delegation to identity policies), else None."""
    if "NotPrincipal" in statement:
        raise UnsupportedPolicy("NotPrincipal is not supported by this evaluator")
    spec = statement.get("Principal")
    if spec is None:
        return None
    if spec == "*":
        return "direct"
    for kind, values in spec.items():
        for value in _as_list(values):
            if kind == "Service" and principal.service and value == principal.service:
                return "direct"
            if kind == "AWS":
                if value == "*":
                    return "direct"
                if principal.arn and value == principal.arn:
                    return "direct"
                if value in (principal.account, f"arn:aws:iam::{principal.account}:root"):
                    return "account"
    return None


def statement_applies(statement: Json, request: Request) -> bool:
    """Action, resource and condition match (the principal is checked by the caller for resource policies)."""
    if "Action" in statement:
        if not action_matches(_as_list(statement["Action"]), request.action):
            return False
    elif "NotAction" in statement:
        if action_matches(_as_list(statement["NotAction"]), request.action):
            return False
    else:
        raise UnsupportedPolicy(f"statement without Action or NotAction: {statement}")
    if "Resource" in statement:
        if not resource_matches(_as_list(statement["Resource"]), request.resource):
            return False
    elif "NotResource" in statement and resource_matches(_as_list(statement["NotResource"]), request.resource):
        return False
    return condition_matches(statement.get("Condition", {}), request.context)


def evaluate(
    request: Request,
    identity: Iterable[Policy] = (),
    resource: Iterable[Policy] = (),
    *,
    key_policy: Policy | None = None,
) -> Decision:
    """The decision for one same-account request.

    ``identity``: the principal's identity policies (none for a service principal). ``resource``: the policies of
    the resource (bucket, topic, queue policy; a Lambda function's permissions). ``key_policy``: when the request
    is to a KMS key, its key policy (required: a key without a policy allowing the principal or the account denies).
    """
    allows: list[str] = []
    resource_policies = list(resource) + ([key_policy] if key_policy else [])
    for policy in identity:
        for i, statement in enumerate(policy.statements):
            if not statement_applies(statement, request):
                continue
            if statement["Effect"] == "Deny":
                return Decision(False, f"explicit Deny in {policy.source} statement {i}")
            allows.append(f"{policy.source}#{i}")
    identity_allows = bool(allows)
    account_delegates = False
    for policy in resource_policies:
        for i, statement in enumerate(policy.statements):
            match = _principal_matches(statement, request.principal)
            if match is None or not statement_applies(statement, request):
                continue
            if statement["Effect"] == "Deny":
                return Decision(False, f"explicit Deny in {policy.source} statement {i}")
            if match == "direct":
                allows.append(f"{policy.source}#{i}")
            elif policy is key_policy:
                account_delegates = True
    if key_policy is not None:
        direct = [a for a in allows if a.startswith(f"{key_policy.source}#")]
        if direct:
            return Decision(True, "allowed by the key policy", tuple(allows))
        if not account_delegates:
            return Decision(False, f"{key_policy.source} allows neither the principal nor its account")
        if not identity_allows:
            return Decision(False, "no identity-policy Allow (the key policy delegates to IAM)")
        return Decision(True, "allowed by an identity policy (the key policy delegates to IAM)", tuple(allows))
    if allows:
        return Decision(True, "allowed", tuple(allows))
    return Decision(False, "no Allow in any identity or resource policy (implicit deny)")
