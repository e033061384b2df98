"""Zipkin v2 span fragments: records of one span merged into one row, before shared SERVER
halves get their own ids. Small synthetic Zipkin documents written into tmp_path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from fluo.cli import app
from fluo.ingest import IngestReport, scan_spans
from fluo.ingest.zipkin import shared_server_id

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "format-fixtures"
TRACE = "5b8efff798038103d269b633813fc60c"
T0_US = 1_700_000_000_000_000
FRONT = {"serviceName": "frontend", "ipv4": "10.0.0.1", "port": 8080}
BACK = {"serviceName": "backend", "ipv4": "10.0.0.2", "port": 9000}


def zspan(span_id: str, **fields: Any) -> dict[str, Any]:
    span = {"traceId": TRACE, "id": span_id, **fields}
    return {k: v for k, v in span.items() if v is not None}


def read(tmp_path: Path, spans: list[Any]) -> tuple[list[dict[str, Any]], IngestReport]:
    path = tmp_path / "z.json"
    path.write_text(json.dumps(spans, indent=1))
    report = IngestReport()
    df = scan_spans(path, report=report).collect()
    df = df.with_columns(pl.col(pl.Datetime).cast(pl.Int64))
    rows = df.drop("trace_key").to_dicts()
    for row in rows:
        for name in ("span_attributes", "resource_attributes"):
            if isinstance(row[name], list):
                row[name] = {e["key"]: e["value"] for e in row[name]}
    return rows, report


def test_a_late_fragment_is_merged_into_its_span(tmp_path: Path) -> None:
    """The client half with its times, then a later record of the same span adding a tag
    and an error: one row, tags of both, times of the first."""
    rows, report = read(
        tmp_path,
        [
            zspan(
                "0a",
                kind="CLIENT",
                name="get /cart",
                timestamp=T0_US,
                duration=1500,
                localEndpoint=FRONT,
                tags={"http.method": "GET"},
            ),
            zspan("0b", parentId="0a", name="other", timestamp=T0_US, localEndpoint=FRONT),
            zspan("0a", localEndpoint={"serviceName": "frontend"}, tags={"error": "boom"}),
        ],
    )
    assert report.merged == 1 and report.duplicates == 0
    assert [r["span_id"] for r in rows] == ["000000000000000a", "000000000000000b"]
    merged = rows[0]
    assert merged["kind"] == "CLIENT" and merged["name"] == "get /cart"
    assert merged["start_time"] == T0_US * 1000 and merged["duration_ns"] == 1_500_000
    assert merged["status_code"] == "ERROR" and merged["status_message"] == "boom"
    assert merged["span_attributes"] == {"http.method": "GET"}
    assert merged["resource_attributes"] == {
        "service.name": "frontend",
        "net.host.ip": "10.0.0.1",
        "net.host.port": "8080",
    }
    assert report.warnings() == ["merged 1 Zipkin span fragment into the spans they belong to"]


def test_earliest_timestamp_longest_duration_and_first_values(tmp_path: Path) -> None:
    """A fragment sent first without a timestamp gives way to the record with one; times are
    the earliest start and the longest duration; tags of the timed record win a conflict."""
    rows, report = read(
        tmp_path,
        [
            zspan("01", name="early bit", tags={"a": "1", "b": "fragment"}),
            zspan("01", name="get", timestamp=T0_US + 10, duration=5, tags={"b": "main"}),
            zspan("01", kind="SERVER", timestamp=T0_US, duration=30, parentId="09"),
            zspan("01", remoteEndpoint={"serviceName": "caller"}),
        ],
    )
    assert report.merged == 3 and len(rows) == 1
    (row,) = rows
    assert row["name"] == "get" and row["kind"] == "SERVER"
    assert row["parent_span_id"] == "0000000000000009"
    assert row["start_time"] == T0_US * 1000 and row["duration_ns"] == 30_000
    assert row["span_attributes"] == {"b": "main", "a": "1", "peer.service": "caller"}


def test_records_that_are_not_one_span_stay_apart(tmp_path: Path) -> None:
    """Different local endpoints (two consumers of one message), different kinds, or
    different shared flags on records with a kind are never merged."""
    consumer = {"serviceName": "worker"}
    rows, report = read(
        tmp_path,
        [
            zspan("01", kind="PRODUCER", timestamp=T0_US, localEndpoint=FRONT),
            zspan("01", kind="CONSUMER", timestamp=T0_US + 5, localEndpoint=consumer),
            zspan("02", kind="CONSUMER", timestamp=T0_US, localEndpoint={**consumer, "ipv4": "1"}),
            zspan("02", kind="CONSUMER", timestamp=T0_US, localEndpoint={**consumer, "ipv4": "2"}),
            zspan("03", kind="SERVER", timestamp=T0_US, localEndpoint=BACK),
            zspan("03", kind="SERVER", shared=True, timestamp=T0_US + 1, localEndpoint=BACK),
        ],
    )
    assert report.merged == 0 and len(rows) == 6


def test_exact_copies_count_as_duplicates_not_merges(tmp_path: Path) -> None:
    span = zspan("01", kind="SERVER", timestamp=T0_US, duration=3, localEndpoint=BACK)
    rows, report = read(tmp_path, [span, span, zspan("01", tags={"k": "v"})])
    assert len(rows) == 1 and report.duplicates == 1 and report.merged == 1
    assert rows[0]["span_attributes"] == {"k": "v"}


def test_fragments_merge_before_shared_server_ids(tmp_path: Path) -> None:
    """The SmartThings shape: a bare fragment (no kind, no shared flag) of the server half,
    the CLIENT half, then the shared SERVER half. The fragment joins the SERVER half (same
    local endpoint), which then gets its distinct id; children move under it."""
    rows, report = read(
        tmp_path,
        [
            zspan("02", parentId="01", name="post", localEndpoint=BACK),
            zspan(
                "02",
                parentId="01",
                kind="CLIENT",
                name="post /x",
                timestamp=T0_US,
                duration=900,
                localEndpoint=FRONT,
            ),
            zspan(
                "02",
                parentId="01",
                kind="SERVER",
                shared=True,
                name="post",
                timestamp=T0_US + 100,
                duration=700,
                localEndpoint=BACK,
                tags={"http.status_code": "200"},
            ),
            zspan("03", parentId="02", name="db", timestamp=T0_US + 200, localEndpoint=BACK),
        ],
    )
    new = shared_server_id("02")
    assert report.merged == 1
    assert [(r["span_id"], r["parent_span_id"], r["kind"]) for r in rows] == [
        (new, "0000000000000002", "SERVER"),
        ("0000000000000002", "0000000000000001", "CLIENT"),
        ("0000000000000003", new, "INTERNAL"),
    ]
    assert rows[0]["service_name"] == "backend" and rows[0]["duration_ns"] == 700_000
    assert rows[0]["span_attributes"] == {"http.status_code": "200"}


def test_an_unshared_server_beside_its_client_still_gets_its_own_id(tmp_path: Path) -> None:
    """Client and server reporting one id without `shared` (Finagle): not merged (kinds
    differ); the existing rule gives the SERVER half a distinct id."""
    rows, report = read(
        tmp_path,
        [
            zspan("02", kind="CLIENT", timestamp=T0_US, duration=9, localEndpoint=FRONT),
            zspan("02", kind="SERVER", timestamp=T0_US + 1, duration=5, localEndpoint=BACK),
        ],
    )
    assert report.merged == 0
    assert [r["span_id"] for r in rows] == ["0000000000000002", shared_server_id("02")]


def test_cli_prints_the_merge_count(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  any:\n    when: span.duration > 1ms\n")
    data = tmp_path / "z.json"
    data.write_text(
        json.dumps([zspan("01", kind="SERVER", timestamp=T0_US, duration=5000), zspan("01")])
    )
    result = CliRunner().invoke(app, ["run", str(rules), "--spans", str(data), "-f", "jsonl"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.count('"rule":"any"') == 1
    assert "warning: merged 1 Zipkin span fragment into the spans they belong to" in result.stderr


@pytest.mark.skipif(not FIXTURES.is_dir(), reason="shared fixtures absent")
def test_smartthings_fragments_are_merged_and_ids_unique() -> None:
    for name, merged in (
        ("smartthings-mobile-web-install.json", 84),
        ("smartthings-oauth-authorization.json", 3),
    ):
        report = IngestReport()
        df = scan_spans(FIXTURES / "zipkin-v2" / name, report=report).collect()
        assert report.merged == merged, name
        assert df.select(pl.struct("trace_id", "span_id").n_unique()).item() == df.height
        assert df["start_time"].null_count() == 0
