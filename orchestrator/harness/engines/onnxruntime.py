"""ONNX Runtime engine: any execution provider by name (CPU, CUDA, ROCm, MIGraphX, TensorRT...).

Only the requested provider is given to the session (plus CPU when CPU is what was asked), so a GPU
run cannot quietly fall back to the CPU: the session reports what it really registered, and the
harness compares that with the target's provider.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from orchestrator.errors import ModelError, PreflightError
from orchestrator.harness.engines.base import Engine

log = logging.getLogger(__name__)

INPUTS = ("input_ids", "input_mask", "segment_ids")
OUTPUTS = ("output_start_logits", "output_end_logits")
INPUT_TYPE = "tensor(int64)"
OUTPUT_TYPE = "tensor(float)"
CPU = "CPUExecutionProvider"

# What to install for a provider that this onnxruntime build lacks.
_PROVIDER_PACKAGES = {
    "CUDAExecutionProvider": "onnxruntime-gpu (with a matching CUDA and cuDNN)",
    "TensorrtExecutionProvider": "onnxruntime-gpu with TensorRT libraries",
    "ROCMExecutionProvider": "onnxruntime-rocm (AMD's ROCm build of onnxruntime)",
    "MIGraphXExecutionProvider": "onnxruntime-rocm / onnxruntime-migraphx (AMD's build with MIGraphX)",
    "OpenVINOExecutionProvider": "onnxruntime-openvino",
    "DmlExecutionProvider": "onnxruntime-directml",
}


class OnnxRuntimeEngine(Engine):
    name = "onnxruntime"

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
        import onnxruntime as ort

        self._ort = ort
        path = Path(model_path)
        if not path.is_file():
            raise ModelError(f"The model file {path} does not exist; fetch or import the model first.")
        available = ort.get_available_providers()
        if execution_provider not in available:
            need = _PROVIDER_PACKAGES.get(
                execution_provider, f"an onnxruntime build with {execution_provider}"
            )
            raise PreflightError(
                f"onnxruntime {ort.__version__} here offers {', '.join(available)} but not {execution_provider}; "
                f"install {need} in place of the onnxruntime package."
            )
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1  # one sequential graph; the SUT batches instead
        providers = [execution_provider]  # nothing else: a missing GPU must fail, not fall back
        try:
            self._session = ort.InferenceSession(str(path), sess_options=so, providers=providers)
        except Exception as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(
                f"onnxruntime cannot load {path} as an ONNX model ({first_line}); check that the file is a "
                "complete .onnx model."
            ) from exc
        self._check_interface(path)
        self._input_names = list(INPUTS)
        self._output_names = list(OUTPUTS)
        log.info(
            "onnxruntime %s session on %s (threads=%s)", ort.__version__, self.execution_provider, threads
        )

    def _check_interface(self, path: Path) -> None:
        problems: list[str] = []
        inputs = {i.name: i for i in self._session.get_inputs()}
        outputs = {o.name: o for o in self._session.get_outputs()}
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

    @property
    def execution_provider(self) -> str:
        return str(self._session.get_providers()[0])

    def versions(self) -> dict[str, str]:
        return {"onnxruntime": str(self._ort.__version__)}

    def seq_buckets(self) -> list[int] | None:
        return self._seq_buckets

    def max_batch(self) -> int | None:
        return self._max_batch

    def infer(
        self, input_ids: np.ndarray, input_mask: np.ndarray, segment_ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        feeds = {"input_ids": input_ids, "input_mask": input_mask, "segment_ids": segment_ids}
        start, end = self._session.run(self._output_names, feeds)
        return start, end

    def close(self) -> None:
        self._session = None  # type: ignore[assignment]
