"""Stage 4, named spans: rules that bind spans `a`, `b`, ... of one trace and relate them.

Each named span gets its own candidates (the spans of its condition, pushed into
the scan), with its columns renamed `a.<column>`. Candidates are joined within
the trace — on the parent link when the rule says `child_of(b, a)`, `parent_of`
or `sibling_of`, else on the trace key alone — then the rule's condition filters
the joined rows. `descendant_of` and `ancestor_of` read a list of each
candidate's ancestors, from the structure walk. Different names are different
spans. One signal per span bound to the first name; the evidence lists the spans
bound to every name.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import polars as pl

from fluo import ast
from fluo.check import CheckedRule, referenced_columns
from fluo.compile import Context, lower_condition, message_expression, signal_rows
from fluo.compile_trace import EVIDENCE_LIMIT, TracePlan
from fluo.schema import SpanSchema

BASE_COLUMNS = ("trace_id", "span_id", "parent_span_id", "name", "service_name", "start_time")


@dataclass(frozen=True)
class PatternPlan:
    """How one rule with named spans is evaluated."""

    rule: CheckedRule
    trace: TracePlan

    @property
    def pattern(self) -> ast.Pattern:
        assert isinstance(self.rule.predicate, ast.Pattern)
        return self.rule.predicate

    @property
    def schema(self) -> SpanSchema:
        return self.trace.schema

    @property
    def key(self) -> str:
        return self.trace.key

    def columns(self) -> list[str]:
        """Columns read for each named span (the same set for all: simple and small)."""
        needed = set(referenced_columns(ast.walk(self.pattern)))
        if self.rule.message is not None:
            needed |= self.rule.columns
        needed |= {self.key, *(c for c in BASE_COLUMNS if self.schema.has(c))}
        return [c for c in self.schema.columns if c in needed]

    def candidates(self, spans: pl.LazyFrame, name: str, condition: ast.Expr) -> pl.LazyFrame:
        """The spans that may be bound to `name`, columns renamed `name.<column>`."""
        ctx = Context(self.schema)
        return spans.filter(lower_condition(condition, ctx)).select(
            pl.col(c).alias(f"{name}.{c}") for c in self.columns()
        )

    def descendants(self) -> set[str]:
        """Names whose ancestors a relation needs (descendant_of(x, _), ancestor_of(_, x))."""
        out = set()
        for node in ast.walk(self.pattern.condition):
            if isinstance(node, ast.Call) and node.func in ("descendant_of", "ancestor_of"):
                x, y = (a.name for a in node.args if isinstance(a, ast.Name))
                out.add(x if node.func == "descendant_of" else y)
        return out

    def context(self) -> Context:
        """Lowering context over the joined frame: every name's columns, and trace terms."""
        base = self.trace.ctx
        types = dict(base.term_types)
        for name in self.pattern.names:
            for c in self.columns():
                types[f"{name}.{c}"] = self.schema.columns[c]
            types[f"{name}.__ancestors"] = pl.List(pl.String())
        return Context(self.schema, base.terms, types)

    def join(
        self,
        candidates: dict[str, pl.DataFrame],
        ancestors: dict[str, pl.DataFrame],
        trace_table: pl.DataFrame | None,
    ) -> pl.DataFrame:
        """Candidates of every name joined within their trace, then filtered by the rule."""
        names = self.pattern.names
        key = self.key
        frames = {}
        for name in names:
            frame = candidates[name]
            if name in ancestors:
                frame = frame.join(
                    ancestors[name],
                    left_on=[f"{name}.{key}", f"{name}.span_id"],
                    right_on=[key, "span_id"],
                    how="left",
                ).rename({"__ancestors": f"{name}.__ancestors"})
            frames[name] = frame
        first = names[0]
        joined = frames[first]
        bound = [first]
        for name in names[1:]:
            left_on, right_on = self._join_keys(name, bound)
            joined = joined.join(
                frames[name], left_on=left_on, right_on=right_on, how="inner", coalesce=False
            )
            bound.append(name)
        distinct = [
            pl.col(f"{a}.span_id") != pl.col(f"{b}.span_id")
            for i, a in enumerate(names)
            for b in names[i + 1 :]
        ]
        if distinct:
            joined = joined.filter(functools.reduce(lambda x, y: x & y, distinct))
        terms = [self.trace.terms[t] for t in self.trace.per_trace]
        if terms and trace_table is not None:
            joined = joined.join(
                trace_table.select(key, *terms),
                left_on=f"{first}.{key}",
                right_on=key,
                how="left",
            )
        return joined.filter(lower_condition(self.pattern.condition, self.context()))

    def _join_keys(self, name: str, bound: list[str]) -> tuple[list[str], list[str]]:
        """Join `name` to the names already joined: on a parent link if the rule states one."""
        key = self.key
        conjuncts = self.pattern.condition
        parts = list(conjuncts.operands) if isinstance(conjuncts, ast.And) else [conjuncts]
        for part in parts:
            if not (
                isinstance(part, ast.Call) and part.func in ("child_of", "parent_of", "sibling_of")
            ):
                continue
            x, y = (a.name for a in part.args if isinstance(a, ast.Name))
            if part.func == "parent_of":
                x, y = y, x
            if x == name and y in bound:
                theirs = "parent_span_id" if part.func == "sibling_of" else "span_id"
                return [f"{y}.{key}", f"{y}.{theirs}"], [f"{name}.{key}", f"{name}.parent_span_id"]
            if y == name and x in bound:
                mine = "parent_span_id" if part.func == "sibling_of" else "span_id"
                return [f"{x}.{key}", f"{x}.parent_span_id"], [f"{name}.{key}", f"{name}.{mine}"]
        return [f"{bound[0]}.{key}"], [f"{name}.{key}"]

    def signals(self, joined: pl.DataFrame) -> pl.DataFrame:
        """One signal per span bound to the first name, the others as evidence."""
        first = self.pattern.names[0]
        if joined.height == 0:
            return joined.head(0)
        ids = [pl.col(f"{n}.span_id").cast(pl.String) for n in self.pattern.names]
        rows = joined.with_columns(
            message_expression(self.rule, self.context()).alias("__message"),
            pl.concat_list(ids).alias("__evidence"),
        )

        def first_of(column: str) -> pl.Expr:
            name = f"{first}.{column}"
            return (pl.col(name) if name in rows.columns else pl.lit(None)).first().alias(column)

        by = [f"{first}.{self.key}", f"{first}.span_id"]  # span ids repeat across traces
        anchors = rows.group_by(by, maintain_order=True).agg(
            *(first_of(c) for c in ("trace_id", "service_name", "name", "start_time")),
            pl.col("__message").first(),
            pl.col("__evidence").explode().unique(maintain_order=True).head(EVIDENCE_LIMIT),
        )
        return signal_rows(
            self.rule,
            anchors,
            pl.col("__message"),
            span_id=f"{first}.span_id",
            evidence=pl.col("__evidence"),
        )
