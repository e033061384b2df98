"""Out of core: bucket by bucket, the signals are exactly those of the in-memory run."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

import fluo
from fluo import engine
from fluo.buckets import bucket_expr
from fluo.cli import DEFAULT_RULES, app, bundled
from fluo.engine import Options
from fluo.errors import DataError
from fluo.rules import RuleSet

SHOPHUB = "data/shophub/spans.parquet"


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    """The bundled rules and FLUO's library: span, trace, structural and pattern rules."""
    return fluo.load_rules([bundled(r) for r in DEFAULT_RULES] + ["data/rules/fluo-library"])


@pytest.fixture(scope="module")
def reference(rules: RuleSet) -> fluo.RunResult:
    return fluo.evaluate(rules, SHOPHUB)


def write_buckets(
    frame: pl.DataFrame | pl.LazyFrame, root: Path, count: int, *, manifest: bool = True
) -> Path:
    """A bucketed layout as `fluo convert --buckets` writes it: date=/bucket=/ folders."""
    keyed = frame.lazy().with_columns(
        pl.col("start_time").dt.date().cast(pl.String).alias("date"),
        bucket_expr(count).alias("bucket"),
    )
    keyed.sink_parquet(pl.PartitionBy(root, key=["date", "bucket"], include_key=False), mkdir=True)
    if manifest:
        files = [
            {"path": p.relative_to(root).as_posix(), "bytes": p.stat().st_size}
            for p in sorted(root.rglob("*.parquet"))
        ]
        document = {"layout": "fluo", "buckets": count, "files": files}
        (root / engine.MANIFEST).write_text(json.dumps(document))
    return root


def spread(frame: pl.DataFrame, root: Path, files: int, seed: int = 1) -> Path:
    """Rows dealt at random to `files` files: almost every trace is cut across files."""
    root.mkdir(parents=True, exist_ok=True)
    which = frame.select(pl.int_range(pl.len()).shuffle(seed) % files).to_series()
    for i in range(files):
        frame.filter(which == i).write_parquet(root / f"part-{i}.parquet")
    return root


def same(got: fluo.RunResult, want: fluo.RunResult) -> None:
    assert got.signals.equals(want.signals)
    assert got.counts == want.counts
    assert got.failing == want.failing
    assert got.warnings == want.warnings


def test_bucketed_layout_gives_the_in_memory_signals(
    rules: RuleSet, reference: fluo.RunResult, tmp_path: Path
) -> None:
    root = write_buckets(pl.scan_parquet(SHOPHUB), tmp_path / "b", 8)
    in_memory = fluo.evaluate(rules, str(root))  # the layout read as one table
    assert in_memory.counts == reference.counts
    got = engine.evaluate(rules, str(root))
    assert got is not None
    same(got, in_memory)
    assert reference.signals.height > 1000 and len(reference.fired) >= 8


def test_fluo_convert_layout(rules: RuleSet, reference: fluo.RunResult, tmp_path: Path) -> None:
    from fluo.convert import convert

    convert(SHOPHUB, tmp_path / "converted", buckets=6)
    got = engine.evaluate(rules, str(tmp_path / "converted"))
    assert got is not None
    assert got.counts == reference.counts
    assert got.signals.equals(fluo.evaluate(rules, str(tmp_path / "converted")).signals)


CORRELATION = """
rules:
  gateway_slow_and_failing:
    severity: high
    correlate:
      rules: [payment_gateway_bottleneck, http_server_errors]
      within: 5m
      by: service
"""


def test_windowed_and_correlation_rules_run_over_the_whole_input(tmp_path: Path) -> None:
    (tmp_path / "correlate.yaml").write_text(CORRELATION)
    rules = fluo.load_rules([*(bundled(r) for r in DEFAULT_RULES), tmp_path / "correlate.yaml"])
    root = write_buckets(pl.scan_parquet(SHOPHUB), tmp_path / "b", 4)
    want = fluo.evaluate(rules, str(root))
    levels = {c.name: c.level for c in rules.check()}
    fired = {levels[name] for name in want.fired}
    assert {"window", "correlate"} <= fired
    got = engine.evaluate(rules, str(root))
    assert got is not None
    same(got, want)


def test_run_time_shuffle_gives_the_in_memory_signals(
    rules: RuleSet, reference: fluo.RunResult, tmp_path: Path
) -> None:
    source = spread(pl.read_parquet(SHOPHUB), tmp_path / "spread", 3)
    want = fluo.evaluate(rules, str(source))
    assert want.counts == reference.counts
    got = engine.evaluate(rules, str(source), Options(buckets=5, scratch=str(tmp_path)))
    assert got is not None
    same(got, want)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("fluo-buckets-")]


BENCH_RULES = ["benchmarks/span_rules.yaml", "benchmarks/trace_rules.yaml"]


@pytest.fixture(scope="module")
def generated() -> pl.DataFrame:
    """Synthetic spans (benchmarks/spangen.py): 2,000 traces."""
    pytest.importorskip("numpy")
    from benchmarks.spangen import generate_spans

    return generate_spans(20_000, seed=3)


def test_generated_spans_cut_across_files(generated: pl.DataFrame, tmp_path: Path) -> None:
    rules = fluo.load_rules([*BENCH_RULES, "benchmarks/ancestor_rule.yaml"])
    source = spread(generated, tmp_path / "spread", 4)
    want = fluo.evaluate(rules, str(source))
    assert sum(n > 0 for n in want.counts.values()) >= 25
    got = engine.evaluate(rules, str(source), Options(buckets=7))
    assert got is not None
    same(got, want)
    bucketed = engine.evaluate(rules, str(write_buckets(generated, tmp_path / "b", 5)))
    assert bucketed is not None
    assert bucketed.counts == want.counts


def test_stream_spills_and_hands_on_signals_in_order(
    rules: RuleSet, reference: fluo.RunResult, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(engine, "_SINK_ROWS", 150)  # many windows of time
    root = write_buckets(pl.scan_parquet(SHOPHUB), tmp_path / "b", 5)
    chunks: list[pl.DataFrame] = []
    result = engine.stream(rules, str(root), chunks.append, Options(scratch=str(tmp_path)))
    assert result is not None
    assert len(chunks) > 5 and max(c.height for c in chunks) < 400
    assert pl.concat(chunks).equals(fluo.evaluate(rules, str(root)).signals)
    assert result.counts == reference.counts
    assert (
        result.signals["rule"].to_list()
        == reference.signals["rule"].unique(maintain_order=True).to_list()
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # spill files are gone


def test_frames_and_memory_limit(rules: RuleSet, reference: fluo.RunResult) -> None:
    frame = pl.read_parquet(SHOPHUB)
    got = engine.evaluate(rules, frame, Options(buckets=3))
    assert got is not None
    same(got, reference)
    assert engine.buckets_for(engine.expand_inputs([SHOPHUB], None), 1 << 20) > 8
    by_limit = engine.evaluate(rules, SHOPHUB, Options(memory_limit=engine.parse_size("16MB")))
    assert by_limit is not None
    same(by_limit, reference)


def test_plain_input_is_left_to_the_in_memory_run(rules: RuleSet) -> None:
    assert engine.evaluate(rules, SHOPHUB) is None
    assert engine.evaluate(rules, pl.read_parquet(SHOPHUB)) is None


@pytest.mark.parametrize(
    ("text", "size"), [("4GB", 4 << 30), ("512mib", 512 << 20), ("1000", 1000), ("1.5k", 1536)]
)
def test_parse_size(text: str, size: int) -> None:
    assert engine.parse_size(text) == size


def test_parse_size_rejects_nonsense() -> None:
    with pytest.raises(DataError, match="cannot read the size"):
        engine.parse_size("lots")


# --- bad layouts: clear errors, never partial signals -------------------------------------


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    return write_buckets(pl.scan_parquet(SHOPHUB), tmp_path / "b", 4)


def _files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.parquet"))


def test_missing_file_listed_in_the_manifest(rules: RuleSet, layout: Path) -> None:
    _files(layout)[1].unlink()
    with pytest.raises(DataError, match="manifest lists are missing"):
        engine.evaluate(rules, str(layout))


def test_corrupt_file(rules: RuleSet, layout: Path) -> None:
    victim = _files(layout)[2]
    victim.write_bytes(b"PAR1" + b"\0" * 100)
    with pytest.raises(DataError, match="differs from the manifest"):
        engine.evaluate(rules, str(layout))
    (layout / engine.MANIFEST).unlink()  # without a manifest, the footer gives it away
    with pytest.raises(DataError, match="not a valid Parquet file") as caught:
        engine.evaluate(rules, str(layout))
    assert caught.value.path == str(victim)


def test_bucket_beyond_the_manifest_count(rules: RuleSet, layout: Path) -> None:
    stray = layout / "date=2026-11-20" / "bucket=7"
    stray.mkdir()
    _files(layout)[0].rename(stray / "x.parquet")
    with pytest.raises(DataError, match="bucket 7 is out of range: the manifest says 4"):
        engine.evaluate(rules, str(layout))


def test_mixed_bucket_counts_without_manifest(rules: RuleSet, tmp_path: Path) -> None:
    spans = pl.read_parquet(SHOPHUB)
    root = write_buckets(spans, tmp_path / "b", 4, manifest=False)
    other = write_buckets(spans.head(5000), tmp_path / "other", 3, manifest=False)
    target = root / "date=2026-11-20" / "bucket=2" / "more.parquet"
    (other / "date=2026-11-20" / "bucket=2").joinpath(
        next((other / "date=2026-11-20" / "bucket=2").iterdir()).name
    ).rename(target)
    with pytest.raises(DataError, match="belong to other buckets of 4"):
        engine.evaluate(rules, str(root))


def test_file_outside_the_bucket_folders(rules: RuleSet, layout: Path) -> None:
    _files(layout)[0].rename(layout / "loose.parquet")
    (layout / engine.MANIFEST).unlink()
    with pytest.raises(DataError, match="outside the bucket=<n> folders"):
        engine.evaluate(rules, str(layout))


def test_bucket_count_that_disagrees_with_the_layout(rules: RuleSet, layout: Path) -> None:
    with pytest.raises(DataError, match="already in 4 buckets"):
        engine.evaluate(rules, str(layout), Options(buckets=8))


# --- the command line -----------------------------------------------------------------------


def test_cli_runs_a_bucketed_directory(layout: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    plain = runner.invoke(app, ["run", "--spans", SHOPHUB, "-f", "jsonl"])
    bucketed = runner.invoke(app, ["run", "--spans", str(layout), "-f", "jsonl"])
    assert plain.exit_code == bucketed.exit_code
    assert bucketed.stdout == plain.stdout
    out = tmp_path / "signals.jsonl"
    shuffled = runner.invoke(app, ["run", "--spans", SHOPHUB, "--buckets", "3", "-o", str(out)])
    assert shuffled.exit_code == plain.exit_code
    assert out.read_text() == plain.stdout


def test_cli_rejects_a_bad_memory_limit() -> None:
    result = CliRunner().invoke(app, ["run", "--memory-limit", "lots"])
    assert result.exit_code == 2
    assert "cannot read the size 'lots'" in result.stderr
