"""Deterministic generator of the ShopHub e-commerce trace set (the committed sample).

ShopHub is a made-up web shop of seven services (frontend, checkout, cart, payment-gateway,
fraud, inventory, shipping) backed by PostgreSQL and Redis. `generate` builds a span table in
fluo's canonical shape (`fluo.schema.CANONICAL_COLUMNS`) plus a few promoted, typed attribute
columns (`PROMOTED_COLUMNS`), with realistic span trees, latencies and errors, and one
injected incident: for 25 minutes the payment-gateway gets ~300 ms slower and its error rate
goes from 0.5 % to 2.5 %. data/shophub/README.md describes the shapes and numbers.

Regenerate the committed sample with::

    python data/generate_shophub.py --out data/shophub/spans.parquet --traces 10000 --seed 7

Randomness comes only from `random.Random(seed).random()`, whose stream Python promises to
keep across versions; every other draw (normal, lognormal, choices, ids) is derived from it
here, so the output depends on nothing but the parameters.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import polars as pl

if importlib.util.find_spec("fluo") is None:  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fluo.schema import ATTRIBUTE_MAP, CANONICAL_COLUMNS, UTC_NS

T = TypeVar("T")

#: Parameters of the committed sample (data/shophub/spans.parquet).
SAMPLE_TRACES = 10000
SAMPLE_SEED = 7
DEFAULT_START = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
DEFAULT_DURATION = timedelta(hours=2)

#: The incident starts 5/12 into the generated period and lasts 5/24 of it
#: (10:50 to 11:15 UTC for the default 10:00 + 2 h).
INCIDENT_START_FRACTION = 5 / 12
INCIDENT_LENGTH_FRACTION = 5 / 24
#: Extra latency of the card processor call during the incident: normal(300 ms, 40 ms).
INCIDENT_EXTRA_LATENCY_MS = 300.0
#: Probability that a payment-gateway request fails (5xx), outside and inside the incident.
PAYMENT_ERROR_RATE = 0.005
INCIDENT_PAYMENT_ERROR_RATE = 0.025
#: Payments over the threshold get a fraud check, except about one in `FRAUD_CHECK_SKIP_EVERY`
#: (the planted bug): the gap between two skipped ones is drawn uniformly from 60 to 140
#: high-amount payments, so the realised share stays near 1 % whatever the seed.
FRAUD_CHECK_THRESHOLD = 1000.0
FRAUD_CHECK_SKIP_EVERY = 100

#: Promoted span attribute columns: column name -> dtype (the map holds the same values as text).
PROMOTED_COLUMNS: dict[str, pl.DataType] = {
    "attr.http.method": pl.String(),
    "attr.http.url": pl.String(),
    "attr.http.route": pl.String(),
    "attr.http.status_code": pl.Int64(),
    "attr.db.system": pl.String(),
    "attr.rpc.system": pl.String(),
    "attr.peer.service": pl.String(),
}

#: service -> (service.version, number of pods)
SERVICES: dict[str, tuple[str, int]] = {
    "frontend": ("2.14.3", 3),
    "checkout": ("1.9.0", 2),
    "cart": ("1.4.2", 2),
    "payment-gateway": ("3.2.1", 3),
    "fraud": ("0.18.4", 2),
    "inventory": ("2.0.7", 2),
    "shipping": ("1.1.5", 2),
}
NODES = 4
K8S_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

Scope = tuple[str, str]
HTTP_SCOPE: Scope = ("io.opentelemetry.http", "2.11.0")
JDBC_SCOPE: Scope = ("io.opentelemetry.jdbc", "2.11.0")
REDIS_SCOPE: Scope = ("io.opentelemetry.lettuce-5.1", "2.11.0")
GRPC_SCOPE: Scope = ("io.opentelemetry.grpc-1.6", "2.11.0")
KAFKA_SCOPE: Scope = ("io.opentelemetry.kafka-clients-0.11", "2.11.0")
PAYMENTS_SCOPE: Scope = ("shophub.payments", "3.2.1")
FRAUD_SCOPE: Scope = ("shophub.fraud", "0.18.4")
FRONTEND_SCOPE: Scope = ("shophub.frontend", "2.14.3")

REASONS = {
    200: "OK",
    201: "Created",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}

#: PostgreSQL statements by (operation, table); spans are named "<operation> <table>".
SQL = {
    ("SELECT", "products"): "SELECT id, name, price, stock FROM products WHERE sku = $1",
    ("SELECT", "featured"): "SELECT id, name, price FROM products WHERE featured LIMIT $1",
    ("UPDATE", "inventory"): "UPDATE inventory SET reserved = reserved + $1 WHERE sku = $2",
    ("SELECT", "shipping_rates"): "SELECT carrier, price FROM shipping_rates WHERE zone = $1",
    ("SELECT", "payments"): "SELECT id, status FROM payments WHERE idempotency_key = $1",
    ("INSERT", "payments"): "INSERT INTO payments (id, order_id, amount, currency, status) "
    "VALUES ($1, $2, $3, $4, $5)",
    ("UPDATE", "payments"): "UPDATE payments SET status = $1 WHERE id = $2",
    ("INSERT", "orders"): "INSERT INTO orders (id, customer_id, total, currency) "
    "VALUES ($1, $2, $3, $4)",
    ("SELECT", "orders"): "SELECT id, total, currency, status FROM orders WHERE id = $1",
    ("UPDATE", "orders"): "UPDATE orders SET status = 'refunded' WHERE id = $1",
    ("INSERT", "shipments"): "INSERT INTO shipments (order_id, carrier, status) "
    "VALUES ($1, $2, $3)",
}

#: Payment failures: (status_message, error.type, HTTP status code).
PAYMENT_FAILURES = (
    ("card processor unavailable", "ProcessorUnavailableError", 503),
    ("upstream connect error or disconnect/reset before headers", "ConnectionResetError", 502),
    ("unexpected response from card processor", "ProcessorProtocolError", 500),
)

#: Trace shapes (method names of `_ShopHub`) and their shares of all traces.
TRACE_MIX = (
    ("home", 0.12),
    ("product", 0.33),
    ("cart_view", 0.14),
    ("cart_add", 0.15),
    ("checkout", 0.24),
    ("refund", 0.02),
)
NS_PER_MS = 1_000_000


class Rng:
    """Seeded draws built on `random.Random.random()` alone (stable across Python versions)."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    def uniform(self) -> float:
        """A float in [0, 1)."""
        return self._random.random()

    def chance(self, p: float) -> bool:
        """True with probability `p`."""
        return self._random.random() < p

    def integer(self, low: int, high: int) -> int:
        """An integer in [low, high], both included."""
        return low + int(self._random.random() * (high - low + 1))

    def choice(self, items: Sequence[T]) -> T:
        """One of `items`, uniformly."""
        return items[int(self._random.random() * len(items))]

    def weighted(self, items: Sequence[tuple[T, float]]) -> T:
        """The item of one (item, weight) pair, with probability proportional to its weight."""
        u = self._random.random() * sum(w for _, w in items)
        for item, weight in items:
            u -= weight
            if u < 0:
                return item
        return items[-1][0]

    def normal(self, mean: float = 0.0, sd: float = 1.0) -> float:
        """A normal draw (Box-Muller)."""
        u1 = 1.0 - self._random.random()
        u2 = self._random.random()
        return mean + sd * math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)

    def lognormal(self, median: float, sigma: float) -> float:
        """A lognormal draw with the given median and log-space standard deviation."""
        return median * math.exp(sigma * self.normal())

    def hex(self, chars: int) -> str:
        """`chars` (a multiple of 8) random lowercase hex digits, never all zeros."""
        while True:
            words = [int(self._random.random() * 4294967296.0) for _ in range(chars // 8)]
            if any(words):
                return "".join(f"{w:08x}" for w in words)

    def text(self, alphabet: str, chars: int) -> str:
        """`chars` characters drawn from `alphabet`."""
        return "".join(self.choice(alphabet) for _ in range(chars))


def ms(value: float) -> int:
    """Milliseconds (float) to whole nanoseconds."""
    return round(value * NS_PER_MS)


def incident_window(
    start: datetime = DEFAULT_START, duration: timedelta = DEFAULT_DURATION
) -> tuple[datetime, datetime]:
    """The [begin, end) of the injected payment-gateway incident for a generated period."""
    begin = start + duration * INCIDENT_START_FRACTION
    return begin, begin + duration * INCIDENT_LENGTH_FRACTION


def _epoch_ns(t: datetime) -> int:
    """Nanoseconds since the Unix epoch of an aware datetime (microsecond precision)."""
    return (t - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


def _map_series(rows: Sequence[Sequence[tuple[str, str]]]) -> pl.Series:
    """A Map(String, String) series with one map per row of (key, value) pairs (none empty)."""
    flat = pl.DataFrame(
        {
            "row": pl.Series([i for i, row in enumerate(rows) for _ in row], dtype=pl.UInt32),
            "key": pl.Series([k for row in rows for k, _ in row], dtype=pl.String),
            "value": pl.Series([v for row in rows for _, v in row], dtype=pl.String),
        }
    )
    maps = flat.group_by("row", maintain_order=True).agg(pl.struct("key", "value").alias("m"))
    if maps.height != len(rows):
        raise ValueError("every row needs at least one entry")
    return maps["m"].cast(ATTRIBUTE_MAP)


@dataclass
class _Outcome:
    """What a call or server handler ends with: its end time, HTTP status, failure details."""

    end: int
    code: int
    message: str | None = None
    error_type: str | None = None

    @property
    def failed(self) -> bool:
        """Whether the call failed (a 5xx status)."""
        return self.code >= 500


#: A server-side handler: (server span index, time it starts working) -> outcome.
Handler = Callable[[int, int], _Outcome]


@dataclass
class _Spans:
    """Column lists of the spans generated so far."""

    trace_id: list[str] = field(default_factory=list)
    span_id: list[str] = field(default_factory=list)
    parent_id: list[str | None] = field(default_factory=list)
    name: list[str] = field(default_factory=list)
    kind: list[str] = field(default_factory=list)
    pod: list[int] = field(default_factory=list)
    start: list[int] = field(default_factory=list)
    end: list[int] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    message: list[str | None] = field(default_factory=list)
    scope: list[Scope] = field(default_factory=list)
    attrs: list[list[tuple[str, str]]] = field(default_factory=list)


class _ShopHub:
    """Builds ShopHub traces, one at a time, into `_Spans` columns."""

    def __init__(self, rng: Rng, incident: tuple[int, int]) -> None:
        self.rng = rng
        self.incident = incident
        self.spans = _Spans()
        self.trace_id = ""
        self.trace_pods: dict[str, int] = {}
        self.pod_names: list[str] = []
        self.pod_service: list[str] = []
        self.pod_hosts: list[str] = []
        self.service_pods: dict[str, list[int]] = {}
        self.high_payments = 0
        self.next_fraud_skip = rng.integer(1, FRAUD_CHECK_SKIP_EVERY)
        hosts = [
            f"ip-10-0-{rng.integer(16, 63)}-{rng.integer(2, 250)}.ec2.internal"
            for _ in range(NODES)
        ]
        for service, (_, replicas) in SERVICES.items():
            template = rng.text(K8S_ALPHABET, 5)
            self.service_pods[service] = []
            for _ in range(replicas):
                self.service_pods[service].append(len(self.pod_names))
                self.pod_names.append(f"{service}-{template}-{rng.text(K8S_ALPHABET, 5)}")
                self.pod_service.append(service)
                self.pod_hosts.append(rng.choice(hosts))

    # -- spans ----------------------------------------------------------------------------

    def open(
        self,
        parent: int | None,
        service: str,
        name: str,
        kind: str,
        start: int,
        scope: Scope,
        attrs: list[tuple[str, str]],
    ) -> int:
        """Start a span of the current trace; returns its index. `close` ends it."""
        pod = self.trace_pods.get(service)
        if pod is None:  # one pod serves a service for the whole trace
            pod = self.trace_pods[service] = self.rng.choice(self.service_pods[service])
        s = self.spans
        s.trace_id.append(self.trace_id)
        s.span_id.append(self.rng.hex(16))
        s.parent_id.append(None if parent is None else s.span_id[parent])
        s.name.append(name)
        s.kind.append(kind)
        s.pod.append(pod)
        s.start.append(start)
        s.end.append(start)
        s.status.append("UNSET")
        s.message.append(None)
        s.scope.append(scope)
        s.attrs.append(attrs)
        return len(s.span_id) - 1

    def close(
        self,
        idx: int,
        end: int,
        status: str = "UNSET",
        message: str | None = None,
        error_type: str | None = None,
    ) -> int:
        """End span `idx` at `end`; an ERROR span gets a status message and error.type."""
        self.spans.end[idx] = end
        self.spans.status[idx] = status
        if status == "ERROR":
            self.spans.message[idx] = message or "error"
            self.spans.attrs[idx].append(("error.type", error_type or "Error"))
        return end

    def attr(self, idx: int, *pairs: tuple[str, str]) -> None:
        """Add attributes to span `idx`."""
        self.spans.attrs[idx].extend(pairs)

    def in_incident(self, t: int) -> bool:
        """Whether time `t` (ns) falls in the incident window."""
        return self.incident[0] <= t < self.incident[1]

    def hop(self) -> int:
        """Network latency of one direction of an in-cluster call."""
        return ms(self.rng.lognormal(0.45, 0.35))

    def work(self, median_ms: float, sigma: float = 0.4) -> int:
        """Self time of a processing step."""
        return ms(self.rng.lognormal(median_ms, sigma))

    # -- calls ----------------------------------------------------------------------------

    def http(
        self,
        parent: int,
        caller: str,
        callee: str,
        route: str,
        start: int,
        handler: Handler,
        path: str | None = None,
        extra: Sequence[tuple[str, str]] = (),
    ) -> _Outcome:
        """An HTTP call, `route` being "<METHOD> <route>": a CLIENT span in `caller` and a
        SERVER span in `callee` running `handler`. A 5xx makes both ERROR."""
        method, template = route.split(" ", 1)
        path = path or template
        client = self.open(
            parent,
            caller,
            route,
            "CLIENT",
            start,
            HTTP_SCOPE,
            [
                ("http.method", method),
                ("http.url", f"http://{callee}:8080{path}"),
                ("peer.service", callee),
                *extra,
            ],
        )
        server_start = start + self.hop()
        attrs = [("http.method", method), ("http.route", template), ("http.url", path), *extra]
        server = self.open(client, callee, route, "SERVER", server_start, HTTP_SCOPE, attrs)
        out = handler(server, server_start + self.work(0.3))
        status = "ERROR" if out.failed else "UNSET"
        self.attr(server, ("http.status_code", str(out.code)))
        self.close(server, out.end, status, out.message, out.error_type)
        end = out.end + self.hop()
        self.attr(client, ("http.status_code", str(out.code)))
        self.close(client, end, status, f"{out.code} {REASONS[out.code]}", str(out.code))
        return _Outcome(end, out.code, out.message, out.error_type)

    def postgres(
        self,
        parent: int,
        service: str,
        operation: str,
        table: str,
        start: int,
        error_rate: float = 0.0,
    ) -> _Outcome:
        """A PostgreSQL query: one CLIENT span named like "SELECT orders"."""
        attrs = [
            ("db.system", "postgresql"),
            ("db.name", "shophub"),
            ("db.operation", operation),
            ("db.sql.table", "products" if table == "featured" else table),
            ("db.statement", SQL[operation, table]),
            ("peer.service", "postgres"),
            ("net.peer.name", "postgres.shophub.svc.cluster.local"),
            ("net.peer.port", "5432"),
        ]
        name = f"{operation} {attrs[3][1]}"
        idx = self.open(parent, service, name, "CLIENT", start, JDBC_SCOPE, attrs)
        median = 3.5 if operation == "SELECT" else 6.0
        if self.rng.chance(error_rate):
            end = start + self.work(median * 4, 0.5)
            message, error_type = "canceling statement due to statement timeout", "QueryCanceled"
            self.close(idx, end, "ERROR", message, error_type)
            return _Outcome(end, 500, "database error", error_type)
        return _Outcome(self.close(idx, start + self.work(median, 0.45)), 200)

    def redis(
        self,
        parent: int,
        service: str,
        command: str,
        key: str,
        start: int,
        error_rate: float = 0.0,
    ) -> _Outcome:
        """A Redis command: one CLIENT span named after the command."""
        attrs = [
            ("db.system", "redis"),
            ("db.operation", command),
            ("db.statement", f"{command} {key}"),
            ("db.redis.database_index", "0"),
            ("peer.service", "redis"),
            ("net.peer.name", "redis.shophub.svc.cluster.local"),
            ("net.peer.port", "6379"),
        ]
        idx = self.open(parent, service, command, "CLIENT", start, REDIS_SCOPE, attrs)
        if self.rng.chance(error_rate):
            end = start + ms(50.0) + self.work(0.3)  # the client's 50 ms command timeout
            message = "Command timed out after 50 millisecond(s)"
            error_type = "RedisCommandTimeoutException"
            self.close(idx, end, "ERROR", message, error_type)
            return _Outcome(end, 503, "cache unavailable", error_type)
        return _Outcome(self.close(idx, start + self.work(0.9, 0.35)), 200)

    def render(self, parent: int, template: str, start: int) -> int:
        """The frontend's INTERNAL "template.render" span."""
        attrs = [("template.name", template)]
        idx = self.open(
            parent, "frontend", "template.render", "INTERNAL", start, FRONTEND_SCOPE, attrs
        )
        return self.close(idx, start + self.work(2.5))

    def root(
        self,
        route: str,
        start: int,
        body: Callable[[int, int], _Outcome],
        propagate: float,
        path: str | None = None,
        ok_code: int = 200,
    ) -> None:
        """The frontend SERVER root span around `body(idx, t)`.

        A downstream 5xx makes the root ERROR (502) with probability `propagate`; otherwise
        the frontend serves a fallback page with 200.
        """
        method, template = route.split(" ", 1)
        attrs = [
            ("http.method", method),
            ("http.route", template),
            ("http.url", path or template),
            ("http.scheme", "https"),
            ("net.host.name", "www.shophub.example"),
        ]
        idx = self.open(None, "frontend", route, "SERVER", start, HTTP_SCOPE, attrs)
        out = body(idx, start + self.work(0.6))
        end = out.end + self.work(0.4)
        if out.failed and self.rng.chance(propagate):
            self.attr(idx, ("http.status_code", "502"))
            self.close(idx, end, "ERROR", "upstream request failed", "UpstreamError")
        else:
            code = 404 if out.code == 404 else 200 if out.failed else ok_code
            self.attr(idx, ("http.status_code", str(code)))
            self.close(idx, end)

    # -- service handlers -----------------------------------------------------------------

    def inventory_item(self, sku: int, missing: bool) -> Handler:
        """inventory "GET /inventory/{sku}": Redis cache, PostgreSQL (then SET) on a miss."""

        def handle(idx: int, t: int) -> _Outcome:
            t = self.redis(idx, "inventory", "GET", f"product:{sku}", t).end
            if missing or self.rng.chance(0.3):
                db = self.postgres(idx, "inventory", "SELECT", "products", t, error_rate=0.002)
                if db.failed:
                    return _Outcome(db.end + self.work(0.3), 500, db.message, db.error_type)
                t = db.end
                if not missing:
                    t = self.redis(idx, "inventory", "SET", f"product:{sku}", t).end
            return _Outcome(t + self.work(0.3), 404 if missing else 200)

        return handle

    def inventory_featured(self, idx: int, t: int) -> _Outcome:
        """inventory "GET /inventory/featured": Redis, PostgreSQL on a miss."""
        t = self.redis(idx, "inventory", "GET", "featured", t).end
        if self.rng.chance(0.2):
            db = self.postgres(idx, "inventory", "SELECT", "featured", t, error_rate=0.002)
            if db.failed:
                return _Outcome(db.end + self.work(0.3), 500, db.message, db.error_type)
            t = db.end
        return _Outcome(t + self.work(0.3), 200)

    def inventory_reserve(self, idx: int, t: int) -> _Outcome:
        """inventory "POST /inventory/reserve": one UPDATE."""
        db = self.postgres(idx, "inventory", "UPDATE", "inventory", t, error_rate=0.002)
        code = 500 if db.failed else 200
        return _Outcome(db.end + self.work(0.3), code, db.message, db.error_type)

    def cart_get(self, idx: int, t: int) -> _Outcome:
        """cart "GET /cart": one Redis HGETALL."""
        r = self.redis(idx, "cart", "HGETALL", f"cart:{self.rng.hex(8)}", t, error_rate=0.002)
        code = 503 if r.failed else 200
        return _Outcome(r.end + self.work(0.3), code, r.message, r.error_type)

    def shipping_quote(self, idx: int, t: int) -> _Outcome:
        """shipping "POST /shipping/quote": rates from PostgreSQL."""
        t = self.postgres(idx, "shipping", "SELECT", "shipping_rates", t).end + self.work(1.5)
        if self.rng.chance(0.002):
            return _Outcome(t, 503, "rate service overloaded", "OverloadedError")
        return _Outcome(t, 200)

    def fraud_check(self, parent: int, amount: float, start: int) -> int:
        """payment-gateway -> fraud gRPC Check, with the fraud service's INTERNAL "fraud.check".

        A model timeout makes "fraud.check" ERROR but is not propagated (scored by rules).
        """
        name = "shophub.fraud.FraudService/Check"
        rpc = [
            ("rpc.system", "grpc"),
            ("rpc.service", "shophub.fraud.FraudService"),
            ("rpc.method", "Check"),
        ]
        peer = [("peer.service", "fraud"), ("net.peer.name", "fraud"), ("net.peer.port", "50051")]
        client = self.open(parent, "payment-gateway", name, "CLIENT", start, GRPC_SCOPE, rpc + peer)
        t = start + self.hop()
        server = self.open(client, "fraud", name, "SERVER", t, GRPC_SCOPE, list(rpc))
        t = self.redis(
            server, "fraud", "GET", f"velocity:{self.rng.hex(8)}", t + self.work(0.3)
        ).end
        attrs = [("payment.amount", f"{amount:.2f}"), ("fraud.model", "gbt-2026.10")]
        check = self.open(server, "fraud", "fraud.check", "INTERNAL", t, FRAUD_SCOPE, attrs)
        t += self.work(18.0, 0.3)
        score = min(0.999, self.rng.lognormal(0.08, 0.9))
        if self.rng.chance(0.003):
            self.attr(check, ("fraud.score", "0.500"), ("fraud.decision", "allow"))
            self.close(check, t, "ERROR", "model inference timed out", "TimeoutError")
        else:
            decision = "review" if score > 0.6 else "allow"
            self.attr(check, ("fraud.score", f"{score:.3f}"), ("fraud.decision", decision))
            self.close(check, t, "OK")
        t += self.work(0.3)
        self.attr(server, ("rpc.grpc.status_code", "0"))
        self.close(server, t)
        self.attr(client, ("rpc.grpc.status_code", "0"))
        return self.close(client, t + self.hop())

    def payment_api(
        self,
        operation: str,
        amount: float,
        currency: str,
        rate_limited: bool,
        skip_fraud: bool,
    ) -> Handler:
        """payment-gateway "POST /payment-api/<operation>".

        The INTERNAL "payment.<operation>" span holds the card processor round trip; during
        the incident (judged by the request's start) it gets ~300 ms slower and fails more.
        """

        def handle(idx: int, t: int) -> _Outcome:
            incident = self.in_incident(self.spans.start[idx])
            if rate_limited:
                return _Outcome(t + self.work(1.5), 429)
            t = self.postgres(idx, "payment-gateway", "SELECT", "payments", t).end
            if operation != "refund" and amount > FRAUD_CHECK_THRESHOLD and not skip_fraud:
                t = self.fraud_check(idx, amount, t)
            method = self.rng.weighted((("card", 0.85), ("wallet", 0.15)))
            attrs = [
                ("payment.amount", f"{amount:.2f}"),
                ("payment.currency", currency),
                ("payment.method", method),
                ("payment.processor", "acquirer-eu" if currency == "EUR" else "acquirer-us"),
            ]
            internal = self.open(
                idx, "payment-gateway", f"payment.{operation}", "INTERNAL", t, PAYMENTS_SCOPE, attrs
            )
            median = {"charge": 110.0, "authorize": 90.0, "refund": 120.0}[operation]
            took = self.rng.lognormal(median, 0.2)
            if self.rng.chance(0.002):  # 3-D Secure step-up: a rare, natural slow payment
                took += self.rng.lognormal(170.0, 0.25)
            if incident:
                took += max(150.0, self.rng.normal(INCIDENT_EXTRA_LATENCY_MS, 40.0))
            t += ms(took)
            if self.rng.chance(INCIDENT_PAYMENT_ERROR_RATE if incident else PAYMENT_ERROR_RATE):
                message, error_type, code = self.rng.choice(PAYMENT_FAILURES)
                self.close(internal, t, "ERROR", message, error_type)
                return _Outcome(t + self.work(0.5), code, message, error_type)
            self.close(internal, t, "OK")
            write = "UPDATE" if operation == "refund" else "INSERT"
            t = self.postgres(idx, "payment-gateway", write, "payments", t).end
            return _Outcome(t + self.work(0.4), 200 if operation == "refund" else 201)

        return handle

    def pay(
        self, parent: int, operation: str, amount: float, currency: str, start: int, retry: bool
    ) -> _Outcome:
        """checkout's calls to payment-gateway: one, or (if `retry`) up to five after 429s
        (1.5 % of payments are rate limited 1-4 times) and after 60 % of 5xx responses."""
        rate_limited = self.rng.integer(1, 4) if retry and self.rng.chance(0.015) else 0
        skip_fraud = False
        if operation != "refund" and amount > FRAUD_CHECK_THRESHOLD:
            self.high_payments += 1
            skip_fraud = self.high_payments == self.next_fraud_skip
            if skip_fraud:
                gap = FRAUD_CHECK_SKIP_EVERY
                self.next_fraud_skip += self.rng.integer(gap * 6 // 10, gap * 14 // 10)
        route = f"POST /payment-api/{operation}"
        t = start
        attempt = 0
        while True:
            limited = attempt < rate_limited
            handler = self.payment_api(operation, amount, currency, limited, skip_fraud)
            extra = [("retry.count", str(attempt))]
            out = self.http(parent, "checkout", "payment-gateway", route, t, handler, extra=extra)
            again = out.code == 429 or (out.failed and self.rng.chance(0.6))
            if not retry or not again or attempt == 4:
                return out
            attempt += 1
            t = out.end + ms(self.rng.lognormal(40.0 * 2**attempt, 0.3))  # backoff

    def publish_order(self, parent: int, start: int) -> int:
        """checkout's PRODUCER "orders publish" and shipping's asynchronous CONSUMER
        "orders process" (which starts after the publish ends and may outlive the trace root)."""
        kafka = [
            ("messaging.system", "kafka"),
            ("messaging.destination.name", "orders"),
            ("messaging.kafka.partition", str(self.rng.integer(0, 11))),
        ]
        attrs = [*kafka, ("messaging.operation", "publish")]
        producer = self.open(
            parent, "checkout", "orders publish", "PRODUCER", start, KAFKA_SCOPE, attrs
        )
        end = self.close(producer, start + self.work(2.5))
        t = end + ms(self.rng.lognormal(12.0, 0.6))  # consumer lag
        attrs = [*kafka, ("messaging.operation", "process")]
        consumer = self.open(
            producer, "shipping", "orders process", "CONSUMER", t, KAFKA_SCOPE, attrs
        )
        db = self.postgres(consumer, "shipping", "INSERT", "shipments", t + self.work(0.8), 0.001)
        status = "ERROR" if db.failed else "UNSET"
        self.close(consumer, db.end + self.work(0.8), status, db.message, db.error_type)
        return end

    # -- trace shapes ---------------------------------------------------------------------

    def home(self, start: int) -> None:
        """Home page: frontend -> inventory (featured) -> redis (-> postgres)."""

        def body(idx: int, t: int) -> _Outcome:
            route = "GET /inventory/featured"
            out = self.http(idx, "frontend", "inventory", route, t, self.inventory_featured)
            return _Outcome(self.render(idx, "home.html", out.end), out.code)

        self.root("GET /", start, body, propagate=0.6)

    def product(self, start: int) -> None:
        """Product page: frontend -> inventory -> redis (-> postgres); ~3 % are 404."""
        sku = self.rng.integer(1000, 9999)
        missing = self.rng.chance(0.03)

        def body(idx: int, t: int) -> _Outcome:
            handler = self.inventory_item(sku, missing)
            path = f"/inventory/{sku}"
            out = self.http(idx, "frontend", "inventory", "GET /inventory/{sku}", t, handler, path)
            template = "not_found.html" if out.code == 404 else "product.html"
            return _Outcome(self.render(idx, template, out.end), out.code)

        self.root("GET /products/{id}", start, body, propagate=0.6, path=f"/products/{sku}")

    def cart_view(self, start: int) -> None:
        """View the cart: frontend -> cart -> redis."""

        def body(idx: int, t: int) -> _Outcome:
            out = self.http(idx, "frontend", "cart", "GET /cart", t, self.cart_get)
            return _Outcome(self.render(idx, "cart.html", out.end), out.code)

        self.root("GET /cart", start, body, propagate=0.8)

    def cart_add(self, start: int) -> None:
        """Add to cart: frontend -> cart -> inventory (stock check), then redis HSET."""
        sku = self.rng.integer(1000, 9999)

        def add(idx: int, t: int) -> _Outcome:
            handler = self.inventory_item(sku, False)
            path = f"/inventory/{sku}"
            stock = self.http(idx, "cart", "inventory", "GET /inventory/{sku}", t, handler, path)
            if stock.failed:
                return _Outcome(stock.end + self.work(0.3), 503, "stock check failed", "CartError")
            key = f"cart:{self.rng.hex(8)}"
            r = self.redis(idx, "cart", "HSET", key, stock.end + self.work(0.2), error_rate=0.002)
            code = 503 if r.failed else 201
            return _Outcome(r.end + self.work(0.3), code, r.message, r.error_type)

        def body(idx: int, t: int) -> _Outcome:
            return self.http(idx, "frontend", "cart", "POST /cart/items", t, add)

        self.root("POST /cart/items", start, body, propagate=0.8, ok_code=201)

    def checkout(self, start: int) -> None:
        """Checkout: frontend -> checkout -> cart, then inventory and shipping in parallel,
        then payment-gateway (-> fraud for amounts over 1000), INSERT orders, Kafka publish."""
        amount = self.rng.lognormal(420.0, 1.05)
        currency = self.rng.weighted((("USD", 0.65), ("EUR", 0.35)))
        operation = "authorize" if self.rng.chance(0.15) else "charge"

        def place(idx: int, t: int) -> _Outcome:
            self.attr(idx, ("order.currency", currency), ("order.total", f"{amount:.2f}"))
            cart = self.http(idx, "checkout", "cart", "GET /cart", t, self.cart_get)
            if cart.failed:
                return _Outcome(cart.end + self.work(0.3), 502, "cart unavailable", "CheckoutError")
            t = cart.end + self.work(0.3)
            route = "POST /inventory/reserve"
            stock = self.http(idx, "checkout", "inventory", route, t, self.inventory_reserve)
            t += ms(self.rng.uniform() * 0.2)
            quote = self.http(
                idx, "checkout", "shipping", "POST /shipping/quote", t, self.shipping_quote
            )
            t = max(stock.end, quote.end) + self.work(0.3)
            if stock.failed:
                return _Outcome(t, 502, "inventory reservation failed", "CheckoutError")
            paid = self.pay(idx, operation, amount, currency, t, retry=True)
            t = paid.end + self.work(0.3)
            if paid.failed:
                return _Outcome(t, 502, f"payment failed: {paid.message}", "PaymentError")
            t = self.postgres(idx, "checkout", "INSERT", "orders", t).end
            t = self.publish_order(idx, t + self.work(0.2))
            return _Outcome(t + self.work(0.4), 201)

        def body(idx: int, t: int) -> _Outcome:
            out = self.http(idx, "frontend", "checkout", "POST /checkout", t, place)
            template = "checkout_error.html" if out.failed else "order_confirmation.html"
            return _Outcome(self.render(idx, template, out.end), out.code)

        self.root("POST /checkout", start, body, propagate=0.75)

    def refund(self, start: int) -> None:
        """Refund: frontend -> checkout "POST /orders/{id}/refund" -> payment-gateway refund."""
        order = self.rng.integer(100000, 999999)
        amount = self.rng.lognormal(120.0, 0.9)
        currency = self.rng.weighted((("USD", 0.65), ("EUR", 0.35)))

        def handle(idx: int, t: int) -> _Outcome:
            t = self.postgres(idx, "checkout", "SELECT", "orders", t).end
            paid = self.pay(idx, "refund", amount, currency, t, retry=False)
            if paid.failed:
                return _Outcome(paid.end + self.work(0.3), 502, "refund failed", "RefundError")
            t = self.postgres(idx, "checkout", "UPDATE", "orders", paid.end).end
            return _Outcome(t + self.work(0.3), 200)

        def body(idx: int, t: int) -> _Outcome:
            route, path = "POST /orders/{id}/refund", f"/orders/{order}/refund"
            return self.http(idx, "frontend", "checkout", route, t, handle, path)

        path = f"/account/orders/{order}/refund"
        self.root("POST /account/orders/{id}/refund", start, body, propagate=0.9, path=path)

    def trace(self, start: int) -> None:
        """One trace of a randomly chosen shape whose root starts at `start` (ns)."""
        self.trace_id = self.rng.hex(32)
        self.trace_pods = {}
        shape: Callable[[int], None] = getattr(self, self.rng.weighted(TRACE_MIX))
        shape(start)

    # -- output ---------------------------------------------------------------------------

    def frame(self) -> pl.DataFrame:
        """The spans as a canonical span table plus the promoted columns, by start time."""
        s = self.spans
        resources = _map_series(
            [
                [
                    ("service.name", service),
                    ("service.version", SERVICES[service][0]),
                    ("deployment.environment", "production"),
                    ("k8s.pod.name", pod),
                    ("host.name", host),
                ]
                for pod, service, host in zip(
                    self.pod_names, self.pod_service, self.pod_hosts, strict=True
                )
            ]
        )
        frame = pl.DataFrame(
            {
                "trace_id": s.trace_id,
                "span_id": s.span_id,
                "parent_span_id": pl.Series(s.parent_id, dtype=pl.String),
                "trace_key": pl.Series([int(t[-16:], 16) for t in s.trace_id], dtype=pl.UInt64),
                "name": s.name,
                "kind": s.kind,
                "service_name": [self.pod_service[p] for p in s.pod],
                "start_time": pl.Series(s.start, dtype=pl.Int64).cast(UTC_NS),
                "end_time": pl.Series(s.end, dtype=pl.Int64).cast(UTC_NS),
                "duration_ns": [e - b for b, e in zip(s.start, s.end, strict=True)],
                "status_code": s.status,
                "status_message": pl.Series(s.message, dtype=pl.String),
                "scope_name": [name for name, _ in s.scope],
                "scope_version": [version for _, version in s.scope],
                "span_attributes": _map_series(s.attrs),
                "resource_attributes": resources.gather(pl.Series(s.pod, dtype=pl.UInt32)),
            },
            schema=CANONICAL_COLUMNS,
        )
        span_map = pl.col("span_attributes").map
        promoted = (
            span_map.get(name.removeprefix("attr.")).cast(dtype).alias(name)
            for name, dtype in PROMOTED_COLUMNS.items()
        )
        return frame.with_columns(promoted).sort("start_time", "span_id", maintain_order=True)


def generate(
    traces: int = SAMPLE_TRACES,
    seed: int = SAMPLE_SEED,
    start: datetime = DEFAULT_START,
    duration: timedelta = DEFAULT_DURATION,
) -> pl.DataFrame:
    """Generate `traces` ShopHub traces whose roots start uniformly in [start, start + duration).

    The result has exactly `fluo.schema.CANONICAL_COLUMNS` followed by `PROMOTED_COLUMNS`,
    is sorted by start_time (then span_id) and depends only on the arguments.
    """
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    rng = Rng(seed)
    begin, end = incident_window(start, duration)
    shop = _ShopHub(rng, (_epoch_ns(begin), _epoch_ns(end)))
    first, span = _epoch_ns(start), _epoch_ns(start + duration) - _epoch_ns(start)
    for t in sorted(first + int(rng.uniform() * span) for _ in range(traces)):
        shop.trace(t)
    return shop.frame()


def write_sample(frame: pl.DataFrame, out: Path) -> None:
    """Write a generated frame as the committed sample is stored (zstd, 64k-row groups)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(
        out, compression="zstd", compression_level=19, row_group_size=65536, statistics=True
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: generate a trace set and write it as Parquet."""
    parser = argparse.ArgumentParser(description="Generate the ShopHub trace set as Parquet.")
    parser.add_argument("--out", type=Path, default=Path("data/shophub/spans.parquet"))
    parser.add_argument("--traces", type=int, default=SAMPLE_TRACES)
    parser.add_argument("--seed", type=int, default=SAMPLE_SEED)
    args = parser.parse_args(argv)
    frame = generate(traces=args.traces, seed=args.seed)
    write_sample(frame, args.out)
    print(f"wrote {frame.height} spans of {args.traces} traces to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
