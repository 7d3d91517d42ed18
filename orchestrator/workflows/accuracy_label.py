"""Whether a run's reduced precision (int8, bf16, fp16) has a passing accuracy check: the label of its record.

A model or engine that trades precision for speed is trusted only where a check says its accuracy holds:
    - a precision the engine made itself at load time (openvino bf16/int8, pytorch bf16/fp16, onnxruntime
      fp16): the record of `tune --precisions` in the cache, found by the run's own run.json
      (orchestrator/workflows/accuracy_checks.py);
    - an int8 model: the record `accuracy_check.json` that `tune --int8` writes beside it (one per class of
      CPU: `accuracy_check.int16-pair-sums.json` where int8 has no dot products, see check_file)
      (orchestrator/workflows/int8.py), or, where no check of any class of CPU sits beside it, the catalogue's
      measured reference accuracy of that very model.
Anything else (no record, a failed check, a random-weight speed model) is labelled UNCHECKED in the run's
summary and run.json, and `submission generate` refuses it, naming the command that checks it.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from orchestrator.harness.cpu import INT8_DOT_PRODUCTS, INT8_PAIR_SUMS, INT8_UNKNOWN
from orchestrator.runs import RunRecord
from orchestrator.workflows.accuracy_checks import (
    CALIBRATION_OPTION,
    CHECK_SAMPLES_FLAG,
    REDUCED,
    find_check,
    run_int8_kernels,
)
from orchestrator.workflows.accuracy_checks import ran_precision as engine_precision

CHECK_FILE = "accuracy_check.json"  # beside an int8 model: its check on a CPU with int8 dot products (VNNI, AMX)
# Engine options a check command does not repeat: tune sweeps precision and instances with its own flags, and
# the calibration features' option is made from --calibration.
_NOT_NUMERICS = ("precision", "instances", CALIBRATION_OPTION)
UNCHECKED = "accuracy unchecked"
_KERNEL_CLASSES = (INT8_DOT_PRODUCTS, INT8_PAIR_SUMS, INT8_UNKNOWN)


def check_file(int8_kernels: str = INT8_DOT_PRODUCTS, batch_size: int | None = None) -> str:
    """The name of an int8 model's check record beside it: one per class of CPU (harness/cpu.py int8_kernels),
    so two classes sharing a cache each keep their verdict instead of checking again and overwriting the
    other's; one per batch size it was checked at. VNNI/AMX keep the names every earlier record has."""
    name = "accuracy_check" if batch_size is None else f"accuracy_check.batch{batch_size}"
    if int8_kernels != INT8_DOT_PRODUCTS:
        name += "." + int8_kernels.replace(" ", "-")
    return name + ".json"


def check_path(directory: Path, int8_kernels: str, batch_size: int | None = None) -> Path:
    """The record of this class of CPU in directory: its own file (check_file), or a record that names this
    class under the dot-products name, as records made before they were per class (2026-12-07) are."""
    own = directory / check_file(int8_kernels, batch_size)
    if own.exists() or int8_kernels == INT8_DOT_PRODUCTS:
        return own
    legacy = directory / check_file(INT8_DOT_PRODUCTS, batch_size)
    try:
        named = json.loads(legacy.read_text()).get("int8_kernels")
    except (OSError, ValueError, AttributeError):
        return own
    return legacy if named == int8_kernels else own


def accuracy_check_label(record: RunRecord, model_path: Path) -> str | None:
    """None for full precision; "passed (<check record>)" with a passing check; else UNCHECKED."""
    ran = engine_precision(record.engine_settings)
    if ran in REDUCED:  # made by the engine at load time: the check store's verdict for these numerics
        found = find_check(record)
        if found is not None and found[1] is not None and found[1].passed:
            return f"passed ({found[0]})"
        return UNCHECKED
    if ran is not None or str(record.model_meta.get("precision") or "").lower() not in REDUCED:
        return None
    # A check holds for CPUs that multiply int8 as the one it ran on (int8.AccuracyCheck.int8_kernels): the
    # record of the run's class; Ray nodes of mixed classes (None) have none.
    kernels = run_int8_kernels(record)
    beside = check_path(model_path.parent, kernels or INT8_UNKNOWN)
    try:
        check = json.loads(beside.read_text())
    except (OSError, ValueError):
        check = None
    if isinstance(check, dict) and check.get("passed") is True and kernels is not None:
        if check.get("int8_kernels", INT8_DOT_PRODUCTS) == kernels:
            return f"passed ({beside})"
        return UNCHECKED
    if check is not None or any((model_path.parent / check_file(k)).exists() for k in _KERNEL_CLASSES):
        return UNCHECKED  # checked, but not passed, or not on this class of CPU
    if record.model_meta.get("reference_f1") is not None:
        return None  # a catalogue model whose own accuracy is measured and recorded (e.g. the embedded demo-int8)
    return UNCHECKED


def check_command(record: RunRecord) -> str:
    """The command that checks this run's reduced precision (and records the verdict its label reads)."""
    ran = engine_precision(record.engine_settings)
    model = ["--model-path", record.model.path] if record.config.model_path else ["--model", record.config.model]
    if ran not in REDUCED:
        return shlex.join(["mlperf-bert", "tune", "--int8", "--model-path", "<the fp32 ONNX model>"])
    argv = ["mlperf-bert", "tune", "--backend", record.config.backend]
    if record.config.device:
        argv += ["--device", record.config.device]
    argv += [*model, "--precisions", ran]
    if ran == "int8" and record.config.calibration_path is not None:
        argv += ["--calibration", str(record.config.calibration_path)]
    # The run's own engine options (int8_attention=float, int8_float=bf16, calibration_rows, ...): they are
    # part of the numerics the check is keyed by, so a check without them would never label this run.
    for key, value in sorted(record.config.engine_options.items()):
        if key not in _NOT_NUMERICS and not key.endswith("cache_dir"):
            argv += ["--engine-option", f"{key}={value}"]
    argv += ["--batch-sizes", str(record.batch_size_ran or 1), CHECK_SAMPLES_FLAG, "all"]
    return shlex.join(argv)
