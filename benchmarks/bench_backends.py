"""Every CPU backend side by side through the real harness: the same samples, the same scenario.

The throughput benchmark (bench_throughput.py) compares SUTs inside one process; DeepSparse and PyTorch
live in their own virtual environments, so this script drives each backend through the public API (the
local runner, one child process per run) over the same LoadGen samples, and prints samples/s in Offline
performance mode and F1 over the same questions in accuracy mode.

    .venv/bin/python benchmarks/bench_backends.py [--samples 256] [--questions 200] [--shared ../shared]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

from orchestrator.api import run_benchmark
from orchestrator.config import RunConfig

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=256, help="Offline performance samples per backend")
    parser.add_argument("--questions", type=int, default=200, help="accuracy samples per backend")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared", help="the shared assets folder")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    models = args.shared / "assets" / "models"
    fp32 = models / "demo-minilm-l6-squad.fp32.onnx"
    checkpoint = models / "demo-minilm-l6-squad-hf"
    if not fp32.is_file() or not checkpoint.is_dir():
        print(f"needs the demo fp32 model and checkpoint under {models}", file=sys.stderr)
        return 2
    # The same weights everywhere: the fp32 ONNX for ONNX Runtime and DeepSparse, its checkpoint for PyTorch.
    backends = [("onnxruntime", fp32), ("deepsparse", fp32), ("pytorch", checkpoint)]
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for backend, model in backends:
            common = dict(
                runner="local", backend=backend, model_path=model, batch_size=args.batch_size, output_dir=Path(out)
            )
            perf = run_benchmark(
                RunConfig(mode="performance", test_query_count=args.samples, **common), progress=False, stream=False
            ).performance
            acc = run_benchmark(
                RunConfig(mode="accuracy", test_query_count=args.questions, **common), progress=False, stream=False
            ).accuracy
            rows.append(
                {
                    "backend": backend,
                    "model": model.name,
                    "samples": perf.samples_issued,
                    "samples_per_second": round(perf.samples_per_second, 2),
                    "f1": round(acc.f1, 3),
                    "questions": acc.questions_scored,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    print("\n| backend | model | samples | samples/s (Offline) | F1 (questions) |\n|---|---|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['backend']} | {r['model']} | {r['samples']} | {r['samples_per_second']} | {r['f1']} ({r['questions']}) |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
