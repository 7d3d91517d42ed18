"""The numeric precision of an ONNX file's weights and operators, read without loading its weights.

    onnx_precision(Path("model.int8.onnx"))  # "int8": it has quantized operators (MatMulInteger, QDQ, ...)

A run of a `--model-path` file records this as its model's precision (run.json model_meta), so an int8 or
fp16 file is labelled and checked as one (workflows/accuracy_label.py) instead of passing as full precision.

Why a walk of the protobuf wire format and not `onnx.load`: `onnx.load` parses every weight into memory
(a 1.3 GB BERT-large file: 4.6 s and 1.3 GB here), and this runs before every run of a custom model. The
walk reads the file through mmap and only the fields it needs, the nodes' operator types and each
initializer's element type, stepping over the weight bytes by their length. The field numbers are ONNX's
(onnx/onnx.proto: ModelProto.graph = 7; GraphProto.node = 1, initializer = 5; NodeProto.op_type = 4;
TensorProto.data_type = 2); a file that is not a well-formed protobuf is reported as unreadable.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from pathlib import Path

# Operators that only a quantized (integer) model has: onnxruntime's dynamic and static (QDQ, QOperator)
# quantization, its contrib ops for quantized transformers, and block-quantized (4-bit) weights. Matched by
# name rule as well (QUANTIZED_PREFIXES, QUANTIZED_WORDS), so the next such operator is not taken for fp32.
QUANTIZED_OPS = frozenset(
    {
        "DynamicQuantizeLinear",
        "QuantizeLinear",
        "DequantizeLinear",
        "MatMulInteger",
        "MatMulInteger16",
        "ConvInteger",
        "DynamicQuantizeMatMul",
        "MatMulIntegerToFloat",
        "MatMulNBits",
        "MatMulBnb4",
        "GatherBlockQuantized",
        "QGemm",
        "QAttention",
        "QEmbedLayerNormalization",
        "DynamicQuantizeLSTM",
    }
)
QUANTIZED_PREFIXES = ("QLinear", "QOrdered")  # QLinearMatMul, QLinearAdd, ..., QOrderedAttention, ...
QUANTIZED_WORDS = ("Quantize", "Integer", "NBits", "Bnb4")  # QuantizeWithOrder, DequantizeWithOrder, ...
# Integer and 8-bit float element types that weights of a quantized model are stored in (onnx.TensorProto:
# UINT8, INT8, FLOAT8E4M3FN ... FLOAT8E5M2FNUZ, UINT4, INT4); int32/int64 initializers are shapes and indices.
_QUANTIZED_TYPES = frozenset({2, 3, 17, 18, 19, 20, 21, 22})
_FLOAT32, _FLOAT16, _BFLOAT16 = 1, 10, 16  # onnx.TensorProto.DataType
# Wire types (protobuf encoding): varint, 64-bit, length-delimited, 32-bit.
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_MODEL_GRAPH, _MODEL_FUNCTIONS = 7, 25  # ModelProto
_GRAPH_NODE, _GRAPH_INITIALIZER = 1, 5  # GraphProto
_NODE_OP_TYPE, _NODE_ATTRIBUTE = 4, 5  # NodeProto
_ATTRIBUTE_TENSOR, _ATTRIBUTE_GRAPH, _ATTRIBUTE_TENSORS, _ATTRIBUTE_GRAPHS = 5, 6, 10, 11  # AttributeProto
_FUNCTION_NODE = 7  # FunctionProto
_TENSOR_DATA_TYPE = 2  # TensorProto


class UnreadableOnnx(ValueError):
    """The file is not a well-formed ONNX protobuf."""


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= end or shift > 63:
            raise UnreadableOnnx("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, value start, value end) of each field of the message in buf[start:end];
    for a varint the value itself is in `value start` and `value end` is where the next field begins."""
    pos = start
    while pos < end:
        tag, pos = _varint(buf, pos, end)
        number, wire = tag >> 3, tag & 7
        if wire == _VARINT:
            value, pos = _varint(buf, pos, end)
            yield number, wire, value, pos
            continue
        if wire == _LEN:
            length, pos = _varint(buf, pos, end)
            stop = pos + length
        elif wire == _I64:
            stop = pos + 8
        elif wire == _I32:
            stop = pos + 4
        else:  # groups (3, 4) are not used by ONNX; anything else is not protobuf
            raise UnreadableOnnx(f"wire type {wire}")
        if stop > end:
            raise UnreadableOnnx("a field runs past its message")
        yield number, wire, pos, stop
        pos = stop


def scan(path: Path) -> tuple[set[str], dict[int, int]]:
    """The operator types of every node (the main graph's, its subgraphs' (If, Loop, Scan) and the model's
    local functions'), and how many weight tensors (initializers, Constant values) each element type has."""
    ops: set[str] = set()
    dtypes: dict[int, int] = {}
    with open(path, "rb") as f:
        if Path(path).stat().st_size == 0:
            raise UnreadableOnnx("empty file")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            if hasattr(mapped, "madvise"):  # read-ahead would page in the weights we step over (1.1 s cold)
                mapped.madvise(mmap.MADV_RANDOM)
            buf = memoryview(mapped)
            try:
                _walk_model(buf, ops, dtypes)
            finally:
                buf.release()
    return ops, dtypes


def _walk_model(buf: memoryview, ops: set[str], dtypes: dict[int, int]) -> None:
    for number, wire, start, stop in _fields(buf, 0, len(buf)):
        if wire != _LEN:
            continue
        if number == _MODEL_GRAPH:
            _walk_graph(buf, start, stop, ops, dtypes)
        elif number == _MODEL_FUNCTIONS:
            for f_number, f_wire, f_start, f_stop in _fields(buf, start, stop):
                if f_number == _FUNCTION_NODE and f_wire == _LEN:
                    _walk_node(buf, f_start, f_stop, ops, dtypes)


def _walk_graph(buf: memoryview, start: int, stop: int, ops: set[str], dtypes: dict[int, int]) -> None:
    for number, wire, g_start, g_stop in _fields(buf, start, stop):
        if wire != _LEN:
            continue
        if number == _GRAPH_NODE:
            _walk_node(buf, g_start, g_stop, ops, dtypes)
        elif number == _GRAPH_INITIALIZER:
            _count_tensor(buf, g_start, g_stop, dtypes)


def _walk_node(buf: memoryview, start: int, stop: int, ops: set[str], dtypes: dict[int, int]) -> None:
    for number, wire, n_start, n_stop in _fields(buf, start, stop):
        if wire != _LEN:
            continue
        if number == _NODE_OP_TYPE:
            ops.add(bytes(buf[n_start:n_stop]).decode("utf-8", "replace"))
        elif number == _NODE_ATTRIBUTE:  # a Constant's value, an If/Loop/Scan body
            for a_number, a_wire, a_start, a_stop in _fields(buf, n_start, n_stop):
                if a_wire != _LEN:
                    continue
                if a_number in (_ATTRIBUTE_TENSOR, _ATTRIBUTE_TENSORS):
                    _count_tensor(buf, a_start, a_stop, dtypes)
                elif a_number in (_ATTRIBUTE_GRAPH, _ATTRIBUTE_GRAPHS):
                    _walk_graph(buf, a_start, a_stop, ops, dtypes)


def _count_tensor(buf: memoryview, start: int, stop: int, dtypes: dict[int, int]) -> None:
    for number, wire, value, _ in _fields(buf, start, stop):
        if number == _TENSOR_DATA_TYPE and wire == _VARINT:
            dtypes[value] = dtypes.get(value, 0) + 1
            return


def quantized(op_type: str) -> bool:
    return (
        op_type in QUANTIZED_OPS or op_type.startswith(QUANTIZED_PREFIXES) or any(w in op_type for w in QUANTIZED_WORDS)
    )


def onnx_precision(path: Path) -> str | None:
    """ "int8" for a quantized graph, "fp16"/"bf16" where most float weights are half precision, "fp32" for a
    float32 graph; None where the file cannot be read as ONNX (the engine reports that itself)."""
    try:
        ops, dtypes = scan(path)
    except (OSError, ValueError):
        return None
    if not ops and not dtypes:
        return None
    if any(quantized(op) for op in ops) or any(dtypes.get(t, 0) for t in _QUANTIZED_TYPES):
        return "int8"  # integer-quantized: int8, or fewer bits (MatMulNBits); a reduced precision either way
    halves = {"fp16": dtypes.get(_FLOAT16, 0), "bf16": dtypes.get(_BFLOAT16, 0)}
    half = max(halves, key=lambda name: halves[name])
    if halves[half] > dtypes.get(_FLOAT32, 0):
        return half
    return "fp32"
