"""OpenVINO in its image: `run --backend openvino --runner docker` on the demo fp32 ONNX, end to end with real
LoadGen, against the local runner (its managed venv, the same pins) on the same samples: the same F1.

The image is built from images/openvino-cpu on the local base (.ci/docker-setup.sh); Docker's layer cache
makes the build of an unchanged tree a matter of seconds. Tests marked `docker` skip with a reason when no
engine answers, and fail instead when MLPERF_BERT_REQUIRE_DOCKER=1 (CI).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import docker_support
import pytest

from orchestrator.api import run_benchmark
from orchestrator.config import RunConfig
from orchestrator.containers import images

MODEL = "demo-minilm-l6-squad.fp32.onnx"
SAMPLES = 50


@pytest.fixture(scope="module")
def client() -> Any:
    return docker_support.docker_client()


@pytest.fixture(scope="module")
def base_image(client: Any) -> str:
    return docker_support.base_image(client)


@pytest.fixture(scope="module")
def model(shared_assets: Path) -> Path:
    path = shared_assets / "models" / MODEL
    if not path.is_file():
        pytest.skip(f"{path} is absent (the demo fp32 ONNX of the shared assets)")
    return path


@pytest.fixture(scope="module")
def openvino_image(client: Any, base_image: str, tmp_path_factory: pytest.TempPathFactory) -> images.BuildResult:
    return images.build_image(
        images.get_recipe("openvino-cpu"),
        client=client,
        base_image=base_image,
        log_dir=tmp_path_factory.mktemp("build-logs"),
        on_step=lambda line: None,
    )


def _config(tmp: Path, model: Path, **kw: Any) -> RunConfig:
    return RunConfig(
        backend="openvino",
        model_path=model,
        test_query_count=SAMPLES,
        output_dir=tmp / "runs",
        engine_options={"precision": "fp32"},
        **kw,
    )


@pytest.mark.docker
@pytest.mark.slow
def test_openvino_image_runs_the_benchmark_like_the_local_runner(
    client: Any, openvino_image: images.BuildResult, model: Path, tmp_path: Path
) -> None:
    recipe = images.get_recipe("openvino-cpu")
    labels = client.images.get(openvino_image.reference).attrs["Config"]["Labels"]
    assert labels["mlperf-bert.target"] == "openvino-cpu"
    assert labels["mlperf-bert.engine"] == f"openvino {recipe.build_args['OPENVINO_VERSION']}"

    docker_run = run_benchmark(_config(tmp_path, model, runner="docker"), progress=False, stream=False)
    local_run = run_benchmark(_config(tmp_path, model, runner="local", mode="accuracy"), progress=False, stream=False)
    assert docker_run.succeeded, docker_run.record.error
    assert local_run.succeeded, local_run.record.error
    rec = docker_run.record
    assert rec.runner == "docker" and rec.execution_provider == "CPU"
    assert rec.image == openvino_image.reference
    assert rec.versions["openvino"] == local_run.record.versions["openvino"]
    assert rec.engine_settings["precision"] == "fp32" and rec.engine_settings["cache"].startswith("/")
    assert docker_run.accuracy is not None and local_run.accuracy is not None
    assert docker_run.accuracy.questions_scored == local_run.accuracy.questions_scored > 0
    assert docker_run.accuracy.f1 == local_run.accuracy.f1 > 50
    predictions = [
        json.loads((r.run_dir / "accuracy" / "predictions.json").read_text()) for r in (docker_run, local_run)
    ]
    assert predictions[0] == predictions[1]
    assert docker_run.performance is not None and docker_run.performance.samples_per_second > 0
