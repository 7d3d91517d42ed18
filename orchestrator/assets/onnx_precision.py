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

# Operators that only a quantized (int8/uint8) model has: onnxruntime's dynamic and static (QDQ, QOperator)
# quantization, and its contrib ops for quantized transformers.
QUANTIZED_OPS = frozenset(
    {
        "DynamicQuantizeLinear",
        "QuantizeLinear",
        "DequantizeLinear",
        "MatMulInteger",
        "ConvInteger",
        "QLinearMatMul",
        "QLinearConv",
        "DynamicQuantizeMatMul",
        "MatMulIntegerToFloat",
        "QGemm",
        "QAttention",
        "QEmbedLayerNormalization",
        "DynamicQuantizeLSTM",
        "QOrderedMatMul",
        "QOrderedAttention",
    }
)
_FLOAT32, _FLOAT16, _BFLOAT16 = 1, 10, 16  # onnx.TensorProto.DataType

# Wire types (protobuf encoding): varint, 64-bit, length-delimited, 32-bit.
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_MODEL_GRAPH, _GRAPH_NODE, _GRAPH_INITIALIZER, _NODE_OP_TYPE, _TENSOR_DATA_TYPE = 7, 1, 5, 4, 2


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
    """The operator types of the main graph's nodes, and how many initializers each element type has."""
    ops: set[str] = set()
    dtypes: dict[int, int] = {}
    with open(path, "rb") as f:
        if Path(path).stat().st_size == 0:
            raise UnreadableOnnx("empty file")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            buf = memoryview(mapped)
            try:
                for number, wire, start, stop in _fields(buf, 0, len(buf)):
                    if number != _MODEL_GRAPH or wire != _LEN:
                        continue
                    for g_number, g_wire, g_start, g_stop in _fields(buf, start, stop):
                        if g_wire != _LEN:
                            continue
                        if g_number == _GRAPH_NODE:
                            for n_number, n_wire, n_start, n_stop in _fields(buf, g_start, g_stop):
                                if n_number == _NODE_OP_TYPE and n_wire == _LEN:
                                    ops.add(bytes(buf[n_start:n_stop]).decode("utf-8", "replace"))
                        elif g_number == _GRAPH_INITIALIZER:
                            for t_number, t_wire, t_value, _ in _fields(buf, g_start, g_stop):
                                if t_number == _TENSOR_DATA_TYPE and t_wire == _VARINT:
                                    dtypes[t_value] = dtypes.get(t_value, 0) + 1
                                    break
            finally:
                buf.release()
    return ops, dtypes


def onnx_precision(path: Path) -> str | None:
    """ "int8" for a quantized graph, "fp16"/"bf16" where most float weights are half precision, "fp32" for a
    float32 graph; None where the file cannot be read as ONNX (the engine reports that itself)."""
    try:
        ops, dtypes = scan(path)
    except (OSError, ValueError):
        return None
    if not ops and not dtypes:
        return None
    if ops & QUANTIZED_OPS:
        return "int8"
    halves = {"fp16": dtypes.get(_FLOAT16, 0), "bf16": dtypes.get(_BFLOAT16, 0)}
    half = max(halves, key=lambda name: halves[name])
    if halves[half] > dtypes.get(_FLOAT32, 0):
        return half
    return "fp32"
