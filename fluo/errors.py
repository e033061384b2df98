"""Errors as data: one root, a few kinds, each carrying where it happened.

The library raises these and never prints; the command line renders them
(file:line:col, the source line, a caret) in fluo.cli.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from difflib import get_close_matches

from fluo.ast import Position


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem found in a rule file, with its position and an optional hint."""

    message: str
    position: Position | None = None
    severity: str = "error"  # "error", "warning" or "note"
    hint: str | None = None

    @property
    def is_error(self) -> bool:
        return self.severity == "error"


class FluoError(Exception):
    """Root of every error fluo raises for a user's mistake (bad rules, bad data)."""

    def __str__(self) -> str:
        return self.args[0] if self.args else type(self).__name__


class RuleError(FluoError):
    """One or more problems in rule files; `diagnostics` holds them all, in source order."""

    def __init__(self, diagnostics: Sequence[Diagnostic]):
        self.diagnostics = list(diagnostics)
        first = self.diagnostics[0] if self.diagnostics else Diagnostic("invalid rules")
        where = f"{first.position}: " if first.position else ""
        more = len(self.diagnostics) - 1
        suffix = f" (and {more} more)" if more > 0 else ""
        super().__init__(f"{where}{first.message}{suffix}")


class DataError(FluoError):
    """A span input that cannot be read: names the file and, where known, the record."""

    def __init__(self, message: str, path: str | None = None, record: int | None = None):
        super().__init__(message)
        self.message = message
        self.path = path
        self.record = record  # 1-based line or record number

    def __str__(self) -> str:
        where = self.path or "<spans>"
        if self.record is not None:
            where += f":{self.record}"
        return f"{where}: {self.message}"


class CompileError(FluoError):
    """A checked rule that the compiler has no lowering for: a bug in fluo, not in the rule."""


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """A hint naming the candidate closest to `word`, if any is close enough."""
    matches = get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"did you mean '{matches[0]}'?" if matches else None
