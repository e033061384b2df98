"""Stage 1: read rule files (YAML) into values that remember where they were written.

`load_document` returns a `Located` tree: every mapping, list and scalar keeps
its file position, and a scalar can map an offset inside its text (a DSL
expression) back to a line and column of the file.
"""

from __future__ import annotations

import dataclasses
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
    #: For a string scalar: the file offset of each character of its value (and one past).
    char_index: tuple[int, ...] = field(default=(), repr=False, compare=False)
    source_lines: tuple[str, ...] = field(default=(), repr=False, compare=False)
    line_offsets: tuple[int, ...] = field(default=(), repr=False, compare=False)

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
        if not self.char_index or not self.source_lines:
            return self.pos
        index = self.char_index[min(max(offset, 0), len(self.char_index) - 1)]
        line = 0
        while line + 1 < len(self.line_offsets) and self.line_offsets[line + 1] <= index:
            line += 1
        column = index - self.line_offsets[line]
        return Position(self.pos.file, line + 1, column + 1, self.source_lines[line])


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
    if isinstance(node, yaml.ScalarNode) and node.end_mark.line == node.start_mark.line:
        width = max(1, node.end_mark.column - node.start_mark.column)
        pos = Position(pos.file, pos.line, pos.column, pos.line_text, width)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Located] = {}
        for key_node, value_node in node.value:
            key_pos = _position(file, lines, key_node.start_mark.line, key_node.start_mark.column)
            key = key_node.value
            if key in out:
                raise RuleError([Diagnostic(f"duplicate key '{key}'", key_pos)])
            value = _convert(value_node, file, lines, text)
            out[str(key)] = dataclasses.replace(value, key_pos=key_pos)
        return Located(out, pos)
    if isinstance(node, yaml.SequenceNode):
        return Located([_convert(n, file, lines, text) for n in node.value], pos)
    assert isinstance(node, yaml.ScalarNode)
    value = _construct_scalar(node)
    if not isinstance(value, str):
        return Located(value, pos)
    return Located(value, pos, None, _char_index(node, text), lines, _line_offsets(text))


def _construct_scalar(node: yaml.ScalarNode) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node)
    finally:
        loader.dispose()


def _line_offsets(text: str) -> tuple[int, ...]:
    offsets = [0]
    offsets += [i + 1 for i, ch in enumerate(text) if ch == "\n"]
    return tuple(offsets)


def _char_index(node: yaml.ScalarNode, text: str) -> tuple[int, ...]:
    """Align each character of a string scalar's value with its place in the file.

    Works for plain, quoted and block scalars: non-space characters are matched in
    order in the raw text; folded line breaks and indentation are skipped over.
    """
    value: str = node.value
    start, end = node.start_mark.index, node.end_mark.index
    out: list[int] = []
    cursor = start
    for ch in value:
        if ch.isspace():
            out.append(cursor if cursor < end else end)
            if ch == text[cursor : cursor + 1]:
                cursor += 1
            continue
        found = text.find(ch, cursor, end)
        if found < 0:
            return ()
        out.append(found)
        cursor = found + 1
    out.append(min(cursor, end))
    return tuple(out)
