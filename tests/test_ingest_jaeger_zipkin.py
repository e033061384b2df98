"""Tests for the Jaeger JSON and Zipkin v2 JSON readers (fluo.ingest.jaeger / .zipkin)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from fluo.errors import DataError
from fluo.ingest import scan_spans
from fluo.ingest.detect import check_format, json_format
from fluo.ingest.zipkin import shared_server_id

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "format-fixtures"
needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(), reason="shared fixtures absent")

T0_US = 1_700_000_000_000_000
T0 = T0_US * 1000
TRACE = "5b8efff798038103d269b633813fc60c"


def rows(frame: pl.LazyFrame | pl.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts, times as integer nanoseconds, maps as dicts; trace_key dropped."""
    df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
    df = df.with_columns(pl.col(pl.Datetime).cast(pl.Int64)).drop("trace_key")
    out = df.to_dicts()
    for row in out:
        for name in ("span_attributes", "resource_attributes"):
            if isinstance(row.get(name), list):
                row[name] = {e["key"]: e["value"] for e in row[name]}
    return out


def write(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc, indent=1))
    return path


def check_error(exc: pytest.ExceptionInfo[DataError], *needles: str) -> None:
    text = str(exc.value)
    assert "\n" not in text
    for needle in needles:
        assert needle in text, text


def row(**fields: Any) -> dict[str, Any]:
    """An expected canonical row (trace_key left out) with defaults."""
    base: dict[str, Any] = {
        "trace_id": TRACE,
        "span_id": None,
        "parent_span_id": None,
        "name": "",
        "kind": "UNSPECIFIED",
        "service_name": None,
        "start_time": T0,
        "end_time": T0 + 1000,
        "duration_ns": 1000,
        "status_code": "UNSET",
        "status_message": None,
        "scope_name": None,
        "scope_version": None,
        "span_attributes": {},
        "resource_attributes": {},
    }
    base.update(fields)
    return base


# --- Jaeger -------------------------------------------------------------------------------


def jspan(span_id: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "traceID": TRACE,
        "spanID": span_id,
        "operationName": "op",
        "references": [],
        "startTime": T0_US,
        "duration": 1,
        "tags": [],
        "logs": [],
        "processID": "p1",
    }
    base.update(fields)
    return base


def tag(key: str, value: Any, type_: str = "string") -> dict[str, Any]:
    return {"key": key, "type": type_, "value": value}


PROCESSES = {
    "p1": {"serviceName": "checkout", "tags": [tag("host.name", "h1"), tag("pid", 42, "int64")]}
}


def test_jaeger_api_response_exact_rows(tmp_path: Path) -> None:
    spans = [
        jspan(
            "00000000000000AB",
            operationName="GET /cart",
            startTime=T0_US + 5,
            duration=1500,
            tags=[
                tag("span.kind", "server"),
                tag("http.status_code", 500, "int64"),
                tag("ratio", 0.25, "float64"),
                tag("whole", 1.0, "float64"),
                tag("cached", False, "bool"),
                tag("retried", "true", "bool"),
                tag("blob", "AAEC", "binary"),
                tag("otel.status_code", "ERROR"),
                tag("otel.status_description", "boom"),
                tag("otel.scope.name", "lib"),
                tag("otel.scope.version", "1.2"),
                tag("otel.library.name", "old-lib"),
                tag("w3c.tracestate", "k=v"),
            ],
        ),
        jspan(
            "cd",
            references=[
                {"refType": "FOLLOWS_FROM", "traceID": TRACE, "spanID": "ef"},
                {"refType": "CHILD_OF", "traceID": TRACE.upper(), "spanID": "AB"},
            ],
            tags=[tag("span.kind", "client"), tag("error", True, "bool")],
        ),
    ]
    doc = {"data": [{"traceID": TRACE, "spans": spans, "processes": PROCESSES}], "total": 0}
    resource = {"service.name": "checkout", "host.name": "h1", "pid": "42"}
    assert rows(scan_spans(write(tmp_path / "t.json", doc))) == [
        row(
            span_id="00000000000000ab",
            name="GET /cart",
            kind="SERVER",
            service_name="checkout",
            start_time=T0 + 5000,
            end_time=T0 + 5000 + 1_500_000,
            duration_ns=1_500_000,
            status_code="ERROR",
            status_message="boom",
            scope_name="lib",
            scope_version="1.2",
            span_attributes={
                "http.status_code": "500",
                "ratio": "0.25",
                "whole": "1",
                "cached": "false",
                "retried": "true",
                "blob": "AAEC",
            },
            resource_attributes=resource,
        ),
        row(
            span_id="00000000000000cd",
            parent_span_id="00000000000000ab",
            name="op",
            kind="CLIENT",
            service_name="checkout",
            status_code="ERROR",
            resource_attributes=resource,
        ),
    ]


def test_jaeger_parent_rules_and_status_precedence(tmp_path: Path) -> None:
    other = "1" * 32
    spans = [
        # a CHILD_OF reference into another trace is not the parent: FOLLOWS_FROM is
        jspan(
            "01",
            references=[
                {"refType": "CHILD_OF", "traceID": other, "spanID": "09"},
                {"refType": "FOLLOWS_FROM", "traceID": TRACE, "spanID": "02"},
            ],
            tags=[tag("otel.status_code", "OK"), tag("error", "false", "bool")],
        ),
        # no references: the deprecated parentSpanID
        jspan("02", parentSpanID="03", tags=[tag("otel.library.name", "lib")]),
        # parentSpanID all zeros: a root; error=true wins over otel.status_code=OK
        jspan(
            "03",
            parentSpanID="0000000000000000",
            tags=[tag("otel.status_code", "OK"), tag("error", "true", "bool")],
        ),
    ]
    doc = {"traceID": TRACE, "spans": spans, "processes": {}}
    got = rows(scan_spans(write(tmp_path / "t.json", doc)))
    assert [r["parent_span_id"] for r in got] == ["0000000000000002", "0000000000000003", None]
    assert [r["status_code"] for r in got] == ["OK", "UNSET", "ERROR"]
    assert got[0]["span_attributes"] == {"error": "false"}
    assert got[1]["scope_name"] == "lib"
    assert [r["service_name"] for r in got] == [None, None, None]
    assert got[2]["span_attributes"] == {}


def test_jaeger_container_shapes_give_the_same_rows(tmp_path: Path) -> None:
    spans = [jspan("0a", tags=[tag("k", "v")]), jspan("0b", parentSpanID="0a")]
    trace = {"traceID": TRACE, "spans": spans, "processes": PROCESSES}
    embedded = [{**s, "process": PROCESSES["p1"]} for s in spans]
    for s in embedded:
        del s["processID"]
    expected = rows(scan_spans(write(tmp_path / "api.json", {"data": [trace]})))
    assert len(expected) == 2
    assert expected[0]["service_name"] == "checkout"
    docs: dict[str, Any] = {
        "trace.json": trace,
        "list.json": embedded,
        "ui_state.json": {"data": {"spans": spans, "processes": PROCESSES}, "id": "x"},
        "traces.json": [trace],
    }
    for name, doc in docs.items():
        assert rows(scan_spans(write(tmp_path / name, doc))) == expected, name
    lines = tmp_path / "lines.json"
    lines.write_text(json.dumps({"data": [trace]}) + "\n" + json.dumps({"data": []}) + "\n")
    assert rows(scan_spans(lines)) == expected


def test_jaeger_64bit_trace_id_is_padded(tmp_path: Path) -> None:
    doc = [{**jspan("7606DDFE69932D34", traceID="2BE38093EAD7A083"), "process": {}}]
    (got,) = rows(scan_spans(write(tmp_path / "t.json", doc)))
    assert got["trace_id"] == "00000000000000002be38093ead7a083"
    assert got["span_id"] == "7606ddfe69932d34"


# --- Zipkin -------------------------------------------------------------------------------


def zspan(span_id: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "traceId": TRACE,
        "id": span_id,
        "name": "op",
        "timestamp": T0_US,
        "duration": 1,
        "localEndpoint": {"serviceName": "frontend", "ipv4": "10.0.0.1", "port": 8080},
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


FRONTEND = {"service.name": "frontend", "net.host.ip": "10.0.0.1", "net.host.port": "8080"}


def test_zipkin_exact_rows(tmp_path: Path) -> None:
    spans = [
        zspan(
            "0A",
            kind="CLIENT",
            name="get /cart",
            duration=250,
            remoteEndpoint={"serviceName": "cart", "ipv6": "::1", "port": 9000},
            tags={"http.path": "/cart", "error": "timeout", "otel.scope.name": "lib"},
        ),
        zspan(
            "0b",
            parentId="0a",
            localEndpoint={"serviceName": "frontend"},
            remoteEndpoint={"ipv4": "10.0.0.9"},
            tags={"otel.status_code": "ERROR", "otel.status_description": "bad", "x": ""},
        ),
        zspan("0c", kind="PRODUCER", tags={"error": ""}, duration=None, localEndpoint=None),
        zspan(
            "0d",
            kind="consumer",
            tags={"otel.status_code": "OK", "peer.service": "q"},
            remoteEndpoint={"serviceName": "kafka"},
            timestamp=None,
        ),
    ]
    assert rows(scan_spans(write(tmp_path / "z.json", spans))) == [
        row(
            span_id="000000000000000a",
            name="get /cart",
            kind="CLIENT",
            service_name="frontend",
            end_time=T0 + 250_000,
            duration_ns=250_000,
            status_code="ERROR",
            status_message="timeout",
            scope_name="lib",
            span_attributes={
                "http.path": "/cart",
                "peer.service": "cart",
                "server.address": "::1",
                "server.port": "9000",
            },
            resource_attributes=FRONTEND,
        ),
        row(
            span_id="000000000000000b",
            parent_span_id="000000000000000a",
            name="op",
            kind="INTERNAL",
            service_name="frontend",
            status_code="ERROR",
            status_message="bad",
            span_attributes={"x": "", "server.address": "10.0.0.9"},
            resource_attributes={"service.name": "frontend"},
        ),
        row(
            span_id="000000000000000c",
            name="op",
            kind="PRODUCER",
            end_time=None,
            duration_ns=None,
            status_code="ERROR",
        ),
        row(
            span_id="000000000000000d",
            name="op",
            kind="CONSUMER",
            service_name="frontend",
            start_time=None,
            end_time=None,
            duration_ns=None,
            status_code="OK",
            span_attributes={"peer.service": "q"},
            resource_attributes=FRONTEND,
        ),
    ]


def test_zipkin_shared_server_span_gets_a_new_id(tmp_path: Path) -> None:
    server_ep = {"serviceName": "backend"}
    spans = [
        [
            zspan("01", kind="SERVER", name="root"),
            zspan("02", parentId="01", kind="CLIENT", name="call"),
            zspan("02", parentId="01", kind="SERVER", shared=True, localEndpoint=server_ep),
        ],
        [
            zspan("03", parentId="02", name="server work", localEndpoint=server_ep),
            zspan("04", parentId="02", name="client-side work"),
            # a shared SERVER span whose client is not in the data keeps its id
            zspan("05", traceId="1" * 32, kind="SERVER", shared=True),
        ],
    ]
    got = rows(scan_spans(write(tmp_path / "z.json", spans)))
    new = shared_server_id("02")
    assert new == shared_server_id("0000000000000002") != shared_server_id("02", 1)
    assert len(new) == 16 and int(new, 16) >= 0
    assert [(r["span_id"], r["parent_span_id"], r["kind"]) for r in got] == [
        ("0000000000000001", None, "SERVER"),
        ("0000000000000002", "0000000000000001", "CLIENT"),
        (new, "0000000000000002", "SERVER"),
        ("0000000000000003", new, "INTERNAL"),
        ("0000000000000004", "0000000000000002", "INTERNAL"),
        ("0000000000000005", None, "SERVER"),
    ]
    assert got[2]["service_name"] == "backend"


# --- detection and format= ----------------------------------------------------------------


def test_detection_by_content(tmp_path: Path) -> None:
    jaeger = {"data": [{"traceID": TRACE, "spans": [jspan("01")], "processes": PROCESSES}]}
    zipkin = [zspan("01")]
    write(tmp_path / "a.json", jaeger)
    write(tmp_path / "b.json", zipkin)
    write(tmp_path / "c", [[zspan("02")]])  # no suffix, a list of traces
    (tmp_path / "d.json.gz").write_bytes(gzip.compress(json.dumps(jaeger).encode()))
    (tmp_path / "e.txt").write_text(json.dumps([{**jspan("03"), "process": {}}]))
    for name in ("a.json", "b.json", "c", "d.json.gz", "e.txt"):
        assert scan_spans(tmp_path / name).collect().height == 1, name
    df = scan_spans([tmp_path / "a.json", tmp_path / "b.json"]).collect()
    assert df["service_name"].to_list() == ["checkout", "frontend"]
    assert json_format(b'{"resourceSpans": [{"resource": {}}]}') == "otlp-json"
    assert json_format(b'{"result": {"resourceSpans": []}}') == "otlp-json"
    assert json_format(b'{"traceID": "1", "spans": [], "processes": {}}') == "jaeger-json"
    assert json_format(b'[{"traceID": "1", "spanID": "2"}]') == "jaeger-json"
    assert json_format(b'[[{"traceId": "1", "id": "2", "timestamp": 1') == "zipkin-json"
    assert json_format(b"[1, 2]") is None
    assert json_format(b'{"data": [1]}') is None


def test_forced_formats(tmp_path: Path) -> None:
    path = write(tmp_path / "dump.bin", [zspan("01")])
    assert scan_spans(path, format="zipkin").collect().height == 1
    assert scan_spans(path, format="zipkin-json").collect().height == 1
    assert check_format("Jaeger_JSON") == "jaeger-json"
    assert check_format("jaeger") == "jaeger-json"
    with pytest.raises(DataError) as exc:
        scan_spans(path, format="jaeger-json")
    check_error(exc, "dump.bin:1:", "span [0]", "traceID is missing")
    jaeger = write(tmp_path / "j.json", {"traceID": TRACE, "spans": [], "processes": {}})
    with pytest.raises(DataError) as exc:
        scan_spans(jaeger, format="zipkin")
    check_error(exc, "j.json:1:", "not Zipkin v2 JSON", "traceID")
    with pytest.raises(DataError) as exc:
        check_format("skywalking")
    check_error(exc, "jaeger-json", "zipkin-json")


# --- bad inputs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "needles"),
    [
        ({"data": [{"spans": [jspan("01", traceID=None)]}]}, ["data[0].spans[0]", "traceID"]),
        ({"data": [{"spans": [jspan("")]}]}, ["data[0].spans[0]", "spanID is invalid"]),
        ({"spans": [jspan("01"), jspan("02", duration=-3)]}, ["spans[1]", "negative duration"]),
        ({"spans": [jspan("01", startTime="soon")]}, ["startTime must be a number"]),
        ({"spans": [jspan("01", tags=[tag("n", "x", "int64")])]}, ["tag 'n'", "int64"]),
        ({"data": 3}, ["'data' must be a list"]),
        ({"foo": 1}, ["not Jaeger JSON", "keys foo"]),
    ],
)
def test_bad_jaeger_input(tmp_path: Path, doc: Any, needles: list[str]) -> None:
    with pytest.raises(DataError) as exc:
        scan_spans(write(tmp_path / "bad.json", doc), format="jaeger")
    check_error(exc, "bad.json:1:", *needles)


@pytest.mark.parametrize(
    ("doc", "needles"),
    [
        ([zspan("01"), zspan(None)], ["span [1]", "id is missing"]),
        ([[zspan("01")], [zspan("02", traceId=7)]], ["span [1][0]", "traceId is invalid"]),
        ([zspan("01", duration=-1)], ["span [0]", "negative duration"]),
        ([zspan("01", timestamp=-5)], ["negative start time"]),
        ([zspan("01", kind="SIDEWAYS")], ["kind must be"]),
        ([zspan("01", tags=["a"])], ["tags must be an object"]),
        ({"spans": []}, ["not Zipkin v2 JSON", "keys spans"]),
    ],
)
def test_bad_zipkin_input(tmp_path: Path, doc: Any, needles: list[str]) -> None:
    with pytest.raises(DataError) as exc:
        scan_spans(write(tmp_path / "bad.json", doc), format="zipkin")
    check_error(exc, "bad.json:1:", *needles)


def test_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('[\n{"traceId": "01", "id": "01",\n "timestamp": }\n]')
    for fmt in ("zipkin", "jaeger"):
        with pytest.raises(DataError) as exc:
            scan_spans(path, format=fmt)
        check_error(exc, "broken.json:3:", "invalid JSON")
    lines = tmp_path / "lines.json"
    lines.write_text(json.dumps([zspan("01")]) + "\n" + json.dumps([zspan("02", id=None)]) + "\n")
    with pytest.raises(DataError) as exc:
        scan_spans(lines, format="zipkin")
    check_error(exc, "lines.json:2:", "id is missing")


# --- real fixtures ------------------------------------------------------------------------


@needs_fixtures
@pytest.mark.parametrize(
    "name",
    sorted(
        str(p.relative_to(FIXTURES))
        for folder in ("jaeger-json", "zipkin-v2", "paired-otlp-jaeger")
        for p in (FIXTURES / folder).glob("*.json")
        if not p.name.endswith(".otlp.json")
    )
    if FIXTURES.is_dir()
    else [],
)
def test_real_fixtures_read_plausibly(name: str) -> None:
    path = FIXTURES / name
    df = scan_spans(path).collect()
    expected = "zipkin-json" if name.startswith("zipkin") else "jaeger-json"
    assert json_format(path.read_bytes()[:65536]) == expected
    assert df.height > 0
    if not name.endswith("tracegraph_trace_object.json"):  # ids "trace-123", "span-1": kept
        assert df["trace_id"].str.contains(r"^[0-9a-f]{32}$").all()
        assert df["span_id"].str.contains(r"^[0-9a-f]{16}$").all()
    assert df["start_time"].null_count() < df.height
    assert (df["duration_ns"].drop_nulls() >= 0).all()
    assert df["start_time"].drop_nulls().dt.year().is_between(2010, 2030).all()
    assert df["service_name"].null_count() == 0 or name.endswith("envoy.json")
    assert (
        df["kind"]
        .is_in(["UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"])
        .all()
    )
    if name.startswith("zipkin"):
        # shared SERVER halves got their own ids: a client/server pair never shares one
        kinds = df.group_by("trace_id", "span_id").agg(pl.col("kind"))["kind"].to_list()
        assert not any("CLIENT" in k and "SERVER" in k for k in kinds)


@needs_fixtures
def test_smartthings_counts() -> None:
    df = scan_spans(FIXTURES / "zipkin-v2" / "smartthings-mobile-web-install.json").collect()
    assert df.height == 1041 - 84  # 84 bare fragments merged into their shared SERVER spans
    assert df.select(pl.struct("trace_id", "span_id").n_unique()).item() == df.height
    assert df["status_code"].eq("ERROR").sum() == 2
    assert df["service_name"].n_unique() == 16


@needs_fixtures
def test_anonymizer_bool_string_tag_is_error() -> None:
    df = scan_spans(FIXTURES / "jaeger-json" / "jaeger_anonymizer_span_list.json").collect()
    assert df["status_code"].to_list() == ["UNSET", "ERROR"]
    assert df["kind"].to_list() == ["SERVER", "CLIENT"]
    assert df["trace_id"][0] == "00000000000000002be38093ead7a083"


@needs_fixtures
@pytest.mark.parametrize(
    ("otlp", "jaeger"),
    [
        (
            "paired-otlp-jaeger/otlp2jaeger-in.otlp.json",
            "paired-otlp-jaeger/otlp2jaeger-out.jaeger.json",
        ),
        (
            "otlp-jsonl/jaeger-ui_otlp2jaeger-multi-in.jsonl",
            "paired-otlp-jaeger/otlp2jaeger-multi-out.jaeger.json",
        ),
    ],
)
def test_paired_otlp_and_jaeger_give_the_same_rows(otlp: str, jaeger: str) -> None:
    from_otlp = scan_spans(FIXTURES / otlp).collect()
    from_jaeger = scan_spans(FIXTURES / jaeger).collect()
    # Jaeger keeps whole microseconds: truncate the OTLP times, then compare everything
    from_otlp = from_otlp.with_columns(pl.col("start_time", "end_time").dt.truncate("1us"))
    from_otlp = from_otlp.with_columns(
        duration_ns=(pl.col("end_time") - pl.col("start_time")).dt.total_nanoseconds()
    )
    order = ["span_id", "start_time"]
    assert_frame_equal(from_otlp.sort(order), from_jaeger.sort(order))
