"""The run's engine on Ray actors: one actor per engine instance, each owning one engine of the run's backend.

The harness process stays the driver: LoadGen, the QSL, the SUT's batching and the response buffers never
leave it. The SUT runs one worker thread per engine instance (`instance_count` = the actors), and each
worker's `infer(..., instance=i)` is a call on actor i that returns numpy logits; the SUT answers LoadGen
as with any engine, so every sample is answered exactly once, when its batch's call has returned.

Data, without a shared filesystem: the model's bytes go once through Ray's object store (`ray.put`) and
each actor writes them into its node's cache (`<node cache>/ray/models/<sha256>/`), where the engine's
own cache (fused graphs, built engines) lives too; each batch's inputs travel with its call and its
logits with the answer. The features stay on the driver.

Faults: an actor that dies (its process or its node killed) fails its calls with RayActorError; the
batch then runs again on another live actor, and instance i's later batches go to the live actors in
turn. Only when every actor is lost does the run fail, with one sentence. The lost actors, the nodes and
the per-batch cost of the hop are recorded in `settings()` (run.json engine_settings).

Ray and the run's engine are imported only here, inside the harness (the engine inside the actor process).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.backends import TARGETS
from orchestrator.errors import MlperfBertError, PreflightError, RunError
from orchestrator.harness import ray_cluster
from orchestrator.harness.cpu import physical_core_count, worker_cpu_sets
from orchestrator.harness.engines.engine import Engine, load_engine_class
from orchestrator.harness.spec import RAY_LOCAL, NodeInfo, RaySpec
from orchestrator.paths import default_cache_dir

log = logging.getLogger(__name__)

ABANDON_TIMEOUT_S = 15.0
ACTOR_START_TIMEOUT_S = 600.0  # loading a model and fusing its graph (first time on a node) takes a while
HOP_NOTE = (
    "every batch crosses the Ray hop (driver -> actor -> driver): the Server, SingleStream and MultiStream "
    "latencies include it"
)


@dataclass(frozen=True)
class ActorConfig:
    """What an actor needs to build its engine (all plain data: it travels to the worker)."""

    engine_class: str
    target: str
    device: str
    batch_size: int
    threads: int | None
    execution_provider: str
    options: dict[str, str]
    model_name: str  # the file's (or directory's) name
    model_is_dir: bool
    model_sha256: str
    node_cache_dir: str | None
    cpus: tuple[int, ...] | None = None  # the local instance: the actor runs on these CPUs
    index: int = 0
    extra: dict[str, str] = field(default_factory=dict)


def read_model_files(model_path: Path) -> tuple[dict[str, bytes], str]:
    """The model's bytes, by path relative to the model's folder (a file and its external-data siblings, or a
    whole checkpoint directory), and their sha256 (the cache key on each node)."""
    if model_path.is_dir():
        paths = sorted(p for p in model_path.rglob("*") if p.is_file())
        files = {str(p.relative_to(model_path)): p.read_bytes() for p in paths}
    else:
        siblings = sorted(p for p in model_path.parent.glob(model_path.name + "*") if p.is_file())
        files = {p.name: p.read_bytes() for p in siblings}
    digest = hashlib.sha256()
    for name, data in sorted(files.items()):
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return files, digest.hexdigest()


def materialize_model(files: dict[str, bytes], cfg: ActorConfig, cache: Path) -> Path:
    """Write the model into this node's cache once (atomically per file); return the path to open."""
    folder = cache / "ray" / "models" / cfg.model_sha256[:16]
    for name, data in files.items():
        path = folder / cfg.model_name / name if cfg.model_is_dir else folder / name
        if path.is_file() and path.stat().st_size == len(data):
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return folder / cfg.model_name


class EngineActor:
    """Lives in a Ray worker process (wrapped by ray.remote in RayPoolEngine): one engine, one batch at a time."""

    def __init__(self, cfg: ActorConfig, model_files: dict[str, bytes]) -> None:
        if cfg.cpus and hasattr(os, "sched_setaffinity"):
            # The local instance: each actor on its own cores, as the local runner pins its instances.
            os.sched_setaffinity(0, set(cfg.cpus))
        cache = Path(cfg.node_cache_dir) if cfg.node_cache_dir else default_cache_dir()
        model_path = materialize_model(model_files, cfg, cache)
        options = dict(cfg.options)
        # One actor is one engine instance: the cluster's scaling is the number of actors.
        if "instances" in options:
            options["instances"] = "1"
        target = TARGETS.get(cfg.target)
        if target is not None and target.cache_option:
            options[target.cache_option] = str(cache / "engines" / cfg.target)  # this node's engine cache
            Path(options[target.cache_option]).mkdir(parents=True, exist_ok=True)
        engine_cls = load_engine_class(cfg.engine_class)
        self.engine = engine_cls(
            str(model_path),
            device=cfg.device,
            batch_size=cfg.batch_size,
            threads=cfg.threads,
            execution_provider=cfg.execution_provider,
            options=options,
        )

    def describe(self) -> dict[str, Any]:
        import ray

        return {
            "execution_provider": self.engine.execution_provider,
            "versions": self.engine.versions(),
            "settings": self.engine.settings(),
            "seq_buckets": self.engine.seq_buckets(),
            "max_batch": self.engine.max_batch(),
            "shape_costs_first_call": self.engine.shape_costs_first_call(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
        }

    def infer(self, ids: np.ndarray, mask: np.ndarray, seg: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        started = time.perf_counter()
        start, end = self.engine.infer(ids, mask, seg)
        # Copies: an engine may answer with views of buffers that its next call reuses.
        return start.copy(), end.copy(), time.perf_counter() - started

    def close(self) -> None:
        self.engine.close()


def merged_settings(infos: list[dict[str, Any]]) -> dict[str, str]:
    """The actors' engine settings as one: a value they all share as it is; one that differs between them
    (on a cluster of unlike CPUs, precision=auto runs bf16 on one node and fp32 on another) as each value
    with the hosts that ran it, so run.json never names one actor's precision for the whole run."""
    keys = list(dict.fromkeys(k for info in infos for k in info["settings"]))
    out: dict[str, str] = {}
    for key in keys:
        by_value: dict[str, list[str]] = {}
        for info in infos:
            value = str(info["settings"].get(key, "(not set)"))
            hosts = by_value.setdefault(value, [])
            if info["hostname"] not in hosts:
                hosts.append(info["hostname"])
        if len(by_value) == 1:
            out[key] = next(iter(by_value))
        else:
            out[key] = " | ".join(f"{value} (on {', '.join(hosts)})" for value, hosts in by_value.items())
    return out


@dataclass
class _HopStats:
    calls: int = 0
    wall_s: float = 0.0  # driver side: submit -> logits back
    compute_s: float = 0.0  # inside the actors' engine calls


class RayPoolEngine(Engine):
    name = "ray"

    def __init__(
        self,
        ray_spec: RaySpec,
        *,
        engine_class: str,
        target: str,
        model_path: str,
        device: str,
        batch_size: int,
        threads: int | None,
        execution_provider: str,
        options: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            model_path,
            device=device,
            batch_size=batch_size,
            threads=threads,
            execution_provider=execution_provider,
            options=options,
        )
        self.ray_spec = ray_spec
        self.target = target
        self._lock = threading.Lock()
        self._stats = _HopStats()
        self._untimed = 0  # open untimed() blocks: their calls are not counted in _stats
        self._lost: list[str] = []
        self._actors: list[Any] = []
        self._alive: list[bool] = []
        self._closing = False
        local = ray_spec.address == RAY_LOCAL
        count = ray_spec.actors or (physical_core_count() if local else None)
        cpa = ray_spec.cpus_per_actor
        self._owns_connection = ray_cluster.connect(
            ray_spec.address, num_cpus=max(physical_core_count(), int(np.ceil((count or 1) * cpa))) if local else None
        )
        ray = ray_cluster.ray_module()
        engine_cls = load_engine_class(engine_class)  # the driver checks the class; the actors build it
        gpu = TARGETS[target].gpu is not None if target in TARGETS else False
        self._nodes = ray_cluster.check_nodes(engine_cls.packages, gpu=gpu)
        offered = sum(n.gpus if gpu else n.cpus for n in self._nodes)
        per_actor = 1.0 if gpu else cpa
        if count is None:
            count = max(1, int(offered // per_actor))
        if not local and count * per_actor > offered:
            raise PreflightError(
                f"{count} actors of {per_actor:g} {'GPU' if gpu else 'CPU'} each do not fit the Ray cluster, which "
                f"offers {offered:g}; pass --ray-actors {max(1, int(offered // per_actor))} or add workers"
            )
        files, sha = read_model_files(Path(model_path))
        self._model_bytes = sum(len(b) for b in files.values())
        model_ref = ray.put(files)
        cpu_sets = worker_cpu_sets(count) if local else None  # None: fewer cores than actors
        actor_cls = ray.remote(EngineActor)
        name = Path(model_path).name
        for i in range(count):
            cfg = ActorConfig(
                engine_class=engine_class,
                target=target,
                device=device,
                batch_size=batch_size,
                threads=threads or max(1, int(cpa)),
                execution_provider=execution_provider,
                options=dict(self.options),
                model_name=name,
                model_is_dir=Path(model_path).is_dir(),
                model_sha256=sha,
                node_cache_dir=ray_spec.node_cache_dir,
                cpus=tuple(sorted(cpu_sets[i])) if cpu_sets else None,
                index=i,
            )
            handle = actor_cls.options(
                num_cpus=cpa,
                num_gpus=1 if gpu else 0,
                max_restarts=0,
                max_task_retries=0,
                scheduling_strategy="SPREAD",
            ).remote(cfg, model_ref)
            self._actors.append(handle)
        self._alive = [True] * count
        try:
            self._info = ray.get([a.describe.remote() for a in self._actors], timeout=ACTOR_START_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - turned into one sentence (the cause kept for -vv)
            self.close()
            raise _start_error(exc, count, target) from exc
        providers = {i["execution_provider"] for i in self._info}
        if len(providers) > 1:
            self.close()
            raise PreflightError(
                f"the Ray actors run on different providers ({', '.join(sorted(providers))}); give every worker "
                "the same backend build"
            )
        log.info(
            "%d Ray actor(s) on %s (model %.1f MB through the object store)",
            count,
            ray_cluster.describe_nodes(self._nodes),
            self._model_bytes / 1e6,
        )

    # ---- what the SUT asks -------------------------------------------------------------------------
    @property
    def execution_provider(self) -> str:
        return str(self._info[0]["execution_provider"])

    def versions(self) -> dict[str, str]:
        ray = ray_cluster.ray_module()
        return {**self._info[0]["versions"], "ray": ray.__version__}

    def seq_buckets(self) -> list[int] | None:
        buckets = self._info[0]["seq_buckets"]
        return list(buckets) if buckets else None

    def max_batch(self) -> int | None:
        value = self._info[0]["max_batch"]
        return int(value) if value else None

    def shape_costs_first_call(self) -> bool:
        return bool(self._info[0].get("shape_costs_first_call"))

    @property
    def instance_count(self) -> int:
        return len(self._actors)

    def nodes(self) -> list[NodeInfo]:
        """The nodes that host the run's actors (as they started: a node lost later still ran batches)."""
        actors: dict[str, int] = {}
        for info in self._info:
            actors[info["node_id"]] = actors.get(info["node_id"], 0) + 1
        return [
            NodeInfo(
                hostname=n.hostname,
                address=n.address,
                cpus=n.cpus,
                accelerators=n.gpus,
                accelerator_model=n.accelerator,
                cpu_model=n.cpu_model,
                isa=n.isa,
                actors=actors[n.node_id],
            )
            for n in self._nodes
            if n.node_id in actors
        ]

    def settings(self) -> dict[str, str]:
        with self._lock:
            stats, lost = _HopStats(**vars(self._stats)), list(self._lost)
        hosts: dict[str, int] = {}
        for info in self._info:
            hosts[info["hostname"]] = hosts.get(info["hostname"], 0) + 1
        out = merged_settings(self._info)
        out.update(
            {
                "ray_address": self.ray_spec.address,
                "ray_actors": str(len(self._actors)),
                "ray_cpus_per_actor": f"{self.ray_spec.cpus_per_actor:g}",
                "ray_nodes": ray_cluster.describe_nodes(self._nodes),
                "ray_actors_per_host": ", ".join(f"{h}: {n}" for h, n in sorted(hosts.items())),
                "ray_data": (
                    f"model: Ray object store (ray.put, {self._model_bytes / 1e6:.1f} MB), written to each node's "
                    "cache; inputs: with each batch call; logits: returned by each call; features: on the driver"
                ),
                "latency": HOP_NOTE,
                "ray_lost_actors": "; ".join(lost) if lost else "none",
            }
        )
        if stats.calls:
            out["ray_batches"] = str(stats.calls)
            out["ray_hop_ms_per_batch"] = f"{1000 * (stats.wall_s - stats.compute_s) / stats.calls:.3f}"
        return out

    def infer(
        self, input_ids: np.ndarray, input_mask: np.ndarray, segment_ids: np.ndarray, *, instance: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        ray = ray_cluster.ray_module()
        from ray.exceptions import RayActorError, RayTaskError

        with self._lock:  # decided when the call starts: a warm-up call is never counted, whenever it ends
            counted = not self._untimed
        while True:
            index = self._route(instance)
            started = time.perf_counter()
            ref = self._submit(index, input_ids, input_mask, segment_ids)
            try:
                start, end, compute = ray.get(ref)
            except RayActorError as exc:  # the actor (its process or node) is gone: run the batch elsewhere
                if self._closing:
                    raise RunError("the Ray actors were stopped because the run is ending") from None
                self._lose(index, exc)
                continue
            except RayTaskError as exc:  # the engine raised: the original error, as a local engine's would be
                raise _original(exc) from None
            with self._lock:
                if counted:
                    self._stats.calls += 1
                    self._stats.wall_s += time.perf_counter() - started
                    self._stats.compute_s += compute
            return start, end

    @contextlib.contextmanager
    def untimed(self) -> Iterator[None]:
        """The warm-up's calls (compiles, first touches) are not counted in ray_batches or the hop's cost."""
        with self._lock:
            self._untimed += 1
        try:
            yield
        finally:
            with self._lock:
                self._untimed -= 1

    def _submit(self, index: int, ids: np.ndarray, mask: np.ndarray, seg: np.ndarray) -> Any:
        """Send one batch to actor `index` (its ObjectRef); the fault tests kill actors right after it."""
        return self._actors[index].infer.remote(ids, mask, seg)

    def _route(self, instance: int) -> int:
        """Actor `instance` while it lives, else the live actors in turn."""
        with self._lock:
            if self._alive[instance]:
                return instance
            live = [i for i, ok in enumerate(self._alive) if ok]
            if not live:
                raise RunError(
                    f"all {len(self._alive)} Ray actors were lost ({'; '.join(self._lost)}); the run cannot finish: "
                    "check the cluster's workers and run again"
                )
            return live[instance % len(live)]

    def _lose(self, index: int, exc: BaseException) -> None:
        with self._lock:
            if not self._alive[index]:
                return
            self._alive[index] = False
            info = self._info[index] if index < len(getattr(self, "_info", [])) else {}
            where = f"{info.get('hostname', '?')}, node {str(info.get('node_id', '?'))[:12]}"
            self._lost.append(f"actor {index} ({where}): {type(exc).__name__}")
            left = sum(self._alive)
        log.warning(
            "Ray actor %d (%s) was lost (%s); its batches run again on the %d remaining actor(s)",
            index,
            where,
            type(exc).__name__,
            left,
        )

    def abandon(self) -> None:
        """End the Ray job now (the actors, and the local instance's processes, which would otherwise outlive
        the os._exit that follows); bounded, as the SUT's threads may still wait on the actors."""
        closer = threading.Thread(target=self.close, name="ray-abandon", daemon=True)
        closer.start()
        closer.join(ABANDON_TIMEOUT_S)

    def close(self) -> None:
        if not self._actors:
            return
        self._closing = True
        ray = ray_cluster.ray_module()
        for handle in self._actors:
            try:
                ray.kill(handle, no_restart=True)
            except Exception:  # noqa: BLE001 - an actor already gone
                log.debug("ray.kill failed", exc_info=True)
        self._actors = []
        if self._owns_connection:
            ray_cluster.disconnect()


def _original(exc: BaseException) -> BaseException:
    """The exception an actor's engine raised, out of Ray's wrappers (RayTaskError, ActorDiedError's cause)."""
    seen = 0
    while seen < 5:
        seen += 1
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException) and cause is not exc:
            exc = cause
            continue
        as_cause = getattr(exc, "as_instanceof_cause", None)
        if callable(as_cause):
            try:
                inner = as_cause()
            except Exception:  # noqa: BLE001
                break
            if isinstance(inner, MlperfBertError):
                return inner
        break
    return exc


def _start_error(exc: BaseException, count: int, target: str) -> MlperfBertError:
    original = _original(exc)
    if isinstance(original, MlperfBertError):
        return original
    first = (str(original).strip().splitlines() or [type(original).__name__])[-1]
    if type(exc).__name__ == "GetTimeoutError":
        return PreflightError(
            f"the {count} Ray actors did not start within {ACTOR_START_TIMEOUT_S:.0f} s; check that the cluster "
            f"has free CPUs for them (ray status) or pass fewer --ray-actors"
        )
    return PreflightError(f"the Ray actors could not start their {target} engines ({first}); check the workers' logs")
