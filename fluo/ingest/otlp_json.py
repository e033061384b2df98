"""Read OTLP JSON span files (the OpenTelemetry Collector file exporter's output).

A file holds one TracesData document, or JSON lines with one TracesData per line, or
several documents one after another; it may be gzipped. Spans are collected as plain
Python lists, one per column, and turned into one canonical frame at the end.
"""

from __future__ import annotations

import gc
import gzip
import json
import re
import zlib
from collections.abc import Iterator
from typing import Any

import polars as pl
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.compute as pc  # type: ignore[import-untyped, unused-ignore]
import pyarrow.json as pa_json  # type: ignore[import-untyped, unused-ignore]

from fluo.errors import DataError
from fluo.ingest.detect import GZIP_MAGIC
from fluo.ingest.normalize import (
    KIND_BY_SPELLING,
    STATUS_BY_SPELLING,
    MapColumn,
    SpanColumns,
    any_value_text,
    finish_spans,
    map_series,
    row_problems,
)
from fluo.ingest.report import ReadTally
from fluo.schema import CANONICAL_COLUMNS

_BOM = b"\xef\xbb\xbf"
_MIN_NS, _MAX_NS = -(2**63), 2**63 - 1
_LEADING_SPACE = re.compile(rb"\s*")


def read_otlp_json(path: str, tally: ReadTally | None = None) -> pl.DataFrame:
    """Read one OTLP JSON file (document, JSON lines, gzipped or not) into canonical rows.

    Uses Arrow's multi-threaded JSON reader when the file fits its fixed schema (the usual
    collector output); otherwise, or when anything is off, the exact Python reader, which
    also produces the precise error messages. Malformed records raise, or are skipped and
    counted in `tally` when it says so.
    """
    data = load_bytes(path)
    fast = read_fast(data)
    return fast if fast is not None else read_exact(data, path, tally)


def read_exact(data: bytes, path: str, tally: ReadTally | None = None) -> pl.DataFrame:
    """The Python reader: json per record, columns as lists, precise DataErrors."""
    tally = tally if tally is not None else ReadTally()
    builder = SpanBuilder(path, tally)
    # The columns hold millions of small objects that never form cycles: pausing the cyclic
    # garbage collector while they grow makes parsing about twice as fast.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for line, doc in iter_documents(data, path, tally):
            builder.add_document(doc, line)
        return builder.finish()
    finally:
        if was_enabled:
            gc.enable()


def load_bytes(path: str) -> bytes:
    """A file's bytes, gunzipped if they start with the gzip magic bytes."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise DataError(f"cannot read file: {exc.strerror or exc}", path=path) from None
    if data.startswith(GZIP_MAGIC):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"truncated or corrupt gzip data: {exc}", path=path) from None
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    if not data or data.isspace():
        raise DataError("empty file", path=path)
    return data


def _json_error(exc: json.JSONDecodeError, path: str, line: int | None = None) -> DataError:
    """A DataError for a JSON syntax error (line from the error unless given)."""
    return DataError(
        f"invalid JSON: {exc.msg} (column {exc.colno})", path=path, record=line or exc.lineno
    )


def _unicode_error(exc: UnicodeDecodeError, data: bytes, path: str, base: int = 1) -> DataError:
    """A DataError for bytes that are not UTF-8, with the line they are on."""
    line = base + data.count(b"\n", 0, exc.start)
    return DataError(f"not UTF-8 text: {exc.reason}", path=path, record=line)


def iter_documents(
    data: bytes, path: str, tally: ReadTally | None = None
) -> Iterator[tuple[int, Any]]:
    """Each JSON value in `data` with the 1-based line it starts on.

    A whole-file document, JSON lines (parsed line by line, so errors name the exact
    line; a bad line is skipped when `tally` says so), or pretty-printed documents one
    after another.
    """
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        if _looks_like_json_lines(data):
            yield from _json_lines(data, path, tally or ReadTally())
        elif isinstance(exc, UnicodeDecodeError):
            raise _unicode_error(exc, data, path) from None
        elif exc.msg == "Extra data":
            yield from _concatenated(data, path)
        else:
            raise _json_error(exc, path) from None
        return
    stripped = data.lstrip()
    yield 1 + data.count(b"\n", 0, len(data) - len(stripped)), doc


def _looks_like_json_lines(data: bytes) -> bool:
    """Whether one of the first non-blank lines is, on its own, a whole document: a
    TracesData object, or, not indented, a Jaeger object or a list of spans or traces. The
    first lines of a pretty-printed document open a value they do not close."""
    seen = start = 0
    while seen < 3 and start < len(data):
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end
        raw, start = data[start:end], end + 1
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            value = None
        if isinstance(value, dict) and ("resourceSpans" in value or "result" in value):
            return True
        # Jaeger and Zipkin documents only when not indented (not inside a pretty document)
        if raw[:1] in b"{[" and isinstance(value, dict) and ("data" in value or "spans" in value):
            return True
        if raw[:1] == b"[" and value and isinstance(value[0], dict | list):
            return True
        seen += 1
    return False


def _json_lines(data: bytes, path: str, tally: ReadTally) -> Iterator[tuple[int, Any]]:
    """Each non-blank line of a JSON-lines file, parsed, with its line number; a line that
    is not JSON (a truncated last line, say) raises or is skipped, as `tally` says."""
    for number, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except UnicodeDecodeError as exc:
            tally.bad(_unicode_error(exc, raw, path, number))
            continue
        except json.JSONDecodeError as exc:
            tally.bad(_json_error(exc, path, number))
            continue
        yield number, value


def _concatenated(data: bytes, path: str) -> Iterator[tuple[int, Any]]:
    """Several JSON values one after another (pretty-printed documents)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _unicode_error(exc, data, path) from None
    decoder = json.JSONDecoder()
    index, line, size = 0, 1, len(text)
    while True:
        start = index
        while index < size and text[index] in " \t\r\n":
            index += 1
        line += text.count("\n", start, index)
        if index >= size:
            return
        try:
            value, end = decoder.raw_decode(text, index)
        except json.JSONDecodeError as exc:
            raise _json_error(exc, path) from None
        yield line, value
        line += text.count("\n", index, end)
        index = end


def _resource_spans(doc: Any, path: str, line: int) -> list[Any]:
    """The resourceSpans list of a TracesData value (Jaeger's {"result": ...} wrapper too)."""
    if isinstance(doc, dict) and "resourceSpans" not in doc and isinstance(doc.get("result"), dict):
        doc = doc["result"]
    if not isinstance(doc, dict) or "resourceSpans" not in doc:
        if isinstance(doc, dict):
            found = "keys " + ", ".join(list(doc)[:10]) if doc else "an empty object"
        else:
            found = f"a JSON {type(doc).__name__}"
        raise DataError(
            f"not OTLP TracesData: expected an object with 'resourceSpans', found {found}",
            path=path,
            record=line,
        )
    spans = doc["resourceSpans"]
    if spans is None:
        return []
    if not isinstance(spans, list):
        raise DataError("'resourceSpans' must be a list", path=path, record=line)
    return spans


def _text_or_none(value: Any, what: str) -> str | None:
    """A scope name or version: text, or None when absent or empty."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, not {value!r}")
    return value


def structure_reason(exc: Exception) -> str:
    """A short reason for a malformed-structure exception raised while walking the JSON."""
    if isinstance(exc, KeyError):
        return f"missing {exc}"
    if isinstance(exc, AttributeError) and "'get'" in str(exc):
        return "expected an object, found " + str(exc).split("'")[1]
    return str(exc)


class SpanBuilder(SpanColumns):
    """Collects the spans of OTLP TracesData values into columns, then builds one frame.

    A malformed span, scope or resource raises its DataError, or with ``on_error="skip"``
    (the `tally`'s) is left out, counted, and the next one read.
    """

    _per_span = (*SpanColumns._per_span, "resource_index", "scope_index")

    def __init__(self, path: str, tally: ReadTally | None = None) -> None:
        super().__init__(path, tally)
        self.resource_index: list[int] = []
        self.scope_index: list[int] = []
        self.scope_names: list[str | None] = []
        self.scope_versions: list[str | None] = []
        self.resource_attributes = MapColumn()

    def add_document(self, doc: Any, line: int) -> None:
        """Add every span of one TracesData value that starts on `line`."""
        try:
            resource_spans = _resource_spans(doc, self.path, line)
        except DataError as exc:
            self.tally.bad(exc)
            return
        for ri, rs in enumerate(resource_spans):
            where = f"resourceSpans[{ri}]"
            try:
                resource = rs.get("resource") or {}
                self._add_attributes(resource.get("attributes"), self.resource_attributes)
                key = "scopeSpans" if "scopeSpans" in rs else "instrumentationLibrarySpans"
                scope_spans = rs.get(key) or ()
            except (KeyError, TypeError, AttributeError, ValueError) as exc:
                self._malformed(where, exc, line)
                continue
            resource_row = len(self.resource_attributes) - 1
            for si, ss in enumerate(scope_spans):
                where = f"resourceSpans[{ri}].{key}[{si}]"
                try:
                    scope = ss.get("scope")
                    if scope is None:
                        scope = ss.get("instrumentationLibrary") or {}
                    name = _text_or_none(scope.get("name"), "scope name")
                    version = _text_or_none(scope.get("version"), "scope version")
                    spans = ss.get("spans") or []
                    if not isinstance(spans, list):
                        raise ValueError("'spans' must be a list")
                except (KeyError, TypeError, AttributeError, ValueError) as exc:
                    self._malformed(where, exc, line)
                    continue
                self.scope_names.append(name)
                self.scope_versions.append(version)
                before = len(self)
                self._add_spans(spans, f"{where}.spans", line)
                count = len(self) - before
                self.resource_index.extend([resource_row] * count)
                self.scope_index.extend([len(self.scope_names) - 1] * count)

    def _malformed(self, where: str, exc: Exception, line: int) -> None:
        """A malformed part of a document: raise, or skip it (and count it)."""
        reason = f"malformed TracesData at {where}: {structure_reason(exc)}"
        self.tally.bad(DataError(reason, path=self.path, record=line))

    def _add_spans(self, spans: list[Any], where: str, line: int) -> None:
        """Append one scope's spans; a malformed span raises or is skipped (and counted)."""
        first = 0
        while first < len(spans):
            rows = len(self)
            k = self._add_span_range(spans, first, where, line)
            if k is None:
                return
            # span k broke halfway: drop what it appended (the tally raised if not skipping)
            self.truncate(rows + (k - first))
            first = k + 1

    def _add_span_range(self, spans: list[Any], first: int, where: str, line: int) -> int | None:
        """Append spans[first:] (the hot loop: keep it lean); the index of a malformed span
        that was skipped, or None when all were added."""
        trace_ids, span_ids, parents = self.trace_ids, self.span_ids, self.parents
        names, kinds, starts, ends = self.names, self.kinds, self.starts, self.ends
        codes, messages, lines = self.codes, self.messages, self.lines
        kind_of, status_of = KIND_BY_SPELLING.get, STATUS_BY_SPELLING.get
        keys, values = self.span_attributes.keys, self.span_attributes.values
        offsets = self.span_attributes.offsets
        k = first
        try:
            for k in range(first, len(spans)):
                sp = spans[k]
                tid = sp.get("traceId")
                sid = sp.get("spanId")
                if type(tid) is not str or type(sid) is not str or not tid or not sid:
                    bad = "traceId" if type(tid) is not str or not tid else "spanId"
                    shown = "missing" if sp.get(bad) is None else f"invalid ({sp.get(bad)!r})"
                    raise DataError(f"span {where}[{k}]: {bad} is {shown}")
                trace_ids.append(tid)
                span_ids.append(sid)
                parent = sp.get("parentSpanId")
                if parent is not None and type(parent) is not str:
                    raise ValueError(f"parentSpanId must be a string, not {parent!r}")
                parents.append(parent)
                name = sp.get("name")
                if type(name) is not str:
                    if name is not None:
                        raise ValueError(f"name must be a string, not {name!r}")
                    name = ""
                names.append(name)
                kind = sp.get("kind")
                kinds.append(None if kind is None else kind_of(kind))
                start = sp.get("startTimeUnixNano")
                end = sp.get("endTimeUnixNano")
                start = (int(start) or None) if start else None  # 0 and "0" mean unknown
                end = (int(end) or None) if end else None
                if start is not None and not _MIN_NS <= start <= _MAX_NS:
                    raise DataError(f"span {where}[{k}]: startTimeUnixNano {start} is out of range")
                if end is not None and not _MIN_NS <= end <= _MAX_NS:
                    raise DataError(f"span {where}[{k}]: endTimeUnixNano {end} is out of range")
                starts.append(start)
                ends.append(end)
                status = sp.get("status")
                if status:
                    code = status.get("code")
                    codes.append(None if code is None else status_of(code))
                    message = status.get("message")
                    if message and type(message) is not str:
                        raise ValueError(f"status message must be a string, not {message!r}")
                    messages.append(message if message else None)
                else:
                    codes.append(None)
                    messages.append(None)
                attributes = sp.get("attributes")
                if attributes:
                    for kv in attributes:
                        value = kv.get("value")
                        text = value.get("stringValue") if value else None
                        if type(text) is not str:
                            text = any_value_text(value)
                        keys.append(kv["key"])
                        values.append(text)
                offsets.append(len(keys))
                lines.append(line)
        except DataError as exc:
            self.tally.bad(DataError(exc.message, path=self.path, record=line))
            return k
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            reason = f"malformed TracesData at {where}: span {k}: {structure_reason(exc)}"
            self.tally.bad(DataError(reason, path=self.path, record=line))
            return k
        return None

    @staticmethod
    def _add_attributes(attributes: Any, column: MapColumn) -> None:
        """Append one row of attributes (a KeyValue list) to a map column."""
        rows = len(column)
        try:
            if attributes:
                for kv in attributes:
                    column.keys.append(kv["key"])
                    column.values.append(any_value_text(kv.get("value")))
        except BaseException:
            column.truncate(rows)
            raise
        column.end_row()

    def raw_columns(self) -> dict[str, pl.Series]:
        """The shared columns, plus scope and resource looked up by each span's index."""
        resource_rows = pl.Series(self.resource_index, dtype=pl.UInt32)
        scope_rows = pl.Series(self.scope_index, dtype=pl.UInt32)
        resources = self.resource_attributes.series("resource_attributes")
        return {
            **super().raw_columns(),
            "scope_name": pl.Series(self.scope_names, dtype=pl.String).gather(scope_rows),
            "scope_version": pl.Series(self.scope_versions, dtype=pl.String).gather(scope_rows),
            "resource_attributes": resources.gather(resource_rows),
        }


# --- the Arrow fast path ------------------------------------------------------------------

_SCALAR_VALUE_FIELDS = [
    ("stringValue", pa.string()),
    ("intValue", pa.string()),
    ("boolValue", pa.bool_()),
    ("doubleValue", pa.float64()),
    ("bytesValue", pa.string()),
]
# Fields declared with the null type make Arrow's reader fail (and the fast path decline)
# whenever they hold anything: deeper nesting, old names, wrappers.
_INNER_VALUE = pa.struct(
    [*_SCALAR_VALUE_FIELDS, ("arrayValue", pa.null()), ("kvlistValue", pa.null())]
)
_VALUE = pa.struct(
    [
        *_SCALAR_VALUE_FIELDS,
        ("arrayValue", pa.struct([("values", pa.list_(_INNER_VALUE))])),
        (
            "kvlistValue",
            pa.struct(
                [("values", pa.list_(pa.struct([("key", pa.string()), ("value", _INNER_VALUE)])))]
            ),
        ),
    ]
)
_KEY_VALUES = pa.list_(pa.struct([("key", pa.string()), ("value", _VALUE)]))
_SPAN = pa.struct(
    [
        ("traceId", pa.string()),
        ("spanId", pa.string()),
        ("parentSpanId", pa.string()),
        ("name", pa.string()),
        ("kind", pa.int64()),
        ("startTimeUnixNano", pa.string()),
        ("endTimeUnixNano", pa.string()),
        ("attributes", _KEY_VALUES),
        ("status", pa.struct([("code", pa.int64()), ("message", pa.string())])),
    ]
)
_SCOPE_SPANS = pa.struct(
    [
        ("scope", pa.struct([("name", pa.string()), ("version", pa.string())])),
        ("instrumentationLibrary", pa.null()),
        ("spans", pa.list_(_SPAN)),
    ]
)
_RESOURCE_SPANS = pa.struct(
    [
        ("resource", pa.struct([("attributes", _KEY_VALUES)])),
        ("scopeSpans", pa.list_(_SCOPE_SPANS)),
        ("instrumentationLibrarySpans", pa.null()),
    ]
)
_TRACES_DATA = pa.schema([("resourceSpans", pa.list_(_RESOURCE_SPANS)), ("result", pa.null())])
_BLOCK = 16 << 20
_KIND_NAMES = [KIND_BY_SPELLING[i] for i in range(6)]
_STATUS_NAMES = [STATUS_BY_SPELLING[i] for i in range(3)]


class _Decline(Exception):
    """The fast path does not apply; the exact reader takes over."""


def read_fast(data: bytes) -> pl.DataFrame | None:
    """Canonical rows via Arrow's multi-threaded JSON reader, or None to use `read_exact`.

    Gives the same rows as `read_exact` for every file it accepts; anything unusual
    (numbers where the collector writes strings, attribute values nested two deep,
    missing ids, old field names, ...) makes it decline rather than guess.
    """
    if not data.isascii():
        try:
            data.decode("utf-8")  # Arrow's reader does not check; the exact reader reports it
        except UnicodeDecodeError:
            return None
    lines = _first_line_is_whole(data)
    try:
        table = _parse(data, lines, _BLOCK if lines else len(data) + 1)
    except pa.ArrowInvalid as exc:
        if not lines or "straddling" not in str(exc):
            return None
        try:
            table = _parse(data, True, len(data) + 1)
        except pa.ArrowException:
            return None
    except pa.ArrowException:
        return None
    try:
        frame = _flatten(table)
    except (_Decline, pa.ArrowException, pl.exceptions.PolarsError):
        return None
    # a bad row (an id too long, an end before its start): the exact reader names its line
    return frame if row_problems(frame) is None else None


def _first_line_is_whole(data: bytes) -> bool:
    """Whether the first non-blank line looks like a whole JSON object (JSON lines).

    A cheap guess, without parsing; a wrong guess only makes Arrow's reader fail.
    """
    match = _LEADING_SPACE.match(data)
    start = match.end() if match else 0
    end = data.find(b"\n", start)
    line = data[start : len(data) if end < 0 else end].rstrip()
    return line.startswith(b"{") and line.endswith(b"}")


def _parse(data: bytes, lines: bool, block_size: int) -> Any:
    """Arrow's JSON reader with the TracesData schema; unknown fields are ignored."""
    return pa_json.read_json(
        pa.BufferReader(data),
        read_options=pa_json.ReadOptions(block_size=block_size),
        parse_options=pa_json.ParseOptions(
            explicit_schema=_TRACES_DATA,
            unexpected_field_behavior="ignore",
            newlines_in_values=not lines,
        ),
    )


def _field(structs: Any, name: str) -> Any:
    """A struct array's child, null where the struct itself is null."""
    return pc.struct_field(structs, name)


def _children(lists: Any, nullable: bool = True) -> tuple[Any, Any]:
    """A list array's elements and, for each, the index of the list it came from.

    A null list counts as empty when `nullable`; a null element makes the fast path decline.
    """
    if lists.null_count and not nullable:
        raise _Decline
    elements = pc.list_flatten(lists)
    if elements.null_count:
        raise _Decline
    return elements, pc.list_parent_indices(lists)


def _flatten(table: Any) -> pl.DataFrame:
    """The canonical frame from Arrow's nested TracesData table."""
    resources, _ = _children(table.column("resourceSpans").combine_chunks(), nullable=False)
    scopes, scope_resource = _children(_field(resources, "scopeSpans"))
    spans, span_scope = _children(_field(scopes, "spans"))
    if len(spans) == 0:
        return pl.DataFrame(schema=CANONICAL_COLUMNS)
    span_scope_rows = pl.Series(span_scope, dtype=pl.UInt32)
    span_resource = pl.Series(scope_resource, dtype=pl.UInt32).gather(span_scope_rows)

    def text(structs: Any, name: str) -> pl.Series:
        """A struct child as a String series."""
        return pl.Series(name, _field(structs, name)).cast(pl.String)

    trace_ids, span_ids = text(spans, "traceId"), text(spans, "spanId")
    if (trace_ids.fill_null("") == "").any() or (span_ids.fill_null("") == "").any():
        raise _Decline
    scope, status = _field(scopes, "scope"), _field(spans, "status")
    resource_attributes = _attribute_maps(_field(_field(resources, "resource"), "attributes"))
    raw = pl.DataFrame(
        {
            "trace_id": trace_ids,
            "span_id": span_ids,
            "parent_span_id": text(spans, "parentSpanId"),
            "name": text(spans, "name").fill_null(""),
            "kind": pl.Series(_field(spans, "kind")).replace_strict(
                list(range(6)), _KIND_NAMES, default="UNSPECIFIED", return_dtype=pl.String
            ),
            "start_ns": _nanos(text(spans, "startTimeUnixNano")),
            "end_ns": _nanos(text(spans, "endTimeUnixNano")),
            "status_code": pl.Series(_field(status, "code")).replace_strict(
                [0, 1, 2], _STATUS_NAMES, default="UNSET", return_dtype=pl.String
            ),
            "status_message": text(status, "message").replace("", None),
            "scope_name": text(scope, "name").replace("", None).gather(span_scope_rows),
            "scope_version": text(scope, "version").replace("", None).gather(span_scope_rows),
            "span_attributes": _attribute_maps(_field(spans, "attributes")),
            "resource_attributes": resource_attributes.gather(span_resource),
        }
    )
    return finish_spans(raw)


def _nanos(series: pl.Series) -> pl.Series:
    """Decimal unix-nanosecond strings as Int64 ("" and 0 mean unknown, as in the exact path)."""
    return series.replace("", None).cast(pl.Int64).replace(0, None)


def _attribute_maps(lists: Any) -> pl.Series:
    """One Map(String, String) per KeyValue list (a null list is an empty map)."""
    entries, _ = _children(lists)
    keys = _field(entries, "key")
    if keys.null_count:
        raise _Decline
    lengths = pc.fill_null(pc.list_value_length(lists), 0).cast(pa.int64())
    offsets = pa.concat_arrays([pa.array([0], pa.int64()), pc.cumulative_sum(lengths)])
    return map_series("map", offsets, keys, _value_texts(_field(entries, "value")))


def _value_texts(values: Any) -> Any:
    """AnyValue structs as an Arrow string array, exactly as `any_value_text` renders them.

    Vectorised for strings, ints, bools, bytes and plain doubles; nested values and
    doubles that need an exponent (or are not finite) go through `any_value_text`.
    """
    string, integer = _field(values, "stringValue"), _field(values, "intValue")
    boolean, double = _field(values, "boolValue"), _field(values, "doubleValue")
    bools = pc.if_else(boolean, "true", "false")
    is_double = pc.and_(
        pc.is_valid(double),
        pc.and_(pc.is_null(string), pc.and_(pc.is_null(integer), pc.is_null(boolean))),
    )
    python = pc.or_(
        pc.is_valid(_field(values, "arrayValue")), pc.is_valid(_field(values, "kvlistValue"))
    )
    doubles = pa.nulls(len(values), pa.string())
    if pc.any(is_double).as_py():
        plain = pl.Series(double.filter(is_double)).cast(pl.String)
        odd = (plain.str.contains("e") | plain.str.contains("n")).to_arrow()  # 1e-07, NaN, inf
        plain = plain.str.strip_suffix(".0").to_arrow().cast(pa.string())
        doubles = pc.replace_with_mask(doubles, is_double, plain)
        python = pc.or_(python, pc.replace_with_mask(pa.repeat(False, len(values)), is_double, odd))
    texts = pc.coalesce(string, integer, bools, doubles, _field(values, "bytesValue"), "")
    if pc.any(python).as_py():
        chosen = values.filter(python).to_pylist()
        fixed = pa.array([any_value_text(_pruned(v)) for v in chosen], pa.string())
        texts = pc.replace_with_mask(texts, python, fixed)
    return texts


def _pruned(value: Any) -> Any:
    """Arrow's to_pylist() of an AnyValue with the unset (None) fields removed."""
    if isinstance(value, dict):
        return {k: _pruned(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value
