"""The official SQuAD v1.1 evaluation: exact match and token F1, in percent.

Same normalisation and arithmetic as the official `evaluate-v1.1.py` (so the scores agree to the
last bits), with one fix: a subset is scored over exactly the question ids given. (The official
script's `--max_examples N` counts N questions but scores N-1, and without it a partial run is
divided by all 10,570 questions.)
"""

from __future__ import annotations

import json
import logging
import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from orchestrator.errors import DatasetError

log = logging.getLogger(__name__)

# Deleting with str.translate is the official per-character filter over string.punctuation, faster.
_DROP_PUNCTUATION = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


class ExampleWithAnswers(Protocol):
    @property
    def qas_id(self) -> str: ...
    @property
    def answers(self) -> Sequence[Any]: ...  # answer texts, or {"text": ...} dicts, or objects with .text


def normalize_answer(text: str) -> str:
    """Lower-case, drop ASCII punctuation, drop the articles a/an/the, collapse white space."""
    text = text.lower()
    text = text.translate(_DROP_PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match_score(prediction: str, ground_truth: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def f1_score(prediction: str, ground_truth: str) -> float:
    return _token_f1(normalize_answer(prediction).split(), normalize_answer(ground_truth).split())


def _token_f1(prediction_tokens: list[str], truth_tokens: list[str]) -> float:
    common = Counter(prediction_tokens) & Counter(truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def load_ground_truths(dataset_path: Path | str) -> dict[str, list[str]]:
    """question id -> its answer texts, in file order, from a SQuAD v1.1 JSON file."""
    path = Path(dataset_path)
    try:
        dataset = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DatasetError(f"The SQuAD file {path} cannot be read ({exc.strerror}); check the path.") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"The SQuAD file {path} is not valid JSON ({exc}); fetch it again.") from exc
    if not isinstance(dataset, dict) or not isinstance(dataset.get("data"), list):
        raise DatasetError(f"The SQuAD file {path} has no 'data' list; give a SQuAD v1.1 JSON file.")
    if dataset.get("version") != "1.1":
        log.warning("%s says version %r; the evaluation expects SQuAD v1.1", path, dataset.get("version"))
    truths: dict[str, list[str]] = {}
    try:
        for article in dataset["data"]:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    truths[qa["id"]] = [answer["text"] for answer in qa["answers"]]
    except (KeyError, TypeError) as exc:
        raise DatasetError(
            f"The SQuAD file {path} lacks a field ({exc}) in an article, paragraph or question; "
            "give a SQuAD v1.1 JSON file."
        ) from exc
    return truths


def _answer_text(answer: Any) -> str:
    if isinstance(answer, str):
        return answer
    if isinstance(answer, Mapping):
        return str(answer["text"])
    return str(answer.text)


def ground_truths_of(examples: Iterable[ExampleWithAnswers]) -> dict[str, list[str]]:
    """question id -> its answer texts, in example order."""
    return {ex.qas_id: [_answer_text(a) for a in ex.answers] for ex in examples}


def evaluate(
    dataset: Path | str | Iterable[ExampleWithAnswers],
    predictions: Mapping[str, str],
    question_ids: Iterable[str] | None = None,
) -> dict[str, float | int]:
    """{"exact_match": %, "f1": %, "questions": n} over the dataset, or over exactly `question_ids`.

    A question with no prediction scores 0. Predictions for questions not scored are ignored.
    """
    truths = load_ground_truths(dataset) if isinstance(dataset, (str, Path)) else ground_truths_of(dataset)
    if question_ids is None:
        scored = list(truths)
    else:
        wanted = set(question_ids)
        unknown = wanted.difference(truths)
        if unknown:
            raise DatasetError(
                f"{len(unknown)} question ids to score are not in the dataset (e.g. {min(unknown)}); "
                "score with the dataset the features were built from."
            )
        # Dataset order, so the sums add up in the same order as the official script's.
        scored = [qid for qid in truths if qid in wanted]
    if not scored:
        raise DatasetError("There are no questions to score; answer at least one whole question.")

    exact_match = 0
    f1 = 0.0
    missing = 0
    for qid in scored:
        answers = truths[qid]
        if not answers:
            raise DatasetError(f"Question {qid} has no ground-truth answer; give a SQuAD v1.1 dev file.")
        prediction = predictions.get(qid)
        if prediction is None:
            missing += 1
            continue
        # exact_match_score and f1_score against each answer, normalising the prediction only once.
        normalized = normalize_answer(prediction)
        truths_normalized = [normalize_answer(truth) for truth in answers]
        exact_match += max(normalized == truth for truth in truths_normalized)
        tokens = normalized.split()
        f1 += max(_token_f1(tokens, truth.split()) for truth in truths_normalized)
    if missing:
        log.info("%d of %d questions have no prediction and score 0", missing, len(scored))
    return {
        "exact_match": 100.0 * exact_match / len(scored),
        "f1": 100.0 * f1 / len(scored),
        "questions": len(scored),
    }
