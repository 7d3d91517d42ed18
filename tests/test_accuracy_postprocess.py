"""Post-processing on small hand-made features: span rules, windows, padding, get_final_text."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from orchestrator.accuracy.postprocess import (
    NO_ANSWER_TEXT,
    best_spans,
    detokenize,
    get_final_text,
    predict,
    split_answered,
    top_k_positions,
)
from orchestrator.dataset.basic_tokenizer import basic_tokenize
from orchestrator.errors import RunError

S = 384


@dataclass
class Example:
    qas_id: str
    doc_tokens: tuple[str, ...]
    answers: tuple[str, ...] = ()


@dataclass
class Features:
    """The arrays orchestrator.dataset's Features holds, for a handful of hand-made windows."""

    tokens: list[list[str]] = field(default_factory=list)
    example_index: list[int] = field(default_factory=list)
    maps: list[dict[int, int]] = field(default_factory=list)
    max_context: list[set[int]] = field(default_factory=list)

    def add(self, example: int, tokens: list[str], orig: dict[int, int], max_context: set[int] | None = None) -> int:
        self.tokens.append(tokens)
        self.example_index.append(example)
        self.maps.append(orig)
        self.max_context.append(set(orig) if max_context is None else max_context)
        return len(self.tokens) - 1

    def arrays(self) -> FeatureArrays:
        n = len(self.tokens)
        t2o = np.full((n, S), -1, dtype=np.int32)
        maxc = np.zeros((n, S), dtype=bool)
        for i in range(n):
            for pos, orig in self.maps[i].items():
                t2o[i, pos] = orig
            for pos in self.max_context[i]:
                maxc[i, pos] = True
        return FeatureArrays(
            example_index=np.array(self.example_index, dtype=np.int32),
            seq_len=np.array([len(t) for t in self.tokens], dtype=np.int16),
            token_to_orig_map=t2o,
            token_is_max_context=maxc,
            tokens=self.tokens,
        )


@dataclass
class FeatureArrays:
    example_index: np.ndarray
    seq_len: np.ndarray
    token_to_orig_map: np.ndarray
    token_is_max_context: np.ndarray
    tokens: list[list[str]]


# "[CLS] where ? [SEP] the quick brown fox ' s den . [SEP]" for the context "The quick brown fox's den."
DOC = ("The", "quick", "brown", "fox's", "den.")
TOKENS = ["[CLS]", "where", "?", "[SEP]", "the", "quick", "brown", "fox", "'", "s", "den", ".", "[SEP]"]
ORIG = {4: 0, 5: 1, 6: 2, 7: 3, 8: 3, 9: 3, 10: 4, 11: 4}


def _logits(length: int, start: dict[int, float], end: dict[int, float], fill: float = 0.0) -> np.ndarray:
    out = np.full((length, 2), fill, dtype=np.float32)
    for pos, value in start.items():
        out[pos, 0] = value
    for pos, value in end.items():
        out[pos, 1] = value
    return out


def _one_window(max_context: set[int] | None = None) -> tuple[list[Example], FeatureArrays]:
    feats = Features()
    feats.add(0, TOKENS, ORIG, max_context)
    return [Example("q0", DOC)], feats.arrays()


def _predict(examples: list[Example], arrays: FeatureArrays, logits: dict[int, np.ndarray]) -> dict[str, str]:
    return predict(examples, arrays, logits, lambda i: arrays.tokens[i], range(len(examples)))


def test_best_span_maps_back_to_original_text() -> None:
    examples, arrays = _one_window()
    # Best start "fox" (7), best end "fox" (7): the original token is "fox's", the answer "fox".
    logits = {0: _logits(13, {7: 5.0, 4: 1.0}, {7: 5.0, 10: 1.0})}
    assert _predict(examples, arrays, logits) == {"q0": "fox"}


def test_span_across_original_tokens() -> None:
    examples, arrays = _one_window()
    logits = {0: _logits(13, {5: 4.0}, {10: 4.0})}
    # "quick brown fox ' s den" is found in the tokenized "quick brown fox's den." and mapped back.
    assert _predict(examples, arrays, logits) == {"q0": "quick brown fox's den"}


def test_question_tokens_and_end_before_start_are_skipped() -> None:
    examples, arrays = _one_window()
    # The best start is in the question (1), the next one (10) lies after every good end (2 is in
    # the question, 5 is before 10): the best valid pair is start 6 "brown" + end 6.
    logits = {0: _logits(13, {1: 9.0, 10: 8.0, 6: 3.0}, {2: 9.0, 5: 8.0, 6: 2.0}, fill=-10.0)}
    assert _predict(examples, arrays, logits) == {"q0": "brown"}


def test_start_must_have_max_context() -> None:
    examples, arrays = _one_window(max_context=set(ORIG) - {5})
    logits = {0: _logits(13, {5: 9.0, 6: 1.0}, {6: 9.0})}
    assert _predict(examples, arrays, logits) == {"q0": "brown"}


def test_max_answer_length() -> None:
    doc = tuple(f"w{i}" for i in range(40))
    tokens = ["[CLS]", "q", "[SEP]"] + [w for w in doc] + ["[SEP]"]
    feats = Features()
    feats.add(0, tokens, {3 + i: i for i in range(40)})
    arrays = feats.arrays()
    examples = [Example("q0", doc)]
    # 3..32 is 30 tokens (allowed), 3..33 is 31 (not).
    assert _predict(examples, arrays, {0: _logits(len(tokens), {3: 5.0}, {33: 5.0, 32: 4.0})}) == {
        "q0": " ".join(doc[0:30])
    }
    spans = best_spans(arrays, {0: _logits(len(tokens), {3: 5.0}, {33: 5.0, 32: 4.0})}, [0], max_answer_length=31)
    assert (spans[0].start, spans[0].end) == (3, 33)


def test_no_valid_span_gives_the_reference_placeholder() -> None:
    # No context token has its max context in this window, so no start is valid.
    examples, arrays = _one_window(max_context=set())
    assert _predict(examples, arrays, {0: _logits(13, {7: 1.0}, {7: 1.0})}) == {"q0": NO_ANSWER_TEXT}


def test_only_positions_inside_the_response_count() -> None:
    examples, arrays = _one_window()
    # A response of 8 tokens (shorter than the 13 real ones): "den" (10) is outside it.
    full = _logits(13, {10: 9.0, 5: 1.0}, {10: 9.0, 6: 1.0})
    assert _predict(examples, arrays, {0: full}) == {"q0": "den"}
    assert _predict(examples, arrays, {0: full[:8]}) == {"q0": "quick brown"}


def test_padded_response_equals_real_length() -> None:
    examples, arrays = _one_window()
    real = _logits(13, {5: 3.0, 7: 2.5}, {6: 3.0, 7: 2.0})
    padded = np.full((S, 2), 50.0, dtype=np.float32)  # padding with logits higher than any real one
    padded[:13] = real
    assert _predict(examples, arrays, {0: padded}) == _predict(examples, arrays, {0: real}) == {"q0": "quick brown"}


def test_best_window_wins_and_ties_go_to_the_earlier_window() -> None:
    feats = Features()
    # Two windows of one question over the same words; the second is the max-context one for "den".
    feats.add(0, TOKENS, ORIG)
    feats.add(0, TOKENS, ORIG)
    arrays = feats.arrays()
    examples = [Example("q0", DOC)]
    low = _logits(13, {5: 1.0}, {5: 1.0})
    high = _logits(13, {10: 2.0}, {10: 2.0})
    assert _predict(examples, arrays, {0: low, 1: high}) == {"q0": "den"}
    assert _predict(examples, arrays, {0: high, 1: low}) == {"q0": "den"}
    spans = best_spans(arrays, {0: high, 1: high}, [0, 1])
    assert spans[0].score == spans[1].score == 4.0


def test_nan_logits_never_win() -> None:
    examples, arrays = _one_window()
    logits = _logits(13, {6: 1.0}, {6: 1.0})
    logits[7] = np.nan
    assert _predict(examples, arrays, {0: logits}) == {"q0": "brown"}


def test_predict_refuses_unanswered_features() -> None:
    feats = Features()
    feats.add(0, TOKENS, ORIG)
    feats.add(0, TOKENS, ORIG)
    arrays = feats.arrays()
    with pytest.raises(RunError, match="have no logits"):
        _predict([Example("q0", DOC)], arrays, {0: _logits(13, {}, {})})


def test_split_answered() -> None:
    # Questions 0 (features 0, 1), 1 (2), 2 (3, 4, 5), 3 (6).
    example_index = np.array([0, 0, 1, 2, 2, 2, 3])
    complete, partial = split_answered(example_index, [0, 1, 3, 4, 6])
    assert complete == [0, 3]
    assert partial == [2]
    assert split_answered(example_index, range(7)) == ([0, 1, 2, 3], [])
    assert split_answered(example_index, []) == ([], [])


def test_top_k_matches_a_stable_descending_sort() -> None:
    rng = np.random.default_rng(0)
    # Small integers: many ties, also at the k-th place.
    scores = rng.integers(0, 6, size=(200, 50)).astype(np.float32)
    scores[0] = 1.0  # a row of one value
    scores[1, 10:] = -np.inf  # fewer finite values than k
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :20]
    assert np.array_equal(top_k_positions(scores, 20), expected)
    real = rng.standard_normal((100, S)).astype(np.float32)
    assert np.array_equal(top_k_positions(real, 20), np.argsort(-real, axis=1, kind="stable")[:, :20])


# --- get_final_text ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "orig", "expected"),
    [
        ("steve smith", "Steve Smith's", "Steve Smith"),
        ("cafe", "Café", "Café"),  # accents stripped in pred_text, kept in the answer
        ("1 , 000", "$1,000.", "1,000"),
        ("denver broncos", "Denver Broncos", "Denver Broncos"),
        ("broncos", "(Denver Broncos)", "Broncos"),
        ("zurich", "Zürich-based", "Zürich"),
        ("nowhere", "Steve Smith", "Steve Smith"),  # not found: the whole original text
        # U+200B is dropped by the tokenizer, so the strings no longer line up: the whole text.
        ("abc", "ab\u200bc", "ab\u200bc"),
        ("1990s", "1990s.", "1990s"),
    ],
)
def test_get_final_text(pred: str, orig: str, expected: str) -> None:
    assert get_final_text(pred, orig) == expected


def test_detokenize() -> None:
    assert detokenize(["steve", "sm", "##ith", "'", "s"]) == "steve smith ' s"
    assert detokenize(["##ing"]) == "ing"
    assert detokenize(["un", "##believ", "##able"]) == "unbelievable"


def test_basic_tokenize() -> None:
    assert basic_tokenize("Hello, Wörld! $5") == ["hello", ",", "world", "!", "$", "5"]
    assert basic_tokenize("東京 Tower") == ["東", "京", "tower"]
    assert basic_tokenize("a\u00a0b\tc") == ["a", "b", "c"]  # U+00A0 is Zs white space
    assert basic_tokenize("x\x00y\ufffdz") == ["xyz"]


def test_basic_tokenize_ascii_shortcut_matches_the_unicode_path() -> None:
    every_ascii = "".join(chr(c) for c in range(128))
    for text in (every_ascii, every_ascii[::-1], "Steve Smith's 1,000.5$ (x)\x0bY\x1fz\x7f"):
        # A non-ASCII word at the end sends the text through the general path.
        assert basic_tokenize(text + " é") == basic_tokenize(text) + ["e"]
