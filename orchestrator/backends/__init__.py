"""The one registry of backends.

A target is a (backend, device) pair; its key `<backend>-<device>` is also the image folder under
`images/`, the compose service and the CI matrix entry. The CLI choices, config validation and
listings all read this registry. The engine class is named by import path and imported lazily, only
inside the harness, so host code never imports an inference engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from orchestrator.mlperf import ModelFormat

GpuVendor = Literal["nvidia", "amd"]


@dataclass(frozen=True)
class Target:
    backend: str
    device: str
    engine_class: str  # "module:Class", imported only inside the harness
    execution_provider: str  # what the SUT must report having run on
    gpu: GpuVendor | None = None
    model_format: ModelFormat = "onnx"
    # Where the local runner runs the harness: "main" (this environment) or a managed venv name.
    local_env: str = "main"
    verified: bool = True  # False until it has run for real on matching hardware
    notes: str = ""
    cpu_flags: tuple[str, ...] = field(default=())
    # The engine option naming a writable cache directory (optimized graphs, built engines), if any;
    # the API points it at <cache_dir>/engines/<key>, and the Docker runner mounts it read-write.
    cache_option: str | None = None
    # Engine options that make `--sut reference` the MLPerf reference behaviour (e.g. no graph fusions).
    reference_options: tuple[tuple[str, str], ...] = ()
    # Engine options the optimized SUT gets in Offline unless the user set them (e.g. instances=auto: one
    # single-threaded engine instance per core, which measured 15-20% faster than one multi-threaded one).
    offline_options: tuple[tuple[str, str], ...] = ()
    # The optimized SUT's batch size unless the user sets one (--batch-size).
    batch_size: int = 16

    @property
    def key(self) -> str:
        return f"{self.backend}-{self.device}"

    @property
    def image(self) -> str:
        return f"mlperf-bert/{self.key}"


TARGETS: dict[str, Target] = {
    t.key: t
    for t in (
        Target(
            backend="onnxruntime",
            device="cpu",
            engine_class="orchestrator.harness.engines.onnxruntime:OnnxRuntimeEngine",
            execution_provider="CPUExecutionProvider",
            cache_option="optimized_cache_dir",
            reference_options=(("optimize", "none"),),
            offline_options=(("instances", "auto"),),
            # Each single-threaded instance is fastest on small batches: a batch's activations then stay in
            # the core's L2 cache. Measured through LoadGen (demo fp32, 2 instances): batch 2 ran 13-19%
            # faster than 8 and a little faster than 1; int8 and BERT-large's shapes agree
            # (benchmarks/RESULTS.md).
            batch_size=2,
        ),
        Target(
            backend="onnxruntime",
            device="rocm",
            engine_class="orchestrator.harness.engines.onnxruntime:OnnxRuntimeEngine",
            execution_provider="ROCMExecutionProvider",
            gpu="amd",
            cache_option="optimized_cache_dir",
            reference_options=(("optimize", "none"),),
            verified=False,
            notes="needs an AMD GPU with ROCm; never run on these machines",
        ),
        Target(
            backend="tensorrt",
            device="cuda",
            engine_class="orchestrator.harness.engines.tensorrt:TensorRTEngine",
            execution_provider="TensorRT",
            gpu="nvidia",
            cache_option="engine_cache_dir",
            verified=False,
            notes="needs an NVIDIA GPU; never run on these machines",
        ),
        Target(
            backend="deepsparse",
            device="cpu",
            engine_class="orchestrator.harness.engines.deepsparse:DeepSparseEngine",
            execution_provider="DeepSparseEngine",
            local_env="deepsparse",
            cpu_flags=("avx2",),
        ),
        Target(
            backend="pytorch",
            device="cpu",
            engine_class="orchestrator.harness.engines.pytorch:PyTorchEngine",
            execution_provider="cpu",  # the torch device the weights are on
            model_format="pytorch",
            local_env="pytorch",
        ),
        Target(
            backend="pytorch",
            device="cuda",
            engine_class="orchestrator.harness.engines.pytorch:PyTorchEngine",
            execution_provider="cuda:0",
            gpu="nvidia",
            model_format="pytorch",
            local_env="pytorch-cuda",
            verified=False,
            notes="needs an NVIDIA GPU; never run on these machines",
        ),
    )
}

BACKENDS: tuple[str, ...] = tuple(dict.fromkeys(t.backend for t in TARGETS.values()))
DEVICES: tuple[str, ...] = tuple(dict.fromkeys(t.device for t in TARGETS.values()))


def default_device(backend: str) -> str:
    for t in TARGETS.values():
        if t.backend == backend:
            return t.device
    raise KeyError(backend)


def get_target(backend: str, device: str | None = None) -> Target:
    """The target for backend (and device); raises KeyError with the known keys in the message."""
    dev = device or default_device(backend)
    key = f"{backend}-{dev}"
    if key not in TARGETS:
        raise KeyError(key)
    return TARGETS[key]
