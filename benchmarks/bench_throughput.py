"""Throughput, side by side in ONE process: the reference SUT against the optimized SUT (fp32 and int8),
through real LoadGen (Offline), over the same samples; plus the harness's own overhead.

    .venv/bin/python benchmarks/bench_throughput.py                  # everything (~10-15 min on 2 cores)
    .venv/bin/python benchmarks/bench_throughput.py --quick          # small counts, to try it out
    .venv/bin/python benchmarks/bench_throughput.py --skip-large     # the demo model only

Parts:
  machine   lscpu model, physical cores, load average before and after
  ceiling   the fp32 matrix-multiply rate of this machine at BERT-large's GEMM shapes (numpy and an ONNX
            Runtime MatMul graph; the better one counts), GFLOP/s
  overhead  an engine that answers instantly, through BertSUT and real LoadGen: the harness's own samples/s
  demo      the demo MiniLM (fp32 from ../shared/assets or the asset cache; skipped when absent; int8 embedded)
  large     BERT-large's shapes with random weights (orchestrator/assets/synthetic.py; ~1.3 GB, cached)
  text      dev-set preprocessing (uncached) and scoring of 10,833 answers, seconds

Per model: reference SUT (raw graph, default session options, batch 1, padded to 384) and optimized SUT
(fused graph cached: fusions=auto, i.e. ONNX Runtime's own on the CPU; length-sorted batches cut to the
longest row; engine instances pinned to their own cores), fp32 and int8, each an Offline
performance run over the SAME LoadGen samples (same seeds, same counts; the script checks the indices).
Reported: samples/s, the ratio to the reference, F1 (demo: accuracy-mode runs over the same first
features, official SQuAD scoring), and achieved GFLOP/s counted on REAL tokens (each sample's own length;
padding is not work) as a fraction of the measured matmul ceiling.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from orchestrator.backends import TARGETS  # noqa: E402
from orchestrator.harness.cpu import default_threads, physical_core_count, usable_cpus  # noqa: E402
from orchestrator.harness.engines.engine import Engine  # noqa: E402
from orchestrator.harness.qsl import FeatureArrays, SampleLibrary, load_feature_arrays  # noqa: E402
from orchestrator.harness.sut import BertSUT  # noqa: E402
from orchestrator.paths import EMBEDDED_DATASET, EMBEDDED_MODEL, EMBEDDED_VOCAB, default_cache_dir  # noqa: E402

CPU = "CPUExecutionProvider"
CPU_TARGET = TARGETS["onnxruntime-cpu"]
SHARED_FP32 = REPO.parent / "shared" / "assets" / "models" / "demo-minilm-l6-squad.fp32.onnx"
BERT99 = 0.99


# ---- machine -------------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    model = platform.processor()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {
        "cpu": model,
        "logical_cpus": len(usable_cpus()),
        "physical_cores": physical_core_count(),
        "threads_used": default_threads(),
        "load_average": list(os.getloadavg()),
    }


# ---- the matmul ceiling --------------------------------------------------------------------------------
def _gemm_set(tokens: int) -> list[tuple[int, int, int]]:
    """One BERT-large layer's weight GEMMs at `tokens` rows: Q, K, V, attention-out, FFN in, FFN out."""
    h, f = 1024, 4096
    return [(tokens, h, h)] * 4 + [(tokens, h, f), (tokens, f, h)]


def _time_best(fn: Any, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def matmul_ceiling(tokens: int = 2048, repeats: int = 3) -> dict[str, Any]:
    """GFLOP/s of one BERT-large layer's GEMMs (fp32), numpy and onnxruntime; the better is the ceiling."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    shapes = _gemm_set(tokens)
    flops = sum(2 * m * k * n for m, k, n in shapes)
    arrays = {
        (m, k, n): (rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32))
        for m, k, n in set(shapes)
    }

    def numpy_layer() -> None:
        for s in shapes:
            a, b = arrays[s]
            np.matmul(a, b)

    numpy_s = _time_best(numpy_layer, repeats)
    sessions = {}
    so = ort.SessionOptions()
    so.intra_op_num_threads = default_threads()
    for m, k, n in set(shapes):
        w = numpy_helper.from_array(arrays[(m, k, n)][1], "w")
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["x", "w"], ["y"])],
            "mm",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
            [w],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        sessions[(m, k, n)] = ort.InferenceSession(model.SerializeToString(), so, providers=[CPU])

    def ort_layer() -> None:
        for s in shapes:
            sessions[s].run(None, {"x": arrays[s][0]})

    ort_s = _time_best(ort_layer, repeats)
    numpy_gflops, ort_gflops = flops / numpy_s / 1e9, flops / ort_s / 1e9
    return {
        "tokens": tokens,
        "shapes": "BERT-large layer: 4x [T,1024]x[1024,1024], [T,1024]x[1024,4096], [T,4096]x[4096,1024]",
        "numpy_gflops": round(numpy_gflops, 1),
        "onnxruntime_gflops": round(ort_gflops, 1),
        "ceiling_gflops": round(max(numpy_gflops, ort_gflops), 1),
    }


# ---- FLOPs on real tokens ------------------------------------------------------------------------------
@dataclass
class FlopModel:
    """Per-sample FLOPs of a BERT at s real tokens: linear 2*s*sum(K*N) + attention layers*4*s^2*hidden."""

    linear_macs_per_token: int
    layers: int
    hidden: int

    def flops(self, s: np.ndarray) -> float:
        s = s.astype(np.float64)
        return float(np.sum(2.0 * s * self.linear_macs_per_token + self.layers * 4.0 * s * s * self.hidden))

    @classmethod
    def of(cls, fp32_model: Path) -> FlopModel:
        import onnx

        from orchestrator.harness.engines.onnxruntime_fusions import detect_attention_shape

        m = onnx.load(str(fp32_model))
        inits = {t.name: t for t in m.graph.initializer}
        macs = 0
        for n in m.graph.node:
            if n.op_type == "MatMul":
                for i in n.input:
                    if i in inits and len(inits[i].dims) == 2:
                        macs += int(inits[i].dims[0]) * int(inits[i].dims[1])
        layers = sum(1 for n in m.graph.node if n.op_type == "Softmax")
        _, hidden = detect_attention_shape(m)
        return cls(macs, layers, hidden)


# ---- engines and LoadGen -------------------------------------------------------------------------------
class EchoEngine(Engine):
    """Answers at once with the inputs as logits: the harness's own cost, with no inference."""

    name = "echo"

    @property
    def execution_provider(self) -> str:
        return "none"

    def versions(self) -> dict[str, str]:
        return {}

    def infer(
        self, input_ids: np.ndarray, input_mask: np.ndarray, segment_ids: np.ndarray, *, instance: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        self._out = input_ids.astype(np.float32)  # reused by shape: a real engine's output buffers
        return self._out, self._out


def ort_engine(model: Path, *, reference: bool, cache: Path, instances: str = "1") -> Engine:
    from orchestrator.harness.engines.onnxruntime import OnnxRuntimeEngine

    options = (
        {"optimize": "none"} if reference else {"optimized_cache_dir": str(cache / "optimized"), "instances": instances}
    )
    return OnnxRuntimeEngine(
        str(model), device="cpu", batch_size=1, threads=None, execution_provider=CPU, options=options
    )


@dataclass
class LgRun:
    samples_per_second: float
    samples: int
    indices: list[int] = field(repr=False)
    wall_s: float
    complete_calls: int
    batches: int


def loadgen_offline(
    engine: Engine,
    features: FeatureArrays,
    *,
    kind: str,
    batch: int,
    samples: int,
    log_dir: Path,
    accuracy: bool = False,
) -> LgRun:
    import mlperf_loadgen as lg

    from orchestrator.loadgen_logs import parse_performance

    settings = lg.TestSettings()
    settings.scenario = lg.TestScenario.Offline
    settings.mode = lg.TestMode.AccuracyOnly if accuracy else lg.TestMode.PerformanceOnly
    settings.min_query_count = samples
    settings.max_query_count = samples
    settings.min_duration_ms = 0
    settings.offline_expected_qps = 1
    total = samples if accuracy else features.count
    qsl = SampleLibrary(features, total, min(total, 10833))
    sut = BertSUT(engine, qsl, scenario="Offline", kind=kind, batch_size=batch)  # type: ignore[arg-type]
    seen: list[int] = []
    issue = sut.issue_fast

    def record(ids: list[int], indices: list[int]) -> None:
        seen.extend(indices)
        issue(ids, indices)

    sut.issue_fast = record  # type: ignore[method-assign]
    log_dir.mkdir(parents=True, exist_ok=True)
    log_settings = lg.LogSettings()
    log_settings.log_output.outdir = str(log_dir)
    log_settings.log_output.copy_summary_to_stdout = False
    log_settings.enable_trace = False
    qh, sh = qsl.construct(), sut.construct()
    started = time.perf_counter()
    try:
        lg.StartTestWithLogSettings(sh, qh, settings, log_settings)
    finally:
        wall = time.perf_counter() - started
        sut.close()
        qsl.destroy()
    if sut.error is not None:
        raise RuntimeError(f"the SUT failed: {sut.error}")
    rate = samples / wall
    if not accuracy:
        perf = parse_performance(log_dir)
        rate = perf.samples_per_second or rate
    return LgRun(rate, len(seen), seen, round(wall, 3), sut.complete_calls, sut.batches_run)


def harness_overhead(features: FeatureArrays, samples: int, batch: int, log_dir: Path) -> dict[str, Any]:
    engine = EchoEngine("none", device="cpu", batch_size=batch, threads=None, execution_provider="none")
    run = loadgen_offline(engine, features, kind="optimized", batch=batch, samples=samples, log_dir=log_dir)
    return {
        "samples": run.samples,
        "batch_size": batch,
        "samples_per_second": round(run.samples_per_second),
        "complete_calls": run.complete_calls,
        "batches": run.batches,
    }


# ---- accuracy ------------------------------------------------------------------------------------------
class Scorer:
    def __init__(self, features_path: Path) -> None:
        from orchestrator.dataset import feature_tokens, load_examples, load_features, load_vocab

        self.features = load_features(features_path)
        self.examples = load_examples(EMBEDDED_DATASET)
        vocab = load_vocab(EMBEDDED_VOCAB)
        self.tokens_of = lambda i: feature_tokens(self.features, i, vocab)

    def f1(self, accuracy_dir: Path) -> tuple[float, int]:
        from orchestrator.accuracy import score_logs

        report = score_logs(accuracy_dir, self.examples, self.features, self.tokens_of, None)
        return report.f1, report.questions_scored


# ---- one model family ----------------------------------------------------------------------------------
@dataclass
class Row:
    model: str
    sut: str
    precision: str
    batch_size: int
    samples: int
    samples_per_second: float
    runs_samples_per_second: list[float] = field(default_factory=list)
    ratio_to_reference: float | None = None  # best run / best reference run
    round_ratios: list[float] = field(default_factory=list)  # per round: this run / the reference run just before
    median_round_ratio: float | None = None
    real_tokens_per_second: float | None = None
    gflops_real: float | None = None
    fraction_of_ceiling: float | None = None  # gflops_real / the best ceiling measured in the whole run
    f1: float | None = None
    f1_questions: int | None = None
    f1_ratio_to_fp32: float | None = None
    engine_settings: dict[str, str] = field(default_factory=dict)  # graph/fusions, instances, threads
    note: str = ""


class Ceiling:
    """The matmul ceiling, measured again between the model runs: a shared machine's speed drifts (other
    tenants of the host, clocks), so the fastest measurement is taken as what the machine can do."""

    def __init__(self) -> None:
        self.measurements: list[dict[str, Any]] = []

    def measure(self) -> float:
        m = matmul_ceiling()
        self.measurements.append(m)
        print("matmul ceiling:", json.dumps(m), flush=True)
        return float(m["ceiling_gflops"])

    @property
    def best(self) -> float:
        return max(float(m["ceiling_gflops"]) for m in self.measurements)


def family(
    name: str,
    fp32: Path,
    int8s: dict[str, Path],
    features: FeatureArrays,
    scorer: Scorer | None,
    *,
    batch: int,
    samples: int,
    accuracy_samples: int,
    ceiling: Ceiling,
    cache: Path,
    log_root: Path,
    instances: str,
    repeats: int,
) -> list[Row]:
    """Every configuration runs the same `samples` LoadGen samples, `repeats` times in turn (reference,
    optimized fp32, int8..., then again), so that a slow spell of a shared machine hits them all alike;
    each row keeps the best of its repeats (all are in `runs_samples_per_second`)."""
    flop_model = FlopModel.of(fp32)
    seq_len = np.asarray(features.seq_len, dtype=np.int64)
    configs: list[tuple[str, str, Path, bool]] = [("reference", "fp32", fp32, True), ("optimized", "fp32", fp32, False)]
    configs += [("optimized", label, path, False) for label, path in int8s.items()]
    best: dict[int, LgRun] = {}
    settings: dict[int, dict[str, str]] = {}
    all_rates: dict[int, list[float]] = {i: [] for i in range(len(configs))}
    first_indices: list[int] | None = None
    for repeat in range(repeats):
        ceiling.measure()
        for i, (sut_kind, precision, model, reference) in enumerate(configs):
            engine = ort_engine(model, reference=reference, cache=cache, instances="1" if reference else instances)
            settings[i] = engine.settings()
            try:
                run = loadgen_offline(
                    engine,
                    features,
                    kind=sut_kind,
                    batch=1 if reference else batch,
                    samples=samples,
                    log_dir=log_root / f"{name}-{sut_kind}-{precision}-perf-{repeat}",
                )
            finally:
                engine.close()
            if first_indices is None:
                first_indices = run.indices
            assert run.indices == first_indices, "LoadGen issued other samples than in the first run"
            all_rates[i].append(round(run.samples_per_second, 3))
            if i not in best or run.samples_per_second > best[i].samples_per_second:
                best[i] = run
            print(
                f"[{name}] {sut_kind} {precision} run {repeat + 1}/{repeats}: {run.samples_per_second:.2f} samples/s",
                flush=True,
            )
    rows: list[Row] = []
    fp32_f1: float | None = None
    reference_rate = best[0].samples_per_second
    for i, (sut_kind, precision, model, reference) in enumerate(configs):
        run = best[i]
        real = seq_len[np.asarray(run.indices)]
        seconds = run.samples / run.samples_per_second
        gflops = flop_model.flops(real) / seconds / 1e9
        row = Row(
            model=name,
            sut=sut_kind,
            precision=precision,
            batch_size=1 if reference else batch,
            samples=run.samples,
            samples_per_second=round(run.samples_per_second, 2),
            runs_samples_per_second=all_rates[i],
            real_tokens_per_second=round(float(real.sum()) / seconds, 1),
            gflops_real=round(gflops, 1),
            engine_settings=settings[i],
        )
        if not reference:
            row.ratio_to_reference = round(run.samples_per_second / reference_rate, 2)
            # Runs of one round are minutes apart at most: their ratio is the least exposed to the drift.
            row.round_ratios = [round(a / b, 2) for a, b in zip(all_rates[i], all_rates[0], strict=True)]
            row.median_round_ratio = round(statistics.median(row.round_ratios), 2)
        # F1 of the optimized runs (the reference's fp32 logits equal the optimized fp32 ones: tests/).
        if scorer is not None and accuracy_samples and not reference:
            engine = ort_engine(model, reference=False, cache=cache, instances=instances)
            try:
                acc_dir = log_root / f"{name}-{sut_kind}-{precision}-acc"
                loadgen_offline(
                    engine,
                    features,
                    kind=sut_kind,
                    batch=batch,
                    samples=accuracy_samples,
                    log_dir=acc_dir,
                    accuracy=True,
                )
            finally:
                engine.close()
            f1, questions = scorer.f1(acc_dir)
            row.f1, row.f1_questions = round(f1, 3), questions
            if precision == "fp32":
                fp32_f1 = f1
            print(f"[{name}] {sut_kind} {precision}: F1 {f1:.3f} on {questions} questions", flush=True)
        rows.append(row)
    for row in rows:
        if row.f1 is not None and fp32_f1:
            row.f1_ratio_to_fp32 = round(row.f1 / fp32_f1, 4)
    return rows


# ---- preprocessing and scoring times -------------------------------------------------------------------
def text_timings() -> dict[str, float]:
    from orchestrator.accuracy import score_run
    from orchestrator.dataset import build_features

    spec = importlib.util.spec_from_file_location("bench_accuracy", REPO / "benchmarks" / "bench_accuracy.py")
    assert spec and spec.loader
    bench_accuracy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_accuracy)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        path = build_features(EMBEDDED_DATASET, EMBEDDED_VOCAB, Path(tmp) / "features")
        preprocess_s = time.perf_counter() - t
        features = load_feature_arrays(path)
        acc = Path(tmp) / "accuracy"
        acc.mkdir()
        bench_accuracy.write_random_log(acc / "mlperf_log_accuracy.json", np.asarray(features.seq_len), 0)
        t = time.perf_counter()
        report = score_run(acc, path, EMBEDDED_DATASET, EMBEDDED_VOCAB, None)
        score_s = time.perf_counter() - t
    return {
        "preprocess_dev_set_s": round(preprocess_s, 2),
        "score_s": round(score_s, 2),
        "features_scored": report.features_total,
    }


# ---- main ----------------------------------------------------------------------------------------------
def demo_fp32(cache: Path) -> Path | None:
    if SHARED_FP32.is_file():
        return SHARED_FP32
    cached = cache / "assets" / "demo-fp32"
    found = sorted(cached.glob("*.onnx")) if cached.is_dir() else []
    return found[0] if found else None


def large_model(cache: Path) -> Path:
    from orchestrator.assets.synthetic import write_synthetic_bert

    path = cache / "assets" / "bert-large-synthetic" / "bert-large-synthetic-fp32.onnx"
    if not path.is_file():
        print(f"building the BERT-large-shaped random model at {path} (~1.3 GB, once)", flush=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_synthetic_bert(path)
    return path


def int8_of(fp32: Path, cache: Path) -> Path:
    """The default int8 recipe of orchestrator/harness/engines/onnxruntime_int8.py (every MatMul, per-channel), cached."""
    from orchestrator.harness.engines.onnxruntime_fusions import file_sha256
    from orchestrator.harness.engines.onnxruntime_int8 import quantize_int8

    out = cache / "bench-int8" / f"{fp32.stem}-{file_sha256(fp32, cache / 'optimized' / 'sha256')[:16]}.all.int8.onnx"
    if not out.is_file():
        print(f"quantizing {fp32.name} -> {out}", flush=True)
        quantize_int8(fp32, out, optimized_cache_dir=cache / "optimized")
    return out


def print_table(rows: list[Row]) -> str:
    lines = [
        "| model | SUT | precision | batch | samples | samples/s (best) | x reference (best) | x reference "
        "(median of rounds) | real tok/s | GFLOP/s (real) | of ceiling | F1 (questions) | F1 / fp32 F1 |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        f1 = f"{r.f1:.2f} ({r.f1_questions})" if r.f1 is not None else "-"
        lines.append(
            f"| {r.model} | {r.sut} | {r.precision} | {r.batch_size} | {r.samples} | {r.samples_per_second:.2f} | "
            f"{r.ratio_to_reference or '-'} | {r.median_round_ratio or '-'} | {r.real_tokens_per_second} | "
            f"{r.gflops_real} | "
            f"{r.fraction_of_ceiling:.0%} | {f1} | {r.f1_ratio_to_fp32 or '-'} |"
        )
    text = "\n".join(lines)
    print(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts: a try-out, not a result")
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--skip-int8-large", action="store_true", help="no int8 run of the BERT-large shapes")
    parser.add_argument("--demo-samples", type=int, default=512, help="LoadGen samples per demo run (all SUTs)")
    parser.add_argument("--large-samples", type=int, default=48, help="LoadGen samples per BERT-large run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per configuration, in turn; the best counts")
    parser.add_argument(
        "--accuracy-samples",
        type=int,
        default=10833,
        help="first features scored for F1 (demo); the default is the full dev set, MLPerf's criterion",
    )
    # The defaults are what `mlperf-bert run` uses on the CPU in Offline: the target's batch size and
    # instances=auto (one single-threaded instance per core, capped by memory).
    parser.add_argument("--demo-batch", type=int, default=CPU_TARGET.batch_size)
    parser.add_argument("--large-batch", type=int, default=CPU_TARGET.batch_size)
    parser.add_argument("--demo-instances", default="auto", help="onnxruntime instances, optimized SUT (N or auto)")
    parser.add_argument("--large-instances", default="auto", help="onnxruntime instances, optimized SUT (N or auto)")
    parser.add_argument("--overhead-samples", type=int, default=300_000)
    parser.add_argument("--overhead-batch", type=int, default=64)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here")
    args = parser.parse_args()
    if args.quick:
        args.demo_samples, args.accuracy_samples, args.repeats = 128, 200, 1
        args.large_samples, args.overhead_samples = 8, 50_000
    cache = (args.cache_dir or default_cache_dir()).expanduser()
    results: dict[str, Any] = {"machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    print(json.dumps(results["machine"]), flush=True)

    from orchestrator.dataset import build_features
    from orchestrator.harness.engines.onnxruntime_fusions import file_sha256

    features_path = build_features(EMBEDDED_DATASET, EMBEDDED_VOCAB, cache / "features")
    features = load_feature_arrays(features_path)
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
        logs = Path(tmp)
        results["harness_overhead"] = harness_overhead(
            features, args.overhead_samples, args.overhead_batch, logs / "overhead"
        )
        print("harness overhead:", json.dumps(results["harness_overhead"]), flush=True)
        ceiling = Ceiling()
        rows: list[Row] = []
        if not args.skip_demo:
            fp32 = demo_fp32(cache)
            if fp32 is None:
                print("demo fp32 model not found (../shared/assets or `mlperf-bert assets import`): demo skipped")
                results["demo"] = "skipped: no fp32 demo model"
            else:
                scorer = Scorer(features_path)
                ours = int8_of(fp32, cache)
                int8s = {"int8": ours}
                if file_sha256(ours) != file_sha256(EMBEDDED_MODEL):  # the same recipe gives the embedded file
                    int8s["int8 (embedded)"] = EMBEDDED_MODEL
                rows += family(
                    "demo MiniLM-L6",
                    fp32,
                    int8s,
                    features,
                    scorer,
                    batch=args.demo_batch,
                    samples=args.demo_samples,
                    accuracy_samples=args.accuracy_samples,
                    ceiling=ceiling,
                    cache=cache,
                    log_root=logs,
                    instances=args.demo_instances,
                    repeats=args.repeats,
                )
        if not args.skip_large:
            large = large_model(cache)
            int8s = {} if args.skip_int8_large else {"int8": int8_of(large, cache)}
            rows += family(
                "BERT-large shapes (random)",
                large,
                int8s,
                features,
                None,
                batch=args.large_batch,
                samples=args.large_samples,
                accuracy_samples=0,
                ceiling=ceiling,
                cache=cache,
                log_root=logs,
                instances=args.large_instances,
                repeats=args.repeats,
            )
        ceiling.measure()
        results["matmul_ceiling"] = {"best_gflops": ceiling.best, "measurements": ceiling.measurements}
        for r in rows:
            r.fraction_of_ceiling = round((r.gflops_real or 0.0) / ceiling.best, 3)
        print(f"matmul ceiling (best of {len(ceiling.measurements)}): {ceiling.best} GFLOP/s", flush=True)
        results["rows"] = [asdict(r) for r in rows]
        results["table"] = print_table(rows)
    results["text"] = text_timings()
    print("text:", json.dumps(results["text"]), flush=True)
    results["machine_after"] = {"load_average": list(os.getloadavg())}
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    print("load average after:", results["machine_after"]["load_average"])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
