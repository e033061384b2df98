"""Differential tests: the compiled Polars plans against the plain reference evaluator.

tests/reference.py reads docs/language.md independently of fluo/check.py and
fluo/compile.py. Hypothesis generates small span tables (nulls, missing keys, empty
and null maps, numeric / boolean / odd text) in two layouts -- attributes only in the
`span_attributes` map, and with some keys promoted to typed `attr.<key>` columns -- and
random rules over them; in each layout, fluo (`RuleSet.expr` filters, or the fused plan
of `RuleSet.evaluate`) and the reference must select the same spans, and for rules whose
meaning does not depend on the layout, both layouts the same spans.

The generators stay clear of the known bugs listed at the end of this file (each one has
a strict xfail there), so that the properties stay green and keep finding new ones.

The second half pins down every row of the null table and every conversion bullet of
docs/language.md section 4 as plain examples (documentation tests).
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import operator
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

if importlib.util.find_spec("fluo") is None:  # run without the project installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import reference

from fluo import RuleError, RuleSet, ast, load_rules
from fluo.printer import unparse
from fluo.schema import ATTRIBUTE_MAP, UTC_NS, SpanSchema

# --- building span tables -------------------------------------------------------------------

BASE_NS = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z
MS = 10**6
SECOND = 10**9

STRING_COLUMNS = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "name",
    "kind",
    "service_name",
    "status_code",
    "status_message",
)
_ENTRY = pl.List(pl.Struct({"key": pl.String, "value": pl.String}))


def map_series(name: str, maps: Sequence[dict[str, str | None] | None]) -> pl.Series:
    """A Map(String, String) column; None is a null map, a None value a null entry."""
    rows = [None if m is None else [{"key": k, "value": v} for k, v in m.items()] for m in maps]
    return pl.Series(name, rows, dtype=_ENTRY).cast(ATTRIBUTE_MAP)


@dataclass
class Table:
    """Spans with typed attribute values, laid out with or without promoted columns.

    `attrs[i][(scope, key)]` is (typed value, text in the map); the map of a row is None
    when `null_map[i][scope]`. `promoted` maps (scope, key) -> Polars dtype.
    """

    rows: list[dict[str, Any]]
    attrs: list[dict[tuple[str, str], tuple[Any, str | None]]]
    null_map: list[dict[str, bool]]
    promoted: dict[tuple[str, str], pl.DataType] = field(default_factory=dict)
    #: A column left out of the table ("duration_ns" or "end_time": derived by fluo).
    dropped: str | None = None
    #: The dtype of the `kind` and `status_code` columns (String or Categorical).
    enum_dtype: pl.DataType = field(default_factory=pl.String)

    def _maps(self, scope: str) -> list[dict[str, str | None] | None]:
        out: list[dict[str, str | None] | None] = []
        for attrs, null in zip(self.attrs, self.null_map, strict=True):
            if null[scope]:
                out.append(None)
            else:
                out.append({k: text for (s, k), (_, text) in attrs.items() if s == scope})
        return out

    def _promoted_values(self, scope: str, key: str) -> list[Any]:
        values = []
        for attrs, null in zip(self.attrs, self.null_map, strict=True):
            typed, text = attrs.get((scope, key), (None, None))
            values.append(None if null[scope] or text is None else typed)
        return values

    @staticmethod
    def column_name(scope: str, key: str) -> str:
        return ("attr." if scope == "span" else "resource.") + key

    def frame(self, layout: str) -> pl.DataFrame:
        n = len(self.rows)
        columns: dict[str, pl.Series] = {
            c: pl.Series(c, [r[c] for r in self.rows], dtype=pl.String) for c in STRING_COLUMNS
        }
        for c in ("start_time", "end_time"):
            ints = pl.Series(c, [r[c] for r in self.rows], dtype=pl.Int64)  # ns since epoch
            columns[c] = ints.cast(UTC_NS)
        columns["duration_ns"] = pl.Series(
            "duration_ns", [r["duration_ns"] for r in self.rows], dtype=pl.Int64
        )
        columns["span_attributes"] = map_series("span_attributes", self._maps("span"))
        columns["resource_attributes"] = map_series("resource_attributes", self._maps("resource"))
        for c in ("kind", "status_code"):
            columns[c] = columns[c].cast(self.enum_dtype)
        if self.dropped:
            del columns[self.dropped]
        if layout == "promoted":
            for (scope, key), dtype in self.promoted.items():
                name = self.column_name(scope, key)
                columns[name] = pl.Series(name, self._promoted_values(scope, key), dtype=dtype)
        frame = pl.DataFrame(list(columns.values()))
        assert frame.height == n
        return frame

    def spans(self, layout: str) -> list[dict[str, Any]]:
        """The rows as the reference evaluator reads them."""
        out = []
        span_maps, resource_maps = self._maps("span"), self._maps("resource")
        for i, row in enumerate(self.rows):
            span = dict(row)
            span["span_attributes"] = span_maps[i]
            span["resource_attributes"] = resource_maps[i]
            if self.dropped:
                del span[self.dropped]
            out.append(span)
        if layout == "promoted":
            for scope, key in self.promoted:
                for span, v in zip(out, self._promoted_values(scope, key), strict=True):
                    span[self.column_name(scope, key)] = v
        return out


def _text_of(value: Any, variant: int) -> str:
    """How a typed attribute value is written in the text map."""
    if isinstance(value, bool):
        word = "true" if value else "false"
        return (word, word.capitalize(), word.upper())[variant % 3]
    if isinstance(value, float):
        return repr(value)
    return str(value)


def promotable_dtype(values: Sequence[Any]) -> pl.DataType | None:
    """The typed column a key can be promoted to, when all its values share one type."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    if all(isinstance(v, bool) for v in present):
        return pl.Boolean()
    if all(isinstance(v, str) for v in present):
        return pl.String()
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pl.Int64()
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return pl.Float64()
    return None


# --- strategies: data -------------------------------------------------------------------------

ALPHABET = "aAb/.*?[é"
NAME_POOL = [
    "GET /cart",
    "get /cart",
    "POST /pay*",
    "a.b",
    "a/b",
    "",
    "é",
    "ÉTÉ",
    "ß",
    "日本",
    "*",
    "a?b",
    "[a]",
    "ab",
    "AB",
    "b",
    "ΑΣ",
    "ας",
]
#: Odd attribute text. No "nan" / "inf": see test_nan_text_is_not_a_number.
TEXT_POOL = [
    "200",
    "2.5",
    "-1",
    "0",
    "1e3",
    "abc",
    "",
    " 5",
    "true",
    "False",
    "TRUE",
    "yes",
    "a*b",
    "/a/b",
    "a.b",
    "é",
    "ÉTÉ",
    "ß",
    "日本",
    "[a]",
    "x\ny",
]

small_text = st.one_of(st.sampled_from(NAME_POOL), st.text(ALPHABET, max_size=5))
#: A tiny alphabet for the focused properties, so that patterns match (or just miss) often.
DENSE = "abA/*é"


def _words(tokens: Sequence[str], max_len: int, min_len: int = 1) -> st.SearchStrategy[str]:
    """Concatenations of up to `max_len` tokens, each length about as likely: sampled_from
    spreads its choices far more evenly than st.text or st.lists do."""
    by_length = [
        st.sampled_from(["".join(p) for p in itertools.product(tokens, repeat=n)])
        for n in range(min_len, max_len + 1)
    ]
    return st.one_of(by_length)


dense_text = st.one_of(
    _words(DENSE, 3), st.sampled_from(["", "a\nb", "ab\n", "ÉA", "ab/a", "a/ba", "AΣ"])
)
mixed_text = st.one_of(st.sampled_from(TEXT_POOL), small_text)
ints = st.one_of(st.sampled_from([0, 1, 2, 3, -3, 200, 404, 500, 503]), st.integers(-5, 600))
floats = st.sampled_from([0.0, 0.5, -0.5, 2.5, -2.5, 1.0, 1000.0, 0.001, 200.0])
bools = st.booleans()

#: attribute (scope, key) -> flavours; one flavour is drawn per table, so that keys are
#: often promotable (all values of one type) and sometimes mixed.
ATTRIBUTE_FLAVOURS: dict[tuple[str, str], list[st.SearchStrategy[Any]]] = {
    ("span", "http.status_code"): [ints, st.one_of(ints, floats), st.one_of(ints, mixed_text)],
    ("span", "retry"): [st.integers(-3, 5), st.one_of(st.integers(-3, 5), floats)],
    ("span", "ratio"): [floats, st.one_of(floats, ints)],
    ("span", "flag"): [bools, st.one_of(bools, mixed_text)],
    ("span", "http.url"): [small_text],
    ("span", "note"): [mixed_text, st.one_of(mixed_text, ints)],
    ("span", "user-id"): [small_text, ints],
    ("resource", "env"): [st.sampled_from(["prod", "Prod", "dev", "", "é"])],
    ("resource", "zone"): [st.integers(0, 3), small_text],
}
SPAN_KEYS = [k for s, k in ATTRIBUTE_FLAVOURS if s == "span"]
RESOURCE_KEYS = [k for s, k in ATTRIBUTE_FLAVOURS if s == "resource"]
NUMERIC_KEYS = ["http.status_code", "retry", "ratio"]
KINDS = ["UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"]
STATUSES = ["UNSET", "OK", "ERROR"]
DURATIONS = [0, 1, 999, 1000, MS, 300 * MS, 300 * MS + 1, SECOND, 1500 * MS, 2 * SECOND]


def _maybe(strategy: st.SearchStrategy[Any], null: float = 0.15) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy) if null else strategy


@st.composite
def tables(draw: st.DrawFn, min_rows: int = 1, max_rows: int = 30, dense: bool = False) -> Table:
    """Span tables; `dense` draws names, messages and URLs from the tiny DENSE alphabet."""
    text = dense_text if dense else small_text
    n = draw(st.one_of(st.integers(min_rows, min(5, max_rows)), st.integers(min_rows, max_rows)))
    flavours = {key: draw(st.sampled_from(options)) for key, options in ATTRIBUTE_FLAVOURS.items()}
    if dense:
        flavours["span", "http.url"] = dense_text
    rows, attrs, null_map = [], [], []
    for i in range(n):
        start = BASE_NS + draw(st.integers(0, 10 * SECOND))
        duration = draw(
            st.one_of(st.none(), st.sampled_from(DURATIONS), st.integers(0, 2 * SECOND))
        )
        rows.append(
            {
                "trace_id": draw(st.sampled_from(["0" * 31 + "1", "ab" * 16])),
                "span_id": f"{i:016x}",
                "parent_span_id": draw(_maybe(st.sampled_from(["00000000000000ff", "0a" * 8]))),
                "name": draw(_maybe(text, 0.1)),
                "kind": draw(_maybe(st.sampled_from(KINDS), 0.1)),
                "service_name": draw(_maybe(st.sampled_from(["cart", "Cart", "pay.api", "ünï"]))),
                "status_code": draw(_maybe(st.sampled_from(STATUSES), 0.1)),
                "status_message": draw(_maybe(dense_text if dense else mixed_text, 0.4)),
                "start_time": start,
                "end_time": None if duration is None else start + duration,
                "duration_ns": duration,
            }
        )
        row_attrs: dict[tuple[str, str], tuple[Any, str | None]] = {}
        for key, strategy in flavours.items():
            # one draw for presence and spelling: 0-2 present, 3 missing, 4 a null entry
            choice = draw(st.integers(0, 14))
            presence, variant = choice % 5, choice // 5
            if presence == 3:
                continue
            if presence == 4:
                row_attrs[key] = (None, None)
                continue
            typed = draw(strategy)
            row_attrs[key] = (typed, _text_of(typed, variant))
        attrs.append(row_attrs)
        nulls = draw(st.integers(0, 59))  # null span map 1 in 10, null resource map 1 in 6
        null_map.append({"span": nulls % 10 == 0, "resource": nulls % 6 == 0})
    table = Table(rows, attrs, null_map)
    table.dropped = draw(st.sampled_from([None, None, "duration_ns", "end_time"]))
    table.enum_dtype = draw(st.sampled_from([pl.String(), pl.String(), pl.Categorical()]))
    for key in ATTRIBUTE_FLAVOURS:
        dtype = promotable_dtype([a.get(key, (None, None))[0] for a in attrs])
        if dtype is not None and draw(st.integers(0, 3)) > 0:
            table.promoted[key] = dtype
    return table


# --- strategies: rules ------------------------------------------------------------------------

NUM_FIELDS = ["durationMs", "duration_ms"]
STR_FIELDS = [
    "name",
    "status_message",
    "status.message",
    "service",
    "service.name",
    "trace_id",
    "parent_id",
    "parent_span_id",
]
TIME_FIELDS = ["start", "end", "start_time", "end_time"]
COMPARE_OPS = ["==", "!=", "<", "<=", ">", ">="]
ISO_TIMES = [
    "2026-01-01T00:00:05Z",
    "2026-01-01T00:00:05",
    "2026-01-01T00:00:02.5Z",
    "2026-01-01T01:00:00+01:00",
    "2026-01-01",
]
KIND_SPELLINGS = [*KINDS, "server", "Client", "SPAN_KIND_SERVER", "span_kind_internal"]
STATUS_SPELLINGS = [*STATUSES, "error", "Ok", "STATUS_CODE_ERROR", "STATUS_CODE_UNSET"]


def span_attr(key: str) -> ast.Attribute:
    return ast.Attribute("span", key)


int_lit = st.builds(ast.Int, st.sampled_from([0, 1, 2, 3, -1, -3, 5, 200, 404, 500, 1000]))
float_lit = st.builds(ast.Float, st.sampled_from([0.0, 0.5, 2.5, -0.5, 2.0, 1000.0, 0.001]))
num_lit = st.one_of(int_lit, int_lit, float_lit)
str_lit = st.builds(ast.Str, st.one_of(st.sampled_from(TEXT_POOL + NAME_POOL), small_text))
pattern_text = st.text("aAb/.éÉßσ", max_size=3)
dur_lit = st.builds(ast.Duration, st.sampled_from([*DURATIONS, 250_000, 400 * MS]))
attr_any = st.one_of(
    st.builds(span_attr, st.sampled_from(SPAN_KEYS)),
    st.builds(ast.Attribute, st.just("resource"), st.sampled_from(RESOURCE_KEYS)),
)
attr_num = st.builds(span_attr, st.sampled_from([*NUMERIC_KEYS, "note", "user-id"]))


def _binary(op: str, a: ast.Node, b: ast.Node) -> ast.Node:
    return ast.Arith(op, a, b)


@st.composite
def num_expr(draw: st.DrawFn, depth: int = 2) -> ast.Node:
    leaves = [num_lit, attr_num, st.builds(ast.Field, st.sampled_from(NUM_FIELDS))]
    if depth <= 0:
        return draw(st.one_of(leaves))
    choice = draw(st.integers(0, 9))
    if choice <= 3:
        return draw(st.one_of(leaves))
    if choice <= 5:
        op = draw(st.sampled_from("+-*/%"))
        return _binary(op, draw(num_expr(depth - 1)), draw(num_expr(depth - 1)))
    if choice == 6:
        inner = draw(st.one_of(attr_num, st.builds(ast.Field, st.sampled_from(NUM_FIELDS))))
        return ast.Neg(inner)
    if choice == 7:
        func = draw(st.sampled_from(["abs", "int", "float", "len"]))
        if func == "len":
            return ast.Call("len", (draw(str_expr(depth - 1)),))
        if func == "abs":
            return ast.Call("abs", (draw(num_expr(depth - 1)),))
        arg = draw(st.one_of(attr_num, attr_any, st.builds(ast.Field, st.just("name"))))
        return ast.Call(func, (arg,))
    if choice == 8:
        # a float literal: see test_coalesce_mixes_integers_and_floats
        return ast.Call("coalesce", (draw(attr_num), draw(attr_num), draw(float_lit)))
    return _binary("/", draw(dur_expr(depth - 1)), draw(dur_expr(depth - 1)))


@st.composite
def str_expr(draw: st.DrawFn, depth: int = 1) -> ast.Node:
    leaves = [attr_any, attr_any, st.builds(ast.Field, st.sampled_from(STR_FIELDS))]
    if depth <= 0:
        return draw(st.one_of(leaves))
    choice = draw(st.integers(0, 5))
    if choice <= 3:
        return draw(st.one_of(leaves))
    if choice == 4:
        func = draw(st.sampled_from(["lower", "upper"]))
        return ast.Call(func, (draw(str_expr(depth - 1)),))
    args = draw(st.lists(st.one_of(leaves), min_size=1, max_size=2))
    return ast.Call("coalesce", (*args, draw(str_lit)))


@st.composite
def dur_expr(draw: st.DrawFn, depth: int = 1, integral: bool = False) -> ast.Node:
    """A duration; `integral` ones stay whole nanoseconds (no `*` or `/` by numbers)."""
    leaves = [dur_lit, st.just(ast.Field("duration"))]
    if depth <= 0:
        return draw(st.one_of(leaves))
    choice = draw(st.integers(0, 7 if not integral else 4))
    if choice <= 1:
        return draw(st.one_of(leaves))
    if choice == 2:
        op = draw(st.sampled_from("+-"))
        return _binary(op, draw(dur_expr(depth - 1, integral)), draw(dur_expr(depth - 1, True)))
    if choice == 3:
        return _binary("-", draw(time_expr(0)), draw(time_expr(0)))
    if choice == 4:
        inner = draw(dur_expr(depth - 1, integral))
        return ast.Call("abs", (inner,)) if draw(st.booleans()) else ast.Neg(inner)
    if choice <= 6:
        op = draw(st.sampled_from("*/"))
        factor = draw(st.one_of(num_lit, attr_num) if op == "*" else num_lit)
        if op == "*" and draw(st.booleans()):
            return _binary("*", factor, draw(dur_expr(depth - 1)))
        return _binary(op, draw(dur_expr(depth - 1)), factor)
    return draw(st.one_of(leaves))


@st.composite
def time_expr(draw: st.DrawFn, depth: int = 1) -> ast.Node:
    leaf = st.builds(ast.Field, st.sampled_from(TIME_FIELDS))
    if depth <= 0 or draw(st.booleans()):
        return draw(leaf)
    return _binary(draw(st.sampled_from("+-")), draw(leaf), draw(dur_expr(0, integral=True)))


def _compare(draw: st.DrawFn, op: str, a: ast.Node, b: ast.Node) -> ast.Node:
    """`a op b`, sometimes written the other way round (`b flipped(op) a`)."""
    if draw(st.booleans()):
        flipped = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(op, op)
        return ast.Compare(flipped, b, a)
    return ast.Compare(op, a, b)


@st.composite
def comparison(draw: st.DrawFn) -> ast.Node:
    kind = draw(
        st.sampled_from(
            ["num", "num", "str", "str", "dur", "time", "enum", "bool", "null", "fields"]
        )
    )
    op = draw(st.sampled_from(COMPARE_OPS))
    if kind == "num":
        right = draw(st.one_of(num_lit, num_lit, num_expr(1)))
        return _compare(draw, op, draw(num_expr()), right)
    if kind == "str":
        return _compare(draw, op, draw(str_expr()), draw(str_lit))
    if kind == "dur":
        return _compare(draw, op, draw(dur_expr(2)), draw(st.one_of(dur_lit, dur_expr(1))))
    if kind == "time":
        other = draw(st.one_of(st.builds(ast.Str, st.sampled_from(ISO_TIMES)), time_expr(1)))
        return _compare(draw, op, draw(time_expr(1)), other)
    if kind == "enum":
        eq = draw(st.sampled_from(["==", "!="]))
        if draw(st.booleans()):
            field_ = ast.Field(draw(st.sampled_from(["kind"])))
            word = draw(st.sampled_from(KIND_SPELLINGS))
        else:
            field_ = ast.Field(draw(st.sampled_from(["status", "status.code"])))
            word = draw(st.sampled_from(STATUS_SPELLINGS))
        literal = ast.Name(word) if word.isupper() else ast.Str(word)
        return _compare(draw, eq, field_, literal)
    if kind == "bool":
        eq = draw(st.sampled_from(["==", "!="]))
        subject = span_attr(draw(st.sampled_from(["flag", "note", "flag"])))
        return _compare(draw, eq, subject, ast.Bool(draw(st.booleans())))
    if kind == "null":
        eq = draw(st.sampled_from(["==", "!="]))
        subject = draw(
            st.one_of(
                attr_any,
                st.builds(ast.Field, st.sampled_from([*STR_FIELDS, "duration", "end", "kind"])),
                num_expr(1),
                str_expr(1),
            )
        )
        return _compare(draw, eq, subject, ast.Null())
    # two fields against each other
    pair = draw(st.sampled_from(["str", "num", "dur", "attrs"]))
    if pair == "str":
        return ast.Compare(op, draw(str_expr(0)), draw(str_expr(0)))
    if pair == "num":
        return ast.Compare(op, draw(num_expr(1)), draw(num_expr(1)))
    if pair == "dur":
        return ast.Compare(op, draw(dur_expr(1)), draw(dur_expr(1)))
    return ast.Compare(op, draw(attr_any), draw(attr_any))


@st.composite
def membership(draw: st.DrawFn) -> ast.Node:
    kind = draw(st.sampled_from(["num", "str", "enum", "bool", "dur"]))
    negated = draw(st.booleans())
    size = draw(st.integers(1, 3))
    if kind == "num":
        value, items = draw(num_expr(1)), draw(st.lists(num_lit, min_size=size, max_size=size))
    elif kind == "str":
        value = draw(str_expr())
        # `in []` only where no typed column can hide: see test_empty_list_of_a_number_type
        if not any(isinstance(n, ast.Attribute) for n in ast.walk(value)):
            size = draw(st.integers(0, 3))
        items = draw(st.lists(str_lit, min_size=size, max_size=size))
    elif kind == "bool":
        subject = span_attr(draw(st.sampled_from(["flag", "note"])))
        bool_items = draw(st.lists(bools, min_size=1, max_size=2))
        value, items = subject, [ast.Bool(b) for b in bool_items]
    elif kind == "dur":
        value, items = draw(dur_expr(1)), draw(st.lists(dur_lit, min_size=size, max_size=size))
    else:
        if draw(st.booleans()):
            value, words = ast.Field("kind"), KIND_SPELLINGS
        else:
            value, words = ast.Field("status"), STATUS_SPELLINGS
        size = draw(st.integers(0, 3))
        spelled = draw(st.lists(st.sampled_from(words), min_size=size, max_size=size))
        items = [ast.Name(w) if w.isupper() else ast.Str(w) for w in spelled]
    return ast.In(value, ast.ListLit(tuple(items)), negated=negated)


@st.composite
def between(draw: st.DrawFn) -> ast.Node:
    kind = draw(st.sampled_from(["num", "num", "str", "dur", "time"]))
    if kind == "num":
        value, lo, hi = draw(num_expr(1)), draw(num_lit), draw(num_lit)
    elif kind == "str":
        value, lo, hi = draw(str_expr(0)), draw(str_lit), draw(str_lit)
    elif kind == "dur":
        value, lo, hi = draw(dur_expr(1)), draw(dur_lit), draw(dur_lit)
    else:
        iso = st.builds(ast.Str, st.sampled_from(ISO_TIMES))
        value, lo, hi = draw(time_expr(1)), draw(iso), draw(iso)
    return ast.Between(value, lo, hi)


#: Regex atoms valid in both the Rust and the Python dialect, with the same meaning.
REGEX_ATOMS = [
    *("a", "b", "A", "é", "σ", "/", r"\.", ".", "[ab]", "[^a]", "(a|b)", r"\x41"),
    *(r"\d", r"\w", r"\s", r"\D", r"\W", r"\S"),
]


@st.composite
def regex(draw: st.DrawFn, ignore_case: bool) -> str:
    parts = []
    for atom in draw(st.lists(st.sampled_from(REGEX_ATOMS), max_size=3)):
        parts.append(atom + draw(st.sampled_from(["", "", "*", "+", "?"])))
    anchor_start = "^" if draw(st.booleans()) else ""
    anchor_end = "$" if draw(st.integers(0, 2)) == 0 else ""
    return anchor_start + "".join(parts) + anchor_end


glob_pattern = st.lists(
    st.sampled_from(["a", "b", "A", "/", ".", "*", "*", "?", "\\*", "\\?", "[", "é"]),
    max_size=5,
).map("".join)


@st.composite
def string_match(draw: st.DrawFn) -> ast.Node:
    op = draw(st.sampled_from(["contains", "startswith", "endswith", "glob", "matches"]))
    ignore_case = draw(st.booleans())
    subject = draw(str_expr())
    if op == "glob":
        pattern: ast.Node = ast.Str(draw(glob_pattern))
    elif op == "matches":
        pattern = ast.Str(draw(regex(ignore_case)))
    else:
        pattern = draw(
            st.one_of(
                st.builds(ast.Str, pattern_text),
                st.builds(ast.Str, pattern_text),
                str_expr(0),
                st.lists(st.builds(ast.Str, pattern_text), min_size=1, max_size=3).map(
                    lambda items: ast.ListLit(tuple(items))
                ),
            )
        )
    node = ast.Match(op, subject, pattern, ignore_case=ignore_case)
    return ast.Not(node) if draw(st.integers(0, 3)) == 0 else node


@st.composite
def existence(draw: st.DrawFn) -> ast.Node:
    subject = draw(
        st.one_of(
            attr_any,
            st.builds(ast.Field, st.sampled_from([*STR_FIELDS, "duration", "end", "kind"])),
        )
    )
    node = ast.Exists(subject)
    return ast.Not(node) if draw(st.booleans()) else node


def predicate() -> st.SearchStrategy[ast.Node]:
    return st.one_of(
        comparison(),
        comparison(),
        comparison(),
        membership(),
        between(),
        string_match(),
        string_match(),
        existence(),
    )


def _join(kind: type[ast.And] | type[ast.Or], parts: Sequence[ast.Node]) -> ast.Node:
    """And/Or of `parts`, flattened as the parser flattens them."""
    flat: list[ast.Node] = []
    for p in parts:
        flat.extend(p.operands if type(p) is kind else (p,))  # type: ignore[attr-defined]
    return kind(tuple(flat))


@st.composite
def condition(draw: st.DrawFn, depth: int = 4) -> ast.Node:
    if depth <= 0 or draw(st.integers(0, 2)) == 0:
        return draw(predicate())
    choice = draw(st.sampled_from(["not", "and", "or", "and", "or"]))
    if choice == "not":
        return ast.Not(draw(condition(depth - 1)))
    parts = draw(st.lists(condition(depth - 1), min_size=2, max_size=3))
    return _join(ast.And if choice == "and" else ast.Or, parts)


# --- running both sides ---------------------------------------------------------------------


def rule_yaml(when: str, name: str = "r") -> str:
    return yaml.safe_dump({"rules": {name: {"when": when}}}, allow_unicode=True, width=10**6)


def load_one(when: str, frame: pl.DataFrame, name: str = "r") -> RuleSet:
    """A one-rule set checked against `frame`'s columns; RuleError if the rule is invalid."""
    return load_rules(rule_yaml(when, name), schema=SpanSchema.of(frame))


def compiled_hits(rules: RuleSet, frame: pl.DataFrame, *, via_runner: bool = False) -> set[str]:
    """The span ids the (only) rule of `rules` selects in `frame`, run by fluo."""
    return compiled_hits_by_rule(rules, frame, via_runner=via_runner)[rules.names[0]]


def compiled_hits_by_rule(
    rules: RuleSet, frame: pl.DataFrame, *, via_runner: bool = False
) -> dict[str, set[str]]:
    """Rule name -> the span ids it selects in `frame`: one `select` of every rule's
    expression, or one `RuleSet.evaluate` run (the fused plan and the signal table)."""
    if via_runner:
        signals = rules.evaluate(frame)
        hits: dict[str, set[str]] = {name: set() for name in rules.names}
        for name, span_id in signals.select("rule", "span_id").iter_rows():
            hits[name].add(span_id)
        return hits
    # One filter per rule, not one select or with_columns of them all: see
    # test_rule_expression_keeps_the_table_height.
    out = {}
    for name, expr in rules.exprs(SpanSchema.of(frame)).items():
        assert frame.filter(expr.is_null()).height == 0, "a condition is never null"
        out[name] = set(frame.filter(expr)["span_id"].to_list())
    return out


def reference_hits(node: ast.Node, spans: Sequence[dict[str, Any]]) -> set[str]:
    return {s["span_id"] for s in spans if reference.evaluate(node, s)}


def layout_invariant(node: ast.Node) -> bool:
    """Whether the rule means the same with attributes as map text and as typed columns.

    Not so when two attributes meet (text vs text compares as strings, typed columns by
    their type), or when int()/float()/coalesce() see an attribute (typed booleans convert
    to numbers, map text "true" does not).
    """
    for n in ast.walk(node):
        if isinstance(n, ast.Compare) and all(
            any(isinstance(x, ast.Attribute) for x in ast.walk(side))
            and not isinstance(side, ast.Arith | ast.Neg)
            for side in (n.left, n.right)
        ):
            return False
        if (
            isinstance(n, ast.Call)
            and n.func in ("int", "float", "coalesce", "abs")
            and any(isinstance(x, ast.Attribute) for a in n.args for x in ast.walk(a))
        ):
            return False
    return True


@dataclass
class Stats:
    counts: Counter[str] = field(default_factory=Counter)

    def rate(self, layout: str) -> float:
        total = self.counts[f"{layout}:total"]
        return self.counts[f"{layout}:accepted"] / total if total else 0.0

    def overall(self) -> float:
        total = self.counts["map:total"] + self.counts["promoted:total"]
        return (self.counts["map:accepted"] + self.counts["promoted:accepted"]) / total


def differential_check(
    table: Table, rules: Sequence[ast.Node], stats: Stats, *, via_runner: bool = False
) -> None:
    """Each rule selects the same spans in fluo and in the reference, in both layouts.

    Several rules share one table: Hypothesis tends to try one rule on several tables in a
    row, so more rules per table means more different rules per test run.
    """
    texts = [unparse(rule) for rule in rules]
    results: dict[str, dict[str, set[str]]] = {}
    for layout in ("map", "promoted"):
        frame, spans = table.frame(layout), table.spans(layout)
        accepted: list[RuleSet] = []
        for i, when in enumerate(texts):
            stats.counts[f"{layout}:total"] += 1
            try:
                accepted.append(load_one(when, frame, name=f"r{i}"))
            except RuleError:
                continue
        stats.counts[f"{layout}:accepted"] += len(accepted)
        if not accepted:
            continue
        rule_set = functools.reduce(operator.add, accepted)
        got = compiled_hits_by_rule(rule_set, frame, via_runner=via_runner)
        for name in rule_set.names:
            expected = reference_hits(rule_set[name].predicate, spans)
            when = texts[int(name[1:])]
            assert got[name] == expected, (
                f"layout={layout}\nrule: {when}\nfluo only: {sorted(got[name] - expected)}\n"
                f"reference only: {sorted(expected - got[name])}\n"
                f"{frame.filter(pl.col('span_id').is_in(sorted(got[name] ^ expected)))}"
            )
            if 0 < len(expected) < len(spans):
                stats.counts[f"{layout}:mixed"] += 1  # some spans fire, some do not
        results[layout] = got
    assume(results)
    if len(results) == 2:
        for name in results["map"].keys() & results["promoted"].keys():
            if layout_invariant(rules[int(name[1:])]):
                stats.counts["invariant"] += 1
                assert results["map"][name] == results["promoted"][name], texts[int(name[1:])]


DIFF_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def run_property(
    tables_: st.SearchStrategy[Table],
    rules: st.SearchStrategy[ast.Node] | Callable[[Table], st.SearchStrategy[ast.Node]],
    *,
    per_table: int,
    via_runner: bool = False,
    examples: int = 150,
) -> Stats:
    """Check `per_table` rules on each generated table; the acceptance statistics.
    `rules` may be a function of the table (to draw patterns from its values)."""
    stats = Stats()

    def with_rules(table: Table) -> st.SearchStrategy[tuple[Table, list[ast.Node]]]:
        strategy = rules(table) if callable(rules) else rules
        return st.tuples(st.just(table), st.lists(strategy, min_size=per_table, max_size=per_table))

    @settings(DIFF_SETTINGS, max_examples=examples)
    @given(case=tables_.flatmap(with_rules))
    def prop(case: tuple[Table, list[ast.Node]]) -> None:
        table, rules = case
        differential_check(table, rules, stats, via_runner=via_runner)

    prop()
    print(dict(stats.counts))
    return stats


def test_compiled_rules_agree_with_the_reference() -> None:
    """Conditions nested up to four levels, over tables of 1 to 30 spans."""
    stats = run_property(tables(), condition(), per_table=4, examples=200)
    assert stats.rate("map") >= 0.9, stats.counts
    assert stats.overall() >= 0.7, stats.counts
    assert stats.counts["invariant"] >= 100, stats.counts
    assert stats.counts["map:mixed"] >= 80, stats.counts


def test_single_predicates_agree_with_the_reference_through_the_runner() -> None:
    """One predicate per rule (more examples per operator), run by `RuleSet.evaluate`."""
    stats = run_property(tables(), predicate(), per_table=6, via_runner=True)
    assert stats.rate("map") >= 0.9, stats.counts
    assert stats.overall() >= 0.7, stats.counts


# --- focused properties: dense values, so that near misses are common ----------------------

dense_pattern = st.one_of(_words("abA/é", 2), _words("abA/é", 3), st.just(""))
dense_glob = _words(["a", "b", "A", "/", "é", "*", "*", "?", "?", "\\*", "\\?"], 3)
dense_subject = st.one_of(
    st.builds(ast.Field, st.sampled_from(["name", "status_message"])),
    st.just(span_attr("http.url")),
)


def near_misses(table: Table) -> dict[str, list[str]]:
    """Patterns made from the table's own strings: pieces of them, the same with one
    character changed, and (for globs and regexes) with wildcards put in."""
    values = {r[c] for r in table.rows for c in ("name", "status_message")} | {
        text for attrs in table.attrs for (_, key), (_, text) in attrs.items() if key == "http.url"
    }
    texts = sorted(v for v in values if v)
    pieces: set[str] = set()
    globs: set[str] = set()
    regexes: set[str] = set()
    for v in texts:
        for i in range(len(v)):
            for j in range(i + 1, min(len(v), i + 3) + 1):
                piece = v[i:j]
                pieces |= {piece, piece[:-1] + ("b" if piece[-1] != "b" else "a")}
            globs |= {v[:i] + "?" + v[i + 1 :], v[:i] + "*", "*" + v[i + 1 :]}
            globs |= {v[:i] + "*" + v[i + 2 :]}
            if v[i] in "*?":
                globs.add(v[:i] + "\\" + v[i:])  # the literal character
        if "\n" not in v:
            escaped = "".join("\\" + ch if ch in "*.?[]()" else ch for ch in v)
            regexes |= {escaped, "^" + escaped, escaped + "$", "^" + escaped[:-1] + ".$"}
    return {"pieces": sorted(pieces), "globs": sorted(globs), "regexes": sorted(regexes)}


def dense_string_matches(table: Table) -> st.SearchStrategy[ast.Node]:
    near = near_misses(table)

    def from_table(kind: str, fallback: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(st.sampled_from(near[kind]), fallback) if near[kind] else fallback

    @st.composite
    def match(draw: st.DrawFn) -> ast.Node:
        ops = ["contains", "startswith", "endswith", "glob", "glob", "matches"]
        op = draw(st.sampled_from(ops))
        ignore_case = draw(st.booleans())
        if op == "glob":
            text = draw(from_table("globs", dense_glob))
        elif op == "matches":
            text = draw(from_table("regexes", regex(ignore_case)))
        else:
            text = draw(from_table("pieces", dense_pattern))
        node = ast.Match(op, draw(dense_subject), ast.Str(text), ignore_case=ignore_case)
        return ast.Not(node) if draw(st.integers(0, 3)) == 0 else node

    return match()


small_int = st.builds(ast.Int, st.integers(-3, 3))
dense_attr = st.builds(span_attr, st.sampled_from(["retry", "ratio", "retry"]))
dense_operand = st.one_of(
    small_int, st.builds(ast.Float, st.sampled_from([-1.5, 0.5, 2.0])), dense_attr, dense_attr
)


@st.composite
def dense_arith(draw: st.DrawFn, depth: int = 2) -> ast.Node:
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        return draw(dense_attr if depth == 2 else dense_operand)
    choice = draw(st.integers(0, 5))
    if choice == 0:
        inner = draw(dense_arith(depth - 1))
        return ast.Call(draw(st.sampled_from(["abs", "int", "float"])), (inner,))
    if choice == 1:
        return ast.Neg(draw(st.builds(span_attr, st.sampled_from(["retry", "ratio"]))))
    op = draw(st.sampled_from("+-*/%%"))
    return ast.Arith(op, draw(dense_arith(depth - 1)), draw(dense_arith(depth - 1)))


@st.composite
def dense_number_comparison(draw: st.DrawFn) -> ast.Node:
    op = draw(st.sampled_from(COMPARE_OPS))
    limit = draw(st.one_of(small_int, st.builds(ast.Float, st.sampled_from([-0.5, 0.5, 1.5]))))
    return _compare(draw, op, draw(dense_arith()), limit)


def test_string_operators_agree_on_a_small_alphabet() -> None:
    stats = run_property(
        tables(min_rows=4, max_rows=12, dense=True), dense_string_matches, per_table=8
    )
    assert stats.counts["map:mixed"] >= 300, stats.counts


def test_arithmetic_agrees_on_small_numbers() -> None:
    stats = run_property(tables(min_rows=4, max_rows=12), dense_number_comparison(), per_table=8)
    assert stats.counts["map:mixed"] >= 300, stats.counts


def one_row(
    attrs: dict[str, Any] | str | None = "absent",
    *,
    promoted: dict[str, tuple[pl.DataType, Any]] | None = None,
    **columns: Any,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """A one-span table: `attrs` is the span attribute map (text values), "absent" an empty
    map; `promoted` adds typed attr.<key> columns; other keywords set canonical columns."""
    row: dict[str, Any] = {
        "trace_id": "0" * 31 + "1",
        "span_id": "0" * 16,
        "parent_span_id": None,
        "name": "GET /cart",
        "kind": "SERVER",
        "service_name": "cart",
        "status_code": "OK",
        "status_message": None,
        "start_time": BASE_NS,
        "end_time": BASE_NS + 300 * MS,
        "duration_ns": 300 * MS,
    }
    row.update(columns)
    span_map = {} if attrs == "absent" else attrs
    data: dict[str, pl.Series] = {
        c: pl.Series(c, [row[c]], dtype=pl.String) for c in STRING_COLUMNS
    }
    for c in ("start_time", "end_time"):
        data[c] = pl.Series(c, [row[c]], dtype=pl.Int64).cast(UTC_NS)
    data["duration_ns"] = pl.Series("duration_ns", [row["duration_ns"]], dtype=pl.Int64)
    data["span_attributes"] = map_series("span_attributes", [span_map])  # type: ignore[list-item]
    data["resource_attributes"] = map_series("resource_attributes", [{"env": "prod"}])
    span = {**row, "span_attributes": span_map, "resource_attributes": {"env": "prod"}}
    for key, (dtype, v) in (promoted or {}).items():
        data[f"attr.{key}"] = pl.Series(f"attr.{key}", [v], dtype=dtype)
        span[f"attr.{key}"] = v
    return pl.DataFrame(list(data.values())), span


def holds(when: str, frame_span: tuple[pl.DataFrame, dict[str, Any]]) -> bool:
    """Whether fluo's compiled rule fires on the one span; the reference must agree."""
    frame, span = frame_span
    rules = load_one(when, frame)
    compiled = bool(compiled_hits(rules, frame))
    assert reference.evaluate(rules["r"].predicate, span) is compiled, f"reference: {when}"
    return compiled


def rejected(when: str, frame_span: tuple[pl.DataFrame, dict[str, Any]]) -> bool:
    try:
        load_one(when, frame_span[0])
    except RuleError:
        return True
    return False


X = "span.attributes.x"
#: The three columns of the null table, as map text and as a promoted Int64 column.
NULL_TABLE_SPANS = {
    "missing": (one_row({}), one_row({}, promoted={"x": (pl.Int64(), None)})),
    "1": (one_row({"x": "1"}), one_row({"x": "1"}, promoted={"x": (pl.Int64(), 1)})),
    "2": (one_row({"x": "2"}), one_row({"x": "2"}, promoted={"x": (pl.Int64(), 2)})),
}
NULL_TABLE = [
    # expression, (x missing, x = 1, x = 2)
    (f"{X} == 1", (False, True, False)),
    (f"{X} != 1", (False, False, True)),
    (f"not ({X} == 1)", (True, False, True)),
    (f"{X} in [1, 3]", (False, True, False)),
    (f"{X} not in [1, 3]", (False, False, True)),
    (f"{X} exists", (False, True, True)),
    (f"{X} == null", (True, False, False)),
    (f"{X} != null", (False, True, True)),
]


@pytest.mark.parametrize("layout", [0, 1], ids=["map", "promoted"])
@pytest.mark.parametrize(("when", "expected"), NULL_TABLE, ids=[w for w, _ in NULL_TABLE])
def test_null_table(when: str, expected: tuple[bool, bool, bool], layout: int) -> None:
    got = tuple(holds(when, NULL_TABLE_SPANS[x][layout]) for x in ("missing", "1", "2"))
    assert got == expected


@pytest.mark.parametrize(
    "when",
    [f"{X} == 1", f"{X} != 1", f"{X} in [1, 3]", f"{X} not in [1, 3]", f"{X} < 5", f"{X} >= 0"],
)
def test_null_map_and_null_entry_are_missing(when: str) -> None:
    """A null map, an empty map and a key whose value is null all mean: missing."""
    for span in (one_row(None), one_row({}), one_row({"x": None}), one_row({"y": "1"})):
        assert holds(when, span) is False
        assert holds(f"not ({when})", span) is True


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (f"{X} == 1", False),
        (f"{X} != 1", False),
        (f"not ({X} == 1)", True),
        (f"{X} in [1, 3]", False),
        (f"{X} not in [1, 3]", False),
        (f"{X} > 0", False),
        (f"{X} between 0 and 10", False),
        (f"{X} exists", True),  # present; it is only not a number
        (f"{X} == null", False),
    ],
)
def test_unconvertible_value_is_like_a_missing_one(when: str, expected: bool) -> None:
    assert holds(when, one_row({"x": "abc"})) is expected


def test_numbers_mix_integers_and_floats() -> None:
    assert holds("span.attributes.n == 1.0", one_row(promoted={"n": (pl.Int64(), 1)}))
    assert holds("span.attributes.f == 2", one_row(promoted={"f": (pl.Float64(), 2.0)}))
    assert holds("span.attributes.f < 3", one_row(promoted={"f": (pl.Float64(), 2.5)}))
    assert holds("span.attributes.n in [1.0, 7]", one_row(promoted={"n": (pl.Int64(), 1)}))
    assert holds("span.durationMs == 300", one_row())
    assert holds("span.durationMs > 299.5", one_row())


def test_strings_compare_case_sensitively_in_byte_order() -> None:
    assert not holds('span.name == "get /cart"', one_row())
    assert holds('span.name == "GET /cart"', one_row())
    assert holds('span.name < "a"', one_row(name="Z"))  # upper case sorts first
    assert holds('span.name < "é"', one_row(name="z"))  # UTF-8 bytes: é > z
    assert holds('span.name > "ab"', one_row(name="b"))
    assert not holds('span.name >= "b"', one_row(name="B"))


@pytest.mark.parametrize(
    ("text", "when", "expected"),
    [
        ("200", f"{X} == 200", True),
        ("2.5", f"{X} == 2.5", True),
        ("2.5", f"{X} > 2", True),
        ("200", f"{X} > 1000", False),
        ("200.0", f"{X} == 200", True),  # read as a number ...
        ("200.0", f'{X} == "200"', False),  # ... but compared with a string, a string
        ("200", f'{X} == "200"', True),
        ("abc", f"{X} > 1", False),
        ("abc", f"{X} != 1", False),
        ("abc", f'{X} == "abc"', True),
        ("true", f"{X} == true", True),
        ("TRUE", f"{X} == true", True),
        ("False", f"{X} == false", True),
        ("False", f"{X} != true", True),
        ("yes", f"{X} == true", False),
        ("yes", f"{X} != true", False),  # not a boolean: like missing
        ("1", f"{X} == true", False),
        ("10", f'{X} < "9"', True),  # strings: "10" < "9"
        ("10", f"{X} < 9", False),  # numbers
    ],
)
def test_map_text_conversions(text: str, when: str, expected: bool) -> None:
    assert holds(when, one_row({"x": text})) is expected


def test_two_map_attributes_compare_as_text() -> None:
    span = one_row({"a": "10", "b": "9"})
    assert holds("span.attributes.a < span.attributes.b", span)  # "10" < "9"
    assert not holds("float(span.attributes.a) < float(span.attributes.b)", span)
    assert not holds("span.attributes.a == span.attributes.c", span)  # c is missing


def test_promoted_column_keeps_its_type() -> None:
    span = one_row({"n": "200"}, promoted={"n": (pl.Int64(), 200)})
    assert holds("span.attributes.n == 200", span)
    assert rejected('span.attributes.n == "200"', span)  # number column vs string
    assert not rejected('span.attributes.n == "200"', one_row({"n": "200"}))  # map text
    text = one_row({"s": "x"}, promoted={"s": (pl.String(), "x")})
    assert rejected("span.attributes.s == 1", text)
    assert holds('span.attributes.s == "x"', text)
    flag = one_row({"b": "True"}, promoted={"b": (pl.Boolean(), True)})
    assert holds("span.attributes.b == true", flag)
    assert holds("span.attributes.b", flag)  # a boolean column is a condition itself
    assert not holds("not span.attributes.b", flag)


def test_durations_compare_only_with_durations() -> None:
    span = one_row()
    assert rejected("span.duration > 300", span)
    assert holds("span.duration >= 300ms", span)
    assert not holds("span.duration > 300ms", span)
    assert holds("span.duration == 300000us", span)
    assert holds("span.duration < 0.5s", span)
    assert holds("span.duration > 299999999ns", span)
    assert rejected(f"{X} > 300ms", one_row({"x": "1"}))


def test_kinds_and_statuses() -> None:
    span = one_row(kind="SERVER", status_code="ERROR")
    for when in (
        "span.kind == SERVER",
        'span.kind == "server"',
        "span.kind == SPAN_KIND_SERVER",
        "span.kind == server",
        "span.kind != CLIENT",
        "span.kind in [CLIENT, SERVER]",
        "span.kind not in [CLIENT, INTERNAL]",
        "span.status == ERROR",
        "span.status.code == STATUS_CODE_ERROR",
        'span.status == "error"',
    ):
        assert holds(when, span), when
    assert not holds("span.kind == CLIENT", span)
    assert not holds("span.kind != SERVER", one_row(kind=None))
    assert not holds("span.kind not in [CLIENT]", one_row(kind=None))
    for when in ("span.kind > SERVER", "span.kind == SERVR", "span.status <= OK"):
        assert rejected(when, span), when


def test_timestamps() -> None:
    span = one_row(start_time=BASE_NS + 5 * SECOND, end_time=BASE_NS + 6 * SECOND)
    assert holds('span.start == "2026-01-01T00:00:05Z"', span)
    assert holds('span.start == "2026-01-01T00:00:05"', span)  # no zone: UTC
    assert holds('span.start == "2026-01-01T01:00:05+01:00"', span)
    assert holds('span.start > "2026-01-01"', span)
    assert holds('span.end between "2026-01-01T00:00:06Z" and "2026-01-02"', span)
    assert holds("span.end - span.start == 1s", span)
    assert holds("span.start + 1s == span.end", span)
    assert holds("span.end - 500ms > span.start", span)


def test_membership_and_ranges() -> None:
    span = one_row({"x": "3"})
    assert not holds(f"{X} in []", span)
    assert holds(f"{X} not in []", span)
    assert not holds(f"{X} not in []", one_row({}))
    assert holds(f"{X} between 3 and 4", span)  # both ends included
    assert holds(f"{X} between 2 and 3", span)
    assert not holds(f"{X} between 4 and 3", span)
    assert holds('span.name between "A" and "Z"', span)
    assert holds("span.duration between 300ms and 1s", span)
    assert holds('span.name in ["x", "GET /cart"]', span)


@pytest.mark.parametrize(
    ("name", "when", "expected"),
    [
        ("a*b", 'span.name contains "*"', True),
        ("ab", 'span.name contains "a*"', False),  # contains is literal, not a pattern
        ("GET /cart", 'span.name startswith "GET"', True),
        ("GET /cart", 'span.name endswith "cart"', True),
        ("GET /cart", 'span.name startswith "get"', False),
        ("GET /cart", 'span.name istartswith "get"', True),
        ("GET /cart", 'span.name iendswith "CART"', True),
        ("GET /cart", 'span.name icontains "T /C"', True),
        ("/payment-api/v1/charge", 'span.name glob "/payment-api/*"', True),  # * spans /
        ("/payment-api", 'span.name glob "/payment-api/*"', False),
        ("abc", 'span.name glob "a?c"', True),
        ("ac", 'span.name glob "a?c"', False),
        ("aéc", 'span.name glob "a?c"', True),  # ? is one character, not one byte
        ("a*c", 'span.name glob "a\\\\*c"', True),  # the pattern is a\*c
        ("abc", 'span.name glob "a\\\\*c"', False),
        ("a?c", 'span.name glob "a\\\\?c"', True),
        ("abc", 'span.name glob "a\\\\?c"', False),
        ("[a]", 'span.name glob "[a]"', True),  # [ is literal in fluo globs
        ("a", 'span.name glob "[a]"', False),
        ("ABC", 'span.name iglob "a*"', True),
        ("abc", 'span.name glob "*"', True),
        ("", 'span.name glob "*"', True),
        ("a\nb", 'span.name glob "a*b"', True),
        ("a\nb", 'span.name glob "a?b"', True),
        ("GET /cart/42", 'span.name matches "\\d+"', True),  # anywhere
        ("GET /cart/42", 'span.name matches "^\\d+$"', False),
        ("GET /cart", 'span.name matches "^get"', False),
        ("GET /cart", 'span.name imatches "^get"', True),
        ("GET /cart", 'span.name not contains "x"', True),
        ("GET /cart", 'span.name contains ["x", "cart"]', True),
        ("GET /cart", 'span.name contains ["x", "y"]', False),
        ("GET /cart", 'span.name glob ["x*", "G*"]', True),
        ("GET /cart", "span.name contains span.service", True),  # service is "cart"
        ("GET /cart", "span.name startswith span.service", False),
    ],
)
def test_string_operators(name: str, when: str, expected: bool) -> None:
    assert holds(when, one_row(name=name)) is expected


def test_string_operators_on_missing_values() -> None:
    missing = one_row({})
    for op in ("contains", "startswith", "endswith", "glob", "matches", "icontains"):
        assert not holds(f'{X} {op} ""', missing), op
        assert holds(f'{X} not {op} ""', missing), op  # true when x is missing
    assert not holds("span.name contains span.status_message", one_row(status_message=None))


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("1 + 2 == 3", True),
        ("7 % 3 == 1", True),
        ("5 / 2 == 2.5", True),  # number / number is a float
        ("2 * 3 - 1 == 5", True),
        ("1 + 2 * 3 == 7", True),  # precedence
        ("(1 + 2) * 3 == 9", True),
        ("-2 * -3 == 6", True),
        ("span.duration + 200ms == 500ms", True),
        ("span.duration - 100ms == 200ms", True),
        ("span.duration * 2 == 600ms", True),
        ("2 * span.duration == 600ms", True),
        ("span.duration / 2 == 150ms", True),
        ("span.duration / 100ms == 3", True),  # a number
        ("span.duration * 1.5 == 450ms", True),
        ("span.end - span.start == span.duration", True),
        ("span.start + span.duration == span.end", True),
        ("span.end - span.duration == span.start", True),
        ("1 / 0 == null", True),  # division by zero is null ...
        ("1 / 0 > 0", False),  # ... so comparing it is false
        ("1 % 0 == null", True),
        ("span.duration / 0 == null", True),
        ("span.duration / 0ns == null", True),
        ("span.attributes.x + 1 == 4", True),  # map text in arithmetic is a number
        ("span.attributes.x * span.attributes.x == 9", True),
        ("span.attributes.x / 2 == 1.5", True),
        ("-span.attributes.x == -3", True),
        ("span.attributes.s + 1 == null", True),  # "abc" is not a number
        ("span.attributes.missing + 1 == null", True),
    ],
)
def test_arithmetic(when: str, expected: bool) -> None:
    assert holds(when, one_row({"x": "3", "s": "abc"})) is expected


def test_arithmetic_types_are_checked() -> None:
    span = one_row()
    for when in ("span.duration + 1 > 0ms", "span.start + span.start > span.end", '1 + "a" == 2'):
        assert rejected(when, span), when


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ('lower(span.name) == "get /cart"', True),
        ('upper(span.name) == "GET /CART"', True),
        ('upper(span.attributes.u) == "SS"', True),  # ß upper-cases to SS
        ("len(span.name) == 9", True),
        ("len(span.attributes.j) == 2", True),  # characters, not bytes
        ("abs(-3) == 3", True),
        ("abs(span.attributes.neg) == 2.5", True),
        ("abs(span.duration - 1s) == 700ms", True),
        ("int(span.attributes.x) == 3", True),
        ("int(span.attributes.f) == 2", True),  # truncates
        ("int(span.attributes.nf) == -2", True),  # towards zero
        ("float(span.attributes.f) == 2.7", True),
        ("int(span.attributes.s) == null", True),  # not a number
        ("float(span.attributes.missing) == null", True),
        ("int(span.attributes.n) == 200", True),
        ("int(span.attributes.b) == 1", True),  # a boolean column
        ("float(span.attributes.i) == 4", True),
        ('coalesce(span.attributes.missing, span.attributes.s, "z") == "abc"', True),
        ('coalesce(span.attributes.missing, "z") == "z"', True),
        ("coalesce(span.status_message, span.name) == span.name", True),
    ],
)
def test_functions(when: str, expected: bool) -> None:
    attrs = {"x": "3", "f": "2.7", "nf": "-2.7", "s": "abc", "u": "ß", "j": "日本", "neg": "-2.5"}
    span = one_row(
        attrs,
        promoted={"n": (pl.Float64(), 200.9), "b": (pl.Boolean(), True), "i": (pl.Int64(), 4)},
    )
    assert holds(when, span) is expected


def test_logic_is_two_valued() -> None:
    missing = one_row({})
    assert holds(f"not ({X} == 1) and not ({X} != 1)", missing)
    assert holds(f"{X} == 1 or not ({X} == 1)", missing)
    assert holds(f"not {X} exists", missing)
    assert holds(f"{X} not exists", missing)
    assert not holds(f"{X} == 1 or {X} != 1", missing)
    assert holds("true or false and false", missing)  # and binds tighter than or
    assert not holds("(true or false) and false", missing)
    assert holds("not false", missing)


# --- regressions: found by the tests above, fixed in fluo since -----------------------------


@pytest.mark.parametrize(
    ("name", "when", "expected"),
    [
        ("42", 'span.name imatches "^\\D+$"', False),  # \D is not \d, ignoring case or not
        ("ab", 'span.name imatches "^\\D+$"', True),
        ("A", 'span.name imatches "\\x41"', True),
        ("a", 'span.name imatches "\\x41"', True),
        ("AΣ", 'span.name imatches "aσ$"', True),  # final sigma: case folding, not lower()
        ("AΣ", 'span.name icontains "aσ"', True),
        ("AΣ", 'span.name iendswith "σ"', True),
        ("ΑΣ", 'span.name iglob "ασ"', True),
        ("STRASSE", 'span.name icontains "straße"', False),  # ß is not ss (simple folding)
    ],
)
def test_ignoring_case_is_case_folding(name: str, when: str, expected: bool) -> None:
    r"""Regression: imatches once lower-cased its regex, so \D meant \d."""
    assert holds(when, one_row(name=name)) is expected


def test_rule_expression_keeps_the_table_height() -> None:
    """Regression: `x / 0` once lowered to when(x != 0).then(..); with an all-false mask
    Polars 2.1 returned one row, so df.with_columns(rules.expr(..)) raised."""
    frame = pl.DataFrame({"trace_id": ["t"] * 3, "span_id": ["a", "b", "c"], "attr.x": [0, 0, 0]})
    rules = load_one("0 == 0 + 0 / span.attributes.x", frame)
    flags = frame.with_columns(rules.expr("r", SpanSchema.of(frame)))
    assert flags["r"].to_list() == [False, False, False]


# --- cases the differential tests found in fluo (fixed; kept as regression tests) --------


@pytest.mark.parametrize("text", ["nan", "NaN"])
def test_nan_text_is_not_a_number(text: str) -> None:
    span = one_row({"x": text})
    assert not holds(f"{X} > 1", span) and not holds(f"{X} < 1", span)


@pytest.mark.parametrize("when", [f"{X} in [1, null]", f"{X} between null and 5"])
def test_null_outside_equality_is_a_check_error(when: str) -> None:
    assert rejected(when, one_row({"x": "1"}))


@pytest.mark.parametrize("when", ["span.durationMs in []", "span.attributes.n not in []"])
def test_empty_list_of_a_number_type(when: str) -> None:
    span = one_row(promoted={"n": (pl.Int64(), 1)})
    assert holds(when, span) is when.endswith("not in []")


@pytest.mark.parametrize(
    "when",
    [
        "coalesce(span.attributes.x, 0) > 1",
        "coalesce(span.durationMs, 0) > 1",
        "coalesce(1, 2.5) > 0",
    ],
)
def test_coalesce_mixes_integers_and_floats(when: str) -> None:
    assert holds(when, one_row({"x": "5"}))
