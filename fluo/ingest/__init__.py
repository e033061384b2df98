"""Read span inputs (Parquet, Arrow IPC, OTLP/Jaeger/Zipkin JSON) into the canonical table.

`scan_spans` is the one entry point. Parquet and IPC stay lazy (projection and predicate
pushdown reach the scan); JSON is parsed eagerly and handed over as a lazy frame.
See docs/ingest.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from fluo.errors import DataError
from fluo.ingest.detect import (
    JAEGER_JSON,
    JSON_FORMATS,
    OTLP_JSON,
    ZIPKIN_JSON,
    SpanFile,
    check_format,
    expand_inputs,
    hive_columns,
)
from fluo.ingest.jaeger import read_jaeger_json
from fluo.ingest.otlp_json import read_otlp_json
from fluo.ingest.parquet import scan_columnar
from fluo.ingest.zipkin import read_zipkin_json

_JSON_READERS = {
    OTLP_JSON: read_otlp_json,
    JAEGER_JSON: read_jaeger_json,
    ZIPKIN_JSON: read_zipkin_json,
}

__all__ = ["scan_spans"]


def scan_spans(
    paths: str | Path | Sequence[str | Path], *, format: str | None = None
) -> pl.LazyFrame:
    """A lazy canonical span table over one or more files, directories or globs.

    `format` forces "parquet", "ipc", "otlp-json", "jaeger-json" or "zipkin-json" for every
    input; by default each file's format is told from its first bytes, its suffix and, for
    JSON, the keys at its start. Raises DataError (naming the file,
    and the line for JSON) for anything that cannot be read.
    """
    files = expand_inputs(paths, check_format(format))
    columnar = [f for f in files if f.format not in JSON_FORMATS]
    json_files = [f for f in files if f.format in JSON_FORMATS]
    frames = scan_columnar(columnar) if columnar else []
    if json_files:
        parsed = _read_json_files(json_files)
        if files[0].format in JSON_FORMATS:
            frames.insert(0, parsed)
        else:
            frames.append(parsed)
    result = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
    if len(frames) > 1:
        try:
            result.collect_schema()
        except pl.exceptions.PolarsError as exc:
            raise DataError(
                f"span files have columns of clashing types: {str(exc).splitlines()[0]}",
                path=files[0].path,
            ) from None
    return result


def _read_json_files(files: Sequence[SpanFile]) -> pl.LazyFrame:
    """One lazy frame over every JSON file (parsed now), with its Hive columns."""
    hive = hive_columns(files)
    frames = []
    for i, span_file in enumerate(files):
        frame = _JSON_READERS[span_file.format](span_file.path)
        if hive:
            frame = frame.with_columns(
                pl.lit(values[i], dtype=dtype).alias(key)
                for key, (dtype, values) in hive.items()
                if key not in frame.columns
            )
        frames.append(frame)
    combined = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
    return combined.lazy()
