"""int8 quantization of an fp32 BERT with ONNX Runtime's tools: `python -m orchestrator.harness.engines.onnxruntime_int8`.

Dynamic quantization (the default): weights int8 per output channel (per_channel) or per tensor, activations quantized
at run time per tensor (no calibration set needed, so nothing of the dev set leaks into the model).
Recipes, from fastest to most accurate:
    all            every weight MatMul in int8
    ffn-out-fp32   the down-projections (weights [K, N] with K > N: each layer's FFN output, the QA head)
                   stay fp32: their inputs (after GELU) have the outliers that per-tensor activation
                   ranges handle worst
Static quantization (QDQ format), calibrated on train features (orchestrator/workflows/calibration.py, the
set openvino's NNCF calibrates on; `--calibration FEATURES.npz`): int8 weights per channel, uint8 activations
with one range per tensor fixed from the calibration features (the 99.999th percentile: PERCENTILE), the MatMul
outputs left float (so the session fuses each DequantizeLinear -> MatMul into MatMulIntegerToFloat; quantized
outputs give QLinearMatMul -> DequantizeLinear chains, slower in the profile):
    static-qdq             every weight MatMul in int8; the attention MatMuls (activation x activation) fp32
    static-qdq-attention   every MatMul in int8, the attention scores and context too
Measured on the demo model (2-core Zen 4, benchmarks/RESULTS.md, 2026-12-01), in one process batch by batch in
turn: static-qdq 0.87-0.95x dynamic `all`'s speed (the static QuantizeLinear costs what the dynamic one did and
the QDQ graph loses the bias Add fusion), but F1 99.99% of fp32 over 300 dev features where `all` holds 98.24%
(min/max ranges instead: 98.06%). static-qdq-attention: 0.91-0.99x, F1 97.79% (min/max). So the static win is
accuracy at about dynamic speed, and DeepSparse 1.8 compiles these models (not the dynamic ones).

By default the graph is quantized as exported (MatMulInteger, which onnxruntime's own session fusions
turn into its dynamic-quantization kernels); `fuse` first applies the transformer fusions (QAttention),
measured ~10% slower on a 2-core AVX-512/AMX CPU with the demo model.

Whether the result may be used is NOT decided here: orchestrator/workflows/int8.py (host side) runs real
accuracy runs of both models through the harness and records the verdict next to the int8 model.
This module imports onnxruntime, so only the harness side (or its subprocess) imports it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from orchestrator.errors import CHILD_ERROR_PREFIX, MlperfBertError, ModelError

log = logging.getLogger(__name__)

RECORD_SUFFIX = ".quantize.json"
DYNAMIC_RECIPES = ("all", "ffn-out-fp32")
# Static recipes (calibrated on train features, QDQ format): weight MatMuls only, or every MatMul (the
# attention scores and context too, activation x activation).
STATIC_RECIPES = ("static-qdq", "static-qdq-attention")
RECIPES = DYNAMIC_RECIPES + STATIC_RECIPES
CALIBRATION_BATCH = 16
# The ranges: the 99.999th percentile of each tensor's |values| (outliers after GELU and in the residual stream
# clipped), from a histogram over the calibration batches. That histogram collector keeps every batch's
# activations in memory (300 features padded to 384 took 22 GB here and were killed), so it reads the first
# PERCENTILE_ROWS calibration rows of at most PERCENTILE_WIDTH real tokens (4.5 GB, 66 s for the demo model): on the demo model F1 99.99%
# of fp32 over 300 dev features, where min/max ranges over all 300 rows gave 98.06% (and over these 64, 98.58%).
PERCENTILE = 99.999
PERCENTILE_ROWS = 64
PERCENTILE_WIDTH = 192


def down_projections(model: Any) -> list[str]:
    """Names of the MatMul nodes whose constant weight [K, N] has K > N: in BERT each layer's FFN output
    (4h -> h) and the QA head (h -> 2). Read from the graph, not from node names."""
    inits = {t.name: t for t in model.graph.initializer}
    names = []
    for node in model.graph.node:
        if node.op_type != "MatMul":
            continue
        weight = next((inits[i] for i in node.input if i in inits and len(inits[i].dims) == 2), None)
        if weight is not None and weight.dims[0] > weight.dims[1]:
            names.append(node.name)
    return names


def quantize_int8(
    source: Path,
    destination: Path,
    *,
    per_channel: bool = True,
    recipe: str = "all",
    fuse: bool = False,
    optimized_cache_dir: Path | None = None,
    calibration: Path | None = None,
) -> dict[str, Any]:
    """Write an int8 copy of the fp32 model `source` to `destination` (atomically); returns the record
    (also written to `<destination>.quantize.json`)."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from orchestrator.harness.engines.onnxruntime_fusions import (
        OptimizeOptions,
        file_sha256,
        optimize_cached,
        quantized_ops,
    )

    source, destination = Path(source), Path(destination)
    if not source.is_file():
        raise ModelError(f"The model file {source} does not exist; fetch or import the fp32 model first.")
    if recipe not in RECIPES:
        raise ModelError(f"unknown quantization recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    if recipe in STATIC_RECIPES and calibration is None:
        raise ModelError(f"the {recipe} recipe calibrates activation ranges: pass the calibration features (.npz)")
    already = quantized_ops(onnx.load(str(source), load_external_data=False))
    if already:
        raise ModelError(f"{source.name} is already quantized ({', '.join(already[:3])}); quantize its fp32 model.")
    started = time.perf_counter()
    graph = source
    fused: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="mlperf-bert-quantize-") as tmp:
        if fuse:
            cache = optimized_cache_dir or Path(tmp) / "optimized"
            optimized = optimize_cached(source, cache, OptimizeOptions(fusions="transformers"))
            graph, fused = optimized.path, optimized.fused
        keep = down_projections(onnx.load(str(graph), load_external_data=False)) if recipe == "ffn-out-fp32" else []
        destination.parent.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".tmp")
        os.close(fd)
        root = logging.getLogger()
        root_level = root.level
        root.setLevel(logging.WARNING)  # the quantizer logs one INFO line per tensor on the root logger
        try:
            if recipe in STATIC_RECIPES:
                assert calibration is not None
                _quantize_static(graph, Path(partial), Path(calibration), per_channel=per_channel, recipe=recipe)
            else:
                quantize_dynamic(
                    str(graph),
                    partial,
                    per_channel=per_channel,
                    reduce_range=False,  # full int8 range: VNNI/AMX have no overflow problem with it
                    weight_type=QuantType.QInt8,
                    nodes_to_exclude=keep,
                    # Fused ops (Attention, SkipLayerNormalization...) are in Microsoft's domain, where ONNX shape
                    # inference cannot type their outputs: they are float32.
                    extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
                )
            os.chmod(partial, 0o644)
            os.replace(partial, destination)
        finally:
            root.setLevel(root_level)
            Path(partial).unlink(missing_ok=True)
    model = onnx.load(str(destination), load_external_data=False)
    from collections import Counter

    ops = Counter(n.op_type for n in model.graph.node)
    record: dict[str, Any] = {
        "source": str(source),
        "source_sha256": file_sha256(source),
        "int8_sha256": file_sha256(destination),
        "method": "static" if recipe in STATIC_RECIPES else "dynamic",
        "recipe": recipe,
        "kept_fp32": keep,
        "weights": "int8 per channel" if per_channel else "int8 per tensor",
        "activations": (
            f"uint8 per tensor, ranges calibrated on the train features ({PERCENTILE}th percentile, "
            f"first {PERCENTILE_ROWS} rows of <= {PERCENTILE_WIDTH} tokens)"
            if recipe in STATIC_RECIPES
            else "uint8 per tensor, ranges computed at run time"
        ),
        "calibration": str(calibration) if recipe in STATIC_RECIPES else None,
        "calibration_sha256": file_sha256(Path(calibration)) if recipe in STATIC_RECIPES and calibration else None,
        "fused_first": fuse,
        "fused": fused,
        "int8_ops": {
            op: n
            for op, n in sorted(ops.items())
            if op
            in (
                "QuantizeLinear",
                "DequantizeLinear",
                "QLinearMatMul",
                "QAttention",
                "MatMulInteger",
                "QEmbedLayerNormalization",
                "DynamicQuantizeLinear",
                "DynamicQuantizeMatMul",
            )
        },
        "onnxruntime": ort.__version__,
        "seconds": round(time.perf_counter() - started, 2),
    }
    record_path = destination.parent / (destination.name + RECORD_SUFFIX)
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    log.info("quantized %s -> %s in %.1f s (%s)", source.name, destination, record["seconds"], record["weights"])
    return record


def activation_matmuls(model: Any) -> list[str]:
    """Names of the MatMul nodes with no constant input: in BERT the attention scores (Q x K^T) and context
    (probabilities x V), activation x activation."""
    inits = {t.name for t in model.graph.initializer}
    constants = {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    return [
        n.name
        for n in model.graph.node
        if n.op_type == "MatMul" and not any(i in inits or i in constants for i in n.input)
    ]


class FeatureReader:
    """onnxruntime's CalibrationDataReader over the calibration .npz (orchestrator/workflows/calibration.py):
    batches of CALIBRATION_BATCH rows, each trimmed to its longest real length (padding calibrates nothing),
    cast to the model's int64 inputs."""

    def __init__(
        self,
        path: Path,
        input_names: list[str],
        batch: int = CALIBRATION_BATCH,
        *,
        same_width: bool = False,
        rows: int | None = None,
        max_length: int | None = None,
    ) -> None:
        import numpy as np

        with np.load(path) as data:
            arrays = {name: np.asarray(data[name]) for name in ("input_ids", "input_mask", "segment_ids")}
        lengths = arrays["input_mask"].astype(bool).sum(axis=1)
        keep = np.flatnonzero(lengths <= max_length) if max_length else np.arange(len(lengths))
        keep = keep[:rows] if rows else keep  # the first rows: the set is already a seeded random pick of train
        arrays = {k: v[keep] for k, v in arrays.items()}
        lengths = lengths[keep]
        order = np.argsort(lengths, kind="stable")
        if same_width:
            batch = 1  # one shape for every batch: a short last batch would differ in its first dimension
        self._feeds: list[dict[str, Any]] = []
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            width = max(1, int((lengths if same_width else lengths[idx]).max()))
            self._feeds.append({k: v[idx, :width].astype(np.int64) for k, v in arrays.items() if k in input_names})
        self._next = iter(self._feeds)

    def __len__(self) -> int:
        return len(self._feeds)

    def get_next(self) -> dict[str, Any] | None:
        return next(self._next, None)

    def rewind(self) -> None:
        self._next = iter(self._feeds)


def _quantize_static(
    graph: Path,
    destination: Path,
    calibration: Path,
    *,
    per_channel: bool,
    recipe: str,
    method: str = "Percentile",
    calibration_options: dict[str, Any] | None = None,
) -> None:
    """QDQ static quantization of the MatMuls (QuantizeLinear/DequantizeLinear pairs that onnxruntime's
    session turns into its int8 kernels): uint8 activations with ranges from the calibration features
    (percentile by default, see PERCENTILE; MinMax over every row), int8 weights."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    model = onnx.load(str(graph), load_external_data=False)
    exclude = activation_matmuls(model) if recipe == "static-qdq" else []
    names = [i.name for i in model.graph.input]
    if method == "MinMax":
        reader = FeatureReader(calibration, names)
    else:  # the histogram calibrators stack every batch's tensors: one width for all, and a bounded set
        reader = FeatureReader(calibration, names, same_width=True, rows=PERCENTILE_ROWS, max_length=PERCENTILE_WIDTH)
        calibration_options = {"CalibPercentile": PERCENTILE, **(calibration_options or {})}
    quantize_static(
        str(graph),
        str(destination),
        reader,  # type: ignore[arg-type]  # duck-typed: get_next() is all the calibrator calls
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["MatMul"],
        nodes_to_exclude=exclude,
        per_channel=per_channel,
        reduce_range=False,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod[method],
        calibration_providers=["CPUExecutionProvider"],
        extra_options={
            "DefaultTensorType": onnx.TensorProto.FLOAT,
            "OpTypesToExcludeOutputQuantization": ["MatMul"],
            **(calibration_options or {}),
        },
    )


def main(argv: list[str] | None = None) -> int:
    from orchestrator.logs import setup_logging

    parser = argparse.ArgumentParser(
        prog="python -m orchestrator.harness.engines.onnxruntime_int8",
        description="int8 dynamic quantization of an fp32 MLPerf BERT ONNX model.",
    )
    parser.add_argument("source", type=Path)
    parser.add_argument("destination", type=Path)
    parser.add_argument("--per-tensor", action="store_true", help="one scale per weight tensor (default: per channel)")
    parser.add_argument("--recipe", choices=RECIPES, default="all", help="which MatMuls stay fp32 (see the module doc)")
    parser.add_argument("--fuse", action="store_true", help="apply the transformer fusions first (QAttention)")
    parser.add_argument("--optimized-cache-dir", type=Path, default=None)
    parser.add_argument("--calibration", type=Path, default=None, help="calibration features (.npz) of static recipes")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(-1 if args.quiet else 0)
    try:
        record = quantize_int8(
            args.source,
            args.destination,
            per_channel=not args.per_tensor,
            recipe=args.recipe,
            fuse=args.fuse,
            optimized_cache_dir=args.optimized_cache_dir,
            calibration=args.calibration,
        )
    except MlperfBertError as exc:
        sys.stderr.write(f"{CHILD_ERROR_PREFIX}{exc}\n")  # the one line the parent (workflows/int8.py) passes on
        return exc.exit_code
    sys.stdout.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
