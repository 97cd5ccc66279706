"""A real WordPiece tokenizer with a small in-code vocabulary, for tiny test models.

It covers printable ASCII and every Hangul syllable and jamo, so English and Korean text never
falls back to ``[UNK]``; it is no substitute for a trained multilingual vocabulary. English words
split into letter pairs, so a sentence of ten English words fits ``tiny()``'s 32 tokens as a
Korean one does (letter by letter it took about 40, and truncation cut off its end).
"""

from __future__ import annotations

import functools
import string

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

# A few whole words so common English queries are not spelled out letter by letter.
_WORDS = (
    "a", "an", "the", "and", "of", "in", "on", "with", "to", "is", "are",
    "man", "woman", "person", "people", "dog", "cat", "car", "ball", "video", "water", "street",
    "playing", "running", "walking", "cooking", "talking", "singing", "dancing", "driving", "riding",
    "eating", "kitchen", "guitar", "music", "game", "sports", "red", "blue", "green", "white", "black",
)
_SUFFIXES = ("s", "ing", "ed", "er", "ly")
_LETTER_PAIRS = tuple(a + b for a in string.ascii_lowercase for b in string.ascii_lowercase)


def _hangul() -> list[str]:
    syllables = [chr(c) for c in range(0xAC00, 0xD7A4)]
    compatibility_jamo = [chr(c) for c in range(0x3131, 0x318F)]
    # Conjoining jamo appear when text arrives NFD-normalised (decomposed syllables).
    conjoining_jamo = [chr(c) for c in range(0x1100, 0x1200)]
    return syllables + compatibility_jamo + conjoining_jamo


@functools.cache
def tiny_vocab() -> tuple[str, ...]:
    """The ordered vocabulary: specials, whole words, characters, letter pairs, then '##' continuations."""
    # Inputs are lower-cased by the normaliser, so upper-case letters are never looked up.
    ascii_chars = [c for c in string.printable if c.isprintable() and not c.isspace() and not c.isupper()]
    word_chars = [c for c in ascii_chars if c.isalnum()]
    hangul = _hangul()
    tokens = [*SPECIAL_TOKENS, *_WORDS, *ascii_chars, *hangul, *_LETTER_PAIRS]
    tokens += [f"##{piece}" for piece in (*_SUFFIXES, *word_chars, *hangul, *_LETTER_PAIRS)]
    return tuple(dict.fromkeys(tokens))  # drop duplicates, keep order


def tiny_vocab_size() -> int:
    return len(tiny_vocab())


def build_tiny_tokenizer(max_tokens: int):
    """A ``BertTokenizer`` (tokenizers-backed) over ``tiny_vocab()``; saves and reloads with the HF API."""
    from transformers import BertTokenizer

    vocab = {token: index for index, token in enumerate(tiny_vocab())}
    # strip_accents=False keeps Hangul syllables composed: BERT's accent stripping NFD-decomposes them.
    return BertTokenizer(vocab=vocab, do_lower_case=True, strip_accents=False, model_max_length=max_tokens)
