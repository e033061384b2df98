"""The Dask engine: the buckets of `fluo.engine`, evaluated on a Dask cluster.

The client lists the input's files and reads their footers (to check the rules against the
table's columns); it sends each worker a small task — the rule set (its AST pickles), the
table's schema and the paths of one bucket's files — and the worker reads the files itself
and compiles the rules there. Only signals travel back.

Unbucketed input is first shuffled into bucket files by the workers (one task per slice of a
million rows of the input, each writing one folder per bucket into a scratch folder every
worker can read: `Options.scratch`), then the buckets run as with bucketed input. A worker
that dies mid-run loses only its tasks; the scheduler runs them again elsewhere (Dask's
`allowed-failures`), so the signals stay complete and exact. An error in a bucket stops the run.

Needs the `dask` extra: `pip install 'fluo[dask]'`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Generator, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from fluo import engine
from fluo.engine import (
    WHOLE_INPUT,
    BucketResult,
    Options,
    ShuffleTask,
    Source,
    run_bucket,
    run_shuffle,
    run_whole_input,
    whole_input_rules,
)
from fluo.errors import FluoError
from fluo.run import Progress, RunResult, Spans

if TYPE_CHECKING:
    from distributed import Client

    from fluo.rules import RuleSet


def evaluate(
    rule_set: RuleSet,
    spans: Spans,
    options: Options | None = None,
    *,
    progress: Progress | None = None,
) -> RunResult:
    """Evaluate `rule_set` over `spans` on a Dask cluster: the same signals as the local engine.

    `options.scheduler` names a running scheduler (`tcp://host:8786`); without it a local
    cluster of `options.workers` worker processes is started for the run.
    """
    options = dataclasses.replace(options or Options(), engine="dask")
    result = engine.evaluate(rule_set, spans, options, progress=progress)
    assert result is not None  # a dask run always goes through buckets
    return result


def bucket_results(
    source: Source, options: Options, progress: Progress | None = None
) -> Generator[BucketResult, None, None]:
    """The buckets' results as the workers finish them, then the whole-input rules' (one
    task over the whole input: windowed rules need every span of a window)."""
    with connect(options) as connected:
        client: Any = connected

        def shuffle_tasks(tasks: Sequence[ShuffleTask]) -> list[dict[int, list[str]]]:
            futures = client.map(run_shuffle, tasks, pure=False)
            return list(_gather(client, futures))

        with source.buckets(options, shuffle_tasks) as (layout, _):
            tasks = source.tasks(layout)
            futures = client.map(run_bucket, tasks, pure=False)
            try:
                for done, result in enumerate(_as_completed(client, futures)):
                    if progress:
                        progress(done, len(tasks), source.label)
                    yield result
                rest = whole_input_rules(source.rule_set, source.schema)
                if rest is not None:
                    whole = client.submit(
                        run_whole_input, rest, source.spans, options.baseline, pure=False
                    )
                    yield BucketResult(WHOLE_INPUT, _gather(client, [whole])[0])
            finally:
                client.cancel(futures)


def _since(started: float) -> float:
    return time.perf_counter() - started


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise FluoError(
            "the dask engine needs Dask: install fluo with the dask extra, pip install 'fluo[dask]'"
        ) from None
    return distributed


@contextlib.contextmanager
def connect(options: Options) -> Iterator[Client]:
    """A client of the scheduler at `options.scheduler`, or of a local cluster started now
    (and closed after the run) with `options.workers` worker processes."""
    distributed = _import_distributed()
    if options.scheduler is not None:
        try:
            client = distributed.Client(options.scheduler, timeout=options.timeout)
        except (OSError, TimeoutError, ValueError) as exc:
            raise FluoError(
                f"cannot reach the Dask scheduler at {options.scheduler} "
                f"within {options.timeout:g} s ({_first_line(exc)})"
            ) from None
        with client:
            yield client
        return
    if options.workers < 1:
        raise FluoError(f"--workers must be at least 1, not {options.workers}")
    threads = max(1, (os.cpu_count() or 1) // options.workers)
    cluster = distributed.LocalCluster(
        n_workers=options.workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",  # any free port: never clash with another cluster
        silence_logs=logging.ERROR,
        # each worker's Polars gets its share of the cores, not all of them
        env={"POLARS_MAX_THREADS": str(threads)},
    )
    with cluster, distributed.Client(cluster) as client:
        yield client


def _gather(client: Any, futures: list[Any]) -> list[Any]:
    try:
        return list(client.gather(futures))
    except FluoError:  # raised by a task (a data error): as it is
        raise
    except Exception as exc:  # a task that kept killing workers, a lost scheduler
        raise FluoError(f"the Dask cluster failed the run: {_first_line(exc)}") from None


def _as_completed(client: Any, futures: list[Any]) -> Iterator[BucketResult]:
    """Each future's result as it is done; then the future is dropped from `futures` and
    released, so that the worker frees the result (a held future keeps it in the worker's
    memory: with 32 buckets per worker, 1.8 GB instead of a bucket's 650 MB)."""
    distributed = _import_distributed()
    try:
        for future in distributed.as_completed(list(futures)):
            result = future.result()
            futures.remove(future)
            future.release()
            yield result
    except Exception as exc:  # a task that kept killing workers, a lost scheduler
        client.cancel(futures)
        raise FluoError(f"the Dask cluster failed the run: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
