"""One container, described once (`ContainerSpec`): `sdk_run_kwargs` renders it as the docker SDK call,
`docker_run_argv` as the equivalent `docker run` line (--dry-run, --debug).

Both the run's container (docker_runner) and the pre-flight GPU probe (preflight) are described here,
with the same user, environment and GPU access, so that the probe sees what the run will see.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.backends import Target

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


@dataclass(frozen=True)
class GpuAccess:
    """What a container of this target needs to see its GPU."""

    gpus: str | None = None  # NVIDIA device request
    devices: tuple[str, ...] = ()  # AMD device nodes
    group_add: tuple[str, ...] = ()  # AMD: the groups owning them


def caller_user() -> str:
    """The caller's uid:gid, so that files the container writes belong to the caller."""
    return f"{os.getuid()}:{os.getgid()}"


def amd_gpu_groups(dev: Path = Path("/dev")) -> tuple[str, ...]:
    """The host group ids owning /dev/kfd and /dev/dri/*, so the caller's uid may open them inside
    (group names such as `render` need not exist in the image)."""
    nodes = [dev / "kfd"] + (sorted((dev / "dri").iterdir()) if (dev / "dri").is_dir() else [])
    gids = sorted({str(p.stat().st_gid) for p in nodes if p.exists()})
    return tuple(gids) or ("video",)


def gpu_access(target: Target, gpus: str = "all", dev_root: Path = Path("/dev")) -> GpuAccess:
    if target.gpu == "nvidia":
        return GpuAccess(gpus=gpus)
    if target.gpu == "amd":
        return GpuAccess(
            devices=(f"{dev_root}/kfd:/dev/kfd:rwm", f"{dev_root}/dri:/dev/dri:rwm"), group_add=amd_gpu_groups(dev_root)
        )
    return GpuAccess()


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
        "mounts": [SdkMount(target=m.target, source=m.source, type="bind", read_only=m.read_only) for m in cs.mounts],
        "environment": dict(cs.env),
        "labels": dict(cs.labels),
    }
    optional = {
        "name": cs.name,
        "user": cs.user,
        "shm_size": cs.shm_size,
        "cpuset_cpus": cs.cpuset_cpus,
        "mem_limit": cs.mem_limit,
        "working_dir": cs.workdir,
        "devices": list(cs.devices) or None,
        "group_add": list(cs.group_add) or None,
        "device_requests": [_device_request(cs.gpus)] if cs.gpus else None,
    }
    kwargs.update({k: v for k, v in optional.items() if v is not None})
    return kwargs


def docker_run_argv(
    cs: ContainerSpec,
    *,
    docker: str = "docker",
    interactive: bool = False,
    tty: bool = False,
    command: tuple[str, ...] | None = None,
    with_name: bool = False,
) -> list[str]:
    """The `docker run` command line equivalent to `sdk_run_kwargs(cs)`."""
    argv = [docker, "run", "--rm"]
    if interactive:
        argv.append("-it" if tty else "-i")
    argv += [
        "--init",
        "--network",
        cs.network,
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--stop-signal",
        cs.stop_signal,
    ]
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
