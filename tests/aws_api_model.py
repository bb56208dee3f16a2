"""A request checked against botocore's AWS API model, including what botocore's own validator skips.

``botocore.validate.validate_parameters`` checks required members and types only. The services check more,
and reject a request (or, for a SageMaker pipeline, the whole definition at CreatePipeline) whose strings are
too long, lists too big, numbers out of range, values outside an enum or not matching a ``pattern``. Every
such limit is in the model botocore ships (``shape.metadata["min"/"max"/"pattern"]``, ``shape.enum``), so
:func:`violations` walks a request through the operation's input shape and reads them there: no hand-kept
list of limits.

Semantics, as the services apply them:
- string lengths count UTF-16 code units (Java's ``String.length()``); blob lengths count bytes;
- a ``pattern`` must match the **whole** value (Java's ``Matcher.matches()``: SageMaker rejects an 85-character
  job name under ``^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}``, which a prefix search would accept);
- patterns are Java regular expressions; :func:`java_pattern` translates them to Python's ``re`` and raises
  :class:`UntranslatablePattern` for a construct it cannot translate faithfully, which :func:`violations`
  reports as a violation: an unchecked pattern never passes silently.

What the model cannot say (a value the service validates against live state, such as an existing role,
or rules written only in prose such as distinct processing paths) is out of reach here.
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import re
import unicodedata
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import botocore.session
import pytest
from botocore.hooks import HierarchicalEmitter
from botocore.model import OperationModel, ServiceModel, Shape


@dataclass(frozen=True)
class Violation:
    """One limit a request breaks: where (``path``), which model shape and what is wrong."""

    path: str
    shape: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path or '<request>'} ({self.shape}): {self.problem}"


def stubbed_client(service: str, operation: str, response: dict[str, Any]) -> Any:
    """A real botocore client (requests built as for AWS) answering ``operation`` once from a Stubber: no network."""
    from botocore.stub import Stubber

    client = botocore.session.get_session().create_client(
        service, region_name="ap-south-1", aws_access_key_id="k", aws_secret_access_key="s"
    )
    stubber = Stubber(client)
    stubber.add_response(operation, response)
    stubber.activate()
    return client


class RequestViolation(AssertionError):
    """A request breaks its operation's API model; the message names the operation and every violation."""


class UntranslatablePattern(ValueError):
    """A Java ``pattern`` of the model uses a construct this module does not translate."""


# ---- the model --------------------------------------------------------------------------------


@functools.cache
def service_model(service: str) -> ServiceModel:
    """botocore's model of ``service`` (its botocore name, e.g. ``sagemaker``, ``stepfunctions``)."""
    return botocore.session.get_session().get_service_model(service)


def operation_model(service: str, operation: str) -> OperationModel:
    """The operation named ``operation`` in API (``CreateProcessingJob``), camel (``createProcessingJob``) or
    snake (``create_processing_job``) case. Raises KeyError naming the service when there is none."""
    model = service_model(service)
    wanted = operation.replace("_", "").lower()
    for name in model.operation_names:
        if name.lower() == wanted:
            return model.operation_model(name)
    raise KeyError(f"{service} has no operation {operation!r}")


def violations(service: str, operation: str, params: Mapping[str, Any]) -> list[Violation]:
    """Every limit of ``service``'s ``operation`` that ``params`` breaks (empty when the request is valid)."""
    shape = operation_model(service, operation).input_shape
    if shape is None:
        return [Violation("", "-", f"the operation takes no parameters, got {sorted(params)}")] if params else []
    return shape_violations(shape, params)


def shape_violations(shape: Shape, value: Any, path: str = "") -> list[Violation]:
    """Every limit of ``shape`` (and the shapes inside it) that ``value`` breaks."""
    found: list[Violation] = []
    _walk(shape, value, path, found)
    return found


def check_request(service: str, operation: str, params: Mapping[str, Any], where: str = "") -> None:
    """Raise :class:`RequestViolation` naming the operation (and ``where`` the request comes from) and
    every violated limit."""
    found = violations(service, operation, params)
    if found:
        op = operation_model(service, operation).name
        origin = f" ({where})" if where else ""
        raise RequestViolation(f"{service} {op}{origin}: " + "; ".join(str(v) for v in found))


# ---- boto3 requests made by code under test ----------------------------------------------


@dataclass
class RequestLog:
    """What :func:`checked_requests` saw: how many requests per ``"<service> <Operation>"`` and each breach."""

    checked: collections.Counter[str] = field(default_factory=collections.Counter)
    violations: list[str] = field(default_factory=list)


#: The logs of the :func:`checked_requests` blocks now open (innermost last): a test can see it is being checked.
ACTIVE: list[RequestLog] = []


@contextmanager
def checked_requests() -> Iterator[RequestLog]:
    """Within the block, every request any botocore client builds (whenever the client was created) is checked
    against its operation's model once botocore's ``before-parameter-build`` handlers have run, i.e. as it goes
    on the wire; each breach is logged as ``"<service> <Operation>: <violations>"``.

    The request still goes out, so the code under test behaves as without the check; the caller fails the test.
    """
    log = RequestLog()
    original = HierarchicalEmitter.emit

    def emit(self: HierarchicalEmitter, event_name: str, **kwargs: Any) -> Any:
        responses = original(self, event_name, **kwargs)
        model = kwargs.get("model")
        if event_name.startswith("before-parameter-build.") and isinstance(model, OperationModel):
            operation = f"{model.service_model.service_name} {model.name}"
            log.checked[operation] += 1
            problems = shape_violations(model.input_shape, kwargs["params"]) if model.input_shape else []
            if problems:
                log.violations.append(f"{operation}: " + "; ".join(map(str, problems)))
        return responses

    HierarchicalEmitter.emit = emit  # type: ignore[method-assign]
    ACTIVE.append(log)
    try:
        yield log
    finally:
        ACTIVE.remove(log)
        HierarchicalEmitter.emit = original  # type: ignore[method-assign]


def requests_within_api_limits() -> Iterator[None]:
    """The body of an autouse fixture (``yield from requests_within_api_limits()``, as the Lambda and erasure
    tests' conftests do): fails the test at teardown naming each boto3 request it made that breaks the model."""
    with checked_requests() as log:
        yield
    if log.violations:
        pytest.fail("requests outside the AWS API model (tests/aws_api_model.py):\n" + "\n".join(log.violations))


# ---- walking a value through a shape --------------------------------------------------------


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _bounds(shape: Shape, size: float, what: str, path: str, found: list[Violation]) -> None:
    lo, hi = shape.metadata.get("min"), shape.metadata.get("max")
    if lo is not None and size < lo:
        found.append(Violation(path, shape.name, f"{what} {size} < min {lo}"))
    if hi is not None and size > hi:
        found.append(Violation(path, shape.name, f"{what} {size} > max {hi}"))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _walk(shape: Shape, value: Any, path: str, found: list[Violation]) -> None:
    kind = shape.type_name

    def bad_type(expected: str) -> None:
        found.append(Violation(path, shape.name, f"expected {expected}, got {type(value).__name__} {value!r:.60}"))

    if kind == "structure":
        if getattr(shape, "is_document_type", False):
            return
        if not isinstance(value, Mapping):
            return bad_type("an object")
        members = shape.members
        for name in shape.required_members:
            if name not in value:
                found.append(Violation(path, shape.name, f"required member {name} is missing"))
        for name in sorted(set(value) - set(members)):
            found.append(Violation(path, shape.name, f"unknown member {name} (known: {', '.join(members)})"))
        if getattr(shape, "is_tagged_union", False) and sum(v is not None for v in value.values()) != 1:
            found.append(Violation(path, shape.name, f"a union takes exactly one member, got {sorted(value)}"))
        for name, item in value.items():
            if name in members:
                _walk(members[name], item, f"{path}.{name}" if path else name, found)
    elif kind == "list":
        if not isinstance(value, (list, tuple)):
            return bad_type("a list")
        _bounds(shape, len(value), "list size", path, found)
        for i, item in enumerate(value):
            _walk(shape.member, item, f"{path}[{i}]", found)
    elif kind == "map":
        if not isinstance(value, Mapping):
            return bad_type("a map")
        _bounds(shape, len(value), "map size", path, found)
        for key, item in value.items():
            _walk(shape.key, key, f"{path} key {key!r}", found)
            _walk(shape.value, item, f"{path}[{key!r}]", found)
    elif kind == "string":
        if shape.serialization.get("jsonvalue"):  # any JSON value, serialised by botocore
            return
        if not isinstance(value, str):
            return bad_type("a string")
        _bounds(shape, _utf16_length(value), "length", path, found)
        if shape.enum and value not in shape.enum:
            found.append(Violation(path, shape.name, f"{value!r} is not one of the {len(shape.enum)} enum values"))
        pattern = shape.metadata.get("pattern")
        if pattern is not None:
            try:
                compiled = java_pattern(pattern)
            except UntranslatablePattern as exc:
                found.append(Violation(path, shape.name, f"pattern {pattern!r} cannot be checked: {exc}"))
            else:
                if compiled.fullmatch(value) is None:
                    found.append(Violation(path, shape.name, f"{value!r:.120} does not match pattern {pattern!r}"))
    elif kind in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            return bad_type("an integer")
        _bounds(shape, value, "value", path, found)
    elif kind in ("float", "double"):
        if not _is_number(value):
            return bad_type("a number")
        _bounds(shape, value, "value", path, found)
    elif kind == "boolean":
        if not isinstance(value, bool):
            return bad_type("true or false")
    elif kind == "blob":
        if isinstance(value, str):
            value = value.encode()
        if isinstance(value, (bytes, bytearray)):
            _bounds(shape, len(value), "size (bytes)", path, found)
        elif not hasattr(value, "read"):
            return bad_type("bytes or a file-like object")
    elif kind == "timestamp":
        if not isinstance(value, (dt.datetime, dt.date, str)) and not _is_number(value):
            return bad_type("a timestamp")
    else:
        found.append(Violation(path, shape.name, f"shape type {kind!r} is not checked by this module"))


# ---- Java regular expressions in Python -----------------------------------------------------

Spans = tuple[tuple[int, int], ...]  # inclusive code point ranges


def _spans(text: str) -> Spans:
    """``a-zA-Z0-9`` style ranges (single characters allowed) as spans."""
    return tuple((ord(m[1]), ord(m[2] or m[1])) for m in re.finditer(r"(.)(?:-(.))?", text, re.S))


#: Java's POSIX classes (US-ASCII only, as ``java.util.regex.Pattern`` defines them without UNICODE_CHARACTER_CLASS).
_PUNCT = "!-/:-@[-`{-~"
_POSIX: dict[str, Spans] = {
    "Lower": _spans("a-z"),
    "Upper": _spans("A-Z"),
    "ASCII": _spans("\x00-\x7f"),
    "Alpha": _spans("a-zA-Z"),
    "Digit": _spans("0-9"),
    "Alnum": _spans("a-zA-Z0-9"),
    "Punct": _spans(_PUNCT),
    "Graph": _spans("a-zA-Z0-9" + _PUNCT),
    "Print": _spans(" a-zA-Z0-9" + _PUNCT),
    "Blank": _spans(" \t"),
    "Cntrl": _spans("\x00-\x1f\x7f"),
    "XDigit": _spans("0-9a-fA-F"),
    "Space": _spans(" \t\n\x0b\x0c\r"),
    "all": ((0, 0x10FFFF),),
}
#: Java's line terminators, which ``.`` does not match (Python's ``.`` excludes only ``\n``).
_JAVA_DOT = r"[^\n\r\x85\u2028\u2029]"
_ANCHORS = ("^", "$", r"\b", r"\B", r"\A", r"\Z")
_CLASS_ESCAPES = set("dDsSwW")
_SIMPLE_ESCAPES = _CLASS_ESCAPES | set("bBAtnrf") | set("123456789")
_REFUSED_ESCAPES = {
    "Q": "quoting (\\Q...\\E)",
    "E": "quoting (\\Q...\\E)",
    "G": "the end of the previous match (\\G)",
    "Z": "Java's \\Z (end before a final line terminator)",
    "R": "a linebreak matcher (\\R)",
    "X": "a grapheme cluster (\\X)",
    "h": "horizontal whitespace (\\h)",
    "H": "horizontal whitespace (\\H)",
    "v": "vertical whitespace (\\v)",
    "V": "vertical whitespace (\\V)",
    "k": "a named back-reference (\\k)",
    "c": "a control character (\\c)",
    "0": "an octal escape (\\0)",
    "N": "a named character (\\N)",
}


@functools.cache
def _categories() -> dict[str, Spans]:
    """Unicode general category (two letters, e.g. ``Lu``) -> its code point spans, from ``unicodedata``."""
    ranges: dict[str, list[tuple[int, int]]] = {}
    previous, start = None, 0
    for code in range(0x110000 + 1):
        category = unicodedata.category(chr(code)) if code < 0x110000 else None
        if category != previous:
            if previous is not None:
                ranges.setdefault(previous, []).append((start, code - 1))
            previous, start = category, code
    return {cat: tuple(spans) for cat, spans in ranges.items()}


def _union(*groups: Spans) -> Spans:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(span for group in groups for span in group):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return tuple(merged)


def _complement(spans: Spans) -> Spans:
    out, next_code = [], 0
    for lo, hi in _union(spans):
        if lo > next_code:
            out.append((next_code, lo - 1))
        next_code = hi + 1
    if next_code <= 0x10FFFF:
        out.append((next_code, 0x10FFFF))
    return tuple(out)


def _property(name: str) -> Spans:
    """The code points of ``\\p{name}``: a POSIX class, a Unicode general category (``L``, ``Lu``, ``IsL``,
    ``gc=L``) or Java's ``LD`` (a letter or digit)."""
    if name in _POSIX:
        return _POSIX[name]
    cats = _categories()
    if name == "LD":
        return _union(_property("L"), cats["Nd"])
    category = name.removeprefix("Is").removeprefix("gc=").removeprefix("general_category=")
    matching = [spans for cat, spans in cats.items() if cat == category or (len(category) == 1 and cat[0] == category)]
    if not matching or len(category) > 2:
        raise UntranslatablePattern(f"\\p{{{name}}} is not a POSIX class or a Unicode general category")
    return _union(*matching)


def _hex_escape(code: int) -> str:
    return f"\\U{code:08x}"


def _class_body(spans: Spans) -> str:
    return "".join(_hex_escape(lo) if lo == hi else f"{_hex_escape(lo)}-{_hex_escape(hi)}" for lo, hi in spans)


def _translate(pattern: str) -> tuple[str, int]:
    """The Python equivalent of ``pattern`` and its ``re`` flags."""
    out: list[str] = []
    flags = re.ASCII
    dotall = False
    i, n = 0, len(pattern)
    leading = re.match(r"\(\?([is]+)\)", pattern)  # Java flags for the whole pattern (Python wants them first)
    if leading:
        flags |= re.IGNORECASE if "i" in leading[1] else 0
        dotall = "s" in leading[1]
        i = leading.end()
    in_class = False
    class_start = False  # just after "[" or "[^": Java takes no "]" there, Python a literal
    after_class_item = False  # a class escape was the last item of a class: Java reads a "-" after it literally

    def quantified_anchor() -> bool:
        return bool(out) and out[-1] in _ANCHORS

    while i < n:
        c = pattern[i]
        was_class_item, after_class_item = after_class_item, False
        if c == "\\":
            if i + 1 >= n:
                raise UntranslatablePattern("a trailing backslash")
            e = pattern[i + 1]
            if e in "pP":
                m = re.match(r"\{(\^?)([\w=]+)\}|([A-Za-z])", pattern[i + 2 :])
                if m is None:
                    raise UntranslatablePattern(f"a malformed \\{e} at {i}")
                caret, name = (m[1], m[2]) if m[2] else ("", m[3])
                spans = _property(name)
                if (e == "P") != bool(caret):
                    spans = _complement(spans)
                out.append(_class_body(spans) if in_class else f"[{_class_body(spans)}]")
                i += 2 + m.end()
                after_class_item = in_class
            elif e == "u":
                m = re.match(r"[0-9a-fA-F]{4}", pattern[i + 2 :])
                if m is None:
                    raise UntranslatablePattern(f"a malformed \\u at {i}")
                code = int(m[0], 16)
                i += 6
                low = re.match(r"\\u([dD][c-fC-F][0-9a-fA-F]{2})", pattern[i:])
                if 0xD800 <= code <= 0xDBFF and low:  # a UTF-16 surrogate pair: one supplementary character
                    code = 0x10000 + ((code - 0xD800) << 10) + (int(low[1], 16) - 0xDC00)
                    i += 6
                elif 0xD800 <= code <= 0xDFFF:
                    raise UntranslatablePattern(f"a lone surrogate \\u{code:04x} (Java matches UTF-16 units)")
                out.append(_hex_escape(code))
            elif e == "x":
                m = re.match(r"\{([0-9a-fA-F]{1,6})\}|([0-9a-fA-F]{2})", pattern[i + 2 :])
                if m is None:
                    raise UntranslatablePattern(f"a malformed \\x at {i}")
                out.append(_hex_escape(int(m[1] or m[2], 16)))
                i += 2 + m.end()
            elif e in "zea":
                out.append({"z": r"\Z", "e": r"\x1b", "a": r"\x07"}[e])
                i += 2
            elif e in _REFUSED_ESCAPES:
                raise UntranslatablePattern(_REFUSED_ESCAPES[e])
            elif e in _SIMPLE_ESCAPES:
                if in_class and e not in _CLASS_ESCAPES and e not in "tnrf":
                    raise UntranslatablePattern(f"\\{e} inside a class")
                out.append("\\" + e)
                i += 2
                after_class_item = in_class and e in _CLASS_ESCAPES
            elif e.isalnum():
                raise UntranslatablePattern(f"the escape \\{e}")
            else:  # an escaped literal
                out.append(re.escape(e))
                i += 2
            class_start = False
            continue
        if in_class:
            if c == "[":
                raise UntranslatablePattern("a class inside a class (Java's union)")
            if c == "&" and pattern.startswith("&&", i):
                raise UntranslatablePattern("a class intersection (&&)")
            if c == "]" and class_start:
                raise UntranslatablePattern("an empty class or a leading ']'")
            if c == "]":
                in_class = False
                out.append(c)
            elif c == "-" and was_class_item:
                out.append(r"\-")  # "[\w-_]": Java's literal "-", Python's bad range
            else:
                out.append(c)
            class_start = class_start and c == "^" and out[-2] == "["
            i += 1
            continue
        if c == "[":
            in_class, class_start = True, True
            out.append(c)
        elif c == ".":
            out.append(r"[\x00-\U0010ffff]" if dotall else _JAVA_DOT)
        elif c == "(" and pattern.startswith("(?", i):
            rest = pattern[i + 2 :]
            if rest[:1] in (":", "=", "!", ">") or rest.startswith(("<=", "<!")):
                out.append("(")
            elif re.match(r"<[A-Za-z][A-Za-z0-9]*>", rest):
                out.append("(?P")  # Java's (?<name>...) is Python's (?P<name>...)
                i += 2
                continue
            else:
                raise UntranslatablePattern(f"the group or flag construct (?{rest[:3]} (flags only at the start)")
        elif c in "*+?{" and quantified_anchor():  # Java repeats an anchor (e.g. "${1,128}"); Python needs a group
            out[-1] = f"(?:{out[-1]})"
            out.append(c)
        else:
            out.append(c)
        i += 1
    if in_class:
        raise UntranslatablePattern("an unclosed class")
    return "".join(out), flags


@functools.cache
def java_pattern(pattern: str) -> re.Pattern[str]:
    """``pattern`` (a Java regular expression from the model) compiled with Python's ``re``, same meaning.

    Translated: ``\\p{...}``/``\\P{...}`` (POSIX classes as ASCII, Unicode general categories from
    ``unicodedata``), ``\\uXXXX`` and UTF-16 surrogate pairs, ``\\x{...}``, ``\\z``, ``.`` (no line
    terminators), ``(?<name>``, a quantified anchor, a literal ``-`` after a class escape, leading ``(?i)``/``(?s)``;
    ``\\d \\s \\w`` stay ASCII as in Java. Anything else Java-specific raises
    :class:`UntranslatablePattern` with what it is."""
    translated, flags = _translate(pattern)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # Python's notice about future set operations
            return re.compile(translated, flags)
    except re.error as exc:
        raise UntranslatablePattern(f"translated to {translated[:200]!r}, which Python refuses: {exc}") from exc
