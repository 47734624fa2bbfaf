"""MinHash signatures for a batch of texts at once, and their LSH band hashes.

Why not datasketch: its `MinHash.update_batch` applies every permutation to every shingle, about
200 µs per 600-character row here, which alone would cap a scan at 5,000 rows/s. We use one
permutation hashing with rotation densification (Shrivastava 2017): one hash per shingle, binned,
minimum per bin, all in numpy over a whole batch. Its collision probability per bin is the Jaccard
similarity, as with k permutations, at a 100th of the cost. Candidates are then verified by exact
Jaccard on the same shingles (`near.py`), so precision does not rest on the estimate.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from curate.tokens import C1 as _C1
from curate.tokens import P1 as _P1
from curate.tokens import mix as _mix
from curate.tokens import ngram_hashes, words
from curate.tokens import token_hashes as _token_hashes_fast

_MASK40 = np.uint64((1 << 40) - 1)
_EMPTY = np.uint64(1 << 40)


def tokens(text: str) -> list[str]:
    return words(text.casefold())


def _token_hashes(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Python's own str hash of every token: SipHash under a key drawn at random for each
    process, so an attacker cannot craft two texts whose shingles collide, and computed in C.
    Only ever compared within one process (verification runs in the main one). Run with
    PYTHONHASHSEED unset (the default): a fixed seed makes the key guessable."""
    counts = np.empty(len(texts), dtype=np.int64)
    hashes: list[int] = []
    for i, text in enumerate(texts):
        toks = tokens(text)
        counts[i] = len(toks)
        hashes.extend(map(hash, toks))
    return np.array(hashes, dtype=np.int64).view(np.uint64), counts


def _shingles(texts: list[str], ngram: int, fast: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(shingle hashes, owning text index). A text shorter than `ngram` words is one shingle."""
    toks, lengths = _token_hashes_fast(texts) if fast else _token_hashes(texts)
    return ngram_hashes(toks, lengths, ngram)


def shingle_set(text: str, ngram: int) -> set[int]:
    """The exact shingle set of one text: ground truth for verification and benchmarks."""
    return shingle_sets([text], ngram)[0]


def shingle_arrays(texts: list[str], ngram: int) -> list[np.ndarray]:
    """Exact shingle sets (keyed hashes of regex word tokens) of many texts, computed as one batch, each
    as a sorted array of distinct uint64: an eighth of the memory of a Python set."""
    h, owner = _shingles(texts, ngram)
    if not h.size:
        return [np.empty(0, np.uint64) for _ in texts]
    order = np.lexsort((h, owner))
    h, owner = h[order], owner[order]
    first = np.concatenate(([True], (h[1:] != h[:-1]) | (owner[1:] != owner[:-1])))
    h, owner = h[first], owner[first]
    bounds = np.searchsorted(owner, np.arange(1, len(texts)))
    return np.split(h, bounds)


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
        for key, row in zip(ids, band_rows.tolist(), strict=False):
            for b, value in enumerate(row):
                self.tables[b][value].append(key)

    def query(self, band_row: np.ndarray) -> set[int]:
        found: set[int] = set()
        for b, value in enumerate(band_row.tolist()):
            found.update(self.tables[b].get(value, ()))
        return found
