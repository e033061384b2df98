"""Read Jaeger JSON span files (the Jaeger UI download and the `/api/traces` response).

Container shapes: the API response ``{"data": [trace, ...]}``, one trace object
``{traceID, spans, processes}``, the Jaeger UI state ``{"data": {spans, processes}, ...}``
and a bare list of spans (each with an embedded ``process``); several documents one after
another or one per line; gzipped or not. See docs/ingest.md for the mapping.

`RawSpans`, the column collector, is shared with the Zipkin reader.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Iterator
from typing import Any

import polars as pl

from fluo.errors import DataError
from fluo.ingest.normalize import (
    TRACE_ID_HEX,
    MapColumn,
    SpanColumns,
    format_double,
    normalize_kind,
    normalize_status,
)
from fluo.ingest.otlp_json import iter_documents, load_bytes, structure_reason
from fluo.ingest.report import ReadTally

#: Tags that become canonical columns (or are dropped) rather than span attributes.
SCOPE_TAGS = {
    "otel.scope.name": "name",
    "otel.scope.version": "version",
    "otel.library.name": "name",
    "otel.library.version": "version",
}
_MAX_NS = 2**63 - 1


def canonical_hex(value: str, width: int) -> str:
    """An id as `finish_spans` will spell it when it is hex (lowercase, zero-padded)."""
    low = value.lower()
    if low and all(c in "0123456789abcdef" for c in low):
        return low.rjust(width, "0")
    return value


def micros(value: Any, what: str) -> int | None:
    """A microsecond count (integer, integral float or decimal text); None when absent."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number of microseconds, not {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise ValueError(f"{what} must be a number of microseconds, not {value!r}")


def span_times(start_us: int | None, duration_us: int | None) -> tuple[int | None, int | None]:
    """Start and end in unix nanoseconds from a start and a duration in microseconds.

    A start of 0 (or none) is unknown; so is the end when the duration is missing.
    Raises ValueError for a negative time or duration, or one past the year 2262.
    """
    if start_us is not None and start_us < 0:
        raise ValueError(f"negative start time {start_us}")
    if duration_us is not None and duration_us < 0:
        raise ValueError(f"negative duration {duration_us}")
    if not start_us:
        return None, None
    start = start_us * 1000
    end = None if duration_us is None else start + duration_us * 1000
    if start > _MAX_NS or (end is not None and end > _MAX_NS):
        raise ValueError(f"start time {start_us} (+ duration) is out of range")
    return start, end


def span_record_times(
    span: dict[str, Any], start_key: str, where: str
) -> tuple[int | None, int | None]:
    """`span_times` of a span record whose start (`start_key`) and `duration` are microseconds;
    a bad value is a DataError naming the span."""
    try:
        return span_times(
            micros(span.get(start_key), start_key), micros(span.get("duration"), "duration")
        )
    except ValueError as exc:
        raise DataError(f"span {where}: {exc}") from None


def text_or_none(value: Any, what: str) -> str | None:
    """Text, or None when absent or empty."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, not {value!r}")
    return value


def require_id(value: Any, field: str, where: str) -> str:
    """A span's id field, or a DataError naming the span when it is missing or not text."""
    if not isinstance(value, str) or not value:
        shown = "missing" if value is None else f"invalid ({value!r})"
        raise DataError(f"span {where}: {field} is {shown}")
    return value


class RawSpans(SpanColumns):
    """Raw columns of Jaeger or Zipkin spans: each span has its own service, scope and
    resource attributes (OTLP's `SpanBuilder` shares them by index instead)."""

    _per_span = (*SpanColumns._per_span, "services", "scope_names", "scope_versions")

    def __init__(self, path: str, tally: ReadTally | None = None) -> None:
        super().__init__(path, tally)
        self.services: list[str | None] = []
        self.scope_names: list[str | None] = []
        self.scope_versions: list[str | None] = []
        self.resource_attributes = MapColumn()

    def truncate(self, rows: int) -> None:
        super().truncate(rows)
        self.resource_attributes.truncate(rows)

    def add_resource(self, pairs: list[tuple[str, str]]) -> None:
        """One span's resource attributes (duplicate keys kept, as in OTLP input)."""
        column = self.resource_attributes
        for key, value in pairs:
            column.keys.append(key)
            column.values.append(value)
        column.end_row()

    def raw_columns(self) -> dict[str, pl.Series]:
        """The shared columns, plus each span's service, scope and resource."""
        return {
            **super().raw_columns(),
            "service_name": pl.Series(self.services, dtype=pl.String),
            "scope_name": pl.Series(self.scope_names, dtype=pl.String),
            "scope_version": pl.Series(self.scope_versions, dtype=pl.String),
            "resource_attributes": self.resource_attributes.series("resource_attributes"),
        }


# --- Jaeger -------------------------------------------------------------------------------


def read_jaeger_json(path: str, tally: ReadTally | None = None) -> pl.DataFrame:
    """Read one Jaeger JSON file (any container shape, gzipped or not) into canonical rows;
    malformed spans raise, or are skipped and counted in `tally` when it says so."""
    return collect_spans(path, _add_document, tally).finish()


def collect_spans(
    path: str, add: Callable[[RawSpans, Any, int], None], tally: ReadTally | None = None
) -> RawSpans:
    """Every JSON document of a file, given to `add` with its line number, into RawSpans.

    Garbage collection is paused meanwhile: building millions of small objects
    otherwise triggers it over and over for nothing.
    """
    data = load_bytes(path)
    spans = RawSpans(path, tally)
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for line, doc in iter_documents(data, path, spans.tally):
            add(spans, doc, line)
    finally:
        if was_enabled:
            gc.enable()
    return spans


def _traces(doc: Any, path: str, line: int) -> Iterator[tuple[str, Any, Any, str | None]]:
    """(path of its spans, spans, processes, trace id) of each trace in one Jaeger JSON value."""
    if isinstance(doc, dict) and "data" in doc:
        data = doc["data"]
        if data is None:
            return
        if isinstance(data, dict):  # the Jaeger UI state: {data: {spans, processes}, ...}
            yield "data.spans", data.get("spans"), data.get("processes"), data.get("traceID")
            return
        if not isinstance(data, list):
            raise DataError("Jaeger 'data' must be a list of traces", path=path, record=line)
        for i, trace in enumerate(data):
            if not isinstance(trace, dict):
                raise DataError(f"data[{i}] must be a trace object", path=path, record=line)
            yield (
                f"data[{i}].spans",
                trace.get("spans"),
                trace.get("processes"),
                trace.get("traceID"),
            )
    elif isinstance(doc, dict) and "spans" in doc:
        yield "spans", doc["spans"], doc.get("processes"), doc.get("traceID")
    elif isinstance(doc, list):
        if all(isinstance(item, dict) and "spans" in item for item in doc) and doc:
            for i, trace in enumerate(doc):  # a list of trace objects
                yield f"[{i}].spans", trace["spans"], trace.get("processes"), trace.get("traceID")
        else:
            yield "", doc, None, None
    else:
        if isinstance(doc, dict):
            found = "keys " + ", ".join(list(doc)[:10]) if doc else "an empty object"
        else:
            found = f"a JSON {type(doc).__name__}"
        raise DataError(
            'not Jaeger JSON: expected {"data": [trace, ...]}, a trace {traceID, spans, '
            f"processes}} or a list of spans, found {found}",
            path=path,
            record=line,
        )


def _add_document(spans: RawSpans, doc: Any, line: int) -> None:
    """Add every span of one Jaeger JSON value that starts on `line`.

    A malformed span raises, or is skipped (`spans.tally`); a malformed container (a trace
    that is not an object, say) stops the document there.
    """
    where = "document"
    try:
        for where, trace_spans, processes, trace_id in _traces(doc, spans.path, line):
            if trace_spans is None:
                continue
            if not isinstance(trace_spans, list):
                raise ValueError("'spans' must be a list")
            if processes is not None and not isinstance(processes, dict):
                raise ValueError("'processes' must be an object")
            resources: dict[str, tuple[str | None, list[tuple[str, str]]]] = {}
            for k, sp in enumerate(trace_spans):
                rows = len(spans)
                try:
                    _add_span(spans, sp, f"{where}[{k}]", processes or {}, resources, trace_id)
                except (
                    DataError,
                    KeyError,
                    TypeError,
                    AttributeError,
                    ValueError,
                    OverflowError,
                ) as exc:
                    spans.truncate(rows)
                    spans.tally.bad(_malformed(exc, f"{where}[{k}]", spans.path, line))
                    continue
                spans.lines.append(line)
    except (DataError, KeyError, TypeError, AttributeError, ValueError, OverflowError) as exc:
        spans.tally.bad(_malformed(exc, where or "the span list", spans.path, line))


def _malformed(exc: Exception, where: str, path: str, line: int) -> DataError:
    """The DataError of a malformed part of a Jaeger document (a span, a trace)."""
    if isinstance(exc, DataError):
        return DataError(exc.message, path=exc.path or path, record=exc.record or line)
    reason = structure_reason(exc)
    return DataError(f"malformed Jaeger JSON at {where}: {reason}", path=path, record=line)


def tag_text(tag: Any) -> tuple[str, str]:
    """A Jaeger tag {key, type, value} as (key, value as text)."""
    key = tag["key"]
    if not isinstance(key, str):
        raise ValueError(f"tag key must be a string, not {key!r}")
    kind = tag.get("type")
    kind = kind.lower() if isinstance(kind, str) else "string"
    value = tag.get("value")
    if value is None:
        return key, ""
    if kind == "bool":
        if value is True or value is False:
            return key, "true" if value else "false"
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return key, value.lower()
        raise ValueError(f"tag '{key}' of type bool has value {value!r}")
    if kind == "int64":
        if isinstance(value, int) and not isinstance(value, bool):
            return key, str(value)
        if isinstance(value, float) and math.isfinite(value) and value == int(value):
            return key, str(int(value))
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return key, str(int(value))
        raise ValueError(f"tag '{key}' of type int64 has value {value!r}")
    if kind == "float64":
        if isinstance(value, int | float | str) and not isinstance(value, bool):
            return key, format_double(float(value))
        raise ValueError(f"tag '{key}' of type float64 has value {value!r}")
    if isinstance(value, str):
        return key, value
    if isinstance(value, bool):
        return key, "true" if value else "false"
    if isinstance(value, int):
        return key, str(value)
    if isinstance(value, float):
        return key, format_double(value)
    raise ValueError(f"tag '{key}' has value {value!r}")


def _tags(tags: Any) -> list[tuple[str, str]]:
    """A tag list as (key, text) pairs, in order."""
    if not tags:
        return []
    if not isinstance(tags, list):
        raise ValueError(f"'tags' must be a list, not {tags!r}")
    return [tag_text(tag) for tag in tags]


def _resource(process: Any) -> tuple[str | None, list[tuple[str, str]]]:
    """A process as (service name, resource attributes with service.name first)."""
    if process is None:
        return None, []
    if not isinstance(process, dict):
        raise ValueError(f"process must be an object, not {process!r}")
    service = text_or_none(process.get("serviceName"), "serviceName")
    pairs = _tags(process.get("tags"))
    if service is not None and not any(k == "service.name" for k, _ in pairs):
        pairs.insert(0, ("service.name", service))
    return service, pairs


def _parent(sp: dict[str, Any], trace_id: str) -> Any:
    """The parent span id: first CHILD_OF reference in the same trace, else FOLLOWS_FROM,
    else parentSpanID."""
    refs = sp.get("references")
    if refs:
        if not isinstance(refs, list):
            raise ValueError("'references' must be a list")
        own = canonical_hex(trace_id, TRACE_ID_HEX)
        follows = None
        for ref in refs:
            ref_trace = ref.get("traceID")
            if isinstance(ref_trace, str) and canonical_hex(ref_trace, TRACE_ID_HEX) != own:
                continue
            ref_type = ref.get("refType") or "CHILD_OF"
            if ref_type == "CHILD_OF":
                return ref.get("spanID")
            if follows is None and ref_type == "FOLLOWS_FROM":
                follows = ref.get("spanID")
        if follows is not None:
            return follows
    return sp.get("parentSpanID")


def _add_span(
    spans: RawSpans,
    sp: Any,
    where: str,
    processes: dict[str, Any],
    resources: dict[str, tuple[str | None, list[tuple[str, str]]]],
    trace_id: Any,
) -> None:
    """Append one Jaeger span to the columns."""
    if not isinstance(sp, dict):
        raise ValueError(f"span {where} must be an object")
    tid = require_id(sp.get("traceID") or trace_id, "traceID", where)
    sid = require_id(sp.get("spanID"), "spanID", where)
    parent = _parent(sp, tid)
    if parent is not None and not isinstance(parent, str):
        raise ValueError(f"span {where}: parent span id must be a string, not {parent!r}")
    start, end = span_record_times(sp, "startTime", where)

    process = sp.get("process")
    if isinstance(process, dict):
        service, resource = _resource(process)
    else:
        pid = sp.get("processID")
        if not isinstance(pid, str):
            pid = ""
        if pid not in resources:
            resources[pid] = _resource(processes.get(pid))
        service, resource = resources[pid]

    kind = "UNSPECIFIED"
    code = "UNSET"
    message: str | None = None
    error = False
    scope: dict[str, str | None] = {}
    otel_code: str | None = None
    keys, values = spans.span_attributes.keys, spans.span_attributes.values
    for key, text in _tags(sp.get("tags")):
        if key == "span.kind":
            kind = normalize_kind(text)
        elif key == "otel.status_code":
            otel_code = text
        elif key == "otel.status_description":
            message = text or None
        elif key == "error" and text == "true":
            error = True
        elif key in SCOPE_TAGS:
            part = SCOPE_TAGS[key]
            if key.startswith("otel.scope.") or part not in scope:
                scope[part] = text or None
        elif key == "w3c.tracestate":
            pass
        else:
            keys.append(key)
            values.append(text)
    spans.span_attributes.end_row()
    if error:
        code = "ERROR"
    elif otel_code is not None:
        code = normalize_status(otel_code.upper())

    name = sp.get("operationName")
    spans.trace_ids.append(tid)
    spans.span_ids.append(sid)
    spans.parents.append(parent)
    spans.names.append(text_or_none(name, "operationName") or "")
    spans.kinds.append(kind)
    spans.starts.append(start)
    spans.ends.append(end)
    spans.codes.append(code)
    spans.messages.append(message)
    spans.services.append(service)
    spans.scope_names.append(scope.get("name"))
    spans.scope_versions.append(scope.get("version"))
    spans.add_resource(resource)
