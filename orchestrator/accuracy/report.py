"""Score an accuracy run: accuracy log -> answers -> EM/F1 -> accuracy.txt, predictions.json, accuracy.json.

A question is scored only when every one of its features (windows) was answered: a partly answered
question could have its answer in a missing window. A run that answered fewer than all features is
`partial`; its score is over the questions it answered, so the comparison with the reference
(over the full dev set) is only indicative.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from orchestrator.accuracy.logits import parse_accuracy_log
from orchestrator.accuracy.metric import evaluate
from orchestrator.accuracy.postprocess import FeaturesLike, predict, split_answered
from orchestrator.dataset import feature_tokens, load_examples, load_features, load_vocab
from orchestrator.errors import DatasetError, RunError

log = logging.getLogger(__name__)

ACCURACY_LOG = "mlperf_log_accuracy.json"
ACCURACY_TXT = "accuracy.txt"
PREDICTIONS_JSON = "predictions.json"
ACCURACY_JSON = "accuracy.json"

BERT_99 = 0.99
BERT_99_9 = 0.999


class ScoredExample(Protocol):
    @property
    def qas_id(self) -> str: ...
    @property
    def doc_tokens(self) -> Sequence[str]: ...
    @property
    def answers(self) -> Sequence[str]: ...


@dataclass(frozen=True)
class AccuracyReport:
    exact_match: float  # percent, over questions_scored
    f1: float  # percent, over questions_scored
    questions_scored: int  # questions whose features were all answered
    questions_in_dataset: int
    questions_partly_answered: int  # some but not all features answered: left out
    features_answered: int
    features_total: int
    partial: bool  # not every feature was answered
    reference_f1: float | None  # the F1 of the reference model, full dev set
    ratio: float | None  # f1 / reference_f1
    passes_bert_99: bool | None  # f1 >= 99% of reference_f1
    passes_bert_99_9: bool | None  # f1 >= 99.9% of reference_f1
    note: str | None  # why a partial run's comparison is only indicative


def score_run(
    accuracy_dir: Path,
    features_path: Path,
    dataset_path: Path,
    vocab_path: Path,
    reference_f1: float | None,
) -> AccuracyReport:
    """Score accuracy_dir/mlperf_log_accuracy.json and write accuracy.txt, predictions.json, accuracy.json."""
    features = load_features(features_path)
    # Token positions only mean something with the dataset and vocab the features were built from.
    for name, path in (("dataset", dataset_path), ("vocab", vocab_path)):
        expected = features.meta.get(f"{name}_sha256")
        if expected and _sha256_of(Path(path)) != expected:
            raise DatasetError(
                f"The features {features_path} were built from another {name} than {path}; "
                f"score with the {name} the run used."
            )
    examples = load_examples(dataset_path)
    vocab = load_vocab(vocab_path)
    return score_logs(
        Path(accuracy_dir),
        examples,
        features,
        lambda i: feature_tokens(features, i, vocab),
        reference_f1,
    )


def score_logs(
    accuracy_dir: Path,
    examples: Sequence[ScoredExample],
    features: FeaturesLike,
    tokens_of: Callable[[int], Sequence[str]],
    reference_f1: float | None,
) -> AccuracyReport:
    """`score_run` with the dataset already loaded; tokens_of(i) gives feature i's WordPiece tokens."""
    log_path = accuracy_dir / ACCURACY_LOG
    try:
        raw = log_path.read_bytes()
    except OSError as exc:
        raise RunError(
            f"The accuracy log {log_path} cannot be read ({exc.strerror}); rerun the accuracy mode."
        ) from exc
    log_hash = hashlib.sha256(raw).hexdigest()
    logits = parse_accuracy_log(raw, source=str(log_path))
    del raw

    example_index = np.asarray(features.example_index)
    features_total = len(example_index)
    out_of_range = [i for i in logits if i >= features_total]
    if out_of_range:
        raise RunError(
            f"The accuracy log answers qsl_idx {min(out_of_range)} but there are only {features_total} "
            "features; score it with the features the run used."
        )
    if features_total and int(example_index.max()) >= len(examples):
        raise RunError(
            f"The features refer to question {int(example_index.max())} but the dataset has "
            f"{len(examples)}; score with the dataset the features were built from."
        )

    complete, partly = split_answered(example_index, logits.keys())
    if not complete:
        raise RunError(
            f"No question had all of its features answered ({len(logits)} of {features_total} "
            "features in the log); run accuracy mode over more samples."
        )
    predictions = predict(examples, features, logits, tokens_of, complete)
    scores = evaluate(
        examples,
        predictions,
        question_ids=[examples[i].qas_id for i in complete],
    )
    report = _report(scores, len(examples), len(partly), len(logits), features_total, reference_f1)

    _write_atomic(accuracy_dir / PREDICTIONS_JSON, json.dumps(predictions, indent=4) + "\n")
    _write_atomic(accuracy_dir / ACCURACY_TXT, accuracy_txt(report.exact_match, report.f1, log_hash))
    _write_atomic(accuracy_dir / ACCURACY_JSON, json.dumps(dataclasses.asdict(report), indent=2) + "\n")
    log.info(
        "Scored %d questions: EM %.3f, F1 %.3f (accuracy.txt, predictions.json in %s)",
        report.questions_scored,
        report.exact_match,
        report.f1,
        accuracy_dir,
    )
    return report


def _report(
    scores: dict[str, float | int],
    questions_in_dataset: int,
    questions_partly_answered: int,
    features_answered: int,
    features_total: int,
    reference_f1: float | None,
) -> AccuracyReport:
    f1 = float(scores["f1"])
    questions_scored = int(scores["questions"])
    partial = features_answered < features_total
    ratio, passes_99, passes_99_9 = compare_to_reference(f1, reference_f1)
    note = None
    if partial:
        note = (
            f"scored over {questions_scored} of {questions_in_dataset} questions; the reference is over "
            "the full dev set, so the comparison is indicative"
        )
        if questions_partly_answered:
            note += f" ({questions_partly_answered} questions only partly answered were left out)"
    return AccuracyReport(
        exact_match=float(scores["exact_match"]),
        f1=f1,
        questions_scored=questions_scored,
        questions_in_dataset=questions_in_dataset,
        questions_partly_answered=questions_partly_answered,
        features_answered=features_answered,
        features_total=features_total,
        partial=partial,
        reference_f1=reference_f1,
        ratio=ratio,
        passes_bert_99=passes_99,
        passes_bert_99_9=passes_99_9,
        note=note,
    )


def compare_to_reference(f1: float, reference_f1: float | None) -> tuple[float | None, bool | None, bool | None]:
    """(f1 / reference, passes bert-99, passes bert-99.9); all None without a reference F1."""
    if not reference_f1:
        return None, None, None
    # The checker compares F1 with target = reference * 0.99 (not the ratio with 0.99): do the same,
    # so that a score at the very edge gets the checker's verdict.
    return f1 / reference_f1, f1 >= reference_f1 * BERT_99, f1 >= reference_f1 * BERT_99_9


def plain_decimal(value: float) -> str:
    """A float as the checker's `[\\d\\.]+` reads it: shortest round-trip digits, never an exponent."""
    if not np.isfinite(value) or value < 0:
        raise RunError(f"An accuracy of {value} cannot be written to accuracy.txt; this is a scoring bug.")
    text = repr(float(value))
    if "e" in text:
        # Only for values under 1e-4 (percent): fixed notation with enough digits to round-trip.
        text = np.format_float_positional(value, trim="0", unique=True)
    return text


def accuracy_txt(exact_match: float, f1: float, log_sha256: str) -> str:
    """accuracy.txt as the MLPerf checker reads it: the official script's JSON line, then the log hash."""
    return f'{{"exact_match": {plain_decimal(exact_match)}, "f1": {plain_decimal(f1)}}}\nhash={log_sha256}\n'


def format_report(report: AccuracyReport) -> str:
    """One line (two for a partial run) for people."""
    head = (
        f"EM {report.exact_match:.3f}, F1 {report.f1:.3f} over {report.questions_scored} of "
        f"{report.questions_in_dataset} questions ({report.features_answered}/{report.features_total} features)"
    )
    if report.reference_f1 is None or report.ratio is None:
        verdict = "no reference F1 to compare with"
    else:
        verdict = (
            f"{100 * report.ratio:.2f}% of reference F1 {report.reference_f1:g}: "
            f"bert-99 {'PASS' if report.passes_bert_99 else 'FAIL'}, "
            f"bert-99.9 {'PASS' if report.passes_bert_99_9 else 'FAIL'}"
        )
    if report.partial:
        return f"{head}; {verdict} (PARTIAL run, indicative only)\n{report.note}"
    return f"{head}; {verdict}"


def _sha256_of(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise DatasetError(f"{path} cannot be read ({exc.strerror}); check the path.") from exc


def _write_atomic(path: Path, text: str) -> None:
    """Write text to path so that readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; these files are meant to be shared and packaged
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        # Only left behind when writing failed: os.replace moved it otherwise.
        Path(tmp).unlink(missing_ok=True)
