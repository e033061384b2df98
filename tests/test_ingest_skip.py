"""``on_error="skip"`` for the eager readers (OTLP JSON, Jaeger, Zipkin, OTLP protobuf).

Each malformed record is skipped, counted in the IngestReport with its file, line (or
message number) and reason; ``on_error="fail"`` (the default) raises the same DataError.
Inputs are tiny synthetic documents written into tmp_path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fluo.cli import app
from fluo.convert import convert
from fluo.errors import DataError
from fluo.ingest import IngestReport, reading, scan_spans
from fluo.ingest.report import MAX_REASONS

TRACE = "ab" * 16
T0 = 1_700_000_000_000_000_000  # ns


def otlp_span(span_id: str, **fields: Any) -> dict[str, Any]:
    span = {
        "traceId": TRACE,
        "spanId": span_id,
        "name": "op",
        "kind": 2,
        "startTimeUnixNano": str(T0),
        "endTimeUnixNano": str(T0 + 2_000_000_000),
    }
    return {k: v for k, v in {**span, **fields}.items() if v is not None}


def otlp_doc(*spans: dict[str, Any]) -> dict[str, Any]:
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]}
    return {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": list(spans)}]}]}


def jaeger_span(span_id: str, **fields: Any) -> dict[str, Any]:
    span = {
        "traceID": TRACE,
        "spanID": span_id,
        "operationName": "op",
        "startTime": T0 // 1000,
        "duration": 2_000_000,
        "processID": "p1",
    }
    return {k: v for k, v in {**span, **fields}.items() if v is not None}


def zipkin_span(span_id: str, **fields: Any) -> dict[str, Any]:
    span = {
        "traceId": TRACE,
        "id": span_id,
        "name": "op",
        "kind": "SERVER",
        "timestamp": T0 // 1000,
        "duration": 2_000_000,
        "localEndpoint": {"serviceName": "svc"},
    }
    return {k: v for k, v in {**span, **fields}.items() if v is not None}


def json_lines(path: Path, docs: list[Any], tail: str = "") -> Path:
    path.write_text("".join(json.dumps(doc) + "\n" for doc in docs) + tail)
    return path


def read_skipping(path: Path, **kwargs: Any) -> tuple[list[str], IngestReport]:
    report = IngestReport()
    df = scan_spans(path, report=report, on_error="skip", **kwargs).collect()
    return df["span_id"].to_list(), report


def fails_with(path: Path, *needles: str, **kwargs: Any) -> None:
    with pytest.raises(DataError) as exc:
        scan_spans(path, **kwargs).collect()
    text = str(exc.value)
    assert "\n" not in text
    for needle in needles:
        assert needle in text, text


# --- OTLP JSON -----------------------------------------------------------------------------


OTLP_BAD = [
    (otlp_span("02", spanId=None), "spanId is missing"),
    (otlp_span("03", traceId="ab" * 17), "trace_id has 34 hex digits, more than 32"),
    (otlp_span("04", spanId="cd" * 9), "span_id has 18 hex digits, more than 16"),
    (otlp_span("05", parentSpanId="ef" * 9), "parent_span_id has 18 hex digits"),
    (otlp_span("06", startTimeUnixNano="soon"), "invalid literal for int()"),
    (otlp_span("07", endTimeUnixNano=str(T0 - 1)), "is before start time"),
    (otlp_span("08", startTimeUnixNano="-5", endTimeUnixNano="1"), "negative start time -5"),
    (otlp_span("09", name=5), "name must be a string, not 5"),
    (otlp_span("0a", attributes=[{"value": {"stringValue": "x"}}]), "missing 'key'"),
    (otlp_span("0b", status={"code": 2, "message": 7}), "status message must be a string"),
    (otlp_span("0c", endTimeUnixNano=str(2**64)), "endTimeUnixNano 18446744073709551616 is out"),
]


@pytest.mark.parametrize(("bad", "reason"), OTLP_BAD, ids=[r for _, r in OTLP_BAD])
def test_otlp_json_bad_span_fails_or_is_skipped(
    tmp_path: Path, bad: dict[str, Any], reason: str
) -> None:
    # line 1 good, line 2 holds the bad span between two good ones, line 3 good
    docs = [
        otlp_doc(otlp_span("01")),
        otlp_doc(otlp_span("11"), bad, otlp_span("12")),
        otlp_doc(otlp_span("13")),
    ]
    path = json_lines(tmp_path / "t.jsonl", docs)
    fails_with(path, "t.jsonl:2:", reason)
    ids, report = read_skipping(path)
    assert ids == ["0000000000000001", "0000000000000011", "0000000000000012", "0000000000000013"]
    assert report.skipped == 1
    assert len(report.reasons) == 1 and "t.jsonl:2: " in report.reasons[0]
    assert reason in report.reasons[0]
    assert report.warnings() == [f"skipped 1 malformed record: {report.reasons[0]}"]


def test_otlp_json_truncated_and_non_json_lines_are_skipped(tmp_path: Path) -> None:
    docs = [otlp_doc(otlp_span("01")), otlp_doc(otlp_span("02"))]
    path = json_lines(tmp_path / "t.jsonl", docs, tail='{"resourceSpans": [{"scopeSp')
    fails_with(path, "t.jsonl:3:", "invalid JSON")
    ids, report = read_skipping(path)
    assert ids == ["0000000000000001", "0000000000000002"]
    assert report.skipped == 1
    assert "t.jsonl:3: invalid JSON: Unterminated string" in report.reasons[0]
    # a line that is JSON but not TracesData, and a line of bytes that are not UTF-8
    with path.open("ab") as f:
        f.write(
            b"\n[1, 2]\n"
            + json.dumps(otlp_doc(otlp_span("05"))).encode()
            + b'\n{"x": "\xc3\x28"}\n'
        )
    ids, report = read_skipping(path)
    assert ids == ["0000000000000001", "0000000000000002", "0000000000000005"]
    assert report.skipped == 3
    assert [r.split(": ", 1)[0].rsplit(":", 1)[1] for r in report.reasons] == ["3", "4", "6"]
    assert "not OTLP TracesData" in report.reasons[1] and "not UTF-8" in report.reasons[2]


def test_otlp_json_malformed_scope_or_resource_skips_only_its_spans(tmp_path: Path) -> None:
    good = {"spans": [otlp_span("01")]}
    doc = {
        "resourceSpans": [
            {"scopeSpans": [good, {"scope": {"name": 5}, "spans": [otlp_span("02")]}]},
            {"resource": {"attributes": [{"value": {}}]}, "scopeSpans": [good]},
            {"scopeSpans": [{"spans": {"not": "a list"}}, {"spans": [otlp_span("03")]}]},
        ]
    }
    path = tmp_path / "t.json"
    path.write_text(json.dumps(doc, indent=1))
    fails_with(path, "t.json:1:", "resourceSpans[0].scopeSpans[1]", "scope name must be")
    ids, report = read_skipping(path)
    assert ids == ["0000000000000001", "0000000000000003"]
    assert report.skipped == 3
    assert "resourceSpans[1]: missing 'key'" in report.reasons[1]
    assert "'spans' must be a list" in report.reasons[2]


def test_the_fast_reader_hands_bad_rows_to_the_exact_one(tmp_path: Path) -> None:
    """Collector-style JSON lines go through Arrow's reader; a bad row makes it decline, so
    the error (or the skip) names the line."""
    docs = [otlp_doc(*(otlp_span(f"{i:02x}") for i in range(1, 4))) for _ in range(3)]
    docs[2]["resourceSpans"][0]["scopeSpans"][0]["spans"][1]["endTimeUnixNano"] = "1"
    path = json_lines(tmp_path / "c.jsonl", docs)
    fails_with(path, "c.jsonl:3: span 0000000000000002 of trace", "end time 1 is before")
    ids, report = read_skipping(path)
    # 9 spans, 1 skipped; the three lines repeat the same spans: 5 exact duplicates
    assert len(ids) == 3 and report.skipped == 1 and report.duplicates == 5


def test_reasons_are_capped_but_every_record_is_counted(tmp_path: Path) -> None:
    docs = [otlp_doc(otlp_span(f"{i:02x}", traceId=None)) for i in range(1, 9)]
    path = json_lines(tmp_path / "t.jsonl", [otlp_doc(otlp_span("ff")), *docs])
    ids, report = read_skipping(path)
    assert ids == ["00000000000000ff"]
    assert report.skipped == 8 and len(report.reasons) == MAX_REASONS
    first = "t.jsonl:2: span resourceSpans[0].scopeSpans[0].spans[0]: traceId is missing"
    assert report.reasons[0].endswith(first)
    assert report.warnings()[0].startswith("skipped 8 malformed records: ")
    assert report.warnings()[0].endswith(", ...")


def test_reading_block_sets_skip_for_every_read(tmp_path: Path) -> None:
    path = json_lines(tmp_path / "t.jsonl", [otlp_doc(otlp_span("01"), otlp_span("02", name=1))])
    with reading(on_error="skip") as report:
        assert scan_spans(path).collect().height == 1
    assert report.skipped == 1
    fails_with(path, "name must be a string")  # outside the block: fail again


# --- Jaeger and Zipkin ---------------------------------------------------------------------


JAEGER_BAD = [
    (jaeger_span("02", spanID=None), "data[0].spans[1]: spanID is missing"),
    (jaeger_span("03", duration=-3), "negative duration -3"),
    (jaeger_span("04", startTime="soon"), "startTime must be a number of microseconds"),
    (jaeger_span("05", tags=[{"key": "n", "type": "int64", "value": "x"}]), "tag 'n'"),
    (jaeger_span("06", spanID="cd" * 9), "span_id has 18 hex digits"),
    (jaeger_span("07", operationName=["x"]), "operationName must be a string"),
    ("not a span", "data[0].spans[1]: span data[0].spans[1] must be an object"),
]


@pytest.mark.parametrize(("bad", "reason"), JAEGER_BAD, ids=[r for _, r in JAEGER_BAD])
def test_jaeger_bad_span_fails_or_is_skipped(tmp_path: Path, bad: Any, reason: str) -> None:
    processes = {"p1": {"serviceName": "svc", "tags": []}}
    trace = {"traceID": TRACE, "spans": [jaeger_span("01"), bad, jaeger_span("08")]}
    doc = {"data": [{**trace, "processes": processes}]}
    path = tmp_path / "j.json"
    path.write_text(json.dumps(doc, indent=1))
    fails_with(path, "j.json:1:", reason)
    ids, report = read_skipping(path)
    assert ids == ["0000000000000001", "0000000000000008"]
    assert report.skipped == 1 and reason in report.reasons[0]
    # the spans kept are whole: their columns were not shifted by the broken one
    df = scan_spans(path, on_error="skip").collect()
    assert df["service_name"].to_list() == ["svc", "svc"]
    assert df["name"].to_list() == ["op", "op"]


def test_jaeger_malformed_trace_skips_the_rest_of_its_document(tmp_path: Path) -> None:
    good = {"traceID": TRACE, "spans": [jaeger_span("01")], "processes": {"p1": {}}}
    path = json_lines(tmp_path / "j.jsonl", [{"data": [good, 7, good]}, {"data": [good]}])
    fails_with(path, "j.jsonl:1:", "data[1] must be a trace object")
    ids, report = read_skipping(path)
    assert len(ids) == 1 and report.duplicates == 1 and report.skipped == 1


ZIPKIN_BAD = [
    (zipkin_span("02", id=None), "span [1]: id is missing"),
    (zipkin_span("03", traceId="ab" * 17), "trace_id has 34 hex digits"),
    (zipkin_span("04", duration=-1), "negative duration -1"),
    (zipkin_span("05", timestamp="later"), "timestamp must be a number of microseconds"),
    (zipkin_span("06", kind="SIDEWAYS"), "kind must be CLIENT"),
    (zipkin_span("07", tags=["a"]), "tags must be an object"),
    (zipkin_span("08", shared="yes"), "shared must be true or false"),
    (zipkin_span("09", localEndpoint="svc"), "localEndpoint must be an object"),
]


@pytest.mark.parametrize(("bad", "reason"), ZIPKIN_BAD, ids=[r for _, r in ZIPKIN_BAD])
def test_zipkin_bad_span_fails_or_is_skipped(tmp_path: Path, bad: Any, reason: str) -> None:
    path = tmp_path / "z.json"
    path.write_text(json.dumps([zipkin_span("01"), bad, zipkin_span("0a")], indent=1))
    fails_with(path, "z.json:1:", reason)
    ids, report = read_skipping(path)
    assert ids == ["0000000000000001", "000000000000000a"]
    assert report.skipped == 1 and reason in report.reasons[0]


def test_zipkin_json_lines_with_a_truncated_line(tmp_path: Path) -> None:
    lines = [[zipkin_span("01")], [[zipkin_span("02")]]]
    path = json_lines(tmp_path / "z.jsonl", lines, tail='[{"traceId": "ab", "id": "0')
    fails_with(path, "z.jsonl:3:", "invalid JSON", format="zipkin")
    ids, report = read_skipping(path, format="zipkin")
    assert ids == ["0000000000000001", "0000000000000002"] and report.skipped == 1


def test_a_pretty_document_with_a_syntax_error_still_names_its_line(tmp_path: Path) -> None:
    """Only unindented whole documents make a file JSON lines; a broken pretty document is
    a file error (even with skip), with the line of the syntax error."""
    text = json.dumps([zipkin_span("01"), zipkin_span("02")], indent=1)
    path = tmp_path / "z.json"
    path.write_text(text.replace('"name": "op"', '"name": op', 1))
    fails_with(path, "z.json:5:", "invalid JSON")
    with pytest.raises(DataError, match=r"z\.json:5: invalid JSON"):
        scan_spans(path, on_error="skip").collect()


# --- OTLP protobuf -------------------------------------------------------------------------


def test_otlp_proto_bad_and_truncated_messages(tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.proto.trace.v1.trace_pb2")
    from test_ingest_proto import to_proto

    def span(n: int, **fields: Any) -> dict[str, Any]:
        return otlp_span(f"{n:016x}", **fields)  # whole 8-byte ids, for the proto encoding

    good = to_proto([otlp_doc(span(1)), otlp_doc(span(2))])
    garbage = (5).to_bytes(4, "big") + b"\xff\xff\xff\xff\xff"
    bad_row = to_proto([otlp_doc(span(3, endTimeUnixNano="5"))])
    path = tmp_path / "t.pb"
    path.write_bytes(good + garbage + bad_row + to_proto([otlp_doc(span(4))])[:-3])
    fails_with(path, "t.pb:3:", "not an OTLP TracesData message")
    ids, report = read_skipping(path)
    assert ids == ["0000000000000001", "0000000000000002"]
    assert report.skipped == 3
    # bad rows (an end before the start) are found when the frame is built, after parsing
    expected = ["t.pb:3: not an OTLP", "t.pb:5: message of ", "t.pb:4: span 0000000000000003 of"]
    for reason, start in zip(report.reasons, expected, strict=True):
        assert reason[reason.index("t.pb:") :].startswith(start), reason


# --- the command line ----------------------------------------------------------------------


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  slow:\n    when: span.duration > 1s\n")
    return path


def test_cli_run_fails_or_skips_a_malformed_json_record(tmp_path: Path, rules: Path) -> None:
    data = tmp_path / "spans.json"
    data.write_text(json.dumps([zipkin_span("01"), zipkin_span("02", duration=-5)], indent=1))
    runner = CliRunner()
    args = ["run", str(rules), "--spans", str(data), "-f", "jsonl"]
    failed = runner.invoke(app, args)
    assert failed.exit_code == 2 and "Traceback" not in failed.stderr
    assert "spans.json:1: span [1]: negative duration -5" in failed.stderr
    skipped = runner.invoke(app, [*args, "--on-error", "skip"])
    assert skipped.exit_code == 0, skipped.stderr
    assert skipped.stdout.count('"rule":"slow"') == 1
    assert "warning: skipped 1 malformed record: " in skipped.stderr
    assert "spans.json:1: span [1]: negative duration -5" in skipped.stderr


def test_cli_convert_skips_a_malformed_json_record(tmp_path: Path) -> None:
    data = json_lines(
        tmp_path / "t.jsonl",
        [otlp_doc(otlp_span("01")), otlp_doc(otlp_span("02", traceId="ab" * 17))],
    )
    runner = CliRunner()
    failed = runner.invoke(app, ["convert", str(data), "-o", str(tmp_path / "a")])
    assert failed.exit_code == 2 and "t.jsonl:2:" in failed.stderr
    assert not (tmp_path / "a").exists()
    done = runner.invoke(
        app, ["convert", str(data), "-o", str(tmp_path / "b"), "--on-error", "skip"]
    )
    assert done.exit_code == 0, done.stderr
    assert "warning: skipped" in done.stderr and "t.jsonl:2:" in done.stderr
    assert "wrote 1 spans" in done.stderr
    report = convert(data, tmp_path / "c", on_error="skip")
    assert report.spans == 1 and report.skipped_records == 1 and report.skipped_files == 0
