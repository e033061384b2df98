"""The runner: chunked streaming gives the same signals as one pass; outputs are atomic."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from conftest import REPO
from hypothesis import given, settings
from hypothesis import strategies as st

import fluo
from fluo.compile import SIGNAL_ORDER, sort_signals
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


@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.integers(0, 4)),
            st.sampled_from(["a", "b", "c"]),
            st.one_of(st.none(), st.sampled_from(["t1", "t2", "t3"])),
            st.one_of(st.none(), st.sampled_from(["s1", "s2"])),
        ),
        max_size=40,
    )
)
@settings(max_examples=200, deadline=None)
def test_sort_signals_is_the_stable_four_key_sort(rows: list[tuple]) -> None:
    """Sorting by time, then the tied rows by all four keys, is the plain stable sort."""
    times = [
        None if t is None else dt.datetime(2026, 1, 1, 0, 0, t, tzinfo=dt.UTC) for t, *_ in rows
    ]
    frame = pl.DataFrame(
        {
            "time": pl.Series(times, dtype=pl.Datetime("ns", "UTC")),
            "rule": [r for _, r, _, _ in rows],
            "trace_id": [t for _, _, t, _ in rows],
            "span_id": [s for *_, s in rows],
            "seq": list(range(len(rows))),  # tells equal keys apart: checks stability
        },
        schema_overrides={"rule": pl.String, "trace_id": pl.String, "span_id": pl.String},
    )
    expected = frame.sort(list(SIGNAL_ORDER), nulls_last=True, maintain_order=True)
    assert sort_signals(frame).equals(expected)
