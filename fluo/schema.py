"""The canonical span table fluo reads and writes, and the fields rules may name.

One row per span. Readers (fluo.ingest) turn every export format into this table;
the checker resolves rule fields against it; the compiler reads its columns.
The README ("The span table") and docs/ingest.md give the meaning, units and
normalisation of each column.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

import polars as pl

UTC_NS = pl.Datetime("ns", "UTC")
ATTRIBUTE_MAP = pl.Map(pl.String, pl.String)

SPAN_KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
STATUS_CODES = ("UNSET", "OK", "ERROR")

#: Column name -> Polars dtype of the canonical span table.
CANONICAL_COLUMNS: dict[str, pl.DataType] = {
    "trace_id": pl.String(),  # lowercase hex, 32 chars (non-hex source ids kept as they are)
    "span_id": pl.String(),  # lowercase hex, 16 chars
    "parent_span_id": pl.String(),  # null for roots
    "trace_key": pl.UInt64(),  # last 16 hex digits of trace_id (else a hash): a fast group key
    "name": pl.String(),
    "kind": pl.String(),  # one of SPAN_KINDS
    "service_name": pl.String(),  # resource attribute service.name
    "start_time": UTC_NS,
    "end_time": UTC_NS,
    "duration_ns": pl.Int64(),  # end_time - start_time
    "status_code": pl.String(),  # one of STATUS_CODES
    "status_message": pl.String(),
    "scope_name": pl.String(),
    "scope_version": pl.String(),
    "span_attributes": ATTRIBUTE_MAP,  # every span attribute, values as text
    "resource_attributes": ATTRIBUTE_MAP,  # every resource attribute, values as text
}

#: Columns a table must have for fluo to report a signal.
REQUIRED_COLUMNS = ("trace_id", "span_id")

#: Promoted (wide, typed) attribute columns are named with these prefixes plus the key,
#: e.g. ``attr.http.url`` or ``resource.deployment.environment``. A promoted column
#: holds the same values as the map entry, with the attribute's own type.
SPAN_ATTRIBUTE_PREFIX = "attr."
RESOURCE_ATTRIBUTE_PREFIX = "resource."


def promoted_column(scope: str, key: str) -> str:
    """The name of the wide column that holds attribute `key` of `scope` ("span" or "resource")."""
    prefix = SPAN_ATTRIBUTE_PREFIX if scope == "span" else RESOURCE_ATTRIBUTE_PREFIX
    return prefix + key


def attribute_map_column(scope: str) -> str:
    """The name of the map column that holds every attribute of `scope`."""
    return "span_attributes" if scope == "span" else "resource_attributes"


class Type(Enum):
    """The types of the rule language. Enums (kind, status) are strings with a closed set."""

    STRING = "string"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    DURATION = "duration"
    TIMESTAMP = "timestamp"
    KIND = "kind"
    STATUS = "status"
    NULL = "null"
    #: An attribute read from a text map: its type is decided by what it is compared with.
    TEXT = "text"
    LIST = "list"

    @property
    def is_numeric(self) -> bool:
        return self in (Type.INT, Type.FLOAT)

    @property
    def is_stringlike(self) -> bool:
        return self in (Type.STRING, Type.KIND, Type.STATUS, Type.TEXT)


def type_of_dtype(dtype: pl.DataType) -> Type | None:
    """The rule-language type of a Polars column type, or None if rules cannot use it."""
    if dtype.is_integer():
        return Type.INT
    if dtype.is_float() or dtype.is_decimal():
        return Type.FLOAT
    if dtype == pl.Boolean:
        return Type.BOOL
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum | pl.Categorical):
        return Type.STRING
    if isinstance(dtype, pl.Datetime):
        return Type.TIMESTAMP
    if isinstance(dtype, pl.Duration):
        return Type.DURATION
    return None


@dataclass(frozen=True, slots=True)
class Intrinsic:
    """A built-in span field: its canonical spelling, type and the columns it is computed from."""

    name: str
    type: Type
    columns: tuple[str, ...]
    doc: str


#: Built-in span fields by canonical name (as written after ``span.``).
INTRINSICS: dict[str, Intrinsic] = {
    i.name: i
    for i in (
        Intrinsic("name", Type.STRING, ("name",), "span name"),
        Intrinsic("kind", Type.KIND, ("kind",), "SERVER, CLIENT, INTERNAL, PRODUCER, CONSUMER"),
        Intrinsic("status", Type.STATUS, ("status_code",), "UNSET, OK or ERROR"),
        Intrinsic("status_message", Type.STRING, ("status_message",), "status description"),
        Intrinsic("service", Type.STRING, ("service_name",), "resource service.name"),
        Intrinsic("duration", Type.DURATION, ("duration_ns",), "end - start"),
        Intrinsic("durationMs", Type.FLOAT, ("duration_ns",), "duration in milliseconds"),
        Intrinsic("start", Type.TIMESTAMP, ("start_time",), "start time (UTC)"),
        Intrinsic("end", Type.TIMESTAMP, ("end_time",), "end time (UTC)"),
        Intrinsic("trace_id", Type.STRING, ("trace_id",), "trace id, lowercase hex"),
        Intrinsic("span_id", Type.STRING, ("span_id",), "span id, lowercase hex"),
        Intrinsic("parent_id", Type.STRING, ("parent_span_id",), "parent span id; null at roots"),
        Intrinsic("scope_name", Type.STRING, ("scope_name",), "instrumentation scope name"),
        Intrinsic("scope_version", Type.STRING, ("scope_version",), "instrumentation scope"),
    )
}

#: Other spellings accepted for intrinsics (seed rules, OTTL and OTLP names).
INTRINSIC_ALIASES: dict[str, str] = {
    "status.code": "status",
    "status_code": "status",
    "status.message": "status_message",
    "service.name": "service",
    "service_name": "service",
    "duration_ms": "durationMs",
    "start_time": "start",
    "end_time": "end",
    "traceId": "trace_id",
    "spanId": "span_id",
    "parent_span_id": "parent_id",
    "parentSpanId": "parent_id",
    "scope.name": "scope_name",
    "scope.version": "scope_version",
}

#: Columns from which an intrinsic can be derived when its own column is missing.
DERIVATIONS: dict[str, tuple[tuple[str, ...], ...]] = {
    "duration_ns": (("start_time", "end_time"),),
    "end_time": (("start_time", "duration_ns"),),
}


@dataclass(frozen=True)
class SpanSchema:
    """The columns of one span table, as the checker and compiler see them."""

    columns: Mapping[str, pl.DataType]

    @classmethod
    def canonical(cls) -> SpanSchema:
        return cls(dict(CANONICAL_COLUMNS))

    @classmethod
    def of(cls, frame: pl.LazyFrame | pl.DataFrame) -> SpanSchema:
        schema = frame.collect_schema() if isinstance(frame, pl.LazyFrame) else frame.schema
        return cls(dict(schema))

    def has(self, column: str) -> bool:
        return column in self.columns

    def can_provide(self, column: str) -> bool:
        """Whether `column` exists or can be derived from columns that exist."""
        if column in self.columns:
            return True
        return any(all(c in self.columns for c in alt) for alt in DERIVATIONS.get(column, ()))

    def has_map(self, scope: str) -> bool:
        dtype = self.columns.get(attribute_map_column(scope))
        return isinstance(dtype, pl.Map)

    def promoted(self, scope: str) -> dict[str, pl.DataType]:
        """Promoted attribute columns of `scope`, by attribute key."""
        prefix = SPAN_ATTRIBUTE_PREFIX if scope == "span" else RESOURCE_ATTRIBUTE_PREFIX
        return {
            name[len(prefix) :]: dtype
            for name, dtype in self.columns.items()
            if name.startswith(prefix)
        }

    def field_names(self) -> list[str]:
        """Every field a rule may name on this table, in rule spelling (for messages)."""
        names = [
            f"span.{i.name}" for i in INTRINSICS.values() if all(map(self.can_provide, i.columns))
        ]
        if self.has_map("span"):
            names.append('span.attributes["<any key>"]')
        names += [f'span.attributes["{k}"]' for k in sorted(self.promoted("span"))]
        if self.has_map("resource"):
            names.append('resource.attributes["<any key>"]')
        names += [f'resource.attributes["{k}"]' for k in sorted(self.promoted("resource"))]
        return names


def empty_spans() -> pl.DataFrame:
    """An empty canonical span table."""
    return pl.DataFrame(schema=CANONICAL_COLUMNS)
