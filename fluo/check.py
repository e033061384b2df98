"""Stage 3: resolve and type-check rules against a span table, before any data is read.

`check_rule` turns a parsed rule into a `CheckedRule` whose predicate names only
real columns (`Column`, `MapGet`) with explicit conversions (`Cast`) and literals
already coerced to the type they are compared with (enum spellings normalised,
ISO timestamps and duration strings parsed). Every problem found is collected,
with its position; nothing is guessed at run time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import polars as pl

from fluo import ast
from fluo.ast import Expr, Position
from fluo.errors import Diagnostic, RuleError, did_you_mean
from fluo.parse import parse_duration
from fluo.schema import (
    INTRINSIC_ALIASES,
    INTRINSICS,
    SPAN_KINDS,
    STATUS_CODES,
    SpanSchema,
    Type,
    attribute_map_column,
    promoted_column,
    type_of_dtype,
)

ENUM_VALUES: dict[Type, tuple[str, ...]] = {Type.KIND: SPAN_KINDS, Type.STATUS: STATUS_CODES}
ENUM_LONG_PREFIX = {Type.KIND: "SPAN_KIND_", Type.STATUS: "STATUS_CODE_"}
ORDERED = (Type.INT, Type.FLOAT, Type.DURATION, Type.TIMESTAMP, Type.STRING, Type.TEXT)

#: Functions: name -> (number of arguments or None for 1+, description).
FUNCTIONS: dict[str, tuple[int | None, str]] = {
    "lower": (1, "the string in lower case"),
    "upper": (1, "the string in upper case"),
    "len": (1, "the number of characters of a string"),
    "abs": (1, "the absolute value of a number or duration"),
    "int": (1, "a number or numeric text as an integer (null if it is not one)"),
    "float": (1, "a number or numeric text as a float (null if it is not one)"),
    "coalesce": (None, "the first of its arguments that is not null"),
}

#: Marks a node whose check failed, so that one mistake is reported once.
_ERROR: Type | None = None


@dataclass(frozen=True)
class CheckedWindow:
    """The aggregation of a windowed rule, resolved: which spans, grouped by what."""

    spec: ast.Window
    by: tuple[Expr, ...]  # resolved group keys
    where: Expr | None  # resolved span filter (may read trace terms)


@dataclass(frozen=True)
class CheckedRule:
    """A rule resolved against a span table: ready to compile."""

    rule: ast.Rule
    predicate: Expr
    message: ast.Template | None
    columns: frozenset[str]
    notes: tuple[Diagnostic, ...] = field(default=())
    window: CheckedWindow | None = None

    @property
    def name(self) -> str:
        return self.rule.name

    @property
    def level(self) -> str:
        """ "span" (each span on its own), "anchored" (each span, with trace context),
        "trace", "sequence", "pattern", "window" (windowed aggregates) or "correlate"."""
        if self.window is not None:
            return "window"
        if self.rule.correlate is not None:
            return "correlate"
        return rule_level(self.predicate, self.message)


def check_rules(rules: Iterable[ast.Rule], schema: SpanSchema) -> list[CheckedRule]:
    """Check every rule; raise one RuleError holding all problems of all rules."""
    checked: list[CheckedRule] = []
    errors: list[Diagnostic] = []
    rules = list(rules)
    for rule in rules:
        try:
            checked.append(check_rule(rule, schema))
        except RuleError as exc:
            errors.extend(exc.diagnostics)
    errors += _check_correlations(rules)
    if errors:
        raise RuleError(errors)
    return checked


def _check_correlations(rules: list[ast.Rule]) -> list[Diagnostic]:
    """Correlations must name rules of the set, other than correlations."""
    names = [r.name for r in rules if r.correlate is None]
    errors = []
    for rule in rules:
        if rule.correlate is None:
            continue
        for name in rule.correlate.rules:
            if name not in names:
                hint = did_you_mean(name, names) or "name enabled rules of this run"
                errors.append(
                    Diagnostic(
                        f"'{rule.name}' correlates unknown rule '{name}'",
                        rule.correlate.pos,
                        hint=hint,
                    )
                )
    return errors


def check_rule(rule: ast.Rule, schema: SpanSchema) -> CheckedRule:
    """Resolve one rule's predicate and message against `schema`."""
    if rule.window is not None:
        return check_window_rule(rule, rule.window, schema)
    if rule.correlate is not None:
        return check_correlate_rule(rule)
    checker = _Checker(schema)
    predicate, kind = checker.resolve(rule.predicate)
    if kind is not _ERROR and kind != Type.BOOL:
        checker.fail(
            f"a rule's condition must be true or false, but this is a {_name(kind)}",
            rule.predicate,
            hint="compare it with something, e.g. `== true` or `exists`",
        )
    message = None
    if isinstance(rule.predicate, ast.Pattern):
        checker.variables = rule.predicate.names  # the message may name the spans
    if rule.message is not None:
        message = _check_message(rule.message, checker.resolve)
    if not isinstance(predicate, ast.Sequence) and any(
        isinstance(n, ast.Sequence) and n.by is not None for n in ast.walk(predicate)
    ):
        checker.fail(
            "a sequence grouped 'by' another key cannot be combined with other conditions",
            rule.predicate,
        )
    if checker.errors:
        raise RuleError(checker.errors)
    nodes = ast.walk(predicate) + _message_nodes(message)
    return CheckedRule(rule, predicate, message, referenced_columns(nodes), tuple(checker.notes))


def _check_message(
    template: ast.Template, resolve: Callable[[Expr], tuple[Expr, Type | None]]
) -> ast.Template:
    """A message template with each `{...}` part resolved by `resolve`; durations print in
    milliseconds: "{span.duration}" -> "412.5ms"."""
    parts: list[str | Expr] = []
    for part in template.parts:
        if isinstance(part, str):
            parts.append(part)
            continue
        resolved, kind = resolve(part)
        if kind == Type.DURATION:
            parts += [ast.InUnit(resolved, 1_000_000, pos=part.pos), "ms"]
        else:
            parts.append(resolved)
    return ast.Template(tuple(parts), pos=template.pos)


def _message_nodes(message: ast.Template | None) -> list[Expr]:
    """Every node of a message's `{...}` parts (for the columns the rule reads)."""
    if message is None:
        return []
    return [n for part in message.parts if not isinstance(part, str) for n in ast.walk(part)]


def check_window_rule(rule: ast.Rule, window: ast.Window, schema: SpanSchema) -> CheckedRule:
    """Resolve a windowed rule: its span filter and group keys read spans (and their
    traces); its condition and message read the window's aggregates and the group keys."""
    checker = _Checker(schema)
    where = checker._boolean(window.where) if window.where is not None else None
    keys: list[Expr] = []
    for key in window.by:
        resolved, kind = checker.resolve(key)
        if kind == Type.LIST or (kind is not _ERROR and isinstance(resolved, ast.Aggregate)):
            checker.fail("a 'by' key must be one value per span", key)
        keys.append(resolved)
    if not schema.can_provide("start_time"):
        checker.fail("a windowed rule needs column 'start_time'", rule.predicate)
    checker.group_keys = tuple(keys)
    checker.has_baseline = window.baseline is not None
    bound = checker.bind_baselines(rule.predicate)
    predicate, kind = checker.resolve(bound)
    if kind is not _ERROR and kind != Type.BOOL:
        checker.fail(
            f"a rule's condition must be true or false, but this is a {_name(kind)}",
            rule.predicate,
            hint="compare an aggregate with a threshold, e.g. `error_rate > 2%`",
        )
    checker.outside_aggregates(predicate)
    if not any(_is_window_aggregate(n) for n in ast.walk(predicate)):
        checker.fail(
            "the condition of a windowed rule must read an aggregate of the window",
            rule.predicate,
            hint="e.g. `count > 100`, `error_rate > 2%`, `p95(span.duration) > 800ms`",
        )
    if window.baseline is not None and not any(
        isinstance(n, ast.Baseline) for n in ast.walk(predicate)
    ):
        checker.notes.append(
            Diagnostic(
                f"rule '{rule.name}' has a 'baseline' its condition never reads",
                window.baseline.pos,
                hint="compare with it, e.g. `avg(span.duration) - baseline > 300ms`",
            )
        )
    message = None
    if rule.message is not None:

        def resolve(part: Expr) -> tuple[Expr, Type | None]:
            resolved, kind = checker.resolve(checker.bind_baselines(part, allow_bare=False))
            checker.outside_aggregates(resolved)
            return resolved, kind

        message = _check_message(rule.message, resolve)
    if checker.errors:
        raise RuleError(checker.errors)
    nodes = ast.walk(predicate) + [n for k in keys for n in ast.walk(k)]
    if where is not None:
        nodes += ast.walk(where)
    nodes += _message_nodes(message)
    columns = referenced_columns(nodes) | {"start_time"}
    checked = CheckedWindow(window, tuple(keys), where)
    return CheckedRule(rule, predicate, message, columns, tuple(checker.notes), checked)


def check_correlate_rule(rule: ast.Rule) -> CheckedRule:
    """A correlation reads signals, not spans: only its message is checked (plain text)."""
    assert rule.correlate is not None
    errors = [
        Diagnostic("a correlate rule's message is plain text", part.pos)
        for part in (rule.message.parts if rule.message else ())
        if not isinstance(part, str)
    ]
    if errors:
        raise RuleError(errors)
    return CheckedRule(rule, rule.predicate, rule.message, frozenset())


def _is_window_aggregate(node: Expr) -> bool:
    return isinstance(node, ast.Aggregate) and node.scope == ast.WINDOW_SCOPE


def window_aggregates(node: Expr) -> list[ast.Aggregate]:
    """The window aggregates a resolved condition reads, outside `baseline(...)`, in order."""
    found: list[ast.Aggregate] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if _is_window_aggregate(current):
            assert isinstance(current, ast.Aggregate)
            found.append(current)
            continue
        if isinstance(current, ast.Baseline):
            continue
        stack.extend(reversed(ast.children(current)))
    return list(dict.fromkeys(found))


def check_expression(expr: Expr, schema: SpanSchema) -> tuple[Expr, Type]:
    """Resolve a free-standing expression (any type); raise RuleError on problems."""
    checker = _Checker(schema)
    resolved, kind = checker.resolve(expr)
    if checker.errors or kind is None:
        raise RuleError(checker.errors)
    return resolved, kind


@dataclass(frozen=True)
class Correlation:
    """How an aggregate that reads `this` (the anchor span) is split for evaluation.

    `keys` pairs an expression over the candidate span with one over the anchor
    (`span.name == this.name`): such aggregates are computed per (trace, key) and
    joined to the anchor. One ordering comparison (`span.start < this.start`) is
    allowed in `has`/`missing`: it compares the anchor with the min/max over the group.
    """

    keys: tuple[tuple[Expr, Expr], ...]
    ordering: tuple[str, Expr, Expr] | None  # (op, candidate expr, anchor expr)
    rest: tuple[Expr, ...]  # conjuncts that do not read `this`


_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


def reads_this(node: Expr) -> bool:
    return any(isinstance(n, ast.Related) and n.relation == "this" for n in ast.walk(node))


def split_correlation(agg: ast.Aggregate) -> Correlation:
    """Split an aggregate's condition into correlation keys, one ordering and the rest.

    Raises ValueError with a message when the aggregate reads `this` in a way fluo
    cannot evaluate without a per-span loop.
    """
    if agg.scope != "trace":
        raise ValueError("'this.' can only be used in aggregates over the whole trace")
    if agg.value is not None and reads_this(agg.value):
        raise ValueError("'this.' can only be used in the condition of an aggregate")
    where = agg.where
    conjuncts = list(where.operands) if isinstance(where, ast.And) else [where] if where else []
    keys: list[tuple[Expr, Expr]] = []
    ordering: tuple[str, Expr, Expr] | None = None
    rest: list[Expr] = []
    for c in conjuncts:
        if not reads_this(c):
            rest.append(c)
            continue
        if not isinstance(c, ast.Compare):
            raise ValueError("'this.' may only appear in comparisons joined by 'and'")
        left_this = isinstance(c.left, ast.Related) and c.left.relation == "this"
        right_this = isinstance(c.right, ast.Related) and c.right.relation == "this"
        if left_this == right_this:
            raise ValueError("compare a field of the span with a field of this: span.x == this.y")
        anchor = c.left if left_this else c.right
        candidate = c.right if left_this else c.left
        op = _FLIP[c.op] if left_this else c.op
        assert isinstance(anchor, ast.Related)
        if reads_this(candidate):
            raise ValueError("'this.' may appear on one side of a comparison only")
        if op == "==":
            keys.append((candidate, anchor.value))
        elif op in ("<", "<=", ">", ">=") and ordering is None and agg.func in ("has", "missing"):
            ordering = (op, candidate, anchor.value)
        else:
            raise ValueError(
                "besides equalities, one ordering comparison with this. is allowed, "
                "and only in has() or missing()"
            )
    return Correlation(tuple(keys), ordering, tuple(rest))


def trace_terms(node: Expr) -> list[Expr]:
    """The trace-level terms of a resolved tree (aggregates, trace fields, related spans)."""
    found: list[Expr] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, ast.Aggregate | ast.TraceField | ast.Related | ast.Sequence):
            found.append(current)
            continue
        stack.extend(ast.children(current))
    return found


def reads_anchor(node: Expr) -> bool:
    """Whether a resolved tree reads fields of the anchor span outside aggregates."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, ast.Column | ast.MapGet):
            return True
        if isinstance(current, ast.Related) and current.relation == "parent":
            return True
        if isinstance(current, ast.Aggregate) and current.scope != "trace":
            return True
        if isinstance(current, ast.Aggregate | ast.TraceField | ast.Related | ast.Sequence):
            continue
        stack.extend(ast.children(current))
    return False


def rule_level(predicate: Expr, message: ast.Template | None = None) -> str:
    """How a rule is evaluated: per span ("span"), per span with trace context
    ("anchored"), or once per trace ("trace")."""
    if isinstance(predicate, ast.Sequence):
        return "sequence"
    if isinstance(predicate, ast.Pattern):
        return "pattern"
    parts: list[Expr] = [predicate]
    if message is not None:
        parts += [p for p in message.parts if not isinstance(p, str)]
    if not any(trace_terms(p) for p in parts):
        return "span"
    return "anchored" if reads_anchor(predicate) else "trace"


def referenced_columns(nodes: Iterable[Expr]) -> frozenset[str]:
    """The table columns a resolved tree reads."""
    out: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Column):
            out.add(node.name)
        elif isinstance(node, ast.MapGet):
            out.add(node.column)
    return frozenset(out)


def _name(kind: Type | None) -> str:
    return {
        Type.TEXT: "attribute value",
        Type.INT: "number",
        Type.FLOAT: "number",
        Type.KIND: "span kind",
        Type.STATUS: "status",
    }.get(kind, kind.value if kind else "?")  # type: ignore[arg-type]


class _Checker:
    """Resolves one tree; collects diagnostics instead of stopping at the first."""

    def __init__(self, schema: SpanSchema):
        self.schema = schema
        self.errors: list[Diagnostic] = []
        self.notes: list[Diagnostic] = []
        self.in_aggregate = False
        self.variables: tuple[str, ...] = ()  # the named spans of a pattern rule
        self.in_bound = False  # resolving the field of a named span
        self.in_window = False  # resolving the argument of a window aggregate
        self.group_keys: tuple[Expr, ...] = ()  # a windowed rule's resolved `by` keys
        self.has_baseline = False  # the windowed rule has a `baseline:`

    @contextlib.contextmanager
    def setting(self, name: str, value: object) -> Iterator[None]:
        """Resolve the body with state `name` (in_aggregate, in_bound, ...) set to `value`;
        the state it had is restored after, whatever happens."""
        before = getattr(self, name)
        setattr(self, name, value)
        try:
            yield
        finally:
            setattr(self, name, before)

    def fail(self, message: str, node: Expr | None, hint: str | None = None) -> None:
        self.errors.append(Diagnostic(message, node.pos if node else None, hint=hint))

    # -- dispatch ------------------------------------------------------------------

    def resolve(self, node: Expr) -> tuple[Expr, Type | None]:
        match node:
            case ast.Str():
                return node, Type.STRING
            case ast.Int():
                return node, Type.INT
            case ast.Float():
                return node, Type.FLOAT
            case ast.Bool():
                return node, Type.BOOL
            case ast.Null():
                return node, Type.NULL
            case ast.Duration():
                return node, Type.DURATION
            case ast.Timestamp():
                return node, Type.TIMESTAMP
            case ast.ListLit():
                self.fail("a list can only stand on the right of 'in'", node)
                return node, _ERROR
            case ast.Name():
                return self._bare_name(node)
            case ast.Field():
                return self._field(node)
            case ast.Attribute():
                return self._attribute(node)
            case ast.Compare():
                return self._compare(node)
            case ast.In():
                return self._in(node)
            case ast.Between():
                return self._between(node)
            case ast.Match():
                return self._match(node)
            case ast.Exists():
                return self._exists(node)
            case ast.Not():
                operand = self._boolean(node.operand)
                return ast.Not(operand, pos=node.pos), Type.BOOL
            case ast.And() | ast.Or():
                operands = tuple(self._boolean(o) for o in node.operands)
                return type(node)(operands, pos=node.pos), Type.BOOL
            case ast.Arith():
                return self._arith(node)
            case ast.Neg():
                return self._neg(node)
            case ast.Call():
                return self._call(node)
            case ast.Aggregate():
                return self._aggregate(node)
            case ast.TraceField():
                return self._trace_field(node)
            case ast.Related():
                return self._related(node)
            case ast.Sequence():
                return self._sequence(node)
            case ast.Pattern():
                return self._pattern(node)
            case ast.Bound():
                return self._bound(node)
            case ast.Absent():
                self.fail("'absent' is a step of a sequence", node)
                return node, _ERROR
            case ast.Baseline():
                return self._baseline(node)
            case ast.Column() | ast.MapGet() | ast.Cast() | ast.InUnit():
                return node, _resolved_type(node)
        self.fail(f"unsupported construct {type(node).__name__}", node)
        return node, _ERROR

    def _boolean(self, node: Expr) -> Expr:
        resolved, kind = self.resolve(node)
        if kind is not _ERROR and kind != Type.BOOL:
            self.fail(
                f"expected a condition (true or false), found a {_name(kind)}",
                node,
                hint="compare it, e.g. `== true`, or test it with `exists`",
            )
        return resolved

    # -- names and fields ------------------------------------------------------------

    def _bare_name(self, node: ast.Name) -> tuple[Expr, Type | None]:
        if node.name in ("span.attributes", "resource.attributes"):
            self.fail(f"'{node.name}' needs a key", node, hint=f'write {node.name}["key"]')
            return node, _ERROR
        head = node.name.split(".")[0]
        if self.variables and "." in node.name:
            self.fail(
                f"unknown span '{head}'",
                node,
                hint=did_you_mean(head, self.variables)
                or f"named spans: {', '.join(self.variables)}",
            )
            return node, _ERROR
        if node.name in ast.WINDOW_METRICS or node.name == "baseline":
            self.fail(
                f"'{node.name}' is an aggregate of windowed rules",
                node,
                hint="add `window: 5m` to the rule to aggregate over time windows",
            )
            return node, _ERROR
        candidates = [f"span.{n}" for n in (*INTRINSICS, *INTRINSIC_ALIASES)]
        hint = did_you_mean(node.name, candidates)
        if hint is None and self.in_aggregate:
            hint = f'a span name is compared: span.name == "{node.name}"'
        elif hint is None and "." in node.name:
            hint = f"an attribute is written span.attributes.{node.name}"
        self.fail(f"unknown name '{node.name}'", node, hint=hint)
        return node, _ERROR

    def _unnamed_in_pattern(self, node: Expr) -> bool:
        if self.variables and not self.in_bound:
            names = ", ".join(self.variables)
            self.fail(
                "with named spans, say which span: a.duration, not span.duration",
                node,
                hint=f"named spans: {names}",
            )
            return True
        return False

    def _field(self, node: ast.Field) -> tuple[Expr, Type | None]:
        if self._unnamed_in_pattern(node):
            return node, _ERROR
        canonical = node.name if node.name in INTRINSICS else INTRINSIC_ALIASES.get(node.name)
        if canonical is None:
            hint = did_you_mean(node.name, [*INTRINSICS, *INTRINSIC_ALIASES])
            hint = hint.replace("'", "'span.", 1) if hint else None
            self.fail(
                f"unknown span field 'span.{node.name}'",
                node,
                hint=hint or f"attributes are written span.attributes.{node.name}",
            )
            return node, _ERROR
        intrinsic = INTRINSICS[canonical]
        missing = [c for c in intrinsic.columns if not self.schema.can_provide(c)]
        if missing:
            self.fail(
                f"'span.{node.name}' needs column '{missing[0]}', which the span table lacks",
                node,
                hint="fields this table has: " + ", ".join(self.schema.field_names()),
            )
            return node, _ERROR
        pos = node.pos
        if canonical in ("duration", "durationMs"):
            duration = self._column("duration_ns", Type.DURATION, pos)
            if canonical == "durationMs":
                return ast.InUnit(duration, 1_000_000, pos=pos), Type.FLOAT
            return duration, Type.DURATION
        if canonical == "end":
            return self._column("end_time", Type.TIMESTAMP, pos), Type.TIMESTAMP
        return ast.Column(intrinsic.columns[0], intrinsic.type.value, pos=pos), intrinsic.type

    def _column(self, name: str, kind: Type, pos: Position | None) -> Expr:
        """A column, or the expression that derives it from the columns the table has."""
        if self.schema.has(name):
            return ast.Column(name, kind.value, pos=pos)
        start = ast.Column("start_time", Type.TIMESTAMP.value, pos=pos)
        if name == "duration_ns":
            end = ast.Column("end_time", Type.TIMESTAMP.value, pos=pos)
            return ast.Arith("-", end, start, pos=pos)
        duration = ast.Column("duration_ns", Type.DURATION.value, pos=pos)
        return ast.Arith("+", start, duration, pos=pos)

    def _attribute(self, node: ast.Attribute) -> tuple[Expr, Type | None]:
        if self._unnamed_in_pattern(node):
            return node, _ERROR
        if node.scope == "resource" and node.key == "service.name":
            return self._field(ast.Field("service", pos=node.pos))
        promoted = self.schema.promoted(node.scope)
        if node.key in promoted:
            kind = type_of_dtype(promoted[node.key])
            if kind is None:
                self.fail(
                    f"attribute '{node.key}' has type {promoted[node.key]}, "
                    "which rules cannot compare",
                    node,
                )
                return node, _ERROR
            return ast.Column(promoted_column(node.scope, node.key), kind.value, pos=node.pos), kind
        if self.schema.has_map(node.scope):
            return ast.MapGet(attribute_map_column(node.scope), node.key, pos=node.pos), Type.TEXT
        self.fail(
            f"{node.scope} attribute '{node.key}' is not in the span table "
            f"(no column '{promoted_column(node.scope, node.key)}' and no "
            f"'{attribute_map_column(node.scope)}' map)",
            node,
            hint="fields this table has: " + ", ".join(self.schema.field_names()),
        )
        return node, _ERROR

    # -- coercion --------------------------------------------------------------------

    def _coerce(
        self, node: Expr, kind: Type | None, target: Type | None, context: Expr
    ) -> tuple[Expr, Type | None]:
        """Make `node` (of type `kind`) comparable with a value of type `target`."""
        if isinstance(node, ast.Name):
            if target in ENUM_VALUES:
                return self._enum_literal(node.name, target, node), target
            return self._bare_name(node)
        if kind is _ERROR or target is _ERROR or kind == target:
            return node, kind
        if kind == Type.NULL:
            return node, target
        if target in ENUM_VALUES and isinstance(node, ast.Str):
            return self._enum_literal(node.value, target, node), target
        if target == Type.TIMESTAMP and isinstance(node, ast.Str):
            return self._timestamp_literal(node), Type.TIMESTAMP
        if target == Type.DURATION and isinstance(node, ast.Str):
            try:
                return ast.Duration(parse_duration(node.value), pos=node.pos), Type.DURATION
            except ValueError as exc:
                self.fail(str(exc), node)
                return node, _ERROR
        if kind is not None and kind.is_numeric and target is not None and target.is_numeric:
            return node, kind
        if kind == Type.TEXT and target is not None:
            if target.is_numeric:
                return ast.Cast(node, Type.FLOAT.value, pos=node.pos), Type.FLOAT
            if target == Type.BOOL:
                return ast.Cast(node, Type.BOOL.value, pos=node.pos), Type.BOOL
            if target in (Type.STRING, *ENUM_VALUES):
                return node, Type.STRING
        if kind in ENUM_VALUES and target in (Type.STRING, Type.TEXT):
            return node, Type.STRING
        if kind == Type.STRING and target == Type.TEXT:
            return node, Type.STRING
        return node, kind

    def _enum_literal(self, text: str, kind: Type, node: Expr) -> Expr:
        """A kind or status spelled any accepted way, as its canonical upper-case name."""
        values = ENUM_VALUES[kind]
        word = text.upper()
        word = word.removeprefix(ENUM_LONG_PREFIX[kind])
        if word == "STATUS_CODE_UNSET":
            word = "UNSET"
        if word in values:
            return ast.Str(word, pos=node.pos)
        self.fail(
            f"'{text}' is not a {_name(kind)}",
            node,
            hint=did_you_mean(word, values) or f"one of {', '.join(values)}",
        )
        return node

    def _timestamp_literal(self, node: ast.Str) -> Expr:
        try:
            stamp = dt.datetime.fromisoformat(node.value.replace("Z", "+00:00"))
        except ValueError:
            self.fail(
                f"'{node.value}' is not a timestamp",
                node,
                hint="write an ISO 8601 time such as 2026-11-20T10:00:00Z",
            )
            return node
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=dt.UTC)
        delta = stamp - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        nanos = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
        return ast.Timestamp(nanos, pos=node.pos)

    def _comparable(
        self, left: Expr, lt: Type | None, right: Expr, rt: Type | None, node: Expr
    ) -> tuple[Expr, Expr, Type | None]:
        """Coerce both sides of a comparison to one type, or report why they cannot be."""
        if lt is _ERROR or rt is _ERROR:
            return left, right, _ERROR
        # Literals and bare names adapt to the side that is a field.
        if _is_constant(left) and not _is_constant(right):
            left, lt = self._coerce(left, lt, rt, node)
            right, rt = self._coerce(right, rt, lt, node)
        else:
            right, rt = self._coerce(right, rt, lt, node)
            left, lt = self._coerce(left, lt, rt, node)
        if lt is _ERROR or rt is _ERROR:
            return left, right, _ERROR
        if lt == Type.NULL or rt == Type.NULL:
            return left, right, Type.NULL
        if lt == rt or (lt and rt and lt.is_numeric and rt.is_numeric):
            return left, right, lt
        if lt and rt and lt.is_stringlike and rt.is_stringlike:
            return left, right, Type.STRING
        hint = None
        if Type.DURATION in (lt, rt) and ((lt and lt.is_numeric) or (rt and rt.is_numeric)):
            hint = "write durations with a unit, e.g. 300ms, or use span.durationMs"
        elif Type.TEXT in (lt, rt) and Type.DURATION in (lt, rt):
            hint = "attribute values have no unit: compare with a number"
        self.fail(f"cannot compare a {_name(lt)} with a {_name(rt)}", node, hint=hint)
        return left, right, _ERROR

    # -- operators -----------------------------------------------------------------------

    def _operand(self, node: Expr) -> tuple[Expr, Type | None]:
        """Resolve one side of a comparison; bare names wait to learn what they are compared to."""
        if isinstance(node, ast.Name) and not node.name.endswith(".attributes"):
            return node, Type.STRING
        return self.resolve(node)

    def _compare(self, node: ast.Compare) -> tuple[Expr, Type | None]:
        left, lt = self._operand(node.left)
        right, rt = self._operand(node.right)
        left, right, kind = self._comparable(left, lt, right, rt, node)
        if lt == rt == Type.TEXT and node.op in ("<", "<=", ">", ">="):
            self.notes.append(
                Diagnostic(
                    f"'{node.op}' between two attribute values compares them as text "
                    '("10" < "9")',
                    node.pos,
                    severity="warning",
                    hint="to compare numbers, write float(a) < float(b)",
                )
            )
        with_null = isinstance(node.left, ast.Null) or isinstance(node.right, ast.Null)
        if with_null and node.op not in ("==", "!="):
            self.fail(f"'{node.op}' cannot compare with null", node, hint="use == null or != null")
            return node, _ERROR
        if node.op not in ("==", "!=") and kind not in (*ORDERED, _ERROR, Type.NULL):
            self.fail(f"'{node.op}' does not apply to a {_name(kind)}", node)
            return node, _ERROR
        return ast.Compare(node.op, left, right, pos=node.pos), Type.BOOL

    def _in(self, node: ast.In) -> tuple[Expr, Type | None]:
        value, vt = self.resolve(node.value)
        if not isinstance(node.items, ast.ListLit):
            self.fail("'in' needs a list on its right, e.g. [1, 2] or @name", node.items)
            return node, _ERROR
        items: list[Expr] = []
        compared = value
        for item in node.items.items:
            if isinstance(item, ast.Null):
                self.fail("a list cannot hold null", item, hint="test it apart: x == null")
                return node, _ERROR
            resolved, it = self._operand(item)
            compared, item2, kind = self._comparable(value, vt, resolved, it, item)
            if kind is _ERROR:
                return node, _ERROR
            if not _is_constant(item2):
                self.fail("list items must be literal values", item)
                return node, _ERROR
            items.append(item2)
        value = compared
        listed = ast.ListLit(tuple(items), pos=node.items.pos)
        return ast.In(value, listed, node.negated, pos=node.pos), Type.BOOL

    def _between(self, node: ast.Between) -> tuple[Expr, Type | None]:
        for bound in (node.low, node.high):
            if isinstance(bound, ast.Null):
                self.fail("'between' needs two values, not null", bound)
                return node, _ERROR
        value, vt = self.resolve(node.value)
        low, lot = self._operand(node.low)
        high, hit = self._operand(node.high)
        value1, low, k1 = self._comparable(value, vt, low, lot, node)
        _, high, k2 = self._comparable(value, vt, high, hit, node)
        if k1 is _ERROR or k2 is _ERROR:
            return node, _ERROR
        if k1 not in ORDERED:
            self.fail(f"'between' does not apply to a {_name(k1)}", node)
            return node, _ERROR
        return ast.Between(value1, low, high, pos=node.pos), Type.BOOL

    def _match(self, node: ast.Match) -> tuple[Expr, Type | None]:
        value, vt = self.resolve(node.value)
        if isinstance(node.pattern, ast.ListLit):
            options = tuple(
                ast.Match(node.op, node.value, p, node.ignore_case, pos=node.pos)
                for p in node.pattern.items
            )
            if not options:
                self.fail(f"'{node.op}' needs at least one pattern", node.pattern)
                return node, _ERROR
            return self.resolve(ast.Or(options, pos=node.pos))
        pattern, pt = self.resolve(node.pattern)
        if vt is _ERROR or pt is _ERROR:
            return node, _ERROR
        if vt is None or not vt.is_stringlike:
            self.fail(f"'{node.op}' applies to strings, not to a {_name(vt)}", node.value)
            return node, _ERROR
        if node.op in ("glob", "matches") and not isinstance(pattern, ast.Str):
            self.fail(f"the pattern of '{node.op}' must be a string literal", node.pattern)
            return node, _ERROR
        if pt is None or not pt.is_stringlike:
            self.fail(f"the pattern of '{node.op}' must be a string", node.pattern)
            return node, _ERROR
        if node.op == "matches" and isinstance(pattern, ast.Str):
            self._validate_regex(pattern, node.ignore_case)
        return ast.Match(node.op, value, pattern, node.ignore_case, pos=node.pos), Type.BOOL

    def _validate_regex(self, pattern: ast.Str, ignore_case: bool) -> None:
        """Compile the regex with Polars' own engine (Rust `regex`), the one that will run it."""
        text = f"(?i){pattern.value}" if ignore_case else pattern.value
        try:
            pl.select(pl.lit("").str.contains(text))
        except pl.exceptions.PolarsError as exc:
            lines = str(exc).splitlines()
            detail = next((ln.strip() for ln in lines if ln.strip().startswith("error:")), "")
            caret = next((ln for ln in lines if ln.strip().startswith("^")), None)
            pos = pattern.pos
            if pos is not None and caret is not None:
                # Polars prints the pattern indented by 4 with carets under the fault.
                offset = len(caret) - len(caret.lstrip()) - 4 - (len(text) - len(pattern.value))
                width = len(caret.strip())
                pos = Position(
                    pos.file, pos.line, pos.column + 1 + max(0, offset), pos.line_text, width
                )
            self.errors.append(
                Diagnostic(
                    f"invalid regular expression: {detail.removeprefix('error: ')}",
                    pos,
                    hint="fluo uses the Rust regex dialect (no look-around, no back-references)",
                )
            )

    def _exists(self, node: ast.Exists) -> tuple[Expr, Type | None]:
        if not isinstance(node.value, ast.Field | ast.Attribute | ast.Related):
            self.fail("'exists' applies to a field or an attribute", node.value)
            return node, _ERROR
        value, kind = self.resolve(node.value)
        if kind is _ERROR:
            return node, _ERROR
        return ast.Exists(value, pos=node.pos), Type.BOOL

    def _arith(self, node: ast.Arith) -> tuple[Expr, Type | None]:
        left, lt = self._numeric_operand(node.left)
        right, rt = self._numeric_operand(node.right)
        if lt is _ERROR or rt is _ERROR:
            return node, _ERROR
        result = _arith_type(node.op, lt, rt)
        if result is None:
            self.fail(f"'{node.op}' does not apply to a {_name(lt)} and a {_name(rt)}", node)
            return node, _ERROR
        return ast.Arith(node.op, left, right, pos=node.pos), result

    def _numeric_operand(self, node: Expr) -> tuple[Expr, Type | None]:
        resolved, kind = self.resolve(node)
        if kind == Type.TEXT:
            return ast.Cast(resolved, Type.FLOAT.value, pos=node.pos), Type.FLOAT
        if kind is not _ERROR and kind not in (*ORDERED[:4],):
            self.fail(f"arithmetic needs numbers, durations or times, not a {_name(kind)}", node)
            return resolved, _ERROR
        return resolved, kind

    def _neg(self, node: ast.Neg) -> tuple[Expr, Type | None]:
        operand, kind = self._numeric_operand(node.operand)
        if kind == Type.TIMESTAMP:
            self.fail("a time cannot be negated", node)
            return node, _ERROR
        return ast.Neg(operand, pos=node.pos), kind

    # -- trace level -------------------------------------------------------------------

    # -- windowed rules ----------------------------------------------------------------

    def bind_baselines(self, node: Expr, allow_bare: bool = True) -> Expr:
        """Give each bare `baseline` the window aggregate it is compared with (unresolved)."""
        if isinstance(node, ast.Compare | ast.Between):
            aggregates = list(
                dict.fromkeys(
                    n
                    for n in _walk_outside_baselines(node)
                    if isinstance(n, ast.Aggregate) and n.scope == ast.WINDOW_SCOPE
                )
            )

            def bind(n: Expr) -> Expr:
                if isinstance(n, ast.Baseline) and n.value is None:
                    if not self.has_baseline:
                        return n  # reported by _baseline
                    if len(aggregates) == 1:
                        return ast.Baseline(aggregates[0], pos=n.pos)
                    self.fail(
                        "a bare 'baseline' needs exactly one aggregate beside it",
                        n,
                        hint="name the aggregate: baseline(p95(span.duration))",
                    )
                    return n
                return ast.map_children(n, bind)

            return bind(node)
        if isinstance(node, ast.Baseline) and node.value is None and not allow_bare:
            self.fail("name the aggregate: baseline(avg(span.duration))", node)
            return node
        return ast.map_children(node, lambda n: self.bind_baselines(n, allow_bare))

    def _baseline(self, node: ast.Baseline) -> tuple[Expr, Type | None]:
        if node.value is None and self.has_baseline:
            return node, _ERROR  # reported by bind_baselines
        if not self.has_baseline:
            self.fail(
                "'baseline' needs a `baseline:` in the rule",
                node,
                hint="e.g. `baseline: previous 12` (windows), `1d ago` or `data`",
            )
            return node, _ERROR
        assert node.value is not None
        value, kind = self.resolve(node.value)
        if kind is not _ERROR and not _is_window_aggregate(value):
            self.fail("'baseline' takes an aggregate of the window, e.g. p95(span.duration)", node)
            return node, _ERROR
        return ast.Baseline(value, pos=node.pos), kind

    def outside_aggregates(self, node: Expr) -> None:
        """Outside its aggregates, a windowed rule's condition may read only group keys."""
        if node in self.group_keys or _is_window_aggregate(node):
            return
        if isinstance(node, ast.Baseline):
            return
        if isinstance(node, ast.Column | ast.MapGet | ast.TraceField | ast.Related):
            self.fail(
                "a windowed rule reads span fields inside aggregates or as 'by' keys",
                node,
                hint="aggregate it (e.g. max(...)) or add it to 'by'",
            )
            return
        if isinstance(node, ast.Aggregate):
            self.fail("a windowed rule's aggregates range over the window", node)
            return
        for child in ast.children(node):
            self.outside_aggregates(child)

    def _aggregate_arguments(
        self, node: ast.Aggregate, inside: str
    ) -> tuple[ast.Aggregate, Type | None]:
        """`node` with its condition and value resolved (with flag `inside` set while they
        are), and the value's type."""
        with self.setting(inside, True):
            where = self._boolean(node.where) if node.where is not None else None
            value, kind = (None, None) if node.value is None else self.resolve(node.value)
        return ast.Aggregate(node.func, value, where, node.scope, pos=node.pos), kind

    def _window_aggregate(self, node: ast.Aggregate) -> tuple[Expr, Type | None]:
        """An aggregate over the spans of one group in one window."""
        if self.in_window:
            self.fail("aggregates over a window cannot be nested", node)
            return node, _ERROR
        resolved, kind = self._aggregate_arguments(node, "in_window")
        if node.value is not None and kind is _ERROR:
            return node, _ERROR
        if node.func in ("rate", "ratio"):
            return resolved, Type.FLOAT
        return self._aggregate_type(resolved, kind)

    def _aggregate(self, node: ast.Aggregate) -> tuple[Expr, Type | None]:
        if node.scope == ast.WINDOW_SCOPE:
            return self._window_aggregate(node)
        if node.func in ast.WINDOW_AGGREGATES:
            self.fail(
                f"'{node.func}' is an aggregate of windowed rules",
                node,
                hint="add `window: 5m` to the rule to aggregate over time windows",
            )
            return node, _ERROR
        if self.in_aggregate:
            self.fail("aggregates cannot be nested", node)
            return node, _ERROR
        resolved, kind = self._aggregate_arguments(node, "in_aggregate")
        if node.value is not None and kind is _ERROR:
            return node, _ERROR
        if reads_this(resolved):
            try:
                split_correlation(resolved)
            except ValueError as exc:
                self.fail(str(exc), node)
                return node, _ERROR
        if node.scope == "siblings" and node.func not in ("count", "has", "missing"):
            self.fail("over siblings, only count, has and missing are supported", node)
            return node, _ERROR
        return self._aggregate_type(resolved, kind)

    def _aggregate_type(
        self, resolved: ast.Aggregate, kind: Type | None
    ) -> tuple[Expr, Type | None]:
        """The type of an aggregate whose arguments are resolved (`kind`: its value's)."""
        node, value, where, func = resolved, resolved.value, resolved.where, resolved.func
        if func == "count":
            return resolved, Type.INT
        if func in ("has", "missing"):
            return resolved, Type.BOOL
        if func == "all":
            if kind != Type.BOOL:
                self.fail(f"'all' needs a condition, not a {_name(kind)}", node.value)
                return node, _ERROR
            return resolved, Type.BOOL
        if func == "distinct":
            return resolved, Type.INT
        if kind == Type.TEXT:
            assert value is not None
            value, kind = ast.Cast(value, Type.FLOAT.value, pos=value.pos), Type.FLOAT
            resolved = ast.Aggregate(func, value, where, node.scope, pos=node.pos)
        allowed = ORDERED if func in ("max", "min") else (Type.INT, Type.FLOAT, Type.DURATION)
        if kind not in allowed:
            self.fail(f"'{func}' does not apply to a {_name(kind)}", node.value)
            return node, _ERROR
        if func in ("avg", "median") or func.startswith("p"):
            return resolved, Type.DURATION if kind == Type.DURATION else Type.FLOAT
        return resolved, kind

    def _pattern(self, node: ast.Pattern) -> tuple[Expr, Type | None]:
        if self.in_aggregate or self.variables:
            self.fail("named spans cannot be nested", node)
            return node, _ERROR
        with self.setting("in_aggregate", True):  # each span's condition reads it alone
            bindings = tuple((n, self._boolean(p)) for n, p in node.bindings)
        with self.setting("variables", node.names):
            condition = self._boolean(node.condition)
        for term in ast.walk(condition):
            if isinstance(term, ast.Aggregate | ast.Sequence) or (
                isinstance(term, ast.Related) and term.relation != "root"
            ):
                self.fail(
                    "with named spans, relate them directly (child_of(b, a), a.start < b.start); "
                    "aggregates, sequences and parent./this. are not supported here",
                    term,
                )
                return node, _ERROR
        return ast.Pattern(bindings, condition, pos=node.pos), Type.BOOL

    def _bound(self, node: ast.Bound) -> tuple[Expr, Type | None]:
        if node.var not in self.variables:
            self.fail(
                f"unknown span '{node.var}'", node, hint=did_you_mean(node.var, self.variables)
            )
            return node, _ERROR
        with self.setting("in_bound", True):
            value, kind = self.resolve(node.value)
        return ast.Bound(node.var, value, pos=node.pos), kind

    def _relation(self, node: ast.Call) -> tuple[Expr, Type | None]:
        """child_of(x, y), parent_of, descendant_of, ancestor_of, sibling_of between named spans."""
        if len(node.args) != 2:
            self.fail(f"'{node.func}' relates two named spans: {node.func}(b, a)", node)
            return node, _ERROR
        for arg in node.args:
            if not isinstance(arg, ast.Name) or arg.name not in self.variables:
                shown = arg.name if isinstance(arg, ast.Name) else "this argument"
                names = ", ".join(self.variables) or "none: name them under 'spans'"
                self.fail(f"'{shown}' is not a named span", arg, hint=f"named spans: {names}")
                return node, _ERROR
        a, b = (arg.name for arg in node.args if isinstance(arg, ast.Name))
        if a == b:
            self.fail(f"'{node.func}' needs two different spans", node)
            return node, _ERROR
        if not self.schema.has("parent_span_id"):
            self.fail(f"'{node.func}' needs column 'parent_span_id'", node)
            return node, _ERROR
        return node, Type.BOOL

    def _sequence(self, node: ast.Sequence) -> tuple[Expr, Type | None]:
        if self.in_aggregate:
            self.fail("a sequence cannot be used inside an aggregate", node)
            return node, _ERROR
        if not self.schema.can_provide("start_time"):
            self.fail("a sequence needs column 'start_time'", node)
            return node, _ERROR
        with self.setting("in_aggregate", True):  # steps, `by`, `until` read one span each
            steps = tuple(
                ast.Absent(self._boolean(s.predicate), pos=s.pos)
                if isinstance(s, ast.Absent)
                else self._boolean(s)
                for s in node.steps
            )
            until = self._boolean(node.until) if node.until is not None else None
            by = self.resolve(node.by)[0] if node.by is not None else None
        resolved = ast.Sequence(steps, by, node.within, until, pos=node.pos)
        if reads_this(resolved):
            self.fail("'this.' cannot be used in a sequence", node)
            return node, _ERROR
        return resolved, Type.BOOL

    def _trace_field(self, node: ast.TraceField) -> tuple[Expr, Type | None]:
        if self.in_aggregate:
            self.fail("trace fields cannot be used inside an aggregate", node)
            return node, _ERROR
        needed = {
            "duration": ("start_time", "end_time"),
            "start": ("start_time",),
            "end": ("end_time",),
            "error_count": ("status_code",),
            "span_count": (),
        }[node.name]
        missing = [c for c in needed if not self.schema.can_provide(c)]
        if missing:
            self.fail(f"'trace.{node.name}' needs column '{missing[0]}'", node)
            return node, _ERROR
        kind = {
            "duration": Type.DURATION,
            "start": Type.TIMESTAMP,
            "end": Type.TIMESTAMP,
        }.get(node.name, Type.INT)
        return node, kind

    def _related(self, node: ast.Related) -> tuple[Expr, Type | None]:
        if node.relation == "this":
            if not self.in_aggregate:
                return self.resolve(node.value)
            with self.setting("in_aggregate", False):
                value, kind = self.resolve(node.value)
            return ast.Related("this", value, pos=node.pos), kind
        if self.in_aggregate:
            self.fail(f"'{node.relation}.' fields cannot be used inside an aggregate", node)
            return node, _ERROR
        if node.relation == "parent" and not self.schema.has("parent_span_id"):
            self.fail("'parent.' needs column 'parent_span_id'", node)
            return node, _ERROR
        with self.setting("in_bound", True):
            value, kind = self.resolve(node.value)
        if kind is _ERROR:
            return node, _ERROR
        if not isinstance(value, ast.Column | ast.MapGet | ast.InUnit | ast.Arith):
            self.fail(f"'{node.relation}.' takes a span field", node)
            return node, _ERROR
        return ast.Related(node.relation, value, pos=node.pos), kind

    def _call(self, node: ast.Call) -> tuple[Expr, Type | None]:
        if node.func in ast.RELATION_FUNCTIONS:
            return self._relation(node)
        if node.func not in FUNCTIONS:
            self.fail(
                f"unknown function '{node.func}'",
                node,
                hint=did_you_mean(node.func, FUNCTIONS) or f"functions: {', '.join(FUNCTIONS)}",
            )
            return node, _ERROR
        arity, _ = FUNCTIONS[node.func]
        if (arity is not None and len(node.args) != arity) or not node.args:
            self.fail(f"'{node.func}' takes {arity or 'one or more'} argument(s)", node)
            return node, _ERROR
        resolved = [self.resolve(a) for a in node.args]
        if any(k is _ERROR for _, k in resolved):
            return node, _ERROR
        args = tuple(r for r, _ in resolved)
        kinds = [k for _, k in resolved]
        first = kinds[0]
        call = ast.Call(node.func, args, pos=node.pos)
        if node.func in ("lower", "upper", "len"):
            if first is None or not first.is_stringlike:
                self.fail(f"'{node.func}' takes a string, not a {_name(first)}", node)
                return node, _ERROR
            return call, Type.INT if node.func == "len" else Type.STRING
        if node.func == "abs":
            if first not in (Type.INT, Type.FLOAT, Type.DURATION, Type.TEXT):
                self.fail(f"'abs' takes a number or a duration, not a {_name(first)}", node)
                return node, _ERROR
            if first == Type.TEXT:
                return ast.Call("abs", (ast.Cast(args[0], "float"),), pos=node.pos), Type.FLOAT
            return call, first
        if node.func in ("int", "float"):
            if first not in (Type.INT, Type.FLOAT, Type.TEXT, Type.STRING, Type.BOOL):
                self.fail(f"'{node.func}' cannot convert a {_name(first)}", node)
                return node, _ERROR
            return ast.Cast(args[0], node.func, pos=node.pos), Type(node.func)
        # coalesce: all arguments of one type; numbers (and attribute text) mix as floats
        present = [k for k in kinds if k != Type.NULL]
        numeric = (Type.INT, Type.FLOAT, Type.TEXT)
        if any(k in (Type.INT, Type.FLOAT) for k in present) and all(k in numeric for k in present):
            number = Type.INT if all(k == Type.INT for k in present) else Type.FLOAT
            args = tuple(
                ast.Cast(a, Type.FLOAT.value, pos=a.pos)
                if number == Type.FLOAT and k in (Type.INT, Type.TEXT)
                else a
                for a, k in zip(args, kinds, strict=True)
            )
            return ast.Call("coalesce", args, pos=node.pos), number
        target = next((k for k in kinds if k not in (Type.NULL, Type.TEXT)), first)
        coerced = [self._coerce(a, k, target, node) for a, k in zip(args, kinds, strict=True)]
        if any(k not in (target, Type.NULL) for _, k in coerced):
            self.fail("'coalesce' needs arguments of one type", node)
            return node, _ERROR
        return ast.Call("coalesce", tuple(a for a, _ in coerced), pos=node.pos), target


def _walk_outside_baselines(node: Expr) -> list[Expr]:
    out: list[Expr] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, ast.Baseline):
            continue
        out.append(current)
        stack.extend(ast.children(current))
    return out


def _is_constant(node: Expr) -> bool:
    return isinstance(node, (*ast.LITERALS, ast.Name))


def _resolved_type(node: Expr) -> Type | None:
    match node:
        case ast.Column(type=t) | ast.Cast(to=t):
            return Type(t)
        case ast.MapGet():
            return Type.TEXT
        case ast.InUnit():
            return Type.FLOAT
    return None


_ARITH_RULES: dict[tuple[str, Type, Type], Type] = {}
for _op in "+-*/%":
    for _a in (Type.INT, Type.FLOAT):
        for _b in (Type.INT, Type.FLOAT):
            _int_result = _a == Type.INT and _b == Type.INT and _op != "/"
            _ARITH_RULES[(_op, _a, _b)] = Type.INT if _int_result else Type.FLOAT
for _op in "+-":
    _ARITH_RULES[(_op, Type.DURATION, Type.DURATION)] = Type.DURATION
    _ARITH_RULES[(_op, Type.TIMESTAMP, Type.DURATION)] = Type.TIMESTAMP
_ARITH_RULES[("+", Type.DURATION, Type.TIMESTAMP)] = Type.TIMESTAMP
_ARITH_RULES[("-", Type.TIMESTAMP, Type.TIMESTAMP)] = Type.DURATION
for _n in (Type.INT, Type.FLOAT):
    _ARITH_RULES[("*", Type.DURATION, _n)] = Type.DURATION
    _ARITH_RULES[("*", _n, Type.DURATION)] = Type.DURATION
    _ARITH_RULES[("/", Type.DURATION, _n)] = Type.DURATION
_ARITH_RULES[("/", Type.DURATION, Type.DURATION)] = Type.FLOAT
_ARITH_RULES[("%", Type.DURATION, Type.DURATION)] = Type.DURATION


def _arith_type(op: str, left: Type | None, right: Type | None) -> Type | None:
    """The type of `left op right`, or None when the operation means nothing."""
    if left is None or right is None:
        return None
    return _ARITH_RULES.get((op, left, right))
