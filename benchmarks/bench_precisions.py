"""Precisions side by side on this CPU, through the real harness and LoadGen: the reference SUT, onnxruntime
fp32/int8 (dynamic; static QDQ with --calibration), openvino fp32/bf16/int8, deepsparse int8 (the static QDQ
model), pytorch fp32/bf16, each on the SAME LoadGen samples, rounds interleaved.

    .venv/bin/python benchmarks/bench_precisions.py --calibration ../shared/assets/squad/train-v1.1.json.gz
    .venv/bin/python benchmarks/bench_precisions.py --quick ...      # small counts, to try it out
    .venv/bin/python benchmarks/bench_precisions.py --skip-large ... # the demo model only

Every configuration is a normal `mlperf-bert run` (orchestrator.api.run_benchmark, local runner, each backend
in its own environment), Offline performance in test mode, N samples per run (LoadGen's fixed seeds and the
same count: the same samples for every row). Rounds go configuration by configuration, round after round, so a slower
stretch of this shared machine hits every row alike; the best and the median of the rounds are printed.

Per row: samples/s, x the reference SUT, GFLOP/s counted on the real tokens of the samples LoadGen issued
(the run's performance/run_1/sut_samples.npy: LoadGen draws them at random from the whole dev set, the
same ones in every run; padding is not work), and the
fraction of the measured matrix-multiply ceiling FOR THAT PRECISION, all measured in this run: the fastest
GEMM any of our engines does here in that precision (benchmarks/gemm_ceilings.py: onnxruntime, OpenVINO and
PyTorch side by side, at the start and at the end of the run, the better kept; before 2026-12-02 int8 was
onnxruntime's MatMulInteger alone, with its weight an input, and bf16 PyTorch's matmul alone). For the demo
model also the F1 of an accuracy run over the first `--f1-samples` features against onnxruntime fp32 on the same questions (indicative: not the full dev set unless
--f1-samples 10833).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import gemm_ceilings  # noqa: E402
from bench_throughput import FlopModel, demo_fp32, int8_of, large_model, matmul_ceiling  # noqa: E402

from orchestrator.api import RunConfig, run_benchmark  # noqa: E402
from orchestrator.dataset import build_features, load_features  # noqa: E402
from orchestrator.errors import MlperfBertError  # noqa: E402
from orchestrator.harness.cpu import detect_isa  # noqa: E402
from orchestrator.harness.latencies import SAMPLES_FILE  # noqa: E402
from orchestrator.paths import EMBEDDED_DATASET, EMBEDDED_MODEL, EMBEDDED_VOCAB, default_cache_dir  # noqa: E402
from orchestrator.workflows import int8 as int8_variants  # noqa: E402
from orchestrator.workflows.calibration import calibration_features  # noqa: E402

SHARED_CHECKPOINT = REPO.parent / "shared" / "assets" / "models" / "demo-minilm-l6-squad-hf"


@dataclass
class Config:
    label: str
    precision: str  # the precision whose GEMM ceiling the row is compared with
    overrides: dict[str, Any]
    rates: list[float] = field(default_factory=list)
    f1: float | None = None
    settings: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    samples: np.ndarray | None = None  # the QSL indices LoadGen issued in its runs (the same in every one)


def machine() -> dict[str, Any]:
    model = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": model,
        "isa": str(detect_isa()),
        "load_before": Path("/proc/loadavg").read_text().split()[:3],
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def measured_rates() -> dict[str, float]:
    """Every engine's GEMM rate (benchmarks/gemm_ceilings.py) and a BERT-large layer's fp32 GEMM set."""
    rates = dict(gemm_ceilings.measure()["rates"])
    rates["fp32 a BERT-large layer's GEMMs (numpy, onnxruntime)"] = float(matmul_ceiling()["ceiling_gflops"])
    return rates


def static_int8_of(fp32: Path, cache: Path, calibration: Path) -> Path:
    """The static QDQ int8 model of `fp32` (recipe static-qdq, the train features of `calibration`), made and
    cached as `tune --int8 --calibration` makes it."""
    features = calibration_features(calibration, EMBEDDED_VOCAB, cache)
    recipe = "static-qdq"
    directory = int8_variants.variant_dir(fp32, cache, recipe=recipe, calibration=features)
    path = directory / int8_variants.INT8_FILE
    if not path.is_file():
        print(f"quantizing {fp32.name} (static QDQ) -> {path}", flush=True)
        directory.mkdir(parents=True, exist_ok=True)
        int8_variants.quantize(fp32, path, recipe=recipe, calibration=features, optimized_cache_dir=cache / "optimized")
    return path


def configs(
    model: str, fp32: Path, int8: Path, checkpoint: Path | None, calibration: Path | None, static: Path | None
) -> list[Config]:
    ort = {"backend": "onnxruntime"}
    ov = {"backend": "openvino"}
    rows = [
        Config("reference SUT (onnxruntime fp32)", "fp32", {**ort, "model_path": fp32, "sut": "reference"}),
        Config("onnxruntime fp32", "fp32", {**ort, "model_path": fp32}),
        Config("onnxruntime int8 (dynamic)", "int8", {**ort, "model_path": int8}),
    ]
    if static is not None:
        rows.append(Config("onnxruntime int8 (static QDQ)", "int8", {**ort, "model_path": static}))
    rows += [
        Config("openvino fp32", "fp32", {**ov, "model_path": fp32, "engine_options": {"precision": "fp32"}}),
        Config("openvino bf16", "bf16", {**ov, "model_path": fp32, "engine_options": {"precision": "bf16"}}),
    ]
    if calibration is not None:
        rows.append(
            Config(
                "openvino int8 (NNCF static)",
                "int8",
                {**ov, "model_path": fp32, "engine_options": {"precision": "int8"}, "calibration_path": calibration},
            )
        )
        rows.append(
            Config(
                "openvino int8 (NNCF static, bf16 rest)",
                "int8",
                {
                    **ov,
                    "model_path": fp32,
                    "engine_options": {"precision": "int8", "int8_float": "bf16"},
                    "calibration_path": calibration,
                },
            )
        )
        # The attention's activation MatMuls in bf16 instead of int8: on AMX they may run on the tiles where
        # int8 attention runs on AVX-512 (0.89x on an AMD EPYC without AMX, 2026-12-02).
        rows.append(
            Config(
                "openvino int8 (NNCF static, bf16 rest and attention)",
                "int8",
                {
                    **ov,
                    "model_path": fp32,
                    "engine_options": {"precision": "int8", "int8_float": "bf16", "int8_attention": "float"},
                    "calibration_path": calibration,
                },
            )
        )
    if static is not None:  # DeepSparse 1.8 cannot compile dynamic int8; the static QDQ model it does
        rows.append(Config("deepsparse int8 (static QDQ)", "int8", {"backend": "deepsparse", "model_path": static}))
    if checkpoint is not None:
        pt = {"backend": "pytorch", "model_path": checkpoint}
        rows.append(Config("pytorch fp32", "fp32", {**pt}))
        rows.append(Config("pytorch bf16", "bf16", {**pt, "engine_options": {"precision": "bf16"}}))
    for r in rows:
        r.label = f"{model}: {r.label}"
    return rows


def run_one(cfg: Config, out: Path, samples: int, mode: str) -> Any:
    rc = RunConfig(
        scenario="Offline",
        mode=mode,
        execution_mode="test",
        test_query_count=samples,
        runner="local",
        output_dir=out,
        **cfg.overrides,
    )
    return run_benchmark(rc, progress=False, stream=False)


def family(name: str, rows: list[Config], args: argparse.Namespace, out: Path) -> None:
    for rnd in range(args.repeats):
        for cfg in rows:
            if cfg.error:
                continue
            try:
                result = run_one(cfg, out, args.samples if name == "demo" else args.large_samples, "performance")
            except MlperfBertError as e:
                cfg.error = str(e)
                print(f"  {cfg.label}: FAILED {e}", flush=True)
                continue
            rate = float(result.performance.samples_per_second)
            issued = np.load(result.run_dir / "performance" / "run_1" / SAMPLES_FILE)
            if cfg.samples is not None and not np.array_equal(np.sort(issued), np.sort(cfg.samples)):
                raise SystemExit(f"{cfg.label}: LoadGen issued other samples than in its first run")
            cfg.samples = issued
            cfg.rates.append(rate)
            cfg.settings = dict(result.record.engine_settings)
            print(f"  round {rnd + 1} {cfg.label}: {rate:.2f} samples/s", flush=True)
    if name == "demo" and args.f1_samples:
        for cfg in rows:
            if cfg.error:
                continue
            try:
                result = run_one(cfg, out, args.f1_samples, "accuracy")
                cfg.f1 = float(result.accuracy.f1)
            except MlperfBertError as e:
                print(f"  {cfg.label} accuracy: FAILED {e}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calibration", type=Path, default=None, help="SQuAD v1.1 train JSON for openvino int8")
    parser.add_argument("--samples", type=int, default=512, help="LoadGen samples per demo run")
    # 128, not 32: 32 samples drawn from the dev set averaged 185.5 real tokens against the set's 178.5, and
    # a run that short spends ~6% of it starting and ending; on an AMD EPYC int8 read 5.64-5.71 samples/s at
    # 32 and 6.76-6.81 at 128, interleaved (benchmarks/RESULTS.md, 2026-12-02).
    parser.add_argument("--large-samples", type=int, default=128, help="LoadGen samples per BERT-large run")
    parser.add_argument("--f1-samples", type=int, default=1000, help="features of the demo accuracy runs (0: none)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument(
        "--large-static",
        action="store_true",
        help="also a static QDQ BERT-large (its percentile calibration keeps every activation: ~12+ GB)",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.json and not args.json.parent.is_dir():  # checked first: the runs take half an hour
        parser.error(
            f"--json {args.json}: the folder {args.json.parent} does not exist; create it or pick another path"
        )
    if args.quick:
        args.samples, args.large_samples, args.f1_samples, args.repeats = 64, 8, 100, 1
    cache = default_cache_dir()
    features = load_features(build_features(EMBEDDED_DATASET, EMBEDDED_VOCAB, cache / "features"))
    results: dict[str, Any] = {"machine": machine()}
    print(json.dumps(results["machine"]), flush=True)
    start = measured_rates()
    print(f"GEMM rates at the start (GFLOP/s or GOP/s): {json.dumps(start)}", flush=True)
    out = Path(tempfile.mkdtemp(prefix="bench-precisions-"))
    families: list[tuple[str, list[Config], FlopModel]] = []
    fp32 = None if args.skip_demo else demo_fp32(cache)
    if fp32 is not None:
        checkpoint = SHARED_CHECKPOINT if SHARED_CHECKPOINT.is_dir() else None
        families.append(
            (
                "demo",
                configs(
                    "demo",
                    fp32,
                    EMBEDDED_MODEL,
                    checkpoint,
                    args.calibration,
                    static_int8_of(fp32, cache, args.calibration) if args.calibration else None,
                ),
                FlopModel.of(fp32),
            )
        )
    if not args.skip_large:
        large = large_model(cache)
        families.append(
            (
                "large",
                configs(
                    "BERT-large shapes",
                    large,
                    int8_of(large, cache),
                    None,
                    args.calibration,
                    static_int8_of(large, cache, args.calibration) if args.calibration and args.large_static else None,
                ),
                FlopModel.of(large),
            )
        )
    for name, rows, _ in families:
        family(name, rows, args, out)
    # Measured again at the end and the better of the two kept: a shared machine's slower stretch at the start
    # read the fp32 ceiling (OpenVINO's 167.4) ~10% low against 179-188 minutes later (2026-12-02 17:38), and
    # fp32 fractions above 1 followed.
    end = measured_rates()
    print(f"GEMM rates at the end: {json.dumps(end)}", flush=True)
    best_rates = {label: max(start.get(label, 0.0), end.get(label, 0.0)) for label in {**start, **end}}
    ceilings, sources = gemm_ceilings.ceilings_of(best_rates)
    results["gemm_rates"] = {"start": start, "end": end}
    results["ceilings_gflops"], results["ceiling_sources"] = ceilings, sources
    print(f"ceilings, the best per precision: {ceilings} from {sources}", flush=True)
    rows_out = []
    for name, rows, flop_model in families:
        issued = [r.samples for r in rows if r.samples is not None]
        if any(not np.array_equal(np.sort(x), np.sort(issued[0])) for x in issued):
            raise SystemExit(f"{name}: LoadGen issued other samples to different configurations")
        real = features.seq_len[issued[0]].astype(np.int64) if issued else np.zeros(1, np.int64)
        results.setdefault("mean_real_tokens", {})[name] = round(float(real.mean()), 1)
        print(f"{name}: {real.size} samples, mean real length {real.mean():.1f} tokens", flush=True)
        reference = next((r for r in rows if "reference" in r.label and r.rates), None)
        fp32_f1 = next((r.f1 for r in rows if r.label.endswith("onnxruntime fp32")), None)
        for r in rows:
            best = max(r.rates) if r.rates else None
            median = statistics.median(r.rates) if r.rates else None
            work = flop_model.flops(real) / real.size  # FLOPs per sample on real tokens
            gflops = best * work / 1e9 if best else None
            ceiling = ceilings.get(r.precision)
            row = {
                "label": r.label,
                "precision": r.precision,
                "best": best,
                "median": median,
                "rounds": r.rates,
                "x_reference": round(best / max(reference.rates), 2) if best and reference else None,
                "gflops_real": round(gflops, 1) if gflops else None,
                "fraction_of_ceiling": round(gflops / ceiling, 3) if gflops and ceiling else None,
                "f1": r.f1,
                "f1_ratio": round(r.f1 / fp32_f1, 4) if r.f1 and fp32_f1 else None,
                "settings": r.settings,
                "error": r.error,
            }
            rows_out.append(row)
    results["rows"] = rows_out
    results["machine"]["load_after"] = Path("/proc/loadavg").read_text().split()[:3]
    print("\n| configuration | best samples/s | median | x reference | GFLOP/s real | of its ceiling | F1 | F1/fp32 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows_out:
        cells = [
            r["label"],
            r["best"] and f"{r['best']:.2f}",
            r["median"] and f"{r['median']:.2f}",
            r["x_reference"],
            r["gflops_real"],
            r["fraction_of_ceiling"],
            r["f1"] and f"{r['f1']:.3f}",
            r["f1_ratio"],
        ]
        print(
            "| "
            + " | ".join("-" if c is None else str(c) for c in cells)
            + " |"
            + (f" FAILED: {r['error']}" if r["error"] else "")
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
