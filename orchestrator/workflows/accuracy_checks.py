"""The accuracy-check records of precisions an engine makes itself at load time (openvino bf16 and NNCF int8,
pytorch bf16/fp16, onnxruntime-cuda fp16): one JSON file per numerics, in the cache.

    <cache_dir>/accuracy_checks/<target>-<precision>-<key digest>.json

`tune --precisions` writes one whenever its vet runs a check (orchestrator/workflows/tuning.py
precision_check), passed or failed; accuracy_label.py reads it back for any later run whose run.json has
the same key. The key (`check_key`) is read from a run record only, so the check's own accuracy run and a
later run find the same file: what decides the numerics, and nothing else:

    target          e.g. openvino-cpu (the engine and its device)
    model_sha256    the fp32 model file the engine converted
    precision       what the engine says it ran (engine_settings precision), e.g. int8
    calibration     int8 from calibration data: the sha256 of the calibration features the engine read
    engine          the engine's package versions (run.json versions, less the harness's own)
    numerics        what else the engine says decides its numbers (engine_settings `numerics`: openvino's
                    NNCF recipe, calibration rows and seed); absent where it says nothing
    batch_size      only where the quantization is dynamic (a scale per batch); no engine-made one is today
    int8_kernels    int8 on a CPU without VNNI or AMX (harness/cpu.py int8_kernels: other int8 kernels, int16 pair sums,
                    so the same IR scores differently there); absent for CPUs with int8 dot products, whose
                    keys were made before the field existed (every check until then ran on VNNI or AMX)

The onnxruntime int8 *models* made by `tune --int8` keep their own record beside the model file
(orchestrator/workflows/int8.py); this store is for precisions that exist only inside an engine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.assets.hashing import cached_sha256
from orchestrator.backends import TARGETS
from orchestrator.harness.cpu import INT8_DOT_PRODUCTS, int8_kernels
from orchestrator.harness.engines.engine import NUMERICS_SETTING
from orchestrator.paths import default_cache_dir
from orchestrator.runs import RunRecord, utc_now

log = logging.getLogger(__name__)

CHECKS_DIR = "accuracy_checks"
REDUCED = ("int8", "bf16", "fp16")
# pytorch names its precision by the torch dtype (harness/engines/pytorch.py DTYPES)
TORCH_DTYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
BERT99_RATIO = 0.99  # MLPerf bert-99: at least 99% of the fp32 reference's F1
BERT999_RATIO = 0.999  # MLPerf bert-99.9: at least 99.9%
# The ratio each reduced precision must hold: int8 and fp16 MLPerf's bert-99; bf16 the stricter bert-99.9
# (the target for bf16: it rounds only the mantissa, so it must stay within 0.1% of fp32).
THRESHOLDS = {"int8": BERT99_RATIO, "fp16": BERT99_RATIO, "bf16": BERT999_RATIO}
THRESHOLD_NAMES = {BERT99_RATIO: "bert-99", BERT999_RATIO: "bert-99.9"}
# run.json versions that name the harness, not the engine: they do not change the engine's numerics.
HARNESS_VERSIONS = frozenset({"mlperf-bert", "python", "numpy", "mlperf_loadgen"})
# (target, precision) pairs whose quantization is dynamic, so a verdict holds at one batch size only.
DYNAMIC = frozenset[tuple[str, str]]()
CHECK_SAMPLES_FLAG = "--precision-check-samples"  # tune's option: how many dev features a check runs
CALIBRATION_OPTION = "calibration_path"  # the engine option naming the calibration features (calibration.py)


def ran_precisions(engine_settings: dict[str, str]) -> list[str | None]:
    """The precision of each value of the settings' `precision` (e.g. "bf16 (auto)"; on Ray actors whose
    CPUs differ, "bf16 (on a) | fp32 (on b)"): fp32 or a reduced one, None for "as given"."""
    out: list[str | None] = []
    for part in engine_settings.get("precision", "").split(" | "):
        words = part.split()
        word = words[0].lower() if words else ""
        word = TORCH_DTYPES.get(word, word)
        out.append(word if word in (*REDUCED, "fp32") else None)
    return out


def ran_precision(engine_settings: dict[str, str]) -> str | None:
    """The precision the engine says it converted the model to, if it says; None for "as given" (the
    model's own). Where actors ran different ones, the reduced one (fp32's batches need no check), or
    the first of several reduced ones (check_key then has no key: no one check covers them)."""
    ran = ran_precisions(engine_settings)
    reduced = sorted({p for p in ran if p in REDUCED})
    if reduced:
        return reduced[0]
    return "fp32" if "fp32" in ran else None


def threshold_for(precision: str) -> float:
    return THRESHOLDS.get(precision, BERT99_RATIO)


def check_key(record: RunRecord) -> dict[str, Any] | None:
    """The key of the check that covers this run's numerics, from its run.json alone; None where the run
    lacks a part of it (no model sha256, no precision, calibration features gone): why_unkeyed says which."""
    key = _key_or_why(record)
    return key if isinstance(key, dict) else None


def why_unkeyed(record: RunRecord) -> str | None:
    """Why no check can cover this run (check_key is None), as a sentence's predicate; None where one can."""
    key = _key_or_why(record)
    return key if isinstance(key, str) else None


def _key_or_why(record: RunRecord) -> dict[str, Any] | str:
    precision = ran_precision(record.engine_settings)
    if precision is None:
        return "did not say which precision it ran"
    if record.model.sha256 is None:
        return "has no sha256 of its model"
    reduced = sorted({p for p in ran_precisions(record.engine_settings) if p in REDUCED})
    if len(reduced) > 1:
        return f"ran different reduced precisions on its actors ({', '.join(reduced)})"
    calibration = None
    if precision == "int8" and CALIBRATION_OPTION in record.config.engine_options:
        features = Path(record.config.engine_options[CALIBRATION_OPTION])
        if not features.is_file():
            return f"was calibrated on features that are gone ({features})"
        calibration = cached_sha256(features)
    dynamic = (record.target, precision) in DYNAMIC
    numerics = record.engine_settings.get(NUMERICS_SETTING)
    kernels = run_int8_kernels(record) if precision == "int8" else INT8_DOT_PRODUCTS
    if kernels is None:
        return (
            "ran on Ray nodes whose CPUs multiply int8 differently (some with VNNI or AMX, some without), which "
            "no one check covers; run int8 on nodes of one kind"
        )
    return {
        **({"numerics": numerics} if numerics else {}),
        **({"int8_kernels": kernels} if kernels != INT8_DOT_PRODUCTS else {}),
        "target": record.target,
        "model_sha256": record.model.sha256,
        "precision": precision,
        "calibration_sha256": calibration,
        "engine": {k: v for k, v in sorted(record.versions.items()) if k not in HARNESS_VERSIONS},
        "batch_size": record.batch_size_ran if dynamic else None,
    }


def run_int8_kernels(record: RunRecord) -> str | None:
    """How the CPUs that ran this run multiply int8 (harness/cpu.py int8_kernels): the Ray nodes' where it ran on
    a cluster (run.json's own `isa` is the driver's), else the harness host's; INT8_DOT_PRODUCTS where the engine
    is not on the CPU (its int8 is the accelerator's); None where the nodes differ."""
    target = TARGETS.get(record.target)
    if target is not None and target.device != "cpu":
        return INT8_DOT_PRODUCTS
    texts = [n.isa for n in record.nodes] if record.nodes else [record.engine_settings.get("isa")]
    kinds = {int8_kernels(text) for text in texts}
    return kinds.pop() if len(kinds) == 1 else None


def cache_dir_of(record: RunRecord) -> Path:
    """The cache the run used (as run_benchmark resolves it)."""
    return (record.config.cache_dir or default_cache_dir()).expanduser()


def record_path(key: dict[str, Any], cache_dir: Path) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_dir / CHECKS_DIR / f"{key['target']}-{key['precision']}-{digest}.json"


@dataclass
class PrecisionCheck:
    """One check: the reduced precision's F1 against fp32's on the same features, at the same batch size."""

    key: dict[str, Any]
    passed: bool
    precision: str
    f1: float
    fp32_f1: float
    exact_match: float
    fp32_exact_match: float
    ratio: float
    threshold: float
    threshold_name: str  # bert-99 or bert-99.9
    features: int  # dev features both runs answered (the first ones of the dev set)
    questions: int  # questions scored (the same for both)
    batch_size: int
    run: str  # the reduced precision's accuracy run
    fp32_run: str
    calibration_set: str | None = None  # the --calibration file the features came from (for a reader)
    checked_at: str = field(default_factory=utc_now)

    def summary(self) -> str:
        return (
            f"{self.precision} F1 {self.f1:.3f} vs fp32 F1 {self.fp32_f1:.3f} on {self.questions} questions "
            f"({self.features} features) at batch size {self.batch_size}: ratio {self.ratio:.4f} "
            f"({self.threshold_name} needs >= {self.threshold}) {'PASS' if self.passed else 'FAIL'}"
        )


def read_check(path: Path) -> PrecisionCheck | None:
    try:
        return PrecisionCheck(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def find_check(record: RunRecord) -> tuple[Path, PrecisionCheck | None] | None:
    """The record path for this run's numerics and the check there (None when none was written yet);
    None when the run has no key."""
    key = check_key(record)
    if key is None:
        return None
    path = record_path(key, cache_dir_of(record))
    return path, read_check(path)


def write_check(check: PrecisionCheck, cache_dir: Path) -> Path:
    """Store the check under its key, through a temporary file (a reader never sees half a verdict). A check
    on fewer features than the recorded one does not replace it (a 200-feature pass is no full-dev pass)."""
    path = record_path(check.key, cache_dir)
    old = read_check(path)
    if old is not None and old.features > check.features:
        log.info("kept %s: it checked %d features, this check %d", path, old.features, check.features)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(asdict(check), indent=2) + "\n")
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    log.info("accuracy check recorded: %s -> %s", check.summary(), path)
    return path
