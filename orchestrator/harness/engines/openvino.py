"""OpenVINO engine on the CPU: reads the MLPerf ONNX model (fp32) directly; fp32, bf16 or NNCF int8.

One compiled model with NUM_STREAMS = instances, and one InferRequest per instance: the SUT's worker
threads call infer(..., instance=i) at the same time, and each request runs on its own stream (OpenVINO's
own threads, INFERENCE_NUM_THREADS shared among the streams).

Precision (`precision`):
    auto   bf16 where the CPU has native bf16 (amx_bf16 or avx512_bf16, harness/cpu.py, and OpenVINO's
           OPTIMIZATION_CAPABILITIES lists BF16), else fp32, with one log line saying why.
    fp32   INFERENCE_PRECISION_HINT f32 (OpenVINO would pick bf16 by itself on such CPUs).
    bf16   INFERENCE_PRECISION_HINT bf16; refused with one sentence on a CPU without native bf16.
    int8   NNCF static post-training quantization (SmoothQuant, fast bias correction), calibrated on the
           feature rows of `calibration_path` (an .npz of SQuAD *train* features the host builds from
           --calibration); what NNCF leaves in float (layer norms, GELU, the scales) runs in
           `int8_float`: fp32 (the default) or bf16 (auto: bf16 where the CPU has native bf16). On
           BERT-large shapes (a Xeon with AMX, 2026-12-02, batch 4 x 178 tokens, three alternating
           pairs) the bf16 rest ran 1.15x the fp32 rest (16.2 vs 14.1 samples/s); on the demo MiniLM's
           full dev set it costs F1 (80.134 vs 80.194 for the fp32 rest, fp32 80.401: both pass
           bert-99), and on the first 200 questions 1.42 points against fp32 (the fp32 rest 0.77), so
           the faster numerics are opt-in and checked like any other (`tune`, the check store).
           `int8_attention`: int8 (the default) quantizes the attention's activation x activation
           MatMuls (Q.K^T and P.V) too; float leaves them to `int8_float` (NNCF's ignored scope). On an
           AMD EPYC with AVX-512 (2026-12-02, demo, batch 8 x 178, one thread) float attention ran 0.89x
           int8 attention; on AMX a bf16 attention may run on the tiles where int8 attention runs on
           AVX-512, which is why it is an option to measure there (`tune --precisions int8
           --calibration PATH --sweep-option int8_attention=int8,float`). The quantized IR (the same for
           either rest) is cached under `cache_dir`/int8/<sha256 of model + recipe + calibration features>,
           written into a temporary directory and renamed into place, so a failed or interrupted
           quantization leaves nothing behind.

Shapes (`shapes`): dynamic (default) compiles one model for any [batch, seq], so the optimized SUT's
length-sorted batches run at their own longest length; buckets compiles one per sequence bucket
(`buckets`) and the SUT pads each batch up to one. Measured on the demo MiniLM through LoadGen (Offline,
fp32, a 2-core AMD EPYC Zen 4, five alternating pairs): dynamic 1.24x buckets (median 38.9 vs 31.3
samples/s, dynamic faster in 4 of 5), so it is the default.

`pad_to` (dynamic shapes): the SUT pads each batch's length up to a multiple of it (1: no padding). A
dynamic-shape OpenVINO model pays for every change of input shape (shape inference, memory, kernels): on
BERT-large shapes in int8 (a Xeon with AMX, 2026-12-02, batch 4, 16 batches of 138-218 tokens, 2 streams)
every batch at its own length ran 11.0 samples/s, the same batches padded to a multiple of 32 12.9, and
one fixed length 14.6. Fewer distinct shapes win over the padded tokens. Through LoadGen (Offline, same
machine, two alternating rounds): BERT-large int8, 128 samples, pad_to 1 / 16 / 32 / 64: 11.6-11.9 /
14.1-14.3 / 14.4-14.8 / 13.5-14.9 samples/s; the demo MiniLM, 512 samples, int8 86-88 -> 167-172 and
bf16 131 -> 165-173 with pad_to 32. Those runs paid for each shape's first-call compile inside the timed
run; since the SUT warms every padded width first (`shape_costs_first_call`), finer steps win (another AMX
Xeon, lscpu model 167, 2026-12-02 13:30, two alternating rounds, int8 with the bf16 rest): BERT-large 128 samples pad_to
32 / 16 / 8: 19.3-19.7 / 20.6-21.1 / 20.4-20.8 samples/s, the demo 512 samples 226-232 / 234-243 /
228-241. So 16 is the default (22 widths to warm: 12 s for BERT-large int8, 1.5 s for the demo).

`cache_dir` (the registry's cache_option): OpenVINO's CACHE_DIR (compiled blobs, under
compiled/<digest of the compile configuration>: OpenVINO's own blob key ignores the precision) and the
int8 IRs. Unset: no compiled-model cache, and int8 quantizes into a temporary directory per run.
Threads: the spec's `threads`, else the physical cores this process may use (harness/cpu.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from orchestrator.errors import ConfigError, ModelError, PreflightError, first_line
from orchestrator.harness.cpu import Isa, bf16_refusal, default_threads, detect_isa
from orchestrator.harness.engines.engine import NUMERICS_SETTING, Engine
from orchestrator.harness.engines.options import EngineOptions, option, parse_engine_options
from orchestrator.mlperf import SEQ_LEN

log = logging.getLogger(__name__)

INPUTS = ("input_ids", "input_mask", "segment_ids")
OUTPUTS = ("output_start_logits", "output_end_logits")
DEVICE = "CPU"
DEFAULT_BUCKETS = (128, 192, 256, 320, 384)
# Bumped whenever the quantization recipe below changes, so a cached int8 IR of another recipe is not reused.
INT8_RECIPE = "nncf-ptq-v1:transformer,mixed,smoothquant=0.95,fast_bias_correction"
SMOOTH_QUANT_ALPHA = 0.95
_HINTS = {"fp32": "f32", "bf16": "bf16"}
# int8 on a CPU without VNNI or AMX runs, but gains nothing here: on an AVX2-only AMD EPYC (2026-12-07, demo,
# benchmarks/RESULTS.md) OpenVINO's u8 x i8 FullyConnected ran 131-132 GOP/s against its fp32's 108-140
# GFLOP/s, and through LoadGen openvino int8 ran 0.90x openvino fp32 while onnxruntime's dynamic int8 ran 1.62x
# onnxruntime fp32 (best of two interleaved rounds).
INT8_WITHOUT_DOT_PRODUCTS = (
    "openvino int8 on a CPU without int8 dot products (ISA: %s, no VNNI or AMX): on an AVX2-only CPU it ran "
    "slower than openvino fp32; precision=fp32, or onnxruntime with an int8 model (tune --int8), ran faster there"
)
# What to do instead of a bf16 setting on a CPU without native bf16 (harness/cpu.py bf16_refusal).
BF16_REMEDY = "use --engine-option precision=fp32 or precision=int8"
INT8_FLOAT_BF16_REMEDY = "drop the option (the float rest then runs in fp32)"


@dataclass(frozen=True)
class OpenVinoOptions(EngineOptions):
    """The engine options (see the module docstring)."""

    supported_precisions: ClassVar[tuple[str, ...]] = ("auto", "fp32", "bf16", "int8")
    instances: int | Literal["auto"] = option(1, minimum=1)  # auto: one stream per thread
    shapes: Literal["dynamic", "buckets"] = "dynamic"
    buckets: tuple[int, ...] = DEFAULT_BUCKETS
    pad_to: int = option(16, minimum=1)  # dynamic shapes: batch lengths padded up to a multiple of it
    cache_dir: str | None = None
    calibration_path: str | None = None  # int8: an .npz of train features (input_ids, input_mask, segment_ids)
    calibration_rows: int = option(300, minimum=1)  # a fixed seeded subset of the calibration features
    calibration_seed: int = option(0, minimum=0)
    int8_float: Literal["auto", "fp32", "bf16"] = "fp32"  # int8: the precision of what stays in float
    int8_attention: Literal["int8", "float"] = "int8"  # int8: the attention's activation MatMuls quantized or not

    def __post_init__(self) -> None:
        if self.pad_to > SEQ_LEN:
            raise ConfigError(f"openvino engine option pad_to={self.pad_to} is above {SEQ_LEN}; pass e.g. 16")
        if self.shapes == "buckets" and (not self.buckets or max(self.buckets) != SEQ_LEN or min(self.buckets) < 1):
            text = ",".join(str(b) for b in self.buckets)
            raise ConfigError(
                f"openvino engine option buckets={text!r} is not a list of positive lengths ending with "
                f"{SEQ_LEN}; pass e.g. 128,256,{SEQ_LEN}"
            )

    def native_bf16(self) -> dict[str, str]:
        out = {"precision=bf16": BF16_REMEDY} if self.precision == "bf16" else {}
        if self.precision == "int8" and self.int8_float == "bf16":
            out["int8_float=bf16"] = INT8_FLOAT_BF16_REMEDY
        return out

    def unused(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.precision != "int8":
            ran = (
                "precision=auto never quantizes (it is bf16 or fp32)"
                if self.precision == "auto"
                else f"this run's is {self.precision}"
            )
            why = f"it applies only to precision=int8, and {ran}; drop it, or pass precision=int8"
            out.update(dict.fromkeys(("int8_float", "int8_attention", "calibration_rows", "calibration_seed"), why))
        if self.shapes == "buckets":
            out["pad_to"] = "shapes=buckets pads each batch to its bucket; drop it, or pass shapes=dynamic"
        else:
            out["buckets"] = "it applies only to shapes=buckets; drop it, or pass shapes=buckets"
        return out


def resolve_precision(requested: str, isa: Isa, capabilities: list[str]) -> tuple[str, str]:
    """(the precision that runs, why) for `requested` on this CPU; a PreflightError for bf16 without bf16."""
    native_bf16 = isa.bf16 and "BF16" in capabilities
    if requested == "bf16" and not native_bf16:
        raise bf16_refusal("precision=bf16", isa, BF16_REMEDY)
    if requested != "auto":
        return requested, "requested"
    if native_bf16:
        return "bf16", "auto: the CPU has native bf16"
    return "fp32", f"auto: no native bf16 on this CPU (ISA: {isa.describe()}), falling back to fp32"


def int8_recipe(attention: str) -> str:
    """The recipe name of an int8 IR: part of its cache key, its quantization.json and the run's numerics."""
    return INT8_RECIPE if attention == "int8" else INT8_RECIPE + ",attention-float"


def activation_matmuls(model: Any) -> list[str]:
    """The MatMuls of an OpenVINO model with no weight input (attention's Q.K^T and P.V): neither input is a
    Constant, directly or through a Convert (a compressed weight)."""

    def is_weight(output: Any) -> bool:
        node = output.get_node()
        while node.get_type_name() == "Convert":
            node = node.input(0).get_source_output().get_node()
        return bool(node.get_type_name() == "Constant")

    return [
        op.get_friendly_name()
        for op in model.get_ordered_ops()
        if op.get_type_name() == "MatMul" and not any(is_weight(op.input(i).get_source_output()) for i in (0, 1))
    ]


def int8_float_precision(requested: str, isa: Isa, capabilities: list[str]) -> str:
    """What an int8 model's float remainder runs in: bf16 or fp32 (bf16 refused without native bf16)."""
    if requested == "auto":
        return "bf16" if isa.bf16 and "BF16" in capabilities else "fp32"
    if requested == "bf16" and not (isa.bf16 and "BF16" in capabilities):
        raise bf16_refusal("int8_float=bf16", isa, INT8_FLOAT_BF16_REMEDY)
    return requested


def calibration_items(path: Path, rows: int, seed: int) -> list[dict[str, np.ndarray]]:
    """`rows` feature rows of the .npz at `path` (a seeded pick, sorted), each a batch-1 feed cut to its
    real length: the graph is dynamic, and padding would only add masked positions to the statistics."""
    try:
        with np.load(path) as z:
            arrays = [np.asarray(z[name], dtype=np.int64) for name in INPUTS]
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(
            f"the calibration features {path} cannot be read ({first_line(exc)}); rerun with --calibration "
            "pointing at a SQuAD v1.1 train JSON."
        ) from exc
    count = len(arrays[0])
    if count == 0:
        raise ConfigError(f"the calibration features {path} hold no rows; pass a SQuAD train set with questions.")
    pick = sorted(np.random.default_rng(seed).choice(count, size=min(rows, count), replace=False).tolist())
    items = []
    for i in pick:
        length = max(1, int(arrays[1][i].sum()))
        items.append(
            {name: np.ascontiguousarray(a[i : i + 1, :length]) for name, a in zip(INPUTS, arrays, strict=True)}
        )
    return items


def compiled_cache_dir(cache_dir: Path, config: dict[str, str], version: str) -> Path:
    """OpenVINO's CACHE_DIR for one compile configuration: compiled/<digest of the config and version>.

    OpenVINO 2026.4's blob key leaves INFERENCE_PRECISION_HINT out: in one shared CACHE_DIR a bf16 compile
    after an fp32 compile of the same model loads the fp32 blob and crashes with SIGSEGV at the first
    inference (seen on a Xeon with AMX, 2026-12-02). One directory per configuration keeps them apart."""
    text = json.dumps({"openvino": version, **config}, sort_keys=True)
    return cache_dir / "compiled" / hashlib.sha256(text.encode()).hexdigest()[:16]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class OpenVinoEngine(Engine):
    name = "openvino"
    options_class = OpenVinoOptions

    def __init__(
        self,
        model_path: str,
        *,
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
        self.opts = parse_engine_options(OpenVinoOptions, self.options, self.name)
        try:
            import openvino as ov
        except ImportError as exc:
            raise PreflightError(
                f"The openvino engine needs the openvino package ({exc}); run with the local runner (it builds "
                "the openvino-cpu environment) or the openvino-cpu image."
            ) from exc
        self._ov = ov
        self._core = ov.Core()
        self._tmp: Path | None = None
        self.int8_record: dict[str, str] = {}
        path = Path(model_path)
        if not path.is_file():
            raise ModelError(f"The model file {path} does not exist; fetch or import the model first.")
        self.isa = detect_isa()
        capabilities = [str(c) for c in self._core.get_property(DEVICE, "OPTIMIZATION_CAPABILITIES")]
        self.precision, why = resolve_precision(self.opts.precision, self.isa, capabilities)
        if self.opts.precision == "auto":
            log.info("openvino: precision %s (%s)", self.precision, why)
        model = self._read(path)
        self._check_interface(model, path)
        self.float_precision = self.precision
        if self.precision == "int8":
            self.float_precision = int8_float_precision(self.opts.int8_float, self.isa, capabilities)
            if self.isa.known and not self.isa.int8:
                log.warning(INT8_WITHOUT_DOT_PRODUCTS, self.isa.describe())
            model = self._quantized(path)
        total_threads = threads or default_threads()
        instances = total_threads if self.opts.instances == "auto" else int(self.opts.instances)
        self.threads_total = total_threads
        self._config = {
            "INFERENCE_PRECISION_HINT": _HINTS[self.float_precision],
            "NUM_STREAMS": str(instances),
            "INFERENCE_NUM_THREADS": str(total_threads),
            "PERFORMANCE_HINT": "THROUGHPUT" if instances > 1 else "LATENCY",
        }
        self.cache = "none"
        if self.opts.cache_dir:
            compiled_dir = compiled_cache_dir(Path(self.opts.cache_dir), self._config, str(ov.__version__))
            compiled_dir.mkdir(parents=True, exist_ok=True)
            for stale in compiled_dir.parent.glob("*.blob"):  # the old shared layout: never read again
                log.info("openvino: removing %s (a compiled blob of the old, shared cache layout)", stale.name)
                stale.unlink(missing_ok=True)
            self._config["CACHE_DIR"] = str(compiled_dir)
            self.cache = str(compiled_dir)
        started = time.perf_counter()
        self._buckets: list[int] | None = None
        if self.opts.shapes == "buckets":
            self._buckets = sorted(self.opts.buckets)
            self._compiled = {b: self._compile(self._reshaped(model, b)) for b in self._buckets}
        else:
            self._compiled = {0: self._compile(model)}
        self._requests = {
            b: [compiled.create_infer_request() for _ in range(instances)] for b, compiled in self._compiled.items()
        }
        first = next(iter(self._compiled.values()))
        self.streams = int(first.get_property("NUM_STREAMS"))
        self.threads_run = int(first.get_property("INFERENCE_NUM_THREADS"))
        self.instances = instances
        log.info(
            "openvino %s: %s, %s, %d stream(s) x %d infer request(s), %d threads, %s shapes, compiled in %.1f s",
            ov.__version__,
            path.name,
            self.precision,
            self.streams,
            instances,
            self.threads_run,
            self.opts.shapes,
            time.perf_counter() - started,
        )

    # ---- set-up ------------------------------------------------------------------------------------
    def _read(self, path: Path) -> Any:
        try:
            return self._core.read_model(str(path))
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses with its frontend's message
            raise ModelError(
                f"OpenVINO cannot read {path.name} as a model ({first_line(exc)[:200]}); pass an ONNX (or OpenVINO "
                "IR) file with the MLPerf BERT interface."
            ) from exc

    def _check_interface(self, model: Any, path: Path) -> None:
        inputs = sorted(name for port in model.inputs for name in port.get_names() if name in INPUTS)
        outputs = sorted(name for port in model.outputs for name in port.get_names() if name in OUTPUTS)
        if inputs != sorted(INPUTS) or outputs != sorted(OUTPUTS) or len(model.inputs) != len(INPUTS):
            raise ModelError(
                f"{path.name} does not have the MLPerf BERT interface (inputs {', '.join(INPUTS)} [batch, seq], "
                f"outputs {', '.join(OUTPUTS)}); export it with those names."
            )
        ranks = {port.get_partial_shape().rank.get_length() for port in model.inputs}
        if ranks != {2}:
            raise ModelError(f"{path.name}'s inputs are not of rank 2 ([batch, seq]); export it with that shape.")

    def _reshaped(self, model: Any, length: int) -> Any:
        copy = model.clone()
        copy.reshape({name: self._ov.PartialShape([-1, length]) for name in INPUTS})
        return copy

    def _compile(self, model: Any) -> Any:
        try:
            return self._core.compile_model(model, DEVICE, self._config)
        except Exception as exc:
            raise ModelError(
                f"OpenVINO cannot compile {Path(self.model_path).name} for the CPU ({first_line(exc)[:200]}); "
                "check the model, or run it with --backend onnxruntime."
            ) from exc

    def _quantized(self, path: Path) -> Any:
        """The NNCF int8 model: read from the cache, else quantized now and saved there atomically."""
        if not self.opts.calibration_path:
            raise ConfigError(
                "precision=int8 needs calibration data; rerun with --calibration PATH (a SQuAD v1.1 train JSON)."
            )
        calibration = Path(self.opts.calibration_path)
        if not calibration.is_file():
            raise ConfigError(
                f"the calibration features {calibration} do not exist; rerun with --calibration pointing at a "
                "SQuAD v1.1 train JSON."
            )
        key_text = "\n".join(
            [
                sha256_file(path),
                int8_recipe(self.opts.int8_attention),
                sha256_file(calibration),
                str(self.opts.calibration_rows),
                str(self.opts.calibration_seed),
            ]
        )
        key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
        if self.opts.cache_dir:
            root = Path(self.opts.cache_dir) / "int8"
        else:
            self._tmp = Path(tempfile.mkdtemp(prefix="mlperf-bert-openvino-int8-"))
            root = self._tmp
            log.info("no cache_dir: the int8 model is quantized for this run only (%s)", root)
        final = root / key
        xml = final / "model.xml"
        if xml.is_file():
            record = json.loads((final / "quantization.json").read_text())
            self.int8_record = {**record, "cached": "yes", "model": self._int8_where(xml)}
            log.info("openvino int8: cached quantized model %s", final)
            return self._core.read_model(str(xml))
        root.mkdir(parents=True, exist_ok=True)
        items = calibration_items(calibration, self.opts.calibration_rows, self.opts.calibration_seed)
        log.info("openvino int8: quantizing %s with NNCF on %d calibration rows (once; cached)", path.name, len(items))
        quantized, record = self._nncf_quantize(path, items)
        record.update({"recipe": int8_recipe(self.opts.int8_attention), "calibration_sha256": sha256_file(calibration)})
        staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
        staging.chmod(0o755)  # mkdtemp's 0700 would stay on the cached model's directory
        try:
            self._ov.save_model(quantized, str(staging / "model.xml"))
            (staging / "quantization.json").write_text(json.dumps(record, indent=2) + "\n")
            try:
                os.rename(staging, final)
            except OSError:  # another run finished the same model first: theirs is as good
                if not xml.is_file():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self.int8_record = {**record, "cached": "no", "model": self._int8_where(xml)}
        return self._core.read_model(str(xml))

    def _int8_where(self, xml: Path) -> str:
        """Where the quantized IR is, for run.json: a profile or a second look starts from it."""
        return f"{xml} (temporary: removed after the run)" if self._tmp is not None else str(xml)

    def _nncf_quantize(self, path: Path, items: list[dict[str, np.ndarray]]) -> tuple[Any, dict[str, str]]:
        try:
            import nncf
            from nncf.quantization.advanced_parameters import (
                AdvancedQuantizationParameters,
                AdvancedSmoothQuantParameters,
            )
        except ImportError as exc:
            raise PreflightError(
                f"precision=int8 needs nncf ({exc}); run with the local runner (its openvino-cpu environment has "
                "it) or the openvino-cpu image."
            ) from exc
        started = time.perf_counter()
        model = self._core.read_model(str(path))
        ignored = activation_matmuls(model) if self.opts.int8_attention == "float" else []
        if self.opts.int8_attention == "float" and not ignored:
            raise ModelError(
                f"int8_attention=float found no activation x activation MatMul in {path.name} (its attention is "
                "fused or absent); drop the option."
            )
        advanced = AdvancedQuantizationParameters(
            smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=SMOOTH_QUANT_ALPHA)
        )
        quantized = nncf.quantize(
            model,
            nncf.Dataset(items),  # the items are feed dicts already
            preset=nncf.QuantizationPreset.MIXED,
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(items),
            fast_bias_correction=True,
            advanced_parameters=advanced,
            **({"ignored_scope": nncf.IgnoredScope(names=ignored)} if ignored else {}),
        )
        record = {
            "quantization": "nncf static int8 (post-training)"
            + (f", {len(ignored)} attention MatMuls left in float" if ignored else ""),
            "nncf": str(nncf.__version__),
            "calibration_rows": str(len(items)),
            "quantize_seconds": f"{time.perf_counter() - started:.1f}",
        }
        return quantized, record

    # ---- the Engine interface ----------------------------------------------------------------------
    @property
    def execution_provider(self) -> str:
        return DEVICE

    @property
    def instance_count(self) -> int:
        return self.instances

    def versions(self) -> dict[str, str]:
        versions = {"openvino": str(self._ov.__version__)}
        if self.int8_record.get("nncf"):
            versions["nncf"] = self.int8_record["nncf"]
        return versions

    def settings(self) -> dict[str, str]:
        settings = {
            "precision": self.precision + (" (auto)" if self.opts.precision == "auto" else ""),
            **(
                {"int8_float": self.float_precision, "int8_attention": self.opts.int8_attention}
                if self.precision == "int8"
                else {}
            ),
            "streams": str(self.streams),
            "infer_requests": str(self.instances) + (" (auto)" if self.opts.instances == "auto" else ""),
            "threads": str(self.threads_run),
            "shapes": self.opts.shapes
            + (f" {','.join(map(str, self._buckets))}" if self._buckets else "")
            + (
                f", padded to a multiple of {self.opts.pad_to}"
                if self._buckets is None and self.opts.pad_to > 1
                else ""
            ),
            "cache": self.cache,
        }
        if self.int8_record:
            settings[NUMERICS_SETTING] = (
                f"{int8_recipe(self.opts.int8_attention)}; calibration rows {self.opts.calibration_rows}, "
                f"seed {self.opts.calibration_seed}; "
                f"float rest {self.float_precision}"
            )
            settings["int8"] = (
                f"{self.int8_record['quantization']}, {self.int8_record['calibration_rows']} calibration rows, "
                f"calibration sha256 {self.int8_record['calibration_sha256'][:12]}, cached {self.int8_record['cached']}"
            )
            settings["int8_model"] = self.int8_record["model"]
        return settings

    def seq_buckets(self) -> list[int] | None:
        if self._buckets is None and self.opts.pad_to > 1:  # one dynamic model; the SUT pads to these lengths
            step = self.opts.pad_to
            return sorted({min(SEQ_LEN, n) for n in range(step, SEQ_LEN + step, step)})
        return self._buckets

    def shape_costs_first_call(self) -> bool:
        # Dynamic shapes: OpenVINO compiles kernels for each new input shape at its first call; buckets: each
        # bucket is its own compiled model, first touched at its first call.
        return True

    def infer(
        self, input_ids: np.ndarray, input_mask: np.ndarray, segment_ids: np.ndarray, *, instance: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """The logits are views of this instance's output tensors: valid until its next call."""
        length = input_ids.shape[1]
        bucket = 0
        arrays = [input_ids, input_mask, segment_ids]
        if self._buckets is not None:
            # The SUT already pads to a bucket; a direct caller may not: pad with masked zeros, then cut.
            bucket = next((b for b in self._buckets if b >= length), self._buckets[-1])
            if bucket != length:
                arrays = [np.pad(a, ((0, 0), (0, bucket - length))) for a in arrays]
        request = self._requests[bucket][instance]
        feeds = {name: np.ascontiguousarray(a, dtype=np.int64) for name, a in zip(INPUTS, arrays, strict=True)}
        result = request.infer(feeds, share_inputs=True, share_outputs=True)
        return result[OUTPUTS[0]][:, :length], result[OUTPUTS[1]][:, :length]

    def close(self) -> None:
        self._requests = {}
        self._compiled = {}
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
