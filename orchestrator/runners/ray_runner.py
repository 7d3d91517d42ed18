"""The Ray runner: the local runner's harness, made the driver of engine actors on a Ray cluster.

The harness (LoadGen, the QSL, the SUT) runs in a child process of this machine as with the local runner;
its spec's `ray` field makes it build a pool of Ray actors (orchestrator/harness/engines/ray_pool.py),
one engine each, on the cluster at `--ray-address` (`local`: a Ray instance this run starts on loopback).
The harness always runs in this environment: the engines run in the workers, which must have the backend.

Pre-flight, before a run directory exists: Ray importable; for a cluster, the head reachable and every
node on this Python and Ray (a tiny task per node); the engine's own packages are checked by the harness
when it starts the actors. SIGTERM is handled as Ctrl-C: the harness (the Ray driver) is interrupted,
its job and actors end with it, and the run is marked interrupted.
"""

from __future__ import annotations

import importlib.util
import logging
import shlex
import signal
from pathlib import Path

from orchestrator.errors import PreflightError
from orchestrator.harness import ray_cluster
from orchestrator.harness.spec import RAY_LOCAL, HarnessSpec
from orchestrator.runners.local import LocalRunner
from orchestrator.runners.runner import STOP_GRACE_S

log = logging.getLogger(__name__)


class RayRunner(LocalRunner):
    name = "ray"
    # Ray's core installs its own SIGTERM handler in a driver, which ends the process before the harness can
    # record the interruption; SIGINT reaches Python, which stops the run and ends the Ray job.
    harness_stop_signal = signal.SIGINT

    def __init__(
        self,
        *,
        address: str = RAY_LOCAL,
        stream: bool = True,
        cache_dir: Path | None = None,
        stop_grace_s: float = STOP_GRACE_S,
    ) -> None:
        super().__init__(local_env="main", stream=stream, cache_dir=cache_dir, stop_grace_s=stop_grace_s)
        self.address = address

    def preflight(self) -> None:
        if importlib.util.find_spec("ray") is None:
            raise PreflightError(
                "the Ray runner needs Ray, which this environment lacks; install it with pip install 'mlperf-bert[ray]'"
            )
        if self.address == RAY_LOCAL:
            return
        connected = ray_cluster.connect(self.address)
        try:
            nodes = ray_cluster.check_nodes()
            log.info("Ray cluster at %s: %s", self.address, ray_cluster.describe_nodes(nodes))
        finally:
            if connected:
                ray_cluster.disconnect()

    def describe(self, spec: HarnessSpec, run_dir: Path) -> str:
        where = spec.ray.address if spec.ray is not None else self.address
        return shlex.join(["python", "-m", "orchestrator.harness", str(run_dir)]) + f"  # Ray driver, cluster {where}"
