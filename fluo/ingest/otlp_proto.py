"""Read OTLP protobuf files as the Collector's file exporter writes them with `format: proto`.

Each message is a 4-byte big-endian length followed by one serialized `TracesData`. The
messages are decoded with the official `opentelemetry-proto` package (an optional extra,
``pip install 'fluo[otlp-proto]'``), turned into proto3 JSON objects and handed to the OTLP
JSON reader's span builder, so ids, times, enums and attribute text follow exactly the OTLP
JSON rules (proto3 JSON writes ids in base64, which those rules turn into hex).
"""

from __future__ import annotations

import gc
import importlib
from typing import Any

import polars as pl

from fluo.errors import DataError
from fluo.ingest.otlp_json import SpanBuilder, load_bytes
from fluo.ingest.report import ReadTally

EXTRA = "otlp-proto"
_LENGTH_BYTES = 4


def _modules() -> tuple[Any, Any, type[Exception]]:
    """TracesData, protobuf's json_format and DecodeError; a DataError naming the extra if
    the packages are not installed."""
    try:
        trace_pb2 = importlib.import_module("opentelemetry.proto.trace.v1.trace_pb2")
        json_format = importlib.import_module("google.protobuf.json_format")
        message = importlib.import_module("google.protobuf.message")
    except ImportError:
        raise DataError(
            "reading OTLP protobuf needs the opentelemetry-proto package: "
            f"pip install 'fluo[{EXTRA}]'"
        ) from None
    return trace_pb2.TracesData, json_format, message.DecodeError


def looks_like_otlp_proto(head: bytes, size: int) -> bool:
    """Whether a file's first bytes look like a length-prefixed TracesData message: a length
    that fits the file, then the tag of field 1 (resource_spans, length-delimited)."""
    if len(head) < _LENGTH_BYTES + 1:
        return False
    length = int.from_bytes(head[:_LENGTH_BYTES], "big")
    return 0 < length <= size - _LENGTH_BYTES and head[_LENGTH_BYTES] == 0x0A


def read_otlp_proto(path: str, tally: ReadTally | None = None) -> pl.DataFrame:
    """Read one length-prefixed OTLP protobuf file (gzipped or not) into canonical rows.

    Errors name the file and the message by its number (``path:3: ...``). With a `tally`
    that skips, a message that does not decode is skipped and the next one read; a length
    that runs past the end of the file (a truncated file) skips the rest of it.
    """
    traces_data, json_format, decode_error = _modules()
    data = load_bytes(path)
    builder = SpanBuilder(path, tally)
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        offset = 0
        record = 0
        while offset < len(data):
            record += 1
            if len(data) - offset < _LENGTH_BYTES:
                error = DataError("truncated message length at the end of the file", path, record)
                builder.tally.bad(error)
                break
            length = int.from_bytes(data[offset : offset + _LENGTH_BYTES], "big")
            offset += _LENGTH_BYTES
            if length > len(data) - offset:
                builder.tally.bad(
                    DataError(
                        f"message of {length} bytes runs past the end of the file "
                        f"({len(data) - offset} left): truncated, or not length-prefixed OTLP",
                        path,
                        record,
                    )
                )
                break
            try:
                message = traces_data.FromString(data[offset : offset + length])
            except decode_error as exc:
                builder.tally.bad(DataError(f"not an OTLP TracesData message: {exc}", path, record))
                offset += length
                continue
            offset += length
            builder.add_document(json_format.MessageToDict(message), record)
        return builder.finish()
    finally:
        if was_enabled:
            gc.enable()
