"""What every benchmark in this folder shares: runs in child processes, medians, the
machine's description, the agreement check, DuckDB setup and the README blocks.

A measured case runs in a fresh child process (its own caches, its own peak RSS): the
driver calls `spawn(script, case, data, ...)`, the child (the same script, with
`--case`) calls `run_case(func)`, which times one call and prints one JSON line; the
child may dump its answer, (rule, id) pairs, to Parquet for `agreement`.

The machine is shared with other work, so `spawn` also reports how much CPU other
processes used during the run (`others_cpu_s`), and `wait_for_quiet` waits (a bounded
time) for the CPUs to go idle before a run.
"""

from __future__ import annotations

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


# --- summaries ----------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(a: float | None, b: float | None) -> float:
    return a / b if a is not None and b else float("nan")


def fmt(x: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "n/a" if x is None or x != x else f"{x:{spec}}{suffix}"


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
