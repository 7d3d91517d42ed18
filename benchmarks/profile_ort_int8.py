"""Where an onnxruntime model spends its time, per op type (onnxruntime's own profiler, `enable_profiling`).

    .venv/bin/python benchmarks/profile_ort_int8.py MODEL.onnx [MODEL2.onnx ...] [--batch 32 --batches 8]

Each model runs the first `--batch x --batches` dev features in batches trimmed to their longest real
length (as the optimized SUT does, lengths sorted), one intra-op thread (what Offline's auto instances use
on the CPU), the session's ORT_ENABLE_ALL fusions; after one warm-up batch the profiler's Node events are
summed per op type. Prints a table per model: ms, share of the node time, count per batch.

`--ab N`: instead, time the models against each other in one process, batch by batch in turn (model A's
batch i, model B's batch i, ...), N passes; per model the sum over batches of each batch's fastest pass, as
samples/s. On a shared machine this compares like with like within milliseconds, where whole harness runs a
minute apart see different loads.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from orchestrator.dataset import build_features, load_features  # noqa: E402
from orchestrator.paths import EMBEDDED_DATASET, EMBEDDED_VOCAB, default_cache_dir  # noqa: E402


def batches(batch: int, count: int) -> list[dict[str, np.ndarray]]:
    f = load_features(build_features(EMBEDDED_DATASET, EMBEDDED_VOCAB, default_cache_dir() / "features"))
    order = np.argsort(np.asarray(f.seq_len[: batch * count]), kind="stable")
    out = []
    for i in range(count):
        idx = order[i * batch : (i + 1) * batch]
        width = int(np.asarray(f.seq_len)[idx].max())
        out.append(
            {
                "input_ids": np.asarray(f.input_ids)[idx, :width].astype(np.int64),
                "input_mask": np.asarray(f.input_mask)[idx, :width].astype(np.int64),
                "segment_ids": np.asarray(f.segment_ids)[idx, :width].astype(np.int64),
            }
        )
    return out


def profile(model: Path, feeds: list[dict[str, np.ndarray]], threads: int) -> dict[str, tuple[float, int]]:
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = threads
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tmp) / "prof")
        session = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
        names = {i.name for i in session.get_inputs()}
        session.run(None, {k: v for k, v in feeds[0].items() if k in names})  # warm-up, excluded below
        for feed in feeds:
            session.run(None, {k: v for k, v in feed.items() if k in names})
        events = json.loads(Path(session.end_profiling()).read_text())
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    start = runs[1]["ts"] if len(runs) > 1 else 0  # skip the warm-up run
    totals: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0])
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= start:
            op = e.get("args", {}).get("op_name", "?")
            totals[op][0] += e["dur"] / 1000.0
            totals[op][1] += 1
    return {op: (ms, int(n) // len(feeds)) for op, (ms, n) in totals.items()}


def interleaved(models: list[Path], feeds: list[dict[str, np.ndarray]], threads: int, passes: int) -> list[float]:
    import time

    import onnxruntime as ort

    sessions = []
    for model in models:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = threads
        sessions.append(ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"]))
    best = np.full((len(models), len(feeds)), np.inf)
    for _ in range(passes + 1):  # the first pass warms up and counts too (the minimum discards it)
        for b, feed in enumerate(feeds):
            for m, session in enumerate(sessions):
                t = time.perf_counter()
                session.run(None, feed)
                best[m, b] = min(best[m, b], time.perf_counter() - t)
    samples = sum(next(iter(f.values())).shape[0] for f in feeds)
    return [samples / float(row.sum()) for row in best]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ab", type=int, default=0, metavar="N", help="interleaved timing, N passes (no profile)")
    args = parser.parse_args()
    feeds = batches(args.batch, args.batches)
    print(f"load {Path('/proc/loadavg').read_text().split()[:3]}; {args.batches} batches of {args.batch}")
    if args.ab:
        rates = interleaved(args.models, feeds, args.threads, args.ab)
        print("| model | samples/s (sum of each batch's best) | x first |")
        print("|---|---:|---:|")
        for model, rate in zip(args.models, rates, strict=True):
            print(f"| {model} | {rate:.2f} | {rate / rates[0]:.3f} |")
        print(f"load after {Path('/proc/loadavg').read_text().split()[:3]}")
        return
    for model in args.models:
        totals = profile(model, feeds, args.threads)
        total = sum(ms for ms, _ in totals.values())
        print(f"\n{model.name}: {total:.0f} ms of node time ({total / args.batches:.1f} ms per batch)")
        print("| op type | ms | share | per batch |")
        print("|---|---:|---:|---:|")
        for op, (ms, n) in sorted(totals.items(), key=lambda kv: -kv[1][0]):
            print(f"| {op} | {ms:.1f} | {ms / total:.1%} | {n} |")


if __name__ == "__main__":
    main()
