"""Stage 5: run a rule set over span tables — one scan, signals out.

The only stage that reads data and collects. All inputs of a run form one span
table, read by one scan (plus a grouped scan when there are trace-level rules).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from fluo import ast, structure
from fluo.compile import SIGNAL_SCHEMA, sort_signals
from fluo.compile_pattern import PatternPlan
from fluo.compile_trace import TracePlan, sequence_matches
from fluo.compile_window import WINDOW, WindowPlan
from fluo.correlate import correlation_signals
from fluo.errors import DataError, FluoError, RuleError
from fluo.plan import RunPlan
from fluo.schema import REQUIRED_COLUMNS, SpanSchema

Spans = str | Path | Sequence[str | Path] | pl.LazyFrame | pl.DataFrame
Progress = Callable[[int, int, str], None]

if TYPE_CHECKING:
    from fluo.rules import RuleSet


@dataclass(frozen=True)
class RunResult:
    """The signals of a run and what is worth reporting about it."""

    signals: pl.DataFrame
    counts: dict[str, int] = field(default_factory=dict)  # signals per rule
    failing: tuple[str, ...] = ()  # rules marked `fail` that fired
    seconds: float = 0.0
    warnings: tuple[str, ...] = ()  # data problems the run worked around (see docs/traces.md)

    @property
    def fired(self) -> list[str]:
        return [name for name, n in self.counts.items() if n]


def evaluate(
    rule_set: RuleSet,
    spans: Spans,
    *,
    progress: Progress | None = None,
    baseline: Spans | None = None,
) -> RunResult:
    """Evaluate every enabled rule of `rule_set` over `spans`: all signals, in memory.

    `baseline` is the data set windowed rules with `baseline: data` compare with.
    """
    kept: list[pl.DataFrame] = []
    result = stream(
        rule_set, spans, kept.append, chunk_rows=None, progress=progress, baseline=baseline
    )
    signals = pl.concat(kept) if kept else pl.DataFrame(schema=SIGNAL_SCHEMA)
    return RunResult(signals, result.counts, result.failing, result.seconds, result.warnings)


#: Rows per chunk when span-level signals are streamed to a file.
CHUNK_ROWS = 1_000_000


def stream(
    rule_set: RuleSet,
    spans: Spans,
    sink: Callable[[pl.DataFrame], None],
    *,
    chunk_rows: int | None = CHUNK_ROWS,
    progress: Progress | None = None,
    baseline: Spans | None = None,
) -> RunResult:
    """Evaluate `rule_set` over `spans`, handing the signals to `sink` chunk by chunk.

    With span-level rules only, the table is read `chunk_rows` rows at a time, so
    memory follows the chunk, not the input; each chunk's signals are sorted, and
    chunks come in table order (time order for canonical, time-sorted files).
    Trace-level and windowed rules need whole traces and windows, so then the table is
    evaluated at once. Correlation rules run last, over the signals of the rules they
    name. The result's `signals` holds the first signal of each rule (a sample).
    """
    started = time.perf_counter()
    label, frame = _input(spans)
    plan = compile_for(rule_set, frame, label)
    base = _baseline_input(rule_set, plan, baseline)
    warnings: list[str] = []
    counts = {r.name: 0 for r in rule_set.enabled}
    samples: list[pl.DataFrame] = []
    correlated = {
        name for r in plan.correlations if r.rule.correlate for name in r.rule.correlate.rules
    }
    for_correlation: list[pl.DataFrame] = []

    def take(signals: pl.DataFrame) -> None:
        for name, n in signals.group_by("rule").len().iter_rows():
            counts[name] += n
        samples.append(signals.group_by("rule", maintain_order=True).head(1))
        if correlated:
            for_correlation.append(signals.filter(pl.col("rule").is_in(list(correlated))))
        sink(signals)

    try:
        if plan.trace is not None or plan.window is not None or chunk_rows is None:
            if progress:
                progress(0, 1, label)
            take(execute(plan, frame, warnings.append, base))
            if progress:
                progress(1, 1, label)
        else:
            total = frame.select(pl.len()).collect().item()
            for offset in range(0, max(total, 1), chunk_rows):
                if progress:
                    progress(offset, total, label)
                take(execute(plan, frame.slice(offset, chunk_rows), warnings.append))
            if progress:
                progress(total, total, label)
        if plan.correlations:
            seen = (
                pl.concat(for_correlation)
                if for_correlation
                else pl.DataFrame(schema=SIGNAL_SCHEMA)
            )
            for rule in plan.correlations:
                take(correlation_signals(rule, seen))
    except FluoError:
        raise
    except pl.exceptions.PolarsError as exc:
        raise DataError(_first_line(exc), path=label) from None
    except OSError as exc:
        raise DataError(str(exc), path=label) from None
    failing = tuple(r.name for r in rule_set.enabled if r.fails_run and counts.get(r.name))
    sample = pl.concat(samples).unique("rule", keep="first", maintain_order=True)
    seconds = time.perf_counter() - started
    return RunResult(sample, counts, failing, seconds, tuple(dict.fromkeys(warnings)))


def _input(spans: Spans) -> tuple[str, pl.LazyFrame]:
    """The span table of a run. Several paths are ONE table (one scan), so that a trace
    spread over several files is whole for trace-level rules."""
    if isinstance(spans, pl.DataFrame):
        return "<DataFrame>", spans.lazy()
    if isinstance(spans, pl.LazyFrame):
        return "<LazyFrame>", spans
    from fluo.ingest import scan_spans

    if isinstance(spans, str | Path):
        return str(spans), scan_spans(spans)
    paths = list(spans)
    label = str(paths[0]) if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} more)"
    return label, scan_spans(paths)


def _baseline_input(
    rule_set: RuleSet, plan: RunPlan, baseline: Spans | None
) -> pl.LazyFrame | None:
    """The baseline data set, checked against the windowed rules that read it."""
    wanting = plan.window.needs_baseline_data if plan.window is not None else ()
    if baseline is None:
        if wanting:
            raise DataError(
                f"rule '{wanting[0]}' compares with a baseline data set: "
                "give one with --baseline PATH (e.g. last week's export)"
            )
        return None
    label, frame = _input(baseline)
    try:
        compile_for(rule_set.select(wanting), frame, label)
    except RuleError as exc:
        reason = exc.diagnostics[0].message if exc.diagnostics else "it does not fit the rules"
        raise DataError(f"the baseline data does not fit the rules: {reason}", path=label) from None
    return frame


def compile_for(rule_set: RuleSet, frame: pl.LazyFrame, label: str) -> RunPlan:
    """The fused plan of `rule_set` for the table `frame` (checked against its schema)."""
    try:
        schema = SpanSchema.of(frame)
    except pl.exceptions.PolarsError as exc:
        raise DataError(_first_line(exc), path=label) from None
    missing = [c for c in REQUIRED_COLUMNS if c not in schema.columns]
    if missing:
        raise DataError(
            f"the span table has no column {missing[0]!r} "
            f"(it has: {', '.join(schema.columns) or 'no columns'})",
            path=label,
        )
    return rule_set.compile(schema)


def execute(
    plan: RunPlan,
    frame: pl.LazyFrame,
    warn: structure.Warn = structure.ignore,
    baseline: pl.LazyFrame | None = None,
) -> pl.DataFrame:
    """Evaluate a compiled plan over one span table: the signals, sorted.

    Every lazy plan of the run (the span-rule filter, the per-trace group_by, the
    anchors of anchored rules, parents, correlated aggregates, sequences) is
    collected together with `collect_all`, so Polars can share the scan of the
    input between them.
    """
    jobs: dict[str, pl.LazyFrame] = {}
    if plan.span.rules:
        jobs["span"] = plan.span.hits(frame)
    if plan.trace is not None:
        jobs |= _trace_jobs(plan.trace, frame)
    if plan.window is not None:
        for i, table in enumerate(plan.window.tables(frame)):
            jobs[f"window{i}"] = table
        if baseline is not None and plan.window.needs_baseline_data:
            for i, table in enumerate(plan.window.tables(baseline)):
                jobs[f"window_baseline{i}"] = table
    done = dict(zip(jobs, pl.collect_all(list(jobs.values()), engine="streaming"), strict=True))
    frames: list[pl.DataFrame] = []
    if "span" in done:
        frames.append(plan.span.signals(done["span"]))
    if plan.trace is not None:
        frames += _trace_signals(plan.trace, done, frame, warn)
    if plan.window is not None:
        frames += _window_signals(plan.window, done, frame, warn)
    frames = [f for f in frames if f.height]
    if not frames:
        return pl.DataFrame(schema=SIGNAL_SCHEMA)
    signals = pl.concat([f.select(list(SIGNAL_SCHEMA)) for f in frames], how="vertical_relaxed")
    return sort_signals(signals)


def _window_signals(
    window: WindowPlan,
    done: dict[str, pl.DataFrame],
    frame: pl.LazyFrame,
    warn: structure.Warn = structure.ignore,
) -> list[pl.DataFrame]:
    """The signals of the windowed rules from their collected tables: judge each window,
    then rank the exemplars of the windows that fired (one more, targeted pass)."""
    for i in range(len(window.families)):
        if f"window_baseline{i}" in done:
            _check_baseline_range(done[f"window{i}"], done[f"window_baseline{i}"], warn)
    fired = []
    for i in range(len(window.families)):
        judged = window.judged(i, done[f"window{i}"], done.get(f"window_baseline{i}"))
        fired.append(window.fired(i, judged))
    wanted = [i for i, rows in enumerate(fired) if rows.height]
    ranked = pl.collect_all([window.candidates(frame, i, fired[i]) for i in wanted])
    on = {i: [*window.families[i].keys, WINDOW] for i in wanted}
    for i, candidates in zip(wanted, ranked, strict=True):
        fired[i] = fired[i].join(candidates, on=on[i], how="left", nulls_equal=True)
    ids = window.exemplar_rows(frame, fired).collect(engine="streaming")
    frames: list[pl.DataFrame] = []
    for i, rows in enumerate(fired):
        if rows.height:
            frames += window.signals(i, rows, ids)
    return frames


def _check_baseline_range(
    table: pl.DataFrame, baseline: pl.DataFrame, warn: structure.Warn
) -> None:
    """Warn when a baseline data set cannot serve as one: empty, or overlapping the spans."""
    if baseline.height == 0:
        warn("the baseline data has no spans the windowed rules count: their baseline is null")
        return
    if table.height == 0:
        return
    first, last = _span_of(table)
    base_first, base_last = _span_of(baseline)
    if base_first <= last and first <= base_last:
        warn(
            f"the baseline data ({base_first} .. {base_last}) overlaps the spans' time range "
            f"({first} .. {last}): a baseline is usually an earlier, separate period"
        )


def _span_of(table: pl.DataFrame) -> tuple[str, str]:
    """First and last window start of an aggregated table, as ISO text (comparable)."""
    starts = table.select(pl.col(WINDOW).min().alias("a"), pl.col(WINDOW).max().alias("b"))
    first, last = starts.select(pl.all().dt.strftime("%Y-%m-%dT%H:%M:%SZ")).row(0)
    return str(first), str(last)


def _trace_jobs(trace: TracePlan, frame: pl.LazyFrame) -> dict[str, pl.LazyFrame]:
    """The lazy plans the trace-level rules need, by name (collected with the span plan)."""
    jobs: dict[str, pl.LazyFrame] = {}
    if trace.whole_trace or trace.per_trace:
        jobs["table"] = trace.trace_table(frame)
    anchor_filter = trace.anchor_filter()
    if anchor_filter is not None and not trace.anchors_in_structure:
        jobs["anchors"] = frame.filter(anchor_filter).select(trace.anchor_columns())
    if (parents := trace.parent_table(frame)) is not None:
        jobs["parents"] = parents
    for i, agg in enumerate(trace.correlated):
        jobs[f"correlated{i}"] = trace.correlated_table(frame, agg)
    if trace.structural:
        wanted = trace.structure_traces(frame)  # a first, two-column pass
        keys = None if wanted is None else wanted.collect(engine="streaming").to_series()
        jobs["structure"] = trace.structure_frame(frame, keys)
    for i, seq in enumerate(trace.sequences):
        jobs[f"sequence{i}"] = trace.sequence_table(frame, seq)
    for i, rule in enumerate(trace.sequence_rules):
        assert isinstance(rule.predicate, ast.Sequence)
        jobs[f"matches{i}"] = sequence_matches(frame, rule.predicate, trace.schema, trace.key)
    patterns = [PatternPlan(rule, trace) for rule in trace.pattern_rules]
    for i, pattern in enumerate(patterns):
        for name, condition in pattern.pattern.bindings:
            jobs[f"pattern{i}.{name}"] = pattern.candidates(frame, name, condition)
    if any(p.descendants() for p in patterns):
        jobs["pattern_links"] = frame.select(trace.key, "span_id", "parent_span_id")
    return jobs


def _trace_signals(
    trace: TracePlan, done: dict[str, pl.DataFrame], frame: pl.LazyFrame, warn: structure.Warn
) -> list[pl.DataFrame]:
    """The signals of the trace-level rules, from the collected results of `_trace_jobs`."""
    frames: list[pl.DataFrame] = []
    sequences = [done[f"sequence{i}"] for i in range(len(trace.sequences))]
    table = None
    if "table" in done:
        table = trace.with_sequences(done["table"], sequences)
        judged = trace.judged(table)
        if judged.height:
            candidates = trace.anchor_candidates(frame, judged).collect(engine="streaming")
            found = trace.anchors(candidates, judged, frame)
            frames += trace.trace_signals(trace.fired(judged), found)
    anchor_filter = trace.anchor_filter()
    if anchor_filter is not None:
        if "anchors" in done:
            anchors = done["anchors"]
        else:  # every anchor lies in the structure frame (read with the anchors' columns)
            anchors = done["structure"].filter(anchor_filter).select(trace.anchor_columns())
        anchors = trace.with_sequences(anchors, sequences)
        structural: list[pl.DataFrame] = []
        if "structure" in done:
            linked = structure.links(done["structure"], trace.key, warn)
            structural = [
                structure.relation_table(done["structure"], agg, trace, linked, warn)
                for agg in trace.structural
            ]
        joined = trace.join_terms(
            anchors,
            table,
            done.get("parents"),
            [done[f"correlated{i}"] for i in range(len(trace.correlated))],
            structural,
        )
        frames += trace.anchored_signals(joined)
    frames += trace.sequence_signals(
        [done[f"matches{i}"] for i in range(len(trace.sequence_rules))]
    )
    for i, rule in enumerate(trace.pattern_rules):
        pattern = PatternPlan(rule, trace)
        bound = {n: done[f"pattern{i}.{n}"] for n in pattern.pattern.names}
        ancestors = {
            n: structure.ancestor_lists(bound[n], done["pattern_links"], trace.key, n, warn)
            for n in pattern.descendants()
        }
        frames.append(pattern.signals(pattern.join(bound, ancestors, done.get("table"))))
    return frames


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
