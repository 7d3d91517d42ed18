"""The Docker runner: the harness in one container per run, from the target's image.

The run is described by a `ContainerSpec` (container_spec.py: image, mounts, devices, env, command),
rendered as the docker SDK call and as the equivalent `docker run` line (--dry-run, --debug).
Host paths in the HarnessSpec become mount points:

    model file's directory   -> /models   read-only
    features file's directory -> /data    read-only
    run directory            -> /run      read-write (harness.json, logs, results)
    engine option `*_dir`    -> /cache/<option>          read-write (e.g. a TensorRT engine cache)
    engine option `*_path`   -> /inputs/<option>/<name>  read-only

The container runs as the caller's uid:gid (files in the run directory belong to the caller), with no
network, no capabilities, `--init` (signals reach the harness), and is always removed at the end.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from signal import SIGINT
from typing import IO, Any

from orchestrator.backends import Target
from orchestrator.containers.client import (
    DEFAULT_RETRY,
    START_ENGINE,
    USE_LOCAL,
    RetryPolicy,
    call,
    connect,
    docker_error,
    explanation,
    is_connection_error,
    is_not_found,
)
from orchestrator.containers.container_spec import (
    CONTAINER_ENV,
    ContainerSpec,
    Mount,
    caller_user,
    docker_run_argv,
    gpu_access,
    sdk_run_kwargs,
)
from orchestrator.containers.preflight import ImageFacts, missing_image_error, run_preflight
from orchestrator.errors import DockerError, MlperfBertError
from orchestrator.harness.spec import EXIT_INTERRUPTED, HarnessSpec
from orchestrator.logs import current_verbosity
from orchestrator.runners.runner import STOP_GRACE_S, Runner, RunnerOutcome, Started, StartHook
from orchestrator.runs import new_run_dir
from orchestrator.stop_signals import signal_name, signal_of

log = logging.getLogger(__name__)

MODELS_DIR = "/models"
DATA_DIR = "/data"
RUN_DIR = "/run"
CACHE_DIR = "/cache"
INPUTS_DIR = "/inputs"
HARNESS_COMMAND = ("python", "-m", "orchestrator.harness", RUN_DIR)


def map_spec(spec: HarnessSpec, run_dir: Path) -> tuple[HarnessSpec, tuple[Mount, ...]]:
    """The spec as the container sees it, and the mounts that make it true. Pure: touches nothing."""
    model = Path(spec.model_path)
    features = Path(spec.features_path)
    mounts = [
        Mount(str(model.parent), MODELS_DIR, True),
        Mount(str(features.parent), DATA_DIR, True),
        Mount(str(Path(run_dir).absolute()), RUN_DIR, False),
    ]
    options = dict(spec.engine_options)
    for key in sorted(options):
        value = options[key]
        if not os.path.isabs(value):
            continue
        if key.endswith("_dir"):
            target = f"{CACHE_DIR}/{key}"
            mounts.append(Mount(value, target, False))
            options[key] = target
        elif key.endswith(("_path", "_file")):
            host = Path(value)
            mounts.append(Mount(str(host.parent), f"{INPUTS_DIR}/{key}", True))
            options[key] = f"{INPUTS_DIR}/{key}/{host.name}"
    inner = spec.model_copy(
        update={
            "model_path": str(PurePosixPath(MODELS_DIR) / model.name),
            "features_path": str(PurePosixPath(DATA_DIR) / features.name),
            "run_dir": RUN_DIR,
            "engine_options": options,
        }
    )
    return inner, tuple(mounts)


def echo(chunk: bytes, console: IO[bytes] | None = None) -> None:
    """A piece of a container's output onto the console (stderr unless given), as it comes."""
    out = console or sys.stderr.buffer
    out.write(chunk)
    out.flush()


def _container_name(run_dir: Path) -> str:
    base = re.sub(r"[^a-zA-Z0-9_.-]+", "-", Path(run_dir).name).strip("-.") or "run"
    return f"mlperf-bert-{base[:80]}-{secrets.token_hex(3)}"


def exit_message(exit_code: int, oom_killed: bool, interrupted: bool) -> str | None:
    """The runner's own explanation of how the container ended, when the harness could not say."""
    if oom_killed:
        return (
            "the container ran out of memory and the kernel killed it; lower --batch-size or give the "
            "container more memory"
        )
    if interrupted or exit_code == EXIT_INTERRUPTED:
        return "the run was interrupted (Ctrl-C or `docker stop`); its partial logs are kept"
    if exit_code > 128:
        try:
            name = signal.Signals(exit_code - 128).name
        except ValueError:
            name = f"signal {exit_code - 128}"
        return (
            f"the container was killed by {name} (exit {exit_code}) before the harness finished, e.g. by "
            "`docker kill` or the engine stopping; rerun it"
        )
    return None


class DockerRunner(Runner):
    name = "docker"

    def __init__(
        self,
        target: Target,
        *,
        image: str | None = None,
        stream: bool = True,
        gpus: str = "all",
        shm_size: str | None = "1g",
        cpuset_cpus: str | None = None,
        memory: str | None = None,
        client: Any | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        stop_timeout: float = STOP_GRACE_S,
        docker_cli: str = "docker",
        exec_fn: Callable[[list[str]], int] | None = None,
        console: IO[bytes] | None = None,
        dev_root: Path = Path("/dev"),
    ) -> None:
        self.target = target
        self.image_ref = image or f"{target.image}:latest"
        self.stream = stream
        self.gpus = gpus
        self.shm_size = shm_size
        self.cpuset_cpus = cpuset_cpus
        self.memory = memory
        self._client = client
        self.retry = retry
        self.stop_timeout = stop_timeout
        self.docker_cli = docker_cli
        self._exec = exec_fn
        self.console = console
        self.dev_root = dev_root
        self._facts: ImageFacts | None = None  # set by preflight(), which the API calls before making a run dir

    # --- describing the container ------------------------------------------------------------
    def container_spec(self, spec: HarnessSpec, run_dir: Path) -> tuple[ContainerSpec, HarnessSpec]:
        inner, mounts = map_spec(spec, run_dir)
        access = gpu_access(self.target, self.gpus, self.dev_root)
        cs = ContainerSpec(
            image=self.image_ref,
            command=HARNESS_COMMAND,
            mounts=mounts,
            env=dict(CONTAINER_ENV, MLPERF_BERT_VERBOSITY=str(current_verbosity())),
            user=caller_user(),
            devices=access.devices,
            gpus=access.gpus,
            group_add=access.group_add,
            shm_size=self.shm_size,
            cpuset_cpus=self.cpuset_cpus,
            mem_limit=self.memory,
            labels={
                "mlperf-bert.run": Path(run_dir).name,
                "mlperf-bert.target": self.target.key,
                "mlperf-bert.run-dir": str(Path(run_dir).absolute()),
            },
            name=_container_name(run_dir),
        )
        return cs, inner

    def describe(self, spec: HarnessSpec, run_dir: Path) -> str:
        cs, _ = self.container_spec(spec, run_dir)
        return shlex.join(docker_run_argv(cs, docker=self.docker_cli))

    # --- talking to the engine ---------------------------------------------------------------
    def call(self, action: str, fn: Callable[[], Any]) -> Any:
        """fn() under the one retry policy; other errors become one sentence."""
        return call(
            action, fn, retry=self.retry, missing_image=lambda: missing_image_error(self.target, self.image_ref)
        )

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = connect("run the benchmark in a container", retry=self.retry)
        return self._client

    def preflight(self) -> None:
        """Everything checked before a container starts (the image's facts kept for the run)."""
        self._checked_image()

    def _checked_image(self) -> ImageFacts:
        self._facts = run_preflight(
            self.target,
            self.image_ref,
            lambda: self.client,
            access=gpu_access(self.target, self.gpus, self.dev_root),
            retry=self.retry,
        )
        return self._facts

    # --- running -------------------------------------------------------------------------------
    def run(self, spec: HarnessSpec, run_dir: Path, *, on_start: StartHook | None = None) -> RunnerOutcome:
        facts = self._facts if self._facts is not None else self._checked_image()
        cs, inner = self.container_spec(spec, run_dir)
        for m in cs.mounts:
            if not m.read_only:
                Path(m.source).mkdir(parents=True, exist_ok=True)
        inner.write(Path(run_dir))
        log_path = Path(run_dir) / "harness.log"
        log.info("docker runner: container %s from %s", cs.name, self.image_ref)
        log.debug("docker runner: %s", shlex.join(docker_run_argv(cs, docker=self.docker_cli)))
        container = None
        signum: int | None = None
        exit_code: int | None = None
        oom = False
        with log_path.open("wb") as sink:
            try:
                try:
                    container = self.call(f"start a container from {self.image_ref}", lambda: self._start(cs))
                except KeyboardInterrupt:
                    self._remove_named(cs.name)  # the engine may have made it before the interrupt landed
                    raise
                written = [0]  # bytes of log already copied, kept even when Ctrl-C cuts the stream
                try:
                    if on_start is not None:
                        on_start(Started(container_id=str(container.id)))
                    self._follow(container, sink, written)
                    exit_code = self._wait(container)
                except KeyboardInterrupt as exc:
                    signum = signal_of(exc)
                    exit_code = self._interrupt(container, signum)
                    self._catch_up(container, sink, written[0])
                oom = self._oom_killed(container)
            except MlperfBertError:
                raise
            except Exception as exc:
                if is_connection_error(exc):
                    raise DockerError(
                        f"lost the Docker engine while the container ran ({explanation(exc)}); the logs so far are "
                        f"in {log_path}; {START_ENGINE} or {USE_LOCAL}"
                    ) from exc
                raise docker_error(exc, "follow the container") from exc
            finally:
                if container is not None:
                    self._remove(container)
        assert exit_code is not None
        if signum is None and exit_code == EXIT_INTERRUPTED:  # `docker stop`, or a SIGINT sent to the container
            signum = SIGINT
        interrupted = signum is not None
        return RunnerOutcome(
            exit_code=exit_code,
            log_path=log_path,
            image=self.image_ref,
            image_digest=facts.digest,
            oom_killed=oom,
            interrupted=interrupted,
            signal=signum,
            message=exit_message(exit_code, oom, interrupted),
            extra={"container": cs.name or "", "image_id": facts.image_id},
        )

    def _start(self, cs: ContainerSpec) -> Any:
        # A retried start must not trip over a container half-made by the failed attempt.
        if cs.name:
            try:
                self.client.containers.get(cs.name).remove(force=True)
            except Exception as exc:
                if not is_not_found(exc):
                    raise
        return self.client.containers.run(**sdk_run_kwargs(cs))

    def _echo(self, chunk: bytes) -> None:
        if self.stream:
            echo(chunk, self.console)

    def _follow(self, container: Any, sink: IO[bytes], written: list[int]) -> None:
        for chunk in container.logs(stream=True, follow=True):
            sink.write(chunk)
            sink.flush()
            written[0] += len(chunk)
            self._echo(chunk)

    def _catch_up(self, container: Any, sink: IO[bytes], written: int) -> None:
        """After an interrupt the stream was cut: append what the container printed since."""
        try:
            data = container.logs(stream=False)
        except Exception:  # noqa: BLE001 - best effort; the container may already be gone
            return
        rest = data[written:] if isinstance(data, bytes) and len(data) > written else b""
        if rest:
            sink.write(rest)
            self._echo(rest)

    def _wait(self, container: Any, timeout: float | None = None) -> int:
        result = container.wait(timeout=timeout) if timeout is not None else container.wait()
        return int(result.get("StatusCode", 1))

    def _interrupt(self, container: Any, signum: int) -> int:
        """Ctrl-C, SIGTERM or SIGHUP: the harness is told to stop (SIGINT for Ctrl-C, else SIGTERM; both let
        it record an interrupted run), given stop_timeout to do so, and killed on a second one or a hang."""
        if signum == SIGINT:
            log.warning("interrupting the container (Ctrl-C again to kill it)")
        else:
            log.warning("%s: stopping the container (again to kill it)", signal_name(signum))
        try:
            container.kill(signal="SIGINT" if signum == SIGINT else "SIGTERM")
            return self._wait(container, timeout=self.stop_timeout)
        except KeyboardInterrupt:
            log.warning("killing the container")
        except Exception as exc:  # noqa: BLE001 - timeout or already gone: kill below
            log.warning(
                "the container did not stop within %.0f s (%s); killing it", self.stop_timeout, explanation(exc)
            )
        try:
            container.kill()
            return self._wait(container, timeout=self.stop_timeout)
        except Exception:  # noqa: BLE001 - it is removed with force below anyway
            return EXIT_INTERRUPTED

    def _oom_killed(self, container: Any) -> bool:
        try:
            container.reload()
        except Exception:  # noqa: BLE001 - gone already: no verdict
            return False
        return bool(container.attrs.get("State", {}).get("OOMKilled", False))

    def _remove_named(self, name: str | None) -> None:
        if not name:
            return
        try:
            self._remove(self.client.containers.get(name))
        except Exception:  # noqa: BLE001 - never made, or gone: nothing to remove
            return

    def _remove(self, container: Any) -> None:
        try:
            container.remove(force=True)
        except Exception as exc:  # noqa: BLE001 - never mask the run's own outcome
            if is_not_found(exc):
                return
            name = getattr(container, "name", None) or getattr(container, "id", "?")
            log.warning(
                "could not remove container %s (%s); remove it with `docker rm -f %s`", name, explanation(exc), name
            )

    # --- debugging -----------------------------------------------------------------------------
    def debug(self, spec: HarnessSpec, output_dir: Path) -> str:
        """An interactive shell in the container, everything mounted, harness.json written."""
        self.preflight()
        run_dir = new_run_dir(Path(output_dir), f"debug-{self.target.key}")
        spec = spec.model_copy(update={"run_dir": str(run_dir.resolve())})
        cs, inner = self.container_spec(spec, run_dir)
        for m in cs.mounts:
            if not m.read_only:
                Path(m.source).mkdir(parents=True, exist_ok=True)
        inner.write(run_dir)
        harness = shlex.join(cs.command)
        tty = sys.stdin.isatty() and sys.stdout.isatty()
        argv = docker_run_argv(cs, docker=self.docker_cli, interactive=True, tty=tty, command=("bash",))
        log.info("run directory %s; inside the container the run is: %s", run_dir, harness)
        log.info("opening a shell: %s", shlex.join(argv))
        code = (self._exec or self._exec_cli)(argv)
        return (
            f"debug shell closed (exit {code}); the run directory is {run_dir}; inside the container the "
            f"harness runs as: {harness}"
        )

    def _exec_cli(self, argv: list[str]) -> int:
        if shutil.which(argv[0]) is None:
            raise DockerError(
                f"--debug needs the `{argv[0]}` command-line client, which is not installed; install docker.io "
                "(Debian) or docker-ce-cli"
            )
        return subprocess.call(argv)
