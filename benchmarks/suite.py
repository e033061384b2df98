"""The comparative benchmark suite (issue #6): fluo against what a user would pick instead.

    .venv/bin/python benchmarks/suite.py                       # 1M, 5M, 20M spans; 3 runs
    .venv/bin/python benchmarks/suite.py --sizes 1M,5M --runs 5
    .venv/bin/python benchmarks/suite.py --quick               # smoke test: 200k spans, 1 run

Regenerates every figure of the "Comparative suite" section of benchmarks/README.md and
the chart benchmarks/suite.png (needs the `plot` extra: pip install '.[bench,plot]').

Data: benchmarks/spangen.py, deterministic (seed 7), cached in benchmarks/data/; the
Nezha RCA data set (../shared/datasets/nezha-microservice-rca) when fluo can read it.

Competitors, in the same run, on the same file, each run in a fresh process:

  scan    the floor: the columns the rules read, decoded batch by batch and dropped
  fluo    fluo.load_rules(...).evaluate(path): compile, one fused plan, signals
  polars  hand-written Polars: one scan with a flag per span rule, filter any, unpivot;
          one prefiltered group_by(trace_key) for the trace rules; per window shape one
          group_by(keys, truncated start) computing each metric once, a flag per
          windowed rule; collected together
  duckdb  DuckDB SQL as an expert writes it: one query with a CASE-free boolean column
          per span rule, WHERE any, UNPIVOT; one GROUP BY trace_key ... HAVING for the
          trace rules (prefiltered on the union of their atoms); per window shape one
          GROUP BY keys, time_bucket(...) with FILTER aggregates and quantile_cont, a
          flag per windowed rule, UNPIVOT; 2 threads, time zone UTC
  python  a straightforward per-trace interpreter (what a rule engine like the original
          FLUO does): spans as dicts grouped by trace, every rule evaluated in Python
          (windowed rules: each span appended to its group and window, every rule
          evaluated on every window afterwards). It runs on a deterministic sample of
          whole traces (trace_key % K == 0, ~100k spans) and its time is extrapolated
          linearly to the whole table (labelled so)

Cases: the base rule set (20 span rules of span_rules.yaml + 10 trace rules of
trace_rules.yaml) at each size (scaling with spans); generated mixed rule sets of 1, 10,
100 and 300 rules (benchmarks/rulespecs.py: 1/2 span rules, 1/4 trace rules, 1/4
windowed aggregate rules, sharing columns) at --rules-size spans (scaling with rules).

Agreement: every competitor's (rule, id) pairs (span_id for span rules, trace_id for
trace rules, the JSON of (service, name or null, window start) for windowed rules:
`rulespecs.window_ids`) must equal fluo's exactly (the interpreter's: fluo's restricted
to the sampled traces, and for windowed rules fluo's run on the sample itself, since a
window's aggregates over a sample are not those over the table), or its time is struck
out and no ratio is reported for it.

Figures are medians of --runs runs (round-robin over the variants, each in its own
process, waiting up to --quiet-wait seconds for the shared machine's CPUs to go idle);
every ratio is between medians of the same invocation.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
import sys  # noqa: E402

sys.path[:0] = [str(HERE.parent), str(HERE)]  # fluo from this checkout, spangen, harness

import harness  # noqa: E402
from harness import fmt, ratio, summarize  # noqa: E402

SECTION = "## Comparative suite (issue #6)"
BEGIN, END = "<!-- suite:begin -->", "<!-- suite:end -->"
CHART = HERE / "suite.png"
NEZHA = HERE.parent.parent / "shared" / "datasets" / "nezha-microservice-rca"
VARIANTS = ("scan", "fluo", "polars", "duckdb", "python")
ANSWERING = ("fluo", "polars", "duckdb", "python")
SAMPLE_SPANS = 100_000  # the interpreter's sample
#: The chart shows CPU seconds: on the shared machine other work inflates wall times.
CHARTED, CHARTED_LABEL = "median_cpu_s", "median CPU seconds (all threads)"
COLORS = {"scan": "grey", "fluo": "tab:blue", "polars": "tab:green", "duckdb": "tab:orange",
          "python": "tab:red"}  # fmt: skip
DESCRIPTIONS = {
    "scan": "bare scan of the rule columns (floor)",
    "fluo": "fluo `evaluate`",
    "polars": "hand-written fused Polars",
    "duckdb": "DuckDB SQL (2 threads)",
    "python": "per-trace Python interpreter (extrapolated)",
}


# --- rule sets --------------------------------------------------------------------------


def specs_for(ruleset: str, path: str) -> list[Any]:
    """base | gen:N | portable:N (the families any span table can answer, literals from it)."""
    import rulespecs

    if ruleset == "base":
        return rulespecs.base_specs()
    kind, n = ruleset.split(":")
    if kind == "gen":
        return rulespecs.generated_specs(int(n))
    if kind == "portable":
        return rulespecs.generated_specs(
            int(n), vocabulary_of(path), families=rulespecs.PORTABLE_FAMILIES
        )
    raise SystemExit(f"unknown rule set {ruleset}")


def vocabulary_of(path: str) -> Any:
    """The most frequent span names and services of a table (deterministic order)."""
    import polars as pl
    import rulespecs

    scan = pl.scan_parquet(path)

    def top(column: str) -> tuple[str, ...]:
        counts = scan.group_by(column).len().sort(["len", column], descending=[True, False])
        return tuple(counts.head(40).collect().get_column(column).drop_nulls().to_list())

    return rulespecs.Vocabulary(top("name"), top("service_name"))


def fluo_rules(ruleset: str, specs: list[Any]) -> Any:
    import rulespecs

    import fluo

    if ruleset == "base":
        return fluo.load_rules([HERE / f for f in rulespecs.BASE_FILES])
    return fluo.load_rules(rulespecs.rules_yaml(specs))


def rule_columns(ruleset: str, specs: list[Any], path: str) -> list[str]:
    """The columns fluo's checker says the rules read (the floor's columns)."""
    import polars as pl

    from fluo.schema import SpanSchema

    schema = SpanSchema.of(pl.scan_parquet(path))
    used: set[str] = set()
    for checked in fluo_rules(ruleset, specs).check(schema):
        used |= checked.columns
    return sorted(used)


# --- the competitors (each runs in a child process) ----------------------------------------


def build_case(variant: str, path: str, ruleset: str, sample: int) -> tuple[Any, Any]:
    """(a zero-argument callable doing one run, a function turning its result into the
    (rule, id) frame, applied after the timing)."""
    import polars as pl
    import rulespecs

    specs = specs_for(ruleset, path)
    span_specs = [s for s in specs if s.level == "span"]
    trace_specs = [s for s in specs if s.level == "trace"]
    window_specs = [s for s in specs if s.level == "window"]
    if variant == "scan":
        columns = rule_columns(ruleset, specs, path)

        def scan() -> int:
            rows = 0
            lf = pl.scan_parquet(path).select(columns)
            for batch in lf.collect_batches(engine="streaming", maintain_order=False):
                rows += batch.height
            return rows

        return scan, None
    if variant == "fluo":
        rule_set = fluo_rules(ruleset, specs)
        return (lambda: rule_set.evaluate(path)), lambda signals: fluo_pairs(signals, specs)
    if variant == "polars":
        return (lambda: polars_answer(path, span_specs, trace_specs, window_specs)), None
    if variant == "duckdb":
        con = harness.duckdb_connection()
        queries = duckdb_queries(path, span_specs, trace_specs)
        window_queries = duckdb_window_queries(path, window_specs)

        def duck() -> pl.DataFrame:
            frames = [con.sql(q).pl() for q in queries]
            frames += [rulespecs.window_ids(con.sql(q).pl()) for q in window_queries]
            return pl.concat(frames) if frames else pl.DataFrame(schema={"rule": pl.String})

        return duck, None
    if variant == "python":
        return (lambda: interpret(path, span_specs, trace_specs, sample, window_specs)), None
    raise SystemExit(f"unknown variant {variant}")


def fluo_pairs(signals: Any, specs: list[Any]) -> Any:
    """fluo's signals as (rule, id) pairs: span_id for span rules, trace_id for trace
    rules, `rulespecs.window_ids` of (service, name, window_start) for windowed rules."""
    import polars as pl
    import rulespecs

    span_names = [s.name for s in specs if s.level == "span"]
    window_names = [s.name for s in specs if s.level == "window"]
    is_span, is_window = pl.col("rule").is_in(span_names), pl.col("rule").is_in(window_names)
    ids = pl.when(is_span).then(pl.col("span_id")).otherwise(pl.col("trace_id"))
    flat = signals.filter(~is_window).select(pl.col("rule").cast(pl.String), ids.alias("id"))
    windows = signals.filter(is_window).select(rulespecs.WINDOW_SIGNAL)
    return pl.concat([flat, rulespecs.window_ids(windows)]).unique()


def by_shape(window_specs: list[Any]) -> dict[str, tuple[Any, list[Any]]]:
    """The windowed rules by the shape they group by: {key: (Window, [specs])}."""
    shapes: dict[str, tuple[Any, list[Any]]] = {}
    for s in window_specs:
        shapes.setdefault(s.window.key, (s.window, []))[1].append(s)
    return shapes


def polars_answer(
    path: str, span_specs: list[Any], trace_specs: list[Any], window_specs: list[Any]
) -> Any:
    """Hand-written fused Polars: every level planned lazily, collected together."""
    import polars as pl
    import rulespecs

    scan = pl.scan_parquet(path)
    jobs = []
    if span_specs:
        names = [s.name for s in span_specs]
        flags = [s.polars.fill_null(False).alias(s.name) for s in span_specs]
        jobs.append(
            scan.select("span_id", *flags)
            .filter(pl.any_horizontal(names))
            .unpivot(on=names, index="span_id", variable_name="rule", value_name="hit")
            .filter(pl.col("hit"))
            .select("rule", pl.col("span_id").alias("id"))
        )
    if trace_specs:
        names = [s.name for s in trace_specs]
        atoms = list({str(a[0]): a[0] for s in trace_specs for a in s.atoms}.values())
        union = pl.any_horizontal(a.fill_null(False) for a in atoms)
        jobs.append(
            scan.filter(union)
            .group_by("trace_key")
            .agg(pl.col("trace_id").first(), *(s.polars.alias(s.name) for s in trace_specs))
            .filter(pl.any_horizontal(names))
            .unpivot(on=names, index="trace_id", variable_name="rule", value_name="hit")
            .filter(pl.col("hit"))
            .select("rule", pl.col("trace_id").alias("id"))
        )
    shapes = by_shape(window_specs)
    for shape, specs in shapes.values():
        names = [s.name for s in specs]
        metrics = dict.fromkeys(m for s in specs for m in s.metrics)
        rows = scan if shape.where_polars is None else scan.filter(shape.where_polars)
        keys = [pl.col("service_name").alias("service")]
        if "name" in shape.by:
            keys.append(pl.col("name"))
        index = [k.meta.output_name() for k in keys] + ["window_start"]
        jobs.append(
            rows.group_by(
                *keys, pl.col("start_time").dt.truncate(f"{shape.minutes}m").alias("window_start")
            )
            .agg(rulespecs.METRICS_POLARS[m].alias(m) for m in metrics)
            .select(*index, *(s.polars.fill_null(False).alias(s.name) for s in specs))
            .filter(pl.any_horizontal(names))
            .unpivot(on=names, index=index, variable_name="rule", value_name="hit")
            .filter(pl.col("hit"))
            .select(
                "rule",
                "service",
                pl.col("name") if "name" in shape.by else pl.lit(None, pl.String).alias("name"),
                "window_start",
            )
        )
    frames = pl.collect_all(jobs, engine="streaming")
    n_flat = len(frames) - len(shapes)
    windows = [rulespecs.window_ids(f) for f in frames[n_flat:]]
    return pl.concat(frames[:n_flat] + windows)


def duckdb_queries(path: str, span_specs: list[Any], trace_specs: list[Any]) -> list[str]:
    src = f"read_parquet('{path}')"
    queries = []
    if span_specs:
        flags = ",\n    ".join(f"coalesce({s.sql}, false) AS {s.name}" for s in span_specs)
        names = [s.name for s in span_specs]
        queries.append(
            f"WITH flags AS (\n  SELECT span_id,\n    {flags}\n  FROM {src}\n)\n"
            f"SELECT rule, span_id AS id FROM (SELECT * FROM flags WHERE {' OR '.join(names)})\n"
            f"UNPIVOT (hit FOR rule IN ({', '.join(names)}))\nWHERE hit"
        )
    if trace_specs:
        names = [s.name for s in trace_specs]
        rules = ",\n    ".join(f"{s.sql} AS {s.name}" for s in trace_specs)
        atoms = list(dict.fromkeys(a[1] for s in trace_specs for a in s.atoms))
        where = " OR ".join(f"({a})" for a in atoms)
        queries.append(
            f"WITH per_trace AS (\n  SELECT any_value(trace_id) AS trace_id,\n    {rules}\n"
            f"  FROM {src}\n  WHERE {where}\n  GROUP BY trace_key\n"
            f"  HAVING {' OR '.join(names)}\n)\n"
            f"SELECT rule, trace_id AS id FROM per_trace\n"
            f"UNPIVOT (hit FOR rule IN ({', '.join(names)}))\nWHERE hit"
        )
    return queries


def duckdb_window_queries(path: str, window_specs: list[Any]) -> list[str]:
    """Per window shape: one GROUP BY keys, time_bucket(...) computing each metric once,
    a flag per windowed rule, UNPIVOT: (rule, service, name, window_start)."""
    import rulespecs

    queries = []
    for shape, specs in by_shape(window_specs).values():
        names = [s.name for s in specs]
        metrics = dict.fromkeys(m for s in specs for m in s.metrics)
        aggs = ",\n    ".join(f"{rulespecs.METRICS_SQL[m]} AS {m}" for m in metrics)
        by_name = "name" in shape.by
        keys = "service_name AS service, " + ("name" if by_name else "NULL::VARCHAR AS name")
        bucket = f"time_bucket(INTERVAL '{shape.minutes} minutes', start_time)"
        where = f"\n  WHERE {shape.where_sql}" if shape.where_sql else ""
        flags = ",\n    ".join(f"coalesce({s.sql}, false) AS {s.name}" for s in specs)
        queries.append(
            f"WITH per_window AS (\n  SELECT {keys}, {bucket} AS window_start,\n    {aggs}\n"
            f"  FROM read_parquet('{path}'){where}\n"
            f"  GROUP BY service_name, {'name, ' if by_name else ''}window_start\n"
            f"), flags AS (\n  SELECT service, name, window_start,\n    {flags}\n"
            f"  FROM per_window\n)\n"
            f"SELECT rule, service, name, window_start\n"
            f"FROM (SELECT * FROM flags WHERE {' OR '.join(names)})\n"
            f"UNPIVOT (hit FOR rule IN ({', '.join(names)}))\nWHERE hit"
        )
    return queries


INTERPRETER_COLUMNS = (
    "trace_id", "span_id", "parent_span_id", "name", "kind", "service_name", "duration_ns",
    "status_code", "status_message", "span_attributes", "attr.http.url", "attr.http.method",
    "attr.http.status_code",
)  # fmt: skip


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def interpret(
    path: str,
    span_specs: list[Any],
    trace_specs: list[Any],
    sample: int,
    window_specs: list[Any] | None = None,
) -> Any:
    """A per-trace rule interpreter: the spans of the sampled traces as dicts, grouped by
    trace; every span rule on every span, every trace rule on every trace, in Python.
    Windowed rules: each span goes to its group and window (per shape), and every
    windowed rule is evaluated on every window once all traces are read."""
    import polars as pl
    import rulespecs

    scan = pl.scan_parquet(path)
    present = scan.collect_schema()
    shapes = by_shape(window_specs or [])
    wanted = INTERPRETER_COLUMNS + (("start_time",) if shapes else ())
    columns = [c for c in wanted if c in present]
    if sample > 1:
        scan = scan.filter(pl.col("trace_key") % sample == 0)
    c0, t0 = os.times(), time.perf_counter()
    frame = scan.select(columns).collect()
    c1 = os.times()
    # Finding the sample scans the whole table once: not scaled by the extrapolation.
    harness.CASE_EXTRA["select_s"] = time.perf_counter() - t0
    harness.CASE_EXTRA["select_cpu_s"] = (c1.user - c0.user) + (c1.system - c0.system)
    rows = frame.to_dicts()
    traces: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        traces[row["trace_id"]].append(row)
    out: list[tuple[str, str]] = []
    windows: dict[str, dict[tuple[Any, Any, int], list[dict[str, Any]]]] = {
        key: defaultdict(list) for key in shapes
    }
    for trace_id, spans in traces.items():
        for spec in span_specs:
            check = spec.python
            out.extend((spec.name, s["span_id"]) for s in spans if check(s))
        for spec in trace_specs:
            if spec.python(spans):
                out.append((spec.name, trace_id))
        for key, (shape, _) in shapes.items():
            step, groups = timedelta(minutes=shape.minutes), windows[key]
            by_name, where = "name" in shape.by, shape.where_python
            for s in spans:
                if where is None or where(s):
                    name = s["name"] if by_name else None
                    groups[(s["service_name"], name, (s["start_time"] - EPOCH) // step)].append(s)
    fired: list[tuple[str, Any, Any, int]] = []
    for key, (shape, specs) in shapes.items():
        seconds = shape.minutes * 60
        for (service, name, index), group in windows[key].items():
            fired.extend((s.name, service, name, index * seconds) for s in specs if s.python(group))
    harness.CASE_EXTRA["sample_spans"] = len(rows)
    harness.CASE_EXTRA["sample_traces"] = len(traces)
    flat = pl.DataFrame(out, schema={"rule": pl.String, "id": pl.String}, orient="row")
    if not shapes:
        return flat
    schema = {"rule": pl.String, "service": pl.String, "name": pl.String, "window_start": pl.Int64}
    signals = pl.DataFrame(fired, schema=schema, orient="row").with_columns(
        pl.from_epoch("window_start", "s").dt.replace_time_zone("UTC")
    )
    return pl.concat([flat, rulespecs.window_ids(signals)])


def child(args: argparse.Namespace) -> None:
    func, answer = build_case(args.case, args.data, args.rules, args.sample)
    harness.run_case(args.case, func, args.dump, answer)


# --- the driver -----------------------------------------------------------------------------


def parse_size(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 1_000, "M": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("KM")) * scale)


def sample_factor(n_spans: int) -> int:
    return max(1, round(n_spans / SAMPLE_SPANS))


def measure_case(
    label: str,
    path: Path,
    ruleset: str,
    variants: list[str],
    runs: int,
    quiet_wait: float,
    timeout: float,
) -> dict[str, Any]:
    """Every variant `runs` times, round-robin; medians; agreement with fluo."""
    import polars as pl

    n_spans = pl.scan_parquet(path).select(pl.len()).collect().item()
    sample = sample_factor(n_spans)
    print(f"\n== {label}: {path.name}, rule set {ruleset}", flush=True)
    harness.warm(path)
    raw: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="suite_") as tmp:
        dumps = Path(tmp)
        for i in range(runs):
            for variant in variants:
                if variant in errors:
                    continue
                busy = harness.wait_for_quiet(quiet_wait) if quiet_wait > 0 else float("nan")
                args = ["--case", variant, "--data", str(path), "--rules", ruleset]
                args += ["--sample", str(sample)]
                if i == 0 and variant in ANSWERING:
                    args += ["--dump", str(dumps / f"{variant}.parquet")]
                r = harness.spawn(Path(__file__), args, timeout=timeout)
                if "error" in r:
                    errors[variant] = r["error"]
                    print(f"  {variant}: FAILED {r['error']}", flush=True)
                    continue
                raw[variant].append(r | {"busy_before": busy})
                print(
                    f"  run {i + 1}/{runs} {variant:7s} {r['seconds']:8.3f} s "
                    f"(cpu {r['cpu_s']:7.2f} s) {r['peak_mb']:6.0f} MB  "
                    f"others {r['others_cpu_s']:5.2f} cpu-s",
                    flush=True,
                )
        factor = n_spans / raw["python"][0]["sample_spans"] if raw.get("python") else 1.0
        for r in raw.get("python", []):  # the whole table's worth of interpretation
            r["measured_seconds"], r["measured_cpu_s"] = r["seconds"], r["cpu_s"]
            r["seconds"] = r["select_s"] + (r["seconds"] - r["select_s"]) * factor
            r["cpu_s"] = r["select_cpu_s"] + (r["cpu_s"] - r["select_cpu_s"]) * factor
        summary = {v: summarize(rs) for v, rs in raw.items() if rs}
        reference = dumps / "fluo.parquet"
        counts = harness.per_rule_counts(reference) if reference.exists() else {}
        for variant in summary:
            if variant not in ANSWERING or variant == "fluo":
                continue
            theirs = dumps / f"{variant}.parquet"
            ours = reference
            if variant == "python" and sample > 1:
                ours = dumps / "fluo_sample.parquet"
                sampled = (
                    pl.scan_parquet(path)
                    .filter(pl.col("trace_key") % sample == 0)
                    .select("span_id", "trace_id")
                    .collect()
                )
                ids = pl.concat([sampled["span_id"], sampled["trace_id"].unique()])
                restricted = pl.read_parquet(reference).filter(pl.col("id").is_in(ids.implode()))
                windowed = fluo_windows_on_sample(path, ruleset, sample, dumps)
                pl.concat([restricted, windowed]).write_parquet(ours)
            diff = harness.agreement(ours, theirs) if reference.exists() else {"no fluo": {}}
            summary[variant]["agrees"] = not diff
            if diff:
                summary[variant]["differences"] = diff
                print(f"  !! {variant} disagrees with fluo: {diff}", flush=True)
    if "fluo" in summary:
        summary["fluo"]["agrees"] = True
    if "python" in summary:
        p, runs_ = summary["python"], raw["python"]
        p["sample_spans"], p["sample_factor"] = runs_[0]["sample_spans"], factor
        p["measured_median_s"] = harness.median([r["measured_seconds"] for r in runs_])
        p["measured_median_cpu_s"] = harness.median([r["measured_cpu_s"] for r in runs_])
        p["median_select_s"] = harness.median([r["select_s"] for r in runs_])
    return {
        "label": label,
        "data": path.name,
        "spans": n_spans,
        "ruleset": ruleset,
        "rules": len(specs_for(ruleset, str(path))),
        "variants": summary,
        "errors": errors,
        "signals_per_rule": counts,
    }


def fluo_windows_on_sample(path: Path, ruleset: str, sample: int, tmp: Path) -> Any:
    """fluo's windowed signals, as (rule, id) pairs, over the interpreter's sample (the
    traces with trace_key % sample == 0): what the interpreter's windows must equal."""
    import polars as pl
    import rulespecs

    import fluo

    specs = [s for s in specs_for(ruleset, str(path)) if s.level == "window"]
    if not specs:
        return pl.DataFrame(schema={"rule": pl.String, "id": pl.String})
    sampled = tmp / "sample.parquet"
    pl.scan_parquet(path).filter(pl.col("trace_key") % sample == 0).sink_parquet(sampled)
    signals = fluo.load_rules(rulespecs.rules_yaml(specs)).evaluate(sampled)
    return fluo_pairs(signals, specs)


def valid(case: dict[str, Any], variant: str) -> dict[str, Any] | None:
    v = case["variants"].get(variant)
    return v if v is not None and v.get("agrees", variant == "scan") else None


def case_ratios(case: dict[str, Any], field: str = "median_s") -> dict[str, float]:
    """Ratios of medians (wall, or `field`="median_cpu_s" for CPU) against fluo."""
    out: dict[str, float] = {}
    f = valid(case, "fluo")
    if not f:
        return out
    for variant in ("scan", "polars", "duckdb", "python"):
        v = valid(case, variant)
        if v:
            key = "fluo / floor" if variant == "scan" else f"{variant} / fluo"
            out[key] = ratio(f[field], v[field]) if variant == "scan" else ratio(v[field], f[field])
    return out


def nezha_case(
    data_dir: Path, runs: int, quiet_wait: float, timeout: float
) -> tuple[dict[str, Any] | None, str]:
    """The Nezha RCA trace CSVs (both systems, every minute file) read by fluo's `nezha`
    profile and written once as canonical Parquet, which every variant then reads."""
    files = sorted(str(p) for p in NEZHA.rglob("*_trace.csv*")) if NEZHA.exists() else []
    if not files:
        return None, f"skipped: no Nezha trace files under {NEZHA}"
    target = data_dir / "nezha.parquet"
    try:
        from fluo.ingest import scan_spans

        if not target.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".tmp")
            frame = scan_spans(files, format="nezha").sort("start_time")
            frame.sink_parquet(tmp, compression="zstd", row_group_size=122_000)
            tmp.replace(target)
    except Exception as exc:  # no profile, or the reader's own errors: report and skip
        return None, f"skipped: fluo could not read the Nezha data ({type(exc).__name__}: {exc})"
    case = measure_case(
        "Nezha (real data)", target, "portable:10", list(VARIANTS), runs, quiet_wait, timeout
    )
    return case, f"measured on {len(files)} minute files (`nezha` ingest profile)"


def main() -> None:
    parser = argparse.ArgumentParser(
        description="The comparative benchmark suite (issue #6)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sizes", default="1M,5M,20M", help="span counts (default 1M,5M,20M)")
    parser.add_argument("--rule-counts", default="1,10,100,300")
    parser.add_argument("--rules-size", default="1M", help="spans for the rule scaling")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="200k spans, 1 run, no README")
    parser.add_argument("--only", help="comma-separated variants (default: all)")
    parser.add_argument("--no-nezha", action="store_true")
    parser.add_argument(
        "--only-nezha", action="store_true", help="measure Nezha only, into the --out results"
    )
    parser.add_argument("--quiet-wait", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per run")
    parser.add_argument("--data-dir", type=Path, default=HERE / "data")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "suite.json")
    parser.add_argument("--render", type=Path, help="do not measure: report a results file")
    readme = parser.add_mutually_exclusive_group()
    readme.add_argument("--readme", action="store_true", help="update README even with --quick")
    readme.add_argument("--no-readme", action="store_true")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--rules", help=argparse.SUPPRESS)
    parser.add_argument("--sample", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--dump", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        child(args)
        return
    if args.render:
        report = json.loads(args.render.read_text())
        publish(report, args)
        return
    if args.only_nezha:
        report = json.loads(args.out.read_text())
        case, status = nezha_case(args.data_dir, args.runs, args.quiet_wait, args.timeout)
        report["nezha"] = {"status": status, "case": case}
        args.out.write_text(json.dumps(report, indent=1))
        publish(report, args)
        return
    if args.quick:
        args.sizes, args.rules_size, args.runs = "200k", "200k", 1
        args.rule_counts, args.quiet_wait = "1,10,100", 0.0
    import spangen

    started = time.perf_counter()
    variants = args.only.split(",") if args.only else list(VARIANTS)
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    counts = [int(c) for c in args.rule_counts.split(",") if c.strip()]
    rules_size = parse_size(args.rules_size)
    report: dict[str, Any] = {
        "command": command_line(args),
        "machine": harness.machine_info(),
        "load_before": harness.load_average(),
        "spans": [],
        "rules": [],
    }
    for n in sizes:
        path, meta = spangen.ensure_dataset(args.data_dir, n, args.seed)
        case = measure_case(
            f"{n:,} spans", path, "base", variants, args.runs, args.quiet_wait, args.timeout
        )
        report["spans"].append(case | {"dataset": meta})
        save(report, args.out)  # partial results survive an interrupted suite
    path, meta = spangen.ensure_dataset(args.data_dir, rules_size, args.seed)
    rule_variants = [v for v in variants if v != "scan"]
    for count in counts:
        case = measure_case(
            f"{count} rules",
            path,
            f"gen:{count}",
            rule_variants,
            args.runs,
            args.quiet_wait,
            args.timeout,
        )
        report["rules"].append(case | {"dataset": meta})
        save(report, args.out)
    if args.no_nezha:
        report["nezha"] = {"status": "skipped: --no-nezha"}
    else:
        case, status = nezha_case(args.data_dir, args.runs, args.quiet_wait, args.timeout)
        report["nezha"] = {"status": status, "case": case}
        print(f"\nNezha: {status}", flush=True)
    report["total_s"] = round(time.perf_counter() - started, 1)
    report["load_after"] = harness.load_average()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"\nresults: {args.out} ({report['total_s']} s in all)")
    publish(report, args)


def save(report: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1))
    tmp.replace(out)


def command_line(args: argparse.Namespace) -> str:
    if args.quick:
        return ".venv/bin/python benchmarks/suite.py --quick"
    cmd = f".venv/bin/python benchmarks/suite.py --sizes {args.sizes} --runs {args.runs}"
    if args.rule_counts != "1,10,100,300" or args.rules_size != "1M":
        cmd += f" --rule-counts {args.rule_counts} --rules-size {args.rules_size}"
    if args.only:
        cmd += f" --only {args.only}"
    return cmd


# --- the report ---------------------------------------------------------------------------------


def publish(report: dict[str, Any], args: argparse.Namespace) -> None:
    """Print the report; with the README (not for --quick, unless --readme), redraw
    benchmarks/suite.png and rewrite the README block; else draw the chart beside --out."""
    quick = "--quick" in report["command"]
    to_readme = (not quick or args.readme) and not args.no_readme
    chart = plot(report, CHART if to_readme else args.out.with_suffix(".png"))
    text = markdown(report)
    print()
    print(text)
    if chart:
        print(f"chart: {chart}")
    if to_readme:
        harness.update_readme(BEGIN, END, text, SECTION)
        print(f"updated {harness.README}")


def _cell(case: dict[str, Any], variant: str) -> str:
    v = case["variants"].get(variant)
    if v is None:
        err = case.get("errors", {}).get(variant)
        return "failed" if err else "n/a"
    t = f"{fmt(v['median_s'], '.2f', ' s')} ({fmt(v['median_cpu_s'], '.1f')})"
    if variant != "scan" and not v.get("agrees"):
        return f"~~{t}~~ (differs)"
    return t


def _x(case: dict[str, Any], key: str, spec: str = ".2f") -> str:
    """A ratio of wall medians, and of CPU medians in parentheses."""
    wall, cpu = case_ratios(case).get(key), case_ratios(case, "median_cpu_s").get(key)
    return f"{fmt(wall, spec, 'x')} ({fmt(cpu, spec, 'x')})" if wall is not None else "n/a"


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"Command: `{report['command']}` ({report.get('total_s', 0):.0f} s in all, "
        f"{m['date']}); fluo at {m['fluo_commit']}"
        + (" with uncommitted changes in fluo/" if m.get("fluo_uncommitted") else "")
        + ".",
        "",
        f"Machine: {m['nproc']} cores ({m['cpu']}), {m['memory_gb']} GB, Python "
        f"{m['python']}, polars {m['polars']}, duckdb {m['duckdb']} ({m['duckdb_threads']} "
        f"threads). Shared with other sessions: 1-minute load average {report['load_before']:.1f} "
        f"before and {report.get('load_after', float('nan')):.1f} after the suite; each run "
        "waited up to a few seconds for idle CPUs, and *others' CPU* (the CPU time other "
        "processes used during a run) is in the JSON. Cells: median wall seconds, and in "
        "parentheses median CPU seconds (user + system, all threads of the measured process: "
        "steadier than wall time when other work takes cores). Ratios: of wall medians (of "
        "CPU medians), all from this one invocation; peak RSS: the measured process's.",
        "",
        "**Scaling with spans** (20 span rules + 10 trace rules, `span_rules.yaml` + "
        "`trace_rules.yaml`):",
        "",
        "| spans | floor (scan) | fluo | hand-fused Polars | DuckDB | Python interpreter* "
        "| fluo / floor | Polars / fluo | DuckDB / fluo | Python / fluo | fluo peak RSS |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case in report["spans"]:
        f = case["variants"].get("fluo", {})
        lines.append(
            f"| {case['spans']:,} | "
            + " | ".join(_cell(case, v) for v in VARIANTS)
            + f" | {_x(case, 'fluo / floor')} | {_x(case, 'polars / fluo')}"
            f" | {_x(case, 'duckdb / fluo')} | {_x(case, 'python / fluo', '.0f')}"
            f" | {fmt(f.get('median_peak_mb'), '.0f', ' MB')} |"
        )
    lines += [
        "",
        "**Scaling with rules** (generated mixed rule sets: 1/2 span, 1/4 trace and 1/4 "
        "windowed aggregate rules, six span, three trace and three windowed families sharing "
        "columns; `benchmarks/rulespecs.py`):",
        "",
        "| rules | spans | fluo | hand-fused Polars | DuckDB | Python interpreter* "
        "| Polars / fluo | DuckDB / fluo | Python / fluo | fluo per rule |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case in report["rules"]:
        f = case["variants"].get("fluo")
        per_rule = f["median_s"] / case["rules"] if f else None
        lines.append(
            f"| {case['rules']} | {case['spans']:,} | "
            + " | ".join(_cell(case, v) for v in ANSWERING)
            + f" | {_x(case, 'polars / fluo')} | {_x(case, 'duckdb / fluo')}"
            f" | {_x(case, 'python / fluo', '.0f')} | {fmt(per_rule, '.3f', ' s')} |"
        )
    samples = [
        (c["spans"], c["variants"]["python"])
        for c in report["spans"] + report["rules"]
        if "python" in c["variants"]
    ]
    if samples:
        n, p = samples[0]
        lines += [
            "",
            "\\* The interpreter ran on a deterministic sample of whole traces (`trace_key % K "
            f"== 0`, ~{harness.median([s[1]['sample_spans'] for s in samples]):,.0f} spans); "
            "its time is the time to find the sample (a scan of the whole table, counted once) "
            "plus the rest (spans to dicts, grouping, every rule) multiplied by (spans / "
            f"sampled spans) — e.g. at {n:,} spans it measured {p['measured_median_s']:.2f} s "
            f"on {p['sample_spans']:,} spans. Its answers were checked against fluo's on the "
            "sampled traces.",
        ]
    lines += scaling_findings(report)
    nezha = report.get("nezha") or {}
    lines += ["", f"**Nezha (real data)**: {nezha.get('status', 'not run')}."]
    case = nezha.get("case")
    if case:
        lines.append(
            f"{case['spans']:,} spans, 10 portable generated rules: "
            + ", ".join(f"{DESCRIPTIONS[v]} {_cell(case, v)}" for v in VARIANTS)
        )
    disagreements = [
        f"{c['label']}: {v} ({', '.join(d['differences'])})"
        for c in report["spans"] + report["rules"]
        for v, d in c["variants"].items()
        if d.get("differences")
    ]
    failures = [
        f"{c['label']}: {v}: {e}"
        for c in report["spans"] + report["rules"]
        for v, e in c["errors"].items()
    ]
    lines += [
        "",
        "Agreement: "
        + (
            "every competitor produced exactly fluo's (rule, id) pairs on every case."
            if not disagreements
            else "struck-out figures differ from fluo: " + "; ".join(disagreements) + "."
        ),
    ]
    if failures:
        lines.append("Failed runs: " + "; ".join(failures) + ".")
    if CHART.exists():
        lines += [
            "",
            f"![suite chart: median CPU seconds by spans and by rules]({CHART.name})",
            "",
            "The chart plots CPU seconds (user + system, all threads), not wall time: other "
            "sessions kept the shared machine's two cores busy during parts of the run.",
        ]
    return "\n".join(lines)


def scaling_findings(report: dict[str, Any]) -> list[str]:
    """Sentences from the figures: growth with spans and rules (wall and CPU), the target."""
    out = []

    def series(cases: list[dict[str, Any]], x: str) -> list[tuple[int, float, float]]:
        return [
            (c[x], c["variants"]["fluo"]["median_s"], c["variants"]["fluo"]["median_cpu_s"])
            for c in cases
            if valid(c, "fluo")
        ]

    spans = series(report["spans"], "spans")
    if len(spans) >= 2:
        (n0, t0, c0), (n1, t1, c1) = spans[0], spans[-1]
        out.append(
            f"* Spans: {n1 / n0:.0f}x the spans took fluo {t1 / t0:.1f}x the wall time and "
            f"{c1 / c0:.1f}x the CPU ({c0 / n0 * 1e9:.0f} CPU ns/span at {n0:,}, "
            f"{c1 / n1 * 1e9:.0f} at {n1:,}; linear means equal ns/span)."
        )
    rules = series(report["rules"], "rules")
    if len(rules) >= 2:
        (r0, t0, c0), (r1, t1, c1) = rules[0], rules[-1]
        out.append(
            f"* Rules: {r1 / r0:.0f}x the rules took fluo {t1 / t0:.1f}x the wall time and "
            f"{c1 / c0:.1f}x the CPU ({(c1 - c0) / (r1 - r0) * 1000:.1f} CPU ms per added rule "
            f"over {report['rules'][0]['spans']:,} spans)."
        )
    wall = [case_ratios(c).get("polars / fluo") for c in report["spans"]]
    cpu = [case_ratios(c, "median_cpu_s").get("polars / fluo") for c in report["spans"]]
    pairs = [(w, c) for w, c in zip(wall, cpu, strict=True) if w is not None and c is not None]
    if pairs:
        best = max(max(w, c) for w, c in pairs)
        out.append(
            "* Target: fluo within 10% of the hand-fused Polars ceiling — Polars / fluo "
            + ", ".join(f"{w:.2f}x ({c:.2f}x CPU)" for w, c in pairs)
            + " by size: "
            + ("met." if best >= 1 / 1.1 else "**not met** (fluo is slower by more than 10%).")
        )
    return ["", *out] if out else []


def plot(report: dict[str, Any], target: Path = CHART) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no chart: matplotlib is not installed (pip install '.[plot]')")
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for variant in VARIANTS:
        for axis, cases, x_key in (
            (left, report["spans"], "spans"),
            (right, report["rules"], "rules"),
        ):
            points = [(c[x_key], valid(c, variant)[CHARTED]) for c in cases if valid(c, variant)]
            if len(points) < 1:
                continue
            xs, ys = zip(*points, strict=True)
            style = "--" if variant == "python" else "-"
            axis.plot(xs, ys, style, marker="o", color=COLORS[variant], label=DESCRIPTIONS[variant])
    left.set(xscale="log", yscale="log", xlabel="spans", ylabel=CHARTED_LABEL,
             title="30 rules (20 span + 10 trace)")  # fmt: skip
    size = report["rules"][0]["spans"] if report["rules"] else 0
    right.set(xscale="log", yscale="log", xlabel="rules (1/2 span, 1/4 trace, 1/4 windowed)",
              ylabel=CHARTED_LABEL, title=f"{size:,} spans")  # fmt: skip
    left.legend(fontsize=7)
    for axis in (left, right):
        axis.grid(True, which="both", alpha=0.3)
    m = report["machine"]
    fig.suptitle(f"fluo {m['fluo_commit']}, {m['nproc']} cores, {m['date']}", fontsize=9)
    fig.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return target


if __name__ == "__main__":
    main()
