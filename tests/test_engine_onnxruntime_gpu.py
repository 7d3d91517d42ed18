"""The ONNX Runtime engine's GPU paths, as far as a CPU machine allows (UNVERIFIED on a GPU): the fp16
graph the optimizer makes, the fallback check, the device IOBinding (with a fake session), the registry
entry of onnxruntime-cuda and the refusals of options that need a GPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from orchestrator.assets.synthetic import BertShape, write_synthetic_bert
from orchestrator.backends import TARGETS
from orchestrator.errors import ConfigError, PreflightError
from orchestrator.harness.engines import onnxruntime as ort_engine
from orchestrator.harness.engines.onnxruntime import OnnxRuntimeEngine, _DeviceBound
from orchestrator.harness.engines.onnxruntime_fusions import OptimizeOptions, optimize_cached
from orchestrator.paths import REPO_ROOT

TINY = BertShape(layers=2, hidden=64, heads=4, ffn=128, vocab=30522)
CUDA = "CUDAExecutionProvider"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_bert(tmp_path_factory.mktemp("tiny") / "tiny-bert.onnx", TINY, seed=3)


def test_registry_entry() -> None:
    target = TARGETS["onnxruntime-cuda"]
    assert (target.execution_provider, target.gpu, target.verified) == (CUDA, "nvidia", False)
    assert target.engine_class == TARGETS["onnxruntime-cpu"].engine_class
    assert target.local_env == "onnxruntime-cuda"
    pins = (REPO_ROOT / "images" / "onnxruntime-cuda" / "requirements.txt").read_text()
    assert "onnxruntime-gpu==${ONNXRUNTIME_GPU_VERSION}" in pins
    dockerfile = (REPO_ROOT / "images" / "onnxruntime-cuda" / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04" in dockerfile
    assert "UNVERIFIED" in dockerfile and 'mlperf-bert.verified="false"' in dockerfile


def test_fp16_graph_keeps_the_harness_interface(tiny: Path, tmp_path: Path) -> None:
    """precision=fp16: fused attention, float16 weights, int64 inputs and float32 logits as before."""
    import onnx

    options = OptimizeOptions(fusions="transformers", provider=CUDA, float16=True)
    result = optimize_cached(tiny, tmp_path, options)
    assert result.changed and result.float16 and result.fused["Attention"] == TINY.layers
    model = onnx.load(str(result.path))
    halves = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    assert len(halves) > len(model.graph.initializer) // 2
    assert {i.type.tensor_type.elem_type for i in model.graph.input} == {onnx.TensorProto.INT64}
    assert {o.type.tensor_type.elem_type for o in model.graph.output} == {onnx.TensorProto.FLOAT}
    fp32 = optimize_cached(tiny, tmp_path, OptimizeOptions(fusions="transformers", provider=CUDA))
    assert fp32.path != result.path and not fp32.float16  # separate cache entries
    assert optimize_cached(tiny, tmp_path, options).cache_hit


def test_fp16_needs_a_gpu_provider_and_the_optimizer(tiny: Path) -> None:
    def engine(**options: str) -> OnnxRuntimeEngine:
        return OnnxRuntimeEngine(
            str(tiny), device="cpu", batch_size=2, threads=1, execution_provider="CPUExecutionProvider", options=options
        )

    with pytest.raises(ConfigError, match="precision=fp16 runs on a GPU provider"):
        engine(precision="fp16")
    assert engine(precision="fp32").settings()["precision"] == "as given"


class FakeSession:
    """What the engine reads of an onnxruntime session, with the providers it registered."""

    def __init__(self, providers: list[str]) -> None:
        self.providers = providers
        self.calls: list[tuple[str, Any]] = []

    def get_providers(self) -> list[str]:
        return self.providers

    def io_binding(self) -> FakeBinding:
        return FakeBinding(self.calls)

    def run_with_iobinding(self, binding: FakeBinding) -> None:
        self.calls.append(("run", None))


class FakeBinding:
    def __init__(self, calls: list[tuple[str, Any]]) -> None:
        self.calls = calls
        self.shape: tuple[int, ...] = ()

    def clear_binding_inputs(self) -> None:
        self.calls.append(("clear_inputs", None))

    def clear_binding_outputs(self) -> None:
        self.calls.append(("clear_outputs", None))

    def bind_ortvalue_input(self, name: str, value: FakeValue) -> None:
        self.calls.append(("input", (name, value.device)))
        self.shape = value.array.shape

    def bind_output(self, name: str, device: str, device_id: int) -> None:
        self.calls.append(("output", (name, device, device_id)))

    def copy_outputs_to_cpu(self) -> list[np.ndarray]:
        return [np.zeros(self.shape, np.float32), np.ones(self.shape, np.float32)]


class FakeValue:
    def __init__(self, array: np.ndarray, device: str) -> None:
        self.array, self.device = array, device


class FakeOrt:
    __version__ = "0.fake"

    class OrtValue:
        @staticmethod
        def ortvalue_from_numpy(array: np.ndarray, device: str, device_id: int) -> FakeValue:
            assert array.dtype == np.int64 and array.flags.c_contiguous and device_id == 0
            return FakeValue(array, device)


def test_device_binding_puts_inputs_and_outputs_on_the_gpu() -> None:
    session = FakeSession([CUDA, "CPUExecutionProvider"])
    bound = _DeviceBound(session, FakeOrt, ort_engine.DEVICE_BINDING[CUDA])
    ids = np.ones((2, 5), np.int32)  # converted to contiguous int64 on the way
    start, end = bound.run(ids, ids, ids)
    assert start.shape == end.shape == (2, 5) and end.dtype == np.float32 and end.all()
    inputs = [arg for kind, arg in session.calls if kind == "input"]
    outputs = [arg for kind, arg in session.calls if kind == "output"]
    assert inputs == [(name, "cuda") for name in ort_engine.INPUTS]
    assert outputs == [(name, "cuda", 0) for name in ort_engine.OUTPUTS]
    assert session.calls[-1] == ("run", None)


def test_a_silent_cpu_fallback_fails_the_run() -> None:
    """onnxruntime registers CPUExecutionProvider when CUDA's libraries do not load: one sentence, no run."""
    engine = OnnxRuntimeEngine.__new__(OnnxRuntimeEngine)
    engine._ort = FakeOrt
    engine._session0 = FakeSession(["CPUExecutionProvider"])
    with pytest.raises(PreflightError, match="fell back to CPUExecutionProvider instead of CUDAExecutionProvider"):
        engine._check_fallback(CUDA)
    engine._session0 = FakeSession([CUDA, "CPUExecutionProvider"])
    engine._check_fallback(CUDA)
    assert engine.execution_provider == CUDA  # what the run record names: the provider that really ran
