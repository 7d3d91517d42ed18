"""PyTorch engine: a Hugging Face `BertForQuestionAnswering` checkpoint directory, on CPU or CUDA.

The model is a checkpoint directory (config.json + model.safetensors or pytorch_model.bin; naming its
weights file names the directory too), loaded with `local_files_only` so nothing is fetched from a hub. Inputs map to the model's arguments as
input_ids, attention_mask=input_mask, token_type_ids=segment_ids, and the engine returns the same
start/end logits as the ONNX export of the same checkpoint. Inference runs under
`torch.inference_mode`; the logits always come back as float32.

Engine options (strings, `PyTorchOptions`):
    precision     auto / fp32 (default): float32 weights. bf16: bfloat16 weights (CUDA, and a CPU with native
                  bf16: amx_bf16 or avx512_bf16; refused on others, where torch emulates it). fp16:
                  float16 weights (CUDA only: CPU float16 kernels are slow or missing). A converted precision
                  is trusted only with a passing accuracy-check record (`tune --precisions`, found by the
                  host: orchestrator/workflows/accuracy_checks.py); run.json's accuracy_check says which.
    compile       1/true: wrap the model in `torch.compile`; the first batch of each new shape then compiles,
                  so warm it up outside a timed run. Off by default until measured faster.
    compile_mode  torch.compile's mode, e.g. "max-autotune".
    cuda_graphs   1/true (CUDA only): capture one CUDA graph per (batch, length) shape on its first batch
                  and replay it after (static device buffers, one shared memory pool). Off by default until
                  measured faster.
`threads` sets torch's intra-op threads on CPU. On CUDA each batch goes through pinned host buffers (reused,
grown to the largest batch) with non-blocking copies both ways and one stream synchronization per batch.
UNVERIFIED on CUDA: written against torch 2.x's CUDA API, never run on a GPU here (the CPU paths are tested).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from orchestrator.errors import ConfigError, ModelError, PreflightError, first_line
from orchestrator.harness.cpu import Isa, bf16_refusal, detect_isa
from orchestrator.harness.engines.engine import Engine
from orchestrator.harness.engines.options import EngineOptions, parse_engine_options

log = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class PyTorchOptions(EngineOptions):
    """The engine options (see the module docstring)."""

    compile: bool = False
    compile_mode: str | None = None  # torch.compile's mode, e.g. "max-autotune"
    cuda_graphs: bool = False

    supported_precisions: ClassVar[tuple[str, ...]] = ("auto", "fp32", "fp16", "bf16")

    def unused(self) -> dict[str, str]:
        if self.compile:
            return {}
        return {"compile_mode": "it is torch.compile's mode, and compile is off; pass compile=1 too, or drop it"}


# precision -> the torch dtype name of the weights
DTYPES = {"auto": "float32", "fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def check_cpu_precision(opts: PyTorchOptions, device: str, isa: Isa) -> None:
    """bf16 on a CPU without native bf16 is refused: PyTorch would emulate it, dozens of times slower than fp32
    (harness/cpu.py bf16_refusal). The host checks it before a run; this is for the CPU the engine is on."""
    wanted = opts.native_bf16()
    if wanted and device == "cpu" and isa.known and not isa.bf16:
        setting, remedy = next(iter(wanted.items()))
        raise bf16_refusal(setting, isa, remedy)


def check_device_options(opts: PyTorchOptions, device: str) -> None:
    """The options that need CUDA, refused on the CPU with one sentence each."""
    if device != "cuda" and opts.precision == "fp16":
        raise ConfigError("precision=fp16 runs on CUDA (pytorch-cuda); on the CPU use precision=bf16 or fp32.")
    if device != "cuda" and opts.cuda_graphs:
        raise ConfigError("cuda_graphs=1 needs the CUDA device (pytorch-cuda); drop it on the CPU.")
    if opts.cuda_graphs and opts.compile:
        raise ConfigError("cuda_graphs and compile are two ways of one thing; pass one of them.")


def checkpoint_dir(path: Path) -> Path:
    """The Hugging Face checkpoint directory (config.json + weights) that `path` names, or a ModelError.

    `path` is the directory, or its weights file (model.safetensors / pytorch_model.bin): a run names the
    weights file when the model comes from a single-file catalogue entry or a --model-path check.
    """
    if path.is_file() and path.suffix == ".onnx":
        raise ModelError(
            f"{path} is an ONNX file, but the pytorch backend runs a Hugging Face checkpoint; pass its weights "
            "file (--model-path <checkpoint>/model.safetensors, config.json beside it), or use --backend onnxruntime."
        )
    if path.is_file() and path.name in WEIGHT_FILES:
        path = path.parent
    if not path.is_dir():
        raise ModelError(f"The checkpoint directory {path} does not exist; fetch or import the model first.")
    if not (path / "config.json").is_file():
        raise ModelError(
            f"{path} has no config.json, so it is not a Hugging Face checkpoint; pass the directory "
            "that holds config.json and the weights."
        )
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise ModelError(f"{path} has no weights ({' or '.join(WEIGHT_FILES)}); copy the complete checkpoint.")
    return path


class PyTorchEngine(Engine):
    name = "pytorch"
    options_class = PyTorchOptions
    packages = ("torch", "transformers")

    @classmethod
    def check_options(cls, options: EngineOptions, *, device: str, execution_provider: str) -> None:
        assert isinstance(options, PyTorchOptions)
        check_device_options(options, device)

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
        self.opts = parse_engine_options(PyTorchOptions, self.options, self.name)
        check_device_options(self.opts, device)
        check_cpu_precision(self.opts, device, detect_isa())
        path = checkpoint_dir(Path(model_path))
        try:
            import torch
            import transformers
        except ImportError as exc:
            raise PreflightError(
                f"The pytorch engine needs torch and transformers ({exc}); run with the local runner (it builds "
                "the pytorch environment) or the pytorch image."
            ) from exc
        self._torch = torch
        self._transformers = transformers
        self._device = self._pick_device(torch, device)
        if threads and self._device.type == "cpu":
            torch.set_num_threads(threads)
        try:
            model = transformers.BertForQuestionAnswering.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError, RuntimeError) as exc:
            first = first_line(exc)
            raise ModelError(
                f"transformers cannot load {path} as a BertForQuestionAnswering checkpoint ({first}); check that "
                "it is a complete question-answering checkpoint."
            ) from exc
        self._dtype = getattr(torch, DTYPES[self.opts.precision])
        model.to(dtype=self._dtype).eval().to(self._device)  # this dtype whatever the checkpoint's
        self._model = model
        self._compiled = self.opts.compile
        self._forward: Any
        if self._compiled:
            self._forward = torch.compile(model, mode=self.opts.compile_mode)
        else:
            self._forward = model
        self._cuda = self._device.type == "cuda"
        self._host: dict[str, Any] = {}  # pinned host buffers (CUDA), grown to the largest batch
        self._graphs: dict[tuple[int, int], Any] = {}  # (batch, length) -> _CapturedGraph (cuda_graphs)
        self._graph_pool: Any = torch.cuda.graph_pool_handle() if self.opts.cuda_graphs else None
        log.info(
            "pytorch %s: %s on %s (%s, threads=%s, compile=%s, cuda_graphs=%s)",
            torch.__version__,
            path.name,
            self.execution_provider,
            DTYPES[self.opts.precision],
            torch.get_num_threads(),
            self._compiled,
            self.opts.cuda_graphs,
        )

    @staticmethod
    def _pick_device(torch, device: str):  # type: ignore[no-untyped-def]
        if device == "cpu":
            return torch.device("cpu")
        if device == "cuda":
            if not torch.cuda.is_available():
                raise PreflightError(
                    f"torch {torch.__version__} sees no CUDA GPU (cuda build: {torch.version.cuda or 'none'}); "
                    "run on a machine with an NVIDIA GPU and driver, with a CUDA build of torch."
                )
            return torch.device("cuda", torch.cuda.current_device())
        raise ConfigError(f"The pytorch engine runs on cpu or cuda, not {device!r}; fix the backend registry entry.")

    @property
    def execution_provider(self) -> str:
        # Where the weights really are, e.g. "cpu" or "cuda:0".
        return str(next(self._model.parameters()).device)

    def versions(self) -> dict[str, str]:
        versions = {"torch": str(self._torch.__version__), "transformers": str(self._transformers.__version__)}
        if self._device.type == "cuda":
            versions["cuda"] = str(self._torch.version.cuda)
            versions["gpu"] = str(self._torch.cuda.get_device_name(self._device))
        return versions

    def settings(self) -> dict[str, str]:
        # Only the dtype: whether its accuracy was checked is the host's verdict (run.json accuracy_check).
        precision = DTYPES[self.opts.precision]
        return {
            "precision": precision,
            "compile": "yes" if self._compiled else "no",
            "cuda_graphs": "yes" if self.opts.cuda_graphs else "no",
            "host_buffers": "pinned, non-blocking copies" if self._cuda else "numpy views",
        }

    def infer(
        self, input_ids: np.ndarray, input_mask: np.ndarray, segment_ids: np.ndarray, *, instance: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """On CUDA the logits are views of reused pinned buffers: valid until the next call."""
        torch = self._torch
        arrays = [np.ascontiguousarray(a, dtype=np.int64) for a in (input_ids, input_mask, segment_ids)]
        with torch.inference_mode():
            if not self._cuda:
                ids, mask, seg = (torch.from_numpy(a) for a in arrays)
                out = self._forward(input_ids=ids, attention_mask=mask, token_type_ids=seg)
                return out.start_logits.float().numpy(), out.end_logits.float().numpy()
            return self._infer_cuda(arrays)

    def _pinned(self, name: str, shape: tuple[int, ...], dtype: Any) -> Any:
        """A pinned host tensor of `shape`, a view of a reused buffer grown to the largest size asked for."""
        torch = self._torch
        size = int(np.prod(shape))
        buffer = self._host.get(name)
        if buffer is None or buffer.numel() < size:
            buffer = torch.empty(size, dtype=dtype, pin_memory=True)
            self._host[name] = buffer
        return buffer[:size].view(shape)

    def _infer_cuda(self, arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        b, s = arrays[0].shape
        staged = self._pinned("inputs", (3, b, s), torch.int64)
        staged.numpy()[...] = np.stack(arrays)  # one host copy into pinned memory
        device_inputs = staged.to(self._device, non_blocking=True)
        if self.opts.cuda_graphs:
            start, end = self._replay(device_inputs)
        else:
            ids, mask, seg = device_inputs
            out = self._forward(input_ids=ids, attention_mask=mask, token_type_ids=seg)
            start, end = out.start_logits, out.end_logits
        logits = self._pinned("logits", (2, b, s), torch.float32)
        logits[0].copy_(start, non_blocking=True)  # the cast to float32 happens in the copy
        logits[1].copy_(end, non_blocking=True)
        torch.cuda.current_stream(self._device).synchronize()
        host = logits.numpy()
        return host[0], host[1]

    def _replay(self, device_inputs: Any) -> tuple[Any, Any]:
        """The captured graph of this shape (captured on its first batch), replayed on these inputs."""
        shape = (int(device_inputs.shape[1]), int(device_inputs.shape[2]))
        graph = self._graphs.get(shape)
        if graph is None:
            graph = _CapturedGraph(self._torch, self._model, device_inputs, self._graph_pool)
            self._graphs[shape] = graph
        return graph.replay(device_inputs)

    def close(self) -> None:
        self._forward = None
        self._graphs.clear()
        self._host.clear()
        self._model = None  # type: ignore[assignment]
        if self._device.type == "cuda":
            self._torch.cuda.empty_cache()


class _CapturedGraph:
    """One CUDA graph of the model at one (batch, length): static input and output tensors on the device."""

    def __init__(self, torch: Any, model: Any, example: Any, pool: Any) -> None:
        self.static_inputs = example.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up on a side stream, as torch's capture recipe asks
            for _ in range(2):
                self._forward(model)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, pool=pool):
            self.static_outputs = self._forward(model)

    def _forward(self, model: Any) -> tuple[Any, Any]:
        ids, mask, seg = self.static_inputs
        out = model(input_ids=ids, attention_mask=mask, token_type_ids=seg)
        return out.start_logits, out.end_logits

    def replay(self, device_inputs: Any) -> tuple[Any, Any]:
        self.static_inputs.copy_(device_inputs, non_blocking=True)
        self.graph.replay()
        start, end = self.static_outputs
        return start, end
