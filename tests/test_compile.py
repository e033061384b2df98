"""The compiler: inline rule + tiny span table -> exactly the spans that violate it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from conftest import T0, spans

import fluo
from fluo.cli import DEFAULT_RULES
from fluo.compile import glob_plan
from fluo.printer import show_rule
from fluo.schema import SpanSchema

GOLDEN = Path(__file__).parent / "golden"


def fired(when: str, table: pl.DataFrame) -> list[str]:
    """Span ids (as small ints) the rule fires on."""
    rules = fluo.load_rules(f"rules:\n  r:\n    when: '{when}'\n")
    out = rules.evaluate(table)
    return sorted(str(int(s, 16)) for s in out["span_id"])


TABLE = spans(
    {
        "name": "GET /cart",
        "duration_ns": 350_000_000,
        "attrs": {"http.url": "/payment-api/x", "code": "503", "flag": "true"},
    },
    {
        "name": "POST /pay",
        "kind": "CLIENT",
        "duration_ns": 100_000_000,
        "attrs": {"http.url": "/cart", "code": "200", "flag": "False"},
    },
    {"name": "db", "status_code": "ERROR", "status_message": "boom", "attrs": {"code": "abc"}},
    {"name": "x", "attrs": None},
)


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("span.duration > 300ms", ["1"]),
        ("span.durationMs > 300", ["1"]),
        ("span.duration >= 100ms and span.duration <= 100ms", ["2", "3", "4"]),
        ('span.attributes.code == "503"', ["1"]),
        ("span.attributes.code > 300", ["1"]),  # text read as a number; "abc" is not one
        ("span.attributes.code != 200", ["1"]),  # "abc" converts to nothing: false, as missing
        ("not span.attributes.code == 200", ["1", "3", "4"]),
        ("span.attributes.code in [200, 503]", ["1", "2"]),
        ("span.attributes.code not in [200]", ["1"]),
        ("not (span.attributes.code in [200])", ["1", "3", "4"]),
        ("span.attributes.flag == true", ["1"]),
        ("span.attributes.flag == false", ["2"]),
        ("span.attributes.flag exists", ["1", "2"]),
        ("span.attributes.flag not exists", ["3", "4"]),
        ("span.attributes.flag == null", ["3", "4"]),
        ("span.attributes.flag != null", ["1", "2"]),
        ('span.attributes.nope != "x"', []),
        ('not span.attributes.nope == "x"', ["1", "2", "3", "4"]),
        ("span.kind == CLIENT", ["2"]),
        ("span.kind in [server, SPAN_KIND_CLIENT]", ["1", "2", "3", "4"]),
        ("span.status == STATUS_CODE_ERROR", ["3"]),
        ('span.status_message == "boom"', ["3"]),
        ('span.name glob "GET *"', ["1"]),
        ('span.name glob "*pay"', ["2"]),
        ('span.name glob "?b"', ["3"]),
        ('span.name iglob "get*"', ["1"]),
        ('span.attributes.http.url glob "/payment-api/*"', ["1"]),
        ('span.name contains "/"', ["1", "2"]),
        ('span.name icontains "CART"', ["1"]),
        ('span.name startswith "POST"', ["2"]),
        ('span.name endswith "cart"', ["1"]),
        ('span.name matches "^[A-Z]+ /"', ["1", "2"]),
        ('span.name imatches "^get"', ["1"]),
        ('span.name not matches "^[A-Z]+ /"', ["3", "4"]),
        ("span.duration between 100ms and 200ms", ["2", "3", "4"]),
        ("span.durationMs * 2 > 600", ["1"]),
        ("span.end - span.start > 300ms", ["1"]),
        ("span.duration / 2 > 150ms", ["1"]),
        ("span.duration / 100ms > 3", ["1"]),
        ("span.attributes.code / 0 > 1", []),
        ('lower(span.name) == "get /cart"', ["1"]),
        ("len(span.name) == 2", ["3"]),
        ('coalesce(span.attributes.flag, "none") == "none"', ["3", "4"]),
        ('span.start >= "2026-11-20T10:00:02Z"', ["3", "4"]),
        ('span.service == "svc" and span.trace_id == "00000000000000000000000000000002"', ["2"]),
        ("span.parent_id == null", ["1", "2", "3", "4"]),
        ('resource.service.name == "svc" and span.duration > 300ms', ["1"]),
        ("span.kind == SERVER or span.duration > 300ms and span.kind == CLIENT", ["1", "3", "4"]),
    ],
)
def test_semantics(when: str, expected: list[str]) -> None:
    assert fired(when, TABLE) == expected


def test_promoted_columns_are_read_with_their_type() -> None:
    table = spans(
        {"attrs": {"http.status_code": 503}},
        {"attrs": {"http.status_code": 200}},
        {"attrs": {}},
        promoted={"http.status_code": pl.Int64()},
    )
    rules = fluo.load_rules("rules:\n  r:\n    when: span.attributes.http.status_code >= 500\n")
    expr = rules.expr("r", SpanSchema.of(table))
    assert 'col("attr.http.status_code")' in str(expr)
    assert fired("span.attributes.http.status_code >= 500", table) == ["1"]
    assert fired("span.attributes.http.status_code != 503", table) == ["2"]


def test_seed_rule_verbatim_detects_slow_payment_spans() -> None:
    rules = fluo.load_rules(Path(__file__).parents[1] / "data" / "rules" / "seed.yaml")
    table = spans(
        {"duration_ns": 450_000_000, "attrs": {"http.url": "/payment-api/xyz"}},
        {"duration_ns": 250_000_000, "attrs": {"http.url": "/payment-api/xyz"}},
        {"duration_ns": 450_000_000, "attrs": {"http.url": "/cart-api/xyz"}},
        {"duration_ns": 450_000_000, "attrs": {}},
    )
    out = rules.evaluate(table)
    assert out["span_id"].to_list() == [f"{1:016x}"]
    assert out["message"].to_list() == ["Payment gateway API delay detected"]
    assert out["rule"].to_list() == ["payment_gateway_bottleneck"]
    assert out.columns == [
        "rule",
        "severity",
        "trace_id",
        "span_id",
        "service",
        "name",
        "time",
        "message",
        "evidence",
        "window_start",
        "window_end",
        "group",
        "value",
        "baseline",
        "threshold",
        "exemplars",
    ]


def test_message_templates_format_fields() -> None:
    rules = fluo.load_rules(
        "rules:\n  r:\n    when: span.duration > 1ms\n"
        "    message: '{span.name} took {span.duration} ({span.attributes.code}, "
        "{span.durationMs}, {{x}})'\n"
    )
    table = spans({"name": "a", "duration_ns": 412_345_678, "attrs": {}})
    assert rules.evaluate(table)["message"].to_list() == ["a took 412.346ms (null, 412.346, {x})"]


def test_many_rules_share_one_scan_and_each_has_its_expression() -> None:
    text = "rules:\n" + "".join(
        f"  r{i}:\n    when: span.duration > {i * 100}ms\n" for i in range(5)
    )
    rules = fluo.load_rules(text)
    table = spans(*({"duration_ns": d * 1_000_000} for d in (50, 150, 250, 350)))
    out = rules.evaluate(table)
    counts = dict(out.group_by("rule").len().iter_rows())
    assert counts == {"r0": 4, "r1": 3, "r2": 2, "r3": 1}
    assert set(rules.exprs()) == {f"r{i}" for i in range(5)}
    plan = rules.compile(SpanSchema.of(table))
    text_plan = plan.span.hits(table.lazy()).explain()
    assert text_plan.count("DF [") + text_plan.count("Parquet SCAN") == 1


def test_parquet_scan_reads_only_referenced_columns_and_pushes_the_filter(tmp_path: Path) -> None:
    table = spans({"duration_ns": 400_000_000}, {"duration_ns": 1})
    path = tmp_path / "spans.parquet"
    table.write_parquet(path)
    rules = fluo.load_rules("rules:\n  r:\n    when: span.duration > 300ms\n")
    frame = pl.scan_parquet(path)
    plan = rules.compile(SpanSchema.of(frame)).span.hits(frame).explain()
    scan = plan[plan.index("Parquet SCAN") :]
    assert "SELECTION" in scan and "duration_ns" in scan
    assert "span_attributes" not in plan  # not referenced, not read
    assert rules.evaluate(path)["span_id"].to_list() == [f"{1:016x}"]


def test_disabled_rules_do_not_run() -> None:
    rules = fluo.load_rules(
        "rules:\n  on:\n    when: span.duration > 0ms\n  off:\n    enabled: false\n"
        "    when: span.duration > 0ms\n"
    )
    assert set(rules.evaluate(spans({}))["rule"]) == {"on"}


def test_no_signals_gives_an_empty_typed_frame() -> None:
    rules = fluo.load_rules("rules:\n  r:\n    when: span.duration > 1h\n")
    out = rules.evaluate(spans({}))
    assert out.height == 0 and out.schema["time"] == pl.Datetime("ns", "UTC")


def test_timestamps_of_other_units_and_zones_are_normalised() -> None:
    table = spans({}).with_columns(
        pl.col("start_time").dt.cast_time_unit("us").dt.replace_time_zone(None)
    )
    rules = fluo.load_rules("rules:\n  r:\n    when: span.start < '2026-11-20T10:00:00.5Z'\n")
    assert rules.evaluate(table).height == 1
    assert rules.evaluate(table)["time"][0] == T0


def test_duration_is_derived_from_start_and_end_when_missing() -> None:
    table = spans({"duration_ns": 500_000_000}).drop("duration_ns")
    assert fired("span.duration > 300ms", table) == ["1"]


@pytest.mark.parametrize(
    ("pattern", "plan"),
    [
        ("/payment-api/*", ("startswith", ("/payment-api/",))),
        ("*.png", ("endswith", (".png",))),
        ("*error*", ("contains", ("error",))),
        ("GET /a*b", ("prefix_suffix", ("GET /a", "b"))),
        ("exact", ("equals", ("exact",))),
        (r"a\*b", ("equals", ("a*b",))),
        ("a?c", ("regex", (r"(?s)^a.c$",))),
        ("a*b*c", ("regex", (r"(?s)^a.*b.*c$",))),
    ],
)
def test_globs_compile_to_the_cheapest_form(pattern: str, plan: tuple[str, tuple[str]]) -> None:
    assert glob_plan(pattern) == plan


def test_prefix_suffix_glob_does_not_overlap() -> None:
    table = spans({"name": "ab"}, {"name": "aXb"}, {"name": "a"})
    assert fired('span.name glob "a*b"', table) == ["1", "2"]
    assert fired('span.name glob "ab*b"', table) == []


def test_golden_plans(request: pytest.FixtureRequest) -> None:
    """Our own stable printout of each bundled rule as compiled; regenerate with --update-golden."""
    rules = fluo.load_rules([Path(__file__).parents[1] / "data" / r for r in DEFAULT_RULES])
    text = "\n\n".join(show_rule(c) for c in rules.check()) + "\n"
    golden = GOLDEN / "bundled_rules.txt"
    if request.config.getoption("--update-golden") or not golden.exists():
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text()


def test_time_in_signals_is_span_start() -> None:
    table = spans({"start_time": T0 + dt.timedelta(hours=1), "duration_ns": 10**9})
    out = fluo.load_rules("rules:\n  r:\n    when: span.duration > 1ms\n").evaluate(table)
    assert out["time"].to_list() == [T0 + dt.timedelta(hours=1)]


def test_cheap_parts_are_pushed_into_the_scan_and_the_rest_is_not(tmp_path: Path) -> None:
    path = tmp_path / "spans.parquet"
    spans({"name": "a", "attrs": {"x": "1"}}, {"name": "b", "attrs": {"x": "2"}}).write_parquet(
        path
    )
    frame = pl.scan_parquet(path)
    cheap = fluo.load_rules(
        "rules:\n  r:\n    when: span.name == 'a' and span.attributes.x == '1'\n"
        "  s:\n    when: span.kind in [CLIENT] or span.duration > 1s\n"
    )
    plan = cheap.compile(SpanSchema.of(frame)).span
    assert plan.prefilter is not None
    assert "SELECTION" in plan.hits(frame).explain()
    assert cheap.evaluate(path)["rule"].to_list() == ["r"]
    costly = fluo.load_rules("rules:\n  r:\n    when: span.attributes.x == '1'\n")
    assert costly.compile(SpanSchema.of(frame)).span.prefilter is None
