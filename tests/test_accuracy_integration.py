"""Accuracy on real data: the dev set's features, a real LoadGen accuracy log, the embedded int8 model.

onnxruntime and mlperf_loadgen are imported here, in the test, never by orchestrator.accuracy.
"""

from __future__ import annotations

import array
import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from orchestrator.accuracy import score_run
from orchestrator.accuracy.postprocess import detokenize, get_final_text, predict
from orchestrator.dataset import (
    Features,
    build_features,
    feature_tokens,
    load_examples,
    load_features,
    load_vocab,
)
from orchestrator.errors import DatasetError
from orchestrator.paths import EMBEDDED_DATASET, EMBEDDED_MODEL, EMBEDDED_VOCAB

# The demo model's card: int8 F1 78.58 over the first 2000 questions (79.80 over the full dev set).
DEMO_INT8_F1 = 79.80
FIRST_QUESTIONS = 100


@pytest.fixture(scope="module")
def features_path(session_cache: Path) -> Path:
    return build_features(EMBEDDED_DATASET, EMBEDDED_VOCAB, session_cache)


@pytest.fixture(scope="module")
def features(features_path: Path) -> Features:
    return load_features(features_path)


def _reference_answers(
    examples: list,
    features: Features,
    logits: dict[int, np.ndarray],
    tokens_of: Callable[[int], list[str]],
    questions: list[int],
) -> dict[str, str]:
    """The reference's loops written out plainly (accuracy-squad.py write_predictions): pad to 384 with
    -10000, sort all 384 positions, pair the top 20, keep valid pairs, sort by score, take the first."""
    answers = {}
    for q in questions:
        prelim = []
        for f in np.flatnonzero(features.example_index == q).tolist():
            start = np.full(384, -10000.0)
            end = np.full(384, -10000.0)
            start[: len(logits[f])] = logits[f][:, 0]
            end[: len(logits[f])] = logits[f][:, 1]
            start_l, end_l = start.tolist(), end.tolist()
            best_starts = sorted(range(384), key=lambda i: start_l[i], reverse=True)[:20]
            best_ends = sorted(range(384), key=lambda i: end_l[i], reverse=True)[:20]
            n_tokens = int(features.seq_len[f])
            for s in best_starts:
                for e in best_ends:
                    if s >= n_tokens or e >= n_tokens:
                        continue
                    if features.token_to_orig_map[f, s] < 0 or features.token_to_orig_map[f, e] < 0:
                        continue
                    if not features.token_is_max_context[f, s] or e < s or e - s + 1 > 30:
                        continue
                    prelim.append((start_l[s] + end_l[e], f, s, e))
        prelim.sort(key=lambda p: p[0], reverse=True)
        if not prelim:
            answers[examples[q].qas_id] = "empty"
            continue
        _, f, s, e = prelim[0]
        orig = examples[q].doc_tokens[features.token_to_orig_map[f, s] : features.token_to_orig_map[f, e] + 1]
        answers[examples[q].qas_id] = get_final_text(detokenize(tokens_of(f)[s : e + 1]), " ".join(orig))
    return answers


def test_vectorized_post_processing_matches_the_reference_loops(features: Features) -> None:
    examples = load_examples(EMBEDDED_DATASET)
    vocab = load_vocab(EMBEDDED_VOCAB)
    questions = list(range(300))
    rng = np.random.default_rng(1)
    logits = {}
    for f in np.flatnonzero(features.example_index < len(questions)).tolist():
        # Rounded to one decimal: many ties, so the tie-breaking order is tested as well.
        values = np.round(rng.standard_normal((int(features.seq_len[f]), 2)) * 3, 1)
        logits[f] = values.astype(np.float32)

    def tokens_of(i: int) -> list[str]:
        return feature_tokens(features, i, vocab)

    ours = predict(examples, features, logits, tokens_of, questions)
    assert ours == _reference_answers(examples, features, logits, tokens_of, questions)
    assert len(ours) == len(questions)


def _run_int8_model(features: Features, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ort = pytest.importorskip("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(EMBEDDED_MODEL), options, providers=["CPUExecutionProvider"])
    starts, ends = [], []
    for batch in np.array_split(rows, max(1, len(rows) // 16)):
        # Padded to 384 like the reference SUT, so padding positions carry real model outputs.
        start, end = session.run(
            ["output_start_logits", "output_end_logits"],
            {
                "input_ids": features.input_ids[batch].astype(np.int64),
                "input_mask": features.input_mask[batch].astype(np.int64),
                "segment_ids": features.segment_ids[batch].astype(np.int64),
            },
        )
        starts.append(start)
        ends.append(end)
    return np.concatenate(starts), np.concatenate(ends)


def _loadgen_accuracy_log(out_dir: Path, responses: list[np.ndarray]) -> Path:
    """Have the real LoadGen issue every sample once (AccuracyOnly) and log our responses."""
    lg = pytest.importorskip("mlperf_loadgen")
    out_dir.mkdir(parents=True, exist_ok=True)
    keep_alive: list[array.array] = []

    def issue_queries(queries: list) -> None:
        done = []
        for query in queries:
            buffer = array.array("B", responses[query.index].astype(np.float32).tobytes())
            keep_alive.append(buffer)
            address, _ = buffer.buffer_info()
            done.append(lg.QuerySampleResponse(query.id, address, len(buffer)))
        lg.QuerySamplesComplete(done)

    sut = lg.ConstructSUT(issue_queries, lambda: None)
    qsl = lg.ConstructQSL(len(responses), len(responses), lambda samples: None, lambda samples: None)
    settings = lg.TestSettings()
    settings.scenario = lg.TestScenario.Offline
    settings.mode = lg.TestMode.AccuracyOnly
    log_output = lg.LogOutputSettings()
    log_output.outdir = str(out_dir)
    log_output.copy_summary_to_stdout = False
    log_settings = lg.LogSettings()
    log_settings.log_output = log_output
    log_settings.enable_trace = False
    try:
        lg.StartTestWithLogSettings(sut, qsl, settings, log_settings)
    finally:
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
    return out_dir / "mlperf_log_accuracy.json"


def test_score_run_refuses_another_dataset(tmp_path: Path, features_path: Path) -> None:
    other = tmp_path / "dev.json"
    other.write_bytes(EMBEDDED_DATASET.read_bytes().replace(b"Denver Broncos", b"Denver  Broncos", 1))
    (tmp_path / "accuracy").mkdir()
    with pytest.raises(DatasetError, match="built from another dataset"):
        score_run(tmp_path / "accuracy", features_path, other, EMBEDDED_VOCAB, None)


@pytest.mark.slow
def test_int8_model_scores_plausibly_and_packing_does_not_matter(
    tmp_path: Path, features: Features, features_path: Path
) -> None:
    # The features of the first questions are the first rows (features are in question order), so
    # QSL index i is feature i for a LoadGen QSL of just these rows.
    rows = np.flatnonzero(features.example_index < FIRST_QUESTIONS)
    assert np.array_equal(rows, np.arange(len(rows)))
    start, end = _run_int8_model(features, rows)
    padded = [np.stack([start[i], end[i]], axis=1) for i in range(len(rows))]
    packed = [p[: int(features.seq_len[i])] for i, p in enumerate(padded)]

    reports = {}
    for name, responses in (("packed", packed), ("padded", padded)):
        log_path = _loadgen_accuracy_log(tmp_path / name, responses)
        reports[name] = score_run(tmp_path / name, features_path, EMBEDDED_DATASET, EMBEDDED_VOCAB, DEMO_INT8_F1)
        accuracy_txt = (tmp_path / name / "accuracy.txt").read_text().splitlines()
        assert re.match(r"^{[\"\']exact_match[\"\']\:\s*[\d\.]+,\s*[\"\']f1[\"\']\:\s*([\d\.]+)}", accuracy_txt[0])
        assert accuracy_txt[1] == "hash=" + hashlib.sha256(log_path.read_bytes()).hexdigest()

    report = reports["packed"]
    assert report.partial and report.questions_scored == FIRST_QUESTIONS
    assert report.questions_partly_answered == 0
    assert report.features_answered == len(rows) and report.features_total == 10833
    assert report.f1 > 60, f"F1 {report.f1} is implausibly low for the demo model (card: ~79)"
    assert report.exact_match > 45
    # A response at its real length and the same response padded to 384 score the same.
    assert reports["padded"].f1 == report.f1 and reports["padded"].exact_match == report.exact_match
    packed_predictions = json.loads((tmp_path / "packed" / "predictions.json").read_text())
    assert packed_predictions == json.loads((tmp_path / "padded" / "predictions.json").read_text())
    assert len(packed_predictions) == FIRST_QUESTIONS
