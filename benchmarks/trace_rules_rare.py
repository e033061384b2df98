"""Trace-level rules that rarely fire: what fluo costs against DuckDB on realistic rules.

    .venv/bin/python benchmarks/trace_rules_rare.py [--spans 5000000] [--runs 5]

The main trace benchmark (trace_rules.py) fires on 88% of its traces, so fluo's second
pass (the anchor span and evidence of every signal) dominates it. Real invariants are
rarely violated. This script runs ten has / missing / count rules that each fire on well
under 1% of the traces of the same data, in ONE process, alternating fluo and DuckDB's
best hand-written query (one GROUP BY trace_key with HAVING, 2 threads), medians of
`--runs`; the (rule, trace_id) pairs must agree or no time is reported. It prints one
markdown block (copied by hand into benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import harness  # noqa: E402
import spangen  # noqa: E402

SEC = 1_000_000_000

#: rule name -> (fluo condition, DuckDB HAVING condition over the per-trace aggregates)
RULES: dict[str, tuple[str, str]] = {
    "error_burst": (
        "count(span.status == ERROR) > 3",
        "count_if(status_code = 'ERROR') > 3",
    ),
    "frontend_fanout": (
        'count(span.name == "GET /frontend") > 11',
        "count_if(name = 'GET /frontend') > 11",
    ),
    "n_plus_one_queries": (
        'count(span.name startswith "SELECT ") > 15',
        "count_if(starts_with(name, 'SELECT ')) > 15",
    ),
    "repeated_server_5xx": (
        'count(span.kind == SERVER and span.attributes["http.status_code"] >= 500) > 2',
        "count_if(kind = 'SERVER' AND \"attr.http.status_code\" >= 500) > 2",
    ),
    "very_slow_without_error": (
        "has(span.duration > 5s) and missing(span.status == ERROR)",
        f"coalesce(bool_or(duration_ns > {5 * SEC}), false) "
        "AND NOT coalesce(bool_or(status_code = 'ERROR'), false)",
    ),
    "slow_checkout": (
        'has(span.name == "POST /checkout" and span.duration > 3s)',
        f"coalesce(bool_or(name = 'POST /checkout' AND duration_ns > {3 * SEC}), false)",
    ),
    "payment_errors": (
        'count(span.service == "payment" and span.status == ERROR) > 1',
        "count_if(service_name = 'payment' AND status_code = 'ERROR') > 1",
    ),
    "slow_queries": (
        'count(span.name startswith "SELECT " and span.duration > 250ms) > 2',
        f"count_if(starts_with(name, 'SELECT ') AND duration_ns > {SEC // 4}) > 2",
    ),
    "charge_error_without_auth": (
        'has(span.name == "POST /payment-api/charge" and span.status == ERROR) '
        'and missing(span.service == "auth")',
        "coalesce(bool_or(name = 'POST /payment-api/charge' AND status_code = 'ERROR'), "
        "false) AND NOT coalesce(bool_or(service_name = 'auth'), false)",
    ),
    "publish_without_consume": (
        'count(span.name == "orders publish") > count(span.name == "orders process") + 2',
        "count_if(name = 'orders publish') > count_if(name = 'orders process') + 2",
    ),
}


def rules_yaml() -> str:
    body = "".join(f"  {name}:\n    when: '{fluo_}'\n" for name, (fluo_, _) in RULES.items())
    return f"fluo: 1\nrules:\n{body}"


def duckdb_query(path: str) -> str:
    rules = ",\n    ".join(f"{sql} AS {name}" for name, (_, sql) in RULES.items())
    return (
        f"WITH per_trace AS (\n  SELECT any_value(trace_id) AS trace_id,\n    {rules}\n"
        f"  FROM read_parquet('{path}')\n  GROUP BY trace_key\n"
        f"  HAVING {' OR '.join(RULES)}\n)\n"
        f"SELECT rule, trace_id AS id FROM per_trace\n"
        f"UNPIVOT (hit FOR rule IN ({', '.join(RULES)}))\nWHERE hit"
    )


def main() -> None:
    import polars as pl

    import fluo

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=5_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    path, _ = spangen.ensure_dataset(HERE / "data", args.spans, args.seed)
    harness.warm(path)
    con = harness.duckdb_connection()
    sql = duckdb_query(str(path))
    text = rules_yaml()

    def run_fluo() -> pl.DataFrame:
        signals = fluo.load_rules(text).evaluate(path)
        return signals.select("rule", pl.col("trace_id").alias("id"))

    def run_duckdb() -> pl.DataFrame:
        return con.sql(sql).pl()

    variants = {"fluo": run_fluo, "duckdb": run_duckdb}
    times: dict[str, list[float]] = {v: [] for v in variants}
    answers: dict[str, pl.DataFrame] = {}
    for _ in range(args.runs):
        for name, func in variants.items():
            started = time.perf_counter()
            answer = func()
            times[name].append(time.perf_counter() - started)
            answers[name] = answer.sort("rule", "id")
    agree = answers["fluo"].equals(answers["duckdb"])
    per_rule = dict(answers["fluo"].group_by("rule").len().sort("rule").iter_rows())
    traces = pl.scan_parquet(path).select(pl.col("trace_key").n_unique()).collect().item()
    med = {name: harness.median(values) for name, values in times.items()}
    print(
        f"{args.spans:,} spans in {traces:,} traces (spangen seed {args.seed}); medians of "
        f"{args.runs} runs in one process, alternating"
    )
    print()
    print("| variant | median wall | min wall | signals |")
    print("|---|---:|---:|---:|")
    signals = sum(per_rule.values())
    for name in variants:
        valid = "" if agree else " (answers differ: not valid)"
        print(f"| {name}{valid} | {med[name]:.3f} s | {min(times[name]):.3f} s | {signals:,} |")
    print()
    print(f"fluo / DuckDB: {med['fluo'] / med['duckdb']:.2f}x; answers agree: {agree}")
    print("signals per rule: " + ", ".join(f"{r} {n:,}" for r, n in per_rule.items()))
    print(
        f"traces that fire some rule: {answers['fluo'].get_column('id').n_unique():,} "
        f"({answers['fluo'].get_column('id').n_unique() / traces:.2%})"
    )


if __name__ == "__main__":
    main()
