"""The contract between a runner and the harness: `<run_dir>/harness.json`.

A runner (local or docker) writes this file with paths as the harness will see them (host paths for
the local runner, container mount points for docker), then runs `python -m orchestrator.harness
<run_dir>`. The harness writes its LoadGen logs into the run directory and `harness_result.json`.
This module must stay importable without typer, docker or any inference engine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.mlperf import ExecutionMode, Pass, Scenario, SutKind

SPEC_FILE = "harness.json"
RESULT_FILE = "harness_result.json"

# Harness exit codes, read by the runners.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2  # model/features/settings rejected: message in harness_result.json "error"
EXIT_INTERRUPTED = 130


# `RaySpec.address`: "local" starts a Ray instance on this machine's loopback, for tests and laptops.
RAY_LOCAL = "local"


class RaySpec(BaseModel):
    """Run the engine on Ray actors, one per engine instance; the harness (LoadGen, QSL, SUT) is the driver."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str = RAY_LOCAL  # local | auto | HOST:PORT
    actors: int | None = Field(default=None, ge=1)  # None: one per CPU (GPU) the cluster offers
    cpus_per_actor: float = Field(default=1.0, gt=0)
    node_cache_dir: str | None = None  # each node's model and engine cache; None: the node's default cache


class HarnessSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str  # registry key, e.g. "onnxruntime-cpu"
    engine_class: str  # "module:Class"
    execution_provider: str  # what the target must run on; the harness reports what really ran
    sut: SutKind = SutKind.optimized
    model_path: str
    features_path: str  # the features .npz (see orchestrator/dataset)
    run_dir: str
    scenario: Scenario
    modes: list[Pass]
    execution_mode: ExecutionMode = ExecutionMode.test
    test_query_count: int = Field(default=100, ge=1)
    batch_size: int = Field(default=16, ge=1)
    threads: int | None = None
    target_qps: float | None = None
    target_latency_ms: float | None = None
    engine_options: dict[str, str] = Field(default_factory=dict)
    progress: bool = True  # a progress bar on stderr while samples complete
    # A compliance pass (e.g. TEST01): the test's name and the text of its audit.config. The harness writes
    # the file into a working directory of this run's own and runs LoadGen's performance pass there.
    compliance_test: str | None = None
    audit_config: str | None = None
    ray: RaySpec | None = None  # set: the engine runs on Ray actors (orchestrator/harness/engines/ray_pool.py)

    def write(self, run_dir: Path) -> Path:
        path = run_dir / SPEC_FILE
        path.write_text(self.model_dump_json(indent=2) + "\n")
        return path

    @classmethod
    def read(cls, run_dir: Path) -> HarnessSpec:
        return cls.model_validate_json((run_dir / SPEC_FILE).read_text())


class ModeResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Pass
    log_dir: str  # relative to run_dir: "accuracy" or "performance/run_1"
    samples_issued: int
    wall_seconds: float


class NodeInfo(BaseModel):
    """A machine the run's engine ran on, other than (or besides) the harness's own: a Ray node with actors."""

    model_config = ConfigDict(extra="forbid")

    hostname: str
    address: str
    cpus: float  # what the node offers to the cluster (Ray's CPU resource: logical CPUs unless set)
    accelerators: float = 0  # GPUs it offers
    accelerator_model: str | None = None  # Ray's accelerator_type, when the node declares one
    cpu_model: str | None = None  # its /proc/cpuinfo model name
    isa: str | None = None  # its matrix-relevant instructions (run.json's own `isa` is the driver's)
    actors: int = 0  # engine actors the run placed on it


class HarnessResult(BaseModel):
    """Written by the harness at the end (also on failure, with `error`)."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["succeeded", "failed", "interrupted"]
    error: str | None = None
    execution_provider: str | None = None  # what really ran (reported by the engine)
    versions: dict[str, str] = Field(default_factory=dict)  # python, numpy, loadgen, engine...
    engine_settings: dict[str, str] = Field(default_factory=dict)  # graph, instances, threads, pinned CPUs
    nodes: list[NodeInfo] = Field(default_factory=list)  # where the engine ran, when on other machines (Ray)
    modes: list[ModeResult] = Field(default_factory=list)
    user_conf: str | None = None  # relative path of the user.conf the harness used

    def write(self, run_dir: Path) -> None:
        tmp = run_dir / (RESULT_FILE + ".tmp")
        tmp.write_text(self.model_dump_json(indent=2) + "\n")
        tmp.replace(run_dir / RESULT_FILE)

    @classmethod
    def read(cls, run_dir: Path) -> HarnessResult | None:
        path = run_dir / RESULT_FILE
        if not path.exists():
            return None
        return cls.model_validate(json.loads(path.read_text()))
