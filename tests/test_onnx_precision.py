"""The precision of an ONNX file read from its protobuf without loading its weights (assets/onnx_precision.py)."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

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
    constants = [a.t.data_type for n in model.graph.node for a in n.attribute if a.HasField("t")]
    assert dtypes == dict(collections.Counter([i.data_type for i in model.graph.initializer] + constants))
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


def test_quantization_out_of_the_main_graph_or_by_another_name_is_found(tmp_path: Path) -> None:
    """An unrecognised quantized file would pass as full precision: subgraphs, local functions, operators
    known only by their name's rule and integer weights behind a Cast all say int8."""
    qdq = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"]),
    ]
    body = helper.make_graph(qdq, "then", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    branch = helper.make_node("If", ["c"], ["y"], then_branch=body, else_branch=body)
    assert onnx_precision(_graph_file(tmp_path / "if.onnx", [branch], [])) == "int8"
    function = helper.make_function("local", "Quant", ["x"], ["y"], qdq, [helper.make_opsetid("", 17)])
    graph = helper.make_graph(
        [helper.make_node("Quant", ["x"], ["y"], domain="local")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, functions=[function], opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(tmp_path / "function.onnx"))
    assert onnx_precision(tmp_path / "function.onnx") == "int8"
    nbits = helper.make_node("MatMulNBits", ["x", "w0"], ["y"], domain="com.microsoft")
    assert onnx_precision(_graph_file(tmp_path / "nbits.onnx", [nbits], _weights(TensorProto.FLOAT, 1))) == "int8"
    linear = helper.make_node("QLinearAdd", ["x", "w0"], ["y"], domain="com.microsoft")
    assert onnx_precision(_graph_file(tmp_path / "qlinear.onnx", [linear], [])) == "int8"
    cast = [
        helper.make_node("Cast", ["w0"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["x", "f"], ["y"]),
    ]
    int8_weights = [helper.make_tensor("w0", TensorProto.INT8, [4, 4], [1] * 16)]
    assert onnx_precision(_graph_file(tmp_path / "cast.onnx", cast, int8_weights)) == "int8"


def test_half_weights_in_constants_or_external_data_are_found(tmp_path: Path) -> None:
    constant = helper.make_node(
        "Constant", [], ["w"], value=helper.make_tensor("v", TensorProto.FLOAT16, [4, 4], [0.5] * 16)
    )
    matmul = helper.make_node("MatMul", ["x", "w"], ["y"])
    assert onnx_precision(_graph_file(tmp_path / "constant.onnx", [constant, matmul], [])) == "fp16"
    raw = [numpy_helper.from_array(np.full((4, 4), 0.5, dtype=np.float16), f"w{i}") for i in range(2)]  # raw_data
    path = _graph_file(tmp_path / "external.onnx", [matmul], raw)
    model = onnx.load(str(path))
    onnx.save(model, str(path), save_as_external_data=True, location="weights.data", size_threshold=0)
    assert (tmp_path / "weights.data").stat().st_size >= 2 * 16 * 2  # the weights left the file
    assert onnx_precision(path) == "fp16"
