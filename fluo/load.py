"""Stage 1: read rule files (YAML) into values that remember where they were written.

`load_document` returns a `Located` tree: every mapping, list and scalar keeps
its file position, and a scalar can map an offset inside its text (a DSL
expression) back to a line and column of the file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fluo.ast import Position
from fluo.errors import Diagnostic, RuleError

Locator = Callable[[int], Position]


@dataclass(frozen=True, slots=True)
class Located:
    """A YAML value with its position. Mappings hold `dict[str, Located]`, lists `list[Located]`."""

    value: Any
    pos: Position
    key_pos: Position | None = None  # where the mapping key of this value was written
    #: Where each line of a scalar's text starts in the file: (line, column) pairs.
    line_starts: tuple[tuple[int, int], ...] = field(default=(), repr=False)
    source_lines: tuple[str, ...] = field(default=(), repr=False, compare=False)

    @property
    def kind(self) -> str:
        """A word for the YAML type of the value, for error messages."""
        v = self.value
        if isinstance(v, dict):
            return "a mapping"
        if isinstance(v, list):
            return "a list"
        if isinstance(v, bool):
            return "a boolean"
        if isinstance(v, int | float):
            return "a number"
        if v is None:
            return "null"
        return "a string"

    def plain(self) -> Any:
        """The value with positions stripped, recursively."""
        if isinstance(self.value, dict):
            return {k: v.plain() for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v.plain() for v in self.value]
        return self.value

    def locate(self, offset: int) -> Position:
        """The file position of character `offset` of this scalar's text."""
        text = str(self.value)
        if not self.line_starts:
            return self.pos
        line_index = text.count("\n", 0, offset)
        if line_index >= len(self.line_starts):
            return self.pos
        start_of_line = text.rfind("\n", 0, offset) + 1
        line, column = self.line_starts[line_index]
        column += offset - start_of_line
        line_text = self.source_lines[line - 1] if 0 < line <= len(self.source_lines) else ""
        return Position(self.pos.file, line, column, line_text)


def load_document(text: str, file: str | None = None) -> Located:
    """Parse YAML text into a `Located` tree; raise RuleError with a position on bad YAML."""
    lines = tuple(text.splitlines())
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = _position(file, lines, mark.line, mark.column) if mark else None
        problem = exc.problem or exc.context or "malformed YAML"
        raise RuleError([Diagnostic(f"malformed YAML: {problem}", pos)]) from None
    except yaml.YAMLError as exc:
        raise RuleError([Diagnostic(f"malformed YAML: {exc}", Position(file, 1, 1))]) from None
    if node is None:
        raise RuleError([Diagnostic("the rule file is empty", Position(file, 1, 1))])
    return _convert(node, file, lines, text)


def load_file(path: str | Path) -> Located:
    """Read and parse one rule file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RuleError([Diagnostic(f"rule file not found: {p}")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleError([Diagnostic(f"cannot read rule file {p}: {exc}")]) from None
    return load_document(text, str(p))


def _position(file: str | None, lines: tuple[str, ...], line: int, column: int) -> Position:
    line_text = lines[line] if 0 <= line < len(lines) else ""
    return Position(file, line + 1, column + 1, line_text)


def _convert(node: yaml.Node, file: str | None, lines: tuple[str, ...], text: str) -> Located:
    pos = _position(file, lines, node.start_mark.line, node.start_mark.column)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Located] = {}
        for key_node, value_node in node.value:
            key_pos = _position(file, lines, key_node.start_mark.line, key_node.start_mark.column)
            key = key_node.value
            if key in out:
                raise RuleError([Diagnostic(f"duplicate key '{key}'", key_pos)])
            value = _convert(value_node, file, lines, text)
            out[str(key)] = Located(
                value.value, value.pos, key_pos, value.line_starts, value.source_lines
            )
        return Located(out, pos)
    if isinstance(node, yaml.SequenceNode):
        return Located([_convert(n, file, lines, text) for n in node.value], pos)
    assert isinstance(node, yaml.ScalarNode)
    value = _construct_scalar(node)
    line_starts = _scalar_line_starts(node, text) if isinstance(value, str) else ()
    return Located(value, pos, None, line_starts, lines)


def _construct_scalar(node: yaml.ScalarNode) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node)
    finally:
        loader.dispose()


def _scalar_line_starts(node: yaml.ScalarNode, text: str) -> tuple[tuple[int, int], ...]:
    """Find where each line of a string scalar's value sits in the file (1-based)."""
    raw = text[node.start_mark.index : node.end_mark.index]
    value = node.value
    starts: list[tuple[int, int]] = []
    cursor = 0
    for value_line in value.split("\n"):
        probe = value_line.strip()
        found = raw.find(probe, cursor) if probe else -1
        if found < 0:
            if not starts:
                # Escapes or folding changed the text: point at the scalar itself.
                return ()
            starts.append(starts[-1])
            continue
        leading = len(value_line) - len(value_line.lstrip())
        absolute = node.start_mark.index + found - leading
        line = text.count("\n", 0, absolute)
        column = absolute - (text.rfind("\n", 0, absolute) + 1)
        starts.append((line + 1, column + 1))
        cursor = found + len(probe)
    return tuple(starts)
