"""Find the span files behind each input and tell their format.

An input is a file, a directory (searched recursively) or a glob. Each file found gets a
format ("parquet", "ipc" or "otlp-json"), decided by its first bytes when they are
decisive and by its suffix otherwise, and the Hive partition values (``key=value``
folders) between the input's root and the file.
"""

from __future__ import annotations

import datetime as dt
import glob as globlib
import gzip
import os
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import polars as pl

from fluo.errors import DataError
from fluo.schema import CANONICAL_COLUMNS

PARQUET = "parquet"
IPC = "ipc"
OTLP_JSON = "otlp-json"
JAEGER_JSON = "jaeger-json"
ZIPKIN_JSON = "zipkin-json"
#: Text tables, read through a mapping profile (told by their header, or named).
CSV = "csv"
TSV = "tsv"
TEMPO = "tempo-vparquet4"
OTLP_PROTO = "otlp-proto"
FORMATS = (PARQUET, IPC, OTLP_JSON, JAEGER_JSON, ZIPKIN_JSON, OTLP_PROTO, CSV, TSV, TEMPO)
#: The JSON formats, parsed eagerly; a JSON file's format is told by its content.
JSON_FORMATS = (OTLP_JSON, JAEGER_JSON, ZIPKIN_JSON)
_ALIASES = {
    "arrow": IPC,
    "feather": IPC,
    "otlp": OTLP_JSON,
    "json": OTLP_JSON,
    "jaeger": JAEGER_JSON,
    "zipkin": ZIPKIN_JSON,
    "zipkin-v2": ZIPKIN_JSON,
    "zipkin-v2-json": ZIPKIN_JSON,
    "tempo": TEMPO,
    "vparquet4": TEMPO,
    "tempo-vparquet": TEMPO,
    "proto": OTLP_PROTO,
    "protobuf": OTLP_PROTO,
    "otlp-protobuf": OTLP_PROTO,
}

_SUFFIXES = {
    ".parquet": PARQUET,
    ".pq": PARQUET,
    ".parq": PARQUET,
    ".arrow": IPC,
    ".ipc": IPC,
    ".feather": IPC,
    ".arrows": IPC,
    ".json": OTLP_JSON,
    ".jsonl": OTLP_JSON,
    ".ndjson": OTLP_JSON,
    ".csv": CSV,
    ".tsv": TSV,
    ".pb": OTLP_PROTO,
    ".binpb": OTLP_PROTO,
    ".protobuf": OTLP_PROTO,
}

GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_PARQUET_MAGICS = (b"PAR1", b"PARE")
ARROW_FILE_MAGIC = b"ARROW1"
ARROW_STREAM_MAGIC = b"\xff\xff\xff\xff"
_FEATHER_V1_MAGIC = b"FEA1"
ZIP_MAGIC = b"PK\x03\x04"
_GLOB_CHARS = re.compile(r"[*?\[]")
_HIVE_DEFAULT = "__HIVE_DEFAULT_PARTITION__"

HiveValue = str | int | dt.date | None


@dataclass(frozen=True)
class SpanFile:
    """One file to read: its path, format and Hive partition values (key -> raw text)."""

    path: str
    format: str
    hive: dict[str, str | None] = field(default_factory=dict)


def check_format(format: str | None) -> str | None:
    """Validate a forced format name ("otlp_json", "feather", "zipkin" are accepted spellings)."""
    if format is None:
        return None
    name = format.strip().lower().replace("_", "-")
    name = _ALIASES.get(name, name)
    if name not in FORMATS:
        raise DataError(f"unknown span format '{format}'; expected one of {', '.join(FORMATS)}")
    return name


def read_head(path: str, size: int = 64) -> bytes:
    """The first `size` bytes of a file, or a DataError if it cannot be opened."""
    try:
        with open(path, "rb") as f:
            return f.read(size)
    except FileNotFoundError:
        raise DataError("no such file", path=path) from None
    except OSError as exc:
        raise DataError(f"cannot read file: {exc.strerror or exc}", path=path) from None


def sniff(head: bytes) -> str | None:
    """The format that a file's first bytes prove, or None when they prove nothing."""
    if head.startswith(_PARQUET_MAGICS):
        return PARQUET
    if head.startswith(ARROW_FILE_MAGIC) or head.startswith(ARROW_STREAM_MAGIC):
        return IPC
    if head.startswith(GZIP_MAGIC):
        return OTLP_JSON
    return None


_SNIFF_BYTES = 1 << 16
_JSON_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\]:]')
_JAEGER_SPAN_KEYS = {"traceID", "spanID", "operationName", "processID", "references"}
_ZIPKIN_SPAN_KEYS = {"localEndpoint", "remoteEndpoint", "timestamp", "parentId", "shared"}


def _json_keys(text: bytes) -> tuple[bytes, dict[int, set[str]]]:
    """The first bracket of a JSON prefix and the object keys seen at each nesting depth."""
    depth_keys: dict[int, set[str]] = {}
    stack: list[bytes] = []
    previous = b""
    first = b""
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        if token in (b"{", b"["):
            first = first or token
            stack.append(token)
        elif token in (b"}", b"]"):
            if stack:
                stack.pop()
        elif token == b":" and previous.startswith(b'"') and stack and stack[-1] == b"{":
            key = previous[1:-1].decode("utf-8", "replace")
            depth_keys.setdefault(len(stack), set()).add(key)
        previous = token
    return first, depth_keys


def json_format(text: bytes) -> str | None:
    """The JSON span format that the first bytes of a document show, or None.

    OTLP: an object with resourceSpans (or Jaeger's {"result": ...} wrapper). Jaeger:
    an object with data/spans/processes whose spans have traceID, or a list of such
    spans. Zipkin v2: a list (or a list of lists) of objects with traceId and id plus
    localEndpoint, timestamp, ... Keys are read from the prefix only, by depth.
    """
    first, keys = _json_keys(text)
    top = keys.get(1, set())
    if first == b"{":
        if "resourceSpans" in top or "result" in top:
            return OTLP_JSON
        inner = keys.get(2, set()) | keys.get(3, set()) | keys.get(4, set())
        if ("spans" in top and ("processes" in top or "traceID" in top)) or (
            "data" in top and inner & (_JAEGER_SPAN_KEYS | {"spans", "processes"})
        ):
            return JAEGER_JSON
        return None
    if first == b"[":
        for depth in (2, 3):  # [{span}] or [[{span}]]
            found = keys.get(depth, set())
            if found & _JAEGER_SPAN_KEYS or ("spans" in found and "processes" in found):
                return JAEGER_JSON
            if "traceId" in found and "id" in found and found & _ZIPKIN_SPAN_KEYS:
                return ZIPKIN_JSON
    return None


def sniff_json(path: str) -> str:
    """The format of a JSON span file (gzipped or not) from its first 64 KiB; OTLP if unsure."""
    try:
        with open(path, "rb") as f:
            head = f.read(_SNIFF_BYTES)
            if head.startswith(GZIP_MAGIC):
                f.seek(0)
                with gzip.GzipFile(fileobj=f) as z:
                    head = z.read(_SNIFF_BYTES)
    except (OSError, EOFError, zlib.error):
        return OTLP_JSON  # the reader reports the damage
    return json_format(head) or OTLP_JSON


def format_from_suffix(path: str) -> str | None:
    """The format that a file name suggests (``.json.gz`` counts as ``.json``)."""
    name = path.lower()
    if name.endswith(".gz"):
        name = name[:-3]
        inner = _SUFFIXES.get(os.path.splitext(name)[1])
        return inner if inner in (OTLP_JSON, CSV, TSV) else None
    return _SUFFIXES.get(os.path.splitext(name)[1])


def detect_format(path: str, head: bytes | None = None) -> str:
    """The format of one file: decisive magic bytes, then the suffix, then a JSON sniff."""
    if head is None:
        head = read_head(path)
    if not head:
        raise DataError("empty file", path=path)
    by_suffix = format_from_suffix(path)
    if by_suffix in (CSV, TSV) and not head.startswith((*_PARQUET_MAGICS, ARROW_FILE_MAGIC)):
        return by_suffix  # gzipped CSV too
    if head.startswith(ZIP_MAGIC) and path.lower().endswith(".zip"):
        return CSV  # an archive of CSV tables, read through a profile
    found = sniff(head)
    if found:
        return sniff_json(path) if found == OTLP_JSON else found
    if head.startswith(_ZSTD_MAGIC):
        raise DataError("zstd-compressed input is not supported; decompress it first", path=path)
    if head.startswith(_FEATHER_V1_MAGIC):
        raise DataError("Feather v1 files are not supported; rewrite as Feather v2/IPC", path=path)
    found = format_from_suffix(path)
    if found:
        return sniff_json(path) if found == OTLP_JSON else found
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"{"):
        return sniff_json(path)
    if text.startswith(b"["):
        in_list = sniff_json(path)
        if in_list != OTLP_JSON:
            return in_list
    if _is_otlp_proto(path, head):
        return OTLP_PROTO
    raise DataError(
        "cannot tell the format of this file (not Parquet, Arrow IPC or span JSON); "
        "pass format= to force one",
        path=path,
    )


def _is_otlp_proto(path: str, head: bytes) -> bool:
    """Whether a file starts like a length-prefixed OTLP protobuf message."""
    from fluo.ingest.otlp_proto import looks_like_otlp_proto

    try:
        size = os.path.getsize(path)
    except OSError:
        return False
    return looks_like_otlp_proto(head, size)


def _is_hidden(name: str) -> bool:
    """Whether a file or folder name is hidden (starts with . or _)."""
    return name.startswith((".", "_"))


def _is_tempo_meta(path: str) -> bool:
    """Whether a file is the meta.json (or meta.compacted.json) of a Tempo block folder."""
    name = os.path.basename(path)
    folder = os.path.dirname(path)
    return name in ("meta.json", "meta.compacted.json") and os.path.isfile(
        os.path.join(folder, "data.parquet")
    )


def _listed(path: str, forced: str | None, suffixes: tuple[str, ...] | None = None) -> bool:
    """Whether a file met while walking a directory or a glob is a span file to read."""
    if _is_hidden(os.path.basename(path)):
        return False
    if _is_tempo_meta(path):
        return False
    if suffixes is not None:
        return path.lower().endswith(suffixes)
    if forced is not None or format_from_suffix(path) is not None:
        return True
    if os.path.splitext(path)[1]:
        return False  # some other kind of file (README.md, meta.yaml, ...)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return sniff(head) is not None or _is_otlp_proto(path, head)


def _walk(root: str, forced: str | None, suffixes: tuple[str, ...] | None = None) -> list[str]:
    """Every span file under a directory, in sorted order, skipping hidden files and folders."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            if _listed(full, forced, suffixes):
                found.append(full)
    return found


def _hive_parts(root: str, path: str) -> dict[str, str | None]:
    """The ``key=value`` folders between `root` and `path`, values URL-decoded."""
    rel = os.path.relpath(os.path.dirname(path), root)
    parts: dict[str, str | None] = {}
    if rel in (".", ""):
        return parts
    for segment in Path(rel).parts:
        key, eq, value = segment.partition("=")
        if eq and key and key != "..":
            text = unquote(value)
            parts[unquote(key)] = None if text == _HIVE_DEFAULT else text
    return parts


def _glob_root(pattern: str) -> str:
    """The folder part of a glob before its first wildcard: Hive folders count from there."""
    parts = Path(pattern).parts
    fixed: list[str] = []
    for part in parts[:-1]:
        if _GLOB_CHARS.search(part):
            break
        fixed.append(part)
    return str(Path(*fixed)) if fixed else "."


def expand_input(
    item: str | Path, forced: str | None, suffixes: tuple[str, ...] | None = None
) -> list[SpanFile]:
    """The span files behind one input (file, directory or glob), with formats and Hive values.

    With `suffixes`, directories and globs yield only files whose names end with one of them.
    """
    text = os.path.expanduser(os.fspath(item))
    if not text:
        raise DataError("empty path given as span input")
    if os.path.isdir(text):
        files = _walk(text, forced, suffixes)
        if not files:
            raise DataError("directory holds no span files (.parquet, .arrow, .json, ...)", text)
        return [_classify(f, forced, _hive_parts(text, f)) for f in files]
    if os.path.exists(text) or not _GLOB_CHARS.search(text):
        return [_classify(text, forced, {})]
    root = _glob_root(text)
    files = []
    for match in sorted(globlib.glob(text, recursive=True)):
        if os.path.isdir(match):
            files.extend(_walk(match, forced, suffixes))
        elif _listed(match, forced, suffixes):
            files.append(match)
    if not files:
        raise DataError("no span files match this pattern", path=text)
    return [_classify(f, forced, _hive_parts(root, f)) for f in files]


def _classify(path: str, forced: str | None, hive: dict[str, str | None]) -> SpanFile:
    """A SpanFile for one path, its format forced or detected."""
    head = read_head(path)
    if not head:
        raise DataError("empty file", path=path)
    return SpanFile(path, forced or detect_format(path, head), hive)


def expand_inputs(
    paths: str | Path | Sequence[str | Path],
    forced: str | None,
    suffixes: tuple[str, ...] | None = None,
) -> list[SpanFile]:
    """Every span file behind `paths`, each once, in the order given."""
    items: list[str | Path] = [paths] if isinstance(paths, str | Path) else list(paths)
    if not items:
        raise DataError("no span inputs given")
    seen: set[str] = set()
    out: list[SpanFile] = []
    for item in items:
        if not isinstance(item, str | Path):
            raise DataError(f"span input must be a path, not {type(item).__name__}")
        for span_file in expand_input(item, forced, suffixes):
            key = os.path.realpath(span_file.path)
            if key not in seen:
                seen.add(key)
                out.append(span_file)
    return out


_INT_RE = re.compile(r"-?\d{1,18}")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


def hive_columns(files: Sequence[SpanFile]) -> dict[str, tuple[pl.DataType, list[HiveValue]]]:
    """Hive partition columns over `files`: key -> (dtype, one value per file, None if absent).

    Values that are all integers become Int64, all ISO dates Date, anything else String;
    a key named like a canonical text column (service_name=...) stays String.
    """
    keys: list[str] = []
    for f in files:
        keys.extend(k for k in f.hive if k not in keys)
    columns: dict[str, tuple[pl.DataType, list[HiveValue]]] = {}
    for key in keys:
        raw = [f.hive.get(key) for f in files]
        present = [v for v in raw if v is not None]
        values: list[HiveValue]
        dtype: pl.DataType
        if CANONICAL_COLUMNS.get(key) == pl.String:
            dtype, values = pl.String(), list(raw)
        elif present and all(_INT_RE.fullmatch(v) for v in present):
            dtype, values = pl.Int64(), [None if v is None else int(v) for v in raw]
        elif present and all(_DATE_RE.fullmatch(v) and _is_date(v) for v in present):
            dtype = pl.Date()
            values = [None if v is None else dt.date.fromisoformat(v) for v in raw]
        else:
            dtype, values = pl.String(), list(raw)
        columns[key] = (dtype, values)
    return columns


def _is_date(text: str) -> bool:
    """Whether text is a valid ISO date."""
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True
