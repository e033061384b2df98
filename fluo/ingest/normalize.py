"""Normalisation shared by every span reader (OTLP JSON now; Jaeger and Zipkin later).

Readers collect raw columns (ids as given, times as integer nanoseconds, enums already
spelled canonically, attributes as text maps) and call `finish_spans` for the rest. Columnar
readers (Parquet, IPC) call `canonical_casts` to check and align a table's column types.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import polars as pl
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]

from fluo.errors import DataError
from fluo.ingest.report import ReadTally
from fluo.schema import (
    ATTRIBUTE_MAP,
    CANONICAL_COLUMNS,
    REQUIRED_COLUMNS,
    SPAN_ATTRIBUTE_PREFIX,
    SPAN_KINDS,
    STATUS_CODES,
)

TRACE_ID_HEX = 32
_PAIR = pl.Struct({"key": pl.String, "value": pl.String})
SPAN_ID_HEX = 16


def _spellings(names: Sequence[str], prefix: str) -> dict[object, str]:
    """Every spelling of each name: its number, upper/lower/Title case, prefixed."""
    table: dict[object, str] = {}
    for number, name in enumerate(names):
        for key in (number, str(number), name, name.lower(), name.capitalize(), prefix + name):
            table[key] = name
    return table


#: Every accepted spelling of a span kind: OTLP numbers, SPAN_KIND_*, upper/lower/Title case.
KIND_BY_SPELLING = _spellings(SPAN_KINDS, "SPAN_KIND_")
#: Every accepted spelling of a status code: 0/1/2, STATUS_CODE_*, upper/lower/Title case.
STATUS_BY_SPELLING = _spellings(STATUS_CODES, "STATUS_CODE_")


def normalize_kind(value: object) -> str:
    """The canonical kind for any OTLP spelling; unknown or missing values are UNSPECIFIED."""
    try:
        return KIND_BY_SPELLING.get(value, "UNSPECIFIED")
    except TypeError:  # unhashable (a list or an object)
        return "UNSPECIFIED"


def normalize_status(value: object) -> str:
    """The canonical status code for any OTLP spelling; unknown or missing values are UNSET."""
    try:
        return STATUS_BY_SPELLING.get(value, "UNSET")
    except TypeError:
        return "UNSET"


def format_double(value: float) -> str:
    """A double as the OpenTelemetry Collector writes it as text (Go/ES6 JSON number form).

    Shortest round-trip digits; plain notation for 1e-6 <= |x| < 1e21, else ``1e+21`` /
    ``1.5e-7``; integral values have no ``.0``. NaN and infinities are ``NaN``, ``Infinity``
    and ``-Infinity`` (the proto3 JSON spellings).
    """
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    text = repr(value)
    magnitude = abs(value)
    if magnitude == 0 or 1e-6 <= magnitude < 1e21:
        if "e" in text:
            text = format(Decimal(text), "f")
        return text[:-2] if text.endswith(".0") else text
    mantissa, _, exponent = text.partition("e")
    sign = exponent[0] if exponent[:1] in ("+", "-") else "+"
    digits = exponent.lstrip("+-").lstrip("0") or "0"
    return f"{mantissa}e{sign}{digits}"


def _int_text(value: object) -> str:
    """An intValue (string or number) in decimal."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"intValue must be an integer, not {value!r}")
    return str(int(value))


def _double(value: object) -> float:
    """A doubleValue (number or proto3 JSON string such as "NaN") as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"doubleValue must be a number, not {value!r}")
    return float(value)


def _bool_text(value: object) -> str:
    """A boolValue as true/false."""
    if value is True or value == "true":
        return "true"
    if value is False or value == "false":
        return "false"
    raise ValueError(f"boolValue must be true or false, not {value!r}")


def _string_text(value: object) -> str:
    """A stringValue or bytesValue as text."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    raise ValueError(f"stringValue must be a string, not {value!r}")


def any_value_text(value: object) -> str:
    """An OTLP AnyValue as text, the way the collector's ``Value.AsString()`` renders it.

    stringValue as is, intValue in decimal, doubleValue by `format_double`, boolValue
    ``true``/``false``, bytesValue as the base64 given, arrayValue and kvlistValue as compact
    JSON (map keys sorted), an empty value as "". Raises ValueError on a malformed value.
    """
    if not isinstance(value, dict):
        if value is None:
            return ""
        raise ValueError(f"attribute value must be an object, not {value!r}")
    if "stringValue" in value:
        return _string_text(value["stringValue"])
    if "intValue" in value:
        return _int_text(value["intValue"])
    if "boolValue" in value:
        return _bool_text(value["boolValue"])
    if "doubleValue" in value:
        return format_double(_double(value["doubleValue"]))
    if "bytesValue" in value:
        return _string_text(value["bytesValue"])
    if "arrayValue" in value or "kvlistValue" in value:
        return any_value_json(value)
    return ""


def any_value_json(value: object) -> str:
    """An OTLP AnyValue as compact JSON text (strings quoted, maps with sorted keys)."""
    if not isinstance(value, dict):
        if value is None:
            return "null"
        raise ValueError(f"attribute value must be an object, not {value!r}")
    if "stringValue" in value:
        return json.dumps(_string_text(value["stringValue"]), ensure_ascii=False)
    if "intValue" in value:
        text = _int_text(value["intValue"])
        return text if text.lstrip("-").isdigit() else json.dumps(text)
    if "boolValue" in value:
        return _bool_text(value["boolValue"])
    if "doubleValue" in value:
        number = _double(value["doubleValue"])
        text = format_double(number)
        return text if math.isfinite(number) else json.dumps(text)
    if "bytesValue" in value:
        return json.dumps(_string_text(value["bytesValue"]))
    if "arrayValue" in value:
        items = _values_list(value["arrayValue"])
        return "[" + ",".join(any_value_json(v) for v in items) + "]"
    if "kvlistValue" in value:
        entries = {}
        for kv in _values_list(value["kvlistValue"]):
            if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
                raise ValueError(f"kvlistValue entry must be {{key, value}}, not {kv!r}")
            entries[kv["key"]] = kv.get("value")
        body = ",".join(
            json.dumps(k, ensure_ascii=False) + ":" + any_value_json(entries[k])
            for k in sorted(entries)
        )
        return "{" + body + "}"
    return "null"


def _values_list(container: object) -> list[Any]:
    """The `values` list of an arrayValue or kvlistValue."""
    if container is None:
        return []
    if not isinstance(container, dict):
        raise ValueError(f"expected an object with 'values', not {container!r}")
    values = container.get("values") or []
    if not isinstance(values, list):
        raise ValueError(f"'values' must be a list, not {values!r}")
    return values


class MapColumn:
    """Builds a Map(String, String) column from rows of key/value pairs, via one Arrow array."""

    __slots__ = ("keys", "offsets", "values")

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.values: list[str] = []
        self.offsets: list[int] = [0]

    def end_row(self) -> None:
        """Close the current row (its pairs are those added since the last call)."""
        self.offsets.append(len(self.keys))

    def add_row(self, pairs: Mapping[str, str]) -> None:
        """Add one whole row."""
        self.keys.extend(pairs)
        self.values.extend(pairs.values())
        self.offsets.append(len(self.keys))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def truncate(self, rows: int) -> None:
        """Keep the first `rows` rows; the pairs of an unfinished row are dropped too."""
        del self.offsets[rows + 1 :]
        del self.keys[self.offsets[-1] :]
        del self.values[self.offsets[-1] :]

    def series(self, name: str) -> pl.Series:
        """The finished column."""
        return map_series(name, self.offsets, self.keys, self.values)


def map_series(name: str, offsets: Any, keys: Any, values: Any) -> pl.Series:
    """A Map(String, String) series from row offsets (rows + 1 of them) and flat keys/values.

    Each of the three is a Python list (of int / str) or an Arrow array.
    """
    keys, values = _large_strings(keys), _large_strings(values)
    if keys.type != values.type:
        keys, values = keys.cast(pa.large_string()), values.cast(pa.large_string())
    if not isinstance(offsets, pa.Array):
        offsets = pa.array(offsets, pa.int64())
    offsets = offsets.cast(pa.int32() if len(keys) < 2**31 else pa.int64())
    array = pa.MapArray.from_arrays(offsets, keys, values)
    series = pl.Series(name, array)
    return series if series.dtype == ATTRIBUTE_MAP else series.cast(ATTRIBUTE_MAP)


def _large_strings(values: Any) -> Any:
    """Keys or values as an Arrow string array."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return values if values.type == pa.string() else values.cast(pa.large_string())
    return pa.array(values, pa.large_string())


def id_expr(column: str | pl.Expr, width: int) -> pl.Expr:
    """An id as canonical text: hex lowercased and left-padded with zeros to `width` digits.

    A non-hex id that is the base64 form of exactly width/2 bytes (proto3 JSON, as some
    tools write it) becomes hex; any other non-hex id is kept as it is.
    """
    raw = pl.col(column) if isinstance(column, str) else column
    low = raw.str.to_lowercase()
    is_hex = low.str.contains(r"^[0-9a-f]+$")
    chars = (width // 2 + 2) // 3 * 4
    pad = chars - (width // 2 * 4 + 2) // 3
    is_b64 = raw.str.contains(rf"^[A-Za-z0-9+/]{{{chars - pad}}}={{{pad}}}$")
    decoded = pl.when(is_b64).then(raw).str.decode("base64", strict=False).bin.encode("hex")
    return (
        pl.when(is_hex)
        .then(low.str.pad_start(width, "0"))
        .when(decoded.is_not_null())
        .then(decoded)
        .otherwise(raw)
    )


def parent_id_expr(column: str | pl.Expr, null_values: Iterable[str] = ("",)) -> pl.Expr:
    """A parent span id as canonical text; empty, listed or all-zero ids become null."""
    raw = pl.col(column) if isinstance(column, str) else column
    normal = id_expr(raw, SPAN_ID_HEX)
    is_root = raw.is_in(list(null_values)) | normal.str.contains(r"^0+$")
    return pl.when(is_root).then(None).otherwise(normal)


def trace_key_expr(column: str | pl.Expr) -> pl.Expr:
    """The 64-bit integer key of a canonical trace id, never null for a non-null id.

    Hex ids give their last 16 hex digits (so that 64-bit ids, padded with zeros on
    the left, still get distinct keys); other ids (SkyWalking's, say) a BLAKE2b
    hash of the text, which is stable across versions and machines, unlike Polars'
    own `hash()`. Distinct traces share a key with probability about n^2 / 2^65.
    """
    tid = pl.col(column) if isinstance(column, str) else column
    hex_key = tid.str.slice(-16).str.to_integer(base=16, dtype=pl.UInt64, strict=False)
    is_hex = tid.str.contains(r"^[0-9a-f]{16,}$")
    hashed = tid.map_batches(_hash_non_hex_ids, return_dtype=pl.UInt64)
    return pl.when(is_hex).then(hex_key).otherwise(hashed)


def _hash_non_hex_ids(ids: pl.Series) -> pl.Series:
    """BLAKE2b-64 of each id that is not hex (hashed once per distinct id; ingest only)."""
    distinct = ids.filter(~ids.str.contains(r"^[0-9a-f]{16,}$").fill_null(True)).unique()
    distinct = distinct.drop_nulls()
    keys = [
        int.from_bytes(hashlib.blake2b(v.encode(), digest_size=8).digest(), "big")
        for v in distinct.to_list()
    ]
    table = pl.DataFrame({"id": distinct, "key": pl.Series(keys, dtype=pl.UInt64)})
    looked_up = ids.to_frame("id").join(table, on="id", how="left", maintain_order="left")
    return looked_up["key"]


def finish_spans(raw: pl.DataFrame) -> pl.DataFrame:
    """The canonical span table from a reader's raw columns.

    `raw` has trace_id, span_id, parent_span_id (ids as given), start_ns and end_ns (Int64
    unix nanoseconds, null if unknown), and the canonical columns kind, status_code, name,
    status_message, scope_name, scope_version, span_attributes and resource_attributes;
    service_name, if absent, is read from resource attribute service.name. Missing columns
    are null. The result has exactly CANONICAL_COLUMNS, in order.
    """
    return canonical_frame(raw.lazy()).collect(engine="in-memory")


class SpanColumns:
    """Raw columns of the spans of one file, one append per span, and their canonical frame.

    The JSON and protobuf readers append to every per-span list and to `span_attributes`,
    `lines` last (so ``len(self)`` counts whole spans and `truncate` undoes a span that broke
    halfway). Subclasses add their own columns (`_per_span`, `raw_columns`). `finish` builds
    the frame with `finish_spans` and checks each row (`row_problems`): a bad row raises
    its DataError, or with ``on_error="skip"`` is left out and counted in `tally`.
    """

    _per_span: tuple[str, ...] = (
        "trace_ids",
        "span_ids",
        "parents",
        "names",
        "kinds",
        "starts",
        "ends",
        "codes",
        "messages",
        "lines",
    )

    def __init__(self, path: str, tally: ReadTally | None = None) -> None:
        self.path = path
        self.tally = tally if tally is not None else ReadTally()
        self.trace_ids: list[str] = []
        self.span_ids: list[str] = []
        self.parents: list[str | None] = []
        self.names: list[str] = []
        self.kinds: list[str | None] = []
        self.starts: list[int | None] = []
        self.ends: list[int | None] = []
        self.codes: list[str | None] = []
        self.messages: list[str | None] = []
        self.lines: list[int] = []
        self.span_attributes = MapColumn()
        #: rows found bad before the frame is built (values that cannot make a column)
        self.invalid: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.lines)

    def truncate(self, rows: int) -> None:
        """Keep the first `rows` spans (undo a span that failed halfway)."""
        for name in self._per_span:
            del getattr(self, name)[rows:]
        self.span_attributes.truncate(rows)

    def bad_row(self, row: int, reason: str) -> None:
        """Row `row` cannot be read: raise (fail), or mark it to be left out (skip)."""
        error = DataError(reason, path=self.path, record=self.lines[row])
        self.tally.bad(error)
        self.invalid.setdefault(row, str(error))

    def raw_columns(self) -> dict[str, pl.Series]:
        """The columns `finish_spans` reads (subclasses add theirs)."""
        return {
            "trace_id": pl.Series(self.trace_ids, dtype=pl.String),
            "span_id": pl.Series(self.span_ids, dtype=pl.String),
            "parent_span_id": pl.Series(self.parents, dtype=pl.String),
            "name": pl.Series(self.names, dtype=pl.String),
            "kind": pl.Series(self.kinds, dtype=pl.String),
            "start_ns": pl.Series(self.starts, dtype=pl.Int64),
            "end_ns": pl.Series(self.ends, dtype=pl.Int64),
            "status_code": pl.Series(self.codes, dtype=pl.String),
            "status_message": pl.Series(self.messages, dtype=pl.String),
            "span_attributes": self.span_attributes.series("span_attributes"),
        }

    def finish(self) -> pl.DataFrame:
        """The canonical frame of every span added, bad rows raised or left out."""
        if not self.lines:
            return pl.DataFrame(schema=CANONICAL_COLUMNS)
        try:
            frame = finish_spans(pl.DataFrame(self.raw_columns()))
        except DataError:
            raise
        except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError) as exc:
            # e.g. a non-string attribute key, or text that is not valid Unicode
            text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise DataError(f"malformed span data: {text}", path=self.path) from None
        problems = row_problems(frame)
        if problems is not None:
            for row in problems.is_not_null().arg_true().to_list():
                self.bad_row(row, problems[row])
        if not self.invalid:
            return frame
        keep = pl.Series(range(frame.height)).is_in(list(self.invalid)).not_()
        return frame.filter(keep)


def row_problems(frame: pl.DataFrame) -> pl.Series | None:
    """What is wrong with each row of a canonical frame (null where nothing is), or None when
    every row is fine: a hex id longer than its width, an end before the start, a time
    before 1970. One cheap pass; the reasons are only written out when something is wrong."""
    widths = {"trace_id": TRACE_ID_HEX, "span_id": SPAN_ID_HEX, "parent_span_id": SPAN_ID_HEX}
    long_ids = [pl.col(c).str.len_bytes() > w for c, w in widths.items()]
    negative = [pl.col("duration_ns") < 0, pl.col("start_time").dt.epoch("ns") < 0]
    if not frame.select(pl.any_horizontal(*long_ids, *negative).fill_null(False).any()).item():
        return None
    where = pl.format("span {} of trace {}: ", pl.col("span_id"), pl.col("trace_id"))
    reason: Any = pl.when(False).then(pl.lit(None, dtype=pl.String))
    for column, width in widths.items():
        digits = pl.col(column).str.len_bytes()
        too_long = (digits > width) & pl.col(column).str.contains(r"^[0-9a-f]+$")
        text = pl.format(f"{column} has {{}} hex digits, more than {width}", digits)
        reason = reason.when(too_long).then(text)
    start, end = pl.col("start_time").dt.epoch("ns"), pl.col("end_time").dt.epoch("ns")
    reason = reason.when(pl.col("duration_ns") < 0).then(
        pl.format("end time {} is before start time {} (ns)", end, start)
    )
    reason = reason.when(start < 0).then(pl.format("negative start time {} (ns)", start))
    found = frame.select(pl.concat_str(where, reason)).to_series()
    return found if found.null_count() < frame.height else None


def canonical_frame(raw: pl.LazyFrame, keep: Sequence[str] = ()) -> pl.LazyFrame:
    """`finish_spans` as a lazy plan: CANONICAL_COLUMNS in order, then the columns in `keep`.

    Missing attribute maps are empty maps; other missing columns are null (kind UNSPECIFIED,
    status UNSET).
    """
    have = set(raw.collect_schema().names())

    def col(name: str) -> pl.Expr:
        """A raw column, or a typed null when the reader did not provide it."""
        if name in have:
            return pl.col(name)
        if name in ("span_attributes", "resource_attributes"):
            return pl.lit([], dtype=pl.List(_PAIR)).cast(ATTRIBUTE_MAP)
        return pl.lit(None, dtype=CANONICAL_COLUMNS.get(name, pl.Int64()))

    service = (
        col("service_name")
        if "service_name" in have
        else col("resource_attributes").map.get("service.name")
    )
    start = col("start_ns").cast(pl.Int64)
    end = col("end_ns").cast(pl.Int64)
    built = raw.select(
        *(pl.col(c) for c in keep),
        trace_id=id_expr(col("trace_id"), TRACE_ID_HEX),
        span_id=id_expr(col("span_id"), SPAN_ID_HEX),
        parent_span_id=parent_id_expr(col("parent_span_id")),
        name=col("name"),
        kind=col("kind").fill_null("UNSPECIFIED"),
        service_name=service,
        start_time=start.cast(CANONICAL_COLUMNS["start_time"]),
        end_time=end.cast(CANONICAL_COLUMNS["end_time"]),
        duration_ns=end - start,
        status_code=col("status_code").fill_null("UNSET"),
        status_message=col("status_message"),
        scope_name=col("scope_name"),
        scope_version=col("scope_version"),
        span_attributes=col("span_attributes"),
        resource_attributes=col("resource_attributes"),
    )
    built = built.with_columns(trace_key=trace_key_expr("trace_id"))
    casts = [pl.col(n).cast(t) for n, t in CANONICAL_COLUMNS.items()]
    return built.select(*casts, *keep)


# --- promoted attributes -----------------------------------------------------------------

#: Span attributes `promote_attributes` turns into typed `attr.<key>` columns. Old and new
#: semantic-convention names are both promoted, each from its own key, so that a rule reads
#: the same value whether the table has the promoted column or only the map.
PROMOTED_ATTRIBUTES: dict[str, pl.DataType] = {
    "http.request.method": pl.String(),
    "http.method": pl.String(),
    "http.route": pl.String(),
    "url.full": pl.String(),
    "http.url": pl.String(),
    "http.response.status_code": pl.Int64(),
    "http.status_code": pl.Int64(),
    "db.system.name": pl.String(),
    "db.system": pl.String(),
    "rpc.system": pl.String(),
    "peer.service": pl.String(),
    "error.type": pl.String(),
}


def promote_attributes(
    frame: pl.LazyFrame, keys: Mapping[str, pl.DataType] = PROMOTED_ATTRIBUTES
) -> pl.LazyFrame:
    """`frame` with a typed column ``attr.<key>`` for each of `keys`, read from span_attributes.

    Columns that exist already are left alone; a table without a span_attributes map is
    returned as it is. Integer columns hold null where the text is not an integer (the map
    keeps the text).
    """
    schema = frame.collect_schema()
    if not isinstance(schema.get("span_attributes"), pl.Map):
        return frame
    exprs = []
    for key, dtype in keys.items():
        name = SPAN_ATTRIBUTE_PREFIX + key
        if name in schema:
            continue
        value = pl.col("span_attributes").map.get(key)
        if dtype != pl.String:
            value = value.str.strip_chars().cast(dtype, strict=False)
        exprs.append(value.alias(name))
    return frame.with_columns(exprs) if exprs else frame


# --- column types of columnar inputs ------------------------------------------------------

_ID_COLUMNS = ("trace_id", "span_id", "parent_span_id")


def require_ids(schema: Mapping[str, pl.DataType], source: str) -> None:
    """Raise a DataError naming `source` and its columns if trace_id or span_id is missing."""
    missing = [c for c in REQUIRED_COLUMNS if c not in schema]
    if missing:
        shown = ", ".join(list(schema)[:40]) + (", ..." if len(schema) > 40 else "")
        raise DataError(
            f"not a span table: no {' or '.join(missing)} column; columns: {shown or '(none)'}",
            path=source,
        )


def cast_expr(name: str, found: pl.DataType) -> pl.Expr | None:
    """The expression turning canonical column `name` of type `found` into its canonical type.

    None if the types are incompatible; `pl.col(name)` if no change is needed.
    """
    want = CANONICAL_COLUMNS[name]
    column = pl.col(name)
    if found == want:
        return column
    if found == pl.Null:
        return column.cast(want)
    if want == pl.String:
        if found == pl.String or isinstance(found, pl.Categorical | pl.Enum):
            return column.cast(pl.String)
        if name in _ID_COLUMNS and found == pl.Binary:
            return column.bin.encode("hex")
        return None
    if name == "trace_key":
        if found == pl.Int64:
            return column.reinterpret(signed=False)
        return column.cast(pl.UInt64, strict=False) if found.is_integer() else None
    if isinstance(want, pl.Datetime):
        if not isinstance(found, pl.Datetime):
            return None
        column = column.dt.cast_time_unit("ns")
        if found.time_zone is None:
            return column.dt.replace_time_zone("UTC")
        return column.dt.convert_time_zone("UTC")
    if name == "duration_ns":
        if found.is_integer():
            return column.cast(pl.Int64)
        if isinstance(found, pl.Duration):
            return column.dt.total_nanoseconds()
        return None
    if isinstance(want, pl.Map):
        return column.cast(want) if _is_text_map(found) else None
    return None


def _is_texty(dtype: Any) -> bool:  # a DataType instance or class
    return (
        dtype in (pl.String, pl.Null)
        or dtype.is_numeric()
        or dtype == pl.Boolean
        or isinstance(dtype, pl.Categorical | pl.Enum)
    )


def _is_text_map(dtype: pl.DataType) -> bool:
    """Whether values of this type have an obvious text form."""
    if isinstance(dtype, pl.Map):
        return _is_texty(dtype.key) and _is_texty(dtype.value)
    if isinstance(dtype, pl.List) and isinstance(dtype.inner, pl.Struct):
        fields = {f.name: f.dtype for f in dtype.inner.fields}
        return set(fields) == {"key", "value"} and all(map(_is_texty, fields.values()))
    return False


def canonical_casts(schema: Mapping[str, pl.DataType], source: str) -> list[pl.Expr]:
    """Check a columnar table's schema and return the casts that align it with the canonical one.

    Raises DataError (naming `source`) when trace_id/span_id are missing or a canonically
    named column has an incompatible type. Other columns (attr.*, resource.*, ...) are kept.
    """
    require_ids(schema, source)
    casts: list[pl.Expr] = []
    for name, found in schema.items():
        if name not in CANONICAL_COLUMNS:
            continue
        expr = cast_expr(name, found)
        if expr is None:
            raise DataError(
                f"column '{name}' has type {found}, expected {CANONICAL_COLUMNS[name]}",
                path=source,
            )
        if found != CANONICAL_COLUMNS[name]:
            casts.append(expr.alias(name))
    return casts
