"""fluo convert: layout, buckets, order, atomic output, bad input, and the same signals after."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest
from conftest import REPO, SHARED_DATASETS, T0, spans
from typer.testing import CliRunner

from fluo.buckets import bucket_of
from fluo.cli import DEFAULT_RULES, app, bundled
from fluo.convert import MANIFEST_NAME, check_layout, convert, read_manifest
from fluo.errors import DataError
from fluo.ingest import scan_spans
from fluo.rules import load_rules

SAMPLE = REPO / "data" / "shophub" / "spans.parquet"
FIXTURES = SHARED_DATASETS / "format-fixtures"
needs_shared = pytest.mark.skipif(not FIXTURES.is_dir(), reason="../shared is absent")

#: Span and trace rules that fire on most inputs, to compare signals before and after.
RULES = """
rules:
  slow:
    when: span.duration > 1ms
  failed:
    when: span.status == ERROR
  server_root:
    when: span.kind == SERVER and span.parent_id == null
  busy_trace:
    when: span.parent_id == null and descendants.count(span.duration > 0ms) > 2
"""


def parquet_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.parquet"))


def read_back(root: Path) -> pl.DataFrame:
    """The converted table as scan_spans reads it, without the partition columns."""
    frame = scan_spans(root).collect()
    return frame.drop([c for c in ("date", "bucket") if c in frame.columns])


def as_rows(frame: pl.DataFrame) -> list[str]:
    """Rows as sorted text, so tables with map columns compare as multisets."""
    columns = sorted(frame.columns)
    return sorted(repr(row) for row in frame.select(columns).iter_rows())


def signals(rules: Any, source: Any) -> pl.DataFrame:
    found = rules.evaluate(source)
    return found.sort(found.columns[: min(len(found.columns), 6)]) if found.height else found


def write(frame: pl.DataFrame, path: Path) -> Path:
    frame.write_parquet(path)
    return path


def spread(n: int, days: int = 1, seed: int = 1) -> pl.DataFrame:
    """`n` spans in n // 3 traces at pseudo-random times over `days` days (not in order)."""
    rows = []
    for i in range(n):
        offset = (i * 7919 + seed * 104729) % (days * 86_400_000)
        rows.append(
            {
                "trace_id": f"{(i // 3) * 2654435761 % (1 << 64):032x}",
                "span_id": f"{i + 1:016x}",
                "trace_key": (i // 3) * 2654435761 % (1 << 64),
                "start_time": T0.replace(hour=0) + dt.timedelta(milliseconds=offset),
            }
        )
    return spans(*rows)


# --- round trips ---------------------------------------------------------------------------


def test_bundled_data_round_trips_with_the_same_signals(tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = convert(SAMPLE, out, buckets=4)
    original = pl.read_parquet(SAMPLE)
    assert report.spans == original.height and report.duplicates == 0 and not report.skipped
    back = read_back(out)
    assert back.schema == original.schema
    assert back.sort("span_id").equals(original.sort("span_id"))
    rules = load_rules([bundled(r) for r in DEFAULT_RULES])
    assert signals(rules, out).equals(signals(rules, SAMPLE))


@needs_shared
@pytest.mark.parametrize(
    "name", ["otlp-json", "otlp-jsonl", "jaeger-json", "zipkin-v2", "paired-otlp-jaeger"]
)
def test_fixtures_round_trip_with_the_same_signals(tmp_path: Path, name: str) -> None:
    source = FIXTURES / name
    report = convert(source, tmp_path / "out", buckets=3)
    read = scan_spans(source).collect()
    back = read_back(tmp_path / "out")
    assert report.spans == back.height == read.unique().height
    assert as_rows(back.select(read.columns)) == as_rows(read.unique())
    rules = load_rules(RULES)
    before, after = signals(rules, read.unique()), signals(rules, tmp_path / "out")
    assert before.height > 0
    assert after.equals(before)


def test_non_canonical_parquet_gets_every_canonical_column(tmp_path: Path) -> None:
    full = spans({"name": "a"}, {"name": "b"})
    source = write(
        full.select("trace_id", "span_id", "name", "start_time", "end_time"), tmp_path / "s.parquet"
    )
    convert(source, tmp_path / "out")
    back = read_back(tmp_path / "out")
    assert list(back.columns) == list(full.columns)
    assert back["trace_key"].to_list() == full["trace_key"].to_list()
    assert back["duration_ns"].to_list() == full["duration_ns"].to_list()


def test_exact_duplicates_across_files_are_dropped_and_counted(tmp_path: Path) -> None:
    table = spans({}, {}, {})
    write(table, tmp_path / "a.parquet")
    write(table.head(2), tmp_path / "b.parquet")
    report = convert(tmp_path, tmp_path.parent / f"{tmp_path.name}-out")
    assert (report.spans, report.duplicates) == (3, 2)
    assert read_manifest(tmp_path.parent / f"{tmp_path.name}-out")["duplicates_dropped"] == 2


# --- layout -------------------------------------------------------------------------------


def test_partitions_by_utc_date_of_start_and_null_start_apart(tmp_path: Path) -> None:
    table = spans(
        {"start_time": dt.datetime(2026, 3, 1, 23, 59, tzinfo=dt.UTC)},
        {"start_time": dt.datetime(2026, 3, 2, 0, 1, tzinfo=dt.UTC)},
        {"start_time": dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)},
        {},
    ).with_columns(
        pl.when(pl.int_range(pl.len()) < 3).then(pl.col(c)).alias(c)
        for c in ("start_time", "end_time", "duration_ns")
    )
    convert(write(table, tmp_path / "s.parquet"), tmp_path / "out")
    folders = sorted(p.parent.name for p in parquet_files(tmp_path / "out"))
    assert folders == ["date=2026-03-01", "date=2026-03-02", "date=__HIVE_DEFAULT_PARTITION__"]
    for path in parquet_files(tmp_path / "out"):
        day = path.parent.name.partition("=")[2]
        dates = pl.read_parquet(path)["start_time"].dt.date().cast(pl.String).to_list()
        assert set(dates) == ({None} if day.startswith("__") else {day})
    assert read_back(tmp_path / "out").height == 4


def test_partition_none_writes_files_at_the_top(tmp_path: Path) -> None:
    convert(write(spread(300, days=3), tmp_path / "s.parquet"), tmp_path / "out", partition="none")
    files = parquet_files(tmp_path / "out")
    assert [p.relative_to(tmp_path / "out").as_posix() for p in files] == ["part-00000.parquet"]
    assert pl.read_parquet(files[0])["start_time"].is_sorted()


def test_buckets_hold_whole_traces_by_bucket_of(tmp_path: Path) -> None:
    table = spread(900, days=2)
    convert(write(table, tmp_path / "s.parquet"), tmp_path / "out", buckets=5)
    seen: dict[int, int] = {}
    for path in parquet_files(tmp_path / "out"):
        number = int(path.parent.name.removeprefix("bucket="))
        assert path.parent.parent.name.startswith("date=")
        for key in pl.read_parquet(path)["trace_key"].unique().to_list():
            assert bucket_of(key, 5) == number
            assert seen.setdefault(key, number) == number  # one bucket per trace, every date
    assert len(seen) == table["trace_key"].n_unique()
    manifest = check_layout(tmp_path / "out")
    assert manifest["buckets"] == 5 and manifest["rows"] == 900


def test_files_are_sorted_within_and_across_with_row_group_statistics(tmp_path: Path) -> None:
    table = spread(5000)
    source = write(table, tmp_path / "s.parquet")
    report = convert(
        source, tmp_path / "out", memory_rows=700, rows_per_file=1000, row_group_size=250
    )
    files = parquet_files(tmp_path / "out")
    assert report.files == len(files) == 5 and report.spans == 5000
    previous = None
    for path in files:
        starts = pl.read_parquet(path)["start_time"]
        assert starts.is_sorted()
        assert previous is None or previous <= starts[0]
        previous = starts[-1]
        meta = pq.ParquetFile(path).metadata
        assert meta.num_row_groups == 4
        column = meta.schema.names.index("start_time")
        assert all(meta.row_group(i).column(column).statistics.has_min_max for i in range(4))
        assert meta.row_group(0).column(column).compression == "ZSTD"
    assert as_rows(read_back(tmp_path / "out")) == as_rows(table)


def test_a_slot_larger_than_memory_is_cut_by_time_and_stays_sorted(tmp_path: Path) -> None:
    rows = [
        {"start_time": T0 + dt.timedelta(microseconds=(i * 7919) % 3_000_000)} for i in range(3000)
    ]
    table = spans(*rows)
    table = pl.concat([table, table.head(50)])  # exact duplicates, some at cut points
    calls: list[tuple[int, int, str]] = []
    report = convert(
        write(table, tmp_path / "s.parquet"),
        tmp_path / "out",
        memory_rows=400,
        row_group_size=300,
        progress=lambda done, total, label: calls.append((done, total, label)),
    )
    assert (report.spans, report.duplicates) == (3000, 50)
    starts = pl.concat([pl.read_parquet(p)["start_time"] for p in parquet_files(tmp_path / "out")])
    assert starts.is_sorted() and starts.len() == 3000
    assert calls[-1][0] == calls[-1][1] and calls[-1][2].startswith("sorting date=")
    assert any(label.startswith("reading s.parquet") for _, _, label in calls)


def test_manifest_describes_and_verifies_the_layout(tmp_path: Path) -> None:
    out = tmp_path / "out"
    convert(write(spread(60, days=2), tmp_path / "s.parquet"), out, buckets=2)
    manifest = read_manifest(out)
    assert manifest["layout"] == "fluo-spans" and manifest["version"] == 1
    assert manifest["partition"] == "date" and manifest["buckets"] == 2
    assert sum(f["rows"] for f in manifest["files"]) == manifest["rows"] == 60
    assert manifest["schema"]["start_time"] == "Datetime(time_unit='ns', time_zone='UTC')"
    assert manifest["time_range"]["min"] <= manifest["time_range"]["max"]
    first = out / manifest["files"][0]["path"]
    first.write_bytes(first.read_bytes()[:-10])
    with pytest.raises(DataError, match="differs from the manifest"):
        check_layout(out)
    first.unlink()
    with pytest.raises(DataError, match="missing"):
        check_layout(out)


def test_a_nested_conversion_with_another_bucket_count_is_detected(tmp_path: Path) -> None:
    source = write(spread(30), tmp_path / "s.parquet")
    convert(source, tmp_path / "out", buckets=2)
    convert(source, tmp_path / "out" / "date=2026-11-21", buckets=3)
    with pytest.raises(DataError, match="nested conversion"):
        check_layout(tmp_path / "out")


# --- atomic output ------------------------------------------------------------------------


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if "fluo-" in p.name)


def test_a_failing_input_leaves_no_output(tmp_path: Path) -> None:
    good = write(spans({}), tmp_path / "a.parquet")
    bad = tmp_path / "b.json"
    bad.write_text('{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": ')
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"b\.json"):
        convert([good, bad], out)
    assert not out.exists() and leftovers(tmp_path) == []


def test_an_existing_output_is_kept_unless_overwrite(tmp_path: Path) -> None:
    source = write(spans({}, {}), tmp_path / "s.parquet")
    out = tmp_path / "out"
    convert(source, out)
    before = (out / MANIFEST_NAME).read_text()
    with pytest.raises(DataError, match="already exists"):
        convert(source, out)
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(DataError):
        convert([source, broken], out, overwrite=True)
    assert (out / MANIFEST_NAME).read_text() == before
    assert leftovers(tmp_path) == []
    report = convert(source, out, overwrite=True, buckets=2)
    assert report.spans == 2 and read_manifest(out)["buckets"] == 2
    assert leftovers(tmp_path) == []


def test_overwrite_refuses_a_directory_that_is_not_a_conversion(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="not a fluo convert output"):
        convert(write(spans({}), tmp_path / "s.parquet"), precious, overwrite=True)
    assert (precious / "notes.txt").read_text() == "keep me"


def test_converting_a_conversion_in_place_rebuckets_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    convert(write(spread(90), tmp_path / "s.parquet"), out, buckets=2)
    report = convert(out, out, buckets=3, overwrite=True)
    assert report.spans == 90 and read_manifest(out)["buckets"] == 3
    assert {p.parent.name for p in parquet_files(out)} <= {"bucket=0", "bucket=1", "bucket=2"}


# --- bad input ----------------------------------------------------------------------------


def test_end_before_start_and_negative_duration_fail_with_file_and_span(tmp_path: Path) -> None:
    table = spans({}, {"duration_ns": -5}, {})
    table = table.with_columns(
        pl.when(pl.int_range(pl.len()) == 2)
        .then(pl.col("start_time") - dt.timedelta(seconds=1))
        .otherwise(pl.col("end_time"))
        .alias("end_time")
    )
    source = write(table, tmp_path / "bad.parquet")
    with pytest.raises(DataError, match=r"bad\.parquet: span 2: negative duration"):
        convert(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    report = convert(source, tmp_path / "out", on_error="skip")
    assert report.spans == 1 and report.skipped_records == 2
    reasons = {(s.reason, s.spans, s.first) for s in report.skipped}
    assert reasons == {("negative duration", 1, 2), ("end_time is before start_time", 1, 3)}


def test_otlp_end_before_start_is_reported_by_span(tmp_path: Path) -> None:
    span = {"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "x"}
    times = {"startTimeUnixNano": "2000", "endTimeUnixNano": "1000"}
    doc = {
        "resourceSpans": [
            {"scopeSpans": [{"spans": [span, {**span, "spanId": "ef" * 8, **times}]}]}
        ]
    }
    source = tmp_path / "t.json"
    source.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"t\.json:1: span (ef)+ of trace (ab)+: end time 1000 is "):
        convert(source, tmp_path / "out")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.json", b"", "empty file"),
        ("cut.json.gz", gzip.compress(b'{"resourceSpans": []}' * 50)[:40], "gzip"),
        ("notes.txt", b"hello", "cannot tell the format"),
    ],
)
def test_unreadable_files_fail_or_are_skipped(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    good = write(spans({}, {}), tmp_path / "good.parquet")
    bad = tmp_path / name
    bad.write_bytes(content)
    with pytest.raises(DataError, match=message) as caught:
        convert([good, bad], tmp_path / "out")
    assert name in str(caught.value)
    report = convert([good, bad], tmp_path / "out", on_error="skip")
    assert report.spans == 2 and report.skipped_files == 1
    assert report.skipped[0].path.endswith(name) and message in report.skipped[0].reason


def test_one_bad_file_in_a_folder_does_not_hide_the_others(tmp_path: Path) -> None:
    folder = tmp_path / "in" / "region=eu"
    folder.mkdir(parents=True)
    write(spans({}, {}), folder / "a.parquet")
    (folder / "b.json").write_bytes(b"")
    with pytest.raises(DataError, match="empty file"):
        convert(tmp_path / "in", tmp_path / "out")
    report = convert(tmp_path / "in", tmp_path / "out", on_error="skip")
    assert report.spans == 2 and report.skipped_files == 1
    assert report.skipped[0].path.endswith("b.json")
    assert read_back(tmp_path / "out")["region"].to_list() == ["eu", "eu"]


def test_wrong_column_types_fail_naming_the_column(tmp_path: Path) -> None:
    table = spans({}).with_columns(pl.col("duration_ns").cast(pl.String))
    with pytest.raises(DataError, match="duration_ns"):
        convert(write(table, tmp_path / "s.parquet"), tmp_path / "out")


NEZHA_HEADER = (
    "TraceID,SpanID,ParentID,PodName,OperationName,StartTimeUnixNano,EndTimeUnixNano,Duration"
)


def test_malformed_csv_records_are_skipped_by_the_reader_and_counted(tmp_path: Path) -> None:
    row = "{t},{s:016x},root,ts-a-service-6f6cfc45b-h5m2n,op,{start},1674981769015316530,1"
    rows = [row.format(t="ab" * 16, s=i + 1, start=1674981768697000000 + i) for i in range(3)]
    rows[1] = rows[1].replace("1674981768697000001", "soon")
    source = tmp_path / "t.csv"
    source.write_text("\n".join([NEZHA_HEADER, *rows]) + "\n")
    with pytest.raises(DataError, match=r"t\.csv:3"):
        convert(source, tmp_path / "out")
    report = convert(source, tmp_path / "out", on_error="skip")
    assert report.spans == 2 and report.skipped_records == 1 and report.skipped_files == 0
    assert "t.csv:3" in report.skipped[0].reason


def test_a_malformed_json_record_is_skipped_alone(tmp_path: Path) -> None:
    """The JSON readers skip the malformed record (with its line), not the whole file."""
    good = {"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "ok", "startTimeUnixNano": "1"}
    bad = {"traceId": "ab" * 16, "name": "no span id"}
    lines = [{"resourceSpans": [{"scopeSpans": [{"spans": [s]}]}]} for s in (good, bad)]
    source = tmp_path / "t.jsonl"
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    with pytest.raises(DataError, match="spanId is missing"):
        convert(source, tmp_path / "out")
    report = convert(source, tmp_path / "out", on_error="skip")
    assert report.spans == 1 and report.skipped_files == 0 and report.skipped_records == 1
    assert "t.jsonl:2: span" in report.skipped[0].reason
    assert "spanId is missing" in report.skipped[0].reason


def test_bad_options_are_data_errors(tmp_path: Path) -> None:
    source = write(spans({}), tmp_path / "s.parquet")
    for options, flag in (
        ({"buckets": 0}, "--buckets"),
        ({"on_error": "ignore"}, "--on-error"),
        ({"partition": "hour"}, "--partition"),
        ({"format": "nope"}, "unknown span format"),
    ):
        with pytest.raises(DataError, match=flag):
            convert(source, tmp_path / "out", **options)
    with pytest.raises(DataError, match="parent directory"):
        convert(source, tmp_path / "no" / "out")


# --- command line -------------------------------------------------------------------------


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["convert", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stderr


def test_cli_converts_quietly_and_exits_0(tmp_path: Path) -> None:
    code, stderr = invoke(str(SAMPLE), "-o", str(tmp_path / "out"), "--buckets", "2")
    assert code == 0
    assert stderr.strip().splitlines() == [stderr.strip().splitlines()[-1]] and stderr.startswith(
        f"wrote {pl.read_parquet(SAMPLE).height} spans"
    )
    assert read_manifest(tmp_path / "out")["buckets"] == 2


def test_cli_bad_input_exits_2_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "empty.json").write_bytes(b"")
    code, stderr = invoke(str(tmp_path / "empty.json"), "-o", str(tmp_path / "out"))
    assert code == 2 and "empty file" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "out").exists()
    code, stderr = invoke(str(SAMPLE), "-o", str(tmp_path / "o2"), "--buckets", "0")
    assert code == 2 and "--buckets" in stderr
    (tmp_path / "o3").mkdir()
    (tmp_path / "o3" / MANIFEST_NAME).write_text("{}")
    code, stderr = invoke(str(SAMPLE), "-o", str(tmp_path / "o3"))
    assert code == 2 and "--overwrite" in stderr


def test_cli_skip_reports_what_was_left_out(tmp_path: Path) -> None:
    shutil.copy(SAMPLE, tmp_path / "a.parquet")
    (tmp_path / "b.json").write_text("{")
    code, stderr = invoke(str(tmp_path), "-o", str(tmp_path.parent / "out"), "--on-error", "skip")
    assert code == 0
    assert "warning: skipped" in stderr and "b.json" in stderr and "1 files skipped" in stderr


# --- real data (slow) ----------------------------------------------------------------------

NEZHA = SHARED_DATASETS / "nezha-microservice-rca"


@pytest.mark.slow
@pytest.mark.skipif(not NEZHA.is_dir(), reason="../shared is absent")
@pytest.mark.parametrize("day", ["trainticket/2023-01-29", "onlineboutique/2022-08-22"])
def test_nezha_days_convert_completely(tmp_path: Path, day: str) -> None:
    source = NEZHA / day / "trace"
    report = convert(source, tmp_path / "out", buckets=4)
    read = scan_spans(source).collect()
    assert report.spans == read.unique().height and not report.skipped
    assert report.spans + report.duplicates >= read.height
    check_layout(tmp_path / "out")
    assert sum(os.path.getsize(p) for p in parquet_files(tmp_path / "out")) > 0
