"""SQuAD examples -> MLPerf BERT features, identical to the reference convert_examples_to_features.

Each question becomes one or more features: [CLS] question [SEP] context window [SEP], zero-padded
to max_seq_length. A context longer than the room left after the question is covered by windows
that start every doc_stride sub-tokens. For post-processing each feature records which context word
each token came from (token_to_orig_map) and whether this window is the one that gives the token its
most context (token_is_max_context), exactly as BERT's run_squad.py defines both.

Speed comes from tokenizing each distinct word and each paragraph once (the reference re-tokenizes
the paragraph for every question) and filling preallocated arrays with numpy slices.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orchestrator.dataset.squad import Example
from orchestrator.dataset.tokenizer import BertUncasedTokenizer
from orchestrator.errors import ConfigError
from orchestrator.mlperf import DOC_STRIDE, MAX_QUERY_LEN, SEQ_LEN

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Features:
    """All features of a dataset; row i is feature i (the LoadGen sample index)."""

    input_ids: np.ndarray  # int32 [N, S]
    input_mask: np.ndarray  # int8 [N, S], 1 for real tokens
    segment_ids: np.ndarray  # int8 [N, S], 0 question part, 1 context part
    example_index: np.ndarray  # int32 [N], position of the question in the SQuAD file
    doc_span_index: np.ndarray  # int16 [N], which window of that question's context
    seq_len: np.ndarray  # int16 [N], number of real tokens (= input_mask row sum)
    token_to_orig_map: np.ndarray  # int32 [N, S], context word index, -1 outside the context
    token_is_max_context: np.ndarray  # bool [N, S]
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def max_seq_length(self) -> int:
        return int(self.input_ids.shape[1])


def feature_tokens(features: Features, i: int, vocab: list[str]) -> list[str]:
    """The token strings of feature `i` (real tokens only), e.g. ['[CLS]', 'who', ..., '[SEP]'].

    Post-processing needs them to turn a predicted token span back into text; the ids and the vocab
    used to build the features are all it takes, so they are not stored separately.
    """
    return [vocab[token_id] for token_id in features.input_ids[i, : int(features.seq_len[i])].tolist()]


def check_parameters(max_seq_length: int, doc_stride: int, max_query_length: int) -> None:
    """Reject parameters for which the reference would loop forever or produce nothing."""
    if doc_stride < 1 or max_query_length < 1:
        raise ConfigError(
            f"doc_stride ({doc_stride}) and max_query_length ({max_query_length}) must be at least 1; "
            "use MLPerf's values 128 and 64."
        )
    if max_seq_length > np.iinfo(np.int16).max:
        raise ConfigError(
            f"max_seq_length ({max_seq_length}) is too large for the features layout (int16 lengths); "
            "use MLPerf's value 384."
        )
    if max_seq_length - max_query_length - 3 < 1:
        raise ConfigError(
            f"max_seq_length ({max_seq_length}) leaves no room for context after a {max_query_length}-token "
            "question and 3 special tokens; use MLPerf's values 384 and 64."
        )


def doc_spans(num_tokens: int, max_tokens_for_doc: int, doc_stride: int) -> list[tuple[int, int]]:
    """The (start, length) windows over a context of `num_tokens` sub-tokens, as the reference makes."""
    spans: list[tuple[int, int]] = []
    start = 0
    while start < num_tokens:
        length = min(num_tokens - start, max_tokens_for_doc)
        spans.append((start, length))
        if start + length == num_tokens:
            break
        start += min(length, doc_stride)
    return spans


def best_span_per_token(spans: list[tuple[int, int]], num_tokens: int) -> np.ndarray:
    """For each context sub-token, the index of the window where it has the most context.

    The reference scores a token in a window by min(left context, right context) + 0.01 * window
    length and keeps the first window with the strictly highest score; argmax keeps the first maximum
    too, and the float64 arithmetic is the same, so ties resolve the same way.
    """
    if len(spans) == 1:
        return np.zeros(num_tokens, dtype=np.int64)
    positions = np.arange(num_tokens, dtype=np.int64)
    starts = np.array([s for s, _ in spans], dtype=np.int64)[:, None]
    lengths = np.array([n for _, n in spans], dtype=np.int64)[:, None]
    ends = starts + lengths - 1
    score = np.minimum(positions - starts, ends - positions) + 0.01 * lengths
    score = np.where((positions >= starts) & (positions <= ends), score, -np.inf)
    return np.argmax(score, axis=0)


@dataclass
class _Paragraph:
    """A context tokenized once for all its questions."""

    sub_token_ids: np.ndarray  # int32 [T]
    sub_token_to_word: np.ndarray  # int32 [T], the doc_tokens index of each sub-token
    best_span: dict[int, np.ndarray] = field(default_factory=dict)  # max_tokens_for_doc -> [T]


def convert_examples_to_features(
    examples: list[Example],
    tokenizer: BertUncasedTokenizer,
    *,
    max_seq_length: int = SEQ_LEN,
    doc_stride: int = DOC_STRIDE,
    max_query_length: int = MAX_QUERY_LEN,
) -> Features:
    """Build every feature of `examples` (in order), as the MLPerf reference does."""
    check_parameters(max_seq_length, doc_stride, max_query_length)
    cls_id, sep_id = tokenizer.token_id("[CLS]"), tokenizer.token_id("[SEP]")

    # One batch for every distinct context word and question: the Rust tokenizer is fastest that way.
    tokenizer.encode_many(word for example in _distinct_paragraphs(examples) for word in example.doc_tokens)
    queries = tokenizer.encode_many(example.question_text for example in examples)

    paragraphs: dict[int, _Paragraph] = {}
    plan: list[tuple[int, list[int], _Paragraph, list[tuple[int, int]], np.ndarray]] = []
    for example, query in zip(examples, queries, strict=True):
        query = query[:max_query_length]
        paragraph = paragraphs.get(example.paragraph_index)
        if paragraph is None:
            paragraph = paragraphs[example.paragraph_index] = _tokenize_paragraph(example, tokenizer)
        num_tokens = len(paragraph.sub_token_ids)
        max_tokens_for_doc = max_seq_length - len(query) - 3
        spans = doc_spans(num_tokens, max_tokens_for_doc, doc_stride)
        if not spans:
            # The reference silently makes no feature; say so, as the question cannot be answered.
            logger.warning("Question %s has an empty context and gets no feature", example.qas_id)
            continue
        best = paragraph.best_span.get(max_tokens_for_doc)
        if best is None:
            best = paragraph.best_span[max_tokens_for_doc] = best_span_per_token(spans, num_tokens)
        plan.append((example.example_index, query, paragraph, spans, best))

    n = sum(len(spans) for _, _, _, spans, _ in plan)
    input_ids = np.zeros((n, max_seq_length), dtype=np.int32)  # the reference pads with id 0
    input_mask = np.zeros((n, max_seq_length), dtype=np.int8)
    segment_ids = np.zeros((n, max_seq_length), dtype=np.int8)
    example_index = np.zeros(n, dtype=np.int32)
    doc_span_index = np.zeros(n, dtype=np.int16)
    seq_len = np.zeros(n, dtype=np.int16)
    token_to_orig_map = np.full((n, max_seq_length), -1, dtype=np.int32)
    token_is_max_context = np.zeros((n, max_seq_length), dtype=bool)

    row = 0
    for index, query, paragraph, spans, best in plan:
        doc_offset = len(query) + 2  # [CLS] query [SEP]
        head = [cls_id, *query, sep_id]
        for span_index, (start, length) in enumerate(spans):
            end = doc_offset + length
            input_ids[row, :doc_offset] = head
            input_ids[row, doc_offset:end] = paragraph.sub_token_ids[start : start + length]
            input_ids[row, end] = sep_id
            input_mask[row, : end + 1] = 1
            segment_ids[row, doc_offset : end + 1] = 1
            token_to_orig_map[row, doc_offset:end] = paragraph.sub_token_to_word[start : start + length]
            token_is_max_context[row, doc_offset:end] = best[start : start + length] == span_index
            example_index[row] = index
            doc_span_index[row] = span_index
            seq_len[row] = end + 1
            row += 1

    return Features(
        input_ids=input_ids,
        input_mask=input_mask,
        segment_ids=segment_ids,
        example_index=example_index,
        doc_span_index=doc_span_index,
        seq_len=seq_len,
        token_to_orig_map=token_to_orig_map,
        token_is_max_context=token_is_max_context,
        meta={
            "max_seq_length": max_seq_length,
            "doc_stride": doc_stride,
            "max_query_length": max_query_length,
            "num_examples": len(examples),
            "num_features": n,
        },
    )


def _distinct_paragraphs(examples: list[Example]) -> list[Example]:
    first: dict[int, Example] = {}
    for example in examples:
        first.setdefault(example.paragraph_index, example)
    return list(first.values())


def _tokenize_paragraph(example: Example, tokenizer: BertUncasedTokenizer) -> _Paragraph:
    ids_per_word = tokenizer.encode_many(example.doc_tokens)
    ids = [i for word_ids in ids_per_word for i in word_ids]
    words = [w for w, word_ids in enumerate(ids_per_word) for _ in word_ids]
    return _Paragraph(sub_token_ids=np.array(ids, dtype=np.int32), sub_token_to_word=np.array(words, dtype=np.int32))
