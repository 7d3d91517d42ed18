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

from orchestrator.errors import AssetError, ConfigError, ModelError
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
    parts = [stem + suffix for suffix in ("_quantized", "_scale", "_zero_point")]
    if not all(p in inits for p in parts):
        raise ModelError(
            f"the ONNX model's quantized weight {stem} lacks its scale or zero point; derive a checkpoint from a "
            "model quantized by onnxruntime's quantize_dynamic."
        )
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
    layer_ids = {k.split(".")[3] for k in state if k.startswith("bert.encoder.layer.") and k.count(".") > 4}
    needed = ("bert.embeddings.position_embeddings.weight", "bert.embeddings.token_type_embeddings.weight")
    words = state["bert.embeddings.word_embeddings.weight"]
    if (
        words.ndim != 2
        or "0" not in layer_ids
        or not all(i.isdigit() for i in layer_ids)
        or "bert.encoder.layer.0.intermediate.dense.weight" not in state
        or not all(n in state for n in needed)
    ):
        raise ModelError(
            "the ONNX model does not hold BertForQuestionAnswering's embeddings and encoder layers under "
            "transformers' names (a torch.onnx export of that model); derive a checkpoint from such an export."
        )
    vocab, hidden = words.shape
    layers = 1 + max(int(i) for i in layer_ids)
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


def expected_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Every tensor transformers' BertForQuestionAnswering loads, and its shape, for this config."""
    h, f = config["hidden_size"], config["intermediate_size"]
    shapes: dict[str, tuple[int, ...]] = {
        "bert.embeddings.word_embeddings.weight": (config["vocab_size"], h),
        "bert.embeddings.position_embeddings.weight": (config["max_position_embeddings"], h),
        "bert.embeddings.token_type_embeddings.weight": (config["type_vocab_size"], h),
        "bert.embeddings.LayerNorm.weight": (h,),
        "bert.embeddings.LayerNorm.bias": (h,),
        "qa_outputs.weight": (2, h),
        "qa_outputs.bias": (2,),
    }
    for n in range(config["num_hidden_layers"]):
        p = f"bert.encoder.layer.{n}"
        for module, out, inp in (
            ("attention.self.query", h, h),
            ("attention.self.key", h, h),
            ("attention.self.value", h, h),
            ("attention.output.dense", h, h),
            ("intermediate.dense", f, h),
            ("output.dense", h, f),
        ):
            shapes[f"{p}.{module}.weight"] = (out, inp)
            shapes[f"{p}.{module}.bias"] = (out,)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[f"{p}.{norm}.weight"] = (h,)
            shapes[f"{p}.{norm}.bias"] = (h,)
    return shapes


def check_shapes(state: dict[str, np.ndarray], config: dict[str, Any]) -> None:
    """Refuse weights transformers would not load as they are (a missing tensor it would fill with random
    values; a transposed one, e.g. from a graph that is not a torch.onnx export of the model)."""
    for name, shape in expected_shapes(config).items():
        if name not in state:
            raise ModelError(
                f"the ONNX model has no weight for {name}; derive a checkpoint from a torch.onnx export of "
                "BertForQuestionAnswering."
            )
        if tuple(state[name].shape) != shape:
            raise ModelError(
                f"the ONNX model's {name} has the shape {list(state[name].shape)}, not {list(shape)}; derive a "
                "checkpoint from a torch.onnx export of BertForQuestionAnswering."
            )


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """Write the tensors to `path` (the caller makes it visible: see derive_checkpoint)."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, array in tensors.items():
        size = array.nbytes
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the format aligns the data to 8 bytes
    with path.open("wb") as out:
        out.write(struct.pack("<Q", len(raw)))
        out.write(raw)
        for array in tensors.values():
            out.write(np.ascontiguousarray(array, dtype="<f4").tobytes())


def _load_onnx(onnx_path: Path) -> Any:
    import onnx
    from google.protobuf.message import Error as ProtobufError

    if onnx_path.is_dir():
        raise ModelError(f"the ONNX model {onnx_path} is a directory; pass the .onnx file itself.")
    if not onnx_path.is_file():
        raise ModelError(f"the ONNX model {onnx_path} does not exist; pass an existing file.")
    try:
        return onnx.load(str(onnx_path))
    except (ProtobufError, ValueError, OSError) as e:  # not protobuf at all; external weights missing
        raise ModelError(
            f"{onnx_path} is not a readable ONNX model ({e.__class__.__name__}); pass an ONNX export of "
            "BertForQuestionAnswering."
        ) from None


def derive_checkpoint(onnx_path: Path, destination: Path) -> Path:
    """Write `destination`/config.json and model.safetensors from the ONNX model; the directory.

    Everything is read and checked before anything is written; a failure while writing leaves no partial
    file, and no folder this call made."""
    from orchestrator.assets.store import make_dirs, nearest_dir, remove_dirs

    what, remedy = "checkpoint directory", "pass another --output"
    if destination.exists() and not destination.is_dir():
        raise ConfigError(f"{destination} is a file, not a checkpoint directory; pass another --output (a directory).")
    nearest_dir(destination, what=what, remedy=remedy, error=ConfigError)
    model = _load_onnx(onnx_path)
    state = derive_state_dict(model)
    config = bert_config(state, model)
    check_shapes(state, config)
    created = make_dirs(destination, what=what, remedy=remedy, error=ConfigError)
    weights, conf = destination / (WEIGHTS_FILE + ".tmp"), destination / (CONFIG_FILE + ".tmp")
    try:  # both files complete under temporary names first, so a failure never leaves a mismatched pair
        write_safetensors(weights, state)
        conf.write_text(json.dumps(config, indent=2) + "\n")
        weights.replace(destination / WEIGHTS_FILE)
        conf.replace(destination / CONFIG_FILE)
    except BaseException as e:
        weights.unlink(missing_ok=True)
        conf.unlink(missing_ok=True)
        remove_dirs(created)
        if isinstance(e, OSError):
            raise AssetError(
                f"cannot write the checkpoint {destination} ({e.strerror}); free disk space or pass another --output"
            ) from None
        raise
    log.info("derived %s (%d tensors) from %s", destination, len(state), onnx_path.name)
    return destination
