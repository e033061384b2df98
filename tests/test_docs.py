"""Every rule example in the README and docs/ loads and checks: the docs cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import fluo

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def examples() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for i, block in enumerate(re.findall(r"```yaml\n(.*?)```", doc.read_text(), re.S)):
            if block.startswith("    "):  # a fragment of one rule
                block = "rules:\n  example:\n" + block
            elif block.startswith("  "):  # a fragment of the `rules:` mapping
                block = "rules:\n" + block
            if "rules:" not in block:
                continue
            found.append((f"{doc.name}#{i}", block))
    return found


@pytest.mark.parametrize(("where", "text"), examples(), ids=[w for w, _ in examples()])
def test_doc_example_loads(where: str, text: str) -> None:
    assert len(fluo.load_rules(text)) >= 1
