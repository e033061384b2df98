"""Mapping profiles: read a CSV, TSV or Parquet span layout through a YAML mapping.

A profile names, for each canonical field, the source column and how to read it (unit of
a time, datetime text format, id spellings that mean "no parent", kind/status value maps,
a regex that derives the service from another column), and which columns become
attributes. Shipped profiles live in ``fluo/ingest/profiles/*.yaml`` (clickhouse, nezha,
deeptralog); a user's own is passed as a path. docs/ingest.md ("Mapping profiles")
describes the keys.

Reading is lazy and vectorised: one `pl.scan_csv` / `pl.scan_parquet` per file, Polars
expressions for every conversion. A record whose values cannot be read (a time that is
not a number, a missing id, an end before the start) stops the collect with a DataError
naming the file and line, or, with ``on_error="skip"``, is left out and counted.
"""

from __future__ import annotations

import fnmatch
import functools
import io
import os
import re
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import polars as pl
import yaml

from fluo.errors import DataError, did_you_mean
from fluo.ingest.detect import CSV, PARQUET, TSV, ZIP_MAGIC, SpanFile, hive_columns, read_head
from fluo.ingest.normalize import (
    KIND_BY_SPELLING,
    STATUS_BY_SPELLING,
    canonical_frame,
)
from fluo.ingest.report import MAX_REASONS, IngestReport, OnError
from fluo.schema import ATTRIBUTE_MAP, SPAN_KINDS, STATUS_CODES

#: Canonical fields a profile may map, and how their source values are read.
TEXT_FIELDS = ("name", "service_name", "status_message", "scope_name", "scope_version")
ID_FIELDS = ("trace_id", "span_id", "parent_span_id")
TIME_FIELDS = ("start_time", "end_time", "duration")
ENUM_FIELDS = ("kind", "status_code")
FIELDS = ID_FIELDS + TEXT_FIELDS + TIME_FIELDS + ENUM_FIELDS
#: Nanoseconds per unit of a numeric time or duration.
UNITS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
DATETIME = "datetime"
_FIELD_KEYS = {"column", "value", "unit", "format", "timezone", "pattern", "values", "root"}
_FIELD_KEYS |= {"optional"}
_PROFILE_KEYS = {"name", "description", "format", "detect", "fields", "span_attributes"}
_PROFILE_KEYS |= {"resource_attributes", "extra", "csv", "members"}
_CSV_KEYS = {"separator", "quote", "null_values"}
_EXTRA_CHOICES = ("drop", "span_attributes", "resource_attributes")
_ROW = "__fluo_row__"
_REASON = "__fluo_reason__"
_DETAIL = "__fluo_detail__"
_FILE = "__fluo_file__"
_STRUCT = pl.Struct({"key": pl.String, "value": pl.String})
#: Text suffixes a profile reads from a directory (and inside zip archives).
TEXT_SUFFIXES = (".csv", ".tsv", ".csv.gz", ".tsv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")


@dataclass(frozen=True)
class FieldSpec:
    """How one canonical field is read from the source (see docs/ingest.md)."""

    column: str | None = None
    value: str | None = None
    unit: str | None = None
    format: str | None = None
    timezone: str = "UTC"
    pattern: str | None = None
    values: Mapping[str, str] = field(default_factory=dict)
    root: tuple[str, ...] = ()
    optional: bool = False


@dataclass(frozen=True)
class AttributeSpec:
    """Where a scope's attributes come from: a map column and/or one column per key."""

    map: str | None = None
    columns: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)  # hashed by identity: files are grouped by their profile
class Profile:
    """A mapping from one source layout to the canonical span table."""

    name: str
    source: str
    description: str = ""
    format: str | None = None  # csv, tsv or parquet; None: each file's own
    detect: tuple[str, ...] = ()
    fields: Mapping[str, FieldSpec] = field(default_factory=dict)
    span_attributes: AttributeSpec = AttributeSpec()
    resource_attributes: AttributeSpec = AttributeSpec()
    extra: str = "drop"
    separator: str | None = None
    quote: str | None = '"'
    null_values: tuple[str, ...] = ()
    members: tuple[str, ...] = ("*.csv", "*.tsv", "*.csv.gz", "*.tsv.gz")

    @property
    def suffixes(self) -> tuple[str, ...]:
        """File suffixes this profile reads when it walks a directory."""
        if self.format == PARQUET:
            return PARQUET_SUFFIXES
        if self.format in (CSV, TSV):  # a MANIFEST.tsv beside CSV data is not read
            return (f".{self.format}", f".{self.format}.gz", ".zip")
        return (*TEXT_SUFFIXES, *PARQUET_SUFFIXES, ".zip")

    def used_columns(self) -> list[str]:
        """Source columns the profile reads, in order."""
        used = [s.column for s in self.fields.values() if s.column]
        for attrs in (self.span_attributes, self.resource_attributes):
            used += [attrs.map] if attrs.map else []
            used += list(attrs.columns.values())
        return list(dict.fromkeys(used))

    def matches(self, columns: Sequence[str]) -> bool:
        """Whether a file with these columns has this profile's layout (its `detect` columns)."""
        return bool(self.detect) and set(self.detect) <= set(columns)


# --- loading -----------------------------------------------------------------------------


def _fail(source: str, message: str) -> DataError:
    return DataError(f"invalid profile: {message}", path=source)


def _check_keys(source: str, where: str, given: Mapping[str, Any], allowed: set[str]) -> None:
    for key in given:
        if key not in allowed:
            hint = did_you_mean(str(key), allowed)
            raise _fail(source, f"unknown key '{key}' in {where}" + (f"; {hint}" if hint else ""))


def _text(source: str, where: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _fail(source, f"{where} must be text, not {value!r}")
    return str(value)


def _field_spec(source: str, name: str, raw: Any) -> FieldSpec:
    """Parse one entry of `fields`: a column name, or a mapping of options."""
    if isinstance(raw, str):
        raw = {"column": raw}
    if not isinstance(raw, dict):
        raise _fail(source, f"fields.{name} must be a column name or a mapping, not {raw!r}")
    _check_keys(source, f"fields.{name}", raw, _FIELD_KEYS)
    where = f"fields.{name}"
    if ("column" in raw) == ("value" in raw):
        raise _fail(source, f"{where} needs exactly one of 'column' and 'value'")
    unit = raw.get("unit")
    if name in TIME_FIELDS:
        allowed = (*UNITS, DATETIME) if name != "duration" else tuple(UNITS)
        if unit is None and "column" in raw:
            raise _fail(source, f"{where} needs a unit ({', '.join(allowed)})")
        if unit is not None and unit not in allowed:
            raise _fail(source, f"{where}.unit must be one of {', '.join(allowed)}, not {unit!r}")
    elif unit is not None:
        raise _fail(source, f"{where}.unit applies to times and durations only")
    values = raw.get("values") or {}
    if values and name not in ENUM_FIELDS:
        raise _fail(source, f"{where}.values applies to kind and status_code only")
    if not isinstance(values, dict):
        raise _fail(source, f"{where}.values must be a mapping")
    allowed_values = SPAN_KINDS if name == "kind" else STATUS_CODES
    mapped = {}
    for key, target in values.items():
        target_text = _text(source, f"{where}.values", target).upper()
        if target_text not in allowed_values:
            raise _fail(
                source, f"{where}.values maps to {target!r}; expected {', '.join(allowed_values)}"
            )
        for spelling in _value_keys(key):
            mapped[spelling] = target_text
    pattern = raw.get("pattern")
    if pattern is not None:
        try:
            groups = re.compile(pattern).groups
        except (re.error, TypeError) as exc:
            raise _fail(source, f"{where}.pattern is not a regular expression: {exc}") from None
        if groups > 1:
            raise _fail(source, f"{where}.pattern must have at most one capture group")
    root = raw.get("root") or []
    if name != "parent_span_id" and root:
        raise _fail(source, f"{where}.root applies to parent_span_id only")
    if not isinstance(root, list):
        root = [root]
    return FieldSpec(
        column=_text(source, f"{where}.column", raw["column"]) if "column" in raw else None,
        value=_text(source, f"{where}.value", raw["value"]) if "value" in raw else None,
        unit=unit,
        format=raw.get("format"),
        timezone=str(raw.get("timezone", "UTC")),
        pattern=pattern,
        values=mapped,
        root=tuple(_text(source, f"{where}.root", r) for r in root),
        optional=bool(raw.get("optional", False)),
    )


def _value_keys(value: Any) -> tuple[str, ...]:
    """The texts a `values` key matches (lowercase). YAML reads an unquoted yes/no/on/off as a
    boolean: such a key matches every spelling of it (true, yes, on, y / false, no, off, n)."""
    if value is True:
        return ("true", "yes", "on", "y")
    if value is False:
        return ("false", "no", "off", "n")
    return (str(value).strip().lower(),)


def _attribute_spec(source: str, name: str, raw: Any) -> AttributeSpec:
    if raw is None:
        return AttributeSpec()
    if isinstance(raw, str):
        return AttributeSpec(map=raw)
    if not isinstance(raw, dict):
        raise _fail(source, f"{name} must be a map column name or a mapping")
    _check_keys(source, name, raw, {"map", "columns"})
    columns = raw.get("columns") or {}
    if not isinstance(columns, dict):
        raise _fail(source, f"{name}.columns must map attribute keys to columns")
    return AttributeSpec(
        map=_text(source, f"{name}.map", raw["map"]) if raw.get("map") else None,
        columns={str(k): _text(source, f"{name}.columns", v) for k, v in columns.items()},
    )


def parse_profile(data: Any, source: str) -> Profile:
    """A Profile from parsed YAML; DataError (naming `source`) when it is malformed."""
    if not isinstance(data, dict):
        raise _fail(source, "expected a mapping with 'fields'")
    _check_keys(source, "the profile", data, _PROFILE_KEYS)
    fields_raw = data.get("fields")
    if not isinstance(fields_raw, dict):
        raise _fail(source, "'fields' must map canonical fields to source columns")
    _check_keys(source, "fields", fields_raw, set(FIELDS))
    fields = {name: _field_spec(source, name, raw) for name, raw in fields_raw.items()}
    for required in ("trace_id", "span_id"):
        if required not in fields:
            raise _fail(source, f"fields.{required} is required")
    if "start_time" not in fields:
        raise _fail(source, "fields.start_time is required")
    fmt = data.get("format")
    if fmt is not None and fmt not in (CSV, TSV, PARQUET):
        raise _fail(source, f"format must be csv, tsv or parquet, not {fmt!r}")
    extra = data.get("extra", "drop")
    if extra not in _EXTRA_CHOICES:
        raise _fail(source, f"extra must be one of {', '.join(_EXTRA_CHOICES)}, not {extra!r}")
    csv = data.get("csv") or {}
    if not isinstance(csv, dict):
        raise _fail(source, "csv must be a mapping")
    _check_keys(source, "csv", csv, _CSV_KEYS)
    detect = data.get("detect") or []
    members = data.get("members") or list(Profile.members)
    if not isinstance(detect, list) or not isinstance(members, list):
        raise _fail(source, "detect and members must be lists")
    return Profile(
        name=str(data.get("name") or os.path.splitext(os.path.basename(source))[0]),
        source=source,
        description=str(data.get("description") or ""),
        format=fmt,
        detect=tuple(str(c) for c in detect),
        fields=fields,
        span_attributes=_attribute_spec(source, "span_attributes", data.get("span_attributes")),
        resource_attributes=_attribute_spec(
            source, "resource_attributes", data.get("resource_attributes")
        ),
        extra=extra,
        separator=csv.get("separator"),
        quote=csv.get("quote", '"') or None,
        null_values=tuple(str(v) for v in csv.get("null_values") or ()),
        members=tuple(str(m) for m in members),
    )


def _load_text(text: str, source: str) -> Profile:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _fail(source, f"not YAML: {str(exc).splitlines()[0]}") from None
    return parse_profile(data, source)


@functools.cache
def shipped_profiles() -> dict[str, Profile]:
    """The profiles shipped with fluo, by name."""
    folder = resources.files("fluo.ingest").joinpath("profiles")
    found = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith((".yaml", ".yml")):
            profile = _load_text(entry.read_text(encoding="utf-8"), f"<profile {entry.name}>")
            found[profile.name] = profile
    return found


def is_profile_reference(value: str) -> bool:
    """Whether a --from/format value names a profile (a shipped name or a YAML path)."""
    return value in shipped_profiles() or value.lower().endswith((".yaml", ".yml"))


def load_profile(reference: str | os.PathLike[str] | Profile) -> Profile:
    """A profile by shipped name ("nezha") or by the path of a YAML file."""
    if isinstance(reference, Profile):
        return reference
    text = os.fspath(reference)
    shipped = shipped_profiles()
    if text in shipped:
        return shipped[text]
    if not os.path.exists(text):
        hint = did_you_mean(text, shipped)
        names = ", ".join(shipped)
        raise DataError(
            f"no such profile: not a file, nor a shipped profile ({names})"
            + (f"; {hint}" if hint else ""),
            path=text,
        )
    try:
        with open(text, encoding="utf-8") as f:
            body = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read profile: {exc}", path=text) from None
    return _load_text(body, text)


def detect_profile(columns: Sequence[str]) -> Profile | None:
    """The shipped profile whose `detect` columns a file has (the most specific one)."""
    found = [p for p in shipped_profiles().values() if p.matches(columns)]
    return max(found, key=lambda p: len(p.detect)) if found else None


# --- reading ------------------------------------------------------------------------------


class RecordError(DataError):
    """A DataError raised inside a Polars plan while it runs.

    Polars re-raises an exception from a UDF as the same type with its own context appended
    to the one-argument message; this class cuts that context off again.
    """

    def __init__(self, message: str, path: str | None = None, record: int | None = None):
        super().__init__(message.split("\n\nThis error occurred", 1)[0].strip(), path, record)

    def __str__(self) -> str:
        return super().__str__() if self.path else self.message


@dataclass
class _Source:
    """One table a profile reads: a file, or a CSV member of a zip archive."""

    label: str
    frame: pl.LazyFrame  # with a _ROW column (the line or record number) if `checked`
    schema: dict[str, pl.DataType]
    text: bool  # CSV/TSV (values are text) rather than Parquet
    tsv: bool
    checked: bool = True  # records are checked (text is parsed)
    paths: tuple[str, ...] = ()  # several CSV files in one scan: a _FILE column says which


def _csv_options(profile: Profile, tsv: bool) -> dict[str, Any]:
    separator = profile.separator or ("\t" if tsv else ",")
    quote = None if tsv and profile.separator is None else profile.quote
    nulls = list(profile.null_values) or (["\\N"] if tsv else [])
    return {
        "separator": separator,
        "quote_char": quote,
        "null_values": nulls or None,
        "infer_schema": False,
    }


def _reason(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def _open_sources(span_file: SpanFile, profile: Profile) -> list[_Source]:
    """The tables behind one file: itself, or the matching members of a zip archive."""
    path = span_file.path
    if read_head(path, 4) == ZIP_MAGIC:
        return _zip_sources(path, profile)
    if span_file.format == PARQUET:
        try:
            schema = dict(pl.read_parquet_schema(path))
        except Exception as exc:
            raise DataError(f"not a valid Parquet file: {_reason(exc)}", path=path) from None
        # Typed columns need no record checks; without them (and the row index they need)
        # predicates on the canonical columns reach the Parquet scan.
        checked = any(
            name in TIME_FIELDS and spec.column in schema and schema[spec.column] == pl.String
            for name, spec in profile.fields.items()
        )
        index = {"row_index_name": _ROW, "row_index_offset": 1} if checked else {}
        frame = pl.scan_parquet(path, **index)  # type: ignore[arg-type]
        return [_Source(path, frame, schema, text=False, tsv=False, checked=checked)]
    tsv = profile.format == TSV or (profile.format is None and span_file.format == TSV)
    options = _csv_options(profile, tsv)
    try:
        header = pl.read_csv(path, n_rows=0, **options)
    except Exception as exc:
        raise DataError(f"cannot read CSV header: {_reason(exc)}", path=path) from None
    frame = pl.scan_csv(path, row_index_name=_ROW, row_index_offset=2, **options)
    return [_Source(path, frame, dict(header.schema), text=True, tsv=tsv)]


def _csv_groups(files: Sequence[SpanFile], profile: Profile) -> list[list[SpanFile]]:
    """Plain (not zipped) text files with the same header and separator, in groups read by
    one `pl.scan_csv` (much faster than a scan per file for hundreds of minute files)."""
    groups: dict[tuple[object, ...], list[SpanFile]] = {}
    for span_file in files:
        path = span_file.path
        if span_file.format == PARQUET or read_head(path, 4) == ZIP_MAGIC:
            groups[("single", path)] = [span_file]
            continue
        tsv = profile.format == TSV or (profile.format is None and span_file.format == TSV)
        try:
            header = pl.read_csv(path, n_rows=0, **_csv_options(profile, tsv)).columns
        except Exception as exc:
            raise DataError(f"cannot read CSV header: {_reason(exc)}", path=path) from None
        groups.setdefault(("csv", tsv, tuple(header)), []).append(span_file)
    return list(groups.values())


def _grouped_source(files: Sequence[SpanFile], profile: Profile) -> _Source:
    """One source over several CSV files of one header."""
    paths = tuple(f.path for f in files)
    tsv = profile.format == TSV or (profile.format is None and files[0].format == TSV)
    options = _csv_options(profile, tsv)
    header = pl.read_csv(paths[0], n_rows=0, **options)
    frame = pl.scan_csv(
        list(paths), row_index_name=_ROW, include_file_paths=_FILE, glob=False, **options
    )
    return _Source(paths[0], frame, dict(header.schema), text=True, tsv=tsv, paths=paths)


def _zip_sources(path: str, profile: Profile) -> list[_Source]:
    """Every member of a zip archive that matches the profile's `members` globs, read now."""
    sources = []
    try:
        with zipfile.ZipFile(path) as archive:
            names = [
                n
                for n in archive.namelist()
                if not n.endswith("/")
                and any(fnmatch.fnmatch(os.path.basename(n), g) for g in profile.members)
            ]
            for name in sorted(names):
                label = f"{path}/{name}"
                tsv = profile.format == TSV or name.lower().endswith((".tsv", ".tsv.gz"))
                data = archive.read(name)
                if not data.strip():
                    continue
                try:
                    frame = pl.read_csv(
                        io.BytesIO(data),
                        row_index_name=_ROW,
                        row_index_offset=2,
                        **_csv_options(profile, tsv),
                    )
                except Exception as exc:
                    raise DataError(f"cannot read CSV: {_reason(exc)}", path=label) from None
                schema = {k: v for k, v in frame.schema.items() if k != _ROW}
                sources.append(_Source(label, frame.lazy(), schema, text=True, tsv=tsv))
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"not a valid zip archive: {_reason(exc)}", path=path) from None
    if not sources:
        globs = ", ".join(profile.members)
        raise DataError(f"zip archive holds no span table matching {globs}", path=path)
    return sources


def _unescape_tsv(text: pl.Expr) -> pl.Expr:
    """ClickHouse/TSV escapes (\\t \\n \\r \\' \\\\) in text back to the characters."""
    return (
        text.str.replace_all("\\\\", "\x00", literal=True)
        .str.replace_all("\\t", "\t", literal=True)
        .str.replace_all("\\n", "\n", literal=True)
        .str.replace_all("\\r", "\r", literal=True)
        .str.replace_all("\\'", "'", literal=True)
        .str.replace_all("\x00", "\\", literal=True)
    )


_MAP_STRING = r"'(?:[^'\\]|\\.)*'"
_MAP_PAIR = rf"{_MAP_STRING}:{_MAP_STRING}"
_MAP_GROUPS = r"'((?:[^'\\]|\\.)*)':'((?:[^'\\]|\\.)*)'"


def _map_from_text(text: pl.Expr) -> pl.Expr:
    """A ClickHouse Map literal as text (``{'k':'v','k2':'v2'}``) as a Map(String, String)."""
    pairs = text.str.extract_all(_MAP_PAIR).list.eval(
        pl.element().str.extract_groups(_MAP_GROUPS).struct.rename_fields(["key", "value"])
    )
    pairs = pairs.list.eval(
        pl.struct(
            key=_unescape_tsv(pl.element().struct.field("key")),
            value=_unescape_tsv(pl.element().struct.field("value")),
        )
    )
    return pairs.cast(ATTRIBUTE_MAP)


def _as_text(column: str, dtype: pl.DataType, source: _Source) -> pl.Expr:
    """A source column as String."""
    expr = pl.col(column)
    if dtype == pl.Binary:
        return expr.bin.encode("hex")
    if dtype != pl.String:
        return expr.cast(pl.String)
    return _unescape_tsv(expr) if source.tsv else expr


def _time_ns(column: str, dtype: pl.DataType, spec: FieldSpec) -> pl.Expr:
    """A time (or duration) column as Int64 nanoseconds: unix time for times."""
    expr = pl.col(column)
    if isinstance(dtype, pl.Datetime):
        expr = expr.dt.cast_time_unit("ns")
        if dtype.time_zone is None:
            expr = expr.dt.replace_time_zone(spec.timezone)
        return expr.dt.epoch("ns")
    if isinstance(dtype, pl.Duration):
        return expr.dt.total_nanoseconds()
    if spec.unit == DATETIME:
        text = expr.cast(pl.String).str.strip_chars()
        parsed = text.str.to_datetime(spec.format, time_unit="ns", strict=False)
        if spec.format is None or "%z" not in spec.format:
            parsed = parsed.dt.replace_time_zone(spec.timezone)
        return parsed.dt.epoch("ns")
    factor = UNITS[spec.unit or "ns"]
    if dtype.is_integer():
        return expr.cast(pl.Int64) * factor
    if dtype.is_float() or dtype.is_decimal():
        return (expr.cast(pl.Float64) * factor).round().cast(pl.Int64)
    text = expr.cast(pl.String).str.strip_chars()
    as_int = text.cast(pl.Int64, strict=False) * factor
    as_float = (text.cast(pl.Float64, strict=False) * factor).round().cast(pl.Int64, strict=False)
    return pl.coalesce(as_int, as_float)


def _enum(text: pl.Expr, spec: FieldSpec, standard: Mapping[object, str], default: str) -> pl.Expr:
    """Kind or status: the profile's own value map first, then every standard spelling."""
    table = {str(k).lower(): v for k, v in standard.items()} | dict(spec.values)
    key = text.str.strip_chars().str.to_lowercase()
    return key.replace_strict(table, default=default, return_dtype=pl.String)


def _attribute_map(attrs: AttributeSpec, extra: list[str], source: _Source) -> pl.Expr | None:
    """The attribute map of one scope: the map column's entries, then one entry per column."""
    parts: list[pl.Expr] = []
    if attrs.map:
        dtype = source.schema[attrs.map]
        if source.text and dtype == pl.String:
            parts.append(_map_from_text(pl.col(attrs.map)).cast(pl.List(_STRUCT)))
        else:
            as_map = pl.col(attrs.map).cast(ATTRIBUTE_MAP)
            parts.append(as_map.cast(pl.List(_STRUCT)))
    entries = list(attrs.columns.items()) + [(c, c) for c in extra]
    if entries:
        pairs = [
            pl.struct(
                key=pl.lit(key, dtype=pl.String),
                value=_as_text(column, source.schema[column], source),
            )
            for key, column in entries
        ]
        listed = pl.concat_list(pairs).list.filter(pl.element().struct.field("value").is_not_null())
        parts.append(listed)
    if not parts:
        return None
    combined = parts[0] if len(parts) == 1 else pl.concat_list(parts)
    return combined.fill_null(pl.lit([], dtype=pl.List(_STRUCT))).cast(ATTRIBUTE_MAP)


@dataclass
class _Checks:
    """Record checks of one source: (condition, message, detail) in order of precedence."""

    items: list[tuple[pl.Expr, str, pl.Expr | None]] = field(default_factory=list)

    def add(self, bad: pl.Expr, message: str, detail: pl.Expr | None = None) -> None:
        self.items.append((bad, message, detail))

    def reason(self) -> pl.Expr:
        expr: Any = pl
        for i, (bad, _, _) in enumerate(self.items, start=1):
            expr = expr.when(bad.fill_null(False)).then(pl.lit(i, pl.Int32))
        return expr.otherwise(pl.lit(0, pl.Int32)) if self.items else pl.lit(0, pl.Int32)

    def detail(self) -> pl.Expr:
        """The offending value of the first failed check (null if it has none)."""
        expr: Any = pl
        for bad, _, detail in self.items:
            value = detail.cast(pl.String) if detail is not None else pl.lit(None, pl.String)
            expr = expr.when(bad.fill_null(False)).then(value)
        return expr.otherwise(pl.lit(None, pl.String)) if self.items else pl.lit(None, pl.String)

    def describe(self, reason: int, detail: str | None) -> str:
        message = self.items[reason - 1][1]
        return f"{message} ({detail!r})" if detail is not None else message


def _raw_columns(source: _Source, profile: Profile, checks: _Checks) -> dict[str, pl.Expr]:
    """The raw columns `canonical_frame` takes, as expressions over one source."""
    out: dict[str, pl.Expr] = {}
    times: dict[str, pl.Expr] = {}
    for name, spec in profile.fields.items():
        if spec.column is not None and spec.column not in source.schema:
            if spec.optional:
                continue
            shown = ", ".join(list(source.schema)[:30])
            raise DataError(
                f"profile '{profile.name}' maps {name} to column '{spec.column}', which this "
                f"file does not have; columns: {shown}",
                path=source.label,
            )
        if spec.column is None:
            text = pl.lit(spec.value, dtype=pl.String)
            dtype: pl.DataType = pl.String()
        else:
            dtype = source.schema[spec.column]
            text = _as_text(spec.column, dtype, source)
        if name in TIME_FIELDS:
            if spec.column is None:
                value = pl.lit(int(float(spec.value or 0) * UNITS[spec.unit or "ns"]), pl.Int64)
            else:
                value = _time_ns(spec.column, dtype, spec)
                unit = spec.unit or "ns"
                what = "a datetime" if unit == DATETIME else f"a number of {unit}"
                if spec.format:
                    what += f" in the format {spec.format!r}"
                checks.add(
                    text.is_not_null() & (text.str.strip_chars() != "") & value.is_null(),
                    f"column '{spec.column}' ({name}) is not {what}",
                    text,
                )
            times[name] = value
            continue
        if spec.pattern is not None:
            group = 1 if re.compile(spec.pattern).groups else 0
            text = pl.coalesce(text.str.extract(spec.pattern, group), text)
        if name == "kind":
            out[name] = _enum(text, spec, KIND_BY_SPELLING, "UNSPECIFIED")
        elif name == "status_code":
            out[name] = _enum(text, spec, STATUS_BY_SPELLING, "UNSET")
        elif name in ("status_message", "scope_name", "scope_version"):
            out[name] = pl.when(text == "").then(None).otherwise(text)
        elif name == "parent_span_id" and spec.root:
            out[name] = pl.when(text.is_in(list(spec.root))).then(None).otherwise(text)
        else:
            out[name] = text
    for required in ("trace_id", "span_id"):
        checks.add(
            out[required].is_null() | (out[required] == ""),
            f"{required} ({profile.fields[required].column}) is missing",
        )
    start = times.get("start_time")
    end = times.get("end_time")
    if end is None and start is not None and "duration" in times:
        end = start + times["duration"]
        checks.add(times["duration"] < 0, "negative duration", times["duration"])
    if start is not None:
        out["start_ns"] = start
    if end is not None:
        out["end_ns"] = end
    if start is not None and end is not None:
        checks.add(end < start, "end before start (ns)", end - start)
    used = set(profile.used_columns())
    extra = [c for c in source.schema if c not in used] if profile.extra != "drop" else []
    for scope in ("span_attributes", "resource_attributes"):
        attrs: AttributeSpec = getattr(profile, scope)
        for column in [attrs.map, *attrs.columns.values()]:
            if column and column not in source.schema:
                raise DataError(
                    f"profile '{profile.name}' reads {scope} from column '{column}', "
                    "which this file does not have",
                    path=source.label,
                )
        built = _attribute_map(attrs, extra if profile.extra == scope else [], source)
        if built is not None:
            out[scope] = built
    return out


def _checked(
    source: _Source, raw: dict[str, pl.Expr], checks: _Checks, on_error: OnError
) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """The source's raw columns with bad records failing the collect (or filtered out), and
    the frame of bad records (reason, detail, line) for counting them."""
    if not source.checked:
        frame = source.frame.select(expr.alias(name) for name, expr in raw.items())
        return frame, frame.head(0).select(
            pl.lit(0, pl.Int64).alias(_ROW),
            pl.lit(0, pl.Int32).alias(_REASON),
            pl.lit(None, pl.String).alias(_DETAIL),
        )
    file_column = [_FILE] if source.paths else []
    frame = source.frame.select(
        _ROW,
        *file_column,
        *(expr.alias(name) for name, expr in raw.items()),
        checks.reason().alias(_REASON),
        checks.detail().alias(_DETAIL),
    )
    if source.paths:  # the row index runs on across the files: make it each file's line
        line = pl.col(_ROW) - pl.col(_ROW).min().over(_FILE) + 2
        labelled = frame.with_columns(line.alias(_ROW))
    else:
        labelled = frame.with_columns(pl.lit(source.label).alias(_FILE))
    bad = labelled.filter(pl.col(_REASON) > 0).select(_FILE, _ROW, _REASON, _DETAIL)
    if on_error == "skip":
        kept = frame.filter(pl.col(_REASON) == 0)
    else:
        fail = _failing_check(source.label, checks)
        # not elementwise: the UDF sees the whole table, so the error names the first bad
        # record (de-duplication needs the whole table in memory anyway)
        probe = pl.struct(_ROW, _REASON, _DETAIL, *file_column).map_batches(
            fail, return_dtype=pl.Boolean
        )
        kept = frame.filter(probe)
    return kept.drop(_ROW, _REASON, _DETAIL), bad  # a grouped scan keeps _FILE


def _failing_check(label: str, checks: _Checks) -> Callable[[pl.Series], pl.Series]:
    """A batch UDF: all True, or a RecordError for the first bad record of the batch."""

    def check(batch: pl.Series) -> pl.Series:
        reasons = batch.struct.field(_REASON)
        bad = reasons > 0
        if bad.any():
            i = int(bad.arg_true()[0])
            rows = batch.struct.field(_ROW)
            row = rows[i]
            detail = batch.struct.field(_DETAIL)[i]
            path = label
            if _FILE in batch.struct.fields:  # several files: this file's own line number
                files = batch.struct.field(_FILE)
                path = files[i]
                row = row - rows.filter(files == path).min() + 2
            raise RecordError(checks.describe(int(reasons[i]), detail), path=path, record=row)
        return ~bad

    return check


def scan_profile(
    files: Sequence[SpanFile],
    profile: Profile,
    *,
    report: IngestReport | None = None,
    on_error: OnError = "fail",
) -> pl.LazyFrame:
    """A lazy canonical span table over files read through `profile`, exact duplicates dropped.

    Hive partition values of the files are added as columns. The duplicate count (and, with
    ``on_error="skip"``, the skipped records) go to `report` when it is first read.
    """
    hive = hive_columns(files)
    hive_of = {f.path: i for i, f in enumerate(files)}
    frames: list[pl.LazyFrame] = []
    bad_frames: list[tuple[_Checks, pl.LazyFrame]] = []
    for group in _csv_groups(files, profile):
        if len(group) > 1:
            sources = [_grouped_source(group, profile)]
        else:
            sources = _open_sources(group[0], profile)
        for source in sources:
            checks = _Checks()
            raw = _raw_columns(source, profile, checks)
            kept, bad = _checked(source, raw, checks, on_error)
            if source.paths:
                if hive:
                    kept = kept.with_columns(_hive_by_file(hive, source.paths, hive_of))
                kept = kept.drop(_FILE)
            elif hive:
                i = hive_of[group[0].path]
                kept = kept.with_columns(
                    pl.lit(values[i], dtype=dtype).alias(key)
                    for key, (dtype, values) in hive.items()
                )
            frames.append(kept)
            bad_frames.append((checks, bad))
    combined = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
    spans = canonical_frame(combined, keep=list(hive))
    unique = spans.unique(maintain_order=True)
    if report is not None:
        report.files.extend(f.path for f in files)
        report.defer(_counter(spans, bad_frames if on_error == "skip" else []))
    return unique


def _hive_by_file(
    hive: dict[str, tuple[pl.DataType, list[Any]]],
    paths: Sequence[str],
    index: Mapping[str, int],
) -> list[pl.Expr]:
    """Hive columns looked up from each row's file (the _FILE column of a grouped scan)."""
    return [
        pl.col(_FILE)
        .replace_strict(
            list(paths), [values[index[p]] for p in paths], default=None, return_dtype=dtype
        )
        .alias(key)
        for key, (dtype, values) in hive.items()
    ]


def _counter(
    spans: pl.LazyFrame, bad_frames: list[tuple[_Checks, pl.LazyFrame]]
) -> Callable[[], tuple[int, int, list[str]]]:
    """Counts the duplicates (rows minus distinct rows) and the skipped records, when called."""

    def count() -> tuple[int, int, list[str]]:
        try:
            total, distinct = (
                spans.select(pl.len(), pl.struct(pl.all()).n_unique()).collect().row(0)
            )
            skipped = 0
            reasons: list[str] = []
            for checks, bad in bad_frames:
                n = bad.select(pl.len()).collect().item()
                skipped += n
                if n and len(reasons) < MAX_REASONS:
                    first = bad.head(MAX_REASONS).collect().iter_rows()
                    for path, row, reason, detail in first:
                        reasons.append(f"{path}:{row}: {checks.describe(reason, detail)}")
        except pl.exceptions.PolarsError as exc:
            raise DataError(f"cannot count duplicates: {_reason(exc)}") from None
        return total - distinct, skipped, reasons[:MAX_REASONS]

    return count
