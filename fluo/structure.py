"""Trace structure for rules over children, descendants, ancestors and siblings.

Spans are linked by (trace, parent id). For an aggregate over a relation, the
spans that pass its filter are walked up (children, descendants) or down
(ancestors) the links, one level per join, giving (related span, value) pairs
that are then aggregated per span. Only the filtered spans are walked, so the
cost follows the number of matching spans times the depth of the trees, not the
size of the table. Duplicate span records are linked once (the first is kept).
A parent id that names no span of the trace ends the walk (orphans); parent
links that form a cycle stop at MAX_DEPTH levels.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from fluo import ast
from fluo.compile import Context, lower, lower_condition
from fluo.compile_trace import QUANTILES, TracePlan

MAX_DEPTH = 256

Warn = Callable[[str], None]


def ignore(message: str) -> None:
    pass


def links(spans: pl.DataFrame, key: str, warn: Warn = ignore) -> pl.DataFrame:
    """(trace key, span id, parent id), one row per span id (the first record of duplicates)."""
    linked = spans.select(key, "span_id", "parent_span_id").unique(
        subset=[key, "span_id"], keep="first", maintain_order=False
    )
    if (duplicates := spans.height - linked.height) > 0:
        warn(
            f"{duplicates} duplicate span records (same trace and span id): "
            "structural rules use the first record of each"
        )
    return linked


def relation_table(
    spans: pl.DataFrame,
    agg: ast.Aggregate,
    plan: TracePlan,
    linked: pl.DataFrame,
    warn: Warn = ignore,
) -> pl.DataFrame:
    """(trace key, __related_to, value): the aggregate for each span it relates to."""
    key, name = plan.key, plan.terms[agg]
    ctx = Context(plan.schema)
    if agg.scope == "siblings":
        assert agg.where is not None
        return (
            spans.filter(pl.col("parent_span_id").is_not_null())
            .group_by(key, "parent_span_id")
            .agg(lower_condition(agg.where, ctx).sum().cast(pl.Int64).alias(name))
            .rename({"parent_span_id": "__related_to"})
        )
    source = spans.filter(lower_condition(agg.where, ctx)) if agg.where is not None else spans
    if agg.func == "all":
        assert agg.value is not None
        value = lower_condition(agg.value, ctx)
    elif agg.value is not None:
        value = lower(agg.value, ctx)
    else:
        value = pl.lit(True)
    source = source.select(key, "span_id", "parent_span_id", value.alias("__v"))
    if agg.scope in ("children", "descendants"):
        pairs = _walk_up(source, linked, key, agg.scope == "descendants", warn)
    else:
        pairs = _walk_down(source, linked, key, warn)
    return pairs.group_by(key, "__related_to").agg(_over_pairs(agg.func).alias(name))


def _walk_up(
    source: pl.DataFrame, linked: pl.DataFrame, key: str, deep: bool, warn: Warn = ignore
) -> pl.DataFrame:
    frontier = source.select(key, pl.col("parent_span_id").alias("__related_to"), "__v").filter(
        pl.col("__related_to").is_not_null()
    )
    found = [frontier]
    depth = 1
    while deep and frontier.height and depth < MAX_DEPTH:
        frontier = (
            frontier.join(linked, left_on=[key, "__related_to"], right_on=[key, "span_id"])
            .select(key, pl.col("parent_span_id").alias("__related_to"), "__v")
            .filter(pl.col("__related_to").is_not_null())
        )
        found.append(frontier)
        depth += 1
    if deep and frontier.height:
        _too_deep(frontier, key, warn)
    return pl.concat(found)


def _too_deep(frontier: pl.DataFrame, key: str, warn: Warn) -> None:
    traces = frontier.select(pl.col(key).n_unique()).item()
    warn(
        f"parent links of {traces} trace(s) form a cycle or a chain deeper than {MAX_DEPTH} "
        "levels; the structure walk stopped there"
    )


def _walk_down(
    source: pl.DataFrame, linked: pl.DataFrame, key: str, warn: Warn = ignore
) -> pl.DataFrame:
    children = linked.filter(pl.col("parent_span_id").is_not_null())
    frontier = source.select(key, pl.col("span_id").alias("__from"), "__v")
    found = []
    depth = 0
    while frontier.height and depth < MAX_DEPTH:
        frontier = frontier.join(
            children, left_on=[key, "__from"], right_on=[key, "parent_span_id"]
        ).select(key, pl.col("span_id").alias("__from"), "__v")
        found.append(frontier.rename({"__from": "__related_to"}))
        depth += 1
    if frontier.height:
        _too_deep(frontier, key, warn)
    if not found:
        return frontier.rename({"__from": "__related_to"})
    return pl.concat(found)


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
    candidates: pl.DataFrame, linked: pl.DataFrame, key: str, name: str, warn: Warn = ignore
) -> pl.DataFrame:
    """(key, span_id, __ancestors): the ancestor ids of each candidate of named span `name`."""
    linked = links(linked, key, warn)
    source = candidates.select(
        pl.col(f"{name}.{key}").alias(key),
        pl.col(f"{name}.span_id").alias("span_id"),
        pl.col(f"{name}.parent_span_id").alias("parent_span_id"),
        pl.col(f"{name}.span_id").alias("__v"),
    ).unique(subset=[key, "span_id"])
    pairs = _walk_up(source, linked, key, True, warn)
    return pairs.group_by(key, pl.col("__v").alias("span_id")).agg(
        pl.col("__related_to").alias("__ancestors")
    )
