"""Read span inputs (Parquet, Arrow IPC, OTLP/Jaeger/Zipkin JSON, OTLP protobuf, Tempo
vParquet4, CSV/TSV/Parquet through mapping profiles) into the canonical table.

`scan_spans` is the one entry point. Parquet and IPC stay lazy (projection and predicate
pushdown reach the scan), and so do tables read through a profile; JSON and protobuf are
parsed eagerly and handed over as a lazy frame. See docs/ingest.md.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from fluo.errors import DataError, did_you_mean
from fluo.ingest.detect import (
    CSV,
    FORMATS,
    GZIP_MAGIC,
    IPC,
    JAEGER_JSON,
    OTLP_JSON,
    OTLP_PROTO,
    PARQUET,
    TEMPO,
    TSV,
    ZIP_MAGIC,
    ZIPKIN_JSON,
    SpanFile,
    check_format,
    expand_inputs,
    hive_columns,
    read_head,
)
from fluo.ingest.jaeger import read_jaeger_json
from fluo.ingest.normalize import promote_attributes
from fluo.ingest.otlp_json import read_otlp_json
from fluo.ingest.otlp_proto import read_otlp_proto
from fluo.ingest.parquet import read_schema, scan_columnar
from fluo.ingest.profile import (
    Profile,
    detect_profile,
    is_profile_reference,
    load_profile,
    scan_profile,
    shipped_profiles,
)
from fluo.ingest.report import (
    IngestReport,
    OnError,
    ReadTally,
    check_on_error,
    drop_duplicates,
)
from fluo.ingest.tempo import scan_tempo
from fluo.ingest.zipkin import read_zipkin_json

_JSON_READERS = {
    OTLP_JSON: read_otlp_json,
    JAEGER_JSON: read_jaeger_json,
    ZIPKIN_JSON: read_zipkin_json,
}

__all__ = [
    "IngestReport",
    "Profile",
    "ReadDefaults",
    "load_profile",
    "reading",
    "scan_spans",
    "shipped_profiles",
]


@dataclass(frozen=True)
class _Defaults:
    format: str | None
    report: IngestReport
    on_error: OnError


_DEFAULTS: ContextVar[_Defaults | None] = ContextVar("fluo_ingest_defaults", default=None)


class ReadDefaults:
    """Defaults for every `scan_spans` call that does not pass its own (made by `fluo.run`,
    the scale engine, ...), in force until `close()`: the format or profile, on_error, and
    the report that collects what the reads dropped. The command line sets them from
    ``--from`` and ``--on-error``; `reading` is the same as a context manager."""

    def __init__(
        self,
        format: str | None = None,
        report: IngestReport | None = None,
        on_error: str = "fail",
    ) -> None:
        self.report = report if report is not None else IngestReport()
        defaults = _Defaults(format, self.report, check_on_error(on_error))
        self._token = _DEFAULTS.set(defaults)

    def close(self) -> None:
        """Restore the defaults that were in force before."""
        _DEFAULTS.reset(self._token)


@contextmanager
def reading(
    format: str | None = None,
    report: IngestReport | None = None,
    on_error: str = "fail",
) -> Iterator[IngestReport]:
    """`ReadDefaults` for the block; yields the report."""
    defaults = ReadDefaults(format, report, on_error)
    try:
        yield defaults.report
    finally:
        defaults.close()


def scan_spans(
    paths: str | Path | Sequence[str | Path],
    *,
    format: str | None = None,
    profile: str | Path | Profile | None = None,
    report: IngestReport | None = None,
    on_error: OnError | None = None,
    promote: bool = False,
) -> pl.LazyFrame:
    """A lazy canonical span table over one or more files, directories or globs.

    `format` forces "parquet", "ipc", "otlp-json", "jaeger-json", "zipkin-json",
    "otlp-proto", "tempo-vparquet4", "csv" or "tsv" for every input, or names a mapping
    profile: a shipped one ("clickhouse", "nezha", "deeptralog") or the path of a YAML file
    (`profile=` does the same). By default each file's format is told from its first bytes,
    its suffix and its content (JSON keys, CSV header, Parquet columns). Raises DataError
    (naming the file, and the line or record) for anything that cannot be read.

    Exact duplicate spans are dropped from every input that is not canonical Parquet/IPC;
    `report` (an IngestReport) receives their count and, with ``on_error="skip"``, the
    malformed records that were skipped. ``promote=True`` adds typed `attr.*` columns for
    common attributes (docs/ingest.md, "Promoted attributes"). Arguments not given are
    taken from an enclosing `reading(...)` block, if any.
    """
    defaults = _DEFAULTS.get()
    if defaults is not None:
        if format is None and profile is None:
            format = defaults.format
        report = report if report is not None else defaults.report
        on_error = on_error if on_error is not None else defaults.on_error
    on_error = check_on_error(on_error or "fail")
    chosen = load_profile(profile) if profile is not None else None
    if chosen is None and format is not None and is_profile_reference(format):
        chosen = load_profile(format)
    if chosen is not None:
        files = expand_inputs(paths, None, chosen.suffixes)
        parts = [(0, scan_profile(files, chosen, report=report, on_error=on_error))]
    else:
        files = expand_inputs(paths, _builtin_format(format))
        parts = _scan_files(files, report, on_error)
    if report is not None and chosen is None:
        report.files.extend(f.path for f in files)
    frames = [frame for _, frame in sorted(parts, key=lambda p: p[0])]
    result = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
    if len(frames) > 1:
        try:
            result.collect_schema()
        except pl.exceptions.PolarsError as exc:
            raise DataError(
                f"span files have columns of clashing types: {str(exc).splitlines()[0]}",
                path=files[0].path,
            ) from None
    return promote_attributes(result) if promote else result


def _builtin_format(format: str | None) -> str | None:
    """A built-in format name, checked; the error lists the profiles as well."""
    try:
        return check_format(format)
    except DataError:
        names = [*FORMATS, *shipped_profiles()]
        hint = did_you_mean(str(format), names)
        raise DataError(
            f"unknown span format '{format}'; expected a format ({', '.join(FORMATS)}), "
            f"a shipped profile ({', '.join(shipped_profiles())}) or a profile .yaml file"
            + (f"; {hint}" if hint else "")
        ) from None


def _scan_files(
    files: Sequence[SpanFile], report: IngestReport | None, on_error: OnError
) -> list[tuple[int, pl.LazyFrame]]:
    """One lazy frame per group of files read alike, each with the position of its first file."""
    groups: dict[object, list[tuple[int, SpanFile]]] = {}
    for i, span_file in enumerate(files):
        groups.setdefault(_reader_of(span_file), []).append((i, span_file))
    parts: list[tuple[int, pl.LazyFrame]] = []
    for key, members in groups.items():
        first = members[0][0]
        group = [f for _, f in members]
        if isinstance(key, Profile):
            parts.append((first, scan_profile(group, key, report=report, on_error=on_error)))
        elif key in (PARQUET, IPC):
            parts += [(first, frame) for frame in scan_columnar(group)]
        elif key == TEMPO:
            parts.append((first, scan_tempo(group, report)))
        elif key == OTLP_PROTO:
            parts.append((first, _eager(group, read_otlp_proto, report, on_error)))
        else:
            parts.append((first, _eager(group, _JSON_READERS[str(key)], report, on_error)))
    return parts


def _reader_of(span_file: SpanFile) -> object:
    """What reads a file: its format, or the shipped profile its columns match."""
    if span_file.format in (CSV, TSV):
        columns = _text_header(span_file)
        found = detect_profile(columns)
        if found is None:
            names = ", ".join(shipped_profiles())
            raise DataError(
                f"the {span_file.format.upper()} columns ({', '.join(columns[:12])}) match no "
                f"known layout; pass a mapping profile (--from PROFILE.yaml) or one of {names}",
                path=span_file.path,
            )
        return found
    if span_file.format == PARQUET:
        columns = list(read_schema(span_file))
        if "trace_id" in columns or "span_id" in columns:
            return PARQUET
        if {"TraceID", "rs"} <= set(columns):
            return TEMPO
        found = detect_profile(columns)
        return found if found is not None else PARQUET  # the columnar reader reports it
    return span_file.format


def _text_header(span_file: SpanFile) -> list[str]:
    """The column names of a CSV/TSV file (or of the first table in a zip archive)."""
    path = span_file.path
    separator = "\t" if span_file.format == TSV else ","
    head = read_head(path, 4096)
    if b"\x00" in head and not head.startswith((ZIP_MAGIC, GZIP_MAGIC)):
        raise DataError(f"not {span_file.format} text: the file holds binary data", path=path)
    try:
        if read_head(path, 4) == ZIP_MAGIC:
            with zipfile.ZipFile(path) as archive:
                tables = [n for n in archive.namelist() if n.lower().endswith((".csv", ".tsv"))]
                if not tables:
                    raise DataError("zip archive holds no .csv or .tsv table", path=path)
                separator = "\t" if tables[0].lower().endswith(".tsv") else ","
                with archive.open(tables[0]) as member:
                    first = member.readline()
            header = pl.read_csv(io.BytesIO(first), n_rows=0, separator=separator)
        else:
            header = pl.read_csv(path, n_rows=0, separator=separator, infer_schema=False)
    except DataError:
        raise
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot read the {span_file.format} header: {reason}", path=path) from None
    return header.columns


def _eager(
    files: Sequence[SpanFile],
    read: Callable[[str, ReadTally], pl.DataFrame],
    report: IngestReport | None,
    on_error: OnError,
) -> pl.LazyFrame:
    """One lazy frame over files parsed now, exact duplicates dropped, with Hive columns;
    malformed records raise, or are skipped and counted in `report` (``on_error="skip"``)."""
    hive = hive_columns(files)
    tally = ReadTally(on_error)
    frames = []
    for i, span_file in enumerate(files):
        frame = read(span_file.path, tally)
        if hive:
            frame = frame.with_columns(
                pl.lit(values[i], dtype=dtype).alias(key)
                for key, (dtype, values) in hive.items()
                if key not in frame.columns
            )
        frames.append(frame)
    if report is not None:
        tally.add_to(report)
    combined = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
    return drop_duplicates(combined, report).lazy()
