from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from orchestrator.runs import FileRef, RunRecord, new_run_dir


def _record(run_id: str) -> RunRecord:
    ref = FileRef(path="x")
    return RunRecord(run_id=run_id, execution_mode="test", test_mode=True, scenario="Offline", modes=["accuracy"],
                     target="onnxruntime-cpu", runner="local", config={}, model=ref, dataset=ref, vocab=ref)


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
