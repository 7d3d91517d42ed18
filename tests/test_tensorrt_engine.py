"""The TensorRT engine, as far as it can be checked without an NVIDIA GPU: options, the optimization
profile, the cache key and the engine cache, the network build against a recording stand-in for the
TensorRT module, and the message when TensorRT is absent. The real engine runs in the gpu-marked test
at the end (skipped here: no GPU)."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from orchestrator.errors import ConfigError, ModelError, PreflightError
from orchestrator.harness.engines import tensorrt as trt_engine
from orchestrator.harness.engines.tensorrt import (
    EngineCache,
    EngineKey,
    TensorRTEngine,
    TensorRTSettings,
    build_serialized_engine,
    profile_shapes,
    sha256_file,
)

REPO = Path(__file__).resolve().parents[1]
DEMO_INT8 = REPO / "embedded" / "models" / "demo-minilm-l6-squad.int8.onnx"


def test_settings_defaults_and_parsing() -> None:
    s = TensorRTSettings.from_options({}, batch_size=32)
    assert (s.precision, s.max_batch, s.min_seq_len, s.opt_seq_len, s.max_seq_len) == ("fp16", 32, 1, 256, 384)
    assert s.engine_cache_dir is None and s.workspace_mb == 4096
    s = TensorRTSettings.from_options({"precision": "FP32", "max_seq_len": "128", "engine_cache_dir": "/cache/e"}, 8)
    assert s.precision == "fp32" and s.opt_seq_len == 128 and s.engine_cache_dir == "/cache/e"


@pytest.mark.parametrize(
    ("options", "pattern"),
    [
        ({"precision": "bf8"}, "precision='bf8' is not one of auto, fp32, fp16, bf16, int8"),
        ({"precision": "bf16"}, "runs precision auto, fp16, fp32, int8, not 'bf16'"),
        (
            {"precison": "fp16"},
            "unknown tensorrt engine option 'precison'; the valid ones are precision, engine_cache_dir",
        ),
        ({"workspace_mb": "lots"}, "workspace_mb='lots' is not a whole number of at least 16"),
        ({"workspace_mb": "8"}, "workspace_mb='8' is not a whole number of at least 16"),
        ({"min_seq_len": "300", "opt_seq_len": "200"}, r"1 <= min \(300\) <= opt \(200\)"),
        ({"max_seq_len": "1024"}, "<= 512"),
        ({"builder_optimization_level": "7"}, "from 0 to 5"),
    ],
)
def test_bad_options_are_config_errors(options: dict[str, str], pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        TensorRTSettings.from_options(options, batch_size=8)


def test_profile_covers_batch_and_sequence_length() -> None:
    shapes = profile_shapes(16, min_seq=8, opt_seq=192, max_seq=384)
    assert set(shapes) == {"input_ids", "input_mask", "segment_ids"}
    assert shapes["input_ids"] == ((1, 8), (16, 192), (16, 384))
    with pytest.raises(ConfigError, match="batch size of at least 1"):
        profile_shapes(0)


def _key(**changes: Any) -> EngineKey:
    base = EngineKey(
        model_sha256="ab" * 32,
        gpu="NVIDIA H100 80GB HBM3",
        compute_capability="9.0",
        tensorrt="10.7.0",
        precision="fp16",
        max_batch=16,
        min_seq_len=1,
        opt_seq_len=256,
        max_seq_len=384,
    )
    return replace(base, **changes)


def test_cache_key_names_model_gpu_and_tensorrt() -> None:
    name = _key().filename()
    assert name == "bert-abababababababab-nvidia-h100-80gb-hbm3-sm90-trt10.7.0-fp16-b16-s1-256-384.engine"
    others = [
        _key(model_sha256="cd" * 32),
        _key(gpu="NVIDIA A100-SXM4-40GB"),
        _key(compute_capability="8.0"),
        _key(tensorrt="10.8.0"),
        _key(precision="fp32"),
        _key(max_batch=32),
        _key(opt_seq_len=128),
    ]
    assert len({k.filename() for k in others} | {name}) == len(others) + 1


def test_engine_cache_builds_once_then_reuses(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path / "engines")
    builds: list[int] = []

    def build() -> bytes:
        builds.append(1)
        return b"serialized-engine"

    assert cache.get_or_build(_key(), build) == (b"serialized-engine", False)
    assert cache.get_or_build(_key(), build) == (b"serialized-engine", True)
    assert len(builds) == 1
    assert cache.get_or_build(_key(tensorrt="10.8.0"), build) == (b"serialized-engine", False)
    assert len(builds) == 2
    path = cache.path(_key())
    assert path is not None and path.read_bytes() == b"serialized-engine"
    assert '"gpu": "NVIDIA H100 80GB HBM3"' in path.with_suffix(".json").read_text()
    assert not list((tmp_path / "engines").glob("*.tmp"))
    cache.discard(_key())
    assert not path.exists()


def test_no_cache_dir_builds_every_time() -> None:
    cache = EngineCache(None)
    assert cache.get_or_build(_key(), lambda: b"e") == (b"e", False)
    assert cache.path(_key()) is None


def test_sha256_file(tmp_path: Path) -> None:
    f = tmp_path / "m.onnx"
    f.write_bytes(b"x" * 3_000_000)
    assert sha256_file(f, chunk=1 << 16) == hashlib.sha256(b"x" * 3_000_000).hexdigest()


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_without_tensorrt_the_message_points_to_the_image() -> None:
    with pytest.raises(PreflightError, match="TensorRT's Python bindings cannot be imported.*tensorrt-cuda image"):
        TensorRTEngine(str(DEMO_INT8), device="cuda", batch_size=4, threads=None, execution_provider="TensorRT")


def test_missing_model_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        TensorRTEngine(
            str(tmp_path / "nope.onnx"), device="cuda", batch_size=4, threads=None, execution_provider="TensorRT"
        )


# --- the network build, against a recording stand-in for the tensorrt module ---------------------
class _Tensor:
    def __init__(self, name: str) -> None:
        self.name = name


class _Network:
    def __init__(self, inputs: tuple[str, ...], outputs: tuple[str, ...]) -> None:
        self.inputs, self.outputs = inputs, outputs

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    def get_input(self, i: int) -> _Tensor:
        return _Tensor(self.inputs[i])

    def get_output(self, i: int) -> _Tensor:
        return _Tensor(self.outputs[i])


class _Recorder:
    """The slice of the TensorRT 10 API that build_serialized_engine uses, recording what it is told."""

    class MemoryPoolType:
        WORKSPACE = "workspace"

    class BuilderFlag:
        FP16 = "fp16"
        INT8 = "int8"

    def __init__(
        self, *, parse_ok: bool = True, inputs: tuple[str, ...] = trt_engine.INPUTS, serialized: bytes | None = b"plan"
    ) -> None:
        self.parse_ok, self.inputs, self.serialized = parse_ok, inputs, serialized
        self.flags: list[str] = []
        self.pool: dict[str, int] = {}
        self.shapes: dict[str, tuple[Any, Any, Any]] = {}
        self.level: int | None = None
        rec = self

        class Profile:
            def set_shape(self, name: str, lo: Any, opt: Any, hi: Any) -> None:
                rec.shapes[name] = (lo, opt, hi)

        class Config:
            def set_memory_pool_limit(self, pool: str, size: int) -> None:
                rec.pool[pool] = size

            def set_flag(self, flag: str) -> None:
                rec.flags.append(flag)

            def add_optimization_profile(self, profile: Any) -> None:
                rec.profiles_added = getattr(rec, "profiles_added", 0) + 1

            @property
            def builder_optimization_level(self) -> int | None:
                return rec.level

            @builder_optimization_level.setter
            def builder_optimization_level(self, v: int) -> None:
                rec.level = v

        class Builder:
            def __init__(self, logger: Any) -> None:
                pass

            def create_network(self, flags: int) -> _Network:
                return _Network(rec.inputs, trt_engine.OUTPUTS)

            def create_builder_config(self) -> Config:
                return Config()

            def create_optimization_profile(self) -> Profile:
                return Profile()

            def build_serialized_network(self, network: Any, config: Any) -> bytes | None:
                return rec.serialized

        class Error:
            def desc(self) -> str:
                return "Unsupported ONNX data type: DynamicQuantizeLinear"

        class OnnxParser:
            num_errors = 1

            def __init__(self, network: Any, logger: Any) -> None:
                pass

            def parse_from_file(self, path: str) -> bool:
                return rec.parse_ok

            def get_error(self, i: int) -> Error:
                return Error()

        self.Builder, self.OnnxParser = Builder, OnnxParser


def test_build_sets_profile_precision_and_workspace() -> None:
    rec = _Recorder()
    settings = TensorRTSettings.from_options({"precision": "int8", "workspace_mb": "2048", "opt_seq_len": "192"}, 16)
    assert build_serialized_engine(rec, DEMO_INT8, settings, logger=None) == b"plan"
    assert rec.shapes == {name: ((1, 1), (16, 192), (16, 384)) for name in trt_engine.INPUTS}
    assert rec.flags == ["fp16", "int8"] and rec.pool == {"workspace": 2048 << 20} and rec.level == 3
    assert rec.profiles_added == 1
    rec32 = _Recorder()
    build_serialized_engine(rec32, DEMO_INT8, TensorRTSettings.from_options({"precision": "fp32"}, 4), logger=None)
    assert rec32.flags == []


@pytest.mark.parametrize(
    ("recorder", "pattern"),
    [
        (_Recorder(parse_ok=False), "cannot parse .*DynamicQuantizeLinear.*fp32"),
        (_Recorder(inputs=("ids", "mask")), "MLPerf BERT interface"),
        (_Recorder(serialized=None), "could not build an engine"),
    ],
)
def test_build_failures_are_model_errors(recorder: _Recorder, pattern: str) -> None:
    with pytest.raises(ModelError, match=pattern):
        build_serialized_engine(recorder, DEMO_INT8, TensorRTSettings.from_options({}, 4), logger=None)


# --- the real thing, where there is a GPU ---------------------------------------------------------
def _nvidia_gpu() -> bool:
    smi = shutil.which("nvidia-smi")
    return bool(smi) and subprocess.run([smi or "", "-L"], capture_output=True).returncode == 0


@pytest.mark.gpu
@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is None or not _nvidia_gpu(),
    reason="needs TensorRT and an NVIDIA GPU (run in the tensorrt-cuda image on a GPU machine)",
)
def test_real_engine_matches_onnxruntime(shared_assets: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    model = shared_assets / "models" / "demo-minilm-l6-squad.fp32.onnx"
    options = {"precision": "fp32", "engine_cache_dir": str(tmp_path / "engines"), "max_seq_len": "128"}
    engine = TensorRTEngine(
        str(model), device="cuda", batch_size=4, threads=None, execution_provider="TensorRT", options=options
    )
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 2000, size=(3, 96), dtype=np.int64)
    mask = np.ones_like(ids)
    seg = np.zeros_like(ids)
    start, end = engine.infer(ids, mask, seg)
    ref = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(
        None, {"input_ids": ids, "input_mask": mask, "segment_ids": seg}
    )
    np.testing.assert_allclose(start, ref[0], atol=2e-2)
    np.testing.assert_allclose(end, ref[1], atol=2e-2)
    assert engine.execution_provider == "TensorRT" and "tensorrt" in engine.versions()
    engine.close()
    again = TensorRTEngine(
        str(model), device="cuda", batch_size=4, threads=None, execution_provider="TensorRT", options=options
    )  # from the cache this time
    assert len(list((tmp_path / "engines").glob("*.engine"))) == 1
    again.close()
