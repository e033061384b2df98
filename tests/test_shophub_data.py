"""Tests of the ShopHub trace generator (data/generate_shophub.py) and its committed sample."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import ModuleType

import polars as pl
import pytest
from polars.testing import assert_frame_equal

if importlib.util.find_spec("fluo") is None:  # run without the project installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fluo.schema import CANONICAL_COLUMNS, SPAN_KINDS, STATUS_CODES

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "shophub" / "spans.parquet"
MS = 1_000_000


def _load_generator() -> ModuleType:
    """Import data/generate_shophub.py (data/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "generate_shophub", ROOT / "data" / "generate_shophub.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


@pytest.fixture(scope="module")
def sample() -> Iterator[pl.DataFrame]:
    """The committed sample as read from disk."""
    yield pl.read_parquet(SAMPLE)


@pytest.fixture(scope="module")
def small() -> Iterator[pl.DataFrame]:
    """A small generated set for the quick structural checks."""
    yield gen.generate(traces=400, seed=11)


def num(value: object) -> float:
    """A numeric aggregate (min, median, quantile) as a float."""
    assert isinstance(value, int | float), value
    return float(value)


def expected_schema() -> dict[str, pl.DataType]:
    """Canonical columns followed by the promoted attribute columns."""
    return {**CANONICAL_COLUMNS, **gen.PROMOTED_COLUMNS}


def payment_api(frame: pl.DataFrame) -> pl.DataFrame:
    """payment-gateway spans of the /payment-api/* endpoints, flagged in/out of the incident."""
    begin, end = gen.incident_window()
    return frame.filter(
        pl.col("service_name") == "payment-gateway",
        pl.col("attr.http.url").str.starts_with("/payment-api/"),
    ).with_columns(pl.col("start_time").is_between(begin, end, closed="left").alias("incident"))


# -- determinism and the committed sample -------------------------------------------------


def test_same_seed_gives_identical_frames() -> None:
    assert_frame_equal(gen.generate(traces=300, seed=3), gen.generate(traces=300, seed=3))


def test_different_seed_gives_different_frames() -> None:
    a = gen.generate(traces=300, seed=3)
    b = gen.generate(traces=300, seed=4)
    assert not a.equals(b)
    assert set(a["trace_id"]).isdisjoint(set(b["trace_id"]))


def test_committed_sample_is_regenerated_exactly(sample: pl.DataFrame) -> None:
    regenerated = gen.generate(traces=gen.SAMPLE_TRACES, seed=gen.SAMPLE_SEED)
    assert_frame_equal(sample, regenerated)


def test_committed_sample_size_and_order(sample: pl.DataFrame) -> None:
    assert 1.5 * 2**20 < SAMPLE.stat().st_size < 5 * 2**20
    assert sample["trace_id"].n_unique() == gen.SAMPLE_TRACES
    assert sample["start_time"].is_sorted()
    assert sample["start_time"].min() >= gen.DEFAULT_START
    roots = sample.filter(pl.col("parent_span_id").is_null())
    assert roots["start_time"].max() < gen.DEFAULT_START + gen.DEFAULT_DURATION


def test_cli_writes_what_generate_returns(tmp_path: Path) -> None:
    out = tmp_path / "spans.parquet"
    assert gen.main(["--out", str(out), "--traces", "50", "--seed", "5"]) == 0
    assert_frame_equal(pl.read_parquet(out), gen.generate(traces=50, seed=5))


# -- schema and ids -----------------------------------------------------------------------


def test_schema_is_canonical_plus_promoted(sample: pl.DataFrame, small: pl.DataFrame) -> None:
    assert list(CANONICAL_COLUMNS) == sample.columns[: len(CANONICAL_COLUMNS)]
    assert dict(sample.schema) == expected_schema()
    assert dict(small.schema) == expected_schema()
    assert list(small.columns) == list(expected_schema())


def test_ids_are_lowercase_hex(sample: pl.DataFrame) -> None:
    assert sample["trace_id"].str.contains(r"^[0-9a-f]{32}$").all()
    assert sample["span_id"].str.contains(r"^[0-9a-f]{16}$").all()
    parents = sample["parent_span_id"].drop_nulls()
    assert parents.str.contains(r"^[0-9a-f]{16}$").all()
    assert sample["span_id"].n_unique() == sample.height


def test_trace_key_is_the_last_16_hex_digits(sample: pl.DataFrame) -> None:
    expected = pl.col("trace_id").str.slice(-16).str.to_integer(base=16, dtype=pl.UInt64)
    assert sample.select((pl.col("trace_key") == expected).all()).item()


def test_enums_and_status_messages(sample: pl.DataFrame) -> None:
    assert set(sample["kind"]) == set(SPAN_KINDS) - {"UNSPECIFIED"}
    assert set(sample["status_code"]) == set(STATUS_CODES)
    errors = sample.filter(pl.col("status_code") == "ERROR")
    assert errors["status_message"].null_count() == 0
    assert errors["span_attributes"].map.contains_key("error.type").all()
    others = sample.filter(pl.col("status_code") != "ERROR")
    assert others["status_message"].null_count() == others.height
    assert not others["span_attributes"].map.contains_key("error.type").any()
    codes = set(sample["attr.http.status_code"].drop_nulls())
    assert {200, 201, 404, 500, 502, 503} <= codes
    http_errors = errors.filter(pl.col("kind").is_in(["SERVER", "CLIENT"]))
    assert num(http_errors["attr.http.status_code"].drop_nulls().min()) >= 500


def test_promoted_columns_match_the_map(small: pl.DataFrame) -> None:
    for name, dtype in gen.PROMOTED_COLUMNS.items():
        key = name.removeprefix("attr.")
        from_map = small["span_attributes"].map.get(key).cast(dtype)
        assert small[name].equals(from_map), name
        assert small[name].null_count() < small.height, name
    keys = small["span_attributes"].map.keys()
    assert (keys.list.len() == keys.list.unique().list.len()).all(), "duplicate keys"


def test_resource_attributes(small: pl.DataFrame) -> None:
    res = small["resource_attributes"]
    assert (res.map.get("service.name") == small["service_name"]).all()
    assert (res.map.get("deployment.environment") == "production").all()
    pods = res.map.get("k8s.pod.name")
    assert (pods.str.head(-12) == small["service_name"]).all()
    assert pods.str.contains(r"-[a-z0-9]{5}-[a-z0-9]{5}$").all()
    assert res.map.get("host.name").null_count() == 0
    assert res.map.get("service.version").null_count() == 0
    assert set(small["service_name"]) == set(gen.SERVICES)


# -- span trees and timing ----------------------------------------------------------------


def test_parents_resolve_within_the_trace(sample: pl.DataFrame) -> None:
    roots = sample.group_by("trace_id").agg(pl.col("parent_span_id").null_count().alias("n"))
    assert (roots["n"] == 1).all()
    parents = sample.select(
        "trace_id",
        pl.col("span_id").alias("parent_span_id"),
        pl.col("start_time").alias("p_start"),
        pl.col("end_time").alias("p_end"),
    )
    children = sample.filter(pl.col("parent_span_id").is_not_null())
    joined = children.join(parents, on=["trace_id", "parent_span_id"], how="left")
    assert joined["p_start"].null_count() == 0
    # Children lie within their parents, except asynchronous consumers, which start
    # after the producer they hang from.
    sync = joined.filter(pl.col("kind") != "CONSUMER")
    assert (sync["start_time"] >= sync["p_start"]).all()
    assert (sync["end_time"] <= sync["p_end"]).all()
    consumers = joined.filter(pl.col("kind") == "CONSUMER")
    assert consumers.height > 0
    assert (consumers["start_time"] > consumers["p_end"]).all()


def test_times_and_durations(sample: pl.DataFrame) -> None:
    assert (sample["start_time"] <= sample["end_time"]).all()
    assert (
        sample["duration_ns"] == (sample["end_time"] - sample["start_time"]).dt.total_nanoseconds()
    ).all()
    db = sample.filter(pl.col("attr.db.system") == "postgresql")["duration_ns"] / MS
    assert 1 < num(db.median()) < 20
    normal = (
        payment_api(sample).filter(~pl.col("incident"), pl.col("attr.http.status_code") != 429)[
            "duration_ns"
        ]
        / MS
    )
    assert num(normal.quantile(0.05)) > 80
    assert num(normal.quantile(0.95)) < 250


def test_rpc_pairs_and_names(sample: pl.DataFrame) -> None:
    names = set(sample["name"])
    for name in (
        "GET /products/{id}",
        "GET /cart",
        "POST /checkout",
        "POST /payment-api/charge",
        "POST /payment-api/authorize",
        "POST /payment-api/refund",
        "payment.charge",
        "fraud.check",
        "SELECT products",
        "INSERT orders",
        "orders publish",
        "orders process",
    ):
        assert name in names, name
    # Every SERVER span (but the roots) hangs from a CLIENT span of the same name.
    parents = sample.select(
        "trace_id",
        pl.col("span_id").alias("parent_span_id"),
        pl.col("kind").alias("p_kind"),
        pl.col("name").alias("p_name"),
        pl.col("service_name").alias("p_service"),
    )
    servers = sample.filter(pl.col("kind") == "SERVER", pl.col("parent_span_id").is_not_null())
    joined = servers.join(parents, on=["trace_id", "parent_span_id"])
    assert joined.height == servers.height
    assert (joined["p_kind"] == "CLIENT").all()
    assert (joined["p_name"] == joined["name"]).all()
    assert (joined["p_service"] != joined["service_name"]).all()
    assert set(sample["attr.db.system"].drop_nulls()) == {"postgresql", "redis"}
    assert set(sample["attr.rpc.system"].drop_nulls()) == {"grpc"}


# -- payments, fraud checks, retries ------------------------------------------------------


def test_payments_and_the_missing_fraud_checks(sample: pl.DataFrame) -> None:
    charges = sample.filter(pl.col("name") == "payment.charge")
    amount = charges["span_attributes"].map.get("payment.amount").cast(pl.Float64)
    assert amount.null_count() == 0
    assert num(amount.min()) > 0
    assert (amount > 1000).sum() > 100
    currency = set(charges["span_attributes"].map.get("payment.currency"))
    assert currency == {"USD", "EUR"}
    per_trace = sample.group_by("trace_id").agg(
        (
            pl.col("name").is_in(["payment.charge", "payment.authorize"])
            & (pl.col("span_attributes").map.get("payment.amount").cast(pl.Float64) > 1000)
        )
        .any()
        .alias("high"),
        (pl.col("name") == "fraud.check").any().alias("checked"),
    )
    assert per_trace.filter(~pl.col("high"), pl.col("checked")).height == 0
    high = per_trace.filter("high")
    missing = high.filter(~pl.col("checked")).height
    assert 2 <= missing <= 0.025 * high.height


def test_retries(sample: pl.DataFrame) -> None:
    calls = (
        sample.filter(pl.col("kind") == "CLIENT", pl.col("name") == "POST /payment-api/charge")
        .group_by("trace_id")
        .agg(
            pl.len(),
            pl.col("span_attributes").map.get("retry.count").cast(pl.Int64).max().alias("retry"),
        )
    )
    retried = calls.filter(pl.col("len") > 1)
    assert 10 <= retried.height <= 0.05 * calls.height
    assert calls["len"].max() == 5
    assert (calls["retry"] == calls["len"] - 1).all()


# -- the incident -------------------------------------------------------------------------


def test_incident_window() -> None:
    begin, end = gen.incident_window()
    assert begin == gen.DEFAULT_START + timedelta(minutes=50)
    assert end - begin == timedelta(minutes=25)


def test_incident_latency(sample: pl.DataFrame) -> None:
    pay = payment_api(sample).filter(pl.col("attr.http.status_code") != 429)
    slow = pl.col("duration_ns") > 300 * MS
    stats = pay.group_by("incident").agg(pl.len(), slow.sum().alias("slow"))
    inside = stats.filter("incident").row(0, named=True)
    outside = stats.filter(~pl.col("incident")).row(0, named=True)
    assert inside["len"] > 300 and outside["len"] > 1500
    assert inside["slow"] / inside["len"] > 0.9
    assert outside["slow"] <= 10
    # The delay shows up in every ancestor: checkout and frontend roots get slower too.
    roots = sample.filter(pl.col("name") == "POST /checkout", pl.col("kind") == "SERVER")
    begin, end = gen.incident_window()
    in_window = pl.col("start_time").is_between(begin, end, closed="left")
    median = roots.group_by(in_window.alias("incident")).agg(pl.col("duration_ns").median())
    by = dict(zip(median["incident"], median["duration_ns"], strict=True))
    assert by[True] - by[False] > 250 * MS


def test_incident_error_rate(sample: pl.DataFrame) -> None:
    servers = payment_api(sample).filter(pl.col("kind") == "SERVER")
    rates = servers.group_by("incident").agg((pl.col("status_code") == "ERROR").mean().alias("r"))
    by = dict(zip(rates["incident"], rates["r"], strict=True))
    assert 0.015 < by[True] < 0.04
    assert 0.002 < by[False] < 0.009
    assert by[True] > 3 * by[False]
