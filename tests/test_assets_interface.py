"""check_onnx_interface on real and deliberately wrong models; the synthetic BERT generator, run in
onnxruntime (a 2-layer narrow variant: the full BERT-large one is ~1.3 GB and never built in tests)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from orchestrator.assets.catalogue import Interface
from orchestrator.assets.interface import check_onnx_interface
from orchestrator.assets.synthetic import BERT_LARGE, BertShape, build_synthetic_bert, write_synthetic_bert
from orchestrator.paths import EMBEDDED_MODEL, REPO_ROOT

TINY = BertShape(layers=2, hidden=64, heads=4, ffn=128)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return write_synthetic_bert(tmp_path_factory.mktemp("syn") / "tiny.onnx", TINY, seed=7)


@pytest.fixture(scope="module")
def session(tiny_model) -> ort.InferenceSession:
    return ort.InferenceSession(str(tiny_model), providers=["CPUExecutionProvider"])


def identity_model(path: Path, inputs: list[tuple[str, int, list]], outputs: list[tuple[str, int, list]]) -> Path:
    """A trivially valid ONNX graph with the given declared inputs/outputs (names, types, shapes)."""
    nodes = [
        helper.make_node("Constant", [], [name], value=helper.make_tensor(name + "_v", dtype, [1], [0]))
        for name, dtype, _ in outputs
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


GOOD_IN = [(n, TensorProto.INT64, ["batch", "seq"]) for n in ("input_ids", "input_mask", "segment_ids")]
GOOD_OUT = [(n, TensorProto.FLOAT, ["batch", "seq"]) for n in ("output_start_logits", "output_end_logits")]


def test_the_embedded_demo_model_and_the_synthetic_model_fit(tiny_model):
    assert check_onnx_interface(EMBEDDED_MODEL) == []
    assert check_onnx_interface(tiny_model) == []


def test_a_fixed_sequence_of_384_fits_and_any_other_does_not(tmp_path):
    def fixed(n: int) -> list:
        return [(name, t, ["batch", n]) for name, t, _ in GOOD_IN]

    assert check_onnx_interface(identity_model(tmp_path / "a.onnx", fixed(384), GOOD_OUT)) == []
    problems = check_onnx_interface(identity_model(tmp_path / "b.onnx", fixed(128), GOOD_OUT))
    assert problems == [
        f"input {n!r} has a fixed sequence length of 128; it must be dynamic or 384"
        for n in ("input_ids", "input_mask", "segment_ids")
    ]


def test_hugging_face_names_are_reported_with_the_rename(tmp_path):
    hf_in = [
        ("input_ids", TensorProto.INT64, ["b", "s"]),
        ("attention_mask", TensorProto.INT64, ["b", "s"]),
        ("token_type_ids", TensorProto.INT64, ["b", "s"]),
    ]
    hf_out = [("start_logits", TensorProto.FLOAT, ["b", "s"]), ("end_logits", TensorProto.FLOAT, ["b", "s"])]
    problems = check_onnx_interface(identity_model(tmp_path / "hf.onnx", hf_in, hf_out))
    assert (
        "missing inputs 'input_mask' (it has 'attention_mask': rename it), 'segment_ids' (it has 'token_type_ids': "
        "rename it); the model's inputs are ['attention_mask', 'input_ids', 'token_type_ids']" in problems
    )
    assert any(p.startswith("missing outputs 'output_start_logits' (it has 'start_logits'") for p in problems)
    assert sum("the model's outputs are" in p for p in problems) == 1  # listed once, not once per missing name
    assert (
        "unexpected input 'token_type_ids'; the harness feeds only ['input_ids', 'input_mask', 'segment_ids']"
        in problems
    )
    # The same file fits when checked against the interface the catalogue records for such a model.
    hf = Interface(
        inputs={"input_ids": "int64", "attention_mask": "int64", "token_type_ids": "int64"},
        outputs={"start_logits": "float32", "end_logits": "float32"},
    )
    assert check_onnx_interface(tmp_path / "hf.onnx", hf) == []


def test_dtype_and_rank_mismatches_are_named(tmp_path):
    inputs = [
        ("input_ids", TensorProto.INT32, ["b", "s"]),
        ("input_mask", TensorProto.INT64, ["b", "s", 1]),
        ("segment_ids", TensorProto.INT64, ["b", "s"]),
    ]
    outputs = [("output_start_logits", TensorProto.FLOAT16, ["b", "s"]), GOOD_OUT[1]]
    problems = check_onnx_interface(identity_model(tmp_path / "m.onnx", inputs, outputs))
    assert problems == [
        "input 'input_ids' is int32, expected int64",
        "input 'input_mask' has rank 3 [b, s, 1], expected rank 2 [batch, sequence]",
        "output 'output_start_logits' is float16, expected float32",
    ]


def test_unreadable_files_and_missing_external_data(tmp_path):
    bad = tmp_path / "junk.onnx"
    bad.write_bytes(b"\x00not an onnx file" * 10)
    problems = check_onnx_interface(bad)
    assert len(problems) == 1 and problems[0].startswith("junk.onnx is not a readable ONNX file (")
    assert check_onnx_interface(tmp_path / "none.onnx") == [f"{tmp_path / 'none.onnx'} does not exist"]
    model = build_synthetic_bert(TINY, seed=1)
    onnx.save(model, str(tmp_path / "ext.onnx"), save_as_external_data=True, location="ext.data")
    assert check_onnx_interface(tmp_path / "ext.onnx") == []
    (tmp_path / "ext.data").unlink()
    assert check_onnx_interface(tmp_path / "ext.onnx") == [
        "external weight file 'ext.data' is missing next to ext.onnx"
    ]


def test_host_side_asset_code_never_imports_an_inference_engine():
    code = (
        "import sys\n"
        "import orchestrator.assets, orchestrator.assets.download, orchestrator.assets.synthetic\n"
        "import orchestrator.commands.assets_cmd\n"
        "from orchestrator.assets import check_onnx_interface\n"
        "from orchestrator.paths import EMBEDDED_MODEL\n"
        "assert check_onnx_interface(EMBEDDED_MODEL) == []\n"
        "bad = [m for m in ('onnxruntime', 'torch', 'tensorrt', 'deepsparse') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)


# ----------------------------------------------------------------------------------- synthetic model


def test_parameter_count_is_bert_large_and_matches_the_graph(tiny_model):
    assert BERT_LARGE.parameters() == 334_094_338  # BertForQuestionAnswering, bert-large (no pooler)
    model = onnx.load(str(tiny_model))
    weights = sum(
        int(np.prod(i.dims))
        for i in model.graph.initializer
        if i.data_type == TensorProto.FLOAT and len(i.dims) >= 1 and i.name.startswith(("bert.", "qa_outputs"))
    )
    assert weights == TINY.parameters()
    assert abs(tiny_model.stat().st_size - TINY.file_bytes()) < 0.05 * TINY.file_bytes()


def test_the_graph_is_valid_opset_17_with_dynamic_batch_and_sequence(tiny_model):
    model = onnx.load(str(tiny_model))
    onnx.checker.check_model(model, full_check=True)
    assert {o.domain or "": o.version for o in model.opset_import}[""] == 17
    for vi in list(model.graph.input) + list(model.graph.output):
        assert [d.dim_param for d in vi.type.tensor_type.shape.dim] == ["batch_size", "seq_len"]
    ops = {n.op_type for n in model.graph.node}
    assert {"LayerNormalization", "Erf", "Softmax", "MatMul"} <= ops
    assert {p.key: p.value for p in model.metadata_props}["mlperf_bert.synthetic"] == "true"


def test_same_seed_same_bytes_other_seed_other_weights(tiny_model, tmp_path):
    again = write_synthetic_bert(tmp_path / "again.onnx", TINY, seed=7)
    other = write_synthetic_bert(tmp_path / "other.onnx", TINY, seed=8)

    def digest(p: Path) -> str:
        return hashlib.sha256(p.read_bytes()).hexdigest()

    assert digest(again) == digest(tiny_model)
    assert digest(other) != digest(tiny_model)
    assert not (tmp_path / "again.onnx.part").exists()


def feeds(ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "input_ids": ids.astype(np.int64),
        "input_mask": mask.astype(np.int64),
        "segment_ids": np.zeros_like(ids, dtype=np.int64),
    }


@pytest.mark.parametrize("batch, seq", [(1, 16), (3, 384)])
def test_it_runs_in_onnxruntime_with_any_batch_and_sequence(session, batch, seq):
    rng = np.random.default_rng(0)
    start, end = session.run(None, feeds(rng.integers(0, 30522, (batch, seq)), np.ones((batch, seq))))
    assert start.shape == end.shape == (batch, seq)
    assert start.dtype == np.float32 and np.isfinite(start).all() and np.isfinite(end).all()
    assert not np.allclose(start, end)


def test_the_attention_mask_hides_padding(session):
    rng = np.random.default_rng(1)
    ids = rng.integers(1000, 30000, (1, 32))
    mask = np.zeros((1, 32))
    mask[0, :20] = 1
    base, _ = session.run(None, feeds(ids, mask))
    changed = ids.copy()
    changed[0, 20:] = 42
    masked, _ = session.run(None, feeds(changed, mask))
    unmasked, _ = session.run(None, feeds(changed, np.ones((1, 32))))
    # Random N(0, 0.02) weights make attention nearly uniform, so effects are small but far above
    # float noise: padding is invisible (exp(-10000) is exactly 0)...
    assert np.abs(masked[0, :20] - base[0, :20]).max() < 1e-6
    assert np.abs(unmasked[0, :20] - base[0, :20]).max() > 1e-4  # ...only because of the mask
    short, _ = session.run(None, feeds(ids[:, :20], np.ones((1, 20))))
    assert np.abs(short[0] - base[0, :20]).max() < 1e-5  # and the padded length does not matter


def test_an_empty_file_is_called_empty(tmp_path):
    empty = tmp_path / "model.onnx"
    empty.write_bytes(b"")
    assert check_onnx_interface(empty) == ["model.onnx is empty (0 bytes), not an ONNX model"]
