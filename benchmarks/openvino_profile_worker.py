"""The OpenVINO side of benchmarks/profile_openvino.py: run in the openvino-cpu venv (numpy and openvino only).

    python openvino_profile_worker.py MODEL FEEDS.npz HINT THREADS PASSES

FEEDS.npz holds the batches as input_ids_<i>, input_mask_<i>, segment_ids_<i> ([batch, width] int64 each).
Compiles MODEL (ONNX or IR) with PERF_COUNT on one stream of THREADS threads and INFERENCE_PRECISION_HINT
HINT, runs every batch once (each shape's first call compiles kernels: not counted), then PASSES passes over
all batches, and prints one JSON object: per op type the node time, count and kernels (the fused attention
is the op type Subgraph), the FullyConnected layers' operations and time by runtime precision, and the wall
time of the passes.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from typing import Any

import numpy as np
import openvino as ov

INPUTS = ("input_ids", "input_mask", "segment_ids")


def static_dims(port: Any) -> list[int] | None:
    shape = port.get_partial_shape()
    return [d.get_length() for d in shape] if shape.is_static else None


def fc_weights(compiled: Any) -> dict[str, tuple[int, int, str]]:
    """Per FullyConnected of the compiled model: (K, N, the precision it ran in). Its weight is the second
    input, [N, K], static even where the activations are dynamic."""
    out = {}
    for node in compiled.get_runtime_model().get_ordered_ops():
        info = node.get_rt_info()
        if not info["layerType"].astype(str).startswith("FullyConnected"):
            continue
        weight = static_dims(node.input(1).get_source_output())
        if weight is None or len(weight) != 2:
            continue
        n, k = weight
        out[node.get_friendly_name()] = (k, n, info["runtimePrecision"].astype(str))
    return out


def main() -> None:
    model_path, feeds_path, hint = sys.argv[1:4]
    threads, passes = int(sys.argv[4]), int(sys.argv[5])
    with np.load(feeds_path) as z:
        count = len([k for k in z.files if k.startswith("input_ids_")])
        feeds = [{name: np.asarray(z[f"{name}_{i}"]) for name in INPUTS} for i in range(count)]
    core = ov.Core()
    config = {
        "INFERENCE_PRECISION_HINT": hint,
        "NUM_STREAMS": "1",
        "INFERENCE_NUM_THREADS": str(threads),
        "PERFORMANCE_HINT": "LATENCY",
        "PERF_COUNT": "YES",
    }
    # As the engine compiles it (dynamic shapes, one stream), with the profiler on.
    compiled = core.compile_model(core.read_model(model_path), "CPU", config)
    request = compiled.create_infer_request()
    weights = fc_weights(compiled)
    for feed in feeds:  # each width's first call compiles its kernels
        request.infer(feed)
    by_type: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    kernels: dict[str, set[str]] = defaultdict(set)
    fc: dict[str, dict[str, float]] = defaultdict(lambda: {"ops": 0.0, "seconds": 0.0})
    wall = 0.0
    for _ in range(passes):
        for feed in feeds:
            rows = int(feed["input_ids"].shape[0] * feed["input_ids"].shape[1])
            started = time.perf_counter()
            request.infer(feed)
            wall += time.perf_counter() - started
            for p in request.profiling_info:
                if p.status != p.Status.EXECUTED:
                    continue
                seconds = p.real_time.total_seconds()
                by_type[p.node_type] += seconds
                counts[p.node_type] += 1
                kernels[p.node_type].add(p.exec_type)
                if p.node_name in weights:
                    k, n, precision = weights[p.node_name]
                    fc[precision]["ops"] += 2.0 * rows * k * n
                    fc[precision]["seconds"] += seconds
    calls = passes * len(feeds)
    print(
        json.dumps(
            {
                "openvino": str(ov.__version__),
                "calls": calls,
                "wall_seconds": wall,
                "op_types": {
                    name: {"seconds": by_type[name], "per_call": counts[name] / calls, "kernels": sorted(kernels[name])}
                    for name in sorted(by_type, key=by_type.__getitem__, reverse=True)
                },
                "fully_connected": dict(fc),
            }
        )
    )


if __name__ == "__main__":
    main()
