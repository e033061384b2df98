"""Scan Parquet and Arrow IPC span files lazily, after checking each file's schema.

Every file's footer (Parquet) or schema message (IPC) is read up front, which is cheap and
makes corrupt files fail at once with their path. Files whose column types agree are read
by one `scan_parquet` / `scan_ipc`; columns with a compatible but non-canonical type
(Categorical ids, microsecond times, ...) are cast after the scan; Hive partition values
are added from each file's path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import polars as pl

from fluo.errors import DataError
from fluo.ingest.detect import (
    ARROW_STREAM_MAGIC,
    IPC,
    PARQUET,
    HiveValue,
    SpanFile,
    hive_columns,
    read_head,
)
from fluo.ingest.normalize import canonical_casts, cast_expr
from fluo.schema import CANONICAL_COLUMNS

_PATH_COLUMN = "__fluo_source_file__"

Schema = dict[str, pl.DataType]


def _reason(exc: BaseException) -> str:
    """The first line of an exception's message, kept short."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return first if len(first) <= 200 else first[:197] + "..."


def read_schema(span_file: SpanFile) -> Schema:
    """A Parquet or IPC file's schema, read from its metadata only; DataError if unreadable."""
    path = span_file.path
    kind = "Parquet" if span_file.format == PARQUET else "Arrow IPC"
    try:
        if span_file.format == PARQUET:
            return dict(pl.read_parquet_schema(path))
        if _is_ipc_stream(path):
            return dict(pl.read_ipc_stream(path, n_rows=0).schema)
        return dict(pl.read_ipc_schema(path))
    except FileNotFoundError:
        raise DataError("no such file", path=path) from None
    except Exception as exc:  # Polars and Arrow raise many types for a corrupt file
        raise DataError(f"not a valid {kind} file: {_reason(exc)}", path=path) from None


def _is_ipc_stream(path: str) -> bool:
    """Whether an IPC file is in the stream format (not the file format)."""
    return read_head(path, 4) == ARROW_STREAM_MAGIC


@dataclass
class _Group:
    """Files read by one scan: same format and no column with two different types."""

    format: str
    stream: bool
    schema: Schema = field(default_factory=dict)
    files: list[SpanFile] = field(default_factory=list)

    def accepts(self, span_file: SpanFile, schema: Schema, stream: bool) -> bool:
        """Whether a file can join this group's scan."""
        if span_file.format != self.format or stream or self.stream:
            return False
        if self.format == IPC:  # scan_ipc cannot insert missing columns
            return schema == self.schema
        return all(self.schema.get(name, dtype) == dtype for name, dtype in schema.items())

    def add(self, span_file: SpanFile, schema: Schema) -> None:
        """Add a file and its columns to the group."""
        self.files.append(span_file)
        for name, dtype in schema.items():
            self.schema.setdefault(name, dtype)


def scan_columnar(files: Sequence[SpanFile]) -> list[pl.LazyFrame]:
    """Lazy frames over Parquet/IPC files: one per group of files with agreeing column types."""
    groups: list[_Group] = []
    for span_file in files:
        schema = read_schema(span_file)
        canonical_casts(schema, span_file.path)  # raises on a bad file, naming it
        stream = span_file.format == IPC and _is_ipc_stream(span_file.path)
        group = next((g for g in groups if g.accepts(span_file, schema, stream)), None)
        if group is None:
            group = _Group(span_file.format, stream)
            groups.append(group)
        group.add(span_file, schema)
    return [_scan_group(g) for g in groups]


def _scan_group(group: _Group) -> pl.LazyFrame:
    """One lazy frame over a group: scan, casts to canonical types, Hive columns."""
    paths = [f.path for f in group.files]
    hive = {k: v for k, v in hive_columns(group.files).items() if k not in group.schema}
    path_column = _PATH_COLUMN if hive else None
    try:
        if group.stream:
            frame = pl.read_ipc_stream(paths[0]).lazy()
            if path_column:
                frame = frame.with_columns(pl.lit(paths[0]).alias(path_column))
        elif group.format == PARQUET:
            frame = pl.scan_parquet(
                paths,
                schema=group.schema,
                missing_columns="insert",
                hive_partitioning=False,
                glob=False,
                include_file_paths=path_column,
            )
        else:
            frame = pl.scan_ipc(
                paths, hive_partitioning=False, glob=False, include_file_paths=path_column
            )
    except Exception as exc:  # eager stream read of a corrupt file
        raise DataError(f"cannot read span file: {_reason(exc)}", path=paths[0]) from None
    casts = canonical_casts(group.schema, paths[0])
    if casts:
        frame = frame.with_columns(casts)
    if hive:
        frame = frame.with_columns(_hive_exprs(hive, paths)).drop(_PATH_COLUMN)
    return frame


def _hive_exprs(
    hive: dict[str, tuple[pl.DataType, list[HiveValue]]], paths: list[str]
) -> list[pl.Expr]:
    """One column per Hive key, looked up from each row's source file path."""
    exprs = []
    for key, (dtype, values) in hive.items():
        expr = pl.col(_PATH_COLUMN).replace_strict(paths, values, default=None, return_dtype=dtype)
        if key in CANONICAL_COLUMNS:
            cast = cast_expr(key, dtype)
            if cast is None:
                raise DataError(
                    f"Hive partition folder '{key}=...' has type {dtype}, "
                    f"expected {CANONICAL_COLUMNS[key]}",
                    path=paths[0],
                )
            expr = expr.cast(CANONICAL_COLUMNS[key])
        exprs.append(expr.alias(key))
    return exprs
