"""The matrix-multiply ceiling of this CPU for each precision, measured by every engine we run, side by side.

    .venv/bin/python benchmarks/gemm_ceilings.py            # a table: precision x engine, GFLOP/s or GOP/s
    .venv/bin/python benchmarks/gemm_ceilings.py --json F   # the same, as JSON

One GEMM at BERT-large's biggest layer shape, [2048, 1024] x [1024, 4096], best of several calls:

  fp32  onnxruntime MatMul (a constant weight, as a model has)          | OpenVINO FullyConnected fp32
  int8  onnxruntime MatMulInteger, weight an input (packed every call) | the weight a constant (packed once)
        | OpenVINO FullyConnected u8 x i8 (what NNCF's int8 models compile to)
  bf16  PyTorch's bf16 matmul (oneDNN)                                  | OpenVINO FullyConnected bf16

The ceiling of a precision is the best of its engines: a model's rate is judged against the fastest GEMM this
machine does in that precision, not against one library's. Before 2026-12-02 the int8 ceiling was
onnxruntime's MatMulInteger with the weight as an input alone, and the bf16 ceiling PyTorch's alone.
OpenVINO's and PyTorch's rates are measured in their managed venvs (each backend's own packages). OpenVINO's
rate for a precision counts only when its compiled FullyConnected really ran in it: where its CPU plugin has
no bf16 (below AVX-512 or AVX2-VNNI-2) it falls back to fp32, and that is reported as not measured, never as
a bf16 rate. On a CPU without native bf16 (amx_bf16 or avx512_bf16) PyTorch's bf16 is not measured at all:
every engine here refuses bf16 there, and PyTorch emulates it (138x slower than its fp32 on an AVX2-only
AMD EPYC, 2026-12-07: some 20 s a call at this shape, past the 600 s a venv's measurement may take). (OpenVINO's emulated bf16 on AVX-512 without avx512_bf16
is still printed where its plugin runs it, as a rate of this CPU, though no run here uses it.)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from orchestrator.errors import MlperfBertError  # noqa: E402
from orchestrator.harness.cpu import default_threads, detect_isa  # noqa: E402
from orchestrator.runners import venvs  # noqa: E402

M, K, N = 2048, 1024, 4096
OPS = 2 * M * K * N
CALLS = 15  # best of 15: a shared machine's slower stretches read 2x low with 3-5


def _best_seconds(fn: Any, calls: int = CALLS) -> float:
    for _ in range(3):
        fn()
    best = float("inf")
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def onnxruntime_rates(threads: int) -> dict[str, float]:
    """fp32 MatMul and int8 MatMulInteger (weight as an input, and as a constant), in this venv."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    x = rng.standard_normal((M, K), dtype=np.float32)
    w = rng.standard_normal((K, N), dtype=np.float32)
    a = rng.integers(0, 255, (M, K), dtype=np.uint8)
    b = rng.integers(-127, 127, (K, N), dtype=np.int8)

    def session(op: str, a_type: int, b_const: np.ndarray | None, out_type: int, b_type: int) -> Any:
        inputs = [helper.make_tensor_value_info("a", a_type, [M, K])]
        inits = []
        if b_const is None:
            inputs.append(helper.make_tensor_value_info("b", b_type, [K, N]))
        else:
            inits.append(numpy_helper.from_array(b_const, "b"))
        graph = helper.make_graph(
            [helper.make_node(op, ["a", "b"], ["c"])],
            "gemm",
            inputs,
            [helper.make_tensor_value_info("c", out_type, [M, N])],
            inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])

    fp32 = session("MatMul", TensorProto.FLOAT, w, TensorProto.FLOAT, TensorProto.FLOAT)
    int8_input = session("MatMulInteger", TensorProto.UINT8, None, TensorProto.INT32, TensorProto.INT8)
    int8_const = session("MatMulInteger", TensorProto.UINT8, b, TensorProto.INT32, TensorProto.INT8)
    return {
        "fp32 onnxruntime MatMul": OPS / _best_seconds(lambda: fp32.run(None, {"a": x})) / 1e9,
        "int8 onnxruntime MatMulInteger, weight an input": OPS
        / _best_seconds(lambda: int8_input.run(None, {"a": a, "b": b}))
        / 1e9,
        "int8 onnxruntime MatMulInteger, weight a constant": OPS
        / _best_seconds(lambda: int8_const.run(None, {"a": a}))
        / 1e9,
    }


# Run inside the openvino-cpu venv; prints one JSON object {label: rate}. A precision counts only when the
# compiled FullyConnected really runs in it (runtimePrecision): where OpenVINO falls back to fp32, no rate.
OPENVINO_SCRIPT = """
import json, sys, time
import numpy as np
import openvino as ov
import openvino.opset13 as op

M, K, N, threads, calls = (int(v) for v in sys.argv[1:6])
rng = np.random.default_rng(0)
w = rng.standard_normal((K, N)).astype(np.float32) * 0.05
x = rng.standard_normal((M, K)).astype(np.float32)

def c(v):
    return op.constant(np.array(v, dtype=np.float32))

def model(int8):
    p = op.parameter([M, K], ov.Type.f32, name="x")
    if int8:  # u8 activations (a FakeQuantize) x i8 weights (i8 constant, Convert, per-channel scale)
        a = op.fake_quantize(p, c(0.0), c(4.0), c(0.0), c(4.0), 256)
        scale = 0.25 / 127
        wi = op.constant(np.clip(np.round(w / scale), -127, 127).astype(np.int8))
        b = op.multiply(op.convert(wi, ov.Type.f32), op.constant(np.full((1, N), scale, np.float32)))
    else:
        a, b = p, op.constant(w)
    return ov.Model([op.matmul(a, b, False, False)], [p], "gemm")

core = ov.Core()
out = {}
for label, int8, hint, want in (
    ("fp32 OpenVINO FullyConnected", False, "f32", "f32"),
    ("bf16 OpenVINO FullyConnected", False, "bf16", "bf16"),
    ("int8 OpenVINO FullyConnected u8 x i8", True, "f32", "u8"),
):
    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
    compiled = core.compile_model(model(int8), "CPU", config)
    ran = {
        o.get_rt_info()["runtimePrecision"].astype(str)
        for o in compiled.get_runtime_model().get_ops()
        if o.get_rt_info()["layerType"].astype(str) == "FullyConnected"
    }
    if ran != {want}:
        print(f"{label}: not measured (the FullyConnected ran in {sorted(ran)})", file=sys.stderr)
        continue
    req = compiled.create_infer_request()
    for _ in range(3):
        req.infer({0: x})
    best = float("inf")
    for _ in range(calls):
        t = time.perf_counter()
        req.infer({0: x})
        best = min(best, time.perf_counter() - t)
    out[label] = 2 * M * K * N / best / 1e9
print(json.dumps(out))
"""

TORCH_SCRIPT = """
import json, sys, time
import torch

M, K, N, threads, calls = (int(v) for v in sys.argv[1:6])
torch.set_num_threads(threads)
a = torch.randn(M, K, dtype=torch.bfloat16)
b = torch.randn(K, N, dtype=torch.bfloat16)
for _ in range(3):
    a @ b
best = float("inf")
for _ in range(calls):
    t = time.perf_counter()
    a @ b
    best = min(best, time.perf_counter() - t)
print(json.dumps({"bf16 PyTorch matmul (oneDNN)": 2 * M * K * N / best / 1e9}))
"""


def venv_rates(venv: str, script: str, threads: int) -> dict[str, float]:
    """Rates printed by `script` in the managed venv `venv`; {} (and one line on stderr) where it cannot run."""
    try:
        python = venvs.ensure_venv(venv)
        done = subprocess.run(
            [str(python), "-c", script, *map(str, (M, K, N, threads, CALLS))],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        sys.stderr.write(done.stderr)
        return {k: float(v) for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}
    except (MlperfBertError, subprocess.SubprocessError, ValueError, IndexError, OSError) as e:
        detail = getattr(e, "stderr", "") or ""
        if isinstance(detail, bytes):  # TimeoutExpired keeps bytes even with text=True
            detail = detail.decode(errors="replace")
        print(f"{venv}: GEMM rates not measured: {e} {detail[-500:]}", file=sys.stderr)
        return {}


def measure(threads: int | None = None) -> dict[str, Any]:
    """Every engine's rate, and per precision the ceiling (the best) and the engine that set it."""
    threads = threads or default_threads()
    isa = detect_isa()
    if not isa.bf16:  # PyTorch would emulate it (~20 s a call on AVX2); every engine here refuses bf16 there
        print(f"bf16 PyTorch: not measured: this CPU has no native bf16 (ISA: {isa.describe()})", file=sys.stderr)
    rates = {
        **onnxruntime_rates(threads),
        **venv_rates("openvino-cpu", OPENVINO_SCRIPT, threads),
        **(venv_rates("pytorch-cpu", TORCH_SCRIPT, threads) if isa.bf16 else {}),
    }
    rates = {k: round(v, 1) for k, v in rates.items()}
    ceilings, sources = ceilings_of(rates)
    return {
        "shape": f"[{M}, {K}] x [{K}, {N}]",
        "threads": threads,
        "rates": rates,
        "ceilings": ceilings,
        "sources": sources,
    }


def ceilings_of(rates: dict[str, float]) -> tuple[dict[str, float | None], dict[str, str | None]]:
    """Per precision (a label's first word) the best rate and the label that set it; None where none ran."""
    ceilings: dict[str, float | None] = {}
    sources: dict[str, str | None] = {}
    for precision in ("fp32", "int8", "bf16"):
        mine = {label: rate for label, rate in rates.items() if label.startswith(precision + " ")}
        best = max(mine, key=mine.__getitem__) if mine else None
        ceilings[precision] = mine[best] if best else None
        sources[precision] = best
    return ceilings, sources


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="threads per engine (default: physical cores)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    # Checked before the measurements, so a wrong flag costs nothing and loses nothing.
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads {args.threads} is not a thread count; pass 1 or more, or leave it out")
    if args.json and not args.json.parent.is_dir():
        parser.error(
            f"--json {args.json}: the folder {args.json.parent} does not exist; create it or pick another path"
        )
    result = measure(args.threads)
    result["isa"] = str(detect_isa())
    print(f"GEMM {result['shape']}, {result['threads']} threads, {result['isa']}")
    print("| engine | G(FL)OP/s | ceiling of its precision |")
    print("|---|---:|---|")
    for label, rate in result["rates"].items():
        best = result["sources"][label.split()[0]] == label
        print(f"| {label} | {rate:,.0f} | {'yes' if best else ''} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
