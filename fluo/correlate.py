"""Correlation rules: rules over the signals of other rules (Sigma's temporal correlation).

`correlate: {rules: [a, b], within: 10m, by: service, count: 1}` fires at a time t when
every listed rule has at least `count` signals with the same `by` value in the window
(t - within, t]. Consecutive firings less than `within` apart are one episode, reported
once, at its first firing. See docs/aggregates.md.
"""

from __future__ import annotations

import polars as pl

from fluo.check import CheckedRule
from fluo.compile import SIGNAL_SCHEMA, default_message
from fluo.printer import format_duration

EXEMPLAR_LIMIT = 5


def correlation_signals(rule: CheckedRule, signals: pl.DataFrame) -> pl.DataFrame:
    """The signals of correlation `rule` over the signals of a run."""
    spec = rule.rule.correlate
    assert spec is not None
    key = pl.col(spec.by).cast(pl.String) if spec.by else pl.lit("", dtype=pl.String)
    rows = (
        signals.filter(pl.col("rule").is_in(list(spec.rules)) & pl.col("time").is_not_null())
        .select("rule", "time", "trace_id", key.alias("__key"))
        .drop_nulls("__key")
        .sort("time")
    )
    if rows.height == 0:
        return pl.DataFrame(schema=SIGNAL_SCHEMA)
    candidates = rows.select("__key", "time").unique().sort("time")
    within = pl.duration(nanoseconds=spec.within)
    enough = []
    for i, name in enumerate(spec.rules):
        own = (
            rows.filter(pl.col("rule") == name)
            .sort("__key", "time")
            .with_columns(pl.int_range(1, pl.len() + 1).over("__key").alias("__cum"))
            .sort("time")
        )
        upto = candidates.join_asof(
            own.select("__key", "time", "__cum"),
            on="time",
            by="__key",
            strategy="backward",
            check_sortedness=False,
        )
        before = candidates.with_columns((pl.col("time") - within).alias("__from")).join_asof(
            own.select("__key", pl.col("time").alias("__from"), "__cum"),
            on="__from",
            by="__key",
            strategy="backward",
            check_sortedness=False,
        )
        counts = upto.get_column("__cum").fill_null(0) - before.get_column("__cum").fill_null(0)
        enough.append((counts >= spec.count).alias(f"__ok{i}"))
    fired = candidates.with_columns(enough).filter(
        pl.all_horizontal(f"__ok{i}" for i in range(len(spec.rules)))
    )
    if fired.height == 0:
        return pl.DataFrame(schema=SIGNAL_SCHEMA)
    gap = pl.col("time").diff().over("__key")
    episodes = (
        fired.sort("__key", "time")
        .with_columns((gap.is_null() | (gap > within)).alias("__new"))
        .filter("__new")
        .select("__key", "time")
    )
    traces = (
        episodes.join(rows.select("__key", pl.col("time").alias("__t"), "trace_id"), on="__key")
        .filter((pl.col("__t") <= pl.col("time")) & (pl.col("__t") > pl.col("time") - within))
        .group_by("__key", "time")
        .agg(pl.col("trace_id").drop_nulls().unique(maintain_order=True).head(EXEMPLAR_LIMIT))
    )
    episodes = episodes.join(traces, on=["__key", "time"], how="left")
    head = rule.message.parts[0] if rule.message and rule.message.parts else None
    text = head if isinstance(head, str) else default_message(rule.rule)
    where = f" for {spec.by} " if spec.by else ""
    times = f"{spec.count}x " if spec.count > 1 else ""
    detail = f" ({', '.join(spec.rules)} {times}within {format_duration(spec.within)}{where}"
    out = episodes.select(
        rule=pl.lit(rule.name, dtype=pl.String),
        severity=pl.lit(rule.rule.severity, dtype=pl.String),
        trace_id=pl.col("trace_id").list.first(),
        span_id=pl.lit(None, dtype=pl.String),
        service=pl.col("__key") if spec.by == "service" else pl.lit(None, dtype=pl.String),
        name=pl.col("__key") if spec.by == "name" else pl.lit(None, dtype=pl.String),
        time=pl.col("time"),
        message=pl.lit(text + detail) + (pl.col("__key") if spec.by else pl.lit("")) + ")",
        evidence=pl.lit([], dtype=pl.List(pl.String)),
        window_start=pl.col("time") - within,
        window_end=pl.col("time"),
        group=(pl.lit(f"{spec.by}=") + pl.col("__key")) if spec.by else pl.lit(None, pl.String),
        value=pl.lit(None, dtype=pl.Float64),
        baseline=pl.lit(None, dtype=pl.Float64),
        threshold=pl.lit(float(spec.count)),
        exemplars=pl.col("trace_id"),
    )
    return out.select([pl.col(c).cast(t) for c, t in SIGNAL_SCHEMA.items()])
