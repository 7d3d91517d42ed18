"""The Docker runner and the images on a real Docker engine: build, list, run the benchmark end to end in
the container and compare with the local runner, then the ways a run ends badly (the container killed,
Ctrl-C, out of memory, the engine unreachable, a GPU target on a machine without one).

Tests marked `docker` skip with a reason when no engine answers, and fail instead when
MLPERF_BERT_REQUIRE_DOCKER=1 (CI, after .ci/docker-setup.sh). The base image is the local
debootstrap one that script makes (or $MLPERF_BERT_BASE_IMAGE, or a pulled python:3.11-slim-bookworm).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import docker_support
import pytest
from harness_support import wait_for_harness_line

from orchestrator.api import run_benchmark
from orchestrator.backends import TARGETS
from orchestrator.config import RunConfig
from orchestrator.containers import images
from orchestrator.containers.docker_runner import DockerRunner
from orchestrator.errors import DockerError, PreflightError, RunError
from orchestrator.harness.spec import HarnessSpec
from orchestrator.paths import EMBEDDED_DATASET, EMBEDDED_MODEL, EMBEDDED_VOCAB
from orchestrator.runs import RunRecord

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def client() -> Any:
    return docker_support.docker_client()


@pytest.fixture(scope="module")
def base_image(client: Any) -> str:
    return docker_support.base_image(client)


@pytest.fixture(scope="module")
def build_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("build-logs")


@pytest.fixture(scope="module")
def ort_image(client: Any, base_image: str, build_logs: Path) -> images.BuildResult:
    return images.build_image(
        images.get_recipe("onnxruntime-cpu"),
        client=client,
        base_image=base_image,
        log_dir=build_logs,
        on_step=lambda line: None,
    )


def _config(tmp: Path, cache: Path, **kw: Any) -> RunConfig:
    kw.setdefault("test_query_count", 20)
    return RunConfig(output_dir=tmp / "runs", cache_dir=cache, **kw)


def _our_containers(client: Any, under: Path) -> list[Any]:
    return [
        c
        for c in client.containers.list(all=True, filters={"label": "mlperf-bert.run"})
        if c.labels.get("mlperf-bert.run-dir", "").startswith(str(under))
    ]


# --- build and list ----------------------------------------------------------------------------------
@pytest.mark.docker
def test_image_is_built_labelled_and_listed(client: Any, ort_image: images.BuildResult) -> None:
    image = client.images.get(ort_image.reference)
    labels = image.attrs["Config"]["Labels"]
    recipe = images.get_recipe("onnxruntime-cpu")
    assert labels["mlperf-bert.target"] == "onnxruntime-cpu"
    assert labels["mlperf-bert.engine"] == f"onnxruntime {recipe.build_args['ONNXRUNTIME_VERSION']}"
    assert labels["mlperf-bert.loadgen"] == recipe.build_args["LOADGEN_VERSION"]
    assert image.attrs["Config"]["User"] == "mlperf"
    assert ort_image.log_path.is_file() and "Successfully built" in ort_image.log_path.read_text()
    rows = [r for r in images.list_images(client, ["onnxruntime-cpu"]) if r.reference == ort_image.reference]
    assert rows and rows[0].versions["engine"] == labels["mlperf-bert.engine"]
    # The harness and its runtime only: no models, datasets, tests or runs inside.
    out = client.containers.run(
        ort_image.reference,
        [
            "sh",
            "-c",
            (
                "ls /opt/mlperf-bert; ls /opt/mlperf-bert/orchestrator;"
                " python -c 'import onnxruntime as o; print(o.__version__)'"
            ),
        ],
        remove=True,
        network_mode="none",
    ).decode()
    assert out.split()[0] == "orchestrator" and "harness" in out.split()
    assert recipe.build_args["ONNXRUNTIME_VERSION"] in out
    for absent in ("embedded", "tests", "runs", "wheelhouse"):
        assert absent not in out.split()


@pytest.mark.docker
def test_a_failing_step_is_named(client: Any, base_image: str, build_logs: Path) -> None:
    recipe = images.get_recipe("onnxruntime-cpu")
    with pytest.raises(
        DockerError,
        match=r"failed at Step \d+/\d+ : RUN sh /usr/local/lib/mlperf-bert/harness-setup.sh "
        r"runtime: harness-setup: the base image has Python 3.11 but the wheelhouse "
        r"is for 3.10",
    ):
        images.build_image(
            recipe,
            client=client,
            base_image=base_image,
            overrides={"PYTHON_VERSION": "3.10"},
            offline=True,
            log_dir=build_logs,
            on_step=lambda line: None,
        )


# --- end to end ----------------------------------------------------------------------------------------
@pytest.mark.docker
@pytest.mark.slow
def test_container_run_matches_the_local_runner(
    client: Any, ort_image: images.BuildResult, tmp_path: Path, session_cache: Path
) -> None:
    docker_run = run_benchmark(_config(tmp_path, session_cache, runner="docker"), progress=False, stream=False)
    local_run = run_benchmark(_config(tmp_path, session_cache, runner="local"), progress=False, stream=False)
    assert docker_run.succeeded and local_run.succeeded
    rec = docker_run.record
    assert rec.runner == "docker" and rec.execution_provider == "CPUExecutionProvider"
    assert rec.image == "mlperf-bert/onnxruntime-cpu:latest" and rec.image_digest == ort_image.image_id
    assert docker_run.accuracy.f1 == local_run.accuracy.f1
    assert docker_run.accuracy.exact_match == local_run.accuracy.exact_match
    predictions = [
        json.loads((r.run_dir / "accuracy" / "predictions.json").read_text()) for r in (docker_run, local_run)
    ]
    assert predictions[0] == predictions[1] and len(predictions[0]) > 0
    assert docker_run.performance is not None and docker_run.performance.samples_per_second > 0
    log = (docker_run.run_dir / "harness.log").read_text()
    assert "Offline performance" in log
    assert json.loads((docker_run.run_dir / "harness.json").read_text())["run_dir"] == "/run"
    for path in docker_run.run_dir.rglob("*"):
        assert path.stat().st_uid == os.getuid(), f"{path} is not the caller's"
    assert _our_containers(client, tmp_path) == []  # removed


@pytest.mark.docker
@pytest.mark.slow
def test_killing_the_container_mid_run_marks_only_that_run_failed(
    client: Any, ort_image: images.BuildResult, tmp_path: Path, session_cache: Path
) -> None:
    earlier = run_benchmark(
        _config(tmp_path, session_cache, runner="docker", mode="accuracy", test_query_count=5),
        progress=False,
        stream=False,
    )
    earlier_record = (earlier.run_dir / "run.json").read_bytes()
    errors: list[BaseException] = []

    def long_run() -> None:
        try:
            run_benchmark(
                _config(tmp_path, session_cache, runner="docker", mode="performance", test_query_count=5000),
                progress=False,
                stream=False,
            )
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    worker = threading.Thread(target=long_run)
    worker.start()
    victim = _wait_for_running_container(client, tmp_path)
    time.sleep(2)
    victim.kill()
    worker.join(timeout=120)
    assert not worker.is_alive()
    (err,) = errors
    assert isinstance(err, RunError)
    assert "killed by SIGKILL" in str(err) and "marked failed" in str(err)
    killed = [d for d in (tmp_path / "runs").iterdir() if d != earlier.run_dir]
    (killed_dir,) = killed
    record = RunRecord.load(killed_dir)
    assert record.status == "failed" and record.error and "SIGKILL" in record.error
    assert (killed_dir / "harness.log").stat().st_size > 0
    assert (earlier.run_dir / "run.json").read_bytes() == earlier_record
    assert _our_containers(client, tmp_path) == []


def _wait_for_running_container(client: Any, under: Path, timeout: float = 60) -> Any:
    """The running container of a run directory below `under` (never another test's or user's run)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for c in client.containers.list(filters={"label": "mlperf-bert.run", "status": "running"}):
            if c.labels.get("mlperf-bert.run-dir", "").startswith(str(under)):
                return c
        time.sleep(0.2)
    raise AssertionError("no run container started")


@pytest.fixture(scope="module")
def features(session_cache: Path) -> Path:
    from orchestrator.dataset import build_features

    return build_features(EMBEDDED_DATASET, EMBEDDED_VOCAB, session_cache / "features")


def _spec(run_dir: Path, features: Path, **kw: Any) -> HarnessSpec:
    target = TARGETS["onnxruntime-cpu"]
    return HarnessSpec(
        target=target.key,
        engine_class=target.engine_class,
        execution_provider=target.execution_provider,
        model_path=str(EMBEDDED_MODEL),
        features_path=str(features),
        run_dir=str(run_dir),
        scenario="Offline",
        progress=False,
        **kw,
    )


@pytest.mark.docker
def test_out_of_memory_is_detected(client: Any, ort_image: images.BuildResult, tmp_path: Path, features: Path) -> None:
    run_dir = tmp_path / "oom-run"
    run_dir.mkdir()
    runner = DockerRunner(TARGETS["onnxruntime-cpu"], memory="40m", stream=False)
    outcome = runner.run(_spec(run_dir, features, modes=["accuracy"], test_query_count=10), run_dir)
    assert outcome.oom_killed and outcome.exit_code == 137
    assert outcome.message and "out of memory" in outcome.message
    assert _our_containers(client, tmp_path) == []


@pytest.mark.docker
def test_ctrl_c_interrupts_the_container_run(
    client: Any, ort_image: images.BuildResult, tmp_path: Path, features: Path
) -> None:
    run_dir = tmp_path / "interrupted-run"
    run_dir.mkdir()
    runner = DockerRunner(TARGETS["onnxruntime-cpu"], stream=False)

    def press_ctrl_c() -> None:
        _wait_for_running_container(client, tmp_path)
        wait_for_harness_line(run_dir, "QSL samples", timeout=120)  # LoadGen is starting, not Python
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGINT)  # what a terminal's Ctrl-C does to the orchestrator

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    try:
        outcome = runner.run(_spec(run_dir, features, modes=["performance"], test_query_count=5000), run_dir)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped the runner instead of interrupting the container")
    assert outcome.interrupted and outcome.exit_code == 130
    result = json.loads((run_dir / "harness_result.json").read_text())
    assert result["status"] == "interrupted"  # the harness got SIGINT and recorded it
    assert _our_containers(client, tmp_path) == []


@pytest.mark.docker
def test_a_build_leaves_no_dangling_stage_image(client: Any, ort_image: images.BuildResult) -> None:
    import re

    built = set(re.findall(r"^ ---> ([0-9a-f]{12})$", ort_image.log_path.read_text(), re.MULTILINE))
    dangling = {i.id.removeprefix("sha256:")[:12] for i in client.images.list(filters={"dangling": True})}
    assert built and not built & dangling  # no `<none>` image from this build's stages
    ours = client.images.list(filters={"dangling": True, "label": "mlperf-bert.target=onnxruntime-cpu"})
    assert ours == []
    venv = client.images.get("mlperf-bert/onnxruntime-cpu:cache-venv")  # kept for the next build's cache
    assert venv.id.removeprefix("sha256:")[:12] in built


@pytest.mark.docker
@pytest.mark.parametrize(("signame", "code"), [("SIGTERM", 143), ("SIGHUP", 129)])
def test_sigterm_or_sighup_to_the_cli_stops_the_container_and_marks_the_run(
    client: Any, ort_image: images.BuildResult, tmp_path: Path, session_cache: Path, signame: str, code: int
) -> None:
    import sys

    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "orchestrator.cli", "run", "--runner", "docker", "--image", ort_image.reference]
    cmd += ["--mode", "performance", "--test-query-count", "5000", "--output-dir", str(runs)]
    cmd += ["--cache-dir", str(session_cache)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for_running_container(client, tmp_path, timeout=180)
        wait_for_harness_line(runs, "QSL samples", timeout=120)  # LoadGen is starting, not Python
        time.sleep(0.5)
        proc.send_signal(getattr(signal, signame))  # Slurm's time limit, `timeout`, a closed terminal
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    (run_dir,) = list(runs.iterdir())
    record = RunRecord.load(run_dir)
    assert record.status == "interrupted" and record.error == f"interrupted by {signame}"
    assert record.process is not None and record.process.container_id
    assert json.loads((run_dir / "harness_result.json").read_text())["status"] == "interrupted"
    assert _our_containers(client, tmp_path) == []  # nothing keeps running


@pytest.mark.docker
def test_compose_service_runs_a_prepared_run_directory(
    client: Any, ort_image: images.BuildResult, tmp_path: Path, features: Path
) -> None:
    import shutil

    compose = shutil.which("docker-compose")
    if compose is None:
        docker_support.unavailable("docker-compose is not installed (bash .ci/docker-setup.sh installs it)")
    runner = DockerRunner(TARGETS["onnxruntime-cpu"], exec_fn=lambda argv: 0)
    runner.debug(_spec(tmp_path / "x", features, modes=["accuracy"], test_query_count=5), tmp_path / "runs")
    (run_dir,) = (tmp_path / "runs").iterdir()
    env = dict(
        os.environ,
        MLPERF_BERT_UID=str(os.getuid()),
        MLPERF_BERT_GID=str(os.getgid()),
        MLPERF_BERT_MODELS=str(EMBEDDED_MODEL.parent),
        MLPERF_BERT_DATA=str(features.parent),
        MLPERF_BERT_RUN_DIR=str(run_dir),
    )
    proc = subprocess.run(
        [
            compose or "docker-compose",
            "-f",
            str(REPO / "compose" / "docker-compose.yml"),
            "--profile",
            "onnxruntime-cpu",
            "run",
            "--rm",
            "-T",
            "onnxruntime-cpu",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((run_dir / "harness_result.json").read_text())
    assert result["status"] == "succeeded" and result["execution_provider"] == "CPUExecutionProvider"


# --- DeepSparse, in its own image with its own pins ---------------------------------------------------
@pytest.mark.docker
@pytest.mark.slow
def test_deepsparse_image_runs_the_benchmark(
    client: Any, base_image: str, build_logs: Path, tmp_path: Path, session_cache: Path, shared_assets: Path
) -> None:
    fp32 = shared_assets / "models" / "demo-minilm-l6-squad.fp32.onnx"
    if not fp32.is_file():
        pytest.skip(f"{fp32} is absent (DeepSparse cannot compile the dynamically quantized int8 demo)")
    built = images.build_image(
        images.get_recipe("deepsparse-cpu"),
        client=client,
        base_image=base_image,
        log_dir=build_logs,
        on_step=lambda line: None,
    )
    labels = client.images.get(built.reference).attrs["Config"]["Labels"]
    assert labels["mlperf-bert.engine"] == "deepsparse 1.8.0" and labels["mlperf-bert.numpy"].startswith("1.")
    ds = run_benchmark(
        _config(tmp_path, session_cache, runner="docker", backend="deepsparse", model_path=fp32),
        progress=False,
        stream=False,
    )
    ort = run_benchmark(_config(tmp_path, session_cache, runner="local", model_path=fp32), progress=False, stream=False)
    assert ds.succeeded and ds.record.execution_provider == "DeepSparseEngine"
    assert ds.record.versions.get("deepsparse") == "1.8.0"
    # Two engines, one fp32 model, the same 20 samples: the answers agree up to rounding.
    assert abs(ds.accuracy.f1 - ort.accuracy.f1) <= 5.0


# --- no engine, no GPU ------------------------------------------------------------------------------
def test_unreachable_engine_fails_the_run_with_what_to_do(
    tmp_path: Path, session_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")  # an engine that is not running
    earlier = tmp_path / "runs" / "earlier"
    earlier.mkdir(parents=True)
    (earlier / "run.json").write_text('{"untouched": true}\n')
    with pytest.raises(DockerError, match=r"cannot reach the Docker engine.*--runner local") as err:
        run_benchmark(
            _config(tmp_path, session_cache, runner="docker", test_query_count=5), progress=False, stream=False
        )
    assert "\n" not in str(err.value)
    # pre-flight runs before a run directory is made: nothing new, nothing touched
    assert [d.name for d in (tmp_path / "runs").iterdir()] == ["earlier"]
    assert (earlier / "run.json").read_text() == '{"untouched": true}\n'


def _has_nvidia_gpu() -> bool:
    import shutil

    smi = shutil.which("nvidia-smi")
    return bool(smi) and subprocess.run([smi or "", "-L"], capture_output=True).returncode == 0


@pytest.mark.skipif(_has_nvidia_gpu(), reason="this machine has an NVIDIA GPU")
def test_gpu_target_on_a_machine_without_gpu_fails_clearly(tmp_path: Path, session_cache: Path) -> None:
    with pytest.raises(
        PreflightError, match=r"tensorrt-cuda needs an NVIDIA GPU but none is visible here.*--device cpu"
    ):
        run_benchmark(
            _config(tmp_path, session_cache, runner="docker", backend="tensorrt", test_query_count=5),
            progress=False,
            stream=False,
        )
    # pre-flight runs before a run directory is made: nothing ran, nothing was written
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
