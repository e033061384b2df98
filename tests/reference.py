"""A plain, slow reference evaluator of the fluo rule language: the test oracle.

Written from docs/language.md alone (not from fluo/check.py or fluo/compile.py), so that
the differential tests compare two independent readings of the spec. It evaluates the
*parsed* (unresolved) AST -- `Field`, `Attribute`, `Name`, literals and operators --
one span at a time, where a span is a plain dict keyed by canonical column names:

    name, kind, status_code, status_message, service_name, duration_ns (int),
    start_time, end_time (datetime UTC, or int nanoseconds since the epoch),
    trace_id, span_id, parent_span_id, scope_name, scope_version,
    span_attributes, resource_attributes (dict[str, str | None] | None),
    and optional promoted columns "attr.<key>" / "resource.<key>" with typed values.

A column that is absent from the dict is absent from the table (so an attribute is read
from the map); a key present with the value None is a null.

Public API: `evaluate(expr, span) -> bool` for conditions, `value(expr, span)` for values.
`SpecError` is raised for expressions the spec says are errors (the checker must reject
them, so the differential tests never evaluate them).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from fluo import ast

#: The null value. Absent fields, absent attributes and failed conversions are all null.
MISSING = None


class SpecError(Exception):
    """The expression is not valid according to docs/language.md."""


# --- typed values ----------------------------------------------------------------------
#
# Plain Python values stand for themselves: str (a string), bool, int / float (numbers).
# The wrappers below carry the types Python has no word for.


@dataclass(frozen=True)
class Text:
    """A value read from an attribute map: text whose type depends on what it meets."""

    text: str


@dataclass(frozen=True)
class Dur:
    """A duration in nanoseconds (exact: int or Fraction; float after a float factor)."""

    ns: int | Fraction | float


@dataclass(frozen=True)
class Time:
    """A point in time: nanoseconds since the Unix epoch, UTC."""

    ns: int | Fraction | float


@dataclass(frozen=True)
class Enum:
    """A span kind or status, by its canonical upper-case name."""

    kind: str  # "kind" or "status"
    name: str


@dataclass(frozen=True)
class Word:
    """A bare word (`SERVER`) that is not resolved yet: an enum name, by context."""

    word: str


# --- fields (docs/language.md section 2) -----------------------------------------------

KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
STATUSES = ("UNSET", "OK", "ERROR")
ENUM_NAMES = {"kind": KINDS, "status": STATUSES}
ENUM_PREFIX = {"kind": "SPAN_KIND_", "status": "STATUS_CODE_"}

#: Spelling after `span.` -> canonical field.
FIELD_SPELLINGS = {
    "name": "name",
    "kind": "kind",
    "status": "status",
    "status.code": "status",
    "status_message": "status_message",
    "status.message": "status_message",
    "service": "service",
    "service.name": "service",
    "duration": "duration",
    "durationMs": "durationMs",
    "duration_ms": "durationMs",
    "start": "start",
    "start_time": "start",
    "end": "end",
    "end_time": "end",
    "trace_id": "trace_id",
    "span_id": "span_id",
    "parent_id": "parent_id",
    "parent_span_id": "parent_id",
    "scope_name": "scope_name",
    "scope_version": "scope_version",
}

STRING_FIELDS = {
    "name": "name",
    "status_message": "status_message",
    "service": "service_name",
    "trace_id": "trace_id",
    "span_id": "span_id",
    "parent_id": "parent_span_id",
    "scope_name": "scope_name",
    "scope_version": "scope_version",
}

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _nanos(stamp: Any) -> int | None:
    """A timestamp cell (datetime or int nanoseconds) as int nanoseconds since the epoch."""
    if stamp is None:
        return None
    if isinstance(stamp, int):
        return stamp
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    delta = stamp - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000


def _duration_ns(span: dict[str, Any]) -> int | None:
    if "duration_ns" in span:
        return span["duration_ns"]
    start, end = _nanos(span.get("start_time")), _nanos(span.get("end_time"))
    return None if start is None or end is None else end - start


def _field(name: str, span: dict[str, Any]) -> Any:
    canonical = FIELD_SPELLINGS.get(name)
    if canonical is None:
        raise SpecError(f"unknown field span.{name}")
    if canonical in STRING_FIELDS:
        return span.get(STRING_FIELDS[canonical])
    if canonical in ("kind", "status"):
        raw = span.get("kind" if canonical == "kind" else "status_code")
        return None if raw is None else Enum(canonical, raw)
    if canonical == "duration":
        ns = _duration_ns(span)
        return None if ns is None else Dur(ns)
    if canonical == "durationMs":
        ns = _duration_ns(span)
        return None if ns is None else ns / 1_000_000
    if canonical == "start":
        ns = _nanos(span.get("start_time"))
        return None if ns is None else Time(ns)
    # end: the end_time column, or start + duration
    if "end_time" in span:
        ns = _nanos(span["end_time"])
    else:
        start, dur = _nanos(span.get("start_time")), span.get("duration_ns")
        ns = None if start is None or dur is None else start + dur
    return None if ns is None else Time(ns)


def _attribute(scope: str, key: str, span: dict[str, Any]) -> Any:
    """A promoted column if the table has one (its own type), else the map entry (text)."""
    column = ("attr." if scope == "span" else "resource.") + key
    if column in span:
        cell = span[column]
        if isinstance(cell, dt.datetime):
            return Time(_nanos(cell))
        return cell
    mapping = span.get("span_attributes" if scope == "span" else "resource_attributes")
    if mapping is None:
        return None
    text = mapping.get(key)
    return None if text is None else Text(text)


# --- conversions (section 4, "Types and conversions") -----------------------------------

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


def text_to_number(text: str) -> float | None:
    """Map text read as a number ("200" -> 200, "2.5" -> 2.5); None when it is not a number."""
    if _NUMBER.fullmatch(text) is None:
        return None
    return float(text)


def text_to_bool(text: str) -> bool | None:
    """Map text read as a boolean ("true"/"false" in any case); None otherwise."""
    low = text.lower()
    return True if low == "true" else False if low == "false" else None


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float | Fraction) and not isinstance(v, bool)


def _is_string(v: Any) -> bool:
    return isinstance(v, str | Text)


def _as_str(v: Any) -> str:
    return v.text if isinstance(v, Text) else v


def _enum_from_word(word: str, kind: str) -> Enum:
    upper = word.upper()
    if upper.startswith(ENUM_PREFIX[kind]):
        upper = upper[len(ENUM_PREFIX[kind]) :]
    if upper not in ENUM_NAMES[kind]:
        raise SpecError(f"{word!r} is not a {kind}")
    return Enum(kind, upper)


def parse_iso(text: str) -> int:
    """An ISO 8601 timestamp as nanoseconds since the epoch; no zone means UTC."""
    try:
        stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SpecError(f"{text!r} is not a timestamp") from None
    return _nanos(stamp)  # type: ignore[return-value]


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")
_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
    "d": 86400 * 10**9,
}


def parse_duration_text(text: str) -> int:
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise SpecError(f"{text!r} is not a duration")
    nanos = Fraction(match.group(1)) * _UNITS[match.group(2)]
    if nanos.denominator != 1:
        raise SpecError(f"{text!r} is finer than a nanosecond")
    return int(nanos)


def _coerce_pair(a: Any, b: Any, a_node: ast.Node, b_node: ast.Node) -> tuple[Any, Any]:
    """Bring two non-null operands of a comparison to one type (None: a failed conversion).

    Literal spellings adapt to the other side first: enum words and strings to kinds and
    statuses, ISO strings to timestamps, duration strings to durations.
    """
    for x, y, x_node, swap in ((a, b, a_node, False), (b, a, b_node, True)):
        converted = None
        if isinstance(y, Enum) and isinstance(x, Word | str) and _is_literal(x_node):
            converted = _enum_from_word(x.word if isinstance(x, Word) else x, y.kind)
        elif isinstance(y, Time) and isinstance(x, str) and isinstance(x_node, ast.Str):
            converted = Time(parse_iso(x))
        elif isinstance(y, Dur) and isinstance(x, str) and isinstance(x_node, ast.Str):
            converted = Dur(parse_duration_text(x))
        if converted is not None:
            return (y, converted) if swap else (converted, y)
    if isinstance(a, Word) or isinstance(b, Word):
        raise SpecError("a bare word compares only with a kind or a status")
    # map text meets a typed value
    for x, y, swap in ((a, b, False), (b, a, True)):
        if isinstance(x, Text) and not isinstance(y, Text):
            if isinstance(y, bool):
                conv: Any = text_to_bool(x.text)
            elif _is_number(y):
                conv = text_to_number(x.text)
            elif isinstance(y, str):
                conv = x.text
            else:
                raise SpecError(f"cannot compare an attribute value with {type(y).__name__}")
            return (y, conv) if swap else (conv, y)
    if isinstance(a, Text) and isinstance(b, Text):
        return a.text, b.text  # two map attributes: both are text, compared as strings
    if _is_number(a) and _is_number(b):
        return a, b
    if type(a) is type(b) and isinstance(a, str | bool | Dur | Time):
        return a, b
    if isinstance(a, Enum) and isinstance(b, Enum) and a.kind == b.kind:
        return a, b
    raise SpecError(f"cannot compare {type(a).__name__} with {type(b).__name__}")


def _is_literal(node: ast.Node) -> bool:
    return isinstance(node, ast.Str | ast.Name)


def _key(v: Any) -> Any:
    if isinstance(v, Dur | Time):
        return v.ns
    return v


def _compare_values(op: str, a: Any, b: Any, a_node: ast.Node, b_node: ast.Node) -> bool:
    """`a op b` for two evaluated operands: false whenever either is (or converts to) null."""
    if a is None or b is None:
        return False
    x, y = _coerce_pair(a, b, a_node, b_node)
    if op not in ("==", "!=") and any(isinstance(v, bool | Enum) for v in (x, y)):
        raise SpecError(f"{op!r} does not order booleans, kinds or statuses")
    if x is None or y is None:
        return False  # a value that cannot be converted is treated like a missing one
    x, y = _key(x), _key(y)
    if any(isinstance(v, float) and math.isnan(v) for v in (x, y)):
        return False
    return {
        "==": lambda: x == y,
        "!=": lambda: x != y,
        "<": lambda: x < y,
        "<=": lambda: x <= y,
        ">": lambda: x > y,
        ">=": lambda: x >= y,
    }[op]()


# --- string operators ---------------------------------------------------------------------


def glob_to_regex(pattern: str) -> str:
    """A glob as a Python regex: `*` any text (newlines and `/` too), `?` one character,
    a backslash makes the next character literal (`\\*`, `\\?`); everything else, `[`
    included, is literal."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def rust_regex_to_python(pattern: str) -> str:
    """The few differences of the Rust dialect that matter for the subset the tests use:
    `$` (outside a class) is the very end of the text in Rust, `\\Z` in Python."""
    out: list[str] = []
    i = 0
    in_class = False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
            # a `]` right after `[` or `[^` is literal
            rest = pattern[i + 1 :]
            prefix = "^]" if rest.startswith("^]") else "]" if rest.startswith("]") else ""
            out.append("[" + prefix)
            i += 1 + len(prefix)
            continue
        elif ch == "$":
            out.append(r"\Z")
            i += 1
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _match_one(op: str, value: str, pattern: str, ignore_case: bool) -> bool:
    """One string operator. "Ignoring case" is read as case folding, character by
    character (so final sigma matches σ), as a case-insensitive regex does it."""
    if op == "matches":
        flags = re.IGNORECASE if ignore_case else 0
        return re.search(rust_regex_to_python(pattern), value, flags) is not None
    if op == "glob":
        flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
        return re.fullmatch(glob_to_regex(pattern), value, flags) is not None
    if ignore_case:
        literal = re.escape(pattern)
        regex = {"contains": literal, "startswith": "^" + literal, "endswith": literal + r"\Z"}
        if op not in regex:
            raise SpecError(f"unknown string operator {op}")
        return re.search(regex[op], value, re.IGNORECASE) is not None
    if op == "contains":
        return pattern in value
    if op == "startswith":
        return value.startswith(pattern)
    if op == "endswith":
        return value.endswith(pattern)
    raise SpecError(f"unknown string operator {op}")


def _match(node: ast.Match, span: dict[str, Any]) -> bool:
    patterns = node.pattern.items if isinstance(node.pattern, ast.ListLit) else (node.pattern,)
    if not patterns:
        raise SpecError("a string operator needs a pattern")
    subject = _eval(node.value, span)
    if subject is not None and not _is_string(subject):
        raise SpecError(f"{node.op} applies to strings")
    hit = False
    for pattern_node in patterns:
        if node.op in ("glob", "matches") and not isinstance(pattern_node, ast.Str):
            raise SpecError(f"the pattern of {node.op} is a string literal")
        pattern = _eval(pattern_node, span)
        if pattern is not None and not _is_string(pattern):
            raise SpecError("a pattern is a string")
        if subject is None or pattern is None:
            continue
        hit = hit or _match_one(node.op, _as_str(subject), _as_str(pattern), node.ignore_case)
    return hit


# --- arithmetic and functions -----------------------------------------------------------------


def _numeric(v: Any) -> Any:
    """An arithmetic operand: map text is read as a number (None when it is not one)."""
    if isinstance(v, Text):
        return text_to_number(v.text)
    return v


def _arith(op: str, a: Any, b: Any) -> Any:
    a, b = _numeric(a), _numeric(b)
    if isinstance(a, bool) or isinstance(b, bool):
        raise SpecError("no arithmetic on booleans")
    if a is None or b is None:
        return None
    if _is_number(a) and _is_number(b):
        if op in "/%" and b == 0:
            return None
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            return float(a) / float(b)
        if isinstance(a, int) and isinstance(b, int):
            return a % b  # the sign of the divisor, as Python and Polars do
        # The spec does not say how exact a float remainder is. fluo (Polars) computes
        # a - b * floor(a / b), so `1 % 0.1` is 0.0 there, not IEEE's 0.09999999999999995.
        return a - b * math.floor(a / b)
    if isinstance(a, Dur) and isinstance(b, Dur):
        if op in "+-":
            return Dur(a.ns + b.ns if op == "+" else a.ns - b.ns)
        if op == "/":
            return None if b.ns == 0 else float(a.ns) / float(b.ns)
        raise SpecError(f"duration {op} duration")
    if isinstance(a, Dur) and _is_number(b) and op in "*/":
        if op == "/":
            if b == 0:
                return None
            return Dur(a.ns / b if isinstance(b, float) else Fraction(a.ns) / b)
        return Dur(a.ns * b)
    if _is_number(a) and isinstance(b, Dur) and op == "*":
        return Dur(a * b.ns)
    if isinstance(a, Time) and isinstance(b, Time) and op == "-":
        return Dur(a.ns - b.ns)
    if isinstance(a, Time) and isinstance(b, Dur) and op in "+-":
        return Time(a.ns + b.ns if op == "+" else a.ns - b.ns)
    if isinstance(a, Dur) and isinstance(b, Time) and op == "+":
        return Time(a.ns + b.ns)
    raise SpecError(f"{type(a).__name__} {op} {type(b).__name__}")


def _to_number(v: Any, func: str) -> Any:
    """int(x) / float(x): from a number, numeric text or a boolean; None otherwise."""
    if v is None:
        return None
    if isinstance(v, bool):
        number: Any = int(v)
    elif _is_number(v):
        number = v
    elif _is_string(v):
        number = text_to_number(_as_str(v))
    else:
        raise SpecError(f"{func}() of {type(v).__name__}")
    if number is None:
        return None
    if func == "int":
        return int(number)  # truncates towards zero
    return float(number)


def _static_kind(node: ast.Node) -> str | None:
    """What a literal argument of coalesce says about the others' type."""
    if isinstance(node, ast.Int | ast.Float):
        return "number"
    if isinstance(node, ast.Bool):
        return "bool"
    if isinstance(node, ast.Str):
        return "string"
    return None


def _call(node: ast.Call, span: dict[str, Any]) -> Any:
    func, args = node.func, node.args
    if func == "coalesce":
        if not args:
            raise SpecError("coalesce() needs arguments")
        kinds = {k for k in map(_static_kind, args) if k}
        for arg in args:
            v = _eval(arg, span)
            # an attribute that cannot be read as the other arguments' type is missing
            if isinstance(v, Text) and kinds == {"number"}:
                v = text_to_number(v.text)
            elif isinstance(v, Text) and kinds == {"bool"}:
                v = text_to_bool(v.text)
            if v is not None:
                return v
        return None
    if len(args) != 1:
        raise SpecError(f"{func}() takes one argument")
    v = _eval(args[0], span)
    if func in ("lower", "upper", "len"):
        if v is not None and not _is_string(v):
            raise SpecError(f"{func}() takes a string")
        if v is None:
            return None
        s = _as_str(v)
        return s.lower() if func == "lower" else s.upper() if func == "upper" else len(s)
    if func == "abs":
        v = _numeric(v)
        if v is None:
            return None
        if isinstance(v, Dur):
            return Dur(abs(v.ns))
        if not _is_number(v):
            raise SpecError("abs() takes a number or a duration")
        return abs(v)
    if func in ("int", "float"):
        return _to_number(v, func)
    raise SpecError(f"unknown function {func}")


# --- the evaluator ----------------------------------------------------------------------------


def _eval(node: ast.Node, span: dict[str, Any]) -> Any:
    match node:
        case ast.Str(value=v) | ast.Int(value=v) | ast.Float(value=v) | ast.Bool(value=v):
            return v
        case ast.Null():
            return None
        case ast.Duration(nanos=n):
            return Dur(n)
        case ast.Timestamp(nanos=n):
            return Time(n)
        case ast.Name(name=name):
            return Word(name)
        case ast.Field(name=name):
            return _field(name, span)
        case ast.Attribute(scope=scope, key=key):
            if scope == "resource" and key == "service.name":
                return _field("service", span)
            return _attribute(scope, key, span)
        case ast.Arith(op=op, left=a, right=b):
            return _arith(op, _eval(a, span), _eval(b, span))
        case ast.Neg(operand=o):
            v = _numeric(_eval(o, span))
            if v is None:
                return None
            if isinstance(v, Dur):
                return Dur(-v.ns)
            if not _is_number(v):
                raise SpecError("unary minus takes a number or a duration")
            return -v
        case ast.Call():
            return _call(node, span)
        case ast.Compare() | ast.In() | ast.Between() | ast.Match() | ast.Exists() | ast.Not():
            return evaluate(node, span)
        case ast.And() | ast.Or():
            return evaluate(node, span)
    raise SpecError(f"cannot evaluate {type(node).__name__}")


def _condition(node: ast.Node, span: dict[str, Any]) -> bool:
    match node:
        case ast.Compare(op=op, left=a, right=b):
            if isinstance(a, ast.Null) or isinstance(b, ast.Null):
                if op not in ("==", "!="):
                    raise SpecError("null compares only with == and !=")
                other = a if isinstance(b, ast.Null) else b
                is_null = _eval(other, span) is None
                return is_null if op == "==" else not is_null
            return _compare_values(op, _eval(a, span), _eval(b, span), a, b)
        case ast.In(value=v, items=items, negated=negated):
            if not isinstance(items, ast.ListLit):
                raise SpecError("'in' needs a list")
            if any(isinstance(i, ast.Null) for i in items.items):
                raise SpecError("null is allowed only with == and !=")
            if not all(isinstance(i, (*ast.LITERALS, ast.Name)) for i in items.items):
                raise SpecError("list items are literals")
            x = _eval(v, span)
            if x is None:
                return False
            found = False
            for item in items.items:
                y = _eval(item, span)
                a, b = _coerce_pair(x, y, v, item)
                if a is None or b is None:
                    return False  # not convertible: like a missing value
                found = found or _key(a) == _key(b)
            return found != negated
        case ast.Between(value=v, low=lo, high=hi):
            if isinstance(lo, ast.Null) or isinstance(hi, ast.Null):
                raise SpecError("null is allowed only with == and !=")
            x = _eval(v, span)
            return _compare_values("<=", _eval(lo, span), x, lo, v) and _compare_values(
                "<=", x, _eval(hi, span), v, hi
            )
        case ast.Match():
            return _match(node, span)
        case ast.Exists(value=v):
            if not isinstance(v, ast.Field | ast.Attribute):
                raise SpecError("exists applies to a field or an attribute")
            return _eval(v, span) is not None
        case ast.Not(operand=o):
            return not evaluate(o, span)
        case ast.And(operands=ops):
            return all(evaluate(o, span) for o in ops)
        case ast.Or(operands=ops):
            return any(evaluate(o, span) for o in ops)
    v = _eval(node, span)
    if v is None:
        return False  # a missing boolean is not true
    if isinstance(v, bool):
        return v
    raise SpecError(f"a condition must be true or false, not {type(v).__name__}")


def evaluate(expr: ast.Node, span: dict[str, Any]) -> bool:
    """Whether the condition `expr` holds for `span` (never unknown)."""
    return _condition(expr, span)


def value(expr: ast.Node, span: dict[str, Any]) -> Any:
    """The value of `expr` for `span`, as plain Python (durations in int/fractional ns,
    timestamps as int ns, map text as str); None when null."""
    v = _eval(expr, span)
    if isinstance(v, Text):
        return v.text
    if isinstance(v, Dur | Time):
        return v.ns
    if isinstance(v, Enum):
        return v.name
    if isinstance(v, Word):
        raise SpecError(f"bare word {v.word!r} has no value on its own")
    return v
