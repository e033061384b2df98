"""Stage 4, windowed aggregates: rules over time windows of spans, as Polars plans. No I/O.

A windowed rule takes the spans that match its `where`, groups them by its `by` keys and
by time windows of their start times, computes its aggregates per (group, window),
reads its baseline, and reports the windows where its condition holds, with exemplar
traces. docs/aggregates.md gives the meaning of every part.

Rules with the same keys and windows form a *family* that shares ONE `group_by`: each
rule's `where` becomes a filter inside its own aggregates, so ten rules over service and
span name cost one grouped pass over the scan, not ten. Rows that read trace context
(`parent.duration`, `root.*`, `trace.*`, `has(...)` over the trace) get it from the
trace plan's per-trace table and parent join, joined lazily before the grouping.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from fluo import ast
from fluo.ast import Expr
from fluo.check import CheckedRule, CheckedWindow, trace_terms, window_aggregates
from fluo.compile import SIGNAL_SCHEMA, Context, lower, lower_condition, message_expression
from fluo.compile_trace import (
    EMPTY_VALUE,
    TracePlan,
    compile_trace_rules,
    term_aggregate,
)
from fluo.errors import CompileError
from fluo.printer import unparse
from fluo.schema import UTC_NS, SpanSchema

#: Window start column of the aggregated tables.
WINDOW = "__w"
#: Row number of each span in the input: exemplars are ranked by number, read by number.
ROW = "__row"
#: Exemplar columns are gathered this many times over, then made unique per trace.
_EXEMPLAR_SPARE = 4


@dataclass(frozen=True)
class Family:
    """Windowed rules that share group keys and windows: one group_by for all of them."""

    by: tuple[Expr, ...]
    size: int
    every: int
    rules: tuple[CheckedRule, ...]

    @property
    def keys(self) -> list[str]:
        return [f"__k{i}" for i in range(len(self.by))]

    @property
    def sliding(self) -> bool:
        return self.every < self.size


@dataclass(frozen=True)
class WindowPlan:
    """Everything needed to evaluate the windowed rules of a rule set on one table."""

    rules: tuple[CheckedRule, ...]
    schema: SpanSchema
    families: tuple[Family, ...]
    #: Column name of each window aggregate (per rule) and of each baseline.
    metrics: Mapping[tuple[str, Expr], str]
    #: Trace context for rows that read it (None when no rule does).
    context: TracePlan | None

    @property
    def needs_baseline_data(self) -> tuple[str, ...]:
        """The rules that compare with a separate baseline data set."""
        return tuple(
            r.name
            for r in self.rules
            if r.window and r.window.spec.baseline and r.window.spec.baseline.kind == "data"
        )

    # -- the aggregated tables ----------------------------------------------------------

    def tables(self, spans: pl.LazyFrame) -> list[pl.LazyFrame]:
        """One lazy table per family: a row per (group, window) with every rule's aggregates."""
        rows = self._with_context(spans)
        return [self._family_table(rows, family) for family in self.families]

    def _with_context(self, spans: pl.LazyFrame) -> pl.LazyFrame:
        """The span table with a column for every trace term the rows read."""
        trace = self.context
        if trace is None:
            return spans
        table = trace.trace_table(spans) if trace.per_trace else None
        out = trace.join_trace_and_parent(spans, table, trace.parent_table(spans))
        return out.with_columns(
            pl.col(trace.terms[t]).fill_null(EMPTY_VALUE[t.func])
            for t in trace.per_trace
            if isinstance(t, ast.Aggregate) and t.func in EMPTY_VALUE
        )

    @functools.cached_property
    def row_ctx(self) -> Context:
        """Lowering context of row-level parts (trace terms read their columns)."""
        return self.context.ctx if self.context is not None else Context(self.schema)

    def _family_rows(self, rows: pl.LazyFrame, family: Family) -> pl.LazyFrame:
        """The spans some rule of the family counts, with key columns and window start(s)."""
        ctx = self.row_ctx
        wheres = [r.window.where if r.window else None for r in family.rules]
        if all(w is not None for w in wheres):
            rows = rows.filter(
                functools.reduce(
                    lambda a, b: a | b, (lower_condition(w, ctx) for w in wheres if w is not None)
                )
            )
        start = lower(ast.Column("start_time", "timestamp"), ctx)
        truncated = start.dt.truncate(f"{family.every}ns")
        if family.sliding:
            steps = family.size // family.every
            window = pl.concat_list(
                [truncated - pl.duration(nanoseconds=i * family.every) for i in range(steps)]
            )
        else:
            window = truncated
        keys = [lower(k, ctx).alias(n) for k, n in zip(family.by, family.keys, strict=True)]
        rows = rows.with_columns(*keys, window.alias(WINDOW))
        return rows.explode(WINDOW) if family.sliding else rows

    def _family_table(self, rows: pl.LazyFrame, family: Family) -> pl.LazyFrame:
        """One group_by for the family: every rule's count and aggregates. (Percentiles
        are Polars' own grouped quantiles: measured with Polars 2.1, sharing one sorted
        list per group between several percentiles was slower, even for five.)"""
        ctx = self.row_ctx
        aggs: dict[str, pl.Expr] = {}
        for rule in family.rules:
            window = _window(rule)
            seconds = window.spec.size / 1e9
            where = lower_condition(window.where, ctx) if window.where is not None else None
            count = where.sum() if where is not None else pl.len()
            aggs[self.count_column(rule)] = count.cast(pl.Int64)
            for agg in _rule_window_aggregates(rule):
                name = self.metrics[(rule.name, agg)]
                aggs[name] = _window_aggregate(agg, window.where, ctx, seconds)
        return (
            self._family_rows(rows, family)
            .group_by([*family.keys, WINDOW])
            .agg([expr.alias(name) for name, expr in aggs.items()])
        )

    def rankings(self, family: Family) -> list[Ranking]:
        """How the family's rules pick exemplars; rules that select and rank spans alike
        share one ranking (one top-k per group and window)."""
        ctx = self.row_ctx
        found: dict[tuple[Expr | None, bool, Expr], list[CheckedRule]] = {}
        for rule in family.rules:
            window = _window(rule)
            if window.spec.exemplars:
                key = (window.where, _reads_errors(rule), _exemplar_value(rule, ctx))
                found.setdefault(key, []).append(rule)
        return [
            Ranking(
                where,
                errors,
                value,
                tuple(r.name for r in members),
                max(_window(r).spec.exemplars for r in members) * _EXEMPLAR_SPARE,
            )
            for (where, errors, value), members in found.items()
        ]

    def candidates(self, spans: pl.LazyFrame, family: int, fired: pl.DataFrame) -> pl.LazyFrame:
        """The row numbers of the exemplar candidates of the windows that fired, one list
        column `__x<j>` per ranking: a second pass that ranks only the spans of those
        (group, window)s, so its cost follows what fired, not the whole input."""
        fam = self.families[family]
        ctx = self.row_ctx
        on = [*fam.keys, WINDOW]
        windows = fired.select(on).unique()
        rows = self._family_rows(self._with_context(spans.with_row_index(ROW)), fam)
        rows = rows.join(windows.lazy(), on=on, how="semi", nulls_equal=True)
        aggs = [r.candidates(ctx).alias(f"__x{j}") for j, r in enumerate(self.rankings(fam))]
        if not aggs:
            return windows.lazy()
        return rows.group_by(on).agg(aggs)

    def exemplar_rows(self, spans: pl.LazyFrame, fired: Sequence[pl.DataFrame]) -> pl.LazyFrame:
        """(row number, trace id, span id) of every exemplar candidate of the windows that
        fired: the second, targeted read (only two id columns, only those rows kept)."""
        wanted = [
            f.get_column(c).explode() for f in fired for c in f.columns if c.startswith("__x")
        ]
        rows = pl.concat(wanted).drop_nulls().unique() if wanted else pl.Series([], dtype=pl.UInt32)
        return (
            spans.with_row_index(ROW)
            .filter(pl.col(ROW).is_in(rows.implode()))
            .select(ROW, "trace_id", "span_id")
        )

    def count_column(self, rule: CheckedRule) -> str:
        return f"__n{self.rules.index(rule)}"

    # -- baselines, conditions, signals -------------------------------------------------

    def judged(
        self, family: int, table: pl.DataFrame, baseline: pl.DataFrame | None = None
    ) -> pl.DataFrame:
        """The family's table completed: empty windows where a rule judges them, and the
        baseline column of every `baseline(...)` the rules read."""
        fam = self.families[family]
        table = self._complete(fam, table)
        for rule in fam.rules:
            spec = _window(rule).spec
            for base in _baselines(rule):
                assert isinstance(base.value, ast.Aggregate)
                source = self.metrics[(rule.name, base.value)]
                masked = pl.when(pl.col(self.count_column(rule)) >= spec.min_count).then(
                    pl.col(source)
                )
                name = self.metrics[(rule.name, base)]
                table = _with_baseline(table, fam, spec, masked, name, baseline)
        return table

    def _complete(self, fam: Family, table: pl.DataFrame) -> pl.DataFrame:
        """Add the windows without spans, for rules with `min_count: 0` (count 0, no value).

        A group's windows run from its first window to the last window of the table.
        """
        if not any(_window(r).spec.min_count == 0 for r in fam.rules) or table.height == 0:
            return table
        last = table.get_column(WINDOW).max()
        firsts = table.group_by(fam.keys).agg(pl.col(WINDOW).min().alias("__first"))
        grid = firsts.select(
            *fam.keys,
            pl.datetime_ranges(
                "__first", pl.lit(last, dtype=UTC_NS), interval=f"{fam.every}ns"
            ).alias(WINDOW),
        ).explode(WINDOW)
        full = grid.join(table, on=[*fam.keys, WINDOW], how="left", nulls_equal=True)
        fills = []
        for rule in fam.rules:
            fills.append(pl.col(self.count_column(rule)).fill_null(0))
            for agg in _rule_window_aggregates(rule):
                empty = 0 if agg.func in ("count", "rate") else EMPTY_VALUE.get(agg.func)
                if empty is not None:
                    fills.append(pl.col(self.metrics[(rule.name, agg)]).fill_null(empty))
        return full.with_columns(fills)

    def fired(self, family: int, table: pl.DataFrame) -> pl.DataFrame:
        """The rows of a family's judged table where some rule holds: `__rule` names it."""
        fam = self.families[family]
        frames = []
        for rule in fam.rules:
            window = _window(rule)
            local = self._local_rule(rule, fam)
            ctx = self._table_ctx(rule, fam, table)
            enough = pl.col(self.count_column(rule)) >= window.spec.min_count
            rows = table.filter(enough & lower_condition(local.predicate, ctx))
            frames.append(rows.with_columns(pl.lit(rule.name).alias("__rule")))
        return pl.concat(frames, how="diagonal_relaxed") if frames else table.head(0)

    def signals(
        self, family: int, fired: pl.DataFrame, ids: pl.DataFrame | None = None
    ) -> list[pl.DataFrame]:
        """The signals of each rule of a family from its fired rows; `ids` maps the row
        numbers of exemplar candidates to their trace and span ids."""
        fam = self.families[family]
        rankings = self.rankings(fam)
        frames = []
        for rule in fam.rules:
            rows = fired.filter(pl.col("__rule") == rule.name)
            if rows.height == 0:
                continue
            j = next((j for j, r in enumerate(rankings) if rule.name in r.rules), None)
            if j is not None and ids is not None:
                rows = _with_exemplars(rows, f"__x{j}", ids)
            local = self._local_rule(rule, fam)
            ctx = self._table_ctx(rule, fam, rows)
            frames.append(self._signal_rows(rule, local, fam, rows, ctx))
        return frames

    def _local_rule(self, rule: CheckedRule, fam: Family) -> CheckedRule:
        """The rule with its group keys replaced by the key columns of the table."""
        keys = {k: ast.Column(n, "key") for k, n in zip(fam.by, fam.keys, strict=True)}

        def swap(node: Expr) -> Expr:
            if node in keys:
                return keys[node]
            if isinstance(node, ast.Aggregate | ast.Baseline):
                return node
            return ast.map_children(node, swap)

        message = rule.message
        if message is not None:
            message = ast.Template(
                tuple(p if isinstance(p, str) else swap(p) for p in message.parts),
                pos=message.pos,
            )
        return dataclasses.replace(rule, predicate=swap(rule.predicate), message=message)

    def _table_ctx(self, rule: CheckedRule, fam: Family, table: pl.DataFrame) -> Context:
        terms = {node: name for (owner, node), name in self.metrics.items() if owner == rule.name}
        types = {name: table.schema[name] for name in terms.values() if name in table.schema}
        types |= {k: table.schema[k] for k in fam.keys}
        return Context(self.schema, terms, types)

    def _signal_rows(
        self,
        rule: CheckedRule,
        local: CheckedRule,
        fam: Family,
        rows: pl.DataFrame,
        ctx: Context,
    ) -> pl.DataFrame:
        window = _window(rule)
        shown = window_aggregates(local.predicate)
        value_node: Expr | None = shown[0] if shown else None
        value = _reported(value_node, ctx)
        base_node = next(
            (b for b in _baselines(rule) if b.value == value_node),
            None,
        )
        baseline = _reported(base_node, ctx)
        threshold = _reported(_threshold(local.predicate, value_node), ctx)
        limit = window.spec.exemplars
        traces = pl.lit(None, dtype=pl.List(pl.String))
        spans = pl.lit(None, dtype=pl.List(pl.String))
        if limit and "__traces" in rows.columns:  # exemplar candidates, best first
            traces = pl.col("__traces").list.unique(maintain_order=True).list.head(limit)
            spans = pl.col("__spans").list.head(limit)
        labels = [_key_label(k) for k in window.spec.by]
        group = (
            pl.concat_str(
                [
                    pl.lit(f"{label}=") + pl.col(k).cast(pl.String).fill_null("null")
                    for label, k in zip(labels, fam.keys, strict=True)
                ],
                separator=", ",
            )
            if fam.keys
            else pl.lit("", dtype=pl.String)
        )
        message = (
            message_expression(local, ctx)
            if local.message is not None
            else _default_message(rule, value_node, value, baseline, threshold)
        )
        service = _key_column(window.by, fam.keys, "service_name")
        name = _key_column(window.by, fam.keys, "name")
        out = rows.select(
            rule=pl.lit(rule.name, dtype=pl.String),
            severity=pl.lit(rule.rule.severity, dtype=pl.String),
            trace_id=traces.list.first(),
            span_id=spans.list.first(),
            service=service,
            name=name,
            time=pl.col(WINDOW).cast(UTC_NS),
            message=message,
            evidence=spans,
            window_start=pl.col(WINDOW).cast(UTC_NS),
            window_end=(pl.col(WINDOW) + pl.duration(nanoseconds=window.spec.size)).cast(UTC_NS),
            group=group,
            value=value,
            baseline=baseline,
            threshold=threshold,
            exemplars=traces,
        )
        return out.select([pl.col(c).cast(t) for c, t in SIGNAL_SCHEMA.items()])


@dataclass(frozen=True)
class Ranking:
    """Which spans are exemplars of a window: those `where` selects, failed ones first if
    `errors_first`, then by `value`, highest first; `k` candidates."""

    where: Expr | None
    errors_first: bool
    value: Expr
    rules: tuple[str, ...]
    k: int

    def candidates(self, ctx: Context) -> pl.Expr:
        """The row numbers of the top `k` spans of a group and window (an aggregation)."""
        value = lower(self.value, ctx)
        order = [value.fill_null(float("-inf"))]
        if self.errors_first:
            order.insert(0, pl.col("status_code").cast(pl.String) == "ERROR")
        rows = pl.col(ROW)
        if self.where is not None:
            where = lower_condition(self.where, ctx)
            rows, order = rows.filter(where), [o.filter(where) for o in order]
        return rows.top_k_by(order, k=self.k)


def _with_exemplars(rows: pl.DataFrame, column: str, ids: pl.DataFrame) -> pl.DataFrame:
    """`rows` with `__traces` and `__spans`: the ids of the row numbers in `column`, in order."""
    numbered = rows.with_row_index("__signal")
    found = (
        numbered.select("__signal", pl.col(column).alias(ROW))
        .explode(ROW)
        .join(ids, on=ROW, how="inner", maintain_order="left")
        .group_by("__signal", maintain_order=True)
        .agg(pl.col("trace_id").alias("__traces"), pl.col("span_id").alias("__spans"))
    )
    return numbered.join(found, on="__signal", how="left", maintain_order="left").drop("__signal")


def _window(rule: CheckedRule) -> CheckedWindow:
    if rule.window is None:
        raise CompileError(f"rule {rule.name} is not a windowed rule")
    return rule.window


def _rule_window_aggregates(rule: CheckedRule) -> list[ast.Aggregate]:
    """Every window aggregate a rule reads (condition, message and baselines), once."""
    parts: list[Expr] = [rule.predicate]
    if rule.message is not None:
        parts += [p for p in rule.message.parts if not isinstance(p, str)]
    found: list[ast.Aggregate] = []
    for part in parts:
        for node in ast.walk(part):
            if isinstance(node, ast.Aggregate) and node.scope == ast.WINDOW_SCOPE:
                found.append(node)
    return list(dict.fromkeys(found))


def _baselines(rule: CheckedRule) -> list[ast.Baseline]:
    parts: list[Expr] = [rule.predicate]
    if rule.message is not None:
        parts += [p for p in rule.message.parts if not isinstance(p, str)]
    found = [n for part in parts for n in ast.walk(part) if isinstance(n, ast.Baseline)]
    return list(dict.fromkeys(found))


def _both(a: Expr | None, b: Expr | None) -> Expr | None:
    parts = [x for x in (a, b) if x is not None]
    return None if not parts else parts[0] if len(parts) == 1 else ast.And(tuple(parts))


def _window_aggregate(
    agg: ast.Aggregate, where: Expr | None, ctx: Context, seconds: float
) -> pl.Expr:
    """One window aggregate inside the family's group_by, over the spans that meet both
    the rule's `where` and the aggregate's own condition."""
    both = _both(where, agg.where)
    if agg.func == "rate":
        matched = lower_condition(both, ctx).sum() if both is not None else pl.len()
        return matched.cast(pl.Float64) / seconds
    if agg.func == "ratio":
        assert agg.where is not None
        matched = lower_condition(both, ctx).sum() if both is not None else pl.len()
        total = lower_condition(where, ctx).sum() if where is not None else pl.len()
        return pl.when(total > 0).then(matched.cast(pl.Float64) / total)
    return term_aggregate(dataclasses.replace(agg, where=both), ctx)


def _with_baseline(
    table: pl.DataFrame,
    fam: Family,
    spec: ast.Window,
    masked: pl.Expr,
    name: str,
    baseline: pl.DataFrame | None,
) -> pl.DataFrame:
    """`table` with column `name`: the baseline of the masked metric, per its spec."""
    base = spec.baseline
    assert base is not None
    keys = fam.keys
    if base.kind == "previous":
        span = f"{base.windows * fam.every}ns"
        ordered = table.sort([*keys, WINDOW], nulls_last=True)
        median = masked.rolling_median_by(WINDOW, window_size=span, closed="left", min_samples=1)
        return ordered.with_columns((median.over(keys) if keys else median).alias(name))
    if base.kind == "offset":
        earlier = table.select(
            *keys,
            (pl.col(WINDOW) + pl.duration(nanoseconds=base.offset)).alias(WINDOW),
            masked.alias(name),
        )
        return table.join(earlier, on=[*keys, WINDOW], how="left", nulls_equal=True)
    if baseline is None:
        return table.with_columns(pl.lit(None, dtype=pl.Float64).alias(name))
    medians = baseline.group_by(keys or pl.lit(0).alias("__all")).agg(masked.median().alias(name))
    if not keys:
        return table.with_columns(pl.lit(medians.get_column(name).first()).alias(name))
    return table.join(medians, on=keys, how="left", nulls_equal=True)


def _exemplar_value(rule: CheckedRule, ctx: Context) -> Expr:
    """What makes a span a good exemplar: the numeric value the rule aggregates first, else
    its duration (rules that rank alike share one ranking)."""
    for agg in window_aggregates(rule.predicate):
        if (
            agg.value is not None
            and agg.func not in ("all", "distinct")
            and ctx.dtype_of(lower(agg.value, ctx)).is_numeric()
        ):
            return agg.value
    return ast.Column("duration_ns", "duration")


def _reads_errors(rule: CheckedRule) -> bool:
    return any(
        isinstance(n, ast.Column) and n.name == "status_code"
        for agg in window_aggregates(rule.predicate)
        for n in ast.walk(agg)
    )


def _is_duration(node: Expr | None) -> bool:
    """Whether a resolved window-level expression is a duration (reported in ms)."""
    match node:
        case ast.Duration():
            return True
        case ast.Column(type=t):
            return t == "duration"
        case ast.Aggregate(func=func, value=value):
            return func not in ("count", "rate", "ratio", "distinct") and _is_duration(value)
        case ast.Baseline(value=value) | ast.Neg(operand=value) | ast.Related(value=value):
            return _is_duration(value)
        case ast.Arith(op=op, left=a, right=b):
            if op in "+-%":
                return _is_duration(a) or _is_duration(b)
            if op == "*":
                return _is_duration(a) != _is_duration(b)
            return _is_duration(a) and not _is_duration(b)
        case ast.Call(func="abs", args=(arg,)):
            return _is_duration(arg)
    return False


def _reported(node: Expr | None, ctx: Context) -> pl.Expr:
    """A number for the signal's value/baseline/threshold columns (durations in ms)."""
    if node is None:
        return pl.lit(None, dtype=pl.Float64)
    value = lower(node, ctx).cast(pl.Float64)
    return value / 1e6 if _is_duration(node) else value


def _threshold(predicate: Expr, value: Expr | None) -> Expr | None:
    """The other side of the first comparison that reads the reported aggregate."""
    if value is None:
        return None
    for node in ast.walk(predicate):
        if isinstance(node, ast.Compare):
            if value in window_aggregates(node.left):
                return node.right
            if value in window_aggregates(node.right):
                return node.left
    return None


def _key_label(key: Expr) -> str:
    """How a group key is named in the `group` column: `service`, `parent.service`,
    `route` for `span.attributes["route"]`, `resource.k8s.namespace`."""
    if isinstance(key, ast.Attribute):
        return key.key if key.scope == "span" else f"resource.{key.key}"
    text = unparse(key)
    return text[len("span.") :] if text.startswith("span.") else text


def _key_column(by: Sequence[Expr], names: Sequence[str], column: str) -> pl.Expr:
    for key, name in zip(by, names, strict=True):
        if isinstance(key, ast.Column) and key.name == column:
            return pl.col(name).cast(pl.String)
    return pl.lit(None, dtype=pl.String)


def _default_message(
    rule: CheckedRule,
    node: Expr | None,
    value: pl.Expr,
    baseline: pl.Expr,
    threshold: pl.Expr,
) -> pl.Expr:
    """`<title>: <aggregate> = <value> (baseline b, threshold t)`, durations in ms."""
    head = rule.rule.title or rule.rule.description or rule.name
    unit = "ms" if _is_duration(node) else ""
    shown = window_aggregates(rule.rule.predicate)  # as written (unresolved)
    what = unparse(shown[0]) if shown else "value"

    def number(expr: pl.Expr) -> pl.Expr:
        return expr.round(4).cast(pl.String).fill_null("none") + pl.lit(unit)

    return pl.concat_str(
        pl.lit(f"{head}: {what} = "),
        number(value),
        pl.lit(" (baseline "),
        number(baseline),
        pl.lit(", threshold "),
        number(threshold),
        pl.lit(")"),
    )


# --- planning -----------------------------------------------------------------------------


def compile_window_rules(rules: Sequence[CheckedRule], schema: SpanSchema) -> WindowPlan:
    """Group windowed rules into families, name their aggregates and their trace context."""
    families: dict[tuple[tuple[Expr, ...], int, int], list[CheckedRule]] = {}
    metrics: dict[tuple[str, Expr], str] = {}
    row_parts: list[Expr] = []
    for i, rule in enumerate(rules):
        window = _window(rule)
        spec = window.spec
        families.setdefault((window.by, spec.size, spec.every), []).append(rule)
        for j, agg in enumerate(_rule_window_aggregates(rule)):
            metrics[(rule.name, agg)] = f"__m{i}_{j}"
            for part in (agg.value, agg.where):
                if part is not None:
                    row_parts.append(part)
        for j, base in enumerate(_baselines(rule)):
            metrics[(rule.name, base)] = f"__b{i}_{j}"
        row_parts += list(window.by)
        if window.where is not None:
            row_parts.append(window.where)
    context = None
    if any(trace_terms(p) for p in row_parts):
        carrier = [
            CheckedRule(ast.Rule(f"__row{i}", part), part, None, frozenset(), window=None)
            for i, part in enumerate(row_parts)
            if trace_terms(part)
        ]
        context = compile_trace_rules(carrier, schema)
        if context.correlated or context.structural or context.sequences:
            raise CompileError(
                "windowed rules can read trace aggregates, trace.*, root.* and parent.*; "
                "aggregates over children, descendants, siblings or this. are not supported"
            )
    grouped = tuple(
        Family(by, size, every, tuple(members)) for (by, size, every), members in families.items()
    )
    return WindowPlan(tuple(rules), schema, grouped, metrics, context)
