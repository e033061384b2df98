"""The `fluo` command line: the only place that prints, renders errors and sets exit codes.

Exit codes: 0 the run completed (no rule marked `fail` fired), 1 a rule marked
`fail` fired, 2 bad input (rule errors, unreadable spans, bad options).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import polars as pl
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fluo import engine as scale
from fluo import ingest
from fluo.ast import SEVERITIES
from fluo.errors import DataError, Diagnostic, FluoError, RuleError
from fluo.output import SignalWriter, as_text, format_for
from fluo.rules import RuleSet, load_rules
from fluo.run import RunResult, compile_for, evaluate, stream

if TYPE_CHECKING:
    from fluo.bench import BenchReport, Change

EXIT_OK, EXIT_FAIL_RULE, EXIT_BAD_INPUT = 0, 1, 2

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="fluo: behavioral assurance rules over OpenTelemetry span tables.",
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class Engine(StrEnum):
    local = "local"
    dask = "dask"


class OnError(StrEnum):
    fail = "fail"
    skip = "skip"


class Partition(StrEnum):
    date = "date"
    none = "none"


class Format(StrEnum):
    table = "table"
    jsonl = "jsonl"
    csv = "csv"
    parquet = "parquet"


def bundled(relative: str) -> Path:
    """A file shipped with fluo: inside the installed package, or data/ in a source checkout."""
    packaged = resources.files("fluo").joinpath("_bundled", relative)
    if packaged.is_file() or packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "data" / relative


def render(diagnostic: Diagnostic) -> str:
    """`FILE:LINE:COL: error: MESSAGE`, the source line, a caret, and a hint."""
    pos = diagnostic.position
    where = f"{pos}: " if pos else ""
    lines = [f"{where}{diagnostic.severity}: {diagnostic.message}"]
    if pos and pos.line_text:
        lines.append(f"    {pos.line_text}")
        lines.append("    " + " " * (pos.column - 1) + "^" * max(1, pos.width))
    if diagnostic.hint:
        lines.append(f"  hint: {diagnostic.hint}")
    return "\n".join(lines)


def _fail(exc: FluoError) -> typer.Exit:
    if isinstance(exc, RuleError):
        for diagnostic in exc.diagnostics:
            err.print(render(diagnostic), markup=False)
        count = len(exc.diagnostics)
        err.print(f"{count} error{'s' if count != 1 else ''}", markup=False)
    else:
        err.print(f"error: {exc}", markup=False)
    return typer.Exit(EXIT_BAD_INPUT)


#: The rule files `fluo run` uses with no arguments (the FLUO library is not among them).
DEFAULT_RULES = (
    "rules/seed.yaml",
    "rules/starter.yaml",
    "rules/traces.yaml",
    "rules/aggregates.yaml",
)


def _load(paths: list[Path] | None) -> RuleSet:
    return load_rules(paths or [bundled(r) for r in DEFAULT_RULES])


@app.command()
def run(
    rules: Annotated[
        list[Path] | None, typer.Argument(help="Rule files or directories (default: bundled).")
    ] = None,
    spans: Annotated[
        list[Path] | None,
        typer.Option("--spans", "-s", help="Span input: Parquet file/dir/glob, Arrow IPC, OTLP."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write signals to this file.")
    ] = None,
    fmt: Annotated[
        Format | None, typer.Option("--format", "-f", help="table, jsonl, csv or parquet.")
    ] = None,
    limit: Annotated[int, typer.Option(help="Rows of the terminal table.")] = 20,
    source: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Span format (otlp-json, csv, ...) or mapping profile: a shipped one "
            "(clickhouse, nezha, deeptralog) or a YAML file. Default: told by content.",
        ),
    ] = None,
    on_error: Annotated[
        OnError, typer.Option(help="fail, or skip (and count) malformed span records.")
    ] = OnError.fail,
    baseline: Annotated[
        list[Path] | None,
        typer.Option(help="Baseline spans for windowed rules with `baseline: data`."),
    ] = None,
    engine: Annotated[
        Engine, typer.Option(help="local, or dask: trace buckets on a Dask cluster.")
    ] = Engine.local,
    scheduler: Annotated[
        str | None, typer.Option(help="Dask scheduler address (default: a local cluster).")
    ] = None,
    workers: Annotated[int, typer.Option(help="Workers of the local Dask cluster.")] = 2,
    buckets: Annotated[
        int | None, typer.Option(help="Shuffle the spans into this many trace buckets.")
    ] = None,
    memory_limit: Annotated[
        str | None, typer.Option(help="Pick the bucket count so a bucket fits, e.g. 4GB.")
    ] = None,
    scratch: Annotated[
        Path | None, typer.Option(help="Folder for the shuffle's bucket files (shared).")
    ] = None,
    connect_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the Dask scheduler.")
    ] = 10.0,
) -> None:
    """Run rules over spans and report the signals (the violations).

    A directory of `bucket=<n>` folders is evaluated one trace bucket at a time (docs/scale.md).
    """
    read = ingest.ReadDefaults(source, on_error=on_error.value)  # for every span read of the run
    try:
        options = scale.Options(
            engine=engine.value,
            buckets=buckets,
            memory_limit=scale.parse_size(memory_limit) if memory_limit else None,
            scheduler=scheduler,
            workers=workers,
            scratch=str(scratch) if scratch else None,
            timeout=connect_timeout,
            baseline=tuple(str(b) for b in baseline) if baseline else None,
        )
        rule_set = _load(rules)
        inputs = [str(s) for s in spans] if spans else [str(bundled("shophub/spans.parquet"))]
        chosen = format_for(output, fmt.value if fmt else None)
        if output is not None:
            with SignalWriter(output, chosen) as write:  # streamed, written atomically
                result = _evaluate(rule_set, inputs, options, write, baseline=baseline)
            _report(rule_set, result, 0)
            total = sum(result.counts.values())
            err.print(f"wrote {total} signals to {output}", markup=False)
        else:
            result = _evaluate(rule_set, inputs, options, baseline=baseline)
            if chosen == "table":
                _report(rule_set, result, limit)
            elif chosen == "parquet":
                raise DataError("parquet output needs --output FILE")
            else:
                sys.stdout.write(as_text(result.signals, chosen))
    except FluoError as exc:
        raise _fail(exc) from None
    finally:
        read.close()
    try:
        read_warnings = read.report.warnings()  # duplicates dropped, records skipped
    except FluoError as exc:
        raise _fail(exc) from None
    for warning in [*read_warnings, *result.warnings]:
        err.print(f"warning: {warning}", markup=False)
    if result.failing:
        err.print(f"failing: rule(s) {', '.join(result.failing)} fired", markup=False)
        raise typer.Exit(EXIT_FAIL_RULE)


def _evaluate(
    rule_set: RuleSet,
    inputs: list[str],
    options: scale.Options,
    sink: Callable[[pl.DataFrame], None] | None = None,
    *,
    baseline: list[Path] | None = None,
) -> RunResult:
    """Run the rules, with a progress bar when stderr is a terminal; stream to `sink` if given."""
    base = [str(b) for b in baseline] if baseline else None
    bar: Progress | None = None
    task = None
    if sys.stderr.isatty():
        columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
        bar = Progress(*columns, console=err, transient=True)
        task = bar.add_task("scanning", total=None)

    def advance(done: int, total: int, label: str) -> None:
        if bar is not None and task is not None:
            bar.update(task, completed=done, total=total, description=f"{Path(label).name}")

    def run() -> RunResult:
        scaled = (
            scale.evaluate(rule_set, inputs, options, progress=advance)
            if sink is None
            else scale.stream(rule_set, inputs, sink, options, progress=advance)
        )
        if scaled is not None:  # bucketed input, or options that ask for buckets
            return scaled
        if sink is None:
            return evaluate(rule_set, inputs, progress=advance, baseline=base)
        return stream(rule_set, inputs, sink, progress=advance, baseline=base)

    if bar is None:
        return run()
    with bar:
        return run()


def _report(rule_set: RuleSet, result: RunResult, limit: int) -> None:
    """A per-rule summary, the log actions of rules that fired, and the first signals."""
    summary = Table(title=f"fluo: {len(rule_set.enabled)} rules, {result.seconds:.2f}s")
    for column in ("rule", "severity", "signals", "message"):
        summary.add_column(column, justify="right" if column == "signals" else "left")
    for rule in rule_set.enabled:
        n = result.counts.get(rule.name, 0)
        first = result.signals.filter(pl.col("rule") == rule.name).head(1)
        message = first["message"][0] if first.height else ""
        summary.add_row(rule.name, rule.severity, str(n), message)
    out.print(summary)
    for rule in rule_set.enabled:
        for action in rule.actions:
            if action.kind == "log" and result.counts.get(rule.name):
                err.print(f"[{rule.name}] {action.text}", markup=False)
    if limit and result.signals.height:
        _print_top(result.signals, limit)


def _print_top(signals: pl.DataFrame, limit: int) -> None:
    """The most severe signals first, then by time."""
    rank = {s: i for i, s in enumerate(reversed(SEVERITIES))}
    top = (
        signals.with_columns(pl.col("severity").replace_strict(rank, default=len(rank)).alias("r"))
        .sort(["r", "time"])
        .head(limit)
        .with_columns(
            pl.col("time").dt.strftime("%H:%M:%S%.3f"), pl.col("trace_id").str.slice(0, 16)
        )
    )
    table = Table(title=f"{top.height} of {signals.height} signals, most severe first")
    shown = ("time", "severity", "rule", "service", "trace_id", "message")
    for column in shown:
        table.add_column(column, overflow="fold")
    for row in top.iter_rows(named=True):
        table.add_row(*(str(row[c]) if row[c] is not None else "" for c in shown))
    out.print(table)


@app.command()
def check(
    rules: Annotated[list[Path], typer.Argument(help="Rule files or directories.")],
    spans: Annotated[
        list[Path] | None,
        typer.Option("--spans", "-s", help="Also check the rules against this span table."),
    ] = None,
) -> None:
    """Check rule files: report every error at once, with positions."""
    try:
        rule_set = load_rules(rules)
        if spans:
            from fluo.ingest import scan_spans

            compile_for(rule_set, scan_spans([str(s) for s in spans]), str(spans[0]))
    except FluoError as exc:
        raise _fail(exc) from None
    for note in rule_set.notes:
        err.print(render(note), markup=False)
    out.print(f"ok: {len(rule_set)} rules", markup=False)


@app.command()
def explain(
    rules: Annotated[list[Path], typer.Argument(help="Rule files or directories.")],
    spans: Annotated[
        list[Path] | None,
        typer.Option("--spans", "-s", help="Compile against this span table's columns."),
    ] = None,
) -> None:
    """Show each rule as parsed and checked, and the fused Polars plan it compiles to."""
    from fluo.schema import SpanSchema

    try:
        rule_set = load_rules(rules)
        if spans:
            from fluo.ingest import scan_spans

            frame = scan_spans([str(s) for s in spans])
        else:
            frame = pl.LazyFrame(schema=dict(SpanSchema.canonical().columns))
        plan = compile_for(rule_set, frame, str(spans[0]) if spans else "<canonical>")
    except FluoError as exc:
        raise _fail(exc) from None
    out.print(plan.explain(frame), markup=False)


@app.command("bench")
def bench_command(
    rules: Annotated[
        list[Path] | None, typer.Argument(help="Rule files or directories (default: bundled).")
    ] = None,
    spans: Annotated[
        list[Path] | None,
        typer.Option("--spans", "-s", help="Span input: Parquet file/dir/glob, Arrow IPC, OTLP."),
    ] = None,
    repeat: Annotated[int, typer.Option(help="Runs per measurement (medians are shown).")] = 3,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Also write the figures to this JSON file.")
    ] = None,
    previous: Annotated[
        Path | None, typer.Option("--compare", help="A previous --json file to compare with.")
    ] = None,
    factor: Annotated[
        float, typer.Option("--threshold", help="Slower by more than this factor: a regression.")
    ] = 1.5,
    min_seconds: Annotated[
        float, typer.Option(help="...and slower by more than this many seconds (timer noise).")
    ] = 0.02,
    marginal: Annotated[
        bool, typer.Option(help="Measure each rule's marginal cost (a run without it).")
    ] = True,
    fail_on_regression: Annotated[
        bool, typer.Option(help="Exit 1 when --compare finds a regression.")
    ] = False,
) -> None:
    """Measure what each rule costs: alone, inside the fused plan, and against a bare scan."""
    from fluo.bench import bench, compare, load_report, write_json

    try:
        rule_set = _load(rules)
        inputs = [str(s) for s in spans] if spans else [str(bundled("shophub/spans.parquet"))]
        before = load_report(previous) if previous is not None else None
        with _steps("benchmarking") as advance:
            report = bench(rule_set, inputs, repeat=repeat, marginal=marginal, progress=advance)
        if json_file is not None:
            write_json(report, json_file)
    except FluoError as exc:
        raise _fail(exc) from None
    _report_bench(report)
    if json_file is not None:
        err.print(f"wrote {json_file}", markup=False)
    if before is not None:
        changes = compare(report, before, factor=factor, min_seconds=min_seconds)
        _report_changes(changes, previous, factor)
        slower = [c.name for c in changes if c.regression]
        if slower and fail_on_regression:
            raise typer.Exit(EXIT_FAIL_RULE)


@contextmanager
def _steps(title: str) -> Iterator[Callable[[int, int, str], None]]:
    """A progress callback: a transient bar when stderr is a terminal, else silent."""
    if not sys.stderr.isatty():
        yield lambda done, total, label: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(title, total=None)

        def advance(done: int, total: int, label: str) -> None:
            bar.update(task, completed=done, total=total, description=label)

        yield advance


def _seconds(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _cpu(value: float | None) -> str:
    return "" if value is None else f" ({value:.2f})"


def _report_bench(report: BenchReport) -> None:
    """Per-rule costs, then the whole set, hints and notes."""
    table = Table(
        title=f"fluo bench: {len(report.rules)} rules over {report.spans:,} spans "
        f"({report.traces:,} traces), median of {report.repeat}"
    )
    heads = ("rule", "level", "alone s (cpu)", "marginal s (cpu)", "matched", "signals",
             "columns", "pushed")  # fmt: skip
    for head in heads:
        right = head in ("alone s (cpu)", "marginal s (cpu)", "matched", "signals")
        table.add_column(head, justify="right" if right else "left", overflow="fold")
    for r in report.rules:
        if r.error is not None:
            table.add_row(r.name, r.level, "error", "", "", "", ", ".join(r.columns), "")
            continue
        table.add_row(
            r.name,
            r.level,
            _seconds(r.alone_s) + _cpu(r.alone_cpu_s),
            _seconds(r.marginal_s) + _cpu(r.marginal_cpu_s),
            f"{r.matched:,} {r.unit}"
            if r.selectivity is None
            else f"{r.selectivity:.2%} of {r.unit}",
            f"{r.signals:,}",
            ", ".join(r.columns),
            r.pushed or "no",
        )
    out.print(table)
    whole = Table(title="the whole set")
    for head in ("bare scan s (floor)", "total s", "x floor", "spans/s", "peak RSS"):
        whole.add_column(head, justify="right")
    rate = report.spans_per_s
    whole.add_row(
        _seconds(report.floor_s),
        _seconds(report.total_s),
        "" if report.floor_ratio is None else f"{report.floor_ratio:.1f}x",
        "" if rate is None else f"{rate:,.0f}",
        "" if report.peak_rss_mb is None else f"{report.peak_rss_mb:,.0f} MB",
    )
    out.print(whole)
    for r in report.rules:
        for hint in r.hints:
            out.print(f"hint: {r.name}: {hint}", markup=False)
    for r in report.failed:
        err.print(
            f"error: rule {r.name} failed at run time and was skipped: {r.error}", markup=False
        )
    for note in report.notes:
        err.print(f"note: {note}", markup=False)


def _report_changes(changes: list[Change], previous: Path | None, factor: float) -> None:
    table = Table(title=f"against {previous} (regression: > {factor:g}x slower)")
    for head in ("rule", "alone s before", "alone s now", "ratio", "marginal s before",
                 "marginal s now", "status"):  # fmt: skip
        table.add_column(head, justify="left" if head in ("rule", "status") else "right")
    for c in changes:
        table.add_row(
            c.name,
            _seconds(c.before_s),
            _seconds(c.after_s),
            "" if c.ratio is None else f"{c.ratio:.2f}x",
            _seconds(c.before_marginal_s),
            _seconds(c.after_marginal_s),
            "REGRESSION" if c.regression else c.status,
        )
    out.print(table)
    slower = [c.name for c in changes if c.regression]
    if slower:
        err.print(f"regression: {', '.join(slower)}", markup=False)


@app.command("convert")
def convert_command(
    inputs: Annotated[list[Path], typer.Argument(help="Span files, directories or globs.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Directory to write the Parquet layout to.")
    ],
    source: Annotated[
        str | None,
        typer.Option("--from", help="Span format or mapping profile (as for fluo run)."),
    ] = None,
    buckets: Annotated[
        int | None, typer.Option(help="Also split by trace bucket: bucket=<n> folders.")
    ] = None,
    on_error: Annotated[
        OnError, typer.Option(help="fail (write nothing), or skip and report bad input.")
    ] = OnError.fail,
    partition: Annotated[
        Partition, typer.Option(help="date: date=YYYY-MM-DD folders (UTC start), or none.")
    ] = Partition.date,
    overwrite: Annotated[
        bool, typer.Option(help="Replace OUT if it exists (a previous conversion).")
    ] = False,
) -> None:
    """Convert spans to canonical Parquet: partitioned, sorted by time, written atomically."""
    from fluo.convert import convert

    try:
        with _steps("converting") as progress:
            report = convert(
                [str(i) for i in inputs],
                output,
                format=source,
                buckets=buckets,
                on_error=on_error.value,
                partition=partition.value,
                overwrite=overwrite,
                progress=progress,
            )
    except FluoError as exc:
        raise _fail(exc) from None
    for item in report.skipped[:10]:
        count = "" if item.spans is None else f" ({item.spans} spans)"
        if item.first is not None:
            count = f" ({item.spans} spans, the first is span {item.first})"
        err.print(f"warning: skipped {item.path}: {item.reason}{count}", markup=False)
    if len(report.skipped) > 10:
        err.print(f"warning: ... and {len(report.skipped) - 10} more skipped", markup=False)
    err.print(
        f"wrote {report.spans} spans in {report.files} files to {report.output} "
        f"({report.duplicates} duplicates dropped, {report.skipped_records} spans and "
        f"{report.skipped_files} files skipped) in {report.seconds:.1f}s",
        markup=False,
    )


def main() -> None:
    """Entry point of the `fluo` script."""
    try:
        app()
    except FluoError as exc:  # defensive: commands already turn these into exit 2
        err.print(f"error: {exc}", markup=False)
        raise SystemExit(EXIT_BAD_INPUT) from None
