"""What reading the spans changed: duplicates dropped, records skipped.

Readers never drop data silently. They add what they dropped to an `IngestReport`, which
the caller passes to `scan_spans(..., report=...)` and reads afterwards (`fluo run` prints
`report.warnings()` as warning lines). Eager readers (JSON) count at once; lazy readers
(CSV and Parquet through a profile) register a count that is computed the first time the
report is read, with one extra pass over their input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import polars as pl

from fluo.errors import DataError

#: What a reader does with a record it cannot read: stop with a DataError, or skip and count it.
OnError = Literal["fail", "skip"]
ON_ERROR_CHOICES: tuple[OnError, ...] = ("fail", "skip")
#: How many skipped records are described in `IngestReport.reasons`.
MAX_REASONS = 5


def check_on_error(value: str) -> OnError:
    """Validate an `on_error` choice."""
    if value == "fail":
        return "fail"
    if value == "skip":
        return "skip"
    raise DataError(f"unknown on_error choice '{value}'; expected fail or skip")


@dataclass
class IngestReport:
    """Counts of what the readers of one `scan_spans` call dropped, and why.

    `duplicates` are exact duplicate spans (every canonical column equal) removed from
    inputs that are not canonical Parquet/IPC; `skipped` are malformed records left out with
    ``on_error="skip"``; `reasons` describes the first few of them (``path:line: reason``).
    """

    files: list[str] = field(default_factory=list)
    _duplicates: int = 0
    _skipped: int = 0
    _merged: int = 0
    _reasons: list[str] = field(default_factory=list)
    _pending: list[Callable[[], tuple[int, int, list[str]]]] = field(default_factory=list)

    def add_duplicates(self, count: int) -> None:
        """Count duplicate spans an eager reader dropped."""
        self._duplicates += count

    def add_skipped(self, count: int, reasons: list[str]) -> None:
        """Count records an eager reader skipped, with the descriptions of the first ones."""
        self._skipped += count
        self._reasons.extend(reasons[: max(0, MAX_REASONS - len(self._reasons))])

    def add_merged(self, count: int) -> None:
        """Count Zipkin records merged into another record of the same span."""
        self._merged += count

    def defer(self, counts: Callable[[], tuple[int, int, list[str]]]) -> None:
        """Register a lazy reader's (duplicates, skipped, reasons), computed when first read."""
        self._pending.append(counts)

    def _resolve(self) -> None:
        while self._pending:
            duplicates, skipped, reasons = self._pending.pop(0)()
            self.add_duplicates(duplicates)
            self.add_skipped(skipped, reasons)

    @property
    def duplicates(self) -> int:
        """Exact duplicate spans dropped."""
        self._resolve()
        return self._duplicates

    @property
    def skipped(self) -> int:
        """Malformed records skipped (``on_error="skip"``)."""
        self._resolve()
        return self._skipped

    @property
    def reasons(self) -> list[str]:
        """``path:line: reason`` of the first skipped records."""
        self._resolve()
        return list(self._reasons)

    @property
    def merged(self) -> int:
        """Zipkin span fragments merged into another record of the same span."""
        return self._merged

    def warnings(self) -> list[str]:
        """One line per kind of loss, for a run's warnings; empty when nothing was dropped."""
        lines = []
        if self.duplicates:
            n = self.duplicates
            lines.append(f"dropped {n} exact duplicate span{'s' if n != 1 else ''} while reading")
        if self.skipped:
            n = self.skipped
            shown = "; ".join(self.reasons)
            more = ", ..." if n > len(self.reasons) else ""
            lines.append(f"skipped {n} malformed record{'s' if n != 1 else ''}: {shown}{more}")
        if self.merged:
            n = self.merged
            fragments = f"{n} Zipkin span fragment{'s' if n != 1 else ''}"
            lines.append(f"merged {fragments} into the spans they belong to")
        return lines


class ReadTally:
    """What an eager reader (JSON, protobuf) did with the records of its files.

    A malformed record's DataError is raised at once with ``on_error="fail"``; with
    ``"skip"`` it is counted, its text (``path:line: reason``) kept for the first few, and
    the reader goes on with the next record. Zipkin fragments merged into one span, and
    exact copies of a record dropped before merging, are counted too. `add_to` hands the
    counts to an IngestReport.
    """

    def __init__(self, on_error: OnError = "fail") -> None:
        self.skip = on_error == "skip"
        self.skipped = 0
        self.reasons: list[str] = []
        self.merged = 0
        self.duplicates = 0

    def bad(self, error: DataError) -> None:
        """A malformed record: raise its error (fail), or count it and return (skip)."""
        if not self.skip:
            raise error from None
        self.skipped += 1
        if len(self.reasons) < MAX_REASONS:
            self.reasons.append(str(error))

    def add_to(self, report: IngestReport) -> None:
        """Add the counts to `report`."""
        if self.skipped:
            report.add_skipped(self.skipped, self.reasons)
        if self.merged:
            report.add_merged(self.merged)
        if self.duplicates:
            report.add_duplicates(self.duplicates)


def defer_duplicates(report: IngestReport, spans: pl.LazyFrame) -> None:
    """Have `report` count the exact duplicates of a lazy table (rows minus distinct rows)
    the first time it is read: one extra pass over the input."""

    def count() -> tuple[int, int, list[str]]:
        try:
            total, distinct = (
                spans.select(pl.len(), pl.struct(pl.all()).n_unique()).collect().row(0)
            )
        except pl.exceptions.PolarsError as exc:
            raise DataError(f"cannot count duplicate spans: {str(exc).splitlines()[0]}") from None
        return total - distinct, 0, []

    report.defer(count)


def drop_duplicates(frame: pl.DataFrame, report: IngestReport | None) -> pl.DataFrame:
    """`frame` without exact duplicate rows (first kept, order kept); the count goes to `report`."""
    unique = frame.unique(maintain_order=True)
    if report is not None and unique.height != frame.height:
        report.add_duplicates(frame.height - unique.height)
    return unique
