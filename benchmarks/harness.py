"""What every benchmark in this folder shares: runs in child processes, medians, the
machine's description, the agreement check, DuckDB setup and the README blocks.

A measured case runs in a fresh child process (its own caches, its own peak RSS): the
driver calls `spawn(script, case, data, ...)`, the child (the same script, with
`--case`) calls `run_case(func)`, which times one call and prints one JSON line; the
child may dump its answer, (rule, id) pairs, to Parquet for `agreement`.

The machine is shared with other work, so `spawn` also reports how much CPU other
processes used during the run (`others_cpu_s`), and `wait_for_quiet` waits (a bounded
time) for the CPUs to go idle before a run.

The drivers share their command line (`add_run_options`, `add_data_options`,
`add_readme_options`, `add_child_options`) and their measurement loop (`measure`: every
variant `--runs` times, round-robin, each run by `spawn_case`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
THREADS = 2  # DuckDB threads; Polars uses its default pool (all cores = 2 here)
#: From this many spans up a run is a real measurement: it waits for quiet CPUs by
#: default and writes its figures to README (smaller runs are smoke tests).
FULL_SIZE = 1_000_000


# --- the machine ---------------------------------------------------------------------


def load_average() -> float:
    """The 1-minute load average."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


def busy_seconds() -> float:
    """CPU seconds spent busy by the whole machine since boot (all cores, from /proc/stat)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return float("nan")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def busy_cores(interval: float = 0.5) -> float:
    """How many cores the machine kept busy during the next `interval` seconds."""
    before = busy_seconds()
    time.sleep(interval)
    return (busy_seconds() - before) / interval


def wait_for_quiet(max_wait: float, threshold: float = 0.3) -> float:
    """Wait (at most `max_wait` s) until other processes use under `threshold` cores;
    returns the last measured number of busy cores."""
    deadline = time.monotonic() + max_wait
    while True:
        busy = busy_cores()
        if busy < threshold or time.monotonic() >= deadline:
            return busy


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def git(*args: str) -> str:
    try:
        proc = subprocess.run(["git", *args], cwd=HERE.parent, capture_output=True, text=True)
    except OSError:
        return ""
    return proc.stdout.strip()


def machine_info() -> dict[str, Any]:
    """Versions, cores, memory, the commit measured (and whether fluo/ had local changes)."""
    import polars as pl

    try:
        import duckdb

        duckdb_version = duckdb.__version__
    except ImportError:
        duckdb_version = None
    dirty = git("status", "--porcelain", "--", "fluo")
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "polars": pl.__version__,
        "duckdb": duckdb_version,
        "duckdb_threads": THREADS,
        "polars_threads": pl.thread_pool_size(),
        "fluo_commit": git("rev-parse", "--short", "HEAD"),
        "fluo_uncommitted": [line[3:] for line in dirty.splitlines()],
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


# --- one case in a child process --------------------------------------------------------

#: Extra figures a case may report (merged into its JSON line).
CASE_EXTRA: dict[str, Any] = {}


def rss_mb() -> float:
    """This process's peak resident set so far, in MB. VmHWM belongs to the process image
    (execve starts a new one); ru_maxrss is not used first because Linux carries it over
    from the parent across fork and exec: a child of a large driver would report the
    driver's size."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_case(
    name: str,
    func: Callable[[], Any],
    dump: str | None,
    answer: Callable[[Any], Any] | None = None,
) -> None:
    """Child process: time one call of `func`; print one JSON line. A Polars DataFrame
    answer with columns (rule, id) is written to `dump` (Parquet) when given; `answer`,
    applied after the timing, turns what `func` returned into that frame."""
    import polars as pl

    base = rss_mb()
    c0, t0 = os.times(), time.perf_counter()
    result = func()
    seconds, c1 = time.perf_counter() - t0, os.times()
    if answer is not None:
        result = answer(result)
    out: dict[str, Any] = {
        "case": name,
        "seconds": seconds,
        "cpu_s": (c1.user - c0.user) + (c1.system - c0.system),
        "peak_mb": rss_mb(),
        "base_mb": base,
        **CASE_EXTRA,
    }
    if isinstance(result, pl.DataFrame):
        out["rows"] = result.height
        if dump:
            extra = [c for c in result.columns if c not in ("rule", "id")]
            result.select(
                pl.col("rule").cast(pl.String), pl.col("id").cast(pl.String), *extra
            ).write_parquet(dump)
    elif isinstance(result, int):
        out["rows"] = result
    elif isinstance(result, dict):
        out["result"] = result
    print(json.dumps(out))


def spawn(script: Path, args: Sequence[str], timeout: float | None = None) -> dict[str, Any]:
    """One run of `script args` in a fresh process: its JSON line, plus the CPU time other
    processes used meanwhile (`others_cpu_s`). A failed run returns {"error": ...}."""
    cmd = [sys.executable, str(script), *args]
    load = load_average()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy = busy_seconds()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    busy = busy_seconds() - busy
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        return {"error": f"exit {proc.returncode}: {tail}"}
    child_cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result | {"load_before": load, "others_cpu_s": max(0.0, busy - child_cpu)}


def warm(path: Path) -> None:
    """Read a file once so every variant starts with it in the page cache."""
    with path.open("rb") as f:
        while f.read(1 << 24):
            pass


# --- the command line -------------------------------------------------------------------


def add_run_options(
    parser: argparse.ArgumentParser, *, runs: int, quiet_wait: float | None = None
) -> None:
    """--spans, --runs and --quiet-wait: how large the dataset is, how many times each
    variant runs, and how long to wait for idle CPUs before a run (`quiet_wait=None`: the
    default depends on the size, see `quiet_wait`)."""
    parser.add_argument("--spans", type=int, default=5_000_000)
    parser.add_argument("--runs", type=int, default=runs)
    default = "5 from 1M spans up, else 0" if quiet_wait is None else f"{quiet_wait:g}"
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=quiet_wait,
        help="before each run, wait up to this many seconds for other processes to leave "
        f"the CPUs idle; 0 = do not wait (default: {default})",
    )


def quiet_wait(args: argparse.Namespace) -> float:
    """--quiet-wait as given, else 5 s for a full-size run and 0 (no wait) below."""
    if args.quiet_wait is not None:
        return args.quiet_wait
    return 5.0 if args.spans >= FULL_SIZE else 0.0


def add_data_options(parser: argparse.ArgumentParser, *, out: Path) -> None:
    """--seed and --data-dir (the cached spangen dataset), --out (the results JSON) and
    --only (a subset of the variants, see `select_variants`)."""
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=out)
    parser.add_argument("--data-dir", type=Path, default=HERE / "data")
    parser.add_argument("--only", help="comma-separated variants (default: all)")


def select_variants(only: str | None, variants: Sequence[str]) -> list[str]:
    """The variants named by --only (all of `variants` without it); exits on an unknown one."""
    chosen = only.split(",") if only else list(variants)
    if unknown := set(chosen) - set(variants):
        raise SystemExit(f"unknown variants: {', '.join(sorted(unknown))}")
    return chosen


def add_readme_options(parser: argparse.ArgumentParser) -> None:
    """--readme / --no-readme: force or forbid writing README (see `wants_readme`)."""
    readme = parser.add_mutually_exclusive_group()
    readme.add_argument("--readme", action="store_true", help="update README even below 1M")
    readme.add_argument("--no-readme", action="store_true", help="never update README")


def wants_readme(args: argparse.Namespace) -> bool:
    """Whether a measuring run writes its README block: from 1M spans up or with
    --readme, never with --no-readme."""
    return (args.spans >= FULL_SIZE or args.readme) and not args.no_readme


def add_child_options(parser: argparse.ArgumentParser) -> None:
    """The hidden options of child mode, by which `spawn_case` runs one case: --case,
    --data and --dump (see `run_case`)."""
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--dump", help=argparse.SUPPRESS)


def command_line(script: Path, args: argparse.Namespace) -> str:
    """The command of a run as README shows it: the size, the runs and --only."""
    cmd = f".venv/bin/python benchmarks/{script.name} --spans {args.spans} --runs {args.runs}"
    if args.only:
        cmd += f" --only {args.only}"
    return cmd


def dataset_machine_info(spans: int, meta: dict[str, Any]) -> dict[str, Any]:
    """`machine_info` with pyarrow's version, the size and the dataset (spangen's meta)."""
    import pyarrow

    return machine_info() | {"pyarrow": pyarrow.__version__, "spans": spans, "dataset": meta}


# --- the measurement loop -----------------------------------------------------------------


def child_args(case: str, data: Path, dump: Path | None = None) -> list[str]:
    """The child-mode arguments (`add_child_options`) of one run of `case` on `data`."""
    return ["--case", case, "--data", str(data)] + (["--dump", str(dump)] if dump else [])


def spawn_case(script: Path, case: str, data: Path, dump: Path | None = None) -> dict[str, Any]:
    """One run of `case` on `data` by `script` in a child process: its JSON line (`spawn`);
    exits if the run failed."""
    result = spawn(script, child_args(case, data, dump))
    if "error" in result:
        raise SystemExit(f"case {case} failed: {result['error']}")
    return result


def measure(
    script: Path,
    variants: Sequence[str],
    data: Path,
    runs: int,
    *,
    dumps: Path | None = None,
    quiet_wait: float = 0.0,
    record_busy: bool = False,
    errors: dict[str, str] | None = None,
    log: bool = True,
) -> dict[str, list[dict[str, Any]]]:
    """Run every variant `runs` times, round-robin, each run in its own process of `script`
    (child mode), after reading `data` once into the page cache: {variant: its runs}.

    In the first round each variant's answer is dumped to `dumps`/<variant>.parquet (for
    `agreement`). Before each run, waits up to `quiet_wait` s for idle CPUs; with
    `record_busy` the cores still busy then go into the run's `busy_before`. A failed run
    ends the benchmark, unless `errors` is given: then it is recorded there and the variant
    is not run again. `log`: print a line per run."""
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    width = max([14, *map(len, variants)]) + 1
    warm(data)
    for i in range(runs):
        for variant in variants:
            if errors is not None and variant in errors:
                continue
            dump = dumps / f"{variant}.parquet" if dumps and i == 0 else None
            busy = wait_for_quiet(quiet_wait) if quiet_wait > 0 else float("nan")
            r = spawn(script, child_args(variant, data, dump))
            if "error" in r:
                if errors is None:
                    raise SystemExit(f"case {variant} failed: {r['error']}")
                errors[variant] = r["error"]
                print(f"{variant}: FAILED {r['error']}", file=sys.stderr, flush=True)
                continue
            if record_busy:
                r["busy_before"] = busy
            results[variant].append(r)
            if log:
                print(
                    f"  run {i + 1}/{runs} {variant:{width}s} {r['seconds']:7.3f} s "
                    f"(cpu {r['cpu_s']:6.2f} s) {r['peak_mb']:6.0f} MB   "
                    f"others used {r['others_cpu_s']:5.2f} cpu-s meanwhile",
                    flush=True,
                )
    return results


def publish(
    args: argparse.Namespace,
    report: dict[str, Any],
    markdown: Callable[[dict[str, Any]], str],
    update_readme: Callable[[dict[str, Any], str], None],
) -> None:
    """The end of a measuring run: write `report` to --out, print its tables
    (`markdown(report)`) and, if `wants_readme(args)`, put them in README
    (`update_readme(report, tables)`)."""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    tables = markdown(report)
    print()
    print(tables)
    print(f"\nresults: {args.out}  ({report['total_s']} s in all)")
    if wants_readme(args):
        update_readme(report, tables)
        print(f"updated {README}")


# --- summaries ----------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(a: float | None, b: float | None) -> float:
    return a / b if a is not None and b else float("nan")


def fmt(x: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "n/a" if x is None or x != x else f"{x:{spec}}{suffix}"


def ratios_of_medians(
    pairs: Sequence[tuple[str, str, str | None]],
    valid: Callable[[str], dict[str, Any] | None],
) -> dict[str, dict[str, float]]:
    """{label: {"wall": .., "cpu": ..}}: the ratios of the median wall and CPU times of `top`
    to `bottom` for each (label, top, bottom) of `pairs` whose two variants have a summary
    that counts (`valid(variant)`: the summary, or None)."""
    out: dict[str, dict[str, float]] = {}
    for label, top, bottom in pairs:
        a, b = valid(top), valid(bottom) if bottom else None
        if a and b:
            out[label] = {
                "wall": ratio(a["median_s"], b["median_s"]),
                "cpu": ratio(a["median_cpu_s"], b["median_cpu_s"]),
            }
    return out


def ratio_table(ratios: dict[str, dict[str, float]]) -> list[str]:
    """The Markdown lines of the "ratio of medians" table (none without ratios)."""
    if not ratios:
        return []
    return ["", "| ratio of medians | wall | CPU |", "|---|---:|---:|"] + [
        f"| {k} | {fmt(v['wall'], '.2f', 'x')} | {fmt(v['cpu'], '.2f', 'x')} |"
        for k, v in ratios.items()
    ]


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians (and spread) of a variant's runs."""
    secs = [r["seconds"] for r in runs]
    out: dict[str, Any] = {
        "runs": len(runs),
        "median_s": median(secs),
        "min_s": min(secs),
        "max_s": max(secs),
        "median_cpu_s": median([r["cpu_s"] for r in runs]),
        "median_peak_mb": median([r["peak_mb"] for r in runs]),
        "peaks_mb": [round(r["peak_mb"]) for r in runs],
        "median_base_mb": median([r["base_mb"] for r in runs]),
        "rows": runs[0].get("rows"),
        "seconds": [round(s, 3) for s in secs],
        "loads": [r.get("load_before", float("nan")) for r in runs],
        "others_cpu_s": [round(r.get("others_cpu_s", 0.0), 2) for r in runs],
        "median_others_cpu_s": median([r.get("others_cpu_s", 0.0) for r in runs]),
    }
    for key in ("load_s", "evaluate_s", "signals_mb", "busy_before"):
        values = [r[key] for r in runs if key in r]
        if values:
            out[f"median_{key}"] = median(values)
    return out


# --- agreement ------------------------------------------------------------------------------


def agreement(reference: Path, other: Path) -> dict[str, dict[str, int]]:
    """Rules whose (rule, id) pairs differ between two dumps (and, where both have them,
    other columns such as anchor and evidence): {rule: {reference, other, missing, extra,
    other_details}}; empty when the answers are the same."""
    import polars as pl

    ref_all, got_all = pl.read_parquet(reference), pl.read_parquet(other)
    ref = ref_all.select("rule", "id").unique()
    got = got_all.select("rule", "id").unique()
    missing = ref.join(got, on=["rule", "id"], how="anti")
    extra = got.join(ref, on=["rule", "id"], how="anti")
    details = [c for c in ref_all.columns if c in got_all.columns and c not in ("rule", "id")]
    differing = pl.DataFrame(schema={"rule": pl.String})
    if details:
        both = ref_all.join(got_all, on=["rule", "id"], suffix="_other")
        differs = pl.any_horizontal(pl.col(c).ne_missing(pl.col(f"{c}_other")) for c in details)
        differing = both.filter(differs)
    if missing.height == 0 and extra.height == 0 and differing.height == 0:
        return {}

    def per_rule(frame: pl.DataFrame) -> dict[str, int]:
        return dict(frame.group_by("rule").len().iter_rows())

    counts_ref, counts_got = per_rule(ref), per_rule(got)
    miss, ext, det = per_rule(missing), per_rule(extra), per_rule(differing)
    return {
        rule: {
            "reference": counts_ref.get(rule, 0),
            "other": counts_got.get(rule, 0),
            "missing": miss.get(rule, 0),
            "extra": ext.get(rule, 0),
            "other_details": det.get(rule, 0),
        }
        for rule in sorted(set(counts_ref) | set(counts_got))
        if miss.get(rule) or ext.get(rule) or det.get(rule)
    }


def per_rule_counts(dump: Path) -> dict[str, int]:
    import polars as pl

    pairs = pl.read_parquet(dump).select("rule", "id").unique()
    return dict(sorted(pairs.group_by("rule").len().iter_rows()))


# --- DuckDB -----------------------------------------------------------------------------------


def duckdb_connection(threads: int = THREADS) -> Any:
    """A DuckDB connection with the benchmark's thread count, in UTC (time_bucket and
    TIMESTAMPTZ results follow the session time zone; fluo's windows are UTC)."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads={threads}")
    con.execute("SET TimeZone = 'UTC'")
    return con


# --- README -------------------------------------------------------------------------------------


def update_readme(begin: str, end: str, block: str, section: str | None = None) -> None:
    """Replace the text between the markers `begin` and `end` of benchmarks/README.md with
    `block` (the markers included in `block` or not); append a section if they are absent."""
    body = block
    if not block.startswith(begin):
        body = f"{begin}\n{block}\n{end}"
    text = README.read_text() if README.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + body + tail
    elif section and section in text:
        text = text.replace(section, f"{section}\n\n{body}", 1)
    else:
        heading = f"\n\n{section}\n\n" if section else "\n\n"
        text = text.rstrip("\n") + heading + body + "\n"
    README.write_text(text)
