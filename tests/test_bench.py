"""fluo bench: structure and correctness of the report (never timings), compare, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from conftest import REPO
from typer.testing import CliRunner

import fluo
from fluo.bench import ALL_RULES, BenchReport, bench, compare, hints, literal_regex, load_report
from fluo.cli import app
from fluo.errors import DataError, RuleError

SAMPLE = REPO / "data" / "shophub" / "spans.parquet"
RULES = """
rules:
  slow_payment:
    when: span.duration > 300ms and span.service == "payment-gateway"
  payment_url_regex:
    when: span.attributes["http.url"] matches "^/payment-api/"
  template_glob:
    when: span.attributes["template.name"] glob "*order?confirm*"
  errors:
    when: span.status == ERROR
  big_payment_without_fraud_check:
    when: has(span.name == "payment.charge") and missing(span.name == "fraud.check")
  retry_below:
    when: span.kind == SERVER and descendants.count(span.status == ERROR) > 0
"""

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def report() -> BenchReport:
    return bench(fluo.load_rules(RULES), SAMPLE, repeat=1)


def test_every_rule_is_measured(report: BenchReport) -> None:
    names = fluo.load_rules(RULES).names
    assert [r.name for r in report.rules] == names
    for r in report.rules:
        assert r.error is None
        assert r.alone_s is not None and r.alone_s > 0
        assert r.marginal_s is not None  # may be negative: noise on a tiny table
    assert report.total_s is not None and report.floor_s is not None
    assert report.spans_per_s is not None and report.floor_ratio is not None
    assert report.peak_rss_mb is not None and report.memory_method


def test_selectivity_equals_the_counts_of_fluo_run(report: BenchReport) -> None:
    result = fluo.evaluate(fluo.load_rules(RULES), SAMPLE)
    signals = fluo.load_rules(RULES).evaluate(SAMPLE)
    assert report.spans == pl.scan_parquet(SAMPLE).select(pl.len()).collect().item()
    assert (
        report.traces
        == pl.scan_parquet(SAMPLE).select(pl.col("trace_id").n_unique()).collect().item()
    )
    for r in report.rules:
        assert r.signals == result.counts[r.name]
        rows = signals.filter(pl.col("rule") == r.name)
        if r.level in ("span", "anchored"):
            assert r.unit == "spans"
            assert r.matched == rows["span_id"].n_unique()
            assert r.selectivity == pytest.approx(r.matched / report.spans)
        else:
            assert r.unit == "traces"
            assert r.matched == rows["trace_id"].n_unique()
            assert r.selectivity == pytest.approx(r.matched / report.traces)
    assert report.rule("big_payment_without_fraud_check").level == "trace"


def test_columns_pushdown_and_hints(report: BenchReport) -> None:
    slow = report.rule("slow_payment")
    assert slow.columns == ("duration_ns", "service_name")
    regex = report.rule("payment_url_regex")
    assert regex.columns == ("attr.http.url",)  # the promoted column, not the map
    assert any("startswith" in h for h in regex.hints)
    glob = report.rule("template_glob")
    assert glob.columns == ("span_attributes",)
    assert any('promote it to a typed "attr.template.name"' in h for h in glob.hints)
    assert any("resolves their parent links" in h for h in report.rule("retry_below").hints)
    # The regex and glob rules have no cheap part, so nothing of the span rules is pushed.
    assert all(report.rule(n).pushed is None for n in ("slow_payment", "errors"))
    assert any("no span-rule condition is pushed" in n for n in report.notes)
    assert report.rule("big_payment_without_fraud_check").pushed == 'name == "payment.charge"'
    assert set(report.floor_columns) == {c for r in report.rules for c in r.columns} - {"trace_key"}


def test_cheap_rules_are_pushed_into_the_scan() -> None:
    rules = """
rules:
  slow: {when: span.duration > 1s}
  failing_payment: {when: span.service == "payment-gateway" and span.name contains "x"}
"""
    report = bench(fluo.load_rules(rules), SAMPLE, repeat=1, marginal=False)
    assert report.rule("slow").pushed == "duration_ns > 1s"
    assert report.rule("failing_payment").pushed == 'service_name == "payment-gateway"'
    assert all(r.marginal_s is None for r in report.rules)


def test_frame_and_json(report: BenchReport, tmp_path: Path) -> None:
    frame = report.frame()
    assert frame.height == len(report.rules)
    assert frame.schema["columns"] == pl.List(pl.String)
    assert frame.filter(pl.col("name") == "errors")["signals"].item() == (
        report.rule("errors").signals
    )
    document = json.loads(json.dumps(report.to_json()))
    assert document["fluo_bench"] == 1
    assert [r["name"] for r in document["rules"]] == [r.name for r in report.rules]


@pytest.mark.parametrize(
    ("pattern", "plain"),
    [
        ("^/payment-api/", ("startswith", "/payment-api/")),
        ("timeout", ("contains", "timeout")),
        ("error$", ("endswith", "error")),
        ("^GET /cart$", ("==", "GET /cart")),
        (r"^api\.v1", ("startswith", "api.v1")),
        ("time(d)? ?out", None),
        ("^/api/v[0-9]+", None),
        (r"\d+", None),
    ],
)
def test_literal_regex(pattern: str, plain: tuple[str, str] | None) -> None:
    assert literal_regex(pattern) == plain


def test_compare_flags_regressions(report: BenchReport) -> None:
    previous = report.to_json()
    same = compare(report, previous)
    assert {c.status for c in same} == {"same"}
    assert same[-1].name == ALL_RULES
    faster_before = json.loads(json.dumps(previous))
    for r in faster_before["rules"]:
        if r["name"] == "errors":
            r["alone_s"] = r["alone_s"] / 10 - 0.1  # it now takes > 10x as long
    faster_before["rules"] = [r for r in faster_before["rules"] if r["name"] != "slow_payment"]
    faster_before["rules"].append({"name": "gone", "alone_s": 0.1})
    changes = {c.name: c for c in compare(report, faster_before)}
    assert changes["errors"].regression
    assert not changes["payment_url_regex"].regression
    assert changes["slow_payment"].status == "new"
    assert changes["gone"].status == "removed"


def test_cli_writes_json_and_compares(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  errors: {when: span.status == ERROR}\n")
    out = tmp_path / "bench.json"
    args = ["bench", str(rules), "--spans", str(SAMPLE), "--repeat", "1", "--no-marginal"]
    code, stdout, stderr = invoke(*args, "--json", str(out))
    assert code == 0, stderr
    assert "errors" in stdout and "spans/s" in stdout
    document = load_report(out)
    assert document["rules"][0]["signals"] > 0
    document["rules"][0]["alone_s"] = 1e-6
    document["total_s"] = 1e-6
    old = tmp_path / "old.json"
    old.write_text(json.dumps(document))
    args += ["--min-seconds", "0"]
    code, stdout, stderr = invoke(*args, "--compare", str(old), "--threshold", "1.5")
    assert code == 0, stderr  # regressions are shown, not failed on, by default
    assert "REGRESSION" in stdout
    code, _, stderr = invoke(*args, "--compare", str(old), "--fail-on-regression")
    assert code == 1
    assert "regression: errors" in stderr


def test_cli_bad_input(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("rules:\n  off: {when: span.status == ERROR, enabled: false}\n")
    code, _, stderr = invoke("bench", str(empty), "--spans", str(SAMPLE), "--repeat", "1")
    assert code == 2
    assert "no enabled rules to benchmark" in stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("rules:\n  typo: {when: span.duraton > 1s}\n")
    code, _, stderr = invoke("bench", str(broken), "--spans", str(SAMPLE), "--repeat", "1")
    assert code == 2
    assert "duraton" in stderr and "Traceback" not in stderr
    ok = tmp_path / "ok.yaml"
    ok.write_text("rules:\n  errors: {when: span.status == ERROR}\n")
    code, _, stderr = invoke("bench", str(ok), "--spans", str(tmp_path / "nope.parquet"))
    assert code == 2
    code, _, stderr = invoke("bench", str(ok), "--spans", str(SAMPLE), "--repeat", "0")
    assert code == 2
    not_json = tmp_path / "old.json"
    not_json.write_text("{}")
    code, _, stderr = invoke("bench", str(ok), "--spans", str(SAMPLE), "--compare", str(not_json))
    assert code == 2
    assert "not a fluo bench report" in stderr


def test_data_matching_nothing_is_measured_with_a_note() -> None:
    rules = 'rules:\n  never: {when: span.name == "no such span"}\n'
    report = bench(fluo.load_rules(rules), SAMPLE, repeat=1)
    (rule,) = report.rules
    assert rule.signals == 0 and rule.selectivity == 0.0 and rule.alone_s is not None
    assert any("no rule matched" in n for n in report.notes)


def test_a_rule_failing_at_run_time_is_reported_and_skipped() -> None:
    def broken(_: pl.Series) -> pl.Series:
        raise ValueError("this column cannot be decoded")

    spans = pl.scan_parquet(SAMPLE).with_columns(
        pl.col("status_message").map_batches(broken, return_dtype=pl.String)
    )
    rules = """
rules:
  errors: {when: span.status == ERROR}
  timeouts: {when: span.status_message contains "timeout"}
"""
    report = bench(fluo.load_rules(rules), spans, repeat=1)
    failed = report.rule("timeouts")
    assert failed.error is not None and "cannot be decoded" in failed.error
    assert failed.alone_s is None and failed.marginal_s is None
    ok = report.rule("errors")
    assert ok.error is None and ok.alone_s is not None and ok.signals > 0
    assert report.total_s is not None
    assert "status_message" not in report.floor_columns
    assert any("failed at run time" in n for n in report.notes)


def test_a_rule_the_table_cannot_answer_is_an_error_before_measuring() -> None:
    spans = pl.scan_parquet(SAMPLE).drop("status_message")
    rules = fluo.load_rules('rules:\n  t: {when: span.status_message contains "timeout"}\n')
    with pytest.raises(RuleError, match="status_message"):
        bench(rules, spans, repeat=1)


def test_repeat_must_be_positive() -> None:
    with pytest.raises(DataError):
        bench(fluo.load_rules("rules:\n  e: {when: span.status == ERROR}\n"), SAMPLE, repeat=0)


def test_windowed_rules_count_signals_and_hint_at_many_groups() -> None:
    rules = """
rules:
  per_span:
    window: 1m
    by: span.span_id
    when: count >= 2
  per_service:
    window: 5m
    by: span.service
    when: error_rate > 5%
"""
    rule_set = fluo.load_rules(rules)
    report = bench(rule_set, SAMPLE, repeat=1, marginal=False)
    counts = fluo.evaluate(rule_set, SAMPLE).counts
    for r in report.rules:
        assert r.level == "window" and r.unit == "signals" and r.selectivity is None
        assert r.signals == r.matched == counts[r.name]
    assert any("distinct groups" in h for h in report.rule("per_span").hints)
    assert not report.rule("per_service").hints


def test_hints_for_a_duration_in_units_and_a_set_without_prefilter(report: BenchReport) -> None:
    rule_set = fluo.load_rules(REPO / "data" / "rules" / "seed.yaml")
    plan = rule_set.compile()
    (seed,) = plan.rules
    found = hints(seed, plan)
    assert any("write `span.duration > 300ms`" in h for h in found)
    assert any("cannot be prefiltered" in h for h in found)
    assert any("cannot be prefiltered" in h for h in report.rule("template_glob").hints)
    assert not any("cannot be prefiltered" in h for h in report.rule("slow_payment").hints)
