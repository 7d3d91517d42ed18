"""The whole dev set against the features MLPerf's reference scripts produce (tests/fixtures)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from orchestrator.dataset import (
    Features,
    build_features,
    feature_tokens,
    load_examples,
    load_features,
    load_vocab,
)
from orchestrator.dataset.tokenizer import BertUncasedTokenizer
from orchestrator.paths import EMBEDDED_DATASET, EMBEDDED_VOCAB

FIXTURE = Path(__file__).parent / "fixtures" / "reference_features.npz"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Features, float]:
    started = time.perf_counter()
    path = build_features(EMBEDDED_DATASET, EMBEDDED_VOCAB, tmp_path_factory.mktemp("cache"))
    seconds = time.perf_counter() - started
    return load_features(path), seconds


def test_identical_to_mlperf_reference(built: tuple[Features, float]) -> None:
    features, _ = built
    with np.load(FIXTURE, allow_pickle=False) as reference:
        assert len(features) == 10833 == reference["input_ids"].shape[0]
        for name in ("input_ids", "input_mask", "segment_ids", "example_index", "doc_span_index"):
            ours, theirs = getattr(features, name), reference[name]
            assert ours.shape == theirs.shape, name
            # Compare values, not dtypes: the fixture stores uint16/uint8, our layout int32/int8.
            mismatched_rows = np.unique(np.nonzero(ours.astype(np.int64) != theirs.astype(np.int64))[0])
            assert mismatched_rows.tolist() == [], f"{name} differs in rows {mismatched_rows[:10].tolist()}"


def test_layout_and_meta(built: tuple[Features, float]) -> None:
    features, _ = built
    n = 10833
    expected = {
        "input_ids": (np.int32, (n, 384)),
        "input_mask": (np.int8, (n, 384)),
        "segment_ids": (np.int8, (n, 384)),
        "example_index": (np.int32, (n,)),
        "doc_span_index": (np.int16, (n,)),
        "seq_len": (np.int16, (n,)),
        "token_to_orig_map": (np.int32, (n, 384)),
        "token_is_max_context": (np.bool_, (n, 384)),
    }
    for name, (dtype, shape) in expected.items():
        array = getattr(features, name)
        assert (array.dtype, array.shape) == (np.dtype(dtype), shape), name
    assert (features.seq_len == features.input_mask.sum(axis=1)).all()
    # Context tokens (segment 1, before the final [SEP]) map to a word; nothing else does.
    context = (features.segment_ids == 1) & (np.arange(384) < (features.seq_len[:, None] - 1))
    assert ((features.token_to_orig_map >= 0) == context).all()
    assert not (features.token_is_max_context & ~context).any()
    # Facts published with the fixture: mean real length 178.5, median 164.
    assert round(float(features.seq_len.mean()), 1) == 178.5
    assert int(np.median(features.seq_len)) == 164
    assert features.meta["num_examples"] == 10570 and features.meta["num_features"] == n
    assert features.meta["parameters"] == {
        "max_seq_length": 384,
        "doc_stride": 128,
        "max_query_length": 64,
        "do_lower_case": True,
    }
    assert len(features.meta["dataset_sha256"]) == 64
    json.dumps(features.meta)  # plain JSON


def test_every_context_token_is_max_in_exactly_one_window(built: tuple[Features, float]) -> None:
    features, _ = built
    examples = load_examples(EMBEDDED_DATASET)
    tokenizer = BertUncasedTokenizer(load_vocab(EMBEDDED_VOCAB))
    sub_tokens = np.array([sum(map(len, tokenizer.encode_many(e.doc_tokens))) for e in examples])
    max_tokens = np.bincount(
        features.example_index, weights=features.token_is_max_context.sum(axis=1), minlength=len(examples)
    )
    assert (features.token_is_max_context.sum(axis=1) > 0).all()
    assert (max_tokens == sub_tokens).all()
    # Windows overlap (doc_stride 128 < window), so some questions see tokens in several windows.
    assert features.token_is_max_context.sum() < (features.token_to_orig_map >= 0).sum()


def test_feature_tokens_rebuild_the_text(built: tuple[Features, float]) -> None:
    features, _ = built
    vocab = load_vocab(EMBEDDED_VOCAB)
    tokens = feature_tokens(features, 0, vocab)
    assert tokens[:12] == [
        "[CLS]", "which", "nfl", "team", "represented", "the", "afc", "at", "super", "bowl", "50", "?",
    ]  # fmt: skip
    assert tokens[12:16] == ["[SEP]", "super", "bowl", "50"]
    assert tokens[-1] == "[SEP]" and len(tokens) == int(features.seq_len[0])


def test_fast_enough(built: tuple[Features, float]) -> None:
    _, seconds = built
    # A few seconds on a 2-core machine; the reference Python tokenizer takes minutes.
    assert seconds < 20, f"building the dev-set features took {seconds:.1f} s"
