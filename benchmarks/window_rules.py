"""Windowed aggregate rules (issue #4): fluo vs a bare scan and expert DuckDB SQL.

    .venv/bin/python benchmarks/window_rules.py                  # 5M spans, 5 runs
    .venv/bin/python benchmarks/window_rules.py --spans 200000 --runs 1

The 10 rules of benchmarks/window_rules.yaml (5-minute windows by service and span
name: p50/p95/p99, avg, max, counts, rate, error rates, two baselines over the previous
hour) run on the same Parquet file by:

* scan: `scan_parquet(...).select(<the 6 columns the rules read>).collect()`, the floor;
* fluo: `fluo.evaluate(rules, path)`, signals with exemplar traces;
* duckdb: one GROUP BY with FILTER aggregates, the baselines as window functions
  (median over the previous hour's windows), one UNION ALL of the 10 conditions.

Each variant runs `--runs` times, round-robin, in this process; medians are reported,
and the ratios are of medians measured in the same run. Signals must agree: the set of
(rule, service, name, window start) from fluo and from DuckDB is compared, and a
variant that disagrees is reported as such, without a figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import fluo  # noqa: E402

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


def scan(path: Path) -> set[tuple[str, str, str, object]]:
    pl.scan_parquet(path).select(COLUMNS).collect()
    return set()


def run_fluo(path: Path, exemplars: bool = True) -> set[tuple[str, str, str, object]]:
    text = RULES.read_text()
    if not exemplars:
        text = text.replace("    window: 5m\n", "    window: 5m\n    exemplars: 0\n")
    signals = fluo.evaluate(fluo.load_rules(text), path).signals
    return {
        (r, s, n, w.replace(tzinfo=None))
        for r, s, n, w in signals.select("rule", "service", "name", "window_start").iter_rows()
    }


def run_duckdb(path: Path, exemplars: bool = False) -> set[tuple[str, str, str, object]]:
    import duckdb

    con = duckdb.connect(config={"threads": os.cpu_count() or 2})
    con.execute("SET TimeZone = 'UTC'")
    sql = SQL.format(path=path, exemplars=EXEMPLARS if exemplars else "")
    rows = con.execute(sql).fetchall()
    con.close()
    return {(r, s, n, w.replace(tzinfo=None)) for r, s, n, w in rows}


VARIANTS = {
    "scan": scan,
    "fluo": run_fluo,
    "fluo_no_exemplars": lambda path: run_fluo(path, exemplars=False),
    "duckdb": run_duckdb,
    "duckdb_exemplars": lambda path: run_duckdb(path, exemplars=True),
}


def data_file(spans: int) -> Path:
    path = HERE / "data" / f"spans_{spans}_s7.parquet"
    if not path.exists():
        subprocess.run(
            [sys.executable, str(HERE / "spangen.py"), "--spans", str(spans), "--seed", "7"],
            check=True,
        )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=5_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    path = data_file(args.spans)
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    results: dict[str, set[tuple[str, str, str, object]]] = {}
    for _ in range(args.runs):
        for name, variant in VARIANTS.items():
            started = time.perf_counter()
            results[name] = variant(path)
            times[name].append(time.perf_counter() - started)
    agree = all(results[v] == results["fluo"] for v in VARIANTS if v != "scan")
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    report = {
        "spans": args.spans,
        "runs": args.runs,
        "machine": f"{platform.machine()} {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
        "seconds": medians,
        "fluo_over_scan": medians["fluo"] / medians["scan"],
        "duckdb_over_fluo": medians["duckdb"] / medians["fluo"] if agree else None,
        "duckdb_exemplars_over_fluo": (
            medians["duckdb_exemplars"] / medians["fluo"] if agree else None
        ),
        "duckdb_over_fluo_no_exemplars": (
            medians["duckdb"] / medians["fluo_no_exemplars"] if agree else None
        ),
        "signals": len(results["fluo"]),
        "agree": agree,
    }
    if not agree:
        only_fluo = sorted(results["fluo"] - results["duckdb"], key=str)[:5]
        only_duck = sorted(results["duckdb"] - results["fluo"], key=str)[:5]
        report["only_fluo"] = [str(x) for x in only_fluo]
        report["only_duckdb"] = [str(x) for x in only_duck]
    out = HERE / "results" / f"window_rules_{args.spans}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
