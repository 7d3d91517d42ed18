"""A Hugging Face BertForQuestionAnswering checkpoint derived from a dynamically quantized BERT ONNX model.

    mlperf-bert assets derive-checkpoint            # the embedded int8 demo -> <cache>/derived/demo-minilm-l6-squad-hf

This gives the pytorch backend a model without downloads or ../shared: every weight of the int8 export
is dequantized back to float32 ((q - zero_point) x scale: per tensor for the embedding tables, per output
column for the MatMul weights, which PyTorch's Linear holds transposed). Biases and LayerNorms were never
quantized. The checkpoint is therefore not the fp32 original: its answers are those of the int8 weights in
fp32 arithmetic (its F1 on the demo's first questions is within a point of the fp32 model's; see
tests/test_assets_derive_checkpoint.py). Only onnx and numpy are needed; the safetensors file is written
here directly (its format: an 8-byte header length, a JSON header, the raw little-endian tensors).
"""

from __future__ import annotations

import json
import logging
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.errors import ModelError
from orchestrator.harness.engines.onnxruntime_fusions import detect_attention_shape

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
_MATMUL_OPS = ("MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMul")
# /m/bert/encoder/layer.0/attention/self/query/MatMul... -> bert.encoder.layer.0.attention.self.query
_MODULE = re.compile(r"^/(?:m/)?(?P<path>(?:bert|qa_outputs)[^ ]*?)/MatMul")


def _array(tensor: Any) -> np.ndarray:
    from onnx import numpy_helper

    return numpy_helper.to_array(tensor)


def _dequantized(inits: dict[str, Any], stem: str) -> np.ndarray:
    """(q - zero_point) x scale of the initializer `<stem>_quantized`; the float tensor `stem` if not quantized."""
    if stem in inits:
        return _array(inits[stem]).astype(np.float32)
    q = _array(inits[stem + "_quantized"]).astype(np.float32)
    scale = _array(inits[stem + "_scale"]).astype(np.float32)
    zero = _array(inits[stem + "_zero_point"]).astype(np.float32)
    return ((q - zero) * scale).astype(np.float32)  # scalars, or per column of a [in, out] weight


def derive_state_dict(model: Any) -> dict[str, np.ndarray]:
    """The BertForQuestionAnswering weights (transformers' names) of an ONNX export, dequantized."""
    inits = {t.name: t for t in model.graph.initializer}
    state: dict[str, np.ndarray] = {}
    for name in inits:
        plain = name.removeprefix("m.")
        if name.endswith(("_scale", "_zero_point")):
            continue
        if name.endswith("_quantized") and ".embeddings." in name:
            state[plain.removesuffix("_quantized")] = _dequantized(inits, name.removesuffix("_quantized"))
        elif (plain.startswith(("bert.", "qa_outputs.")) and not name.endswith("_quantized")) and inits[
            name
        ].data_type == 1:
            state[plain] = _array(inits[name]).astype(np.float32)
    for node in model.graph.node:
        if node.op_type not in _MATMUL_OPS or len(node.input) < 2:
            continue
        weight = node.input[1]
        stem = weight.removesuffix("_quantized")
        if stem + "_quantized" not in inits and (weight not in inits or weight.startswith("m.")):
            continue
        found = _MODULE.match(node.name)
        if found is None:
            continue
        module = found.group("path").replace("/", ".")
        state[module + ".weight"] = np.ascontiguousarray(_dequantized(inits, stem).T)  # Linear: [out, in]
    if "qa_outputs.weight" not in state or "bert.embeddings.word_embeddings.weight" not in state:
        raise ModelError(
            "the ONNX model does not hold BertForQuestionAnswering's weights under transformers' names "
            "(a torch.onnx export of that model); derive a checkpoint from such an export."
        )
    return state


def bert_config(state: dict[str, np.ndarray], model: Any) -> dict[str, Any]:
    """A transformers BertConfig for these weights (sizes read from them and from the graph)."""
    vocab, hidden = state["bert.embeddings.word_embeddings.weight"].shape
    layers = 1 + max(int(k.split(".")[3]) for k in state if k.startswith("bert.encoder.layer."))
    heads, _ = detect_attention_shape(model)
    if not heads:
        raise ModelError("the number of attention heads cannot be read from the ONNX graph; export it again.")
    return {
        "architectures": ["BertForQuestionAnswering"],
        "model_type": "bert",
        "vocab_size": int(vocab),
        "hidden_size": int(hidden),
        "num_hidden_layers": layers,
        "num_attention_heads": int(heads),
        "intermediate_size": int(state["bert.encoder.layer.0.intermediate.dense.weight"].shape[0]),
        "max_position_embeddings": int(state["bert.embeddings.position_embeddings.weight"].shape[0]),
        "type_vocab_size": int(state["bert.embeddings.token_type_embeddings.weight"].shape[0]),
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
        "dtype": "float32",
    }


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, array in tensors.items():
        size = array.nbytes
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the format aligns the data to 8 bytes
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as out:
        out.write(struct.pack("<Q", len(raw)))
        out.write(raw)
        for array in tensors.values():
            out.write(np.ascontiguousarray(array, dtype="<f4").tobytes())
    tmp.replace(path)


def derive_checkpoint(onnx_path: Path, destination: Path) -> Path:
    """Write `destination`/config.json and model.safetensors from the ONNX model; the directory."""
    import onnx

    if not onnx_path.is_file():
        raise ModelError(f"the ONNX model {onnx_path} does not exist; pass an existing file.")
    model = onnx.load(str(onnx_path))
    state = derive_state_dict(model)
    config = bert_config(state, model)
    destination.mkdir(parents=True, exist_ok=True)
    write_safetensors(destination / WEIGHTS_FILE, state)
    (destination / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    log.info("derived %s (%d tensors) from %s", destination, len(state), onnx_path.name)
    return destination
