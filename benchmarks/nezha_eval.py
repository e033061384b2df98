"""How well data/rules/regressions.yaml sees the injected faults of the Nezha data (issue #4).

    .venv/bin/python benchmarks/nezha_eval.py [--rules data/rules/regressions.yaml]

Development days only: TrainTicket 2023-01-29 and OnlineBoutique 2022-08-22 and
2022-08-23. TrainTicket 2023-01-30 (and the continuous TrainTicket run) is the
project's held-out evaluation: this script refuses to read it.

Each day is read with the `nezha` profile and run with `--baseline` = the system's
fault-free minute(s) of a development day. For each injected fault (time `inject_time`,
read as UTC, per the dataset README; service = pod name minus its two hash segments):

* **detected** when some signal's window starts between 1 minute before and 5 minutes
  after the injection and names the faulty service, or a service that calls it (the
  `service` key, or either side of a caller -> callee edge);
* a signal **matches** when it is so close to some fault; the others are **false
  alarms** (counted as distinct rule/group/window). The days hold almost only fault
  windows (see the dataset README), so "fault-free" time is scarce: false alarms here
  are mostly signals for services unrelated to the fault of their minute.

Results go to benchmarks/results/nezha_eval.json and are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

import polars as pl

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import fluo  # noqa: E402
from fluo.ingest import scan_spans  # noqa: E402

NEZHA = HERE.parent.parent / "shared" / "datasets" / "nezha-microservice-rca"
DAYS = {
    "trainticket 2023-01-29": (
        "trainticket/2023-01-29",
        ["trainticket/fault_free/2023-01-29_08_50_trace.csv.gz"],
    ),
    "onlineboutique 2022-08-22": (
        "onlineboutique/2022-08-22",
        ["onlineboutique/fault_free"],
    ),
    "onlineboutique 2022-08-23": (
        "onlineboutique/2022-08-23",
        ["onlineboutique/fault_free"],
    ),
}
HELD_OUT = ("2023-01-30", "trastrainer")
BEFORE = dt.timedelta(minutes=1)
AFTER = dt.timedelta(minutes=5)


def service_of(pod: str) -> str:
    """`ts-route-service-b6c59fb57-dz9bw` -> `ts-route-service`."""
    return pod.rsplit("-", 2)[0]


def faults(day: Path) -> list[dict[str, object]]:
    found = []
    for entries in json.loads((day / "fault_list.json").read_text()).values():
        for e in entries:
            at = dt.datetime.fromisoformat(e["inject_time"]).replace(tzinfo=dt.UTC)
            found.append(
                {"time": at, "service": service_of(e["inject_pod"]), "type": e["inject_type"]}
            )
    return sorted(found, key=lambda f: f["time"])  # type: ignore[arg-type, return-value]


def callers(spans: pl.LazyFrame) -> dict[str, set[str]]:
    """Callee service -> the services that call it (parent span in another service)."""
    edges = (
        spans.select("trace_id", "span_id", "parent_span_id", "service_name")
        .join(
            spans.select(
                "trace_id",
                pl.col("span_id").alias("parent_span_id"),
                pl.col("service_name").alias("caller"),
            ),
            on=["trace_id", "parent_span_id"],
        )
        .filter(pl.col("caller") != pl.col("service_name"))
        .select("caller", "service_name")
        .unique()
        .collect()
    )
    out: dict[str, set[str]] = defaultdict(set)
    for caller, callee in edges.iter_rows():
        out[callee].add(caller)
    return out


def named_services(signal: dict[str, object]) -> set[str]:
    """The services a signal is about: its service key and any service in its group."""
    names = {str(signal["service"])} if signal["service"] else set()
    for key, value in re.findall(r"(?:^|, )([\w.]+)=([^,]*)", str(signal["group"] or "")):
        if key.endswith("service"):
            names.add(value)
    return names


def evaluate_day(
    rules: fluo.RuleSet, label: str, day: str, baseline: list[str]
) -> dict[str, object]:
    if any(h in day for h in HELD_OUT):
        raise SystemExit(f"{day} is held out: rules tuned on it prove nothing")
    spans = scan_spans(NEZHA / day / "trace", format="nezha")
    base = scan_spans([NEZHA / b for b in baseline], format="nezha")
    started = time.perf_counter()
    result = fluo.evaluate(rules, spans, baseline=base)
    seconds = time.perf_counter() - started
    signals = result.signals.filter(pl.col("window_start").is_not_null()).to_dicts()
    injected = faults(NEZHA / day)
    calls = callers(spans)

    def related(service: str, lenient: bool) -> set[str]:
        return {service, *calls.get(service, set())} if lenient else {service}

    def hits(fault: dict[str, object], services: set[str]) -> list[int]:
        return [
            i
            for i, s in enumerate(signals)
            if fault["time"] - BEFORE <= s["window_start"] <= fault["time"] + AFTER  # type: ignore[operator]
            and named_services(s) & services
        ]

    report: dict[str, object] = {"day": label, "faults": len(injected)}
    for lenient in (False, True):
        per_type: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        per_rule: dict[str, int] = defaultdict(int)
        matched: set[int] = set()
        chance = 0
        for j, fault in enumerate(injected):
            found = hits(fault, related(str(fault["service"]), lenient))
            matched.update(found)
            if found:
                per_rule[str(signals[found[0]]["rule"])] += 1
            per_type[str(fault["type"])][0] += bool(found)
            per_type[str(fault["type"])][1] += 1
            # chance level: the same signals judged against the service of the next
            # fault that hit another service
            others = [
                f for f in injected[j + 1 :] + injected[:j] if f["service"] != fault["service"]
            ]
            if others:
                chance += bool(hits(fault, related(str(others[0]["service"]), lenient)))
        false_alarms = [s for i, s in enumerate(signals) if i not in matched]
        hours = _hours(spans)
        report["lenient" if lenient else "strict"] = {
            "detected": sum(d for d, _ in per_type.values()),
            "detected_by_chance": chance,
            "per_type": {t: {"detected": d, "faults": n} for t, (d, n) in sorted(per_type.items())},
            "first_detecting_rule": dict(per_rule),
            "false_alarms": len(false_alarms),
            "false_alarms_per_hour": round(len(false_alarms) / hours, 1) if hours else None,
            "false_alarms_by_rule": _by_rule(false_alarms),
        }
    report |= {"signals": len(signals), "hours_of_data": round(_hours(spans), 2)}
    report["seconds"] = round(seconds, 2)
    return report


def _hours(spans: pl.LazyFrame) -> float:
    """Hours covered by minute files (the days have gaps between fault windows)."""
    minutes = spans.select(pl.col("start_time").dt.truncate("1m").n_unique()).collect().item()
    return float(minutes) / 60


def _by_rule(signals: list[dict[str, object]]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for s in signals:
        counts[str(s["rule"])] += 1
    return dict(sorted(counts.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", default=str(HERE.parent / "data" / "rules" / "regressions.yaml"))
    args = parser.parse_args()
    if not NEZHA.is_dir():
        raise SystemExit(f"{NEZHA} is not present")
    rules = fluo.load_rules(args.rules)
    reports = [evaluate_day(rules, label, day, base) for label, (day, base) in DAYS.items()]
    out = HERE / "results" / "nezha_eval.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(reports, indent=2, default=str))
    for mode in ("strict", "lenient"):
        rows = [r[mode] for r in reports]
        types = sorted({t for row in rows for t in row["per_type"]})  # type: ignore[index]
        print(f"\n{mode}:\n")
        print(
            "| day | faults | detected | by chance | "
            + " | ".join(types)
            + " | false alarms (per hour of data) |"
        )
        print("|---|---|---|---|" + "---|" * len(types) + "---|")
        for r, row in zip(reports, rows, strict=True):
            cells = []
            for t in types:
                got = row["per_type"].get(t)  # type: ignore[index]
                cells.append(f"{got['detected']}/{got['faults']}" if got else "-")
            print(
                f"| {r['day']} | {r['faults']} | {row['detected']} | "  # type: ignore[index]
                f"{row['detected_by_chance']} | "  # type: ignore[index]
                + " | ".join(cells)
                + f" | {row['false_alarms']} ({row['false_alarms_per_hour']}/h) |"  # type: ignore[index]
            )
    print(json.dumps(reports, indent=2, default=str))


if __name__ == "__main__":
    main()
