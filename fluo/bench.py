"""Rule benchmarking: what each rule of a set costs, and what the whole set costs.

`bench(rules, spans)` runs the rule set the way `fluo run` does (`fluo.run.evaluate`:
compile, one fused scan, signals in memory) and measures:

* per rule: its time alone; its marginal cost inside the fused plan (the whole set minus
  the set without it, in pairs of runs made back to back, so that a drifting load on the
  machine shifts both); its selectivity (the share of spans, or of traces for trace-level
  rules, that have a signal of it); the columns it reads; whether its condition is
  pushed into the scan; and hints for known slow shapes;
* for the whole set: the bare scan of the columns the rules read (the floor: those
  columns decoded batch by batch and dropped), the total time, spans per second, the
  ratio to the floor, and the peak memory.

Every time is the median of `repeat` runs, after one warm-up run of the whole set (which
also gives the signal counts and the peak memory). Wall seconds are what a user waits;
CPU seconds (user + system of every thread of this process) are steadier on a shared
machine and are reported too.

Peak memory is the resident-set high-water mark of this process during the warm-up run:
on Linux the mark is reset just before it (`/proc/self/clear_refs`) and read from
`/proc/self/status` (VmHWM) after it, so it is the run's own peak, including what the
process held before (imports, the caller's data; reported as `base_rss_mb`). Elsewhere
it falls back to `resource.getrusage` (the high-water mark since the process started,
an upper bound).

A rule that fails at run time is reported with its error and left out of every other
measurement; the set is measured without it. `compare` tells a report from a previous one
rule by rule and flags the rules that became slower than a threshold.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from fluo import ast
from fluo.check import CheckedRule
from fluo.compile import Context, cheap_part, glob_plan, lower
from fluo.compile_trace import anchor_condition
from fluo.errors import DataError, Diagnostic, FluoError, RuleError
from fluo.plan import RunPlan
from fluo.printer import unparse
from fluo.rules import RuleSet, load_rules
from fluo.run import Spans, _input, compile_for, evaluate

#: Version of the JSON document `BenchReport.to_json` writes.
FORMAT = 1
#: `compare` flags a rule whose time grew by more than this factor ...
REGRESSION_FACTOR = 1.5
#: ... and by more than this many seconds (below it, timer noise dominates).
REGRESSION_MIN_SECONDS = 0.02
#: A windowed aggregate with more groups than this gets a hint.
MANY_GROUPS = 10_000

#: Called as (step, steps, what) before each measured run.
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class RuleBench:
    """What one rule costs. Times are medians in seconds; None when not measured."""

    name: str
    level: str  # span, anchored, trace, sequence, pattern (fluo.check.rule_level)
    alone_s: float | None = None
    alone_cpu_s: float | None = None
    marginal_s: float | None = None  # median of (whole set - the set without it), paired runs
    marginal_cpu_s: float | None = None
    signals: int = 0  # as `fluo run` counts them
    matched: int = 0  # distinct spans (or traces, see `unit`) with a signal
    unit: str = "spans"  # spans, traces, or signals (windowed and correlation rules)
    selectivity: float | None = 0.0  # matched / spans (or traces); None for `signals`
    columns: tuple[str, ...] = ()
    pushed: str | None = None  # the part of the condition the scan tests first, as DSL
    hints: tuple[str, ...] = ()
    error: str | None = None  # the run-time error that kept it out of the measurements


@dataclass(frozen=True)
class BenchReport:
    """The result of `bench`: one `RuleBench` per rule and figures for the whole set."""

    source: str
    spans: int
    traces: int
    repeat: int
    rules: tuple[RuleBench, ...]
    total_s: float | None = None
    total_cpu_s: float | None = None
    floor_s: float | None = None  # bare scan of `floor_columns`
    floor_cpu_s: float | None = None
    floor_columns: tuple[str, ...] = ()
    peak_rss_mb: float | None = None
    base_rss_mb: float | None = None
    memory_method: str = ""
    notes: tuple[str, ...] = ()
    machine: dict[str, Any] = field(default_factory=dict)

    @property
    def spans_per_s(self) -> float | None:
        return self.spans / self.total_s if self.total_s else None

    @property
    def floor_ratio(self) -> float | None:
        return self.total_s / self.floor_s if self.total_s and self.floor_s else None

    def rule(self, name: str) -> RuleBench:
        for r in self.rules:
            if r.name == name:
                return r
        raise KeyError(name)

    @property
    def failed(self) -> list[RuleBench]:
        return [r for r in self.rules if r.error is not None]

    def frame(self) -> pl.DataFrame:
        """One row per rule (the columns of `RuleBench`)."""
        rows = [
            asdict(r) | {"columns": list(r.columns), "hints": list(r.hints)} for r in self.rules
        ]
        schema: dict[str, pl.DataType] = {
            "name": pl.String(),
            "level": pl.String(),
            "alone_s": pl.Float64(),
            "alone_cpu_s": pl.Float64(),
            "marginal_s": pl.Float64(),
            "marginal_cpu_s": pl.Float64(),
            "signals": pl.Int64(),
            "matched": pl.Int64(),
            "unit": pl.String(),
            "selectivity": pl.Float64(),
            "columns": pl.List(pl.String()),
            "pushed": pl.String(),
            "hints": pl.List(pl.String()),
            "error": pl.String(),
        }
        return pl.DataFrame(rows, schema=schema, orient="row")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready document (what `fluo bench --json` writes; `compare` reads it)."""
        return {
            "fluo_bench": FORMAT,
            "source": self.source,
            "spans": self.spans,
            "traces": self.traces,
            "repeat": self.repeat,
            "total_s": self.total_s,
            "total_cpu_s": self.total_cpu_s,
            "floor_s": self.floor_s,
            "floor_cpu_s": self.floor_cpu_s,
            "floor_columns": list(self.floor_columns),
            "floor_ratio": self.floor_ratio,
            "spans_per_s": self.spans_per_s,
            "peak_rss_mb": self.peak_rss_mb,
            "base_rss_mb": self.base_rss_mb,
            "memory_method": self.memory_method,
            "notes": list(self.notes),
            "machine": self.machine,
            "rules": [
                asdict(r) | {"columns": list(r.columns), "hints": list(r.hints)} for r in self.rules
            ],
        }


# --- measuring ------------------------------------------------------------------------


def bench(
    rules: RuleSet | str | Path | Sequence[str | Path],
    spans: Spans,
    *,
    repeat: int = 3,
    marginal: bool = True,
    progress: Progress | None = None,
) -> BenchReport:
    """Measure every enabled rule of `rules` over `spans` (see the module docstring).

    Raises RuleError for an empty rule set or rules that do not check or compile
    against the table, DataError for unreadable spans: nothing is measured then.
    """
    if repeat < 1:
        raise DataError("--repeat must be at least 1")
    rule_set = rules if isinstance(rules, RuleSet) else load_rules(rules)
    if not rule_set.enabled:
        raise RuleError([Diagnostic("no enabled rules to benchmark")])
    label, frame = _input(spans)
    plan = compile_for(rule_set, frame, label)  # check and compile errors surface here
    checked = {c.name: c for c in plan.rules}
    names = [r.name for r in rule_set.enabled]
    height, traces = _table_size(frame, label)
    step = _Steps(progress, _step_count(len(names), repeat, marginal))

    # Warm-up: the whole set once, measuring memory; on failure, find the failing rules.
    errors: dict[str, str] = {}
    signals: pl.DataFrame | None = None
    memory = _PeakMemory()
    try:
        step("warm-up and peak memory: all rules")
        with memory:
            signals = evaluate(rule_set, frame).signals
    except Exception:  # a rule failing at run time: found below, one rule at a time
        signals = None

    alone: dict[str, _Median] = {}
    for name in names:
        one = rule_set.select([name])
        runs: list[tuple[float, float]] = []
        try:
            for _ in range(repeat):
                runs.append(_timed_step(step, f"alone: {name}", one, frame))
        except Exception as exc:  # reported, and the rule is left out of the rest
            errors[name] = _describe(exc)
            step(f"alone: {name} failed", repeat - len(runs) - 1)
            continue
        alone[name] = _Median.of(runs)
    ok = [n for n in names if n not in errors]
    kept = rule_set.select(ok)
    if signals is None and ok:
        step("warm-up and peak memory: the rules that ran")
        with memory:
            signals = evaluate(kept, frame).signals

    totals = [_timed_step(step, "all rules", kept, frame) for _ in range(repeat)] if ok else []
    # Marginal costs from pairs run back to back (the whole set, then the set without the
    # rule): a machine whose load drifts during the benchmark shifts both runs of a pair.
    without: dict[str, _Median] = {}
    if marginal and ok:
        for name in ok:
            others = rule_set.select([n for n in ok if n != name])
            diffs: list[tuple[float, float]] = []
            for _ in range(repeat):
                whole = _timed_step(step, f"all rules, paired with: without {name}", kept, frame)
                rest = (0.0, 0.0)
                if others.enabled:
                    rest = _timed_step(step, f"without: {name}", others, frame)
                else:
                    step(f"without: {name}")
                totals.append(whole)
                diffs.append((whole[0] - rest[0], whole[1] - rest[1]))
            without[name] = _Median.of(diffs)
    total = _Median.of(totals) if totals else None
    columns = sorted({c for n in ok for c in checked[n].columns}) or ["trace_id"]
    floor = _Median.of(
        [_timed_step(step, "bare scan", None, frame, columns) for _ in range(repeat)]
    )

    counts = _counts(signals, plan)
    pushed = _pushed(plan)
    notes = _set_notes(plan, height, counts, errors)
    rows: list[RuleBench] = []
    for name in names:
        rule = checked[name]
        unit = _UNITS.get(rule.level, "traces")
        n_signals, n_matched = counts.get(name, (0, 0))
        denominator = {"spans": height, "traces": traces}.get(unit)
        a, w = alone.get(name), without.get(name)  # w: the paired differences
        rows.append(
            RuleBench(
                name=name,
                level=rule.level,
                alone_s=a.wall if a else None,
                alone_cpu_s=a.cpu if a else None,
                marginal_s=w.wall if w else None,
                marginal_cpu_s=w.cpu if w else None,
                signals=n_signals if name not in errors else 0,
                matched=n_matched if name not in errors else 0,
                unit=unit,
                selectivity=_share(n_matched, denominator) if name not in errors else None,
                columns=_rule_columns(rule, plan),
                pushed=pushed.get(name),
                hints=tuple(hints(rule, plan, frame)),
                error=errors.get(name),
            )
        )
    return BenchReport(
        source=label,
        spans=height,
        traces=traces,
        repeat=repeat,
        rules=tuple(rows),
        total_s=total.wall if total else None,
        total_cpu_s=total.cpu if total else None,
        floor_s=floor.wall,
        floor_cpu_s=floor.cpu,
        floor_columns=tuple(columns),
        peak_rss_mb=memory.peak_mb,
        base_rss_mb=memory.base_mb,
        memory_method=memory.method,
        notes=notes,
        machine=machine(),
    )


@dataclass(frozen=True)
class _Median:
    wall: float
    cpu: float

    @staticmethod
    def of(runs: Sequence[tuple[float, float]]) -> _Median:
        return _Median(statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))


def _timed(func: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process: every thread) of one call."""
    c0, t0 = _cpu_seconds(), time.perf_counter()
    func()
    wall = time.perf_counter() - t0
    return wall, _cpu_seconds() - c0


def _cpu_seconds() -> float:
    """User + system CPU time of this process (getrusage: microseconds, where `os.times`
    counts clock ticks of 10 ms)."""
    try:
        import resource
    except ImportError:  # not on Windows
        times = os.times()
        return times.user + times.system
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed_step(
    step: _Steps,
    what: str,
    rule_set: RuleSet | None,
    frame: pl.LazyFrame,
    columns: Sequence[str] = (),
) -> tuple[float, float]:
    step(what)
    if rule_set is not None:
        return _timed(lambda: evaluate(rule_set, frame))
    return _timed(lambda: _drain(frame.select(columns)))


def _drain(frame: pl.LazyFrame) -> int:
    """Decode `frame` batch by batch and drop the batches: a scan that holds nothing."""
    rows = 0
    for batch in frame.collect_batches(engine="streaming", maintain_order=False):
        rows += batch.height
    return rows


class _Steps:
    """Counts the measured runs for the progress callback."""

    def __init__(self, progress: Progress | None, total: int):
        self.progress, self.total, self.done = progress, total, 0

    def __call__(self, what: str, advance: int = 1) -> None:
        if self.progress is not None:
            self.progress(self.done, self.total, what)
        self.done += advance


def _step_count(rules: int, repeat: int, marginal: bool) -> int:
    return 1 + rules * repeat + repeat + (2 * rules * repeat if marginal else 0) + repeat


class _PeakMemory:
    """The resident-set high-water mark of this process during a `with` block (see the
    module docstring); the last block measured wins."""

    def __init__(self) -> None:
        self.peak_mb: float | None = None
        self.base_mb: float | None = None
        self.method = "not measured"

    def __enter__(self) -> _PeakMemory:
        self.reset = _reset_high_water()
        self.base_mb = _status_mb("VmRSS") if self.reset else _maxrss_mb()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.reset:
            self.peak_mb = _status_mb("VmHWM")
            self.method = "VmHWM of this process, reset before the run (/proc/self/clear_refs)"
        else:
            self.peak_mb = _maxrss_mb()
            self.method = "ru_maxrss: this process's high-water mark since it started"


def _reset_high_water() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _status_mb("VmHWM") is not None


def _status_mb(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def _maxrss_mb() -> float | None:
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


#: What a rule's selectivity counts, by level; other levels (trace, sequence, pattern): traces.
_UNITS = {"span": "spans", "anchored": "spans", "window": "signals", "correlate": "signals"}


def _share(matched: int, total: int | None) -> float | None:
    if total is None:
        return None
    return matched / total if total else 0.0


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _table_size(frame: pl.LazyFrame, label: str) -> tuple[int, int]:
    """(spans, traces) of the table."""
    schema = frame.collect_schema()
    key = "trace_key" if "trace_key" in schema else "trace_id"
    try:
        sizes = frame.select(pl.len(), pl.col(key).n_unique()).collect(engine="streaming")
    except pl.exceptions.PolarsError as exc:
        raise DataError(_describe(exc), path=label) from None
    return int(sizes.item(0, 0)), int(sizes.item(0, 1))


def _counts(signals: pl.DataFrame | None, plan: RunPlan) -> dict[str, tuple[int, int]]:
    """Per rule: (signals, distinct spans or traces they name)."""
    if signals is None or signals.height == 0:
        return {}
    out: dict[str, tuple[int, int]] = {}
    for rule in plan.rules:
        rows = signals.filter(pl.col("rule") == rule.name)
        unit = _UNITS.get(rule.level, "traces")
        if unit == "signals" or not rows.height:
            out[rule.name] = (rows.height, rows.height)
            continue
        by = "span_id" if unit == "spans" else "trace_id"
        out[rule.name] = (rows.height, rows.get_column(by).n_unique())
    return out


def _rule_columns(rule: CheckedRule, plan: RunPlan) -> tuple[str, ...]:
    columns = set(rule.columns)
    if rule.level != "span" and plan.trace is not None:
        columns.add(plan.trace.key)
    return tuple(sorted(columns))


def _pushed(plan: RunPlan) -> dict[str, str | None]:
    """Per rule, the condition the scan tests before the rule itself, as DSL text."""
    out: dict[str, str | None] = {}
    for name, cheap in plan.span.pushed().items():
        out[name] = _text(cheap) if cheap is not None else None
    trace = plan.trace
    if trace is None:
        return out
    anchors = [anchor_condition(r.predicate) for r in trace.anchored]
    anchors_pushed = bool(anchors) and all(a is not None for a in anchors)
    for rule in trace.rules:
        part: ast.Expr | None = None
        if rule.level == "trace" and trace.prefilter is not None:
            part = trace.supports.get(rule.name)
        elif rule.level == "anchored" and anchors_pushed:
            part = anchor_condition(rule.predicate)
        out[rule.name] = _text(part) if part is not None else None
    return out


def _text(node: ast.Expr) -> str:
    """A checked condition as text: DSL, with table columns named as they are."""
    text = unparse(node)
    return re.sub(r"<column ([^>]+)>", r"\1", re.sub(r"<(\w+\[\"[^>]*\"\])>", r"\1", text))


def _set_notes(
    plan: RunPlan, height: int, counts: Mapping[str, tuple[int, int]], errors: Mapping[str, str]
) -> tuple[str, ...]:
    notes: list[str] = []
    if height == 0:
        notes.append("the span table is empty")
    elif not errors and not any(n for n, _ in counts.values()):
        notes.append("no rule matched any span: the times measure scans that find nothing")
    span_rules = plan.span.rules
    if span_rules and plan.span.prefilter is None:
        blocking = [r.name for r in span_rules if cheap_part(r.predicate) is None]
        notes.append(
            "no span-rule condition is pushed into the scan: "
            + ", ".join(blocking)
            + " ha"
            + ("s" if len(blocking) == 1 else "ve")
            + " no cheap part (a column compared with a literal)"
        )
    if errors:
        notes.append(
            f"{len(errors)} rule(s) failed at run time and were left out: " + ", ".join(errors)
        )
    return tuple(notes)


# --- hints ----------------------------------------------------------------------------

_REGEX_META = re.compile(r"[.^$*+?()\[\]{}|\\]")


def literal_regex(pattern: str) -> tuple[str, str] | None:
    """The plain string operator a regex means, if it is a literal with optional anchors:
    ("contains" | "startswith" | "endswith" | "==", literal), else None."""
    body = pattern
    start, end = body.startswith("^"), body.endswith("$") and not body.endswith("\\$")
    body = body[1 if start else 0 : len(body) - 1 if end else len(body)]
    # Escaped punctuation is still literal text: `\.` is a dot.
    unescaped = re.sub(r"\\([^A-Za-z0-9])", "", body)
    if not body or _REGEX_META.search(unescaped):
        return None
    literal = re.sub(r"\\([^A-Za-z0-9])", r"\1", body)
    op = {(False, False): "contains", (True, False): "startswith", (False, True): "endswith"}
    return (op.get((start, end), "=="), literal)


def hints(rule: CheckedRule, plan: RunPlan, frame: pl.LazyFrame | None = None) -> list[str]:
    """Known reasons for a rule to be slow, read from its checked condition."""
    out: list[str] = []
    for node in ast.walk(rule.predicate):
        if isinstance(node, ast.Match):
            out += _match_hints(node)
        elif isinstance(node, ast.Aggregate) and node.scope in ("children", "descendants"):
            out.append(
                f"{node.scope}.{node.func}(...) reads every span of the traces that have a "
                "span its condition selects, resolves their parent links (one join) and walks "
                "up from those spans: keep its condition selective"
            )
        elif isinstance(node, ast.Aggregate) and node.scope == "ancestors":
            out.append(
                f"ancestors.{node.func}(...) reads every span of the traces that have a span "
                "its condition selects and follows children down from those spans, one join "
                "per level: keep its condition selective"
            )
        elif isinstance(node, ast.Call) and node.func in ("descendant_of", "ancestor_of"):
            out.append(
                f"{node.func}(...) builds every candidate's ancestor list from the parent "
                "links of all spans (one join, then a gather per level)"
            )
        elif (
            isinstance(node, ast.Compare)
            and isinstance(node.left, ast.InUnit)
            and isinstance(node.left.operand, ast.Column)
            and isinstance(node.right, ast.Int | ast.Float)
        ):
            out.append(_unit_hint(node, node.left, node.right))
    if rule.level == "span" and plan.span.prefilter is None and cheap_part(rule.predicate) is None:
        out.append(
            "no part of it compares a plain column with a literal, so the span rules' scan "
            "cannot be prefiltered (for any rule of the set)"
        )
    if rule.window is not None and frame is not None:
        out += _group_hints(rule.window.by, plan, frame)
    return list(dict.fromkeys(out))


_UNITS_NS = {1: "ns", 1_000: "us", 1_000_000: "ms", 1_000_000_000: "s"}


def _unit_hint(node: ast.Compare, scaled: ast.InUnit, number: ast.Int | ast.Float) -> str:
    """`span.durationMs > 300` converts every duration to a float first."""
    unit = _UNITS_NS.get(scaled.unit_nanos)
    better = "a duration literal"
    if unit and isinstance(scaled.operand, ast.Column) and scaled.operand.name == "duration_ns":
        better = f"`span.duration {node.op} {number.value:g}{unit}`"
    return (
        "a duration in units compared with a number converts every value to a float first: "
        f"write {better}, which the scan can test on its own"
    )


def _match_hints(node: ast.Match) -> list[str]:
    out: list[str] = []
    prefix = "i" if node.ignore_case else ""
    if node.op == "matches" and isinstance(node.pattern, ast.Str):
        plain = literal_regex(node.pattern.value)
        if plain is not None:
            op, text = plain
            better = f"{prefix}{op}" if op != "==" else ("== (or iglob)" if prefix else "==")
            out.append(
                f'{prefix}matches "{node.pattern.value}" is a literal: `{better} '
                f'"{text}"` avoids the regex engine'
            )
    if isinstance(node.value, ast.MapGet) and node.op in ("matches", "glob"):
        slow = node.op == "matches" or glob_plan(_pattern_text(node))[0] == "regex"
        what = "regex" if slow else "glob"
        out.append(
            f'{what} on the map attribute {node.value.column}["{node.value.key}"]: every span '
            f"looks the key up in the map; promote it to a typed "
            f'"attr.{node.value.key}" column at ingest (~4x faster to filter on)'
        )
    return out


def _pattern_text(node: ast.Match) -> str:
    return node.pattern.value if isinstance(node.pattern, ast.Str) else "*?"


def _group_hints(by: Sequence[ast.Expr], plan: RunPlan, frame: pl.LazyFrame) -> list[str]:
    """A windowed aggregate grouped by keys with many distinct values."""
    if not by:
        return []
    schema = plan.span.schema
    try:  # keys that read trace terms have no plain expression: no hint for them
        keys = [lower(e, Context(schema)).alias(f"k{i}") for i, e in enumerate(by)]
        groups = frame.select(pl.struct(keys).n_unique()).collect(engine="streaming").item()
    except (FluoError, pl.exceptions.PolarsError, TypeError, ValueError):
        return []
    if groups <= MANY_GROUPS:
        return []
    shown = ", ".join(_text(e) for e in by)
    return [
        f"grouped by {shown}: {groups:,} distinct groups; each keeps its own windows "
        "(state grows with the groups): group by a coarser key, or filter first"
    ]


# --- comparing with a previous report -------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One rule (or the whole set, name "(all rules)") in this report against a previous one."""

    name: str
    before_s: float | None
    after_s: float | None
    before_marginal_s: float | None = None
    after_marginal_s: float | None = None
    status: str = "same"  # same, slower, faster, regression, new, removed, failed

    @property
    def ratio(self) -> float | None:
        if self.before_s and self.after_s is not None:
            return self.after_s / self.before_s
        return None

    @property
    def regression(self) -> bool:
        return self.status == "regression"


ALL_RULES = "(all rules)"


def load_report(path: str | Path) -> dict[str, Any]:
    """A report written by `fluo bench --json` (DataError if it is not one)."""
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DataError(
            f"cannot read a previous report: {_describe(exc)}", path=str(path)
        ) from None
    if not isinstance(document, dict) or "fluo_bench" not in document:
        raise DataError("not a fluo bench report (written by --json)", path=str(path))
    return document


def compare(
    current: BenchReport | Mapping[str, Any],
    previous: BenchReport | Mapping[str, Any],
    *,
    factor: float = REGRESSION_FACTOR,
    min_seconds: float = REGRESSION_MIN_SECONDS,
) -> list[Change]:
    """Rule by rule (time alone, and marginal cost), then the whole set: a rule whose time
    alone or marginal cost grew more than `factor` times, and by more than `min_seconds`,
    is a regression."""
    now = current.to_json() if isinstance(current, BenchReport) else dict(current)
    then = previous.to_json() if isinstance(previous, BenchReport) else dict(previous)
    before = {r["name"]: r for r in then.get("rules", [])}
    after = {r["name"]: r for r in now.get("rules", [])}
    changes: list[Change] = []
    for name in [*after, *(n for n in before if n not in after)]:
        a, b = after.get(name), before.get(name)
        if a is None:
            changes.append(Change(name, _num(b, "alone_s"), None, status="removed"))
            continue
        if b is None:
            changes.append(Change(name, None, _num(a, "alone_s"), status="new"))
            continue
        pairs = [
            (_num(b, "alone_s"), _num(a, "alone_s")),
            (_num(b, "marginal_s"), _num(a, "marginal_s")),
        ]
        status = "failed" if a.get("error") else _status(pairs, factor, min_seconds)
        changes.append(
            Change(
                name,
                _num(b, "alone_s"),
                _num(a, "alone_s"),
                _num(b, "marginal_s"),
                _num(a, "marginal_s"),
                status,
            )
        )
    total = (_num(then, "total_s"), _num(now, "total_s"))
    changes.append(Change(ALL_RULES, *total, status=_status([total], factor, min_seconds)))
    return changes


def _num(document: Mapping[str, Any] | None, key: str) -> float | None:
    value = document.get(key) if document else None
    return float(value) if isinstance(value, int | float) else None


def _status(
    pairs: Sequence[tuple[float | None, float | None]], factor: float, min_seconds: float
) -> str:
    worst = "same"
    for before, after in pairs:
        if before is None or after is None:
            continue
        grew = after - before
        if after > before * factor and grew > min_seconds:
            return "regression"
        if before > after * factor and -grew > min_seconds:
            worst = "faster" if worst == "same" else worst
        elif after > before * 1.1 and grew > min_seconds:
            worst = "slower"
    return worst


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "cpus": os.cpu_count(),
        "polars_threads": pl.thread_pool_size(),
        "polars": pl.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "load_average_1m": load,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def write_json(report: BenchReport, path: str | Path) -> None:
    """Write the report atomically (a temporary file, then a rename)."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps(report.to_json(), indent=1) + "\n")
    tmp.replace(target)
