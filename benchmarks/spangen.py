"""Deterministic synthetic OpenTelemetry spans in fluo's canonical Parquet layout.

Used by the benchmarks in this folder. Everything is generated with vectorised numpy,
Polars and pyarrow operations (no Python loop per span): 5M spans take well under a minute.

The table has every canonical column (see fluo/schema.py), sorted by `start_time`,
zstd-compressed, ~122k rows per row group. Span attributes are laid out both ways at
once, as fluo's ingest does for hot keys:

* `span_attributes` (Map<String,String>) holds every attribute as text;
* `attr.http.url`, `attr.http.method` (String) and `attr.http.status_code` (Int64)
  are promoted, typed copies of three of them;
* `db.system`, `customer.tier` and `net.peer.name` exist only in the map.

Distributions (per span): ~66 span names with Zipf-like popularity over 15 services;
geometric trace sizes (mean 10 spans, random recursive parent tree); lognormal
durations (median 20 ms, roots 8x longer); ~2.8% ERROR status; ~61% HTTP spans with
`http.method`, `http.status_code` and (~50% of all spans) a high-cardinality `http.url`
(ids up to 10^6); ~20% database/cache calls with `db.system`; `net.peer.name` on ~95%
of client spans; `customer.tier` on ~85% of spans.

    python benchmarks/spangen.py --spans 1000000   # -> benchmarks/data/spans_1000000_s7.parquet
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

SPAN_KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")

MS = 1_000_000
SEC = 1_000 * MS
DAY_START_NS = 1_767_225_600 * SEC  # 2026-01-01T00:00:00Z
DAY_NS = 86_400 * SEC
#: Larger datasets are generated in parts of at most this many spans (bounded memory).
PART_SPANS = 5_000_000
ROW_GROUP_ROWS = 122_000
DEFAULT_SEED = 7

SERVICES = [
    "frontend", "checkout", "payment", "cart", "catalog", "search", "user", "auth",
    "inventory", "shipping", "email", "recommendation", "ad", "currency", "db-proxy",
]  # fmt: skip

# operation categories
HTTP, HTTP_CLIENT, DB, REDIS, INTERNAL, PRODUCER, CONSUMER = range(7)
CATEGORY_SCOPE = [
    "io.opentelemetry.http", "io.opentelemetry.http-client", "io.opentelemetry.jdbc",
    "io.opentelemetry.lettuce", "shophub.manual", "io.opentelemetry.kafka",
    "io.opentelemetry.kafka",
]  # fmt: skip

#: (span name, service, category) for every operation.
OPERATIONS: list[tuple[str, str, int]] = [
    op
    for s in SERVICES
    for op in (
        (f"GET /{s}", s, HTTP),
        (f"POST /{s}", s, HTTP),
        (f"{s}.process", s, INTERNAL),
        (f"SELECT {s}", s, DB),
    )
] + [
    ("POST /payment-api/charge", "payment", HTTP_CLIENT),
    ("redis GET cart", "cart", REDIS),
    ("shipping.retry_on_Timeout", "shipping", INTERNAL),
    ("SELECT orders", "db-proxy", DB),
    ("orders publish", "checkout", PRODUCER),
    ("orders process", "shipping", CONSUMER),
]
ENTRY_POINTS = {"GET /frontend": 0.5, "POST /checkout": 0.2, "GET /cart": 0.2, "GET /search": 0.1}

#: URL templates: (prefix, has version, middle, has id, suffix, weight).
#: url = prefix + [version] + middle + [id] + suffix
URL_TEMPLATES = [
    ("/api/v", True, "/users/", True, "/orders", 0.15),
    ("/api/v", True, "/users/", True, "", 0.14),
    ("/api/v", True, "/carts/", True, "/items", 0.10),
    ("/api/v", True, "/products/", True, "", 0.20),
    ("/api/v", True, "/orders/", True, "", 0.10),
    ("/payment-api/refund/", False, "", True, "", 0.02),
    ("/search?q=", False, "", True, "", 0.10),
    ("/admin/users/", False, "", True, "", 0.01),
    ("/health", False, "", False, "", 0.05),
    ("/api/v", True, "/sessions/", True, "", 0.13),
]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH"]
HTTP_CODES = ([200, 201, 404, 429, 500, 502, 503], [0.90, 0.02, 0.04, 0.01, 0.015, 0.005, 0.01])
TIERS = (["free", "pro", "enterprise"], [0.70, 0.25, 0.05])
ERROR_MESSAGES = [
    "Timeout waiting for upstream", "connection refused", "deadline exceeded",
    "internal error", "upstream returned 503",
]  # fmt: skip
#: Keys of the span attribute map, in map order; the first three are also promoted.
MAP_KEYS = ["http.method", "http.url", "http.status_code", "db.system", "net.peer.name",
            "customer.tier"]  # fmt: skip
PROMOTED = {"http.method": pl.String, "http.url": pl.String, "http.status_code": pl.Int64}


def _hex_ids(rng: np.random.Generator, n: int, nbytes: int) -> pl.Series:
    raw = rng.integers(0, 256, size=n * nbytes, dtype=np.uint8).tobytes()
    arr = pa.FixedSizeBinaryArray.from_buffers(pa.binary(nbytes), n, [None, pa.py_buffer(raw)])
    return pl.Series(pl.from_arrow(arr.cast(pa.binary()))).bin.encode("hex")


def _lookup(values: list[str | None], codes: np.ndarray) -> pl.Series:
    """Strings by integer code: `values[codes]` as a Polars String series (fast, no numpy str)."""
    return pl.Series(values, dtype=pl.String).gather(pl.Series(codes))


def _choice(rng: np.random.Generator, p: list[float], n: int) -> np.ndarray:
    """n codes 0..len(p)-1 drawn with probabilities p."""
    return rng.choice(len(p), size=n, p=np.asarray(p) / np.sum(p))


def _map_array(columns: list, keys: list[str]) -> pa.MapArray:
    """A Map<String,String> array from k string columns (null = no entry), per row in key order."""
    columns = [c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c for c in columns]
    n = len(columns[0])
    valid = np.stack([c.is_valid().to_numpy(zero_copy_only=False) for c in columns], axis=1)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(valid.sum(axis=1), out=offsets[1:])
    rows, cols = np.nonzero(valid)  # row-major: the entries of each row, in key order
    key_array = pa.array(keys, pa.string()).take(pa.array(cols))
    stacked = pa.concat_arrays([c.cast(pa.large_string()) for c in columns])
    values = stacked.take(pa.array(cols.astype(np.int64) * n + rows)).cast(pa.string())
    return pa.MapArray.from_arrays(pa.array(offsets), key_array, values)


def generate_spans(
    n_spans: int,
    seed: int | list[int] = DEFAULT_SEED,
    start_ns: int = DAY_START_NS,
    length_ns: int = DAY_NS,
) -> pl.DataFrame:
    """`n_spans` canonical spans, sorted by start time (deterministic for a given seed);
    traces start within [start_ns, start_ns + length_ns)."""
    rng = np.random.default_rng(seed)
    n = n_spans

    # traces: geometric sizes (mean 10), cut to exactly n spans
    sizes = rng.geometric(0.1, int(n / 10 * 1.2) + 10)
    ends = np.cumsum(sizes)
    n_traces = int(np.searchsorted(ends, n) + 1)
    sizes = sizes[:n_traces]
    sizes[-1] -= int(ends[n_traces - 1] - n)
    firsts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    trace_idx = np.repeat(np.arange(n_traces), sizes)
    position = np.arange(n) - firsts[trace_idx]
    is_root = position == 0
    parent_idx = firsts[trace_idx] + np.floor(rng.random(n) * position).astype(np.int64)

    # operations: Zipf-like popularity; roots are entry points
    names = [o[0] for o in OPERATIONS]
    services = sorted(SERVICES)
    weights = 1.0 / np.arange(1, len(OPERATIONS) + 1) ** 0.8
    op = rng.choice(len(OPERATIONS), size=n, p=weights / weights.sum())
    entry = np.array([names.index(e) for e in ENTRY_POINTS])
    op[is_root] = entry[_choice(rng, list(ENTRY_POINTS.values()), int(is_root.sum()))]
    category = np.array([o[2] for o in OPERATIONS])[op]
    service = np.array([services.index(o[1]) for o in OPERATIONS])[op]
    http = (category == HTTP) | (category == HTTP_CLIENT)

    # kinds as codes into SPAN_KINDS
    kind = np.where(
        is_root | ((category == HTTP) & (rng.random(n) < 0.7)),
        SPAN_KINDS.index("SERVER"),
        np.select(
            [category == INTERNAL, category == PRODUCER, category == CONSUMER],
            [SPAN_KINDS.index(k) for k in ("INTERNAL", "PRODUCER", "CONSUMER")],
            SPAN_KINDS.index("CLIENT"),
        ),
    )
    client = kind == SPAN_KINDS.index("CLIENT")

    # times: one day; children start within 2 s of their trace; lognormal durations
    trace_start = start_ns + rng.integers(0, length_ns, size=n_traces)
    start = trace_start[trace_idx] + np.where(is_root, 0, rng.integers(0, 2 * SEC, size=n))
    duration = np.exp(rng.normal(np.log(20 * MS), 1.3, size=n)).astype(np.int64)
    duration = np.where(is_root, duration * 8, duration)

    # HTTP attributes: method (mostly the name's verb), url, status code
    charge = op == names.index("POST /payment-api/charge")
    code = np.where(http, np.asarray(HTTP_CODES[0])[_choice(rng, HTTP_CODES[1], n)], 0)
    verbs = [o[0].split(" ", 1)[0] for o in OPERATIONS]
    verb = np.array([METHODS.index(v) if v in METHODS else 0 for v in verbs])[op]
    method = np.where(rng.random(n) < 0.9, verb, 2 + _choice(rng, [0.4, 0.4, 0.2], n))
    method = np.where(charge, METHODS.index("POST"), method)
    template = _choice(rng, [t[5] for t in URL_TEMPLATES], n)
    has_url = http & (charge | (rng.random(n) < 0.83))  # some instrumentations omit http.url

    # status: HTTP 5xx and ~1% of the rest are errors
    error = (http & (code >= 500)) | (rng.random(n) < 0.01)
    status = np.where(error, 2, np.where(rng.random(n) < 0.1, 1, 0))  # UNSET, OK, ERROR
    message = np.where(error, rng.integers(0, len(ERROR_MESSAGES) + 1, size=n),
                       len(ERROR_MESSAGES))  # fmt: skip

    # map-only attributes (codes; 0 = absent)
    db_system = np.select([category == REDIS, category == DB],
                          [1, np.where(rng.random(n) < 0.8, 2, 3)], 0)  # fmt: skip
    # net.peer.name: the database host for db calls, the callee's host for HTTP clients
    peer = np.where(client & (rng.random(n) < 0.95),
                    np.where(db_system > 0, db_system, 4 + service), 0)  # fmt: skip
    tier = np.where(rng.random(n) < 0.85, 1 + _choice(rng, TIERS[1], n), 0)
    host = rng.integers(0, 4, size=n)

    trace_hex = _hex_ids(rng, n_traces, 16)
    span_hex = _hex_ids(rng, n, 8)
    url_id = rng.integers(1, 1_000_000, size=n)
    url_version = rng.integers(1, 4, size=n)

    # everything below is in start-time order
    o = np.argsort(start, kind="stable")
    tpl = template[o]
    df = pl.DataFrame(
        {
            "trace_id": trace_hex.gather(pl.Series(trace_idx[o])),
            "span_id": span_hex.gather(pl.Series(o)),
            "parent_span_id": span_hex.gather(pl.Series(parent_idx[o])),
            "_root": is_root[o],
            "name": _lookup(names, op[o]),
            "kind": _lookup(list(SPAN_KINDS), kind[o]),
            "service_name": _lookup(services, service[o]),
            "start_time": start[o],
            "duration_ns": duration[o],
            "status_code": _lookup(["UNSET", "OK", "ERROR"], status[o]),
            "status_message": _lookup([*ERROR_MESSAGES, None], message[o]),
            "scope_name": _lookup(CATEGORY_SCOPE, category[o]),
            "_has_url": has_url[o],
            "_http": http[o],
            "_charge": charge[o],
            "_method": _lookup(METHODS, method[o]),
            "_code": code[o],
            "_pre": _lookup([t[0] for t in URL_TEMPLATES], tpl),
            "_mid": _lookup([t[2] for t in URL_TEMPLATES], tpl),
            "_suf": _lookup([t[4] for t in URL_TEMPLATES], tpl),
            "_hv": np.array([t[1] for t in URL_TEMPLATES])[tpl],
            "_hi": np.array([t[3] for t in URL_TEMPLATES])[tpl],
            "_ver": url_version[o],
            "_id": url_id[o],
            "_db": _lookup([None, "redis", "postgresql", "mysql"], db_system[o]),
            "_peer": _lookup(
                [None, "redis-0.cache.internal", "pg-main.db.internal", "mysql-main.db.internal"]
                + [f"api.{s}.svc.cluster.local" for s in services],
                peer[o],
            ),
            "_tier": _lookup([None, *TIERS[0]], tier[o]),
            "_host": host[o],
        }
    )
    c = pl.col
    url = (
        pl.when(c("_charge"))
        .then(pl.lit("/payment-api/charge"))
        .otherwise(
            pl.concat_str(
                c("_pre"),
                pl.when(c("_hv")).then(c("_ver").cast(pl.String)).otherwise(pl.lit("")),
                c("_mid"),
                pl.when(c("_hi")).then(c("_id").cast(pl.String)).otherwise(pl.lit("")),
                c("_suf"),
            )
        )
    )
    df = df.with_columns(
        parent_span_id=pl.when(c("_root")).then(None).otherwise(c("parent_span_id")),
        trace_key=c("trace_id").str.slice(0, 16).str.to_integer(base=16, dtype=pl.UInt64),
        start_time=c("start_time").cast(pl.Datetime("ns", "UTC")),
        end_time=(c("start_time") + c("duration_ns")).cast(pl.Datetime("ns", "UTC")),
        scope_version=pl.lit("1.32.0"),
        _hostname=pl.concat_str(c("service_name"), pl.lit("-"), c("_host").cast(pl.String)),
        **{
            "attr.http.url": pl.when(c("_has_url")).then(url),
            "attr.http.method": pl.when(c("_http")).then(c("_method")),
            "attr.http.status_code": pl.when(c("_http")).then(c("_code").cast(pl.Int64)),
        },
    )
    span_map = _map_array(
        [
            df["attr.http.method"].to_arrow(),
            df["attr.http.url"].to_arrow(),
            df["attr.http.status_code"].cast(pl.String).to_arrow(),
            df["_db"].to_arrow(),
            df["_peer"].to_arrow(),
            df["_tier"].to_arrow(),
        ],
        MAP_KEYS,
    )
    resource_map = _map_array(
        [
            df["service_name"].to_arrow(),
            pa.nulls(n, pa.string()).fill_null("production"),
            df["_hostname"].to_arrow(),
        ],
        ["service.name", "deployment.environment", "host.name"],
    )
    attribute_map = pl.Map(pl.String, pl.String)
    df = df.with_columns(
        span_attributes=pl.Series(pl.from_arrow(span_map)).cast(attribute_map),
        resource_attributes=pl.Series(pl.from_arrow(resource_map)).cast(attribute_map),
    )
    canonical = [
        "trace_id", "span_id", "parent_span_id", "trace_key", "name", "kind", "service_name",
        "start_time", "end_time", "duration_ns", "status_code", "status_message",
        "scope_name", "scope_version", "span_attributes", "resource_attributes",
    ]  # fmt: skip
    return df.select(*canonical, *(f"attr.{k}" for k in PROMOTED))


def dataset_path(data_dir: Path, n_spans: int, seed: int = DEFAULT_SEED) -> Path:
    return data_dir / f"spans_{n_spans}_s{seed}.parquet"


def ensure_dataset(data_dir: Path, n_spans: int, seed: int = DEFAULT_SEED) -> tuple[Path, dict]:
    """The cached Parquet file for (n_spans, seed), generating it if missing; and its metadata."""
    path = dataset_path(data_dir, n_spans, seed)
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        return path, json.loads(meta_path.read_text())
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    if n_spans <= PART_SPANS:
        t0 = time.perf_counter()
        df = generate_spans(n_spans, seed)
        t1 = time.perf_counter()
        df.write_parquet(tmp, compression="zstd", row_group_size=ROW_GROUP_ROWS, statistics=True)
        traces, in_memory = int(df["trace_key"].n_unique()), int(df.estimated_size())
        del df
        t2 = time.perf_counter()
        generate_s, write_s = t1 - t0, t2 - t1
    else:
        generate_s, write_s, traces, in_memory = _write_in_parts(tmp, n_spans, seed)
    tmp.replace(path)
    import pyarrow.parquet as pq

    md = pq.ParquetFile(path).metadata
    meta = {
        "spans": n_spans,
        "seed": seed,
        "traces": traces,
        "generate_s": round(generate_s, 2),
        "write_s": round(write_s, 2),
        "bytes": path.stat().st_size,
        "row_groups": md.num_row_groups,
        "rows_per_group": md.row_group(0).num_rows,
        "in_memory_bytes": in_memory,
    }
    if n_spans > PART_SPANS:
        meta["parts"] = -(-n_spans // PART_SPANS)
    meta_path.write_text(json.dumps(meta, indent=1))
    return path, meta


def _write_in_parts(tmp: Path, n_spans: int, seed: int) -> tuple[float, float, int, int]:
    """Generate a large dataset in K parts of at most PART_SPANS spans, part k with its
    traces starting in the k-th K-th of the day (seed [seed, k]), so memory follows the
    part. Spans of part k that start after its time slice (children start up to 2 s after
    their trace) are held back and sorted into part k+1: the file is time-sorted."""
    import pyarrow.parquet as pq

    parts = -(-n_spans // PART_SPANS)
    sizes = [n_spans // parts + (1 if k < n_spans % parts else 0) for k in range(parts)]
    slice_ns = DAY_NS // parts
    generate_s = write_s = 0.0
    traces = in_memory = 0
    carry: pl.DataFrame | None = None
    writer = None
    try:
        for k, size in enumerate(sizes):
            t0 = time.perf_counter()
            part = generate_spans(size, [seed, k], DAY_START_NS + k * slice_ns, slice_ns)
            traces += int(part["trace_key"].n_unique())
            in_memory += int(part.estimated_size())
            if carry is not None:
                part = pl.concat([carry, part]).sort("start_time", maintain_order=True)
            if k + 1 < parts:
                end = pl.lit(DAY_START_NS + (k + 1) * slice_ns).cast(pl.Datetime("ns", "UTC"))
                carry = part.filter(pl.col("start_time") >= end)
                part = part.filter(pl.col("start_time") < end)
            t1 = time.perf_counter()
            table = part.to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema, compression="zstd")
            writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
            del part, table
            generate_s += t1 - t0
            write_s += time.perf_counter() - t1
    finally:
        if writer is not None:
            writer.close()
    return generate_s, write_s, traces, in_memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).parent / "data")
    args = parser.parse_args()
    path, meta = ensure_dataset(args.data_dir, args.spans, args.seed)
    print(path)
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
