"""The parser: text to fluo's AST, precedence, literals, paths, and syntax errors."""

from __future__ import annotations

import pytest

from fluo import ast
from fluo.errors import RuleError
from fluo.parse import parse_duration, parse_expression, parse_template


def p(text: str) -> ast.Expr:
    return parse_expression(text)


def test_precedence_and_binds_tighter_than_or() -> None:
    a, b, c = (ast.Compare("==", ast.Name(n), ast.Int(1)) for n in "abc")
    assert p("a == 1 or b == 1 and c == 1") == ast.Or((a, ast.And((b, c))))
    assert p("(a == 1 or b == 1) and c == 1") == ast.And((ast.Or((a, b)), c))


def test_not_applies_to_the_whole_comparison() -> None:
    assert p("not a == 1") == ast.Not(ast.Compare("==", ast.Name("a"), ast.Int(1)))


def test_arithmetic_precedence_and_negative_literals() -> None:
    expr = p("x - -1 * 3 > 2")
    assert expr == ast.Compare(
        ">",
        ast.Arith("-", ast.Name("x"), ast.Arith("*", ast.Int(-1), ast.Int(3))),
        ast.Int(2),
    )


@pytest.mark.parametrize(
    ("text", "nanos"),
    [
        ("250us", 250_000),
        ("300ms", 300_000_000),
        ("1.5s", 1_500_000_000),
        ("2m", 120 * 10**9),
        ("1h", 3600 * 10**9),
        ("10ns", 10),
        ("3µs", 3000),
        ("1d", 86400 * 10**9),
    ],
)
def test_durations_are_exact_nanoseconds(text: str, nanos: int) -> None:
    assert parse_duration(text) == nanos
    assert p(f"span.duration > {text}") == ast.Compare(
        ">", ast.Field("duration"), ast.Duration(nanos)
    )


def test_attribute_paths_take_the_rest_as_one_key() -> None:
    assert p("span.attributes.http.url exists") == ast.Exists(ast.Attribute("span", "http.url"))
    assert p('span.attributes["http.url"] exists') == ast.Exists(ast.Attribute("span", "http.url"))
    assert p("resource.attributes.k8s.pod.name exists") == ast.Exists(
        ast.Attribute("resource", "k8s.pod.name")
    )
    assert p("resource.deployment.environment exists") == ast.Exists(
        ast.Attribute("resource", "deployment.environment")
    )
    assert p("resource.service.name exists") == ast.Exists(ast.Field("service"))


def test_keywords_inside_paths_are_names() -> None:
    assert p("span.attributes.in exists") == ast.Exists(ast.Attribute("span", "in"))
    assert p("notable exists") == ast.Exists(ast.Name("notable"))


def test_string_escapes_keep_regex_backslashes() -> None:
    node = p(r'span.name matches "\d+\"x\\"')
    assert isinstance(node, ast.Match)
    assert node.pattern == ast.Str('\\d+"x\\')


def test_string_operators_and_case_insensitive_forms() -> None:
    node = p('span.name istartswith "get"')
    assert node == ast.Match("startswith", ast.Field("name"), ast.Str("get"), ignore_case=True)
    assert p('span.name not contains "x"') == ast.Not(
        ast.Match("contains", ast.Field("name"), ast.Str("x"))
    )


def test_in_between_lists() -> None:
    assert p("x in [1, 2,]") == ast.In(ast.Name("x"), ast.ListLit((ast.Int(1), ast.Int(2))))
    assert p("x not in []") == ast.In(ast.Name("x"), ast.ListLit(()), negated=True)
    assert p("x between 1 and 5 and y == 1") == ast.And(
        (
            ast.Between(ast.Name("x"), ast.Int(1), ast.Int(5)),
            ast.Compare("==", ast.Name("y"), ast.Int(1)),
        )
    )


def test_lists_and_macros_expand() -> None:
    codes = ast.ListLit((ast.Int(500), ast.Int(503)))
    server = ast.Compare("==", ast.Field("kind"), ast.Name("SERVER"))
    expr = parse_expression(
        "server and span.attributes.code in @codes",
        lists={"codes": codes},
        macros={"server": server},
    )
    assert expr == ast.And((server, ast.In(ast.Attribute("span", "code"), codes)))


def test_positions_point_into_the_text() -> None:
    node = p("span.name == 'x' and\n  span.duration > 1s")
    assert isinstance(node, ast.And)
    second = node.operands[1]
    assert second.pos is not None
    assert (second.pos.line, second.pos.column) == (2, 17)


@pytest.mark.parametrize(
    ("text", "message", "hint", "column"),
    [
        ("span.duration = 3", "unexpected character '='", "did you mean '=='?", 15),
        ("span.duration greater 3", "unexpected name 'greater'", "did you mean '>'?", 15),
        ("a && b", "unexpected character '&&'", "did you mean 'and'?", 3),
        ("span.name contain 'x'", "unexpected name 'contain'", "did you mean 'contains'?", 11),
        ("(a == 1", "ends too early", None, 8),
        ("x in @nope", "unknown list '@nope'", None, 6),
        ("span.duration > 1.5ns", "finer than a nanosecond", None, 17),
        ("x.y['a'] exists", "can be indexed", None, 1),
        ("", "empty expression", None, 1),
    ],
)
def test_syntax_errors_are_located_with_hints(
    text: str, message: str, hint: str | None, column: int
) -> None:
    with pytest.raises(RuleError) as info:
        parse_expression(text)
    (diag,) = info.value.diagnostics
    assert message in diag.message
    assert diag.hint == hint
    assert diag.position is not None and diag.position.column == column


def test_templates_split_text_and_fields() -> None:
    tpl = parse_template("{span.name} took {span.duration} {{literal}}")
    assert tpl.parts == (ast.Field("name"), " took ", ast.Field("duration"), " {literal}")
    with pytest.raises(RuleError, match="unclosed"):
        parse_template("oops {span.name")
