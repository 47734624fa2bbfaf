"""Embeddings on disk: an (n, dim) float16 file, memory-mapped, whose rows come back as float32.

A million 384-d vectors are 1.5 GB as float32 in RAM; here they are 768 MB on disk, and only the
pages a detector touches are read. Indexing returns float32 (numpy has no fast float16 matmul),
so detectors use `vectors[rows]` exactly as they would an array. Whole-corpus operations go
through `chunks()` and `rowdot()`, which never hold more than one chunk as float32.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

#: Rows per chunk for whole-corpus passes: 64k x 384 float32 is 100 MB.
CHUNK = 65536


class Vectors:
    """(n, dim) embeddings in a float16 file. `vectors[i]`, `vectors[rows]` and slices give
    float32 arrays; `np.asarray(vectors)` gives the whole matrix (for small corpora only)."""

    def __init__(self, path: Path, n: int, dim: int, mode: str = "r"):
        self.path, self.n, self.dim = Path(path), int(n), int(dim)
        self._map(mode)

    def _map(self, mode: str = "r") -> None:
        # An empty file cannot be mapped: zero rows live in memory.
        self._data = (np.memmap(self.path, dtype=np.float16, mode=mode, shape=(self.n, self.dim)) if self.n
                      else np.zeros((0, self.dim), np.float16))

    def release(self) -> None:
        """Unmap and map again: pages read so far leave this process's resident memory (the
        kernel's page cache may keep them, at no cost to anyone who needs the memory)."""
        if isinstance(self._data, np.memmap):
            self._data.flush()
            self._data = None
            self._map("r+")

    @classmethod
    def create(cls, path: Path, n: int, dim: int) -> Vectors:
        return cls(path, n, dim, mode="w+")

    @classmethod
    def fill(cls, path: Path, n: int, dim: int, produce: Callable[[int, int], np.ndarray],
             chunk: int = CHUNK) -> Vectors:
        """A new file of n rows, written `chunk` rows at a time by `produce(lo, hi)`."""
        out = cls.create(path, n, dim)
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            out[lo:hi] = produce(lo, hi)
        out.release()
        return out

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.dim)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index) -> np.ndarray:
        return np.asarray(self._data[index], dtype=np.float32)

    def __setitem__(self, index, values) -> None:
        self._data[index] = values

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return np.asarray(self._data, dtype=dtype or np.float32)

    def flush(self) -> None:
        if isinstance(self._data, np.memmap):
            self._data.flush()

    def chunks(self, size: int = CHUNK) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, float32 block) over the whole matrix, read from the file rather than
        the map, so a pass over a million rows leaves none of them resident."""
        if not isinstance(self._data, np.memmap):
            for lo in range(0, self.n, size):
                yield lo, self[lo:lo + size]
            return
        self._data.flush()
        row_bytes = 2 * self.dim
        for lo in range(0, self.n, size):
            count = min(size, self.n - lo)
            block = np.fromfile(self.path, dtype=np.float16, count=count * self.dim, offset=lo * row_bytes)
            yield lo, block.reshape(count, self.dim).astype(np.float32)

    def rowdot(self, other: Vectors | np.ndarray, size: int = CHUNK) -> np.ndarray:
        """Row-wise inner products with `other` (same shape): cosine, for normalised rows."""
        out = np.empty(self.n, np.float32)
        for lo, block in self.chunks(size):
            out[lo:lo + len(block)] = np.einsum("nd,nd->n", block, as_float32(other, lo, lo + len(block)))
        return out

    def map_rows(self, fn: Callable[[np.ndarray], np.ndarray], size: int = CHUNK) -> np.ndarray:
        """`fn` over chunks, concatenated: e.g. a classifier's probabilities for every row."""
        parts = [fn(block) for _, block in self.chunks(size)]
        return np.concatenate(parts) if parts else np.zeros(0)


def as_float32(vectors: Vectors | np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Rows lo:hi of an array or Vectors, as float32."""
    return np.asarray(vectors[lo:hi], dtype=np.float32)


def rowdot(a: Vectors | np.ndarray, b: Vectors | np.ndarray) -> np.ndarray:
    if isinstance(a, Vectors):
        return a.rowdot(b)
    if isinstance(b, Vectors):
        return b.rowdot(a)
    return np.einsum("nd,nd->n", np.asarray(a, np.float32), np.asarray(b, np.float32))


def iter_chunks(vectors: Vectors | np.ndarray, size: int = CHUNK) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, float32 block) for an array or Vectors."""
    if isinstance(vectors, Vectors):
        yield from vectors.chunks(size)
        return
    for lo in range(0, len(vectors), size):
        yield lo, np.ascontiguousarray(vectors[lo:lo + size], dtype=np.float32)
