"""The checker and loader: every mistake a user can make, with its message and position."""

from __future__ import annotations

import textwrap

import polars as pl
import pytest

import fluo
from fluo.errors import Diagnostic, RuleError
from fluo.schema import SpanSchema


def errors(yaml_text: str, schema: SpanSchema | None = None) -> list[Diagnostic]:
    with pytest.raises(RuleError) as info:
        fluo.load_rules(textwrap.dedent(yaml_text), schema=schema)
    return info.value.diagnostics


def one(yaml_text: str, schema: SpanSchema | None = None) -> Diagnostic:
    found = errors(yaml_text, schema)
    assert len(found) == 1, found
    return found[0]


def rule(when: str) -> str:
    return f"rules:\n  r:\n    when: {when}\n"


def test_unknown_field_has_position_caret_width_and_suggestion() -> None:
    d = one(rule("span.durration > 300ms"))
    assert d.message == "unknown span field 'span.durration'"
    assert d.hint == "did you mean 'span.duration'?"
    assert d.position is not None
    assert (d.position.line, d.position.column, d.position.width) == (3, 11, 14)
    assert d.position.line_text == "    when: span.durration > 300ms"


def test_position_inside_a_block_scalar() -> None:
    text = "rules:\n  r:\n    when: >\n      span.kind == SERVER\n      and span.kindd == CLIENT\n"
    d = one(text)
    assert d.position is not None
    assert (d.position.line, d.position.column) == (5, 11)


def test_all_errors_are_collected_across_rules() -> None:
    found = errors(
        """
        rules:
          a:
            when: span.nme == "x"
            severity: hgh
          b:
            when: span.kind == SERVR
        """
    )
    messages = [d.message for d in found]
    assert "unknown severity 'hgh'" in messages
    assert "unknown span field 'span.nme'" in messages
    assert "'SERVR' is not a span kind" in messages


@pytest.mark.parametrize(
    ("when", "message", "hint"),
    [
        (
            "span.duration > 300",
            "cannot compare a duration with a number",
            "write durations with a unit, e.g. 300ms, or use span.durationMs",
        ),
        ("span.name > 3", "cannot compare a string with a number", None),
        ("span.kind < SERVER", "'<' does not apply to a span kind", None),
        ("span.status == WARN", "'WARN' is not a status", "one of UNSET, OK, ERROR"),
        ('span.name matches "(?<=a)b"', "invalid regular expression: look-around", None),
        ("span.name == 'a' + 1", "arithmetic needs numbers, durations or times", None),
        ("lowr(span.name) == 'x'", "unknown function 'lowr'", "did you mean 'lower'?"),
        ("span.name", "a rule's condition must be true or false", None),
        ("foo == 1", "unknown name 'foo'", None),
        ("span.duration > 'soon'", "not a duration", None),
        ("span.start > 'yesterday'", "'yesterday' is not a timestamp", None),
        ("span.name glob span.service", "the pattern of 'glob' must be a string literal", None),
        ("span.duration contains 'x'", "'contains' applies to strings", None),
        ("span.name == null and span.duration < null", "'<' cannot compare with null", None),
    ],
)
def test_type_errors(when: str, message: str, hint: str | None) -> None:
    d = one(rule(when))
    assert d.message.startswith(message), d.message
    if hint is not None:
        assert d.hint == hint


def test_regex_error_points_inside_the_pattern() -> None:
    d = one(rule('span.name matches "ab(c"'))
    assert d.message == "invalid regular expression: unclosed group"
    assert d.position is not None and d.position.column == 32


@pytest.mark.parametrize(
    ("text", "message", "hint"),
    [
        (
            "rules:\n  r:\n    whem: span.name == 'x'\n",
            "unknown key 'whem' in rule 'r'",
            "did you mean 'when'?",
        ),
        (
            "rulez:\n  r:\n    when: x\n",
            "unknown key 'rulez' in rule file",
            "did you mean 'rules'?",
        ),
        ("rules:\n  r:\n    when: 3\n", "'when' must be an expression string, not a number", None),
        ("rules:\n  r:\n    title: x\n", "rule 'r' has neither 'when' nor 'conditions'", None),
        ("rules: [1]\n", "'rules' must be a mapping, not a list", None),
        (
            "rules:\n  r:\n    when: span.name == 'x'\n    enabled: yes please\n",
            "'enabled' must be true or false, not a string",
            None,
        ),
        (
            "rules:\n  r:\n    when: span.name == 'x'\n    actions: [explode]\n",
            "unknown action 'explode'",
            None,
        ),
        (
            "rules:\n  r:\n    conditions:\n      - op: greater-thn\n"
            "        field: span.durationMs\n        value: 3\n",
            "unknown operator 'greater-thn'",
            "did you mean 'greater-than'?",
        ),
        (
            "rules:\n  r:\n    conditions:\n      - op: gt\n        feild: span.durationMs\n"
            "        value: 3\n",
            "unknown key 'feild' in condition",
            "did you mean 'field'?",
        ),
        (
            "rules:\n  r:\n    conditions:\n      - op: in\n        field: span.name\n"
            "        value: x\n",
            "'in' needs a list value",
            None,
        ),
        ("macros:\n  a: b\n  b: a\nrules:\n  r:\n    when: a\n", "macro cycle: a -> b -> a", None),
        ("rules:\n  r: {when: 'span.name == \"x\"', when: 'x'}\n", "duplicate key 'when'", None),
        ("", "the rule file is empty", None),
        ("rules:\n  r:\n    when: [unclosed\n", "malformed YAML", None),
        ("rules: {}\n", "'rules' is empty", None),
    ],
)
def test_rule_file_errors(text: str, message: str, hint: str | None) -> None:
    found = errors(text)
    assert any(d.message.startswith(message) for d in found), found
    if hint is not None:
        assert any(d.hint == hint for d in found), found
    assert all(d.position is not None for d in found), found


def test_missing_column_lists_the_fields_the_table_has() -> None:
    schema = SpanSchema({"trace_id": pl.String(), "span_id": pl.String(), "name": pl.String()})
    d = one(rule("span.duration > 1s"), schema)
    assert d.message == "'span.duration' needs column 'duration_ns', which the span table lacks"
    assert d.hint is not None and "span.name" in d.hint
    d = one(rule("span.attributes.x == 'y'"), schema)
    assert "span attribute 'x' is not in the span table" in d.message


def test_duplicate_rule_names_across_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "a.yaml").write_text(rule("span.name == 'x'"))
    (tmp_path / "b.yaml").write_text(rule("span.name == 'y'"))
    with pytest.raises(RuleError, match="rule 'r' is defined twice"):
        fluo.load_rules(tmp_path)


def test_glob_in_eq_is_a_note_not_an_error() -> None:
    rules = fluo.load_rules(
        "rules:\n  r:\n    conditions:\n      - {op: eq, field: span.name, value: 'GET /*'}\n"
    )
    (note,) = rules.notes
    assert note.severity == "note"
    assert "matches as a glob" in note.message
