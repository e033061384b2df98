"""Stage 2a: the fluo expression language (Lark) into fluo's AST.

`parse_expression` parses one DSL string; `parse_template` a message template.
Lists (`@name` or a bare list name) and macros (a bare macro name) are expanded
here, so later stages see only self-contained trees. Lark trees and Lark errors
never leave this module: errors become `RuleError` with file positions.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar, cast

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)

from fluo import ast
from fluo.ast import Expr, Position
from fluo.errors import Diagnostic, RuleError, did_you_mean
from fluo.load import Located

Locator = Callable[[int], Position]
_T = TypeVar("_T")

DURATION_UNITS: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
}

OPERATOR_WORDS = (
    "and",
    "or",
    "not",
    "in",
    "between",
    "exists",
    "contains",
    "startswith",
    "endswith",
    "glob",
    "matches",
    "icontains",
    "istartswith",
    "iendswith",
    "iglob",
    "imatches",
)

#: Words users reach for that the language spells differently.
OPERATOR_SYNONYMS = {
    "eq": "==",
    "equals": "==",
    "ne": "!=",
    "neq": "!=",
    "gt": ">",
    "greater": ">",
    "gte": ">=",
    "ge": ">=",
    "lt": "<",
    "less": "<",
    "lte": "<=",
    "le": "<=",
    "like": "glob",
    "regex": "matches",
    "starts_with": "startswith",
    "ends_with": "endswith",
    "has": "contains",
    "is": "==",
}

_TERMINAL_NAMES = {
    "COMPARE_OP": "a comparison (== != < <= > >=)",
    "MATCH_OP": "a string operator (contains, startswith, endswith, glob, matches)",
    "ADD_OP": "+ or -",
    "MUL_OP": "* / or %",
    "NAME": "a field or name",
    "STRING": "a string",
    "INT": "a number",
    "FLOAT": "a number",
    "DURATION": "a duration (e.g. 300ms)",
    "_AND": "'and'",
    "_OR": "'or'",
    "_NOT": "'not'",
    "_IN": "'in'",
    "_BETWEEN": "'between'",
    "_EXISTS": "'exists'",
    "_TRUE": "true",
    "_FALSE": "false",
    "_NULL": "null",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "COMMA": "','",
    "DOT": "'.'",
    "AT": "'@'",
    "MINUS": "'-'",
    "$END": "the end of the expression",
}


def grammar_text() -> str:
    """The Lark grammar: packaged inside the wheel, or grammar/ in a source checkout."""
    packaged = resources.files("fluo").joinpath("grammar/fluo.lark")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parent.parent / "grammar" / "fluo.lark").read_text("utf-8")


@functools.cache
def _parser() -> Lark:
    return Lark(
        grammar_text(),
        parser="lalr",
        lexer="contextual",
        propagate_positions=True,
        maybe_placeholders=True,
        cache=False,
    )


def default_locator(text: str, file: str | None = None) -> Locator:
    """Positions inside a free-standing DSL string (not from a YAML file)."""
    lines = text.split("\n")

    def locate(offset: int) -> Position:
        line = text.count("\n", 0, offset)
        col = offset - (text.rfind("\n", 0, offset) + 1)
        return Position(file, line + 1, col + 1, lines[line] if line < len(lines) else "")

    return locate


def parse_expression(
    text: str,
    *,
    locate: Locator | None = None,
    lists: Mapping[str, ast.ListLit] | None = None,
    macros: Mapping[str, Expr] | None = None,
    variables: frozenset[str] = frozenset(),
) -> Expr:
    """Parse one expression of the rule language; expand list and macro references.

    `variables` are the span names a pattern rule binds: `a.duration` reads span a.
    """
    locate = locate or default_locator(text)
    if not text.strip():
        raise RuleError([Diagnostic("empty expression", locate(0))])
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as exc:
        raise RuleError([_syntax_error(exc, text, locate)]) from None
    builder = _Builder(locate, text, variables)
    try:
        node = builder.transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, _BuildError):
            raise RuleError([exc.orig_exc.diagnostic]) from None
        raise
    return expand_names(_where_chains_to_has(node), lists or {}, macros or {})


def parse_template(
    text: str, *, locate: Locator | None = None, variables: frozenset[str] = frozenset()
) -> ast.Template:
    """Parse a message template: text with `{expression}` holes; `{{` and `}}` are braces."""
    locate = locate or default_locator(text)
    parts: list[str | Expr] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if text.startswith("{{", i) or text.startswith("}}", i):
            literal.append(ch)
            i += 2
            continue
        if ch == "}":
            raise RuleError([Diagnostic("unmatched '}' in message (write '}}')", locate(i))])
        if ch == "{":
            end = text.find("}", i)
            if end < 0:
                raise RuleError([Diagnostic("unclosed '{' in message", locate(i))])
            if literal:
                parts.append("".join(literal))
                literal = []
            start = i + 1

            def shifted(offset: int, start: int = start) -> Position:
                return locate(start + offset)

            parts.append(parse_expression(text[start:end], locate=shifted, variables=variables))
            i = end + 1
            continue
        literal.append(ch)
        i += 1
    if literal:
        parts.append("".join(literal))
    return ast.Template(tuple(parts), pos=locate(0))


def parse_duration(text: str) -> int:
    """Nanoseconds in a duration literal such as `300ms` or `1.5s`; ValueError if malformed."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s|m|h|d)", text.strip())
    if not match:
        raise ValueError(f"not a duration: {text!r} (write e.g. 300ms, 1.5s, 2m)")
    try:
        nanos = Decimal(match.group(1)) * DURATION_UNITS[match.group(2)]
    except InvalidOperation:
        raise ValueError(f"not a duration: {text!r}") from None
    if nanos != nanos.to_integral_value():
        raise ValueError(f"duration {text!r} is finer than a nanosecond")
    return int(nanos)


def unquote(token: str) -> str:
    """The value of a quoted string literal: \\" \\' \\\\ \\n \\t are escapes, nothing else."""
    body = token[1:-1]
    escapes = {'"': '"', "'": "'", "\\": "\\", "n": "\n", "t": "\t"}
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body) and body[i + 1] in escapes:
            out.append(escapes[body[i + 1]])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def path_to_node(names: list[str], pos: Position) -> Expr:
    """Turn a dotted path into a field, an attribute or a bare name.

    `span.attributes.<key>` and `resource.attributes.<key>` take everything after
    `attributes.` as one key (OTel keys are flat dotted strings); `resource.<key>`
    is short for `resource.attributes.<key>`; `resource.service.name` is the service.
    `trace.<field>` is a trace field; `root.`, `parent.` and `this.` read a related span.
    """
    head, rest = names[0], names[1:]
    if head == "trace" and len(rest) == 1 and rest[0] in ast.TRACE_FIELDS:
        return ast.TraceField(rest[0], pos=pos)
    if head in ast.RELATIONS and rest:
        return ast.Related(head, path_to_node(["span", *rest], pos), pos=pos)
    if head in ("span", "resource") and rest:
        if rest[0] == "attributes":
            if len(rest) == 1:
                # Valid only when indexed (`span.attributes["k"]`); the checker reports the rest.
                return ast.Name(f"{head}.attributes", pos=pos)
            return ast.Attribute(head, ".".join(rest[1:]), pos=pos)
        if head == "span":
            return ast.Field(".".join(rest), pos=pos)
        if rest == ["service", "name"]:
            return ast.Field("service", pos=pos)
        return ast.Attribute("resource", ".".join(rest), pos=pos)
    return ast.Name(".".join(names), pos=pos)


class _BuildError(Exception):
    def __init__(self, diagnostic: Diagnostic):
        self.diagnostic = diagnostic


@v_args(meta=True)
class _Builder(Transformer[Token, Expr]):
    """Lark tree -> fluo AST, with positions mapped to the rule file."""

    def __init__(self, locate: Locator, text: str, variables: frozenset[str] = frozenset()):
        super().__init__()
        self._locate = locate
        self._text = text
        self._variables = variables

    def _pos(self, meta: Any) -> Position:
        offset = getattr(meta, "start_pos", 0) or 0
        end = getattr(meta, "end_pos", offset + 1) or offset + 1
        p = self._locate(offset)
        return Position(p.file, p.line, p.column, p.line_text, max(1, end - offset))

    def _token_pos(self, token: Token) -> Position:
        p = self._locate(token.start_pos or 0)
        return Position(p.file, p.line, p.column, p.line_text, max(1, len(token)))

    # literals
    def string(self, meta: Any, children: list[Token]) -> Expr:
        return ast.Str(unquote(str(children[0])), pos=self._pos(meta))

    def int_(self, meta: Any, children: list[Token]) -> Expr:
        return ast.Int(int(children[0]), pos=self._pos(meta))

    def float_(self, meta: Any, children: list[Token]) -> Expr:
        return ast.Float(float(children[0]), pos=self._pos(meta))

    def percent(self, meta: Any, children: list[Token]) -> Expr:
        return ast.Float(float(Decimal(str(children[0])[:-1]) / 100), pos=self._pos(meta))

    def duration(self, meta: Any, children: list[Token]) -> Expr:
        try:
            return ast.Duration(parse_duration(str(children[0])), pos=self._pos(meta))
        except ValueError as exc:
            raise _BuildError(Diagnostic(str(exc), self._pos(meta))) from None

    def true(self, meta: Any, children: list[Any]) -> Expr:
        return ast.Bool(True, pos=self._pos(meta))

    def false(self, meta: Any, children: list[Any]) -> Expr:
        return ast.Bool(False, pos=self._pos(meta))

    def null(self, meta: Any, children: list[Any]) -> Expr:
        return ast.Null(pos=self._pos(meta))

    def list_(self, meta: Any, children: list[Expr | None]) -> Expr:
        return ast.ListLit(tuple(c for c in children if c is not None), pos=self._pos(meta))

    def list_ref(self, meta: Any, children: list[Token]) -> Expr:
        return _ListRef(str(children[0]), pos=self._pos(meta))

    # names
    def path(self, meta: Any, children: list[Token]) -> Expr:
        names = [str(c) for c in children]
        pos = self._pos(meta)
        if names[0] in self._variables and len(names) > 1:
            return ast.Bound(names[0], path_to_node(["span", *names[1:]], pos), pos=pos)
        return path_to_node(names, pos)

    def indexed(self, meta: Any, children: list[Any]) -> Expr:
        base, key = children
        pos = self._pos(meta)
        if isinstance(base, ast.Related | ast.Bound):  # root.attributes["k"], a.attributes["k"]
            inner = self.indexed(meta, [base.value, key])
            if isinstance(base, ast.Related):
                return ast.Related(base.relation, inner, pos=pos)
            return ast.Bound(base.var, inner, pos=pos)
        if isinstance(base, ast.Name) and base.name in ("span.attributes", "resource.attributes"):
            return ast.Attribute(base.name.split(".")[0], unquote(str(key)), pos=pos)
        raise _BuildError(
            Diagnostic(
                'only span.attributes and resource.attributes can be indexed with ["key"]',
                pos,
            )
        )

    def arg(self, meta: Any, children: list[Any]) -> tuple[Expr, Expr | None]:
        value, where = [*children, None][:2]
        return value, where

    def call(self, meta: Any, children: list[Any]) -> Expr:
        base, *raw_args = children
        pos = self._pos(meta)
        args: list[tuple[Expr, Expr | None]] = [a for a in raw_args if a is not None]
        name = base.name if isinstance(base, ast.Name) else None
        if name is None:
            raise _BuildError(Diagnostic("only functions and aggregates can be called", pos))
        scope, _, func = name.rpartition(".")
        if func in ast.AGGREGATES or func in ast.WINDOW_AGGREGATES:
            return self._aggregate(func, scope or "trace", args, pos)
        if scope:
            hint = did_you_mean(func, ast.AGGREGATES) if scope in ast.SCOPES else None
            raise _BuildError(Diagnostic(f"unknown function '{name}'", pos, hint=hint))
        if any(where is not None for _, where in args):
            raise _BuildError(Diagnostic(f"'{name}' takes no 'where' filter", pos))
        return ast.Call(name, tuple(value for value, _ in args), pos=pos)

    def _aggregate(
        self, func: str, scope: str, args: list[tuple[Expr, Expr | None]], pos: Position
    ) -> Expr:
        """`count(P)`, `has(P)`, `missing(P)`, `all(Q where P)`, `max(v where P)` and friends."""
        if scope not in ast.SCOPES:
            hint = did_you_mean(scope, ast.SCOPES) or f"scopes: {', '.join(ast.SCOPES)}"
            raise _BuildError(Diagnostic(f"unknown span scope '{scope}'", pos, hint=hint))
        if len(args) > 1:
            raise _BuildError(Diagnostic(f"'{func}' takes one argument", pos))
        value, where = args[0] if args else (None, None)
        if func in ("count", "has", "missing", "rate", "ratio"):
            if where is not None:
                raise _BuildError(
                    Diagnostic(
                        f"write {func}(P), not {func}(x where P)",
                        pos,
                        hint=f"the argument of '{func}' is the span condition",
                    )
                )
            if value is None and func not in ("count", "rate"):
                raise _BuildError(Diagnostic(f"'{func}' needs a span condition", pos))
            return ast.Aggregate(func, None, value, scope, pos=pos)
        if value is None:
            raise _BuildError(Diagnostic(f"'{func}' needs an argument", pos))
        return ast.Aggregate(func, value, where, scope, pos=pos)

    def where_chain(self, meta: Any, children: list[Any]) -> Expr:
        """`name.where(c1).where(c2)`: the FLUO form of "a span named name with c1 and c2"."""
        first_call = next(c for c in children if isinstance(c, Token) and c.type == "WHERE_CALL")
        raw = self._text[meta.start_pos : first_call.start_pos].strip()
        name = unquote(raw) if raw[:1] in "\"'" else raw
        conditions = tuple(c for c in children[1:] if not isinstance(c, Token))
        return cast(Expr, _WhereChain(name, conditions, pos=self._pos(meta)))

    # operators
    def or_(self, meta: Any, children: list[Expr]) -> Expr:
        return ast.Or(_flatten(ast.Or, children), pos=self._pos(meta))

    def and_(self, meta: Any, children: list[Expr]) -> Expr:
        return ast.And(_flatten(ast.And, children), pos=self._pos(meta))

    def not_(self, meta: Any, children: list[Expr]) -> Expr:
        return ast.Not(children[0], pos=self._pos(meta))

    def compare(self, meta: Any, children: list[Any]) -> Expr:
        left, op, right = children
        return ast.Compare(str(op), left, right, pos=self._token_pos(op))

    def in_(self, meta: Any, children: list[Expr]) -> Expr:
        return ast.In(children[0], children[1], pos=self._pos(meta))

    def not_in(self, meta: Any, children: list[Expr]) -> Expr:
        return ast.In(children[0], children[1], negated=True, pos=self._pos(meta))

    def between(self, meta: Any, children: list[Expr]) -> Expr:
        return ast.Between(children[0], children[1], children[2], pos=self._pos(meta))

    def match(self, meta: Any, children: list[Any]) -> Expr:
        value, op, pattern = children
        word = str(op)
        ignore_case = word.startswith("i")
        return ast.Match(
            word[1:] if ignore_case else word,
            value,
            pattern,
            ignore_case=ignore_case,
            pos=self._token_pos(op),
        )

    def not_match(self, meta: Any, children: list[Any]) -> Expr:
        return ast.Not(self.match(meta, children), pos=self._pos(meta))

    def exists(self, meta: Any, children: list[Expr]) -> Expr:
        return ast.Exists(children[0], pos=self._pos(meta))

    def not_exists(self, meta: Any, children: list[Expr]) -> Expr:
        return ast.Not(ast.Exists(children[0], pos=self._pos(meta)), pos=self._pos(meta))

    def arith(self, meta: Any, children: list[Any]) -> Expr:
        left, op, right = children
        return ast.Arith(str(op), left, right, pos=self._token_pos(op))

    def fluo_rule(self, meta: Any, children: list[Expr | None]) -> Expr:
        when, always, never = [*children, None, None][:3]
        assert when is not None
        return from_fluo(when, always, never, self._pos(meta))

    def neg(self, meta: Any, children: list[Expr]) -> Expr:
        operand = children[0]
        pos = self._pos(meta)
        # Fold negative literals so that `-5` is a literal, as users expect.
        if isinstance(operand, ast.Int):
            return ast.Int(-operand.value, pos=pos)
        if isinstance(operand, ast.Float):
            return ast.Float(-operand.value, pos=pos)
        if isinstance(operand, ast.Duration):
            return ast.Duration(-operand.nanos, pos=pos)
        return ast.Neg(operand, pos=pos)


class _ListRef(ast.Name):
    """`@name`: a reference that must resolve to a list (internal to the parser)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class _WhereChain(ast.Node):
    """`name.where(...)...` before translation into `has(...)` (internal to the parser)."""

    name: str
    conditions: tuple[Expr, ...]
    pos: Position | None = field(default=None, compare=False, repr=False, kw_only=True)


# --- FLUO (BeTrace) rules --------------------------------------------------------------

#: Span fields FLUO users may name bare inside `.where(...)`; any other bare name is an attribute.
FLUO_INTRINSICS = {
    "name": "name",
    "duration": "duration",
    "duration_ms": "durationMs",
    "durationMs": "durationMs",
    "status": "status",
    "kind": "kind",
    "service": "service",
    "service_name": "service",
}
# A string-valued intrinsic compared with a number is read as the attribute of that name.


def from_fluo(when: Expr, always: Expr | None, never: Expr | None, pos: Position) -> Expr:
    """A FLUO rule as one fluo condition: `when and (not always or never)`.

    FLUO fires when `when` holds and an `always` part fails or a `never` part holds;
    a `when` alone is a plain detector. When `when` starts with a span term
    (`payment.charge.where(...)`), that span is the anchor of the signal, so the
    condition is stated per span: `<the span> and <rest of when> and <violation>`.
    """
    w = _fluo_term(when)
    violation: Expr | None = None
    if always is not None:
        violation = ast.Not(_fluo_term(always), pos=always.pos)
    if never is not None:
        n = _fluo_term(never)
        violation = n if violation is None else ast.Or((violation, n), pos=never.pos)
    conjuncts: list[Expr] = list(w.operands) if isinstance(w, ast.And) else [w]
    first = conjuncts[0]
    if isinstance(first, ast.Aggregate) and first.func == "has" and first.where is not None:
        conjuncts[0] = first.where  # anchor on the spans the first term names
    if violation is not None:
        conjuncts.append(violation)
    return conjuncts[0] if len(conjuncts) == 1 else ast.And(tuple(conjuncts), pos=pos)


def _span_named(name: str, pos: Position | None) -> Expr:
    return ast.Compare("==", ast.Field("name", pos=pos), ast.Str(name, pos=pos), pos=pos)


def _fluo_term(node: Expr) -> Expr:
    """A term of a FLUO when/always/never block: bare names are span names."""
    match node:
        case ast.Name(name=name) | ast.Str(value=name):
            return ast.Aggregate("has", None, _span_named(name, node.pos), pos=node.pos)
        case _WhereChain():
            return ast.Aggregate("has", None, _where_chain_condition(node), pos=node.pos)
        case ast.Aggregate(func="count", where=ast.Name(name=name) | ast.Str(value=name)):
            return ast.Aggregate("count", None, _span_named(name, node.pos), pos=node.pos)
        case ast.And() | ast.Or() | ast.Not() | ast.Compare():
            return ast.map_children(node, _fluo_term)
    return node


def _where_chain_condition(chain: _WhereChain) -> Expr:
    parts = [_span_named(chain.name, chain.pos)]
    parts += [_fluo_where(c) for c in chain.conditions]
    return ast.And(tuple(parts), pos=chain.pos)


def _fluo_where(node: Expr) -> Expr:
    """A `.where(...)` condition: bare or quoted names on the left are attributes or intrinsics,
    bare names on the right are text (FLUO's `currency == USD`)."""
    match node:
        case ast.And() | ast.Or() | ast.Not():
            return ast.map_children(node, _fluo_where)
        case ast.Compare(op=op, left=left, right=right):
            # FLUO had no intrinsics: `status >= 500` compares an attribute with a number.
            if (
                isinstance(right, ast.Int | ast.Float)
                and isinstance(left, ast.Name)
                and FLUO_INTRINSICS.get(left.name) in ("name", "status", "kind", "service")
            ):
                left = ast.Str(left.name, pos=left.pos)
            return ast.Compare(op, _fluo_field(left), _fluo_text(right), pos=node.pos)
        case ast.In(value=value, items=ast.ListLit(items=items) as lst, negated=neg):
            listed = ast.ListLit(tuple(_fluo_text(i) for i in items), pos=lst.pos)
            return ast.In(_fluo_field(value), listed, neg, pos=node.pos)
        case ast.Match(op=op, value=value, pattern=pattern, ignore_case=ic):
            return ast.Match(op, _fluo_field(value), pattern, ic, pos=node.pos)
        case ast.Name() | ast.Str():
            return ast.Compare("==", _fluo_field(node), ast.Bool(True, pos=node.pos), pos=node.pos)
    return node


def _fluo_field(node: Expr) -> Expr:
    match node:
        case ast.Name(name=name) if name in FLUO_INTRINSICS:
            return ast.Field(FLUO_INTRINSICS[name], pos=node.pos)
        case ast.Name(name=name) | ast.Str(value=name):
            return ast.Attribute("span", name, pos=node.pos)
    return node


def _fluo_text(node: Expr) -> Expr:
    if isinstance(node, ast.Name) and node.name not in ("SERVER", "CLIENT", "ERROR", "OK"):
        return ast.Str(node.name, pos=node.pos)
    return node


def _where_chains_to_has(node: Expr) -> Expr:
    """Outside FLUO blocks, `name.where(...)` still means "the trace has such a span"."""
    if isinstance(node, _WhereChain):
        return ast.Aggregate("has", None, _where_chain_condition(node), pos=node.pos)
    return ast.map_children(node, _where_chains_to_has)


def _flatten(kind: type[ast.And] | type[ast.Or], children: list[Expr]) -> tuple[Expr, ...]:
    out: list[Expr] = []
    for child in children:
        if type(child) is kind:
            out.extend(child.operands)
        else:
            out.append(child)
    return tuple(out)


def expand_names(node: Expr, lists: Mapping[str, ast.ListLit], macros: Mapping[str, Expr]) -> Expr:
    """Replace list and macro references by their definitions (macros are already expanded)."""

    def visit(n: Expr) -> Expr:
        if isinstance(n, _ListRef):
            if n.name in lists:
                return ast.ListLit(lists[n.name].items, pos=n.pos)
            hint = did_you_mean(n.name, lists)
            raise RuleError([Diagnostic(f"unknown list '@{n.name}'", n.pos, hint=hint)])
        if isinstance(n, ast.Name):
            if n.name in macros:
                return macros[n.name]
            if n.name in lists:
                return ast.ListLit(lists[n.name].items, pos=n.pos)
            return n
        return ast.map_children(n, visit)

    return visit(node)


def _syntax_error(exc: UnexpectedInput, text: str, locate: Locator) -> Diagnostic:
    """A located, readable message for a Lark parse failure, with a hint where we can guess."""
    offset = exc.pos_in_stream if exc.pos_in_stream is not None else len(text)
    if isinstance(exc, UnexpectedEOF) or (
        isinstance(exc, UnexpectedToken) and exc.token.type == "$END"
    ):
        offset = len(text.rstrip())
    pos = locate(min(offset, len(text)))
    hint: str | None = None
    if isinstance(exc, UnexpectedCharacters):
        rest = text[offset:]
        found = rest[:2] if rest[:2] in ("&&", "||", "=~") else rest[:1]
        message = f"unexpected character '{found}'"
        hint = {
            "=": "did you mean '=='?",
            "&&": "did you mean 'and'?",
            "||": "did you mean 'or'?",
            "!": "did you mean 'not' or '!='?",
            "=~": "did you mean 'matches'?",
            '"': "is a string missing its closing quote?",
            "'": "is a string missing its closing quote?",
        }.get(found)
        pos = Position(pos.file, pos.line, pos.column, pos.line_text, len(found))
    elif isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
        token = exc.token
        word = str(token)
        message = f"unexpected {_describe_token(token)}"
        expected = _expected(exc.expected)
        if expected:
            message += f"; expected {expected}"
        lowered = word.lower()
        if lowered in OPERATOR_SYNONYMS:
            hint = f"did you mean '{OPERATOR_SYNONYMS[lowered]}'?"
        elif token.type == "NAME":
            hint = did_you_mean(lowered, OPERATOR_WORDS)
        pos = Position(pos.file, pos.line, pos.column, pos.line_text, max(1, len(word)))
    else:
        expected = _expected(getattr(exc, "expected", set()) or set())
        message = "the expression ends too early"
        if expected:
            message += f"; expected {expected}"
    return Diagnostic(message, pos, hint=hint)


def _describe_token(token: Token) -> str:
    if token.type == "NAME":
        return f"name '{token}'"
    return f"'{token}'"


def _expected(terminals: set[str]) -> str:
    names = sorted({_TERMINAL_NAMES.get(t, t.strip("_").lower()) for t in terminals})
    if not names:
        return ""
    if len(names) > 6:
        names = [*names[:6], "..."]
    return ", ".join(names)


# --- rule files ---------------------------------------------------------------------

FILE_KEYS = ("fluo", "lists", "macros", "rules")
#: Keys of a windowed aggregate rule (a rule with `window:`); see docs/aggregates.md.
WINDOW_KEYS = ("window", "every", "by", "where", "min_count", "baseline", "exemplars")
CORRELATE_KEYS = ("rules", "within", "by", "count")
RULE_KEYS = (
    "title",
    "description",
    "severity",
    "tags",
    "owner",
    "enabled",
    "when",
    "condition",
    "conditions",
    "sequence",
    "spans",
    "message",
    "actions",
    *WINDOW_KEYS,
    "correlate",
)
CONDITION_KEYS = ("op", "field", "value", "case-insensitive")
ACTION_KINDS = ("log", "fail")

#: Structured condition operators: name -> (AST builder kind, operator).
CONDITION_OPS: dict[str, tuple[str, str]] = {
    "eq": ("compare", "=="),
    "equals": ("compare", "=="),
    "==": ("compare", "=="),
    "ne": ("compare", "!="),
    "not-equals": ("compare", "!="),
    "!=": ("compare", "!="),
    "gt": ("compare", ">"),
    "greater-than": ("compare", ">"),
    ">": ("compare", ">"),
    "gte": ("compare", ">="),
    "greater-than-or-equal": ("compare", ">="),
    ">=": ("compare", ">="),
    "lt": ("compare", "<"),
    "less-than": ("compare", "<"),
    "<": ("compare", "<"),
    "lte": ("compare", "<="),
    "less-than-or-equal": ("compare", "<="),
    "<=": ("compare", "<="),
    "in": ("in", "in"),
    "not-in": ("in", "not in"),
    "contains": ("match", "contains"),
    "starts-with": ("match", "startswith"),
    "ends-with": ("match", "endswith"),
    "glob": ("match", "glob"),
    "matches": ("match", "matches"),
    "exists": ("exists", "exists"),
    "not-exists": ("exists", "not exists"),
    "between": ("between", "between"),
}

MAX_MACRO_DEPTH = 32


@dataclass(frozen=True)
class RuleFile:
    """What one rule file defines, after parsing: rules, plus notes and warnings about them."""

    rules: tuple[ast.Rule, ...]
    notes: tuple[Diagnostic, ...] = ()
    #: Problems found; the rules that could still be built are in `rules`, for checking.
    errors: tuple[Diagnostic, ...] = ()


def parse_rule_file(doc: Located) -> RuleFile:
    """Parse a loaded rule file: lists, macros, then rules. Collects every error it can.

    Errors are returned in `RuleFile.errors` (not raised), so that the caller can
    still check the rules that parsed and report everything at once.
    """
    errors: list[Diagnostic] = []
    notes: list[Diagnostic] = []
    root = _expect_mapping(doc, "the rule file", errors)
    if root is None:
        raise RuleError(errors)
    _check_keys(root, FILE_KEYS, "rule file", errors)
    version = root.get("fluo")
    if version is not None and version.value not in (1, "1"):
        errors.append(
            Diagnostic(
                f"unsupported rule format version {version.value!r}",
                version.pos,
                hint="this fluo reads 'fluo: 1'",
            )
        )
    lists = _parse_lists(root.get("lists"), errors)
    macros = _parse_macros(root.get("macros"), lists, errors)
    rules: list[ast.Rule] = []
    rules_node = root.get("rules")
    if rules_node is None:
        errors.append(Diagnostic("the rule file has no 'rules' section", doc.pos))
    else:
        mapping = _expect_mapping(rules_node, "'rules'", errors)
        for name, node in (mapping or {}).items():
            rule = _parse_rule(name, node, lists, macros, errors, notes)
            if rule is not None:
                rules.append(rule)
        if mapping is not None and not mapping:
            errors.append(Diagnostic("'rules' is empty", rules_node.pos))
    return RuleFile(tuple(rules), tuple(notes), tuple(errors))


def _positive_duration(node: Located, key: str, errors: list[Diagnostic]) -> int | None:
    """The duration `node` holds (nanoseconds); None, with an error, unless it is positive."""
    try:
        value = parse_duration(str(node.value))
    except ValueError as exc:
        errors.append(Diagnostic(str(exc), node.pos))
        return None
    if value <= 0:
        errors.append(Diagnostic(f"'{key}' must be a positive duration", node.pos))
        return None
    return value


def _expect_mapping(
    node: Located, what: str, errors: list[Diagnostic]
) -> dict[str, Located] | None:
    if isinstance(node.value, dict):
        return node.value
    errors.append(Diagnostic(f"{what} must be a mapping, not {node.kind}", node.pos))
    return None


def _check_keys(
    mapping: dict[str, Located], allowed: tuple[str, ...], what: str, errors: list[Diagnostic]
) -> None:
    for key, value in mapping.items():
        if key not in allowed:
            hint = did_you_mean(key, allowed) or f"allowed keys: {', '.join(allowed)}"
            errors.append(Diagnostic(f"unknown key '{key}' in {what}", value.key_pos, hint=hint))


def _collect(errors: list[Diagnostic], fn: Callable[[], _T]) -> _T | None:
    """Run `fn`; on RuleError record its diagnostics and return None."""
    try:
        return fn()
    except RuleError as exc:
        errors.extend(exc.diagnostics)
        return None


def _parse_lists(node: Located | None, errors: list[Diagnostic]) -> dict[str, ast.ListLit]:
    lists: dict[str, ast.ListLit] = {}
    if node is None:
        return lists
    for name, value in (_expect_mapping(node, "'lists'", errors) or {}).items():
        if not isinstance(value.value, list):
            errors.append(
                Diagnostic(f"list '{name}' must be a YAML list, not {value.kind}", value.pos)
            )
            continue
        items = [_collect(errors, functools.partial(yaml_literal, v)) for v in value.value]
        lists[name] = ast.ListLit(tuple(i for i in items if i is not None), pos=value.pos)
    return lists


def _parse_macros(
    node: Located | None, lists: dict[str, ast.ListLit], errors: list[Diagnostic]
) -> dict[str, Expr]:
    """Parse macro bodies, then expand macros inside macros (cycles are errors)."""
    if node is None:
        return {}
    raw: dict[str, Expr] = {}
    positions: dict[str, Position] = {}
    for name, value in (_expect_mapping(node, "'macros'", errors) or {}).items():
        positions[name] = value.key_pos or value.pos
        if not isinstance(value.value, str):
            errors.append(Diagnostic(f"macro '{name}' must be an expression string", value.pos))
            continue
        body = _collect(
            errors,
            functools.partial(parse_expression, value.value, locate=value.locate, lists=lists),
        )
        if body is not None:
            raw[name] = body
    expanded: dict[str, Expr] = {}

    def expand(name: str, trail: tuple[str, ...]) -> Expr:
        if name in expanded:
            return expanded[name]
        if name in trail:
            cycle = " -> ".join((*trail[trail.index(name) :], name))
            raise RuleError([Diagnostic(f"macro cycle: {cycle}", positions[name])])

        def visit(n: Expr) -> Expr:
            if isinstance(n, ast.Name) and n.name in raw:
                return expand(n.name, (*trail, name))
            return ast.map_children(n, visit)

        expanded[name] = visit(raw[name])
        return expanded[name]

    for name in raw:
        _collect(errors, functools.partial(expand, name, ()))
    return expanded


def _parse_rule(
    name: str,
    node: Located,
    lists: dict[str, ast.ListLit],
    macros: dict[str, Expr],
    errors: list[Diagnostic],
    notes: list[Diagnostic],
) -> ast.Rule | None:
    pos = node.key_pos or node.pos
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        errors.append(
            Diagnostic(f"rule name '{name}' may use letters, digits, _ . and - only", pos)
        )
    body = _expect_mapping(node, f"rule '{name}'", errors)
    if body is None:
        return None
    _check_keys(body, RULE_KEYS, f"rule '{name}'", errors)

    def text(key: str) -> str | None:
        value = body.get(key)
        if value is None or value.value is None:
            return None
        if isinstance(value.value, dict | list):
            errors.append(Diagnostic(f"'{key}' must be a string, not {value.kind}", value.pos))
            return None
        return str(value.value)

    predicates: list[Expr] = []
    bindings = _parse_bindings(body.get("spans"), lists, macros, errors)
    variables = frozenset(name for name, _ in bindings)
    for key in ("when", "condition"):
        when = body.get(key)
        if when is None:
            continue
        if isinstance(when.value, str):
            parse = functools.partial(
                parse_expression,
                when.value,
                locate=when.locate,
                lists=lists,
                macros=macros,
                variables=variables,
            )
            parsed = _collect(errors, parse)
            if parsed is not None:
                predicates.append(parsed)
        else:
            errors.append(
                Diagnostic(f"'{key}' must be an expression string, not {when.kind}", when.pos)
            )
    conditions = body.get("conditions")
    if conditions is not None:
        if isinstance(conditions.value, list) and conditions.value:
            for item in conditions.value:
                cond = _collect(errors, functools.partial(parse_condition, item, lists, notes))
                if cond is not None:
                    predicates.append(cond)
        else:
            errors.append(
                Diagnostic(
                    "'conditions' must be a non-empty list of {op, field, value}", conditions.pos
                )
            )
    if (seq_node := body.get("sequence")) is not None:
        sequence = _collect(errors, functools.partial(parse_sequence, seq_node, lists, macros))
        if sequence is not None:
            predicates.insert(0, sequence)
    window = correlate = None
    if "window" in body:
        window = _parse_window(body, lists, macros, errors)
        predicates = [window_scope(p) for p in predicates]
        for key in ("conditions", "sequence", "spans"):
            if key in body:
                errors.append(
                    Diagnostic(f"a windowed rule takes 'when', not '{key}'", body[key].key_pos)
                )
    else:
        for key in WINDOW_KEYS[1:]:
            if key in body:
                errors.append(
                    Diagnostic(
                        f"'{key}' belongs to windowed rules",
                        body[key].key_pos,
                        hint="add `window: 5m` (the window length) to aggregate over time",
                    )
                )
    if "correlate" in body:
        correlate = _collect(errors, functools.partial(parse_correlate, body["correlate"]))
        predicates = [ast.Bool(True, pos=body["correlate"].pos)]
        for key in ("when", "condition", "conditions", "sequence", "spans", "window"):
            if key in body:
                errors.append(
                    Diagnostic(
                        f"a 'correlate' rule reads other rules' signals; drop '{key}'",
                        body[key].key_pos,
                    )
                )
    elif not any(k in body for k in ("when", "condition", "conditions", "sequence")):
        errors.append(
            Diagnostic(
                f"rule '{name}' has neither 'when' nor 'conditions'",
                pos,
                hint="add `when: <expression>` or a `conditions:` list",
            )
        )

    severity = text("severity") or "medium"
    if severity not in ast.SEVERITIES:
        hint = did_you_mean(severity.lower(), ast.SEVERITIES) or (
            f"one of {', '.join(ast.SEVERITIES)}"
        )
        errors.append(Diagnostic(f"unknown severity '{severity}'", body["severity"].pos, hint=hint))
    tags = _parse_tags(body.get("tags"), errors)
    enabled = True
    if (en := body.get("enabled")) is not None:
        if isinstance(en.value, bool):
            enabled = en.value
        else:
            errors.append(Diagnostic(f"'enabled' must be true or false, not {en.kind}", en.pos))
    message = None
    if (msg := body.get("message")) is not None:
        if isinstance(msg.value, str):
            message = _collect(
                errors,
                functools.partial(
                    parse_template, msg.value, locate=msg.locate, variables=variables
                ),
            )
            if message is not None and window is not None:
                message = ast.Template(
                    tuple(p if isinstance(p, str) else window_scope(p) for p in message.parts),
                    pos=message.pos,
                )
        else:
            errors.append(Diagnostic(f"'message' must be a string, not {msg.kind}", msg.pos))
    actions = _parse_actions(body.get("actions"), errors)
    if body.get("spans") is not None and bindings:
        if not predicates:
            errors.append(Diagnostic("a rule with named 'spans' needs a 'when' relating them", pos))
            return None
        condition = predicates[0] if len(predicates) == 1 else ast.And(tuple(predicates))
        predicates = [ast.Pattern(tuple(bindings), condition, pos=pos)]
    if not predicates:
        return None
    if severity not in ast.SEVERITIES:
        severity = "medium"  # reported above; the rule is still checked
    predicate = predicates[0] if len(predicates) == 1 else ast.And(tuple(predicates), pos=pos)
    return ast.Rule(
        name=name,
        predicate=predicate,
        title=text("title"),
        description=text("description"),
        severity=severity,
        tags=tags,
        owner=text("owner"),
        enabled=enabled,
        message=message,
        actions=actions,
        source=pos.file,
        window=window,
        correlate=correlate,
        pos=pos,
    )


def _parse_tags(node: Located | None, errors: list[Diagnostic]) -> tuple[str, ...]:
    if node is None or node.value is None:
        return ()
    if isinstance(node.value, str):
        return (node.value,)
    if isinstance(node.value, list) and all(
        isinstance(t.value, str | int | float) for t in node.value
    ):
        return tuple(str(t.value) for t in node.value)
    errors.append(Diagnostic("'tags' must be a list of strings", node.pos))
    return ()


def _parse_actions(node: Located | None, errors: list[Diagnostic]) -> tuple[ast.Action, ...]:
    if node is None or node.value is None:
        return ()
    if not isinstance(node.value, list):
        errors.append(Diagnostic(f"'actions' must be a list, not {node.kind}", node.pos))
        return ()
    actions: list[ast.Action] = []
    for item in node.value:
        if isinstance(item.value, str):
            kind, arg = item.value, None
            kind_pos = item.pos
        elif isinstance(item.value, dict) and len(item.value) == 1:
            kind, value = next(iter(item.value.items()))
            kind_pos = value.key_pos or item.pos
            arg = value
        else:
            errors.append(Diagnostic('an action is `log: "text"` or `fail: true`', item.pos))
            continue
        if kind not in ACTION_KINDS:
            hint = did_you_mean(kind, ACTION_KINDS) or f"one of {', '.join(ACTION_KINDS)}"
            errors.append(Diagnostic(f"unknown action '{kind}'", kind_pos, hint=hint))
            continue
        if kind == "fail":
            if arg is not None and arg.value is False:
                continue
            text = arg.value if arg is not None and isinstance(arg.value, str) else None
            actions.append(ast.Action("fail", text, pos=kind_pos))
        else:
            if arg is None or not isinstance(arg.value, str):
                errors.append(Diagnostic("'log' takes the text to log", kind_pos))
                continue
            actions.append(ast.Action("log", arg.value, pos=kind_pos))
    return tuple(actions)


#: Words that cannot name a span in a pattern rule.
RESERVED_NAMES = ("span", "resource", "trace", "root", "parent", "this", *ast.SCOPES)


def _parse_bindings(
    node: Located | None,
    lists: Mapping[str, ast.ListLit],
    macros: Mapping[str, Expr],
    errors: list[Diagnostic],
) -> list[tuple[str, Expr]]:
    """`spans: {a: <span condition>, b: ...}`: the named spans of a pattern rule."""
    if node is None:
        return []
    bindings: list[tuple[str, Expr]] = []
    for name, value in (_expect_mapping(node, "'spans'", errors) or {}).items():
        where = value.key_pos or value.pos
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name) or name in RESERVED_NAMES:
            errors.append(
                Diagnostic(
                    f"'{name}' cannot name a span",
                    where,
                    hint="use a short lower-case name such as a, b, login",
                )
            )
            continue
        if not isinstance(value.value, str):
            errors.append(Diagnostic(f"span '{name}' needs a condition string", value.pos))
            continue
        parsed = _collect(
            errors,
            functools.partial(
                parse_expression, value.value, locate=value.locate, lists=lists, macros=macros
            ),
        )
        if parsed is not None:
            bindings.append((name, parsed))
    if not bindings and not errors:
        errors.append(Diagnostic("'spans' names no span", node.pos))
    return bindings


# --- windowed aggregate rules and correlations ------------------------------------------


def window_scope(node: Expr) -> Expr:
    """The condition of a windowed rule: its aggregates range over the window's spans.

    `count(P)`, `p95(v where P)` get the window scope; the bare names `count`, `rate`,
    `errors` and `error_rate` become aggregates; `baseline(x)` and bare `baseline`
    become Baseline nodes. Aggregates over children, descendants etc. keep their scope.
    """
    match node:
        case ast.Aggregate(scope="trace"):
            return dataclasses.replace(node, scope=ast.WINDOW_SCOPE)
        case ast.Name(name=name) if name in ast.WINDOW_METRICS:
            return dataclasses.replace(ast.WINDOW_METRICS[name], pos=node.pos)
        case ast.Name(name="baseline"):
            return ast.Baseline(None, pos=node.pos)
        case ast.Call(func="baseline", args=args):
            if len(args) != 1:
                raise RuleError([Diagnostic("'baseline' takes one aggregate", node.pos)])
            return ast.Baseline(window_scope(args[0]), pos=node.pos)
    return ast.map_children(node, window_scope)


def _parse_window(
    body: dict[str, Located],
    lists: Mapping[str, ast.ListLit],
    macros: Mapping[str, Expr],
    errors: list[Diagnostic],
) -> ast.Window | None:
    """The `window`, `every`, `by`, `where`, `min_count`, `baseline` and `exemplars` keys."""
    before = len(errors)

    def duration(key: str) -> int | None:
        node = body.get(key)
        return None if node is None else _positive_duration(node, key, errors)

    def count(key: str, default: int, least: int) -> int:
        node = body.get(key)
        if node is None:
            return default
        if isinstance(node.value, bool) or not isinstance(node.value, int) or node.value < least:
            errors.append(Diagnostic(f"'{key}' must be a whole number >= {least}", node.pos))
            return default
        return node.value

    def expression(node: Located, what: str) -> Expr | None:
        if not isinstance(node.value, str):
            errors.append(Diagnostic(f"{what} must be an expression string", node.pos))
            return None
        parse = functools.partial(
            parse_expression, node.value, locate=node.locate, lists=lists, macros=macros
        )
        return _collect(errors, parse)

    size = duration("window")
    every = duration("every") or size
    if size is not None and every is not None and every > size:
        errors.append(Diagnostic("'every' cannot be longer than 'window'", body["every"].pos))
    if size is not None and every is not None and size % every:
        errors.append(
            Diagnostic(
                "'window' must be a whole number of 'every' steps",
                body["every"].pos,
                hint="e.g. window: 5m with every: 1m",
            )
        )
    by: list[Expr] = []
    if (by_node := body.get("by")) is not None:
        items = by_node.value if isinstance(by_node.value, list) else [by_node]
        for item in items:
            key = expression(item, "a 'by' key")
            if key is not None:
                by.append(key)
    where = None
    if (where_node := body.get("where")) is not None:
        where = expression(where_node, "'where'")
    baseline = None
    if (base_node := body.get("baseline")) is not None:
        baseline = _collect(errors, functools.partial(parse_baseline, base_node))
    min_count = count("min_count", 1, 0)
    exemplars = count("exemplars", 5, 0)
    if len(errors) > before or size is None or every is None:
        return None
    return ast.Window(
        size, every, tuple(by), where, min_count, baseline, exemplars, pos=body["window"].pos
    )


def parse_baseline(node: Located) -> ast.BaselineSpec:
    """`previous 12` (windows), `1d ago` (an offset), `data` (the --baseline data set),
    or the same as a mapping: {previous: 12}, {offset: 1d}, {data: true}."""
    value = node.value
    if isinstance(value, dict) and len(value) == 1:
        ((key, item),) = value.items()
        value = f"{key} {item.value}" if key != "data" else "data"
    text = str(value).strip() if value is not None else ""
    hint = "write `previous 12` (windows), `1d ago` or `data` (the --baseline data set)"
    if text == "data":
        return ast.BaselineSpec("data", pos=node.pos)
    if match := re.fullmatch(r"previous\s+(\d+)", text):
        windows = int(match.group(1))
        if windows < 1:
            raise RuleError([Diagnostic("'previous' needs at least 1 window", node.pos)])
        return ast.BaselineSpec("previous", windows=windows, pos=node.pos)
    if match := re.fullmatch(r"(?:offset\s+)?(\S+)(?:\s+ago)?", text):
        try:
            offset = parse_duration(match.group(1))
        except ValueError:
            pass
        else:
            if offset <= 0:
                raise RuleError([Diagnostic("a baseline offset must be positive", node.pos)])
            return ast.BaselineSpec("offset", offset=offset, pos=node.pos)
    raise RuleError([Diagnostic(f"unknown baseline {text!r}", node.pos, hint=hint)])


def parse_correlate(node: Located) -> ast.Correlate:
    """`correlate: {rules: [a, b], within: 10m, by: service, count: 1}`."""
    errors: list[Diagnostic] = []
    body = _expect_mapping(node, "'correlate'", errors)
    if body is None:
        raise RuleError(errors)
    _check_keys(body, CORRELATE_KEYS, "correlate", errors)
    rules_node = body.get("rules")
    names: list[str] = []
    if rules_node is None:
        errors.append(Diagnostic("'correlate' needs the 'rules' whose signals it reads", node.pos))
    elif isinstance(rules_node.value, list) and rules_node.value:
        names = [str(item.value) for item in rules_node.value]
    else:
        names = [str(rules_node.value)]
    within = 0
    within_node = body.get("within")
    if within_node is None:
        errors.append(Diagnostic("'correlate' needs 'within' (e.g. 10m)", node.pos))
    else:
        within = _positive_duration(within_node, "within", errors) or 0
    by = None
    if (by_node := body.get("by")) is not None:
        by = str(by_node.value)
        if by not in CORRELATE_FIELDS:
            hint = did_you_mean(by, CORRELATE_FIELDS) or f"one of {', '.join(CORRELATE_FIELDS)}"
            errors.append(Diagnostic(f"cannot correlate by '{by}'", by_node.pos, hint=hint))
    count = 1
    if (count_node := body.get("count")) is not None:
        value = count_node.value
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            errors.append(Diagnostic("'count' must be a whole number >= 1", count_node.pos))
        else:
            count = value
    if errors:
        raise RuleError(errors)
    return ast.Correlate(tuple(names), within, by, count, pos=node.pos)


#: Signal fields a correlation may group by.
CORRELATE_FIELDS = ("service", "name", "trace_id", "group")


SEQUENCE_KEYS = ("steps", "within", "by", "until")


def parse_sequence(
    node: Located, lists: Mapping[str, ast.ListLit], macros: Mapping[str, Expr]
) -> ast.Sequence:
    """A `sequence:` block: steps (expressions, or `absent: expression`), within, by, until."""
    errors: list[Diagnostic] = []
    body = _expect_mapping(node, "'sequence'", errors)
    if body is None:
        raise RuleError(errors)
    _check_keys(body, SEQUENCE_KEYS, "sequence", errors)

    def expression(item: Located, what: str) -> Expr:
        if not isinstance(item.value, str):
            raise RuleError([Diagnostic(f"{what} must be an expression string", item.pos)])
        return parse_expression(item.value, locate=item.locate, lists=lists, macros=macros)

    steps: list[Expr] = []
    steps_node = body.get("steps")
    if steps_node is None or not isinstance(steps_node.value, list) or not steps_node.value:
        errors.append(
            Diagnostic(
                "a sequence needs a non-empty list of 'steps'",
                steps_node.pos if steps_node else node.pos,
            )
        )
    else:
        for item in steps_node.value:
            if isinstance(item.value, dict):
                if list(item.value) != ["absent"]:
                    errors.append(
                        Diagnostic("a step is an expression or `absent: expression`", item.pos)
                    )
                    continue
                absent = item.value["absent"]
                step = _collect(errors, functools.partial(expression, absent, "'absent'"))
                if step is not None:
                    steps.append(ast.Absent(step, pos=absent.pos))
                continue
            step = _collect(errors, functools.partial(expression, item, "a step"))
            if step is not None:
                steps.append(step)
        if steps and (isinstance(steps[0], ast.Absent) or isinstance(steps[-1], ast.Absent)):
            errors.append(
                Diagnostic("a sequence must start and end with a step that occurs", steps_node.pos)
            )
    within = None
    if (within_node := body.get("within")) is not None:
        within = _positive_duration(within_node, "within", errors)
    by = until = None
    if (by_node := body.get("by")) is not None and by_node.value not in ("trace", None):
        by = _collect(errors, functools.partial(expression, by_node, "'by'"))
    if (until_node := body.get("until")) is not None:
        until = _collect(errors, functools.partial(expression, until_node, "'until'"))
    if errors:
        raise RuleError(errors)
    return ast.Sequence(tuple(steps), by, within, until, pos=node.pos)


def parse_condition(
    node: Located, lists: Mapping[str, ast.ListLit], notes: list[Diagnostic]
) -> Expr:
    """A structured condition `{op, field, value}` as the same AST the `when` form builds."""
    errors: list[Diagnostic] = []
    body = _expect_mapping(node, "a condition", errors)
    if body is None:
        raise RuleError(errors)
    _check_keys(body, CONDITION_KEYS, "condition", errors)
    op_node, field_node = body.get("op"), body.get("field")
    if op_node is None or field_node is None:
        missing = "op" if op_node is None else "field"
        errors.append(Diagnostic(f"a condition needs '{missing}'", node.pos))
        raise RuleError(errors)
    op_name = str(op_node.value)
    if op_name not in CONDITION_OPS:
        hint = did_you_mean(op_name, CONDITION_OPS) or "see docs/language.md for the operators"
        errors.append(Diagnostic(f"unknown operator '{op_name}'", op_node.pos, hint=hint))
        raise RuleError(errors)
    if not isinstance(field_node.value, str):
        errors.append(Diagnostic("'field' must be a field path", field_node.pos))
        raise RuleError(errors)
    target = parse_expression(field_node.value, locate=field_node.locate)
    if not isinstance(target, ast.Field | ast.Attribute):
        raise RuleError(
            [
                Diagnostic(
                    f"'{field_node.value}' is not a field path",
                    field_node.pos,
                    hint="e.g. span.durationMs or span.attributes.http.url",
                )
            ]
        )
    kind, op = CONDITION_OPS[op_name]
    pos = op_node.pos
    ignore_case = False
    if (ci := body.get("case-insensitive")) is not None:
        if kind != "match" or not isinstance(ci.value, bool):
            raise RuleError(
                [Diagnostic("'case-insensitive' is true or false, for string operators", ci.pos)]
            )
        ignore_case = ci.value
    value_node = body.get("value")
    if kind == "exists":
        if value_node is not None:
            raise RuleError([Diagnostic(f"'{op_name}' takes no value", value_node.pos)])
        exists = ast.Exists(target, pos=pos)
        return ast.Not(exists, pos=pos) if op == "not exists" else exists
    if value_node is None:
        raise RuleError([Diagnostic(f"'{op_name}' needs a 'value'", node.pos)])
    if isinstance(value_node.value, str) and value_node.value.startswith("@"):
        list_name = value_node.value[1:]
        if list_name not in lists:
            raise RuleError(
                [
                    Diagnostic(
                        f"unknown list '{value_node.value}'",
                        value_node.pos,
                        hint=did_you_mean(list_name, lists),
                    )
                ]
            )
        value: Expr = ast.ListLit(lists[list_name].items, pos=value_node.pos)
    else:
        value = yaml_literal(value_node)
    if kind == "compare":
        if op == "==" and isinstance(value, ast.Str) and _has_wildcard(value.value):
            notes.append(
                Diagnostic(
                    f"'{op_name}' with a '*' in the value matches as a glob pattern",
                    value_node.pos,
                    severity="note",
                    hint="write `op: glob` to say so, or escape it as \\*",
                )
            )
            return ast.Match("glob", target, value, pos=pos)
        return ast.Compare(op, target, value, pos=pos)
    if kind == "in":
        if not isinstance(value, ast.ListLit):
            raise RuleError([Diagnostic(f"'{op_name}' needs a list value", value_node.pos)])
        return ast.In(target, value, negated=op == "not in", pos=pos)
    if kind == "between":
        if not isinstance(value, ast.ListLit) or len(value.items) != 2:
            raise RuleError([Diagnostic("'between' needs a value [low, high]", value_node.pos)])
        return ast.Between(target, value.items[0], value.items[1], pos=pos)
    if isinstance(value, ast.ListLit):
        options = tuple(ast.Match(op, target, item, ignore_case, pos=pos) for item in value.items)
        return ast.Or(options, pos=pos) if len(options) > 1 else options[0]
    return ast.Match(op, target, value, ignore_case, pos=pos)


def _has_wildcard(text: str) -> bool:
    return re.search(r"(?<!\\)[*?]", text) is not None


def yaml_literal(node: Located) -> Expr:
    """A YAML scalar or list as a literal node (strings that look like durations stay strings)."""
    import datetime as dt

    v = node.value
    pos = node.pos
    if isinstance(v, bool):
        return ast.Bool(v, pos=pos)
    if isinstance(v, int):
        return ast.Int(v, pos=pos)
    if isinstance(v, float):
        return ast.Float(v, pos=pos)
    if v is None:
        return ast.Null(pos=pos)
    if isinstance(v, str):
        return ast.Str(v, pos=pos)
    if isinstance(v, dt.datetime | dt.date):
        stamp = v if isinstance(v, dt.datetime) else dt.datetime(v.year, v.month, v.day)
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=dt.UTC)
        epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        delta = stamp - epoch
        nanos = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
        return ast.Timestamp(nanos, pos=pos)
    if isinstance(v, list):
        return ast.ListLit(tuple(yaml_literal(item) for item in v), pos=pos)
    raise RuleError([Diagnostic(f"a value must be a scalar or a list, not {node.kind}", pos)])
