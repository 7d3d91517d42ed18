"""The SQuAD v1.1 evaluator: official scores reproduced, normalisation edge cases, exact subsets."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.accuracy.metric import (
    evaluate,
    exact_match_score,
    f1_score,
    load_ground_truths,
    normalize_answer,
)
from orchestrator.errors import DatasetError
from orchestrator.paths import EMBEDDED_DATASET

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "accuracy"

# The official SQuAD v1.1 evaluation's output for these leaderboard predictions (shared assets README).
OFFICIAL = {
    "bert_ensemble_google.json": (86.20624408703878, 92.19557978351145),
    "logistic_regression_baseline_stanford.json": (40.14191106906339, 50.98153647324461),
}


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_reproduces_official_scores(name: str) -> None:
    predictions = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    scores = evaluate(EMBEDDED_DATASET, predictions)
    exact_match, f1 = OFFICIAL[name]
    assert scores["questions"] == 10570
    assert scores["exact_match"] == pytest.approx(exact_match, abs=1e-9)
    assert scores["f1"] == pytest.approx(f1, abs=1e-9)


def test_missing_predictions_score_zero() -> None:
    predictions = json.loads((FIXTURES / "logistic_regression_baseline_stanford.json").read_text("utf-8"))
    truths = load_ground_truths(EMBEDDED_DATASET)
    assert len(set(truths) - set(predictions)) == 13
    # Dropping every prediction but one: one question can score, the rest count as wrong.
    qid = next(q for q in truths if q in predictions and exact_match_score(predictions[q], truths[q][0]))
    scores = evaluate(EMBEDDED_DATASET, {qid: predictions[qid]})
    assert scores["exact_match"] == pytest.approx(100.0 / 10570)


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("The  Quick, brown fox!", "quick brown fox"),
        ("a an the", ""),
        ("another theme", "another theme"),  # articles only as whole words
        ("Theatre of the Absurd", "theatre of absurd"),
        ("fox's den.", "foxs den"),  # ASCII punctuation is removed, not replaced by a space
        ("“Curly” quotes", "“curly” quotes"),  # string.punctuation is ASCII only, as in the official script
        ("  \tspaced\n out ", "spaced out"),
        ("$1,000.50", "100050"),
        ("A-ha", "aha"),
        ("the-end", "theend"),  # the hyphen goes first, so "the" is no longer a word of its own
        ("ÉCOLE", "école"),  # no accent stripping in the metric
    ],
)
def test_normalize_answer(text: str, normalized: str) -> None:
    assert normalize_answer(text) == normalized


def test_f1_counts_repeated_tokens_once_per_match() -> None:
    # prediction [cat, cat] vs truth [cat]: one common token, precision 1/2, recall 1.
    assert f1_score("the cat cat", "a cat") == pytest.approx(2 / 3)
    assert f1_score("cat dog", "dog cat") == 1.0
    assert f1_score("", "cat") == 0.0
    assert f1_score("the", "a") == 0.0  # both normalise to nothing: no common token
    assert exact_match_score("the", "a") is True  # ...yet they are an exact match, as officially


@dataclass
class _Example:
    qas_id: str
    answers: tuple[str, ...]


EXAMPLES = [
    _Example("q1", ("Denver Broncos", "The Broncos")),
    _Example("q2", ("gold",)),
    _Example("q3", ("Santa Clara, California",)),
]


def test_max_over_ground_truths() -> None:
    scores = evaluate(EXAMPLES, {"q1": "Broncos", "q2": "gold", "q3": "Santa Clara"})
    # q1: "broncos" is an exact match of "The Broncos"; q3: F1 of 2 of 3 tokens.
    assert scores["exact_match"] == pytest.approx(100 * 2 / 3)
    assert scores["f1"] == pytest.approx(100 * (1 + 1 + 0.8) / 3)


def test_subset_scores_exactly_the_given_ids() -> None:
    predictions = {"q1": "Denver Broncos", "q2": "silver", "q3": "Santa Clara, California"}
    scores = evaluate(EXAMPLES, predictions, question_ids=["q1", "q2"])
    # Two questions scored (the official --max_examples 2 would score one and divide by two).
    assert scores["questions"] == 2
    assert scores["exact_match"] == pytest.approx(50.0)


def test_subset_of_the_dev_set_from_file() -> None:
    predictions = json.loads((FIXTURES / "bert_ensemble_google.json").read_text("utf-8"))
    first = list(load_ground_truths(EMBEDDED_DATASET))[:100]
    subset = evaluate(EMBEDDED_DATASET, predictions, question_ids=first)
    only = evaluate(EMBEDDED_DATASET, {q: predictions[q] for q in first}, question_ids=first)
    assert subset == only
    assert subset["questions"] == 100
    assert 50 < subset["f1"] <= 100


def test_examples_and_file_agree(tmp_path: Path) -> None:
    dataset = {
        "version": "1.1",
        "data": [
            {
                "title": "t",
                "paragraphs": [
                    {
                        "context": "c",
                        "qas": [
                            {
                                "id": e.qas_id,
                                "question": "?",
                                "answers": [{"text": a, "answer_start": 0} for a in e.answers],
                            }
                            for e in EXAMPLES
                        ],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(dataset), encoding="utf-8")
    predictions = {"q1": "the broncos", "q3": "California"}
    assert evaluate(path, predictions) == evaluate(EXAMPLES, predictions)


def test_unknown_question_id_is_rejected() -> None:
    with pytest.raises(DatasetError, match="not in the dataset"):
        evaluate(EXAMPLES, {}, question_ids=["q1", "nope"])


def test_nothing_to_score_is_rejected() -> None:
    with pytest.raises(DatasetError, match="no questions to score"):
        evaluate(EXAMPLES, {}, question_ids=[])


def test_malformed_dataset_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"data": [', encoding="utf-8")
    with pytest.raises(DatasetError, match="not valid JSON"):
        evaluate(path, {})
    path.write_text('{"version": "1.1", "data": [{"paragraphs": [{"qas": [{"id": "x"}]}]}]}', encoding="utf-8")
    with pytest.raises(DatasetError, match="lacks a field"):
        evaluate(path, {})
