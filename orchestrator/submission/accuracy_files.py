"""The accuracy files of a submission: the truncated accuracy log and accuracy.txt with its hash.

The full LoadGen accuracy log stays in the run directory; the submission holds its first and last
4,096 characters around a separator, and accuracy.txt carries the sha256 of the FULL log, so a
reviewer can ask for the original and verify it.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from orchestrator.errors import SubmissionError
from orchestrator.submission.rules import (
    ACCURACY_LINE_RE,
    HASH_LINE_RE,
    TRUNCATE_KEEP,
    TRUNCATE_SEPARATOR,
)

TRUNCATED_SIZE = 2 * TRUNCATE_KEEP + len(TRUNCATE_SEPARATOR)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def truncated_bytes(path: Path) -> bytes:
    """The submission copy of an accuracy log: head + separator + tail; a log too small to shrink is kept whole."""
    size = path.stat().st_size
    with path.open("rb") as f:
        if size <= TRUNCATED_SIZE:
            return f.read()
        head = f.read(TRUNCATE_KEEP)
        f.seek(size - TRUNCATE_KEEP)
        tail = f.read(TRUNCATE_KEEP)
    return head + TRUNCATE_SEPARATOR + tail


def is_truncated_form(data: bytes) -> bool:
    return (
        len(data) == TRUNCATED_SIZE
        and data[TRUNCATE_KEEP : TRUNCATE_KEEP + len(TRUNCATE_SEPARATOR)] == TRUNCATE_SEPARATOR
    )


def plain_decimal(value: float) -> str:
    """A number as the checker's regex wants it: digits and a dot, never an exponent or a sign."""
    if value < 0:
        raise SubmissionError(
            f"accuracy value {value} is negative; the accuracy scorer produced a bad result, rerun it"
        )
    text = format(Decimal(repr(float(value))), "f")
    return text


def accuracy_line(exact_match: float, f1: float) -> str:
    return f'{{"exact_match": {plain_decimal(exact_match)}, "f1": {plain_decimal(f1)}}}'


def parse_accuracy_line(lines: list[str]) -> tuple[float, float] | None:
    """(exact_match, f1) from the first line the official bert regex accepts and float() can read."""
    for line in lines:
        m = ACCURACY_LINE_RE.match(line)
        if m:
            try:
                return float(m.group(1)), float(m.group(2))
            except ValueError:
                return None
    return None


def parse_hash_line(lines: list[str]) -> str | None:
    for line in lines:
        m = HASH_LINE_RE.match(line.rstrip("\n"))
        if m:
            return m.group(1)
    return None


def submission_accuracy_txt(run_accuracy_txt: Path | None, results: dict[str, Any], full_log: Path) -> str:
    """accuracy.txt for the submission: the run's own lines (without any old hash line), an accuracy line
    the official checker can parse, then `hash=<sha256 of the full accuracy log>`."""
    lines: list[str] = []
    if run_accuracy_txt is not None and run_accuracy_txt.is_file():
        lines = [ln.rstrip("\n") for ln in run_accuracy_txt.read_text(encoding="utf-8").splitlines()]
    full_hash = sha256_file(full_log)
    recorded = parse_hash_line(lines)
    if recorded is not None and recorded != full_hash:
        raise SubmissionError(
            f"{run_accuracy_txt} records hash {recorded} but {full_log} hashes to {full_hash}; "
            "the accuracy log changed after scoring, rescore the run"
        )
    lines = [ln for ln in lines if not HASH_LINE_RE.match(ln)]
    if parse_accuracy_line(lines) is None:
        acc = results.get("accuracy") or {}
        em, f1 = acc.get("exact_match"), acc.get("f1")
        if not isinstance(em, (int, float)) or not isinstance(f1, (int, float)):
            where = run_accuracy_txt or full_log.parent / "accuracy.txt"
            raise SubmissionError(
                f"no accuracy result for {full_log.parent}: {where} has no line like "
                '{"exact_match": 80.1, "f1": 87.2} and run.json has no results.accuracy; score the run first'
            )
        lines.insert(0, accuracy_line(float(em), float(f1)))
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines + [f"hash={full_hash}"]) + "\n"


def dumps_json(data: Any) -> str:
    """JSON as every file in the tree is written: sorted keys, 2-space indent, trailing newline (deterministic)."""
    return json.dumps(data, indent=2, sort_keys=True) + "\n"
