"""Stage 4, trace level: rules that read other spans of their trace, as Polars plans. No I/O.

A trace rule is evaluated per span with trace context ("anchored": the condition
reads the anchor span as well as trace terms) or once per trace ("trace"). Each
trace term of the whole rule set gets one column, computed once:

* aggregates over the trace, `trace.*` and `root.*`: ONE `group_by(trace key)`;
* `parent.*`: a join of each anchor span with its parent;
* aggregates that read `this.` (the anchor): a `group_by(trace, key)` joined back;
* aggregates over children, descendants, ancestors: the structure walk
  (fluo/structure.py) gives (span, related span) pairs, aggregated per span;
* aggregates over siblings: a `group_by(trace, parent)`, minus the span itself.

Anchored rules first filter spans by the part of their condition that reads the
anchor alone (pushed into the scan), then join the term columns.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import polars as pl

from fluo import ast
from fluo.ast import Expr
from fluo.check import (
    CheckedRule,
    reads_this,
    referenced_columns,
    split_correlation,
    trace_terms,
)
from fluo.compile import Context, lower, lower_condition, message_expression, signal_rows
from fluo.errors import CompileError
from fluo.schema import UTC_NS, SpanSchema

#: Value of each aggregate for a span or trace with no spans in its scope.
EMPTY_VALUE: dict[str, object] = {
    "count": 0,
    "has": False,
    "missing": True,
    "all": True,
    "sum": 0,
    "distinct": 0,
}
QUANTILES = {"median": 0.5, "p50": 0.5, "p75": 0.75, "p90": 0.9, "p95": 0.95, "p99": 0.99}
EVIDENCE_LIMIT = 10


_Frame = TypeVar("_Frame", pl.DataFrame, pl.LazyFrame)


def trace_key(schema: SpanSchema) -> str:
    """The column traces are grouped by: the integer key when the table has one."""
    return "trace_key" if schema.has("trace_key") else "trace_id"


@dataclass(frozen=True)
class TracePlan:
    """Everything needed to evaluate the trace-level rules of a rule set on one table."""

    rules: tuple[CheckedRule, ...]
    schema: SpanSchema
    key: str
    terms: dict[Expr, str]
    per_trace: tuple[Expr, ...]
    correlated: tuple[ast.Aggregate, ...]
    parents: tuple[ast.Related, ...]
    structural: tuple[ast.Aggregate, ...]
    sequences: tuple[ast.Sequence, ...] = ()
    supports: dict[str, Expr | None] = field(default_factory=dict)
    prefilter: Expr | None = None

    @functools.cached_property
    def ctx(self) -> Context:
        """Lowering context in which every trace term reads its own column."""
        base = Context(self.schema)
        types = {name: term_dtype(term, base) for term, name in self.terms.items()}
        return Context(self.schema, self.terms, types)

    @property
    def anchored(self) -> tuple[CheckedRule, ...]:
        return tuple(r for r in self.rules if r.level == "anchored")

    @property
    def whole_trace(self) -> tuple[CheckedRule, ...]:
        return tuple(r for r in self.rules if r.level == "trace")

    @property
    def sequence_rules(self) -> tuple[CheckedRule, ...]:
        return tuple(r for r in self.rules if r.level == "sequence")

    @property
    def pattern_rules(self) -> tuple[CheckedRule, ...]:
        return tuple(r for r in self.rules if r.level == "pattern")

    def sequence_table(self, spans: pl.LazyFrame, seq: ast.Sequence) -> pl.LazyFrame:
        """The traces in which sequence term `seq` matches: (key, True)."""
        matches = sequence_matches(spans, seq, self.schema, self.key)
        return (
            matches.select(pl.col("__g").alias(self.key))
            .unique()
            .with_columns(pl.lit(True).alias(self.terms[seq]))
        )

    def with_sequences(self, frame: pl.DataFrame, tables: Sequence[pl.DataFrame]) -> pl.DataFrame:
        """`frame` (keyed by trace) with the column of every sequence term (false if absent)."""
        for seq, table in zip(self.sequences, tables, strict=True):
            frame = frame.join(table, on=self.key, how="left").with_columns(
                pl.col(self.terms[seq]).fill_null(False)
            )
        return frame

    def sequence_signals(self, matches: Sequence[pl.DataFrame]) -> list[pl.DataFrame]:
        """One signal per match of each sequence rule, anchored at its first step."""
        frames = []
        for rule, rows in zip(self.sequence_rules, matches, strict=True):
            if rows.height == 0:
                continue
            message = message_expression(rule, self.ctx)
            frames.append(
                signal_rows(rule, rows, message, time="__time", evidence=pl.col("__evidence"))
            )
        return frames

    # -- the per-trace table ---------------------------------------------------------

    def trace_table(self, spans: pl.LazyFrame) -> pl.LazyFrame:
        """One row per trace: every per-trace term (one group_by over the trace key)."""
        ctx = Context(self.schema)
        aggs = [term_aggregate(t, ctx).alias(self.terms[t]) for t in self.per_trace]
        source = spans
        if self.prefilter is not None:
            source = spans.filter(lower_condition(self.prefilter, ctx))
        return source.group_by(self.key).agg(aggs)

    def judged(self, table: pl.DataFrame) -> pl.DataFrame:
        """The rows of the per-trace table where some whole-trace rule holds, with a
        boolean column `__fired{i}` per rule (one pass over the table)."""
        filled = table.with_columns(
            pl.col(self.terms[t]).fill_null(EMPTY_VALUE[t.func])
            for t in self.per_trace
            if isinstance(t, ast.Aggregate) and t.func in EMPTY_VALUE
        )
        flags = [
            lower_condition(r.predicate, self.ctx).fill_null(False).alias(_fired(i))
            for i, r in enumerate(self.whole_trace)
        ]
        if not flags:
            return filled.clear()
        return filled.with_columns(flags).filter(
            pl.any_horizontal(_fired(i) for i in range(len(flags)))
        )

    def fired(self, judged: pl.DataFrame) -> list[pl.DataFrame]:
        """For each whole-trace rule, the rows of the judged table where it holds."""
        return [judged.filter(pl.col(_fired(i))) for i in range(len(self.whole_trace))]

    def anchor_candidates(self, spans: pl.LazyFrame, judged: pl.DataFrame) -> pl.LazyFrame:
        """ONE scan for the anchors of every whole-trace rule: the spans that may anchor a
        rule (its support spans, or roots) in a trace where that rule fired, with a
        boolean column `__anchor{i}` per rule.

        The scan keeps the spans of the traces where some rule fired (one membership
        test, pushed into the scan) that may anchor some rule; the verdicts of each trace
        then join them as bit words (rule i is bit i % 64 of word i // 64)."""
        ctx = Context(self.schema)
        count = len(self.whole_trace)
        keys = judged.get_column(self.key)
        words = [
            functools.reduce(
                lambda a, b: a | b,
                (
                    pl.col(_fired(i)).cast(pl.UInt64) * (1 << (i - w))
                    for i in range(w, min(w + 64, count))
                ),
            ).alias(f"__word{w // 64}")
            for w in range(0, count, 64)
        ]
        verdicts = judged.select(self.key, *words)
        flags, masks = [], []
        for i, rule in enumerate(self.whole_trace):
            support = self.supports.get(rule.name)
            if support is not None:
                mask = lower_condition(support, ctx)
            elif self.schema.has("parent_span_id"):
                mask = pl.col("parent_span_id").is_null()
            else:
                mask = pl.lit(True)
            masks.append(mask.alias(f"__may{i}"))
            fired = (pl.col(f"__word{i // 64}") & (1 << (i % 64))) != 0
            flags.append((fired & pl.col(f"__may{i}")).alias(_anchor(i)))
        may = pl.any_horizontal(pl.col(f"__may{i}") for i in range(count))
        fields = self._anchor_fields()
        return (
            spans.filter(pl.col(self.key).is_in(keys.implode()))  # pushed into the scan
            .select(*fields, *masks)
            .filter(may)
            .join(verdicts.lazy(), on=self.key)
            .select(*(f.meta.output_name() for f in fields), *flags)
            .filter(pl.any_horizontal(_anchor(i) for i in range(count)))
        )

    def _anchor_fields(self) -> list[pl.Expr]:
        """The columns a whole-trace signal reports about its anchor span."""
        fields = [
            pl.col(c)
            for c in (self.key, "trace_id", "span_id", "name", "service_name")
            if self.schema.has(c)
        ]
        if self.schema.has("start_time"):
            fields.append(_plain_column("start_time", self.schema).alias("start_time"))
        return fields

    def anchors(
        self, candidates: pl.DataFrame, judged: pl.DataFrame, spans: pl.LazyFrame
    ) -> list[pl.DataFrame]:
        """Anchor and evidence of each whole-trace rule in each trace where it fired.

        The anchor is the earliest span the rule's support names, or else the trace's
        root (the earliest span without a parent), ties broken by span id; a trace with
        no root is anchored at its earliest span (read again, for those traces only).
        The candidates are sorted ONCE; each rule then takes the first spans of its own
        rows per trace.
        """
        order = [c for c in (self.key, "start_time", "span_id") if c in candidates.columns]
        rows = candidates.sort(order)
        found = []
        for i, fired in enumerate(self.fired(judged)):
            support = self.supports.get(self.whole_trace[i].name)
            mine = self._first_spans(rows.filter(pl.col(_anchor(i))), support is not None)
            if mine.height < fired.height:  # traces without a root: their earliest span
                rootless = fired.join(mine.select(self.key), on=self.key, how="anti")
                extra = spans.join(rootless.select(self.key).lazy(), on=self.key, how="semi")
                extra_rows = extra.select(self._anchor_fields()).collect(engine="streaming")
                mine = pl.concat([mine, self._first_spans(extra_rows.sort(order), False)])
            found.append(mine)
        return found

    def _first_spans(self, rows: pl.DataFrame, evidence: bool) -> pl.DataFrame:
        """Per trace of `rows` (sorted by time): the first span, and the first spans as
        evidence (up to EVIDENCE_LIMIT with a support condition, else the anchor alone)."""

        def first(column: str, alias: str) -> pl.Expr:
            if column in rows.columns:
                return pl.col(column).first().alias(alias)
            return pl.lit(None).first().alias(alias)

        return rows.group_by(self.key, maintain_order=True).agg(
            first("trace_id", "__trace_id"),
            pl.col("span_id").head(EVIDENCE_LIMIT if evidence else 1).alias("__evidence"),
            first("span_id", "__span"),
            first("name", "__name"),
            first("service_name", "__service"),
            first("start_time", "__time"),
        )

    # -- anchors -------------------------------------------------------------------------

    def anchor_filter(self) -> pl.Expr | None:
        """Spans that may be anchors of some anchored rule (None: no anchored rules)."""
        parts = [anchor_condition(r.predicate) for r in self.anchored]
        if not parts:
            return None
        if any(p is None for p in parts):
            return pl.lit(True)
        ctx = Context(self.schema)
        return functools.reduce(lambda a, b: a | b, (lower_condition(p, ctx) for p in parts if p))

    @property
    def anchors_in_structure(self) -> bool:
        """Whether every anchor of the anchored rules is a span some relation aggregate
        looks for: then it lies in the traces the structure walks read, and one scan of
        those traces serves both (see `structure_frame`)."""
        wheres = [set(_conjuncts(a.where)) for a in self.structural if a.where is not None]
        if not wheres or len(wheres) < len(self.structural):
            return False
        for rule in self.anchored:
            local = anchor_condition(rule.predicate)
            if local is None or not any(w <= set(_conjuncts(local)) for w in wheres):
                return False
        return True

    def structure_traces(self, spans: pl.LazyFrame) -> pl.LazyFrame | None:
        """The keys of the traces the structure walks need: those with a span some
        relation aggregate looks for (in the others every such aggregate is empty);
        None when an aggregate without a condition needs every trace."""
        wheres = [agg.where for agg in self.structural]
        if not wheres or any(w is None for w in wheres):
            return None
        ctx = Context(self.schema)
        wanted = functools.reduce(
            lambda a, b: a | b, (lower_condition(w, ctx) for w in wheres if w)
        )
        return spans.filter(wanted).select(self.key).unique()

    def structure_frame(self, spans: pl.LazyFrame, traces: pl.Series | None) -> pl.LazyFrame:
        """The spans the structure walks read, in input order (duplicate records link to
        the first): those of `traces` (collected from `structure_traces`; None: all),
        tested in the scan, with the anchors' columns when the anchors are read from
        them too. Two passes measured faster and 15% leaner than one semi-join, which
        holds every span until it knows the traces."""
        needed = {self.key, "span_id", "parent_span_id"}
        if self.anchors_in_structure:
            needed |= set(self.anchor_columns())
        for agg in self.structural:
            for part in (agg.where, agg.value):
                if part is not None:
                    needed |= referenced_columns(ast.walk(part))
        columns = [c for c in self.schema.columns if c in needed]
        if traces is None:
            return spans.select(columns)
        return spans.filter(pl.col(self.key).is_in(traces.implode())).select(columns)

    def anchor_columns(self) -> list[str]:
        needed: set[str] = {self.key, "trace_id", "span_id"}
        for rule in self.anchored:
            needed |= rule.columns
        for column in ("parent_span_id", "service_name", "name", "start_time"):
            if self.schema.has(column):
                needed.add(column)
        return [c for c in self.schema.columns if c in needed]

    # -- tables joined to anchors ------------------------------------------------------

    def parent_table(self, spans: pl.LazyFrame) -> pl.LazyFrame | None:
        if not self.parents:
            return None
        ctx = Context(self.schema)
        fields = [lower(p.value, ctx).alias(self.terms[p]) for p in self.parents]
        return spans.select(
            pl.col(self.key), pl.col("span_id").alias("__parent_id"), *fields
        ).unique(subset=[self.key, "__parent_id"], keep="first")

    def correlated_table(self, spans: pl.LazyFrame, agg: ast.Aggregate) -> pl.LazyFrame:
        """Per (trace, correlation keys): the aggregate, to join with each anchor."""
        ctx = Context(self.schema)
        split = split_correlation(agg)
        name = self.terms[agg]
        source = spans
        if split.rest:
            source = spans.filter(lower_condition(ast.And(split.rest), ctx))
        keys = [lower(cand, ctx).alias(f"{name}_k{j}") for j, (cand, _) in enumerate(split.keys)]
        source = source.with_columns(keys) if keys else source
        group = [self.key, *(f"{name}_k{j}" for j in range(len(split.keys)))]
        if split.ordering is not None:
            op, cand, _ = split.ordering
            bound = lower(cand, ctx)
            value = bound.min() if op in ("<", "<=") else bound.max()
        elif agg.func in ("has", "missing"):
            value = pl.len() > 0
        else:
            value = term_aggregate(ast.Aggregate(agg.func, agg.value, None), ctx)
        return source.group_by(group).agg(value.alias(name))

    def join_trace_and_parent(
        self, spans: _Frame, trace_table: _Frame | None, parents: _Frame | None
    ) -> _Frame:
        """`spans` with the columns of the per-trace terms (joined by trace) and of the
        parent fields (joined by parent span id); lazy or not, as `spans` is."""
        out = spans
        per_trace = [self.terms[t] for t in self.per_trace]
        if per_trace and trace_table is not None:
            out = out.join(trace_table.select(self.key, *per_trace), on=self.key, how="left")
        if parents is not None:
            out = out.join(
                parents,
                left_on=[self.key, "parent_span_id"],
                right_on=[self.key, "__parent_id"],
                how="left",
            )
        return out

    def join_terms(
        self,
        anchors: pl.DataFrame,
        trace_table: pl.DataFrame | None,
        parents: pl.DataFrame | None,
        correlated: Sequence[pl.DataFrame],
        structural: Sequence[pl.DataFrame],
    ) -> pl.DataFrame:
        """Anchor spans with the value of every trace term as a column."""
        ctx = Context(self.schema)
        out = self.join_trace_and_parent(anchors, trace_table, parents)
        for agg, table in zip(self.correlated, correlated, strict=True):
            name = self.terms[agg]
            split = split_correlation(agg)
            anchor_keys = [
                lower(a, ctx).alias(f"{name}_a{j}") for j, (_, a) in enumerate(split.keys)
            ]
            out = out.with_columns(anchor_keys) if anchor_keys else out
            out = out.join(
                table,
                left_on=[self.key, *(f"{name}_a{j}" for j in range(len(split.keys)))],
                right_on=[self.key, *(f"{name}_k{j}" for j in range(len(split.keys)))],
                how="left",
            )
            if split.ordering is not None:
                op, _, anchor_value = split.ordering
                bound, mine = pl.col(name), lower(anchor_value, ctx)
                found = {
                    "<": bound < mine,
                    "<=": bound <= mine,
                    ">": bound > mine,
                    ">=": bound >= mine,
                }[op].fill_null(False)
            elif agg.func in ("has", "missing"):
                found = pl.col(name).fill_null(False)
            else:
                found = pl.col(name)
            if agg.func == "missing":
                found = ~found
            out = out.with_columns(found.alias(name))
        for agg, table in zip(self.structural, structural, strict=True):
            own = "parent_span_id" if agg.scope == "siblings" else "span_id"
            out = out.join(
                table, left_on=[self.key, own], right_on=[self.key, "__related_to"], how="left"
            )
            if agg.scope == "siblings":
                me = (  # the span itself is in its parent's group: take it out
                    lower_condition(agg.where, Context(self.schema)).cast(pl.Int64)
                    if agg.where is not None
                    else pl.lit(1, pl.Int64)
                )
                others = pl.col(self.terms[agg]).fill_null(0) - me
                root = pl.col("parent_span_id").is_null()  # a root has no siblings
                out = out.with_columns(
                    pl.when(root).then(0).otherwise(others).alias(self.terms[agg])
                )
                if agg.func != "count":
                    present = pl.col(self.terms[agg]) > 0
                    out = out.with_columns(
                        (present if agg.func == "has" else ~present).alias(self.terms[agg])
                    )
        return out.with_columns(
            pl.col(self.terms[t]).fill_null(EMPTY_VALUE[t.func])
            for t in (*self.per_trace, *self.correlated, *self.structural)
            if isinstance(t, ast.Aggregate) and t.func in EMPTY_VALUE
        )

    # -- signals -------------------------------------------------------------------------

    def anchored_signals(self, joined: pl.DataFrame) -> list[pl.DataFrame]:
        frames = []
        for rule in self.anchored:
            flag = lower_condition(rule.predicate, self.ctx)
            rows = joined.filter(flag)
            if rows.height == 0:
                continue
            frames.append(signal_rows(rule, rows, message_expression(rule, self.ctx)))
        return frames

    def trace_signals(
        self, fired: Sequence[pl.DataFrame], anchors: Sequence[pl.DataFrame]
    ) -> list[pl.DataFrame]:
        """One signal per trace where a whole-trace rule holds, at the rule's anchor."""
        frames = []
        for rule, rows, anchor in zip(self.whole_trace, fired, anchors, strict=True):
            if rows.height == 0:
                continue
            rows = rows.join(anchor, on=self.key, how="left")
            frames.append(
                signal_rows(
                    rule,
                    rows,
                    message_expression(rule, self.ctx),
                    trace_id="__trace_id",
                    span_id="__span",
                    service="__service",
                    name="__name",
                    time="__time",
                    evidence=pl.col("__evidence").cast(pl.List(pl.String)),
                )
            )
        return frames


def _fired(i: int) -> str:
    return f"__fired{i}"


def _anchor(i: int) -> str:
    return f"__anchor{i}"


def _plain_column(column: str, schema: SpanSchema) -> pl.Expr:
    return lower(ast.Column(column, "string"), Context(schema))


# --- lowering of aggregates ------------------------------------------------------------


def term_aggregate(node: Expr, ctx: Context) -> pl.Expr:
    """A per-trace term as an aggregation expression inside `group_by(trace key).agg`."""
    if isinstance(node, ast.TraceField):
        return _trace_field(node.name, ctx)
    if isinstance(node, ast.Related) and node.relation == "root":
        value = lower(node.value, ctx)
        if not ctx.schema.has("parent_span_id"):
            return pl.lit(None).first()
        is_root = pl.col("parent_span_id").is_null()
        order = pl.col("start_time") if ctx.schema.has("start_time") else pl.col("span_id")
        picked = value.filter(is_root).sort_by(order.filter(is_root)).first()
        return pl.when(is_root.any()).then(picked)
    if not isinstance(node, ast.Aggregate):
        raise CompileError(f"no aggregate lowering for {type(node).__name__}")
    where = lower_condition(node.where, ctx) if node.where is not None else None
    func = node.func
    if func == "count":
        return (where.sum() if where is not None else pl.len()).cast(pl.Int64)
    if func in ("has", "missing"):
        assert where is not None
        return where.any() if func == "has" else ~where.any()
    assert node.value is not None
    value = lower_condition(node.value, ctx) if func == "all" else lower(node.value, ctx)
    if func == "all":
        return (value | ~where).all() if where is not None else value.all()
    if where is not None:
        value = value.filter(where)
    if func == "distinct":
        return value.drop_nulls().n_unique().cast(pl.Int64)
    if func in QUANTILES:
        return value.quantile(QUANTILES[func], interpolation="linear")
    return {"max": value.max, "min": value.min, "sum": value.sum, "avg": value.mean}[func]()


def term_dtype(term: Expr, ctx: Context) -> pl.DataType:
    """The Polars type of a trace term's column."""
    if isinstance(term, ast.TraceField):
        return UTC_NS if term.name in ("start", "end") else pl.Int64()
    if isinstance(term, ast.Related):
        return ctx.dtype_of(lower(term.value, ctx))
    if isinstance(term, ast.Sequence):
        return pl.Boolean()
    assert isinstance(term, ast.Aggregate)
    if term.func in ("count", "distinct"):
        return pl.Int64()
    if term.func in ("has", "missing", "all"):
        return pl.Boolean()
    if term.func in ("avg", *QUANTILES):
        return pl.Float64()
    assert term.value is not None
    value = ctx.dtype_of(lower(term.value, ctx))
    if term.func == "sum" and value.is_integer():
        return pl.Int64()
    return value


def sequence_matches(
    spans: pl.LazyFrame, seq: ast.Sequence, schema: SpanSchema, key: str
) -> pl.LazyFrame:
    """Every match of a sequence, one row per span that starts it (greedy, like EQL).

    Each next step is the earliest span of the group that starts strictly after the
    previous step (`join_asof`, forward, exact matches excluded). An `absent` step
    is the earliest such span after the previous step: it must not start before the
    next step. `until` likewise between the first and the last step.
    Columns: __g (the group), trace_id, span_id, name, service_name, __time (of the
    first step) and __evidence (the span id of every step).
    """
    ctx = Context(schema)
    group = lower(seq.by, ctx) if seq.by is not None else pl.col(key)
    start = lower(ast.Column("start_time", "timestamp"), ctx)
    base = spans.with_columns(group.alias("__g"), start.alias("__t")).filter(
        pl.col("__g").is_not_null() & pl.col("__t").is_not_null()
    )

    def occurrences(predicate: Expr, prefix: str) -> pl.LazyFrame:
        return (
            base.filter(lower_condition(predicate, ctx))
            .select(
                "__g", pl.col("__t").alias(f"{prefix}_t"), pl.col("span_id").alias(f"{prefix}_id")
            )
            .sort(f"{prefix}_t")
        )

    def after(left: pl.LazyFrame, left_t: str, right: pl.LazyFrame, right_t: str) -> pl.LazyFrame:
        return left.sort(left_t).join_asof(
            right,
            left_on=left_t,
            right_on=right_t,
            by="__g",
            strategy="forward",
            allow_exact_matches=False,
            check_sortedness=False,
        )

    first, *rest = seq.steps
    keep = [c for c in ("trace_id", "span_id", "name", "service_name") if schema.has(c)]
    matches = base.filter(lower_condition(first, ctx)).select(
        "__g", *keep, pl.col("__t").alias("s0_t"), pl.col("span_id").alias("s0_id")
    )
    previous, absent, ids = "s0", None, ["s0_id"]
    for i, step in enumerate(rest, start=1):
        if isinstance(step, ast.Absent):
            absent = step.predicate
            continue
        name = f"s{i}"
        matches = after(matches, f"{previous}_t", occurrences(step, name), f"{name}_t")
        matches = matches.filter(pl.col(f"{name}_t").is_not_null())
        if absent is not None:
            gap = f"a{i}"
            matches = after(matches, f"{previous}_t", occurrences(absent, gap), f"{gap}_t")
            matches = matches.filter(
                pl.col(f"{gap}_t").is_null() | (pl.col(f"{gap}_t") >= pl.col(f"{name}_t"))
            )
            absent = None
        previous = name
        ids.append(f"{name}_id")
    if seq.within is not None:
        span_ns = (pl.col(f"{previous}_t") - pl.col("s0_t")).dt.total_nanoseconds()
        matches = matches.filter(span_ns <= seq.within)
    if seq.until is not None:
        matches = after(matches, "s0_t", occurrences(seq.until, "u"), "u_t")
        matches = matches.filter(
            pl.col("u_t").is_null() | (pl.col("u_t") >= pl.col(f"{previous}_t"))
        )
    return matches.select(
        "__g", *keep, pl.col("s0_t").alias("__time"), pl.concat_list(ids).alias("__evidence")
    )


def _trace_field(name: str, ctx: Context) -> pl.Expr:
    start = lower(ast.Column("start_time", "timestamp"), ctx)
    if ctx.schema.has("end_time"):
        end = lower(ast.Column("end_time", "timestamp"), ctx)
    else:
        end = start + pl.duration(nanoseconds=pl.col("duration_ns"))
    if name == "duration":
        return (end.max() - start.min()).dt.total_nanoseconds()
    if name == "start":
        return start.min()
    if name == "end":
        return end.max()
    if name == "span_count":
        return pl.len().cast(pl.Int64)
    if name == "error_count":
        return (pl.col("status_code").cast(pl.String) == "ERROR").sum().cast(pl.Int64)
    raise CompileError(f"no lowering rule for trace.{name}")


# --- analysis ---------------------------------------------------------------------------


def _conjuncts(condition: Expr) -> tuple[Expr, ...]:
    return condition.operands if isinstance(condition, ast.And) else (condition,)


def anchor_condition(predicate: Expr) -> Expr | None:
    """The conjuncts of a condition that read only the anchor span: a filter for candidates."""
    conjuncts = list(predicate.operands) if isinstance(predicate, ast.And) else [predicate]
    local = [c for c in conjuncts if not trace_terms(c)]
    if not local:
        return None
    return local[0] if len(local) == 1 else ast.And(tuple(local))


def support(predicate: Expr) -> Expr | None:
    """A span condition without which the trace condition cannot hold, or None.

    `has(P)` needs a P span; `count(P) > n` (n >= 0) too, and so does `count(P) > X`
    when X cannot be negative (a count, or a sum of counts and integers: `count(A) >
    count(B) + 2` needs an A span); `count(A) != count(B)` an A or a B span; `and` needs
    any one of its parts' support; `or` needs one of each part's. Traces without a
    supporting span can be skipped, and the support names the spans that are the
    signal's evidence.
    """
    match predicate:
        case ast.Aggregate(func="has", scope="trace", where=where) if (
            where is not None and not reads_this(where)
        ):
            return where
        case ast.Compare():
            return _compare_support(predicate)
        case ast.Sequence(by=None, steps=steps):
            return steps[0]
        case ast.And(operands=ops):
            for op_ in ops:
                found = support(op_)
                if found is not None:
                    return found
        case ast.Or(operands=ops):
            parts = [support(o) for o in ops]
            if all(p is not None for p in parts):
                return ast.Or(tuple(p for p in parts if p is not None))
    return None


_MIRRORED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


def _compare_support(node: ast.Compare) -> Expr | None:
    """The support of a comparison of trace counts (see `support`)."""
    a, b = _counted(node.left), _counted(node.right)
    if node.op == "!=" and a is not None and b is not None:
        return ast.Or((a, b))
    for op, where, other in ((node.op, a, node.right), (_MIRRORED[node.op], b, node.left)):
        bound = _lower_bound(other)
        if where is None or bound is None:
            continue
        if (op == ">" and bound >= 0) or (op in (">=", "==") and bound >= 1):
            return where
    return None


def _counted(node: Expr) -> Expr | None:
    """P, when `node` is `count(P)` over the whole trace (not reading the anchor)."""
    match node:
        case ast.Aggregate(func="count", scope="trace", where=where) if (
            where is not None and not reads_this(where)
        ):
            return where
    return None


def _lower_bound(node: Expr) -> int | None:
    """A lower bound of a count expression: an integer, any count (0), or their sum."""
    match node:
        case ast.Int(value=n):
            return n
        case ast.Aggregate(func="count"):
            return 0
        case ast.Arith(op="+", left=left, right=right):
            low, high = _lower_bound(left), _lower_bound(right)
            return None if low is None or high is None else low + high
    return None


def _needs_every_span(term: Expr) -> bool:
    if isinstance(term, ast.Aggregate):
        return term.where is None
    return True  # trace.*, root.*


def compile_trace_rules(rules: Sequence[CheckedRule], schema: SpanSchema) -> TracePlan:
    """Collect and name the trace terms of `rules` and decide how each is computed."""
    terms: dict[Expr, str] = {}
    per_trace: list[Expr] = []
    correlated: list[ast.Aggregate] = []
    parents: list[ast.Related] = []
    structural: list[ast.Aggregate] = []
    sequences: list[ast.Sequence] = []
    for rule in rules:
        parts = [] if rule.level == "sequence" else [rule.predicate]
        if rule.message is not None:
            parts += [p for p in rule.message.parts if not isinstance(p, str)]
        for term in (t for p in parts for t in trace_terms(p)):
            if term in terms:
                continue
            terms[term] = f"__t{len(terms)}"
            if isinstance(term, ast.Sequence):
                sequences.append(term)
            elif isinstance(term, ast.Related) and term.relation == "parent":
                parents.append(term)
            elif isinstance(term, ast.Aggregate) and term.scope != "trace":
                structural.append(term)
            elif isinstance(term, ast.Aggregate) and reads_this(term):
                correlated.append(term)
            else:
                per_trace.append(term)
    supports = {r.name: support(r.predicate) for r in rules if r.level == "trace"}
    prefilter: Expr | None = None
    if not any(_needs_every_span(t) for t in per_trace) and all(
        s is not None for s in supports.values()
    ):
        wheres = [t.where for t in per_trace if isinstance(t, ast.Aggregate) and t.where]
        wheres += [s for s in supports.values() if s is not None]
        if wheres:
            prefilter = ast.Or(tuple(dict.fromkeys(wheres)))
    return TracePlan(
        tuple(rules),
        schema,
        trace_key(schema),
        terms,
        tuple(per_trace),
        tuple(correlated),
        tuple(parents),
        tuple(structural),
        tuple(sequences),
        supports,
        prefilter,
    )
