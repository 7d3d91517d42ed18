"""The Docker runner: the harness in one container per run, from the target's image.

The run is described by a `ContainerSpec` (image, mounts, devices, env, command) that one function
turns into the docker SDK call and another into the equivalent `docker run` line (--dry-run, --debug).
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
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from orchestrator.backends import Target
from orchestrator.errors import DockerError, MlperfBertError, PreflightError
from orchestrator.harness.spec import EXIT_INTERRUPTED, HarnessSpec
from orchestrator.logs import current_verbosity
from orchestrator.runners.runner import Runner, RunnerOutcome

log = logging.getLogger(__name__)

MODELS_DIR = "/models"
DATA_DIR = "/data"
RUN_DIR = "/run"
CACHE_DIR = "/cache"
INPUTS_DIR = "/inputs"
HARNESS_COMMAND = ("python", "-m", "orchestrator.harness", RUN_DIR)
CONTAINER_ENV = {
    "HOME": "/tmp",  # the caller's uid has no home in the image; libraries want a writable one
    "PYTHONUNBUFFERED": "1",
    "MLPERF_BERT_IN_CONTAINER": "1",
}


@dataclass(frozen=True)
class Mount:
    source: str  # host path
    target: str  # container path
    read_only: bool = True


@dataclass(frozen=True)
class ContainerSpec:
    """One container, described once; `sdk_run_kwargs` and `docker_run_argv` render it."""

    image: str
    command: tuple[str, ...]
    mounts: tuple[Mount, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    devices: tuple[str, ...] = ()  # "/dev/kfd:/dev/kfd:rwm"
    gpus: str | None = None  # NVIDIA: "all" or "0,1" (a device request, as `docker run --gpus`)
    group_add: tuple[str, ...] = ()
    shm_size: str | None = None
    cpuset_cpus: str | None = None
    mem_limit: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    name: str | None = None
    network: str = "none"  # the harness needs none, and a run cannot depend on it
    workdir: str | None = None
    stop_signal: str = "SIGINT"  # `docker stop` lets the harness record an interrupted run


def _device_request(gpus: str) -> Any:
    from docker.types import DeviceRequest

    if gpus == "all":
        return DeviceRequest(count=-1, capabilities=[["gpu"]])
    return DeviceRequest(device_ids=[g.strip() for g in gpus.split(",") if g.strip()], capabilities=[["gpu"]])


def sdk_run_kwargs(cs: ContainerSpec) -> dict[str, Any]:
    """Keyword arguments of `client.containers.run` (detached) for this container."""
    from docker.types import Mount as SdkMount

    kwargs: dict[str, Any] = {
        "image": cs.image,
        "command": list(cs.command),
        "detach": True,
        "init": True,
        "network_mode": cs.network,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "stop_signal": cs.stop_signal,
        "mounts": [SdkMount(target=m.target, source=m.source, type="bind", read_only=m.read_only)
                   for m in cs.mounts],
        "environment": dict(cs.env),
        "labels": dict(cs.labels),
    }
    optional = {
        "name": cs.name, "user": cs.user, "shm_size": cs.shm_size, "cpuset_cpus": cs.cpuset_cpus,
        "mem_limit": cs.mem_limit, "working_dir": cs.workdir,
        "devices": list(cs.devices) or None, "group_add": list(cs.group_add) or None,
        "device_requests": [_device_request(cs.gpus)] if cs.gpus else None,
    }
    kwargs.update({k: v for k, v in optional.items() if v is not None})
    return kwargs


def docker_run_argv(
    cs: ContainerSpec, *, docker: str = "docker", interactive: bool = False, tty: bool = False,
    command: tuple[str, ...] | None = None, with_name: bool = False,
) -> list[str]:
    """The `docker run` command line equivalent to `sdk_run_kwargs(cs)`."""
    argv = [docker, "run", "--rm"]
    if interactive:
        argv.append("-it" if tty else "-i")
    argv += ["--init", "--network", cs.network, "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
             "--stop-signal", cs.stop_signal]
    if with_name and cs.name:
        argv += ["--name", cs.name]
    if cs.user:
        argv += ["--user", cs.user]
    if cs.shm_size:
        argv += ["--shm-size", cs.shm_size]
    if cs.cpuset_cpus:
        argv += ["--cpuset-cpus", cs.cpuset_cpus]
    if cs.mem_limit:
        argv += ["--memory", cs.mem_limit]
    if cs.gpus:
        # docker parses --gpus as CSV: a list of devices needs its own quotes.
        argv += ["--gpus", cs.gpus if cs.gpus == "all" else f'"device={cs.gpus}"']
    for dev in cs.devices:
        argv += ["--device", dev]
    for group in cs.group_add:
        argv += ["--group-add", group]
    for key, value in cs.labels.items():
        argv += ["--label", f"{key}={value}"]
    for m in cs.mounts:
        argv += ["--mount", f"type=bind,source={m.source},target={m.target}" + (",readonly" if m.read_only else "")]
    for key, value in cs.env.items():
        argv += ["-e", f"{key}={value}"]
    if cs.workdir:
        argv += ["--workdir", cs.workdir]
    argv.append(cs.image)
    argv += list(command if command is not None else cs.command)
    return argv


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
    inner = spec.model_copy(update={
        "model_path": str(PurePosixPath(MODELS_DIR) / model.name),
        "features_path": str(PurePosixPath(DATA_DIR) / features.name),
        "run_dir": RUN_DIR,
        "engine_options": options,
    })
    return inner, tuple(mounts)


def amd_gpu_groups(dev: Path = Path("/dev")) -> tuple[str, ...]:
    """The host group ids owning /dev/kfd and /dev/dri/*, so the caller's uid may open them inside
    (group names such as `render` need not exist in the image)."""
    nodes = [dev / "kfd"] + (sorted((dev / "dri").iterdir()) if (dev / "dri").is_dir() else [])
    gids = sorted({str(p.stat().st_gid) for p in nodes if p.exists()})
    return tuple(gids) or ("video",)


def _short(text: str, limit: int = 200) -> str:
    first = next((ln.strip() for ln in str(text).splitlines() if ln.strip()), "")
    return first if len(first) <= limit else first[: limit - 3] + "..."


def _explanation(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    return _short(explanation if explanation else str(exc) or type(exc).__name__)


def _is_connection_error(exc: BaseException) -> bool:
    import requests

    if isinstance(exc, (requests.exceptions.ConnectionError, ConnectionError, FileNotFoundError)):
        return True
    text = str(exc).lower()
    return any(s in text for s in ("connection refused", "connection aborted", "connection reset",
                                   "error while fetching server api version"))


_PERMANENT = ("could not select device driver", "no such file or directory", "bind source path does not exist",
              "invalid", "not found", "no such image", "permission denied", "unknown runtime", "conflict",
              "no space left")


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: the engine is restarting (connection refused) or answered 502/503/504 or a 500
    that is not one of the known permanent failures."""
    from docker.errors import APIError

    if isinstance(exc, APIError):
        status = exc.status_code or 0
        if status in (502, 503, 504):
            return True
        if status == 500:
            return not any(s in _explanation(exc).lower() for s in _PERMANENT)
        return False
    return _is_connection_error(exc)


START_ENGINE = "start it (`sudo systemctl start docker`, or `bash .ci/docker-setup.sh`) or use --runner local"


def docker_error(exc: BaseException, action: str) -> MlperfBertError:
    """A Docker API failure as one sentence naming what to do."""
    text = _explanation(exc)
    low = text.lower()
    if "permission denied" in low and ("docker.sock" in low or "connect" in low):
        return DockerError(
            f"permission denied on the Docker socket while trying to {action}; add your user to the docker group "
            "(`sudo usermod -aG docker $USER`, then log in again) or use --runner local"
        )
    if _is_connection_error(exc):
        return DockerError(f"cannot reach the Docker engine to {action} ({text}); {START_ENGINE}")
    if "could not select device driver" in low:
        return PreflightError(
            f"Docker cannot give the container an NVIDIA GPU ({text}); install the NVIDIA Container Toolkit and "
            "restart Docker, or choose a CPU target such as --backend onnxruntime --device cpu"
        )
    if "/dev/kfd" in low or "/dev/dri" in low:
        return PreflightError(
            f"Docker cannot pass the AMD GPU devices to the container ({text}); check that the ROCm driver is "
            "loaded and /dev/kfd and /dev/dri exist, or choose --device cpu"
        )
    if "bind source path does not exist" in low or "invalid mount config" in low:
        return DockerError(
            f"Docker cannot mount a path to {action} ({text}); the model, features and run directory must exist "
            "on the machine that runs the Docker engine"
        )
    if "no space left" in low:
        return DockerError(f"the Docker engine ran out of disk space to {action}; free some with `docker system prune`")
    return DockerError(f"Docker failed to {action} ({text}); check `docker info`, then rerun with -vv for details")


def connect(action: str = "reach the Docker engine", *, attempts: int = 3) -> Any:
    """A docker client that has answered a ping, or one DockerError sentence."""
    import docker

    def attempt() -> Any:
        client = docker.from_env()
        client.ping()
        return client

    try:
        return Retrying(retry=retry_if_exception(is_transient), stop=stop_after_attempt(attempts),
                        wait=wait_exponential(multiplier=0.5, min=0.5, max=4), reraise=True,
                        before_sleep=_log_retry)(attempt)
    except Exception as exc:
        raise docker_error(exc, action) from exc


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.warning("transient Docker API error (%s); retrying in %.1f s", _explanation(exc) if exc else "?", wait)


def _container_name(run_dir: Path) -> str:
    base = re.sub(r"[^a-zA-Z0-9_.-]+", "-", Path(run_dir).name).strip("-.") or "run"
    return f"mlperf-bert-{base[:80]}-{secrets.token_hex(3)}"


def exit_message(exit_code: int, oom_killed: bool, interrupted: bool) -> str | None:
    """The runner's own explanation of how the container ended, when the harness could not say."""
    if oom_killed:
        return ("the container ran out of memory and the kernel killed it; lower --batch-size or give the "
                "container more memory")
    if interrupted or exit_code == EXIT_INTERRUPTED:
        return "the run was interrupted (Ctrl-C or `docker stop`); its partial logs are kept"
    if exit_code > 128:
        import signal

        try:
            name = signal.Signals(exit_code - 128).name
        except ValueError:
            name = f"signal {exit_code - 128}"
        return (f"the container was killed by {name} (exit {exit_code}) before the harness finished, e.g. by "
                "`docker kill` or the engine stopping; rerun it")
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
        client_factory: Callable[[], Any] | None = None,
        retry_attempts: int = 4,
        retry_wait: Any | None = None,
        stop_timeout: float = 30.0,
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
        self._client_factory = client_factory
        self.retry_attempts = retry_attempts
        self.retry_wait = retry_wait if retry_wait is not None else wait_exponential(multiplier=0.5, min=0.5, max=8)
        self.stop_timeout = stop_timeout
        self.docker_cli = docker_cli
        self._exec = exec_fn
        self.console = console
        self.dev_root = dev_root
        self._facts: Any | None = None  # set by preflight(), which the API calls before making a run dir

    # --- describing the container ------------------------------------------------------------
    def container_spec(self, spec: HarnessSpec, run_dir: Path) -> tuple[ContainerSpec, HarnessSpec]:
        inner, mounts = map_spec(spec, run_dir)
        devices, groups = self._amd_devices()
        cs = ContainerSpec(
            image=self.image_ref,
            command=HARNESS_COMMAND,
            mounts=mounts,
            env=dict(CONTAINER_ENV, MLPERF_BERT_VERBOSITY=str(current_verbosity())),
            user=f"{os.getuid()}:{os.getgid()}",
            devices=devices,
            gpus=self.gpus if self.target.gpu == "nvidia" else None,
            group_add=groups,
            shm_size=self.shm_size,
            cpuset_cpus=self.cpuset_cpus,
            mem_limit=self.memory,
            labels={"mlperf-bert.run": Path(run_dir).name, "mlperf-bert.target": self.target.key,
                    "mlperf-bert.run-dir": str(Path(run_dir).absolute())},
            name=_container_name(run_dir),
        )
        return cs, inner

    def _amd_devices(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        if self.target.gpu != "amd":
            return (), ()
        devices = (f"{self.dev_root}/kfd:/dev/kfd:rwm", f"{self.dev_root}/dri:/dev/dri:rwm")
        return devices, amd_gpu_groups(self.dev_root)

    def container_spec_for_probe(self) -> ContainerSpec:
        """The run's image, user and devices, nothing mounted (the pre-flight GPU probe)."""
        devices, groups = self._amd_devices()
        return ContainerSpec(
            image=self.image_ref, command=(), env=dict(CONTAINER_ENV), user=f"{os.getuid()}:{os.getgid()}",
            devices=devices, gpus=self.gpus if self.target.gpu == "nvidia" else None, group_add=groups,
            labels={"mlperf-bert.probe": self.target.key},
        )

    def describe(self, spec: HarnessSpec, run_dir: Path) -> str:
        cs, _ = self.container_spec(spec, run_dir)
        return shlex.join(docker_run_argv(cs, docker=self.docker_cli))

    # --- talking to the engine ---------------------------------------------------------------
    def _retrying(self) -> Retrying:
        return Retrying(
            retry=retry_if_exception(is_transient), stop=stop_after_attempt(self.retry_attempts),
            wait=self.retry_wait, reraise=True, before_sleep=_log_retry,
        )

    def call(self, action: str, fn: Callable[[], Any]) -> Any:
        """fn() with retries for transient Docker API errors; other errors become one sentence."""
        try:
            return self._retrying()(fn)
        except MlperfBertError:
            raise
        except Exception as exc:
            from docker.errors import ImageNotFound

            if isinstance(exc, ImageNotFound):
                raise self.missing_image_error() from exc
            raise docker_error(exc, action) from exc

    def missing_image_error(self) -> PreflightError:
        return PreflightError(
            f"the image {self.image_ref} is not on this Docker engine; build it with "
            f"`mlperf-bert images build {self.target.key}` (or pass --image)"
        )

    @property
    def client(self) -> Any:
        if self._client is None:
            def connect() -> Any:
                if self._client_factory is not None:
                    return self._client_factory()
                import docker

                return docker.from_env()

            self._client = self.call("connect", connect)
        return self._client

    def preflight(self) -> Any:
        """Everything checked before a container starts; returns the image's facts (preflight.ImageFacts)."""
        from orchestrator.containers import preflight

        self._facts = preflight.run_preflight(self)
        return self._facts

    # --- running -------------------------------------------------------------------------------
    def run(self, spec: HarnessSpec, run_dir: Path) -> RunnerOutcome:
        facts = self._facts if self._facts is not None else self.preflight()
        cs, inner = self.container_spec(spec, run_dir)
        for m in cs.mounts:
            if not m.read_only:
                Path(m.source).mkdir(parents=True, exist_ok=True)
        inner.write(Path(run_dir))
        log_path = Path(run_dir) / "harness.log"
        log.info("docker runner: %s", shlex.join(docker_run_argv(cs, docker=self.docker_cli)))
        container = None
        interrupted = False
        exit_code: int | None = None
        oom = False
        with log_path.open("wb") as sink:
            try:
                container = self.call(f"start a container from {self.image_ref}", lambda: self._start(cs))
                written = [0]  # bytes of log already copied, kept even when Ctrl-C cuts the stream
                try:
                    self._follow(container, sink, written)
                    exit_code = self._wait(container)
                except KeyboardInterrupt:
                    interrupted = True
                    exit_code = self._interrupt(container)
                    self._catch_up(container, sink, written[0])
                oom = self._oom_killed(container)
            except MlperfBertError:
                raise
            except Exception as exc:
                if _is_connection_error(exc):
                    raise DockerError(
                        f"lost the Docker engine while the container ran ({_explanation(exc)}); the logs so far are "
                        f"in {log_path}; {START_ENGINE}"
                    ) from exc
                raise docker_error(exc, "follow the container") from exc
            finally:
                if container is not None:
                    self._remove(container)
        assert exit_code is not None
        interrupted = interrupted or exit_code == EXIT_INTERRUPTED
        return RunnerOutcome(
            exit_code=exit_code, log_path=log_path, image=self.image_ref, image_digest=facts.digest,
            oom_killed=oom, interrupted=interrupted, message=exit_message(exit_code, oom, interrupted),
            extra={"container": cs.name or "", "image_id": facts.image_id},
        )

    def _start(self, cs: ContainerSpec) -> Any:
        from docker.errors import NotFound

        # A retried start must not trip over a container half-made by the failed attempt.
        if cs.name:
            try:
                self.client.containers.get(cs.name).remove(force=True)
            except NotFound:
                pass
        return self.client.containers.run(**sdk_run_kwargs(cs))

    def _echo(self, chunk: bytes) -> None:
        if not self.stream:
            return
        out = self.console or sys.stderr.buffer
        out.write(chunk)
        out.flush()

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

    def _interrupt(self, container: Any) -> int:
        """Ctrl-C: SIGINT lets the harness record an interrupted run; a second Ctrl-C or a hang kills it."""
        log.warning("interrupting the container (Ctrl-C again to kill it)")
        try:
            container.kill(signal="SIGINT")
            return self._wait(container, timeout=self.stop_timeout)
        except KeyboardInterrupt:
            log.warning("killing the container")
        except Exception as exc:  # noqa: BLE001 - timeout or already gone: kill below
            log.warning("the container did not stop after SIGINT (%s); killing it", _explanation(exc))
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

    def _remove(self, container: Any) -> None:
        from docker.errors import NotFound

        try:
            container.remove(force=True)
        except NotFound:
            pass
        except Exception as exc:  # noqa: BLE001 - never mask the run's own outcome
            name = getattr(container, "name", None) or getattr(container, "id", "?")
            log.warning("could not remove container %s (%s); remove it with `docker rm -f %s`",
                        name, _explanation(exc), name)

    # --- debugging -----------------------------------------------------------------------------
    def debug(self, spec: HarnessSpec, output_dir: Path) -> str:
        """An interactive shell in the container, everything mounted, harness.json written."""
        from orchestrator.runs import new_run_dir

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
        return (f"debug shell closed (exit {code}); the run directory is {run_dir}; inside the container the "
                f"harness runs as: {harness}")

    def _exec_cli(self, argv: list[str]) -> int:
        if shutil.which(argv[0]) is None:
            raise DockerError(
                f"--debug needs the `{argv[0]}` command-line client, which is not installed; install docker.io "
                "(Debian) or docker-ce-cli"
            )
        return subprocess.call(argv)
