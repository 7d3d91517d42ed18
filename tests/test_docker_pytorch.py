"""PyTorch in its image (issue 7): `run --backend pytorch --runner docker` with a Hugging Face checkpoint
directory as the model, end to end with real LoadGen, against the local runner on the same samples.

The image is built from images/pytorch-cpu on the local base that .ci/docker-setup.sh makes; Docker's
layer cache makes the build of an unchanged tree a matter of seconds, so the test always builds and so
always runs the current recipe and harness. Tests marked `docker` skip with a reason when no engine
answers, and fail instead when MLPERF_BERT_REQUIRE_DOCKER=1 (CI).
"""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path, PurePosixPath
from typing import Any

import docker_support
import pytest

from orchestrator.api import run_benchmark
from orchestrator.backends import TARGETS
from orchestrator.config import RunConfig
from orchestrator.containers import images
from orchestrator.containers.container_spec import Mount
from orchestrator.containers.docker_runner import MODELS_DIR, map_spec
from orchestrator.harness.engines.pytorch import checkpoint_dir
from orchestrator.harness.spec import HarnessSpec

log = logging.getLogger(__name__)

CHECKPOINT = "demo-minilm-l6-squad-hf"
SAMPLES = 20
# PyPI's own index: where the Dockerfile's default (PyTorch's CPU index) cannot be reached, pip then takes
# the CPU wheel its configuration provides instead of waiting on the unreachable host for every package.
DEFAULT_INDEX = "https://pypi.org/simple"


# --- the mapping of a checkpoint directory (no engine needed) ---------------------------------------------
def _container_to_host(path: str, mounts: tuple[Mount, ...]) -> Path:
    """Where a path the container sees lies on the host, through the mounts (the longest target wins)."""
    inside = PurePosixPath(path)
    for m in sorted(mounts, key=lambda m: len(m.target), reverse=True):
        if inside == PurePosixPath(m.target) or PurePosixPath(m.target) in inside.parents:
            return Path(m.source) / inside.relative_to(m.target)
    raise AssertionError(f"{path} is on no mount")


def _checkpoint(root: Path) -> Path:
    ckpt = root / "models" / "my-bert-squad"
    ckpt.mkdir(parents=True)
    (ckpt / "config.json").write_text("{}")
    (ckpt / "model.safetensors").write_bytes(b"")
    (root / "models" / "other-model.onnx").write_bytes(b"")  # a sibling, as in a real models folder
    return ckpt


@pytest.mark.parametrize("form", ["directory", "directory/", "weights file"])
def test_a_checkpoint_is_seen_whole_and_read_only_in_the_container(tmp_path: Path, form: str) -> None:
    ckpt = _checkpoint(tmp_path)
    model = {"directory": str(ckpt), "directory/": f"{ckpt}/", "weights file": str(ckpt / "model.safetensors")}[form]
    target = TARGETS["pytorch-cpu"]
    spec = HarnessSpec(
        target=target.key,
        engine_class=target.engine_class,
        execution_provider=target.execution_provider,
        model_path=model,
        features_path=str(tmp_path / "features" / "squad.npz"),
        run_dir=str(tmp_path / "run"),
        scenario="Offline",
        modes=["accuracy"],
    )
    inner, mounts = map_spec(spec, tmp_path / "run")
    assert PurePosixPath(inner.model_path).parent == PurePosixPath(MODELS_DIR)
    (model_mount,) = [m for m in mounts if m.target == MODELS_DIR]
    assert model_mount.read_only
    # What the engine resolves inside is the complete checkpoint: config.json and weights side by side.
    host = _container_to_host(inner.model_path, mounts)
    assert checkpoint_dir(host) == ckpt


# --- the image and the benchmark in it --------------------------------------------------------------------
@pytest.fixture(scope="module")
def client() -> Any:
    return docker_support.docker_client()


@pytest.fixture(scope="module")
def base_image(client: Any) -> str:
    return docker_support.base_image(client)


@pytest.fixture(scope="module")
def checkpoint(shared_assets: Path) -> Path:
    path = shared_assets / "models" / CHECKPOINT
    if not (path / "config.json").is_file():
        pytest.skip(f"{path} is absent (the demo checkpoint of the shared assets)")
    return path


def _torch_index(default: str) -> dict[str, str]:
    """No override where the recipe's torch index answers; PyPI's index where its host does not resolve."""
    from urllib.parse import urlsplit

    host = urlsplit(default).hostname or ""
    try:
        socket.getaddrinfo(host, 443)
        return {}
    except OSError:
        log.warning("%s does not resolve here; building with TORCH_INDEX_URL=%s", host, DEFAULT_INDEX)
        return {"TORCH_INDEX_URL": DEFAULT_INDEX}


@pytest.fixture(scope="module")
def pytorch_image(client: Any, base_image: str, tmp_path_factory: pytest.TempPathFactory) -> images.BuildResult:
    recipe = images.get_recipe("pytorch-cpu")
    return images.build_image(
        recipe,
        client=client,
        base_image=base_image,
        overrides=_torch_index(recipe.build_args["TORCH_INDEX_URL"]),
        log_dir=tmp_path_factory.mktemp("build-logs"),
        on_step=lambda line: None,
    )


def _config(tmp: Path, checkpoint: Path, **kw: Any) -> RunConfig:
    # The default cache: the local runner's pytorch environment lives there and is built only once.
    return RunConfig(backend="pytorch", model_path=checkpoint, test_query_count=SAMPLES, output_dir=tmp / "runs", **kw)


def _our_containers(client: Any, under: Path) -> list[Any]:
    return [
        c
        for c in client.containers.list(all=True, filters={"label": "mlperf-bert.run"})
        if c.labels.get("mlperf-bert.run-dir", "").startswith(str(under))
    ]


@pytest.mark.docker
@pytest.mark.slow
def test_pytorch_image_runs_the_benchmark_like_the_local_runner(
    client: Any, pytorch_image: images.BuildResult, checkpoint: Path, tmp_path: Path
) -> None:
    recipe = images.get_recipe("pytorch-cpu")
    labels = client.images.get(pytorch_image.reference).attrs["Config"]["Labels"]
    assert labels["mlperf-bert.target"] == "pytorch-cpu"
    assert labels["mlperf-bert.engine"] == f"torch {recipe.build_args['TORCH_VERSION']}"

    docker_run = run_benchmark(_config(tmp_path, checkpoint, runner="docker"), progress=False, stream=False)
    local_run = run_benchmark(
        _config(tmp_path, checkpoint, runner="local", mode="accuracy"), progress=False, stream=False
    )
    assert docker_run.succeeded, docker_run.record.error
    assert local_run.succeeded, local_run.record.error

    rec = docker_run.record
    assert rec.runner == "docker" and rec.execution_provider == "cpu"
    assert rec.image == pytorch_image.reference and rec.image_digest == pytorch_image.image_id
    # The CPU build of the pinned torch ran in the container, the same one the local runner uses.
    assert rec.versions["torch"] == local_run.record.versions["torch"]
    assert rec.versions["torch"].split("+")[0] == recipe.build_args["TORCH_VERSION"]
    spec = json.loads((docker_run.run_dir / "harness.json").read_text())
    assert spec["model_path"] == f"{MODELS_DIR}/{CHECKPOINT}" and spec["run_dir"] == "/run"

    # The same checkpoint, samples and torch: the same answers, to the digit.
    assert docker_run.accuracy is not None and local_run.accuracy is not None
    assert docker_run.accuracy.questions_scored == local_run.accuracy.questions_scored > 0
    assert docker_run.accuracy.f1 == local_run.accuracy.f1 > 50  # a real model answering
    assert docker_run.accuracy.exact_match == local_run.accuracy.exact_match
    predictions = [
        json.loads((r.run_dir / "accuracy" / "predictions.json").read_text()) for r in (docker_run, local_run)
    ]
    assert predictions[0] == predictions[1]

    assert docker_run.performance is not None and docker_run.performance.samples_per_second > 0
    assert (docker_run.run_dir / "performance" / "run_1" / "mlperf_log_summary.txt").is_file()
    assert "Offline performance" in (docker_run.run_dir / "harness.log").read_text()
    for path in docker_run.run_dir.rglob("*"):
        assert path.stat().st_uid == os.getuid(), f"{path} is not the caller's"
    assert _our_containers(client, tmp_path) == []  # removed
