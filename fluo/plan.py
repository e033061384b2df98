"""The compiled form of a whole rule set for one span table: span rules and trace rules."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from fluo.check import CheckedRule
from fluo.compile import SpanPlan, compile_rules
from fluo.compile_trace import TracePlan, compile_trace_rules
from fluo.compile_window import WindowPlan, compile_window_rules
from fluo.printer import show_rule
from fluo.schema import SpanSchema


@dataclass(frozen=True)
class RunPlan:
    """Span-level rules as one fused filter; trace-level rules as a `TracePlan`; windowed
    aggregate rules as a `WindowPlan`; correlations run last, over the signals."""

    span: SpanPlan
    trace: TracePlan | None
    window: WindowPlan | None = None
    correlations: tuple[CheckedRule, ...] = ()

    @property
    def rules(self) -> tuple[CheckedRule, ...]:
        return (
            self.span.rules
            + (self.trace.rules if self.trace else ())
            + (self.window.rules if self.window else ())
            + self.correlations
        )

    def explain(self, spans: pl.LazyFrame) -> str:
        """Each rule as checked, then the Polars plans that evaluate them."""
        parts = [show_rule(r) for r in self.rules]
        if self.span.rules:
            parts.append(
                "span rules: one scan, the filter is pushed into it:\n"
                + self.span.hits(spans).explain()
            )
        if self.trace is not None:
            t = self.trace
            lines = [f"trace rules: grouped by {t.key}"]
            if t.prefilter is not None:
                lines.append("only spans that some trace term names are read (prefilter)")
            lines.append(f"per-trace terms (one group_by): {len(t.per_trace)}")
            lines.append(f"parent fields (one join): {len(t.parents)}")
            lines.append(f"aggregates reading this. (group_by per key + join): {len(t.correlated)}")
            lines.append(f"relation aggregates (structure walk): {len(t.structural)}")
            if t.whole_trace:
                lines.append(
                    f"whole-trace rules: {len(t.whole_trace)}, decided by the per-trace table; "
                    "their anchors and evidence: one more scan of the traces where one fired"
                )
            if t.whole_trace or t.per_trace:
                lines.append("per-trace table plan:\n" + t.trace_table(spans).explain())
            if t.structural:
                wanted = t.structure_traces(spans)
                lines.append(
                    "structure: parent links resolved once to row numbers (one join), "
                    "walks are gathers"
                    + ("; the anchors are read with it" if t.anchors_in_structure else "")
                    + (
                        "; it reads every span"
                        if wanted is None
                        else "; it reads the spans of the traces this plan finds (their "
                        "keys tested in the scan):\n" + wanted.explain()
                    )
                )
            parts.append("\n".join(lines))
        if self.window is not None:
            for i, (family, table) in enumerate(
                zip(self.window.families, self.window.tables(spans), strict=True)
            ):
                names = ", ".join(r.name for r in family.rules)
                parts.append(
                    f"windowed rules, family {i} ({names}): one group_by by keys and window:\n"
                    + table.explain()
                )
        return "\n\n".join(parts)


def build_plan(rules: Sequence[CheckedRule], schema: SpanSchema) -> RunPlan:
    """Split checked rules by level and compile each group."""
    span_rules = [r for r in rules if r.level == "span"]
    window_rules = [r for r in rules if r.level == "window"]
    correlations = tuple(r for r in rules if r.level == "correlate")
    trace_rules = [r for r in rules if r.level not in ("span", "window", "correlate")]
    trace = compile_trace_rules(trace_rules, schema) if trace_rules else None
    window = compile_window_rules(window_rules, schema) if window_rules else None
    return RunPlan(compile_rules(span_rules, schema), trace, window, correlations)
