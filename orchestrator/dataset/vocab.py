"""Read and validate a BERT WordPiece vocabulary (one token a line; the line number is the id)."""

from __future__ import annotations

from pathlib import Path

from orchestrator.errors import DatasetError

REQUIRED_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")


def load_vocab(path: Path) -> list[str]:
    """Return the vocabulary as a list (id -> token); raise DatasetError if it is unusable."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(
            f"Vocabulary {path} does not exist; pass the BERT vocab.txt that matches the model."
        ) from None
    except OSError as exc:
        raise DatasetError(f"Vocabulary {path} cannot be read ({exc.strerror}); check its permissions.") from exc
    return parse_vocab(data, path)


def parse_vocab(data: bytes, source: Path) -> list[str]:
    """Parse vocabulary bytes; `source` only names the file in error messages."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"Vocabulary {source} is not valid UTF-8 (bad byte at offset {exc.start}); "
            "pass the BERT vocab.txt that matches the model."
        ) from None
    # One token per line. Only the line break is stripped: a token never contains one, while other
    # whitespace could in principle be part of a token (transformers strips only "\n" as well).
    tokens = [line.rstrip("\r") for line in text.split("\n")]
    if tokens and tokens[-1] == "":
        tokens.pop()  # the final newline
    if not tokens:
        raise DatasetError(f"Vocabulary {source} is empty; pass the BERT vocab.txt that matches the model.")

    seen: dict[str, int] = {}
    for index, token in enumerate(tokens):
        if token == "":
            raise DatasetError(
                f"Vocabulary {source} has an empty line at line {index + 1}; "
                "pass an unmodified BERT vocab.txt (one token per line)."
            )
        if token in seen:
            raise DatasetError(
                f"Vocabulary {source} lists {token!r} twice (lines {seen[token] + 1} and {index + 1}); "
                "pass an unmodified BERT vocab.txt."
            )
        seen[token] = index
    missing = [token for token in REQUIRED_TOKENS if token not in seen]
    if missing:
        raise DatasetError(
            f"Vocabulary {source} lacks the special token(s) {', '.join(missing)}; "
            "pass a BERT WordPiece vocab.txt such as the uncased one MLPerf uses."
        )
    return tokens
