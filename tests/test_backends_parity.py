"""The same 200 questions through ONNX Runtime (fp32 ONNX), DeepSparse (the same ONNX) and PyTorch (the
checkpoint of the same weights), end to end with the local runner and real LoadGen: the F1s agree.

Also: the environments the local runner builds and the images pin the same engine versions, so a
result cannot depend on the runner."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from orchestrator.backends import TARGETS
from orchestrator.paths import REPO_ROOT
from orchestrator.runners import venvs

log = logging.getLogger(__name__)

QUESTIONS = 200  # the dev set's first 200 features are its first 200 questions (one window each)
F1_TOLERANCE = 0.5  # points


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if "==" in line and not line.startswith("-"):
            name, version = line.split("==", 1)
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def test_deepsparse_venv_and_image_pin_the_same_versions() -> None:
    image_dir = REPO_ROOT / "images" / "deepsparse-cpu"
    if not (image_dir / "Dockerfile").is_file():
        pytest.skip(f"{image_dir} has no Dockerfile yet")
    from orchestrator.backends.pins import expand_requirements, parse_build_args

    args = parse_build_args((image_dir / "Dockerfile").read_text())
    image = _pins(expand_requirements((image_dir / "requirements.txt").read_text(), args))
    venv = _pins(venvs.pins("deepsparse-cpu").splitlines())
    assert venv, "the deepsparse requirements pin nothing"
    for name, version in venv.items():
        assert image.get(name) == version, f"{name}: venv {version}, image {image.get(name)}"


def test_pytorch_venv_and_image_use_the_same_torch() -> None:
    image_dir = REPO_ROOT / "images" / "pytorch-cpu"
    if not (image_dir / "Dockerfile").is_file():
        pytest.skip(f"{image_dir} has no Dockerfile")
    from orchestrator.backends.pins import expand_requirements, parse_build_args

    args = parse_build_args((image_dir / "Dockerfile").read_text())
    image = _pins(expand_requirements((image_dir / "requirements.txt").read_text(), args))
    venv = _pins(venvs.pins("pytorch-cpu").splitlines())
    assert image["torch"] == venv["torch"]
    assert image["mlcommons-loadgen"] == venv["mlcommons-loadgen"]


@pytest.mark.slow
def test_same_f1_across_backends(shared_assets: Path, tmp_path: Path) -> None:
    from orchestrator.api import run_benchmark
    from orchestrator.config import RunConfig
    from orchestrator.errors import PreflightError

    models = shared_assets / "models"
    runs = {
        "onnxruntime": models / "demo-minilm-l6-squad.fp32.onnx",
        "deepsparse": models / "demo-minilm-l6-squad.fp32.onnx",
        "pytorch": models / "demo-minilm-l6-squad-hf" / "model.safetensors",
    }
    results: dict[str, dict[str, float | str]] = {}
    for backend, model in runs.items():
        config = RunConfig(
            backend=backend,
            mode="accuracy",
            test_query_count=QUESTIONS,
            batch_size=8,
            model_path=model,
            runner="local",
            output_dir=tmp_path / "runs",
        )
        started = time.perf_counter()
        try:
            result = run_benchmark(config, progress=False, stream=False)
        except PreflightError as exc:  # a backend environment that cannot be built here (no package index)
            pytest.skip(f"{backend} cannot run here: {exc}")
        assert result.succeeded, result.record.error
        report = result.accuracy
        assert report is not None and report.questions_scored == QUESTIONS and not report.questions_partly_answered
        target = TARGETS[f"{backend}-cpu"]
        assert result.record.execution_provider == target.execution_provider
        results[backend] = {
            "f1": report.f1,
            "exact_match": report.exact_match,
            "seconds": round(time.perf_counter() - started, 1),
        }
    log.info("parity over %d questions: %s", QUESTIONS, json.dumps(results))
    print(json.dumps(results))
    f1s = [float(r["f1"]) for r in results.values()]
    assert max(f1s) - min(f1s) <= F1_TOLERANCE, results
    assert min(f1s) > 50  # a real model answering, not noise that happens to agree
