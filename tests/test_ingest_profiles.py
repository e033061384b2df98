"""Mapping profiles (fluo/ingest/profile.py): shipped layouts on the real research datasets,
user profiles on small synthetic files, record errors, duplicates and the ingest report."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import polars as pl
import pytest

from fluo.errors import DataError
from fluo.ingest import IngestReport, load_profile, scan_spans, shipped_profiles
from fluo.schema import CANONICAL_COLUMNS

DATASETS = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"
NEZHA = DATASETS / "nezha-microservice-rca"
DEEPTRALOG = DATASETS / "deeptralog-trainticket"
FIXTURES = DATASETS / "format-fixtures"

needs_nezha = pytest.mark.skipif(not NEZHA.is_dir(), reason="../shared/datasets absent")
needs_deeptralog = pytest.mark.skipif(not DEEPTRALOG.is_dir(), reason="../shared/datasets absent")


def one_line(exc: pytest.ExceptionInfo[DataError], *needles: str) -> str:
    text = str(exc.value)
    assert "\n" not in text and "Traceback" not in text, text
    for needle in needles:
        assert needle in text, text
    return text


# --- shipped profiles on the real datasets ---------------------------------------------------


def test_shipped_profiles_load() -> None:
    assert {"clickhouse", "nezha", "deeptralog"} <= set(shipped_profiles())
    assert load_profile("nezha").fields["parent_span_id"].root == ("root",)


@needs_nezha
def test_nezha_trainticket_day() -> None:
    """The 2023-01-29 day: 328,848 rows of which 7,780 exact copies (adjacent minute files)."""
    report = IngestReport()
    lf = scan_spans(NEZHA / "trainticket" / "2023-01-29" / "trace", format="nezha", report=report)
    df = lf.collect()
    assert df.schema == pl.Schema(CANONICAL_COLUMNS)
    assert df.height == 328_848 - 7_780
    assert report.duplicates == 7_780
    assert report.warnings() == ["dropped 7780 exact duplicate spans while reading"]
    assert df.select(pl.struct("trace_id", "span_id").is_unique().all()).item()
    services = df["service_name"].unique().to_list()
    assert len(services) == 28 and "ts-order-service" in services
    assert all(s.startswith("ts-") and s.endswith("-service") for s in services)
    roots = df.filter(pl.col("parent_span_id").is_null())
    assert roots.height > 4_000  # one per trace, some traces have two
    assert (df["duration_ns"] == (df["end_time"] - df["start_time"]).dt.total_nanoseconds()).all()
    assert df["kind"].unique().to_list() == ["UNSPECIFIED"]
    assert df["status_code"].unique().to_list() == ["UNSET"]
    pods = df["resource_attributes"].map.get("k8s.pod.name")
    assert pods.str.starts_with(df["service_name"]).all()
    assert df["start_time"].min().year == 2023  # type: ignore[union-attr]


@needs_nezha
def test_nezha_detected_by_header_and_duration_unit() -> None:
    """Without format=, the header tells the layout; Duration (µs) agrees with end - start."""
    path = NEZHA / "onlineboutique" / "fault_free" / "2022-08-23_17_00_trace.csv.gz"
    df = scan_spans(path).collect()
    raw = pl.read_csv(path, schema_overrides={"TraceID": pl.String, "SpanID": pl.String})
    assert df.height == raw.unique().height
    assert sorted(df["service_name"].unique()) == [
        "adservice",
        "cartservice",
        "checkoutservice",
        "currencyservice",
        "emailservice",
        "frontend",
        "paymentservice",
        "productcatalogservice",
        "recommendationservice",
        "shippingservice",
    ]
    joined = df.join(
        raw.unique().select(span_id="SpanID", trace_id="TraceID", us="Duration"),
        on=["trace_id", "span_id"],
    )
    assert ((joined["duration_ns"] // 1000) == joined["us"]).all()


@needs_deeptralog
def test_deeptralog_zip_archive() -> None:
    """F05.zip holds five runs; the SpanData CSVs inside are read, the logs are not."""
    report = IngestReport()
    df = scan_spans(DEEPTRALOG / "F05.zip", format="deeptralog", report=report).collect()
    assert df.height + report.duplicates == 1_080 + 766 + 15_300 + 562 + 650
    assert set(df["kind"].unique()) <= {"SERVER", "CLIENT"}
    errors = df.filter(pl.col("status_code") == "ERROR")
    assert errors.height > 3_000
    assert set(df["status_code"].unique()) == {"ERROR", "UNSET"}
    # SkyWalking ids are kept as they are; the trace key is a hash, never null
    assert df["trace_id"].str.contains(r"^[0-9a-f]{32}\.\d+\.\d+$").all()
    assert df["trace_key"].null_count() == 0
    assert df.select(pl.col("trace_key").n_unique() == pl.col("trace_id").n_unique()).item()
    assert df.filter(pl.col("parent_span_id").is_null()).height > 0
    assert not df["parent_span_id"].eq("-1").any()
    first = df.filter(pl.col("name") == "{POST}/api/v1/travelservice/trips/left").row(0, named=True)
    assert first["duration_ns"] % 1_000_000 == 0  # millisecond times
    assert first["scope_name"] == "SpringMVC"
    assert df["span_attributes"].map.get("peer.service").null_count() < df.height


@needs_deeptralog
def test_deeptralog_detected_inside_zip() -> None:
    """A zip is told by the header of its first table."""
    df = scan_spans(DEEPTRALOG / "F05.zip").select("kind").collect()
    assert df.height > 18_000


# --- user profiles on synthetic files --------------------------------------------------------

PROFILE = """
name: mine
format: csv
fields:
  trace_id: tid
  span_id: sid
  parent_span_id: {column: parent, root: ["-1", "none"]}
  name: op
  service_name: {column: pod, pattern: '^(.+)-[a-z0-9]{6,10}-[a-z0-9]{5}$'}
  kind: {column: type, values: {Entry: SERVER, Exit: CLIENT}}
  status_code: {column: failed, values: {yes: ERROR, no: OK}}
  start_time: {column: begin, unit: s}
  duration: {column: took, unit: ms}
extra: span_attributes
"""


def write_profile(tmp_path: Path, text: str = PROFILE) -> Path:
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    return path


def test_user_profile_units_values_and_extra_columns(tmp_path: Path) -> None:
    (tmp_path / "spans.csv").write_text(
        "tid,sid,parent,op,pod,type,failed,begin,took,region\n"
        "ABC,1,-1,GET /,web-5d4f8b7c9-abcde,Entry,no,1700000000.5,250,eu\n"
        "ABC,2,1,SELECT,db-0,exit,yes,1700000000.6,1.5,\n"
    )
    df = scan_spans(tmp_path / "spans.csv", profile=write_profile(tmp_path)).collect()
    rows = df.select(
        "trace_id", "span_id", "parent_span_id", "service_name", "kind", "status_code"
    ).rows()
    assert rows == [
        ("00000000000000000000000000000abc", "0000000000000001", None, "web", "SERVER", "OK"),
        (
            "00000000000000000000000000000abc",
            "0000000000000002",
            "0000000000000001",
            "db-0",  # no ReplicaSet/pod suffix: kept whole
            "CLIENT",  # values are matched ignoring case
            "ERROR",
        ),
    ]
    assert df["duration_ns"].to_list() == [250_000_000, 1_500_000]
    assert (
        df["start_time"][0]
        == pl.Series(["2023-11-14 22:13:20.5"]).str.to_datetime(time_unit="ns", time_zone="UTC")[0]
    )
    assert df["trace_key"][0] == 0xABC
    # extra columns become attributes; empty cells are left out
    assert df["span_attributes"].to_list() == [{"region": "eu"}, {}]


def test_format_names_a_profile_path_and_datetime_text(tmp_path: Path) -> None:
    profile = write_profile(
        tmp_path,
        """
fields:
  trace_id: t
  span_id: s
  start_time: {column: at, unit: datetime, format: "%Y-%m-%dT%H:%M:%S%.f%z"}
  end_time: {column: until, unit: datetime}
""",
    )
    (tmp_path / "x.csv").write_text(
        "t,s,at,until\n1,2,2024-05-01T12:00:00.000001+02:00,2024-05-01 10:00:01\n"
    )
    df = scan_spans(tmp_path / "x.csv", format=str(profile)).collect()
    assert str(df["start_time"][0]) == "2024-05-01 10:00:00.000001+00:00"
    assert df["duration_ns"][0] == 999_999_000


def test_directory_with_profile_reads_only_tables(tmp_path: Path) -> None:
    (tmp_path / "README.txt").write_text("not spans")
    (tmp_path / "labels.json").write_text("{}")
    (tmp_path / "MANIFEST.tsv").write_text("file\tsha\n")
    body = "tid,sid,parent,op,pod,type,failed,begin,took\nA,1,-1,x,p,Entry,no,1,1\n"
    (tmp_path / "a.csv").write_text(body)
    with gzip.open(tmp_path / "b.csv.gz", "wt") as f:
        f.write(body.replace("A,1", "A,2"))
    df = scan_spans(tmp_path, profile=write_profile(tmp_path / "..")).collect()
    assert sorted(df["span_id"]) == ["0000000000000001", "0000000000000002"]


def test_tsv_profile_and_zip_members(tmp_path: Path) -> None:
    profile = write_profile(
        tmp_path,
        PROFILE.replace("format: csv", "format: tsv").replace("extra: span_attributes", ""),
    )
    row = "A\t1\t-1\tx\tp\tEntry\tno\t1\t1\n"
    header = "tid\tsid\tparent\top\tpod\ttype\tfailed\tbegin\ttook\n"
    archive = tmp_path / "runs.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("run1/spans.tsv", header + row)
        z.writestr("run1/log.txt", "ignored")
        z.writestr("run2/spans.tsv", header + row.replace("A\t1", "B\t1"))
    df = scan_spans(archive, profile=profile).collect()
    assert sorted(df["trace_id"].str.slice(-1)) == ["a", "b"]


# --- bad records, bad profiles ---------------------------------------------------------------

BAD_TIME = (
    "tid,sid,parent,op,pod,type,failed,begin,took\n"
    "A,1,-1,x,p,Entry,no,1,1\n"
    "A,2,1,x,p,Entry,no,soon,1\n"
    "A,3,1,x,p,Entry,no,1,-5\n"
    ",4,1,x,p,Entry,no,1,1\n"
)


def test_bad_record_fails_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text(BAD_TIME)
    lf = scan_spans(tmp_path / "bad.csv", profile=write_profile(tmp_path))  # lazy: no error yet
    with pytest.raises(DataError) as exc:
        lf.collect()
    one_line(exc, "bad.csv:3:", "column 'begin' (start_time) is not a number of s", "'soon'")


def test_bad_records_skipped_and_reported(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text(BAD_TIME)
    report = IngestReport()
    lf = scan_spans(
        tmp_path / "bad.csv", profile=write_profile(tmp_path), report=report, on_error="skip"
    )
    assert lf.collect()["span_id"].to_list() == ["0000000000000001"]
    assert report.skipped == 3
    assert report.reasons[0].endswith(
        "bad.csv:3: column 'begin' (start_time) is not a number of s ('soon')"
    )
    assert "bad.csv:4: negative duration" in report.reasons[1]
    assert "bad.csv:5: trace_id (tid) is missing" in report.reasons[2]
    assert report.warnings()[0].startswith("skipped 3 malformed records: ")


def test_end_before_start_is_an_error(tmp_path: Path) -> None:
    profile = write_profile(
        tmp_path,
        "fields: {trace_id: t, span_id: s, start_time: {column: a, unit: ms},"
        " end_time: {column: b, unit: ms}}",
    )
    (tmp_path / "x.csv").write_text("t,s,a,b\n1,1,10,5\n")
    with pytest.raises(DataError) as exc:
        scan_spans(tmp_path / "x.csv", profile=profile).collect()
    one_line(exc, "x.csv:2: end before start")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            "fields: {trace_id: t, span_id: s, start_time: {column: a, unit: ms}}\nfeilds: 1",
            "did you mean 'fields'",
        ),
        ("fields: {trace_id: t, start_time: {column: a, unit: ms}}", "fields.span_id is required"),
        ("fields: {trace_id: t, span_id: s, start_time: a}", "fields.start_time needs a unit"),
        ("fields: {trace_id: t, span_id: s, start_time: {column: a, unit: min}}", "unit must be"),
        (
            "fields: {trace_id: t, span_id: s, start_time: {column: a, unit: s},"
            " kind: {column: k, values: {x: SERVERS}}}",
            "expected UNSPECIFIED",
        ),
        (
            "fields: {trace_id: t, span_id: s, start_time: {column: a, unit: s}, spam: x}",
            "unknown key 'spam'",
        ),
        ("fields: [", "not YAML"),
    ],
)
def test_bad_profiles(tmp_path: Path, text: str, needle: str) -> None:
    (tmp_path / "x.csv").write_text("t,s,a\n1,1,1\n")
    with pytest.raises(DataError) as exc:
        scan_spans(tmp_path / "x.csv", profile=write_profile(tmp_path, text))
    one_line(exc, "mine.yaml", "invalid profile", needle)


def test_missing_column_and_unknown_profile(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("tid,sid\n1,1\n")
    with pytest.raises(DataError) as exc:
        scan_spans(tmp_path / "x.csv", profile=write_profile(tmp_path))
    one_line(exc, "x.csv", "column 'parent'", "columns: tid, sid")
    with pytest.raises(DataError) as exc:
        scan_spans(tmp_path / "x.csv", format="nezah.yaml")
    one_line(exc, "no such profile")
    with pytest.raises(DataError) as exc:
        scan_spans(tmp_path / "x.csv", profile="nezah")
    one_line(exc, "did you mean 'nezha'")


def test_unknown_csv_layout(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError) as exc:
        scan_spans(tmp_path / "x.csv")
    one_line(exc, "x.csv", "match no known layout", "--from")


# --- duplicates in the eager readers --------------------------------------------------------


@pytest.mark.skipif(not FIXTURES.is_dir(), reason="../shared/datasets absent")
def test_json_duplicates_dropped_and_counted() -> None:
    report = IngestReport()
    path = FIXTURES / "paired-otlp-jaeger" / "otlp2jaeger-out.jaeger.json"
    assert scan_spans(path, report=report).collect().height == 1
    assert report.duplicates == 1


def test_canonical_parquet_is_read_as_is(tmp_path: Path) -> None:
    """Canonical Parquet is not de-duplicated (fluo convert writes it de-duplicated)."""
    frame = pl.DataFrame(
        {"trace_id": ["0" * 31 + "1"] * 2, "span_id": ["0" * 15 + "1"] * 2, "name": ["a", "a"]}
    )
    frame.write_parquet(tmp_path / "s.parquet")
    report = IngestReport()
    assert scan_spans(tmp_path / "s.parquet", report=report).collect().height == 2
    assert report.duplicates == 0 and report.warnings() == []


# --- the command line ------------------------------------------------------------------------


def test_cli_from_profile_on_error_and_warnings(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fluo.cli import app

    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  slow:\n    when: span.duration > 1s\n")
    data = tmp_path / "spans.csv"
    good = "A,1,-1,x,p,Entry,no,1,2000\n"
    data.write_text(
        "tid,sid,parent,op,pod,type,failed,begin,took\n" + good * 2 + "A,2,1,x,p,Entry,no,?,1\n"
    )
    profile = write_profile(tmp_path)
    runner = CliRunner()
    args = ["run", str(rules), "--spans", str(data), "--from", str(profile), "-f", "jsonl"]
    failed = runner.invoke(app, args)
    assert failed.exit_code == 2
    assert "spans.csv:4: column 'begin' (start_time) is not a number of s ('?')" in failed.stderr
    skipped = runner.invoke(app, [*args, "--on-error", "skip"])
    assert skipped.exit_code == 0, skipped.stderr
    assert skipped.stdout.count('"rule":"slow"') == 1
    assert "warning: dropped 1 exact duplicate span while reading" in skipped.stderr
    assert "warning: skipped 1 malformed record: " in skipped.stderr
    unknown = runner.invoke(app, ["run", str(rules), "--spans", str(data), "--from", "nezah"])
    assert unknown.exit_code == 2 and "did you mean 'nezha'" in unknown.stderr


def test_many_files_one_scan_lines_and_hive(tmp_path: Path) -> None:
    """Files of one header are read by one scan; errors still name the file and its line,
    and Hive folders still become columns."""
    header = "tid,sid,parent,op,pod,type,failed,begin,took\n"
    for day, body in (
        (1, "A,1,-1,x,p,Entry,no,1,1\nA,2,1,x,p,Entry,no,1,1\n"),
        (2, "B,1,-1,x,p,Entry,no,1,1\nB,2,1,x,p,Entry,no,later,1\n"),
    ):
        (tmp_path / "d" / f"day={day}").mkdir(parents=True)
        (tmp_path / "d" / f"day={day}" / "spans.csv").write_text(header + body)
    profile = write_profile(tmp_path)
    with pytest.raises(DataError) as exc:
        scan_spans(tmp_path / "d", profile=profile).collect()
    one_line(exc, "day=2/spans.csv:3: column 'begin'", "'later'")
    report = IngestReport()
    df = scan_spans(tmp_path / "d", profile=profile, report=report, on_error="skip").collect()
    assert df.select("day", "span_id").rows() == [
        (1, "0000000000000001"),
        (1, "0000000000000002"),
        (2, "0000000000000001"),
    ]
    assert report.skipped == 1 and "day=2/spans.csv:3: column 'begin'" in report.reasons[0]
