"""Reading and validating SQuAD files and vocabularies (orchestrator.dataset.squad / .vocab)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.dataset import load_examples, load_vocab
from orchestrator.dataset.squad import split_doc_tokens
from orchestrator.errors import DatasetError
from orchestrator.paths import EMBEDDED_DATASET, EMBEDDED_VOCAB


def _squad(paragraphs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"version": "1.1", "data": [{"title": "T", "paragraphs": paragraphs}]}


def _write(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def _one_sentence(message: str) -> bool:
    return message.count(". ") == 0 and message.endswith(".")


def test_dev_set_examples() -> None:
    examples = load_examples(EMBEDDED_DATASET)
    assert len(examples) == 10570
    first = examples[0]
    assert first.example_index == 0
    assert first.qas_id == "56be4db0acb8001400a502ec"  # the first question of dev-v1.1.json
    assert first.question_text == "Which NFL team represented the AFC at Super Bowl 50?"
    assert first.doc_tokens[:3] == ("Super", "Bowl", "50")
    assert first.answers == ("Denver Broncos", "Denver Broncos", "Denver Broncos")
    assert [e.example_index for e in examples] == list(range(10570))
    assert len({e.paragraph_index for e in examples}) == 2067
    # Questions of one paragraph share the same tokens object (tokenized once downstream).
    assert examples[1].doc_tokens is first.doc_tokens


def test_whitespace_split_matches_the_reference_set_only() -> None:
    # ' ', tab, CR, LF and U+202F split words; NBSP (U+00A0) and thin space (U+2009) do not.
    assert split_doc_tokens("  a\tb\r\nc\u202fd ") == ("a", "b", "c", "d")
    assert split_doc_tokens("1\u00a0000 x\u2009y") == ("1\u00a0000", "x\u2009y")
    assert split_doc_tokens("") == ()
    assert split_doc_tokens(" \n ") == ()


def test_small_file_fields(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        _squad(
            [
                {"context": "A b.", "qas": [{"id": "q1", "question": "What?", "answers": [{"text": "b"}]}]},
                {"context": "C", "qas": [{"id": "q2", "question": "Why?"}]},  # no answers: allowed
            ]
        ),
    )
    examples = load_examples(path)
    assert [(e.example_index, e.qas_id, e.paragraph_index) for e in examples] == [(0, "q1", 0), (1, "q2", 1)]
    assert examples[0].doc_tokens == ("A", "b.")
    assert examples[0].answers == ("b",)
    assert examples[1].answers == ()


def test_malformed_json(tmp_path: Path) -> None:
    path = tmp_path / "dev.json"
    path.write_text('{"data": [', encoding="utf-8")
    with pytest.raises(DatasetError) as info:
        load_examples(path)
    message = str(info.value)
    assert str(path) in message and "not valid JSON" in message and "download it again" in message
    assert _one_sentence(message)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "dev.json"
    path.write_bytes(b'{"data": ["caf\xe9"]}')
    with pytest.raises(DatasetError, match=r"not valid UTF-8 \(bad byte at offset 14\)"):
        load_examples(path)


def test_gzipped_file_says_to_decompress_it(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "dev-v1.1.json.gz"
    path.write_bytes(gzip.compress(b'{"data": []}'))
    with pytest.raises(DatasetError, match=r"is gzip-compressed; decompress it first \(gunzip -k dev-v1.1.json.gz\)"):
        load_examples(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_examples(tmp_path / "nope.json")


@pytest.mark.parametrize(
    ("document", "what"),
    [
        ([], 'no "data" list'),
        ({"version": "1.1"}, 'no "data" list'),
        ({"data": [{"title": "x"}]}, r'data\[0\]: missing a "paragraphs" list'),
        (_squad([{"qas": []}]), r'paragraphs\[0\]: missing a "context" string'),
        (_squad([{"context": "c"}]), r'paragraphs\[0\]: missing a "qas" list'),
        (_squad([{"context": "c", "qas": [{"question": "q"}]}]), r'qas\[0\]: missing an "id" string'),
        (_squad([{"context": "c", "qas": [{"id": "a"}]}]), r'qas\[0\]: missing a "question" string'),
        (
            _squad([{"context": "c", "qas": [{"id": "a", "question": "q", "answers": [{"answer_start": 0}]}]}]),
            r'answers\[0\]: missing a "text" string',
        ),
        (
            _squad([{"context": "c", "qas": [{"id": "a", "question": "q"}, {"id": "a", "question": "r"}]}]),
            r"question id 'a' appears twice",
        ),
    ],
)
def test_wrong_structure(tmp_path: Path, document: Any, what: str) -> None:
    path = _write(tmp_path, document)
    with pytest.raises(DatasetError, match=what) as info:
        load_examples(path)
    message = str(info.value)
    assert message.startswith(f"SQuAD file {path} does not have the SQuAD v1.1 structure")
    assert message.endswith("pass a SQuAD v1.1 file such as the official dev-v1.1.json.")


def test_no_questions(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="contains no questions"):
        load_examples(_write(tmp_path, {"data": []}))


def test_embedded_vocab() -> None:
    vocab = load_vocab(EMBEDDED_VOCAB)
    assert len(vocab) == 30522
    assert vocab[:1] == ["[PAD]"]
    assert vocab[100:104] == ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def test_vocab_crlf_and_no_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "vocab.txt"
    path.write_bytes(b"[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\nthe")
    assert load_vocab(path) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the"]


@pytest.mark.parametrize(
    ("content", "what"),
    [
        (b"", "is empty"),
        (b"[PAD]\n[UNK]\n\n[CLS]\n[SEP]\n", "empty line at line 3"),
        (b"[PAD]\n[UNK]\n[CLS]\n[SEP]\nthe\nthe\n", "lists 'the' twice \\(lines 5 and 6\\)"),
        (b"[PAD]\n[UNK]\nthe\n", "lacks the special token\\(s\\) \\[CLS\\], \\[SEP\\]"),
        (b"[PAD]\n[UNK]\n[CLS]\n[SEP]\ncaf\xe9\n", "not valid UTF-8"),
    ],
)
def test_bad_vocab(tmp_path: Path, content: bytes, what: str) -> None:
    path = tmp_path / "vocab.txt"
    path.write_bytes(content)
    with pytest.raises(DatasetError, match=what) as info:
        load_vocab(path)
    message = str(info.value)
    assert message.startswith(f"Vocabulary {path} ") and message.endswith(".")
    assert _one_sentence(message)


def test_missing_vocab(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist; pass the BERT vocab.txt"):
        load_vocab(tmp_path / "vocab.txt")
