"""Read Zipkin v2 JSON span files (the `/api/v2/spans` body and `/api/v2/trace` output).

A file holds a list of spans or a list of traces (a list of lists of spans); several such
documents one after another or one per line; gzipped or not. See docs/ingest.md.

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
from typing import Any

import polars as pl

from fluo.errors import DataError
from fluo.ingest.jaeger import (
    SCOPE_TAGS,
    RawSpans,
    canonical_hex,
    collect_spans,
    require_id,
    span_record_times,
    text_or_none,
)
from fluo.ingest.normalize import SPAN_ID_HEX, TRACE_ID_HEX, format_double, normalize_status
from fluo.ingest.otlp_json import structure_reason

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


def read_zipkin_json(path: str) -> pl.DataFrame:
    """Read one Zipkin v2 JSON file (list of spans or of traces) into canonical rows."""
    spans = collect_spans(path, _add_document)
    _split_shared_spans(spans)
    return spans.finish()


def _add_document(spans: RawSpans, doc: Any, line: int) -> None:
    """Add every span of one Zipkin JSON value (a list of spans or of lists of spans)."""
    if not isinstance(doc, list):
        if isinstance(doc, dict):
            found = "keys " + ", ".join(list(doc)[:10]) if doc else "an empty object"
        else:
            found = f"a JSON {type(doc).__name__}"
        raise DataError(
            f"not Zipkin v2 JSON: expected a list of spans, found {found}",
            path=spans.path,
            record=line,
        )
    where = "[0]"
    try:
        for i, item in enumerate(doc):
            if isinstance(item, list):
                for j, sp in enumerate(item):
                    where = f"[{i}][{j}]"
                    _add_span(spans, sp, where)
                    spans.lines.append(line)
            else:
                where = f"[{i}]"
                _add_span(spans, item, where)
                spans.lines.append(line)
    except DataError as exc:
        raise DataError(exc.message, path=spans.path, record=line) from None
    except (KeyError, TypeError, AttributeError, ValueError, OverflowError) as exc:
        raise DataError(
            f"malformed Zipkin span {where}: {structure_reason(exc)}", path=spans.path, record=line
        ) from None


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


def _endpoint(value: Any, what: str) -> dict[str, Any]:
    """An endpoint object ({} when absent)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be an object, not {value!r}")
    return value


def _port(value: Any) -> str | None:
    """An endpoint port as text; None when absent or 0."""
    if value is None or value == 0 or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"port must be an integer, not {value!r}")
    return str(value)


def _add_span(spans: RawSpans, sp: Any, where: str) -> None:
    """Append one Zipkin v2 span to the columns."""
    if not isinstance(sp, dict):
        raise ValueError(f"a span must be an object, not {sp!r}")
    tid = require_id(sp.get("traceId"), "traceId", where)
    sid = require_id(sp.get("id"), "id", where)
    parent = sp.get("parentId")
    if parent is not None and not isinstance(parent, str):
        raise ValueError(f"parentId must be a string, not {parent!r}")
    start, end = span_record_times(sp, "timestamp", where)
    kind = sp.get("kind")
    if kind is None:
        kind = "INTERNAL"
    elif isinstance(kind, str) and kind.upper() in _KINDS:
        kind = kind.upper()
    else:
        raise ValueError(f"kind must be CLIENT, SERVER, PRODUCER or CONSUMER, not {kind!r}")

    local = _endpoint(sp.get("localEndpoint"), "localEndpoint")
    service = text_or_none(local.get("serviceName"), "localEndpoint.serviceName")
    resource: list[tuple[str, str]] = []
    if service is not None:
        resource.append(("service.name", service))
    host = local.get("ipv4") or local.get("ipv6")
    if host:
        resource.append(("net.host.ip", _tag_text("ip", host)))
    port = _port(local.get("port"))
    if port is not None:
        resource.append(("net.host.port", port))

    tags = sp.get("tags") or {}
    if not isinstance(tags, dict):
        raise ValueError(f"tags must be an object of strings, not {tags!r}")
    code, message, description = "UNSET", None, None
    error: str | None = None
    scope: dict[str, str | None] = {}
    pairs: list[tuple[str, str]] = []
    for key, value in tags.items():
        text = _tag_text(key, value)
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
    remote = _endpoint(sp.get("remoteEndpoint"), "remoteEndpoint")
    present = set(tags)
    for key, value in (
        ("peer.service", remote.get("serviceName")),
        ("server.address", remote.get("ipv4") or remote.get("ipv6")),
        ("server.port", _port(remote.get("port"))),
    ):
        if value and key not in present:
            pairs.append((key, _tag_text(key, value)))

    column = spans.span_attributes
    for key, text in pairs:
        column.keys.append(key)
        column.values.append(text)
    column.end_row()
    spans.add_resource(resource)
    spans.trace_ids.append(tid)
    spans.span_ids.append(sid)
    spans.parents.append(parent)
    spans.names.append(text_or_none(sp.get("name"), "name") or "")
    spans.kinds.append(kind)
    spans.starts.append(start)
    spans.ends.append(end)
    spans.codes.append(code)
    spans.messages.append(message)
    spans.services.append(service)
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
