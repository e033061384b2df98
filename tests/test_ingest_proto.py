"""OTLP protobuf files (length-prefixed TracesData, the file exporter's `format: proto`).

The files are made here from the OTLP JSON fixtures with the official proto package, and
must read exactly like the JSON they came from."""

from __future__ import annotations

import base64
import builtins
import json
import re
from pathlib import Path
from typing import Any

import pytest
from polars.testing import assert_frame_equal

from fluo.errors import DataError
from fluo.ingest import IngestReport, scan_spans

pytest.importorskip("opentelemetry.proto.trace.v1.trace_pb2")
from google.protobuf import json_format
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

FIXTURES = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "format-fixtures"
needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(), reason="../shared/datasets absent")
_ID_KEYS = {"traceId", "spanId", "parentSpanId"}
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")  # Tempo's fixtures already hold base64 ids


def hex_ids_to_base64(value: Any) -> Any:
    """OTLP JSON (hex ids) -> proto3 JSON (base64 bytes), which json_format parses."""
    if isinstance(value, dict):
        return {
            k: (
                base64.b64encode(bytes.fromhex(v)).decode()
                if k in _ID_KEYS and isinstance(v, str) and _HEX.fullmatch(v)
                else hex_ids_to_base64(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [hex_ids_to_base64(v) for v in value]
    return value


def to_proto(documents: list[dict[str, Any]]) -> bytes:
    """Length-prefixed TracesData messages, as the collector's file exporter writes them."""
    out = b""
    for doc in documents:
        message = json_format.ParseDict(
            hex_ids_to_base64(doc), TracesData(), ignore_unknown_fields=True
        )
        body = message.SerializeToString()
        out += len(body).to_bytes(4, "big") + body
    return out


def documents(path: Path) -> list[dict[str, Any]]:
    text = path.read_text()
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return [json.loads(text)]


@needs_fixtures
@pytest.mark.parametrize(
    "name",
    [
        "otlp-json/otel-proto_example_trace.json",
        "otlp-json/tempo_servicegraphs_trace-with-failed-requests.json",
        "otlp-json/tempo_servicegraphs_trace-with-queue-database.json",
        "otlp-json/jaeger_integration_example_trace.json",
        "otlp-jsonl/jaeger-ui_otlp2jaeger-multi-in.jsonl",
    ],
)
def test_proto_reads_like_the_json(tmp_path: Path, name: str) -> None:
    source = FIXTURES / name
    path = tmp_path / "traces.binpb"
    path.write_bytes(to_proto(documents(source)))
    from_json = scan_spans(source).collect()
    from_proto = scan_spans(path).collect()
    assert from_proto.height == from_json.height > 0
    assert_frame_equal(from_proto, from_json)
    # no suffix: told by content; forced: read too
    path.rename(tmp_path / "traces")
    assert_frame_equal(scan_spans(tmp_path / "traces").collect(), from_json)
    assert_frame_equal(scan_spans(tmp_path / "traces", format="otlp-proto").collect(), from_json)


def small_message() -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "a"}}]
                },
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "name": "x",
                                "kind": 2,
                                "startTimeUnixNano": "1544712660000000000",
                                "endTimeUnixNano": "1544712661000000000",
                                "status": {"code": 2},
                                "attributes": [{"key": "n", "value": {"intValue": "3"}}],
                            }
                        ]
                    }
                ],
            }
        ]
    }


def test_duplicates_across_messages_and_bad_messages(tmp_path: Path) -> None:
    data = to_proto([small_message(), small_message()])
    (tmp_path / "t.pb").write_bytes(data)
    report = IngestReport()
    df = scan_spans(tmp_path / "t.pb", report=report).collect()
    assert df.height == 1 and report.duplicates == 1
    row = df.row(0, named=True)
    assert (row["kind"], row["status_code"], row["service_name"]) == ("SERVER", "ERROR", "a")
    assert row["span_attributes"] == {"n": "3"}
    assert row["duration_ns"] == 1_000_000_000
    (tmp_path / "cut.pb").write_bytes(data[:-3])
    with pytest.raises(DataError) as exc:
        scan_spans(tmp_path / "cut.pb")
    assert "cut.pb:2: message of" in str(exc.value) and "truncated" in str(exc.value)
    (tmp_path / "junk.pb").write_bytes(len(b"\xff\xff\xff").to_bytes(4, "big") + b"\xff\xff\xff")
    with pytest.raises(DataError) as exc:
        scan_spans(tmp_path / "junk.pb")
    assert "junk.pb:1: not an OTLP TracesData message" in str(exc.value)


def test_missing_package_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "t.pb").write_bytes(to_proto([small_message()]))
    real_import = builtins.__import__

    def no_proto(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("opentelemetry.proto"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_proto)
    import importlib

    real_module = importlib.import_module

    def no_proto_module(name: str, package: str | None = None) -> Any:
        if name.startswith("opentelemetry.proto"):
            raise ImportError(name)
        return real_module(name, package)

    monkeypatch.setattr(importlib, "import_module", no_proto_module)
    with pytest.raises(DataError) as exc:
        scan_spans(tmp_path / "t.pb")
    assert "pip install 'fluo[otlp-proto]'" in str(exc.value)
