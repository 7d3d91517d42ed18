"""benchmarks/profile_openvino.py: where an OpenVINO model's time goes, per op type, and the FullyConnected
layers' rate. Real OpenVINO on the demo model: every FullyConnected is found and its operations counted from
its real shapes; the shares are shares; a bad flag or a model OpenVINO cannot read is one sentence. The
figures themselves are for RESULTS.md, not asserted."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from harness_support import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import profile_openvino  # noqa: E402

SCRIPT = REPO / "benchmarks" / "profile_openvino.py"
# The demo model (MiniLM-L6-H384): 6 layers of Q, K, V, output (384x384) and FFN 384->1536->384, plus the
# 384->2 span head: 37 FullyConnected layers, this many operations per token.
DEMO_LAYERS, DEMO_HIDDEN, DEMO_FFN = 6, 384, 1536
DEMO_OPS_PER_TOKEN = 2 * (DEMO_LAYERS * (4 * DEMO_HIDDEN**2 + 2 * DEMO_HIDDEN * DEMO_FFN) + DEMO_HIDDEN * 2)


def run_script(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, check=False, cwd=REPO
    )


@pytest.mark.slow
def test_every_fully_connected_is_counted_from_its_real_shapes(openvino_python: Path, fp32_model: Path) -> None:
    npz, lengths = profile_openvino.feeds(batch=2, batches=3, pad_to=16, seed=0)
    assert lengths["mean_padded_tokens"] >= lengths["mean_real_tokens"] > 0
    widths = [npz[f"input_ids_{i}"].shape[1] for i in range(3)]
    assert widths == sorted(widths, reverse=True) and all(w % 16 == 0 or w == 384 for w in widths)
    raw = profile_openvino.profile(fp32_model, "fp32", threads=1, passes=2, npz=npz)
    assert raw["calls"] == 6 and raw["wall_seconds"] > 0
    assert raw["op_types"]["FullyConnected"]["per_call"] == 37
    tokens_per_pass = sum(npz[f"input_ids_{i}"].size for i in range(3))
    assert set(raw["fully_connected"]) == {"f32"}  # an fp32 model at the fp32 hint: nothing else ran
    assert raw["fully_connected"]["f32"]["ops"] == pytest.approx(2 * tokens_per_pass * DEMO_OPS_PER_TOKEN)
    summary = profile_openvino.summarise(raw, {"fp32": 100.0}, batch=2)
    assert sum(t["share"] for t in summary["op_types"].values()) == pytest.approx(1.0)
    fc = summary["fully_connected"]["f32"]
    assert fc["gops_per_s"] > 0 and fc["ceiling_of"] == "fp32" and fc["ceiling"] == 100.0
    assert fc["fraction_of_ceiling"] == pytest.approx(fc["gops_per_s"] / 100.0)
    assert 0 < fc["share"] <= summary["op_types"]["FullyConnected"]["share"] + 1e-9


def test_summary_rates_and_an_unmeasured_ceiling() -> None:
    raw = {
        "calls": 2,
        "wall_seconds": 0.5,
        "op_types": {
            "FullyConnected": {"seconds": 0.3, "per_call": 4, "kernels": ["brgemm_avx512_amx_u8"]},
            "Subgraph": {"seconds": 0.1, "per_call": 1, "kernels": ["jit_avx512_amx_bf16"]},
        },
        "fully_connected": {"u8": {"ops": 6e11, "seconds": 0.2}, "bf16": {"ops": 1e11, "seconds": 0.1}},
    }
    summary = profile_openvino.summarise(raw, {"int8": 4000.0, "bf16": None}, batch=4)
    assert summary["ms_per_batch"] == pytest.approx(250.0)
    assert summary["samples_per_s_one_stream"] == pytest.approx(16.0)
    assert summary["op_types"]["FullyConnected"]["share"] == pytest.approx(0.75)
    assert summary["op_types"]["Subgraph"]["ms_per_batch"] == pytest.approx(50.0)
    u8, bf16 = summary["fully_connected"]["u8"], summary["fully_connected"]["bf16"]
    assert u8["gops_per_s"] == pytest.approx(3000.0) and u8["fraction_of_ceiling"] == pytest.approx(0.75)
    assert bf16["gops_per_s"] == pytest.approx(1000.0) and bf16["fraction_of_ceiling"] is None


@pytest.mark.parametrize(
    ("make", "args", "sentence"),
    [
        (None, (), r"is not a file; pass an ONNX model or an OpenVINO IR \(\.xml\)"),
        ("model.bin", (), r"model\.bin is neither \.onnx nor \.xml; pass an ONNX model or an OpenVINO IR"),
        ("model.onnx", ("--batch", "0"), r"--batch 0 is below 1; pass 1 or more"),
        ("model.onnx", ("--pad-to", "500"), r"--pad-to 500 is not within 1-384"),
        ("model.onnx", ("--json", "/nonexistent/dir/out.json"), r"the folder /nonexistent/dir does not exist"),
    ],
)
def test_a_bad_flag_is_one_sentence_before_any_measurement(
    tmp_path: Path, make: str | None, args: tuple[str, ...], sentence: str
) -> None:
    model = tmp_path / (make or "absent.onnx")
    if make:
        model.write_bytes(b"not a model")
    done = run_script(model, *args)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert "Traceback" not in done.stderr
    assert re.search(sentence, last), last


@pytest.mark.slow
def test_a_model_openvino_cannot_read_is_one_sentence(openvino_python: Path, tmp_path: Path) -> None:
    model = tmp_path / "broken.onnx"
    model.write_bytes(np.random.default_rng(0).bytes(256))
    done = run_script(model, "--batch", "1", "--batches", "1", "--passes", "1", "--no-ceilings")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("profile_openvino: OpenVINO could not profile broken.onnx (")
    assert last.endswith("; pass an ONNX or IR BERT model")


def write_run(tmp_path: Path, target: str, settings: dict[str, str], **more: object) -> Path:
    run = tmp_path / "20261203-000000-run"
    run.mkdir(parents=True)
    record = {"target": target, "engine_settings": settings, "model": {"path": str(tmp_path / "m.onnx")}, **more}
    (run / "run.json").write_text(json.dumps(record))
    return run


def test_a_run_names_the_model_and_float_precision_it_ran(tmp_path: Path) -> None:
    ir = str(tmp_path / "int8" / "model.xml")
    Path(ir).parent.mkdir()
    Path(ir).write_text("<net/>")
    int8 = {"precision": "int8", "int8_float": "bf16", "int8_model": ir}
    assert profile_openvino.from_run(write_run(tmp_path / "a", "openvino-cpu", int8)) == (Path(ir), "bf16")
    bf16 = {"precision": "bf16 (auto)"}
    run = write_run(tmp_path / "b", "openvino-cpu", bf16)
    assert profile_openvino.from_run(run / "run.json") == (tmp_path / "b" / "m.onnx", "bf16")


@pytest.mark.parametrize(
    ("target", "settings", "sentence"),
    [
        ("onnxruntime-cpu", {"precision": "fp32"}, r"ran on onnxruntime-cpu; pass a run of --backend openvino"),
        (
            "openvino-cpu",
            {"precision": "int8", "int8_model": "/tmp/x/model.xml (temporary: removed after the run)"},
            r"kept no int8 model \(it ran without a cache\)",
        ),
    ],
)
def test_a_run_that_cannot_say_is_one_sentence(
    tmp_path: Path, target: str, settings: dict[str, str], sentence: str
) -> None:
    with pytest.raises(profile_openvino.ProfileError, match=sentence):
        profile_openvino.from_run(write_run(tmp_path, target, settings))
    with pytest.raises(profile_openvino.ProfileError, match=r"is not a readable run\.json"):
        profile_openvino.from_run(tmp_path / "absent")


def test_a_docker_runs_int8_model_is_found_in_the_hosts_engine_cache(tmp_path: Path) -> None:
    """The container recorded its own path (/cache/cache_dir/...): the IR is under the host's engine cache."""
    ir = tmp_path / "cache" / "engines" / "openvino-cpu" / "int8" / "k" / "model.xml"
    ir.parent.mkdir(parents=True)
    ir.write_text("<net/>")
    settings = {"precision": "int8", "int8_model": "/cache/cache_dir/int8/k/model.xml"}
    config = {"cache_dir": str(tmp_path / "cache"), "engine_options": {"precision": "int8"}}
    run = write_run(tmp_path / "a", "openvino-cpu", settings, runner="docker", config=config)
    assert profile_openvino.from_run(run) == (ir, "fp32")
    named = {"cache_dir": str(tmp_path / "cache"), "engine_options": {"cache_dir": str(tmp_path / "elsewhere")}}
    run = write_run(tmp_path / "b", "openvino-cpu", settings, runner="docker", config=named)
    with pytest.raises(profile_openvino.ProfileError) as gone:
        profile_openvino.from_run(run)
    assert str(gone.value) == (
        f"the run {run.name}'s int8 model {tmp_path / 'elsewhere' / 'int8' / 'k' / 'model.xml'} is no longer "
        "there (its cache was cleared or moved); rerun the run, or pass the model"
    )


def test_run_and_model_or_float_together_are_refused(tmp_path: Path) -> None:
    run = write_run(tmp_path, "openvino-cpu", {"precision": "fp32"})
    done = run_script(tmp_path / "m.onnx", "--run", run)
    assert done.returncode == 2 and "pass either a MODEL or --run RUN_DIR" in done.stderr.splitlines()[-1]
    done = run_script("--run", run, "--float", "bf16")
    assert done.returncode == 2 and "--float comes from the run with --run" in done.stderr.splitlines()[-1]
