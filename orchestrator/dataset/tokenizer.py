"""BERT uncased WordPiece tokenization that reproduces MLPerf's reference token for token, fast.

MLPerf's reference (language/bert/squad_QSL.py) tokenizes with transformers' slow Python
`BertTokenizer(vocab)`: split out the special tokens, lower-case character by character, clean the
text (drop NUL, U+FFFD and Cc/Cf controls; whitespace -> ' '), put spaces around CJK ideographs,
split on whitespace, strip accents (NFD, drop Mn), split on punctuation, then greedy longest-match
WordPiece (`##` continuation, words over 100 characters -> [UNK]).

The Rust `tokenizers` pipeline (BertNormalizer + BertPreTokenizer + WordPiece) does the same for
ASCII text, which is nearly all of SQuAD, and is what makes this fast. Outside ASCII it differs in
corner cases: it drops every Unicode "other" character (also private-use and unassigned ones, which
the reference keeps) and strips accents before lower-casing. So text with any non-ASCII character
goes through `_reference_words`, a direct port of the reference's basic tokenizer, and only its
WordPiece step runs in Rust. Both paths are cached per distinct text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from tokenizers import Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordPiece

from orchestrator.dataset.basic_tokenizer import clean_and_space_cjk, split_on_punctuation, strip_accents

UNK_TOKEN = "[UNK]"
MAX_INPUT_CHARS_PER_WORD = 100
# transformers' BertTokenizer keeps these whole (never lower-cased, never split) wherever they occur.
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


class BertUncasedTokenizer:
    """Text -> WordPiece ids, as transformers' BertTokenizer(vocab, do_lower_case=True) would give."""

    def __init__(self, vocab: Sequence[str]) -> None:
        self._token_to_id = {token: index for index, token in enumerate(vocab)}
        self._specials = [token for token in SPECIAL_TOKENS if token in self._token_to_id]
        self._special_pattern = re.compile("(" + "|".join(re.escape(t) for t in self._specials) + ")")
        self._cache: dict[str, list[int]] = {}

        def wordpiece() -> WordPiece:
            return WordPiece(
                vocab=self._token_to_id,
                unk_token=UNK_TOKEN,
                max_input_chars_per_word=MAX_INPUT_CHARS_PER_WORD,
            )

        # The whole pipeline, for ASCII text.
        self._ascii = Tokenizer(wordpiece())
        self._ascii.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=True, lowercase=True
        )
        self._ascii.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        self._ascii.add_special_tokens(self._specials)  # matched on the raw text, like transformers
        # WordPiece alone: each input is one word already split by `_reference_words`.
        self._wordpiece = Tokenizer(wordpiece())

    def token_id(self, token: str) -> int:
        return self._token_to_id[token]

    def encode(self, text: str) -> list[int]:
        """The ids of one text (cached)."""
        self.encode_many([text])
        return self._cache[text]

    def encode_many(self, texts: Iterable[str]) -> list[list[int]]:
        """The ids of each text, in order; distinct uncached texts are tokenized in one batch."""
        texts = list(texts)
        cache = self._cache
        new = list(dict.fromkeys(text for text in texts if text not in cache))
        if not new:
            return [cache[text] for text in texts]
        ascii_texts = [text for text in new if text.isascii()]
        other_texts = [text for text in new if not text.isascii()]
        for text, ids in zip(ascii_texts, _ids_of(self._ascii, ascii_texts), strict=True):
            self._cache[text] = ids
        if other_texts:
            self._encode_non_ascii(other_texts)
        return [self._cache[text] for text in texts]

    def _encode_non_ascii(self, texts: list[str]) -> None:
        words_of = [self._reference_words(text) for text in texts]
        distinct = list(dict.fromkeys(word for words in words_of for word in words))
        word_ids = dict(zip(distinct, _ids_of(self._wordpiece, distinct), strict=True))
        for text, words in zip(texts, words_of, strict=True):
            self._cache[text] = [i for word in words for i in word_ids[word]]

    def _reference_words(self, text: str) -> list[str]:
        """The words the reference hands to WordPiece; a special token stays one word (in the vocab)."""
        words: list[str] = []
        pieces = self._special_pattern.split(text) if self._specials else [text]
        for k, piece in enumerate(pieces):
            if k % 2 == 1:  # a captured special token
                words.append(piece)
                continue
            # transformers lower-cases character by character (a regex over single characters),
            # so Greek final sigma is never produced: "Σ" always becomes "σ".
            piece = "".join(char.lower() for char in piece)
            for word in clean_and_space_cjk(piece).split():
                words.extend(split_on_punctuation(strip_accents(word.lower())))
        return words


def _ids_of(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    if not texts:
        return []
    # encode_batch_fast skips the offsets we do not need (tokenizers >= 0.20).
    encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
    return [encoding.ids for encoding in encode(texts, add_special_tokens=False)]
