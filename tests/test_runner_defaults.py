"""What the Runner base class gives every runner: a no-op preflight() and a debug() that explains it needs a
container runner (the local runner keeps both; the Docker runner overrides both, tests/test_docker_runner.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from orchestrator.harness.spec import HarnessSpec
from orchestrator.runners.local import LocalRunner
from orchestrator.runners.runner import Runner, RunnerOutcome, StartHook

SPEC = HarnessSpec(
    target="onnxruntime-cpu",
    engine_class="m:C",
    execution_provider="CPUExecutionProvider",
    model_path="/m.onnx",
    features_path="/f.npz",
    run_dir="/r",
    scenario="Offline",
    modes=["accuracy"],
)


class BareRunner(Runner):
    name = "bare"

    def run(self, spec: HarnessSpec, run_dir: Path, *, on_start: StartHook | None = None) -> RunnerOutcome:
        return RunnerOutcome(exit_code=0, log_path=run_dir / "harness.log")


def test_preflight_is_a_no_op_by_default() -> None:
    assert BareRunner().preflight() is None


@pytest.mark.parametrize("runner", [BareRunner(), LocalRunner()])
def test_debug_needs_a_container_runner(runner: Runner, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        runner.debug(SPEC, tmp_path)
    assert str(caught.value) == "--debug opens a shell in the container; use it with --runner docker"
    assert not any(tmp_path.iterdir())  # nothing written


def test_local_preflight_uses_this_interpreter_for_the_main_environment() -> None:
    assert LocalRunner(local_env="main").preflight() is None  # nothing to build


@pytest.mark.parametrize(
    ("unusable", "chosen", "says"),
    [
        (
            None,
            "docker",
            "runner docker (auto: the image mlperf-bert/onnxruntime-cpu:latest is present; --runner local",
        ),
        (
            "no Docker engine answers",
            "local",
            "runner local (auto: no Docker engine answers; `mlperf-bert images build",
        ),
    ],
)
def test_the_auto_runner_says_which_runner_it_chose_and_why_in_one_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, unusable: str | None, chosen: str, says: str
) -> None:
    from orchestrator.backends import TARGETS
    from orchestrator.config import RunConfig
    from orchestrator.workflows import benchmark

    monkeypatch.setattr(benchmark, "docker_unusable", lambda target: unusable)
    with caplog.at_level(logging.INFO, logger="orchestrator.workflows.benchmark"):
        runner = benchmark.make_runner(RunConfig(runner="auto"), TARGETS["onnxruntime-cpu"])
    assert runner.name == chosen
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert line.startswith(says) and "\n" not in line


def test_local_env_current_runs_the_harness_in_this_python() -> None:
    """--local-env current: this interpreter, even for a target with its own managed venv (no venv built)."""
    import sys
    from pathlib import Path

    from orchestrator.backends import TARGETS
    from orchestrator.config import LocalEnv, RunConfig, RunnerKind
    from orchestrator.runners.local import LocalRunner
    from orchestrator.workflows.benchmark import make_runner

    target = TARGETS["pytorch-cpu"]
    config = RunConfig(backend="pytorch", runner=RunnerKind.local, local_env=LocalEnv.current)
    runner = make_runner(config, target, stream=False)
    assert isinstance(runner, LocalRunner)
    assert runner.command(Path("/run"))[0] == sys.executable
    managed = make_runner(config.model_copy(update={"local_env": LocalEnv.auto}), target, stream=False)
    assert isinstance(managed, LocalRunner) and managed.local_env == "pytorch-cpu"


def test_stop_grace_reaches_every_runner() -> None:
    """--stop-grace-s: the seconds every runner gives a stopped harness or container before killing it."""
    from orchestrator.backends import TARGETS
    from orchestrator.config import RunConfig
    from orchestrator.containers.cluster_runner import ClusterRunner
    from orchestrator.containers.docker_runner import DockerRunner
    from orchestrator.runners.runner import STOP_GRACE_S
    from orchestrator.workflows.benchmark import make_runner

    target = TARGETS["onnxruntime-cpu"]
    runners = {
        "local": RunConfig(runner="local", stop_grace_s=5),  # type: ignore[arg-type]
        "ray": RunConfig(runner="ray", stop_grace_s=5),  # type: ignore[arg-type]
        "cluster": RunConfig(runner="ray", cluster="demo", stop_grace_s=5),  # type: ignore[arg-type]
        "docker": RunConfig(runner="docker", stop_grace_s=5),  # type: ignore[arg-type]
    }
    for kind, config in runners.items():
        runner = make_runner(config, target, stream=False)
        grace = runner.stop_timeout if isinstance(runner, DockerRunner) else runner.stop_grace_s  # type: ignore[attr-defined]
        assert grace == 5, kind
        assert isinstance(runner, ClusterRunner) == (kind == "cluster")
    assert make_runner(RunConfig(runner="local"), target).stop_grace_s == STOP_GRACE_S  # type: ignore[arg-type,attr-defined]
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        RunConfig(stop_grace_s=-1)


def test_the_default_batch_is_one_where_no_batch_can_be_larger() -> None:
    """SingleStream's queries are one sample each, and the reference SUT runs batch 1: run.json must not
    record the target's default (2 on onnxruntime-cpu) as the batch size that ran."""
    from orchestrator.backends import TARGETS
    from orchestrator.config import RunConfig
    from orchestrator.workflows.benchmark import effective_batch_size, with_default_batch_size

    target = TARGETS["onnxruntime-cpu"]
    assert effective_batch_size(RunConfig(scenario="SingleStream"), target) == 1  # type: ignore[arg-type]
    assert effective_batch_size(RunConfig(sut="reference"), target) == 1  # type: ignore[arg-type]
    assert effective_batch_size(RunConfig(scenario="Offline"), target) == target.batch_size  # type: ignore[arg-type]
    assert effective_batch_size(RunConfig(scenario="MultiStream"), target) == target.batch_size  # type: ignore[arg-type]
    given = RunConfig(scenario="SingleStream", batch_size=8)  # type: ignore[arg-type]
    assert with_default_batch_size(given, target).batch_size == 8


def test_the_harness_in_this_python_needs_the_engines_packages_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """--local-env current (or a target of the main environment) without the engine's packages: one sentence
    before any run directory, saying to install them or to let the runner build the backend's environment."""
    import importlib.util

    from orchestrator.backends import TARGETS
    from orchestrator.config import LocalEnv, RunConfig, RunnerKind
    from orchestrator.errors import PreflightError
    from orchestrator.workflows.benchmark import make_runner

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("torch", "transformers") else real(name, *a),
    )
    config = RunConfig(backend="pytorch", runner=RunnerKind.local, local_env=LocalEnv.current)
    runner = make_runner(config, TARGETS["pytorch-cpu"], stream=False)
    with pytest.raises(
        PreflightError,
        match="lacks torch and transformers; install torch and transformers in it .* drop --local-env current",
    ):
        runner.preflight()
    make_runner(RunConfig(runner=RunnerKind.local), TARGETS["onnxruntime-cpu"], stream=False).preflight()  # has it


def test_a_target_the_scenario_does_not_read_is_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    from orchestrator.config import RunConfig
    from orchestrator.workflows.benchmark import warn_unused_targets

    with caplog.at_level(logging.WARNING, logger="orchestrator.workflows.benchmark"):
        warn_unused_targets(RunConfig(scenario="SingleStream", target_qps=20))  # type: ignore[arg-type]
        warn_unused_targets(RunConfig(scenario="Offline", target_latency_ms=50))  # type: ignore[arg-type]
        warn_unused_targets(RunConfig(scenario="Server", target_qps=20, target_latency_ms=130))  # type: ignore[arg-type]
    assert [r.getMessage() for r in caplog.records] == [
        "SingleStream does not read --target-qps (Offline and Server do); it changes nothing",
        "Offline does not read --target-latency-ms (the other scenarios do); it changes nothing",
    ]
