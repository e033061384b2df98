"""The Dask engine on a real local cluster (2 worker processes): the local engine's signals."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

import fluo
from fluo.cli import app
from fluo.engine import Options
from fluo.errors import FluoError
from fluo.rules import RuleSet
from tests.test_outofcore import SHOPHUB, same, spread, write_buckets

distributed = pytest.importorskip("distributed")
from fluo import distributed as fluo_dask  # noqa: E402


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        env={"POLARS_MAX_THREADS": "1"},
    ) as local:
        yield local


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    from fluo.cli import DEFAULT_RULES, bundled

    return fluo.load_rules([bundled(r) for r in DEFAULT_RULES] + ["data/rules/fluo-library"])


def test_bucketed_bundled_data(cluster: Any, rules: RuleSet, tmp_path: Path) -> None:
    root = write_buckets(pl.scan_parquet(SHOPHUB), tmp_path / "b", 6)
    want = fluo.evaluate(rules, str(root))
    got = fluo_dask.evaluate(rules, str(root), Options(scheduler=cluster.scheduler_address))
    same(got, want)


def test_traces_cut_across_files(cluster: Any, rules: RuleSet, tmp_path: Path) -> None:
    source = spread(pl.read_parquet(SHOPHUB), tmp_path / "spread", 3)
    want = fluo.evaluate(rules, str(source))
    options = Options(scheduler=cluster.scheduler_address, buckets=4, scratch=str(tmp_path))
    got = fluo_dask.evaluate(rules, str(source), options)
    same(got, want)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("fluo-buckets-")]


def test_a_worker_killed_mid_run(cluster: Any, rules: RuleSet, tmp_path: Path) -> None:
    """SIGKILL one worker process when the first bucket is done: its buckets run again on
    the other worker (or on the one the nanny restarts), and the signals are exact."""
    root = write_buckets(pl.scan_parquet(SHOPHUB), tmp_path / "b", 24)
    want = fluo.evaluate(rules, str(root))
    with distributed.Client(cluster.scheduler_address) as client:
        pids = client.run(os.getpid)
        victim = max(pids.values())
        killed: list[int] = []

        def kill_once(done: int, total: int, label: str) -> None:
            if done == 1 and not killed:
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)

        options = Options(scheduler=cluster.scheduler_address)
        got = fluo_dask.evaluate(rules, str(root), options, progress=kill_once)
        assert killed
        same(got, want)
        client.wait_for_workers(2, timeout=60)
        assert victim not in client.run(os.getpid).values()


def test_unreachable_scheduler(rules: RuleSet) -> None:
    started = time.perf_counter()
    with pytest.raises(FluoError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:9"):
        fluo_dask.evaluate(rules, SHOPHUB, Options(scheduler="tcp://127.0.0.1:9", timeout=1))
    assert time.perf_counter() - started < 15
    result = CliRunner().invoke(
        app,
        ["run", "--engine", "dask", "--scheduler", "tcp://127.0.0.1:9", "--connect-timeout", "1"],
    )
    assert result.exit_code == 2
    assert "error: cannot reach the Dask scheduler" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_starts_a_local_cluster(tmp_path: Path) -> None:
    runner = CliRunner()
    plain = runner.invoke(app, ["run", "-f", "jsonl"])
    on_dask = runner.invoke(app, ["run", "-f", "jsonl", "--engine", "dask", "--workers", "2"])
    assert plain.exit_code == on_dask.exit_code
    assert on_dask.stdout == plain.stdout


def test_missing_extra_is_named(monkeypatch: pytest.MonkeyPatch, rules: RuleSet) -> None:
    import builtins

    real_import = builtins.__import__

    def no_distributed(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "distributed":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_distributed)
    with pytest.raises(FluoError, match=r"pip install 'fluo\[dask\]'"):
        fluo_dask.evaluate(rules, SHOPHUB, Options(engine="dask"))
