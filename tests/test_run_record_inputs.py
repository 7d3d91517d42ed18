"""run.json names every input a run read with its sha256 (README: "model/dataset/vocab with sha256"),
the features built from them too, so that two runs can be told to have read the same bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from orchestrator.config import RunConfig
from orchestrator.workflows import benchmark


def _sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_run_json_records_the_sha256_of_model_dataset_vocab_and_features(tmp_path: Path) -> None:
    config = RunConfig(test_query_count=10)
    target = benchmark.get_target(config.backend, config.device)
    inputs = benchmark.resolve_inputs(config, tmp_path / "cache")
    runner: Any = SimpleNamespace(name="local")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    record = benchmark._new_record(config, target, inputs, run_dir, runner, ["mlperf-bert", "run"])
    record.save(run_dir)
    saved = type(record).load(run_dir)
    for ref in (saved.model, saved.dataset, saved.vocab, saved.features):
        assert ref is not None and ref.sha256 == _sha256(ref.path), ref
    assert saved.dataset.path == str(inputs.dataset) and saved.features is not None
    assert saved.features.path == str(inputs.features)
