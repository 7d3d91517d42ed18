"""A BERT-large-shaped ONNX model with random weights, for speed measurements without the real model.

Same interface as MLPerf's model (int64 input_ids / input_mask / segment_ids [batch, seq] -> float32
output_start_logits / output_end_logits [batch, seq]), with batch and sequence axes dynamic. The graph
uses the plain ops a PyTorch export of BertForQuestionAnswering produces (MatMul, Add, Reshape,
Transpose, Softmax, LayerNormalization (opset 17), Erf-GELU, the additive -10000 attention mask), so
ONNX Runtime's graph optimisations and its transformer fusions see the usual patterns. It costs the
same compute as BERT-large; its answers are noise, so it is never an accuracy result.
Built with `onnx` and numpy only (no inference engine). Deterministic: same shape + seed, same bytes.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator import __version__
from orchestrator.errors import AssetError, ConfigError

OPSET = 17


@dataclass(frozen=True)
class BertShape:
    layers: int = 24
    hidden: int = 1024
    heads: int = 16
    ffn: int = 4096
    vocab: int = 30522
    max_positions: int = 512
    type_vocab: int = 2

    def __post_init__(self) -> None:
        if min(self.layers, self.hidden, self.heads, self.ffn, self.vocab, self.max_positions) < 1:
            raise ValueError("every BERT dimension must be at least 1")
        if self.hidden % self.heads:
            raise ValueError(f"hidden size {self.hidden} is not divisible by {self.heads} heads")

    @property
    def head_size(self) -> int:
        return self.hidden // self.heads

    def parameters(self) -> int:
        h, f = self.hidden, self.ffn
        embeddings = (self.vocab + self.max_positions + self.type_vocab) * h + 2 * h
        layer = 4 * (h * h + h) + (h * f + f) + (f * h + h) + 2 * 2 * h
        return embeddings + self.layers * layer + 2 * h + 2

    def file_bytes(self) -> int:
        """About the size of the .onnx file (fp32 weights plus a small graph)."""
        return 4 * self.parameters() + 64 * 1024 * (self.layers + 1)


BERT_LARGE = BertShape()


class _GraphBuilder:
    def __init__(self, seed: int) -> None:
        import onnx

        self.onnx = onnx
        self.rng = np.random.default_rng(seed)
        self.nodes: list[Any] = []  # onnx NodeProto
        self.initializers: list[Any] = []  # onnx TensorProto
        self._n = 0

    def _name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def weight(self, name: str, shape: tuple[int, ...], kind: str = "normal") -> str:
        if kind == "normal":  # BERT's initializer: N(0, 0.02)
            arr = self.rng.standard_normal(shape, dtype=np.float32)
            arr *= np.float32(0.02)
        elif kind == "ones":
            arr = np.ones(shape, dtype=np.float32)
        else:
            arr = np.zeros(shape, dtype=np.float32)
        self.initializers.append(self.onnx.numpy_helper.from_array(arr, name))
        return name

    def const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(self.onnx.numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: list[str], hint: str, **attrs: Any) -> str:
        return self.nodes_out(op, inputs, hint, 1, **attrs)[0]

    def nodes_out(self, op: str, inputs: list[str], hint: str, n_out: int, **attrs: Any) -> list[str]:
        outs = [self._name(hint) for _ in range(n_out)]
        self.nodes.append(self.onnx.helper.make_node(op, inputs, outs, name=self._name(op), **attrs))
        return outs

    def linear(self, x: str, n_in: int, n_out: int, prefix: str) -> str:
        w = self.weight(f"{prefix}.weight", (n_in, n_out))  # stored [in, out] as a PyTorch export's MatMul
        b = self.weight(f"{prefix}.bias", (n_out,), "zeros")
        return self.node("Add", [self.node("MatMul", [x, w], prefix), b], prefix)

    def layer_norm(self, x: str, h: int, prefix: str) -> str:
        scale = self.weight(f"{prefix}.weight", (h,), "ones")
        bias = self.weight(f"{prefix}.bias", (h,), "zeros")
        return self.node("LayerNormalization", [x, scale, bias], prefix, axis=-1, epsilon=1e-12)


def build_synthetic_bert(shape: BertShape = BERT_LARGE, seed: int = 0):  # type: ignore[no-untyped-def]
    """The ModelProto (weights inline). Peak memory is about the model size."""
    import onnx
    from onnx import TensorProto, helper

    g = _GraphBuilder(seed)
    h, heads, hs = shape.hidden, shape.heads, shape.head_size

    def i64(*v: int) -> np.ndarray:
        return np.array(v, dtype=np.int64)

    # Embeddings: word + position + token type, then LayerNorm.
    word = g.weight("bert.embeddings.word_embeddings.weight", (shape.vocab, h))
    pos = g.weight("bert.embeddings.position_embeddings.weight", (shape.max_positions, h))
    typ = g.weight("bert.embeddings.token_type_embeddings.weight", (shape.type_vocab, h))
    seq_len = g.node(
        "Gather",
        [g.node("Shape", ["input_ids"], "shape"), g.const("one_idx", np.array(1, np.int64))],
        "seq_len",
        axis=0,
    )
    position_ids = g.node(
        "Unsqueeze",
        [
            g.node(
                "Range",
                [g.const("zero", np.array(0, np.int64)), seq_len, g.const("step", np.array(1, np.int64))],
                "range",
            ),
            g.const("axes0", i64(0)),
        ],
        "position_ids",
    )
    x = g.node(
        "Add",
        [g.node("Gather", [word, "input_ids"], "word_emb"), g.node("Gather", [pos, position_ids], "pos_emb")],
        "emb",
    )
    x = g.node("Add", [x, g.node("Gather", [typ, "segment_ids"], "type_emb")], "emb")
    x = g.layer_norm(x, h, "bert.embeddings.LayerNorm")

    # The additive attention mask, as BERT's PyTorch export writes it: (1 - mask) * -10000, [B, 1, 1, S].
    mask = g.node("Unsqueeze", ["input_mask", g.const("axes1", i64(1))], "mask3d")  # mask[:, None, None, :]
    mask = g.node("Unsqueeze", [mask, g.const("axes2", i64(2))], "mask4d")
    mask = g.node("Cast", [mask], "mask_f", to=TensorProto.FLOAT)
    mask = g.node("Sub", [g.const("one_f", np.array(1.0, np.float32)), mask], "mask_inv")
    mask = g.node("Mul", [mask, g.const("neg_big", np.array(-10000.0, np.float32))], "mask_add")

    split_heads = g.const("shape_heads", i64(0, 0, heads, hs))
    merge_heads = g.const("shape_hidden", i64(0, 0, h))
    scale = g.const("sqrt_head", np.array(math.sqrt(hs), np.float32))
    sqrt2 = g.const("sqrt2", np.array(math.sqrt(2.0), np.float32))
    one = g.const("one_gelu", np.array(1.0, np.float32))
    half = g.const("half", np.array(0.5, np.float32))

    for n in range(shape.layers):
        p = f"bert.encoder.layer.{n}"
        q = g.node(
            "Transpose",
            [g.node("Reshape", [g.linear(x, h, h, f"{p}.attention.self.query"), split_heads], "q")],
            "qT",
            perm=[0, 2, 1, 3],
        )
        k = g.node(
            "Transpose",
            [g.node("Reshape", [g.linear(x, h, h, f"{p}.attention.self.key"), split_heads], "k")],
            "kT",
            perm=[0, 2, 3, 1],
        )
        v = g.node(
            "Transpose",
            [g.node("Reshape", [g.linear(x, h, h, f"{p}.attention.self.value"), split_heads], "v")],
            "vT",
            perm=[0, 2, 1, 3],
        )
        scores = g.node("Add", [g.node("Div", [g.node("MatMul", [q, k], "qk"), scale], "qk_scaled"), mask], "qk_masked")
        probs = g.node("Softmax", [scores], "probs", axis=-1)
        ctx = g.node("Transpose", [g.node("MatMul", [probs, v], "ctx")], "ctxT", perm=[0, 2, 1, 3])
        ctx = g.node("Reshape", [ctx, merge_heads], "ctx_merged")
        attn = g.linear(ctx, h, h, f"{p}.attention.output.dense")
        x = g.layer_norm(g.node("Add", [attn, x], "res1"), h, f"{p}.attention.output.LayerNorm")
        inter = g.linear(x, h, shape.ffn, f"{p}.intermediate.dense")
        erf = g.node("Erf", [g.node("Div", [inter, sqrt2], "gelu_div")], "gelu_erf")
        gelu = g.node("Mul", [g.node("Mul", [inter, g.node("Add", [erf, one], "gelu_add")], "gelu_mul"), half], "gelu")
        out = g.linear(gelu, shape.ffn, h, f"{p}.output.dense")
        x = g.layer_norm(g.node("Add", [out, x], "res2"), h, f"{p}.output.LayerNorm")

    logits = g.linear(x, h, 2, "qa_outputs")
    start, end = g.nodes_out("Split", [logits, g.const("split_11", i64(1, 1))], "logits", 2, axis=-1)
    last = g.const("axes_last", i64(-1))
    g.nodes.append(helper.make_node("Squeeze", [start, last], ["output_start_logits"], name="squeeze_start"))
    g.nodes.append(helper.make_node("Squeeze", [end, last], ["output_end_logits"], name="squeeze_end"))

    dims = ["batch_size", "seq_len"]
    inputs = [
        helper.make_tensor_value_info(n, TensorProto.INT64, dims) for n in ("input_ids", "input_mask", "segment_ids")
    ]
    outputs = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, dims) for n in ("output_start_logits", "output_end_logits")
    ]
    graph = helper.make_graph(g.nodes, "bert_synthetic", inputs, outputs, initializer=g.initializers)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="mlperf-bert", producer_version=__version__
    )
    model.ir_version = 8  # readable by every onnxruntime >= 1.10
    model.doc_string = (
        f"Synthetic BERT (RANDOM weights, seed {seed}): {asdict(shape)}. For speed measurements "
        "only; its accuracy is meaningless."
    )
    onnx.helper.set_model_props(model, {"mlperf_bert.synthetic": "true", "mlperf_bert.seed": str(seed)})
    return model


def write_synthetic_bert(path: Path, shape: BertShape = BERT_LARGE, seed: int = 0) -> Path:
    """Build the model and write it atomically (to <path>.part, fsync, rename); on any failure no part stays."""
    if seed < 0:
        raise ValueError(f"seed {seed} is negative; use 0 or more")
    path = Path(path)
    model = build_synthetic_bert(shape, seed)
    tmp = path.with_name(path.name + ".part")
    data = model.SerializeToString()
    del model
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        del data
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_synthetic_file(output: Path, shape: BertShape = BERT_LARGE, seed: int = 0) -> Path:
    """`assets make-synthetic --output FILE`: a path that can be a file, the space for it, its folders made;
    on any failure nothing stays behind (no part file, no folder this call created)."""
    from orchestrator.assets.download import ensure_space
    from orchestrator.assets.store import make_dirs, nearest_dir, remove_dirs

    output = Path(output).expanduser()
    if output.is_dir():
        raise ConfigError(
            f"--output {output} is a directory; pass the path of the .onnx file to write, e.g. {output / 'model.onnx'}"
        )
    what, remedy = "output directory", "pass an --output path in a writable directory"
    ensure_space(
        nearest_dir(output.parent, what=what, remedy=remedy, error=ConfigError),
        shape.file_bytes(),
        output.name,
        remedy="free some space or pass an --output on a larger disk",
    )
    created = make_dirs(output.parent, what=what, remedy=remedy, error=ConfigError)
    try:
        return write_synthetic_bert(output, shape, seed)
    except OSError as e:
        remove_dirs(created)
        raise AssetError(f"cannot write {output} ({e.strerror}); free disk space or pass another --output") from None
    except BaseException:
        remove_dirs(created)
        raise
