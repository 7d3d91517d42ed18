"""Read and validate a SQuAD v1.1 JSON file into examples, split exactly as BERT's reference does.

The whitespace split of each context must match `read_squad_examples` of BERT's run_squad.py (as
vendored by MLPerf in create_squad_data.py): only ' ', tab, CR, LF and U+202F separate words. Python's
`str.split()` splits on more characters (e.g. U+00A0, U+2009), which would shift every
token_to_orig_map index after such a character, so it is not used here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import DatasetError

logger = logging.getLogger(__name__)

_SPLIT_CHARS = frozenset(" \t\r\n\u202f")


@dataclass(frozen=True, slots=True)
class Example:
    """One question. Questions of the same paragraph share one `doc_tokens` tuple."""

    example_index: int  # position of the question in the file (0-based), as in the reference
    qas_id: str
    question_text: str
    doc_tokens: tuple[str, ...]  # the context split on whitespace
    answers: tuple[str, ...]  # the answer texts (dev sets have several; may be empty)
    paragraph_index: int  # position of the paragraph in the file, shared by its questions


def split_doc_tokens(context: str) -> tuple[str, ...]:
    """Split a context into words on the reference's whitespace set, nothing else."""
    tokens: list[str] = []
    start = -1  # start of the current word, -1 between words
    for i, char in enumerate(context):
        if char in _SPLIT_CHARS:
            if start >= 0:
                tokens.append(context[start:i])
                start = -1
        elif start < 0:
            start = i
    if start >= 0:
        tokens.append(context[start:])
    return tuple(tokens)


def load_examples(path: Path) -> list[Example]:
    """Read a SQuAD v1.1 JSON file; raise DatasetError with one clear sentence if it is unusable."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(
            f"SQuAD file {path} does not exist; pass the path of a SQuAD v1.1 JSON file (e.g. dev-v1.1.json)."
        ) from None
    except OSError as exc:
        raise DatasetError(f"SQuAD file {path} cannot be read ({exc.strerror}); check its permissions.") from exc
    return parse_examples(data, path)


def parse_examples(data: bytes, source: Path) -> list[Example]:
    """Parse the bytes of a SQuAD v1.1 file; `source` only names the file in error messages."""
    if data[:2] == b"\x1f\x8b":
        raise DatasetError(
            f"SQuAD file {source} is gzip-compressed; decompress it first (gunzip -k {source.name}) and pass the "
            ".json file (only --calibration reads .json.gz)."
        )
    try:
        text = data.decode("utf-8-sig")  # tolerate a byte order mark; the reference files have none
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"SQuAD file {source} is not valid UTF-8 (bad byte at offset {exc.start}); "
            "re-save it as UTF-8 JSON or download the official file again."
        ) from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"SQuAD file {source} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
            "the file is probably truncated or corrupt, so download it again."
        ) from None
    return _examples_from_document(document, source)


def _examples_from_document(document: Any, source: Path) -> list[Example]:
    def bad(where: str, what: str) -> DatasetError:
        return DatasetError(
            f"SQuAD file {source} does not have the SQuAD v1.1 structure ({where}: {what}); "
            "pass a SQuAD v1.1 file such as the official dev-v1.1.json."
        )

    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise bad("top level", 'no "data" list')

    examples: list[Example] = []
    seen_ids: set[str] = set()
    paragraph_index = 0
    for a, article in enumerate(document["data"]):
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise bad(f"data[{a}]", 'missing a "paragraphs" list')
        for p, paragraph in enumerate(article["paragraphs"]):
            where = f"data[{a}].paragraphs[{p}]"
            if not isinstance(paragraph, dict):
                raise bad(where, "not an object")
            context = paragraph.get("context")
            if not isinstance(context, str):
                raise bad(where, 'missing a "context" string')
            qas = paragraph.get("qas")
            if not isinstance(qas, list):
                raise bad(where, 'missing a "qas" list')
            doc_tokens = split_doc_tokens(context)
            for q, qa in enumerate(qas):
                qa_where = f"{where}.qas[{q}]"
                if not isinstance(qa, dict):
                    raise bad(qa_where, "not an object")
                qas_id = qa.get("id")
                if not isinstance(qas_id, str):
                    raise bad(qa_where, 'missing an "id" string')
                question = qa.get("question")
                if not isinstance(question, str):
                    raise bad(qa_where, 'missing a "question" string')
                if qas_id in seen_ids:
                    raise bad(qa_where, f"question id {qas_id!r} appears twice")
                seen_ids.add(qas_id)
                examples.append(
                    Example(
                        example_index=len(examples),
                        qas_id=qas_id,
                        question_text=question,
                        doc_tokens=doc_tokens,
                        answers=_answer_texts(qa.get("answers", []), qa_where, bad),
                        paragraph_index=paragraph_index,
                    )
                )
            paragraph_index += 1

    if not examples:
        raise DatasetError(f"SQuAD file {source} contains no questions; pass a SQuAD v1.1 file such as dev-v1.1.json.")
    logger.debug("Read %d questions in %d paragraphs from %s", len(examples), paragraph_index, source)
    return examples


def _answer_texts(answers: Any, where: str, bad: Callable[[str, str], DatasetError]) -> tuple[str, ...]:
    if not isinstance(answers, list):
        raise bad(where, '"answers" is not a list')
    texts: list[str] = []
    for k, answer in enumerate(answers):
        if not isinstance(answer, dict) or not isinstance(answer.get("text"), str):
            raise bad(f"{where}.answers[{k}]", 'missing a "text" string')
        texts.append(answer["text"])
    return tuple(texts)
