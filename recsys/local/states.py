"""A small interpreter of Amazon States Language: the local run executes the curation state machine's own
definition, read from the synthesized template, instead of a hand-written copy of its order.

moto can run a definition, but not the ``.sync`` DataBrew and Athena integrations this workflow uses; so this
module interprets the state types the workflow has (Task, Choice, Parallel, Pass, Wait, Succeed, Fail) with
their InputPath / Parameters / ResultSelector / ResultPath / OutputPath and Catch, and hands every Task to a
resolver (``recsys/local/curation.py`` maps the resources to the local engines). Semantics follow the ASL
specification, including the ones that surprise: a Task without ``ResultPath`` *replaces* its input with
the result, a Catch without ``ResultPath`` replaces it with the error. Wait states do not sleep (recorded only);
Retry is not interpreted (each Task runs once: the local engines are deterministic).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: A Task resource resolver: (resource ARN, effective parameters) -> (the task's result, a one-line note).
TaskResolver = Callable[[str, Any], tuple[Any, str]]


class StatesError(Exception):
    """A failure as Step Functions names it (``States.TaskFailed``, ``DataBrew.JobRunFailed`` ...)."""

    def __init__(self, error: str, cause: str = "") -> None:
        super().__init__(f"{error}: {cause}" if cause else error)
        self.error = error
        self.cause = cause


class DefinitionError(ValueError):
    """The definition uses something this interpreter does not know: refused rather than guessed."""


@dataclass
class Step:
    """One executed state: where (branch path), which, its type and a short note of what happened."""

    path: str
    name: str
    type: str
    note: str = ""


@dataclass
class Execution:
    status: str  # SUCCEEDED | FAILED
    output: Any = None
    error: str | None = None
    cause: str | None = None
    steps: list[Step] = field(default_factory=list)


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


def _intrinsic(expr: str, data: Any, context: dict) -> Any:
    m = re.fullmatch(r"(States\.\w+)\((.*)\)", expr.strip(), re.S)
    if not m:
        return _argument(expr, data, context)
    name, args = m.group(1), [_argument(a, data, context) for a in _split_args(m.group(2))]
    if name == "States.StringToJson":
        return json.loads(args[0])
    if name == "States.JsonToString":
        return json.dumps(args[0], separators=(",", ":"))
    if name == "States.Format":
        parts = args[0].split("{}")
        if len(parts) - 1 != len(args) - 1:
            raise StatesError("States.IntrinsicFailure", f"{expr}: {{}} count differs from the arguments")
        values = [str(a) for a in args[1:]] + [""]
        return "".join(p + v for p, v in zip(parts, values, strict=True))
    if name == "States.Array":
        return list(args)
    if name == "States.ArrayLength":
        return len(args[0])
    if name == "States.MathAdd":
        return args[0] + args[1]
    raise DefinitionError(f"intrinsic function {name} is not interpreted locally")


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
    "Timestamp": lambda v: isinstance(v, str),
}


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

_TYPES = frozenset({"Task", "Choice", "Parallel", "Pass", "Wait", "Succeed", "Fail"})


def _matches(error: str, equals: list[str], from_task: bool) -> bool:
    return any(
        e == "States.ALL" or e == error or (e == "States.TaskFailed" and from_task and error != "States.Timeout")
        for e in equals
    )


class Interpreter:
    """Runs a definition; every Task's resource and effective parameters go to ``resolve``."""

    def __init__(self, definition: dict, resolve: TaskResolver, *, max_steps: int = 10_000) -> None:
        unknown = sorted({s.get("Type") for s in _all_states(definition)} - _TYPES)
        if unknown:
            raise DefinitionError(f"state types {unknown} are not interpreted locally")
        self.definition = definition
        self.resolve = resolve
        self.max_steps = max_steps
        self.steps: list[Step] = []

    def execute(self, data: Any, name: str = "local") -> Execution:
        context = {"Execution": {"Name": name, "Input": copy.deepcopy(data)}}
        try:
            output = self._run(self.definition, data, context, "")
        except StatesError as err:
            return Execution("FAILED", None, err.error, err.cause, self.steps)
        return Execution("SUCCEEDED", output, None, None, self.steps)

    def _run(self, machine: dict, data: Any, context: dict, path: str) -> Any:
        name = machine["StartAt"]
        while True:
            if len(self.steps) >= self.max_steps:
                raise StatesError("States.Runtime", f"more than {self.max_steps} states executed (a loop?)")
            state = machine["States"][name]
            step = Step(path, name, state["Type"])
            self.steps.append(step)
            try:
                data, nxt = self._state(state, data, context, step, path)
            except StatesError as err:
                from_task = state["Type"] == "Task"
                catchers = [c for c in state.get("Catch", []) if _matches(err.error, c["ErrorEquals"], from_task)]
                catcher = catchers[0] if catchers else None
                if catcher is None:
                    step.note = f"failed: {err.error}"
                    raise
                step.note = f"caught {err.error} -> {catcher['Next']}"
                error = {"Error": err.error, "Cause": err.cause}
                result_path = catcher.get("ResultPath", "$")
                data = data if result_path is None else _write_path(data, result_path, error)
                nxt = catcher["Next"]
            if nxt is None:
                return data
            name = nxt

    def _state(self, state: dict, data: Any, context: dict, step: Step, path: str) -> tuple[Any, str | None]:
        kind = state["Type"]
        if kind == "Fail":
            raise StatesError(state.get("Error", "States.Fail"), state.get("Cause", ""))
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
            timing = ("Seconds", "SecondsPath", "Timestamp", "TimestampPath")
            step.note = "not slept: " + ", ".join(f"{k} {state[k]}" for k in timing if k in state)
            return self._output(state, effective), self._next(state)
        if "Parameters" in state:
            effective = apply_template(state["Parameters"], effective, context)
        if kind == "Pass":
            result = state.get("Result", effective)
        elif kind == "Task":
            result, step.note = self.resolve(state["Resource"], effective)  # the result, and what was done
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


def _all_states(machine: dict) -> list[dict]:
    out = []
    for state in machine.get("States", {}).values():
        out.append(state)
        for branch in state.get("Branches", []):
            out.extend(_all_states(branch))
    return out


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
