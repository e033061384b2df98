"""parse -> unparse -> parse gives an equal tree (fluo.printer.unparse is its inverse).

A corpus of hand-written expressions covering every construct of docs/language.md (and
the trace-level terms of docs/traces.md), then a Hypothesis property over generated,
syntactically canonical span-level trees.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

if importlib.util.find_spec("fluo") is None:  # run without the project installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fluo import ast
from fluo.parse import parse_expression
from fluo.printer import unparse

CORPUS = [
    # fields, aliases and attributes
    "span.duration > 300ms",
    "span.durationMs >= 300.5",
    "span.duration_ms < 3",
    'span.attributes["http.url"] glob "/payment-api/*"',
    'span.attributes.http.url glob "/payment-api/*"',
    'span.attributes["k8s-pod"] exists',
    'resource.attributes["deployment.environment"] == "prod"',
    'resource.region == "eu-west-1"',
    'resource.service.name == "cart"',
    'span.status.message contains "timeout"',
    # enums
    "span.kind == SERVER",
    "span.status.code != STATUS_CODE_ERROR",
    'span.kind in [SERVER, CLIENT, "producer"]',
    # membership, ranges, null
    "span.attributes.code not in [500, 502, 503]",
    "span.attributes.code in []",
    "span.attributes.x in [1, 2.5, -3]",
    "span.duration between 100ms and 1s",
    "span.attributes.x between -1 and 1",
    "span.parent_id == null",
    "span.parent_id != nil",
    "null == span.parent_id",
    # string operators
    'span.name contains "cart"',
    "span.name icontains 'CART'",
    'span.name startswith "GET" and span.name istartswith "get"',
    'span.name endswith "/x" or span.name iendswith "/X"',
    'span.name matches "^GET /\\d+$"',
    'span.name imatches "\\d+"',
    'span.name iglob "*.JS"',
    'span.name not contains "x"',
    'span.name not glob "a*"',
    'span.name contains ["a", "b"]',
    "span.name startswith span.service",
    # presence and logic
    "span.attributes.x exists",
    "span.attributes.x not exists",
    "not span.attributes.x == 1",
    'not (span.name == "a" or span.name == "b")',
    'span.name == "a" or span.name == "b" and span.name == "c"',
    '(span.name == "a" or span.name == "b") and span.name == "c"',
    "span.attributes.a == 1 and span.attributes.b == 2 and span.attributes.c == 3 or true",
    "not not span.attributes.flag",
    "span.attributes.x == true and span.attributes.y != false",
    # arithmetic
    "span.end - span.start > 1s",
    "span.start + 5m < span.end",
    "span.duration * 2 / 3 > 10ms",
    "1 + 2 * 3 - 4 % 5 == 3",
    "(1 + 2) * 3 == 9",
    "1 - (2 - 3) == 2",
    "8 / (4 / 2) == 4",
    "-span.durationMs < -5",
    "- -span.durationMs > 0",
    "-(span.durationMs + 1) > 0",
    "-2 * -span.durationMs == 4",
    # functions
    "abs(span.duration - 1s) < 10ms",
    'lower(span.name) == "get" and upper(span.name) == "GET"',
    "len(span.name) > 3",
    "int(span.attributes.x) == 3 and float(span.attributes.y) == 2.5",
    'coalesce(span.attributes.a, span.attributes.b, "z") == "z"',
    # literals
    'span.start > "2026-11-20T10:00:00Z"',
    '"GET /cart" == span.name',
    'span.name == "tab\\there \\"quoted\\" \\\\ back\\nslash"',
    "span.name == 'it\\'s'",
    "span.duration > 1.5s and span.duration < 2m and span.duration != 250us",
    "span.duration > 10ns and span.duration < 1h or span.duration > 1d",
    "span.duration == 5µs",
    "1e3 == 1000 and 0.25 < 1.5e-3",
    'span.name == "日本 ✓ é"',
    "span.duration > 1s  # slow",
]

#: Trace-level terms (docs/traces.md): aggregates, scopes, trace fields, related spans.
TRACE_CORPUS = [
    'count(span.name == "http.retry") > 3',
    "count() > 100",
    'has(span.kind == CLIENT) and missing(span.name == "fraud.check")',
    "all(span.status != ERROR where span.kind == SERVER)",
    'max(span.duration where span.service == "db") > 1s',
    "p99(span.durationMs) > 250 or median(span.duration) < 1ms",
    "distinct(span.service) >= 3 and avg(span.durationMs) > 3",
    "sum(span.attributes.bytes where span.kind == CLIENT) > 1000",
    "children.count(span.kind == CLIENT) > 10",
    "descendants.max(span.duration where span.kind == CLIENT) > 2s",
    "ancestors.min(span.start) < span.start",
    'siblings.has(span.name == "x")',
    "count(span.name == this.name) > 3",
    'missing(span.name == "auth.check" and span.start < this.start)',
    "trace.duration > 2s and trace.span_count > 10 and trace.error_count > 0",
    "trace.start < trace.end",
    "span.duration > 0.5 * root.duration and parent.service != span.service",
    'parent.attributes["http.route"] == "/x"',
    "descendant_of(call, login) and call.start - login.end > 1s",
]


@pytest.mark.parametrize("text", CORPUS + TRACE_CORPUS)
def test_corpus_roundtrips(text: str) -> None:
    tree = parse_expression(text)
    printed = unparse(tree)
    assert parse_expression(printed) == tree, printed
    assert unparse(parse_expression(printed)) == printed  # the canonical text is stable


def test_corpus_covers_every_construct() -> None:
    kinds = {type(n) for text in CORPUS for n in ast.walk(parse_expression(text))}
    expected = {
        ast.Str,
        ast.Int,
        ast.Float,
        ast.Bool,
        ast.Null,
        ast.Duration,
        ast.Name,
        ast.ListLit,
        ast.Field,
        ast.Attribute,
        ast.Compare,
        ast.In,
        ast.Between,
        ast.Match,
        ast.Exists,
        ast.Not,
        ast.And,
        ast.Or,
        ast.Arith,
        ast.Neg,
        ast.Call,
    }
    assert expected <= kinds, expected - kinds
    trace_kinds = {type(n) for text in TRACE_CORPUS for n in ast.walk(parse_expression(text))}
    assert {ast.Aggregate, ast.TraceField, ast.Related} <= trace_kinds


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("a or b and c", ast.Or((ast.Name("a"), ast.And((ast.Name("b"), ast.Name("c")))))),
        ("not x == 1", ast.Not(ast.Compare("==", ast.Name("x"), ast.Int(1)))),
        ("1 - 2 - 3", ast.Arith("-", ast.Arith("-", ast.Int(1), ast.Int(2)), ast.Int(3))),
        ("-5", ast.Int(-5)),
        ("-1.5s", ast.Duration(-1_500_000_000)),
        ("span.attributes.http.url", ast.Attribute("span", "http.url")),
        ("resource.service.name", ast.Field("service")),
        ('"a\\d"', ast.Str("a\\d")),  # an unknown escape keeps its backslash
        ("x not contains y", ast.Not(ast.Match("contains", ast.Name("x"), ast.Name("y")))),
        ("x not exists", ast.Not(ast.Exists(ast.Name("x")))),
        ("x imatches y", ast.Match("matches", ast.Name("x"), ast.Name("y"), ignore_case=True)),
    ],
)
def test_parse_builds_the_documented_tree(text: str, tree: ast.Node) -> None:
    assert parse_expression(text) == tree


# --- generated trees -------------------------------------------------------------------------

KEYWORDS = {
    "and",
    "or",
    "not",
    "in",
    "between",
    "exists",
    "true",
    "false",
    "null",
    "nil",
    "where",
    "when",
    "always",
    "never",
    *ast.MATCH_OPS,
    *("i" + op for op in ast.MATCH_OPS),
}
NAMES = ["SERVER", "ERROR", "STATUS_CODE_OK", "foo", "bar_baz", "x1", "_y"]
FIELDS = ["name", "duration", "durationMs", "status.code", "service.name", "start_time", "kind"]
FUNCTIONS = ["lower", "upper", "len", "abs", "int", "float", "coalesce", "f"]

#: Text the printer can quote: anything but control characters other than \n and \t
#: (see test_control_characters_roundtrip).
printable = st.text(
    st.characters(
        blacklist_categories=("Cs",),
        blacklist_characters="".join(chr(c) for c in range(32) if chr(c) not in "\n\t"),
    ),
    max_size=8,
)

literals = st.one_of(
    st.builds(ast.Str, printable),
    st.builds(ast.Int, st.integers(-(2**63) + 1, 2**63 - 1)),
    st.builds(ast.Float, st.floats(allow_nan=False, allow_infinity=False)),
    st.builds(ast.Bool, st.booleans()),
    st.just(ast.Null()),
    st.builds(ast.Duration, st.integers(-(10**18), 10**18)),
)
leaves = st.one_of(
    literals,
    st.builds(ast.Name, st.sampled_from(NAMES)),
    st.builds(ast.Field, st.sampled_from(FIELDS)),
    st.builds(ast.Attribute, st.sampled_from(["span", "resource"]), printable),
)


def _flat(kind: type[ast.And] | type[ast.Or], parts: list[ast.Node]) -> ast.Node:
    out: list[ast.Node] = []
    for p in parts:
        out.extend(p.operands if type(p) is kind else (p,))  # type: ignore[attr-defined]
    return kind(tuple(out))


def _neg(operand: ast.Node) -> ast.Node:
    # The parser folds `-literal` into the literal; a canonical tree never negates one.
    if isinstance(operand, ast.Int):
        return ast.Int(-operand.value)
    if isinstance(operand, ast.Float):
        return ast.Float(-operand.value)
    if isinstance(operand, ast.Duration):
        return ast.Duration(-operand.nanos)
    return ast.Neg(operand)


def _extend(children: st.SearchStrategy[ast.Node]) -> st.SearchStrategy[ast.Node]:
    lists = st.lists(children, max_size=3).map(lambda items: ast.ListLit(tuple(items)))
    ops2 = st.lists(children, min_size=2, max_size=3)
    return st.one_of(
        st.builds(
            ast.Compare, st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), *[children] * 2
        ),
        st.builds(ast.In, children, lists, st.booleans()),
        st.builds(ast.Between, children, children, children),
        st.builds(
            ast.Match,
            st.sampled_from(ast.MATCH_OPS),
            children,
            st.one_of(children, lists),
            st.booleans(),
        ),
        st.builds(ast.Exists, children),
        st.builds(ast.Not, children),
        ops2.map(lambda ops: _flat(ast.And, ops)),
        ops2.map(lambda ops: _flat(ast.Or, ops)),
        st.builds(ast.Arith, st.sampled_from(list("+-*/%")), children, children),
        children.map(_neg),
        st.builds(
            ast.Call,
            st.sampled_from(FUNCTIONS),
            st.lists(children, max_size=3).map(tuple),
        ),
    )


trees = st.recursive(leaves, _extend, max_leaves=12)


@settings(
    max_examples=1000, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(trees)
def test_generated_trees_roundtrip(tree: ast.Node) -> None:
    printed = unparse(tree)
    assert parse_expression(printed) == tree, printed
    assert unparse(parse_expression(printed)) == printed


def test_keywords_are_not_generated_as_names() -> None:
    assert not KEYWORDS & set(NAMES + FUNCTIONS)


@pytest.mark.parametrize("text", ["a\rb", "a\x01b", "a\bb", "a\fb", "a\x1bb"])
def test_control_characters_roundtrip(text: str) -> None:
    for tree in (ast.Str(text), ast.Exists(ast.Attribute("span", text))):
        assert parse_expression(unparse(tree)) == tree
