"""onnxruntime's int8 recipes side by side on the demo model, each in isolation against fp32 and dynamic int8:
samples/s through the real harness (Offline, test mode, the same LoadGen samples, rounds interleaved) and F1
over the first `--f1-samples` dev features against fp32 on the same questions.

    .venv/bin/python benchmarks/bench_ort_int8_recipes.py --calibration ../shared/assets/squad/train-v1.1.json.gz

Recipes (orchestrator/harness/engines/onnxruntime_int8.py): dynamic `all`, `ffn-out-fp32`; static QDQ
`static-qdq` (weight MatMuls int8, attention fp32) and `static-qdq-attention` (every MatMul int8), both
calibrated on the train features that openvino's NNCF uses (orchestrator/workflows/calibration.py).
Each model is made (and cached) through orchestrator/workflows/int8.py, as `tune --int8` makes it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_precisions import Config, family, machine  # noqa: E402
from bench_throughput import demo_fp32  # noqa: E402

from orchestrator.paths import EMBEDDED_VOCAB, default_cache_dir  # noqa: E402
from orchestrator.workflows import int8  # noqa: E402
from orchestrator.workflows.calibration import calibration_features  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calibration", type=Path, required=True, help="SQuAD v1.1 train JSON (.json or .json.gz)")
    parser.add_argument("--recipes", default=",".join(int8.RECIPES_ALL))
    parser.add_argument("--samples", type=int, default=384)
    parser.add_argument("--f1-samples", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    cache = default_cache_dir()
    fp32 = demo_fp32(cache)
    if fp32 is None:
        raise SystemExit("the demo fp32 model is missing; fetch it first")
    features = calibration_features(args.calibration, EMBEDDED_VOCAB, cache)
    results: dict = {"machine": machine(), "calibration": str(features)}
    print(json.dumps(results), flush=True)
    ort = {"backend": "onnxruntime"}
    rows = [Config("onnxruntime fp32", "fp32", {**ort, "model_path": fp32})]
    for recipe in args.recipes.split(","):
        calibration = features if recipe in int8.STATIC_RECIPES else None
        directory = int8.variant_dir(fp32, cache, recipe=recipe, calibration=calibration)
        path = directory / int8.INT8_FILE
        if not path.is_file():
            directory.mkdir(parents=True, exist_ok=True)
            int8.quantize(fp32, path, recipe=recipe, calibration=calibration, optimized_cache_dir=cache / "optimized")
        rows.append(Config(f"onnxruntime int8 {recipe}", "int8", {**ort, "model_path": path}))
    args.large_samples = 0
    family("demo", rows, args, Path(tempfile.mkdtemp(prefix="bench-int8-recipes-")))
    fp32_row = rows[0]
    out = []
    print("\n| configuration | best samples/s | median | x fp32 (best) | x dynamic all (best) | F1 | F1 / fp32 |")
    print("|---|---|---|---|---|---|---|")
    dyn = next((r for r in rows if r.label.endswith(" all") and r.rates), None)
    for r in rows:
        best = max(r.rates) if r.rates else None
        row = {
            "label": r.label,
            "rounds": r.rates,
            "best": best,
            "median": statistics.median(r.rates) if r.rates else None,
            "x_fp32": round(best / max(fp32_row.rates), 2) if best and fp32_row.rates else None,
            "x_dynamic_all": round(best / max(dyn.rates), 3) if best and dyn else None,
            "f1": r.f1,
            "f1_ratio": round(r.f1 / fp32_row.f1, 4) if r.f1 and fp32_row.f1 else None,
            "error": r.error,
        }
        out.append(row)
        cells = [row["label"], best and f"{best:.2f}", row["median"] and f"{row['median']:.2f}"]
        cells += [row["x_fp32"], row["x_dynamic_all"], r.f1 and f"{r.f1:.3f}", row["f1_ratio"]]
        print("| " + " | ".join("-" if c is None else str(c) for c in cells) + " |", flush=True)
    results["rows"] = out
    results["machine"]["load_after"] = Path("/proc/loadavg").read_text().split()[:3]
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
