"""Trace-level rule benchmark (issue #3): fluo against hand-written DuckDB SQL and Polars.

    .venv/bin/python benchmarks/trace_rules.py [--spans 5000000] [--runs 3]
    .venv/bin/python benchmarks/trace_rules.py --spans 200000 --runs 1     # quick (<1 min)

Data: benchmarks/spangen.py (generated once, cached in benchmarks/data/ by size and seed).
Two questions, every variant of each run `--runs` times, each run in a fresh subprocess
(own caches, own peak RSS), round-robin; medians are reported.

1. Ten whole-trace has / missing / count rules (benchmarks/trace_rules.yaml), answer =
   the (rule, trace_id) pairs:

     fluo                fluo.load_rules(yaml).evaluate(path), rule loading included
     duckdb              one GROUP BY trace_key (bool_or / count_if, HAVING any rule),
                         prefiltered by a WHERE on the union of the rules' atoms; 2 threads
     duckdb_noprefilter  the same GROUP BY over every span
     duckdb_signals      the prefiltered GROUP BY also computing what a fluo signal carries
                         (anchor span, its name/service/start, up to 10 evidence span ids);
                         checked against fluo's anchors and evidence too (a reference: the
                         target compares with the best of the two above)
     polars              hand-written Polars: the same prefilter, one group_by (the ceiling)

2. One structural rule (benchmarks/ancestor_rule.yaml: error spans with no error among
   their descendants), answer = the (rule, span_id) pairs:

     fluo_ancestor       fluo.load_rules(yaml).evaluate(path)
     duckdb_cte          a recursive CTE walking parent links up from the error spans,
                         over the links of the traces that have an error only; 2 threads

A variant whose pairs differ from fluo's is reported, but its time is marked invalid.
Memory: fluo's peak RSS for the ten rules at --spans and at each of --memory-spans.
Diagnosis: one more subprocess times fluo's phases (per-trace group_by, anchors and
evidence, the structure walk), variants of fluo's own plan (prefilter forced) and a Polars
prototype of the restricted walk the CTE does (see `diagnose`). Results go to --out (JSON)
and, for runs of at least 1M spans (or with --readme), to the "Trace-level rules
(issue #3)" section of benchmarks/README.md (only the text between this script's markers
is rewritten).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # fluo from this checkout, spangen, harness

import harness  # noqa: E402
from harness import (  # noqa: E402
    CASE_EXTRA,
    agreement,
    fmt,
    median,
    per_rule_counts,
    summarize,
    wait_for_quiet,
)

SCRIPT = Path(__file__).resolve()
TRACE_YAML = HERE / "trace_rules.yaml"
ANCESTOR_YAML = HERE / "ancestor_rule.yaml"
README = HERE / "README.md"
SECTION = "## Trace-level rules (issue #3)"
BEGIN, END = "<!-- trace_rules:begin -->", "<!-- trace_rules:end -->"

DIAGNOSIS_REPEAT = 3  # each diagnosis step runs this many times; the fastest counts
SEC = 1_000_000_000

TRACE_VARIANTS = ["fluo", "duckdb", "duckdb_noprefilter", "duckdb_signals", "polars"]
ANCESTOR_VARIANTS = ["fluo_ancestor", "duckdb_cte"]
VARIANTS = TRACE_VARIANTS + ANCESTOR_VARIANTS
REFERENCE = {v: "fluo" for v in TRACE_VARIANTS} | {v: "fluo_ancestor" for v in ANCESTOR_VARIANTS}
DESCRIPTIONS = {
    "fluo": "fluo `evaluate` (10 trace rules)",
    "duckdb": "DuckDB, one GROUP BY + HAVING, prefiltered (2 threads)",
    "duckdb_noprefilter": "DuckDB, one GROUP BY + HAVING, all spans (2 threads)",
    "duckdb_signals": "DuckDB, prefiltered, + anchor span and evidence like fluo's",
    "polars": "hand-written Polars, prefilter + one group_by",
    "fluo_ancestor": "fluo `evaluate` (descendants rule)",
    "duckdb_cte": "DuckDB recursive CTE (2 threads)",
}

# --- the ten trace rules, hand-written ------------------------------------------------
# Atoms: the span conditions the rules aggregate. A trace none of whose spans satisfies an
# atom fires no rule (every rule needs has(A), count(A) > n >= 0, or count(A) != count(B),
# which is false at 0 == 0), so both hand-written variants read only the atom spans.

SQL_ATOMS = {
    "checkout": "name = 'POST /checkout'",
    "payment": "service_name = 'payment'",
    "charge": "name = 'POST /payment-api/charge'",
    "auth": "service_name = 'auth'",
    "cart": "name = 'GET /cart'",
    "cache": "name = 'redis GET cart'",
    "error": "status_code = 'ERROR'",
    "frontend": "name = 'GET /frontend'",
    "publish": "name = 'orders publish'",
    "consume": "name = 'orders process'",
    "slow": f"duration_ns > {SEC}",
    "db": "starts_with(name, 'SELECT ')",
    "payment_error": "service_name = 'payment' AND status_code = 'ERROR'",
    "server_5xx": "kind = 'SERVER' AND \"attr.http.status_code\" >= 500",
}


def _has(atom: str) -> str:
    return f"coalesce(bool_or({SQL_ATOMS[atom]}), false)"


def _count(atom: str) -> str:
    return f"count_if({SQL_ATOMS[atom]})"


SQL_RULES = {
    "checkout_without_payment": f"{_has('checkout')} AND NOT {_has('payment')}",
    "charge_without_auth": f"{_has('charge')} AND NOT {_has('auth')}",
    "cart_without_cache": f"{_has('cart')} AND NOT {_has('cache')}",
    "error_burst": f"{_count('error')} > 2",
    "frontend_fanout": f"{_count('frontend')} > 3",
    "publish_consume_mismatch": f"{_count('publish')} <> {_count('consume')}",
    "slow_without_error": f"{_has('slow')} AND NOT {_has('error')}",
    "n_plus_one_queries": f"{_count('db')} > 5",
    "payment_error_without_charge": f"{_has('payment_error')} AND NOT {_has('charge')}",
    "repeated_server_5xx": f"{_count('server_5xx')} > 1",
}


def duckdb_query(path: str, prefilter: bool) -> str:
    """One GROUP BY trace_key: one boolean per rule, traces where any holds, unpivoted."""
    rules = ",\n    ".join(f"{sql} AS {name}" for name, sql in SQL_RULES.items())
    where = " OR ".join(f"({sql})" for sql in SQL_ATOMS.values())
    where_clause = f"\n  WHERE {where}" if prefilter else ""
    return (
        f"WITH per_trace AS (\n  SELECT any_value(trace_id) AS trace_id,\n    {rules}\n"
        f"  FROM read_parquet('{path}'){where_clause}\n  GROUP BY trace_key\n"
        f"  HAVING {' OR '.join(SQL_RULES)}\n)\n"
        f"SELECT rule, trace_id AS id FROM per_trace\n"
        f"UNPIVOT (hit FOR rule IN ({', '.join(SQL_RULES)}))\nWHERE hit"
    )


#: The support of each rule: fluo anchors the signal at the earliest such span and lists
#: the first 10 as evidence (docs/traces.md; `count(A) != count(B)` is supported by A or B).
SQL_SUPPORT = {
    "checkout_without_payment": SQL_ATOMS["checkout"],
    "charge_without_auth": SQL_ATOMS["charge"],
    "cart_without_cache": SQL_ATOMS["cart"],
    "error_burst": SQL_ATOMS["error"],
    "frontend_fanout": SQL_ATOMS["frontend"],
    "publish_consume_mismatch": f"{SQL_ATOMS['publish']} OR {SQL_ATOMS['consume']}",
    "slow_without_error": SQL_ATOMS["slow"],
    "n_plus_one_queries": SQL_ATOMS["db"],
    "payment_error_without_charge": SQL_ATOMS["payment_error"],
    "repeated_server_5xx": SQL_ATOMS["server_5xx"],
}


def duckdb_signals_query(path: str) -> str:
    """The same GROUP BY, also returning what a fluo signal carries: the anchor span (the
    earliest span of the rule's support; ties by span id) with its name, service and
    start, and the first 10 supporting spans as evidence."""
    per_rule = []
    for i, (name, sql) in enumerate(SQL_RULES.items()):
        cond = SQL_SUPPORT[name]
        per_rule.append(
            f"{sql} AS {name},\n"
            f"    arg_min({{'span_id': span_id, 'name': name, 'service': service_name, "
            f"'time': start_time}}, (start_time, span_id)) FILTER (WHERE {cond}) AS a{i},\n"
            f"    arg_min(span_id, (start_time, span_id), 10) "
            f"FILTER (WHERE {cond}) AS e{i}"
        )
    where = " OR ".join(f"({sql})" for sql in SQL_ATOMS.values())
    selects = "\nUNION ALL\n".join(
        f"SELECT '{name}' AS rule, trace_id AS id, a{i}.span_id AS anchor, a{i}.name AS name, "
        f"a{i}.service AS service, a{i}.time AS time, e{i} AS evidence FROM per_trace WHERE {name}"
        for i, name in enumerate(SQL_RULES)
    )
    return (
        "WITH per_trace AS (\n  SELECT any_value(trace_id) AS trace_id,\n    "
        + ",\n    ".join(per_rule)
        + f"\n  FROM read_parquet('{path}')\n  WHERE {where}\n"
        f"  GROUP BY trace_key\n  HAVING {' OR '.join(SQL_RULES)}\n)\n{selects}"
    )


def polars_atoms() -> dict[str, object]:
    import polars as pl

    c = pl.col
    return {
        "checkout": c("name") == "POST /checkout",
        "payment": c("service_name") == "payment",
        "charge": c("name") == "POST /payment-api/charge",
        "auth": c("service_name") == "auth",
        "cart": c("name") == "GET /cart",
        "cache": c("name") == "redis GET cart",
        "error": c("status_code") == "ERROR",
        "frontend": c("name") == "GET /frontend",
        "publish": c("name") == "orders publish",
        "consume": c("name") == "orders process",
        "slow": c("duration_ns") > SEC,
        "db": c("name").str.starts_with("SELECT "),
        "payment_error": (c("service_name") == "payment") & (c("status_code") == "ERROR"),
        "server_5xx": (c("kind") == "SERVER") & (c("attr.http.status_code") >= 500),
    }


def polars_rules(a: dict) -> dict:  # (atoms) -> {rule: pl.Expr per trace}
    """The ten rules as aggregations over the atoms (`polars_atoms`), inside group_by(trace)."""

    def has(atom: str):  # -> pl.Expr
        return a[atom].fill_null(False).any()

    def count(atom: str):  # -> pl.Expr
        return a[atom].fill_null(False).sum()

    return {
        "checkout_without_payment": has("checkout") & ~has("payment"),
        "charge_without_auth": has("charge") & ~has("auth"),
        "cart_without_cache": has("cart") & ~has("cache"),
        "error_burst": count("error") > 2,
        "frontend_fanout": count("frontend") > 3,
        "publish_consume_mismatch": count("publish") != count("consume"),
        "slow_without_error": has("slow") & ~has("error"),
        "n_plus_one_queries": count("db") > 5,
        "payment_error_without_charge": has("payment_error") & ~has("charge"),
        "repeated_server_5xx": count("server_5xx") > 1,
    }


def polars_query(path: str):  # -> pl.LazyFrame
    """Prefilter on the union of the atoms, one group_by(trace_key), unpivot the hits."""
    import polars as pl

    a = polars_atoms()
    rules = polars_rules(a)
    union = pl.any_horizontal(e.fill_null(False) for e in a.values())
    return (
        pl.scan_parquet(path)
        .filter(union)
        .group_by("trace_key")
        .agg(pl.col("trace_id").first(), *(e.alias(r) for r, e in rules.items()))
        .filter(pl.any_horizontal(list(rules)))
        .unpivot(on=list(rules), index="trace_id", variable_name="rule", value_name="hit")
        .filter(pl.col("hit"))
        .select("rule", pl.col("trace_id").alias("id"))
    )


# --- the structural rule, hand-written ---------------------------------------------------


def cte_query(path: str) -> str:
    """Error spans none of whose descendants is an error, by walking parent links up from
    every error span (UNION: each ancestor once, which also ends cycles). The walk only
    needs the links of traces that have an error, so the links table is cut to those."""
    return f"""
WITH RECURSIVE
errors AS MATERIALIZED (
  SELECT trace_key, span_id, parent_span_id
  FROM read_parquet('{path}') WHERE status_code = 'ERROR'
),
links AS MATERIALIZED (
  SELECT trace_key, span_id, parent_span_id
  FROM read_parquet('{path}')
  WHERE parent_span_id IS NOT NULL AND trace_key IN (SELECT trace_key FROM errors)
),
above(trace_key, span_id) AS (
  SELECT trace_key, parent_span_id FROM errors WHERE parent_span_id IS NOT NULL
  UNION
  SELECT l.trace_key, l.parent_span_id
  FROM above JOIN links l ON l.trace_key = above.trace_key AND l.span_id = above.span_id
)
SELECT 'root_cause_error' AS rule, e.span_id AS id
FROM errors e ANTI JOIN above a ON a.trace_key = e.trace_key AND a.span_id = e.span_id
"""


# --- one measured case (runs in a child process) ---------------------------------------


def build_case(name: str, path: str) -> Callable[[], object]:
    """A zero-argument callable doing one run of `name`, returning (rule, id) pairs."""
    import polars as pl

    if name in ("fluo", "fluo_ancestor"):
        import fluo

        yaml = TRACE_YAML if name == "fluo" else ANCESTOR_YAML
        key = "trace_id" if name == "fluo" else "span_id"

        def run_fluo() -> pl.DataFrame:
            t0 = time.perf_counter()
            rule_set = fluo.load_rules(yaml)
            t1 = time.perf_counter()
            signals = rule_set.evaluate(path)
            CASE_EXTRA["load_s"] = t1 - t0
            CASE_EXTRA["evaluate_s"] = time.perf_counter() - t1
            CASE_EXTRA["signals"] = signals.height
            if name == "fluo_ancestor":
                return signals.select("rule", pl.col(key).alias("id"))
            return signals.select(
                "rule",
                pl.col(key).alias("id"),
                pl.col("span_id").alias("anchor"),
                pl.col("evidence").list.join(",").alias("evidence"),
            )

        return run_fluo
    if name == "polars":
        query = polars_query(path)
        return lambda: query.collect(engine="streaming")
    if name in ("duckdb", "duckdb_noprefilter", "duckdb_signals", "duckdb_cte"):
        con = harness.duckdb_connection()
        if name == "duckdb_cte":
            sql = cte_query(path)
        elif name == "duckdb_signals":
            sql = duckdb_signals_query(path)

            def signals() -> pl.DataFrame:
                rows = con.sql(sql).pl()
                return rows.with_columns(pl.col("evidence").list.join(","))

            return signals
        else:
            sql = duckdb_query(path, prefilter=name == "duckdb")
        return lambda: con.sql(sql).pl()
    if name == "diagnose":
        return lambda: diagnose(path)
    raise SystemExit(f"unknown case {name}")


# --- diagnosis: where fluo's time goes ----------------------------------------------------


def _timed(func: Callable[[], object]) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this process, value) of one call."""
    c0, t0 = os.times(), time.perf_counter()
    value = func()
    seconds, c1 = time.perf_counter() - t0, os.times()
    return seconds, (c1.user - c0.user) + (c1.system - c0.system), value


def diagnose(path: str) -> dict:
    """Time fluo's phases on the two rule files, and hand-made variants of fluo's own plan.

    Uses fluo's internals (compile_for, TracePlan, term_aggregate, structure); every step
    is guarded, since those may change: a failing step is reported as its error."""
    import dataclasses

    import polars as pl

    import fluo
    from fluo import ast, structure
    from fluo.compile import Context, lower_condition
    from fluo.compile_trace import term_aggregate
    from fluo.run import compile_for

    out: dict[str, object] = {}
    try:
        from fluo.ingest import scan_spans

        lf = scan_spans(path)  # as evaluate reads it
    except ImportError:
        lf = pl.scan_parquet(path)

    def step(label: str, func: Callable[[], object]) -> object:
        """Run `func` DIAGNOSIS_REPEAT times; record the fastest (the least disturbed)."""
        try:
            runs = [_timed(func) for _ in range(DIAGNOSIS_REPEAT)]
            seconds, cpu, value = min(r[0] for r in runs), min(r[1] for r in runs), runs[-1][2]
        except Exception as exc:  # a diagnosis reports what failed
            out[label] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            return None
        rows = value.height if isinstance(value, pl.DataFrame) else None
        out[label] = {"s": round(seconds, 3), "cpu_s": round(cpu, 3)}
        if rows is not None:
            out[label]["rows"] = rows
        return value

    def collect(q: pl.LazyFrame) -> pl.DataFrame:
        return q.collect(engine="streaming")

    # -- the ten trace rules
    rules = fluo.load_rules(TRACE_YAML)
    step("trace.evaluate", lambda: rules.evaluate(path))
    plan = compile_for(rules, lf, path)
    trace = plan.trace
    ctx = Context(trace.schema)
    out["trace.key"] = trace.key
    out["trace.prefilter"] = None if trace.prefilter is None else repr(trace.prefilter)[:300]
    out["trace.rules_without_support"] = [n for n, s in trace.supports.items() if s is None]
    table = step(
        "trace.trace_table (fluo's per-trace group_by as it is)",
        lambda: collect(trace.trace_table(lf)),
    )
    if isinstance(table, pl.DataFrame):
        judged = step(
            "trace.fired (the rules over the per-trace table)", lambda: trace.judged(table)
        )
        if isinstance(judged, pl.DataFrame):
            out["trace.fired_traces"] = [f.height for f in trace.fired(judged)]
            step(ANCHOR_STEP, lambda: anchor_phase(trace, lf, judged))
            rows = step(
                "trace.anchors, of which: one scan for the candidate anchor spans",
                lambda: trace.anchor_candidates(lf, judged).collect(engine="streaming"),
            )
            if isinstance(rows, pl.DataFrame):
                step(
                    "trace.anchors, of which: one sort, first spans per rule and trace",
                    lambda: trace.anchors(rows, judged, lf),
                )
    terms = [term_aggregate(t, ctx).alias(trace.terms[t]) for t in trace.per_trace]
    out["trace.terms"] = len(terms)
    step(
        "trace.terms only: group_by(key) with fluo's term aggregates, all spans",
        lambda: collect(lf.group_by(trace.key).agg(terms)),
    )
    wheres = [t.where for t in trace.per_trace if isinstance(t, ast.Aggregate) and t.where]
    union = ast.Or(tuple(dict.fromkeys(wheres)))
    step(
        "trace.terms only, with the union of the terms' conditions as prefilter",
        lambda: collect(lf.filter(lower_condition(union, ctx)).group_by(trace.key).agg(terms)),
    )
    forced = dataclasses.replace(trace, prefilter=union)
    step(
        "trace.trace_table with that prefilter forced",
        lambda: collect(forced.trace_table(lf)),
    )
    out["trace.union_fraction"] = round(
        collect(lf.select(lower_condition(union, ctx).mean())).item(), 3
    )

    # -- the structural rule
    anc = fluo.load_rules(ANCESTOR_YAML)
    step("ancestor.evaluate", lambda: anc.evaluate(path))
    aplan = compile_for(anc, lf, path).trace
    filt = aplan.anchor_filter()
    out["ancestor.anchors_in_structure"] = aplan.anchors_in_structure
    table = step(
        "ancestor.structure: scan of the traces that have an error span",
        lambda: collect(aplan.structure_frame(lf, collect(aplan.structure_traces(lf)).to_series())),
    )
    anchors = None
    if isinstance(table, pl.DataFrame):
        anchors = step(
            "ancestor.anchors: filter of the structure frame",
            lambda: table.filter(filt).select(aplan.anchor_columns()),
        )
        linked = step(
            "ancestor.links (parent links resolved to rows: one join)",
            lambda: structure.links(table, aplan.key),
        )
        if isinstance(linked, structure.Links):
            step(
                "ancestor.relation_table (walk up from the error spans)",
                lambda: [
                    structure.relation_table(table, agg, aplan, linked) for agg in aplan.structural
                ],
            )
    if isinstance(anchors, pl.DataFrame):
        out["ancestor.anchor_rows"] = anchors.height
    for label, u64 in (("span ids as text", False), ("span ids as u64", True)):
        step(
            f"{ANCESTOR_PROTOTYPE}, {label}",
            lambda u64=u64: restricted_walk(lf, aplan.key, u64),
        )
    return out


ANCHOR_STEP = "trace.anchors and evidence of the traces that fired"
ANCESTOR_PROTOTYPE = "ancestor.prototype (not fluo): walk up over the links of error traces only"


def anchor_phase(trace, lf, judged) -> list:  # (TracePlan, LazyFrame, DataFrame)
    """fluo's anchor phase for whole-trace rules, as run.execute does it."""
    rows = trace.anchor_candidates(lf, judged).collect(engine="streaming")
    return trace.anchors(rows, judged, lf)


def restricted_walk(lf, key: str, u64: bool):  # -> pl.DataFrame
    """The descendants rule the way the CTE does it, in Polars: walk parent links up from
    the error spans, over the links of the traces that have an error only (optionally
    joining on the 16-hex-digit span ids parsed to u64); errors never reached remain."""
    import polars as pl

    c = pl.col
    ids = ["span_id", "parent_span_id"]
    errors = lf.filter(c("status_code") == "ERROR").select(key, *ids)
    links = (
        lf.select(key, *ids)
        .filter(c("parent_span_id").is_not_null())
        .join(errors.select(key), on=key, how="semi")
    )
    if u64:
        parse = [c(x).str.to_integer(base=16, dtype=pl.UInt64) for x in ids]
        links = links.with_columns(parse)
        errors = errors.with_columns(c("span_id").alias("__id"), *parse)
    errors_df, links_df = pl.collect_all([errors, links], engine="streaming")
    frontier = errors_df.select(key, c("parent_span_id").alias("__up")).drop_nulls().unique()
    found = [frontier]
    while frontier.height:
        frontier = (
            frontier.join(links_df, left_on=[key, "__up"], right_on=[key, "span_id"])
            .select(key, c("parent_span_id").alias("__up"))
            .drop_nulls()
            .unique()
        )
        found.append(frontier)
    above = pl.concat(found).unique()
    return errors_df.join(above, left_on=[key, "span_id"], right_on=[key, "__up"], how="anti")


# --- the driver --------------------------------------------------------------------------


def check_rules_in_step() -> None:
    """The hand-written rules must be the rules of the YAML files."""
    import fluo

    names = fluo.load_rules(TRACE_YAML).names
    if set(names) != set(SQL_RULES):
        raise SystemExit("the hand-written rules do not match trace_rules.yaml")
    if fluo.load_rules(ANCESTOR_YAML).names != ["root_cause_error"]:
        raise SystemExit("ancestor_rule.yaml must hold the one rule root_cause_error")


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Trace-level rule benchmark (issue #3)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    harness.add_run_options(parser, runs=3)
    harness.add_data_options(parser, out=HERE / "results" / "trace_rules.json")
    parser.add_argument(
        "--memory-spans",
        default=None,
        help="comma-separated sizes at which fluo's memory is measured as well "
        "(default: 1000000 when --spans is larger, else none)",
    )
    parser.add_argument("--no-diagnosis", action="store_true", help="skip timing fluo's phases")
    harness.add_readme_options(parser)
    harness.add_child_options(parser)
    args = parser.parse_args()

    if args.case:
        harness.run_case(args.case, build_case(args.case, args.data), args.dump)
        return
    args.quiet_wait = harness.quiet_wait(args)
    if args.memory_spans is None:
        memory_sizes = [1_000_000] if args.spans > 1_000_000 else []
    else:
        memory_sizes = [int(x) for x in args.memory_spans.split(",") if x.strip()]

    import spangen

    started = time.perf_counter()
    check_rules_in_step()
    variants = harness.select_variants(args.only, VARIANTS)
    print(f"dataset: {args.spans:,} spans (seed {args.seed})", flush=True)
    path, meta = spangen.ensure_dataset(args.data_dir, args.spans, args.seed)
    print(f"  {path} ({meta['bytes'] / 1e6:.0f} MB, {meta['traces']:,} traces)", flush=True)

    with tempfile.TemporaryDirectory(prefix="trace_rules_") as tmp:
        dumps = Path(tmp)
        results = harness.measure(
            SCRIPT, variants, path, args.runs, dumps=dumps, quiet_wait=args.quiet_wait
        )
        summary = {v: summarize(r) for v, r in results.items()}
        answers: dict[str, dict[str, int]] = {}
        for variant in variants:
            ref = REFERENCE[variant]
            if variant == ref:
                summary[variant]["agrees"] = True
                answers[variant] = per_rule_counts(dumps / f"{variant}.parquet")
            elif ref in variants:
                diff = agreement(dumps / f"{ref}.parquet", dumps / f"{variant}.parquet")
                summary[variant]["agrees"] = not diff
                if diff:
                    summary[variant]["differences"] = diff
                    print(f"!! {variant} disagrees with {ref}: {diff}", flush=True)

    memory: dict[str, dict] = {}
    if "fluo" in summary:
        memory[str(args.spans)] = summary["fluo"]
        for n in memory_sizes:
            if n == args.spans:
                continue
            print(f"memory: fluo at {n:,} spans", flush=True)
            mpath, _ = spangen.ensure_dataset(args.data_dir, n, args.seed)
            runs = harness.measure(SCRIPT, ["fluo"], mpath, args.runs, quiet_wait=args.quiet_wait)
            memory[str(n)] = summarize(runs["fluo"])

    diagnosis: dict = {}
    if not args.no_diagnosis:
        print("diagnosis: fluo's phases (one run)", flush=True)
        if args.quiet_wait > 0:
            wait_for_quiet(args.quiet_wait)
        diagnosis = harness.spawn_case(SCRIPT, "diagnose", path)["result"]
        for k, v in diagnosis.items():
            print(f"  {k}: {v}", flush=True)

    report = {
        "machine": harness.dataset_machine_info(args.spans, meta),
        "command": command_line(args),
        "rules": {
            "trace": str(TRACE_YAML.relative_to(HERE.parent)),
            "ancestor": str(ANCESTOR_YAML.relative_to(HERE.parent)),
        },
        "variants": summary,
        "signals_per_rule": answers,
        "memory": dict(sorted(memory.items(), key=lambda kv: int(kv[0]))),
        "diagnosis": diagnosis,
        "total_s": round(time.perf_counter() - started, 1),
    }
    report["ratios"], report["targets"] = ratios_and_targets(summary)
    harness.publish(args, report, markdown, update_readme)


def command_line(args: argparse.Namespace) -> str:
    cmd = harness.command_line(SCRIPT, args)
    if args.memory_spans is not None:
        cmd += f" --memory-spans {args.memory_spans}"
    return cmd


def _valid(summary: dict, variant: str) -> dict | None:
    s = summary.get(variant)
    return None if s is None or not s.get("agrees") else s


def ratios_and_targets(summary: dict) -> tuple[dict, dict]:
    """Ratios of median wall (and CPU) times, and the two targets of the issue."""
    duckdbs = [v for v in ("duckdb", "duckdb_noprefilter") if _valid(summary, v)]
    best = min(duckdbs, key=lambda v: summary[v]["median_s"]) if duckdbs else None
    pairs = [
        (f"fluo / best DuckDB ({best})", "fluo", best),
        ("fluo / DuckDB prefiltered", "fluo", "duckdb"),
        ("fluo / DuckDB without prefilter", "fluo", "duckdb_noprefilter"),
        ("fluo / DuckDB computing the same signal columns", "fluo", "duckdb_signals"),
        ("fluo / hand-written Polars", "fluo", "polars"),
        ("DuckDB prefiltered / hand-written Polars", "duckdb", "polars"),
        ("fluo ancestor rule / DuckDB recursive CTE", "fluo_ancestor", "duckdb_cte"),
    ]
    ratios = harness.ratios_of_medians(pairs, lambda v: _valid(summary, v))
    targets: dict[str, dict] = {}
    if (r := ratios.get(f"fluo / best DuckDB ({best})")) is not None:
        targets["10 trace rules: fluo no slower than the best DuckDB SQL"] = {
            "value": r["wall"],
            "met": r["wall"] <= 1.0,
        }
    if (r := ratios.get("fluo ancestor rule / DuckDB recursive CTE")) is not None:
        targets["ancestor rule: fluo no slower than DuckDB's recursive CTE"] = {
            "value": r["wall"],
            "met": r["wall"] <= 1.0,
        }
    return ratios, targets


def markdown(report: dict) -> str:
    m = report["machine"]
    s = report["variants"]
    runs = next(iter(s.values()))["runs"] if s else 0
    base = [v["median_base_mb"] for v in s.values()]
    lines = [
        f"{m['spans']:,} spans in {m['dataset']['traces']:,} traces "
        f"({m['dataset']['bytes'] / 1e6:.0f} MB Parquet, benchmarks/spangen.py seed "
        f"{m['dataset']['seed']}); {m['nproc']} cores ({m['cpu']}), Python {m['python']}, "
        f"polars {m['polars']}, duckdb {m['duckdb']} ({m['duckdb_threads']} threads), "
        f"fluo at {m['fluo_commit']}"
        + (" with uncommitted changes in fluo/" if m["fluo_uncommitted"] else "")
        + f". Median of {runs} runs, each in its own process; wall = elapsed seconds; "
        "CPU = user + system seconds of all threads; peak RSS = the process's maximum "
        f"resident set (Python + imports ~{median(base):.0f} MB included); *others' CPU* = "
        "CPU time other processes used meanwhile (the machine is shared). A variant's time "
        "counts only if its answer equals fluo's.",
        "",
        "| question | variant | median wall | min wall | median CPU | peak RSS | others' CPU "
        "| answer | same as fluo |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for variant, v in s.items():
        question = "10 trace rules" if variant in TRACE_VARIANTS else "descendants rule"
        valid = v.get("agrees") is True
        med = fmt(v["median_s"], ".3f", " s")
        lines.append(
            f"| {question} | {DESCRIPTIONS.get(variant, variant)} "
            f"| {med if valid else '~~' + med + '~~'} | {fmt(v['min_s'], '.3f', ' s')} "
            f"| {fmt(v['median_cpu_s'], '.2f', ' s')} | {v['median_peak_mb']:.0f} MB "
            f"| {fmt(v['median_others_cpu_s'], '.2f', ' s')} | {v['rows']:,} pairs "
            f"| {'yes' if valid else '**NO: time not valid**'} |"
        )
    lines += harness.ratio_table(report["ratios"])
    if report["targets"]:
        lines += ["", "| target (issue #3) | fluo / other | met |", "|---|---:|---|"]
        lines += [
            f"| {k} | {fmt(v['value'], '.2f', 'x')} | {'yes' if v['met'] else '**no**'} |"
            for k, v in report["targets"].items()
        ]
    if report["memory"]:
        lines += [
            "",
            "| fluo, 10 trace rules | median wall | median peak RSS | peaks of the runs |",
            "|---|---:|---:|---|",
        ]
        for n, v in report["memory"].items():
            peaks = ", ".join(f"{x} MB" for x in v["peaks_mb"])
            lines.append(
                f"| {int(n):,} spans | {v['median_s']:.3f} s | {v['median_peak_mb']:.0f} MB "
                f"| {peaks} |"
            )
    d = report["diagnosis"]
    if d:
        lines += [
            "",
            f"Where fluo's time goes (each step run {DIAGNOSIS_REPEAT} times in one process, the "
            "fastest wall and CPU times counted; "
            f"{m['spans']:,} spans; group key `{d.get('trace.key')}`, prefilter "
            + ("none" if d.get("trace.prefilter") is None else "chosen")
            + (
                f" (no support for: {', '.join(d['trace.rules_without_support'])})"
                if d.get("trace.rules_without_support")
                else ""
            )
            + "):",
            "",
            "| step | wall s | CPU s | rows |",
            "|---|---:|---:|---:|",
        ]
        for k, v in d.items():
            if isinstance(v, dict) and "s" in v:
                lines.append(
                    f"| {k} | {v['s']:.3f} | {fmt(v.get('cpu_s'), '.3f')} "
                    f"| {fmt(v.get('rows'), ',')} |"
                )
            elif isinstance(v, str) and v.startswith("failed"):
                lines.append(f"| {k} | {v} | | |")
    lines += findings(report)
    counts = report["signals_per_rule"]
    for variant, per_rule in counts.items():
        listed = ", ".join(f"{k} {n:,}" for k, n in per_rule.items())
        lines += ["", f"Signals per rule ({variant}): {listed}."]
    return "\n".join(lines)


def _step_s(diagnosis: dict, prefix: str) -> float | None:
    """Seconds of the first diagnosis step whose label starts with `prefix`."""
    for label, value in diagnosis.items():
        if label.startswith(prefix) and isinstance(value, dict) and "s" in value:
            return value["s"]
    return None


def findings(report: dict) -> list[str]:
    """What the figures say, in sentences built from the measured numbers."""
    s, d, r = report["variants"], report["diagnosis"], report["ratios"]
    out: list[str] = []

    def med(v: str) -> float | None:
        return s[v]["median_s"] if v in s and s[v].get("agrees") else None

    def cpu(v: str) -> float | None:
        return s[v]["median_cpu_s"] if v in s and s[v].get("agrees") else None

    best = next((k for k in r if k.startswith("fluo / best DuckDB")), None)
    if best and med("fluo"):
        duck = best.split("(")[1].rstrip(")")
        out.append(
            f"* **10 trace rules**: fluo {fmt(med('fluo'), '.2f')} s (CPU "
            f"{fmt(cpu('fluo'), '.2f')} s) against {fmt(med(duck), '.2f')} s (CPU "
            f"{fmt(cpu(duck), '.2f')} s) for the best DuckDB SQL: {fmt(r[best]['wall'], '.1f')}x "
            f"the wall time, {fmt(r[best]['cpu'], '.1f')}x the CPU. Target "
            + ("met." if r[best]["wall"] <= 1 else "**not met**.")
        )
    if (ratio_sig := r.get("fluo / DuckDB computing the same signal columns")) is not None:
        out.append(
            "* The hand-written queries answer only *which traces* fire. fluo also finds each "
            "signal's anchor span (name, service, time) and up to 10 evidence spans. DuckDB "
            "computing those too, in its one GROUP BY (`arg_min(..) FILTER (..)` per rule), "
            f"took {fmt(med('duckdb_signals'), '.2f')} s: fluo takes "
            f"{fmt(ratio_sig['wall'], '.2f')}x that time for the same signals (same anchors and "
            "evidence)."
        )
    evaluate, table = _step_s(d, "trace.evaluate"), _step_s(d, "trace.trace_table (")
    anchors, terms = _step_s(d, ANCHOR_STEP), _step_s(d, "trace.terms only: ")
    if evaluate and table is not None and anchors is not None:
        fired = d.get("trace.fired_traces", [])
        out.append(
            f"* Where fluo's time goes (diagnosis below): evaluate {evaluate:.2f} s = the "
            f"per-trace group_by deciding every rule {table:.2f} s (fluo's term aggregates "
            f"alone over all spans: {fmt(terms, '.2f')} s; the whole DuckDB query: "
            f"{fmt(med('duckdb_noprefilter'), '.2f')} s without and {fmt(med('duckdb'), '.2f')} s"
            f" with prefilter, the hand-written Polars {fmt(med('polars'), '.2f')} s) + "
            f"anchors and evidence of the traces that fired {anchors:.2f} s "
            f"({anchors / evaluate:.0%} of the run; {sum(fired):,} signals) + the rest "
            f"(signal table, sort) {max(0.0, evaluate - table - anchors):.2f} s."
        )
    union, forced = d.get("trace.union_fraction", float("nan")), _step_s(d, "trace.terms only,")
    if d.get("trace.rules_without_support") and d.get("trace.prefilter") is None:
        out.append(
            "* No prefilter was chosen: fluo finds no supporting span condition for "
            f"{', '.join(d['trace.rules_without_support'])} (`count(A) != count(B)` cannot "
            "hold without an A or a B span, but `support()` does not know that), and one such "
            "rule disables the prefilter for the whole rule set. Here the union of the terms' "
            f"conditions keeps {union:.0%} of the spans; the terms' group_by took "
            f"{fmt(forced, '.2f')} s with that prefilter forced against {fmt(terms, '.2f')} s "
            "without."
        )
    elif d.get("trace.prefilter") is not None:
        out.append(
            "* fluo prefilters the per-trace group_by on the union of the terms' conditions, "
            f"which keeps {union:.0%} of the spans here: its terms' group_by took "
            f"{fmt(forced, '.2f')} s prefiltered against {fmt(terms, '.2f')} s over all spans."
        )
    anc = r.get("fluo ancestor rule / DuckDB recursive CTE")
    if anc is not None:
        out.append(
            f"* **Descendants rule**: fluo {fmt(med('fluo_ancestor'), '.2f')} s against "
            f"{fmt(med('duckdb_cte'), '.2f')} s for DuckDB's recursive CTE "
            f"({anc['wall']:.1f}x wall, {anc['cpu']:.1f}x CPU). Target "
            + ("met." if anc["wall"] <= 1 else "**not met**.")
        )
    links, walk = _step_s(d, "ancestor.links"), _step_s(d, "ancestor.relation_table")
    if links is not None and walk is not None:
        out.append(
            f"* fluo's descendants rule: {_step_s(d, 'ancestor.structure'):.2f} s to read the "
            "spans of the traces that have an error span (their links, and the anchor columns: "
            "every anchor is an error span, so one scan serves both), "
            f"{_step_s(d, 'ancestor.anchors'):.2f} s to take the anchors from them, "
            f"{links:.2f} s to resolve the parent links to row "
            f"numbers (one join), {walk:.2f} s to walk up from the error spans (a gather per "
            "level) and aggregate. For comparison, a Polars prototype walking with one join "
            "per level over the same links took "
            f"{fmt(_step_s(d, ANCESTOR_PROTOTYPE + ', span ids as text'), '.2f')} s with text "
            f"span ids, {fmt(_step_s(d, ANCESTOR_PROTOTYPE + ', span ids as u64'), '.2f')} s "
            "joining on span ids parsed to u64."
        )
    memory = report["memory"]
    if memory:
        sizes = ", ".join(
            f"{v['median_peak_mb']:.0f} MB at {int(n):,} spans" for n, v in memory.items()
        )
        out.append(
            f"* Memory: fluo's peak RSS for the 10 trace rules {sizes} (DuckDB: "
            f"{fmt(s.get('duckdb', {}).get('median_peak_mb'), '.0f')} MB, hand-written Polars "
            f"{fmt(s.get('polars', {}).get('median_peak_mb'), '.0f')} MB at "
            f"{report['machine']['spans']:,}); the descendants rule: fluo "
            f"{fmt(s.get('fluo_ancestor', {}).get('median_peak_mb'), '.0f')} MB, the CTE "
            f"{fmt(s.get('duckdb_cte', {}).get('median_peak_mb'), '.0f')} MB."
        )
    return ["", "Findings:", "", *out] if out else []


def update_readme(report: dict, text: str) -> None:
    """Rewrite only the text between this script's markers in benchmarks/README.md."""
    block = "\n".join(
        [
            BEGIN,
            SECTION,
            "",
            "Ten whole-trace has/missing/count rules (`benchmarks/trace_rules.yaml`) and one "
            "descendants rule (`benchmarks/ancestor_rule.yaml`) against the best hand-written "
            "DuckDB SQL and Polars; see the docstring of `benchmarks/trace_rules.py`.",
            "",
            f"Command: `{report['command']}` ({report['total_s']:.0f} s in all, "
            f"{report['machine']['date']}).",
            "",
            text,
            END,
        ]
    )
    harness.update_readme(BEGIN, END, block)


if __name__ == "__main__":
    main()
