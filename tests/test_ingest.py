"""Tests for fluo.ingest: every input format, the normalisation rules and every bad input."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.ipc as pa_ipc
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from fluo.errors import DataError
from fluo.ingest import otlp_json, scan_spans
from fluo.ingest.normalize import any_value_text, format_double
from fluo.ingest.otlp_json import read_exact, read_fast
from fluo.schema import CANONICAL_COLUMNS

FIXTURES = Path(__file__).parents[2] / "shared" / "datasets" / "format-fixtures"

T0 = 1_700_000_000_000_000_000
TRACE = "5b8efff798038103d269b633813fc60c"


# --- helpers ------------------------------------------------------------------------------


def span(**fields: Any) -> dict[str, Any]:
    """An OTLP JSON span with sensible defaults."""
    base: dict[str, Any] = {
        "traceId": TRACE,
        "spanId": "eee19b7ec3c1b174",
        "name": "GET /",
        "kind": 2,
        "startTimeUnixNano": str(T0),
        "endTimeUnixNano": str(T0 + 1500),
        "status": {},
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def kv(key: str, **value: Any) -> dict[str, Any]:
    return {"key": key, "value": value}


def traces(*spans: dict[str, Any], service: str | None = "checkout", scope: Any = None) -> Any:
    """One TracesData with one resource and one scope holding `spans`."""
    attributes = [kv("service.name", stringValue=service)] if service else []
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": attributes},
                "scopeSpans": [
                    {"scope": scope or {"name": "lib", "version": "1.2"}, "spans": list(spans)}
                ],
            }
        ]
    }


def write_json(path: Path, *docs: Any, lines: bool = False) -> Path:
    if lines:
        path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    else:
        (doc,) = docs
        path.write_text(json.dumps(doc, indent=2))
    return path


def rows(frame: pl.LazyFrame | pl.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts, times as integer nanoseconds, maps as dicts."""
    df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
    df = df.with_columns(pl.col(pl.Datetime).cast(pl.Int64))
    out = df.to_dicts()
    for row in out:
        for name in ("span_attributes", "resource_attributes"):
            if isinstance(row.get(name), list):
                row[name] = {e["key"]: e["value"] for e in row[name]}
    return out


def canonical_frame(n: int = 3, **extra: Any) -> pl.DataFrame:
    """A small canonical table (optionally with extra columns)."""
    data: dict[str, Any] = {
        "trace_id": [f"{i:032x}" for i in range(n)],
        "span_id": [f"{i + 100:016x}" for i in range(n)],
        "name": [f"op{i}" for i in range(n)],
        "duration_ns": list(range(n)),
        **extra,
    }
    return pl.DataFrame(data)


def check_error(exc: pytest.ExceptionInfo[DataError], *needles: str) -> str:
    text = str(exc.value)
    assert "\n" not in text
    assert "Traceback" not in text
    for needle in needles:
        assert needle in text, text
    return text


# --- OTLP JSON: the canonical rows ----------------------------------------------------------


def test_otlp_document_gives_exact_canonical_rows(tmp_path: Path) -> None:
    doc = traces(
        span(
            traceId="5B8EFFF798038103D269B633813FC60C",
            spanId="EEE19B7EC3C1B174",
            parentSpanId="EEE19B7EC3C1B173",
            attributes=[
                kv("http.method", stringValue="GET"),
                kv("http.status_code", intValue="200"),
            ],
            status={"code": 2, "message": "boom"},
        )
    )
    lf = scan_spans(write_json(tmp_path / "trace.json", doc))
    assert isinstance(lf, pl.LazyFrame)
    df = lf.collect()
    assert df.schema == pl.Schema(CANONICAL_COLUMNS)
    assert rows(df) == [
        {
            "trace_id": TRACE,
            "span_id": "eee19b7ec3c1b174",
            "parent_span_id": "eee19b7ec3c1b173",
            "trace_key": int(TRACE[-16:], 16),
            "name": "GET /",
            "kind": "SERVER",
            "service_name": "checkout",
            "start_time": T0,
            "end_time": T0 + 1500,
            "duration_ns": 1500,
            "status_code": "ERROR",
            "status_message": "boom",
            "scope_name": "lib",
            "scope_version": "1.2",
            "span_attributes": {"http.method": "GET", "http.status_code": "200"},
            "resource_attributes": {"service.name": "checkout"},
        }
    ]


def test_jsonl_one_traces_data_per_line(tmp_path: Path) -> None:
    docs = [traces(span(spanId=f"{i:016x}", name=f"s{i}"), service=f"svc{i}") for i in (1, 2, 3)]
    path = write_json(tmp_path / "data-2022-09-14T05-02-14.173.json", *docs, lines=True)
    df = scan_spans(path).collect()
    assert df["span_id"].to_list() == [f"{i:016x}" for i in (1, 2, 3)]
    assert df["service_name"].to_list() == ["svc1", "svc2", "svc3"]
    assert df["name"].to_list() == ["s1", "s2", "s3"]


@pytest.mark.parametrize("name", ["spans.jsonl.gz", "spans.json", "spans.bin"])
def test_gzipped_json_lines_detected_by_suffix_or_magic(tmp_path: Path, name: str) -> None:
    docs = [traces(span(spanId=f"{i:016x}")) for i in range(2)]
    body = "".join(json.dumps(d) + "\n" for d in docs).encode()
    path = tmp_path / name
    path.write_bytes(gzip.compress(body))
    assert scan_spans(path).collect()["span_id"].to_list() == [f"{i:016x}" for i in range(2)]


def test_old_instrumentation_library_names(tmp_path: Path) -> None:
    doc = {
        "resourceSpans": [
            {
                "resource": {"attributes": [kv("service.name", stringValue="legacy")]},
                "instrumentationLibrarySpans": [
                    {
                        "instrumentationLibrary": {"name": "old.lib", "version": "0.9"},
                        "spans": [span()],
                    }
                ],
            }
        ]
    }
    (row,) = rows(scan_spans(write_json(tmp_path / "old.json", doc)))
    assert (row["scope_name"], row["scope_version"], row["service_name"]) == (
        "old.lib",
        "0.9",
        "legacy",
    )


def test_ids_are_lowercased_padded_and_base64_decoded(tmp_path: Path) -> None:
    doc = traces(
        span(traceId="ABC", spanId="1F", parentSpanId=""),
        span(traceId="6Lbf+fjUSyjxsivDvS9naA==", spanId="kAf+pIRVStc=", parentSpanId="0" * 16),
        span(traceId="not-hex-at-all", spanId="A", parentSpanId="B"),
    )
    df = scan_spans(write_json(tmp_path / "ids.json", doc)).collect()
    assert df["trace_id"].to_list() == [
        "0" * 29 + "abc",
        "e8b6dff9f8d44b28f1b22bc3bd2f6768",
        "not-hex-at-all",
    ]
    assert df["span_id"].to_list() == ["0" * 14 + "1f", "9007fea484554ad7", "0" * 15 + "a"]
    assert df["parent_span_id"].to_list() == [None, None, "0" * 15 + "b"]
    not_hex = hashlib.blake2b(b"not-hex-at-all", digest_size=8).digest()
    assert df["trace_key"].to_list() == [
        int("abc", 16),  # the last 16 digits: padded 64-bit ids keep distinct keys
        int("f1b22bc3bd2f6768", 16),
        int.from_bytes(not_hex, "big"),  # non-hex ids: a stable hash, never null
    ]


def test_enum_spellings_and_times_as_strings_or_numbers(tmp_path: Path) -> None:
    doc = traces(
        span(kind="SPAN_KIND_CLIENT", status={"code": "STATUS_CODE_ERROR"}),
        span(kind=5, status={"code": 1}, startTimeUnixNano=T0, endTimeUnixNano=T0 + 7),
        span(kind=None, status=None, startTimeUnixNano=None),
        span(kind=42, status={"code": 9, "message": ""}),
    )
    df = scan_spans(write_json(tmp_path / "enums.json", doc)).collect()
    assert df["kind"].to_list() == ["CLIENT", "CONSUMER", "UNSPECIFIED", "UNSPECIFIED"]
    assert df["status_code"].to_list() == ["ERROR", "OK", "UNSET", "UNSET"]
    assert df["status_message"].to_list() == [None, None, None, None]
    assert df["duration_ns"].to_list() == [1500, 7, None, 1500]
    assert df["start_time"].dtype == pl.Datetime("ns", "UTC")
    assert df["start_time"][1] == df["start_time"][0]


def test_every_anyvalue_type_as_text(tmp_path: Path) -> None:
    attributes = [
        kv("s", stringValue="x y"),
        kv("i", intValue="-9007199254740993"),
        kv("i_number", intValue=42),
        kv("d", doubleValue=0.25),
        kv("d_whole", doubleValue=1.0),
        kv("d_big", doubleValue=1e21),
        kv("d_small", doubleValue=1.5e-7),
        kv("d_nan", doubleValue="NaN"),
        kv("b", boolValue=True),
        kv("b_false", boolValue=False),
        kv("bytes", bytesValue="AQID"),
        kv(
            "arr",
            arrayValue={"values": [{"stringValue": "a"}, {"intValue": "1"}, {"boolValue": False}]},
        ),
        kv(
            "map",
            kvlistValue={
                "values": [
                    kv("z", doubleValue=2.5),
                    kv("a", arrayValue={"values": [{"stringValue": "q"}]}),
                ]
            },
        ),
        kv("empty_arr", arrayValue={}),
        {"key": "empty"},
    ]
    doc = traces(span(attributes=attributes))
    (row,) = rows(scan_spans(write_json(tmp_path / "values.json", doc)))
    assert row["span_attributes"] == {
        "s": "x y",
        "i": "-9007199254740993",
        "i_number": "42",
        "d": "0.25",
        "d_whole": "1",
        "d_big": "1e+21",
        "d_small": "1.5e-7",
        "d_nan": "NaN",
        "b": "true",
        "b_false": "false",
        "bytes": "AQID",
        "arr": '["a",1,false]',
        "map": '{"a":["q"],"z":2.5}',
        "empty_arr": "[]",
        "empty": "",
    }


def test_attribute_map_lookup_works(tmp_path: Path) -> None:
    doc = traces(span(attributes=[kv("http.route", stringValue="/a")]), span(attributes=[]))
    df = scan_spans(write_json(tmp_path / "m.json", doc)).select(
        pl.col("span_attributes").map.get("http.route")
    )
    assert df.collect().to_series().to_list() == ["/a", None]


def test_resource_without_attributes_has_null_service(tmp_path: Path) -> None:
    (row,) = rows(scan_spans(write_json(tmp_path / "r.json", traces(span(), service=None))))
    assert row["service_name"] is None
    assert row["resource_attributes"] == {}


def test_several_documents_and_empty_spans(tmp_path: Path) -> None:
    path = tmp_path / "two.json"
    path.write_text(
        json.dumps(traces(span()), indent=1) + "\n" + json.dumps({"resourceSpans": []}, indent=1)
    )
    assert scan_spans(path).collect().height == 1
    empty = write_json(tmp_path / "none.json", {"resourceSpans": []})
    df = scan_spans(empty).collect()
    assert df.height == 0 and df.schema == pl.Schema(CANONICAL_COLUMNS)


def test_jaeger_v3_result_wrapper(tmp_path: Path) -> None:
    path = write_json(tmp_path / "api.json", {"result": traces(span())})
    assert scan_spans(path).collect().height == 1


def _equivalence_docs() -> list[Any]:
    many = [
        span(
            spanId=f"{i:016x}",
            parentSpanId=f"{i + 1:016x}" if i % 2 else "",
            kind=i % 6,
            status={"code": i % 3, "message": "m" if i % 4 == 0 else ""},
            attributes=[
                kv("n", intValue=str(i)),
                kv("d", doubleValue=i / 7),
                kv("big", doubleValue=10.0 ** (i % 30)),
                kv("arr", arrayValue={"values": [{"stringValue": str(i)}, {"doubleValue": 1.0}]}),
                kv(
                    "kv",
                    kvlistValue={
                        "values": [kv("b", boolValue=i % 2 == 0), kv("a", stringValue="x")]
                    },
                ),
            ]
            if i % 5
            else None,
        )
        for i in range(40)
    ]
    return [
        traces(*many),
        traces(span(), span(spanId="0000000000000002", attributes=[kv("e", doubleValue=-0.0)])),
        {
            "resourceSpans": [
                {"resource": {}, "scopeSpans": [{"scope": {}, "spans": [span()]}, {"spans": []}]},
                {"scopeSpans": []},
            ]
        },
    ]


@pytest.mark.parametrize("index", range(3))
def test_arrow_fast_path_equals_exact_reader(index: int) -> None:
    doc = _equivalence_docs()[index]
    for data in (json.dumps(doc).encode() + b"\n", json.dumps(doc, indent=2).encode()):
        fast = read_fast(data)
        assert fast is not None
        assert_frame_equal(fast, read_exact(data, "x.json"))


def test_fast_path_with_lines_longer_than_a_block(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(otlp_json, "_BLOCK", 64)
    data = "".join(json.dumps(traces(span(spanId=f"{i:016x}"))) + "\n" for i in range(3)).encode()
    fast = read_fast(data)
    assert fast is not None and fast.height == 3


def test_fast_path_declines_unusual_files() -> None:
    doc = traces(span(kind="SPAN_KIND_SERVER"))
    assert read_fast(json.dumps(doc).encode()) is None
    nested = traces(span(attributes=[kv("a", arrayValue={"values": [{"arrayValue": {}}]})]))
    assert read_fast(json.dumps(nested).encode()) is None
    exact = read_exact(json.dumps(nested).encode(), "x")
    assert exact["span_attributes"].map.get("a").to_list() == ["[[]]"]


def test_format_double_matches_collector_form() -> None:
    cases = [
        (0.0, "0"),
        (-0.0, "-0"),
        (1.0, "1"),
        (-2.5, "-2.5"),
        (0.1 + 0.2, "0.30000000000000004"),
        (1e-6, "0.000001"),
        (1e-7, "1e-7"),
        (1e16, "10000000000000000"),
        (123456789012345678.0, "123456789012345680"),
        (1e21, "1e+21"),
        (float("inf"), "Infinity"),
    ]
    for value, text in cases:
        assert format_double(value) == text
    assert any_value_text({"doubleValue": "Infinity"}) == "Infinity"
    assert any_value_text({}) == ""


# --- Parquet and IPC ----------------------------------------------------------------------


def test_parquet_file_keeps_extra_and_promoted_columns(tmp_path: Path) -> None:
    frame = canonical_frame(**{"attr.http.route": ["/a", "/b", "/c"], "resource.env": ["p"] * 3})
    frame.write_parquet(tmp_path / "spans.parquet")
    df = scan_spans(tmp_path / "spans.parquet").collect()
    assert_frame_equal(df, frame)


def test_parquet_stays_lazy_and_predicate_reaches_the_scan(tmp_path: Path) -> None:
    for i in range(2):
        canonical_frame().write_parquet(tmp_path / f"part-{i}.parquet")
    lf = scan_spans(tmp_path)
    plan = lf.filter(pl.col("name") == "x").explain()
    assert "Parquet SCAN" in plan
    assert plan.count("SCAN") == 1
    selection = plan[plan.index("Parquet SCAN") :]
    assert 'SELECTION: [(col("name")) == ("x")]' in selection or 'col("name") == "x"' in selection
    projected = lf.select("name").explain()
    assert "PROJECT 1/" in projected
    assert lf.filter(pl.col("name") == "op1").collect().height == 2


def test_parquet_directory_with_hive_partitions(tmp_path: Path) -> None:
    root = tmp_path / "x=9" / "spans"  # a key=value folder above the root is not a partition
    for day in ("2026-01-01", "2026-01-02"):
        (root / f"date={day}" / "region=eu").mkdir(parents=True)
        canonical_frame(2).write_parquet(root / f"date={day}" / "region=eu" / "part-0.parquet")
    canonical_frame(1).write_parquet(root / "loose.parquet")  # not under any partition
    (root / "_SUCCESS").write_text("")
    (root / "README.md").write_text("not spans")
    lf = scan_spans(root)
    schema = lf.collect_schema()
    assert schema["date"] == pl.Date and schema["region"] == pl.String
    assert "x" not in schema
    df = lf.collect()
    assert df.height == 5
    counts = dict(df.group_by("date").len().iter_rows())
    assert {str(k): v for k, v in counts.items()} == {"2026-01-01": 2, "2026-01-02": 2, "None": 1}
    only = lf.filter(pl.col("date") == pl.date(2026, 1, 2)).collect()
    assert only.height == 2 and set(only["region"]) == {"eu"}


def test_hive_key_that_is_also_a_file_column_keeps_the_file_value(tmp_path: Path) -> None:
    (tmp_path / "name=folder").mkdir()
    canonical_frame(1).write_parquet(tmp_path / "name=folder" / "a.parquet")
    assert scan_spans(tmp_path).collect()["name"].to_list() == ["op0"]


def test_hive_partitions_on_json_files(tmp_path: Path) -> None:
    for day in ("2026-01-01", "2026-01-02"):
        (tmp_path / f"date={day}").mkdir()
        write_json(tmp_path / f"date={day}" / "spans.jsonl", traces(span()), lines=True)
    df = scan_spans(tmp_path).collect()
    assert df["date"].cast(pl.String).to_list() == ["2026-01-01", "2026-01-02"]
    assert df.select(list(CANONICAL_COLUMNS)).schema == pl.Schema(CANONICAL_COLUMNS)


def test_globs_plain_and_recursive(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    canonical_frame(1).write_parquet(tmp_path / "a" / "one.parquet")
    canonical_frame(2).write_parquet(tmp_path / "a" / "b" / "two.parquet")
    assert scan_spans(str(tmp_path / "a" / "*.parquet")).collect().height == 1
    assert scan_spans(str(tmp_path / "**" / "*.parquet")).collect().height == 3
    # the same file reached twice is read once
    assert scan_spans([tmp_path / "a", str(tmp_path / "a" / "*.parquet")]).collect().height == 3


def test_parquet_files_with_different_optional_columns_are_one_scan(tmp_path: Path) -> None:
    canonical_frame(2).write_parquet(tmp_path / "a.parquet")
    canonical_frame(1, kind=["SERVER"]).drop("name").write_parquet(tmp_path / "b.parquet")
    lf = scan_spans([tmp_path / "a.parquet", tmp_path / "b.parquet"])
    assert lf.explain().count("SCAN") == 1
    df = lf.collect()
    assert df["kind"].to_list() == [None, None, "SERVER"]
    assert df["name"].to_list() == ["op0", "op1", None]


def test_compatible_types_are_cast_to_canonical(tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {
            "trace_id": pl.Series([TRACE], dtype=pl.Categorical),
            "span_id": ["00000000000000aa"],
            "kind": pl.Series(["SERVER"], dtype=pl.Enum(["SERVER", "CLIENT"])),
            "start_time": pl.Series([T0 // 1000], dtype=pl.Int64).cast(pl.Datetime("us")),
            "duration_ns": pl.Series([5], dtype=pl.Int32),
            "trace_key": pl.Series([-1], dtype=pl.Int64),
            "span_attributes": [[{"key": "k", "value": "v"}]],
        }
    )
    frame.write_parquet(tmp_path / "typed.parquet")
    df = scan_spans(tmp_path / "typed.parquet").collect()
    for name, dtype in df.schema.items():
        assert dtype == CANONICAL_COLUMNS[name], name
    assert df["start_time"].cast(pl.Int64).to_list() == [T0]
    assert df["trace_key"].to_list() == [2**64 - 1]
    assert df["span_attributes"].map.get("k").to_list() == ["v"]


@pytest.mark.parametrize("suffix", [".arrow", ".ipc", ".feather"])
def test_ipc_files(tmp_path: Path, suffix: str) -> None:
    frame = canonical_frame()
    frame.write_ipc(tmp_path / f"spans{suffix}")
    lf = scan_spans(tmp_path / f"spans{suffix}")
    assert "IPC SCAN" in lf.explain() or "SCAN" in lf.explain()
    assert_frame_equal(lf.collect(), frame)


def test_ipc_stream_file(tmp_path: Path) -> None:
    frame = canonical_frame()
    path = tmp_path / "spans.arrows"
    with pa.OSFile(str(path), "wb") as sink, pa_ipc.new_stream(sink, frame.to_arrow().schema) as w:
        w.write_table(frame.to_arrow())
    assert_frame_equal(scan_spans(path).collect(), frame)


def test_forced_format_and_content_sniffing(tmp_path: Path) -> None:
    canonical_frame().write_parquet(tmp_path / "spans.dat")
    assert scan_spans(tmp_path / "spans.dat").collect().height == 3  # PAR1 magic
    assert scan_spans(tmp_path / "spans.dat", format="parquet").collect().height == 3
    write_json(tmp_path / "export.txt", traces(span()))
    assert scan_spans(tmp_path / "export.txt").collect().height == 1
    assert scan_spans(tmp_path / "export.txt", format="otlp-json").collect().height == 1
    with pytest.raises(DataError) as exc:
        scan_spans(tmp_path / "export.txt", format="parquet")
    check_error(exc, "export.txt", "Parquet")
    with pytest.raises(DataError) as exc:
        scan_spans(tmp_path / "spans.dat", format="csv")
    check_error(exc, "csv")


def test_byte_order_mark_and_ndjson_suffix(tmp_path: Path) -> None:
    body = json.dumps(traces(span())) + "\n"
    (tmp_path / "bom.ndjson").write_bytes(b"\xef\xbb\xbf" + body.encode())
    (tmp_path / "bom_no_suffix").write_bytes(b"\xef\xbb\xbf" + body.encode())
    assert scan_spans(tmp_path / "bom.ndjson").collect().height == 1
    assert scan_spans(tmp_path / "bom_no_suffix").collect().height == 1


def test_mixed_parquet_and_otlp_json(tmp_path: Path) -> None:
    canonical_frame(2, **{"attr.x": ["a", "b"]}).write_parquet(tmp_path / "a.parquet")
    write_json(tmp_path / "b.json", traces(span()))
    lf = scan_spans([tmp_path / "a.parquet", tmp_path / "b.json"])
    df = lf.collect()
    assert df.height == 3
    for name, dtype in CANONICAL_COLUMNS.items():
        assert df.schema[name] == dtype, name
    assert df["attr.x"].to_list() == ["a", "b", None]
    assert df["service_name"].to_list() == [None, None, "checkout"]


# --- bad inputs ---------------------------------------------------------------------------


def test_missing_id_columns(tmp_path: Path) -> None:
    pl.DataFrame({"TraceId": ["a"], "SpanName": ["x"]}).write_parquet(tmp_path / "ch.parquet")
    with pytest.raises(DataError) as exc:
        scan_spans(tmp_path / "ch.parquet")
    check_error(exc, "ch.parquet", "trace_id", "TraceId", "SpanName")


def test_incompatible_canonical_column_type(tmp_path: Path) -> None:
    canonical_frame().with_columns(pl.col("duration_ns").cast(pl.String)).write_parquet(
        tmp_path / "bad.parquet"
    )
    with pytest.raises(DataError) as exc:
        scan_spans(tmp_path / "bad.parquet")
    check_error(exc, "bad.parquet", "duration_ns", "String", "Int64")


def test_incompatible_type_in_one_ipc_file(tmp_path: Path) -> None:
    canonical_frame().with_columns(start_time=pl.lit(5)).write_ipc(tmp_path / "t.arrow")
    with pytest.raises(DataError) as exc:
        scan_spans(tmp_path / "t.arrow")
    check_error(exc, "t.arrow", "start_time", "Datetime")


@pytest.mark.parametrize("kind", ["random", "truncated", "empty"])
def test_corrupt_parquet(tmp_path: Path, kind: str) -> None:
    good = tmp_path / "good.parquet"
    canonical_frame(50).write_parquet(good)
    bad = tmp_path / "bad.parquet"
    if kind == "random":
        bad.write_bytes(os.urandom(300))
    elif kind == "truncated":
        bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    else:
        bad.write_bytes(b"")
    with pytest.raises(DataError) as exc:
        scan_spans([good, bad])
    check_error(exc, "bad.parquet")


def test_truncated_parquet_in_a_directory(tmp_path: Path) -> None:
    canonical_frame().write_parquet(tmp_path / "a.parquet")
    (tmp_path / "b.parquet").write_bytes((tmp_path / "a.parquet").read_bytes()[:-10])
    with pytest.raises(DataError) as exc:
        scan_spans(tmp_path)
    check_error(exc, "b.parquet")


def test_corrupt_ipc(tmp_path: Path) -> None:
    (tmp_path / "x.arrow").write_bytes(b"ARROW1\x00\x00garbage")
    with pytest.raises(DataError) as exc:
        scan_spans(tmp_path / "x.arrow")
    check_error(exc, "x.arrow")


def test_missing_inputs(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        scan_spans(tmp_path / "nope.parquet")
    check_error(exc, "nope.parquet", "no such file")
    with pytest.raises(DataError) as exc:
        scan_spans(str(tmp_path / "*.parquet"))
    check_error(exc, "*.parquet", "no span files match")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".hidden.parquet").write_bytes(b"x")
    with pytest.raises(DataError) as exc:
        scan_spans(tmp_path / "empty")
    check_error(exc, "empty", "no span files")
    with pytest.raises(DataError) as exc:
        scan_spans([])
    check_error(exc, "no span inputs")


@pytest.mark.parametrize("name", ["e.json", "e.jsonl", "e.parquet", "e.arrow"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(DataError) as exc:
        scan_spans(tmp_path / name)
    check_error(exc, name, "empty")


def test_unknown_file_kind(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError) as exc:
        scan_spans(tmp_path / "notes.txt")
    check_error(exc, "notes.txt", "format")


def test_malformed_json_line_names_the_line(tmp_path: Path) -> None:
    good = json.dumps(traces(span()))
    path = tmp_path / "bad.jsonl"
    path.write_text(f"{good}\n{good}\n\n{good[:-7]}\n{good}\n")
    with pytest.raises(DataError) as exc:
        scan_spans(path)
    check_error(exc, "bad.jsonl:4:", "invalid JSON")


def test_malformed_first_json_line(tmp_path: Path) -> None:
    good = json.dumps(traces(span()))
    path = tmp_path / "first.jsonl"
    path.write_text(f"{good[:40]}\n{good}\n")
    with pytest.raises(DataError) as exc:
        scan_spans(path)
    check_error(exc, "first.jsonl:1:", "invalid JSON")


def test_malformed_pretty_document_names_the_line(tmp_path: Path) -> None:
    text = json.dumps(traces(span()), indent=2).splitlines()
    text[6] = text[6] + ","  # a trailing comma
    path = tmp_path / "pretty.json"
    path.write_text("\n".join(text))
    with pytest.raises(DataError) as exc:
        scan_spans(path)
    check_error(exc, "pretty.json:", "invalid JSON")
    assert exc.value.record is not None and exc.value.record >= 7


def test_json_that_is_not_traces_data(tmp_path: Path) -> None:
    good = json.dumps(traces(span()))
    path = tmp_path / "other.jsonl"
    path.write_text(f'{good}\n{{"resourceLogs": []}}\n')
    with pytest.raises(DataError) as exc:
        scan_spans(path)
    check_error(exc, "other.jsonl:2:", "resourceSpans", "resourceLogs")
    write_json(tmp_path / "array.json", [1, 2])
    with pytest.raises(DataError) as exc:
        scan_spans(tmp_path / "array.json")
    check_error(exc, "array.json:1:", "TracesData")


@pytest.mark.parametrize("field", ["traceId", "spanId"])
def test_span_missing_an_id(tmp_path: Path, field: str) -> None:
    good = json.dumps(traces(span()))
    broken = json.dumps(traces(span(), span(**{field: None})))
    path = tmp_path / "ids.jsonl"
    path.write_text(f"{good}\n{broken}\n")
    with pytest.raises(DataError) as exc:
        scan_spans(path)
    check_error(exc, "ids.jsonl:2:", field, "spans[1]")


def test_span_with_empty_id_in_document(tmp_path: Path) -> None:
    path = write_json(tmp_path / "doc.json", traces(span(traceId="")))
    with pytest.raises(DataError) as exc:
        scan_spans(path)
    check_error(exc, "doc.json:1:", "traceId")


def test_malformed_structure_and_values(tmp_path: Path) -> None:
    cases = {
        "spans_not_list.json": {"resourceSpans": [{"scopeSpans": [{"spans": {"a": 1}}]}]},
        "bad_time.json": traces(span(startTimeUnixNano="soon")),
        "bad_attr.json": traces(span(attributes=[{"value": {"stringValue": "no key"}}])),
        "bad_value.json": traces(span(attributes=[kv("b", boolValue="maybe")])),
        "huge_time.json": traces(span(endTimeUnixNano=str(2**70))),
        "surrogate.json": traces(span(name="\ud800")),
        "key_not_text.json": traces(span(attributes=[{"key": 5, "value": {}}])),
    }
    for name, doc in cases.items():
        with pytest.raises(DataError) as exc:
            scan_spans(write_json(tmp_path / name, doc))
        check_error(exc, name)


def test_truncated_gzip(tmp_path: Path) -> None:
    body = gzip.compress(("".join(json.dumps(traces(span())) + "\n" for _ in range(50))).encode())
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(body[: len(body) // 2])
    with pytest.raises(DataError) as exc:
        scan_spans(path)
    check_error(exc, "cut.jsonl.gz", "gzip")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin.jsonl"
    good = json.dumps(traces(span())).encode()
    path.write_bytes(good + b"\n" + good.replace(b"GET /", b"GET \xe9") + b"\n")
    with pytest.raises(DataError) as exc:
        scan_spans(path)
    check_error(exc, "latin.jsonl:2:", "UTF-8")


def test_clashing_extra_column_types(tmp_path: Path) -> None:
    canonical_frame(1, **{"attr.code": [1]}).write_parquet(tmp_path / "a.parquet")
    canonical_frame(1, **{"attr.code": [[1]]}).write_parquet(tmp_path / "b.parquet")
    with pytest.raises(DataError) as exc:
        scan_spans([tmp_path / "a.parquet", tmp_path / "b.parquet"])
    check_error(exc, "a.parquet", "clashing")


# --- real fixtures ------------------------------------------------------------------------

_OTLP_FIXTURES = {
    "otlp-json/otel-proto_example_trace.json": 1,
    "otlp-json/jaeger_integration_example_trace.json": 5,
    "otlp-json/jaeger_integration_link_attributes_trace.json": 1,
    "otlp-json/jaeger_integration_scope_attributes_trace.json": 1,
    "otlp-json/jaeger-ui_otlp2jaeger-in-error.json": 1,
    "otlp-json/tempo_servicegraphs_trace-with-failed-requests.json": 15,
    "otlp-json/tempo_servicegraphs_trace-with-queue-database.json": 19,
    "otlp-jsonl/jaeger-ui_otlp2jaeger-multi-in.jsonl": 4,
    "paired-otlp-jaeger/otlp2jaeger-in.otlp.json": 1,  # the same span twice: one dropped
}


def _fixture(name: str) -> Path:
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"fixture {name} not available")
    return path


@pytest.mark.parametrize("name", sorted(_OTLP_FIXTURES))
def test_real_otlp_fixtures(name: str) -> None:
    df = scan_spans(_fixture(name)).collect()
    assert df.height == _OTLP_FIXTURES[name]
    assert df.schema == pl.Schema(CANONICAL_COLUMNS)
    assert df["trace_id"].str.contains(r"^[0-9a-f]{32}$").all()
    assert df["span_id"].str.contains(r"^[0-9a-f]{16}$").all()
    assert (df["duration_ns"] >= 0).all()
    assert df["start_time"].null_count() == 0
    assert set(df["kind"]) <= {
        "UNSPECIFIED",
        "INTERNAL",
        "SERVER",
        "CLIENT",
        "PRODUCER",
        "CONSUMER",
    }
    if "in-error" not in name:
        assert df["service_name"].null_count() == 0


def test_real_fixture_details() -> None:
    df = scan_spans(_fixture("otlp-json/otel-proto_example_trace.json")).collect()
    assert df["trace_id"][0] == "5b8efff798038103d269b633813fc60c"
    assert df["kind"][0] == "SERVER" and df["service_name"][0] == "my.service"
    failed = scan_spans(_fixture("otlp-json/tempo_servicegraphs_trace-with-failed-requests.json"))
    assert failed.filter(pl.col("status_code") == "ERROR").collect().height == 3
    jsonl = scan_spans(_fixture("otlp-jsonl/jaeger-ui_otlp2jaeger-multi-in.jsonl")).collect()
    assert jsonl["parent_span_id"].null_count() == 1  # parentSpanId "" on the root
    everything = scan_spans([_fixture("otlp-json"), _fixture("otlp-jsonl")]).collect()
    assert everything.height == sum(
        n for k, n in _OTLP_FIXTURES.items() if k.startswith(("otlp-json/", "otlp-jsonl/"))
    )


# --- the two OTLP JSON readers agree ---------------------------------------------------------

_IDS = st.sampled_from(
    ["5B8EFFF798038103D269B633813FC60C", "abc", "6Lbf+fjUSyjxsivDvS9naA==", "kAf+pIRVStc=", "x-1"]
)
_SCALAR = st.one_of(
    st.builds(lambda s: {"stringValue": s}, st.text(max_size=5)),
    st.builds(lambda i: {"intValue": str(i)}, st.integers(-(2**63), 2**63 - 1)),
    st.builds(lambda b: {"boolValue": b}, st.booleans()),
    st.builds(lambda d: {"doubleValue": d}, st.floats(allow_nan=False, allow_infinity=False)),
    st.builds(lambda b: {"bytesValue": b}, st.sampled_from(["", "AQID"])),
    st.just({}),
)
_VALUE = st.one_of(
    _SCALAR,
    st.builds(lambda vs: {"arrayValue": {"values": vs}}, st.lists(_SCALAR, max_size=3)),
    st.builds(
        lambda kvs: {"kvlistValue": {"values": [{"key": k, "value": v} for k, v in kvs]}},
        st.lists(st.tuples(st.text(max_size=3), _SCALAR), max_size=3),
    ),
)
_SPAN = st.fixed_dictionaries(
    {"traceId": _IDS, "spanId": _IDS},
    optional={
        "parentSpanId": st.one_of(_IDS, st.just(""), st.just("0" * 16)),
        "name": st.text(max_size=5),
        "kind": st.integers(0, 7),
        "startTimeUnixNano": st.integers(0, 2**62).map(str),
        "endTimeUnixNano": st.integers(0, 2**62).map(str),
        "status": st.fixed_dictionaries(
            {}, optional={"code": st.integers(0, 3), "message": st.sampled_from(["", "m"])}
        ),
        "attributes": st.lists(
            st.builds(lambda k, v: {"key": k, "value": v}, st.text(max_size=4), _VALUE),
            max_size=4,
        ),
    },
)
_RESOURCE_SPANS = st.fixed_dictionaries(
    {
        "resource": st.fixed_dictionaries(
            {},
            optional={
                "attributes": st.lists(
                    st.builds(
                        lambda k, v: {"key": k, "value": v},
                        st.sampled_from(["service.name", "a"]),
                        _VALUE,
                    ),
                    max_size=2,
                )
            },
        ),
        "scopeSpans": st.lists(
            st.fixed_dictionaries(
                {"spans": st.lists(_SPAN, max_size=3)},
                optional={
                    "scope": st.fixed_dictionaries({}, optional={"name": st.text(max_size=3)})
                },
            ),
            max_size=2,
        ),
    }
)


@settings(max_examples=60, deadline=None)
@example(  # found by hypothesis in CI: the exact reader took the text "0" as a time
    [
        {
            "resourceSpans": [
                {
                    "resource": {},
                    "scopeSpans": [
                        {
                            "spans": [
                                {
                                    "traceId": "5B8EFFF798038103D269B633813FC60C",
                                    "spanId": "abc",
                                    "name": "",
                                    "attributes": [],
                                    "status": {},
                                    "endTimeUnixNano": "0",
                                }
                            ]
                        }
                    ],
                }
            ]
        }
    ]
)
@given(
    st.lists(
        st.fixed_dictionaries({"resourceSpans": st.lists(_RESOURCE_SPANS, max_size=2)}),
        min_size=1,
        max_size=3,
    )
)
def test_fast_and_exact_readers_agree(docs: list[Any]) -> None:
    data = "".join(json.dumps(d) + "\n" for d in docs).encode()
    fast = read_fast(data)
    if fast is not None:
        assert_frame_equal(fast, read_exact(data, "x.jsonl"))
