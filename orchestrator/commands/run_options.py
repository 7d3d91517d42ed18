"""The options of a run, declared once: `run`, `tune` and `submission run` take theirs from here.

Each alias below is the option of one RunConfig field; `RUN_FLAGS` is how `mlperf-bert run` spells each
field, so the commands recorded for a run (orchestrator/workflows/submission_run.py) use the very flags the
commands take. A command gathers the values given into a `RunOverrides` (orchestrator/config.py), which
`resolve_config` lays over the --config file and the defaults. Help texts write defaults as
"(default: ...)", apart from the "[default: ...]" click adds
for a plain default value.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrator.backends import BACKENDS, DEVICES, TARGETS, Target
from orchestrator.config import (
    CONFIG_FLAG,
    RUN_FLAGS,
    ExecutionMode,
    LocalEnv,
    Mode,
    RunConfig,
    RunnerKind,
    Scenario,
    SutKind,
)
from orchestrator.errors import ConfigError


def _default(field: str) -> str:
    """RunConfig's default of a field, as a user would type it."""
    value = RunConfig.model_fields[field].default
    return str(value.value if isinstance(value, Enum) else value)


def _choices(values: tuple[str, ...] | type[Enum]) -> str:
    return " | ".join(v.value for v in values) if isinstance(values, type) else " | ".join(values)


def _option(field: str, help: str, **kwargs: Any) -> Any:
    kwargs.setdefault("case_sensitive", False)  # choices in any case (--mode Accuracy, --runner LOCAL)
    return typer.Option(RUN_FLAGS[field], help=help, **kwargs)


BackendOption = Annotated[
    str | None,
    _option("backend", f"Inference backend: {_choices(BACKENDS)} (default: {_default('backend')}).", metavar="<name>"),
]
DeviceOption = Annotated[
    str | None, _option("device", f"Device: {_choices(DEVICES)} (default: the backend's first).", metavar="<name>")
]
ScenarioOption = Annotated[
    Scenario | None,
    _option("scenario", f"LoadGen scenario, any case (default: {_default('scenario')}).", case_sensitive=False),
]
ScenariosOption = Annotated[
    list[Scenario] | None,
    _option(
        "scenario",
        "LoadGen scenario to run, any case; repeat it (default: Offline and SingleStream).",
        case_sensitive=False,
        metavar=f"<{'|'.join(s.value.lower() for s in Scenario)}>",
    ),
]
ModeOption = Annotated[
    Mode | None, _option("mode", f"accuracy, performance, or both, accuracy first (default: {_default('mode')}).")
]
ExecutionModeOption = Annotated[
    ExecutionMode | None,
    _option(
        "execution_mode",
        "test: a short run of --test-query-count samples, labelled a test-mode result, never valid; "
        f"valid: the full MLPerf rules (default: {_default('execution_mode')}).",
    ),
]
TestQueryCountOption = Annotated[
    int | None, _option("test_query_count", f"Samples in a test-mode run (default: {_default('test_query_count')}).")
]
_USUAL_BATCH = Target.__dataclass_fields__["batch_size"].default
_OWN_BATCH = ", ".join(f"{t.key} {t.batch_size}" for t in TARGETS.values() if t.batch_size != _USUAL_BATCH)
BatchSizeOption = Annotated[
    int | None,
    _option(
        "batch_size",
        f"Batch size of the optimized SUT (default: the target's, {_OWN_BATCH}, else {_USUAL_BATCH}; 1 in "
        "SingleStream, whose queries are one sample).",
    ),
]
ThreadsOption = Annotated[int | None, _option("threads", "Intra-op threads (default: the engine's choice).")]
SutOption = Annotated[
    SutKind | None,
    _option("sut", f"optimized, or reference: the MLPerf reference behaviour (default: {_default('sut')})."),
]
ModelOption = Annotated[
    str | None,
    _option(
        "model",
        "Model name from configs/assets.yaml, or a SparseZoo stub zoo:... for deepsparse "
        f"(default: {_default('model')}, embedded).",
        metavar="<name>",
    ),
]
ModelPathOption = Annotated[
    Path | None,
    _option(
        "model_path",
        "Model to run instead of --model: an ONNX file, or a Hugging Face checkpoint directory for pytorch.",
    ),
]
DatasetOption = Annotated[Path | None, _option("dataset_path", "SQuAD v1.1 JSON (default: the embedded dev set).")]
VocabOption = Annotated[
    Path | None, _option("vocab_path", "WordPiece vocab (default: the embedded BERT uncased vocab).")
]
CalibrationOption = Annotated[
    Path | None,
    _option(
        "calibration_path",
        "SQuAD v1.1 train JSON (.json or .json.gz, never dev) that precision=int8 calibrates on (openvino).",
    ),
]
TargetQpsOption = Annotated[
    float | None, _option("target_qps", "LoadGen target_qps, Offline and Server (default: LoadGen's).")
]
TargetLatencyOption = Annotated[
    float | None, _option("target_latency_ms", "Server target latency in ms (default: MLPerf's, 130).")
]
RunnerOption = Annotated[
    RunnerKind | None,
    _option(
        "runner",
        "auto: docker when the engine and image are there, else local; local; docker; or ray: engine actors "
        f"on a Ray cluster, see --ray-address (default: {_default('runner')}).",
    ),
]
LocalEnvOption = Annotated[
    LocalEnv | None,
    _option(
        "local_env",
        "Local runner: auto or managed, the backend's own environment (this one, or a venv built from its "
        "image's pins); current, this Python as it is, e.g. a machine's preinstalled torch "
        f"(default: {_default('local_env')}).",
    ),
]
StopGraceOption = Annotated[
    float | None,
    _option(
        "stop_grace_s",
        "Seconds a run stopped by Ctrl-C, SIGTERM or SIGHUP gets to record itself before it is killed; under a "
        "batch system, give less than its kill wait (Slurm's KillWait, 30 s by default) (default: 30).",
        metavar="<seconds>",
    ),
]
ImageOption = Annotated[str | None, _option("image", "Docker runner: the image reference to use.", metavar="<ref>")]
ShmSizeOption = Annotated[
    str | None, _option("shm_size", "Docker runner: shared memory size (default: 1g).", metavar="<size>")
]
CpusetCpusOption = Annotated[
    str | None, _option("cpuset_cpus", "Docker runner: CPUs the container may use, e.g. 0-3.", metavar="<cpus>")
]
MemoryOption = Annotated[str | None, _option("memory", "Docker runner: memory limit, e.g. 8g.", metavar="<size>")]
GpusOption = Annotated[
    str | None, _option("gpus", "Docker runner, NVIDIA: the --gpus value (default: all).", metavar="<gpus>")
]
RayAddressOption = Annotated[
    str | None,
    _option(
        "ray_address",
        "Ray runner: the cluster's HOST:PORT, auto (the cluster this machine belongs to), or local (a Ray "
        "instance on this machine's loopback) (default: local).",
        metavar="<address>",
    ),
]
RayActorsOption = Annotated[
    int | None,
    _option(
        "ray_actors",
        "Ray runner: engine actors, one engine each (default: one per CPU, or GPU, offered).",
        min=1,
        metavar="<n>",
    ),
]
ClusterOption = Annotated[
    str | None,
    _option(
        "cluster",
        "Ray runner: a `mlperf-bert cluster up` cluster by name; the driver (the harness) runs in its head "
        "container, on the cluster's internal network.",
        metavar="<name>",
    ),
]
EngineOptionsOption = Annotated[
    list[str] | None,
    _option("engine_options", "KEY=VALUE passed to the engine, e.g. optimize=none; repeat it.", metavar="<key=value>"),
]
OutputDirOption = Annotated[
    Path | None, _option("output_dir", f"Where run directories are made (default: ./{_default('output_dir')}).")
]
CacheDirOption = Annotated[
    Path | None,
    _option("cache_dir", "Asset and feature cache (default: $MLPERF_BERT_CACHE, else ~/.cache/mlperf-bert)."),
]
ConfigFileOption = Annotated[
    Path | None,
    typer.Option(
        CONFIG_FLAG,
        help="YAML file of run options, keyed by RunConfig field, e.g. batch_size: 8 (the flags given override it).",
    ),
]


def parse_engine_options(items: list[str] | None) -> dict[str, str] | None:
    """--engine-option KEY=VALUE items as a mapping (None when none were given)."""
    if not items:
        return None
    flag = RUN_FLAGS["engine_options"]
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} {item!r} is not KEY=VALUE; write it like {flag} optimize=none")
        key, value = key.strip(), value.strip()
        if key in out and out[key] != value:
            raise ConfigError(f"{flag} {key} is given twice ({out[key]} and {value}); give it once")
        out[key] = value
    return out
