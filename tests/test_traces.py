"""Trace-level rules: every example of the trace issue fires on its case and not on a near miss."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import pytest
from conftest import T0, spans

import fluo
from fluo.errors import Diagnostic, RuleError
from fluo.schema import SpanSchema


def S(trace: int, sid: int, parent: int | None, name: str, at: float = 0, **kw: Any) -> dict:
    """One span of trace `trace`, id `sid`, child of `parent`, starting `at` seconds in."""
    row: dict[str, Any] = {
        "trace_id": f"{trace:032x}",
        "trace_key": trace,
        "span_id": f"{sid:016x}",
        "parent_span_id": None if parent is None else f"{parent:016x}",
        "name": name,
        "start_time": T0 + dt.timedelta(seconds=at),
    }
    row.update(kw)
    return row


def fire(rule: str, *rows: dict, key: str = "when") -> list[tuple[int, int]]:
    """(trace, anchor span) of each signal of a one-rule file."""
    text = f"rules:\n  r:\n    {key}: '{rule}'\n" if key != "yaml" else rule
    out = fluo.load_rules(text).evaluate(spans(*rows))
    return sorted(
        zip(
            (int(t, 16) for t in out["trace_id"]), (int(s, 16) for s in out["span_id"]), strict=True
        )
    )


MS = 1_000_000


def test_payment_over_1000_without_fraud_check() -> None:
    rule = (
        'span.name == "payment.charge" and span.attributes.amount > 1000 '
        'and missing(span.name == "fraud.check")'
    )
    rows = [
        S(1, 1, None, "checkout"),
        S(1, 2, 1, "payment.charge", attrs={"amount": "1500"}),
        S(2, 3, None, "checkout"),
        S(2, 4, 3, "payment.charge", attrs={"amount": "1500"}),
        S(2, 5, 3, "fraud.check"),
        S(3, 6, None, "checkout"),
        S(3, 7, 6, "payment.charge", attrs={"amount": "900"}),
    ]
    assert fire(rule, *rows) == [(1, 2)]


def test_pii_access_without_audit_log() -> None:
    rule = 'has(span.attributes["data.contains_pii"] == true) and missing(span.name == "audit.log")'
    rows = [
        S(1, 1, None, "db.query", attrs={"data.contains_pii": "true"}),
        S(2, 2, None, "db.query", attrs={"data.contains_pii": "true"}),
        S(2, 3, 2, "audit.log"),
        S(3, 4, None, "db.query", attrs={"data.contains_pii": "false"}),
    ]
    assert fire(rule, *rows) == [(1, 1)]  # anchored at the PII span (the support)


def test_more_than_three_retries_of_the_same_call() -> None:
    rule = (
        "span.attributes.retry exists and "
        "count(span.name == this.name and span.attributes.retry exists) > 3"
    )
    retry = {"retry": "1"}
    rows = [S(1, i, None, "GET /a", i, attrs=retry) for i in range(1, 5)]
    rows += [S(2, 10 + i, None, "GET /a" if i < 2 else "GET /b", i, attrs=retry) for i in range(4)]
    assert [t for t, _ in fire(rule, *rows)] == [1, 1, 1, 1]


def test_requests_and_responses_that_do_not_pair_up() -> None:
    rule = 'count(span.name == "http.request") != count(span.name == "http.response")'
    rows = [
        S(1, 1, None, "http.request"),
        S(1, 2, None, "http.request", 1),
        S(1, 3, None, "http.response", 2),
        S(2, 4, None, "http.request"),
        S(2, 5, None, "http.response", 1),
    ]
    assert fire(rule, *rows) == [(1, 1)]


@pytest.mark.parametrize(
    ("condition", "supported"),
    [
        ('count(span.name == "a") > count(span.name == "b") + 1', True),
        ('count(span.name == "b") + 1 < count(span.name == "a")', True),
        ('count(span.name == "a") == count(span.name == "b") + 2', True),
        ('count(span.name == "a") >= count(span.name == "b") + 1', True),
        ('count(span.name == "a") > 0', True),
        ('count(span.name == "a") >= count(span.name == "b")', False),  # holds at 0 >= 0
        ('count(span.name == "a") > count(span.name == "b") - 1', False),  # at 0 > -1
        ('count(span.name == "a") > -1', False),
    ],
)
def test_count_comparisons_that_need_a_span_prefilter_and_anchor_there(
    condition: str, supported: bool
) -> None:
    """A comparison that cannot hold without an `a` span names `a` as its support: the
    per-trace table reads only such spans and the signal is anchored at the first `a`;
    one that can hold without any span is anchored at the root."""
    rules = fluo.load_rules(f"rules:\n  r:\n    when: '{condition}'\n")
    plan = rules.compile(SpanSchema.of(spans(S(1, 1, None, "a")).lazy())).trace
    assert (plan.supports["r"] is not None) is supported
    rows = [
        S(1, 1, None, "root"),
        S(1, 2, 1, "b", 1),
        S(1, 3, 1, "a", 2),
        S(1, 4, 1, "a", 3),
        S(1, 5, 1, "a", 4),  # 3 a, 1 b: every condition above holds
    ]
    assert fire(condition, *rows) == [(1, 3 if supported else 1)]


def test_failed_login_followed_by_success_within_5s() -> None:
    rule = """
rules:
  r:
    sequence:
      within: 5s
      steps:
        - span.name == "auth.login" and span.status == ERROR
        - span.name == "auth.login" and span.status == OK
"""
    rows = [
        S(1, 1, None, "auth.login", 0, status_code="ERROR"),
        S(1, 2, None, "auth.login", 4, status_code="OK"),
        S(2, 3, None, "auth.login", 0, status_code="ERROR"),
        S(2, 4, None, "auth.login", 6, status_code="OK"),
        S(3, 5, None, "auth.login", 0, status_code="OK"),
        S(3, 6, None, "auth.login", 1, status_code="ERROR"),
    ]
    assert fire(rule, *rows, key="yaml") == [(1, 1)]


def test_data_access_without_earlier_auth_check() -> None:
    rule = (
        'span.name == "data.access" and '
        'missing(span.name == "auth.check" and span.start < this.start)'
    )
    rows = [
        S(1, 1, None, "data.access", 0),
        S(1, 2, None, "auth.check", 1),  # check came after
        S(2, 3, None, "auth.check", 0),
        S(2, 4, None, "data.access", 1),
        S(3, 5, None, "data.access", 0),
    ]
    assert fire(rule, *rows) == [(1, 1), (3, 5)]


def test_n_plus_one_queries_under_one_server_span() -> None:
    rule = (
        "span.kind == SERVER and children.count(span.kind == CLIENT "
        'and span.attributes["db.system"] exists) > 10'
    )
    db = {"db.system": "postgresql"}
    rows = [S(1, 1, None, "GET /orders")]
    rows += [S(1, 10 + i, 1, "SELECT", kind="CLIENT", attrs=db) for i in range(11)]
    rows += [S(2, 2, None, "GET /orders"), S(2, 3, 2, "handler", kind="INTERNAL")]
    rows += [S(2, 30 + i, 3, "SELECT", kind="CLIENT", attrs=db) for i in range(11)]  # grandchildren
    assert fire(rule, *rows) == [(1, 1)]


def test_unexpected_caller_of_the_payment_gateway() -> None:
    rule = 'span.service == "payment-gateway" and parent.service != "checkout"'
    rows = [
        S(1, 1, None, "a", service_name="frontend"),
        S(1, 2, 1, "charge", service_name="payment-gateway"),
        S(2, 3, None, "a", service_name="checkout"),
        S(2, 4, 3, "charge", service_name="payment-gateway"),
    ]
    assert fire(rule, *rows) == [(1, 2)]


def test_bottleneck_share_of_the_root_duration() -> None:
    rule = 'span.service == "payment-gateway" and span.duration > 0.5 * root.duration'
    rows = [
        S(1, 1, None, "a", duration_ns=1000 * MS),
        S(1, 2, 1, "p", service_name="payment-gateway", duration_ns=600 * MS),
        S(2, 3, None, "a", duration_ns=1000 * MS),
        S(2, 4, 3, "p", service_name="payment-gateway", duration_ns=400 * MS),
    ]
    assert fire(rule, *rows) == [(1, 2)]


def test_error_span_where_the_error_started() -> None:
    rule = "span.status == ERROR and not descendants.has(span.status == ERROR)"
    rows = [
        S(1, 1, None, "a", status_code="ERROR"),
        S(1, 2, 1, "b", status_code="OK"),
        S(1, 3, 2, "c", status_code="ERROR"),
        S(1, 4, 1, "d"),
    ]
    assert fire(rule, *rows) == [(1, 3)]


def test_anchors_read_with_the_structure_or_apart_give_the_same_signals() -> None:
    """When every anchor is a span the relation looks for, one scan reads both; a rule
    set with another anchored rule reads anchors apart. The signals must not differ."""
    root_cause = "span.status == ERROR and not descendants.has(span.status == ERROR)"
    other = 'span.name == "d" and parent.name == "a"'
    rows = [
        S(1, 1, None, "a", status_code="ERROR"),
        S(1, 2, 1, "b", status_code="OK"),
        S(1, 3, 2, "c", status_code="ERROR"),
        S(1, 4, 1, "d"),
        S(2, 5, None, "a", status_code="ERROR"),
        S(3, 6, None, "a"),
        S(3, 7, 6, "d"),
    ]
    alone = fluo.load_rules(f"rules:\n  r:\n    when: '{root_cause}'\n")
    both = fluo.load_rules(f"rules:\n  r:\n    when: '{root_cause}'\n  o:\n    when: '{other}'\n")
    table = spans(*rows)
    schema = SpanSchema.of(table.lazy())
    assert alone.compile(schema).trace.anchors_in_structure
    assert not both.compile(schema).trace.anchors_in_structure
    got_alone = alone.evaluate(table)
    got_both = both.evaluate(table)
    columns = ["rule", "trace_id", "span_id"]
    assert sorted(got_alone.select(columns).rows()) == [
        ("r", f"{1:032x}", f"{3:016x}"),
        ("r", f"{2:032x}", f"{5:016x}"),
    ]
    assert sorted(got_both.filter(pl.col("rule") == "r").select(columns).rows()) == sorted(
        got_alone.select(columns).rows()
    )
    assert got_both.filter(pl.col("rule") == "o").height == 2


def test_slow_checkout_trace_with_heavy_database_time() -> None:
    rule = (
        'root.name == "POST /checkout" and trace.duration > 2s and '
        'sum(span.duration where span.attributes["db.system"] exists) > 500ms'
    )
    db = {"db.system": "postgresql"}
    rows = [
        S(1, 1, None, "POST /checkout", 0, duration_ns=2500 * MS),
        S(1, 2, 1, "q", 0.1, duration_ns=300 * MS, attrs=db),
        S(1, 3, 1, "q", 0.5, duration_ns=300 * MS, attrs=db),
        S(2, 4, None, "POST /checkout", 0, duration_ns=2500 * MS),
        S(2, 5, 4, "q", 0.1, duration_ns=300 * MS, attrs=db),
        S(3, 6, None, "POST /checkout", 0, duration_ns=1500 * MS),
        S(3, 7, 6, "q", 0.1, duration_ns=600 * MS, attrs=db),
    ]
    assert fire(rule, *rows) == [(1, 1)]


def test_all_and_aggregates() -> None:
    rows = [
        S(1, 1, None, "a", status_code="OK", kind="SERVER", duration_ns=10 * MS),
        S(1, 2, 1, "b", status_code="ERROR", kind="CLIENT", duration_ns=30 * MS),
        S(2, 3, None, "a", status_code="OK", kind="SERVER", duration_ns=50 * MS),
    ]
    assert fire("not all(span.status == OK)", *rows) == [(1, 1)]
    assert fire("all(span.status == OK where span.kind == SERVER) and count() == 2", *rows) == [
        (1, 1)
    ]
    assert fire("max(span.duration) > 40ms", *rows) == [(2, 3)]
    assert fire("avg(span.duration) == 20ms", *rows) == [(1, 1)]
    assert fire("p50(span.duration where span.kind == CLIENT) == 30ms", *rows) == [(1, 1)]
    assert fire("distinct(span.name) == 2", *rows) == [(1, 1)]
    assert fire("trace.span_count == 1 and trace.error_count == 0", *rows) == [(2, 3)]
    assert fire('max(span.duration where span.name == "zzz") > 0ms', *rows) == []  # null: false
    assert fire('sum(span.duration where span.name == "zzz") == 0ms', *rows) == [(1, 1), (2, 3)]


def test_siblings_and_ancestors() -> None:
    rows = [
        S(1, 1, None, "root"),
        S(1, 2, 1, "a"),
        S(1, 3, 1, "b"),
        S(1, 4, 3, "c"),
    ]
    assert fire('span.name == "a" and siblings.has(span.name == "b")', *rows) == [(1, 2)]
    assert fire('span.name == "b" and siblings.has(span.name == "b")', *rows) == []  # not itself
    assert fire('siblings.count(span.name != "zz") == 1 and span.name != "c"', *rows) == [
        (1, 2),
        (1, 3),
    ]
    assert fire('ancestors.has(span.name == "root") and span.name == "c"', *rows) == [(1, 4)]
    assert fire('ancestors.count(span.name != "zz") == 2', *rows) == [(1, 4)]
    assert fire('descendants.count(span.name != "zz") == 3', *rows) == [(1, 1)]
    assert fire("children.count() == 2", *rows) == [(1, 1)]
    assert fire('siblings.count() == 1 and span.name != "c"', *rows) == [(1, 2), (1, 3)]
    # A root has no siblings (not minus one of them: the root itself is not counted).
    assert fire('span.name == "root" and siblings.count(span.name == "root") == 0', *rows) == [
        (1, 1)
    ]
    assert fire('span.name == "root" and siblings.missing(span.name == "root")', *rows) == [(1, 1)]


def test_negated_relations_are_plain_negations() -> None:
    # TraceQL's `!>` and `!(...)` surprises: here `not` negates the whole term, per span.
    rows = [S(1, 1, None, "root"), S(1, 2, 1, "a"), S(1, 3, 2, "b")]
    assert fire('not children.has(span.name == "a")', *rows) == [(1, 2), (1, 3)]
    assert fire('span.name != "root" and not (parent.name == "root")', *rows) == [(1, 3)]


def test_structure_edge_cases() -> None:
    rows = [
        S(1, 1, None, "r1", 1),
        S(1, 2, None, "r2", 0),  # two roots: root. is the earliest
        S(1, 3, 99, "orphan", 2),  # parent 99 does not exist
        S(1, 4, 3, "child-of-orphan", 3),
    ]
    assert fire('span.name == "orphan" and parent.name exists', *rows) == []
    assert fire('span.name == "orphan" and root.name == "r2"', *rows) == [(1, 3)]
    assert fire('span.name == "child-of-orphan" and ancestors.count() == 1', *rows) == [(1, 4)]
    # A cycle of parent links ends the walk instead of hanging.
    cycle = [S(2, 5, 6, "x"), S(2, 6, 5, "y")]
    assert fire('span.name == "x" and descendants.has(span.name == "y")', *cycle) == [(2, 5)]


def test_duplicate_span_records_and_no_root() -> None:
    rows = [S(1, 1, None, "a"), S(1, 1, None, "a"), S(1, 2, 1, "b")]
    assert fire('count(span.name == "a") == 2', *rows) == [(1, 1)]  # records are counted
    assert fire('span.name == "b" and parent.name == "a"', *rows) == [(1, 2)]  # linked once
    rootless = [S(2, 3, 9, "x")]
    assert fire("root.name exists", *rootless) == []


def test_fluo_syntax_as_written() -> None:
    rule = "when { payment.charge_card.where(amount > 1000) } always { payment.fraud_check }"
    rows = [
        S(1, 1, None, "payment.charge_card", attrs={"amount": "1200"}),
        S(2, 2, None, "payment.charge_card", attrs={"amount": "1200"}),
        S(2, 3, None, "payment.fraud_check"),
    ]
    assert fire(rule, *rows, key="condition") == [(1, 1)]
    quoted = 'when {database.query.where("data.contains_pii" == true)} always {auth.check}'
    rows = [S(1, 1, None, "database.query", attrs={"data.contains_pii": "true"})]
    assert fire(quoted, *rows, key="condition") == [(1, 1)]
    count = "when {count(http.request) != count(http.response)}"
    rows = [S(1, 1, None, "http.request")]
    assert fire(count, *rows, key="condition") == [(1, 1)]  # a `when` alone fires
    never = 'when { "POST /pay".where(duration > 1s) } never { payment.refund }'
    rows = [
        S(1, 1, None, "POST /pay", duration_ns=2000 * MS),
        S(1, 2, 1, "payment.refund"),
        S(2, 3, None, "POST /pay", duration_ns=2000 * MS),
    ]
    assert fire(never, *rows, key="condition") == [(1, 1)]


def test_sequences_absent_and_until() -> None:
    rule = """
rules:
  r:
    sequence:
      steps:
        - span.name == "checkout"
        - absent: span.name == "fraud.check"
        - span.name == "charge"
      until: span.name == "cancel"
"""
    rows = [
        S(1, 1, None, "checkout", 0),
        S(1, 2, None, "charge", 1),
        S(2, 3, None, "checkout", 0),
        S(2, 4, None, "fraud.check", 1),
        S(2, 5, None, "charge", 2),
        S(3, 6, None, "checkout", 0),
        S(3, 7, None, "cancel", 1),
        S(3, 8, None, "charge", 2),
        S(4, 9, None, "charge", 0),
        S(4, 10, None, "checkout", 1),  # wrong order
        S(5, 11, None, "checkout", 0),
        S(5, 12, None, "charge", 0),  # same instant: not "after"
    ]
    out = fluo.load_rules(rule).evaluate(spans(*rows))
    assert [int(t, 16) for t in out["trace_id"]] == [1]
    assert out["evidence"].to_list() == [[f"{1:016x}", f"{2:016x}"]]


def test_sequence_by_another_key_crosses_traces() -> None:
    rule = """
rules:
  r:
    sequence:
      by: span.attributes["user"]
      within: 1m
      steps: [span.name == "password.reset", span.name == "email.change"]
"""
    rows = [
        S(1, 1, None, "password.reset", 0, attrs={"user": "u1"}),
        S(2, 2, None, "email.change", 30, attrs={"user": "u1"}),
        S(3, 3, None, "password.reset", 0, attrs={"user": "u2"}),
        S(4, 4, None, "email.change", 90, attrs={"user": "u2"}),
    ]
    assert fire(rule, *rows, key="yaml") == [(1, 1)]


def test_trace_rule_evidence_and_message() -> None:
    text = """
rules:
  r:
    when: has(span.name == "a") and missing(span.name == "b")
    message: "{count(span.name == \\"a\\")} a spans, trace lasted {trace.duration}"
"""
    rows = [S(1, 1, None, "a", 0), S(1, 2, None, "a", 1, duration_ns=500 * MS)]
    out = fluo.load_rules(text).evaluate(spans(*rows))
    assert out["evidence"].to_list() == [[f"{1:016x}", f"{2:016x}"]]
    assert out["message"].to_list() == ["2 a spans, trace lasted 1500.0ms"]


def test_trace_rules_agree_on_a_parquet_input_split_in_two(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rows = [S(1, 1, None, "checkout"), S(1, 2, 1, "payment.charge", attrs={"amount": "1500"})]
    table = spans(*rows)
    table.head(1).write_parquet(tmp_path / "a.parquet")
    table.tail(1).write_parquet(tmp_path / "b.parquet")
    rules = fluo.load_rules(
        'rules:\n  r:\n    when: span.name == "payment.charge" and has(span.name == "checkout")\n'
    )
    assert rules.evaluate([tmp_path / "a.parquet", tmp_path / "b.parquet"]).height == 1


def errors(when: str) -> list[Diagnostic]:
    with pytest.raises(RuleError) as info:
        fluo.load_rules(f"rules:\n  r:\n    when: '{when}'\n")
    return info.value.diagnostics


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ('count(count(span.name == "a") > 1) > 1', "aggregates cannot be nested"),
        ("count(http.retry) > 3", "unknown name 'http.retry'"),
        ("has(span.start < this.start and span.end > this.end)", "one ordering comparison"),
        ("count(span.start < this.start) > 1", "only in has() or missing()"),
        ("children.count(span.name == this.name) > 1", "over the whole trace"),
        ("siblings.max(span.duration) > 1s", "only count, has and missing"),
        ("max(span.name) > 1", "cannot compare a string with a number"),
        ("sum(span.name) > 1", "'sum' does not apply to a string"),
        ("has(trace.duration > 1s)", "trace fields cannot be used inside an aggregate"),
        ('has(parent.name == "x")', "'parent.' fields cannot be used inside an aggregate"),
        ("nodes.count() > 1", "unknown span scope 'nodes'"),
        ('count(x where span.name == "a") > 1', "write count(P)"),
        ("all(span.duration) ", "'all' needs a condition"),
    ],
)
def test_trace_check_errors(when: str, message: str) -> None:
    found = errors(when)
    assert any(message in d.message for d in found), found
    assert all(d.position is not None for d in found)


@pytest.mark.parametrize(
    ("sequence", "message"),
    [
        ("{steps: []}", "a sequence needs a non-empty list of 'steps'"),
        ("{steps: ['span.name == \"a\"'], within: 0s}", "'within' must be a positive duration"),
        ("{steps: ['span.name == \"a\"'], within: -5s}", "not a duration"),
        ("{steps: [{absent: 'span.name == \"a\"'}, 'span.name == \"b\"']}", "must start and end"),
        ("{steps: ['span.name == \"a\"'], window: 5s}", "unknown key 'window' in sequence"),
        ("{steps: ['has(span.name == \"a\")']}", "aggregates cannot be nested"),
    ],
)
def test_sequence_check_errors(sequence: str, message: str) -> None:
    with pytest.raises(RuleError) as info:
        fluo.load_rules(f"rules:\n  r:\n    sequence: {sequence}\n")
    assert any(message in d.message for d in info.value.diagnostics), info.value.diagnostics


def test_explain_describes_trace_plans() -> None:
    rules = fluo.load_rules(
        'rules:\n  r:\n    when: span.kind == SERVER and missing(span.name == "x")\n'
    )
    text = rules.compile().explain(pl.LazyFrame(schema=dict(spans().schema)))
    assert "trace rules: grouped by trace_key" in text
    assert "aggregate missing over trace" in text
    whole = fluo.load_rules('rules:\n  w:\n    when: missing(span.name == "x")\n')
    text = whole.compile().explain(pl.LazyFrame(schema=dict(spans().schema)))
    assert "one more scan of the traces where one fired" in text
    root_cause = "span.status == ERROR and not descendants.has(span.status == ERROR)"
    structural = fluo.load_rules(f"rules:\n  r:\n    when: {root_cause}\n")
    text = structural.compile().explain(pl.LazyFrame(schema=dict(spans().schema)))
    assert "parent links resolved once to row numbers" in text
    assert "the anchors are read with it" in text and "UNIQUE" in text


def pattern(when: str, **spans_: str) -> str:
    bound = "".join(f"      {n}: '{p}'\n" for n, p in spans_.items())
    return f"rules:\n  r:\n    spans:\n{bound}    when: '{when}'\n"


def test_named_span_signals_of_two_traces_that_reuse_a_span_id() -> None:
    """One signal per (trace, span) of the first name: span ids repeat across traces."""
    rows = [
        S(1, 1, None, "a", duration_ns=20 * MS),
        S(1, 2, 1, "a", 1, duration_ns=MS),
        S(2, 1, None, "a", 2, duration_ns=20 * MS),
        S(2, 2, 1, "a", 3, duration_ns=MS),
    ]
    rule = pattern("x.duration > y.duration", x='span.name == "a"', y='span.name == "a"')
    out = fluo.load_rules(rule).evaluate(spans(*rows))
    assert sorted(
        (int(t, 16), int(s, 16)) for t, s in out.select("trace_id", "span_id").rows()
    ) == [
        (1, 1),
        (2, 1),
    ]


def test_named_spans_over_duplicate_records_do_not_crash() -> None:
    """A name that binds a span id with two records walks its ancestors once."""
    rows = [S(1, 1, None, "r"), S(1, 2, 1, "m"), S(1, 2, 1, "m")]
    rule = pattern("descendant_of(y, x)", x='span.name == "r"', y='span.name == "m"')
    assert fire(rule, *rows, key="yaml") == [(1, 1)]
    rule = pattern("descendant_of(x, y)", x='span.name == "m"', y='span.name == "r"')
    assert fire(rule, *rows, key="yaml") == [(1, 2)]  # one signal per span id


def test_named_spans_related_in_time_and_structure() -> None:
    rows = [
        S(1, 1, None, "login", 0, duration_ns=100 * MS),
        S(1, 2, 1, "pay", 3),
        S(1, 3, 2, "db", 4),
        S(2, 4, None, "login", 0),
        S(2, 5, None, "pay", 0.5),
    ]
    names = {"a": 'span.name == "login"', "b": 'span.name == "pay" or span.name == "db"'}
    assert fire(pattern("child_of(b, a) and b.start - a.end > 1s", **names), *rows, key="yaml") == [
        (1, 1)
    ]
    assert fire(pattern("b.start - a.end > 1s", **names), *rows, key="yaml") == [(1, 1)]
    assert fire(pattern('descendant_of(b, a) and b.name == "db"', **names), *rows, key="yaml") == [
        (1, 1)
    ]
    assert fire(pattern("not child_of(b, a)", **names), *rows, key="yaml") == [(1, 1), (2, 4)]
    assert fire(pattern("b.start < a.start + 1s", **names), *rows, key="yaml") == [(2, 4)]


def test_named_spans_same_and_different_service_and_siblings() -> None:
    rows = [
        S(1, 1, None, "root"),
        S(1, 2, 1, "x", service_name="a"),
        S(1, 3, 1, "y", service_name="a"),
        S(2, 4, None, "root"),
        S(2, 5, 4, "x", service_name="a"),
        S(2, 6, 4, "y", service_name="b"),
    ]
    names = {"p": 'span.name == "x"', "q": 'span.name == "y"'}
    assert fire(
        pattern("sibling_of(p, q) and p.service != q.service", **names), *rows, key="yaml"
    ) == [(2, 5)]
    assert fire(
        pattern("sibling_of(p, q) and p.service == q.service", **names), *rows, key="yaml"
    ) == [(1, 2)]


def test_a_name_is_one_span_and_names_are_different_spans() -> None:
    rows = [S(1, 1, None, "x", 0), S(2, 2, None, "x", 0), S(2, 3, None, "x", 1)]
    names = {"a": 'span.name == "x"', "b": 'span.name == "x"'}
    # In trace 1 a and b could only be the same span: no match.
    assert fire(pattern("a.start <= b.start", **names), *rows, key="yaml") == [(2, 2)]


def test_bottleneck_share_with_named_spans() -> None:
    rows = [
        S(1, 1, None, "a", duration_ns=1000 * MS),
        S(1, 2, 1, "p", duration_ns=600 * MS),
        S(2, 3, None, "a", duration_ns=1000 * MS),
        S(2, 4, 3, "p", duration_ns=400 * MS),
    ]
    rule = pattern("b.duration > 0.5 * root.duration", b='span.name == "p"')
    assert fire(rule, *rows, key="yaml") == [(1, 2)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (pattern("c.duration > 1s", a="span.duration > 0ms"), "unknown span 'c'"),
        (pattern("child_of(a, c)", a="span.duration > 0ms"), "'c' is not a named span"),
        (pattern("child_of(a, a)", a="span.duration > 0ms"), "needs two different spans"),
        (pattern("span.duration > 1s", a="span.duration > 0ms"), "say which span"),
        (pattern("count() > 1", a="span.duration > 0ms"), "relate them directly"),
        (pattern("a.duration > 1s", span="span.duration > 0ms"), "'span' cannot name a span"),
        (
            "rules:\n  r:\n    spans: {a: 'span.name == \"x\"', a: 'span.name == \"y\"'}\n"
            "    when: a.duration > 1s\n",
            "duplicate key 'a'",
        ),
        ("rules:\n  r:\n    when: child_of(a, b)\n", "'a' is not a named span"),
        ("rules:\n  r:\n    spans: {a: 'span.name == \"x\"'}\n", "needs a 'when' relating them"),
    ],
)
def test_named_span_errors(text: str, message: str) -> None:
    with pytest.raises(RuleError) as info:
        fluo.load_rules(text)
    assert any(message in d.message for d in info.value.diagnostics), info.value.diagnostics


def test_structure_problems_are_reported_as_warnings() -> None:
    rules = fluo.load_rules('rules:\n  r:\n    when: descendants.has(span.name == "x")\n')
    duplicated = spans(S(1, 1, None, "a"), S(1, 1, None, "a"), S(1, 2, 1, "x"))
    result = fluo.evaluate(rules, duplicated)
    assert result.signals.height == 2  # both records of span 1 are anchors
    assert any("1 duplicate span records" in w for w in result.warnings)
    cycle = spans(S(2, 5, 6, "x"), S(2, 6, 5, "y"))
    result = fluo.evaluate(rules, cycle)
    assert any("form a cycle" in w for w in result.warnings)


def test_duplicate_record_in_the_middle_of_a_chain() -> None:
    rows = [S(1, 1, None, "r"), S(1, 2, 1, "m"), S(1, 2, 1, "m"), S(1, 3, 2, "leaf")]
    assert fire('span.name == "leaf" and ancestors.has(span.name == "r")', *rows) == [(1, 3)]
    # Aggregates count every record: both records of span 2 are ancestors of the leaf.
    assert fire('span.name == "leaf" and ancestors.count() == 3', *rows) == [(1, 3)]
    assert fire('span.name == "r" and descendants.count(span.name == "leaf") == 1', *rows) == [
        (1, 1)
    ]
    # Each record of span 2 is one anchor (not one per record reached by the walk down).
    assert fire('span.name == "m" and ancestors.count(span.name == "r") == 1', *rows) == [
        (1, 2),
        (1, 2),
    ]
    # Both records of span 2 are anchors, and both see the child linked to span 2.
    assert fire('span.name == "m" and children.has(span.name == "leaf")', *rows) == [
        (1, 2),
        (1, 2),
    ]


def test_more_than_64_whole_trace_rules_keep_their_own_anchors() -> None:
    """Verdicts travel as 64-bit words: rule 70 must not see rule 6's traces."""
    text = "rules:\n" + "".join(
        f"  r{i}:\n    when: 'has(span.name == \"n{i}\")'\n" for i in range(70)
    )
    rows = [S(i + 1, 100 + i, None, "root", 0) for i in range(70)]
    rows += [S(i + 1, 200 + i, 100 + i, f"n{i}", 1) for i in range(70)]
    out = fluo.load_rules(text).evaluate(spans(*rows))
    got = sorted((r, int(s, 16)) for r, s in zip(out["rule"], out["span_id"], strict=True))
    assert got == sorted((f"r{i}", 200 + i) for i in range(70))


def test_whole_trace_anchors() -> None:
    rows = [
        S(1, 1, None, "root", 5),
        S(1, 2, 1, "a", 9),
        S(1, 3, 1, "a", 7),  # earliest a: span 3
        S(2, 4, 9, "x", 3),
        S(2, 5, 9, "y", 1),  # no root: the earliest span
        S(3, 6, None, "r", 2),
        S(3, 7, None, "r", 1),  # two roots: the earliest
    ]
    assert fire('has(span.name == "a")', *rows) == [(1, 3)]
    assert fire("trace.span_count >= 2", *rows) == [(1, 1), (2, 5), (3, 7)]
