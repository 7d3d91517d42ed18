"""The precision of an ONNX file read from its protobuf without loading its weights (assets/onnx_precision.py)."""

from __future__ import annotations

import collections
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from orchestrator.assets.onnx_precision import onnx_precision, scan
from orchestrator.paths import REPO_ROOT

DEMO_INT8 = REPO_ROOT / "embedded" / "models" / "demo-minilm-l6-squad.int8.onnx"


def _graph_file(path: Path, nodes: list[onnx.NodeProto], initializers: list[onnx.TensorProto]) -> Path:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        initializers,
    )
    onnx.save(helper.make_model(graph), str(path))
    return path


def _weights(dtype: int, count: int) -> list[onnx.TensorProto]:
    return [helper.make_tensor(f"w{i}", dtype, [4, 4], [0.5] * 16) for i in range(count)]


def test_the_walk_reads_what_onnx_load_reads() -> None:
    """Every operator type and every initializer's element type, on the embedded int8 model."""
    model = onnx.load(str(DEMO_INT8), load_external_data=False)
    ops, dtypes = scan(DEMO_INT8)
    assert ops == {n.op_type for n in model.graph.node}
    assert dtypes == dict(collections.Counter(i.data_type for i in model.graph.initializer))
    assert onnx_precision(DEMO_INT8) == "int8"


def test_fp32_fp16_and_quantized_graphs(tmp_path: Path) -> None:
    matmul = helper.make_node("MatMul", ["x", "w0"], ["y"])
    assert onnx_precision(_graph_file(tmp_path / "fp32.onnx", [matmul], _weights(TensorProto.FLOAT, 2))) == "fp32"
    fp16 = _weights(TensorProto.FLOAT16, 3) + [helper.make_tensor("scale", TensorProto.FLOAT, [], [1.0])]
    assert onnx_precision(_graph_file(tmp_path / "fp16.onnx", [matmul], fp16)) == "fp16"
    qdq = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
        helper.make_node("MatMul", ["d", "w0"], ["y"]),
    ]
    assert onnx_precision(_graph_file(tmp_path / "qdq.onnx", qdq, _weights(TensorProto.FLOAT, 1))) == "int8"


@pytest.mark.parametrize(
    "content", [b"", b"# not a model\n", b"\x3a\xff\xff\xff\x0f", b"\x0a\x05ab"], ids=["empty", "text", "long", "cut"]
)
def test_a_file_that_is_no_onnx_model_has_no_precision(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    assert onnx_precision(path) is None  # the engine reports an unreadable model itself, in its own words


def test_a_truncated_model_has_no_precision(tmp_path: Path) -> None:
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(DEMO_INT8.read_bytes()[:5000])
    assert onnx_precision(cut) is None
