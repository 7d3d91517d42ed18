"""The one registry of backends.

A target is a (backend, device) pair; its key `<backend>-<device>` is also the image folder under
`images/`, the compose service and the CI matrix entry. The CLI choices, config validation and
listings all read this registry, and `python -m orchestrator.backends.render` writes what follows from it
(each image's Dockerfile, compose/docker-compose.yml's services, the CI matrix; tests fail when a
committed copy differs). The engine class is named by import path and imported lazily, only inside the
harness, so host code never imports an inference engine. How to add one: docs/ADDING_A_BACKEND.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from orchestrator.mlperf import ModelFormat

GpuVendor = Literal["nvidia", "amd"]


@dataclass(frozen=True)
class CiJob:
    """The target's job in .github/workflows/ci.yml: build the image, benchmark in it, run its container tests."""

    runs_on: str | tuple[str, ...]  # a GitHub-hosted runner, or the labels of a self-hosted one
    model: str | None  # the catalogue model benchmarked in the container; None: build and test only
    query_count: int = 100  # --test-query-count of that benchmark
    container_tests: tuple[str, ...] = ()  # pytest files run with the real engine (docker-marked tests)


_CPU_RUNNER = "ubuntu-24.04"
_NVIDIA_RUNNER = ("self-hosted", "linux", "x64", "gpu", "nvidia")
_AMD_RUNNER = ("self-hosted", "linux", "x64", "gpu", "amd-rocm")
_DOCKER_TESTS = ("tests/test_docker_integration.py", "tests/test_compose.py")
# The catalogue has no downloadable Hugging Face checkpoint yet (demo-hf is imported on the development
# machines), so the pytorch jobs build their image and run its container tests, without a benchmark.
_NO_HF_MODEL = None


@dataclass(frozen=True)
class Target:
    backend: str
    device: str
    engine_class: str  # "module:Class", imported only inside the harness
    execution_provider: str  # what the SUT must report having run on
    gpu: GpuVendor | None = None
    model_format: ModelFormat = "onnx"
    # Where the local runner runs the harness: "main" (this environment), or the image key whose pins
    # (images/<key>/requirements.txt) a managed venv of that name installs (orchestrator/runners/venvs.py).
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
    # `--model zoo:...` (a SparseZoo stub, fetched by the engine itself at run time) is accepted.
    accepts_zoo_stubs: bool = False
    # The engine quantizes to int8 itself, statically, from calibration data: `precision=int8` needs
    # --calibration (SQuAD train features, passed as the engine option `calibration_path`).
    int8_calibration: bool = False
    # The engine converts the model to other precisions itself (its `precision` option: bf16, fp16, int8), so
    # `tune --precisions` sweeps them. (Whether an option asks for bf16 on the CPU, which the host checks
    # against the CPU before a run, is the engine's own EngineOptions.native_bf16.)
    engine_precisions: bool = False
    ci: CiJob | None = None  # None: no CI job

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
            ci=CiJob(runs_on=_CPU_RUNNER, model="demo-int8", query_count=100, container_tests=_DOCKER_TESTS),
        ),
        Target(
            backend="onnxruntime",
            device="rocm",
            engine_class="orchestrator.harness.engines.onnxruntime:OnnxRuntimeEngine",
            execution_provider="ROCMExecutionProvider",
            gpu="amd",
            engine_precisions=True,  # precision=fp16
            cache_option="optimized_cache_dir",
            reference_options=(("optimize", "none"),),
            verified=False,
            notes="needs an AMD GPU with ROCm; never run on these machines",
            ci=CiJob(runs_on=_AMD_RUNNER, model="bert-large-onnx-fp32", query_count=100),
        ),
        Target(
            backend="onnxruntime",
            device="cuda",
            engine_class="orchestrator.harness.engines.onnxruntime:OnnxRuntimeEngine",
            execution_provider="CUDAExecutionProvider",
            gpu="nvidia",
            engine_precisions=True,  # precision=fp16
            cache_option="optimized_cache_dir",
            reference_options=(("optimize", "none"),),
            # Its image only: onnxruntime-gpu would replace the main environment's onnxruntime.
            local_env="onnxruntime-cuda",
            verified=False,
            notes="needs an NVIDIA GPU with CUDA 13 and cuDNN 9; never run on these machines",
            ci=CiJob(runs_on=_NVIDIA_RUNNER, model="bert-large-onnx-fp32", query_count=100),
        ),
        Target(
            backend="tensorrt",
            device="cuda",
            engine_class="orchestrator.harness.engines.tensorrt:TensorRTEngine",
            execution_provider="TensorRT",
            gpu="nvidia",
            engine_precisions=True,  # auto builds fp16; fp32; int8 from a QDQ model
            cache_option="engine_cache_dir",
            verified=False,
            notes="needs an NVIDIA GPU; never run on these machines",
            ci=CiJob(runs_on=_NVIDIA_RUNNER, model="bert-large-onnx-fp32", query_count=100),
        ),
        Target(
            backend="deepsparse",
            device="cpu",
            engine_class="orchestrator.harness.engines.deepsparse:DeepSparseEngine",
            execution_provider="DeepSparseEngine",
            local_env="deepsparse-cpu",
            cpu_flags=("avx2",),
            accepts_zoo_stubs=True,
            # DeepSparse cannot compile the dynamically quantized demo: the fp32 BERT-large, on fewer queries.
            ci=CiJob(runs_on=_CPU_RUNNER, model="bert-large-onnx-fp32", query_count=20, container_tests=_DOCKER_TESTS),
        ),
        Target(
            backend="openvino",
            device="cpu",
            engine_class="orchestrator.harness.engines.openvino:OpenVinoEngine",
            execution_provider="CPU",
            local_env="openvino-cpu",
            cache_option="cache_dir",
            # One stream (and infer request) per core, like onnxruntime's one instance per core.
            offline_options=(("instances", "auto"),),
            batch_size=4,
            int8_calibration=True,
            engine_precisions=True,
            # CI: the fp32 BERT-large (the demo fp32 has no mirror), on fewer queries, and the image test.
            ci=CiJob(
                runs_on=_CPU_RUNNER,
                model="bert-large-onnx-fp32",
                query_count=20,
                container_tests=("tests/test_docker_openvino.py",),
            ),
        ),
        Target(
            backend="pytorch",
            device="cpu",
            engine_class="orchestrator.harness.engines.pytorch:PyTorchEngine",
            execution_provider="cpu",  # the torch device the weights are on
            model_format="pytorch",
            engine_precisions=True,  # precision=bf16 (a CPU with native bf16)
            local_env="pytorch-cpu",
            ci=CiJob(runs_on=_CPU_RUNNER, model=_NO_HF_MODEL, container_tests=("tests/test_docker_pytorch.py",)),
        ),
        Target(
            backend="pytorch",
            device="cuda",
            engine_class="orchestrator.harness.engines.pytorch:PyTorchEngine",
            execution_provider="cuda:0",
            gpu="nvidia",
            model_format="pytorch",
            engine_precisions=True,  # precision=fp16, bf16
            # The pytorch-cpu pins without its CPU index: PyPI's Linux x86-64 torch is the CUDA build.
            local_env="pytorch-cpu",
            verified=False,
            notes="needs an NVIDIA GPU; never run on these machines",
            ci=CiJob(runs_on=_NVIDIA_RUNNER, model=_NO_HF_MODEL),
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
