"""The Docker runner against a fake docker client: the exact SDK call, the `docker run` line, the
container's lifecycle on success, failure, Ctrl-C, OOM, a kill and a lost engine, retries, pre-flight.

The real engine is exercised in test_docker_integration.py; these tests pin down the arguments and the
messages without one.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shlex
import signal
from pathlib import Path
from typing import Any

import pytest
import requests
from docker.errors import APIError, ImageNotFound, NotFound
from docker.types import DeviceRequest
from docker.types import Mount as SdkMount
from tenacity import wait_none

from orchestrator.backends import TARGETS
from orchestrator.containers import preflight
from orchestrator.containers.client import RetryPolicy, docker_error, is_transient
from orchestrator.containers.container_spec import ContainerSpec, Mount, docker_run_argv, sdk_run_kwargs
from orchestrator.containers.docker_runner import DockerRunner, exit_message, map_spec
from orchestrator.errors import DockerError, PreflightError
from orchestrator.harness.spec import HarnessSpec
from orchestrator.logs import current_verbosity
from orchestrator.runners import host_checks
from orchestrator.runners.runner import Started
from orchestrator.stop_signals import Terminated

UID_GID = f"{os.getuid()}:{os.getgid()}"


# --- a fake docker client: records calls, plays scripted behaviour ---------------------------------
class FakeContainer:
    def __init__(
        self,
        chunks: list[bytes] | None = None,
        *,
        status: int = 0,
        oom: bool = False,
        interrupt_after: int | None = None,
        wait_error: Exception | None = None,
        status_after_interrupt: int = 130,
        interrupt_with: BaseException | None = None,
    ) -> None:
        self.chunks = chunks if chunks is not None else [b"harness says hello\n", b"done\n"]
        self.status = status
        self.attrs: dict[str, Any] = {"State": {"OOMKilled": oom}}
        self.interrupt_after = interrupt_after
        self.wait_error = wait_error
        self.status_after_interrupt = status_after_interrupt
        self.interrupt_with = interrupt_with if interrupt_with is not None else KeyboardInterrupt()
        self.killed: list[str | None] = []
        self.removed: list[bool] = []
        self.name = "fake-container"
        self.id = "c0ffee"

    def logs(self, stream: bool = False, follow: bool = False) -> Any:
        if not stream:
            return b"".join(self.chunks)

        def gen() -> Any:
            for i, chunk in enumerate(self.chunks):
                if self.interrupt_after is not None and i == self.interrupt_after:
                    raise self.interrupt_with
                yield chunk

        return gen()

    def wait(self, timeout: float | None = None) -> dict[str, int]:
        if self.wait_error is not None:
            raise self.wait_error
        if self.killed:
            return {"StatusCode": self.status_after_interrupt}
        return {"StatusCode": self.status}

    def kill(self, signal: str | None = None) -> None:
        self.killed.append(signal)

    def reload(self) -> None:
        pass

    def remove(self, force: bool = False) -> None:
        self.removed.append(force)


class FakeImage:
    def __init__(self, target: str = "onnxruntime-cpu") -> None:
        self.id = "sha256:" + "ab" * 32
        self.attrs = {
            "Id": self.id,
            "RepoDigests": [],
            "Size": 357_000_000,
            "Config": {"Labels": {"mlperf-bert.target": target}},
        }
        self.tags = [f"mlperf-bert/{target}:latest"]
        self.labels = self.attrs["Config"]["Labels"]


class FakeImages:
    def __init__(self, image: FakeImage | None) -> None:
        self.image = image

    def get(self, ref: str) -> FakeImage:
        if self.image is None:
            raise ImageNotFound(f"No such image: {ref}")
        return self.image


class FakeContainers:
    def __init__(self, script: list[Any]) -> None:
        self.script = list(script)  # each item: a FakeContainer to return or an exception to raise
        self.calls: list[dict[str, Any]] = []

    def run(self, **kwargs: Any) -> FakeContainer:
        self.calls.append(kwargs)
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    def get(self, name: str) -> Any:
        raise NotFound(f"No such container: {name}")


class FakeClient:
    def __init__(
        self, script: list[Any] | None = None, image: FakeImage | None = None, ping_error: Exception | None = None
    ) -> None:
        self.containers = FakeContainers(script if script is not None else [FakeContainer()])
        self.images = FakeImages(image if image is not None else FakeImage())
        self.ping_error = ping_error
        self.pings = 0

    def ping(self) -> bool:
        self.pings += 1
        if self.ping_error is not None:
            raise self.ping_error
        return True


# --- fixtures ----------------------------------------------------------------------------------
@pytest.fixture()
def layout(tmp_path: Path) -> dict[str, Path]:
    models = tmp_path / "models"
    data = tmp_path / "cache" / "features"
    run_dir = tmp_path / "runs" / "20260101-000000-onnxruntime-cpu-Offline-both"
    for d in (models, data, run_dir):
        d.mkdir(parents=True)
    (models / "bert.onnx").write_bytes(b"onnx")
    (data / "features.npz").write_bytes(b"npz")
    return {"models": models, "data": data, "run_dir": run_dir}


def make_spec(layout: dict[str, Path], key: str = "onnxruntime-cpu", **extra: Any) -> HarnessSpec:
    target = TARGETS[key]
    return HarnessSpec(
        target=key,
        engine_class=target.engine_class,
        execution_provider=target.execution_provider,
        model_path=str(layout["models"] / "bert.onnx"),
        features_path=str(layout["data"] / "features.npz"),
        run_dir=str(layout["run_dir"]),
        scenario="Offline",
        modes=["accuracy", "performance"],
        **extra,
    )


def make_runner(
    key: str = "onnxruntime-cpu", client: FakeClient | None = None, *, attempts: int = 4, **kw: Any
) -> DockerRunner:
    kw.setdefault("retry", RetryPolicy(attempts=attempts, wait=wait_none()))
    kw.setdefault("console", io.BytesIO())
    return DockerRunner(TARGETS[key], client=client or FakeClient(), **kw)


# --- the container description -----------------------------------------------------------------
def test_sdk_call_has_exactly_the_expected_arguments(layout: dict[str, Path]) -> None:
    client = FakeClient()
    runner = make_runner(client=client)
    runner.run(make_spec(layout), layout["run_dir"])
    (kwargs,) = client.containers.calls
    name = kwargs.pop("name")
    assert re.fullmatch(r"mlperf-bert-20260101-000000-onnxruntime-cpu-Offline-both-[0-9a-f]{6}", name)
    run_dir = str(layout["run_dir"])
    assert kwargs == {
        "image": "mlperf-bert/onnxruntime-cpu:latest",
        "command": ["python", "-m", "orchestrator.harness", "/run"],
        "detach": True,
        "init": True,
        "network_mode": "none",
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "stop_signal": "SIGINT",
        "mounts": [
            SdkMount(target="/models", source=str(layout["models"]), type="bind", read_only=True),
            SdkMount(target="/data", source=str(layout["data"]), type="bind", read_only=True),
            SdkMount(target="/run", source=run_dir, type="bind", read_only=False),
        ],
        "environment": {
            "HOME": "/tmp",
            "PYTHONUNBUFFERED": "1",
            "MLPERF_BERT_IN_CONTAINER": "1",
            "MLPERF_BERT_VERBOSITY": str(current_verbosity()),
        },
        "labels": {
            "mlperf-bert.run": layout["run_dir"].name,
            "mlperf-bert.target": "onnxruntime-cpu",
            "mlperf-bert.run-dir": run_dir,
        },
        "user": UID_GID,
        "shm_size": "1g",
    }
    assert "privileged" not in kwargs and kwargs["network_mode"] != "host"


def test_describe_is_the_equivalent_docker_run_line(layout: dict[str, Path]) -> None:
    runner = make_runner(cpuset_cpus="0-1", memory="8g")
    line = runner.describe(make_spec(layout), layout["run_dir"])
    run_dir = str(layout["run_dir"])
    expected = [
        "docker",
        "run",
        "--rm",
        "--init",
        "--network",
        "none",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--stop-signal",
        "SIGINT",
        "--user",
        UID_GID,
        "--shm-size",
        "1g",
        "--cpuset-cpus",
        "0-1",
        "--memory",
        "8g",
        "--label",
        f"mlperf-bert.run={layout['run_dir'].name}",
        "--label",
        "mlperf-bert.target=onnxruntime-cpu",
        "--label",
        f"mlperf-bert.run-dir={run_dir}",
        "--mount",
        f"type=bind,source={layout['models']},target=/models,readonly",
        "--mount",
        f"type=bind,source={layout['data']},target=/data,readonly",
        "--mount",
        f"type=bind,source={run_dir},target=/run",
        "-e",
        "HOME=/tmp",
        "-e",
        "PYTHONUNBUFFERED=1",
        "-e",
        "MLPERF_BERT_IN_CONTAINER=1",
        "-e",
        f"MLPERF_BERT_VERBOSITY={current_verbosity()}",
        "mlperf-bert/onnxruntime-cpu:latest",
        "python",
        "-m",
        "orchestrator.harness",
        "/run",
    ]
    assert line == shlex.join(expected)


def test_describe_and_sdk_call_agree_for_every_option() -> None:
    cs = ContainerSpec(
        image="img:1",
        command=("python", "-V"),
        mounts=(Mount("/h/m", "/models"), Mount("/h/r", "/run", False)),
        env={"A": "1"},
        user="1000:1000",
        devices=("/dev/kfd:/dev/kfd:rwm",),
        gpus="0,1",
        group_add=("44",),
        shm_size="2g",
        cpuset_cpus="0-3",
        mem_limit="4g",
        labels={"k": "v"},
        name="n",
    )
    kw = sdk_run_kwargs(cs)
    argv = docker_run_argv(cs)
    assert kw["device_requests"] == [DeviceRequest(device_ids=["0", "1"], capabilities=[["gpu"]])]
    assert argv[argv.index("--gpus") + 1] == '"device=0,1"'
    assert kw["devices"] == ["/dev/kfd:/dev/kfd:rwm"] and argv[argv.index("--device") + 1] == "/dev/kfd:/dev/kfd:rwm"
    assert kw["group_add"] == ["44"] and argv[argv.index("--group-add") + 1] == "44"
    assert kw["mem_limit"] == "4g" and argv[argv.index("--memory") + 1] == "4g"
    assert kw["cpuset_cpus"] == "0-3" and argv[argv.index("--cpuset-cpus") + 1] == "0-3"
    assert argv[-3:] == ["img:1", "python", "-V"]


def test_nvidia_target_asks_for_all_gpus(layout: dict[str, Path]) -> None:
    cs, _ = make_runner("tensorrt-cuda").container_spec(make_spec(layout, "tensorrt-cuda"), layout["run_dir"])
    assert sdk_run_kwargs(cs)["device_requests"] == [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    assert "--gpus all" in shlex.join(docker_run_argv(cs))
    assert not cs.devices


def test_rocm_target_passes_kfd_dri_and_the_groups_that_own_them(layout: dict[str, Path], tmp_path: Path) -> None:
    dev = tmp_path / "dev"
    (dev / "dri").mkdir(parents=True)
    for node in (dev / "kfd", dev / "dri" / "renderD128"):
        node.write_text("")
    gid = str((dev / "kfd").stat().st_gid)
    runner = make_runner("onnxruntime-rocm", dev_root=dev)
    cs, _ = runner.container_spec(make_spec(layout, "onnxruntime-rocm"), layout["run_dir"])
    kw = sdk_run_kwargs(cs)
    assert kw["devices"] == [f"{dev}/kfd:/dev/kfd:rwm", f"{dev}/dri:/dev/dri:rwm"]
    assert kw["group_add"] == [gid]
    assert "device_requests" not in kw


def test_paths_are_mapped_and_engine_option_dirs_mounted(layout: dict[str, Path], tmp_path: Path) -> None:
    calib = tmp_path / "calib" / "table.bin"
    spec = make_spec(
        layout,
        engine_options={
            "engine_cache_dir": str(tmp_path / "engines"),
            "calibration_path": str(calib),
            "precision": "fp16",
        },
    )
    inner, mounts = map_spec(spec, layout["run_dir"])
    assert inner.model_path == "/models/bert.onnx"
    assert inner.features_path == "/data/features.npz"
    assert inner.run_dir == "/run"
    assert inner.engine_options == {
        "engine_cache_dir": "/cache/engine_cache_dir",
        "calibration_path": "/inputs/calibration_path/table.bin",
        "precision": "fp16",
    }
    assert Mount(str(tmp_path / "engines"), "/cache/engine_cache_dir", False) in mounts
    assert Mount(str(calib.parent), "/inputs/calibration_path", True) in mounts


# --- the lifecycle ---------------------------------------------------------------------------------
def test_success_streams_logs_writes_container_spec_and_removes(layout: dict[str, Path]) -> None:
    container = FakeContainer([b"line one\n", b"line two\n"])
    console = io.BytesIO()
    runner = make_runner(client=FakeClient([container]), console=console)
    outcome = runner.run(make_spec(layout), layout["run_dir"])
    assert outcome.exit_code == 0 and not outcome.interrupted and not outcome.oom_killed
    assert outcome.message is None
    assert outcome.image == "mlperf-bert/onnxruntime-cpu:latest"
    assert outcome.image_digest == "sha256:" + "ab" * 32
    assert (layout["run_dir"] / "harness.log").read_bytes() == b"line one\nline two\n"
    assert console.getvalue() == b"line one\nline two\n"
    written = json.loads((layout["run_dir"] / "harness.json").read_text())
    assert written["model_path"] == "/models/bert.onnx" and written["run_dir"] == "/run"
    assert container.removed == [True]


def test_harness_failure_is_returned_not_raised_and_container_removed(layout: dict[str, Path]) -> None:
    container = FakeContainer([b"Traceback...\n"], status=1)
    outcome = make_runner(client=FakeClient([container])).run(make_spec(layout), layout["run_dir"])
    assert outcome.exit_code == 1 and outcome.message is None
    assert container.removed == [True]


def test_oom_kill_is_detected(layout: dict[str, Path]) -> None:
    container = FakeContainer([b"loading\n"], status=137, oom=True)
    outcome = make_runner(client=FakeClient([container])).run(make_spec(layout), layout["run_dir"])
    assert outcome.oom_killed and outcome.exit_code == 137
    assert outcome.message and "out of memory" in outcome.message and "--batch-size" in outcome.message


def test_container_killed_from_outside_says_so(layout: dict[str, Path]) -> None:
    container = FakeContainer([b"running\n"], status=137)
    outcome = make_runner(client=FakeClient([container])).run(make_spec(layout), layout["run_dir"])
    assert not outcome.oom_killed
    assert outcome.message and "SIGKILL" in outcome.message and "docker kill" in outcome.message
    assert container.removed == [True]


def test_ctrl_c_interrupts_the_harness_keeps_its_last_words_and_removes(layout: dict[str, Path]) -> None:
    container = FakeContainer([b"working\n", b"more\n", b"interrupted, status saved\n"], interrupt_after=1)
    outcome = make_runner(client=FakeClient([container])).run(make_spec(layout), layout["run_dir"])
    assert container.killed == ["SIGINT"]
    assert outcome.interrupted and outcome.exit_code == 130
    log = (layout["run_dir"] / "harness.log").read_bytes()
    assert log == b"working\nmore\ninterrupted, status saved\n"  # caught up after the cut stream
    assert container.removed == [True]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_or_sighup_stops_the_container_with_sigterm_and_names_the_signal(
    layout: dict[str, Path], signum: int
) -> None:
    container = FakeContainer([b"working\n", b"more\n"], interrupt_after=1, interrupt_with=Terminated(signum))
    started: list[Started] = []
    outcome = make_runner(client=FakeClient([container])).run(
        make_spec(layout), layout["run_dir"], on_start=started.append
    )
    assert started == [Started(container_id="c0ffee")]  # told before the run, for run.json
    assert container.killed == ["SIGTERM"]  # the harness records SIGTERM as interrupted
    assert outcome.interrupted and outcome.signal == signum and outcome.exit_code == 130
    assert container.removed == [True]


def test_a_second_signal_while_stopping_kills_the_container(layout: dict[str, Path]) -> None:
    class Stubborn(FakeContainer):
        def wait(self, timeout: float | None = None) -> dict[str, int]:
            if self.killed == ["SIGTERM"]:
                raise Terminated(signal.SIGTERM)  # the second signal arrives during the grace time
            return super().wait(timeout)

    container = Stubborn([b"working\n", b"more\n"], interrupt_after=1, interrupt_with=Terminated(signal.SIGTERM))
    outcome = make_runner(client=FakeClient([container])).run(make_spec(layout), layout["run_dir"])
    assert container.killed == ["SIGTERM", None]  # None: docker's default, SIGKILL
    assert outcome.interrupted and outcome.signal == signal.SIGTERM
    assert container.removed == [True]


def test_an_interrupt_while_the_container_starts_removes_it_by_name(layout: dict[str, Path]) -> None:
    made = FakeContainer()

    class Containers(FakeContainers):
        def get(self, name: str) -> Any:
            if not self.calls:  # asked before the start: none of that name yet
                return super().get(name)
            self.asked = name
            return made

    client = FakeClient([Terminated(signal.SIGTERM)])
    client.containers = Containers([Terminated(signal.SIGTERM)])
    with pytest.raises(Terminated):
        make_runner(client=client).run(make_spec(layout), layout["run_dir"])
    assert client.containers.asked.startswith("mlperf-bert-") and made.removed == [True]


def test_the_docker_run_line_is_debug_and_info_names_the_container(
    layout: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="orchestrator.containers.docker_runner"):
        make_runner(client=FakeClient([FakeContainer()])).run(make_spec(layout), layout["run_dir"])
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(info) == 1 and "docker run " not in info[0] and "mlperf-bert/onnxruntime-cpu:latest" in info[0]
    assert any(m.startswith("docker runner: docker run ") for m in debug)


def test_lost_engine_mid_run_is_one_clear_error_and_cleanup_is_tried(layout: dict[str, Path]) -> None:
    container = FakeContainer([b"step\n"], wait_error=requests.exceptions.ConnectionError("Connection refused"))
    with pytest.raises(DockerError, match=r"lost the Docker engine .*harness.log.*start it") as err:
        make_runner(client=FakeClient([container])).run(make_spec(layout), layout["run_dir"])
    assert "\n" not in str(err.value)
    assert container.removed == [True]
    assert (layout["run_dir"] / "harness.log").read_bytes() == b"step\n"


def test_transient_api_errors_are_retried(layout: dict[str, Path]) -> None:
    flaky = APIError("Service Unavailable", response=_response(503), explanation="engine restarting")
    dropped = requests.exceptions.ConnectionError(
        "('Connection aborted.', RemoteDisconnected('Remote end closed connection without response'))"
    )
    client = FakeClient([flaky, dropped, FakeContainer()])
    outcome = make_runner(client=client).run(make_spec(layout), layout["run_dir"])
    assert outcome.exit_code == 0
    assert len(client.containers.calls) == 3


def test_permanent_api_errors_are_not_retried_and_explained(layout: dict[str, Path]) -> None:
    permanent = APIError(
        "500", response=_response(500), explanation='could not select device driver "" with capabilities: [[gpu]]'
    )
    client = FakeClient([permanent, FakeContainer()])
    with pytest.raises(PreflightError, match="NVIDIA Container Toolkit"):
        make_runner(client=client).run(make_spec(layout), layout["run_dir"])
    assert len(client.containers.calls) == 1


def test_retries_give_up_with_the_engine_message(layout: dict[str, Path]) -> None:
    client = FakeClient(ping_error=APIError("Bad Gateway", response=_response(502), explanation="bad gateway"))
    with pytest.raises(DockerError, match=r"Docker failed to run the benchmark in a container \(bad gateway\)"):
        make_runner(client=client, attempts=3).run(make_spec(layout), layout["run_dir"])
    assert client.pings == 3


def test_an_engine_that_is_not_there_is_not_retried(layout: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    client = FakeClient(ping_error=requests.exceptions.ConnectionError("Connection refused"))
    with pytest.raises(
        DockerError,
        match=r"cannot reach the Docker engine at \S+ to run the benchmark in a "
        r"container \(connection refused\); start it .*--runner local",
    ) as err:
        make_runner(client=client).run(make_spec(layout), layout["run_dir"])
    assert client.pings == 1
    assert "\n" not in str(err.value)
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]


def _response(status: int) -> requests.Response:
    r = requests.Response()
    r.status_code = status
    return r


# --- pre-flight ------------------------------------------------------------------------------------
def test_missing_image_names_the_build_command(layout: dict[str, Path]) -> None:
    client = FakeClient(image=None)
    client.images.image = None
    with pytest.raises(PreflightError, match=r"`mlperf-bert images build onnxruntime-cpu`"):
        make_runner(client=client).run(make_spec(layout), layout["run_dir"])
    assert client.containers.calls == []


def test_image_built_for_another_target_is_refused(layout: dict[str, Path]) -> None:
    client = FakeClient(image=FakeImage("deepsparse-cpu"))
    with pytest.raises(PreflightError, match="built for deepsparse-cpu, not onnxruntime-cpu"):
        make_runner(client=client, image="mlperf-bert/deepsparse-cpu:latest").run(make_spec(layout), layout["run_dir"])


def test_gpu_target_without_gpu_fails_before_docker_is_asked(
    layout: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.runners import host_checks

    monkeypatch.setattr(host_checks.shutil, "which", lambda name: None)  # no nvidia-smi: no NVIDIA GPU
    client = FakeClient()
    with pytest.raises(PreflightError, match="needs an NVIDIA GPU.*--device cpu"):
        make_runner("tensorrt-cuda", client=client).run(make_spec(layout, "tensorrt-cuda"), layout["run_dir"])
    assert client.pings == 0 and client.containers.calls == []


def test_cpu_flags_for_deepsparse(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor: 0\nflags\t\t: fpu sse sse2 avx\n")
    with pytest.raises(PreflightError, match="needs a CPU with avx2"):
        host_checks.check_cpu_flags(TARGETS["deepsparse-cpu"], cpuinfo)
    cpuinfo.write_text("flags\t\t: fpu sse avx avx2 fma\n")
    host_checks.check_cpu_flags(TARGETS["deepsparse-cpu"], cpuinfo)
    host_checks.check_cpu_flags(TARGETS["onnxruntime-cpu"], tmp_path / "absent")  # needs nothing


def _probe_container(seen: dict[str, Any]) -> FakeContainer:
    return FakeContainer([f"noise\n{preflight.PROBE_MARK}{json.dumps(seen)}\n".encode()])


def test_gpu_probe_sees_no_gpu(layout: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preflight, "check_host", lambda target: None)  # pretend the host has one
    client = FakeClient(
        [_probe_container({"gpus": [], "providers": ["TensorRT"], "errors": ["nvidia-smi: no devices"]})],
        image=FakeImage("tensorrt-cuda"),
    )
    with pytest.raises(PreflightError, match="container sees no GPU.*NVIDIA Container Toolkit"):
        make_runner("tensorrt-cuda", client=client).run(make_spec(layout, "tensorrt-cuda"), layout["run_dir"])
    assert "device_requests" in client.containers.calls[0]


def test_gpu_probe_without_the_provider(layout: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preflight, "check_host", lambda target: None)
    probe = _probe_container({"gpus": ["/dev/dri/renderD128"], "providers": ["CPUExecutionProvider"], "errors": []})
    client = FakeClient([probe], image=FakeImage("onnxruntime-rocm"))
    with pytest.raises(PreflightError, match="offers CPUExecutionProvider but not ROCMExecutionProvider"):
        make_runner("onnxruntime-rocm", client=client).run(make_spec(layout, "onnxruntime-rocm"), layout["run_dir"])
    assert probe.removed == [True]


def test_gpu_probe_passes_then_the_run_starts(layout: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preflight, "check_host", lambda target: None)
    probe = _probe_container({"gpus": ["GPU 0: NVIDIA H100"], "providers": ["TensorRT"], "errors": []})
    run = FakeContainer()
    client = FakeClient([probe, run], image=FakeImage("tensorrt-cuda"))
    outcome = make_runner("tensorrt-cuda", client=client).run(make_spec(layout, "tensorrt-cuda"), layout["run_dir"])
    assert outcome.exit_code == 0
    assert client.containers.calls[0]["command"][:2] == ["python", "-c"]
    assert client.containers.calls[1]["command"] == ["python", "-m", "orchestrator.harness", "/run"]


# --- messages and debug --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("exc", "pattern", "kind"),
    [
        (
            requests.exceptions.ConnectionError("('Connection aborted.', FileNotFoundError(2))"),
            "cannot reach the Docker engine",
            DockerError,
        ),
        (requests.exceptions.ConnectionError("Permission denied: /var/run/docker.sock"), "docker group", DockerError),
        (
            APIError(
                "x",
                response=_response(500),
                explanation="error gathering device information while adding custom "
                'device "/dev/kfd": no such file or directory',
            ),
            "AMD GPU devices",
            PreflightError,
        ),
        (
            APIError(
                "x",
                response=_response(400),
                explanation='invalid mount config for type "bind": bind source path does not exist: /nope',
            ),
            "cannot mount a path",
            DockerError,
        ),
        (
            APIError("x", response=_response(500), explanation="no space left on device"),
            "docker system prune",
            DockerError,
        ),
        (
            APIError(
                "x", response=_response(500), explanation="Get https://registry/v2/: dial tcp: connection refused"
            ),
            r"^Docker failed to start a container \(Get",
            DockerError,
        ),  # the engine answered: it is a registry's refusal
    ],
)
def test_docker_errors_become_one_sentence_with_what_to_do(exc: Exception, pattern: str, kind: type) -> None:
    err = docker_error(exc, "start a container")
    assert isinstance(err, kind)
    assert re.search(pattern, str(err))
    assert "\n" not in str(err)


def test_connect_to_a_missing_socket_fails_at_once_in_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from orchestrator.containers.client import connect

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")  # the real SDK, nothing there
    with pytest.raises(DockerError) as err:
        connect("list images", otherwise=None)
    assert str(err.value) == (
        f"cannot reach the Docker engine at unix://{tmp_path}/no-engine.sock to list images (no socket there); "
        "start it (`sudo systemctl start docker`, or `bash .ci/docker-setup.sh`)"
    )
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]


def test_transient_classification() -> None:
    assert not is_transient(requests.exceptions.ConnectionError("Connection refused"))  # nothing listens
    assert not is_transient(
        requests.exceptions.ConnectionError(
            "('Connection aborted.', FileNotFoundError(2, 'No such file or directory'))"
        )
    )  # no socket file
    assert not is_transient(requests.exceptions.ConnectionError("Permission denied: /var/run/docker.sock"))
    assert is_transient(requests.exceptions.ConnectionError("('Connection aborted.', ConnectionResetError(104))"))
    assert is_transient(APIError("x", response=_response(503)))
    assert is_transient(APIError("x", response=_response(500), explanation="EOF"))
    assert not is_transient(APIError("x", response=_response(500), explanation="could not select device driver"))
    assert not is_transient(APIError("x", response=_response(404), explanation="No such image"))
    assert not is_transient(ValueError("bug"))


def test_exit_messages() -> None:
    assert exit_message(0, False, False) is None
    assert exit_message(1, False, False) is None  # the harness explains its own failures
    assert "SIGTERM" in (exit_message(143, False, False) or "")
    assert "interrupted" in (exit_message(130, False, False) or "")


def test_debug_opens_a_shell_with_everything_mounted(layout: dict[str, Path], tmp_path: Path) -> None:
    seen: list[list[str]] = []
    runner = make_runner(exec_fn=lambda argv: seen.append(argv) or 0)
    message = runner.debug(make_spec(layout), tmp_path / "out")
    (argv,) = seen
    assert argv[:3] == ["docker", "run", "--rm"] and argv[-2:] == ["mlperf-bert/onnxruntime-cpu:latest", "bash"]
    debug_dirs = list((tmp_path / "out").iterdir())
    assert len(debug_dirs) == 1 and "debug-onnxruntime-cpu" in debug_dirs[0].name
    assert f"source={debug_dirs[0].resolve()},target=/run" in " ".join(argv)
    assert json.loads((debug_dirs[0] / "harness.json").read_text())["model_path"] == "/models/bert.onnx"
    assert "python -m orchestrator.harness /run" in message and str(debug_dirs[0]) in message
