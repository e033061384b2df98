"""A plain, slow reference for trace-level rules: the oracle of test_trace_differential.py.

Written from docs/traces.md alone. Rules are small Python trees (below) that render to
fluo text and are evaluated here record by record, with the structure computed the
obvious way (parent chains by span id), never with joins:

* a trace is every record with its trace id; aggregates count every record;
* `children` of x: the records whose parent id is x's span id;
* `descendants` of x: the records whose chain of parent ids passes through x's span id
  (the chain follows each id's first record; it stops at an id the trace lacks);
* `ancestors` of x: the records whose span id is on x's chain;
* `siblings` of x: the other records with x's parent id (none for a root);
* `parent.` the first record with x's parent id; `root.` the earliest record without a
  parent (ties by span id); empty aggregates: count 0, sum 0, all true, max null; a
  comparison with null is false, and `not` of it true.

Spans are dicts: trace, sid, parent (int or None), name, error (bool), ms (duration),
start (int, unique). Duplicate records copy the trace, sid, parent and name of a record.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

Span = dict[str, Any]
QUANTILES = {"p50": 0.5, "p90": 0.9}

OPS = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}

# --- span predicates -------------------------------------------------------------------


@dataclass(frozen=True)
class Name:
    value: str

    def text(self) -> str:
        return f'span.name == "{self.value}"'

    def holds(self, s: Span) -> bool:
        return bool(s["name"] == self.value)


@dataclass(frozen=True)
class Error:
    def text(self) -> str:
        return "span.status == ERROR"

    def holds(self, s: Span) -> bool:
        return bool(s["error"])


@dataclass(frozen=True)
class Slow:
    ms: int

    def text(self) -> str:
        return f"span.duration > {self.ms}ms"

    def holds(self, s: Span) -> bool:
        return bool(s["ms"] > self.ms)


@dataclass(frozen=True)
class Not:
    """`not (...)` of a span predicate, a trace term or a named-span condition."""

    operand: Any

    def text(self) -> str:
        return f"not ({self.operand.text()})"

    def holds(self, *args: Any) -> bool:
        return not self.operand.holds(*args)


@dataclass(frozen=True)
class Both:
    """`(...) and (...)` / `(...) or (...)`, at any of the three levels."""

    op: str  # "and" | "or"
    left: Any
    right: Any

    def text(self) -> str:
        return f"({self.left.text()}) {self.op} ({self.right.text()})"

    def holds(self, *args: Any) -> bool:
        if self.op == "and":
            return bool(self.left.holds(*args) and self.right.holds(*args))
        return bool(self.left.holds(*args) or self.right.holds(*args))


# --- the structure ---------------------------------------------------------------------


class Trace:
    """The records of one trace, with the relations of docs/traces.md."""

    def __init__(self, records: list[Span]) -> None:
        self.records = records
        self.first: dict[int, Span] = {}
        for r in records:
            self.first.setdefault(r["sid"], r)

    def chain(self, record: Span) -> list[int]:
        """The parent ids above `record`, nearest first, while the trace has them."""
        ids: list[int] = []
        parent = record["parent"]
        while parent is not None and parent in self.first and parent not in ids:
            ids.append(parent)
            parent = self.first[parent]["parent"]
        return ids

    def scope(self, name: str, x: Span | None) -> list[Span]:
        if name == "trace":
            return self.records
        assert x is not None
        if name == "children":
            return [c for c in self.records if c["parent"] == x["sid"]]
        if name == "descendants":
            return [d for d in self.records if x["sid"] in self.chain(d)]
        if name == "ancestors":
            above = set(self.chain(x))
            return [a for a in self.records if a["sid"] in above]
        if name == "siblings":
            if x["parent"] is None:
                return []
            return [s for s in self.records if s is not x and s["parent"] == x["parent"]]
        raise ValueError(name)

    def parent(self, x: Span) -> Span | None:
        return None if x["parent"] is None else self.first.get(x["parent"])

    def root(self) -> Span | None:
        roots = [r for r in self.records if r["parent"] is None]
        return min(roots, key=lambda r: (r["start"], r["sid"])) if roots else None


# --- trace terms -----------------------------------------------------------------------


def _prefix(scope: str) -> str:
    return "" if scope == "trace" else f"{scope}."


def _where(where: Any) -> str:
    """` where P` inside an aggregate, or nothing."""
    return "" if where is None else f" where {where.text()}"


def _selected(t: Trace, scope: str, x: Span | None, where: Any) -> list[Span]:
    """The records of `scope` (relative to x) that meet `where` (None: all)."""
    return [s for s in t.scope(scope, x) if where is None or where.holds(s)]


@dataclass(frozen=True)
class Has:
    scope: str
    where: Any
    missing: bool = False

    def text(self) -> str:
        func = "missing" if self.missing else "has"
        return f"{_prefix(self.scope)}{func}({self.where.text()})"

    def holds(self, t: Trace, x: Span | None) -> bool:
        found = bool(_selected(t, self.scope, x, self.where))
        return not found if self.missing else found


@dataclass(frozen=True)
class Count:
    scope: str
    where: Any
    op: str
    n: int

    def text(self) -> str:
        where = "" if self.where is None else self.where.text()
        return f"{_prefix(self.scope)}count({where}) {self.op} {self.n}"

    def holds(self, t: Trace, x: Span | None) -> bool:
        count = len(_selected(t, self.scope, x, self.where))
        return bool(OPS[self.op](count, self.n))


@dataclass(frozen=True)
class Duration:
    """`max` / `min` / `sum` / `avg` / `p50` / `p90` of span.duration where P, compared
    with n ms."""

    func: str
    scope: str
    where: Any
    op: str
    ms: int

    def text(self) -> str:
        aggregate = f"{self.func}(span.duration{_where(self.where)})"
        return f"{_prefix(self.scope)}{aggregate} {self.op} {self.ms}ms"

    def holds(self, t: Trace, x: Span | None) -> bool:
        values = [s["ms"] for s in _selected(t, self.scope, x, self.where)]
        result: float | None
        if self.func == "sum":
            result = sum(values)
        elif not values:
            result = None
        elif self.func == "avg":
            result = sum(values) / len(values)
        elif self.func in QUANTILES:  # linear between the closest ranks
            ordered = sorted(values)
            position = (len(ordered) - 1) * QUANTILES[self.func]
            low = int(position)
            high = min(low + 1, len(ordered) - 1)
            result = ordered[low] + (ordered[high] - ordered[low]) * (position - low)
        else:
            result = max(values) if self.func == "max" else min(values)
        return result is not None and bool(OPS[self.op](result, self.ms))


@dataclass(frozen=True)
class Distinct:
    """`distinct(span.name where P) op n`: how many different names."""

    scope: str
    where: Any
    op: str
    n: int

    def text(self) -> str:
        return f"{_prefix(self.scope)}distinct(span.name{_where(self.where)}) {self.op} {self.n}"

    def holds(self, t: Trace, x: Span | None) -> bool:
        names = {s["name"] for s in _selected(t, self.scope, x, self.where)}
        return bool(OPS[self.op](len(names), self.n))


@dataclass(frozen=True)
class All:
    scope: str
    what: Any
    where: Any

    def text(self) -> str:
        return f"{_prefix(self.scope)}all({self.what.text()}{_where(self.where)})"

    def holds(self, t: Trace, x: Span | None) -> bool:
        return all(self.what.holds(s) for s in _selected(t, self.scope, x, self.where))


@dataclass(frozen=True)
class CountVsCount:
    """count(A) op count(B) + k over the trace."""

    a: Any
    op: str
    b: Any
    k: int

    def text(self) -> str:
        plus = f" + {self.k}" if self.k else ""
        return f"count({self.a.text()}) {self.op} count({self.b.text()}){plus}"

    def holds(self, t: Trace, x: Span | None) -> bool:
        a = sum(1 for s in t.records if self.a.holds(s))
        b = sum(1 for s in t.records if self.b.holds(s))
        return bool(OPS[self.op](a, b + self.k))


@dataclass(frozen=True)
class Related:
    """`parent.name == v` or `root.name == v` (null: false)."""

    which: str
    value: str

    def text(self) -> str:
        return f'{self.which}.name == "{self.value}"'

    def holds(self, t: Trace, x: Span | None) -> bool:
        other = t.root() if self.which == "root" else (t.parent(x) if x else None)
        return other is not None and other["name"] == self.value


@dataclass(frozen=True)
class SpanCount:
    op: str
    n: int

    def text(self) -> str:
        return f"trace.span_count {self.op} {self.n}"

    def holds(self, t: Trace, x: Span | None) -> bool:
        return bool(OPS[self.op](len(t.records), self.n))


# --- rules -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Anchored:
    """`local and term`: a signal for every record that meets both."""

    local: Any
    term: Any

    def text(self) -> str:
        return f"({self.local.text()}) and ({self.term.text()})"

    def signals(self, spans: list[Span]) -> list[tuple[int, int]]:
        out = []
        for trace in _traces(spans):
            for x in trace.records:
                if self.local.holds(x) and self.term.holds(trace, x):
                    out.append((x["trace"], x["sid"]))
        return sorted(out)


@dataclass(frozen=True)
class WholeTrace:
    """A condition over the whole trace: the traces where it holds."""

    term: Any

    def text(self) -> str:
        return self.term.text()

    def signals(self, spans: list[Span]) -> list[int]:
        return sorted(t.records[0]["trace"] for t in _traces(spans) if self.term.holds(t, None))


def _traces(spans: list[Span]) -> list[Trace]:
    by_trace: dict[int, list[Span]] = {}
    for s in spans:
        by_trace.setdefault(s["trace"], []).append(s)
    return [Trace(records) for records in by_trace.values()]


# --- sequences (docs/traces.md section 5) -----------------------------------------------


@dataclass(frozen=True)
class Sequence:
    """Ordered steps within a trace: `steps` are predicates, or ("absent", predicate)
    between two of them; `until` cancels; `within_ms` bounds first to last step."""

    steps: tuple[Any, ...]
    until: Any = None
    within_ms: int | None = None
    by_service: bool = False  # `by: span.service`: group by service across traces

    def yaml(self) -> str:
        lines = ["rules:", "  r:", "    sequence:"]
        if self.by_service:
            lines.append("      by: span.service")
        if self.within_ms is not None:
            lines.append(f"      within: {self.within_ms}ms")
        lines.append("      steps:")
        for step in self.steps:
            if isinstance(step, tuple):
                lines.append(f"        - absent: '{step[1].text()}'")
            else:
                lines.append(f"        - '{step.text()}'")
        if self.until is not None:
            lines.append(f"      until: '{self.until.text()}'")
        return "\n".join(lines) + "\n"

    def signals(self, spans: list[Span]) -> list[tuple[int, int]]:
        """(trace, first step's span) of every match: for each span meeting the first
        step, the earliest span after it meeting the next step, and so on (greedy)."""
        out = []
        groups: dict[Any, list[Span]] = {}
        for s in spans:
            groups.setdefault(s.get("svc", "svc") if self.by_service else s["trace"], []).append(s)
        for records in groups.values():
            present = [s for s in self.steps if not isinstance(s, tuple)]
            for first in records:
                if not present[0].holds(first):
                    continue
                chosen = [first]
                for step in present[1:]:
                    later = [r for r in records if r["start"] > chosen[-1]["start"]]
                    later = [r for r in later if step.holds(r)]
                    if not later:
                        break
                    chosen.append(min(later, key=lambda r: r["start"]))
                if len(chosen) < len(present) or not self._allowed(records, chosen):
                    continue
                out.append((first["trace"], first["sid"]))
        return sorted(out)

    def _allowed(self, records: list[Span], chosen: list[Span]) -> bool:
        first, last = chosen[0]["start"], chosen[-1]["start"]
        if self.within_ms is not None and last - first > self.within_ms:
            return False
        if self.until is not None and any(
            first < r["start"] < last and self.until.holds(r) for r in records
        ):
            return False
        index = 0  # which chosen span precedes the current step
        for step in self.steps:
            if not isinstance(step, tuple):
                index += 1
                continue
            low, high = chosen[index - 1]["start"], chosen[index]["start"]
            if any(low < r["start"] < high and step[1].holds(r) for r in records):
                return False
        return True


# --- named spans (docs/traces.md section 4) -----------------------------------------------


@dataclass(frozen=True)
class Relation:
    """`child_of(x, y)`, `descendant_of(x, y)`, `sibling_of(x, y)` between two names."""

    func: str
    x: str
    y: str

    def text(self) -> str:
        return f"{self.func}({self.x}, {self.y})"

    def holds(self, t: Trace, bound: dict[str, Span]) -> bool:
        x, y = bound[self.x], bound[self.y]
        if self.func == "child_of":
            return bool(x["parent"] == y["sid"])
        if self.func == "descendant_of":
            return y["sid"] in t.chain(x)
        return x["parent"] is not None and x["parent"] == y["parent"]


@dataclass(frozen=True)
class Longer:
    """`x.duration > y.duration`, or `x.start < y.start` (`earlier`)."""

    x: str
    y: str
    earlier: bool = False

    def text(self) -> str:
        if self.earlier:
            return f"{self.x}.start < {self.y}.start"
        return f"{self.x}.duration > {self.y}.duration"

    def holds(self, t: Trace, bound: dict[str, Span]) -> bool:
        x, y = bound[self.x], bound[self.y]
        return bool(x["start"] < y["start"] if self.earlier else x["ms"] > y["ms"])


@dataclass(frozen=True)
class Pattern:
    """Named spans of one trace related by `when`: a signal for each span (id) bound to
    the first name for which some binding of the others (different span ids; any of a
    span id's records) satisfies it."""

    names: tuple[tuple[str, Any], ...]
    when: Any

    def yaml(self) -> str:
        bound = "".join(f"      {n}: '{p.text()}'\n" for n, p in self.names)
        return f"rules:\n  r:\n    spans:\n{bound}    when: '{self.when.text()}'\n"

    def signals(self, spans: list[Span]) -> list[tuple[int, int]]:
        out = []
        for trace in _traces(spans):
            first, condition = self.names[0]
            for x in trace.records:
                if condition.holds(x) and self._extends(trace, {first: x}, 1):
                    out.append((x["trace"], x["sid"]))
        return sorted(set(out))

    def _extends(self, t: Trace, bound: dict[str, Span], i: int) -> bool:
        if i == len(self.names):
            return bool(self.when.holds(t, bound))
        name, condition = self.names[i]
        taken = [s["sid"] for s in bound.values()]
        return any(
            self._extends(t, {**bound, name: r}, i + 1)
            for r in t.records
            if r["sid"] not in taken and condition.holds(r)
        )


# --- aggregates that read the anchor (`this.`, docs/traces.md section 2) -------------------


@dataclass(frozen=True)
class ThisCount:
    """`count(span.name == this.name and P) op n` over the trace (the anchor included)."""

    where: Any
    op: str
    n: int

    def text(self) -> str:
        return f"count(span.name == this.name and ({self.where.text()})) {self.op} {self.n}"

    def holds(self, t: Trace, x: Span | None) -> bool:
        assert x is not None
        count = sum(1 for s in t.records if s["name"] == x["name"] and self.where.holds(s))
        return bool(OPS[self.op](count, self.n))


@dataclass(frozen=True)
class ThisOrder:
    """`has(span.start op this.start and P)` (or `missing`), optionally also requiring
    `span.name == this.name`."""

    op: str
    where: Any
    same_name: bool
    missing: bool

    def text(self) -> str:
        func = "missing" if self.missing else "has"
        same = "span.name == this.name and " if self.same_name else ""
        return f"{func}({same}span.start {self.op} this.start and ({self.where.text()}))"

    def holds(self, t: Trace, x: Span | None) -> bool:
        assert x is not None
        found = any(
            OPS[self.op](s["start"], x["start"])
            and self.where.holds(s)
            and (not self.same_name or s["name"] == x["name"])
            for s in t.records
        )
        return not found if self.missing else found


# --- trace fields and arithmetic (docs/traces.md section 3) -------------------------------


@dataclass(frozen=True)
class RootShare:
    """`span.duration > k * root.duration` (no root: false)."""

    k: float

    def text(self) -> str:
        return f"span.duration > {self.k} * root.duration"

    def holds(self, t: Trace, x: Span | None) -> bool:
        assert x is not None
        root = t.root()
        return root is not None and x["ms"] > self.k * root["ms"]


@dataclass(frozen=True)
class TraceDuration:
    """`trace.duration op n ms`: last end minus first start over every record."""

    op: str
    ms: int

    def text(self) -> str:
        return f"trace.duration {self.op} {self.ms}ms"

    def holds(self, t: Trace, x: Span | None) -> bool:
        first = min(r["start"] for r in t.records)
        last = max(r["start"] + r["ms"] for r in t.records)
        return bool(OPS[self.op](last - first, self.ms))


# --- FLUO's when / always / never (docs/traces.md section 6) -------------------------------


@dataclass(frozen=True)
class FluoTerm:
    """A FLUO span term: the dotted span name, optionally `.where(status == ERROR)`."""

    name: str
    failed: bool = False

    def text(self) -> str:
        return self.name + (".where(status == ERROR)" if self.failed else "")

    def matches(self, r: Span) -> bool:
        return bool(r["name"] == self.name and (r["error"] or not self.failed))

    def holds(self, t: Trace) -> bool:
        return any(self.matches(r) for r in t.records)


@dataclass(frozen=True)
class FluoRule:
    """`when { W } always { A } never { N }`: W and (not A or N); a `when` alone fires.
    W starts with a span term, so the rule is anchored: one signal per span W names."""

    when: FluoTerm
    always: FluoTerm | None
    never: FluoTerm | None

    def yaml(self) -> str:
        text = f"when {{ {self.when.text()} }}"
        if self.always is not None:
            text += f" always {{ {self.always.text()} }}"
        if self.never is not None:
            text += f" never {{ {self.never.text()} }}"
        return f"rules:\n  r:\n    condition: '{text}'\n"

    def signals(self, spans: list[Span]) -> list[tuple[int, int]]:
        fired = []
        for t in _traces(spans):
            broken = self.always is not None and not self.always.holds(t)
            forbidden = self.never is not None and self.never.holds(t)
            if broken or forbidden or (self.always is None and self.never is None):
                fired += [(r["trace"], r["sid"]) for r in t.records if self.when.matches(r)]
        return sorted(fired)
