import json
from pathlib import Path

import pytest

from orchestrator.config import RunConfig, Scenario, SutKind
from orchestrator.errors import ConfigError
from orchestrator.runs import FileRef, RunRecord, new_run_dir
from orchestrator.submission.generate import Run, _sw_notes


def _record(run_id: str) -> RunRecord:
    ref = FileRef(path="x")
    return RunRecord(
        run_id=run_id,
        execution_mode="test",
        test_mode=True,
        scenario="Offline",
        modes=["accuracy"],
        target="onnxruntime-cpu",
        runner="local",
        config={},
        model=ref,
        dataset=ref,
        vocab=ref,
    )


def test_new_run_dirs_are_never_reused(tmp_path: Path) -> None:
    dirs = {new_run_dir(tmp_path, "onnxruntime-cpu-Offline") for _ in range(5)}
    assert len(dirs) == 5
    assert all(d.is_dir() and not any(d.iterdir()) for d in dirs)


def test_record_roundtrip_and_atomic_save(tmp_path: Path) -> None:
    rec = _record("r1")
    rec.status = "failed"
    rec.error = "boom"
    rec.save(tmp_path)
    assert not (tmp_path / "run.json.tmp").exists()
    back = RunRecord.load(tmp_path)
    assert back.status == "failed" and back.error == "boom" and back.test_mode


def test_load_rejects_non_run_dir(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a run directory"):
        RunRecord.load(tmp_path)


def test_unwritable_output_dir_is_one_sentence(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot create the output directory"):
        new_run_dir(blocker / "runs", "x")


def test_config_is_the_typed_run_config(tmp_path: Path) -> None:
    config = RunConfig(
        scenario="Server",
        sut="reference",
        batch_size=1,
        threads=4,
        model_path=Path("/m/x.onnx"),
        engine_options={"optimize": "none"},
    )
    rec = _record("r2").model_copy(update={"config": config})
    rec.save(tmp_path)
    stored = json.loads((tmp_path / "run.json").read_text())["config"]
    assert stored == config.model_dump(mode="json")  # the same keys and values run.json always held
    back = RunRecord.load(tmp_path).config
    assert back == config and back.sut is SutKind.reference and back.scenario is Scenario.Server
    assert back.model_path == Path("/m/x.onnx") and back.engine_options == {"optimize": "none"}


def test_old_run_json_still_loads(tmp_path: Path) -> None:
    """run.json written before the config was typed: the same keys, as plain JSON (some left out)."""
    old = {
        "run_id": "old",
        "status": "succeeded",
        "execution_mode": "test",
        "test_mode": True,
        "scenario": "Offline",
        "modes": ["accuracy", "performance"],
        "target": "onnxruntime-cpu",
        "runner": "docker",
        "config": {
            "backend": "onnxruntime",
            "device": None,
            "scenario": "Offline",
            "mode": "both",
            "execution_mode": "test",
            "test_query_count": 100,
            "batch_size": 2,
            "threads": None,
            "sut": "optimized",
            "model": "demo-int8",
            "model_path": None,
            "dataset_path": None,
            "vocab_path": None,
            "target_qps": None,
            "target_latency_ms": None,
            "runner": "auto",
            "output_dir": "runs",
            "cache_dir": None,
            "image": None,
            "shm_size": None,
            "cpuset_cpus": None,
            "memory": None,
            "gpus": None,
            "engine_options": {},
        },
        "model": {"name": "demo-int8", "path": "/m.onnx", "sha256": None},
        "dataset": {"path": "/d.json"},
        "vocab": {"path": "/v.txt"},
    }
    (tmp_path / "run.json").write_text(json.dumps(old))
    rec = RunRecord.load(tmp_path)
    assert rec.config.batch_size == 2 and rec.config.sut is SutKind.optimized
    old["config"] = {"scenario": "Offline", "batch_size": 16, "sut": "optimized", "threads": None}  # a subset
    (tmp_path / "run.json").write_text(json.dumps(old))
    assert RunRecord.load(tmp_path).config.batch_size == 16


def test_a_bad_config_in_run_json_is_one_sentence(tmp_path: Path) -> None:
    _record("r3").save(tmp_path)
    data = json.loads((tmp_path / "run.json").read_text())
    data["config"]["sut"] = "fastest"
    (tmp_path / "run.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"run.json is not a run record this version reads \(config.sut: "):
        RunRecord.load(tmp_path)


def test_submission_code_reads_the_typed_config(tmp_path: Path) -> None:
    config = RunConfig(sut="reference", batch_size=1)
    rec = _record("r4").model_copy(update={"config": config, "execution_provider": "CPUExecutionProvider"})
    notes = _sw_notes(Run(dir=tmp_path, record=rec))
    assert "reference SUT" in notes and "batch size 1" in notes and "CPUExecutionProvider" in notes
