"""Stage 5: run a rule set over span tables — one scan, signals out.

The only stage that reads data and collects. Span-level rules are independent
per span, so inputs given as several paths are evaluated one after the other
with the same compiled plan (bounded memory, and a progress callback per input);
the signals of all inputs are concatenated.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from fluo import ast, structure
from fluo.check import referenced_columns
from fluo.compile import SIGNAL_SCHEMA
from fluo.compile_trace import TracePlan
from fluo.errors import DataError, FluoError
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

    @property
    def fired(self) -> list[str]:
        return [name for name, n in self.counts.items() if n]


def evaluate(rule_set: RuleSet, spans: Spans, *, progress: Progress | None = None) -> RunResult:
    """Evaluate every enabled rule of `rule_set` over `spans`."""
    started = time.perf_counter()
    inputs = _inputs(spans)
    frames: list[pl.DataFrame] = []
    for index, (label, frame) in enumerate(inputs):
        if progress:
            progress(index, len(inputs), label)
        frames.append(_evaluate_one(rule_set, frame, label))
    if progress:
        progress(len(inputs), len(inputs), "done")
    signals = pl.concat(frames) if frames else pl.DataFrame(schema=SIGNAL_SCHEMA)
    if len(frames) > 1:
        signals = signals.sort(["time", "rule", "trace_id", "span_id"], nulls_last=True)
    counts = {r.name: 0 for r in rule_set.enabled}
    for name, n in signals.group_by("rule").len().iter_rows():
        counts[name] = n
    failing = tuple(r.name for r in rule_set.enabled if r.fails_run and counts.get(r.name))
    return RunResult(signals, counts, failing, time.perf_counter() - started)


def _inputs(spans: Spans) -> list[tuple[str, pl.LazyFrame]]:
    if isinstance(spans, pl.DataFrame):
        return [("<DataFrame>", spans.lazy())]
    if isinstance(spans, pl.LazyFrame):
        return [("<LazyFrame>", spans)]
    from fluo.ingest import scan_spans

    if isinstance(spans, str | Path):
        return [(str(spans), scan_spans(spans))]
    return [(str(p), scan_spans(p)) for p in spans]


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


def _evaluate_one(rule_set: RuleSet, frame: pl.LazyFrame, label: str) -> pl.DataFrame:
    plan = compile_for(rule_set, frame, label)
    try:
        return execute(plan, frame)
    except FluoError:
        raise
    except pl.exceptions.PolarsError as exc:
        raise DataError(_first_line(exc), path=label) from None
    except OSError as exc:
        raise DataError(str(exc), path=label) from None


def execute(plan: RunPlan, frame: pl.LazyFrame) -> pl.DataFrame:
    """Evaluate a compiled plan over one span table: the signals, sorted."""
    lazies: list[pl.LazyFrame] = []
    if plan.span.rules:
        lazies.append(plan.span.hits(frame))
    trace = plan.trace
    if trace is not None:
        lazies.append(trace.trace_table(frame))
        anchor_filter = trace.anchor_filter()
        if anchor_filter is not None:
            lazies.append(frame.filter(anchor_filter).select(trace.anchor_columns()))
        parents = trace.parent_table(frame)
        if parents is not None:
            lazies.append(parents)
        lazies += [trace.correlated_table(frame, agg) for agg in trace.correlated]
        if trace.structural:
            lazies.append(frame.select(_structure_columns(trace)))
    results = iter(pl.collect_all(lazies, engine="streaming"))
    frames: list[pl.DataFrame] = []
    if plan.span.rules:
        frames.append(plan.span.signals(next(results)))
    if trace is not None:
        table = next(results)
        frames += trace.trace_signals(table)
        if anchor_filter is not None:
            anchors = next(results)
            parent_table = next(results) if parents is not None else None
            correlated = [next(results) for _ in trace.correlated]
            structural: list[pl.DataFrame] = []
            if trace.structural:
                spans = next(results)
                linked = structure.links(spans, trace.key)
                structural = [
                    structure.relation_table(spans, agg, trace, linked) for agg in trace.structural
                ]
            joined = trace.join_terms(anchors, table, parent_table, correlated, structural)
            frames += trace.anchored_signals(joined)
    frames = [f for f in frames if f.height]
    if not frames:
        return pl.DataFrame(schema=SIGNAL_SCHEMA)
    signals = pl.concat([f.select(list(SIGNAL_SCHEMA)) for f in frames], how="vertical_relaxed")
    return signals.sort(["time", "rule", "trace_id", "span_id"], nulls_last=True)


def _structure_columns(trace: TracePlan) -> list[str]:
    needed = {trace.key, "span_id", "parent_span_id"}
    for agg in trace.structural:
        for part in (agg.where, agg.value):
            if part is not None:
                needed |= referenced_columns(ast.walk(part))
    return [c for c in trace.schema.columns if c in needed]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
