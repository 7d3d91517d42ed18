"""ONNX Runtime engine: any execution provider by name (CPU, CUDA, ROCm, MIGraphX, TensorRT...).

Only the requested provider is given to the session (plus CPU when CPU is what was asked), so a GPU
run cannot quietly fall back to the CPU: the session reports what it really registered, and the
harness compares that with the target's provider.

Engine options (HarnessSpec.engine_options, all strings):
    optimize              auto (default): transformer fusions applied once and cached
                          (orchestrator/harness/engines/onnxruntime_fusions.py), inputs and outputs bound to reused buffers
                          (IOBinding).
                          none: the model as given, a plain session.run (what the reference SUT uses).
    fusions               auto (default): onnxruntime on the CPU provider, transformers on the others.
                          onnxruntime: ONNX Runtime's own fusions for the provider (LayerNormalization,
                          BiasGelu, FusedMatMul...), saved once; the fastest graph on CPUs (measured).
                          transformers: onnxruntime.transformers' fused Attention, Embed/SkipLayerNorm and
                          BiasGelu kernels; the fast path of GPU providers.
    optimized_cache_dir   where fused models are cached (writable; the docker runner mounts `*_dir`
                          options read-write). Unset: a temporary directory, deleted when the engine closes.
    instances             sessions side by side (default 1), each with threads/instances intra-op threads;
                          the SUT runs one batch per instance at a time. auto (what the API asks for in
                          Offline on the CPU): one single-threaded session per thread, as many as memory
                          holds (`auto_instance_count`); one on other providers.
    num_heads, hidden_size, model_type
                          for the optimizer (default: read from the graph).
    precision             auto / fp32 (default): the model's own weights. fp16 (GPU providers only): the
                          transformers fusions, then float16 weights and activations (inputs and logits keep
                          their types); trusted only with a passing accuracy-check record (`tune --precisions
                          fp16`; run.json's accuracy_check says "accuracy unchecked" otherwise).
On a GPU provider the session must really run there: onnxruntime registers the CPU provider instead when
the GPU one fails to load (a missing CUDA or cuDNN library), and the engine then fails with one sentence.
With optimize=auto on CUDA, inputs and outputs are bound on the device (IOBinding with device OrtValues),
and the logits are copied back once per batch.
Threads: the spec's `threads`, else the physical cores this process may use (harness/cpu.py).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from orchestrator.errors import ConfigError, ModelError, PreflightError
from orchestrator.harness.cpu import available_memory_bytes, default_threads
from orchestrator.harness.engines.engine import Engine
from orchestrator.harness.engines.onnxruntime_fusions import (
    OptimizedModel,
    OptimizeOptions,
    default_fusions,
    open_session,
    optimize_cached,
)
from orchestrator.harness.engines.options import EngineOptions, option, parse_engine_options

log = logging.getLogger(__name__)

INPUTS = ("input_ids", "input_mask", "segment_ids")
OUTPUTS = ("output_start_logits", "output_end_logits")
INPUT_TYPE = "tensor(int64)"
OUTPUT_TYPE = "tensor(float)"
CPU = "CPUExecutionProvider"
# Providers whose outputs can be bound on the device, and onnxruntime's name for that device.
DEVICE_BINDING = {"CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "cuda"}


@dataclass(frozen=True)
class OnnxRuntimeOptions(EngineOptions):
    """The engine options (see the module docstring)."""

    optimize: Literal["auto", "none"] = "auto"
    fusions: Literal["auto", "onnxruntime", "transformers"] = "auto"
    optimized_cache_dir: str | None = None
    instances: int | Literal["auto"] = option(1, minimum=1)
    num_heads: int = option(0, minimum=0)  # 0: read from the graph
    hidden_size: int = option(0, minimum=0)
    model_type: str = "bert"

    supported_precisions: ClassVar[tuple[str, ...]] = ("auto", "fp32", "fp16")

    def unused(self) -> dict[str, str]:
        if self.optimize == "auto":
            return {}
        why = "it configures the fusions, and optimize=none applies none; drop it, or drop optimize=none"
        return dict.fromkeys(("fusions", "num_heads", "hidden_size", "model_type"), why)


# What to install for a provider that this onnxruntime build lacks.
_PROVIDER_PACKAGES = {
    "CUDAExecutionProvider": "onnxruntime-gpu (with a matching CUDA and cuDNN)",
    "TensorrtExecutionProvider": "onnxruntime-gpu with TensorRT libraries",
    "ROCMExecutionProvider": "onnxruntime-rocm (AMD's ROCm build of onnxruntime)",
    "MIGraphXExecutionProvider": "onnxruntime-rocm / onnxruntime-migraphx (AMD's build with MIGraphX)",
    "OpenVINOExecutionProvider": "onnxruntime-openvino",
    "DmlExecutionProvider": "onnxruntime-directml",
}


# A CPU session holds the weights about twice (as loaded, and MLAS's pre-packed GEMM copy), plus activations.
SESSION_MEMORY_FACTOR = 2.5
MEMORY_SHARE = 0.8  # of the memory available when the engine starts


def auto_instance_count(model: Path, provider: str, threads: int | None, available_bytes: int | None = None) -> int:
    """instances=auto: one single-threaded session per thread on the CPU provider (two single-threaded
    instances measured 15-20% faster than one two-threaded one for both the demo MiniLM and BERT-large's
    shapes in Offline, benchmarks/RESULTS.md), no more than MEMORY_SHARE of the available memory holds at
    SESSION_MEMORY_FACTOR x the model's size each; 1 on other providers (one device, one stream)."""
    if provider != CPU or not threads or threads < 2:
        return 1
    model_bytes = sum(p.stat().st_size for p in model.parent.glob(model.name + "*") if p.is_file()) or 1
    available = available_bytes if available_bytes is not None else available_memory_bytes()
    count = threads
    if available is not None:
        count = min(count, max(1, int(available * MEMORY_SHARE // (model_bytes * SESSION_MEMORY_FACTOR))))
    if count < threads:
        log.info(
            "instances=auto: %d instance(s), not %d: memory for %d copies of %s", count, threads, count, model.name
        )
    return count


class _Bound:
    """One session's IOBinding and its reused output buffers (grown to the largest batch seen)."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.binding = session.io_binding()
        self.outputs = [np.empty(0, np.float32), np.empty(0, np.float32)]

    def run(self, ids: np.ndarray, mask: np.ndarray, seg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b, s = ids.shape
        if self.outputs[0].size < b * s:
            self.outputs = [np.empty(b * s, np.float32), np.empty(b * s, np.float32)]
        start, end = (o[: b * s].reshape(b, s) for o in self.outputs)
        io = self.binding
        for name, arr in zip(INPUTS, (ids, mask, seg), strict=True):
            io.bind_input(name, "cpu", 0, np.int64, [b, s], arr.ctypes.data)
        io.bind_output(OUTPUTS[0], "cpu", 0, np.float32, [b, s], start.ctypes.data)
        io.bind_output(OUTPUTS[1], "cpu", 0, np.float32, [b, s], end.ctypes.data)
        self.session.run_with_iobinding(io)
        return start, end


class _DeviceBound:
    """One GPU session's IOBinding: inputs copied to the device once as OrtValues, outputs allocated there by
    onnxruntime, and the logits copied back to the host once per batch."""

    def __init__(self, session: Any, ort: Any, device_type: str) -> None:
        self.session = session
        self.ort = ort
        self.device_type = device_type
        self.binding = session.io_binding()

    def run(self, ids: np.ndarray, mask: np.ndarray, seg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        io = self.binding
        io.clear_binding_inputs()
        io.clear_binding_outputs()
        values = []  # held until the run ends: the binding does not own them
        for name, arr in zip(INPUTS, (ids, mask, seg), strict=True):
            value = self.ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(arr, np.int64), self.device_type, 0)
            io.bind_ortvalue_input(name, value)
            values.append(value)
        for name in OUTPUTS:
            io.bind_output(name, self.device_type, 0)
        self.session.run_with_iobinding(io)
        start, end = io.copy_outputs_to_cpu()
        return start, end


def check_precision_options(opts: OnnxRuntimeOptions, provider: str) -> None:
    """fp16 needs a GPU provider and the transformers optimizer (which makes it): one sentence otherwise."""
    if opts.precision != "fp16":
        return
    if provider == CPU:
        raise ConfigError(
            "precision=fp16 runs on a GPU provider (onnxruntime-cuda, onnxruntime-rocm); on the CPU use "
            "precision=auto, or an int8 model."
        )
    if opts.optimize != "auto" or opts.fusions == "onnxruntime":
        raise ConfigError(
            "precision=fp16 is made by the transformers optimizer; drop optimize=none and fusions=onnxruntime."
        )


class OnnxRuntimeEngine(Engine):
    name = "onnxruntime"
    options_class = OnnxRuntimeOptions
    packages = ("onnxruntime",)

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
        self.opts = parse_engine_options(OnnxRuntimeOptions, self.options, self.name)
        import onnxruntime as ort

        self._ort = ort
        self._tmp_cache: Path | None = None
        self.optimized = self.opts.optimize == "auto"
        auto_instances = self.opts.instances == "auto"
        instances = 1 if auto_instances else int(self.opts.instances)
        path = Path(model_path)
        if not path.is_file():
            raise ModelError(f"The model file {path} does not exist; fetch or import the model first.")
        available = ort.get_available_providers()
        if execution_provider not in available:
            need = _PROVIDER_PACKAGES.get(execution_provider, f"an onnxruntime build with {execution_provider}")
            raise PreflightError(
                f"onnxruntime {ort.__version__} here offers {', '.join(available)} but not {execution_provider}; "
                f"install {need} in place of the onnxruntime package."
            )
        self._check_precision(execution_provider)
        self.optimization: OptimizedModel | None = None  # when optimize=auto
        run_path = path
        if self.optimized:
            run_path = self._optimized_path(path, execution_provider)
            if self.fp16 and not (self.optimization is not None and self.optimization.float16):
                reason = self.optimization.reason if self.optimization is not None else "not optimized"
                raise ModelError(
                    f"precision=fp16 converts an fp32 model, but {path.name} was not converted ({reason}); "
                    "pass an fp32 ONNX model, or drop precision=fp16."
                )
        total_threads = threads or (default_threads() if execution_provider == CPU else None)
        self._auto_instances = auto_instances
        if auto_instances:
            instances = auto_instance_count(run_path, execution_provider, total_threads)
        per_instance = max(1, total_threads // instances) if total_threads else None
        self.threads_per_instance = per_instance
        self._sessions = [self._session(run_path, execution_provider, per_instance) for _ in range(instances)]
        self._session0 = self._sessions[0]
        self._check_fallback(execution_provider)
        self._check_interface(path)
        # IOBinding: to reused host buffers on the CPU provider; on a GPU provider inputs and outputs on the
        # device (ROCm keeps a plain run: its device binding has not run here).
        self._bound: list[_Bound] | list[_DeviceBound] | None = None
        device_type = DEVICE_BINDING.get(execution_provider)
        if self.optimized and execution_provider == CPU:
            self._bound = [_Bound(s) for s in self._sessions]
        elif self.optimized and device_type is not None:
            self._bound = [_DeviceBound(s, ort, device_type) for s in self._sessions]
        fusions = self.optimization.fusions if self.optimization is not None and self.optimization.changed else "none"
        log.info(
            "onnxruntime %s on %s: %s (fusions: %s), %d instance(s) x %s threads%s",
            ort.__version__,
            self.execution_provider,
            run_path.name,
            fusions,
            instances,
            per_instance or "default",
            ", IOBinding" if self._bound else "",
        )

    # ---- set-up ------------------------------------------------------------------------------------
    @property
    def fp16(self) -> bool:
        return self.opts.precision == "fp16"

    def _check_precision(self, provider: str) -> None:
        check_precision_options(self.opts, provider)

    @classmethod
    def check_options(cls, options: EngineOptions, *, device: str, execution_provider: str) -> None:
        assert isinstance(options, OnnxRuntimeOptions)
        check_precision_options(options, execution_provider)

    def _check_fallback(self, provider: str) -> None:
        """onnxruntime registers the CPU provider in place of a GPU one that failed to load: fail, not run slow."""
        registered = [str(p) for p in self._session0.get_providers()]
        if registered[0] != provider:
            raise PreflightError(
                f"onnxruntime {self._ort.__version__} fell back to {registered[0]} instead of {provider} (its "
                "libraries did not load; the harness log above names the missing one): install the CUDA and "
                "cuDNN runtime that this onnxruntime-gpu needs, or use the onnxruntime-cuda image."
            )

    def _optimized_path(self, path: Path, provider: str) -> Path:
        cache = self.opts.optimized_cache_dir
        if not cache:
            self._tmp_cache = Path(tempfile.mkdtemp(prefix="mlperf-bert-optimized-"))
            log.info("no optimized_cache_dir: the fused model is built for this run only (%s)", self._tmp_cache)
            cache_dir = self._tmp_cache
        else:
            cache_dir = Path(cache)
        o = self.opts
        fusions = default_fusions(provider) if o.fusions == "auto" else o.fusions
        if self.fp16:
            fusions = "transformers"
        options = OptimizeOptions(
            fusions=fusions,
            model_type=o.model_type,
            num_heads=o.num_heads,
            hidden_size=o.hidden_size,
            provider=provider,
            float16=self.fp16,
        )
        self.optimization = optimize_cached(path, cache_dir, options)
        return self.optimization.path

    def _session(self, path: Path, provider: str, threads: int | None) -> Any:
        ort = self._ort
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1  # one sequential graph; the SUT batches instead
        return open_session(path, so, provider)

    def _check_interface(self, path: Path) -> None:
        problems: list[str] = []
        inputs = {i.name: i for i in self._session0.get_inputs()}
        outputs = {o.name: o for o in self._session0.get_outputs()}
        for name in INPUTS:
            node = inputs.get(name)
            if node is None:
                problems.append(f"input '{name}' is missing")
                continue
            if node.type != INPUT_TYPE:
                problems.append(f"input '{name}' is {node.type}, not {INPUT_TYPE}")
            if len(node.shape) != 2:
                problems.append(f"input '{name}' has rank {len(node.shape)}, not 2 ([batch, seq])")
        problems += [f"unexpected input '{n}'" for n in inputs if n not in INPUTS]
        for name in OUTPUTS:
            node = outputs.get(name)
            if node is None:
                problems.append(f"output '{name}' is missing")
            elif node.type != OUTPUT_TYPE:
                problems.append(f"output '{name}' is {node.type}, not {OUTPUT_TYPE}")
        if problems:
            raise ModelError(
                f"{path.name} does not have the MLPerf BERT interface ({'; '.join(problems)}); it needs int64 "
                f"inputs {', '.join(INPUTS)} [batch, seq] and float32 outputs {', '.join(OUTPUTS)}."
            )
        # A model exported with fixed axes can only run those sizes: tell the SUT.
        seq_dims = {inputs[n].shape[1] for n in INPUTS}
        batch_dims = {inputs[n].shape[0] for n in INPUTS}
        fixed_seq = [d for d in seq_dims if isinstance(d, int)]
        fixed_batch = [d for d in batch_dims if isinstance(d, int)]
        self._seq_buckets = [min(fixed_seq)] if fixed_seq else None
        self._max_batch = min(fixed_batch) if fixed_batch else None

    # ---- the Engine interface ----------------------------------------------------------------------
    @property
    def execution_provider(self) -> str:
        return str(self._session0.get_providers()[0])

    @property
    def instance_count(self) -> int:
        """Sessions that may run at the same time (one batch each); the SUT uses this many workers."""
        return len(self._sessions)

    def versions(self) -> dict[str, str]:
        return {"onnxruntime": str(self._ort.__version__)}

    def settings(self) -> dict[str, str]:
        opt = self.optimization
        if opt is None:
            graph = "as given (optimize=none)"
        elif opt.changed:
            graph = f"{opt.fusions} fusions, cached"
        else:  # the reason's first clause: "already quantized", "nothing fused"...
            graph = f"as given ({opt.reason.split(' (')[0].split(':')[0]})"
        return {
            "graph": graph,
            "instances": str(len(self._sessions)) + (" (auto)" if self._auto_instances else ""),
            "threads_per_instance": str(self.threads_per_instance or "default"),
            "io_binding": self._binding_text(),
            # A converted precision has no accuracy verdict of its own in the run: say so.
            "precision": "fp16" if self.fp16 else "as given",
        }

    def _binding_text(self) -> str:
        if not self._bound:
            return "no"
        first = self._bound[0]
        return f"yes, on {first.device_type}" if isinstance(first, _DeviceBound) else "yes"

    def seq_buckets(self) -> list[int] | None:
        return self._seq_buckets

    def max_batch(self) -> int | None:
        return self._max_batch

    def infer(
        self, input_ids: np.ndarray, input_mask: np.ndarray, segment_ids: np.ndarray, *, instance: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """With IOBinding the logits are views of this instance's reused buffers: valid until its next call."""
        if self._bound is not None:
            return self._bound[instance].run(input_ids, input_mask, segment_ids)
        feeds = {"input_ids": input_ids, "input_mask": input_mask, "segment_ids": segment_ids}
        start, end = self._sessions[instance].run(list(OUTPUTS), feeds)
        return start, end

    def close(self) -> None:
        self._bound = None
        self._sessions = []
        self._session0 = None
        if self._tmp_cache is not None:
            shutil.rmtree(self._tmp_cache, ignore_errors=True)
            self._tmp_cache = None
