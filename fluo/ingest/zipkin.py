"""Read Zipkin v2 JSON span files (the `/api/v2/spans` body and `/api/v2/trace` output).

A file holds a list of spans or a list of traces (a list of lists of spans); several such
documents one after another or one per line; gzipped or not. See docs/ingest.md.

Span fragments: a reporter may send one span in several records (the timed half, and a
record with only a name or tags). Records of one (traceId, id) that can be one span (same
local endpoint; same kind and shared flag when both have a kind) are merged first
(`merge_fragments`).

Zipkin's shared spans (`"shared": true`): an RPC server may reuse the span id of its
client, so (traceId, id) is not unique. Each SERVER span whose id is also the id of a
CLIENT span of the same trace gets a new id, `shared_server_id`, with the client span as
its parent; the spans that named the shared id as their parent are moved under the server
half (as Jaeger's span-id deduper does), unless they run in the client's own service.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from fluo.errors import DataError
from fluo.ingest.jaeger import (
    SCOPE_TAGS,
    RawSpans,
    canonical_hex,
    collect_spans,
    micros,
    require_id,
    span_record_times,
    span_times,
    text_or_none,
)
from fluo.ingest.normalize import SPAN_ID_HEX, TRACE_ID_HEX, format_double, normalize_status
from fluo.ingest.otlp_json import structure_reason
from fluo.ingest.report import ReadTally

_KINDS = {"CLIENT", "SERVER", "PRODUCER", "CONSUMER"}
_SHARED_MARKER = ":zipkin-shared-server"


def shared_server_id(span_id: str, index: int = 0) -> str:
    """The new id of the SERVER half of a shared span: 16 hex digits of BLAKE2b-64.

    Hashes the canonical (lowercase, zero-padded) span id plus ":zipkin-shared-server",
    and ":<index>" for the second, third, ... server half of the same id in a trace.
    Deterministic across runs and machines.
    """
    text = canonical_hex(span_id, SPAN_ID_HEX) + _SHARED_MARKER
    if index:
        text += f":{index}"
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def read_zipkin_json(path: str, tally: ReadTally | None = None) -> pl.DataFrame:
    """Read one Zipkin v2 JSON file (list of spans or of traces) into canonical rows.

    Each record is checked alone (a malformed one raises, or is skipped and counted in
    `tally`), fragments of one span are merged (`merge_fragments`), then shared SERVER
    halves get their own ids.
    """
    records: list[_Record] = []
    spans = collect_spans(path, lambda s, doc, line: _add_document(s, doc, line, records), tally)
    for record in merge_fragments(records, spans.tally):
        _add_span(spans, record)
        spans.lines.append(record.line)
    _split_shared_spans(spans)
    return spans.finish()


@dataclass(slots=True)
class _Endpoint:
    """A Zipkin endpoint; every field may be missing."""

    service: str | None = None
    ipv4: str | None = None
    ipv6: str | None = None
    port: str | None = None

    def agrees(self, other: _Endpoint) -> bool:
        """Whether both could be the same endpoint: no field given by both differs."""
        return all(
            a is None or b is None or a == b
            for a, b in (
                (self.service, other.service),
                (self.ipv4, other.ipv4),
                (self.ipv6, other.ipv6),
                (self.port, other.port),
            )
        )

    def filled_from(self, other: _Endpoint) -> _Endpoint:
        """This endpoint with its missing fields taken from `other`."""
        return _Endpoint(
            self.service if self.service is not None else other.service,
            self.ipv4 if self.ipv4 is not None else other.ipv4,
            self.ipv6 if self.ipv6 is not None else other.ipv6,
            self.port if self.port is not None else other.port,
        )


@dataclass(slots=True)
class _Record:
    """One Zipkin v2 span record, checked; times in microseconds (None: absent or 0)."""

    trace_id: str
    span_id: str
    parent: str | None
    name: str | None
    kind: str | None  # None: absent (a local span, or a fragment)
    shared: bool
    timestamp: int | None
    duration: int | None
    local: _Endpoint
    remote: _Endpoint
    tags: dict[str, str]
    line: int = field(compare=False)
    key: tuple[str, str] = field(compare=False)

    def fits(self, other: _Record) -> bool:
        """Whether `other` can be a fragment of the same span as this record: kinds equal or
        one absent, shared flags equal unless one has no kind (a record without a kind says
        nothing of the side it is on), local endpoints that agree."""
        both = self.kind is not None and other.kind is not None
        if both and (self.kind != other.kind or self.shared != other.shared):
            return False
        return self.local.agrees(other.local)

    def merged(self, other: _Record) -> _Record:
        """The two records as one: earliest timestamp, longest duration, tags of both; other
        fields from the record with a timestamp (the one sent when the span ended), else from
        the first, missing ones filled from the other."""
        main, extra = (other, self) if self.timestamp is None and other.timestamp else (self, other)
        starts = [t for t in (self.timestamp, other.timestamp) if t]
        durations = [d for d in (self.duration, other.duration) if d is not None]
        kind = main.kind if main.kind is not None else extra.kind
        return _Record(
            trace_id=self.trace_id,
            span_id=self.span_id,
            parent=main.parent if main.parent is not None else extra.parent,
            name=main.name if main.name is not None else extra.name,
            kind=kind,
            shared=main.shared if main.kind is not None or extra.kind is None else extra.shared,
            timestamp=min(starts) if starts else None,
            duration=max(durations) if durations else None,
            local=main.local.filled_from(extra.local),
            remote=main.remote.filled_from(extra.remote),
            tags={**extra.tags, **main.tags},
            line=self.line,
            key=self.key,
        )


def merge_fragments(records: list[_Record], tally: ReadTally) -> list[_Record]:
    """Records of one span merged into one, in the order of each span's first record.

    Records with the same (traceId, id) are merged when `_Record.fits` says they can be one
    span, each into the first such span met. An exact copy of an earlier record is dropped
    and counted as a duplicate, not as a merge; merges are counted in `tally`.
    """
    out: list[_Record] = []
    seen: dict[tuple[str, str], list[_Record]] = {}
    spans: dict[tuple[str, str], list[int]] = {}
    for record in records:
        earlier = seen.setdefault(record.key, [])
        if record in earlier:
            tally.duplicates += 1
            continue
        earlier.append(record)
        found = spans.setdefault(record.key, [])
        for index in found:
            if out[index].fits(record):
                out[index] = out[index].merged(record)
                tally.merged += 1
                break
        else:
            found.append(len(out))
            out.append(record)
    return out


def _add_document(spans: RawSpans, doc: Any, line: int, records: list[_Record]) -> None:
    """Check every span of one Zipkin JSON value (a list of spans or of lists of spans) and
    add it to `records`; a malformed one raises or is skipped (`spans.tally`)."""
    if not isinstance(doc, list):
        if isinstance(doc, dict):
            found = "keys " + ", ".join(list(doc)[:10]) if doc else "an empty object"
        else:
            found = f"a JSON {type(doc).__name__}"
        spans.tally.bad(
            DataError(
                f"not Zipkin v2 JSON: expected a list of spans, found {found}",
                path=spans.path,
                record=line,
            )
        )
        return
    for i, item in enumerate(doc):
        listed = item if isinstance(item, list) else [item]
        for j, sp in enumerate(listed):
            where = f"[{i}][{j}]" if isinstance(item, list) else f"[{i}]"
            try:
                records.append(_record(sp, where, line))
            except DataError as exc:
                spans.tally.bad(DataError(exc.message, path=spans.path, record=line))
            except (KeyError, TypeError, AttributeError, ValueError, OverflowError) as exc:
                reason = f"malformed Zipkin span {where}: {structure_reason(exc)}"
                spans.tally.bad(DataError(reason, path=spans.path, record=line))


def _tag_text(key: str, value: Any) -> str:
    """A tag value as text (Zipkin tags are strings; other JSON values are rendered)."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return format_double(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _endpoint(value: Any, what: str) -> _Endpoint:
    """An endpoint object (all fields missing when absent)."""
    if value is None:
        return _Endpoint()
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be an object, not {value!r}")
    ipv4, ipv6 = value.get("ipv4"), value.get("ipv6")
    return _Endpoint(
        service=text_or_none(value.get("serviceName"), f"{what}.serviceName"),
        ipv4=_tag_text("ip", ipv4) if ipv4 else None,
        ipv6=_tag_text("ip", ipv6) if ipv6 else None,
        port=_port(value.get("port")),
    )


def _port(value: Any) -> str | None:
    """An endpoint port as text; None when absent or 0."""
    if value is None or value == 0 or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"port must be an integer, not {value!r}")
    return str(value)


def _record(sp: Any, where: str, line: int) -> _Record:
    """One Zipkin v2 span record, checked (a DataError or ValueError names what is wrong)."""
    if not isinstance(sp, dict):
        raise ValueError(f"a span must be an object, not {sp!r}")
    tid = require_id(sp.get("traceId"), "traceId", where)
    sid = require_id(sp.get("id"), "id", where)
    parent = sp.get("parentId")
    if parent is not None and not isinstance(parent, str):
        raise ValueError(f"parentId must be a string, not {parent!r}")
    span_record_times(sp, "timestamp", where)  # negative or out-of-range times: DataError
    start = micros(sp.get("timestamp"), "timestamp")
    duration = micros(sp.get("duration"), "duration")
    kind = sp.get("kind")
    if kind is not None:
        if not isinstance(kind, str) or kind.upper() not in _KINDS:
            raise ValueError(f"kind must be CLIENT, SERVER, PRODUCER or CONSUMER, not {kind!r}")
        kind = kind.upper()
    shared = sp.get("shared")
    if shared is not None and not isinstance(shared, bool):
        raise ValueError(f"shared must be true or false, not {shared!r}")
    tags = sp.get("tags") or {}
    if not isinstance(tags, dict):
        raise ValueError(f"tags must be an object of strings, not {tags!r}")
    return _Record(
        trace_id=tid,
        span_id=sid,
        parent=parent,
        name=text_or_none(sp.get("name"), "name"),
        kind=kind,
        shared=bool(shared),
        timestamp=start or None,
        duration=duration,
        local=_endpoint(sp.get("localEndpoint"), "localEndpoint"),
        remote=_endpoint(sp.get("remoteEndpoint"), "remoteEndpoint"),
        tags={str(key): _tag_text(key, value) for key, value in tags.items()},
        line=line,
        key=(canonical_hex(tid, TRACE_ID_HEX), canonical_hex(sid, SPAN_ID_HEX)),
    )


def _add_span(spans: RawSpans, record: _Record) -> None:
    """Append one (merged) Zipkin span to the columns."""
    start, end = span_times(record.timestamp, record.duration)
    local = record.local
    resource: list[tuple[str, str]] = []
    if local.service is not None:
        resource.append(("service.name", local.service))
    host = local.ipv4 or local.ipv6
    if host:
        resource.append(("net.host.ip", host))
    if local.port is not None:
        resource.append(("net.host.port", local.port))

    code, message, description = "UNSET", None, None
    error: str | None = None
    scope: dict[str, str | None] = {}
    pairs: list[tuple[str, str]] = []
    for key, text in record.tags.items():
        if key == "error":
            error = text
        elif key == "otel.status_code":
            code = normalize_status(text.upper())
        elif key == "otel.status_description":
            description = text or None
        elif key in SCOPE_TAGS:
            part = SCOPE_TAGS[key]
            if key.startswith("otel.scope.") or part not in scope:
                scope[part] = text or None
        else:
            pairs.append((key, text))
    if error is not None:
        code, message = "ERROR", error or description
    elif code != "UNSET":
        message = description
    remote = record.remote
    for key, value in (
        ("peer.service", remote.service),
        ("server.address", remote.ipv4 or remote.ipv6),
        ("server.port", remote.port),
    ):
        if value and key not in record.tags:
            pairs.append((key, value))

    column = spans.span_attributes
    for key, text in pairs:
        column.keys.append(key)
        column.values.append(text)
    column.end_row()
    spans.add_resource(resource)
    spans.trace_ids.append(record.trace_id)
    spans.span_ids.append(record.span_id)
    spans.parents.append(record.parent)
    spans.names.append(record.name or "")
    spans.kinds.append(record.kind or "INTERNAL")
    spans.starts.append(start)
    spans.ends.append(end)
    spans.codes.append(code)
    spans.messages.append(message)
    spans.services.append(local.service)
    spans.scope_names.append(scope.get("name"))
    spans.scope_versions.append(scope.get("version"))


def _split_shared_spans(spans: RawSpans) -> None:
    """Give each SERVER half of a shared span id a new id; re-parent as documented above."""
    keys = [
        (canonical_hex(t, TRACE_ID_HEX), canonical_hex(s, SPAN_ID_HEX))
        for t, s in zip(spans.trace_ids, spans.span_ids, strict=True)
    ]
    clients = {key: spans.services[i] for i, key in enumerate(keys) if spans.kinds[i] == "CLIENT"}
    if not clients:
        return
    halves: dict[tuple[str, str], list[tuple[str, str | None]]] = {}
    server_rows: set[int] = set()
    for i, key in enumerate(keys):
        if spans.kinds[i] == "SERVER" and key in clients:
            found = halves.setdefault(key, [])
            new_id = shared_server_id(key[1], len(found))
            found.append((new_id, spans.services[i]))
            spans.span_ids[i] = new_id
            spans.parents[i] = key[1]
            server_rows.add(i)
    if not halves:
        return
    for i, parent in enumerate(spans.parents):
        if parent is None or i in server_rows:
            continue
        key = (keys[i][0], canonical_hex(parent, SPAN_ID_HEX))
        found = halves.get(key, [])
        if not found:
            continue
        service = spans.services[i]
        same = [new_id for new_id, s in found if s == service]
        if same:
            spans.parents[i] = same[0]
        elif service is None or service != clients[key]:
            spans.parents[i] = found[0][0]
