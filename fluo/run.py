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

from fluo.compile import SIGNAL_SCHEMA, Plan
from fluo.errors import DataError, FluoError
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


def compile_for(rule_set: RuleSet, frame: pl.LazyFrame, label: str) -> Plan:
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
        hits = plan.hits(frame).collect(engine="streaming")
        return plan.signals(hits)
    except FluoError:
        raise
    except pl.exceptions.PolarsError as exc:
        raise DataError(_first_line(exc), path=label) from None
    except OSError as exc:
        raise DataError(str(exc), path=label) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
