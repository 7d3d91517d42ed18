"""Typed run configuration. Unknown keys are rejected; resolution is CLI > config file > defaults.

`RunConfig` is what a user asks for (host side). `HarnessSpec` (in harness/spec.py) is what the
harness inside a runner receives, with paths as the runner sees them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestrator.backends import BACKENDS, TARGETS, default_device
from orchestrator.errors import ConfigError
from orchestrator.mlperf import ExecutionMode, Mode, Scenario, SutKind

__all__ = [
    "CONFIG_FLAG",
    "RUN_FLAGS",
    "ExecutionMode",
    "LocalEnv",
    "Mode",
    "RunConfig",
    "RunOverrides",
    "RunnerKind",
    "Scenario",
    "SutKind",
    "resolve_config",
    "run_flags",
]


# Docker's forms (its go-units sizes; cpuset lists; image references, registry/name:tag@digest), checked here so
# that a typo is one sentence before any run directory, not a container that fails to start.
_DOCKER_SIZE = re.compile(r"\d+(\.\d+)?\s?[kKmMgGtTpP]?[iI]?[bB]?")
_CPU_LIST = re.compile(r"\d+(-\d+)?(,\d+(-\d+)?)*")
_IMAGE_REF = re.compile(
    r"([A-Za-z0-9.-]+(:\d+)?/)?[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?"
)


class RunnerKind(StrEnum):
    auto = "auto"  # docker when an engine is reachable and the image exists, else local
    local = "local"
    docker = "docker"
    ray = "ray"  # the harness drives engine actors on a Ray cluster (orchestrator/runners/ray_runner.py)


class LocalEnv(StrEnum):
    """Which Python the local runner runs the harness in."""

    auto = "auto"  # the target's own: this environment, or its managed venv (= managed)
    managed = "managed"
    current = "current"  # this interpreter, whatever it holds (a cluster's or a GPU machine's own torch)


class RunConfig(BaseModel):
    """Everything a run needs, as the user asked for it."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)

    backend: str = "onnxruntime"
    device: str | None = None
    scenario: Scenario = Scenario.Offline
    mode: Mode = Mode.both
    execution_mode: ExecutionMode = ExecutionMode.test
    test_query_count: int = Field(default=100, ge=1)
    batch_size: int | None = Field(default=None, ge=1, le=4096)  # None: the target's default
    threads: int | None = Field(default=None, ge=1)
    sut: SutKind = SutKind.optimized
    model: str = "demo-int8"  # a catalogue name (configs/assets.yaml)
    model_path: Path | None = None  # any compatible ONNX file; overrides `model`
    dataset_path: Path | None = None  # default: the embedded SQuAD v1.1 dev set
    vocab_path: Path | None = None  # default: the embedded BERT uncased vocab
    calibration_path: Path | None = None  # SQuAD v1.1 train JSON (.json/.json.gz) for an engine's static int8
    target_qps: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    # Server: the latency bound (MLPerf's is 130); SingleStream/MultiStream: the expected latency.
    target_latency_ms: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    runner: RunnerKind = RunnerKind.auto
    local_env: LocalEnv = LocalEnv.auto  # local runner: the target's environment, or the current one
    output_dir: Path = Path("runs")
    cache_dir: Path | None = None
    image: str | None = None  # docker runner: override the image reference
    shm_size: str | None = None  # docker runner: --shm-size (default 1g)
    cpuset_cpus: str | None = None  # docker runner: --cpuset-cpus, e.g. "0-3"
    memory: str | None = None  # docker runner: --memory limit, e.g. "8g"
    gpus: str | None = None  # docker runner, NVIDIA: --gpus value (default "all")
    engine_options: dict[str, str] = Field(default_factory=dict)  # passed to the engine as-is
    ray_address: str | None = None  # ray runner: local | auto | HOST:PORT (default: local)
    ray_actors: int | None = Field(default=None, ge=1)  # ray runner: engine actors (default: one per CPU/GPU)
    cluster: str | None = None  # ray runner: a `cluster up` cluster, the driver in its head container
    # Seconds a stopped run (Ctrl-C, SIGTERM, SIGHUP) gets to record itself before it is killed; under a batch
    # system, less than its own kill wait (Slurm's KillWait: 30 s by default). None: STOP_GRACE_S (runners).
    stop_grace_s: float | None = Field(default=None, ge=0, le=3600)

    @field_validator("scenario", mode="before")
    @classmethod
    def _scenario_case(cls, v: Any) -> Any:
        if isinstance(v, str) and not isinstance(v, Scenario):
            try:
                return Scenario.parse(v)
            except ValueError:
                return v  # pydantic names the valid values
        return v

    @field_validator("mode", "execution_mode", "sut", "runner", "local_env", mode="before")
    @classmethod
    def _choice_case(cls, v: Any) -> Any:
        """Choices in any case, as on the command line (their values are lower case)."""
        return v.lower() if isinstance(v, str) and not isinstance(v, Enum) else v

    @field_validator("shm_size", "memory")
    @classmethod
    def _docker_size(cls, v: str | None) -> str | None:
        if v is not None and not _DOCKER_SIZE.fullmatch(v.strip()):
            raise ValueError("not a size Docker reads; pass a number with a unit, e.g. 512m or 8g")
        return v.strip() if v is not None else v

    @field_validator("cpuset_cpus")
    @classmethod
    def _cpu_list(cls, v: str | None) -> str | None:
        if v is not None and not _CPU_LIST.fullmatch(v.strip()):
            raise ValueError("not a list of CPUs; pass numbers and ranges, e.g. 0-3 or 0,2,4")
        return v.strip() if v is not None else v

    @field_validator("image")
    @classmethod
    def _image_reference(cls, v: str | None) -> str | None:
        if v is not None and not _IMAGE_REF.fullmatch(v.strip()):
            raise ValueError("not an image reference; pass e.g. mlperf-bert/onnxruntime-cpu:latest")
        return v.strip() if v is not None else v

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, v: str) -> str:
        if v not in BACKENDS:
            raise ValueError(f"unknown backend {v!r}; choose one of {', '.join(BACKENDS)}")
        return v

    @model_validator(mode="after")
    def _known_target(self) -> RunConfig:
        device = self.device or default_device(self.backend)
        if f"{self.backend}-{device}" not in TARGETS:
            devices = sorted(t.device for t in TARGETS.values() if t.backend == self.backend)
            raise ValueError(f"backend {self.backend!r} has no device {device!r}; choose one of {', '.join(devices)}")
        return self

    @field_validator("ray_address")
    @classmethod
    def _ray_address_form(cls, v: str | None) -> str | None:
        if v is None or v in ("local", "auto"):
            return v
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("pass the Ray head's HOST:PORT (e.g. 10.0.0.5:6379), auto, or local")
        return v

    @model_validator(mode="after")
    def _reference_runs_batch_one(self) -> RunConfig:
        if self.sut is SutKind.reference and self.batch_size not in (None, 1):
            raise ValueError(
                f"the reference SUT runs MLPerf's batch of 1, not {self.batch_size}; drop --batch-size, or pass "
                "--sut optimized"
            )
        return self

    @model_validator(mode="after")
    def _ray_options_need_ray(self) -> RunConfig:
        ray_options = (self.ray_address, self.ray_actors, self.cluster)
        if any(v is not None for v in ray_options) and self.runner is not RunnerKind.ray:
            raise ValueError(
                "--ray-address, --ray-actors and --cluster are options of the Ray runner; add --runner ray"
            )
        if self.cluster is not None and self.ray_address is not None:
            raise ValueError(
                "--cluster runs the driver in that cluster's head, which has its own address; drop --ray-address"
            )
        return self

    @property
    def resolved_device(self) -> str:
        return self.device or default_device(self.backend)

    @property
    def target_key(self) -> str:
        return f"{self.backend}-{self.resolved_device}"


@dataclass(frozen=True, kw_only=True)
class RunOverrides:
    """The run options a user gave explicitly (None: not given), field for field a RunConfig.

    `resolve_config` lays them over the --config file, which lies over the defaults. Values are checked
    there, once, by RunConfig (so a bad one is a ConfigError naming the option).
    """

    backend: str | None = None
    device: str | None = None
    scenario: Scenario | None = None
    mode: Mode | None = None
    execution_mode: ExecutionMode | None = None
    test_query_count: int | None = None
    batch_size: int | None = None
    threads: int | None = None
    sut: SutKind | None = None
    model: str | None = None
    model_path: Path | None = None
    dataset_path: Path | None = None
    vocab_path: Path | None = None
    calibration_path: Path | None = None
    target_qps: float | None = None
    target_latency_ms: float | None = None
    runner: RunnerKind | None = None
    local_env: LocalEnv | None = None
    output_dir: Path | None = None
    cache_dir: Path | None = None
    image: str | None = None
    shm_size: str | None = None
    cpuset_cpus: str | None = None
    memory: str | None = None
    gpus: str | None = None
    engine_options: dict[str, str] | None = None
    ray_address: str | None = None
    ray_actors: int | None = None
    cluster: str | None = None
    stop_grace_s: float | None = None

    def given(self) -> dict[str, Any]:
        """The options given, by RunConfig field name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "config"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return f"unknown option {loc!r}; remove it or check its spelling against `mlperf-bert run --help`"
    given = err.get("input")
    shown = f" {given!r}" if isinstance(given, (str, int, float)) else ""
    return f"invalid {loc}{shown}: {msg[0].lower() + msg[1:]}"


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML config file (keys as in RunConfig, dashes or underscores)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; pass an existing YAML file to --config") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder; pass a YAML file to --config") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text; pass a YAML file to --config") from None
    except OSError as e:
        raise ConfigError(f"cannot read the config file {path} ({e.strerror}); pass a readable YAML file") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML ({e.__class__.__name__}); fix its syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of option: value; it holds {type(data).__name__}")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def resolve_config(overrides: RunOverrides | None = None, config_file: Path | None = None) -> RunConfig:
    """The options given override the file, which overrides the defaults."""
    merged: dict[str, Any] = load_config_file(config_file) if config_file else {}
    merged.update(overrides.given() if overrides is not None else {})
    return checked_config(merged)


def checked_config(values: dict[str, Any]) -> RunConfig:
    """RunConfig(**values), its first validation error as a ConfigError of one sentence."""
    try:
        return RunConfig(**values)
    except ValidationError as e:
        raise ConfigError(_first_error(e)) from None


# RunConfig field -> its `mlperf-bert run` flag: the one table of run option names.
RUN_FLAGS: dict[str, str] = {
    "backend": "--backend",
    "device": "--device",
    "scenario": "--scenario",
    "mode": "--mode",
    "execution_mode": "--execution-mode",
    "test_query_count": "--test-query-count",
    "batch_size": "--batch-size",
    "threads": "--threads",
    "sut": "--sut",
    "model": "--model",
    "model_path": "--model-path",
    "dataset_path": "--dataset",
    "vocab_path": "--vocab",
    "calibration_path": "--calibration",
    "target_qps": "--target-qps",
    "target_latency_ms": "--target-latency-ms",
    "runner": "--runner",
    "local_env": "--local-env",
    "image": "--image",
    "shm_size": "--shm-size",
    "cpuset_cpus": "--cpuset-cpus",
    "memory": "--memory",
    "gpus": "--gpus",
    "engine_options": "--engine-option",
    "ray_address": "--ray-address",
    "ray_actors": "--ray-actors",
    "cluster": "--cluster",
    "stop_grace_s": "--stop-grace-s",
    "output_dir": "--output-dir",
    "cache_dir": "--cache-dir",
}
CONFIG_FLAG = "--config"


def run_flags(overrides: RunOverrides) -> list[str]:
    """The `mlperf-bert run` flags that give these overrides back."""
    argv: list[str] = []
    for field, value in overrides.given().items():
        flag = RUN_FLAGS[field]
        if isinstance(value, dict):
            argv += [part for key, item in value.items() for part in (flag, f"{key}={item}")]
        else:
            argv += [flag, str(value.value if isinstance(value, Enum) else value)]
    return argv
