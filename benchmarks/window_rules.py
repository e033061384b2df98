"""Windowed aggregate rules (issue #4): fluo vs a bare scan and expert DuckDB SQL.

    .venv/bin/python benchmarks/window_rules.py                  # 5M spans, 5 runs
    .venv/bin/python benchmarks/window_rules.py --spans 200000 --runs 1

The 10 rules of benchmarks/window_rules.yaml (5-minute windows by service and span
name: p50/p95/p99, avg, max, counts, rate, error rates, two baselines over the previous
hour) run on the same Parquet file by:

* scan: `scan_parquet(...).select(<the 6 columns the rules read>).collect()`, the floor;
* fluo: `fluo.evaluate(rules, path)`, signals with exemplar traces (fluo_no_exemplars:
  the same rules with `exemplars: 0`); reading and checking the rules is timed too;
* duckdb: one GROUP BY with FILTER aggregates, the baselines as window functions
  (median over the previous hour's windows), one UNION ALL of the 10 conditions
  (duckdb_exemplars: plus the exemplar traces in SQL); as many threads as cores, UTC.

Each variant runs `--runs` times, round-robin, each run in a fresh process
(benchmarks/harness.py: `spawn` / `run_case`, like the other benchmarks here), after the
file is read once into the page cache; medians are reported, and the ratios are of
medians measured in the same invocation. Signals must agree: every variant's (rule,
service, name, window start), as `rulespecs.window_ids`, is compared with fluo's
(`harness.agreement`), and a variant that disagrees is reported as such, without a
figure. Results: benchmarks/results/window_rules_<spans>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # fluo from this checkout, spangen, harness

import harness  # noqa: E402

RULES = HERE / "window_rules.yaml"
COLUMNS = ["service_name", "name", "kind", "start_time", "duration_ns", "status_code"]

SQL = """
WITH windows AS (
  SELECT service_name AS s, name AS n, time_bucket(INTERVAL '5 minutes', start_time) AS w,
    count(*) AS cnt,
    count(*) FILTER (WHERE status_code = 'ERROR') AS errs,
    quantile_cont(duration_ns, 0.95) AS p95,
    quantile_cont(duration_ns, 0.99) AS p99,
    avg(duration_ns) AS avg_d,
    max(duration_ns) AS max_d,
    count(*) FILTER (WHERE kind = 'SERVER') AS cnt_server,
    quantile_cont(duration_ns, 0.5) FILTER (WHERE kind = 'SERVER') AS p50_server{exemplars}
  FROM read_parquet('{path}')
  GROUP BY ALL
), judged AS (
  SELECT *, errs / cnt AS err_rate,
    median(CASE WHEN cnt >= 20 THEN avg_d END) OVER previous_hour AS avg_base,
    median(CASE WHEN cnt >= 50 THEN errs / cnt END) OVER previous_hour AS err_base
  FROM windows
  WINDOW previous_hour AS (
    PARTITION BY s, n ORDER BY w
    RANGE BETWEEN INTERVAL 60 MINUTES PRECEDING AND INTERVAL 1 MICROSECONDS PRECEDING)
)
SELECT 'p95_latency' AS rule, s, n, w FROM judged WHERE cnt >= 20 AND p95 > 500e6
UNION ALL SELECT 'avg_latency_up', s, n, w FROM judged WHERE cnt >= 20 AND avg_d - avg_base > 20e6
UNION ALL SELECT 'error_rate', s, n, w FROM judged WHERE cnt >= 20 AND err_rate > 0.05
UNION ALL SELECT 'busy', s, n, w FROM judged WHERE cnt > 5000
UNION ALL SELECT 'p99_latency', s, n, w FROM judged WHERE cnt >= 20 AND p99 > 2e9
UNION ALL SELECT 'max_latency', s, n, w FROM judged WHERE max_d > 10e9
UNION ALL SELECT 'many_errors', s, n, w FROM judged WHERE errs > 30
UNION ALL SELECT 'high_rate', s, n, w FROM judged WHERE cnt / 300.0 > 10
UNION ALL SELECT 'server_median', s, n, w FROM judged WHERE cnt_server >= 20 AND p50_server > 150e6
UNION ALL SELECT 'error_rate_up', s, n, w FROM judged
  WHERE cnt >= 50 AND err_rate > 3 * err_base AND err_rate > 0.01
"""


#: The exemplars fluo reports, in SQL: the top 5 traces of each group and window by
#: duration, failed spans first for the error rules, server spans for server_median.
EXEMPLARS = """,
    arg_max(trace_id, duration_ns, 5) AS slowest,
    arg_max(trace_id, (status_code = 'ERROR')::BIGINT * 1000000000000000 + duration_ns, 5)
      AS failed,
    arg_max(trace_id, duration_ns, 5) FILTER (WHERE kind = 'SERVER') AS slowest_server"""


VARIANTS = ("scan", "fluo", "fluo_no_exemplars", "duckdb", "duckdb_exemplars")


def build_case(name: str, path: str) -> tuple[Any, Any]:
    """(a zero-argument callable doing one run of variant `name`, a function turning its
    result into (rule, id) pairs after the timing, or None)."""
    import polars as pl
    import rulespecs

    if name == "scan":
        return (lambda: pl.scan_parquet(path).select(COLUMNS).collect().height), None
    if name in ("fluo", "fluo_no_exemplars"):
        import fluo

        def run_fluo() -> pl.DataFrame:
            text = RULES.read_text()
            if name == "fluo_no_exemplars":
                text = text.replace("    window: 5m\n", "    window: 5m\n    exemplars: 0\n")
            return fluo.evaluate(fluo.load_rules(text), path).signals

        return run_fluo, lambda signals: rulespecs.window_ids(
            signals.select(rulespecs.WINDOW_SIGNAL)
        )
    if name in ("duckdb", "duckdb_exemplars"):
        exemplars = EXEMPLARS if name == "duckdb_exemplars" else ""
        sql = SQL.format(path=path, exemplars=exemplars)

        def run_duckdb() -> pl.DataFrame:
            con = harness.duckdb_connection(threads=os.cpu_count() or 2)
            frame = con.sql(sql).pl()
            con.close()
            return frame

        def pairs(frame: pl.DataFrame) -> pl.DataFrame:
            names = dict(zip(frame.columns, rulespecs.WINDOW_SIGNAL, strict=True))
            return rulespecs.window_ids(frame.rename(names))

        return run_duckdb, pairs
    raise SystemExit(f"unknown variant {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.add_run_options(parser, runs=5, quiet_wait=0.0)
    harness.add_child_options(parser)
    args = parser.parse_args()
    if args.case:
        func, answer = build_case(args.case, args.data)
        harness.run_case(args.case, func, args.dump, answer)
        return
    import spangen

    path, _ = spangen.ensure_dataset(HERE / "data", args.spans, 7)
    load = harness.load_average()
    errors: dict[str, str] = {}  # a variant whose run failed is not run again
    differences: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="window_rules_") as tmp:
        dumps = Path(tmp)  # the scan returns a row count: run_case dumps nothing for it
        runs = harness.measure(
            Path(__file__),
            VARIANTS,
            path,
            args.runs,
            dumps=dumps,
            quiet_wait=args.quiet_wait,
            errors=errors,
            log=False,
        )
        reference = dumps / "fluo.parquet"
        for name in VARIANTS:
            theirs = dumps / f"{name}.parquet"
            if name not in ("scan", "fluo") and reference.exists() and theirs.exists():
                diff = harness.agreement(reference, theirs)
                if diff:
                    differences[name] = diff
        answered = reference.exists()
        signals = harness.per_rule_counts(reference) if answered else {}
    agree = answered and not differences and not errors
    summary = {name: harness.summarize(rs) for name, rs in runs.items() if rs}
    medians = {name: s["median_s"] for name, s in summary.items()}

    def over(a: str, b: str, checked: bool = True) -> float | None:
        if (checked and not agree) or a not in medians or b not in medians:
            return None
        return medians[a] / medians[b]

    report: dict[str, Any] = {
        "spans": args.spans,
        "runs": args.runs,
        "machine": harness.machine_info() | {"load_before": load},
        "seconds": medians,
        "cpu_seconds": {name: s["median_cpu_s"] for name, s in summary.items()},
        "peak_mb": {name: s["median_peak_mb"] for name, s in summary.items()},
        "fluo_over_scan": over("fluo", "scan", checked=False),
        "duckdb_over_fluo": over("duckdb", "fluo"),
        "duckdb_exemplars_over_fluo": over("duckdb_exemplars", "fluo"),
        "duckdb_over_fluo_no_exemplars": over("duckdb", "fluo_no_exemplars"),
        "signals": sum(signals.values()),
        "signals_per_rule": signals,
        "agree": agree,
        "variants": summary,
    }
    if differences:
        report["differences"] = differences
    if errors:
        report["errors"] = errors
    out = HERE / "results" / f"window_rules_{args.spans}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "variants"}, indent=2))


if __name__ == "__main__":
    main()
