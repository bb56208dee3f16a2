"""A small interpreter of Amazon States Language: the local run executes the curation state machine's own
definition, read from the synthesized template, instead of a hand-written copy of its order.

moto can run a definition, but not the ``.sync`` DataBrew and Athena integrations this workflow uses; so this
module interprets the state types the workflow has (Task, Choice, Parallel, Map, Pass, Wait, Succeed, Fail) with
their InputPath / Parameters / ResultSelector / ResultPath / OutputPath, Retry and Catch, and hands every Task
to a resolver (``recsys/local/curation.py`` maps the resources to the local engines). Semantics follow the ASL
specification, including the ones that surprise: a Task without ``ResultPath`` *replaces* its input with
the result, a Catch without ``ResultPath`` replaces it with the error.

Time is a local clock, never slept: a Wait advances it by its seconds, a Retry by its backoff
(``IntervalSeconds * BackoffRate ** attempt``, capped by ``MaxDelaySeconds``), a Task by how long it took (its
resolver may say, else the wall time). A Task's ``TimeoutSeconds`` / ``TimeoutSecondsPath`` and the
definition's ``TimeoutSeconds`` are checked against that clock (``States.Timeout``). Each would-be wait is
recorded on its step (``Step.waited``).

The definition is checked before anything runs: JSONata (``QueryLanguage: JSONata``, ``Arguments``,
``Output``, ``Assign``), unknown intrinsic functions, unresolved CloudFormation (``Fn::Sub``, ``Ref`` ...),
fields a state type does not have and every other unknown shape are refused with one line naming the state
and the field (:class:`DefinitionError`), never run with the raw input or passed through.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

#: A Task resource resolver: (resource ARN, effective parameters) -> (the task's result, a one-line note), or
#: (result, note, seconds) when the local engine knows how long the task takes on AWS (else the wall time counts).
TaskResolver = Callable[[str, Any], tuple[Any, str] | tuple[Any, str, float]]


class StatesError(Exception):
    """A failure as Step Functions names it (``States.TaskFailed``, ``DataBrew.JobRunFailed`` ...)."""

    def __init__(self, error: str, cause: str = "") -> None:
        super().__init__(f"{error}: {cause}" if cause else error)
        self.error = error
        self.cause = cause


class DefinitionError(ValueError):
    """The definition uses something this interpreter does not know: refused rather than guessed."""


class _ExecutionTimedOut(StatesError):
    """The definition's own ``TimeoutSeconds`` passed: the execution fails, no Catch applies."""


@dataclass
class Step:
    """One executed state: where (branch path), which, its type and a short note of what happened."""

    path: str
    name: str
    type: str
    note: str = ""
    waited: float = 0.0  # seconds the state would have waited on AWS (Wait, Retry backoff): counted, not slept


@dataclass
class Execution:
    status: str  # SUCCEEDED | FAILED
    output: Any = None
    error: str | None = None
    cause: str | None = None
    steps: list[Step] = field(default_factory=list)
    seconds: float = 0.0  # the local clock at the end: waits, backoffs and task durations

    @property
    def waited(self) -> float:
        """Seconds of Wait states and Retry backoff the execution would have spent on AWS."""
        return sum(s.waited for s in self.steps)


# ---- JSONPath: the subset ASL uses ($, .key, ['key'], [n], [*]) -------------------------------------------

_TOKEN = re.compile(r"\.([A-Za-z0-9_$@\-]+)|\[(\d+|\*)\]|\['([^']*)'\]")


def _tokens(path: str) -> list[str | int]:
    if not path.startswith("$"):
        raise DefinitionError(f"not a JSONPath: {path!r}")
    out: list[str | int] = []
    pos = 1
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if not m:
            raise DefinitionError(f"JSONPath {path!r}: cannot read from {path[pos:]!r}")
        key, index, quoted = m.groups()
        if key is not None or quoted is not None:
            out.append(key if key is not None else quoted)
        else:
            out.append("*" if index == "*" else int(index))
        pos = m.end()
    return out


def read_path(data: Any, path: str) -> Any:
    """The value at ``path``; a missing field is ``States.Runtime`` as on Step Functions."""
    values = [data]
    wildcard = False
    for token in _tokens(path):
        nxt = []
        for value in values:
            if token == "*":
                wildcard = True
                if isinstance(value, (list, dict)):
                    nxt.extend(value if isinstance(value, list) else value.values())
            elif isinstance(token, int):
                if not isinstance(value, list) or token >= len(value):
                    if wildcard:
                        continue
                    raise StatesError("States.Runtime", f"JSONPath {path!r}: no index {token}")
                nxt.append(value[token])
            else:
                if not isinstance(value, dict) or token not in value:
                    if wildcard:
                        continue
                    raise StatesError("States.Runtime", f"JSONPath {path!r} could not be found in the input")
                nxt.append(value[token])
        values = nxt
    return values if wildcard else values[0]


def _write_path(data: Any, path: str, value: Any) -> Any:
    """ResultPath: put ``value`` at ``path`` in a copy of ``data`` (``$`` replaces it)."""
    tokens = _tokens(path)
    if not tokens:
        return value
    out = copy.deepcopy(data) if isinstance(data, dict) else {}
    node = out
    for token in tokens[:-1]:
        if not isinstance(token, str):
            raise DefinitionError(f"ResultPath {path!r}: only field names are supported")
        node = node.setdefault(token, {})
        if not isinstance(node, dict):
            raise StatesError("States.ResultPathMatchFailure", f"{path!r} crosses a non-object")
    if not isinstance(tokens[-1], str):
        raise DefinitionError(f"ResultPath {path!r}: only field names are supported")
    node[tokens[-1]] = value
    return out


# ---- Parameters / ResultSelector templates and intrinsic functions -------------------------------------


def _split_args(text: str) -> list[str]:
    args, depth, quote, start = [], 0, False, 0
    for i, ch in enumerate(text):
        if ch == "'" and (i == 0 or text[i - 1] != "\\"):
            quote = not quote
        elif not quote and ch == "(":
            depth += 1
        elif not quote and ch == ")":
            depth -= 1
        elif not quote and depth == 0 and ch == ",":
            args.append(text[start:i].strip())
            start = i + 1
    tail = text[start:].strip()
    return [*args, tail] if tail else args


def _format(template: str, *values: Any) -> str:
    parts = template.split("{}")
    if len(parts) - 1 != len(values):
        raise StatesError("States.IntrinsicFailure", "States.Format: {} count differs from the arguments")
    shown = [v if isinstance(v, str) else json.dumps(v, separators=(",", ":")) for v in values] + [""]
    return "".join(p + v for p, v in zip(parts, shown, strict=True))


def _partition(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _hash(text: str, algorithm: str) -> str:
    names = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}
    if algorithm not in names:
        raise StatesError("States.IntrinsicFailure", f"States.Hash: unknown algorithm {algorithm!r}")
    return hashlib.new(names[algorithm], text.encode()).hexdigest()


def _merge(a: dict, b: dict, deep: bool) -> dict:
    if deep:
        raise StatesError("States.IntrinsicFailure", "States.JsonMerge: deep merging is not supported (as on AWS)")
    return {**a, **b}


#: The intrinsic functions interpreted, with AWS's semantics; any other name is refused before the run.
_INTRINSICS: dict[str, Callable[..., Any]] = {
    "States.Format": _format,
    "States.StringToJson": lambda text: json.loads(text),
    "States.JsonToString": lambda value: json.dumps(value, separators=(",", ":")),
    "States.Array": lambda *items: list(items),
    "States.ArrayPartition": _partition,
    "States.ArrayContains": lambda items, value: value in items,
    "States.ArrayRange": lambda first, last, step: list(range(first, last + (1 if step > 0 else -1), step)),
    "States.ArrayGetItem": lambda items, index: items[index],
    "States.ArrayLength": lambda items: len(items),
    "States.ArrayUnique": lambda items: [v for i, v in enumerate(items) if v not in items[:i]],
    "States.Base64Encode": lambda text: base64.b64encode(text.encode()).decode(),
    "States.Base64Decode": lambda text: base64.b64decode(text).decode(),
    "States.Hash": _hash,
    "States.JsonMerge": _merge,
    "States.MathAdd": lambda a, b: a + b,
    "States.StringSplit": lambda text, sep: [part for part in re.split("|".join(map(re.escape, sep)), text) if part],
    "States.UUID": lambda: str(uuid.uuid4()),
}
_CALL = re.compile(r"(States\.\w+)\((.*)\)", re.S)


def _intrinsic(expr: str, data: Any, context: dict) -> Any:
    m = _CALL.fullmatch(expr.strip())
    if not m:
        return _argument(expr, data, context)
    name, args = m.group(1), [_argument(a, data, context) for a in _split_args(m.group(2))]
    if name not in _INTRINSICS:
        raise DefinitionError(f"intrinsic function {name} is not interpreted locally")
    try:
        return _INTRINSICS[name](*args)
    except StatesError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, ZeroDivisionError) as err:
        raise StatesError("States.IntrinsicFailure", f"{expr}: {err}") from err


def _check_expression(expr: Any) -> None:
    """A ``.$`` value: a path (``$``, ``$$``) or an intrinsic function call whose every argument is valid."""
    if not isinstance(expr, str):
        raise ValueError(f"expected a path or an intrinsic function, got {expr!r}")
    expr = expr.strip()
    if expr.startswith("$"):
        _tokens("$" + expr[2:] if expr.startswith("$$") else expr)
        return
    m = _CALL.fullmatch(expr)
    if not m:
        raise ValueError(f"{expr!r} is neither a path nor an intrinsic function call")
    if m.group(1) not in _INTRINSICS:
        raise ValueError(f"intrinsic function {m.group(1)} is not interpreted locally")
    for arg in _split_args(m.group(2)):
        if arg.startswith(("$", "States.")):
            _check_expression(arg)
        elif not (arg.startswith("'") and arg.endswith("'")):
            try:
                json.loads(arg)
            except json.JSONDecodeError:
                raise ValueError(f"argument {arg!r} of {m.group(1)} is not a path, string or JSON value") from None


def _argument(arg: str, data: Any, context: dict) -> Any:
    arg = arg.strip()
    if arg.startswith("States."):
        return _intrinsic(arg, data, context)
    if arg.startswith("$$"):
        return read_path(context, "$" + arg[2:])
    if arg.startswith("$"):
        return read_path(data, arg)
    if arg.startswith("'") and arg.endswith("'"):
        return arg[1:-1].replace("\\'", "'")
    return json.loads(arg)


def apply_template(template: Any, data: Any, context: dict) -> Any:
    """Parameters / ResultSelector: keys ending in ``.$`` take a path or an intrinsic function's value."""
    if isinstance(template, dict):
        out = {}
        for key, value in template.items():
            if key.endswith(".$"):
                out[key[:-2]] = _intrinsic(value, data, context)
            else:
                out[key] = apply_template(value, data, context)
        return out
    if isinstance(template, list):
        return [apply_template(v, data, context) for v in template]
    return copy.deepcopy(template)


# ---- Choice rules ---------------------------------------------------------------------------------------

_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "Equals": lambda a, b: a == b,
    "LessThan": lambda a, b: a < b,
    "GreaterThan": lambda a, b: a > b,
    "LessThanEquals": lambda a, b: a <= b,
    "GreaterThanEquals": lambda a, b: a >= b,
}
_KINDS: dict[str, Callable[[Any], bool]] = {
    "String": lambda v: isinstance(v, str),
    "Numeric": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "Boolean": lambda v: isinstance(v, bool),
    "Timestamp": lambda v: isinstance(v, str) and _is_timestamp(v),
}


def _is_timestamp(value: str) -> bool:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None
    except ValueError:
        return False


def _rule_matches(rule: dict, data: Any) -> bool:
    if "And" in rule:
        return all(_rule_matches(r, data) for r in rule["And"])
    if "Or" in rule:
        return any(_rule_matches(r, data) for r in rule["Or"])
    if "Not" in rule:
        return not _rule_matches(rule["Not"], data)
    try:
        value = read_path(data, rule["Variable"])
        present = True
    except StatesError:
        value, present = None, False
    for op, expected in rule.items():
        if op in ("Variable", "Next"):
            continue
        if op == "IsPresent":
            return present == expected
        if not present:
            raise StatesError("States.Runtime", f"Choice: {rule['Variable']} could not be found in the input")
        if op == "IsNull":
            return (value is None) == expected
        m = re.fullmatch(r"(String|Numeric|Boolean|Timestamp)(Equals|LessThan|GreaterThan|LessThanEquals|"
                         r"GreaterThanEquals)(Path)?", op)  # fmt: skip
        if m:
            kind, cmp, by_path = m.groups()
            other = read_path(data, expected) if by_path else expected
            if kind == "Timestamp":  # compared as instants, not as text (zones and fractions differ)
                if not (_KINDS[kind](value) and _KINDS[kind](other)):
                    return False
                value, other = _timestamp(value, "Choice"), _timestamp(other, "Choice")
                return _COMPARISONS[cmp](value, other)
            return _KINDS[kind](value) and _COMPARISONS[cmp](value, other)
        if op == "StringMatches":
            pattern = "".join(".*" if ch == "*" else re.escape(ch) for ch in expected)
            return isinstance(value, str) and re.fullmatch(pattern, value) is not None
        m = re.fullmatch(r"Is(String|Numeric|Boolean|Timestamp)", op)
        if m:
            return _KINDS[m.group(1)](value) == expected
        raise DefinitionError(f"Choice operator {op} is not interpreted locally")
    raise DefinitionError(f"Choice rule without a comparison: {rule}")


# ---- the interpreter ------------------------------------------------------------------------------------

# ---- the definition, checked before it runs -------------------------------------------------------------

_IO = ("InputPath", "OutputPath")
_RESULT = ("Parameters", "ResultSelector", "ResultPath")
_FIELDS: dict[str, frozenset[str]] = {
    "Task": frozenset({"Resource", *_IO, *_RESULT, "Retry", "Catch", "TimeoutSeconds", "TimeoutSecondsPath"}),
    "Parallel": frozenset({"Branches", *_IO, *_RESULT, "Retry", "Catch"}),
    "Map": frozenset(
        {
            *_IO,
            *_RESULT,
            "Retry",
            "Catch",
            "ItemsPath",
            "ItemSelector",
            "ItemProcessor",
            "Iterator",
            "MaxConcurrency",
            "MaxConcurrencyPath",
        }
    ),  # fmt: skip
    "Pass": frozenset({*_IO, "Parameters", "Result", "ResultPath"}),
    "Wait": frozenset({*_IO, "Seconds", "SecondsPath", "Timestamp", "TimestampPath"}),
    "Choice": frozenset({*_IO, "Choices", "Default"}),
    "Succeed": frozenset(_IO),
    "Fail": frozenset({"Error", "Cause", "ErrorPath", "CausePath"}),
}
_TYPES = frozenset(_FIELDS)
_FLOW = frozenset({"Type", "Comment", "QueryLanguage", "Next", "End"})
#: Fields AWS has that are refused by name, with why (rather than run as if they were absent).
_REFUSED = {
    "Arguments": "a JSONata field",
    "Output": "a JSONata field",
    "Assign": "workflow variables",
    "Items": "a JSONata field",
    "Condition": "a JSONata field",
    "HeartbeatSeconds": "no local engine sends heartbeats",
    "HeartbeatSecondsPath": "no local engine sends heartbeats",
    "Credentials": "cross-account task credentials",
    **dict.fromkeys(
        (
            "ItemReader",
            "ItemBatcher",
            "ResultWriter",
            "ToleratedFailureCount",
            "ToleratedFailurePercentage",
            "ToleratedFailureCountPath",
            "ToleratedFailurePercentagePath",
            "Label",
        ),
        "a distributed Map's",
    ),  # fmt: skip
}
_MACHINE_FIELDS = frozenset({"StartAt", "States", "Comment", "Version", "TimeoutSeconds", "QueryLanguage",
                             "ProcessorConfig"})  # fmt: skip
_RETRIER_FIELDS = frozenset({"ErrorEquals", "IntervalSeconds", "MaxAttempts", "BackoffRate", "MaxDelaySeconds",
                             "JitterStrategy", "Comment"})  # fmt: skip
_CATCHER_FIELDS = frozenset({"ErrorEquals", "Next", "ResultPath", "Comment"})
_CHOICE_OPERATOR = re.compile(
    r"(String|Numeric|Timestamp)(Equals|LessThan|GreaterThan|LessThanEquals|GreaterThanEquals)(Path)?"
    r"|Boolean(Equals)(Path)?|StringMatches|IsNull|IsPresent|Is(String|Numeric|Boolean|Timestamp)"
)
_CFN = re.compile(r"^(Ref|Fn::\w+|Condition)$")
_SUBSTITUTION = re.compile(r"\$\{[^}]*\}")


def check_definition(machine: dict, where: str = "") -> None:
    """Refuse, before anything runs, whatever this interpreter would not run as Step Functions does: one line
    naming the state (``Parallel[branch]/state`` inside branches) and the field."""
    label = f"branch {where.rstrip('/')}" if where else "the definition"
    if not isinstance(machine, dict) or not isinstance(machine.get("States"), dict) or not machine["States"]:
        raise DefinitionError(f"{label}: no States")
    for key in machine:
        if key not in _MACHINE_FIELDS:
            raise DefinitionError(f"{label}: field {key} is not interpreted locally")
    _check_language(machine, label)
    if machine.get("StartAt") not in machine["States"]:
        raise DefinitionError(f"{label}: StartAt {machine.get('StartAt')!r} is not one of its states")
    if "TimeoutSeconds" in machine:
        _check_seconds(machine["TimeoutSeconds"], f"{label}: field TimeoutSeconds")
    config = machine.get("ProcessorConfig", {})
    if "ProcessorConfig" in machine and (
        not where or not isinstance(config, dict) or config.get("Mode", "INLINE") != "INLINE" or set(config) - {"Mode"}
    ):
        raise DefinitionError(f"{label}: field ProcessorConfig {config!r} (a distributed Map) is not interpreted "
                              "locally")  # fmt: skip
    for name, state in machine["States"].items():
        _check_state(machine, f"{where}{name}", state)


def _check_language(node: dict, label: str) -> None:
    if node.get("QueryLanguage", "JSONPath") != "JSONPath":
        raise DefinitionError(f"{label}: field QueryLanguage {node['QueryLanguage']!r} (JSONata) is not "
                              "interpreted locally; refused rather than run with the raw input")  # fmt: skip


def _check_seconds(value: Any, label: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise DefinitionError(f"{label}: expected a positive integer, got {value!r}")


def _check_state(machine: dict, name: str, state: Any) -> None:
    label = f"state {name!r}"
    if not isinstance(state, dict):
        raise DefinitionError(f"{label}: expected an object, got {state!r}")
    kind = state.get("Type")
    if kind not in _FIELDS:
        raise DefinitionError(f"{label}: state type {kind!r} is not interpreted locally")
    _check_language(state, label)
    for key in state:
        if key in _REFUSED:
            raise DefinitionError(f"{label}: field {key} ({_REFUSED[key]}) is not interpreted locally; refused "
                                  "rather than run without it")  # fmt: skip
        if key not in _FIELDS[kind] and key not in _FLOW:
            raise DefinitionError(f"{label}: field {key} is not a field of a {kind} state (or not interpreted)")
        _check_cloudformation(state[key], f"{label}, field {key}")

    def target(value: Any, what: str) -> None:
        if value not in machine["States"]:
            raise DefinitionError(f"{label}: {what} {value!r} is not a state of its machine")

    if kind in ("Choice", "Succeed", "Fail"):
        if "Next" in state or "End" in state:
            raise DefinitionError(f"{label}: a {kind} state has no Next or End")
    elif state.get("End") is True:
        if "Next" in state:
            raise DefinitionError(f"{label}: both Next and End")
    elif "Next" in state:
        target(state["Next"], "Next")
    else:
        raise DefinitionError(f"{label}: neither Next nor End: true")
    for key in ("InputPath", "OutputPath", "ResultPath"):
        if state.get(key) is not None:
            try:
                _tokens(state[key])
            except DefinitionError as err:
                raise DefinitionError(f"{label}, field {key}: {err}") from None
    for key in ("Parameters", "ResultSelector"):
        if key in state:
            _check_template(state[key], f"{label}, field {key}")
    for key in ("TimeoutSecondsPath", "SecondsPath", "TimestampPath", "ErrorPath", "CausePath"):
        if key in state:
            try:
                _check_expression(state[key])
            except (ValueError, DefinitionError) as err:
                raise DefinitionError(f"{label}, field {key}: {err}") from None
    if "TimeoutSeconds" in state:
        _check_seconds(state["TimeoutSeconds"], f"{label}, field TimeoutSeconds")
    if kind == "Task" and not isinstance(state.get("Resource"), str):
        raise DefinitionError(f"{label}, field Resource: expected an ARN string, got {state.get('Resource')!r}")
    if kind == "Wait":
        _check_wait(state, label)
    for i, retrier in enumerate(state.get("Retry", [])):
        _check_retrier(retrier, f"{label}, field Retry[{i}]", last=i == len(state["Retry"]) - 1)
    for i, catcher in enumerate(state.get("Catch", [])):
        where = f"{label}, field Catch[{i}]"
        _check_errors(catcher, where, last=i == len(state["Catch"]) - 1)
        for key in catcher:
            if key not in _CATCHER_FIELDS:
                why = f" ({_REFUSED[key]})" if key in _REFUSED else ""
                raise DefinitionError(f"{where}: field {key}{why} is not interpreted locally")
        target(catcher.get("Next"), f"Catch[{i}] Next")
        if catcher.get("ResultPath") is not None:
            _tokens(catcher["ResultPath"])
    if kind == "Choice":
        if not state.get("Choices"):
            raise DefinitionError(f"{label}: a Choice state needs Choices")
        for i, rule in enumerate(state["Choices"]):
            _check_rule(rule, f"{label}, field Choices[{i}]", top=True)
            target(rule["Next"], f"Choices[{i}] Next")
        if "Default" in state:
            target(state["Default"], "Default")
    if kind == "Parallel":
        if not isinstance(state.get("Branches"), list) or not state["Branches"]:
            raise DefinitionError(f"{label}: a Parallel state needs Branches")
        for i, branch in enumerate(state["Branches"]):
            check_definition(branch, f"{name}[{i}]/")
    if kind == "Map":
        processor = _processor(state)
        if not processor or ("ItemProcessor" in state and "Iterator" in state):
            raise DefinitionError(f"{label}: a Map state needs one ItemProcessor (or Iterator)")
        if "ItemSelector" in state and "Parameters" in state:
            raise DefinitionError(f"{label}: both ItemSelector and Parameters (its older name)")
        for key in ("ItemsPath", "MaxConcurrencyPath"):
            if key in state:
                try:
                    _tokens(state[key])
                except DefinitionError as err:
                    raise DefinitionError(f"{label}, field {key}: {err}") from None
        if "ItemSelector" in state:
            _check_template(state["ItemSelector"], f"{label}, field ItemSelector")
        check_definition(processor, f"{name}[*]/")
    if kind == "Fail":
        for key in ("Error", "Cause"):
            if key in state and not isinstance(state[key], str):
                raise DefinitionError(f"{label}, field {key}: expected a string, got {state[key]!r}")


def _check_wait(state: dict, label: str) -> None:
    if sum(k in state for k in ("Seconds", "SecondsPath", "Timestamp", "TimestampPath")) != 1:
        raise DefinitionError(f"{label}: a Wait has exactly one of Seconds, SecondsPath, Timestamp, TimestampPath")
    seconds = state.get("Seconds", 0)
    if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < 0:
        raise DefinitionError(f"{label}, field Seconds: expected a non-negative integer, got {seconds!r}")
    if "Timestamp" in state:
        _timestamp(state["Timestamp"], f"{label}, field Timestamp", DefinitionError)


def _check_cloudformation(node: Any, label: str) -> None:
    """A CloudFormation function or a ``${...}`` substitution left in the definition: the template was not
    resolved (an ``Fn::Sub``, a ``DefinitionSubstitutions`` token); refused, never passed through as data."""
    if isinstance(node, dict):
        for key, value in node.items():
            if _CFN.match(key) and len(node) == 1:
                raise DefinitionError(f"{label}: unresolved CloudFormation {key} ({json.dumps(node)[:80]})")
            _check_cloudformation(value, label)
    elif isinstance(node, list):
        for value in node:
            _check_cloudformation(value, label)
    elif isinstance(node, str) and (m := _SUBSTITUTION.search(node)):
        raise DefinitionError(f"{label}: unresolved substitution {m.group(0)} (Fn::Sub or DefinitionSubstitutions)")


def _check_template(template: Any, label: str) -> None:
    if isinstance(template, dict):
        for key, value in template.items():
            if key.endswith(".$"):
                try:
                    _check_expression(value)
                except (ValueError, DefinitionError) as err:
                    raise DefinitionError(f"{label}, {key}: {err}") from None
            else:
                _check_template(value, f"{label}.{key}")
    elif isinstance(template, list):
        for value in template:
            _check_template(value, label)


def _check_errors(handler: Any, label: str, last: bool) -> None:
    if not isinstance(handler, dict):
        raise DefinitionError(f"{label}: expected an object, got {handler!r}")
    errors = handler.get("ErrorEquals")
    if not isinstance(errors, list) or not errors or not all(isinstance(e, str) for e in errors):
        raise DefinitionError(f"{label}: ErrorEquals must be a non-empty list of error names")
    if "States.ALL" in errors and (len(errors) > 1 or not last):
        raise DefinitionError(f"{label}: States.ALL must appear alone, in the last retrier or catcher")


def _check_retrier(retrier: Any, label: str, last: bool) -> None:
    _check_errors(retrier, label, last)
    for key in retrier:
        if key not in _RETRIER_FIELDS:
            raise DefinitionError(f"{label}: field {key} is not a field of a retrier")
    checks = {
        "IntervalSeconds": lambda v: isinstance(v, int) and v >= 1,
        "MaxAttempts": lambda v: isinstance(v, int) and v >= 0,
        "BackoffRate": lambda v: isinstance(v, (int, float)) and v >= 1.0,
        "MaxDelaySeconds": lambda v: isinstance(v, int) and v >= 1,
        "JitterStrategy": lambda v: v in ("FULL", "NONE"),
    }
    for key, ok in checks.items():
        if key in retrier and (isinstance(retrier[key], bool) or not ok(retrier[key])):
            raise DefinitionError(f"{label}: field {key} has an invalid value {retrier[key]!r}")


def _check_rule(rule: Any, label: str, top: bool) -> None:
    if not isinstance(rule, dict):
        raise DefinitionError(f"{label}: expected an object, got {rule!r}")
    if top and "Next" not in rule:
        raise DefinitionError(f"{label}: a top-level choice rule needs Next")
    if not top and "Next" in rule:
        raise DefinitionError(f"{label}: a nested choice rule has no Next")
    if "Condition" in rule:
        raise DefinitionError(f"{label}: field Condition (JSONata) is not interpreted locally")
    if "Assign" in rule:
        raise DefinitionError(f"{label}: field Assign (workflow variables) is not interpreted locally")
    ops = [k for k in rule if k not in ("Next", "Variable", "Comment")]
    if len(ops) != 1:
        raise DefinitionError(f"{label}: expected exactly one comparison (or And/Or/Not), got {ops}")
    (op,) = ops
    if op in ("And", "Or"):
        if not isinstance(rule[op], list) or not rule[op]:
            raise DefinitionError(f"{label}: {op} takes a non-empty list of rules")
        for i, sub in enumerate(rule[op]):
            _check_rule(sub, f"{label}.{op}[{i}]", top=False)
        return
    if op == "Not":
        _check_rule(rule["Not"], f"{label}.Not", top=False)
        return
    if not _CHOICE_OPERATOR.fullmatch(op):
        raise DefinitionError(f"{label}: Choice operator {op} is not interpreted locally")
    try:
        _tokens(rule.get("Variable", ""))
        if op.endswith("Path"):
            _tokens(rule[op])
    except DefinitionError as err:
        raise DefinitionError(f"{label}: {err}") from None


def _timestamp(value: Any, label: str, error: type[Exception] = StatesError) -> datetime:
    """An RFC 3339 timestamp (with its zone, as Step Functions requires)."""
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        why = f"{label}: {value!r} is not an RFC 3339 timestamp with a zone"
        raise error(why) if error is DefinitionError else StatesError("States.Runtime", why)
    return parsed


# ---- the interpreter ------------------------------------------------------------------------------------


#: Errors ``States.ALL`` does not match (Step Functions' error names); ``States.Runtime`` matches nothing at all:
#: it is never retried or caught, the execution fails.
_TERMINAL = frozenset({"States.Runtime", "States.DataLimitExceeded"})


def _matches(error: str, equals: list[str], from_task: bool) -> bool:
    if error == "States.Runtime":
        return False
    return any(
        (e == "States.ALL" and error not in _TERMINAL)
        or e == error
        or (e == "States.TaskFailed" and from_task and error != "States.Timeout")
        for e in equals
    )


def _backoff(retrier: dict, attempt: int) -> float:
    """The wait before retry ``attempt + 1``: IntervalSeconds * BackoffRate ** attempt, capped by MaxDelaySeconds."""
    wait = retrier.get("IntervalSeconds", 1) * retrier.get("BackoffRate", 2.0) ** attempt
    return float(min(wait, retrier["MaxDelaySeconds"])) if "MaxDelaySeconds" in retrier else float(wait)


class Interpreter:
    """Runs a definition; every Task's resource and effective parameters go to ``resolve``. The definition is
    checked first (:func:`check_definition`): what would not run as on Step Functions is refused."""

    def __init__(self, definition: dict, resolve: TaskResolver, *, max_steps: int = 10_000) -> None:
        check_definition(definition)
        self.definition = definition
        self.resolve = resolve
        self.max_steps = max_steps
        self.steps: list[Step] = []
        self.clock = 0.0  # seconds since the execution started, on the local clock
        self.timeout = definition.get("TimeoutSeconds")

    def execute(self, data: Any, name: str = "local", start: datetime | None = None) -> Execution:
        """Run with ``data`` as the execution input (what started it: an EventBridge event, say)."""
        self.start = start or datetime.now(UTC)
        context = {
            "Execution": {"Id": f"arn:aws:states:::execution:local:{name}", "Name": name,
                          "Input": copy.deepcopy(data), "StartTime": _iso(self.start)},
            "StateMachine": {"Name": "local"},
        }  # fmt: skip
        try:
            output = self._run(self.definition, data, context, "")
        except StatesError as err:
            return Execution("FAILED", None, err.error, err.cause, self.steps, self.clock)
        return Execution("SUCCEEDED", output, None, None, self.steps, self.clock)

    def _advance(self, seconds: float) -> None:
        self.clock += seconds
        if self.timeout is not None and self.clock > self.timeout:
            raise _ExecutionTimedOut("States.Timeout", f"the execution ran past its TimeoutSeconds {self.timeout} "
                                     f"(local clock {self.clock:.0f} s)")  # fmt: skip

    def _run(self, machine: dict, data: Any, context: dict, path: str) -> Any:
        name = machine["StartAt"]
        while True:
            state = machine["States"][name]
            attempts = [0] * len(state.get("Retry", []))
            while True:  # one pass per attempt: a retried state runs again on the same input
                if len(self.steps) >= self.max_steps:
                    raise StatesError("States.Runtime", f"more than {self.max_steps} states executed (a loop?)")
                step = Step(path, name, state["Type"])
                self.steps.append(step)
                context["State"] = {"Name": name, "EnteredTime": _iso(self.start + timedelta(seconds=self.clock)),
                                    "RetryCount": sum(attempts)}  # fmt: skip
                try:
                    data, nxt = self._state(state, data, context, step, path)
                    break
                except _ExecutionTimedOut:
                    step.note = step.note or "failed: States.Timeout (the execution's)"
                    raise
                except StatesError as err:
                    from_task = state["Type"] == "Task"
                    retriers = [i for i, r in enumerate(state.get("Retry", []))
                                if _matches(err.error, r["ErrorEquals"], from_task)]  # fmt: skip
                    if retriers and attempts[retriers[0]] < state["Retry"][retriers[0]].get("MaxAttempts", 3):
                        retrier, i = state["Retry"][retriers[0]], retriers[0]
                        step.waited = _backoff(retrier, attempts[i])
                        attempts[i] += 1
                        jitter = "at most " if retrier.get("JitterStrategy") == "FULL" else ""
                        step.note = (f"{err.error}: retry {attempts[i]}/{retrier.get('MaxAttempts', 3)} after "
                                     f"{jitter}{step.waited:g} s (counted, not slept)")  # fmt: skip
                        self._advance(step.waited)
                        continue
                    data, nxt = self._catch(state, data, err, step)
                    break
            if nxt is None:
                return data
            name = nxt

    @staticmethod
    def _catch(state: dict, data: Any, err: StatesError, step: Step) -> tuple[Any, str]:
        from_task = state["Type"] == "Task"
        catchers = [c for c in state.get("Catch", []) if _matches(err.error, c["ErrorEquals"], from_task)]
        if not catchers:
            step.note = f"failed: {err.error}" + (f" ({step.note})" if step.note else "")
            raise err
        catcher = catchers[0]
        step.note = f"caught {err.error} -> {catcher['Next']}"
        error = {"Error": err.error, "Cause": err.cause}
        result_path = catcher.get("ResultPath", "$")
        return (data if result_path is None else _write_path(data, result_path, error)), catcher["Next"]

    def _state(self, state: dict, data: Any, context: dict, step: Step, path: str) -> tuple[Any, str | None]:
        kind = state["Type"]
        if kind == "Fail":
            error = _intrinsic(state["ErrorPath"], data, context) if "ErrorPath" in state else state.get("Error")
            cause = _intrinsic(state["CausePath"], data, context) if "CausePath" in state else state.get("Cause")
            raise StatesError(str(error or "States.Fail"), str(cause or ""))
        if kind == "Succeed":
            return self._output(state, self._input(state, data)), None
        effective = self._input(state, data)
        if kind == "Choice":
            for rule in state.get("Choices", []):
                if _rule_matches(rule, effective):
                    step.note = f"-> {rule['Next']}"
                    return self._output(state, effective), rule["Next"]
            if "Default" not in state:
                raise StatesError("States.NoChoiceMatched", f"no rule matched and no Default in {step.name}")
            step.note = f"-> {state['Default']} (default)"
            return self._output(state, effective), state["Default"]
        if kind == "Wait":
            step.waited = self._wait_seconds(state, effective, context)
            step.note = f"waited {step.waited:g} s on the local clock (not slept)"
            self._advance(step.waited)
            return self._output(state, effective), self._next(state)
        if "Parameters" in state and kind != "Map":  # a Map's Parameters (ItemSelector's older name) is per item
            effective = apply_template(state["Parameters"], effective, context)
        if kind == "Map":
            result = self._map(state, effective, context, step, path)
        elif kind == "Pass":
            result = state.get("Result", effective)
        elif kind == "Task":
            result = self._task(state, effective, data, context, step)
        else:  # Parallel
            result = [
                self._run(branch, effective, context, f"{path}{step.name}[{i}]/")
                for i, branch in enumerate(state["Branches"])
            ]
        if "ResultSelector" in state:
            result = apply_template(state["ResultSelector"], result, context)
        result_path = state.get("ResultPath", "$")
        merged = data if result_path is None else _write_path(data, result_path, result)
        return self._output(state, merged), self._next(state)

    def _map(self, state: dict, effective: Any, context: dict, step: Step, path: str) -> list:
        """Each item of ``ItemsPath`` through the item processor, in order (``MaxConcurrency`` only bounds AWS's
        parallelism; the result is in item order either way)."""
        items_path = state.get("ItemsPath", "$")
        items = read_path(effective, items_path)
        if not isinstance(items, list):
            raise StatesError("States.Runtime", f"Map {step.name}: ItemsPath {items_path} is not an array")
        selector = state.get("ItemSelector", state.get("Parameters"))
        out = []
        for index, item in enumerate(items):
            ctx = {**context, "Map": {"Item": {"Index": index, "Value": copy.deepcopy(item)}}}
            data = item if selector is None else apply_template(selector, effective, ctx)
            out.append(self._run(_processor(state), data, ctx, f"{path}{step.name}[{index}]/"))
        step.note = f"{len(items)} item(s)"
        return out

    def _task(self, state: dict, effective: Any, data: Any, context: dict, step: Step) -> Any:
        """Run the Task's resource; its duration (the resolver's, else the wall time) advances the clock and is
        checked against TimeoutSeconds / TimeoutSecondsPath (``States.Timeout``, which Retry and Catch see)."""
        limit = state.get("TimeoutSeconds")
        if "TimeoutSecondsPath" in state:
            limit = _intrinsic(state["TimeoutSecondsPath"], data, context)
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
                raise StatesError("States.Runtime", f"TimeoutSecondsPath gave {limit!r}, not a positive integer")
        started = time.perf_counter()
        try:
            answer = self.resolve(state["Resource"], effective)
        except StatesError:
            self._advance(time.perf_counter() - started)  # a failed attempt took its time too
            raise
        result, step.note = answer[0], answer[1]
        seconds = float(answer[2]) if len(answer) > 2 else time.perf_counter() - started  # type: ignore[misc]
        if limit is not None and seconds > limit:
            self._advance(float(limit))
            raise StatesError("States.Timeout", f"the task took {seconds:.0f} s, more than its TimeoutSeconds {limit}")
        self._advance(seconds)
        return result

    def _wait_seconds(self, state: dict, data: Any, context: dict) -> float:
        if "Seconds" in state:
            return float(state["Seconds"])
        if "SecondsPath" in state:
            seconds = _intrinsic(state["SecondsPath"], data, context)
            if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < 0:
                raise StatesError("States.Runtime", f"SecondsPath gave {seconds!r}, not a non-negative integer")
            return float(seconds)
        stamp = state["Timestamp"] if "Timestamp" in state else _intrinsic(state["TimestampPath"], data, context)
        until = _timestamp(stamp, "Wait")
        now = self.start + timedelta(seconds=self.clock)
        return max(0.0, (until - now).total_seconds())

    @staticmethod
    def _input(state: dict, data: Any) -> Any:
        path = state.get("InputPath", "$")
        return {} if path is None else read_path(data, path)

    @staticmethod
    def _output(state: dict, data: Any) -> Any:
        path = state.get("OutputPath", "$")
        return {} if path is None else read_path(data, path)

    @staticmethod
    def _next(state: dict) -> str | None:
        return None if state.get("End") else state["Next"]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _processor(state: dict) -> dict:
    """A Map's item processor (``ItemProcessor``, or its older name ``Iterator``)."""
    return state.get("ItemProcessor") or state.get("Iterator") or {}


def state_lines(steps: list[Step], width: int = 114) -> list[str]:
    """Printable lines of the top-level states in execution order; consecutive states about one subject (a
    crawler, a feature table, a table's quality) grouped: ``recsys-dev-curated: Start, Wait, Get, ready?, done``;
    a Parallel with its branch count and how many branches caught an error."""
    groups: list[tuple[set[str], list[Step]]] = []
    for st in (s for s in steps if not s.path):
        words = set(st.name.split())
        if groups and st.type != "Parallel" and groups[-1][0] & words:
            groups[-1] = (groups[-1][0] & words, [*groups[-1][1], st])
        else:
            groups.append((words, [st]))
    labels = []
    for subject, members in groups:
        if len(members) == 1:
            st = members[0]
            labels.append(st.name if st.type != "Parallel" else f"{st.name} ({_branch_summary(steps, st.name)})")
            continue
        (word,) = sorted(subject)[:1]
        labels.append(f"{word}: " + ", ".join(" ".join(w for w in m.name.split() if w != word) for m in members))
    lines, line = [], "states:"
    for i, label in enumerate(labels):
        piece = f" {label}" + (" ->" if i < len(labels) - 1 else "")
        if len(line) + len(piece) > width:
            lines.append(line)
            line = "   "
        line += piece
    return [*lines, line]


def _branch_summary(steps: list[Step], parallel: str) -> str:
    branches = {st.path for st in steps if st.path.startswith(f"{parallel}[")}
    skipped = [st for st in steps if st.path.startswith(f"{parallel}[") and st.note.startswith("caught")]
    return f"{len(branches)} branches, {len(skipped)} caught"
