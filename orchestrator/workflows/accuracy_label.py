"""Whether a run's reduced precision (int8, bf16, fp16) has a passing accuracy check: the label of its record.

A model or engine that trades precision for speed is trusted only where a check says its accuracy holds:
    - a precision the engine made itself at load time (openvino bf16/int8, pytorch bf16/fp16, onnxruntime
      fp16): the record of `tune --precisions` in the cache, found by the run's own run.json
      (orchestrator/workflows/accuracy_checks.py);
    - an int8 model (the catalogue says so, or its graph: assets/onnx_precision.py): the record
      `accuracy_check.json` that `tune --int8` writes beside it, one per target and class of CPU
      (`accuracy_check.openvino-cpu.json`, `accuracy_check.int16-pair-sums.json` where int8 has no dot
      products, see check_file) (orchestrator/workflows/int8.py), made with the run's engine precision and
      options at its batch size (`covers`); or, where no check sits beside it, the catalogue's measured
      reference accuracy of that very model, for the target it was measured on (onnxruntime-cpu).
Anything else (no record, a failed check, a random-weight speed model) is labelled UNCHECKED in the run's
summary and run.json, and `submission generate` refuses it, naming the command that checks it.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from orchestrator.config import SutKind
from orchestrator.harness.cpu import INT8_DOT_PRODUCTS, INT8_UNKNOWN
from orchestrator.runs import RunRecord
from orchestrator.workflows.accuracy_checks import (
    CALIBRATION_OPTION,
    CHECK_SAMPLES_FLAG,
    REDUCED,
    cache_dir_of,
    find_check,
    run_int8_kernels,
)
from orchestrator.workflows.accuracy_checks import ran_precision as engine_precision

CHECK_FILE = "accuracy_check.json"  # beside an int8 model: its check on a CPU with int8 dot products (VNNI, AMX)
# The target whose engine ran the checks beside int8 models until records named theirs (2026-12-08): tune --int8
# checked on onnxruntime-cpu, whatever --backend the trials ran on. Its records keep their names.
DEFAULT_CHECK_TARGET = "onnxruntime-cpu"
# Engine options a check command does not repeat: tune sweeps precision and instances with its own flags, and
# the calibration features' option is made from --calibration.
_NOT_NUMERICS = ("precision", "instances", CALIBRATION_OPTION)
UNCHECKED = "accuracy unchecked"
QUANTIZED_DIR = "quantized"  # <cache>/quantized/<variant>/: the int8 files tune --int8 makes (workflows/int8.py)


def check_file(
    int8_kernels: str = INT8_DOT_PRODUCTS, batch_size: int | None = None, target: str = DEFAULT_CHECK_TARGET
) -> str:
    """The name of an int8 model's check record beside it: one per target (the engine and device that ran
    the check, as the same file runs with other numerics in another engine), per class of CPU (harness/cpu.py
    int8_kernels), so two classes sharing a cache each keep their verdict instead of checking again and
    overwriting the other's, and per batch size it was checked at. onnxruntime-cpu on VNNI/AMX keeps the
    names every earlier record has."""
    name = "accuracy_check" if batch_size is None else f"accuracy_check.batch{batch_size}"
    if target != DEFAULT_CHECK_TARGET:
        name += "." + target
    if int8_kernels != INT8_DOT_PRODUCTS:
        name += "." + int8_kernels.replace(" ", "-")
    return name + ".json"


def check_path(
    directory: Path, int8_kernels: str, batch_size: int | None = None, target: str = DEFAULT_CHECK_TARGET
) -> Path:
    """The record of this target and class of CPU in directory: its own file (check_file), or, for
    onnxruntime-cpu, a record that names this class under the dot-products name, as records made before they
    were per class (2026-12-07) are."""
    own = directory / check_file(int8_kernels, batch_size, target)
    if own.exists() or int8_kernels == INT8_DOT_PRODUCTS or target != DEFAULT_CHECK_TARGET:
        return own
    legacy = directory / check_file(INT8_DOT_PRODUCTS, batch_size)
    try:
        named = json.loads(legacy.read_text()).get("int8_kernels")
    except (OSError, ValueError, AttributeError):
        return own
    return legacy if named == int8_kernels else own


def numerics_options(engine_options: dict[str, str]) -> dict[str, str]:
    """The engine options that can change an int8 model's numbers (fusions, optimization, precision of the
    rest): all but the instance count and the cache folders, which change only where and how often it runs."""
    return {k: v for k, v in sorted(engine_options.items()) if k != "instances" and not k.endswith("cache_dir")}


def model_is_reduced(record: RunRecord) -> bool:
    """The model file itself is int8/fp16 (the catalogue says so, or its graph: assets/onnx_precision.py)."""
    return str(record.model_meta.get("precision") or "").lower() in REDUCED


def covers(check: dict[str, Any], record: RunRecord) -> bool:
    """A passing check record of an int8 model vouches for this run of it: the same file, run by the same
    target and SUT with the engine at the same precision and options, on a CPU that multiplies int8 the same
    way, at the same batch size (dynamic quantization picks its scales per batch; a static recipe fixed them at
    calibration, int8.STATIC_RECIPES, so its verdict holds at any batch)."""
    kernels = run_int8_kernels(record)
    batch = record.batch_size_ran
    recipe = str(check.get("recipe", ""))
    return (
        check.get("passed") is True
        and kernels is not None
        and check.get("int8_sha256") == record.model.sha256
        and check.get("target", DEFAULT_CHECK_TARGET) == record.target
        and check.get("sut", SutKind.optimized.value) == record.config.sut.value
        and check.get("int8_kernels", INT8_DOT_PRODUCTS) == kernels
        and check.get("engine_precision") == engine_precision(record.engine_settings)
        and check.get("engine_options", {}) == numerics_options(record.config.engine_options)
        and (batch is None or recipe.startswith("static-") or check.get("batch_size", 32) == batch)
    )


def accuracy_check_label(record: RunRecord, model_path: Path) -> str | None:
    """None for full precision; "passed (<check record>)" with a passing check; else UNCHECKED."""
    ran = engine_precision(record.engine_settings)
    reduced_model = model_is_reduced(record)
    if ran in REDUCED and not reduced_model:  # made by the engine at load time: the check store's verdict
        found = find_check(record)
        if found is not None and found[1] is not None and found[1].passed:
            return f"passed ({found[0]})"
        return UNCHECKED
    if not reduced_model:
        return None
    # An int8 model: the record of this run's target and class of CPU (Ray nodes of mixed classes, None, have
    # none), its first check or the one at this run's batch size, beside the file or beside the copy of the
    # same bytes that tune --int8 made and checked in the cache (e.g. the embedded demo-int8 is byte for byte
    # the `all` recipe of its fp32 parent).
    kernels = run_int8_kernels(record) or INT8_UNKNOWN
    directory = model_path.parent
    batches = [None] + ([record.batch_size_ran] if record.batch_size_ran else [])
    for folder in _record_folders(record, directory):
        for batch in batches:
            path = check_path(folder, kernels, batch, record.target)
            try:
                check = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(check, dict) and covers(check, record):
                return f"passed ({path})"
    if any(directory.glob("accuracy_check*.json")):
        return UNCHECKED  # checked, but not passed, or not for this target, CPU, batch or options
    if record.model_meta.get("reference_f1") is not None and record.target == DEFAULT_CHECK_TARGET:
        # A catalogue model whose own accuracy is measured and recorded (the embedded demo-int8: its model card
        # measured it in onnxruntime on the CPU); another engine runs the same file with other kernels.
        return None
    return UNCHECKED


def _record_folders(record: RunRecord, directory: Path) -> list[Path]:
    """Where check records of the run's model may be: beside it, then in each int8 variant tune made in the
    run's cache (covers() takes a record only for the very file, by its sha256)."""
    quantized = cache_dir_of(record) / QUANTIZED_DIR
    try:
        made = sorted(d for d in quantized.iterdir() if d.is_dir() and d != directory)
    except OSError:
        made = []
    return [directory, *made]


def unchecked_precision(record: RunRecord) -> str:
    """What an unchecked run ran that needs a check: its model's own precision (an int8 file), else the one its
    engine made."""
    if model_is_reduced(record):
        return str(record.model_meta.get("precision")).lower()
    return engine_precision(record.engine_settings) or "a reduced precision"


def check_advice(record: RunRecord) -> str:
    """How to check an unchecked run, as a clause: the command, or why none applies."""
    precision = unchecked_precision(record)
    if model_is_reduced(record) and precision != "int8":
        return (
            f"no command checks a model file stored in {precision}; run its fp32 model with the engine making {precision} "
            f"(--engine-option precision={precision}) and check that with `mlperf-bert tune --precisions {precision}`"
        )
    return f"check it with `{check_command(record)}`"


def _runner_flags(record: RunRecord) -> list[str]:
    """The run's runner, so a check runs where it ran (a Ray cluster's nodes, a container)."""
    config = record.config
    flags = ["--runner", record.runner] if record.runner != "local" else []
    if config.cluster:
        flags += ["--cluster", config.cluster]
    elif config.ray_address:
        flags += ["--ray-address", config.ray_address]
    return flags


def check_command(record: RunRecord) -> str:
    """The command that checks this run's reduced precision (and records the verdict its label reads)."""
    ran = engine_precision(record.engine_settings)
    model = ["--model-path", record.model.path] if record.config.model_path else ["--model", record.config.model]
    if model_is_reduced(record) or ran not in REDUCED:
        # An int8 file: tune --int8 quantizes its fp32 parent (a file it made before: again, from the cache) and
        # checks it as this run ran it: on this target and runner, with these options, at this batch size. Its
        # records label runs of files with the same bytes (_record_folders); another int8 file needs its own.
        argv = ["mlperf-bert", "tune", "--int8"]
        if record.target != DEFAULT_CHECK_TARGET:
            argv += ["--backend", record.config.backend] + (
                ["--device", record.config.device] if record.config.device else []
            )
        argv += [*_runner_flags(record), "--model-path", "<the fp32 ONNX model>"]
        if record.config.sut is not SutKind.optimized:
            argv += ["--sut", record.config.sut.value]
        for key, value in numerics_options(record.config.engine_options).items():
            argv += ["--engine-option", f"{key}={value}"]
        return shlex.join([*argv, "--batch-sizes", str(record.batch_size_ran or 1)])
    argv = ["mlperf-bert", "tune", "--backend", record.config.backend]
    if record.config.device:
        argv += ["--device", record.config.device]
    argv += [*_runner_flags(record), *model, "--precisions", ran]
    if ran == "int8" and record.config.calibration_path is not None:
        argv += ["--calibration", str(record.config.calibration_path)]
    # The run's own engine options (int8_attention=float, int8_float=bf16, calibration_rows, ...): they are
    # part of the numerics the check is keyed by, so a check without them would never label this run.
    for key, value in sorted(record.config.engine_options.items()):
        if key not in _NOT_NUMERICS and not key.endswith("cache_dir"):
            argv += ["--engine-option", f"{key}={value}"]
    argv += ["--batch-sizes", str(record.batch_size_ran or 1), CHECK_SAMPLES_FLAG, "all"]
    return shlex.join(argv)
