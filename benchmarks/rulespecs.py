"""Rules written four ways: fluo, hand-written Polars, DuckDB SQL and plain Python.

A `RuleSpec` holds one rule in every form the comparative suite (suite.py) runs:

* `when`: the fluo condition (the YAML the suite feeds fluo is made from it);
* `polars`: for a span rule a boolean expression over the span columns (null where a
  value is missing: callers close it with `fill_null(False)`); for a trace rule a
  boolean aggregate evaluated inside `group_by(trace)`;
* `sql`: the same for DuckDB (a predicate, or a boolean aggregate);
* `python`: what a per-trace rule interpreter evaluates: a function of one span (a dict
  of column values) or of the list of a trace's spans;
* `atoms` (trace rules): the span conditions the rule aggregates. Every trace rule here
  needs at least one span matching one of its atoms to fire, so the hand-written
  variants may read only the spans matching some atom (the prefilter an expert writes).

A windowed aggregate rule (level "window", docs/aggregates.md) also has a `window`: the
`Window` shape it groups by (window length, keys, `where`), which every variant turns into
one group_by per shape, its `min_count` and the `metrics` it reads. Its `polars` and `sql`
are then boolean expressions over the metric columns of that group_by (`METRICS_POLARS`,
`METRICS_SQL`: the aggregates an expert computes once per shape), `min_count` included;
its `python` is a function of the list of spans of one group and window. A windowed
signal is identified by (rule, service, name or null, window start): `window_ids` turns
those columns into the same (rule, id) pairs the span and trace rules give.

The semantics are fluo's (docs/language.md): a comparison with a missing value is false
(`!=` too); `not (...)` is true when the value is missing.

Two rule sets: `base_specs()` (the 20 span rules of span_rules.yaml and the 10 trace
rules of trace_rules.yaml, reusing those scripts' Polars and SQL) and
`generated_specs(n)`: n rules from parametrised families (6 span, 3 trace, 3 windowed:
1/2 span, 1/4 trace, 1/4 windowed rules), sharing columns as real rule sets do;
`vocabulary` picks the literals (span names, services) so that the same families run on
any span table.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

MS = 1_000_000
SEC = 1_000 * MS

Span = dict[str, Any]


@dataclass(frozen=True)
class Window:
    """What a windowed rule groups by: tumbling windows of `minutes` (UTC, aligned to the
    epoch), the span columns `by` (service_name, optionally name), and an optional `where`
    (fluo, Polars, SQL, Python). Rules of one shape share one group_by in every variant."""

    key: str
    minutes: int
    by: tuple[str, ...]
    where: str | None = None
    where_polars: pl.Expr | None = None
    where_sql: str | None = None
    where_python: Callable[[Span], bool] | None = None


@dataclass(frozen=True)
class RuleSpec:
    name: str
    level: str  # "span", "trace" or "window"
    when: str
    polars: pl.Expr
    sql: str
    python: Callable[..., bool]
    atoms: tuple[tuple[pl.Expr, str], ...] = field(default=())  # trace rules: (Polars, SQL)
    window: Window | None = None  # windowed rules
    min_count: int = 1
    metrics: tuple[str, ...] = ()  # windowed rules: keys of METRICS_POLARS / METRICS_SQL


#: fluo's names of the span columns windowed rules group by.
BY_FIELDS = {"service_name": "span.service", "name": "span.name"}


def rules_yaml(specs: Sequence[RuleSpec]) -> str:
    """The fluo rule file of `specs` (JSON strings are valid YAML scalars)."""
    lines = ["fluo: 1", "", "rules:"]
    for s in specs:
        lines.append(f"  {s.name}:")
        if s.window is not None:
            w = s.window
            lines += [
                f"    window: {w.minutes}m",
                f"    by: [{', '.join(BY_FIELDS[k] for k in w.by)}]",
            ]
            if w.where is not None:
                lines.append(f"    where: {json.dumps(w.where)}")
            if s.min_count != 1:
                lines.append(f"    min_count: {s.min_count}")
        lines.append(f"    when: {json.dumps(s.when)}")
    return "\n".join(lines) + "\n"


# --- windowed rules: metrics, signal ids --------------------------------------------------

#: The aggregates of one group and window, as an expert computes them once per shape.
METRICS_POLARS: dict[str, pl.Expr] = {
    "cnt": pl.len(),
    "errs": (pl.col("status_code") == "ERROR").sum(),
    "avg_d": pl.col("duration_ns").mean(),
    "max_d": pl.col("duration_ns").max(),
    "p95_d": pl.col("duration_ns").quantile(0.95, "linear"),
}
METRICS_SQL: dict[str, str] = {
    "cnt": "count(*)",
    "errs": "count(*) FILTER (WHERE status_code = 'ERROR')",
    "avg_d": "avg(duration_ns)",
    "max_d": "max(duration_ns)",
    "p95_d": "quantile_cont(duration_ns, 0.95)",
}
#: The columns of a windowed signal, from which `window_ids` makes its id.
WINDOW_SIGNAL = ("rule", "service", "name", "window_start")


def window_ids(frame: pl.DataFrame) -> pl.DataFrame:
    """(rule, id) pairs of windowed signals from the columns `WINDOW_SIGNAL` (name null
    when the rule does not group by it; window_start a datetime, naive = UTC): the id is
    the JSON object {"service", "name", "window_start" (ISO 8601, UTC)}."""
    start = pl.col("window_start")
    dtype = frame.schema["window_start"]
    utc = (
        start.dt.convert_time_zone("UTC")
        if isinstance(dtype, pl.Datetime) and dtype.time_zone
        else start.dt.replace_time_zone("UTC")
    )
    stamp = utc.cast(pl.Datetime("us", "UTC")).dt.strftime("%Y-%m-%dT%H:%M:%S%.fZ")
    key = pl.struct(
        pl.col("service").cast(pl.String), pl.col("name").cast(pl.String), stamp
    ).struct.json_encode()
    return frame.select(pl.col("rule").cast(pl.String), key.alias("id"))


def quantile(values: list[int], q: float) -> float | None:
    """Linear interpolation between the closest ranks (DuckDB's `quantile_cont`, Polars'
    `quantile(q, "linear")`, fluo's percentiles); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    below, above = float(ordered[low]), float(ordered[high])
    return below + (above - below) * (position - low)


# --- the plain Python a per-trace interpreter evaluates ----------------------------------


def _attr(s: Span, key: str) -> Any:
    return (s.get("span_attributes") or {}).get(key)


def _search(pattern: str, value: str | None) -> bool:
    return value is not None and re.search(pattern, value, re.S) is not None


def _has(spans: list[Span], pred: Callable[[Span], bool]) -> bool:
    return any(pred(s) for s in spans)


def _count(spans: list[Span], pred: Callable[[Span], bool]) -> int:
    return sum(1 for s in spans if pred(s))


# --- the base rule set: span_rules.yaml + trace_rules.yaml ---------------------------------

HOT_OPERATIONS = {"GET /frontend", "GET /cart", "POST /checkout", "redis GET cart", "SELECT orders"}

#: The 20 span rules of span_rules.yaml, for the interpreter.
SPAN_PYTHON: dict[str, Callable[[Span], bool]] = {
    "very_slow_span": lambda s: s["duration_ns"] > 3 * SEC,
    "payment_gateway_bottleneck": lambda s: (
        s["duration_ns"] > 300 * MS and (s["attr.http.url"] or "").startswith("/payment-api/")
    ),
    "error_span": lambda s: s["status_code"] == "ERROR",
    "http_server_error": lambda s: (
        s["attr.http.status_code"] is not None and 500 <= s["attr.http.status_code"] <= 599
    ),
    "payment_charge_failed": lambda s: (
        s["name"] == "POST /payment-api/charge" and s["status_code"] == "ERROR"
    ),
    "checkout_latency_slo": lambda s: (
        s["service_name"] == "checkout" and s["kind"] == "SERVER" and s["duration_ns"] > SEC
    ),
    "hot_operation_slow": lambda s: s["name"] in HOT_OPERATIONS and s["duration_ns"] > 50 * MS,
    "admin_access": lambda s: "/admin/" in (s["attr.http.url"] or ""),
    "user_orders_request": lambda s: (
        _search(r"^/api/v[0-9]+/users/[0-9]+/orders$", s["attr.http.url"])
        and s["duration_ns"] > 100 * MS
    ),
    "slow_non_postgres_db": lambda s: (
        _attr(s, "db.system") is not None
        and _attr(s, "db.system") != "postgresql"
        and s["duration_ns"] > 50 * MS
    ),
    "foreign_delete": lambda s: (
        s["attr.http.method"] == "DELETE"
        and s["service_name"] is not None
        and s["service_name"] != "user"
    ),
    "core_service_error": lambda s: (
        s["service_name"] in ("payment", "checkout", "cart") and s["status_code"] == "ERROR"
    ),
    "enterprise_slow": lambda s: (
        _attr(s, "customer.tier") == "enterprise" and s["duration_ns"] > 500 * MS
    ),
    "cart_items_request": lambda s: (
        _search(r"^/api/.*/carts/.*/items$", s["attr.http.url"]) and s["duration_ns"] > 200 * MS
    ),
    "slow_get_client": lambda s: (
        (s["name"] or "").startswith("GET ")
        and s["kind"] == "CLIENT"
        and s["duration_ns"] > 250 * MS
    ),
    "timeout_error": lambda s: (
        _search("(?i)retry.*timeout", s["name"])
        or _search("(?i)time(d)? ?out|deadline", s["status_message"])
    ),
    "slow_database_call": lambda s: (
        s["kind"] == "CLIENT" and _attr(s, "db.system") is not None and s["duration_ns"] > 100 * MS
    ),
    "slow_root": lambda s: s["parent_span_id"] is None and s["duration_ns"] > 2 * SEC,
    "client_without_peer": lambda s: s["kind"] == "CLIENT" and _attr(s, "net.peer.name") is None,
    "untiered_request": lambda s: (
        s["kind"] == "SERVER"
        and _attr(s, "customer.tier") not in ("free", "pro", "enterprise")
        and s["duration_ns"] > 100 * MS
    ),
}


def _name(n: str) -> Callable[[Span], bool]:
    return lambda s: s["name"] == n


def _service(n: str) -> Callable[[Span], bool]:
    return lambda s: s["service_name"] == n


def _error(s: Span) -> bool:
    return bool(s["status_code"] == "ERROR")


#: The 10 trace rules of trace_rules.yaml, for the interpreter (a trace: a list of spans).
TRACE_PYTHON: dict[str, Callable[[list[Span]], bool]] = {
    "checkout_without_payment": lambda t: (
        _has(t, _name("POST /checkout")) and not _has(t, _service("payment"))
    ),
    "charge_without_auth": lambda t: (
        _has(t, _name("POST /payment-api/charge")) and not _has(t, _service("auth"))
    ),
    "cart_without_cache": lambda t: (
        _has(t, _name("GET /cart")) and not _has(t, _name("redis GET cart"))
    ),
    "error_burst": lambda t: _count(t, _error) > 2,
    "frontend_fanout": lambda t: _count(t, _name("GET /frontend")) > 3,
    "publish_consume_mismatch": lambda t: (
        _count(t, _name("orders publish")) != _count(t, _name("orders process"))
    ),
    "slow_without_error": lambda t: (
        _has(t, lambda s: s["duration_ns"] > SEC) and not _has(t, _error)
    ),
    "n_plus_one_queries": lambda t: (
        _count(t, lambda s: (s["name"] or "").startswith("SELECT ")) > 5
    ),
    "payment_error_without_charge": lambda t: (
        _has(t, lambda s: s["service_name"] == "payment" and _error(s))
        and not _has(t, _name("POST /payment-api/charge"))
    ),
    "repeated_server_5xx": lambda t: (
        _count(
            t,
            lambda s: (
                s["kind"] == "SERVER"
                and s["attr.http.status_code"] is not None
                and s["attr.http.status_code"] >= 500
            ),
        )
        > 1
    ),
}


def base_specs() -> list[RuleSpec]:
    """The 20 span rules and 10 trace rules of the per-level benchmarks, as specs."""
    import span_rules
    import trace_rules

    import fluo

    names = {
        r.name for p in (span_rules.RULES_YAML, trace_rules.TRACE_YAML) for r in fluo.load_rules(p)
    }
    specs: list[RuleSpec] = []
    span_polars = span_rules.polars_rules()
    for name, sql in span_rules.SQL_RULES.items():
        specs.append(RuleSpec(name, "span", "", span_polars[name], sql, SPAN_PYTHON[name]))
    atoms = trace_rules.polars_atoms()
    atom_pairs = tuple((atoms[k], trace_rules.SQL_ATOMS[k]) for k in trace_rules.SQL_ATOMS)
    trace_polars = trace_rules.polars_rules(atoms)
    for name, sql in trace_rules.SQL_RULES.items():
        specs.append(
            RuleSpec(name, "trace", "", trace_polars[name], sql, TRACE_PYTHON[name], atom_pairs)
        )
    if {s.name for s in specs} != names:
        raise SystemExit("rulespecs: the base rules do not match the YAML files")
    return specs


BASE_FILES = ("span_rules.yaml", "trace_rules.yaml")


# --- generated rule sets ------------------------------------------------------------------


@dataclass(frozen=True)
class Vocabulary:
    """The literals generated rules use: span names and services present in the data."""

    names: tuple[str, ...]
    services: tuple[str, ...]


def synthetic_vocabulary() -> Vocabulary:
    import spangen

    return Vocabulary(tuple(o[0] for o in spangen.OPERATIONS), tuple(spangen.SERVICES))


#: Family ids: s0..s5 span rules, t0..t2 trace rules, w0..w2 windowed rules; the order
#: rule sets cycle through (the first nine are the families of the sets before windowed
#: rules were added, so a set of n <= 9 rules is unchanged).
FAMILIES = ("s0", "s1", "s2", "s3", "s4", "s5", "t0", "t1", "t2", "w0", "w1", "w2")
#: Families that read only canonical columns (any span table, e.g. Nezha).
PORTABLE_FAMILIES = ("s0", "s1", "t0", "t1", "t2", "w0", "w1")
URL_PREFIXES = ("/api/v1/", "/api/v2/", "/api/v3/", "/payment-api/", "/search?q=", "/admin/users/")
RESOURCES = ("users", "carts", "products", "orders", "sessions")


def generated_specs(
    n: int, vocabulary: Vocabulary | None = None, families: Sequence[str] = FAMILIES
) -> list[RuleSpec]:
    """n rules, cycling through `families`; the j-th rule of a family varies its literals."""
    v = vocabulary or synthetic_vocabulary()
    made: dict[str, int] = {}
    specs = []
    for i in range(n):
        family = families[i % len(families)]
        j = made.get(family, 0)
        made[family] = j + 1
        specs.append(_family(family, j, v))
    return specs


def _family(family: str, j: int, v: Vocabulary) -> RuleSpec:
    c = pl.col
    d, url, name_ = c("duration_ns"), c("attr.http.url"), f"{family}_{j}"
    if family == "s0":
        t, svc = 50 + (37 * j) % 2000, v.services[j % len(v.services)]
        return RuleSpec(
            name_,
            "span",
            f'span.duration > {t}ms and span.service == "{svc}"',
            (d > t * MS) & (c("service_name") == svc),
            f"duration_ns > {t * MS} AND service_name = {_q(svc)}",
            lambda s: s["duration_ns"] > t * MS and s["service_name"] == svc,
        )
    if family == "s1":
        n = v.names[j % len(v.names)]
        return RuleSpec(
            name_,
            "span",
            f'span.name == "{n}" and span.status == ERROR',
            (c("name") == n) & (c("status_code") == "ERROR"),
            f"name = {_q(n)} AND status_code = 'ERROR'",
            lambda s: s["name"] == n and s["status_code"] == "ERROR",
        )
    if family == "s2":
        prefix, t = URL_PREFIXES[j % len(URL_PREFIXES)], 20 + (13 * j) % 500
        return RuleSpec(
            name_,
            "span",
            f'span.attributes["http.url"] startswith "{prefix}" and span.duration > {t}ms',
            url.str.starts_with(prefix) & (d > t * MS),
            f'starts_with("attr.http.url", {_q(prefix)}) AND duration_ns > {t * MS}',
            lambda s: (s["attr.http.url"] or "").startswith(prefix) and s["duration_ns"] > t * MS,
        )
    if family == "s3":
        db, t = ("redis", "postgresql", "mysql")[j % 3], 10 + (7 * j) % 300
        return RuleSpec(
            name_,
            "span",
            f'span.attributes["db.system"] == "{db}" and span.duration > {t}ms',
            (c("span_attributes").map.get("db.system") == db) & (d > t * MS),
            f"span_attributes['db.system'] = {_q(db)} AND duration_ns > {t * MS}",
            lambda s: _attr(s, "db.system") == db and s["duration_ns"] > t * MS,
        )
    if family == "s4":
        pattern = f"^/api/v{1 + j % 3}/{RESOURCES[j % len(RESOURCES)]}/[0-9]+"
        return RuleSpec(
            name_,
            "span",
            f'span.attributes["http.url"] matches "{pattern}"',
            url.str.contains(pattern),
            f'regexp_matches("attr.http.url", {_q(pattern)})',
            lambda s: _search(pattern, s["attr.http.url"]),
        )
    if family == "s5":
        kind, code = ("SERVER", "CLIENT")[j % 2], (404, 429, 500, 502, 503)[j % 5]
        return RuleSpec(
            name_,
            "span",
            f'span.kind == {kind} and span.attributes["http.status_code"] >= {code}',
            (c("kind") == kind) & (c("attr.http.status_code") >= code),
            f"kind = '{kind}' AND \"attr.http.status_code\" >= {code}",
            lambda s: (
                s["kind"] == kind
                and s["attr.http.status_code"] is not None
                and s["attr.http.status_code"] >= code
            ),
        )
    if family == "t0":
        a, b = v.names[j % len(v.names)], v.services[(7 * j + 3) % len(v.services)]
        pa, pb = c("name") == a, c("service_name") == b
        sa, sb = f"name = {_q(a)}", f"service_name = {_q(b)}"
        return RuleSpec(
            name_,
            "trace",
            f'has(span.name == "{a}") and missing(span.service == "{b}")',
            pa.fill_null(False).any() & ~pb.fill_null(False).any(),
            f"coalesce(bool_or({sa}), false) AND NOT coalesce(bool_or({sb}), false)",
            lambda t: _has(t, _name(a)) and not _has(t, _service(b)),
            ((pa, sa), (pb, sb)),
        )
    if family == "t1":
        a, k = v.names[(3 * j + 1) % len(v.names)], 1 + j % 4
        pa, sa = c("name") == a, f"name = {_q(a)}"
        return RuleSpec(
            name_,
            "trace",
            f'count(span.name == "{a}") > {k}',
            pa.fill_null(False).sum() > k,
            f"count_if({sa}) > {k}",
            lambda t: _count(t, _name(a)) > k,
            ((pa, sa),),
        )
    if family == "t2":
        svc, k = v.services[(5 * j + 2) % len(v.services)], j % 3
        pa = (c("status_code") == "ERROR") & (c("service_name") == svc)
        sa = f"status_code = 'ERROR' AND service_name = {_q(svc)}"
        return RuleSpec(
            name_,
            "trace",
            f'count(span.status == ERROR and span.service == "{svc}") > {k}',
            pa.fill_null(False).sum() > k,
            f"count_if({sa}) > {k}",
            lambda t: _count(t, lambda s: _error(s) and s["service_name"] == svc) > k,
            ((pa, sa),),
        )
    if family in WINDOW_FAMILIES:
        return _window_family(family, j)
    raise ValueError(f"no rule family {family}")


#: The shapes of the windowed families: 5-minute windows by service, 5-minute windows by
#: service and span name, 1-minute windows by service over server spans.
SHAPES = {
    "w0": Window("service_5m", 5, ("service_name",)),
    "w1": Window("operation_5m", 5, ("service_name", "name")),
    "w2": Window(
        "server_1m",
        1,
        ("service_name",),
        "span.kind == SERVER",
        pl.col("kind") == "SERVER",
        "kind = 'SERVER'",
        lambda s: s["kind"] == "SERVER",
    ),
}
WINDOW_FAMILIES = tuple(SHAPES)
#: What a windowed family's j-th rule judges: WINDOW_KINDS[(j + offset) % 6].
WINDOW_KINDS = ("p95", "error_rate", "avg", "count", "max", "errors")
#: Per shape: (family offset, {kind: (min_count, base threshold, step per round)}); the
#: thresholds (ms for durations, % for error rates) put some but not most windows of
#: spangen's data over them (~2-25%), at 200k spans as at 1M.
WINDOW_LIMITS: dict[str, tuple[int, dict[str, tuple[int, int, int]]]] = {
    "w0": (0, {"count": (1, 150, 50), "errors": (1, 4, 1), "error_rate": (30, 4, 1),
               "avg": (20, 100, 15), "max": (1, 3000, 1000), "p95": (20, 350, 50)}),
    "w1": (2, {"count": (1, 40, 10), "errors": (1, 2, 1), "error_rate": (10, 10, 2),
               "avg": (5, 100, 25), "max": (1, 1000, 500), "p95": (5, 300, 100)}),
    "w2": (4, {"count": (1, 20, 5), "errors": (1, 1, 1), "error_rate": (5, 10, 2),
               "avg": (3, 150, 20), "max": (1, 2000, 500), "p95": (3, 400, 75)}),
}  # fmt: skip


def _window_family(family: str, j: int) -> RuleSpec:
    """The j-th rule of a windowed family: one aggregate of WINDOW_KINDS with a threshold
    that grows with each round through the kinds."""
    shape, (offset, limits) = SHAPES[family], WINDOW_LIMITS[family]
    kind = WINDOW_KINDS[(j + offset) % len(WINDOW_KINDS)]
    m, base, step = limits[kind]
    x = base + step * (j // len(WINDOW_KINDS))
    c = pl.col
    when: str
    cond: pl.Expr
    sql: str
    check: Callable[[list[Span]], bool]
    if kind == "count":
        when, metrics = f"count > {x}", ("cnt",)
        cond, sql = c("cnt") > x, f"cnt > {x}"
        check = lambda w: len(w) > x  # noqa: E731
    elif kind == "errors":
        when, metrics = f"errors > {x}", ("cnt", "errs")
        cond, sql = c("errs") > x, f"errs > {x}"
        check = lambda w: _count(w, _error) > x  # noqa: E731
    elif kind == "error_rate":
        rate = x / 100
        when, metrics = f"error_rate > {x}%", ("cnt", "errs")
        cond, sql = c("errs") / c("cnt") > rate, f"errs / cnt > {rate!r}"
        check = lambda w: _count(w, _error) / len(w) > rate  # noqa: E731
    elif kind in ("avg", "max", "p95"):
        metric = f"{kind}_d"
        when, metrics = f"{kind}(span.duration) > {x}ms", ("cnt", metric)
        cond, sql = c(metric) > x * MS, f"{metric} > {x * MS}"

        def value(w: list[Span]) -> float | None:
            d = [s["duration_ns"] for s in w if s["duration_ns"] is not None]
            if not d:
                return None
            if kind == "avg":
                return sum(d) / len(d)
            return max(d) if kind == "max" else quantile(d, 0.95)

        def check(w: list[Span]) -> bool:
            v = value(w)
            return v is not None and v > x * MS

    else:
        raise ValueError(f"no windowed rule kind {kind}")
    if m != 1:
        cond, sql = (c("cnt") >= m) & cond, f"cnt >= {m} AND {sql}"
    return RuleSpec(
        f"{family}_{j}",
        "window",
        when,
        cond,
        sql,
        lambda w: len(w) >= m and check(w),
        window=shape,
        min_count=m,
        metrics=metrics,
    )


def _q(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"
