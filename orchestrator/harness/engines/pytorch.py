"""PyTorch engine: a Hugging Face `BertForQuestionAnswering` checkpoint directory, on CPU or CUDA.

The model is a checkpoint directory (config.json + model.safetensors or pytorch_model.bin; naming its
weights file names the directory too), loaded with `local_files_only` so nothing is fetched from a hub. Inputs map to the model's arguments as
input_ids, attention_mask=input_mask, token_type_ids=segment_ids, and the engine returns the same
start/end logits as the ONNX export of the same checkpoint. Inference runs under
`torch.inference_mode`, in float32.

Engine options (strings, `PyTorchOptions`): `compile` ("1"/"true": wrap the model in `torch.compile`; the
first batch of each new shape then compiles, so warm it up outside a timed run), `compile_mode`
(torch.compile's mode, e.g. "max-autotune"). `threads` sets torch's intra-op threads on CPU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from orchestrator.errors import ConfigError, ModelError, PreflightError, first_line
from orchestrator.harness.engines.engine import Engine
from orchestrator.harness.engines.options import EngineOptions, parse_engine_options

log = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class PyTorchOptions(EngineOptions):
    """The engine options (see the module docstring)."""

    compile: bool = False
    compile_mode: str | None = None  # torch.compile's mode, e.g. "max-autotune"


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
    packages = ("torch", "transformers")

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
        model.float().eval().to(self._device)  # float32 whatever the checkpoint's dtype
        self._model = model
        self._compiled = self.opts.compile
        if self._compiled:
            self._forward = torch.compile(model, mode=self.opts.compile_mode)
        else:
            self._forward = model
        log.info(
            "pytorch %s: %s on %s (threads=%s, compile=%s)",
            torch.__version__,
            path.name,
            self.execution_provider,
            torch.get_num_threads(),
            self._compiled,
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

    def infer(
        self, input_ids: np.ndarray, input_mask: np.ndarray, segment_ids: np.ndarray, *, instance: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            ids, mask, seg = (
                torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)).to(self._device)
                for a in (input_ids, input_mask, segment_ids)
            )
            out = self._forward(input_ids=ids, attention_mask=mask, token_type_ids=seg)
            start = out.start_logits.float().cpu().numpy()
            end = out.end_logits.float().cpu().numpy()
        return start, end

    def close(self) -> None:
        self._forward = None
        self._model = None  # type: ignore[assignment]
        if self._device.type == "cuda":
            self._torch.cuda.empty_cache()
