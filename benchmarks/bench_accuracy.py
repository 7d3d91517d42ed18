"""Time accuracy scoring of a full accuracy run: 10,833 features -> answers -> EM/F1 -> accuracy.txt.

The logits are RANDOM (seeded normal noise), so the EM/F1 printed are meaningless: this measures
time only. Post-processing does the same work whatever the logits are (top-20 starts and ends per
feature, 400 pairs each, one get_final_text per question), so the timing is representative.

    .venv/bin/python benchmarks/bench_accuracy.py [--dataset dev-v1.1.json] [--vocab vocab.txt]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from orchestrator.accuracy import evaluate, predict, score_run
from orchestrator.accuracy.logits import read_accuracy_log
from orchestrator.dataset import build_features, feature_tokens, load_examples, load_features, load_vocab
from orchestrator.paths import EMBEDDED_DATASET, EMBEDDED_VOCAB


def write_random_log(path: Path, seq_len: np.ndarray, seed: int) -> None:
    """An accuracy log in LoadGen's layout, each response at the feature's real length."""
    rng = np.random.default_rng(seed)
    with path.open("w", encoding="ascii") as out:
        out.write("[\n")
        for i, length in enumerate(seq_len.tolist()):
            data = rng.standard_normal((length, 2)).astype(np.float32).tobytes().hex().upper()
            sep = ",\n" if i + 1 < len(seq_len) else "\n"
            out.write(f'{{ "seq_id" : {i}, "qsl_idx" : {i}, "data" : "{data}" }}{sep}')
        out.write("]\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=EMBEDDED_DATASET)
    parser.add_argument("--vocab", type=Path, default=EMBEDDED_VOCAB)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        features_path = build_features(args.dataset, args.vocab, work / "cache")
        features = load_features(features_path)
        accuracy_dir = work / "accuracy"
        accuracy_dir.mkdir()
        log_path = accuracy_dir / "mlperf_log_accuracy.json"
        write_random_log(log_path, np.asarray(features.seq_len), args.seed)

        # The phases alone, with the inputs already loaded...
        examples = load_examples(args.dataset)
        vocab = load_vocab(args.vocab)
        start = time.perf_counter()
        logits = read_accuracy_log(log_path)
        read_s = time.perf_counter() - start
        start = time.perf_counter()
        predictions = predict(
            examples, features, logits, lambda i: feature_tokens(features, i, vocab), range(len(examples))
        )
        postprocess_s = time.perf_counter() - start
        start = time.perf_counter()
        evaluate(examples, predictions)
        evaluate_s = time.perf_counter() - start

        # ...and everything a run does: load dataset, features and vocab, read, post-process, score, write.

        start = time.perf_counter()
        report = score_run(accuracy_dir, features_path, args.dataset, args.vocab, reference_f1=90.874)
        total_s = time.perf_counter() - start
        log_mb = round(log_path.stat().st_size / 1e6, 1)

    print(
        json.dumps(
            {
                "features": report.features_total,
                "questions": report.questions_scored,
                "log_mb": log_mb,
                "read_log_s": round(read_s, 3),
                "postprocess_s": round(postprocess_s, 3),
                "evaluate_s": round(evaluate_s, 3),
                "score_run_s": round(total_s, 3),
                "note": "random logits: time only, the scores are meaningless",
                "f1_of_random_logits": round(report.f1, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
