"""`mlperf-bert cluster up|status|down`: a real Ray cluster in containers, from a backend's image with Ray added.

A head and N workers, each a container of `mlperf-bert/<key>-ray:latest` (images/common/ray.Dockerfile: the
backend's image plus the host's Ray, installed from the host's wheelhouse with no network), on a Docker
network of their own that is internal (no route out of it, nothing published on the host). Each worker is
limited to its own CPUs (cpuset), so that scaling measured on one machine is honest; the head offers no CPU
to actors (it is where the driver runs). The containers keep the run's hardening: no-new-privileges, every
capability dropped, the image's non-root user, the data mounted read-only, Ray's dashboard off.

Ray's token authentication stays on: `cluster up` makes a token, keeps it on the host in
`<cache>/clusters/<name>/auth_token` (mode 0600) and hands it to the containers at start in RAY_AUTH_TOKEN
(never in an image, a log or run.json; `docker inspect` shows it to whoever may use the Docker socket, who
is root on this machine anyway). Everything carries the label `mlperf-bert.cluster=<name>`, and
`cluster down` removes exactly that.
"""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import subprocess
import tarfile
import time
from dataclasses import dataclass
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

from orchestrator.backends import Target
from orchestrator.containers.client import call, docker_error
from orchestrator.containers.container_spec import CONTAINER_ENV, ContainerSpec, Mount, sdk_run_kwargs
from orchestrator.containers.images import REPO_ROOT, effective_build_args, get_recipe, pip_download_command
from orchestrator.errors import ConfigError, DockerError, PreflightError
from orchestrator.harness.cpu import usable_cpus
from orchestrator.paths import default_cache_dir

log = logging.getLogger(__name__)

LABEL = "mlperf-bert.cluster"
ROLE_LABEL = "mlperf-bert.cluster-role"
TARGET_LABEL = "mlperf-bert.cluster-target"  # the backend-device the nodes run (`run --cluster` checks it)
RAY_DOCKERFILE = REPO_ROOT / "images" / "common" / "ray.Dockerfile"
RAY_PORT = 6379
DATA_MOUNT = "/data"
NODE_TIMEOUT_S = 180.0
SHM_SIZE = "1g"  # Ray's object store lives in /dev/shm (Docker's default 64 MB is too small)


@dataclass(frozen=True)
class ClusterNode:
    name: str
    role: str  # head | worker
    state: str
    cpuset: str
    address: str


@dataclass(frozen=True)
class ClusterStatus:
    name: str
    network: str | None
    internal: bool | None
    nodes: list[ClusterNode]
    ray_nodes_alive: int | None  # what Ray itself reports (None: the head does not answer)
    ray_cpus: float | None
    target: str | None = None  # the backend-device its nodes run (their TARGET_LABEL; None: no node, or unlike)


def ray_version() -> str:
    """The Ray of this machine (the driver's): every node must run the same."""
    try:
        return metadata.version("ray")
    except metadata.PackageNotFoundError:
        raise PreflightError(
            "cluster up gives the nodes this machine's Ray, and this environment has none; "
            "install it with pip install 'mlperf-bert[ray]'"
        ) from None


def network_name(name: str) -> str:
    return f"mlperf-bert-cluster-{name}"


def container_name(name: str, role: str, index: int = 0) -> str:
    return f"mlperf-bert-cluster-{name}-{role}" + (f"-{index}" if role == "worker" else "")


def ray_image(target: Target) -> str:
    return f"{target.image}-ray:latest"


def token_path(name: str, cache_dir: Path | None = None) -> Path:
    return (cache_dir or default_cache_dir()) / "clusters" / name / "auth_token"


def check_name(name: str) -> str:
    if not name or not all(c.isalnum() or c in "-_" for c in name) or len(name) > 40:
        raise ConfigError(f"cluster name {name!r} is not 1-40 letters, digits, '-' or '_'; pick e.g. demo")
    return name


# ---- the image ----------------------------------------------------------------------------------------
def prepare_ray_wheelhouse(target: Target, *, offline: bool = False, root: Path | None = None) -> Path:
    """`wheelhouse/ray-<key>/`: Ray (this machine's version) and its dependencies for the image's Python."""
    recipe = get_recipe(target.key)
    args = effective_build_args(recipe)
    version = ray_version()
    dest = (root or REPO_ROOT / "wheelhouse") / f"ray-{target.key}"
    stamp = {"ray": version, "python": args.get("PYTHON_VERSION", ""), "glibc": args.get("GLIBC_VERSION", "")}
    stamp_file = dest / "wheelhouse.json"
    if any(dest.glob("ray-*.whl")) and stamp_file.is_file() and json.loads(stamp_file.read_text()) == stamp:
        return dest
    if offline:
        raise DockerError(
            f"there is no wheelhouse with Ray {version} at {dest} and --offline forbids downloading one; "
            "run cluster up once on a connected machine, or copy that folder here"
        )
    dest.mkdir(parents=True, exist_ok=True)
    req = dest / "requirements.txt"
    req.write_text(f"ray=={version}\n")
    cmd = pip_download_command(req, dest, stamp["python"], stamp["glibc"])
    log.info("downloading Ray %s for %s (Python %s) into %s", version, target.key, stamp["python"], dest)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    req.unlink()
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        raise DockerError(
            f"pip could not download Ray {version} for {target.key} ({lines[-1] if lines else proc.returncode}); "
            "check the network, or copy a wheelhouse to " + str(dest)
        )
    stamp_file.write_text(json.dumps(stamp) + "\n")
    return dest


def _context(wheelhouse: Path) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(RAY_DOCKERFILE, arcname="Dockerfile")
        for whl in sorted(wheelhouse.glob("*.whl")):
            tar.add(whl, arcname=f"wheelhouse/{whl.name}")
    buf.seek(0)
    return buf


def build_ray_image(client: Any, target: Target, *, offline: bool = False, rebuild: bool = False) -> str:
    """`mlperf-bert/<key>-ray:latest` from the backend's image (which must exist) and the Ray wheelhouse."""
    reference = ray_image(target)
    base = f"{target.image}:latest"
    version = ray_version()
    from docker.errors import ImageNotFound

    try:
        existing = client.images.get(reference)
        base_id = client.images.get(base).id
        labels = existing.labels or {}
        if not rebuild and labels.get("mlperf-bert.ray") == version and base_id in _parents(client, existing):
            return reference
    except ImageNotFound:
        pass
    try:
        call(f"inspect the image {base}", lambda: client.images.get(base), otherwise=None)
    except DockerError:
        raise PreflightError(
            f"cluster up builds on the backend's image {base}, which Docker does not have; "
            f"build it first with mlperf-bert images build {target.key}"
        ) from None
    wheelhouse = prepare_ray_wheelhouse(target, offline=offline)
    log.info("building %s (Ray %s on %s)", reference, version, base)
    started = time.monotonic()
    try:
        stream = client.api.build(
            fileobj=_context(wheelhouse),
            custom_context=True,
            tag=reference,
            buildargs={"BASE_IMAGE": base, "RAY_VERSION": version},
            decode=True,
            rm=True,
            forcerm=True,
            pull=False,
            network_mode="none",
        )
        error = None
        for item in stream:
            if "error" in item:
                error = str(item["error"]).strip()
            elif item.get("stream", "").strip():
                log.debug("%s", item["stream"].rstrip())
    except Exception as exc:  # noqa: BLE001 - one sentence
        raise docker_error(exc, f"build {reference}", otherwise=None) from exc
    if error:
        raise DockerError(f"building {reference} failed ({error.splitlines()[-1]}); rerun with -vv for the log")
    log.info("built %s in %.0f s", reference, time.monotonic() - started)
    return reference


def _parents(client: Any, image: Any) -> set[str]:
    """The ids of an image's layers' images (its history), to tell whether it was built on the current base."""
    try:
        return {h.get("Id", "") for h in image.history()}
    except Exception:  # noqa: BLE001 - unknown: rebuild
        return set()


# ---- the containers -----------------------------------------------------------------------------------
def _start_command(role: str, cpus: int, head: str | None) -> tuple[str, ...]:
    """`ray start` in the foreground, on the container's own address on the cluster network."""
    common = (
        "--block --disable-usage-stats "
        '--node-ip-address="$(python -c "import socket; print(socket.gethostbyname(socket.gethostname()))")"'
    )
    if role == "head":
        ray = f"ray start --head --port={RAY_PORT} --include-dashboard=false --num-cpus=0 {common}"
    else:
        ray = f"ray start --address={head}:{RAY_PORT} --num-cpus={cpus} {common}"
    return ("sh", "-c", f"exec {ray}")


def _spec(
    *,
    image: str,
    name: str,
    role: str,
    index: int,
    cpuset: str | None,
    cpus: int,
    head: str | None,
    data: Path | None,
    target: str = "",
) -> ContainerSpec:
    env = {
        **CONTAINER_ENV,
        "RAY_AUTH_MODE": "token",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    mounts = (Mount(source=str(data), target=DATA_MOUNT, read_only=True),) if data is not None else ()
    return ContainerSpec(
        image=image,
        command=_start_command(role, cpus, head),
        mounts=mounts,
        env=env,
        shm_size=SHM_SIZE,
        cpuset_cpus=cpuset,
        labels={LABEL: name, ROLE_LABEL: role, TARGET_LABEL: target},
        name=container_name(name, role, index),
        network=network_name(name),
        stop_signal="SIGTERM",
    )


def worker_cpusets(workers: int, cpus_per_worker: int, cpus: list[int] | None = None) -> list[str]:
    """Each worker's own CPUs, in order ("0", "1" or "0-1", "2-3"); refused when the machine has too few."""
    cpus = cpus if cpus is not None else usable_cpus()
    if workers * cpus_per_worker > len(cpus):
        raise ConfigError(
            f"{workers} workers of {cpus_per_worker} CPUs each need {workers * cpus_per_worker} CPUs and this machine "
            f"offers {len(cpus)}; pass fewer --workers or --cpus-per-worker"
        )
    out = []
    for i in range(workers):
        mine = cpus[i * cpus_per_worker : (i + 1) * cpus_per_worker]
        out.append(",".join(str(c) for c in mine))
    return out


def cluster_up(
    client: Any,
    target: Target,
    *,
    name: str,
    workers: int,
    cpus_per_worker: int = 1,
    data: Path | None = None,
    offline: bool = False,
    cache_dir: Path | None = None,
    timeout_s: float = NODE_TIMEOUT_S,
) -> ClusterStatus:
    check_name(name)
    if workers < 1:
        raise ConfigError(f"--workers {workers} is not a positive count; pass e.g. --workers 2")
    cpusets = worker_cpusets(workers, cpus_per_worker)
    containers, networks = labelled(client, name)
    if containers or networks:
        raise ConfigError(f"a cluster named {name} exists already; run mlperf-bert cluster down --name {name} first")
    image = build_ray_image(client, target, offline=offline)
    token = secrets.token_hex(32)
    path = token_path(name, cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    net = network_name(name)
    call(
        f"create the network {net}",
        lambda: client.networks.create(net, driver="bridge", internal=True, labels={LABEL: name}),
        otherwise=None,
    )
    try:
        head_spec = _spec(
            image=image, name=name, role="head", index=0, cpuset=None, cpus=0, head=None, data=data, target=target.key
        )
        head = _run(client, head_spec, token)
        head_ip = _address(client, head.id, net)
        for i, cpuset in enumerate(cpusets):
            spec = _spec(
                image=image,
                name=name,
                role="worker",
                index=i,
                cpuset=cpuset,
                cpus=cpus_per_worker,
                head=head_ip,
                data=data,
                target=target.key,
            )
            _run(client, spec, token)
        _wait_for_nodes(client, name, 1 + workers, timeout_s)
    except BaseException:
        cluster_down(client, name, cache_dir=cache_dir)
        raise
    return cluster_status(client, name)


def _run(client: Any, spec: ContainerSpec, token: str) -> Any:
    kwargs = sdk_run_kwargs(spec)
    # No `user`: the image's own non-root user (mlperf) runs Ray.
    kwargs["environment"]["RAY_AUTH_TOKEN"] = token  # at start only: never in the image, a log or a record
    return call(f"start the container {spec.name}", lambda: client.containers.run(**kwargs), otherwise=None)


def _address(client: Any, container_id: str, net: str) -> str:
    attrs = client.api.inspect_container(container_id)
    ip = attrs["NetworkSettings"]["Networks"][net]["IPAddress"]
    if not ip:
        raise DockerError(f"the head container has no address on {net}; check docker network inspect {net}")
    return str(ip)


def ray_probe(client: Any, head: Any, *, auth: str = "cluster") -> tuple[int, str]:
    """Run a tiny Ray client in the head container: (exit code, output). `auth`: "cluster" (the container's
    token), "wrong-token" (another token) or "none" (a client with token auth off and no token): the
    cluster must refuse the last two."""
    code = (
        "import ray, json; ray.init(address='auto', logging_level='ERROR'); "
        "n=[x for x in ray.nodes() if x['Alive']]; "
        "print(json.dumps({'alive': len(n), 'cpus': sum(x['Resources'].get('CPU', 0) for x in n)}))"
    )
    cmd = ["timeout", "60", "python", "-c", code]
    if auth == "wrong-token":
        cmd = ["env", f"RAY_AUTH_TOKEN={secrets.token_hex(32)}", *cmd]
    elif auth == "none":
        cmd = ["env", "-u", "RAY_AUTH_TOKEN", "RAY_AUTH_MODE=disabled", *cmd]
    result = head.exec_run(cmd, demux=False)
    return int(result.exit_code), (result.output or b"").decode(errors="replace")


def _wait_for_nodes(client: Any, name: str, count: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    head = client.containers.get(container_name(name, "head"))
    last = ""
    while time.monotonic() < deadline:
        head.reload()
        if head.status not in ("created", "running"):
            break
        code, out = ray_probe(client, head)
        if code == 0:
            alive = json.loads(out.strip().splitlines()[-1])["alive"]
            if alive >= count:
                return
            last = f"{alive} of {count} nodes alive"
        else:
            last = out.strip().splitlines()[-1] if out.strip() else f"exit {code}"
        time.sleep(2)
    logs = head.logs(tail=5).decode(errors="replace").strip().splitlines()
    raise DockerError(
        f"the Ray cluster {name} did not come up within {timeout_s:.0f} s ({last or (logs[-1] if logs else '?')}); "
        f"see docker logs {container_name(name, 'head')}"
    )


def labelled(client: Any, name: str | None) -> tuple[list[Any], list[Any]]:
    label = f"{LABEL}={name}" if name else LABEL
    containers = call(
        "list the cluster's containers", lambda: client.containers.list(all=True, filters={"label": label})
    )
    networks = call("list the cluster's networks", lambda: client.networks.list(filters={"label": label}))
    return containers, networks


def cluster_status(client: Any, name: str) -> ClusterStatus:
    containers, networks = labelled(client, name)
    net = networks[0] if networks else None
    nodes = []
    head = None
    for c in sorted(containers, key=lambda c: c.name):
        role = c.labels.get(ROLE_LABEL, "?")
        addr = (c.attrs.get("NetworkSettings", {}).get("Networks", {}) or {}).get(network_name(name), {})
        nodes.append(
            ClusterNode(
                name=c.name,
                role=role,
                state=c.status,
                cpuset=c.attrs.get("HostConfig", {}).get("CpusetCpus", "") or "all",
                address=addr.get("IPAddress", "") or "-",
            )
        )
        if role == "head" and c.status == "running":
            head = c
    alive: int | None = None
    cpus: float | None = None
    if head is not None:
        code, out = ray_probe(client, head)
        if code == 0:
            answer = json.loads(out.strip().splitlines()[-1])
            alive, cpus = int(answer["alive"]), float(answer["cpus"])
    internal = bool(net.attrs.get("Internal")) if net is not None else None
    targets = {c.labels.get(TARGET_LABEL) for c in containers}
    return ClusterStatus(
        name=name,
        network=net.name if net else None,
        internal=internal,
        nodes=nodes,
        ray_nodes_alive=alive,
        ray_cpus=cpus,
        target=next(iter(targets)) if len(targets) == 1 else None,
    )


def cluster_down(client: Any, name: str, *, cache_dir: Path | None = None) -> int:
    """Remove this cluster's containers and network (by label) and its token; returns how many were removed."""
    containers, networks = labelled(client, name)
    for c in containers:
        call(f"remove the container {c.name}", partial(c.remove, force=True), otherwise=None)
    for n in networks:
        call(f"remove the network {n.name}", n.remove, otherwise=None)
    path = token_path(name, cache_dir)
    if path.exists():
        path.unlink()
    return len(containers) + len(networks)


def format_status(status: ClusterStatus) -> str:
    if not status.nodes and status.network is None:
        return f"no cluster named {status.name}"
    lines = [
        f"cluster {status.name}: {status.target or 'target unknown'}, network {status.network or '-'} "
        f"(internal: {status.internal}), "
        + (
            f"Ray: {status.ray_nodes_alive} nodes alive, {status.ray_cpus:g} CPUs for actors"
            if status.ray_nodes_alive is not None
            else "Ray: the head does not answer"
        )
    ]
    for n in status.nodes:
        lines.append(f"  {n.name}  {n.role}  {n.state}  cpus {n.cpuset}  {n.address}")
    return "\n".join(lines)
