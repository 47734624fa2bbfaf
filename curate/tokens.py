"""Fast word tokens and their hashes for whole batches of texts, in numpy.

Shared by near-duplicate signatures, the repetition filter and the language screen: one pass over
the bytes of a batch, no Python per token.
"""

from __future__ import annotations

import re

import numpy as np

#: Words, with each CJK/kana/hangul character counting as one word (Chinese is not spaced).
_WORD = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]|\w+")


def words(text: str) -> list[str]:
    """The words of `text` as the regex reads them: for counting and shingling in Python."""
    return _WORD.findall(text)


P1 = np.uint64(0x100000001B3)
C1 = np.uint64(0xBF58476D1CE4E5B9)
C2 = np.uint64(0x94D049BB133111EB)


def mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads every input bit over the output."""
    h = h ^ (h >> np.uint64(30))
    h = h * C1
    h = h ^ (h >> np.uint64(27))
    h = h * C2
    return h ^ (h >> np.uint64(31))


WORD_BYTE = np.zeros(256, dtype=bool)
for _c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_":
    WORD_BYTE[_c] = True
WORD_BYTE[0x80:] = True
B = np.uint64(0x9E3779B97F4A7C15 | 1)
B_INV = np.uint64(pow(int(B), -1, 1 << 64))
POWERS: dict[str, np.ndarray] = {}
#: Texts are hashed in groups of about this many bytes, so the tables of powers stay small
#: (the hash of a word does not depend on where it lies in the buffer).
GROUP_BYTES = 4 << 20


def _power_table(size: int) -> dict[str, np.ndarray]:
    table = {}
    with np.errstate(over="ignore"):
        for key, base in (("b", B), ("inv", B_INV)):
            factors = np.full(size, base, dtype=np.uint64)
            factors[0] = 1
            table[key] = np.cumprod(factors, dtype=np.uint64)
    return table


def powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    if n > 2 * GROUP_BYTES:  # one huge text: a table for this call only, never kept
        table = _power_table(n)
        return table["b"], table["inv"]
    if "b" not in POWERS or POWERS["b"].size < n:
        POWERS.update(_power_table(min(max(n, 1 << 16) * 2, 2 * GROUP_BYTES)))
    return POWERS["b"][:n], POWERS["inv"][:n]


def _bounds(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end byte offsets of the words in a buffer."""
    word = WORD_BYTE[b]
    punct = b == 0xE2
    word &= ~punct
    word[1:] &= ~punct[:-1]
    word[2:] &= ~punct[:-2]
    cjk = (b >= 0xE3) & (b <= 0xED)
    prev = np.concatenate(([False], word[:-1]))
    nxt = np.concatenate((word[1:], [False]))
    nxt_cjk = np.concatenate((cjk[1:], [False]))
    return np.flatnonzero(word & (~prev | cjk)), np.flatnonzero(word & (~nxt | nxt_cjk)) + 1


def token_strings(text: str) -> list[str]:
    """The words `token_hashes` sees in one text, as (casefolded) strings: to name a hash."""
    data = text.casefold().encode("utf-8", "surrogatepass")
    starts, ends = _bounds(np.frombuffer(data + b"\x00", dtype=np.uint8))
    return [data[s:e].decode("utf-8", "replace") for s, e in zip(starts.tolist(), ends.tolist(), strict=False)]


def token_hashes(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Token hashes for a whole batch in numpy, no Python per token: about 10x faster than
    hashing each regex token. Words are runs of ASCII letters, digits and non-ASCII bytes; each
    CJK/kana/hangul character is a word of its own; U+2000-U+2FFF punctuation separates. The
    hash is a polynomial over the bytes, from prefix sums (the base is odd, so invertible mod
    2^64), then mixed. Being a polynomial it is not collision-proof against a crafted input,
    which is why candidates are verified with `shingle_set`'s keyed hashes, not these."""
    encoded = [t.casefold().encode("utf-8", "surrogatepass") for t in texts]
    groups, size, first = [], 0, 0
    for i, e in enumerate(encoded):
        size += len(e) + 1
        if size > GROUP_BYTES and i > first:
            groups.append((first, i))
            first, size = i, len(e) + 1
    groups.append((first, len(encoded)))
    if len(groups) == 1:
        return _group_hashes(encoded)
    parts = [_group_hashes(encoded[a:b]) for a, b in groups]
    return np.concatenate([h for h, _ in parts]), np.concatenate([n for _, n in parts])


def _group_hashes(encoded: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    if not encoded:
        return np.empty(0, np.uint64), np.zeros(0, np.int64)
    buf = b"\x00".join(encoded) + b"\x00"
    b = np.frombuffer(buf, dtype=np.uint8)
    n = b.size
    starts, ends = _bounds(b)
    pow_b, pow_inv = powers(n)
    with np.errstate(over="ignore"):
        prefix = np.cumsum(b.astype(np.uint64) * pow_inv, dtype=np.uint64)
        before = np.where(starts > 0, prefix[np.maximum(starts - 1, 0)], np.uint64(0))
        hashes = mix((prefix[ends - 1] - before) * pow_b[starts])
    text_starts = np.cumsum([0] + [len(e) + 1 for e in encoded[:-1]])
    owner = np.searchsorted(text_starts, starts, side="right") - 1
    lengths = np.bincount(owner, minlength=len(encoded)).astype(np.int64)
    return hashes, lengths


def ngram_hashes(
    toks: np.ndarray, lengths: np.ndarray, ngram: int, short_as_one: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(hashes of every run of `ngram` consecutive tokens within a text, owning text index).
    With `short_as_one`, a text shorter than `ngram` tokens yields one hash of all its tokens."""
    n_texts = len(lengths)
    total = toks.size
    if total == 0:
        return np.empty(0, np.uint64), np.empty(0, np.int64)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    ends = starts + lengths
    parts_h, parts_owner = [], []
    with np.errstate(over="ignore"):
        if total >= ngram:
            # Every window of `ngram` tokens from slices (no gathers), then keep the windows that
            # lie inside one text.
            h = np.zeros(total - ngram + 1, dtype=np.uint64)
            for j in range(ngram):
                h = (h ^ toks[j : total - ngram + 1 + j]) * P1
            owner = np.repeat(np.arange(n_texts), lengths)[: total - ngram + 1]
            inside = np.arange(total - ngram + 1) + ngram <= ends[owner]
            parts_h.append(h[inside])
            parts_owner.append(owner[inside])
        if short_as_one:
            short = np.flatnonzero((lengths > 0) & (lengths < ngram))
            if short.size:
                h = np.zeros(short.size, dtype=np.uint64)
                for j in range(ngram - 1):
                    take = toks[np.minimum(starts[short] + j, total - 1)]
                    h = np.where(j < lengths[short], (h ^ take) * P1, h)
                parts_h.append(h)
                parts_owner.append(short)
        h = np.concatenate(parts_h) if parts_h else np.empty(0, np.uint64)
        owner = np.concatenate(parts_owner) if parts_owner else np.empty(0, np.int64)
        if len(parts_h) > 1:
            order = np.argsort(owner, kind="stable")
            h, owner = h[order], owner[order]
        return mix(h), owner


def repeated_fraction(texts: list[str], ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """Per text: (share of its word n-grams that repeat an earlier one, number of words)."""
    toks, lengths = token_hashes(texts)
    h, owner = ngram_hashes(toks, lengths, ngram, short_as_one=False)
    total = np.bincount(owner, minlength=len(texts))
    if not h.size:
        return np.zeros(len(texts)), lengths
    # One sort of (text index in the high bits, hash in the low 52): equal neighbours are repeats.
    shift = np.uint64(max(int(len(texts)).bit_length(), 1))
    keys = np.sort((owner.astype(np.uint64) << np.uint64(64 - int(shift))) | (h >> shift))
    new = np.concatenate(([True], keys[1:] != keys[:-1]))
    distinct = np.bincount((keys[new] >> np.uint64(64 - int(shift))).astype(np.int64), minlength=len(texts))
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(total > 0, 1 - distinct / np.maximum(total, 1), 0.0)
    return fraction, lengths
