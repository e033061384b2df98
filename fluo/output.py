"""Writing signals to files, atomically: a failed run leaves no half-written output.

`SignalWriter` takes the signals chunk by chunk (see fluo.run.stream) into a
temporary file beside the target, and renames it into place only when the run
has succeeded.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import polars as pl
import pyarrow.parquet as pq

from fluo.compile import SIGNAL_SCHEMA
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
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%.9fZ"


def format_for(path: str | Path | None, requested: str | None) -> str:
    """The output format: as requested, else from the file suffix, else a table."""
    if requested:
        return requested
    if path is None:
        return "table"
    return SUFFIX_FORMATS.get(Path(path).suffix.lower(), "jsonl")


def flat_evidence(signals: pl.DataFrame) -> pl.DataFrame:
    """Signals with list columns (evidence span ids, exemplar traces) as space-separated
    strings (for CSV)."""
    lists = [c for c, t in signals.schema.items() if isinstance(t, pl.List)]
    return signals.with_columns(pl.col(c).list.join(" ") for c in lists)


def as_text(signals: pl.DataFrame, fmt: str, header: bool = True) -> str:
    """Signals as JSON lines or CSV text, times in RFC 3339 UTC."""
    if fmt == "jsonl":
        times = [c for c, t in signals.schema.items() if isinstance(t, pl.Datetime)]
        return signals.with_columns(pl.col(times).dt.to_string(TIME_FORMAT)).write_ndjson()
    return flat_evidence(signals).write_csv(include_header=header, datetime_format=TIME_FORMAT)


class SignalWriter:
    """Appends chunks of signals to a temporary file; `close` renames it into place."""

    def __init__(self, path: str | Path, fmt: str):
        self.target = Path(path)
        self.fmt = fmt
        if fmt not in ("jsonl", "csv", "parquet"):
            raise DataError(
                "choose jsonl, csv or parquet to write a file (table is for the terminal)",
                path=str(self.target),
            )
        directory = self.target.parent if str(self.target.parent) else Path(".")
        if not directory.is_dir():
            raise DataError("the output directory does not exist", path=str(self.target))
        fd, name = tempfile.mkstemp(prefix=f".{self.target.name}.", suffix=".tmp", dir=directory)
        os.close(fd)
        self.tmp = Path(name)
        self._text: IO[str] | None = None
        self._parquet: Any = None
        self._rows = 0

    def __call__(self, signals: pl.DataFrame) -> None:
        try:
            if self.fmt == "parquet":
                table = signals.to_arrow()
                if self._parquet is None:
                    self._parquet = pq.ParquetWriter(self.tmp, table.schema, compression="zstd")
                self._parquet.write_table(table)
            else:
                if self._text is None:
                    self._text = self.tmp.open("w", encoding="utf-8")
                self._text.write(as_text(signals, self.fmt, header=self._rows == 0))
        except OSError as exc:
            raise DataError(
                f"cannot write output: {exc.strerror or exc}", str(self.target)
            ) from None
        self._rows += signals.height

    def close(self) -> None:
        """Finish the file and move it into place."""
        if self._rows == 0 and self._parquet is None and self._text is None:
            self(pl.DataFrame(schema=SIGNAL_SCHEMA))  # an empty file still has a schema
        if self._parquet is not None:
            self._parquet.close()
        if self._text is not None:
            self._text.close()
        try:
            os.replace(self.tmp, self.target)
        except OSError as exc:
            self.abort()
            raise DataError(
                f"cannot write output: {exc.strerror or exc}", str(self.target)
            ) from None

    def abort(self) -> None:
        """Drop the temporary file: nothing is written."""
        for handle in (self._parquet, self._text):
            if handle is not None:
                handle.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> SignalWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if error is None:
            self.close()
        else:
            self.abort()


def write_signals(signals: pl.DataFrame, path: str | Path, fmt: str) -> None:
    """Write a whole signal table to `path` in `fmt`, atomically."""
    with SignalWriter(path, fmt) as write:
        write(signals)
