"""Trace structure for rules over children, descendants, ancestors and siblings.

The spans that structural rules read are collected once per run (the structure
frame) and their parent links resolved ONCE, by one join of (trace, parent id)
with (trace, span id), into row numbers: `Links.parent[i]` is the row of span i's
parent. Walking up a tree is then a gather per level over the spans that are
still moving, never a join: for an aggregate over a relation, the spans that
pass its filter are walked up (children, descendants) or their children followed
down (ancestors), giving (related row, value) pairs that are aggregated per span.
The cost follows the size of the structure frame once plus the matching spans
times the depth of their trees.

Duplicate records of one span id link to the first record (in the structure
frame's order): a child of a duplicated span id has that record as its parent.
A parent id that names no span of the trace ends the walk (orphans); parent
links that form a cycle stop at MAX_DEPTH levels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from fluo import ast
from fluo.compile import Context, lower, lower_condition
from fluo.compile_trace import QUANTILES, TracePlan

MAX_DEPTH = 256
ROW = "__row"
AT = "__at"

Warn = Callable[[str], None]


def ignore(message: str) -> None:
    pass


@dataclass(frozen=True)
class Links:
    """The parent links of a structure frame, as row numbers of that frame."""

    key: str
    ids: pl.DataFrame
    """(key, span_id) of each row of the structure frame."""
    parent: pl.Series
    """Row of each row's parent (its first record); null for roots and orphans."""
    children: pl.DataFrame
    """(__row, __at): each linked row and the row of its parent."""
    first: pl.Series | None = None
    """Row of the first record of each row's span id; None when no linked span id repeats."""

    @property
    def trace(self) -> pl.Series:
        """The trace key of each row."""
        return self.ids.get_column(self.key)

    def rows_of(self, frame: pl.DataFrame, key: str, span_id: str) -> pl.Series:
        """The row of the first record of each (key, span id) of `frame` (null: not found),
        aligned with `frame`'s rows."""
        first = self.ids.with_row_index(ROW).group_by(self.key, "span_id").agg(pl.col(ROW).min())
        wanted = frame.select(pl.col(key).alias(self.key), pl.col(span_id).alias("span_id"))
        found = wanted.join(first, on=[self.key, "span_id"], how="left", maintain_order="left")
        return found.get_column(ROW)


def links(spans: pl.DataFrame, key: str, warn: Warn = ignore) -> Links:
    """Resolve the parent links of `spans` (key, span_id, parent_span_id, ...) to rows."""
    index = pl.get_index_type()
    ids = spans.select(key, "span_id")
    rows = spans.lazy().select(key, "span_id", "parent_span_id").with_row_index(ROW)
    children = (
        rows.drop_nulls("parent_span_id")
        .select(ROW, key, pl.col("parent_span_id").alias("span_id"))
        .join(rows.select(key, "span_id", pl.col(ROW).alias(AT)), on=[key, "span_id"])
        .select(ROW, AT)
        .collect(engine="streaming")
    )
    first = None
    if children.height != children.get_column(ROW).n_unique():  # a parent id repeats
        firsts = ids.with_row_index(ROW).group_by(key, "span_id").agg(pl.col(ROW).min())
        children = children.group_by(ROW).agg(pl.col(AT).min())
        matched = ids.join(firsts, on=[key, "span_id"], how="left", maintain_order="left")
        first = matched.get_column(ROW)
        warn(
            f"{spans.height - firsts.height} duplicate span records (same trace and span id): "
            "structural rules link to the first record of each"
        )
    parent = pl.repeat(None, spans.height, dtype=index, eager=True).scatter(
        children.get_column(ROW), children.get_column(AT)
    )
    return Links(key, ids, parent, children, first)


def relation_table(
    spans: pl.DataFrame,
    agg: ast.Aggregate,
    plan: TracePlan,
    linked: Links,
    warn: Warn = ignore,
) -> pl.DataFrame:
    """(trace key, __related_to, value): the aggregate for each span it relates to.

    `spans` is the structure frame `linked` was resolved from."""
    key, name = plan.key, plan.terms[agg]
    ctx = Context(plan.schema)
    if agg.scope == "siblings":
        counted = lower_condition(agg.where, ctx).sum() if agg.where is not None else pl.len()
        return (
            spans.filter(pl.col("parent_span_id").is_not_null())
            .group_by(key, "parent_span_id")
            .agg(counted.cast(pl.Int64).alias(name))
            .rename({"parent_span_id": "__related_to"})
        )
    if agg.func == "all":
        assert agg.value is not None
        value = lower_condition(agg.value, ctx)
    elif agg.value is not None:
        value = lower(agg.value, ctx)
    else:
        value = pl.lit(True)
    source = spans.with_row_index(ROW)
    if agg.where is not None:
        source = source.filter(lower_condition(agg.where, ctx))
    source = source.select(ROW, value.alias("__v"))
    aggregate = _over_pairs(agg.func).alias(name)
    if agg.scope in ("children", "descendants"):
        # Up the links: every row reached is a parent's first record, one per span id.
        start = linked.parent.gather(source.get_column(ROW))
        pairs = _walk_up(
            source.with_columns(start.alias(AT)), linked, agg.scope == "descendants", warn
        )
        table = pairs.group_by(AT).agg(aggregate)
        at = table.get_column(AT)
        return table.select(
            spans.get_column(key).gather(at).alias(key),
            spans.get_column("span_id").gather(at).alias("__related_to"),
            pl.col(name),
        )
    # Down the links: every record below is reached, so several records of one span id
    # (and a cycle) may be; each source span counts once for each span id it reaches.
    pairs = _walk_down(source, linked, warn)
    at = pairs.get_column(AT)
    return (
        pairs.with_columns(
            spans.get_column(key).gather(at).alias(key),
            spans.get_column("span_id").gather(at).alias("__related_to"),
        )
        .unique([key, "__related_to", "__src"])
        .group_by(key, "__related_to")
        .agg(aggregate)
    )


def _walk_up(start: pl.DataFrame, linked: Links, deep: bool, warn: Warn = ignore) -> pl.DataFrame:
    """(__at, __v): every row reached going up from `start`'s __at (itself included)."""
    frontier = start.select(AT, "__v").drop_nulls(AT)
    found = [frontier]
    depth = 1
    while deep and frontier.height and depth < MAX_DEPTH:
        up = linked.parent.gather(frontier.get_column(AT))
        frontier = frontier.with_columns(up.alias(AT)).drop_nulls(AT)
        found.append(frontier)
        depth += 1
    if deep and frontier.height:
        _too_deep(frontier, linked, warn)
    return pl.concat(found)


def _walk_down(source: pl.DataFrame, linked: Links, warn: Warn = ignore) -> pl.DataFrame:
    """(__at, __v, __src): every row below the rows of `source` (its __row, kept as
    __src), itself excluded."""
    frontier = source.select(pl.col(ROW).alias(AT), "__v", pl.col(ROW).alias("__src"))
    if linked.first is not None:  # the children of a repeated span id hang off its first record
        frontier = frontier.with_columns(linked.first.gather(frontier.get_column(AT)).alias(AT))
    found = []
    depth = 0
    while frontier.height and depth < MAX_DEPTH:
        frontier = frontier.join(linked.children, on=AT).select(
            pl.col(ROW).alias(AT), "__v", "__src"
        )
        found.append(frontier)
        depth += 1
    if frontier.height:
        _too_deep(frontier, linked, warn)
    if not found:
        return frontier
    return pl.concat(found)


def _too_deep(frontier: pl.DataFrame, linked: Links, warn: Warn) -> None:
    traces = linked.trace.gather(frontier.get_column(AT)).n_unique()
    warn(
        f"parent links of {traces} trace(s) form a cycle or a chain deeper than {MAX_DEPTH} "
        "levels; the structure walk stopped there"
    )


def _over_pairs(func: str) -> pl.Expr:
    v = pl.col("__v")
    if func == "count":
        return pl.len().cast(pl.Int64)
    if func == "has":
        return pl.len() > 0
    if func == "missing":
        return pl.len() == 0
    if func == "all":
        return v.all()
    if func == "distinct":
        return v.drop_nulls().n_unique().cast(pl.Int64)
    if func in QUANTILES:
        return v.quantile(QUANTILES[func], interpolation="linear")
    return {"max": v.max, "min": v.min, "sum": v.sum, "avg": v.mean}[func]()


def ancestor_lists(
    candidates: pl.DataFrame, frame: pl.DataFrame, key: str, name: str, warn: Warn = ignore
) -> pl.DataFrame:
    """(key, span_id, __ancestors): the ancestor ids of each candidate of named span `name`.

    `frame` holds (key, span_id, parent_span_id) of every span."""
    linked = links(frame, key, warn)
    source = candidates.select(
        pl.col(f"{name}.{key}").alias(key), pl.col(f"{name}.span_id").alias("span_id")
    ).unique()
    rows = linked.rows_of(source, key, "span_id")
    start = source.with_columns(
        linked.parent.gather(rows).alias(AT), pl.col("span_id").alias("__v")
    )
    pairs = _walk_up(start, linked, True, warn)
    ids = frame.get_column("span_id").gather(pairs.get_column(AT))
    return (
        pairs.with_columns(ids.alias("__related_to"))
        .with_columns(linked.trace.gather(pairs.get_column(AT)).alias(key))
        .group_by(key, pl.col("__v").alias("span_id"))
        .agg(pl.col("__related_to").alias("__ancestors"))
    )
