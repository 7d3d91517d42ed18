"""DeepSparse engine: bucketing and leftovers (here, with onnxruntime standing in for the compiled model),
and the real engine in its own environment against onnxruntime on the same inputs (slow)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from orchestrator.backends import TARGETS
from orchestrator.errors import ConfigError, ModelError, PreflightError
from orchestrator.harness.engines.deepsparse import (
    DEFAULT_BUCKETS,
    PROVIDER,
    DeepSparseEngine,
    DeepSparseOptions,
    load_model,
    pad_rows,
    save_fixed_shape,
)
from orchestrator.harness.engines.options import parse_engine_options
from orchestrator.paths import EMBEDDED_MODEL, PACKAGE_DIR, REPO_ROOT

# (rows, length) batches the SUT can hand over: a single leftover, a bucket smaller than the batch size,
# exactly a compiled shape, more rows than the batch size, lengths between buckets.
CASES = [(1, 64), (1, 7), (3, 100), (8, 384), (13, 128), (5, 300), (2, 384)]
BATCH = 8


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_inputs(rows: int, length: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Real-looking rows: [CLS] question [SEP] context [SEP], each row with its own real length."""
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


@pytest.fixture(scope="module")
def ort_session(fp32_model: Path):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    return ort.InferenceSession(str(fp32_model), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random-weight BERT with the MLPerf interface: fast enough for a unit test."""
    from orchestrator.assets.synthetic import BertShape, write_synthetic_bert

    shape = BertShape(layers=2, hidden=64, heads=4, ffn=128, vocab=30522, max_positions=512)
    return write_synthetic_bert(tmp_path_factory.mktemp("tiny") / "tiny.onnx", shape, seed=3)


@pytest.fixture(scope="module")
def tiny_session(tiny_model: Path):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    return ort.InferenceSession(str(tiny_model), providers=["CPUExecutionProvider"])


def ort_logits(session, ids, mask, seg):  # type: ignore[no-untyped-def]
    start, end = session.run(None, {"input_ids": ids, "input_mask": mask, "segment_ids": seg})
    return start, end


# ---- pure parts ----------------------------------------------------------------------------------------
def test_bucket_options() -> None:
    def buckets(text: str) -> tuple[int, ...]:
        return parse_engine_options(DeepSparseOptions, {"buckets": text}, "deepsparse").buckets

    assert parse_engine_options(DeepSparseOptions, {}, "deepsparse").buckets == DEFAULT_BUCKETS
    assert sorted(set(buckets("384, 128,128"))) == [128, 384]
    for bad in ("128,256", "abc", "0,384", ","):
        with pytest.raises(ConfigError, match=f"deepsparse engine option buckets='{bad}' is not a"):
            buckets(bad)


def test_pad_rows_fills_short_batches_with_a_real_row() -> None:
    ids = np.array([[101, 7, 102]], np.int64)
    (padded,) = pad_rows([ids], 4, 5)
    assert padded.shape == (4, 5) and padded.dtype == np.int64
    assert (padded[:, :3] == ids[0]).all() and (padded[:, 3:] == 0).all()


def test_registry_entry() -> None:
    target = TARGETS["deepsparse-cpu"]
    assert target.execution_provider == PROVIDER
    assert target.local_env == "deepsparse-cpu" and target.accepts_zoo_stubs
    assert (REPO_ROOT / "images" / "deepsparse-cpu" / "requirements.txt").is_file()


def test_dynamic_int8_is_rewritten_to_the_same_computation() -> None:
    # deepsparse 1.8 aborts the process on DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul: the copy it
    # compiles holds the equivalent DequantizeLinear -> MatMul form, which must compute the same logits.
    import onnxruntime as ort

    model = load_model(str(EMBEDDED_MODEL))
    ops = {n.op_type for n in model.graph.node}
    assert "MatMulInteger" not in ops and "DequantizeLinear" in ops
    original = ort.InferenceSession(str(EMBEDDED_MODEL), providers=["CPUExecutionProvider"])
    rewritten = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ids, mask, seg = make_inputs(3, 96, seed=11)
    feeds = {"input_ids": ids, "input_mask": mask, "segment_ids": seg}
    for a, b in zip(original.run(None, feeds), rewritten.run(None, feeds), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_other_integer_ops_are_refused(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    # A MatMulInteger outside onnxruntime's dynamic pattern: nothing to rewrite, so refused before compiling.
    nodes = [
        helper.make_node("Cast", ["input_ids"], ["q"], to=TensorProto.UINT8),
        helper.make_node("MatMulInteger", ["q", "w"], ["acc"]),
        helper.make_node("Cast", ["acc"], ["output_start_logits"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["acc"], ["output_end_logits"], to=TensorProto.FLOAT),
        helper.make_node("Identity", ["input_mask"], ["unused_mask"]),
        helper.make_node("Identity", ["segment_ids"], ["unused_seg"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info(n, TensorProto.INT64, ["b", "s"])
            for n in ("input_ids", "input_mask", "segment_ids")
        ],
        [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, ["b", "s"])
            for n in ("output_start_logits", "output_end_logits")
        ],
        [numpy_helper.from_array(np.ones((1, 1), np.uint8), "w")],
    )
    path = tmp_path / "integer.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ModelError, match="MatMulInteger"):
        load_model(str(path))


def test_wrong_interface_is_refused(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["ids"], ["out"])],
        "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["b", "s"])],
        [helper.make_tensor_value_info("out", TensorProto.INT64, ["b", "s"])],
    )
    path = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ModelError, match="MLPerf BERT interface"):
        load_model(str(path))


def test_missing_model_and_wrong_provider() -> None:
    with pytest.raises(ModelError, match="does not exist"):
        DeepSparseEngine(
            "/nonexistent/model.onnx", device="cpu", batch_size=4, threads=None, execution_provider=PROVIDER
        )
    with pytest.raises(PreflightError):
        DeepSparseEngine(
            str(EMBEDDED_MODEL), device="cpu", batch_size=4, threads=None, execution_provider="CPUExecutionProvider"
        )


def test_fixed_shape_copy_leaves_the_original_alone(tiny_model: Path, tmp_path: Path) -> None:
    import onnx

    before = sha256(tiny_model)
    out = save_fixed_shape(load_model(str(tiny_model)), 4, 128, tmp_path)
    assert sha256(tiny_model) == before
    dims = [[d.dim_value for d in i.type.tensor_type.shape.dim] for i in onnx.load(str(out)).graph.input]
    assert dims == [[4, 128]] * 3


class _OrtAsCompiled:
    """Stands in for a compiled deepsparse engine: runs onnxruntime and insists on the compiled shape."""

    def __init__(self, session, batch: int, length: int, calls: list[tuple[int, int]]) -> None:  # type: ignore[no-untyped-def]
        self.session, self.shape, self.calls = session, (batch, length), calls

    def __call__(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        assert all(a.shape == self.shape and a.dtype == np.int64 for a in arrays), [a.shape for a in arrays]
        self.calls.append(self.shape)
        return ort_logits(self.session, *arrays)


class _EngineOverOrt(DeepSparseEngine):
    session = None
    calls: ClassVar[list[tuple[int, int]]] = []

    def _compile_one(self, fixed: Path, length: int):  # type: ignore[no-untyped-def]
        assert fixed.is_file()
        self._remember_order(["input_ids", "input_mask", "segment_ids"], ["output_start_logits", "output_end_logits"])
        return _OrtAsCompiled(self.session, self.batch_size, length, self.calls)


def test_every_row_is_answered_with_its_own_logits(tiny_model: Path, tiny_session) -> None:  # type: ignore[no-untyped-def]
    _EngineOverOrt.session = tiny_session
    _EngineOverOrt.calls = []
    engine = _EngineOverOrt(
        str(tiny_model),
        device="cpu",
        batch_size=BATCH,
        threads=None,
        execution_provider=PROVIDER,
        options={"buckets": "64,128,256,384"},
    )
    assert engine.seq_buckets() == [64, 128, 256, 384] and engine.max_batch() == BATCH
    for seed, (rows, length) in enumerate(CASES):
        ids, mask, seg = make_inputs(rows, length, seed)
        start, end = engine.infer(ids, mask, seg)
        assert start.shape == end.shape == (rows, length) and start.dtype == np.float32
        ref_start, ref_end = ort_logits(tiny_session, ids, mask, seg)
        real = mask.astype(bool)
        np.testing.assert_allclose(start[real], ref_start[real], atol=1e-4)
        np.testing.assert_allclose(end[real], ref_end[real], atol=1e-4)
    # every call ran a compiled shape: (8, bucket); 13 rows took two calls
    assert all(b == BATCH for b, _ in _EngineOverOrt.calls)
    assert len(_EngineOverOrt.calls) == len(CASES) + 1


# ---- the real engine, in its own environment ---------------------------------------------------------------
PROBE = r"""
import json, sys, numpy as np
from orchestrator.errors import ModelError
from orchestrator.harness.engines.deepsparse import DeepSparseEngine
args = json.loads(sys.argv[1])
data = np.load(args["inputs"])
engine = DeepSparseEngine(args["model"], device="cpu", batch_size=args["batch"], threads=None,
                          execution_provider="DeepSparseEngine")
out = {}
for key in sorted({k.rsplit("_", 1)[0] for k in data.files}):
    out[key + "_start"], out[key + "_end"] = engine.infer(data[key + "_ids"], data[key + "_mask"], data[key + "_seg"])
np.savez(args["outputs"], **out)
report = {"provider": engine.execution_provider, "versions": engine.versions(), "buckets": engine.seq_buckets()}
int8 = DeepSparseEngine(args["int8"], device="cpu", batch_size=args["batch"], threads=None,
                        execution_provider="DeepSparseEngine")
out8 = {}
for key in sorted({k.rsplit("_", 1)[0] for k in data.files}):
    out8[key + "_start"], out8[key + "_end"] = int8.infer(data[key + "_ids"], data[key + "_mask"], data[key + "_seg"])
np.savez(args["outputs_int8"], **out8)
try:
    DeepSparseEngine("zoo:nlp/question_answering/bert-base/pytorch/huggingface/squad/base-none", device="cpu",
                     batch_size=1, threads=None, execution_provider="DeepSparseEngine")
    report["zoo"] = "downloaded"
except ModelError as exc:
    report["zoo"] = str(exc)
print("REPORT " + json.dumps(report))
"""


@pytest.fixture(scope="module")
def deepsparse_python() -> Path:
    from orchestrator.runners import venvs

    try:
        return venvs.ensure_venv("deepsparse-cpu")
    except PreflightError as exc:
        pytest.skip(f"the deepsparse environment cannot be built here: {exc}")


@pytest.mark.slow
def test_real_engine_matches_onnxruntime(
    deepsparse_python: Path, fp32_model: Path, ort_session, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    inputs = {}
    for seed, (rows, length) in enumerate(CASES):
        ids, mask, seg = make_inputs(rows, length, seed)
        inputs.update({f"c{seed}_ids": ids, f"c{seed}_mask": mask, f"c{seed}_seg": seg})
    np.savez(tmp_path / "in.npz", **inputs)
    before = sha256(fp32_model)
    args = {
        "model": str(fp32_model),
        "int8": str(EMBEDDED_MODEL),
        "batch": BATCH,
        "inputs": str(tmp_path / "in.npz"),
        "outputs": str(tmp_path / "out.npz"),
        "outputs_int8": str(tmp_path / "out8.npz"),
    }
    int8_before = sha256(EMBEDDED_MODEL)
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_DIR.parent))
    proc = subprocess.run(
        [str(deepsparse_python), "-c", PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    report = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("REPORT "))[7:])
    assert report["provider"] == TARGETS["deepsparse-cpu"].execution_provider
    assert report["versions"]["deepsparse"] == "1.8.0"
    assert sha256(fp32_model) == before, "deepsparse must never rewrite the model"
    out = np.load(tmp_path / "out.npz")
    for seed, (rows, length) in enumerate(CASES):
        ids, mask, seg = (inputs[f"c{seed}_{k}"] for k in ("ids", "mask", "seg"))
        ref_start, ref_end = ort_logits(ort_session, ids, mask, seg)
        start, end = out[f"c{seed}_start"], out[f"c{seed}_end"]
        assert start.shape == (rows, length)
        real = mask.astype(bool)
        np.testing.assert_allclose(start[real], ref_start[real], atol=1e-3)
        np.testing.assert_allclose(end[real], ref_end[real], atol=1e-3)
    # The embedded int8 model runs too (a compiler abort would have failed the probe). DeepSparse's int8
    # arithmetic is not onnxruntime's: on the same inputs the logits differ by quantization noise (seen:
    # mean 0.12, while onnxruntime's int8 differs from fp32 by 0.18), not by a wrong computation.
    assert sha256(EMBEDDED_MODEL) == int8_before
    import onnxruntime as ort

    session8 = ort.InferenceSession(str(EMBEDDED_MODEL), providers=["CPUExecutionProvider"])
    out8 = np.load(tmp_path / "out8.npz")
    for seed, (rows, length) in enumerate(CASES):
        ids, mask, seg = (inputs[f"c{seed}_{k}"] for k in ("ids", "mask", "seg"))
        if length < 8:
            continue  # too short to say anything about quantization noise
        ref_start, _ = ort_logits(session8, ids, mask, seg)
        real = mask.astype(bool)
        assert out8[f"c{seed}_start"].shape == (rows, length)
        assert float(np.abs(out8[f"c{seed}_start"][real] - ref_start[real]).mean()) < 0.35
    if report["zoo"] != "downloaded":  # offline, as on these machines: a clear one-sentence ModelError
        assert "cannot be downloaded" in report["zoo"] and "local ONNX file" in report["zoo"], report["zoo"]
