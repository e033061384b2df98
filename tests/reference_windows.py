"""A plain-Python evaluator of windowed aggregate rules: slow, obviously correct.

It covers the constructs the differential test generates: tumbling and sliding windows,
one `by` key (the service), a `where` on the span kind, the aggregates count, rate,
errors, error_rate, avg, max, p95 of the duration, `min_count`, and `baseline: previous
N` (the median of the previous N windows' values that met min_count).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

NS = 1_000_000_000


@dataclass(frozen=True)
class Span:
    service: str
    kind: str
    start: int  # ns since the epoch
    duration: int  # ns
    error: bool
    trace_id: str


def quantile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (Polars' "linear")."""
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def metric(name: str, spans: list[Span], seconds: float) -> float | None:
    durations = [s.duration for s in spans]
    if name == "count":
        return len(spans)
    if name == "rate":
        return len(spans) / seconds
    if name == "errors":
        return sum(s.error for s in spans)
    if name == "error_rate":
        return sum(s.error for s in spans) / len(spans) if spans else None
    if not durations:
        return None
    if name == "avg":
        return sum(durations) / len(durations)
    if name == "max":
        return max(durations)
    if name == "p95":
        return quantile([float(d) for d in durations], 0.95)
    raise ValueError(name)


def windows_of(start: int, size: int, every: int) -> list[int]:
    """Starts of the windows (aligned to multiples of `every`) that contain `start`."""
    first = start - start % every
    return [first - i * every for i in range(size // every)]


def evaluate(
    spans: list[Span],
    *,
    size: int,
    every: int,
    kind: str | None,
    name: str,
    op: str,
    threshold: float,
    min_count: int,
    previous: int | None = None,
) -> set[tuple[str, int]]:
    """(service, window start) of every window where `name op threshold` holds; with
    `previous`, where `name - baseline op threshold` holds."""
    groups: dict[tuple[str, int], list[Span]] = defaultdict(list)
    for s in spans:
        if kind is not None and s.kind != kind:
            continue
        for w in windows_of(s.start, size, every):
            groups[(s.service, w)].append(s)
    values: dict[tuple[str, int], Any] = {}
    for key, members in groups.items():
        value = metric(name, members, size / NS)
        values[key] = (len(members), value)
    fired = set()
    for (service, w), (count, value) in values.items():
        if count < min_count or value is None:
            continue
        compared = value
        if previous is not None:
            earlier = [
                v
                for (s2, w2), (c2, v) in values.items()
                if s2 == service and w - previous * every <= w2 < w and c2 >= min_count
                if v is not None
            ]
            if not earlier:
                continue
            compared = value - statistics.median(earlier)
        holds = compared > threshold if op == ">" else compared < threshold
        if holds:
            fired.add((service, w))
    return fired
