"""The runner: chunked streaming gives the same signals as one pass; outputs are atomic."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from conftest import REPO

import fluo
from fluo.errors import DataError
from fluo.output import SignalWriter
from fluo.run import stream

SAMPLE = REPO / "data" / "shophub" / "spans.parquet"
SPAN_RULES = [REPO / "data" / "rules" / "seed.yaml", REPO / "data" / "rules" / "starter.yaml"]


def test_streaming_in_chunks_gives_the_same_signals_as_one_pass() -> None:
    rules = fluo.load_rules(SPAN_RULES)
    whole = rules.evaluate(SAMPLE)
    chunks: list[pl.DataFrame] = []
    result = stream(rules, SAMPLE, chunks.append, chunk_rows=7_000)
    assert len(chunks) == 15  # 99,854 rows in chunks of 7,000
    assert (
        pl.concat(chunks)
        .sort(["time", "rule", "span_id"])
        .equals(whole.sort(["time", "rule", "span_id"]))
    )
    assert sum(result.counts.values()) == whole.height


def test_trace_rules_are_evaluated_in_one_pass() -> None:
    rules = fluo.load_rules(REPO / "data" / "rules" / "traces.yaml")
    chunks: list[pl.DataFrame] = []
    stream(rules, SAMPLE, chunks.append, chunk_rows=7_000)
    assert len(chunks) == 1


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_a_failed_run_leaves_no_output(tmp_path: Path, fmt: str) -> None:
    target = tmp_path / f"signals.{fmt}"
    with pytest.raises(RuntimeError), SignalWriter(target, fmt) as write:
        write(fluo.load_rules(SPAN_RULES).evaluate(SAMPLE))
        raise RuntimeError("the run failed half way")
    assert list(tmp_path.iterdir()) == []


def test_empty_results_still_write_a_file_with_a_schema(tmp_path: Path) -> None:
    target = tmp_path / "none.parquet"
    with SignalWriter(target, "parquet"):
        pass
    assert pl.read_parquet(target).columns[:3] == ["rule", "severity", "trace_id"]


def test_the_table_format_is_not_a_file_format(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="choose jsonl, csv or parquet"):
        SignalWriter(tmp_path / "x.txt", "table")
