"""Time the SQuAD -> features preprocessing: an uncached build, then a cached hit + load.

    python benchmarks/bench_preprocess.py [--dataset dev-v1.1.json] [--vocab vocab.txt] [--repeat 3]

Each uncached build goes to a fresh temporary cache directory, so nothing is reused between runs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from orchestrator.dataset import build_features, load_features
from orchestrator.paths import EMBEDDED_DATASET, EMBEDDED_VOCAB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=EMBEDDED_DATASET)
    parser.add_argument("--vocab", type=Path, default=EMBEDDED_VOCAB)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    uncached: list[float] = []
    cached: list[float] = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="bench-features-") as cache_dir:
            started = time.perf_counter()
            path = build_features(args.dataset, args.vocab, Path(cache_dir))
            uncached.append(time.perf_counter() - started)

            started = time.perf_counter()
            features = load_features(build_features(args.dataset, args.vocab, Path(cache_dir)))
            cached.append(time.perf_counter() - started)
            size_mb = path.stat().st_size / 1e6

    print(f"dataset: {args.dataset} ({features.meta['num_examples']} questions -> {len(features)} features)")
    print(f"uncached build:       {_summary(uncached)}")
    print(f"cached hit + load:    {_summary(cached)}")
    print(f"cache file:           {size_mb:.1f} MB")


def _summary(seconds: list[float]) -> str:
    return (
        f"{statistics.median(seconds):.2f} s median (min {min(seconds):.2f}, max {max(seconds):.2f}, n={len(seconds)})"
    )


if __name__ == "__main__":
    main()
