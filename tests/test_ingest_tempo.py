"""Tempo vParquet4 blocks (fluo/ingest/tempo.py): the real test block of Tempo (read from
../shared, AGPL: never copied here) and small synthetic blocks for the schema drift."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from fluo.errors import DataError
from fluo.ingest import IngestReport, scan_spans
from fluo.ingest.tempo import dedicated_columns
from fluo.schema import CANONICAL_COLUMNS

BLOCK = (
    Path(__file__).resolve().parent.parent.parent
    / "shared"
    / "datasets"
    / "format-fixtures"
    / "tempo-vparquet4"
)
needs_block = pytest.mark.skipif(not BLOCK.is_dir(), reason="../shared/datasets absent")


@needs_block
def test_real_block() -> None:
    """134 traces, 570 spans, 10 services, 3 error spans (format-fixtures/README.txt)."""
    report = IngestReport()
    df = scan_spans(BLOCK, report=report).collect()  # meta.json beside it is not read as JSON
    assert df.schema == pl.Schema(CANONICAL_COLUMNS)
    assert df.height == 570 and report.duplicates == 0
    assert df["trace_id"].n_unique() == 134
    assert df["service_name"].n_unique() == 10
    assert df.filter(pl.col("status_code") == "ERROR").height == 3
    assert df.filter(pl.col("parent_span_id").is_null()).height == 134
    assert df["trace_id"].str.contains("^[0-9a-f]{32}$").all()
    assert df["span_id"].str.contains("^[0-9a-f]{16}$").all()
    # every parent is a span of the same trace
    parents = df.filter(pl.col("parent_span_id").is_not_null()).join(
        df.select("trace_id", parent_span_id="span_id"),
        on=["trace_id", "parent_span_id"],
        how="anti",
    )
    assert parents.height == 0
    assert (df["duration_ns"] >= 0).all()
    assert df["start_time"].min().year == 2022  # type: ignore[union-attr]
    first = df.filter(pl.col("span_id") == "736fe28c53051bbf").row(0, named=True)
    assert first["span_attributes"] == {
        "http.method": "GET",  # static dedicated span columns
        "http.url": "http://productcatalogservice/GetProducts",
        "instance": "productcatalogservice-6b654dbf57-zq8dt",  # String01..03 by meta.json
        "version": "v52",
        "region": "us-east-1",
    }
    assert first["resource_attributes"] == {
        "host.name": "f2951fd6ef8d",
        "opencensus.exporterversion": "Jaeger-Java-0.28.0",
        "service.name": "productcatalogservice",
        "ip": "172.26.0.5",  # the resource's String01
    }
    sampler = df["span_attributes"].map.get("sampler.param").drop_nulls().unique().to_list()
    assert sampler == ["true"]  # a ValueBool


@needs_block
def test_forced_format_and_projection() -> None:
    lf = scan_spans(BLOCK / "data.parquet", format="tempo").select("service_name", "duration_ns")
    assert lf.collect().height == 570


def test_dedicated_columns_by_scope(tmp_path: Path) -> None:
    (tmp_path / "data.parquet").write_bytes(b"")
    (tmp_path / "meta.json").write_text(
        json.dumps(
            {
                "dedicatedColumns": [
                    {"s": "resource", "n": "ip"},
                    {"n": "a"},
                    {"s": "span", "n": "b", "t": "string"},
                    {"s": "resource", "n": "c"},
                    {"n": "n", "t": "int"},
                ]
            }
        )
    )
    assert dedicated_columns(str(tmp_path / "data.parquet")) == {
        "resource": {"String01": "ip", "String02": "c"},
        "span": {"String01": "a", "String02": "b"},
    }


ATTR = pl.Struct(
    {
        "Key": pl.String,
        "IsArray": pl.Boolean,
        "Value": pl.List(pl.String),
        "ValueInt": pl.List(pl.Int64),
        "ValueDouble": pl.List(pl.Float64),
        "ValueBool": pl.List(pl.Boolean),
        "ValueUnsupported": pl.String,
    }
)


def attr(key: str, **values: object) -> dict[str, object]:
    return {
        "Key": key,
        "IsArray": values.pop("IsArray", False),
        "Value": values.pop("Value", []),
        "ValueInt": values.pop("ValueInt", []),
        "ValueDouble": values.pop("ValueDouble", []),
        "ValueBool": values.pop("ValueBool", []),
        "ValueUnsupported": values.pop("ValueUnsupported", None),
    }


def write_block(path: Path) -> None:
    """A one-trace block in the current vParquet4 layout (IsArray, ValueUnsupported)."""
    span = pl.Struct(
        {
            "SpanID": pl.Binary,
            "ParentSpanID": pl.Binary,
            "Name": pl.String,
            "Kind": pl.Int64,
            "StartTimeUnixNano": pl.UInt64,
            "DurationNano": pl.UInt64,
            "StatusCode": pl.Int64,
            "StatusMessage": pl.String,
            "Attrs": pl.List(ATTR),
            "HttpStatusCode": pl.Int64,
        }
    )
    rs = pl.Struct(
        {
            "Resource": pl.Struct({"Attrs": pl.List(ATTR), "ServiceName": pl.String}),
            "ss": pl.List(
                pl.Struct(
                    {
                        "Scope": pl.Struct({"Name": pl.String, "Version": pl.String}),
                        "Spans": pl.List(span),
                    }
                )
            ),
        }
    )
    spans = [
        {
            "SpanID": bytes.fromhex("00000000000000a1"),
            "ParentSpanID": b"",
            "Name": "GET /",
            "Kind": 2,
            "StartTimeUnixNano": 1_700_000_000_000_000_001,
            "DurationNano": 5,
            "StatusCode": 2,
            "StatusMessage": "boom",
            "Attrs": [
                attr("n", ValueInt=[7]),
                attr("d", ValueDouble=[1.0]),
                attr("f", ValueDouble=[0.25]),
                attr("arr", IsArray=True, Value=['a"b', "c"]),
                attr("one", IsArray=True, ValueInt=[3]),
                attr("kv", ValueUnsupported='{"x":1}'),
            ],
            "HttpStatusCode": 500,
        },
        {
            "SpanID": bytes.fromhex("00000000000000a2"),
            "ParentSpanID": bytes.fromhex("00000000000000a1"),
            "Name": "child",
            "Kind": 3,
            "StartTimeUnixNano": 1_700_000_000_000_000_002,
            "DurationNano": 1,
            "StatusCode": 0,
            "StatusMessage": "",
            "Attrs": [],
            "HttpStatusCode": None,
        },
    ]
    row = {
        "TraceID": bytes.fromhex("0102030405060708090a0b0c0d0e0f10"),
        "rs": [
            {
                "Resource": {"Attrs": [attr("host", Value=["h"])], "ServiceName": "web"},
                "ss": [{"Scope": {"Name": "lib", "Version": ""}, "Spans": spans}],
            }
        ],
    }
    frame = pl.DataFrame([row], schema={"TraceID": pl.Binary, "rs": pl.List(rs)})
    pl.concat([frame, frame]).write_parquet(path)  # the same trace twice: duplicates


def test_synthetic_block_with_current_schema(tmp_path: Path) -> None:
    write_block(tmp_path / "data.parquet")
    report = IngestReport()
    df = scan_spans(tmp_path / "data.parquet", report=report).collect()
    assert report.duplicates == 2
    assert df.select(
        "span_id", "parent_span_id", "kind", "status_code", "status_message"
    ).rows() == [
        ("00000000000000a1", None, "SERVER", "ERROR", "boom"),
        ("00000000000000a2", "00000000000000a1", "CLIENT", "UNSET", None),
    ]
    assert df["trace_id"][0] == "0102030405060708090a0b0c0d0e0f10"
    assert df["duration_ns"].to_list() == [5, 1]
    assert df["start_time"][0].timestamp() == pytest.approx(1_700_000_000)  # type: ignore[union-attr]
    assert df["scope_name"][0] == "lib" and df["scope_version"][0] is None
    assert df["span_attributes"][0] == {
        "n": "7",
        "d": "1",
        "f": "0.25",
        "arr": '["a\\"b","c"]',
        "one": "[3]",
        "kv": '{"x":1}',
        "http.status_code": "500",
    }
    assert df["span_attributes"][1] == {}
    assert df["resource_attributes"][0] == {"host": "h", "service.name": "web"}


def test_not_a_block(tmp_path: Path) -> None:
    pl.DataFrame({"TraceID": [b"x"], "rs": [[1]]}).write_parquet(tmp_path / "x.parquet")
    with pytest.raises(DataError) as exc:
        scan_spans(tmp_path / "x.parquet").collect()
    assert "not a Tempo vParquet4 block" in str(exc.value) and "x.parquet" in str(exc.value)
