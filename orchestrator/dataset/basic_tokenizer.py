"""BERT's BasicTokenizer (uncased): clean, split CJK, lower-case, strip accents, split punctuation.

One copy of the reference's character classes, used twice: by the features (the non-ASCII path of
`tokenizer.py`) and by post-processing, which needs exactly this normalisation to line a predicted
WordPiece span up with the original text (`accuracy/postprocess.get_final_text`). The classes follow
Google's BERT `tokenization.py`, which MLPerf's reference uses.
"""

from __future__ import annotations

import re
import unicodedata

# CJK Unified Ideographs blocks (not Hangul or Kana, which are written with spaces).
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


def _is_whitespace(char: str) -> bool:
    # \t \n \r are control characters by category, but BERT treats them as white space.
    return char in " \t\n\r" or unicodedata.category(char) == "Zs"


def _is_control(char: str) -> bool:
    if char in "\t\n\r":
        return False
    return unicodedata.category(char) in ("Cc", "Cf")


def _is_punctuation(char: str) -> bool:
    cp = ord(char)
    # Every non-alphanumeric ASCII character counts as punctuation, e.g. "$", "^", "`".
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _is_cjk(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


def clean_and_space_cjk(text: str) -> str:
    out: list[str] = []
    for char in text:
        cp = ord(char)
        if cp == 0 or cp == 0xFFFD or _is_control(char):
            continue
        if _is_whitespace(char):
            out.append(" ")
        elif _is_cjk(cp):
            out.extend((" ", char, " "))
        else:
            out.append(char)
    return "".join(out)


def strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


def split_on_punctuation(token: str) -> list[str]:
    pieces: list[str] = []
    current: list[str] = []
    for char in token:
        if _is_punctuation(char):
            if current:
                pieces.append("".join(current))
                current = []
            pieces.append(char)
        else:
            current.append(char)
    if current:
        pieces.append("".join(current))
    return pieces


# ASCII text (nearly all of SQuAD) needs none of the Unicode tables: control characters other than
# tab/LF/CR are dropped, and every printable character that is not a letter, digit or space is
# punctuation, so the tokens are the runs of letters/digits and the single other characters.
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ASCII_TOKEN = re.compile(r"[a-z0-9]+|[^a-z0-9 \t\n\r]")


def basic_tokenize(text: str) -> list[str]:
    """Uncased BERT basic tokenization of `text` (no WordPiece)."""
    if text.isascii():
        return _ASCII_TOKEN.findall(_ASCII_CONTROL.sub("", text).lower())
    tokens: list[str] = []
    for word in clean_and_space_cjk(text).split():
        tokens.extend(split_on_punctuation(strip_accents(word.lower())))
    # Stripping accents can leave an empty piece (a word of combining marks only); split() drops it.
    return " ".join(tokens).split()
