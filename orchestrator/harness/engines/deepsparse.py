"""DeepSparse engine (Neural Magic's CPU runtime, the last release with wheels: 1.8.0).

DeepSparse compiles a model for fixed input shapes, so this engine compiles one engine per sequence
bucket (64/128/192/256/384 by default, option `buckets`) at one batch size (the run's batch size), all
up front so that no compilation lands inside a timed run. Any batch the SUT hands over is answered: a
shorter sequence is padded to its bucket, a short batch (a bucket holding fewer samples than the batch
size, a single leftover sample) is padded with copies of its first row, and the padded rows and columns
are dropped from the outputs; a larger batch runs in chunks. (The original DeepSparse harness left such
leftovers unanswered.)

Each bucket is compiled from a private fixed-shape copy of the model in a temporary directory:
deepsparse's own `input_shapes` argument rewrites the user's model file in place (seen with 1.8.0).
deepsparse 1.8's compiler aborts the whole process on onnxruntime's dynamically quantized MatMuls
(DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul), as in the embedded int8 demo model, so the copy
holds them in their equivalent DequantizeLinear -> MatMul form (same int8 weights, same activation
quantization); any other integer op is refused with a ModelError. Static (QDQ) int8 models compile as
they are.

The model is a local ONNX file with the MLPerf interface, or a SparseZoo stub (`zoo:...`), which needs
internet access to download.

Engine options (strings): `buckets` ("64,128,192,256,384"), `num_streams` (DeepSparse's concurrent
requests; default: its scheduler's choice). `threads` maps to DeepSparse's `num_cores`.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.errors import ConfigError, ModelError, PreflightError, first_line
from orchestrator.harness.engines.engine import Engine
from orchestrator.harness.engines.options import EngineOptions, option, parse_engine_options
from orchestrator.mlperf import SEQ_LEN

log = logging.getLogger(__name__)

PROVIDER = "DeepSparseEngine"
DEFAULT_BUCKETS = (64, 128, 192, 256, 384)
ZOO_PREFIX = "zoo:"
INPUTS = ("input_ids", "input_mask", "segment_ids")
OUTPUTS = ("output_start_logits", "output_end_logits")
DYNAMIC_QUANT_OPS = frozenset({"DynamicQuantizeLinear", "MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul"})
_PROTO_LIMIT = 2**31 - 2**20  # protobuf's 2 GB limit, with room for the graph

# A compiled model: the inputs in the model's order, int64 [B, S]; the outputs in the model's order.
Compiled = Callable[[list[np.ndarray]], list[np.ndarray]]


@dataclass(frozen=True)
class DeepSparseOptions(EngineOptions):
    """The engine options (see the module docstring)."""

    buckets: tuple[int, ...] = DEFAULT_BUCKETS  # sequence lengths compiled, the last one SEQ_LEN
    num_streams: int | None = option(None, minimum=1)  # None: DeepSparse's scheduler chooses

    def __post_init__(self) -> None:
        if not self.buckets or min(self.buckets) < 1 or max(self.buckets) != SEQ_LEN:
            text = ",".join(str(b) for b in self.buckets)
            raise ConfigError(
                f"deepsparse engine option buckets={text!r} is not a list of positive lengths ending with "
                f"{SEQ_LEN}; pass e.g. 128,256,{SEQ_LEN}"
            )


def pad_rows(arrays: Sequence[np.ndarray], rows: int, length: int) -> list[np.ndarray]:
    """Each [b, s] array as int64 [rows, length]: extra columns 0 (mask 0), extra rows copies of row 0."""
    out = []
    for a in arrays:
        b, s = a.shape
        if b == rows and s == length:
            out.append(np.ascontiguousarray(a, dtype=np.int64))
            continue
        padded = np.zeros((rows, length), dtype=np.int64)
        padded[:b, :s] = a
        padded[b:, :s] = a[0]  # a real row: a padded row is never unusual input
        out.append(padded)
    return out


def load_model(onnx_path: str) -> Any:
    """The ONNX model (onnx.ModelProto), checked for what this engine needs; a ModelError otherwise."""
    import onnx

    name = Path(onnx_path).name
    try:
        model = onnx.load(onnx_path)  # external data too: the fixed-shape copies need the weights
    except Exception as exc:
        raise ModelError(
            f"{onnx_path} cannot be read as an ONNX model ({type(exc).__name__}); check the file."
        ) from exc
    rewritten = dequantize_dynamic_matmuls(model)
    if rewritten:
        # Correct but not fast: deepsparse runs these in float (and DynamicQuantizeLinear in its fallback).
        log.info(
            "deepsparse: %s: %d dynamically quantized MatMuls compiled in their DequantizeLinear form; for "
            "speed, use the fp32 model or a statically quantized (QDQ) int8 one",
            name,
            rewritten,
        )
    dynamic = sorted({n.op_type for n in model.graph.node} & (DYNAMIC_QUANT_OPS - {"DynamicQuantizeLinear"}))
    if dynamic:
        raise ModelError(
            f"{name} is dynamically quantized ({', '.join(dynamic)}, as onnxruntime's quantize_dynamic makes), "
            "which DeepSparse 1.8 cannot compile; run the fp32 model or a statically quantized (QDQ) int8 export "
            "with deepsparse, or this model with --backend onnxruntime."
        )
    inputs = _graph_inputs(model)
    if sorted(i.name for i in inputs) != sorted(INPUTS) or any(len(i.type.tensor_type.shape.dim) != 2 for i in inputs):
        raise ModelError(
            f"{name} has inputs {[i.name for i in inputs]}, not the MLPerf BERT interface {list(INPUTS)} of "
            "rank 2 [batch, seq]; export it with those inputs."
        )
    outputs = sorted(o.name for o in model.graph.output)
    if outputs != sorted(OUTPUTS):
        raise ModelError(
            f"{name} has outputs {outputs}, not the MLPerf BERT interface {list(OUTPUTS)}; export it with those outputs."
        )
    return model


def dequantize_dynamic_matmuls(model: Any) -> int:
    """Rewrite onnxruntime's dynamic int8 MatMuls into the equivalent DequantizeLinear form, in place.

    quantize_dynamic writes  q, s, z = DynamicQuantizeLinear(x); y = Cast(MatMulInteger(q, Wq, z, Wz)) * (s * Ws),
    which deepsparse 1.8's compiler aborts the process on. The same computation is
    y = MatMul(DequantizeLinear(q, s, z), DequantizeLinear(Wq, Ws, Wz)): the same int8 weights and the same
    per-batch activation quantization, only the accumulation happens in float. Returns how many MatMuls
    were rewritten; a MatMulInteger in any other pattern is left alone (load_model then refuses it).
    """
    from onnx import helper

    nodes = list(model.graph.node)
    producer = {out: n for n in nodes for out in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in nodes:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    initializers = {t.name: t for t in model.graph.initializer}
    replace: dict[int, list[Any]] = {}  # id(final Mul) -> its replacement nodes
    drop: set[int] = set()
    for n in nodes:
        if n.op_type != "MatMulInteger" or len(n.input) != 4:
            continue
        a_q, b_q, a_zp, b_zp = n.input
        dql = producer.get(a_q)
        users = consumers.get(n.output[0], [])
        cast = users[0] if len(users) == 1 and users[0].op_type == "Cast" else None
        users = consumers.get(cast.output[0], []) if cast is not None else []
        mul = users[0] if len(users) == 1 and users[0].op_type == "Mul" else None
        if dql is None or dql.op_type != "DynamicQuantizeLinear" or mul is None or b_q not in initializers:
            continue
        a_scale = dql.output[1]
        scales = producer.get(next((i for i in mul.input if i != cast.output[0]), ""))  # type: ignore[union-attr]
        if scales is None or scales.op_type != "Mul" or a_scale not in scales.input:
            continue
        b_scale = next(i for i in scales.input if i != a_scale)
        if b_scale not in initializers or b_zp not in initializers:
            continue
        per_column = len(initializers[b_scale].dims) == 1
        stem = n.output[0]
        replace[id(mul)] = [
            helper.make_node("DequantizeLinear", [a_q, a_scale, a_zp], [stem + "/a_dq"], name=stem + "/a_dq"),
            helper.make_node(
                "DequantizeLinear",
                [b_q, b_scale, b_zp],
                [stem + "/b_dq"],
                name=stem + "/b_dq",
                axis=1 if per_column else 0,
            ),  # a scalar scale ignores axis
            helper.make_node("MatMul", [stem + "/a_dq", stem + "/b_dq"], list(mul.output), name=stem + "/matmul"),
        ]
        drop.update({id(n), id(cast)})
        if len(consumers.get(scales.output[0], [])) == 1:
            drop.add(id(scales))
    if not replace:
        return 0
    rebuilt: list[Any] = []
    for n in nodes:  # the replacements take the final Mul's place: every input is computed before it
        if id(n) in replace:
            rebuilt.extend(replace[id(n)])
        elif id(n) not in drop:
            rebuilt.append(n)
    del model.graph.node[:]
    model.graph.node.extend(rebuilt)
    return len(replace)


def _graph_inputs(model: Any) -> list[Any]:
    initializers = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def save_fixed_shape(model: Any, batch: int, length: int, out_dir: Path) -> Path:
    """Save a copy of `model` whose inputs are fixed to [batch, length] (the model object is changed too)."""
    import onnx

    for node in _graph_inputs(model):
        for dim, value in zip(node.type.tensor_type.shape.dim, (batch, length), strict=True):
            dim.Clear()
            dim.dim_value = value
    out = out_dir / f"model-b{batch}-s{length}.onnx"
    if model.ByteSize() > _PROTO_LIMIT:
        onnx.save(model, str(out), save_as_external_data=True, location=out.name + ".data")
    else:
        onnx.save(model, str(out))
    return out


class DeepSparseEngine(Engine):
    name = "deepsparse"
    options_class = DeepSparseOptions
    packages = ("deepsparse",)

    def __init__(
        self,
        model_path: str,
        *,
        device: str,
        batch_size: int,
        threads: int | None,
        execution_provider: str,
        options: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            model_path,
            device=device,
            batch_size=batch_size,
            threads=threads,
            execution_provider=execution_provider,
            options=options,
        )
        if execution_provider != PROVIDER:
            raise PreflightError(
                f"The deepsparse engine runs on {PROVIDER}, not {execution_provider}; fix the backend registry entry."
            )
        self.opts = parse_engine_options(DeepSparseOptions, self.options, self.name)
        self._buckets = sorted(set(self.opts.buckets))
        self._num_streams = self.opts.num_streams
        self._deepsparse: Any = None
        self._onnx_path = self._resolve_model(model_path)
        self._input_order = list(range(len(INPUTS)))
        self._start_at, self._end_at = 0, 1
        self._compiled = self._compile_all()
        log.info(
            "deepsparse %s: %s compiled for batch %d at lengths %s (cores=%s)",
            self.versions().get("deepsparse", "?"),
            Path(self._onnx_path).name,
            self.batch_size,
            self._buckets,
            threads or "all",
        )

    # ---- what touches deepsparse (a unit test overrides _compile_one) -------------------------------------
    def _import(self) -> Any:
        if self._deepsparse is not None:
            return self._deepsparse
        # DeepSparse sends usage analytics on import unless told not to; a benchmark sends nothing.
        os.environ.setdefault("NM_DISABLE_ANALYTICS", "1")
        try:
            import deepsparse
        except ImportError as exc:
            raise PreflightError(
                f"deepsparse cannot be imported ({exc}); run with the local runner (it builds the deepsparse "
                "environment) or the deepsparse-cpu image."
            ) from exc
        self._deepsparse = deepsparse
        return deepsparse

    def _resolve_model(self, model_path: str) -> str:
        if model_path.startswith(ZOO_PREFIX):
            return self._download_stub(model_path)
        path = Path(model_path)
        if not path.is_file():
            raise ModelError(f"The model file {path} does not exist; fetch or import the model first.")
        return str(path)

    def _download_stub(self, stub: str) -> str:
        self._import()
        from deepsparse.utils.onnx import model_to_path

        try:
            return str(model_to_path(stub))
        except OSError as exc:  # requests' ConnectionError is an OSError
            raise ModelError(
                f"The SparseZoo stub {stub} cannot be downloaded ({type(exc).__name__}: SparseZoo is unreachable); "
                "download the model where there is internet access and pass the local ONNX file instead."
            ) from exc
        except Exception as exc:
            raise ModelError(
                f"The SparseZoo stub {stub} cannot be resolved ({type(exc).__name__}: {exc}); check it."
            ) from exc

    def _compile_all(self) -> dict[int, Compiled]:
        model = load_model(self._onnx_path)
        compiled: dict[int, Compiled] = {}
        with tempfile.TemporaryDirectory(prefix="mlperf-bert-deepsparse-") as tmp:
            for length in self._buckets:
                fixed = save_fixed_shape(model, self.batch_size, length, Path(tmp))
                compiled[length] = self._compile_one(fixed, length)
                for path in Path(tmp).iterdir():  # compiled: the copy is no longer needed
                    path.unlink()
        return compiled

    def _compile_one(self, fixed: Path, length: int) -> Compiled:
        deepsparse = self._import()
        try:
            # No input_shapes: deepsparse would apply them by rewriting the model file in place.
            engine = deepsparse.compile_model(
                str(fixed), batch_size=self.batch_size, num_cores=self.threads or None, num_streams=self._num_streams
            )
        except Exception as exc:
            first = first_line(exc)
            raise ModelError(
                f"DeepSparse cannot compile {self._onnx_path} for batch {self.batch_size} x {length} ({first}); "
                "check that it is an ONNX model with the MLPerf BERT interface."
            ) from exc
        self._remember_order(list(engine.input_names), list(engine.output_names))
        return engine  # type: ignore[no-any-return]

    def _remember_order(self, inputs: list[str], outputs: list[str]) -> None:
        """The compiled engine takes and gives lists in the model's order, whatever it is."""
        self._input_order = [INPUTS.index(n) for n in inputs]
        self._start_at, self._end_at = outputs.index(OUTPUTS[0]), outputs.index(OUTPUTS[1])

    # ---- the Engine contract ---------------------------------------------------------------------------
    @property
    def execution_provider(self) -> str:
        return PROVIDER

    def versions(self) -> dict[str, str]:
        return {"deepsparse": str(self._deepsparse.__version__)} if self._deepsparse is not None else {}

    def seq_buckets(self) -> list[int] | None:
        return list(self._buckets)

    def max_batch(self) -> int | None:
        return self.batch_size

    def infer(
        self, input_ids: np.ndarray, input_mask: np.ndarray, segment_ids: np.ndarray, *, instance: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        rows, length = input_ids.shape
        bucket = next((b for b in self._buckets if b >= length), None)
        if bucket is None:
            raise ConfigError(f"A batch of length {length} is longer than the largest bucket {self._buckets[-1]}.")
        compiled = self._compiled[bucket]
        arrays = (input_ids, input_mask, segment_ids)
        start = np.empty((rows, length), dtype=np.float32)
        end = np.empty((rows, length), dtype=np.float32)
        for first in range(0, rows, self.batch_size):
            last = min(first + self.batch_size, rows)
            chunk = [arrays[i][first:last] for i in self._input_order]
            outputs = compiled(pad_rows(chunk, self.batch_size, bucket))
            start[first:last] = outputs[self._start_at][: last - first, :length]
            end[first:last] = outputs[self._end_at][: last - first, :length]
        return start, end

    def close(self) -> None:
        self._compiled.clear()
