"""PyTorch engine: checkpoint checks here; in its own environment (slow), the same logits as the fp32
ONNX export of the same checkpoint, with and without torch.compile."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from orchestrator.backends import TARGETS
from orchestrator.errors import ConfigError, ModelError, PreflightError
from orchestrator.harness.cpu import detect_isa
from orchestrator.harness.engines.options import parse_engine_options
from orchestrator.harness.engines.pytorch import PyTorchOptions, checkpoint_dir
from orchestrator.paths import EMBEDDED_MODEL, PACKAGE_DIR, REPO_ROOT

CASES = [(1, 384), (3, 100), (8, 128), (2, 7)]


def make_inputs(rows: int, length: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = np.zeros((rows, length), np.int64)
    mask = np.zeros((rows, length), np.int64)
    seg = np.zeros((rows, length), np.int64)
    for r in range(rows):
        real = int(rng.integers(max(4, length // 2), length + 1))
        q = max(1, real // 5)
        ids[r, :real] = rng.integers(1996, 29000, real)
        ids[r, 0], ids[r, q], ids[r, real - 1] = 101, 102, 102
        mask[r, :real] = 1
        seg[r, q + 1 : real] = 1
    return ids, mask, seg


def test_registry_entries() -> None:
    cpu, cuda = TARGETS["pytorch-cpu"], TARGETS["pytorch-cuda"]
    assert cpu.model_format == cuda.model_format == "pytorch"
    assert (cpu.execution_provider, cuda.execution_provider) == ("cpu", "cuda:0")
    assert cpu.local_env == cuda.local_env == "pytorch-cpu" and cuda.gpu == "nvidia" and not cuda.verified
    for target in (cpu, cuda):
        assert (REPO_ROOT / "images" / target.local_env / "requirements.txt").is_file()


def test_compile_option_is_a_yes_no_flag() -> None:
    def compile_flag(text: str) -> bool:
        return parse_engine_options(PyTorchOptions, {"compile": text}, "pytorch").compile

    assert compile_flag("1") and compile_flag("True") and compile_flag("yes")
    assert not compile_flag("") and not compile_flag("off") and not compile_flag("0")
    assert not parse_engine_options(PyTorchOptions, {}, "pytorch").compile
    with pytest.raises(ConfigError, match="pytorch engine option compile='maybe' is not a yes/no value"):
        compile_flag("maybe")


def test_checkpoint_checks(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="ONNX file"):
        checkpoint_dir(EMBEDDED_MODEL)
    with pytest.raises(ModelError, match="does not exist"):
        checkpoint_dir(tmp_path / "missing")
    with pytest.raises(ModelError, match="no config.json"):
        checkpoint_dir(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="no weights"):
        checkpoint_dir(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert checkpoint_dir(tmp_path) == tmp_path
    assert checkpoint_dir(tmp_path / "model.safetensors") == tmp_path  # the weights file names its directory
    (tmp_path / "other.bin").write_bytes(b"")
    with pytest.raises(ModelError, match="does not exist"):
        checkpoint_dir(tmp_path / "other.bin")


def test_demo_checkpoint_is_complete(shared_assets: Path) -> None:
    checkpoint_dir(shared_assets / "models" / "demo-minilm-l6-squad-hf")


# ---- the real engine, in its own environment ---------------------------------------------------------------
PROBE = r"""
import json, sys, time, numpy as np
from orchestrator.harness.engines.pytorch import PyTorchEngine
args = json.loads(sys.argv[1])
data = np.load(args["inputs"])
engine = PyTorchEngine(args["model"], device="cpu", batch_size=8, threads=None, execution_provider="cpu",
                       options=args["options"])
out, started = {}, time.perf_counter()
for key in sorted({k.rsplit("_", 1)[0] for k in data.files}):
    out[key + "_start"], out[key + "_end"] = engine.infer(data[key + "_ids"], data[key + "_mask"], data[key + "_seg"])
np.savez(args["outputs"], **out)
print("REPORT " + json.dumps({"provider": engine.execution_provider, "versions": engine.versions(),
                              "settings": engine.settings(), "seconds": time.perf_counter() - started}))
"""


@pytest.fixture(scope="module")
def pytorch_python() -> Path:
    from orchestrator.runners import venvs

    try:
        return venvs.ensure_venv("pytorch-cpu")
    except PreflightError as exc:
        pytest.skip(f"the pytorch environment cannot be built here: {exc}")


def run_probe(python: Path, checkpoint: Path, options: dict[str, str], tmp_path: Path) -> tuple[dict, dict]:  # type: ignore[type-arg]
    inputs: dict[str, np.ndarray] = {}
    for seed, (rows, length) in enumerate(CASES):
        ids, mask, seg = make_inputs(rows, length, seed)
        inputs.update({f"c{seed}_ids": ids, f"c{seed}_mask": mask, f"c{seed}_seg": seg})
    np.savez(tmp_path / "in.npz", **inputs)
    args = {
        "model": str(checkpoint),
        "inputs": str(tmp_path / "in.npz"),
        "outputs": str(tmp_path / "out.npz"),
        "options": options,
    }
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_DIR.parent), HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [str(python), "-c", PROBE, json.dumps(args)], capture_output=True, text=True, env=env, timeout=900, check=False
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    report = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("REPORT "))[7:])
    return report, {**inputs, **dict(np.load(tmp_path / "out.npz"))}


def check_against_onnx(arrays: dict, onnx_model: Path, atol: float = 1e-4) -> float:  # type: ignore[type-arg]
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_model), providers=["CPUExecutionProvider"])
    worst = 0.0
    for seed, (rows, length) in enumerate(CASES):
        ids, mask, seg = (arrays[f"c{seed}_{k}"] for k in ("ids", "mask", "seg"))
        ref_start, ref_end = session.run(None, {"input_ids": ids, "input_mask": mask, "segment_ids": seg})
        start, end = arrays[f"c{seed}_start"], arrays[f"c{seed}_end"]
        assert start.shape == end.shape == (rows, length) and start.dtype == np.float32
        real = mask.astype(bool)
        np.testing.assert_allclose(start[real], ref_start[real], atol=atol, rtol=0)
        np.testing.assert_allclose(end[real], ref_end[real], atol=atol, rtol=0)
        worst = max(worst, float(np.abs(start[real] - ref_start[real]).max()))
    return worst


@pytest.mark.slow
def test_same_logits_as_the_onnx_export(pytorch_python: Path, shared_assets: Path, tmp_path: Path) -> None:
    models = shared_assets / "models"
    report, arrays = run_probe(pytorch_python, models / "demo-minilm-l6-squad-hf", {}, tmp_path)
    assert report["provider"] == TARGETS["pytorch-cpu"].execution_provider
    assert report["versions"]["torch"].startswith("2.13.0")
    check_against_onnx(arrays, models / "demo-minilm-l6-squad.fp32.onnx")


@pytest.mark.slow
def test_torch_compile_option(pytorch_python: Path, shared_assets: Path, tmp_path: Path) -> None:
    models = shared_assets / "models"
    report, arrays = run_probe(pytorch_python, models / "demo-minilm-l6-squad-hf", {"compile": "1"}, tmp_path)
    assert report["provider"] == "cpu"
    check_against_onnx(arrays, models / "demo-minilm-l6-squad.fp32.onnx")


@pytest.mark.slow
def test_bf16_on_the_cpu(pytorch_python: Path, shared_assets: Path, tmp_path: Path) -> None:
    """precision=bf16: bfloat16 weights, float32 logits near the fp32 export's (bf16 keeps ~3 digits)."""
    if not detect_isa().bf16:  # refused there (tests/test_native_bf16.py): torch would emulate it
        pytest.skip(f"this CPU has no native bf16 (ISA: {detect_isa().describe()})")
    models = shared_assets / "models"
    report, arrays = run_probe(pytorch_python, models / "demo-minilm-l6-squad-hf", {"precision": "bf16"}, tmp_path)
    assert report["settings"]["precision"] == "bfloat16"  # checked or not: the host's label says
    worst = check_against_onnx(arrays, models / "demo-minilm-l6-squad.fp32.onnx", atol=0.75)
    assert worst > 1e-4  # really bf16: not the fp32 logits


def test_cuda_only_options_are_refused_on_the_cpu() -> None:
    from orchestrator.harness.engines.pytorch import PyTorchEngine

    for options, message in (
        ({"precision": "fp16"}, "precision=fp16 runs on CUDA"),
        ({"cuda_graphs": "1"}, "cuda_graphs=1 needs the CUDA device"),
    ):
        with pytest.raises(ConfigError, match=message):
            PyTorchEngine(
                "/no/such", device="cpu", batch_size=2, threads=None, execution_provider="cpu", options=options
            )
