"""The ClickHouse exporter's otel_traces table, exported as Parquet, CSV and TSV: detected by
its columns and read through the shipped `clickhouse` profile."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

import fluo
from fluo.errors import DataError
from fluo.ingest import IngestReport, scan_spans
from fluo.schema import ATTRIBUTE_MAP, CANONICAL_COLUMNS

TRACE = "5b8efff798038103d269b633813fc60c"
START = dt.datetime(2024, 8, 1, 10, 0, 0, 123456)


def otel_traces(new_enums: bool) -> pl.DataFrame:
    """Three spans as `SELECT * FROM otel_traces` gives them (both exporter eras)."""
    kind = ["Server", "Client", "Internal"] if new_enums else None
    kind = kind or ["SPAN_KIND_SERVER", "SPAN_KIND_CLIENT", "SPAN_KIND_INTERNAL"]
    status = ["Unset", "Error", "Ok"] if new_enums else None
    status = status or ["STATUS_CODE_UNSET", "STATUS_CODE_ERROR", "STATUS_CODE_OK"]
    frame = pl.DataFrame(
        {
            "Timestamp": [START, START + dt.timedelta(milliseconds=5), START],
            "TraceId": [TRACE] * 3,
            "SpanId": ["eee19b7ec3c1b174", "eee19b7ec3c1b175", "eee19b7ec3c1b176"],
            "ParentSpanId": ["", "eee19b7ec3c1b174", "eee19b7ec3c1b174"],
            "TraceState": ["", "", ""],
            "SpanName": ["GET /cart", "SELECT cart", "render"],
            "SpanKind": kind,
            "ServiceName": ["cart", "cart", "cart"],
            "ResourceAttributes": [
                [{"key": "service.name", "value": "cart"}, {"key": "host.name", "value": "h1"}]
            ]
            * 3,
            "ScopeName": ["io.opentelemetry.http", "", ""],
            "ScopeVersion": ["1.2.0", "", ""],
            "SpanAttributes": [
                [
                    {"key": "http.method", "value": "GET"},
                    {"key": "http.status_code", "value": "500"},
                ],
                [{"key": "db.system", "value": "postgresql"}, {"key": "q", "value": "it's"}],
                [],
            ],
            "Duration": pl.Series([2_000_000_000, 1_500_000, 7], dtype=pl.UInt64),
            "StatusCode": status,
            "StatusMessage": ["", "timeout", ""],
            "Events.Timestamp": [[], [START], []],
            "Events.Name": [[], ["exception"], []],
        },
        schema_overrides={"Timestamp": pl.Datetime("ns")},
    )
    return frame.with_columns(pl.col("ResourceAttributes", "SpanAttributes").cast(ATTRIBUTE_MAP))


def expected() -> pl.DataFrame:
    start = pl.Series([START, START + dt.timedelta(milliseconds=5), START]).cast(
        pl.Datetime("ns", "UTC")
    )
    return pl.DataFrame(
        {
            "span_id": ["eee19b7ec3c1b174", "eee19b7ec3c1b175", "eee19b7ec3c1b176"],
            "parent_span_id": [None, "eee19b7ec3c1b174", "eee19b7ec3c1b174"],
            "kind": ["SERVER", "CLIENT", "INTERNAL"],
            "status_code": ["UNSET", "ERROR", "OK"],
            "status_message": [None, "timeout", None],
            "scope_name": ["io.opentelemetry.http", None, None],
            "start_time": start,
            "duration_ns": [2_000_000_000, 1_500_000, 7],
        }
    )


def check(df: pl.DataFrame) -> None:
    assert df.schema == pl.Schema(CANONICAL_COLUMNS)
    assert df.select(expected().columns).equals(expected()), df
    assert (df["end_time"] - df["start_time"]).dt.total_nanoseconds().to_list() == [
        2_000_000_000,
        1_500_000,
        7,
    ]
    assert df["trace_id"].unique().to_list() == [TRACE]
    assert df["trace_key"][0] == int(TRACE[-16:], 16)
    assert df["service_name"].to_list() == ["cart"] * 3
    assert df["span_attributes"].map.get("http.status_code").to_list() == ["500", None, None]
    assert df["span_attributes"].map.get("q").to_list() == [None, "it's", None]
    assert df["resource_attributes"].map.get("host.name").to_list() == ["h1"] * 3


@pytest.mark.parametrize("new_enums", [False, True], ids=["SPAN_KIND_X", "Server"])
def test_parquet_export_is_detected(tmp_path: Path, new_enums: bool) -> None:
    otel_traces(new_enums).write_parquet(tmp_path / "otel_traces.parquet")
    check(scan_spans(tmp_path / "otel_traces.parquet").collect())


def ch_text(value: object) -> str:
    """A value as ClickHouse writes it in CSV/TSV (maps as {'k':'v'} literals)."""
    if isinstance(value, dict):
        quoted = (
            "'{}':'{}'".format(k.replace("'", "\\'"), str(v).replace("'", "\\'"))
            for k, v in value.items()
        )
        return "{" + ",".join(quoted) + "}"
    if isinstance(value, list):
        return "[" + ",".join(f"'{v}'" for v in value) + "]"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f") + "000"
    return str(value)


def write_text_export(frame: pl.DataFrame, path: Path, separator: str) -> None:
    lines = [separator.join(frame.columns)]
    for row in frame.iter_rows():
        cells = [ch_text(v) for v in row]
        if separator == ",":
            cells = ['"' + c.replace('"', '""') + '"' if "," in c or "'" in c else c for c in cells]
        lines.append(separator.join(cells))
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(("suffix", "separator"), [(".csv", ","), (".tsv", "\t")])
def test_text_exports_are_detected(tmp_path: Path, suffix: str, separator: str) -> None:
    path = tmp_path / f"otel_traces{suffix}"
    write_text_export(otel_traces(True), path, separator)
    check(scan_spans(path).collect())
    check(scan_spans(path, format="clickhouse").collect())


def test_duplicate_rows_counted_and_rules_run(tmp_path: Path) -> None:
    frame = otel_traces(False)
    pl.concat([frame, frame.head(1)]).write_parquet(tmp_path / "t.parquet")
    report = IngestReport()
    df = scan_spans(tmp_path / "t.parquet", report=report).collect()
    assert df.height == 3 and report.duplicates == 1
    rules = fluo.load_rules(
        "rules:\n  slow_server:\n    when: span.kind == SERVER and span.duration > 1s\n"
        "  db_error:\n    when: span.status == ERROR and span.attributes['db.system'] exists\n"
    )
    signals = rules.evaluate(scan_spans(tmp_path / "t.parquet"))
    assert sorted(signals["rule"]) == ["db_error", "slow_server"]


def test_filter_on_the_canonical_time(tmp_path: Path) -> None:
    """A filter on the canonical start time (computed from Timestamp, so it is applied just
    above the scan, not inside it) keeps the right rows."""
    otel_traces(True).write_parquet(tmp_path / "t.parquet")
    lf = scan_spans(tmp_path / "t.parquet").filter(
        pl.col("start_time") > pl.lit(START, dtype=pl.Datetime("ns", "UTC"))
    )
    assert lf.collect()["span_id"].to_list() == ["eee19b7ec3c1b175"]


def test_bad_timestamp_text_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "otel_traces.tsv"
    write_text_export(otel_traces(True), path, "\t")
    text = path.read_text().splitlines()
    text[2] = text[2].replace("2024-08-01 10:00:00.128456000", "yesterday")
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(DataError) as exc:
        scan_spans(path).collect()
    message = str(exc.value)
    assert "otel_traces.tsv:3: column 'Timestamp' (start_time) is not a datetime" in message
    assert "'yesterday'" in message


def test_promoted_attributes(tmp_path: Path) -> None:
    """promote=True adds typed attr.* columns (old and new names, each from its own key)."""
    otel_traces(False).write_parquet(tmp_path / "t.parquet")
    lf = scan_spans(tmp_path / "t.parquet", promote=True)
    schema = lf.collect_schema()
    assert schema["attr.http.status_code"] == pl.Int64
    assert schema["attr.http.response.status_code"] == pl.Int64
    assert schema["attr.http.method"] == pl.String
    df = lf.collect()
    assert df["attr.http.status_code"].to_list() == [500, None, None]
    assert df["attr.http.response.status_code"].null_count() == 3  # new name absent here
    assert df["attr.db.system"].to_list() == [None, "postgresql", None]
    assert df["span_attributes"].map.get("http.method").to_list() == ["GET", None, None]
    rules = fluo.load_rules("rules:\n  r:\n    when: span.attributes['http.status_code'] >= 500\n")
    assert rules.evaluate(lf)["span_id"].to_list() == ["eee19b7ec3c1b174"]
    # an existing promoted column is left as it is; without promote= the table is canonical
    kept = lf.with_columns(pl.lit("x").alias("attr.http.route"))
    from fluo.ingest.normalize import promote_attributes

    assert promote_attributes(kept).collect()["attr.http.route"].to_list() == ["x"] * 3
    assert list(scan_spans(tmp_path / "t.parquet").collect_schema()) == list(CANONICAL_COLUMNS)
