"""`mlperf-bert tune`: choosing the best trial, the records it leaves (tune.json, tune.md, throughput.png,
user.conf, config.yaml), option errors; and (slow) a real sweep through the CLI with the local runner,
real LoadGen and onnxruntime on the embedded int8 model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from orchestrator import tune as tune_module
from orchestrator.cli import app
from orchestrator.config import RunConfig, load_config_file, resolve_config
from orchestrator.tune import (
    Trial,
    TuneRequest,
    best_trial,
    markdown_table,
    plot_throughput,
    tune,
    write_performance_config,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _trial(batch: int, rate: float | None, threads: int | None = None, error: str | None = None) -> Trial:
    return Trial(batch_size=batch, threads=threads, instances=None, run_dir=f"/runs/b{batch}",
                 samples_per_second=rate, error=error, samples=64)


def test_best_is_the_fastest_and_a_tie_goes_to_the_smaller_batch() -> None:
    trials = [_trial(1, 10.0), _trial(8, 30.0), _trial(16, 30.0), _trial(32, None, error="out of memory")]
    assert best_trial(trials) is trials[1]
    assert best_trial([_trial(4, None, error="x")]) is None
    assert best_trial([]) is None


def test_markdown_table_marks_the_best_and_the_failures() -> None:
    trials = [_trial(1, 10.0), _trial(8, 30.5), _trial(32, None, error="boom")]
    table = markdown_table(trials, trials[1])
    lines = table.strip().splitlines()
    assert lines[0].startswith("| batch size | threads |") and len(lines) == 5
    assert "| 8 | auto | default | 30.50 **best** |" in table
    assert "failed: boom" in lines[4]


def test_plot_is_a_png(tmp_path: Path) -> None:
    path = plot_throughput([_trial(1, 10.0), _trial(4, 25.0), _trial(4, 20.0, threads=1)], tmp_path / "t.png",
                           title="test")
    assert path is not None and path.read_bytes()[:8] == PNG_MAGIC


def test_performance_config_is_a_valid_run_config(tmp_path: Path) -> None:
    base = RunConfig(model="demo-int8", scenario="Offline")
    files = write_performance_config(tmp_path, base, _trial(16, 123.4, threads=2), {"target_qps": 123.4})
    assert "bert.Offline.target_qps = 123.4" in Path(files["user_conf"]).read_text()
    config = resolve_config({}, Path(files["config"]))
    assert config.execution_mode.value == "valid" and config.target_qps == 123.4
    assert config.batch_size == 16 and config.threads == 2 and config.model == "demo-int8"
    single = RunConfig(model="demo-int8", scenario="SingleStream")
    files = write_performance_config(tmp_path, single, _trial(1, 50.0), {"target_latency_ms": 21.5})
    assert "bert.SingleStream.target_latency = 21.5" in Path(files["user_conf"]).read_text()
    assert load_config_file(Path(files["config"]))["target_latency_ms"] == 21.5


def test_sweep_keeps_every_trial_and_continues_after_a_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep's bookkeeping, with the runs replaced by a stand-in (the real runs: the slow test below)."""
    asked: list[tuple[int, int | None]] = []

    def fake_trial(base: RunConfig, *, batch_size: int, threads: int | None, instances: int | None, samples: int,
                   output_dir: Path, target_qps: float | None = None) -> Trial:
        asked.append((batch_size, threads))
        assert output_dir.name == "trials" and output_dir.is_dir() and samples == 32
        if batch_size == 4:
            return _trial(4, None, threads, error="engine failed")
        return _trial(batch_size, 10.0 * batch_size / (1 + batch_size / 8), threads)

    monkeypatch.setattr(tune_module, "run_trial", fake_trial)
    request = TuneRequest(base=RunConfig(output_dir=tmp_path), batch_sizes=[8, 1, 4, 16], threads=[1, 2], samples=32)
    result = tune(request)
    assert asked == [(1, 1), (4, 1), (8, 1), (16, 1), (1, 2), (4, 2), (8, 2), (16, 2)]
    assert result.best is not None and result.best.batch_size == 16 and result.best.threads == 1
    summary = json.loads((result.directory / "tune.json").read_text())
    assert len(summary["trials"]) == 8 and summary["best"]["batch_size"] == 16
    assert sum(1 for t in summary["trials"] if t["error"]) == 2
    rows = [line for line in (result.directory / "tune.md").read_text().splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 8
    assert (result.directory / "throughput.png").read_bytes()[:8] == PNG_MAGIC


def test_option_errors_are_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["tune", "--batch-sizes", "1,x", "--output-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "--batch-sizes '1,x' is not a comma-separated list" in result.output
    result = runner.invoke(app, ["tune", "--int8", "--output-dir", str(tmp_path)])
    assert result.exit_code == 2 and "--model-path" in result.output


@pytest.mark.slow
def test_real_sweep_and_find_performance(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["tune", "--batch-sizes", "1,8", "--samples", "24", "--runner", "local",
                                 "--output-dir", str(tmp_path), "--cache-dir", str(tmp_path / "cache"),
                                 "--find-performance", "--performance-samples", "48", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{"):])
    assert [t["batch_size"] for t in summary["trials"]] == [1, 8]
    for t in summary["trials"]:
        assert t["error"] is None and t["samples_per_second"] > 0 and t["samples"] == 24
        record = json.loads((Path(t["run_dir"]) / "run.json").read_text())
        assert record["status"] == "succeeded" and record["config"]["batch_size"] == t["batch_size"]
    best = summary["best"]
    assert best["samples_per_second"] == max(t["samples_per_second"] for t in summary["trials"])
    perf = summary["performance"]
    assert perf["short_run"]["samples"] == 48 and perf["target_qps"] > 0
    config = yaml.safe_load(Path(summary["files"]["config"]).read_text())
    assert config["target_qps"] == perf["target_qps"] and config["execution_mode"] == "valid"
    assert Path(summary["files"]["plot"]).read_bytes()[:8] == PNG_MAGIC
