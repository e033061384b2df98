"""The `fluo` command line: the only place that prints, renders errors and sets exit codes.

Exit codes: 0 the run completed (no rule marked `fail` fired), 1 a rule marked
`fail` fired, 2 bad input (rule errors, unreadable spans, bad options).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fluo.ast import SEVERITIES
from fluo.errors import DataError, Diagnostic, FluoError, RuleError
from fluo.output import SignalWriter, as_text, format_for
from fluo.rules import RuleSet, load_rules
from fluo.run import RunResult, compile_for, evaluate, stream

EXIT_OK, EXIT_FAIL_RULE, EXIT_BAD_INPUT = 0, 1, 2

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="fluo: behavioral assurance rules over OpenTelemetry span tables.",
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True, highlight=False, soft_wrap=True)


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
DEFAULT_RULES = ("rules/seed.yaml", "rules/starter.yaml", "rules/traces.yaml")


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
) -> None:
    """Run rules over spans and report the signals (the violations)."""
    try:
        rule_set = _load(rules)
        inputs = [str(s) for s in spans] if spans else [str(bundled("shophub/spans.parquet"))]
        chosen = format_for(output, fmt.value if fmt else None)
        if output is not None:
            with SignalWriter(output, chosen) as write:  # streamed, written atomically
                result = _evaluate(rule_set, inputs, write)
            _report(rule_set, result, 0)
            total = sum(result.counts.values())
            err.print(f"wrote {total} signals to {output}", markup=False)
        else:
            result = _evaluate(rule_set, inputs)
            if chosen == "table":
                _report(rule_set, result, limit)
            elif chosen == "parquet":
                raise DataError("parquet output needs --output FILE")
            else:
                sys.stdout.write(as_text(result.signals, chosen))
    except FluoError as exc:
        raise _fail(exc) from None
    for warning in result.warnings:
        err.print(f"warning: {warning}", markup=False)
    if result.failing:
        err.print(f"failing: rule(s) {', '.join(result.failing)} fired", markup=False)
        raise typer.Exit(EXIT_FAIL_RULE)


def _evaluate(
    rule_set: RuleSet, inputs: list[str], sink: Callable[[pl.DataFrame], None] | None = None
) -> RunResult:
    """Run the rules, with a progress bar when stderr is a terminal; stream to `sink` if given."""
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
        if sink is None:
            return evaluate(rule_set, inputs, progress=advance)
        return stream(rule_set, inputs, sink, progress=advance)

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


def main() -> None:
    """Entry point of the `fluo` script."""
    try:
        app()
    except FluoError as exc:  # defensive: commands already turn these into exit 2
        err.print(f"error: {exc}", markup=False)
        raise SystemExit(EXIT_BAD_INPUT) from None
