"""Logits -> answer text: the standard BERT / MLPerf SQuAD v1.1 post-processing.

For every feature (window) the 20 best start and the 20 best end positions are paired; a pair is
kept when both ends are context tokens, the start token has its maximum context in this window,
start <= end and the span is at most 30 tokens. The question's answer is the pair with the highest
start + end logit over all its windows, mapped back to the original text with `get_final_text`.

Only the best pair is needed: the reference builds an n-best list, but its answer is always the
first entry, and the first entry is never dropped as a duplicate. Ties are broken the way the
reference's stable sorts break them (lower position first, then earlier window).

One deliberate difference: the reference pads every response to 384 and takes the top 20 over all
384 positions, so a padding position with a high logit can push a real candidate out of the top
20. Here only real tokens (positions < min(len(response), seq_len)) compete, so a response packed
at its real length and the same response padded to 384 give the same answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from orchestrator.dataset.basic_tokenizer import basic_tokenize
from orchestrator.errors import RunError

log = logging.getLogger(__name__)

N_BEST_SIZE = 20
MAX_ANSWER_LENGTH = 30
# What the reference predicts when no span is valid in any window (scores 0 like any wrong answer).
NO_ANSWER_TEXT = "empty"


class ExampleLike(Protocol):
    @property
    def qas_id(self) -> str: ...
    @property
    def doc_tokens(self) -> Sequence[str]: ...


class FeaturesLike(Protocol):
    """The arrays of orchestrator.dataset's Features that post-processing reads."""

    @property
    def example_index(self) -> np.ndarray: ...  # int [N]
    @property
    def seq_len(self) -> np.ndarray: ...  # int [N], real tokens
    @property
    def token_to_orig_map(self) -> np.ndarray: ...  # int [N, S], -1 where not a context token
    @property
    def token_is_max_context(self) -> np.ndarray: ...  # bool [N, S]


@dataclass(frozen=True)
class Span:
    """The best answer span of one question: token positions in one feature, inclusive."""

    feature: int
    start: int
    end: int
    score: float


def split_answered(example_index: np.ndarray, answered: Iterable[int]) -> tuple[list[int], list[int]]:
    """(questions with ALL features answered, questions with only SOME answered), as example indices.

    A question whose windows were only partly answered cannot be scored fairly (its answer may sit in
    a missing window), so callers leave it out.
    """
    example_index = np.asarray(example_index)
    answered_mask = np.zeros(len(example_index), dtype=bool)
    answered_list = [i for i in answered if 0 <= i < len(example_index)]
    answered_mask[answered_list] = True
    n_examples = int(example_index.max()) + 1 if len(example_index) else 0
    total = np.bincount(example_index, minlength=n_examples)
    done = np.bincount(example_index[answered_mask], minlength=n_examples)
    complete = np.flatnonzero((done == total) & (total > 0))
    partial = np.flatnonzero((done > 0) & (done < total))
    return complete.tolist(), partial.tolist()


def top_k_positions(scores: np.ndarray, k: int) -> np.ndarray:
    """Per row, the positions of the k highest scores, best first; ties go to the lower position.

    scores: float [R, S] with S >= k. This is what a stable descending sort of each row would give,
    found with argpartition (no full sort of the 384 positions).
    """
    rows, width = scores.shape
    if k >= width:
        return np.argsort(-scores, axis=1, kind="stable")
    # The k-th highest value of each row; everything above it is in, and of the values equal to it
    # only the lowest positions are, up to k in all.
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1 : k]
    above = scores > kth
    equal = scores == kth
    room = k - above.sum(axis=1, keepdims=True)
    chosen = above | (equal & (np.cumsum(equal, axis=1) <= room))
    positions = np.nonzero(chosen)[1].reshape(rows, k)  # ascending within each row
    order = np.argsort(-np.take_along_axis(scores, positions, axis=1), axis=1, kind="stable")
    return np.take_along_axis(positions, order, axis=1)


def best_spans(
    features: FeaturesLike,
    logits: Mapping[int, np.ndarray],
    feature_indices: Sequence[int],
    *,
    n_best_size: int = N_BEST_SIZE,
    max_answer_length: int = MAX_ANSWER_LENGTH,
) -> dict[int, Span]:
    """feature index -> its best valid span, for each of `feature_indices` (all must be answered).

    A feature with no valid span is absent from the result.
    """
    idx = np.asarray(feature_indices, dtype=np.int64)
    count = len(idx)
    if count == 0:
        return {}
    orig_map = np.asarray(features.token_to_orig_map)[idx]
    max_context = np.asarray(features.token_is_max_context, dtype=bool)[idx]
    width = orig_map.shape[1]  # 384 for MLPerf
    start_logits = np.full((count, width), -np.inf, dtype=np.float32)
    end_logits = np.full((count, width), -np.inf, dtype=np.float32)
    lengths = np.empty(count, dtype=np.int64)
    seq_len = np.asarray(features.seq_len)
    for row, feature in enumerate(idx.tolist()):
        response = logits[feature]
        length = min(len(response), int(seq_len[feature]), width)
        lengths[row] = length
        start_logits[row, :length] = response[:length, 0]
        end_logits[row, :length] = response[:length, 1]
    # A NaN logit must not win or break the ordering; it just never becomes an answer.
    np.nan_to_num(start_logits, copy=False, nan=-np.inf)
    np.nan_to_num(end_logits, copy=False, nan=-np.inf)

    k = min(n_best_size, width)
    starts = top_k_positions(start_logits, k)
    ends = top_k_positions(end_logits, k)

    real = lengths[:, None]
    start_ok = (
        (starts < real)
        & (np.take_along_axis(orig_map, starts, axis=1) >= 0)
        & np.take_along_axis(max_context, starts, axis=1)
    )
    end_ok = (ends < real) & (np.take_along_axis(orig_map, ends, axis=1) >= 0)
    span_len = ends[:, None, :] - starts[:, :, None] + 1
    pair_ok = start_ok[:, :, None] & end_ok[:, None, :] & (span_len >= 1) & (span_len <= max_answer_length)
    # float64 like the reference, which adds Python floats.
    pair_score = (
        np.take_along_axis(start_logits, starts, axis=1).astype(np.float64)[:, :, None]
        + np.take_along_axis(end_logits, ends, axis=1).astype(np.float64)[:, None, :]
    )
    pair_score = np.where(pair_ok, pair_score, -np.inf).reshape(count, k * k)
    # argmax returns the first maximum in (start rank, end rank) order: the reference's nested loops.
    best = pair_score.argmax(axis=1)
    has_span = pair_ok.reshape(count, k * k).any(axis=1)

    spans: dict[int, Span] = {}
    for row in np.flatnonzero(has_span).tolist():
        flat = int(best[row])
        spans[int(idx[row])] = Span(
            feature=int(idx[row]),
            start=int(starts[row, flat // k]),
            end=int(ends[row, flat % k]),
            score=float(pair_score[row, flat]),
        )
    return spans


def predict(
    examples: Sequence[ExampleLike],
    features: FeaturesLike,
    logits: Mapping[int, np.ndarray],
    tokens_of: Callable[[int], Sequence[str]],
    example_indices: Iterable[int],
) -> dict[str, str]:
    """{qas_id: answer text} for the questions `example_indices`, whose features must all be answered.

    tokens_of(i) gives the WordPiece tokens of feature i (e.g. orchestrator.dataset.feature_tokens).
    """
    wanted = sorted(set(example_indices))
    example_index = np.asarray(features.example_index)
    wanted_mask = np.zeros(len(examples), dtype=bool)
    wanted_mask[wanted] = True
    feature_ids = np.flatnonzero(wanted_mask[example_index])
    missing = [int(f) for f in feature_ids if int(f) not in logits]
    if missing:
        raise RunError(
            f"Features {missing[:5]} of the questions to score have no logits; "
            "score only questions whose features were all answered (see split_answered)."
        )

    spans = best_spans(features, logits, feature_ids.tolist())
    # Best span per question: the highest score, the earliest window on a tie (strict >).
    best: dict[int, Span] = {}
    for feature in feature_ids.tolist():
        span = spans.get(feature)
        if span is None:
            continue
        example = int(example_index[feature])
        current = best.get(example)
        if current is None or span.score > current.score:
            best[example] = span

    orig_map = np.asarray(features.token_to_orig_map)
    predictions: dict[str, str] = {}
    for example in wanted:
        span = best.get(example)
        if span is None:
            predictions[examples[example].qas_id] = NO_ANSWER_TEXT
            continue
        tokens = tokens_of(span.feature)[span.start : span.end + 1]
        orig_start = int(orig_map[span.feature, span.start])
        orig_end = int(orig_map[span.feature, span.end])
        orig_text = " ".join(examples[example].doc_tokens[orig_start : orig_end + 1])
        predictions[examples[example].qas_id] = get_final_text(detokenize(tokens), orig_text)
    log.debug("Predicted %d answers (%d without a valid span)", len(predictions), len(wanted) - len(best))
    return predictions


def detokenize(tokens: Sequence[str]) -> str:
    """WordPiece tokens -> the normalised text they spell ("steve", "sm", "##ith" -> "steve smith")."""
    text = " ".join(tokens).replace(" ##", "").replace("##", "")
    return " ".join(text.split())


def get_final_text(pred_text: str, orig_text: str) -> str:
    """The part of `orig_text` (original casing and accents) that `pred_text` (normalised) covers.

    pred_text comes from WordPiece tokens: lower-cased, accents stripped, punctuation split off.
    orig_text is the run of original whitespace tokens the span touches and may hold more, e.g.
    pred "steve smith" in orig "Steve Smith's" gives "Steve Smith". Tokenizing orig_text the same way
    and dropping spaces from both gives two strings that line up character for character when the
    normalisation kept every character's length; then the match of pred_text maps back. When it did
    not (or pred_text is not found), the whole orig_text is the answer, as in the reference.
    """
    tok_text = " ".join(basic_tokenize(orig_text))
    start = tok_text.find(pred_text)
    if start == -1:
        return orig_text
    end = start + len(pred_text) - 1

    orig_ns_to_s = [i for i, c in enumerate(orig_text) if c != " "]
    tok_ns_to_s = [i for i, c in enumerate(tok_text) if c != " "]
    if len(orig_ns_to_s) != len(tok_ns_to_s):
        return orig_text
    tok_s_to_ns = {s: ns for ns, s in enumerate(tok_ns_to_s)}

    # A match that starts or ends on a space has no non-space position: give up as the reference does.
    if start not in tok_s_to_ns or end not in tok_s_to_ns:
        return orig_text
    orig_start = orig_ns_to_s[tok_s_to_ns[start]]
    orig_end = orig_ns_to_s[tok_s_to_ns[end]]
    return orig_text[orig_start : orig_end + 1]
