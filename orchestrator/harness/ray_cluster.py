"""Reaching a Ray cluster and checking its nodes, for the Ray runner's pre-flight and the harness (the driver).

`connect` joins the cluster at an address (`HOST:PORT` or `auto`) or starts the `local` instance, which
listens on the loopback interface only: Ray otherwise binds its services to the machine's routable
address. Ray's token authentication (on by default since Ray 2.5x) stays as Ray sets it up: a client
without the cluster's token is refused. `check_nodes` runs a tiny task on every node that could host an
engine actor and refuses, in one sentence, a node whose Python or Ray differs from the driver's or that
lacks the packages the engine needs.

Ray is imported lazily (a heavy library); this module imports no inference engine, typer or docker.
"""

from __future__ import annotations

import logging
import os
import platform
import socket
from dataclasses import dataclass, field
from typing import Any

from orchestrator.errors import PreflightError
from orchestrator.harness.cpu import FAKE_FLAGS_ENV, Isa
from orchestrator.harness.spec import RAY_LOCAL

log = logging.getLogger(__name__)

# Read by Ray when it is imported: "0" is Ray's single-machine mode, every service on 127.0.0.1
# (Ray otherwise replaces 127.0.0.1 by the machine's routable address, even when asked for loopback).
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
LOOPBACK = "127.0.0.1"
NAMESPACE = "mlperf-bert"
PROBE_TIMEOUT_S = 120.0
REACH_TIMEOUT_S = 5.0  # a head that does not accept a TCP connection by then is not there
# What the driver needs on every worker besides the engine's own packages.
BASE_PACKAGES = ("orchestrator", "numpy")
ACCELERATOR_TYPE_PREFIX = "accelerator_type:"  # Ray's resource naming a node's GPU model


@dataclass(frozen=True)
class NodeReport:
    node_id: str
    address: str
    hostname: str
    python: str
    ray: str
    cpus: float
    gpus: float
    missing: tuple[str, ...] = field(default=())
    cpu_model: str | None = None  # the node's /proc/cpuinfo model name
    isa: str | None = None  # its matrix-relevant instructions (cpu.Isa.describe), e.g. "avx512_vnni avx512f avx2"
    accelerator: str | None = None  # Ray's accelerator_type resource (e.g. A100), when the node declares one


def ray_module() -> Any:
    """Ray, imported on first use (an optional dependency: pip install 'mlperf-bert[ray]')."""
    try:
        import ray
    except ImportError as exc:
        raise PreflightError(
            f"the Ray runner needs Ray, which this Python cannot import ({exc}); install it with "
            "pip install 'mlperf-bert[ray]'"
        ) from exc
    return ray


def check_reachable(address: str, timeout_s: float = REACH_TIMEOUT_S) -> None:
    """A HOST:PORT head must accept a TCP connection: ray.init would otherwise retry for minutes."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return  # `auto` or a ray:// URL: Ray resolves it
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise PreflightError(
            f"cannot reach the Ray cluster at {address} ({exc.strerror or type(exc).__name__}); start its head, "
            "or check --ray-address (HOST:PORT of the head's GCS, usually port 6379)"
        ) from None


def connect(address: str, *, num_cpus: int | None = None) -> bool:
    """Connect this process to the cluster at `address`, or start the local instance (on loopback, no
    dashboard). Returns True when this call connected (and so should disconnect), False when this process
    was connected already."""
    if address == RAY_LOCAL:
        os.environ.update(LOOPBACK_ENV)  # before the first import of ray (and for the processes Ray starts)
    ray = ray_module()
    if ray.is_initialized():
        return False
    if address == RAY_LOCAL:
        # Where ray was imported before the variable was set, its constant is already read: set it too.
        ray._private.ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        if address == RAY_LOCAL:
            ray.init(
                address="local",
                _node_ip_address=LOOPBACK,
                include_dashboard=False,
                num_cpus=num_cpus,
                namespace=NAMESPACE,
                logging_level=logging.WARNING,
            )
        else:
            check_reachable(address)
            ray.init(address=address, namespace=NAMESPACE, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise PreflightError(
            f"cannot reach the Ray cluster at {address} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
            "start its head, check --ray-address and that this machine holds the cluster's token"
        ) from None
    if address == RAY_LOCAL:
        where = {n.get("NodeManagerAddress") for n in ray.nodes()}
        if where != {LOOPBACK}:
            ray.shutdown()
            raise PreflightError(
                f"the local Ray instance listened on {', '.join(sorted(map(str, where)))}, not only on {LOOPBACK}; "
                f"set {', '.join(f'{k}={v}' for k, v in LOOPBACK_ENV.items())} before Ray is imported"
            )
    return True


def disconnect() -> None:
    ray = ray_module()
    if ray.is_initialized():
        ray.shutdown()


def check_nodes(packages: tuple[str, ...] = (), *, gpu: bool = False) -> list[NodeReport]:
    """Probe every alive node that offers a CPU (a GPU when `gpu`) with a zero-CPU task; refuse one that
    runs another Python or Ray than this driver, or lacks `packages` (and BASE_PACKAGES)."""
    ray = ray_module()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    wanted = tuple(dict.fromkeys(BASE_PACKAGES + packages))
    fake_env = FAKE_FLAGS_ENV  # a plain str in the closure: the task must not need the orchestrator

    def report(modules: tuple[str, ...]) -> dict[str, Any]:
        # Defined here so Ray ships it by value: it must run even where the orchestrator is missing.
        import importlib.util
        import platform as plat
        import socket

        import ray as worker_ray

        def found(name: str) -> bool:
            try:
                return importlib.util.find_spec(name) is not None
            except (ImportError, ValueError):
                return False

        def cpu_model() -> str | None:
            try:
                with open("/proc/cpuinfo") as fh:
                    for line in fh:
                        if line.startswith("model name"):
                            return line.split(":", 1)[1].strip()
            except OSError:
                pass
            return None

        def vector_flags() -> list[str] | None:
            # only the AMX/AVX family: the driver turns them into its Isa description. A node's forced flags
            # (cpu.FAKE_FLAGS_ENV, set where its workers start) win, as they do for its engines (cpu_flags).
            import os

            forced = os.environ.get(fake_env)
            if forced is not None:
                return [f for f in forced.replace(",", " ").split() if f.startswith(("amx", "avx"))]
            try:
                with open("/proc/cpuinfo") as fh:
                    for line in fh:
                        if line.startswith("flags"):
                            return [f for f in line.split(":", 1)[1].split() if f.startswith(("amx", "avx"))]
            except OSError:
                pass
            return None

        return {
            "python": plat.python_version(),
            "ray": worker_ray.__version__,
            "hostname": socket.gethostname(),
            "missing": [m for m in modules if not found(m)],
            "cpu_model": cpu_model(),
            "flags": vector_flags(),
        }

    resource = "GPU" if gpu else "CPU"
    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get(resource, 0) > 0]
    if not nodes:
        raise PreflightError(
            f"the Ray cluster has no alive node offering a {resource}; start its workers (ray start --address ...)"
        )
    probe = ray.remote(num_cpus=0)(report)
    refs = [
        probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=n["NodeID"], soft=False)).remote(
            wanted
        )
        for n in nodes
    ]
    try:
        answers = ray.get(refs, timeout=PROBE_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - any Ray failure here means the nodes cannot be used
        raise PreflightError(
            f"the Ray nodes did not answer a version check within {PROBE_TIMEOUT_S:.0f} s ({type(exc).__name__}); "
            "check that every worker runs the same Python and Ray as this machine"
        ) from None
    reports = [
        NodeReport(
            node_id=n["NodeID"],
            address=n.get("NodeManagerAddress", "?"),
            hostname=a["hostname"],
            python=a["python"],
            ray=a["ray"],
            cpus=float(n["Resources"].get("CPU", 0)),
            gpus=float(n["Resources"].get("GPU", 0)),
            missing=tuple(a["missing"]),
            cpu_model=a.get("cpu_model"),
            isa=Isa.from_flags(set(a["flags"])).describe() if a.get("flags") is not None else None,
            accelerator=accelerator_type(n.get("Resources", {})),
        )
        for n, a in zip(nodes, answers, strict=True)
    ]
    check_reports(reports, python=platform.python_version(), ray_version=ray.__version__)
    return reports


def accelerator_type(resources: dict[str, float]) -> str | None:
    """The accelerator a node declares in its resources (`accelerator_type:A100`), if any."""
    kinds = sorted(k.split(":", 1)[1] for k in resources if k.startswith(ACCELERATOR_TYPE_PREFIX))
    return " / ".join(kinds) or None


def check_reports(reports: list[NodeReport], *, python: str, ray_version: str) -> None:
    """One sentence for the first node that cannot host the driver's actors."""
    minor = python.rsplit(".", 1)[0]
    for r in reports:
        if r.python.rsplit(".", 1)[0] != minor or r.ray != ray_version:
            raise PreflightError(
                f"Ray node {r.hostname} ({r.address}) runs Python {r.python} and Ray {r.ray}, not Python {minor} "
                f"and Ray {ray_version} as this driver; run the same versions on every node (the backend's image "
                "with Ray added)"
            )
        if r.missing:
            raise PreflightError(
                f"Ray node {r.hostname} ({r.address}) lacks {', '.join(r.missing)}, which the run's engine needs; "
                "run workers that have the backend (its image with Ray added, or a runtime environment that installs it)"
            )


def describe_nodes(reports: list[NodeReport]) -> str:
    """'2 nodes: host-a (10.0.0.2) 4 CPUs; host-b (10.0.0.3) 4 CPUs, 1 GPU' for run.json."""
    parts = []
    for r in reports:
        gpus = f", {r.gpus:g} GPU{'s' if r.gpus != 1 else ''}" if r.gpus else ""
        parts.append(f"{r.hostname} ({r.address}) {r.cpus:g} CPUs{gpus}")
    return f"{len(reports)} node{'s' if len(reports) != 1 else ''}: " + "; ".join(parts)
