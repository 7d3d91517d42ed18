"""`tune --precisions ... --repeats N`: the precision sweep, the median/min of repeats, and the accuracy vet
that keeps a reduced precision out unless its F1 holds (fakes of run_trial/run_benchmark: the real runs
are covered by tests/test_engine_openvino.py)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cli_support import invoke

from orchestrator.config import RunConfig
from orchestrator.workflows import tuning as tune_module
from orchestrator.workflows.tuning import Trial, TuneRequest, markdown_table, merge_repeats, precision_check, tune

RATES = {"fp32": 10.0, "bf16": 20.0, "int8": 40.0}


def _trial(rate: float | None, precision: str | None = None, error: str | None = None) -> Trial:
    return Trial(
        batch_size=4,
        threads=None,
        instances=None,
        run_dir=f"/runs/{rate}",
        samples_per_second=rate,
        error=error,
        precision=precision,
    )


def test_repeats_merge_to_the_median_and_keep_the_min() -> None:
    merged = merge_repeats([_trial(12.0), _trial(9.0), _trial(11.0)])
    assert merged.samples_per_second == 11.0 and merged.min_samples_per_second == 9.0
    assert merged.repeat_samples_per_second == [12.0, 9.0, 11.0] and merged.run_dir == "/runs/11.0"
    assert not merge_repeats([_trial(12.0), _trial(None, error="boom")]).ok  # a failed repeat fails the setting
    table = markdown_table([merged], merged)
    assert table.splitlines()[0].endswith("| min samples/s | p99 latency (ms) | run directory |")


@pytest.mark.usefixtures("zen4_cpu")
def test_the_fastest_precision_whose_check_passes_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str | None] = []

    def fake_trial(base: RunConfig, **kw: Any) -> Trial:
        calls.append(kw.get("precision"))
        rate = RATES[kw["precision"]] + len(calls) % 3  # noise between repeats
        return Trial(
            batch_size=kw["batch_size"],
            threads=None,
            instances=None,
            run_dir="/r",
            samples_per_second=rate,
            precision=kw["precision"],
        )

    monkeypatch.setattr(tune_module, "run_trial", fake_trial)
    monkeypatch.setattr(tune_module, "preflight_trials", lambda request, combos: None)  # stand-in trials need no runner
    request = TuneRequest(
        base=RunConfig(backend="openvino", output_dir=tmp_path, calibration_path=tmp_path / "train.json"),
        batch_sizes=[4],
        precisions=["fp32", "bf16", "int8"],
        repeats=3,
        plot=False,
        vet=lambda t: "int8 F1 ratio 0.9800 < 0.99 vs fp32" if t.precision == "int8" else None,
    )
    result = tune(request)
    assert calls == ["fp32"] * 3 + ["bf16"] * 3 + ["int8"] * 3
    assert result.best is not None and result.best.precision == "bf16"
    summary = json.loads((result.directory / "tune.json").read_text())
    assert summary["precisions"] == ["fp32", "bf16", "int8"] and summary["repeats"] == 3
    assert [t["rejected"] for t in summary["trials"]][2].startswith("int8 F1 ratio")
    assert all(len(t["repeat_samples_per_second"]) == 3 for t in summary["trials"])


@pytest.mark.parametrize("scenario", ["Offline", "Server"])
def test_find_performance_runs_the_precision_that_won(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scenario: str
) -> None:
    """The short run that sets target_qps, and the config.yaml for the valid run, use the best precision."""
    calls: list[str | None] = []

    def fake_trial(base: RunConfig, **kw: Any) -> Trial:
        calls.append(kw.get("precision"))
        trial = _trial(RATES[kw.get("precision") or "fp32"], kw.get("precision"))
        return Trial(**{**trial.__dict__, "batch_size": kw["batch_size"]})

    monkeypatch.setattr(tune_module, "run_trial", fake_trial)
    monkeypatch.setattr(tune_module, "preflight_trials", lambda request, combos: None)  # stand-in trials need no runner
    monkeypatch.setattr(tune_module, "_constraints_met", lambda trial: True)
    request = TuneRequest(
        base=RunConfig(  # type: ignore[arg-type]
            backend="openvino", scenario=scenario, output_dir=tmp_path, calibration_path=tmp_path / "train.json"
        ),
        batch_sizes=[4],
        precisions=["fp32", "int8"],
        plot=False,
        find_performance=True,
        vet=lambda t: None,
    )
    result = tune(request)
    assert result.best is not None and result.best.precision == "int8"
    assert calls == ["fp32", "int8", "int8"]  # the find-performance run too
    written = RunConfig(**__import__("yaml").safe_load(Path(result.files["config"]).read_text()))
    assert written.engine_options["precision"] == "int8"


def test_precision_check_compares_with_fp32_at_the_same_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_accuracy_checks import make_record

    f1 = {"fp32": 80.0, "bf16": 79.95, "int8": 78.0}  # bf16 holds bert-99.9 (0.9994), int8 misses bert-99
    runs: list[str] = []

    def fake_run(config: RunConfig, **kw: Any) -> Any:
        precision = config.engine_options["precision"]
        runs.append(f"{precision}@{config.batch_size}")
        assert config.mode.value == "accuracy" and config.test_query_count == 50
        accuracy = SimpleNamespace(f1=f1[precision], exact_match=70.0, questions_scored=48, features_answered=50)
        record = make_record(tmp_path, precision, engine_settings={"precision": precision, "max_batch": "4"})
        return SimpleNamespace(accuracy=accuracy, record=record, run_dir=tmp_path / precision)

    monkeypatch.setattr(tune_module, "run_benchmark", fake_run)
    vet = precision_check(RunConfig(backend="openvino", cache_dir=tmp_path / "cache"), samples=50, output_dir=tmp_path)
    assert vet(_trial(10.0, "fp32")) is None and runs == []  # fp32 is the reference
    assert vet(_trial(20.0, "bf16")) is None
    reason = vet(_trial(40.0, "int8"))
    assert reason is not None and "int8 F1 ratio 0.9750 < 0.99" in reason
    assert runs == ["bf16@4", "fp32@4", "int8@4"]  # fp32 scored once per batch size
    written = {
        json.loads(p.read_text())["precision"]: json.loads(p.read_text()) for p in (tmp_path / "cache").rglob("*.json")
    }
    assert (written["bf16"]["passed"], written["bf16"]["threshold"]) == (True, 0.999)
    assert (written["int8"]["passed"], written["int8"]["threshold"], written["int8"]["features"]) == (False, 0.99, 50)


def test_precisions_need_a_target_with_a_precision_option(tmp_path: Path) -> None:
    result = invoke(["tune", "--backend", "onnxruntime", "--precisions", "fp32,int8", "--output-dir", tmp_path])
    assert result.exit_code != 0 and "onnxruntime-cpu has no precision option to sweep" in result.output
    assert not list(tmp_path.glob("tune-*"))
