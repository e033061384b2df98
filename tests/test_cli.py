"""The command line end to end: exit codes, outputs, error rendering, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from conftest import REPO, spans
from typer.testing import CliRunner

from fluo.cli import DEFAULT_RULES, app

runner = CliRunner()
SEED = REPO / "data" / "rules" / "seed.yaml"
SAMPLE = REPO / "data" / "shophub" / "spans.parquet"


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_default_run_surfaces_the_payment_gateway_bottleneck() -> None:
    code, stdout, _ = invoke("run", "--format", "jsonl")
    assert code == 0
    rows = [json.loads(line) for line in stdout.splitlines()]
    slow = [r for r in rows if r["rule"] == "payment_gateway_bottleneck"]
    assert len(slow) > 100
    assert all(r["service"] == "payment-gateway" for r in slow)
    missing_fraud = [r for r in rows if r["rule"] == "payment_without_fraud_check"]
    assert len(missing_fraud) == 6  # the planted traces (data/shophub/README.md)
    times = sorted(r["time"] for r in slow)
    # The incident window of the bundled data is 10:50-11:15 UTC.
    inside = [t for t in times if "2026-11-20T10:50" <= t < "2026-11-20T11:16"]
    assert len(inside) / len(times) > 0.9


def test_table_output_summarises_rules_and_logs_actions() -> None:
    code, stdout, stderr = invoke("run", str(SEED), "--spans", str(SAMPLE))
    assert code == 0
    assert "payment_gateway_bottleneck" in stdout
    assert "[payment_gateway_bottleneck] Payment gateway API delay detected" in stderr


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_outputs_are_written_in_each_format(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"signals.{fmt}"
    code, _, stderr = invoke("run", str(SEED), "--spans", str(SAMPLE), "-o", str(out))
    assert code == 0, stderr
    frame = {"jsonl": pl.read_ndjson, "csv": pl.read_csv, "parquet": pl.read_parquet}[fmt](out)
    assert frame.height > 100
    assert set(frame["rule"]) == {"payment_gateway_bottleneck"}
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_fail_rule_that_fires_exits_1(tmp_path: Path) -> None:
    rules = tmp_path / "gate.yaml"
    rules.write_text("rules:\n  gate:\n    when: span.duration > 300ms\n    actions: [fail]\n")
    code, _, stderr = invoke("run", str(rules), "--spans", str(SAMPLE), "-f", "jsonl")
    assert code == 1
    assert "gate" in stderr


def test_a_fail_rule_that_does_not_fire_exits_0(tmp_path: Path) -> None:
    rules = tmp_path / "gate.yaml"
    rules.write_text("rules:\n  gate:\n    when: span.duration > 1d\n    actions: [fail]\n")
    assert invoke("run", str(rules), "--spans", str(SAMPLE), "-f", "jsonl")[0] == 0


def test_check_reports_every_error_with_caret_and_hint(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "rules:\n  a:\n    when: span.durration > 300ms\n  b:\n    when: span.kind == SERVR\n"
    )
    code, _, stderr = invoke("check", str(bad))
    assert code == 2
    assert f"{bad}:3:11: error: unknown span field 'span.durration'" in stderr
    assert "    when: span.durration > 300ms\n              ^^^^^^^^^^^^^^" in stderr
    assert "hint: did you mean 'span.duration'?" in stderr
    assert f"{bad}:5:24: error: 'SERVR' is not a span kind" in stderr
    assert "2 errors" in stderr


def test_check_accepts_the_bundled_rules_and_prints_the_glob_note() -> None:
    code, stdout, stderr = invoke("check", *(str(REPO / "data" / r) for r in DEFAULT_RULES))
    assert code == 0
    assert "ok: 18 rules" in stdout
    assert "note: 'eq' with a '*' in the value matches as a glob pattern" in stderr


def test_check_against_a_span_table_lists_its_fields(tmp_path: Path) -> None:
    table = spans({}).select("trace_id", "span_id", "name")
    path = tmp_path / "narrow.parquet"
    table.write_parquet(path)
    code, _, stderr = invoke("check", str(SEED), "--spans", str(path))
    assert code == 2
    assert "needs column 'duration_ns'" in stderr
    assert "span.name" in stderr


def test_explain_shows_the_rule_and_the_fused_plan() -> None:
    code, stdout, _ = invoke("explain", str(SEED))
    assert code == 0
    assert "rule payment_gateway_bottleneck [medium]" in stdout
    assert 'glob "/payment-api/*" -> startswith("/payment-api/")' in stdout
    assert "span rules: one scan" in stdout and "FILTER" in stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "missing.yaml"], "rule file not found"),
        (["run", str(SEED), "--spans", "nope.parquet"], "nope.parquet"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    code, _, stderr = invoke(*args)
    assert code == 2
    assert message in stderr
    assert "Traceback" not in stderr


def test_corrupt_parquet_is_reported_with_its_path(tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    code, _, stderr = invoke("run", str(SEED), "--spans", str(bad))
    assert code == 2
    assert "corrupt.parquet" in stderr and "Traceback" not in stderr


def test_the_installed_entry_point_prints_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  r:\n    when: span.name ==\n")
    proc = subprocess.run(
        [sys.executable, "-m", "fluo", "check", str(bad)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "bad.yaml:3:23: error: the expression ends too early" in proc.stderr
