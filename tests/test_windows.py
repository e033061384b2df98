"""Windowed aggregate rules and correlations: meaning, edge cases, errors, and a
differential test against the plain-Python reference (tests/reference_windows.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fluo
from fluo.errors import DataError, RuleError
from tests import reference_windows as ref
from tests.conftest import REPO, T0, spans

MIN = 60_000_000_000


def S(service: str, minute: float, ms: float = 100, *, error: bool = False, **kw: Any) -> dict:
    """One span of `service` starting `minute` minutes after T0, lasting `ms`."""
    return {
        "service_name": service,
        "start_time": T0 + dt.timedelta(minutes=minute),
        "duration_ns": int(ms * 1_000_000),
        "status_code": "ERROR" if error else "UNSET",
        **kw,
    }


def run(rule_body: str, *rows: dict, baseline: pl.DataFrame | None = None) -> pl.DataFrame:
    text = "fluo: 1\nrules:\n  r:\n" + "".join(f"    {line}\n" for line in rule_body.splitlines())
    rules = fluo.load_rules(text)
    signals = fluo.evaluate(rules, spans(*rows), baseline=baseline).signals
    return signals.sort("time", "service", nulls_last=True)


def windows(signals: pl.DataFrame) -> list[tuple[str | None, int]]:
    """(service, minutes after T0) of each signal's window."""
    return [
        (service, int((start - T0).total_seconds() // 60))
        for service, start in signals.select("service", "window_start").iter_rows()
    ]


# --- windows, groups, thresholds ----------------------------------------------------------


def test_tumbling_windows_count_per_group() -> None:
    rows = [S("a", m) for m in (0, 1, 2, 5, 6)] + [S("b", 0.5)]
    out = run("window: 5m\nby: span.service\nwhen: count >= 3", *rows)
    assert windows(out) == [("a", 0)]
    assert out["value"].to_list() == [3.0]
    assert out["threshold"].to_list() == [3.0]
    assert out["group"].to_list() == ["service=a"]
    assert out["window_end"][0] - out["window_start"][0] == dt.timedelta(minutes=5)


def test_sliding_windows_see_each_span_in_every_window_that_covers_it() -> None:
    rows = [S("a", m) for m in (4, 5, 6)]
    out = run("window: 5m\nevery: 1m\nby: span.service\nwhen: count >= 3", *rows)
    # windows [2,7) [3,8) [4,9) hold all three spans
    assert windows(out) == [("a", 2), ("a", 3), ("a", 4)]


def test_where_filters_the_spans_that_count() -> None:
    rows = [S("a", 0, kind="SERVER"), S("a", 1, kind="CLIENT"), S("a", 2, kind="SERVER")]
    out = run("window: 5m\nwhere: span.kind == SERVER\nwhen: count == 2", *rows)
    assert len(out) == 1 and out["service"].to_list() == [None]  # no 'by': one group


def test_error_rate_is_a_share_and_percent_literals() -> None:
    rows = [S("a", 0.1 * i, error=i < 3) for i in range(40)]
    out = run("window: 5m\nby: span.service\nwhen: error_rate > 5%", *rows)
    assert out["value"].to_list() == pytest.approx([3 / 40])
    assert out["threshold"].to_list() == pytest.approx([0.05])
    assert run("window: 5m\nwhen: error_rate > 10%", *rows).height == 0
    assert run("window: 5m\nwhen: errors == 3", *rows).height == 1


def test_rate_is_spans_per_second() -> None:
    rows = [S("a", 0.01 * i) for i in range(60)]
    out = run("window: 1m\nwhen: rate >= 1", *rows)
    assert out["value"].to_list() == [1.0]


def test_percentiles_and_durations_report_milliseconds() -> None:
    rows = [S("a", 0.01 * i, ms=10 * (i + 1)) for i in range(100)]
    out = run("window: 5m\nwhen: p95(span.duration) > 900ms", *rows)
    assert out["value"].to_list() == pytest.approx([950.5])
    assert out["threshold"].to_list() == [900.0]
    assert "p95(span.duration) = 950.5ms" in out["message"][0]


def test_min_count_keeps_quiet_windows_out() -> None:
    rows = [S("a", 0, error=True), S("a", 1), S("a", 10)] + [
        S("a", 10 + 0.01 * i) for i in range(30)
    ]
    out = run("window: 5m\nmin_count: 10\nwhen: error_rate > 10%", *rows)
    assert out.height == 0  # 1 of 2 is 50%, but two requests prove nothing


def test_empty_windows_exist_only_with_min_count_zero() -> None:
    rows = [S("a", 0), S("a", 11)]
    assert run("window: 5m\nby: span.service\nwhen: count == 0", *rows).height == 0
    out = run("window: 5m\nby: span.service\nmin_count: 0\nwhen: count == 0", *rows)
    assert windows(out) == [("a", 5)]  # the window between the group's first and the end


def test_aggregate_filters_and_distinct() -> None:
    rows = [
        S("a", 0.1 * i, attrs={"user": str(i % 4)}, kind="CLIENT" if i % 2 else "SERVER")
        for i in range(20)
    ]
    out = run(
        "window: 5m\n"
        'when: count(span.kind == CLIENT) == 10 and distinct(span.attributes["user"]) == 4',
        *rows,
    )
    assert out.height == 1


def test_group_keys_can_be_read_outside_aggregates() -> None:
    rows = [S("a", 0), S("b", 0), S("b", 1)]
    out = run(
        'window: 5m\nby: span.service\nwhen: span.service == "b" and count > 1\n'
        'message: "{span.service} had {count}"',
        *rows,
    )
    assert out["message"].to_list() == ["b had 2"]


# --- baselines ------------------------------------------------------------------------------


def latency_rows(slow_from: int, minutes: int = 40) -> list[dict]:
    rows = []
    for m in range(minutes):
        for j in range(10):
            ms = 400 if m >= slow_from else 100
            rows.append(S("a", m + j * 0.09, ms=ms))
    return rows


def test_baseline_previous_windows() -> None:
    out = run(
        "window: 5m\nbaseline: previous 3\nwhen: avg(span.duration) - baseline > 200ms",
        *latency_rows(slow_from=20),
    )
    # the first slow window, and the next two (their baseline still holds fast windows)
    assert windows(out) == [(None, 20), (None, 25)]
    assert out["baseline"].to_list() == [100.0, 100.0]
    assert out["value"].to_list() == [400.0, 400.0]
    assert out["threshold"].to_list() == [200.0, 200.0]


def test_baseline_offset_and_ratio() -> None:
    rows = latency_rows(slow_from=30)
    out = run("window: 10m\nbaseline: 20m ago\nwhen: avg(span.duration) > 3 * baseline", *rows)
    assert windows(out) == [(None, 30)]
    assert out["threshold"].to_list() == [300.0]  # 3 x the baseline, in ms


def test_baseline_data_set() -> None:
    base = spans(*latency_rows(slow_from=999, minutes=20))
    out = run(
        "window: 10m\nbaseline: data\nwhen: avg(span.duration) - baseline > 200ms",
        *latency_rows(slow_from=30),
        baseline=base,
    )
    assert windows(out) == [(None, 30)]
    with pytest.raises(DataError, match="--baseline"):
        run("window: 10m\nbaseline: data\nwhen: avg(span.duration) > baseline", S("a", 0))


def test_groups_without_baseline_do_not_fire() -> None:
    out = run(
        "window: 5m\nby: span.service\nbaseline: previous 3\nwhen: count - baseline > 0",
        S("a", 0),
    )
    assert out.height == 0


# --- exemplars ----------------------------------------------------------------------------


def test_exemplars_are_the_slowest_or_failed_traces() -> None:
    rows = [S("a", 0.1 * i, ms=10 + i) for i in range(20)]
    out = run("window: 5m\nexemplars: 3\nwhen: avg(span.duration) > 1ms", *rows)
    assert out["exemplars"][0].to_list() == [f"{i:032x}" for i in (20, 19, 18)]
    assert out["trace_id"].to_list() == [f"{20:032x}"]
    rows = [S("a", 0.1 * i, ms=10 + i, error=i in (2, 5)) for i in range(20)]
    out = run("window: 5m\nexemplars: 3\nwhen: error_rate > 1%", *rows)
    assert out["exemplars"][0].to_list()[:2] == [f"{i:032x}" for i in (6, 3)]


# --- trace context ------------------------------------------------------------------------


def edge_rows(gap_ms: float, minute: int, trace: int) -> list[dict]:
    """A caller span of `front` and its child in `back`, the child `gap_ms` shorter."""
    start = T0 + dt.timedelta(minutes=minute)
    key = trace * 10
    parent = {
        "trace_id": f"{key:032x}",
        "trace_key": key,
        "span_id": f"{key + 1:016x}",
        "service_name": "front",
        "start_time": start,
        "duration_ns": int((50 + gap_ms) * 1e6),
    }
    child = {
        "trace_id": f"{key:032x}",
        "trace_key": key,
        "span_id": f"{key + 2:016x}",
        "parent_span_id": f"{key + 1:016x}",
        "service_name": "back",
        "start_time": start,
        "duration_ns": 50_000_000,
    }
    return [parent, child]


def test_edge_rule_median_gap_between_caller_and_callee() -> None:
    rows = []
    for m in range(30):
        for j in range(5):
            rows += edge_rows(gap_ms=80 if m >= 20 else 5, minute=m, trace=m * 10 + j + 1)
    out = run(
        "window: 1m\nby: [parent.service, span.service]\n"
        "where: parent.service != span.service\nbaseline: previous 10\n"
        "when: median(parent.duration - span.duration) - baseline > 50ms",
        *rows,
    )
    assert windows(out)[0] == ("back", 20)
    assert out["group"][0] == "parent.service=front, service=back"
    assert out["value"][0] == pytest.approx(80.0)


def test_where_may_read_trace_patterns() -> None:
    rows = [*edge_rows(5, 0, 1), S("lonely", 0, trace_id=f"{99:032x}", trace_key=99)]
    out = run('window: 5m\nwhere: has(span.service == "back")\nwhen: count == 2', *rows)
    assert out.height == 1  # the two spans of the trace that reached "back"


# --- correlations -------------------------------------------------------------------------


def test_correlation_of_two_rules_for_the_same_service() -> None:
    text = """
fluo: 1
rules:
  slow:
    when: span.duration > 1s
  failed:
    when: span.status == ERROR
  both:
    severity: high
    correlate: {rules: [slow, failed], within: 10m, by: service}
  thrice:
    correlate: {rules: [failed], within: 5m, count: 3}
"""
    rows = [
        S("a", 0, ms=2000),
        S("a", 8, error=True),  # a: both within 10 minutes
        S("b", 0, ms=2000),
        S("b", 30, error=True),  # b: too far apart
        S("c", 40, error=True),
        S("c", 41, error=True),
        S("c", 42, error=True),
    ]
    out = fluo.evaluate(fluo.load_rules(text), spans(*rows)).signals
    both = out.filter(pl.col("rule") == "both")
    assert both["service"].to_list() == ["a"]
    assert both["exemplars"][0].len() == 2
    thrice = out.filter(pl.col("rule") == "thrice")
    assert thrice["time"].to_list() == [T0 + dt.timedelta(minutes=42)]


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("window: 0s\nwhen: count > 1", "'window' must be a positive duration"),
        ("window: -5m\nwhen: count > 1", "not a duration"),
        ("window: 5m\nevery: 2m\nwhen: count > 1", "whole number of 'every' steps"),
        ("window: 5m\nevery: 10m\nwhen: count > 1", "cannot be longer"),
        ("window: 5m\nby: span.servce\nwhen: count > 1", "span.service"),
        ("window: 5m\nwhen: span.duration > 1s", "inside aggregates or as 'by' keys"),
        ("window: 5m\nwhen: baseline > 1", "'baseline' needs a `baseline:`"),
        (
            "window: 5m\nbaseline: previous 3\nwhen: count > baseline + errors",
            "exactly one aggregate",
        ),
        ("window: 5m\nbaseline: yesterday\nwhen: count > baseline", "unknown baseline"),
        ("window: 5m\nmin_count: -1\nwhen: count > 1", "'min_count' must be a whole number"),
        ("by: span.service\nwhen: count > 1", "'by' belongs to windowed rules"),
        ("when: rate > 1", "'rate' is an aggregate of windowed rules"),
        ("window: 5m\nwhen: p95(span.name) > 1", "does not apply"),
        ("window: 5m\nwhen: count", "must be true or false"),
        ("correlate: {rules: [nope], within: 5m}", "unknown rule 'nope'"),
        ("correlate: {rules: [r], within: 5m, by: servce}", "cannot correlate by 'servce'"),
    ],
)
def test_errors_have_positions(body: str, message: str) -> None:
    text = "fluo: 1\nrules:\n  r:\n" + "".join(f"    {line}\n" for line in body.splitlines())
    with pytest.raises(RuleError) as caught:
        fluo.load_rules(text).check()
    diagnostics = caught.value.diagnostics
    assert any(message in d.message + (d.hint or "") for d in diagnostics), diagnostics
    assert all(d.position is not None for d in diagnostics)


def test_percentile_outside_0_100_is_not_a_function() -> None:
    with pytest.raises(RuleError, match="unknown function 'p101'"):
        fluo.load_rules("rules:\n  r:\n    window: 5m\n    when: p101(span.duration) > 1s").check()


# --- the bundled data -------------------------------------------------------------------------


def test_bundled_shophub_symptoms_with_payment_gateway_exemplars() -> None:
    rules = fluo.load_rules(REPO / "data" / "rules" / "aggregates.yaml")
    data = pl.read_parquet(REPO / "data" / "shophub" / "spans.parquet")
    out = fluo.evaluate(rules, data).signals
    for name in ("checkout_latency_regression", "checkout_error_rate"):
        fired = out.filter(pl.col("rule") == name)
        assert fired.height, name
        incident = fired.filter(
            pl.col("window_start").dt.hour().is_in([10, 11])
            & pl.col("window_end").is_between(
                dt.datetime(2026, 11, 20, 10, 50, tzinfo=dt.UTC),
                dt.datetime(2026, 11, 20, 11, 20, tzinfo=dt.UTC),
            )
        )
        assert incident.height == fired.height, fired  # only during the incident
        exemplars = set(incident["exemplars"].explode().drop_nulls())
        through_gateway = set(
            data.filter(pl.col("service_name") == "payment-gateway")["trace_id"].unique()
        )
        assert exemplars and exemplars <= through_gateway


# --- the oracle ---------------------------------------------------------------------------


@st.composite
def span_sets(draw: st.DrawFn) -> list[ref.Span]:
    n = draw(st.integers(0, 60))
    out = []
    for i in range(n):
        out.append(
            ref.Span(
                service=draw(st.sampled_from(["a", "b"])),
                kind=draw(st.sampled_from(["SERVER", "CLIENT"])),
                start=int(T0.timestamp() * 1e9) + draw(st.integers(0, 30 * ref.NS * 60)),
                duration=draw(st.integers(0, 2_000)) * 1_000_000,
                error=draw(st.booleans()),
                trace_id=f"{i + 1:032x}",
            )
        )
    return out


@settings(max_examples=60, deadline=None)
@given(
    span_sets(),
    st.sampled_from([(5, 5), (5, 1), (10, 5), (1, 1)]),
    st.sampled_from([None, "SERVER"]),
    st.sampled_from(["count", "rate", "errors", "error_rate", "avg", "max", "p95"]),
    st.sampled_from([">", "<"]),
    st.integers(1, 4),
    st.sampled_from([None, 1, 3]),
)
def test_windows_match_the_reference(
    rows: list[ref.Span],
    window: tuple[int, int],
    kind: str | None,
    name: str,
    op: str,
    min_count: int,
    previous: int | None,
) -> None:
    size, every = window
    threshold = {"count": 2, "rate": 0.01, "errors": 1, "error_rate": 0.4}.get(name, 800e6)
    unit = "ms" if name in ("avg", "max", "p95") else ""
    shown = f"{threshold / 1e6:g}ms" if unit else f"{threshold:g}"
    metric = f"{name}(span.duration)" if unit else name
    lines = [f"window: {size}m", f"every: {every}m", "by: span.service", f"min_count: {min_count}"]
    if kind:
        lines.append(f"where: span.kind == {kind}")
    if previous:
        lines.append(f"baseline: previous {previous}")
        lines.append(f"when: {metric} - baseline {op} {shown}")
    else:
        lines.append(f"when: {metric} {op} {shown}")
    table = spans(
        *(
            {
                "service_name": s.service,
                "kind": s.kind,
                "start_time": dt.datetime.fromtimestamp(s.start / 1e9, dt.UTC),
                "duration_ns": s.duration,
                "status_code": "ERROR" if s.error else "UNSET",
            }
            for s in rows
        )
    )
    rows = [
        ref.Span(s.service, s.kind, int(t.timestamp() * 1e9), s.duration, s.error, s.trace_id)
        for s, t in zip(rows, table["start_time"], strict=True)
    ]
    text = "rules:\n  r:\n" + "".join(f"    {line}\n" for line in lines)
    got = fluo.evaluate(fluo.load_rules(text), table).signals
    found = {
        (service, int(start.timestamp() * 1e9))
        for service, start in got.select("service", "window_start").iter_rows()
    }
    expected = ref.evaluate(
        rows,
        size=size * 60 * ref.NS,
        every=every * 60 * ref.NS,
        kind=kind,
        name=name,
        op=op,
        threshold=threshold,
        min_count=min_count,
        previous=previous,
    )
    assert found == expected


def test_explain_shows_one_group_by_per_family() -> None:
    rules = fluo.load_rules(REPO / "data" / "rules" / "aggregates.yaml")
    plan = rules.compile()
    assert plan.window is not None
    text = plan.explain(pl.LazyFrame(schema=plan.window.schema.columns))
    assert "one group_by by keys and window" in text


# --- real data ------------------------------------------------------------------------------


def test_edge_rule_sees_a_real_network_delay(shared_datasets: Path) -> None:
    """Nezha OnlineBoutique 2022-08-22: a network delay injected into currencyservice at
    05:27:06 shows as the frontend -> currencyservice gap, not in its own latency."""
    from fluo.ingest import scan_spans

    ob = shared_datasets / "nezha-microservice-rca" / "onlineboutique"
    files = [ob / "2022-08-22" / "trace" / f"05_{m}_trace.csv.gz" for m in (27, 28, 29)]
    if not all(f.exists() for f in files):
        pytest.skip("the Nezha minute files are not present")
    rules = fluo.load_rules(REPO / "data" / "rules" / "regressions.yaml").select(
        ["call_edge_delay"]
    )
    result = fluo.evaluate(
        rules,
        scan_spans(files, format="nezha"),
        baseline=scan_spans(ob / "fault_free", format="nezha"),
    )
    out = result.signals
    assert out["group"].to_list() == ["parent.service=frontend, service=currencyservice"] * 3
    start = dt.datetime(2022, 8, 22, 5, 27, tzinfo=dt.UTC)
    assert out["window_start"].to_list() == [start + dt.timedelta(minutes=i) for i in range(3)]
    assert all(v > 500 for v in out["value"]) and all(b < 20 for b in out["baseline"])


def test_null_group_keys_form_their_own_group() -> None:
    rows = [S("a", 0, attrs={"route": "/x"}), S("a", 1, attrs={}), S("a", 2, attrs={})]
    out = run('window: 5m\nby: span.attributes["route"]\nwhen: count == 2', *rows)
    assert out["group"].to_list() == ["route=null"]


@pytest.mark.parametrize(
    "spec", ["previous 3", "{previous: 3}", "offset 5m", "5m ago", "{offset: 5m}"]
)
def test_baseline_spellings(spec: str) -> None:
    out = run(
        f"window: 5m\nbaseline: {spec}\nwhen: avg(span.duration) - baseline > 200ms",
        *latency_rows(slow_from=20, minutes=25),
    )
    assert windows(out) == [(None, 20)]


def test_sliding_windows_with_empty_windows() -> None:
    out = run(
        "window: 2m\nevery: 1m\nby: span.service\nmin_count: 0\nwhen: count == 0",
        S("a", 0),
        S("a", 5),
    )
    # minute 0 is in [-1,1) and [0,2); minute 5 in [4,6) and [5,7): [1,3) [2,4) [3,5) are empty
    assert windows(out) == [("a", 1), ("a", 2), ("a", 3)]


def test_baseline_data_that_overlaps_or_is_empty_is_reported() -> None:
    rows = latency_rows(slow_from=30)
    rules = fluo.load_rules(
        "rules:\n  r:\n    window: 10m\n    baseline: data\n"
        "    when: avg(span.duration) - baseline > 200ms\n"
    )
    result = fluo.evaluate(rules, spans(*rows), baseline=spans(*rows))
    assert any("overlaps" in w for w in result.warnings)
    empty = spans(*rows).head(0)
    result = fluo.evaluate(rules, spans(*rows), baseline=empty)
    assert result.signals.height == 0
    assert any("no spans" in w for w in result.warnings)


def test_baseline_data_without_a_column_the_rule_reads() -> None:
    rules = fluo.load_rules(
        "rules:\n  r:\n    window: 10m\n    baseline: data\n"
        '    when: avg(span.attributes["x"]) > baseline\n'
    )
    data = spans(S("a", 0, attrs={"x": 1}))
    with pytest.raises(DataError, match="baseline data does not fit"):
        fluo.evaluate(rules, data, baseline=data.drop("span_attributes"))


def test_baseline_data_in_a_bucketed_run(tmp_path: Path) -> None:
    """The out-of-core engine runs windowed rules over the whole input, with --baseline."""
    from fluo import engine

    current, base = tmp_path / "current.parquet", tmp_path / "base.parquet"
    spans(*latency_rows(slow_from=30)).write_parquet(current)
    spans(*latency_rows(slow_from=999, minutes=20)).write_parquet(base)
    rules = fluo.load_rules(
        "rules:\n  r:\n    window: 10m\n    baseline: data\n"
        "    when: avg(span.duration) - baseline > 200ms\n"
    )
    expected = fluo.evaluate(rules, current, baseline=base).signals
    got = engine.evaluate(
        rules, str(current), engine.Options(buckets=3, scratch=str(tmp_path), baseline=(str(base),))
    )
    assert got is not None
    assert (
        got.signals.select("rule", "window_start").rows()
        == expected.select("rule", "window_start").rows()
    )
    assert expected.height == 1


def test_two_percentiles_of_the_same_values_equal_polars_quantiles() -> None:
    """Two percentiles of the same values, in one group_by, each as Polars computes it."""
    rows = [S("a", 0.01 * i, ms=(i * 37) % 101 + 1) for i in range(100)] + [S("b", 0)]
    out = run(
        "window: 5m\nby: span.service\nexemplars: 0\n"
        "when: p90(span.duration) > 0ms and p99(span.duration) > 0ms\n"
        'message: "{p90(span.duration)} {p99(span.duration)}"',
        *rows,
    )
    durations = pl.Series([((i * 37) % 101 + 1) * 1e6 for i in range(100)])
    p90, p99 = (durations.quantile(q, "linear") / 1e6 for q in (0.9, 0.99))
    messages = dict(out.select("service", "message").iter_rows())
    assert messages["a"] == f"{round(p90, 3)}ms {round(p99, 3)}ms"
    assert messages["b"] == "100.0ms 100.0ms"  # one span: every percentile is it
