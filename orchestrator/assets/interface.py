"""Check that an ONNX file has the MLPerf BERT interface, without an inference engine.

Uses the `onnx` package only (host code never imports onnxruntime), and never loads external weight
data: only the graph's declared inputs and outputs are read.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.assets.catalogue import MLPERF_INTERFACE, Interface
from orchestrator.mlperf import SEQ_LEN

# onnx.TensorProto.DataType numbers -> our names (only the ones a BERT interface can use).
_DTYPES = {1: "float32", 6: "int32", 7: "int64", 10: "float16", 11: "float64", 9: "bool", 2: "uint8", 3: "int8"}
_HF_NAMES = {
    "attention_mask": "input_mask",
    "token_type_ids": "segment_ids",
    "start_logits": "output_start_logits",
    "end_logits": "output_end_logits",
}


def _dims(value_info) -> list[int | str | None]:  # type: ignore[no-untyped-def]
    """Each axis: an int (fixed), a str (named dynamic axis) or None (unnamed dynamic axis)."""
    tensor = value_info.type.tensor_type
    if not tensor.HasField("shape"):
        return []
    out: list[int | str | None] = []
    for d in tensor.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            out.append(d.dim_param)
        else:
            out.append(None)
    return out


def _shape_text(dims: list[int | str | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def _check_tensor(role: str, name: str, vi, want_dtype: str, seq_len: int | None) -> list[str]:  # type: ignore[no-untyped-def]
    problems = []
    dtype = _DTYPES.get(vi.type.tensor_type.elem_type, f"type {vi.type.tensor_type.elem_type}")
    if dtype != want_dtype:
        problems.append(f"{role} {name!r} is {dtype}, expected {want_dtype}")
    dims = _dims(vi)
    if not vi.type.tensor_type.HasField("shape"):
        return problems  # no declared shape: nothing more to check statically
    if len(dims) != 2:
        problems.append(f"{role} {name!r} has rank {len(dims)} {_shape_text(dims)}, expected rank 2 [batch, sequence]")
        return problems
    seq = dims[1]
    if isinstance(seq, int):
        allowed = seq_len or SEQ_LEN
        if seq != allowed:
            problems.append(f"{role} {name!r} has a fixed sequence length of {seq}; it must be dynamic or {allowed}")
    return problems


def check_onnx_interface(path: Path, expected: Interface | None = None) -> list[str]:
    """Every way the model's inputs/outputs differ from the expected interface (empty list: it fits).

    Checks names, element types, rank 2 ([batch, sequence]) and the sequence axis (dynamic, or fixed
    at the expected length: 384 for MLPerf). Extra graph outputs are allowed; extra required inputs
    are not.
    """
    import onnx

    expected = expected or MLPERF_INTERFACE
    path = Path(path)
    if not path.is_file():
        return [f"{path} does not exist"]
    if path.stat().st_size == 0:
        return [f"{path.name} is empty (0 bytes), not an ONNX model"]
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - onnx raises DecodeError, ValueError, OSError, protobuf errors
        return [f"{path.name} is not a readable ONNX file ({e.__class__.__name__})"]
    graph = model.graph
    if not graph.input and not graph.output and not graph.node:
        return [f"{path.name} holds no graph (no inputs, outputs or nodes), so it is no ONNX model"]
    initializers = {i.name for i in graph.initializer}
    inputs = {vi.name: vi for vi in graph.input if vi.name not in initializers}  # IR < 4 lists weights as inputs
    outputs = {vi.name: vi for vi in graph.output}
    problems: list[str] = []
    for role, have, want in (("input", inputs, expected.inputs), ("output", outputs, expected.outputs)):
        missing = []
        for name, dtype in want.items():
            if name in have:
                problems += _check_tensor(role, name, have[name], dtype, expected.seq_len)
            else:
                renamed = [h for h, ours in _HF_NAMES.items() if ours == name and h in have]
                missing.append(f"{name!r}" + (f" (it has {renamed[0]!r}: rename it)" if renamed else ""))
        if missing:
            listed = f"missing {role}{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
            problems.append(f"{listed}; the model's {role}s are {sorted(have)}")
    for extra in sorted(set(inputs) - set(expected.inputs)):
        problems.append(f"unexpected input {extra!r}; the harness feeds only {sorted(expected.inputs)}")
    missing_data = sorted(
        {
            entry.value
            for init in graph.initializer
            if init.data_location == onnx.TensorProto.EXTERNAL
            for entry in init.external_data
            if entry.key == "location" and not (path.parent / entry.value).is_file()
        }
    )
    for location in missing_data:
        problems.append(f"external weight file {location!r} is missing next to {path.name}")
    return problems
