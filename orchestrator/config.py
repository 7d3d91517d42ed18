"""Typed run configuration. Unknown keys are rejected; resolution is CLI > config file > defaults.

`RunConfig` is what a user asks for (host side). `HarnessSpec` (in harness/spec.py) is what the
harness inside a runner receives, with paths as the runner sees them.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestrator.backends import BACKENDS, TARGETS, default_device
from orchestrator.errors import ConfigError
from orchestrator.mlperf import ExecutionMode, Mode, Scenario, SutKind

__all__ = ["ExecutionMode", "Mode", "RunConfig", "RunnerKind", "Scenario", "SutKind", "resolve_config"]


class RunnerKind(StrEnum):
    auto = "auto"  # docker when an engine is reachable and the image exists, else local
    local = "local"
    docker = "docker"


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
    target_qps: float | None = Field(default=None, gt=0)
    target_latency_ms: float | None = Field(default=None, gt=0)  # Server only; MLPerf's is 130
    runner: RunnerKind = RunnerKind.auto
    output_dir: Path = Path("runs")
    cache_dir: Path | None = None
    image: str | None = None  # docker runner: override the image reference
    shm_size: str | None = None  # docker runner: --shm-size (default 1g)
    cpuset_cpus: str | None = None  # docker runner: --cpuset-cpus, e.g. "0-3"
    memory: str | None = None  # docker runner: --memory limit, e.g. "8g"
    gpus: str | None = None  # docker runner, NVIDIA: --gpus value (default "all")
    engine_options: dict[str, str] = Field(default_factory=dict)  # passed to the engine as-is

    @field_validator("scenario", mode="before")
    @classmethod
    def _scenario_case(cls, v: Any) -> Any:
        if isinstance(v, str) and not isinstance(v, Scenario):
            try:
                return Scenario.parse(v)
            except ValueError:
                return v  # pydantic names the valid values
        return v

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
            raise ValueError(
                f"backend {self.backend!r} has no device {device!r}; choose one of {', '.join(devices)}"
            )
        return self

    @property
    def resolved_device(self) -> str:
        return self.device or default_device(self.backend)

    @property
    def target_key(self) -> str:
        return f"{self.backend}-{self.resolved_device}"


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
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; pass an existing YAML file to --config") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML ({e.__class__.__name__}); fix its syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of option: value; it holds {type(data).__name__}")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def resolve_config(cli: dict[str, Any], config_file: Path | None = None) -> RunConfig:
    """CLI values that are not None override the file, which overrides the defaults."""
    merged: dict[str, Any] = load_config_file(config_file) if config_file else {}
    merged.update({k: v for k, v in cli.items() if v is not None})
    try:
        return RunConfig(**merged)
    except ValidationError as e:
        raise ConfigError(_first_error(e)) from None
