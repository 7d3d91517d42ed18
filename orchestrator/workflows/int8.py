"""int8 variants of an fp32 model, used only when their accuracy holds: quantize, check, record.

    from orchestrator.workflows.int8 import make_int8_variant, approved_int8
    variant = make_int8_variant(Path("model.fp32.onnx"), cache_dir=cache, samples=None)  # None: full dev set
    path = approved_int8(Path("model.fp32.onnx"), cache)  # the int8 file, or None unless its check passed

The check is never assumed: both models run the SAME features through the harness (real LoadGen accuracy
runs, the optimized SUT, the local runner), are scored with the official SQuAD v1.1 F1, and the verdict
(int8 F1 >= 0.99 x fp32 F1, MLPerf's bert-99 ratio) is written next to the int8 model. Recipes are tried
from the fastest (every MatMul int8) to the more accurate (FFN outputs kept fp32, see
orchestrator/harness/engines/onnxruntime_int8.py) until one passes; given calibration features (`tune --int8
--calibration PATH`) the static QDQ recipe is tried between them (CALIBRATED_RECIPES). Each keeps its own
directory and verdict:

    <cache_dir>/quantized/<model stem>-<key>/model.int8.onnx
                                             model.int8.onnx.quantize.json   how it was made
                                             accuracy_check.json             the F1s, the ratio, the verdict
                                             accuracy_check.batch8.json      the verdict at another batch size
                                             accuracy_check.int16-pair-sums.json   made on a CPU without VNNI/AMX

A check holds for the class of CPU it ran on (harness/cpu.py int8_kernels), so each class keeps its own
record (accuracy_label.check_file) and two classes sharing a cache never overwrite each other's verdict. It
also holds only for the engine that ran it: given a `template` (tune --int8 passes its trials' config) the
accuracy runs are made as the trials run (backend, device, runner, Ray cluster, engine options), and a target
other than onnxruntime-cpu keeps its own records (`accuracy_check.openvino-cpu.json`, ...).

The key covers the fp32 file's sha256, the onnxruntime version and the quantization options (for a static
recipe also the calibration features' sha256), so a new model, a new onnxruntime or another calibration set
makes a new variant that must pass its own check. Host code: the quantization
itself (onnxruntime) runs in a child process, `python -m orchestrator.harness.engines.onnxruntime_int8`.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from orchestrator.assets import resolve_dataset, resolve_vocab
from orchestrator.assets.hashing import cached_sha256
from orchestrator.backends import get_target
from orchestrator.config import ExecutionMode, Mode, RunConfig, RunnerKind, Scenario, SutKind
from orchestrator.errors import CHILD_ERROR_PREFIX, ConfigError, ModelError, RunError
from orchestrator.harness.cpu import INT8_DOT_PRODUCTS, INT8_UNKNOWN, Isa, detect_isa, int8_kernels
from orchestrator.harness.engines.options import PRECISION_OPTION
from orchestrator.harness.spec import RAY_LOCAL
from orchestrator.mlperf import DATASET_SIZE
from orchestrator.paths import PACKAGE_DIR
from orchestrator.workflows.accuracy_checks import BERT99_RATIO, ran_precision, run_int8_kernels
from orchestrator.workflows.accuracy_label import (
    DEFAULT_CHECK_TARGET,
    QUANTIZED_DIR,
    check_file,
    check_path,
    numerics_options,
)
from orchestrator.workflows.benchmark import run_benchmark
from orchestrator.workflows.calibration import calibration_features

log = logging.getLogger(__name__)

INT8_FILE = "model.int8.onnx"
RECIPE = "dynamic-int8-v2"
RECIPES = ("all", "ffn-out-fp32")  # dynamic, fastest first: what is tried without calibration data
# Static QDQ recipes (orchestrator/harness/engines/onnxruntime_int8.py), calibrated on train features.
STATIC_RECIPES = ("static-qdq", "static-qdq-attention")
STATIC_VERSION = "qdq-percentile-v1"  # in the key of static variants: new ranges, new variant
RECIPES_ALL = RECIPES + STATIC_RECIPES
# With --calibration, fastest first. Measured on the demo model (benchmarks/RESULTS.md, 2026-12-01):
# static-qdq runs at 0.95x dynamic `all` and 1.28x `ffn-out-fp32` (in one process, batches in turn) and holds
# 99.99% of fp32's F1 on 300 dev features where `all` holds 98.24% and `ffn-out-fp32` 98.12%: tried after
# `all`, instead of `ffn-out-fp32`. (static-qdq-attention: 0.99x `all`, but int8 attention costs F1.)
CALIBRATED_RECIPES = ("all", "static-qdq", "ffn-out-fp32")


@dataclass
class AccuracyCheck:
    fp32_f1: float
    int8_f1: float
    fp32_exact_match: float
    int8_exact_match: float
    ratio: float
    threshold: float
    passed: bool
    features: int  # features run through both models (the first ones of the dev set)
    questions: int  # questions scored (the same for both)
    fp32_model: str
    int8_model: str
    int8_sha256: str
    fp32_run: str
    int8_run: str
    recipe: str = "all"
    # The batch size both accuracy runs used. Dynamic quantization picks one activation scale per tensor
    # for each batch, so the int8 F1 moves with the batch (demo, full dev set: 79.70 to 80.08 over batch 1 to
    # 32): a verdict holds for its batch size. 32 for records written before the field existed.
    batch_size: int = 32
    # How the CPU that ran the int8 model multiplies int8 (harness/cpu.py int8_kernels): without VNNI or AMX its
    # int8 kernels differ (int16 pair sums) and the same model scores differently: a verdict holds for its class.
    # Records written before the field existed read as made with int8 dot products.
    int8_kernels: str = INT8_DOT_PRODUCTS
    # The target whose engine ran both accuracy runs (its numerics: another engine runs the same int8 file
    # differently), the precision that engine said it ran the int8 model at (None: as given; openvino: fp32 or
    # bf16 for what int8 leaves in float) and the engine options that can change the numbers
    # (accuracy_label.numerics_options). Records written before the fields existed were onnxruntime-cpu's.
    target: str = DEFAULT_CHECK_TARGET
    engine_precision: str | None = None
    engine_options: dict[str, str] = field(default_factory=dict)
    sut: str = SutKind.optimized.value  # the SUT both runs used (the reference SUT runs the graph unfused)
    cpu_bf16: bool | None = (
        None  # CheckSite.cpu_bf16 of where it ran: what the engine's own `auto` precision chose from
    )

    def summary(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (
            f"int8 ({self.recipe}) F1 {self.int8_f1:.3f} vs fp32 F1 {self.fp32_f1:.3f} on {self.questions} questions "
            f"at batch size {self.batch_size}: "
            f"ratio {self.ratio:.4f} (bert-99 needs >= {self.threshold}) {verdict}"
        )


@dataclass
class Int8Variant:
    path: Path
    check: AccuracyCheck | None

    @property
    def approved(self) -> bool:
        return self.check is not None and self.check.passed


def _sha256(path: Path) -> str:

    return cached_sha256(path)


def engine_version() -> str:
    """The onnxruntime the local harness uses (read from package metadata: the host never imports it)."""
    try:
        return importlib.metadata.version("onnxruntime")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def variant_dir(
    model_path: Path,
    cache_dir: Path,
    *,
    per_channel: bool = True,
    recipe: str = "all",
    calibration: Path | None = None,
) -> Path:
    """The variant's directory, keyed by what makes the model: the fp32 file, onnxruntime, the recipe and
    options, and for a static recipe the calibration features' sha256 (other features, other ranges)."""
    if recipe in STATIC_RECIPES and calibration is None:
        raise ModelError(f"the {recipe} int8 recipe is calibrated: pass --calibration PATH (a SQuAD v1.1 train JSON)")
    fields: dict[str, object] = {
        "sha256": _sha256(model_path),
        "onnxruntime": engine_version(),
        "version": RECIPE,
        "recipe": recipe,
        "per_channel": per_channel,
    }
    if recipe in STATIC_RECIPES:  # dynamic keys stay as they were: their cached variants and checks still hold
        assert calibration is not None
        fields["calibration_sha256"] = _sha256(calibration)
        fields["static"] = STATIC_VERSION
    key = hashlib.sha256(json.dumps(fields, sort_keys=True).encode())
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_path.stem)[:60]
    return cache_dir / QUANTIZED_DIR / f"{stem}-{key.hexdigest()[:20]}"


def read_check(
    directory: Path, batch_size: int | None = None, *, kernels: str | None = None, target: str = DEFAULT_CHECK_TARGET
) -> AccuracyCheck | None:
    """The variant's first check (`accuracy_check.json`), or its check at one batch size, run by `target` on a
    CPU of the class `kernels` (this host's by default: its local accuracy runs are the ones that would count)."""
    path = check_path(directory, kernels or host_int8_kernels(), batch_size, target)
    try:
        return AccuracyCheck(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _write_check(directory: Path, check: AccuracyCheck, *batch_sizes: int | None) -> None:
    """The check as the record of its class of CPU: the first check (None) and/or at batch sizes."""
    names = [check_file(check.int8_kernels, batch, check.target) for batch in batch_sizes]
    for name in names:  # each through a temporary file: a reader never sees half a verdict
        tmp = directory / (name + ".tmp")
        tmp.write_text(json.dumps(asdict(check), indent=2) + "\n")
        tmp.replace(directory / name)


def host_int8_kernels() -> str:
    """How this host's CPU multiplies int8 (the local runner's accuracy runs are on it)."""
    return int8_kernels(detect_isa().describe())


@dataclass(frozen=True)
class CheckSite:
    """Where and how a check's accuracy runs will run, known before they do: the target, the class of CPU
    that multiplies int8 there, whether that CPU has native bf16 (where the target's engine picks its own
    precision: openvino's `auto` is bf16 there, fp32 elsewhere), the SUT (the reference SUT runs the graph
    unfused) and the engine options that can change the numbers. A recorded check is reused only for the
    same site; tune --int8 checks where its trials run (the template config)."""

    target: str
    int8_kernels: str
    engine_options: dict[str, str] = field(default_factory=dict)
    sut: str = SutKind.optimized.value
    cpu_bf16: bool | None = None  # None: the target's engine makes no precision of its own, or not on a CPU


def check_site(template: RunConfig | None = None) -> CheckSite:
    """The site of accuracy runs made from template (None: onnxruntime-cpu on this host, the default check)."""
    if template is None:
        return CheckSite(DEFAULT_CHECK_TARGET, host_int8_kernels())
    target = get_target(template.backend, template.device)
    kernels, bf16 = _site_cpu(template, target.device)
    return CheckSite(
        target.key,
        kernels,
        numerics_options(template.engine_options),
        template.sut.value,
        bf16 if target.engine_precisions else None,
    )


def _site_cpu(config: RunConfig, device: str) -> tuple[str, bool | None]:
    if device != "cpu":
        return INT8_DOT_PRODUCTS, None  # the accelerator multiplies int8, the same way on every host
    address = config.ray_address or RAY_LOCAL
    if config.runner is RunnerKind.ray and config.cluster is None and address != RAY_LOCAL:
        return ray_nodes_cpu(address)  # a cluster's nodes run the engines, not this host
    return host_int8_kernels(), detect_isa().bf16  # the local runner, a container on this host, or Ray started here


@functools.lru_cache(maxsize=8)  # one probe per cluster and process: tune asks again for every trial it vets
def ray_nodes_cpu(address: str) -> tuple[str, bool]:
    """How the CPUs of the Ray cluster at address multiply int8 (their one class) and whether all have native
    bf16; refused in one sentence where their int8 classes differ, since one check cannot vouch for both
    kinds of numbers."""
    from orchestrator.harness import ray_cluster

    connected = ray_cluster.connect(address)
    try:
        nodes = ray_cluster.check_nodes()
    finally:
        if connected:
            ray_cluster.disconnect()
    kinds = {int8_kernels(node.isa) for node in nodes}
    if len(kinds) > 1:
        raise ConfigError(
            f"the Ray nodes at {address} multiply int8 differently ({' and '.join(sorted(kinds))}), and one int8 "
            "check covers one kind; run int8 on nodes of one kind (e.g. all with VNNI or AMX)"
        )
    bf16 = all(Isa.from_flags(set((node.isa or "").split())).bf16 for node in nodes)
    return kinds.pop(), bf16


def _usable(check: AccuracyCheck | None, int8: Path, features: int, batch_size: int | None, site: CheckSite) -> bool:
    """A recorded check still answers the question: same int8 file, at least as many features, same batch,
    made where these runs would run (target, class of CPU and its bf16, SUT, engine options)."""
    return (
        check is not None
        and check.int8_sha256 == _sha256(int8)
        and check.features >= features
        and (batch_size is None or check.batch_size == batch_size)
        and check.target == site.target
        and check.int8_kernels == site.int8_kernels
        and check.engine_options == site.engine_options
        and check.sut == site.sut
        and check.cpu_bf16 == site.cpu_bf16
    )


def calibration_for(config: RunConfig, cache_dir: Path) -> Path | None:
    """The train features' .npz the static recipe calibrates on when the run names --calibration (built once,
    the set openvino's NNCF calibrates on); None without it."""
    if config.calibration_path is None:
        return None
    vocab = resolve_vocab(config.vocab_path, cache_dir)
    dev = resolve_dataset(config.dataset_path, cache_dir)
    return calibration_features(config.calibration_path, vocab, cache_dir, dev=dev)


def approved_int8(
    model_path: Path, cache_dir: Path, *, per_channel: bool = True, calibration: Path | None = None
) -> Path | None:
    """The fastest int8 variant of model_path whose recorded check passed, for the file it checked; else None."""
    for recipe in CALIBRATED_RECIPES if calibration is not None else RECIPES:
        directory = variant_dir(model_path, cache_dir, per_channel=per_channel, recipe=recipe, calibration=calibration)
        check = read_check(directory)
        path = directory / INT8_FILE
        if check is None or not check.passed or not path.is_file():
            continue
        if check.int8_kernels != host_int8_kernels():
            log.info(
                "%s was checked on a CPU with %s, this one has %s; not using it",
                path,
                check.int8_kernels,
                host_int8_kernels(),
            )
            continue
        if _sha256(path) != check.int8_sha256:
            log.warning("%s is not the file its accuracy check ran on; not using it", path)
            continue
        return path
    return None


def quantize(
    model_path: Path,
    destination: Path,
    *,
    per_channel: bool = True,
    recipe: str = "all",
    optimized_cache_dir: Path | None = None,
    calibration: Path | None = None,
    python: str | None = None,
) -> dict[str, object]:
    """Run the quantization in a child process (the harness side owns onnxruntime)."""

    cmd = [
        python or sys.executable,
        "-m",
        "orchestrator.harness.engines.onnxruntime_int8",
        str(model_path),
        str(destination),
        "-q",
        "--recipe",
        recipe,
    ]
    if not per_channel:
        cmd.append("--per-tensor")
    if optimized_cache_dir is not None:
        cmd += ["--optimized-cache-dir", str(optimized_cache_dir)]
    if recipe in STATIC_RECIPES and calibration is not None:
        cmd += ["--calibration", str(calibration)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_DIR.parent), env.get("PYTHONPATH")]))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        ours = [line.removeprefix(CHILD_ERROR_PREFIX) for line in lines if line.startswith(CHILD_ERROR_PREFIX)]
        if ours:  # the quantizer's own sentence says what is wrong and what to do
            raise ModelError(ours[-1])
        reason = (lines or [f"exit code {proc.returncode}"])[-1]
        raise ModelError(f"quantizing {model_path.name} failed ({reason}); check that it is an fp32 ONNX model")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def check_accuracy(
    fp32: Path,
    int8: Path,
    *,
    samples: int | None,
    output_dir: Path,
    cache_dir: Path,
    batch_size: int = 32,
    threads: int | None = None,
    recipe: str = "all",
    fp32_result: Any = None,
    template: RunConfig | None = None,
) -> AccuracyCheck:
    """Real accuracy runs of both models on the same features; the bert-99 verdict. `template`: the runs are
    made as it would run (target, runner, Ray cluster or image, engine options), Offline at `batch_size`;
    without it on onnxruntime-cpu with the local runner."""

    reports: dict[str, Any] = {}
    runs: dict[str, Any] = {}
    records: dict[str, Any] = {}
    if fp32_result is not None:  # the fp32 run of an earlier recipe's check: same features, no need to redo it
        reports["fp32"], runs["fp32"] = fp32_result
    for name, model in (("fp32", fp32), ("int8", int8)):
        if name in reports:
            continue
        base: dict[str, Any] = template.model_dump() if template is not None else {"runner": RunnerKind.local}
        if name == "fp32" and template is not None and get_target(template.backend, template.device).engine_precisions:
            # MLPerf's reference is fp32's F1: an engine left at `auto` would run the fp32 model in bf16 (openvino
            # on a bf16 CPU) or fp16 (TensorRT) and make the ratio easier to pass.
            base["engine_options"] = {**base["engine_options"], PRECISION_OPTION: "fp32"}
        config = RunConfig(
            **{
                **base,
                "model_path": model,
                "mode": Mode.accuracy,
                "scenario": Scenario.Offline,  # the planned batches; no target to meet
                "target_qps": None,
                "target_latency_ms": None,
                "batch_size": batch_size,
                "threads": threads if threads is not None else base.get("threads"),
                "execution_mode": ExecutionMode.valid if samples is None else ExecutionMode.test,
                "test_query_count": samples or 100,
                "output_dir": output_dir,
                "cache_dir": cache_dir,
            }
        )
        log.info("accuracy check: %s model on %s features", name, "all" if samples is None else samples)
        result = run_benchmark(config, progress=False, stream=False)
        if result.accuracy is None:
            raise RunError(f"the {name} accuracy run {result.run_dir} has no score; see its harness.log")
        reports[name], runs[name] = result.accuracy, result.run_dir
        records[name] = result.record
    fp, q = reports["fp32"], reports["int8"]
    ran = records["int8"]
    if fp.questions_scored != q.questions_scored or fp.features_answered != q.features_answered:
        raise RunError("the fp32 and int8 accuracy runs did not answer the same questions; rerun the check")
    ratio = q.f1 / fp.f1 if fp.f1 > 0 else 0.0
    return AccuracyCheck(
        fp32_f1=round(fp.f1, 4),
        int8_f1=round(q.f1, 4),
        fp32_exact_match=round(fp.exact_match, 4),
        int8_exact_match=round(q.exact_match, 4),
        ratio=round(ratio, 5),
        threshold=BERT99_RATIO,
        passed=ratio >= BERT99_RATIO,
        features=fp.features_answered,
        questions=fp.questions_scored,
        fp32_model=str(fp32),
        int8_model=str(int8),
        int8_sha256=_sha256(int8),
        fp32_run=str(runs["fp32"]),
        int8_run=str(runs["int8"]),
        recipe=recipe,
        batch_size=batch_size,
        int8_kernels=run_int8_kernels(ran) or INT8_UNKNOWN,
        target=ran.target,
        engine_precision=ran_precision(ran.engine_settings),
        engine_options=numerics_options(ran.config.engine_options),
        sut=ran.config.sut.value,
    )


def make_int8_variant(
    model_path: Path,
    *,
    cache_dir: Path,
    output_dir: Path,
    samples: int | None = None,
    per_channel: bool = True,
    batch_size: int = 32,
    threads: int | None = None,
    recheck: bool = False,
    recipes: tuple[str, ...] | None = None,
    calibration: Path | None = None,
    template: RunConfig | None = None,
) -> Int8Variant:
    """Quantize (once per recipe) and check (once, unless recheck) until a recipe passes; the first that
    passes, or the last tried when none does (check.passed tells). `calibration`: the train features' .npz
    (orchestrator/workflows/calibration.py) a static recipe is calibrated on; by default the recipes are
    CALIBRATED_RECIPES with it, RECIPES (dynamic only) without. `template`: the checks run as it would run
    (check_accuracy), and a recorded check counts only if it was made the same way (check_site)."""
    if recipes is None:
        recipes = CALIBRATED_RECIPES if calibration is not None else RECIPES
    model_path = Path(model_path).resolve()
    if not model_path.is_file():
        raise ModelError(f"the fp32 model {model_path} does not exist; pass an existing ONNX file with --model-path")
    wanted = samples if samples is not None else DATASET_SIZE
    site = check_site(template)
    fp32_result: tuple[Any, Any] | None = None
    variant: Int8Variant | None = None
    for recipe in recipes:
        directory = variant_dir(model_path, cache_dir, per_channel=per_channel, recipe=recipe, calibration=calibration)
        path = directory / INT8_FILE
        if not path.is_file():
            made = [d for d in (directory.parent, directory) if not d.exists()]  # removed again if it fails
            directory.mkdir(parents=True, exist_ok=True)
            try:
                quantize(
                    model_path,
                    path,
                    per_channel=per_channel,
                    recipe=recipe,
                    optimized_cache_dir=cache_dir / "optimized",
                    calibration=calibration,
                )
            except ModelError:
                for made_dir in reversed(made):  # leave the cache as it was: no empty folder for a failed model
                    if made_dir.is_dir() and not any(made_dir.iterdir()):
                        made_dir.rmdir()
                raise
        check = None if recheck else read_check(directory, kernels=site.int8_kernels, target=site.target)
        if not _usable(check, path, wanted, batch_size, site):
            check = None  # made for another file, on fewer features or at another batch size: run it again
        if check is None:
            check = check_accuracy(
                model_path,
                path,
                samples=samples,
                output_dir=output_dir,
                cache_dir=cache_dir,
                batch_size=batch_size,
                threads=threads,
                recipe=recipe,
                fp32_result=fp32_result,
                template=template,
            )
            check = replace(check, cpu_bf16=site.cpu_bf16)
            _write_check(directory, check, None, batch_size)
            fp32_result = _fp32_side(check)
        log.info("%s", check.summary())
        variant = Int8Variant(path=path, check=check)
        if check.passed:
            break
    assert variant is not None, "no recipe given"
    return variant


def check_at_batch(
    variant: Int8Variant,
    model_path: Path,
    batch_size: int,
    *,
    cache_dir: Path,
    output_dir: Path,
    samples: int | None = None,
    threads: int | None = None,
    template: RunConfig | None = None,
) -> AccuracyCheck:
    """The variant's bert-99 verdict at another batch size than its first check's: the int8 model runs the
    same features again at that batch size (recorded beside the first check and reused while it holds). The
    fp32 side is the first check's: fp32 logits do not depend on the batch beyond float rounding (tested)."""
    first = variant.check
    if first is None:
        raise RunError(f"{variant.path} has no accuracy check to compare against; run make_int8_variant first")
    site = check_site(template)
    wanted = samples if samples is not None else DATASET_SIZE
    if _usable(first, variant.path, wanted, batch_size, site):
        return first
    directory = variant.path.parent
    check = read_check(directory, batch_size, kernels=site.int8_kernels, target=site.target)
    if not _usable(check, variant.path, wanted, batch_size, site):
        check = check_accuracy(
            Path(model_path).resolve(),
            variant.path,
            samples=samples,
            output_dir=output_dir,
            cache_dir=cache_dir,
            batch_size=batch_size,
            threads=threads,
            recipe=first.recipe,
            # fp32 logits do not depend on the batch, but they do on the engine and its options: the first
            # check's fp32 run serves only where it ran as these runs will
            fp32_result=_fp32_side(first) if _same_fp32_side(first, site) else None,
            template=template,
        )
        check = replace(check, cpu_bf16=site.cpu_bf16)
        _write_check(directory, check, batch_size)
    assert check is not None
    log.info("%s", check.summary())
    return check


def _same_fp32_side(check: AccuracyCheck, site: CheckSite) -> bool:
    return (check.target, check.engine_options, check.sut, check.cpu_bf16) == (
        site.target,
        site.engine_options,
        site.sut,
        site.cpu_bf16,
    )


@dataclass
class _Scored:
    """The fp32 figures an earlier recipe's check measured (what check_accuracy reads of a report)."""

    f1: float
    exact_match: float
    questions_scored: int
    features_answered: int


def _fp32_side(check: AccuracyCheck) -> tuple[_Scored, str]:
    """A check's fp32 figures and run, to hand to the next check_accuracy instead of running fp32 again."""
    return _Scored(check.fp32_f1, check.fp32_exact_match, check.questions, check.features), check.fp32_run
