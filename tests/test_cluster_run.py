"""`run --runner ray --cluster NAME`: the driver in the head container of a `cluster up` cluster.

Without Docker: the option's rules, the spec as the head sees it, the results copied back, and the
pre-flight's refusals (no such cluster, a cluster of another backend, a stopped worker) on fake containers.
With Docker (docker-marked, one real cluster for the module): an accuracy run whose F1 equals the local
runner's on the same samples; a worker container killed mid-run, after which the run still succeeds with
every sample answered exactly once and run.json naming the lost node; and SIGTERM of the CLI, which stops
the harness inside the head and marks the run interrupted.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections import Counter
from pathlib import Path, PurePosixPath
from types import SimpleNamespace
from typing import Any

import pytest
from cli_support import invoke
from docker_support import docker_client, ensure_image

from orchestrator.assets import resolve_model
from orchestrator.backends import TARGETS
from orchestrator.config import RunConfig, RunnerKind, RunOverrides, resolve_config
from orchestrator.containers import cluster
from orchestrator.containers.cluster_runner import ClusterRunner, _extract_results, map_spec
from orchestrator.errors import ConfigError, PreflightError
from orchestrator.harness.spec import HarnessSpec, RaySpec
from orchestrator.paths import default_cache_dir
from orchestrator.runs import RunRecord

NAME = "pytest-cluster-run"
ORT = TARGETS["onnxruntime-cpu"]


# ---- without Docker -------------------------------------------------------------------------------------
def test_cluster_is_an_option_of_the_ray_runner_without_an_address() -> None:
    with pytest.raises(ConfigError, match="options of the Ray runner; add --runner ray"):
        resolve_config(RunOverrides(cluster="demo"))
    with pytest.raises(ConfigError, match="its own address; drop --ray-address"):
        resolve_config(RunOverrides(runner=RunnerKind.ray, cluster="demo", ray_address="10.0.0.5:6379"))
    assert resolve_config(RunOverrides(runner=RunnerKind.ray, cluster="demo")).cluster == "demo"


def _spec(tmp_path: Path, **update: Any) -> HarnessSpec:
    base = HarnessSpec(
        target=ORT.key,
        engine_class=ORT.engine_class,
        execution_provider=ORT.execution_provider,
        model_path=str(tmp_path / "data" / "m.onnx"),
        features_path=str(tmp_path / "cache" / "f.npz"),
        run_dir=str(tmp_path / "runs" / "r1"),
        scenario="Offline",
        modes=["accuracy"],
        execution_mode="test",
        test_query_count=10,
        batch_size=2,
        engine_options={"optimized_cache_dir": str(tmp_path / "cache" / "engines")},
        ray=RaySpec(address="auto", actors=2),
    )
    return base.model_copy(update=update)


def test_the_head_reads_what_lies_under_data_and_gets_a_copy_of_the_rest(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    inner, copies = map_spec(_spec(tmp_path), tmp_path / "runs" / "r1", tmp_path / "data", "172.18.0.2")
    assert inner.model_path == "/data/m.onnx"  # through the read-only mount: not copied
    scratch = PurePosixPath("/tmp/mlperf-bert-runs/r1")
    assert inner.features_path == str(scratch / "inputs" / "features" / "f.npz")
    assert copies == {tmp_path / "cache" / "f.npz": scratch / "inputs" / "features" / "f.npz"}
    assert inner.run_dir == str(scratch / "run")
    assert inner.engine_options["optimized_cache_dir"] == str(scratch / "cache" / "optimized_cache_dir")
    assert inner.ray == RaySpec(address="172.18.0.2:6379", actors=2)
    _, everything = map_spec(_spec(tmp_path), tmp_path / "runs" / "r1", None, "172.18.0.2")  # no --data
    assert sorted(p.name for p in everything) == ["f.npz", "m.onnx"]


def test_results_come_back_but_never_the_spec_the_log_or_a_path_outside(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in [
            ("run/harness_result.json", b"{}"),
            ("run/accuracy/mlperf_log_accuracy.json", b"[]"),
            ("run/harness.json", b"inner"),
            ("run/harness.log", b"theirs"),
            ("run/../../escape.txt", b"no"),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text))
    (tmp_path / "harness.json").write_text("host")
    copied = _extract_results(buf.getvalue(), "run", tmp_path)
    assert sorted(copied) == ["accuracy/mlperf_log_accuracy.json", "harness_result.json"]
    assert (tmp_path / "harness.json").read_text() == "host" and not (tmp_path / "harness.log").exists()
    assert not (tmp_path.parent / "escape.txt").exists()


class _Node(SimpleNamespace):
    def exec_run(self, cmd: list[str], demux: bool = False) -> Any:
        return SimpleNamespace(exit_code=0, output=json.dumps({"alive": self.alive, "cpus": 2.0}).encode())


def _fake_cluster(target: str, *, worker_state: str = "running", alive: int = 3) -> Any:
    def node(role: str, index: int = 0, state: str = "running") -> _Node:
        labels = {cluster.LABEL: "c", cluster.ROLE_LABEL: role, cluster.TARGET_LABEL: target}
        return _Node(name=cluster.container_name("c", role, index), labels=labels, status=state, alive=alive, attrs={})

    nodes = [node("head"), node("worker", 0), node("worker", 1, worker_state)]
    return SimpleNamespace(
        containers=SimpleNamespace(list=lambda all, filters: nodes if filters["label"] == f"{cluster.LABEL}=c" else []),
        networks=SimpleNamespace(list=lambda filters: []),
    )


def test_preflight_refuses_no_cluster_another_backend_and_a_dead_worker() -> None:
    up = "mlperf-bert cluster up --name nope --backend onnxruntime --device cpu"
    with pytest.raises(PreflightError, match=f"^there is no cluster named nope; start one with {up}$"):
        ClusterRunner(ORT, cluster="nope", client=_fake_cluster(ORT.key)).preflight()
    with pytest.raises(PreflightError, match="^cluster c runs openvino-cpu, not onnxruntime-cpu; pass that"):
        ClusterRunner(ORT, cluster="c", client=_fake_cluster("openvino-cpu")).preflight()
    with pytest.raises(PreflightError, match="^cluster c has mlperf-bert-cluster-c-worker-1 not running; run mlp"):
        ClusterRunner(ORT, cluster="c", client=_fake_cluster(ORT.key, worker_state="exited")).preflight()
    with pytest.raises(PreflightError, match="^Ray on cluster c sees 2 of 3 nodes alive; run mlperf-bert cluster"):
        ClusterRunner(ORT, cluster="c", client=_fake_cluster(ORT.key, alive=2)).preflight()
    ClusterRunner(ORT, cluster="c", client=_fake_cluster(ORT.key)).preflight()  # all there: no error


def test_no_such_cluster_leaves_no_run_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ClusterRunner, "client", property(lambda self: _fake_cluster(ORT.key)))
    result = invoke(
        ["run", "--runner", "ray", "--cluster", "nope", "--test-query-count", "5", "--output-dir", tmp_path / "runs"]
    )
    assert result.exit_code != 0 and "there is no cluster named nope; start one with mlperf-bert cluster up" in (
        result.stderr
    ), result.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_dry_run_names_the_exec_in_the_head(tmp_path: Path) -> None:
    result = invoke(["run", "--runner", "ray", "--cluster", "demo", "--dry-run", "--output-dir", tmp_path])
    assert result.exit_code == 0, result.output
    assert (
        "docker exec mlperf-bert-cluster-demo-head python -m orchestrator.harness '/tmp/mlperf-bert-runs/<new-run>/run'"
        in (result.stdout)
    )


# ---- a real cluster -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client() -> Any:
    c = docker_client(timeout=180)
    ensure_image(c, ORT.key)  # cluster up runs its nodes on it; built here on a fresh machine
    return c


@pytest.fixture(scope="module")
def running(client: Any, data_dir: Path) -> Any:
    if importlib.util.find_spec("ray") is None and os.environ.get("MLPERF_BERT_REQUIRE_RAY") != "1":
        pytest.skip("Ray is not installed (pip install 'mlperf-bert[ray]')")
    cluster.cluster_down(client, NAME)
    result = invoke(["cluster", "up", "--workers", "2", "--name", NAME, "--data", data_dir])
    assert result.exit_code == 0, result.output
    yield NAME
    cluster.cluster_down(client, NAME)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cluster's --data folder: the demo model only, so that a run reads the model through the head's
    /data mount and gets the features (which lie elsewhere) as a copy: both ways in one run."""
    folder = tmp_path_factory.mktemp("cluster-data")
    model = resolve_model("demo-int8", None, default_cache_dir()).path
    shutil.copy(model, folder / "demo.onnx")
    folder.chmod(0o755)  # the nodes run as the image's user
    (folder / "demo.onnx").chmod(0o644)
    return folder


def _run_args(out: Path, count: int, *extra: str) -> list[str]:
    return ["run", "--mode", "accuracy", "--test-query-count", str(count), "--output-dir", str(out), *extra]


def _only_run(out: Path) -> Path:
    (run_dir,) = out.iterdir()
    return run_dir


@pytest.mark.docker
def test_a_run_on_the_cluster_gives_the_local_runners_f1(running: str, data_dir: Path, tmp_path: Path) -> None:
    model = ("--model-path", str(data_dir / "demo.onnx"))
    on_cluster = invoke(_run_args(tmp_path / "cluster", 40, "--runner", "ray", "--cluster", running, *model))
    assert on_cluster.exit_code == 0, on_cluster.output
    local = invoke(_run_args(tmp_path / "local", 40, "--runner", "local", *model))
    assert local.exit_code == 0, local.output
    rec = RunRecord.load(_only_run(tmp_path / "cluster"))
    ref = RunRecord.load(_only_run(tmp_path / "local"))
    assert rec.status == "succeeded" and rec.runner == "ray" and rec.config.cluster == running
    assert rec.results["accuracy"]["f1"] == ref.results["accuracy"]["f1"]
    settings = rec.engine_settings
    assert settings["cluster"] == running and settings["cluster_lost_nodes"] == "none"
    assert settings["cluster_nodes"].count("worker ") == 2 and settings["ray_actors"] == "2"
    # The model lies under the cluster's --data: read through the mount; the features: copied.
    assert "copied into the container (docker put_archive): squad-features-" in settings["cluster_data"]
    assert f"the rest read in place through the head's read-only /data mount of {data_dir}" in settings["cluster_data"]
    assert json.loads((_only_run(tmp_path / "cluster") / "harness.json").read_text())["model_path"] == "/data/demo.onnx"
    assert "Ray's object store" in settings["cluster_data"]
    assert settings["ray_address"].endswith(":6379") and settings["ray_address"] != "auto"
    run_dir = _only_run(tmp_path / "cluster")
    assert (run_dir / "accuracy" / "mlperf_log_accuracy.json").is_file() and (run_dir / "harness_result.json").is_file()
    assert "Offline accuracy: 40 samples" in (run_dir / "harness.log").read_text()
    head = running_head(running)
    left = head.exec_run(["ls", "/tmp/mlperf-bert-runs"]).output.decode().split()
    assert run_dir.name not in left  # the scratch directory went with the run


def running_head(name: str) -> Any:
    import docker

    return docker.from_env().containers.get(cluster.container_name(name, "head"))


def _progress(log: Path) -> int:
    """Samples completed so far, from the harness's progress bar ("12/40 [") in harness.log."""
    text = log.read_text(errors="replace") if log.is_file() else ""
    return max([int(done) for done in re.findall(r"(\d+)/\d+ \[", text)] or [0])


@pytest.mark.docker
def test_sigterm_stops_the_harness_in_the_head_and_marks_the_run_interrupted(running: str, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    argv = ["run", "--mode", "accuracy", "--test-query-count", "2000", "--output-dir", str(out)]
    cmd = [sys.executable, "-m", "orchestrator.cli", *argv, "--runner", "ray", "--cluster", running]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not (out.is_dir() and any(out.iterdir()) and _progress(_log(out)) > 0):
            time.sleep(0.5)
        assert _progress(_log(out)) > 0, "the run never started answering samples"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=90) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
    record = RunRecord.load(_only_run(out))
    assert record.status == "interrupted" and record.error == "interrupted by SIGTERM"
    # The image has no ps: count the processes whose command line names the harness (built so that this
    # probe's own command line does not).
    probe = (
        "import os; h = b'orchestrator' + b'.harness'; "
        "print(sum(h in open(f'/proc/{p}/cmdline', 'rb').read() for p in os.listdir('/proc') if p.isdigit()))"
    )
    ps = running_head(running).exec_run(["python", "-c", probe])
    assert ps.output.decode().strip() == "0"  # nothing of the harness left running in the head


def _log(out: Path) -> Path:
    runs = list(out.iterdir()) if out.is_dir() else []
    return runs[0] / "harness.log" if runs else out / "none"


@pytest.mark.docker
def test_a_worker_killed_mid_run_the_run_succeeds_each_sample_once(client: Any, running: str, tmp_path: Path) -> None:
    from orchestrator.api import run_benchmark

    count = 400
    out = tmp_path / "runs"
    config = RunConfig(runner=RunnerKind.ray, cluster=running, mode="accuracy", test_query_count=count, output_dir=out)
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["run"] = run_benchmark(config, stream=False)
        except Exception as exc:  # noqa: BLE001 - asserted below
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and _progress(_log(out)) < 20 and thread.is_alive():
        time.sleep(0.2)
    done_at_kill = _progress(_log(out))
    assert 20 <= done_at_kill < count, f"killed at {done_at_kill} of {count} samples"
    victim = cluster.container_name(running, "worker", 1)
    client.containers.get(victim).kill()
    thread.join(timeout=300)
    assert not thread.is_alive() and "error" not in result, result.get("error")
    run_dir = result["run"].run_dir
    record = RunRecord.load(run_dir)
    assert record.status == "succeeded"
    answered = Counter(
        e["qsl_idx"] for e in json.loads((run_dir / "accuracy" / "mlperf_log_accuracy.json").read_text())
    )
    assert len(answered) == count and set(answered.values()) == {1}  # every sample, exactly once
    assert victim in record.engine_settings["cluster_lost_nodes"]
    assert record.engine_settings["ray_lost_actors"] != "none"
    # The cluster now lacks a worker: the next run is refused before a run directory exists.
    again = invoke(_run_args(tmp_path / "again", 5, "--runner", "ray", "--cluster", running))
    assert again.exit_code != 0 and f"{victim} not running" in again.stderr, again.output
    assert not (tmp_path / "again").exists() or not any((tmp_path / "again").iterdir())


@pytest.mark.docker
def test_cluster_down_leaves_nothing_with_the_label(client: Any, running: str) -> None:
    result = invoke(["cluster", "down", "--name", running])
    assert result.exit_code == 0, result.output
    assert cluster.labelled(client, running) == ([], [])
