"""`run --runner ray --cluster NAME`: the harness (the Ray driver, with LoadGen) in the head container of a
`cluster up` cluster, on the cluster's internal network, by `docker exec`.

Nothing of the cluster is published on the host, so the driver cannot run here: the run's inputs go into
the head, the harness runs there, its results come back. How the inputs get there:

    under the cluster's `--data` folder -> read in place, at /data (the head's read-only mount)
    elsewhere                           -> copied into the head (put_archive) into a scratch directory

The harness's own run directory is a scratch directory in the head (`/tmp/mlperf-bert-runs/<run>`, in the
container's writable layer: the cluster's rootfs is not read-only and has no tmpfs); the harness writes
accuracy/, performance/ and harness_result.json there, and they are copied into the host run directory at
the end (also after a failure or an interrupt), then the scratch directory is removed. The workers get the
model through Ray's object store and each batch's inputs with its call (ray_pool.py), as on any cluster.
The harness reaches Ray at the head's address; the cluster's token is in the container's environment
since `cluster up` (never in the spec or a record).

Ctrl-C or SIGTERM: SIGINT is sent to the harness inside the head (an exec of `kill -INT`; Ray's driver
handles SIGTERM itself, see ray_runner.py), which records an interrupted run; a second interrupt, or no
end within the grace time, kills it.
"""

from __future__ import annotations

import io
import json
import logging
import shlex
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from signal import SIGINT
from typing import IO, Any

from orchestrator.backends import Target
from orchestrator.containers.client import call, connect
from orchestrator.containers.cluster import (
    DATA_MOUNT,
    RAY_PORT,
    ROLE_LABEL,
    TARGET_LABEL,
    container_name,
    labelled,
    network_name,
    ray_image,
    ray_probe,
)
from orchestrator.containers.docker_runner import echo
from orchestrator.errors import DockerError, PreflightError, RunError
from orchestrator.harness.spec import EXIT_INTERRUPTED, SPEC_FILE, HarnessSpec, RaySpec
from orchestrator.logs import current_verbosity
from orchestrator.runners.runner import STOP_GRACE_S, Runner, RunnerOutcome, StartHook
from orchestrator.stop_signals import signal_name, signal_of

log = logging.getLogger(__name__)

SCRATCH_ROOT = "/tmp/mlperf-bert-runs"
PID_FILE = "harness.pid"


def scratch_dir(run_dir: Path) -> PurePosixPath:
    return PurePosixPath(SCRATCH_ROOT) / Path(run_dir).name


def _under(path: Path, root: Path | None) -> PurePosixPath | None:
    """`path` as the head sees it through its /data mount of `root`, or None when it lies elsewhere."""
    if root is None:
        return None
    try:
        rel = Path(path).resolve().relative_to(root.resolve())
    except ValueError:
        return None
    return PurePosixPath(DATA_MOUNT) / rel.as_posix()


def map_spec(
    spec: HarnessSpec, run_dir: Path, data_root: Path | None, head_address: str
) -> tuple[HarnessSpec, dict[Path, PurePosixPath]]:
    """The spec as the harness in the head sees it, and the host files to copy there (host -> head path).
    Pure: touches nothing."""
    scratch = scratch_dir(run_dir)
    copies: dict[Path, PurePosixPath] = {}

    def place(host: Path, where: PurePosixPath) -> str:
        seen = _under(host, data_root)
        if seen is not None:
            return str(seen)
        copies[host] = where / host.name
        return str(where / host.name)

    options = dict(spec.engine_options)
    for key in sorted(options):
        value = options[key]
        if not value.startswith("/"):
            continue
        if key.endswith("_dir"):  # a cache: the driver's own, in the scratch directory (each actor has its own)
            options[key] = str(scratch / "cache" / key)
        elif key.endswith(("_path", "_file")):
            options[key] = place(Path(value), scratch / "inputs" / key)
    ray = spec.ray or RaySpec()
    inner = spec.model_copy(
        update={
            "model_path": place(Path(spec.model_path), scratch / "inputs" / "model"),
            "features_path": place(Path(spec.features_path), scratch / "inputs" / "features"),
            "run_dir": str(scratch / "run"),
            "engine_options": options,
            "ray": ray.model_copy(update={"address": f"{head_address}:{RAY_PORT}", "node_cache_dir": None}),
        }
    )
    return inner, copies


def _tar(files: dict[Path, PurePosixPath], root: PurePosixPath, uid: int, gid: int) -> bytes:
    """A tar of host files (or folders) at their head paths relative to `root`, owned by the head's user."""

    def owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid, info.gid, info.uname, info.gname = uid, gid, "", ""
        return info

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for host, inside in sorted(files.items(), key=lambda kv: str(kv[1])):
            tar.add(str(host), arcname=str(inside.relative_to(root)), filter=owned)
    return buf.getvalue()


def _extract_results(archive: bytes, top: str, run_dir: Path) -> list[str]:
    """The harness's run directory (a tar whose top folder is `top`) into the host run directory; the spec
    and the log are the host's own. Returns what was copied."""
    copied = []
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        members = []
        for m in tar.getmembers():
            parts = PurePosixPath(m.name).parts
            if not parts or parts[0] != top or len(parts) == 1:
                continue
            rel = PurePosixPath(*parts[1:])
            if ".." in rel.parts or str(rel) in (SPEC_FILE, "harness.log") or not (m.isfile() or m.isdir()):
                continue
            m.name = str(rel)
            members.append(m)
            if m.isfile():
                copied.append(str(rel))
        tar.extractall(run_dir, members=members, filter="data")
    return copied


class ClusterRunner(Runner):
    name = "ray"  # the Ray runner, its driver in the cluster's head (run.json's config names the cluster)

    def __init__(
        self,
        target: Target,
        *,
        cluster: str,
        stream: bool = True,
        client: Any | None = None,
        stop_grace_s: float = STOP_GRACE_S,
        console: IO[bytes] | None = None,
    ) -> None:
        self.target = target
        self.cluster = cluster
        self.stream = stream
        self._client = client
        self.stop_grace_s = stop_grace_s
        self.console = console
        self._head: Any | None = None
        self._nodes: list[Any] = []

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = connect("run the benchmark on the Ray cluster", otherwise=None)
        return self._client

    # --- before a run directory exists ---------------------------------------------------------------
    def preflight(self) -> None:
        """The cluster exists, was made for this target, its head runs and Ray sees every node alive."""
        name, key = self.cluster, self.target.key
        up = f"mlperf-bert cluster up --name {name} --backend {self.target.backend} --device {self.target.device}"
        containers, _ = labelled(self.client, name)
        if not containers:
            raise PreflightError(f"there is no cluster named {name}; start one with {up}")
        made_for = {_made_for(c) for c in containers}
        if made_for != {key}:
            others = ", ".join(sorted(m or "?" for m in made_for))
            raise PreflightError(
                f"cluster {name} runs {others}, not {key}; pass that cluster's --backend/--device, or run "
                f"mlperf-bert cluster down --name {name} and {up}"
            )
        heads = [c for c in containers if c.labels.get(ROLE_LABEL) == "head"]
        workers = [c for c in containers if c.labels.get(ROLE_LABEL) == "worker"]
        again = f"run mlperf-bert cluster down --name {name} and {up}"
        if not heads or heads[0].status != "running":
            state = heads[0].status if heads else "missing"
            raise PreflightError(f"the head of cluster {name} is {state}; {again}")
        stopped = [c.name for c in workers if c.status != "running"]
        if not workers or stopped:
            what = ", ".join(sorted(stopped)) + " not running" if stopped else "no workers"
            raise PreflightError(f"cluster {name} has {what}; {again}")
        code, out = ray_probe(self.client, heads[0])
        alive = _alive(out) if code == 0 else None
        if alive is None or alive < len(containers):
            seen = f"{alive} of {len(containers)} nodes alive" if alive is not None else "its head does not answer"
            raise PreflightError(f"Ray on cluster {name} sees {seen}; {again}")
        self._head, self._nodes = heads[0], sorted(containers, key=lambda c: c.name)
        log.info("cluster %s: the driver runs in %s, %d worker(s)", name, heads[0].name, len(workers))

    # --- describing ---------------------------------------------------------------------------------
    def describe(self, spec: HarnessSpec, run_dir: Path) -> str:
        head = container_name(self.cluster, "head")
        inner = scratch_dir(run_dir) / "run"
        return shlex.join(["docker", "exec", head, "python", "-m", "orchestrator.harness", str(inner)]) + (
            f"  # Ray driver in the head of cluster {self.cluster}"
        )

    # --- running ------------------------------------------------------------------------------------
    def run(self, spec: HarnessSpec, run_dir: Path, *, on_start: StartHook | None = None) -> RunnerOutcome:
        if self._head is None:
            self.preflight()
        head = self._head
        assert head is not None
        run_dir = Path(run_dir)
        data_root = _data_root(head)
        head_ip = _ip(head, network_name(self.cluster))
        inner, copies = map_spec(spec, run_dir, data_root, head_ip)
        inner.write(run_dir)  # the host's harness.json is the spec the harness in the head reads
        scratch = scratch_dir(run_dir)
        log_path = run_dir / "harness.log"
        settings = {
            "cluster": self.cluster,
            "cluster_nodes": "; ".join(_describe_node(c) for c in self._nodes),
            "cluster_driver": f"{head.name} (docker exec, Ray at {head_ip}:{RAY_PORT})",
            "cluster_data": _data_note(copies, data_root),
        }
        # Made by the head's user (put_archive would make missing folders root's, which it could not remove).
        folders = {scratch / "run", scratch / "cache", *(p.parent for p in copies.values())}
        self._exec(head, ["mkdir", "-p", *sorted(map(str, folders))])
        signum: int | None = None
        code = 1
        try:
            uid, gid = self._ids(head)
            files = dict(copies)
            files[run_dir / SPEC_FILE] = scratch / "run" / SPEC_FILE
            archive = _tar(files, scratch, uid, gid)
            log.info("cluster %s: %.1f MB of inputs into %s:%s", self.cluster, len(archive) / 1e6, head.name, scratch)
            call(f"copy the run's inputs into {head.name}", lambda: head.put_archive(str(scratch), archive))
            command = (
                f"echo $$ > {scratch / PID_FILE} && exec python -m orchestrator.harness {shlex.quote(inner.run_dir)}"
            )
            env = {"PYTHONUNBUFFERED": "1", "MLPERF_BERT_VERBOSITY": str(current_verbosity())}
            exec_id = call(
                f"start the harness in {head.name}",
                lambda: self.client.api.exec_create(head.id, ["sh", "-c", command], environment=env)["Id"],
            )
            with log_path.open("wb") as sink:
                reader = _Reader(self.client.api.exec_start(exec_id, stream=True), sink, self._echo)
                # No on_start: the harness's pid in the head is no pid of this machine, and the head's
                # container id would have a later look at a stale run advise removing the head itself.
                reader.start()
                signum = self._wait(head, reader, scratch)
            code = self._exit_code(exec_id)
        except BaseException:  # whatever cut the run short, the harness must not outlive it in the head
            self._stop_quietly(head, scratch)
            raise
        finally:
            copied = self._collect(head, scratch, run_dir)
            self._remove_scratch(head, scratch)
        lost = self._lost_nodes()
        settings["cluster_lost_nodes"] = ", ".join(lost) if lost else "none"
        if signum is None and code == EXIT_INTERRUPTED:  # a SIGINT sent inside the head
            signum = SIGINT
        log.debug("cluster %s: copied back %s", self.cluster, ", ".join(copied) or "nothing")
        return RunnerOutcome(
            exit_code=code,
            log_path=log_path,
            image=ray_image(self.target),
            interrupted=signum is not None,
            signal=signum,
            message=None if code in (0, EXIT_INTERRUPTED) else _exit_note(code),
            extra={"cluster": self.cluster, "container": head.name},
            settings=settings,
        )

    def _wait(self, head: Any, reader: _Reader, scratch: PurePosixPath) -> int | None:
        """Until the harness ends; an interrupt stops it inside the head (SIGINT), a second one kills it."""
        signum: int | None = None
        deadline: float | None = None
        while reader.is_alive():
            try:
                reader.join(timeout=0.5)
                if deadline is not None and time.monotonic() > deadline and reader.is_alive():
                    log.warning("the harness did not stop within %.0f s; killing it", self.stop_grace_s)
                    self._signal(head, scratch, "KILL")
                    deadline = None
            except KeyboardInterrupt as exc:
                if signum is not None:
                    log.warning("interrupted again: killing the harness in %s", head.name)
                    self._signal(head, scratch, "KILL")
                    continue
                signum = signal_of(exc)
                log.warning(
                    "%s: stopping the harness in %s (again to kill it)",
                    "Ctrl-C" if signum == SIGINT else signal_name(signum),
                    head.name,
                )
                self._signal(head, scratch, "INT")
                deadline = time.monotonic() + self.stop_grace_s
        if reader.error is not None:
            raise DockerError(f"lost the harness's output from {head.name} ({reader.error}); see {head.name}'s logs")
        return signum

    def _signal(self, head: Any, scratch: PurePosixPath, sig: str) -> None:
        self._exec(head, ["sh", "-c", f'kill -{sig} "$(cat {scratch / PID_FILE})"'])

    def _remove_scratch(self, head: Any, scratch: PurePosixPath) -> None:
        try:
            self._exec(head, ["rm", "-rf", str(scratch)])
        except Exception as exc:  # noqa: BLE001 - never masks the run's outcome; it goes with cluster down
            log.warning("could not remove %s from %s (%s)", scratch, head.name, exc)

    def _stop_quietly(self, head: Any, scratch: PurePosixPath) -> None:
        try:
            head.exec_run(["sh", "-c", f'test -f {scratch / PID_FILE} && kill -KILL "$(cat {scratch / PID_FILE})"'])
        except Exception:  # noqa: BLE001 - best effort: never mask what cut the run short
            return

    def _exit_code(self, exec_id: str) -> int:
        for _ in range(50):  # the stream ends a moment before the exec is marked finished
            info = self.client.api.exec_inspect(exec_id)
            if not info.get("Running") and info.get("ExitCode") is not None:
                return int(info["ExitCode"])
            time.sleep(0.1)
        raise RunError(f"the harness in cluster {self.cluster}'s head did not report how it ended; rerun it")

    def _collect(self, head: Any, scratch: PurePosixPath, run_dir: Path) -> list[str]:
        """The harness's results into the host run directory; best effort (never masks the run's outcome)."""
        try:
            stream, _ = head.get_archive(str(scratch / "run"))
            return _extract_results(b"".join(stream), "run", run_dir)
        except Exception as exc:  # noqa: BLE001 - the run's own outcome says what went wrong
            log.warning("could not copy the results out of %s (%s)", head.name, type(exc).__name__)
            return []

    def _exec(self, head: Any, cmd: list[str]) -> str:
        result = call(f"run {cmd[0]} in {head.name}", lambda: head.exec_run(cmd))
        if int(result.exit_code) != 0:
            out = (result.output or b"").decode(errors="replace").strip()
            raise DockerError(f"{shlex.join(cmd)} failed in {head.name} ({out or result.exit_code})")
        return str((result.output or b"").decode(errors="replace"))

    def _ids(self, head: Any) -> tuple[int, int]:
        uid, gid = self._exec(head, ["sh", "-c", "id -u; id -g"]).split()
        return int(uid), int(gid)

    def _lost_nodes(self) -> list[str]:
        """The cluster's containers that no longer run (a worker killed mid-run)."""
        lost = []
        for c in self._nodes:
            try:
                c.reload()
                state = c.status
            except Exception:  # noqa: BLE001 - removed: lost too
                state = "removed"
            if state != "running":
                lost.append(f"{c.name} ({state}, hostname {_hostname(c)})")
        return lost

    def _echo(self, chunk: bytes) -> None:
        if self.stream:
            echo(chunk, self.console)


class _Reader(threading.Thread):
    """Copies the exec's output into harness.log (and the console) off the main thread, so that Ctrl-C
    lands in the main thread while the stream blocks."""

    def __init__(self, stream: Any, sink: IO[bytes], echo: Callable[[bytes], None]) -> None:
        super().__init__(daemon=True)
        self.stream, self.sink, self.echo = stream, sink, echo
        self.error: str | None = None

    def run(self) -> None:
        try:
            for chunk in self.stream:
                self.sink.write(chunk)
                self.sink.flush()
                self.echo(chunk)
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            self.error = f"{type(exc).__name__}: {exc}"


def _made_for(container: Any) -> str | None:
    """The target a cluster node runs: its label, else (a cluster from before the label) its image."""
    labels = container.labels or {}
    if labels.get(TARGET_LABEL):
        return str(labels[TARGET_LABEL])
    image = str((container.attrs.get("Config") or {}).get("Image", ""))
    return image.removeprefix("mlperf-bert/").removesuffix(":latest").removesuffix("-ray") or None


def _alive(out: str) -> int | None:
    try:
        return int(json.loads(out.strip().splitlines()[-1])["alive"])
    except (ValueError, KeyError, IndexError):
        return None


def _data_root(head: Any) -> Path | None:
    for m in head.attrs.get("Mounts") or []:
        if m.get("Destination") == DATA_MOUNT:
            return Path(str(m["Source"]))
    return None


def _ip(container: Any, net: str) -> str:
    ip = ((container.attrs.get("NetworkSettings") or {}).get("Networks") or {}).get(net, {}).get("IPAddress")
    if not ip:
        raise DockerError(f"{container.name} has no address on {net}; check docker network inspect {net}")
    return str(ip)


def _hostname(container: Any) -> str:
    return str((container.attrs.get("Config") or {}).get("Hostname", "?"))


def _describe_node(container: Any) -> str:
    role = container.labels.get(ROLE_LABEL, "?")
    cpus = (container.attrs.get("HostConfig") or {}).get("CpusetCpus") or "all"
    return f"{role} {container.name} (hostname {_hostname(container)}, cpus {cpus})"


def _data_note(copies: dict[Path, PurePosixPath], data_root: Path | None) -> str:
    """How the inputs reached the head (its /data mount, or a copy) and the workers (Ray), for run.json."""
    mounted = f"read in place through the head's read-only {DATA_MOUNT} mount of {data_root}"
    if not copies:
        how = f"head: model and features {mounted}"
    else:
        names = ", ".join(sorted(p.name for p in copies))
        how = f"head: copied into the container (docker put_archive): {names}"
        if data_root is not None:
            how += f"; the rest {mounted}"
    return how + "; workers: the model through Ray's object store, the inputs with each batch call"


def _exit_note(code: int) -> str | None:
    if code > 128:
        return f"the harness in the head was killed by signal {code - 128} (exit {code}); rerun it"
    return None
