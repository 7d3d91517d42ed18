"""Scoring a run directory: accuracy.txt as the MLPerf checker reads it, partial runs, the report."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from orchestrator.accuracy.report import (
    AccuracyReport,
    accuracy_txt,
    compare_to_reference,
    format_report,
    plain_decimal,
    score_logs,
)
from orchestrator.errors import RunError

# The patterns of the official submission checker (mlcommons/inference, submission_checker
# constants ACC_PATTERN["F1"] and accuracy_check.py's hash line), applied with re.match per line.
CHECKER_F1 = r"^{[\"\']exact_match[\"\']\:\s*[\d\.]+,\s*[\"\']f1[\"\']\:\s*([\d\.]+)}"
CHECKER_HASH = r"^hash=([\w\d]+)$"

S = 384


@dataclass
class Example:
    qas_id: str
    doc_tokens: tuple[str, ...]
    answers: tuple[str, ...]


@dataclass
class Features:
    example_index: np.ndarray
    seq_len: np.ndarray
    token_to_orig_map: np.ndarray
    token_is_max_context: np.ndarray


DOC = ("The", "quick", "brown", "fox's", "den.")
TOKENS = ["[CLS]", "where", "?", "[SEP]", "the", "quick", "brown", "fox", "'", "s", "den", ".", "[SEP]"]
ORIG = {4: 0, 5: 1, 6: 2, 7: 3, 8: 3, 9: 3, 10: 4, 11: 4}


def _dataset() -> tuple[list[Example], Features]:
    """Question 0 has one window (feature 0), question 1 two (features 1 and 2), question 2 one (3)."""
    examples = [
        Example("q0", DOC, ("fox",)),
        Example("q1", DOC, ("the den", "den")),
        Example("q2", DOC, ("quick brown fox",)),
    ]
    n = 4
    t2o = np.full((n, S), -1, dtype=np.int32)
    for pos, orig in ORIG.items():
        t2o[:, pos] = orig
    features = Features(
        example_index=np.array([0, 1, 1, 2], dtype=np.int32),
        seq_len=np.full(n, len(TOKENS), dtype=np.int16),
        token_to_orig_map=t2o,
        token_is_max_context=t2o >= 0,
    )
    return examples, features


def _response(start: int, end: int, length: int = len(TOKENS), logit: float = 5.0) -> bytes:
    logits = np.zeros((length, 2), dtype=np.float32)
    logits[start, 0] = logit
    logits[end, 1] = logit
    return logits.tobytes()


def _write_log(accuracy_dir: Path, responses: dict[int, bytes]) -> Path:
    accuracy_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        f'{{ "seq_id" : {seq}, "qsl_idx" : {idx}, "data" : "{data.hex().upper()}" }}'
        for seq, (idx, data) in enumerate(responses.items())
    ]
    path = accuracy_dir / "mlperf_log_accuracy.json"
    path.write_text("[\n" + ",\n".join(lines) + "\n]\n", encoding="ascii")
    return path


def _score(accuracy_dir: Path, reference_f1: float | None = 90.874) -> AccuracyReport:
    examples, features = _dataset()
    return score_logs(accuracy_dir, examples, features, lambda i: TOKENS, reference_f1)


def test_full_run_writes_checker_readable_files(tmp_path: Path) -> None:
    # q0 -> "fox" (right), q1 -> "den" (right: its second window scores higher), q2 -> "quick brown"
    # (F1 0.8). Responses at real length, shorter, and padded to 384 all mix in one log.
    log_path = _write_log(
        tmp_path,
        {
            0: _response(7, 7),
            1: _response(4, 4, length=6, logit=2.0),
            2: _response(10, 10, length=384),
            3: _response(5, 6),
        },
    )
    report = _score(tmp_path)
    assert (report.questions_scored, report.questions_in_dataset, report.questions_partly_answered) == (
        3,
        3,
        0,
    )
    assert (report.features_answered, report.features_total, report.partial, report.note) == (
        4,
        4,
        False,
        None,
    )
    assert report.exact_match == pytest.approx(200 / 3)
    assert report.f1 == pytest.approx(100 * 2.8 / 3)
    assert report.ratio == pytest.approx(report.f1 / 90.874)
    assert report.passes_bert_99 is True and report.passes_bert_99_9 is True

    predictions = json.loads((tmp_path / "predictions.json").read_text())
    assert predictions == {"q0": "fox", "q1": "den", "q2": "quick brown"}

    lines = (tmp_path / "accuracy.txt").read_text().splitlines(keepends=True)
    assert len(lines) == 2
    f1_match = re.match(CHECKER_F1, lines[0])
    assert f1_match and float(f1_match.group(1)) == report.f1
    # The first line is exactly what the official accuracy-squad.py prints: json.dumps of the scores.
    assert lines[0] == json.dumps({"exact_match": report.exact_match, "f1": report.f1}) + "\n"
    hash_match = re.match(CHECKER_HASH, lines[1])
    assert hash_match and hash_match.group(1) == hashlib.sha256(log_path.read_bytes()).hexdigest()

    assert json.loads((tmp_path / "accuracy.json").read_text()) == dataclasses.asdict(report)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "accuracy.json",
        "accuracy.txt",
        "mlperf_log_accuracy.json",
        "predictions.json",
    ]  # no temporary files left behind


def test_partial_run_scores_only_fully_answered_questions(tmp_path: Path) -> None:
    # Features 0 and 1 only: q0 complete, q1 has one of its two windows, q2 none.
    _write_log(tmp_path, {1: _response(10, 10), 0: _response(7, 7)})
    report = _score(tmp_path)
    assert (report.questions_scored, report.questions_partly_answered) == (1, 1)
    assert (report.features_answered, report.features_total, report.partial) == (2, 4, True)
    assert report.exact_match == 100.0
    assert report.note == (
        "scored over 1 of 3 questions; the reference is over the full dev set, so the comparison is "
        "indicative (1 questions only partly answered were left out)"
    )
    assert json.loads((tmp_path / "predictions.json").read_text()) == {"q0": "fox"}
    text = format_report(report)
    assert "PARTIAL" in text and "indicative" in text and "1 of 3 questions" in text


def test_no_complete_question_is_an_error(tmp_path: Path) -> None:
    _write_log(tmp_path, {1: _response(10, 10)})
    with pytest.raises(RunError, match="No question had all of its features answered"):
        _score(tmp_path)


def test_qsl_index_beyond_the_features_is_an_error(tmp_path: Path) -> None:
    _write_log(tmp_path, {0: _response(7, 7), 9: _response(7, 7)})
    with pytest.raises(RunError, match="qsl_idx 9 but there are only 4 features"):
        _score(tmp_path)


def test_missing_log_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="cannot be read"):
        _score(tmp_path)


def test_fail_and_no_reference(tmp_path: Path) -> None:
    # Every answer is "s" (the end of "fox's"), which matches no ground truth.
    _write_log(tmp_path, {i: _response(9, 9) for i in range(4)})
    report = _score(tmp_path)
    assert report.f1 == 0.0 and report.passes_bert_99 is False and report.passes_bert_99_9 is False
    assert "bert-99 FAIL, bert-99.9 FAIL" in format_report(report)
    assert re.match(CHECKER_F1, (tmp_path / "accuracy.txt").read_text())  # "0.0" is a plain decimal

    report = _score(tmp_path, reference_f1=None)
    assert report.ratio is None and report.passes_bert_99 is None
    assert "no reference F1" in format_report(report)


def test_pass_thresholds_follow_the_checker() -> None:
    # The checker's targets: 90.874 * 0.99 and 90.874 * 0.999, compared with >=.
    target_99, target_99_9 = 90.874 * 0.99, 90.874 * 0.999
    assert compare_to_reference(target_99, 90.874)[1:] == (True, False)
    assert compare_to_reference(np.nextafter(target_99, 0), 90.874)[1:] == (False, False)
    assert compare_to_reference(target_99_9, 90.874)[1:] == (True, True)
    assert compare_to_reference(np.nextafter(target_99_9, 0), 90.874)[1:] == (True, False)
    ratio, _, _ = compare_to_reference(45.437, 90.874)
    assert ratio == pytest.approx(0.5)
    assert compare_to_reference(90.0, None) == (None, None, None)

    report = AccuracyReport(
        exact_match=80.0,
        f1=90.0,
        questions_scored=10570,
        questions_in_dataset=10570,
        questions_partly_answered=0,
        features_answered=10833,
        features_total=10833,
        partial=False,
        reference_f1=90.874,
        ratio=90.0 / 90.874,
        passes_bert_99=True,
        passes_bert_99_9=False,
        note=None,
    )
    line = format_report(report)
    assert "\n" not in line and "PARTIAL" not in line
    assert "bert-99 PASS, bert-99.9 FAIL" in line


def test_plain_decimal_never_uses_an_exponent() -> None:
    assert plain_decimal(92.19557978351145) == "92.19557978351145"
    assert plain_decimal(0.0) == "0.0"
    assert plain_decimal(5e-05) == "0.00005"
    assert float(plain_decimal(1.2345678901234567e-07)) == 1.2345678901234567e-07
    text = accuracy_txt(5e-05, 1e-06, "ab" * 32)
    assert re.match(CHECKER_F1, text) and "e-" not in text
    with pytest.raises(RunError):
        plain_decimal(float("nan"))
