"""Read Grafana Tempo vParquet4 blocks: one row per trace, spans nested in rs -> ss -> Spans.

The reader stays lazy: `pl.scan_parquet`, then three `explode`s (resource spans, scope
spans, spans) and Polars expressions for the ids (bytes to hex), times, enums and the
typed attribute structs, so projection pushdown reaches the nested columns. Dedicated
columns are turned back into attributes: the static ones by Tempo's names (HttpMethod ->
http.method, K8sPodName -> k8s.pod.name, ...) and String01..10 by the block's meta.json
(`dedicatedColumns`), when it lies beside the data file. docs/ingest.md gives the mapping.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import polars as pl

from fluo.errors import DataError
from fluo.ingest.detect import SpanFile, hive_columns
from fluo.ingest.normalize import canonical_frame
from fluo.ingest.report import IngestReport, defer_duplicates
from fluo.schema import ATTRIBUTE_MAP, SPAN_KINDS, STATUS_CODES

_PAIR = pl.Struct({"key": pl.String, "value": pl.String})

#: Static dedicated columns of vParquet4 and the attribute each one holds.
RESOURCE_COLUMNS = {
    "Cluster": "cluster",
    "Namespace": "namespace",
    "Pod": "pod",
    "Container": "container",
    "K8sClusterName": "k8s.cluster.name",
    "K8sNamespaceName": "k8s.namespace.name",
    "K8sPodName": "k8s.pod.name",
    "K8sContainerName": "k8s.container.name",
}
SPAN_COLUMNS = {
    "HttpMethod": "http.method",
    "HttpUrl": "http.url",
    "HttpStatusCode": "http.status_code",
}


def dedicated_columns(data_path: str) -> dict[str, dict[str, str]]:
    """``{"resource": {"String01": key, ...}, "span": {...}}`` from the block's meta.json.

    Tempo assigns String01, String02, ... to the dedicated string attributes of each scope
    in the order meta.json lists them. No meta.json (or none listed): no mapping.
    """
    meta = os.path.join(os.path.dirname(data_path), "meta.json")
    found: dict[str, dict[str, str]] = {"resource": {}, "span": {}}
    if not os.path.isfile(meta):
        return found
    try:
        with open(meta, encoding="utf-8") as f:
            columns = json.load(f).get("dedicatedColumns") or []
    except (OSError, ValueError, AttributeError) as exc:
        raise DataError(f"cannot read the block's meta.json: {exc}", path=meta) from None
    for column in columns:
        if not isinstance(column, dict) or not isinstance(column.get("n"), str):
            raise DataError(f"malformed dedicatedColumns entry {column!r}", path=meta)
        if column.get("t", "string") != "string":
            continue
        scope = "resource" if column.get("s") == "resource" else "span"
        slot = f"String{len(found[scope]) + 1:02d}"
        found[scope][slot] = column["n"]
    return found


def _double_text(value: pl.Expr) -> pl.Expr:
    """A double as text, integral values without ``.0`` (as OTLP JSON values are written)."""
    integral = (value == value.round()) & (value.abs() < 1e15)
    return (
        pl.when(integral)
        .then(value.cast(pl.Int64).cast(pl.String))
        .otherwise(value.cast(pl.String))
    )


def _json_string(value: pl.Expr) -> pl.Expr:
    escaped = value.str.replace_all("\\", "\\\\", literal=True).str.replace_all(
        '"', '\\"', literal=True
    )
    return pl.concat_str(pl.lit('"'), escaped, pl.lit('"'))


def _attr_value(attr: pl.Expr, fields: set[str]) -> pl.Expr:
    """The text of one Tempo attribute struct: its single value, or a JSON array."""
    parts: list[tuple[pl.Expr, pl.Expr]] = []  # (values as a list of text, JSON items)
    if "Value" in fields:
        strings = attr.struct.field("Value")
        parts.append((strings, strings.list.eval(_json_string(pl.element()))))
    if "ValueInt" in fields:
        ints = attr.struct.field("ValueInt").list.eval(pl.element().cast(pl.String))
        parts.append((ints, ints))
    if "ValueDouble" in fields:
        doubles = attr.struct.field("ValueDouble").list.eval(_double_text(pl.element()))
        parts.append((doubles, doubles))
    if "ValueBool" in fields:
        bools = attr.struct.field("ValueBool").list.eval(pl.element().cast(pl.String))
        parts.append((bools, bools))
    is_array = attr.struct.field("IsArray") if "IsArray" in fields else pl.lit(False)
    expr: object = pl
    for values, items in parts:
        single = values.list.len() == 1
        expr = expr.when(single & ~is_array.fill_null(False)).then(values.list.first())  # type: ignore[attr-defined]
        array = pl.concat_str(pl.lit("["), items.list.join(","), pl.lit("]"))
        expr = expr.when(values.list.len() > 0).then(array)  # type: ignore[attr-defined]
    fallback = [f for f in ("ValueUnsupported", "ValueDropped") if f in fields]
    other = attr.struct.field(fallback[0]) if fallback else pl.lit(None, pl.String)
    return expr.otherwise(other.fill_null(""))  # type: ignore[attr-defined, no-any-return]


def _attribute_map(
    attrs: pl.Expr,
    attrs_dtype: pl.DataType,
    owner: pl.Expr,
    owner_fields: set[str],
    static: dict[str, str],
    dedicated: dict[str, str],
) -> pl.Expr:
    """A Map(String, String) of a resource or span: its Attrs, then its dedicated columns."""
    inner = attrs_dtype.inner if isinstance(attrs_dtype, pl.List) else None
    fields = {f.name for f in inner.fields} if isinstance(inner, pl.Struct) else set()
    parts = []
    if fields:
        pairs = attrs.list.eval(
            pl.struct(
                key=pl.element().struct.field("Key"),
                value=_attr_value(pl.element(), fields),
            )
        )
        parts.append(pairs.fill_null(pl.lit([], dtype=pl.List(_PAIR))))
    extra = [
        (key, owner.struct.field(column))
        for column, key in static.items()
        if column in owner_fields
    ]
    if dedicated and "DedicatedAttributes" in owner_fields:
        holder = owner.struct.field("DedicatedAttributes")
        extra += [(key, holder.struct.field(slot)) for slot, key in dedicated.items()]
    if extra:
        listed = pl.concat_list(
            [pl.struct(key=pl.lit(k, pl.String), value=v.cast(pl.String)) for k, v in extra]
        )
        parts.append(listed.list.filter(pl.element().struct.field("value").is_not_null()))
    if not parts:
        return pl.lit([], dtype=pl.List(_PAIR)).cast(ATTRIBUTE_MAP)
    combined = parts[0] if len(parts) == 1 else pl.concat_list(parts)
    return combined.cast(ATTRIBUTE_MAP)


def _struct_fields(dtype: Any) -> dict[str, Any]:
    return {f.name: f.dtype for f in dtype.fields} if isinstance(dtype, pl.Struct) else {}


def _list_struct(dtype: Any) -> dict[str, Any]:
    return _struct_fields(dtype.inner) if isinstance(dtype, pl.List) and dtype.inner else {}


def _scan_block(path: str) -> pl.LazyFrame:
    """The raw span columns of one vParquet4 data file (lazy)."""
    try:
        schema = pl.read_parquet_schema(path)
    except Exception as exc:
        raise DataError(
            f"not a valid Parquet file: {str(exc).splitlines()[0]}", path=path
        ) from None
    rs = _list_struct(schema.get("rs"))
    resource = _struct_fields(rs.get("Resource", pl.Null()))
    ss = _list_struct(rs.get("ss"))
    scope = _struct_fields(ss.get("Scope", pl.Null()))
    spans = _list_struct(ss.get("Spans"))
    need = {"SpanID", "Name", "StartTimeUnixNano"}
    if "TraceID" not in schema or not resource or not (need <= set(spans)):
        raise DataError(
            "not a Tempo vParquet4 block: expected TraceID and rs[].ss[].Spans[] with "
            f"SpanID, Name, StartTimeUnixNano; columns: {', '.join(schema)}",
            path=path,
        )
    dedicated = dedicated_columns(path)
    lf = pl.scan_parquet(path).select(trace=pl.col("TraceID"), rs=pl.col("rs")).explode("rs")
    lf = lf.select(
        "trace", res=pl.col("rs").struct.field("Resource"), ss=pl.col("rs").struct.field("ss")
    ).explode("ss")
    lf = lf.select(
        "trace",
        "res",
        scope=pl.col("ss").struct.field("Scope"),
        span=pl.col("ss").struct.field("Spans"),
    ).explode("span")
    lf = lf.filter(pl.col("span").is_not_null())
    span = pl.col("span")
    res = pl.col("res")

    def field(name: str, dtype: pl.DataType | None = None) -> pl.Expr:
        """A span field, or a typed null when this block's schema lacks it."""
        return span.struct.field(name) if name in spans else pl.lit(None, dtype or pl.String())

    def scope_field(name: str) -> pl.Expr:
        return pl.col("scope").struct.field(name) if name in scope else pl.lit(None, pl.String)

    start = field("StartTimeUnixNano", pl.UInt64()).cast(pl.Int64)
    duration = field("DurationNano", pl.UInt64()).cast(pl.Int64)
    kinds = dict(enumerate(SPAN_KINDS))
    statuses = dict(enumerate(STATUS_CODES))
    return lf.select(
        trace_id=pl.col("trace").bin.encode("hex"),
        span_id=field("SpanID", pl.Binary()).bin.encode("hex"),
        parent_span_id=field("ParentSpanID", pl.Binary()).bin.encode("hex"),
        name=field("Name"),
        kind=field("Kind", pl.Int64()).replace_strict(
            kinds, default="UNSPECIFIED", return_dtype=pl.String
        ),
        service_name=res.struct.field("ServiceName")
        if "ServiceName" in resource
        else pl.lit(None, pl.String),
        start_ns=pl.when(start > 0).then(start),
        end_ns=pl.when(start > 0).then(start + duration),
        status_code=field("StatusCode", pl.Int64()).replace_strict(
            statuses, default="UNSET", return_dtype=pl.String
        ),
        status_message=pl.when(field("StatusMessage") != "").then(field("StatusMessage")),
        scope_name=pl.when(scope_field("Name") != "").then(scope_field("Name")),
        scope_version=pl.when(scope_field("Version") != "").then(scope_field("Version")),
        span_attributes=_attribute_map(
            field("Attrs", pl.Null()),
            spans.get("Attrs", pl.Null()),
            span,
            set(spans),
            SPAN_COLUMNS,
            dedicated["span"],
        ),
        resource_attributes=_attribute_map(
            res.struct.field("Attrs") if "Attrs" in resource else pl.lit(None),
            resource.get("Attrs", pl.Null()),
            res,
            set(resource),
            {"ServiceName": "service.name", **RESOURCE_COLUMNS},
            dedicated["resource"],
        ),
    )


def scan_tempo(files: Sequence[SpanFile], report: IngestReport | None = None) -> pl.LazyFrame:
    """A lazy canonical span table over Tempo vParquet4 data files, exact duplicates dropped."""
    hive = hive_columns(files)
    frames = []
    for i, span_file in enumerate(files):
        frame = _scan_block(span_file.path)
        if hive:
            frame = frame.with_columns(
                pl.lit(values[i], dtype=dtype).alias(key) for key, (dtype, values) in hive.items()
            )
        frames.append(frame)
    combined = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
    spans = canonical_frame(combined, keep=list(hive))
    if report is not None:
        defer_duplicates(report, spans)
    return spans.unique(maintain_order=True)
