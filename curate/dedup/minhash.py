"""MinHash signatures for a batch of texts at once, and their LSH band hashes.

Why not datasketch: its `MinHash.update_batch` applies every permutation to every shingle, about
200 µs per 600-character row here, which alone would cap a scan at 5,000 rows/s. We use one
permutation hashing with rotation densification (Shrivastava 2017): one hash per shingle, binned,
minimum per bin, all in numpy over a whole batch. Its collision probability per bin is the Jaccard
similarity, as with k permutations, at a 100th of the cost. Candidates are then verified by exact
Jaccard on the same shingles (`near.py`), so precision does not rest on the estimate.
"""

from __future__ import annotations

import re
from collections import defaultdict

import numpy as np
import xxhash

#: Words, with each CJK/kana/hangul character counting as one word so Chinese text shingles too.
_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]|\w+")
_MASK40 = np.uint64((1 << 40) - 1)
_EMPTY = np.uint64((1 << 40))
_P1 = np.uint64(0x100000001B3)
_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.casefold())


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads every input bit over the output."""
    h = h ^ (h >> np.uint64(30))
    h = h * _C1
    h = h ^ (h >> np.uint64(27))
    h = h * _C2
    return h ^ (h >> np.uint64(31))


_TOKEN_CACHE: dict[str, int] = {}
_TOKEN_CACHE_MAX = 1 << 20


def _token_hash(token: str) -> int:
    value = xxhash.xxh3_64_intdigest(token.encode("utf-8", "surrogatepass"))
    if len(_TOKEN_CACHE) >= _TOKEN_CACHE_MAX:
        _TOKEN_CACHE.clear()
    _TOKEN_CACHE[token] = value
    return value


def _token_hashes(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """xxh3 of every token. Words follow Zipf's law, so a dict in front of the hash answers most."""
    hashes: list[int] = []
    lengths = np.empty(len(texts), dtype=np.int64)
    get = _TOKEN_CACHE.get
    for i, text in enumerate(texts):
        toks = tokens(text)
        lengths[i] = len(toks)
        hashes.extend([get(t) or _token_hash(t) for t in toks])
    return np.fromiter(hashes, dtype=np.uint64, count=len(hashes)), lengths


_WORD_BYTE = np.zeros(256, dtype=bool)
for _c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_":
    _WORD_BYTE[_c] = True
_WORD_BYTE[0x80:] = True
_B = np.uint64(0x9E3779B97F4A7C15 | 1)
_B_INV = np.uint64(pow(int(_B), -1, 1 << 64))
_POWERS: dict[str, np.ndarray] = {}


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    if "b" not in _POWERS or _POWERS["b"].size < n:
        size = max(n, 1 << 16) * 2
        with np.errstate(over="ignore"):
            for key, base in (("b", _B), ("inv", _B_INV)):
                factors = np.full(size, base, dtype=np.uint64)
                factors[0] = 1
                _POWERS[key] = np.cumprod(factors, dtype=np.uint64)
    return _POWERS["b"][:n], _POWERS["inv"][:n]


def _token_hashes_fast(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Token hashes for a whole batch in numpy, no Python per token: about 10x faster than
    hashing each regex token. Words are runs of ASCII letters, digits and non-ASCII bytes; each
    CJK/kana/hangul character is a word of its own; U+2000-U+2FFF punctuation separates. The
    hash is a polynomial over the bytes, from prefix sums (the base is odd, so invertible mod
    2^64), then mixed. Being a polynomial it is not collision-proof against a crafted input,
    which is why candidates are verified with `shingle_set`'s xxh3 hashes, not these."""
    encoded = [t.casefold().encode("utf-8", "surrogatepass") for t in texts]
    buf = b"\x00".join(encoded) + b"\x00"
    b = np.frombuffer(buf, dtype=np.uint8)
    n = b.size
    word = _WORD_BYTE[b]
    punct = b == 0xE2
    word &= ~punct
    word[1:] &= ~punct[:-1]
    word[2:] &= ~punct[:-2]
    cjk = (b >= 0xE3) & (b <= 0xED)
    prev = np.concatenate(([False], word[:-1]))
    nxt = np.concatenate((word[1:], [False]))
    nxt_cjk = np.concatenate((cjk[1:], [False]))
    starts = np.flatnonzero(word & (~prev | cjk))
    ends = np.flatnonzero(word & (~nxt | nxt_cjk)) + 1
    pow_b, pow_inv = _powers(n)
    with np.errstate(over="ignore"):
        prefix = np.cumsum(b.astype(np.uint64) * pow_inv, dtype=np.uint64)
        before = np.where(starts > 0, prefix[np.maximum(starts - 1, 0)], np.uint64(0))
        hashes = _mix((prefix[ends - 1] - before) * pow_b[starts])
    text_starts = np.cumsum([0] + [len(e) + 1 for e in encoded[:-1]])
    owner = np.searchsorted(text_starts, starts, side="right") - 1
    lengths = np.bincount(owner, minlength=len(texts)).astype(np.int64)
    return hashes, lengths


def _shingles(texts: list[str], ngram: int, fast: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(shingle hashes, owning text index). A text shorter than `ngram` words is one shingle."""
    toks, lengths = _token_hashes_fast(texts) if fast else _token_hashes(texts)
    if toks.size == 0:
        return np.empty(0, np.uint64), np.empty(0, np.int64)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    ends = starts + lengths
    owner = np.repeat(np.arange(len(texts)), lengths)
    pos = np.arange(toks.size)
    end_of = ends[owner]
    width = np.minimum(ngram, end_of - starts[owner])
    valid = (pos + width <= end_of) & ((pos + ngram <= end_of) | (pos == starts[owner]))
    pos, width, owner = pos[valid], width[valid], owner[valid]
    h = np.zeros(pos.size, dtype=np.uint64)
    last = toks.size - 1
    with np.errstate(over="ignore"):
        for j in range(ngram):
            take = toks[np.minimum(pos + j, last)]
            h = np.where(j < width, (h ^ take) * _P1, h)
        return _mix(h), owner


def shingle_set(text: str, ngram: int) -> set[int]:
    """The exact shingle set of one text: ground truth for verification and benchmarks."""
    return shingle_sets([text], ngram)[0]


def shingle_arrays(texts: list[str], ngram: int) -> list[np.ndarray]:
    """Exact shingle sets (xxh3 of regex word tokens) of many texts, computed as one batch, each
    as a sorted array of distinct uint64: an eighth of the memory of a Python set."""
    h, owner = _shingles(texts, ngram)
    if not h.size:
        return [np.empty(0, np.uint64) for _ in texts]
    order = np.lexsort((h, owner))
    h, owner = h[order], owner[order]
    bounds = np.searchsorted(owner, np.arange(len(texts) + 1))
    return [np.unique(h[bounds[i]:bounds[i + 1]]) for i in range(len(texts))]


def shingle_sets(texts: list[str], ngram: int) -> list[set[int]]:
    """The same shingles as Python sets."""
    return [set(a.tolist()) for a in shingle_arrays(texts, ngram)]


def signatures(texts: list[str], ngram: int, num_perm: int) -> np.ndarray:
    """(len(texts), num_perm) uint64 MinHash signatures. Rows of empty texts are all `_EMPTY`."""
    n = len(texts)
    sig = np.full(n * num_perm, _EMPTY, dtype=np.uint64)
    h, owner = _shingles(texts, ngram, fast=True)
    if h.size:
        with np.errstate(over="ignore"):
            bins = (h >> np.uint64(40)) % np.uint64(num_perm)
            np.minimum.at(sig, owner.astype(np.uint64) * np.uint64(num_perm) + bins, h & _MASK40)
    sig = sig.reshape(n, num_perm)
    return _densify(sig)


def _densify(sig: np.ndarray) -> np.ndarray:
    """Fill each empty bin from the next non-empty bin to its right (circularly), offset by the
    distance so borrowed values never collide with real ones by accident."""
    empty = sig == _EMPTY
    if not empty.any():
        return sig
    n, k = sig.shape
    cols = np.arange(k)
    idx = np.where(empty, 2 * k, cols)
    # next non-empty index at or after j, looking over two copies for the wrap-around
    doubled = np.concatenate([idx, np.where(empty, 2 * k, cols + k)], axis=1)
    nxt = np.minimum.accumulate(doubled[:, ::-1], axis=1)[:, ::-1][:, :k]
    has_any = ~empty.all(axis=1)
    src = np.where(nxt >= 2 * k, 0, nxt % k)
    dist = np.where(nxt >= 2 * k, 0, nxt - cols).astype(np.uint64)
    filled = np.take_along_axis(sig, src, axis=1) + (dist << np.uint64(41))
    out = np.where(empty & has_any[:, None], filled, sig)
    return out


def band_hashes(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) uint64: one hash per band of `rows` signature values, salted by band."""
    n = sig.shape[0]
    h = np.broadcast_to(np.arange(1, bands + 1, dtype=np.uint64) * _C1, (n, bands)).copy()
    with np.errstate(over="ignore"):
        for r in range(rows):
            h = _mix((h ^ sig[:, r::rows][:, :bands]) * _P1)
    return h


class LSHIndex:
    """A small in-memory LSH index, for matching against an evaluation set."""

    def __init__(self, bands: int, rows: int):
        self.bands, self.rows = bands, rows
        self.tables: list[dict[int, list[int]]] = [defaultdict(list) for _ in range(bands)]

    def add(self, band_rows: np.ndarray, ids: list[int]) -> None:
        for key, row in zip(ids, band_rows.tolist()):
            for b, value in enumerate(row):
                self.tables[b][value].append(key)

    def query(self, band_row: np.ndarray) -> set[int]:
        found: set[int] = set()
        for b, value in enumerate(band_row.tolist()):
            found.update(self.tables[b].get(value, ()))
        return found
