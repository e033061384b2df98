"""Shared fixtures: tiny span tables built inline, and where the shared datasets live."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from fluo.schema import ATTRIBUTE_MAP, CANONICAL_COLUMNS

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"
T0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)


def spans(*rows: dict[str, Any], promoted: dict[str, pl.DataType] | None = None) -> pl.DataFrame:
    """A canonical span table from a few rows; unspecified fields get plain defaults.

    Each row may give `attrs` (span attributes, values as text in the map) and
    `resource` (resource attributes). `promoted` names attribute keys to copy
    into typed `attr.<key>` columns as well.
    """
    records = []
    for i, row in enumerate(rows):
        row = dict(row)
        duration = row.pop("duration_ns", 100_000_000)
        start = row.pop("start_time", T0 + dt.timedelta(seconds=i))
        attrs = row.pop("attrs", {})
        record = {
            "trace_id": f"{i + 1:032x}",
            "span_id": row.pop("span_id", f"{i + 1:016x}"),
            "parent_span_id": None,
            "trace_key": i + 1,
            "name": "op",
            "kind": "SERVER",
            "service_name": "svc",
            "start_time": start,
            "end_time": start + dt.timedelta(microseconds=duration / 1000),
            "duration_ns": duration,
            "status_code": "UNSET",
            "status_message": None,
            "scope_name": None,
            "scope_version": None,
            "span_attributes": None if attrs is None else {k: str(v) for k, v in attrs.items()},
            "resource_attributes": row.pop("resource", {}),
        }
        record.update(row)
        for key in promoted or {}:
            record[f"attr.{key}"] = (attrs or {}).get(key)
        records.append(record)
    schema = dict(CANONICAL_COLUMNS)
    schema["span_attributes"] = ATTRIBUTE_MAP
    for key, dtype in (promoted or {}).items():
        schema[f"attr.{key}"] = dtype
    return pl.DataFrame(records, schema=schema)


@pytest.fixture
def shared_datasets() -> Path:
    if not SHARED_DATASETS.is_dir():
        pytest.skip("../shared/datasets is not present")
    return SHARED_DATASETS


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/golden files")
