"""Where fluo's time goes on the span-rule benchmark (issue #2): a diagnosis, not a benchmark.

    .venv/bin/python benchmarks/span_rules_profile.py [--spans 5000000] [--reps 3]
        [--out benchmarks/results/span_rules_profile.json]

Runs in one process and reports CPU seconds (user + system, all threads; median of
--reps), which stay meaningful on a shared machine where wall times do not; wall times
are printed too. Uses the dataset cached by span_rules.py (generating it if needed).

1. Per rule: the CPU to decode the columns the rule reads, the CPU to decode them and
   evaluate the rule (fluo's own compiled expression), and the difference (the rule's
   own evaluation cost; a shared column such as the attribute map is decoded once in
   the fused plan, so the decode column is not additive, the rule column nearly is).
2. Plan shapes, all with fluo's compiled rule expressions (`RuleSet.compile(...).span`):
   fluo's span plan `hits` as it is, the same without predicate pushdown, the flags
   computed once in a select and filtered after (no prefilter; only the signal and
   message columns kept), the OR of the whole rules pushed into the scan (the plan
   shape fluo had before 5d0f999: every rule evaluated twice), building the signals
   from the hits, and the whole `evaluate`.
3. fluo's plan, as `explain()` prints it (to the JSON file).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import polars as pl  # noqa: E402
import span_rules  # noqa: E402
import spangen  # noqa: E402

import fluo  # noqa: E402
from fluo.ingest import scan_spans  # noqa: E402
from fluo.schema import SpanSchema  # noqa: E402


def measure(func: Callable[[], object], reps: int) -> dict[str, float]:
    walls, cpus = [], []
    for _ in range(reps):
        c0, t0 = os.times(), time.perf_counter()
        func()
        c1, t1 = os.times(), time.perf_counter()
        walls.append(t1 - t0)
        cpus.append((c1.user - c0.user) + (c1.system - c0.system))
    return {"cpu": statistics.median(cpus), "wall": statistics.median(walls)}


def drain(lf: pl.LazyFrame) -> Callable[[], int]:
    """Run `lf` on the streaming engine, dropping each batch (decode without keeping)."""

    def run() -> int:
        rows = 0
        for batch in lf.collect_batches(engine="streaming", maintain_order=False):
            rows += batch.height
        return rows

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description="Diagnose fluo on the span-rule benchmark")
    parser.add_argument("--spans", type=int, default=5_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=HERE / "data")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "span_rules_profile.json")
    args = parser.parse_args()

    path, _ = spangen.ensure_dataset(args.data_dir, args.spans, args.seed)
    p = str(path)
    rule_set = fluo.load_rules(span_rules.RULES_YAML)
    schema = SpanSchema.of(scan_spans(p))
    checked = {c.name: c for c in rule_set.check(schema)}
    exprs = rule_set.exprs(schema)
    compiled = rule_set.compile(schema)
    plan = getattr(compiled, "span", compiled)  # the span-rule part of the plan
    report: dict[str, object] = {"spans": args.spans, "reps": args.reps}

    print(f"1. per rule, {args.spans:,} spans (CPU seconds, median of {args.reps})")
    print(f"   {'rule':28s} {'decode':>7s} {'+rule':>7s} {'rule':>7s}  columns")
    per_rule = {}
    for name, expr in exprs.items():
        columns = sorted(checked[name].columns)
        base = measure(drain(pl.scan_parquet(p).select(columns)), args.reps)["cpu"]
        full = measure(drain(pl.scan_parquet(p).select(expr)), args.reps)["cpu"]
        per_rule[name] = {"columns": columns, "decode": base, "with_rule": full}
        print(f"   {name:28s} {base:7.2f} {full:7.2f} {full - base:7.2f}  {', '.join(columns)}")
    total = sum(max(0.0, r["with_rule"] - r["decode"]) for r in per_rule.values())
    print(f"   sum of the rule columns: {total:.2f} CPU s")
    report["per_rule"] = per_rule

    names = [f"__rule_{i}" for i in range(len(plan.flags))]
    flags = [f.alias(n) for f, n in zip(plan.flags, names, strict=True)]
    any_rule = functools.reduce(lambda a, b: a | b, plan.flags)
    signal_columns = [c for c in span_rules.SIGNAL_COLUMNS if c in schema.columns]
    message_columns = sorted({c for r in checked.values() for c in r.columns} - {"span_attributes"})
    keep = list(getattr(plan, "kept", dict.fromkeys(signal_columns + message_columns)))
    no_pushdown = pl.QueryOptFlags(predicate_pushdown=False)
    hits = plan.hits(scan_spans(p)).collect(engine="streaming")
    shapes: dict[str, Callable[[], object]] = {
        "bare scan of the plan's columns (decode only)": drain(
            pl.scan_parquet(p).select(plan.columns)
        ),
        "fluo SpanPlan.hits, as compiled": lambda: plan.hits(scan_spans(p)).collect(
            engine="streaming"
        ),
        "fluo SpanPlan.hits, predicate pushdown off": lambda: plan.hits(scan_spans(p)).collect(
            engine="streaming", optimizations=no_pushdown
        ),
        "flags in one select, filter any, no prefilter": lambda: (
            scan_spans(p)
            .select(*keep, *flags)
            .filter(pl.any_horizontal(names))
            .collect(engine="streaming")
        ),
        "OR of the whole rules pushed into the scan, flags again on the hits (old shape)": (
            lambda: (
                scan_spans(p)
                .select(plan.columns)
                .filter(any_rule)
                .with_columns(flags)
                .collect(engine="streaming")
            )
        ),
        "fluo SpanPlan.signals(hits) (messages, long form)": lambda: plan.signals(hits),
        "fluo evaluate (all of it)": lambda: rule_set.evaluate(p),
    }
    print(f"\n2. plan shapes (median of {args.reps}; hits: {hits.height:,} rows, "
          f"{hits.estimated_size() / 1e6:.0f} MB with {len(hits.columns)} columns)")  # fmt: skip
    shape_report = {}
    for label, func in shapes.items():
        m = measure(func, args.reps)
        shape_report[label] = m
        print(f"   {m['cpu']:6.2f} CPU s {m['wall']:6.2f} wall s  {label}", flush=True)
    report["shapes"] = shape_report
    report["hits"] = {"rows": hits.height, "mb": hits.estimated_size() / 1e6,
                      "columns": hits.columns}  # fmt: skip
    report["explain"] = plan.hits(scan_spans(p)).explain(engine="streaming")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"\n3. fluo's plan (explain) and all figures: {args.out}")


if __name__ == "__main__":
    main()
