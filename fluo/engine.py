"""Out of core: evaluate span and trace rules one trace-complete bucket at a time.

A bucket holds every span of the traces whose stable hash (`fluo.buckets`) falls in it, so a
trace never straddles two buckets and span and trace rules give, bucket by bucket, exactly the
signals they give over the whole table. Memory follows the largest bucket, not the input.

Buckets come from the input's layout (`bucket=<n>` Hive folders, as `fluo convert --buckets K`
writes them, under `date=...` folders or not) or from a shuffle at run time: one streaming
pass writes the input into temporary bucket files, then the buckets are evaluated one at a
time. The same tasks (`run_shuffle`, `run_bucket`) are what the Dask engine
(`fluo.distributed`) sends to its workers: each is a small picklable description (rules,
schema, file paths), and the worker reads the files itself.

Rules that need more than one trace at a time (windowed aggregates: all spans of a time
window) are not run per bucket: `bucket_plan` leaves them out, and they are evaluated over the
whole input by `fluo.run.evaluate` (`whole_input_rules`). Correlation rules run last, over the
merged signals, as in `fluo.run.stream`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from fluo import run
from fluo.buckets import bucket_expr
from fluo.compile import SIGNAL_SCHEMA, sort_signals
from fluo.correlate import correlation_signals
from fluo.errors import DataError, FluoError
from fluo.ingest.detect import JSON_FORMATS, PARQUET, SpanFile, expand_inputs
from fluo.ingest.normalize import trace_key_expr
from fluo.ingest.parquet import scan_columnar
from fluo.plan import RunPlan, build_plan
from fluo.run import Progress, RunResult, Spans, compile_for, execute
from fluo.schema import SpanSchema

if TYPE_CHECKING:
    from fluo.rules import RuleSet

#: The Hive folder key of a bucket: `bucket=<n>`.
BUCKET_KEY = "bucket"
#: The manifest `fluo convert` writes at the root of a bucketed layout.
MANIFEST = "_fluo.json"
#: The column the run-time shuffle partitions by (not kept in the bucket files).
_SHUFFLE_KEY = "__fluo_bucket"
#: Rows per slice of the run-time shuffle (each slice is one streaming pass, one task).
SHUFFLE_ROWS = 1_000_000
#: Signals are handed to a streaming sink this many rows at a time.
_SINK_ROWS = 1_000_000
#: The memory a bucket may take when neither --buckets nor --memory-limit is given.
DEFAULT_BUCKET_MEMORY = 1 << 30
#: In-memory bytes of evaluation per uncompressed byte of input (measured: see docs/scale.md).
_MEMORY_FACTOR = 3.0
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Options:
    """How to run: `local` (this process) or `dask`; bucketing; the Dask cluster to use."""

    engine: str = "local"
    buckets: int | None = None  # shuffle unbucketed input into this many buckets
    memory_limit: int | None = None  # bytes: pick the bucket count so one bucket fits
    scheduler: str | None = None  # a Dask scheduler address; None starts a local cluster
    workers: int = 2  # workers of the local Dask cluster
    scratch: str | None = None  # where the run-time shuffle writes (shared by all workers)
    timeout: float = 10.0  # seconds to reach the Dask scheduler
    baseline: tuple[str, ...] | None = None  # `--baseline` spans of windowed rules

    @property
    def shuffle_rows(self) -> int:
        """Rows per slice of a run-time shuffle: a partitioned sink holds its slice in memory
        (measured: ~0.75 GB per million canonical spans), so half the memory limit at most."""
        if self.memory_limit is None:
            return SHUFFLE_ROWS
        return max(10_000, min(SHUFFLE_ROWS, self.memory_limit // 1500))

    @property
    def scaled(self) -> bool:
        """Whether the options ask for a bucketed run whatever the input's layout."""
        return self.engine != "local" or self.buckets is not None or self.memory_limit is not None


@dataclass(frozen=True)
class Bucket:
    """The files that hold every span of the traces of one bucket."""

    number: int
    files: tuple[SpanFile, ...]

    @property
    def label(self) -> str:
        first = self.files[0].path if self.files else "<empty>"
        more = f" (+{len(self.files) - 1} more)" if len(self.files) > 1 else ""
        return f"bucket {self.number}: {first}{more}"


@dataclass(frozen=True)
class Layout:
    """A span table split into `count` trace buckets (only non-empty buckets are listed)."""

    count: int
    buckets: tuple[Bucket, ...]
    #: Whether each bucket's rows must be checked against its number (written by others).
    verify: bool = True


@dataclass(frozen=True)
class BucketTask:
    """Evaluate the rules over one bucket: everything a worker needs, small and picklable."""

    rule_set: RuleSet
    schema: SpanSchema  # the whole table's columns: every bucket is read with these
    bucket: Bucket
    count: int
    verify: bool


@dataclass(frozen=True)
class BucketResult:
    """Signals (sorted) and warnings of one bucket, or the error that stopped it, as data."""

    number: int
    signals: pl.DataFrame
    warnings: tuple[str, ...] = ()
    error: str | None = None
    path: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class ShuffleTask:
    """Write a slice of the input into bucket files under `directory` (one pass, streaming)."""

    files: tuple[SpanFile, ...]
    schema: SpanSchema
    count: int
    directory: str
    rows: tuple[int, int] | None = None  # (offset, length) of the slice, or all rows


def parse_size(text: str) -> int:
    """Bytes from a size such as `4GB`, `512MiB`, `2g` or `1000000`."""
    match = _SIZE.match(text)
    if not match:
        raise DataError(f"cannot read the size {text!r}; write it like 4GB or 512MB")
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * 1024 ** " kmgt".index(unit or " "))


# --- layouts ------------------------------------------------------------------------------


def find_layout(files: Sequence[SpanFile], roots: Sequence[str]) -> Layout | None:
    """The bucket layout of a table's files, or None when no file is in a `bucket=` folder.

    The bucket count is the manifest's (`_fluo.json` at a root), else one more than the
    largest bucket number. Raises DataError for a layout that cannot be trusted: files
    outside bucket folders beside files inside them, a bucket number that is not a number
    or not below the count, manifests that disagree, a file the manifest lists that is gone.
    """
    inside = [f for f in files if BUCKET_KEY in f.hive]
    if not inside:
        return None
    if len(inside) != len(files):
        stray = next(f for f in files if BUCKET_KEY not in f.hive)
        raise DataError(
            "this file is outside the bucket=<n> folders of a bucketed layout; "
            "a bucket would miss its spans",
            path=stray.path,
        )
    numbers: dict[str, int] = {}
    for f in inside:
        raw = f.hive[BUCKET_KEY] or ""
        if not raw.isdigit():
            raise DataError(f"bucket folder 'bucket={raw}' is not a bucket number", path=f.path)
        if f.format in JSON_FORMATS:
            raise DataError("bucketed layouts hold Parquet or Arrow IPC files", path=f.path)
        numbers[f.path] = int(raw)
    manifests = [m for m in (read_manifest(r) for r in roots) if m is not None]
    counts = {m[0] for m in manifests}
    if len(counts) > 1:
        raise DataError(
            f"the inputs' manifests disagree on the bucket count ({sorted(counts)}); "
            "run them separately or re-bucket them with fluo convert",
            path=roots[0],
        )
    count = counts.pop() if counts else max(numbers.values()) + 1
    for path, number in numbers.items():
        if number >= count:
            raise DataError(
                f"bucket {number} is out of range: the manifest says {count} buckets "
                "(mixed bucket counts in one directory?)",
                path=path,
            )
    listed = {p for m in manifests for p in m[1]}
    found = {os.path.realpath(f.path) for f in inside}
    gone = sorted(listed - found)
    if gone:
        raise DataError(f"{len(gone)} file(s) the manifest lists are missing", path=gone[0])
    by_number: dict[int, list[SpanFile]] = {}
    for f in inside:
        by_number.setdefault(numbers[f.path], []).append(f)
    buckets = tuple(Bucket(n, tuple(by_number[n])) for n in sorted(by_number))
    return Layout(count, buckets)


def read_manifest(root: str) -> tuple[int, list[str]] | None:
    """(bucket count, absolute paths of the files it lists) from `root/_fluo.json`, if any."""
    path = Path(root) / MANIFEST
    if not Path(root).is_dir() or not path.is_file():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        count = document["buckets"]
        entries = document.get("files", [])
        listed = {e["path"]: e.get("bytes") for e in entries}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"unreadable manifest: {_first_line(exc)}", path=str(path)) from None
    if not isinstance(count, int) or count < 1:
        raise DataError(
            f"the manifest says buckets: {count}, yet there are bucket=<n> folders",
            str(path),
        )
    for name, size in listed.items():
        file = Path(root) / name
        if file.is_file() and size is not None and file.stat().st_size != size:
            raise DataError(
                f"size {file.stat().st_size} differs from the manifest's {size} "
                "(a file rewritten or cut short)",
                path=str(file),
            )
    return count, [os.path.realpath(Path(root) / name) for name in listed]


def bucket_key(schema: SpanSchema) -> pl.Expr:
    """The 64-bit key the buckets hash: `trace_key`, or the same key derived from `trace_id`."""
    return pl.col("trace_key") if schema.has("trace_key") else trace_key_expr("trace_id")


def buckets_for(files: Sequence[SpanFile], memory_limit: int) -> int:
    """A bucket count whose buckets fit `memory_limit` (from the files' uncompressed sizes)."""
    size = 0
    for f in files:
        try:
            size += _uncompressed_bytes(f) if f.format == PARQUET else os.path.getsize(f.path) * 2
        except OSError as exc:
            raise DataError(str(exc), path=f.path) from None
    return max(1, math.ceil(size * _MEMORY_FACTOR / memory_limit))


def _uncompressed_bytes(span_file: SpanFile) -> int:
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(span_file.path).metadata
    return sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))


# --- tasks (run in this process or on a Dask worker) ----------------------------------------


def scan_files(files: Sequence[SpanFile], schema: SpanSchema) -> pl.LazyFrame:
    """One lazy frame over Parquet/IPC span files with exactly the columns of `schema`."""
    frames = scan_columnar(files)
    frame = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
    return conform(frame, schema)


def conform(frame: pl.LazyFrame, schema: SpanSchema) -> pl.LazyFrame:
    """`frame` with the columns of `schema`, in its order and types (missing ones null)."""
    have = frame.collect_schema()
    columns = []
    for name, dtype in schema.columns.items():
        if name not in have:
            columns.append(pl.lit(None, dtype=dtype).alias(name))
        elif have[name] != dtype:
            columns.append(pl.col(name).cast(dtype))
        else:
            columns.append(pl.col(name))
    return frame.select(columns)


def run_bucket(task: BucketTask) -> BucketResult:
    """Evaluate span and trace rules over one bucket; a bucket whose rows belong elsewhere
    (another bucket count, a misplaced file) is an error, never partial signals."""
    started = time.perf_counter()
    bucket = task.bucket
    label = bucket.files[0].path if bucket.files else f"bucket={bucket.number}"
    empty = pl.DataFrame(schema=SIGNAL_SCHEMA)
    try:
        frame = scan_files(bucket.files, task.schema)
        if task.verify:
            wrong = bucket_expr(task.count, bucket_key(task.schema)) != bucket.number
            misplaced = frame.select(wrong.sum()).collect(engine="streaming").item()
            if misplaced:
                message = (
                    f"{misplaced} spans in bucket={bucket.number} belong to other buckets of "
                    f"{task.count}: the layout mixes bucket counts or files were moved"
                )
                return BucketResult(bucket.number, empty, error=message, path=label)
        warnings: list[str] = []
        signals = execute(bucket_plan(task.rule_set, task.schema), frame, warnings.append)
    except FluoError as exc:
        path = exc.path if isinstance(exc, DataError) else label
        message = exc.message if isinstance(exc, DataError) else str(exc)
        return BucketResult(bucket.number, empty, error=message, path=path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        return BucketResult(bucket.number, empty, error=_first_line(exc), path=label)
    seconds = time.perf_counter() - started
    return BucketResult(bucket.number, signals, tuple(warnings), seconds=seconds)


def run_shuffle(task: ShuffleTask) -> dict[int, list[str]]:
    """Write the task's rows into `directory/<_SHUFFLE_KEY>=<n>/` files: their paths by bucket."""
    frame = scan_files(task.files, task.schema)
    if task.rows is not None:
        frame = frame.slice(*task.rows)
    return shuffle(frame, task.schema, task.count, task.directory)


def shuffle(
    frame: pl.LazyFrame, schema: SpanSchema, count: int, directory: str
) -> dict[int, list[str]]:
    """One streaming pass: `frame` written into one folder of Parquet files per bucket."""
    keyed = frame.with_columns(bucket_expr(count, bucket_key(schema)).alias(_SHUFFLE_KEY))
    target = pl.PartitionBy(directory, key=_SHUFFLE_KEY, include_key=False)
    keyed.sink_parquet(target, mkdir=True, maintain_order=False)
    written: dict[int, list[str]] = {}
    for folder in sorted(Path(directory).glob(f"{_SHUFFLE_KEY}=*")):
        number = int(folder.name.split("=", 1)[1])
        written[number] = sorted(str(p) for p in folder.glob("*.parquet"))
    return written


#: Rule levels that need every span of a time window, not of a trace: run over the whole input.
WHOLE_INPUT_LEVELS = ("window",)
#: Rule levels that run over the signals of other rules, after every bucket.
SIGNAL_LEVELS = ("correlate",)


def bucket_plan(rule_set: RuleSet, schema: SpanSchema) -> RunPlan:
    """The plan of the rules that each bucket can evaluate alone: span and trace rules."""
    skip = WHOLE_INPUT_LEVELS + SIGNAL_LEVELS
    return build_plan([c for c in rule_set.check(schema) if c.level not in skip], schema)


def whole_input_rules(rule_set: RuleSet, schema: SpanSchema) -> RuleSet | None:
    """The rules that run over the whole input rather than per bucket, or None."""
    names = [c.name for c in rule_set.check(schema) if c.level in WHOLE_INPUT_LEVELS]
    return rule_set.select(names) if names else None


def run_whole_input(
    rule_set: RuleSet, spans: Spans, baseline: Sequence[str] | None = None
) -> pl.DataFrame:
    """The signals of `rule_set` (windowed rules) over the whole input, in one run;
    `baseline` is the data set of rules with `baseline: data`."""
    return run.evaluate(rule_set, spans, baseline=list(baseline) if baseline else None).signals


# --- the local engine ----------------------------------------------------------------------


def evaluate(
    rule_set: RuleSet,
    spans: Spans,
    options: Options | None = None,
    *,
    progress: Progress | None = None,
) -> RunResult | None:
    """Evaluate `rule_set` bucket by bucket, or None when neither the input's layout nor the
    options ask for buckets (then `fluo.run.evaluate` reads the table as one).

    With `options.engine == "dask"` the buckets run on a Dask cluster (`fluo.distributed`).
    The signals are exactly those of `fluo.run.evaluate`, in the same order.
    """
    options = _checked(options)
    started = time.perf_counter()
    source = open_input(rule_set, spans, options)
    if source is None:
        return None
    with contextlib.closing(bucket_results(source, options, progress)) as results:
        done = []
        for result in results:
            if result.error is not None:
                raise DataError(result.error, path=result.path)
            done.append(result)
    return merge(rule_set, source.plan, done, time.perf_counter() - started)


def stream(
    rule_set: RuleSet,
    spans: Spans,
    sink: Callable[[pl.DataFrame], None],
    options: Options | None = None,
    *,
    progress: Progress | None = None,
) -> RunResult | None:
    """`evaluate`, handing the signals to `sink` in order, a million at a time, with memory
    bounded by a bucket and a million signals, not by all the signals of the run.

    Each bucket's signals are spilled to a Parquet file as they come; then windows of time
    holding about a million signals each are read back from all the files, sorted and handed
    on. The result keeps the first signal of each rule (as `fluo.run.stream` does).
    None: not bucketed.
    """
    options = _checked(options)
    started = time.perf_counter()
    source = open_input(rule_set, spans, options)
    if source is None:
        return None
    counts = {r.name: 0 for r in rule_set.enabled}
    samples: list[pl.DataFrame] = []

    def take(signals: pl.DataFrame) -> None:
        for name, n in signals.group_by("rule").len().iter_rows():
            counts[name] += n
        samples.append(signals.group_by("rule", maintain_order=True).head(1))
        sink(signals)

    warnings: list[str] = []
    with tempfile.TemporaryDirectory(prefix="fluo-signals-", dir=options.scratch) as spill:
        files: dict[int, str] = {}
        with contextlib.closing(bucket_results(source, options, progress)) as results:
            for result in results:
                if result.error is not None:
                    raise DataError(result.error, path=result.path)
                warnings.extend(result.warnings)
                if result.signals.height:
                    files[result.number] = os.path.join(spill, f"{len(files)}.parquet")
                    result.signals.write_parquet(files[result.number], row_group_size=65_536)
        ordered = [files[n] for n in sorted(files, key=_bucket_order)]
        for chunk in _sorted_chunks(ordered):
            take(chunk)
        if source.plan.correlations and ordered:
            named = {
                n
                for r in source.plan.correlations
                if r.rule.correlate
                for n in r.rule.correlate.rules
            }
            seen = pl.scan_parquet(ordered).filter(pl.col("rule").is_in(list(named))).collect()
            for rule in source.plan.correlations:
                take(correlation_signals(rule, seen))
    failing = tuple(r.name for r in rule_set.enabled if r.fails_run and counts.get(r.name))
    sample = (
        pl.concat(samples).unique("rule", keep="first", maintain_order=True)
        if samples
        else pl.DataFrame(schema=SIGNAL_SCHEMA)
    )
    seconds = time.perf_counter() - started
    return RunResult(sample, counts, failing, seconds, tuple(dict.fromkeys(warnings)))


def _checked(options: Options | None) -> Options:
    options = options or Options()
    if options.engine not in ("local", "dask"):
        raise FluoError(f"unknown engine {options.engine!r}; expected local or dask")
    return options


def bucket_results(
    source: Source, options: Options, progress: Progress | None = None
) -> Generator[BucketResult, None, None]:
    """Each bucket's result as it is done (in any order), then the whole-input rules' signals
    (number -1). Stop at the first result with an error; close the iterator when done."""
    if options.engine == "dask":
        from fluo import distributed

        yield from distributed.bucket_results(source, options, progress)
        return
    with source.buckets(options, shuffle_tasks=_run_here) as (layout, _):
        tasks = source.tasks(layout)
        for i, task in enumerate(tasks):
            if progress:
                progress(i, len(tasks), task.bucket.label)
            yield run_bucket(task)
        if progress:
            progress(len(tasks), len(tasks), source.label)
        whole = source.whole_input(options.baseline)
        if whole is not None:
            yield BucketResult(WHOLE_INPUT, whole)


#: The number of the result that holds the whole-input (windowed) rules' signals.
WHOLE_INPUT = -1


def _bucket_order(number: int) -> tuple[bool, int]:
    """Buckets by number, the whole-input result last: the order `merge` concatenates in."""
    return number == WHOLE_INPUT, number


def _sorted_chunks(files: Sequence[str]) -> Iterator[pl.DataFrame]:
    """All signals of `files` in execute()'s order, as chunks of about `_SINK_ROWS` rows: one
    window of time at a time (the files are read once per window, pruned by row-group
    statistics), then the signals without a time."""
    if not files:
        return
    scan = pl.scan_parquet(list(files))
    times = scan.select(pl.col("time").drop_nulls().sort()).collect().to_series()
    cuts = times.gather_every(_SINK_ROWS, offset=_SINK_ROWS).unique(maintain_order=True)
    edges: list[Any] = [None, *cuts.to_list(), None]
    for low, high in itertools.pairwise(edges):
        window = pl.col("time").is_not_null()
        if low is not None:
            window &= pl.col("time") >= low
        if high is not None:
            window &= pl.col("time") < high
        chunk = scan.filter(window).collect()
        if chunk.height:
            yield sort_signals(chunk)
    untimed = scan.filter(pl.col("time").is_null()).collect()
    if untimed.height:
        yield sort_signals(untimed)


def _run_here(tasks: Sequence[ShuffleTask]) -> list[dict[int, list[str]]]:
    return [run_shuffle(t) for t in tasks]


ShuffleRunner = Callable[[Sequence[ShuffleTask]], list[dict[int, list[str]]]]


@dataclass
class Source:
    """A run's input as the bucketed engines see it: the table, its schema and files."""

    rule_set: RuleSet
    spans: Spans
    label: str
    frame: pl.LazyFrame
    schema: SpanSchema
    plan: RunPlan
    files: list[SpanFile] | None  # None for frames given in Python
    layout: Layout | None

    def tasks(self, layout: Layout) -> list[BucketTask]:
        return [
            BucketTask(self.rule_set, self.schema, b, layout.count, layout.verify)
            for b in layout.buckets
        ]

    def whole_input(self, baseline: Sequence[str] | None = None) -> pl.DataFrame | None:
        """Signals of the rules that are not run per bucket, over the whole input."""
        rules = whole_input_rules(self.rule_set, self.schema)
        return None if rules is None else run_whole_input(rules, self.spans, baseline)

    @contextlib.contextmanager
    def buckets(
        self, options: Options, shuffle_tasks: ShuffleRunner
    ) -> Iterator[tuple[Layout, float]]:
        """The input's own layout, or one written by a shuffle into a scratch folder (removed
        afterwards); yields it with the seconds the shuffle took."""
        if self.layout is not None:
            if options.buckets is not None and options.buckets != self.layout.count:
                raise DataError(
                    f"the input is already in {self.layout.count} buckets; "
                    f"--buckets {options.buckets} disagrees (leave it out)",
                    path=self.label,
                )
            yield self.layout, 0.0
            return
        count = options.buckets
        if count is None:
            limit = options.memory_limit or DEFAULT_BUCKET_MEMORY
            count = 1 if self.files is None else buckets_for(self.files, limit)
            if options.engine == "dask":  # work for every worker, and some to rebalance
                count = max(count, 2 * options.workers)
        if count < 1:
            raise DataError(f"the number of buckets must be at least 1, not {count}")
        scratch = tempfile.mkdtemp(prefix="fluo-buckets-", dir=options.scratch)
        try:
            started = time.perf_counter()
            written = self._shuffle(count, scratch, shuffle_tasks, options.shuffle_rows)
            buckets = tuple(
                Bucket(n, tuple(SpanFile(p, PARQUET) for p in written[n])) for n in sorted(written)
            )
            yield Layout(count, buckets, verify=False), time.perf_counter() - started
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _shuffle(
        self, count: int, scratch: str, run: ShuffleRunner, slice_rows: int
    ) -> dict[int, list[str]]:
        """Slices of the input (`slice_rows` each: a partitioned sink holds its whole input in
        memory) written into bucket folders, `part=<i>/<key>=<n>/`: the files of each bucket."""
        if self.files is None or any(f.format in JSON_FORMATS for f in self.files):
            # frames from Python and JSON (parsed eagerly anyway): shuffled in this process
            total = self.frame.select(pl.len()).collect().item()
            pieces = [
                shuffle(
                    self.frame.slice(offset, slice_rows),
                    self.schema,
                    count,
                    os.path.join(scratch, f"part={i}"),
                )
                for i, offset in enumerate(range(0, max(total, 1), slice_rows))
            ]
        else:
            tasks = [
                ShuffleTask((f,), self.schema, count, os.path.join(scratch, f"part={i}"), rows)
                for i, (f, rows) in enumerate(_slices(self.files, slice_rows))
            ]
            pieces = run(tasks)
        written: dict[int, list[str]] = {}
        for piece in pieces:
            for number, paths in piece.items():
                written.setdefault(number, []).extend(paths)
        return written


def _slices(
    files: Sequence[SpanFile], rows: int
) -> Iterator[tuple[SpanFile, tuple[int, int] | None]]:
    """Parquet files in slices of `rows` rows; other files whole."""
    for f in files:
        if f.format != PARQUET:
            yield f, None
            continue
        import pyarrow.parquet as pq

        total = pq.ParquetFile(f.path).metadata.num_rows
        for offset in range(0, max(total, 1), rows):
            yield f, (offset, rows)


def open_input(rule_set: RuleSet, spans: Spans, options: Options) -> Source | None:
    """The input of a bucketed run, or None when it needs no buckets (not bucketed, and the
    options do not ask for a shuffle)."""
    from fluo.ingest import scan_spans

    if isinstance(spans, pl.DataFrame | pl.LazyFrame):
        if not options.scaled:
            return None
        frame = spans.lazy()
        plan = compile_for(rule_set, frame, "<frame>")
        return Source(rule_set, spans, "<frame>", frame, SpanSchema.of(frame), plan, None, None)
    roots = [str(spans)] if isinstance(spans, str | Path) else [str(s) for s in spans]
    files = expand_inputs(roots, None)
    layout = find_layout(files, roots)
    if layout is None and not options.scaled:
        return None
    label = roots[0] if len(roots) == 1 else f"{roots[0]} (+{len(roots) - 1} more)"
    frame = scan_spans(roots)
    plan = compile_for(rule_set, frame, label)
    return Source(rule_set, spans, label, frame, SpanSchema.of(frame), plan, files, layout)


def merge(
    rule_set: RuleSet, plan: RunPlan, results: Sequence[BucketResult], seconds: float
) -> RunResult:
    """One run's result from its buckets' (an error in any bucket is the run's error), the
    whole-input rules' signals, then the correlation rules' over them (as `fluo.run.stream`
    orders them: sorted signals first, each correlation rule's after)."""
    for result in results:
        if result.error is not None:
            raise DataError(result.error, path=result.path)
    ordered = sorted(results, key=lambda r: _bucket_order(r.number))
    frames = [r.signals for r in ordered if r.signals.height]
    if frames:
        signals = sort_signals(pl.concat(frames, how="vertical_relaxed"))
    else:
        signals = pl.DataFrame(schema=SIGNAL_SCHEMA)
    correlated = [correlation_signals(rule, signals) for rule in plan.correlations]
    signals = pl.concat([signals, *correlated], how="vertical_relaxed")
    counts = {r.name: 0 for r in rule_set.enabled}
    for name, n in signals.group_by("rule").len().iter_rows():
        counts[name] += n
    failing = tuple(r.name for r in rule_set.enabled if r.fails_run and counts.get(r.name))
    warnings = tuple(dict.fromkeys(w for r in results for w in r.warnings))
    return RunResult(signals, counts, failing, seconds, warnings)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
