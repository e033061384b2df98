"""fluo's own syntax tree: frozen dataclasses that carry their source position.

Positions are excluded from equality, so two trees that say the same thing are
equal wherever they were written. This module imports nothing else of fluo.

Two layers share these classes:
- the parser builds `Field`, `Attribute`, `Name` and literal nodes from the text;
- the checker resolves them against a span table into `Column`, `MapGet` and
  `Cast` nodes, and coerces literals, so the compiler never has to guess a type.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias


@dataclass(frozen=True, slots=True)
class Position:
    """Where a node was written: file, 1-based line and column, and the line's text."""

    file: str | None
    line: int
    column: int
    line_text: str = field(default="", compare=False, repr=False)
    width: int = field(default=1, compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.file or '<rules>'}:{self.line}:{self.column}"


class Node:
    """Base of every expression node."""

    __slots__ = ()
    pos: Position | None


# --- literals -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Str(Node):
    value: str
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class Int(Node):
    value: int
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class Float(Node):
    value: float
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class Bool(Node):
    value: bool
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class Null(Node):
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class Duration(Node):
    """A length of time, held exactly in nanoseconds (`300ms` is 300_000_000)."""

    nanos: int
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class Timestamp(Node):
    """A point in time, nanoseconds since the Unix epoch, UTC."""

    nanos: int
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class Name(Node):
    """A bare word: an enum value (SERVER, ERROR), or a list or macro reference."""

    name: str
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class ListLit(Node):
    items: tuple[Expr, ...]
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


# --- fields as written ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field(Node):
    """A built-in span field by canonical name: `span.duration` is Field("duration")."""

    name: str
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class Attribute(Node):
    """`span.attributes["key"]` (scope "span") or `resource.attributes["key"]`."""

    scope: str
    key: str
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


# --- operators --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Compare(Node):
    """`left op right` with op one of == != < <= > >=."""

    op: str
    left: Expr
    right: Expr
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class In(Node):
    """`value in [items]`, or `value not in [...]` when negated."""

    value: Expr
    items: Expr
    negated: bool = False
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class Between(Node):
    """`value between low and high`, both ends included."""

    value: Expr
    low: Expr
    high: Expr
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


#: String operators: contains, startswith, endswith, glob, matches (regex).
MATCH_OPS = ("contains", "startswith", "endswith", "glob", "matches")


@dataclass(frozen=True, slots=True)
class Match(Node):
    """`value op pattern` for a string operator; `ignore_case` for the i-prefixed forms."""

    op: str
    value: Expr
    pattern: Expr
    ignore_case: bool = False
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class Exists(Node):
    """`value exists`: the field or attribute is present (not null)."""

    value: Expr
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class Not(Node):
    operand: Expr
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class And(Node):
    operands: tuple[Expr, ...]
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class Or(Node):
    operands: tuple[Expr, ...]
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class Arith(Node):
    """`left op right` with op one of + - * / %."""

    op: str
    left: Expr
    right: Expr
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class Neg(Node):
    operand: Expr
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class Call(Node):
    """A function call such as `lower(span.name)`."""

    func: str
    args: tuple[Expr, ...]
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


# --- trace-level nodes ------------------------------------------------------------------

#: Aggregate functions over the spans of a trace (or of a relation of the anchor span).
AGGREGATES = (
    "count",
    "has",
    "missing",
    "all",
    "max",
    "min",
    "sum",
    "avg",
    "median",
    "p50",
    "p75",
    "p90",
    "p95",
    "p99",
    "distinct",
)
#: Aggregates that exist only in windowed rules: spans per second, share of spans.
WINDOW_AGGREGATES = ("rate", "ratio")
#: Which spans an aggregate ranges over, relative to the anchor span. "window" (the spans
#: of one group in one time window) is the scope of the aggregates of windowed rules.
SCOPES = ("trace", "children", "descendants", "ancestors", "siblings")
WINDOW_SCOPE = "window"
#: Spans a field can be read from besides the anchor: its trace's root, its parent,
#: and (inside an aggregate) `this`, the anchor itself.
RELATIONS = ("root", "parent", "this")
TRACE_FIELDS = ("duration", "span_count", "error_count", "start", "end")


@dataclass(frozen=True, slots=True)
class Aggregate(Node):
    """`func(value where where)` over the spans of `scope`: `count(span.kind == CLIENT)`,
    `max(span.duration where span.service == "db")`, `children.count(...)`.

    For count, has, missing and all, `where` holds the predicate and `value` the
    condition all spans must meet (`all` only); for the others `value` is the
    aggregated expression.
    """

    func: str
    value: Expr | None
    where: Expr | None
    scope: str = "trace"
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class TraceField(Node):
    """`trace.duration`, `trace.span_count`, `trace.error_count`, `trace.start`, `trace.end`."""

    name: str
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class Related(Node):
    """A field of a span related to the anchor: `root.duration`, `parent.service`, `this.name`."""

    relation: str
    value: Expr
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class Bound(Node):
    """A field of a named span of a pattern rule: `a.duration` is Bound("a", Field("duration"))."""

    var: str
    value: Expr
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


#: Relations between named spans: `child_of(b, a)` is true when b's parent is a.
RELATION_FUNCTIONS = ("child_of", "parent_of", "descendant_of", "ancestor_of", "sibling_of")


@dataclass(frozen=True, slots=True)
class Pattern(Node):
    """Named spans of one trace, each with its own condition, and a condition relating them.

    Each binding is (name, span condition); different names are different spans.
    """

    bindings: tuple[tuple[str, Expr], ...]
    condition: Expr
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.bindings)


@dataclass(frozen=True, slots=True)
class Absent(Node):
    """A sequence step that must NOT occur between the steps around it."""

    predicate: Expr
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class Sequence(Node):
    """Ordered steps within a trace (or within groups of `by`), the last within `within`
    nanoseconds of the first, cancelled by an `until` span between first and last."""

    steps: tuple[Expr, ...]
    by: Expr | None = None
    within: int | None = None
    until: Expr | None = None
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)

    @property
    def positive_steps(self) -> tuple[Expr, ...]:
        return tuple(s for s in self.steps if not isinstance(s, Absent))


@dataclass(frozen=True, slots=True)
class Baseline(Node):
    """`baseline(avg(span.duration))`: the value of a window aggregate in the rule's baseline
    (earlier windows, a day before, or another data set). `value` None is bare `baseline`:
    the aggregate it is compared with, decided by the checker."""

    value: Expr | None
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


# --- resolved nodes (built by the checker) ---------------------------------------


@dataclass(frozen=True, slots=True)
class Column(Node):
    """A column of the span table, with its rule-language type name."""

    name: str
    type: str
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class MapGet(Node):
    """The text value of `key` in the map column `column`; null when absent."""

    column: str
    key: str
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class Cast(Node):
    """`operand` converted to type `to`; a value that does not convert becomes null."""

    operand: Expr
    to: str
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class InUnit(Node):
    """A duration as a number of `unit_nanos` units (span.durationMs is InUnit(.., 1e6))."""

    operand: Expr
    unit_nanos: int
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


Expr: TypeAlias = (
    Str
    | Int
    | Float
    | Bool
    | Null
    | Duration
    | Timestamp
    | Name
    | ListLit
    | Field
    | Attribute
    | Compare
    | In
    | Between
    | Match
    | Exists
    | Not
    | And
    | Or
    | Arith
    | Neg
    | Call
    | Aggregate
    | TraceField
    | Related
    | Absent
    | Sequence
    | Bound
    | Pattern
    | Baseline
    | Column
    | MapGet
    | Cast
    | InUnit
)

LITERALS = (Str, Int, Float, Bool, Null, Duration, Timestamp)

# --- rules ---------------------------------------------------------------------------

SEVERITIES = ("info", "low", "medium", "high", "critical")


@dataclass(frozen=True, slots=True)
class Template:
    """A message template: literal text and expressions, in order."""

    parts: tuple[str | Expr, ...]
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class Action:
    """What to do when a rule fires: `log` a line, or `fail` the run (non-zero exit)."""

    kind: str
    text: str | None = None
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class BaselineSpec:
    """What a windowed rule compares each window with: the median of the same aggregate
    in the `previous` N windows of its group, the same window `offset` nanoseconds
    earlier, or the median over the windows of a separate baseline data set ("data")."""

    kind: str  # "previous", "offset" or "data"
    windows: int = 0
    offset: int = 0
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class Window:
    """The aggregation of a windowed rule: spans matching `where`, grouped `by` keys and
    by time windows of `size` nanoseconds starting every `every` nanoseconds."""

    size: int
    every: int
    by: tuple[Expr, ...] = ()
    where: Expr | None = None
    min_count: int = 1
    baseline: BaselineSpec | None = None
    exemplars: int = 5
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class Correlate:
    """A rule over other rules' signals: every rule of `rules` fired at least `count` times
    for the same `by` value (a signal field) within `within` nanoseconds."""

    rules: tuple[str, ...]
    within: int
    by: str | None = None
    count: int = 1
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: a name, what it asserts (`predicate` selects the violating spans) and metadata."""

    name: str
    predicate: Expr
    title: str | None = None
    description: str | None = None
    severity: str = "medium"
    tags: tuple[str, ...] = ()
    owner: str | None = None
    enabled: bool = True
    message: Template | None = None
    actions: tuple[Action, ...] = ()
    source: str | None = None  # the file the rule came from
    window: Window | None = None  # a windowed aggregate rule
    correlate: Correlate | None = None  # a rule over other rules' signals
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)

    @property
    def fails_run(self) -> bool:
        return any(a.kind == "fail" for a in self.actions)


def children(node: Expr) -> tuple[Expr, ...]:
    """The direct sub-expressions of `node`, in source order."""
    match node:
        case ListLit(items=items):
            return items
        case Compare(left=a, right=b) | Arith(left=a, right=b):
            return (a, b)
        case In(value=v, items=i):
            return (v, i)
        case Between(value=v, low=lo, high=hi):
            return (v, lo, hi)
        case Match(value=v, pattern=p):
            return (v, p)
        case (
            Exists(value=v) | Not(operand=v) | Neg(operand=v) | Cast(operand=v) | InUnit(operand=v)
        ):
            return (v,)
        case And(operands=ops) | Or(operands=ops):
            return ops
        case Call(args=args):
            return args
        case Aggregate(value=v, where=w):
            return tuple(x for x in (v, w) if x is not None)
        case Related(value=v) | Absent(predicate=v) | Bound(value=v):
            return (v,)
        case Baseline(value=v):
            return () if v is None else (v,)
        case Pattern(bindings=bindings, condition=c):
            return (*(p for _, p in bindings), c)
        case Sequence(steps=steps, by=by, until=until):
            return (*steps, *(x for x in (by, until) if x is not None))
    return ()


def walk(node: Expr) -> list[Expr]:
    """Every node of the tree rooted at `node`, parents before children."""
    out: list[Expr] = []
    stack: list[Expr] = [node]
    while stack:
        current = stack.pop()
        out.append(current)
        stack.extend(reversed(children(current)))
    return out


def map_children(node: Expr, fn: Callable[[Expr], Expr]) -> Expr:
    """A copy of `node` with `fn` applied to each direct child (the node itself if none change)."""
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if isinstance(value, Node):
            new = fn(value)  # type: ignore[arg-type]
            if new is not value:
                changes[f.name] = new
        elif isinstance(value, tuple) and value and isinstance(value[0], Node):
            items = tuple(fn(v) for v in value)
            if any(a is not b for a, b in zip(items, value, strict=True)):
                changes[f.name] = items
    return dataclasses.replace(node, **changes) if changes else node


#: Bare names in the condition of a windowed rule: aggregates over the window's spans.
_ERROR_SPAN = Compare("==", Field("status"), Name("ERROR"))
WINDOW_METRICS: dict[str, Aggregate] = {
    "count": Aggregate("count", None, None, WINDOW_SCOPE),
    "rate": Aggregate("rate", None, None, WINDOW_SCOPE),
    "errors": Aggregate("count", None, _ERROR_SPAN, WINDOW_SCOPE),
    "error_rate": Aggregate("ratio", None, _ERROR_SPAN, WINDOW_SCOPE),
}
