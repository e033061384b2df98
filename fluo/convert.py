"""Convert span inputs into fluo's canonical Parquet layout, streamed and atomically.

`convert` reads anything `fluo.ingest.scan_spans` reads and writes a directory of
zstd Parquet files, Hive-partitioned by the UTC date of `start_time` (``date=YYYY-MM-DD``)
and, with `buckets`, by trace bucket (``bucket=<n>``, `fluo.buckets.bucket_expr`) inside
each date. A manifest (``_fluo.json``) describes the layout. See docs/convert.md.

It works in two passes so that memory does not follow the input size:

1. *stage*: each input is read `memory_rows` spans at a time and appended to staging
   files (Arrow IPC) keyed by date, bucket and hour;
2. *write*: each partition is written slot by slot (an hour of one bucket), each slot
   sorted in memory (a slot larger than `memory_rows` is cut into time ranges), and
   appended to the partition's files in row groups. Files in a partition directory are
   therefore sorted by `start_time`, within and across files (file n ends before file
   n + 1 starts).

Everything is written into a hidden temporary directory next to the output, which is
renamed into place at the end: a failure leaves nothing at the output path.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import shutil
import tempfile
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import polars as pl
import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq

from fluo.buckets import bucket_expr
from fluo.errors import DataError
from fluo.ingest import IngestReport, scan_spans, shipped_profiles
from fluo.ingest.detect import FORMATS, SpanFile, check_format, expand_input, hive_columns
from fluo.ingest.normalize import trace_key_expr
from fluo.ingest.profile import is_profile_reference, load_profile
from fluo.schema import CANONICAL_COLUMNS

MANIFEST_NAME = "_fluo.json"
LAYOUT = "fluo-spans"
LAYOUT_VERSION = 1
ON_ERROR = ("fail", "skip")
PARTITIONS = ("date", "none")
#: Hive's name for a null partition value: spans without a start time go there.
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
#: Partition columns the layout owns: input columns of these names are recomputed.
RESERVED_COLUMNS = ("date", "bucket")
MAX_BUCKETS = 4096

DEFAULT_ROW_GROUP_SIZE = 128 * 1024
DEFAULT_ROWS_PER_FILE = 16 * DEFAULT_ROW_GROUP_SIZE
DEFAULT_MEMORY_ROWS = 500_000
#: Staging files open at once (each holds one hour of one bucket of one date).
_OPEN_STAGING_FILES = 256

_ROW = "__fluo_row__"
_UNIQUE_COLUMNS = ("trace_id", "span_id", "parent_span_id")
_HOUR = "__fluo_hour__"  # staging only; not a name a span table would use
_TIME_TEXT = "%Y-%m-%dT%H:%M:%S%.9fZ"

#: Called as progress(done, total, label) while converting.
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True, slots=True)
class Skipped:
    """Input left out by ``on_error="skip"``: a whole file, or some of its spans."""

    path: str
    reason: str
    spans: int | None = None  # spans left out; None when the whole file was unreadable
    first: int | None = None  # position (1-based) of the first such span in the file


@dataclass(frozen=True, slots=True)
class ConvertReport:
    """What `convert` wrote and what it left out."""

    output: str
    spans: int
    files: int
    duplicates: int
    skipped: tuple[Skipped, ...]
    seconds: float
    buckets: int | None
    partition: str

    @property
    def skipped_records(self) -> int:
        """Spans left out because they were invalid (files skipped whole not counted)."""
        return sum(s.spans or 0 for s in self.skipped)

    @property
    def skipped_files(self) -> int:
        """Input files left out whole because they could not be read."""
        return sum(1 for s in self.skipped if s.spans is None)


def convert(
    inputs: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    format: str | None = None,
    buckets: int | None = None,
    on_error: str = "fail",
    partition: str = "date",
    overwrite: bool = False,
    progress: Progress | None = None,
    rows_per_file: int = DEFAULT_ROWS_PER_FILE,
    row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
    memory_rows: int = DEFAULT_MEMORY_ROWS,
) -> ConvertReport:
    """Convert span inputs into canonical Parquet at `out` (a directory); see the module doc.

    `format` forces the input format (as in `scan_spans`); `buckets` adds ``bucket=<n>``
    directories; `on_error` is "fail" (stop, write nothing) or "skip" (leave out and
    report unreadable files and invalid spans); `partition` is "date" or "none". An
    existing `out` is replaced only with `overwrite`. Raises DataError for bad input.
    """
    started = time.perf_counter()
    options = _Options(buckets, on_error, partition, rows_per_file, row_group_size, memory_rows)
    suffixes = _input_suffixes(format)
    target = Path(out)
    _check_target(target, overwrite)
    forced = None if suffixes is not None else _check_format(format)
    files, skipped = _expand(inputs, forced, suffixes, options.skip)
    try:
        tmp = Path(
            tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".fluo-tmp", dir=_parent(target))
        )
    except OSError as exc:
        raise DataError(f"cannot write output: {exc.strerror or exc}", str(target)) from None
    try:
        job = _Conversion(options, tmp, progress or _quiet, format)
        job.skipped.extend(skipped)
        job.stage(files)
        job.write()
        report = ConvertReport(
            output=str(target),
            spans=job.rows,
            files=len(job.written),
            duplicates=job.duplicates,
            skipped=tuple(job.skipped),
            seconds=time.perf_counter() - started,
            buckets=buckets,
            partition=partition,
        )
        job.write_manifest(report)
        _replace(tmp, target)
    except OSError as exc:  # a full disk, a permission, OUT appearing meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"cannot write output: {exc.strerror or exc}", str(target)) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def _quiet(done: int, total: int, label: str) -> None:
    """The default progress callback: say nothing."""


@dataclass(frozen=True)
class _Options:
    buckets: int | None
    on_error: str
    partition: str
    rows_per_file: int
    row_group_size: int
    memory_rows: int

    def __post_init__(self) -> None:
        if self.on_error not in ON_ERROR:
            raise DataError(f"choose {' or '.join(ON_ERROR)}, not {self.on_error!r}", "--on-error")
        if self.partition not in PARTITIONS:
            raise DataError(
                f"choose {' or '.join(PARTITIONS)}, not {self.partition!r}", "--partition"
            )
        if self.buckets is not None and not 1 <= self.buckets <= MAX_BUCKETS:
            raise DataError(f"choose 1 to {MAX_BUCKETS} buckets, not {self.buckets}", "--buckets")
        for name in ("rows_per_file", "row_group_size", "memory_rows"):
            if getattr(self, name) < 1:
                raise DataError("must be at least 1", name)

    @property
    def skip(self) -> bool:
        return self.on_error == "skip"


# --- the output path -------------------------------------------------------------------


def _parent(target: Path) -> Path:
    return target.parent if str(target.parent) else Path(".")


def _check_target(target: Path, overwrite: bool) -> None:
    """Refuse an output that exists (unless `overwrite`) or is not ours to replace."""
    if not _parent(target).is_dir():
        raise DataError("the output's parent directory does not exist", path=str(target))
    if not (target.exists() or target.is_symlink()):
        return
    if not overwrite:
        raise DataError("output already exists; pass --overwrite to replace it", path=str(target))
    ours = (target / MANIFEST_NAME).is_file()
    if target.is_dir() and not target.is_symlink() and any(target.iterdir()) and not ours:
        raise DataError(
            f"will not replace a directory that is not a fluo convert output (no {MANIFEST_NAME})",
            path=str(target),
        )


def _replace(tmp: Path, target: Path) -> None:
    """Move the finished directory to `target`, replacing what is there with two renames."""
    if not (target.exists() or target.is_symlink()):
        os.rename(tmp, target)
        return
    old = _parent(target) / f".{target.name}.fluo-old-{uuid.uuid4().hex[:8]}"
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)
        raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)


# --- pass 1: inputs to staging files ----------------------------------------------------


def _input_suffixes(format: str | None) -> tuple[str, ...] | None:
    """The file suffixes a mapping profile reads, or None when `format` is not a profile."""
    if format is None or not is_profile_reference(format):
        return None
    return load_profile(format).suffixes


def _check_format(format: str | None) -> str | None:
    """A built-in format name, checked; the error lists the shipped profiles too."""
    try:
        return check_format(format)
    except DataError:
        raise DataError(
            f"unknown span format '{format}'; expected a format ({', '.join(FORMATS)}), "
            f"a shipped profile ({', '.join(shipped_profiles())}) or a profile .yaml file"
        ) from None


def _expand(
    inputs: str | Path | Sequence[str | Path],
    forced: str | None,
    suffixes: tuple[str, ...] | None,
    skip: bool,
) -> tuple[list[SpanFile], list[Skipped]]:
    """The span files behind the inputs, each once; with `skip`, unreadable inputs are noted."""
    items: list[str | Path] = [inputs] if isinstance(inputs, str | Path) else list(inputs)
    if not items:
        raise DataError("no span inputs given")
    files: list[SpanFile] = []
    skipped: list[Skipped] = []
    seen: set[str] = set()
    for item in items:
        try:
            found = expand_input(item, forced, suffixes)
        except DataError as exc:
            if not skip:
                raise
            if not os.path.isdir(item):
                skipped.append(Skipped(exc.path or str(item), exc.message))
                continue
            found = _expand_one_by_one(str(item), forced, suffixes, skipped)
        for span_file in found:
            key = os.path.realpath(span_file.path)
            if key not in seen:
                seen.add(key)
                files.append(span_file)
    if not files and not skipped:
        raise DataError("no span inputs given")
    return files, skipped


def _expand_one_by_one(
    root: str, forced: str | None, suffixes: tuple[str, ...] | None, skipped: list[Skipped]
) -> list[SpanFile]:
    """A directory's files taken one at a time, so one bad file does not hide the others.

    The ingest listing stops at the first file it cannot classify (an empty file, say);
    with ``on_error="skip"`` convert walks the folder itself (hidden names skipped, as
    ingest does) and notes each file that cannot be read. Files of no span format
    (README.md) are noted as well in this case.
    """
    found: list[SpanFile] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")))
        for name in sorted(f for f in filenames if not f.startswith((".", "_"))):
            path = os.path.join(dirpath, name)
            try:
                for span_file in expand_input(path, forced, suffixes):
                    found.append(SpanFile(span_file.path, span_file.format, _hive(root, path)))
            except DataError as exc:
                skipped.append(Skipped(exc.path or path, exc.message))
    return found


def _hive(root: str, path: str) -> dict[str, str | None]:
    """The ``key=value`` folders between `root` and `path` (as ingest reads them)."""
    parts: dict[str, str | None] = {}
    for segment in Path(os.path.relpath(os.path.dirname(path), root)).parts:
        key, eq, value = segment.partition("=")
        if eq and key and key != "..":
            text = unquote(value)
            parts[unquote(key)] = None if text == NULL_PARTITION else text
    return parts


def _bad_spans() -> list[tuple[pl.Expr, str]]:
    """Checks every span must pass, as (is bad, reason), on a table with canonical columns."""
    return [
        (pl.col("trace_id").is_null(), "trace_id is missing"),
        (pl.col("span_id").is_null(), "span_id is missing"),
        (pl.col("end_time") < pl.col("start_time"), "end_time is before start_time"),
        (pl.col("duration_ns") < 0, "negative duration"),
    ]


def _canonical(chunk: pl.DataFrame) -> pl.DataFrame:
    """Every canonical column (missing ones derived or null), trace keys filled in.

    Applied to each slice after it is read: the trace key's hash of non-hex ids is a
    Python function, and it would stop Polars from pushing the slice into the scan.
    """
    schema = chunk.schema
    exprs: list[pl.Expr] = []
    if "duration_ns" not in schema and "start_time" in schema and "end_time" in schema:
        span = pl.col("end_time") - pl.col("start_time")
        exprs.append(span.dt.total_nanoseconds().alias("duration_ns"))
    if "end_time" not in schema and "start_time" in schema and "duration_ns" in schema:
        end = pl.col("start_time") + pl.duration(nanoseconds=pl.col("duration_ns"))
        exprs.append(end.alias("end_time"))
    if "trace_key" not in schema or chunk["trace_key"].null_count():
        key = trace_key_expr("trace_id")
        if "trace_key" in schema:
            key = pl.col("trace_key").fill_null(key)
        exprs.append(key.cast(pl.UInt64).alias("trace_key"))
    have = set(schema) | {e.meta.output_name() for e in exprs}
    exprs += [pl.lit(None, dtype=t).alias(c) for c, t in CANONICAL_COLUMNS.items() if c not in have]
    extras = [c for c in schema if c not in CANONICAL_COLUMNS and c not in RESERVED_COLUMNS]
    return chunk.with_columns(exprs).select(*CANONICAL_COLUMNS, *extras)


@dataclass
class _Slot:
    """Staging files of one hour of one bucket of one date."""

    date: str | None
    bucket: int | None
    hour: int | None
    files: list[str] = field(default_factory=list)

    def order(self) -> tuple[bool, str, bool, int]:
        return (self.date is None, self.date or "", self.hour is None, self.hour or 0)


class _Conversion:
    """The state of one conversion: staging, counters, files written."""

    def __init__(self, options: _Options, tmp: Path, progress: Progress, format: str | None):
        self.options = options
        self.format = format
        self.tmp = tmp
        self.staging = tmp / "_staging"
        self.progress = progress
        self.skipped: list[Skipped] = []
        self.schemas: list[pl.Schema] = []
        self.staged = _Staging(self.staging)
        self.pending: list[pl.DataFrame] = []
        self.pending_rows = 0
        self.rows = 0
        self.duplicates = 0
        self.written: list[dict[str, Any]] = []
        self.time_range: tuple[str | None, str | None] = (None, None)
        self.schema: dict[str, pl.DataType] = {}

    # pass 1

    def stage(self, files: Sequence[SpanFile]) -> None:
        """Read every input in slices of `memory_rows` into staging files by date, bucket, hour.

        Slices, not one streaming sink: in Polars 2.1 a Parquet scan decodes ahead of a
        slower sink, so a sink's memory grows with the input (pola-rs/polars#28569).
        """
        hive = {k: v for k, v in hive_columns(files).items() if k not in RESERVED_COLUMNS}
        for i, span_file in enumerate(files):
            report = IngestReport()
            frame = self._open(span_file, hive, i, report)
            if frame is not None:
                self._stage_file(span_file.path, frame)
                self._note_reader(span_file.path, report)
            self.progress(i + 1, len(files), f"reading {Path(span_file.path).name}")
        self._flush()
        self.staged.close()

    def _open(
        self, span_file: SpanFile, hive: dict[str, Any], i: int, report: IngestReport
    ) -> pl.LazyFrame | None:
        """A file's spans, with its Hive columns, or None when skipped as unreadable."""
        try:
            frame = scan_spans(
                span_file.path,
                format=self.format,
                report=report,
                on_error="skip" if self.options.skip else "fail",
            )
            schema = frame.collect_schema()
        except DataError as exc:
            if not self.options.skip:
                raise
            self.skipped.append(Skipped(exc.path or span_file.path, exc.message))
            return None
        return frame.with_columns(
            pl.lit(values[i], dtype=dtype).alias(key)
            for key, (dtype, values) in hive.items()
            if key not in schema
        )

    def _stage_file(self, path: str, frame: pl.LazyFrame) -> None:
        """Stage one file slice by slice; a file that breaks midway fails, or is cut (skip).

        Canonical Parquet and IPC are read a slice at a time (the slice reaches the scan).
        Other lazy readers (profiles, Tempo) drop duplicates over the whole file, so a
        slice could not reach their scan: such a file is read whole, then cut.
        """
        offset = 0
        try:
            if frame.slice(1, 1).explain().startswith("SLICE"):
                frame = frame.collect().lazy()
            rows = frame.select(pl.len()).collect().item()
            while offset < rows:
                chunk = _canonical(frame.slice(offset, self.options.memory_rows).collect())
                self._add(self._valid(chunk, path, offset))  # writes: OSError is not the input's
                offset += self.options.memory_rows
        except pl.exceptions.PolarsError as exc:
            error = DataError(f"cannot read spans: {_reason(exc)}", path=path)
            if not self.options.skip:
                raise error from None
            where = f" (spans from {offset + 1} on left out)" if offset else ""
            self.skipped.append(Skipped(path, error.message + where))

    def _note_reader(self, path: str, report: IngestReport) -> None:
        """Count what the reader dropped: duplicates, and malformed records it skipped."""
        self.duplicates += report.duplicates
        if report.skipped:
            reasons = "; ".join(report.reasons) or "malformed records"
            self.skipped.append(Skipped(path, reasons, report.skipped))

    def _valid(self, chunk: pl.DataFrame, path: str, offset: int) -> pl.DataFrame:
        """The chunk's valid spans; an invalid one raises (fail) or is left out and noted (skip)."""
        checks = _bad_spans()
        bad = chunk.select(pl.any_horizontal(c.fill_null(False) for c, _ in checks)).to_series()
        if not bad.any():
            return chunk
        reasons: Any = pl.when(checks[0][0]).then(pl.lit(checks[0][1]))
        for check, text in checks[1:]:
            reasons = reasons.when(check).then(pl.lit(text))
        found = (
            chunk.with_row_index(_ROW, offset=offset + 1)
            .filter(bad)
            .select(_ROW, reasons.otherwise(None).alias("reason"))
        )
        if not self.options.skip:
            row = found.row(0, named=True)
            raise DataError(f"span {row[_ROW]}: {row['reason']}", path=path)
        counts = found.group_by("reason").agg(pl.len(), pl.col(_ROW).min()).sort(_ROW)
        for reason, n, first in counts.iter_rows():
            self.skipped.append(Skipped(path, reason, n, first))
        return chunk.filter(~bad)

    def _add(self, chunk: pl.DataFrame) -> None:
        """Buffer a chunk; write the buffer to staging once it holds `memory_rows` spans."""
        self.pending.append(chunk)
        self.pending_rows += chunk.height
        if self.pending_rows >= self.options.memory_rows:
            self._flush()

    def _flush(self) -> None:
        """Split the buffered spans by date, bucket and hour, and append them to staging."""
        if not self.pending:
            return
        try:
            frame = pl.concat(self.pending, how="diagonal_relaxed")
        except pl.exceptions.PolarsError as exc:
            raise DataError(f"span files have columns of clashing types: {_reason(exc)}") from None
        self.pending, self.pending_rows = [], 0
        if frame.schema not in self.schemas:
            self.schemas.append(frame.schema)
        keys = [pl.col("start_time").dt.date().cast(pl.String).alias("date")]
        if self.options.buckets is not None:
            keys.append(bucket_expr(self.options.buckets).alias("bucket"))
        keys.append(pl.col("start_time").dt.hour().alias(_HOUR))
        names = [k.meta.output_name() for k in keys]
        keyed = frame.with_columns(keys)
        for values, part in keyed.partition_by(names, as_dict=True, include_key=False).items():
            key = dict(zip(names, values, strict=True))
            self.staged.append((key["date"], key.get("bucket"), key[_HOUR]), part)

    # pass 2

    def write(self) -> None:
        """Write every partition from its staging slots, in time order, then drop staging."""
        self.schema = _output_schema(self.schemas)
        partitions: dict[tuple[str | None, int | None], list[_Slot]] = {}
        for slot in self.staged.slots.values():
            date = slot.date if self.options.partition == "date" else None
            partitions.setdefault((date, slot.bucket), []).append(slot)
        total = sum(len(s) for s in partitions.values())
        done = 0
        for (date, bucket), slots in sorted(partitions.items(), key=_partition_order):
            directory = self.tmp
            label = []
            if self.options.partition == "date":
                directory /= f"date={date or NULL_PARTITION}"
                label.append(directory.name)
            if bucket is not None:
                directory /= f"bucket={bucket}"
                label.append(directory.name)
            writer = _PartitionWriter(self, directory)
            for slot in sorted(slots, key=_Slot.order):
                for piece in self._pieces(slot):
                    writer.add(piece)
                for path in slot.files:
                    os.unlink(path)
                done += 1
                self.progress(done, total, "sorting " + "/".join(label))
            writer.close()
        shutil.rmtree(self.staging, ignore_errors=True)

    def _pieces(self, slot: _Slot) -> Iterator[pl.DataFrame]:
        """The slot's spans, sorted and without exact duplicates, at most ~memory_rows at once."""
        frame = pl.concat(
            [pl.scan_ipc(f, hive_partitioning=False) for f in slot.files],
            how="diagonal_relaxed",
        )
        rows = frame.select(pl.len()).collect().item()
        for low, high in _time_ranges(frame, rows, self.options.memory_rows):
            piece = frame
            if low is not None:
                piece = piece.filter(pl.col("start_time") >= low)
            if high is not None:
                piece = piece.filter(pl.col("start_time") < high)
            yield self._finish(piece.collect())

    def _finish(self, piece: pl.DataFrame) -> pl.DataFrame:
        """A piece in the output schema, exact duplicates dropped, sorted by start time."""
        piece = piece.select(
            pl.col(c).cast(t) if c in piece.columns else pl.lit(None, dtype=t).alias(c)
            for c, t in self.schema.items()
        )
        same_id = piece.select(pl.struct("trace_id", "span_id").is_duplicated()).to_series()
        if same_id.any():
            candidates = piece.filter(same_id)
            kept = candidates.unique(maintain_order=True)
            self.duplicates += candidates.height - kept.height
            piece = pl.concat([piece.filter(~same_id), kept])
        return piece.sort(["start_time", "trace_key", "span_id"], nulls_last=True)

    def write_manifest(self, report: ConvertReport) -> None:
        """Write _fluo.json: what a reader needs to trust and verify the layout."""
        low, high = self.time_range
        manifest = {
            "layout": LAYOUT,
            "version": LAYOUT_VERSION,
            "created_by": "fluo convert",
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "partition": self.options.partition,
            "buckets": self.options.buckets,
            "bucket_function": "splitmix64(trace_key) % buckets (fluo.buckets)",
            "sorted_by": ["start_time", "trace_key", "span_id"],
            "rows": report.spans,
            "duplicates_dropped": report.duplicates,
            "skipped_records": report.skipped_records,
            "skipped_files": report.skipped_files,
            "time_range": {"min": low, "max": high},
            "schema": {name: str(dtype) for name, dtype in self.schema.items()},
            "files": self.written,
        }
        text = json.dumps(manifest, indent=1)
        (self.tmp / MANIFEST_NAME).write_text(text + "\n", encoding="utf-8")

    def note_file(self, path: Path, rows: int, low: str | None, high: str | None) -> None:
        """Record a finished output file for the manifest."""
        self.rows += rows
        self.written.append(
            {
                "path": path.relative_to(self.tmp).as_posix(),
                "rows": rows,
                "bytes": path.stat().st_size,
                "min_start_time": low,
                "max_start_time": high,
            }
        )
        first, last = self.time_range
        if low is not None and (first is None or low < first):
            first = low
        if high is not None and (last is None or high > last):
            last = high
        self.time_range = (first, last)


class _PartitionWriter:
    """Appends sorted pieces to a partition's files in full row groups, rolling files over."""

    def __init__(self, job: _Conversion, directory: Path):
        self.job = job
        self.directory = directory
        self.buffer: list[pl.DataFrame] = []
        self.buffered = 0
        self.writer: Any = None
        self.path: Path | None = None
        self.file_rows = 0
        self.count = 0
        self.low: str | None = None
        self.high: str | None = None

    def add(self, piece: pl.DataFrame) -> None:
        if piece.height == 0:
            return
        self.buffer.append(piece)
        self.buffered += piece.height
        size = self.job.options.row_group_size
        if self.buffered >= size:
            frame = pl.concat(self.buffer)
            full = frame.height // size * size
            self._write(frame.slice(0, full))
            rest = frame.slice(full)
            self.buffer = [rest] if rest.height else []
            self.buffered = rest.height

    def _write(self, frame: pl.DataFrame) -> None:
        """Write whole row groups, opening a new file when the current one is full."""
        size = self.job.options.row_group_size
        per_file = max(self.job.options.rows_per_file // size, 1) * size
        offset = 0
        while offset < frame.height:
            if self.writer is None or self.file_rows >= per_file:
                self._close_file()
                self._open_file(frame)
            take = min(frame.height - offset, per_file - self.file_rows)
            chunk = frame.slice(offset, take)
            self.writer.write_table(chunk.to_arrow(), row_group_size=size)
            times = chunk.select(
                pl.col("start_time").min().dt.to_string(_TIME_TEXT).alias("low"),
                pl.col("start_time").max().dt.to_string(_TIME_TEXT).alias("high"),
            ).row(0)
            if self.low is None:
                self.low = times[0]
            self.high = times[1] or self.high
            self.file_rows += take
            offset += take

    def _open_file(self, frame: pl.DataFrame) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / f"part-{self.count:05d}.parquet"
        self.count += 1
        schema = frame.head(0).to_arrow().schema
        # Ids are unique: a dictionary for them is built, then dropped (20% of the CPU).
        plain = [c for c in schema.names if c not in _UNIQUE_COLUMNS]
        self.writer = pq.ParquetWriter(self.path, schema, compression="zstd", use_dictionary=plain)
        self.file_rows = 0
        self.low = self.high = None

    def _close_file(self) -> None:
        if self.writer is None or self.path is None:
            return
        self.writer.close()
        self.job.note_file(self.path, self.file_rows, self.low, self.high)
        self.writer = None

    def close(self) -> None:
        """Write what is buffered and finish the last file."""
        if self.buffer:
            self._write(pl.concat(self.buffer))
            self.buffer = []
        self._close_file()


class _Staging:
    """Staging files by slot: each slot's parts appended to one open file, a few hundred open."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.slots: dict[tuple[str | None, int | None, int | None], _Slot] = {}
        self.open: OrderedDict[tuple[str | None, int | None, int | None], Any] = OrderedDict()
        self.count = 0

    def append(self, key: tuple[str | None, int | None, int | None], part: pl.DataFrame) -> None:
        """Append a slot's spans to its open staging file (a new file if none or new columns).

        Staging files are Arrow IPC with lz4: written once and read once, they need no
        Parquet encoding (which took twice the CPU).
        """
        table = part.to_arrow()
        writer, schema = self.open.pop(key, (None, None))
        if writer is not None and schema != table.schema:
            writer.close()
            writer = None
        if writer is None:
            if len(self.open) >= _OPEN_STAGING_FILES:
                self.open.popitem(last=False)[1][0].close()
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"{self.count:07d}.arrow"
            self.count += 1
            options = pa.ipc.IpcWriteOptions(compression="lz4")
            writer = pa.ipc.new_file(path, table.schema, options=options)
            self.slots.setdefault(key, _Slot(*key)).files.append(str(path))
        writer.write_table(table)
        self.open[key] = (writer, table.schema)

    def close(self) -> None:
        """Finish every open staging file."""
        while self.open:
            self.open.popitem(last=False)[1][0].close()


def _partition_order(item: tuple[tuple[str | None, int | None], list[_Slot]]) -> tuple[Any, ...]:
    (date, bucket), _ = item
    return (date is None, date or "", bucket or 0)


def _time_ranges(
    frame: pl.LazyFrame, rows: int, limit: int
) -> list[tuple[dt.datetime | None, dt.datetime | None]]:
    """Start-time ranges [low, high) that cut a slot into pieces of about `limit` rows."""
    if rows <= limit:
        return [(None, None)]
    starts = frame.select(pl.col("start_time").drop_nulls().sort()).collect().to_series()
    pieces = -(-rows // limit)
    cuts: list[dt.datetime] = []
    for k in range(1, pieces):
        cut = starts[min(k * starts.len() // pieces, starts.len() - 1)]
        if not cuts or cut > cuts[-1]:
            cuts.append(cut)
    bounds: list[dt.datetime | None] = [None, *cuts, None]
    return list(itertools.pairwise(bounds))


def _output_schema(schemas: list[pl.Schema]) -> dict[str, pl.DataType]:
    """One schema for every output file: canonical columns, then extras in first-seen order."""
    if not schemas:
        return dict(CANONICAL_COLUMNS)
    frames = [pl.LazyFrame(schema=s) for s in schemas]
    try:
        merged = dict(pl.concat(frames, how="diagonal_relaxed").collect_schema())
    except pl.exceptions.PolarsError as exc:
        raise DataError(f"span files have columns of clashing types: {_reason(exc)}") from None
    return {c: pl.String() if t == pl.Null else t for c, t in merged.items()}


def _reason(exc: BaseException) -> str:
    """The first line of an exception's message, kept short."""
    lines = str(exc).strip().splitlines()
    first = lines[0] if lines else type(exc).__name__
    return first if len(first) <= 200 else first[:197] + "..."


# --- reading the layout back -------------------------------------------------------------


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of a converted directory; DataError if it is missing or not ours."""
    where = Path(path) / MANIFEST_NAME
    try:
        manifest = json.loads(where.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"no {MANIFEST_NAME}: not a fluo convert output", path=str(path)) from None
    except (OSError, ValueError) as exc:
        raise DataError(f"unreadable manifest: {_reason(exc)}", path=str(where)) from None
    if not isinstance(manifest, dict) or manifest.get("layout") != LAYOUT:
        raise DataError("not a fluo convert manifest", path=str(where))
    if manifest.get("version") != LAYOUT_VERSION:
        raise DataError(
            f"layout version {manifest.get('version')} is not supported "
            f"(this fluo reads version {LAYOUT_VERSION})",
            path=str(where),
        )
    return manifest


def check_layout(path: str | Path) -> dict[str, Any]:
    """Verify a converted directory against its manifest and return the manifest.

    Raises DataError for a missing file, a file whose size changed, a Parquet file
    the manifest does not list, a bucket directory outside 0..buckets-1, or a nested
    manifest (another conversion inside this one, possibly with another bucket count).
    """
    root = Path(path)
    manifest = read_manifest(root)
    listed = {f["path"]: f for f in manifest["files"]}
    for rel, entry in listed.items():
        file = root / rel
        if not file.is_file():
            raise DataError("listed in the manifest but missing", path=str(file))
        if file.stat().st_size != entry["bytes"]:
            raise DataError(
                f"size {file.stat().st_size} differs from the manifest's {entry['bytes']}",
                path=str(file),
            )
    buckets = manifest.get("buckets")
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here != root and MANIFEST_NAME in filenames:
            raise DataError(
                "a nested conversion (its own manifest) inside this one; bucket counts may differ",
                path=str(here),
            )
        for name in dirnames:
            if name.startswith("bucket="):
                value = name.partition("=")[2]
                if buckets is None or not value.isdigit() or int(value) >= buckets:
                    raise DataError(f"bucket folder {name} but buckets={buckets}", path=dirpath)
        for name in filenames:
            rel = (here / name).relative_to(root).as_posix()
            if name.endswith(".parquet") and rel not in listed and not name.startswith((".", "_")):
                raise DataError("Parquet file not listed in the manifest", path=str(here / name))
    return manifest
