"""Tokenization and windowing on hand-made examples (orchestrator.dataset.tokenizer / .features)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from orchestrator.dataset import Example, feature_tokens, load_examples, load_vocab
from orchestrator.dataset.features import convert_examples_to_features, doc_spans
from orchestrator.dataset.squad import split_doc_tokens
from orchestrator.dataset.tokenizer import BertUncasedTokenizer, _ids_of
from orchestrator.errors import ConfigError
from orchestrator.paths import EMBEDDED_DATASET, EMBEDDED_VOCAB


@pytest.fixture(scope="module")
def vocab() -> list[str]:
    return load_vocab(EMBEDDED_VOCAB)


@pytest.fixture()
def tokenizer(vocab: list[str]) -> BertUncasedTokenizer:
    return BertUncasedTokenizer(vocab)


def _example(index: int, question: str, context: str, paragraph: int = 0) -> Example:
    return Example(
        example_index=index,
        qas_id=f"q{index}",
        question_text=question,
        doc_tokens=split_doc_tokens(context),
        answers=(),
        paragraph_index=paragraph,
    )


def _tokens(vocab: list[str], tokenizer: BertUncasedTokenizer, text: str) -> list[str]:
    return [vocab[i] for i in tokenizer.encode(text)]


def test_tokenizer_basics(vocab: list[str], tokenizer: BertUncasedTokenizer) -> None:
    assert _tokens(vocab, tokenizer, "The cat sat on the mat, then slept.") == [
        "the", "cat", "sat", "on", "the", "mat", ",", "then", "slept", ".",
    ]  # fmt: skip
    assert _tokens(vocab, tokenizer, "unaffable") == ["una", "##ffa", "##ble"]
    assert _tokens(vocab, tokenizer, "Beyoncé's") == ["beyonce", "'", "s"]  # accents stripped
    assert _tokens(vocab, tokenizer, "日本") == ["日", "本"]  # CJK characters split
    assert _tokens(vocab, tokenizer, "a [SEP] b[UNK]") == ["a", "[SEP]", "b", "[UNK]"]  # kept whole
    assert _tokens(vocab, tokenizer, "[sep]") == ["[", "sep", "]"]  # only the exact spelling
    assert _tokens(vocab, tokenizer, "x" * 101) == ["[UNK]"]  # over 100 characters
    assert _tokens(vocab, tokenizer, "") == []


def test_non_ascii_follows_the_reference_not_rust(vocab: list[str], tokenizer: BertUncasedTokenizer) -> None:
    # Rust's BertNormalizer drops private-use characters (giving "ab"); the reference keeps them, so
    # the word has no WordPiece split and becomes [UNK].
    assert _tokens(vocab, tokenizer, "a\ue000b") == ["[UNK]"]
    # Zero-width space (Cf) is removed, as both do.
    assert _tokens(vocab, tokenizer, "x\u200by") == ["x", "##y"]
    # Lower-casing is per character in transformers, so a word-final capital sigma gives "σ".
    assert _tokens(vocab, tokenizer, "ΟΔΟΣ") == ["ο", "##δ", "##ο", "##σ"]


def test_python_port_agrees_with_rust_on_dev_set_words(tokenizer: BertUncasedTokenizer) -> None:
    """The reference port (used for non-ASCII text) and the Rust pipeline agree on real SQuAD text."""
    examples = load_examples(EMBEDDED_DATASET)
    words = sorted({w for e in examples for w in e.doc_tokens} | {e.question_text for e in examples})
    non_ascii = [w for w in words if not w.isascii()]
    sample = non_ascii + [w for w in words if w.isascii()][::50]
    assert len(non_ascii) > 1000
    port = [[i for ids in _ids_of(tokenizer._wordpiece, tokenizer._reference_words(w)) for i in ids] for w in sample]
    rust = _ids_of(tokenizer._ascii, sample)
    mismatches = [w for w, a, b in zip(sample, port, rust, strict=True) if a != b]
    assert mismatches == []


def test_doc_spans() -> None:
    assert doc_spans(10, 6, 3) == [(0, 6), (3, 6), (6, 4)]
    assert doc_spans(6, 6, 3) == [(0, 6)]
    assert doc_spans(7, 6, 128) == [(0, 6), (6, 1)]  # stride larger than the window
    assert doc_spans(0, 6, 3) == []


def test_hand_made_windows_field_by_field(vocab: list[str], tokenizer: BertUncasedTokenizer) -> None:
    # 8 words, 10 sub-tokens: the(0) cat(1) sat(2) on(3) the(4) mat(5) ,(5) then(6) slept(7) .(7)
    context = "The cat sat on the mat, then slept."
    # Question: who sat ? (3 tokens) -> 12 - 3 - 3 = 6 context tokens per window, stride 3:
    # windows (0, 6), (3, 6), (6, 4).
    features = convert_examples_to_features(
        [_example(0, "Who sat?", context)], tokenizer, max_seq_length=12, doc_stride=3, max_query_length=5
    )
    assert len(features) == 3
    assert features.example_index.tolist() == [0, 0, 0]
    assert features.doc_span_index.tolist() == [0, 1, 2]
    assert features.seq_len.tolist() == [12, 12, 10]

    assert feature_tokens(features, 0, vocab) == [
        "[CLS]", "who", "sat", "?", "[SEP]", "the", "cat", "sat", "on", "the", "mat", "[SEP]",
    ]  # fmt: skip
    assert feature_tokens(features, 1, vocab) == [
        "[CLS]", "who", "sat", "?", "[SEP]", "on", "the", "mat", ",", "then", "slept", "[SEP]",
    ]  # fmt: skip
    assert feature_tokens(features, 2, vocab) == [
        "[CLS]", "who", "sat", "?", "[SEP]", ",", "then", "slept", ".", "[SEP]",
    ]  # fmt: skip
    cls, sep = vocab.index("[CLS]"), vocab.index("[SEP]")
    assert features.input_ids[2].tolist() == [cls, 2040, 2938, 1029, sep, 1010, 2059, 7771, 1012, sep, 0, 0]
    assert features.input_mask.tolist() == [[1] * 12, [1] * 12, [1] * 10 + [0, 0]]
    assert features.segment_ids.tolist() == [
        [0] * 5 + [1] * 7,
        [0] * 5 + [1] * 7,
        [0] * 5 + [1] * 5 + [0, 0],
    ]
    no = -1
    assert features.token_to_orig_map.tolist() == [
        [no] * 5 + [0, 1, 2, 3, 4, 5] + [no],
        [no] * 5 + [3, 4, 5, 5, 6, 7] + [no],
        [no] * 5 + [5, 6, 7, 7] + [no, no, no],
    ]
    # Score = min(left, right) + 0.01 * window length. Sub-token 4 ("the") scores 1.06 in both
    # windows 0 and 1: the first wins. Sub-token 7 ("then") scores 1.06 in window 1, 1.04 in window 2.
    f, t = False, True
    assert features.token_is_max_context.tolist() == [
        [f] * 5 + [t, t, t, t, t, f] + [f],
        [f] * 5 + [f, f, t, t, t, f] + [f],
        [f] * 5 + [f, f, t, t] + [f, f, f],
    ]
    assert features.input_ids.dtype == np.int32 and features.token_is_max_context.dtype == np.bool_


def test_query_truncation_and_shared_paragraph(vocab: list[str], tokenizer: BertUncasedTokenizer) -> None:
    context = "Beyoncé was unaffable."  # one word -> three sub-tokens, non-ASCII word
    long_question = "Where did the cat sit after it ate its food?"  # 11 tokens, cut to 5
    features = convert_examples_to_features(
        [_example(0, "Who?", context), _example(1, long_question, context)],
        tokenizer,
        max_seq_length=16,
        doc_stride=2,
        max_query_length=5,
    )
    assert features.example_index.tolist() == [0, 1]
    assert feature_tokens(features, 0, vocab) == [
        "[CLS]", "who", "?", "[SEP]", "beyonce", "was", "una", "##ffa", "##ble", ".", "[SEP]",
    ]  # fmt: skip
    assert feature_tokens(features, 1, vocab) == [
        "[CLS]", "where", "did", "the", "cat", "sit", "[SEP]",
        "beyonce", "was", "una", "##ffa", "##ble", ".", "[SEP]",
    ]  # fmt: skip
    assert features.token_to_orig_map[0, 4:10].tolist() == [0, 1, 2, 2, 2, 2]
    assert features.token_to_orig_map[1, 7:13].tolist() == [0, 1, 2, 2, 2, 2]
    assert features.token_is_max_context[0].sum() == 6  # one window: every context token is max
    assert (features.seq_len == features.input_mask.sum(axis=1)).all()


def test_empty_context_gets_no_feature(tokenizer: BertUncasedTokenizer, caplog: pytest.LogCaptureFixture) -> None:
    examples = [_example(0, "Who?", " ", paragraph=0), _example(1, "Who?", "Me.", paragraph=1)]
    with caplog.at_level(logging.WARNING):
        features = convert_examples_to_features(examples, tokenizer)
    assert features.example_index.tolist() == [1]
    assert "q0 has an empty context" in caplog.text


@pytest.mark.parametrize(("seq", "stride", "query"), [(384, 0, 64), (384, 128, 0), (67, 128, 64)])
def test_bad_parameters(tokenizer: BertUncasedTokenizer, seq: int, stride: int, query: int) -> None:
    with pytest.raises(ConfigError, match="MLPerf's value"):
        convert_examples_to_features(
            [_example(0, "Who?", "Me.")],
            tokenizer,
            max_seq_length=seq,
            doc_stride=stride,
            max_query_length=query,
        )
