"""Writing signals to files, atomically: a failed run leaves no half-written output."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import polars as pl

from fluo.errors import DataError

FORMATS = ("table", "jsonl", "csv", "parquet")
SUFFIX_FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def format_for(path: str | Path | None, requested: str | None) -> str:
    """The output format: as requested, else from the file suffix, else a table."""
    if requested:
        return requested
    if path is None:
        return "table"
    return SUFFIX_FORMATS.get(Path(path).suffix.lower(), "jsonl")


def write_signals(signals: pl.DataFrame, path: str | Path, fmt: str) -> None:
    """Write `signals` to `path` in `fmt` via a temporary file and an atomic rename."""
    target = Path(path)
    if fmt == "table":
        raise DataError(
            "the table format is for the terminal; choose jsonl, csv or parquet", path=str(target)
        )
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise DataError("the output directory does not exist", path=str(target))
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if fmt == "jsonl":
            signals.with_columns(
                pl.col("time").dt.to_string("%Y-%m-%dT%H:%M:%S%.9fZ")
            ).write_ndjson(tmp)
        elif fmt == "csv":
            flat_evidence(signals).write_csv(tmp, datetime_format="%Y-%m-%dT%H:%M:%S%.9fZ")
        elif fmt == "parquet":
            signals.write_parquet(tmp, compression="zstd")
        else:
            raise DataError(f"unknown output format {fmt!r}", path=str(target))
        os.replace(tmp, target)
    except OSError as exc:
        raise DataError(f"cannot write output: {exc.strerror or exc}", path=str(target)) from None
    finally:
        tmp.unlink(missing_ok=True)


def flat_evidence(signals: pl.DataFrame) -> pl.DataFrame:
    """Signals with the evidence span ids as one space-separated string (for CSV)."""
    if "evidence" not in signals.columns:
        return signals
    return signals.with_columns(pl.col("evidence").list.join(" "))
