"""Embeddings on disk: an (n, dim) float16 file whose rows come back as float32.

A million 384-d vectors are 1.5 GB as float32 in RAM; here they are 768 MB on disk. Indexing
returns float32 (numpy has no fast float16 matmul), so detectors use `vectors[rows]` exactly as
they would an array. Runs of rows (slices, `chunks()`, `rowdot()`, `map_rows()`) are read and
written through the file and never hold more than one chunk; only gathers of scattered rows go
through a memory map, which `release()` drops (mapped pages count as resident memory).
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

    def __init__(self, path: Path, n: int, dim: int):
        self.path, self.n, self.dim = Path(path), int(n), int(dim)
        self._data = None  # the map, made on the first gather

    @property
    def _map(self) -> np.ndarray:
        if self._data is None:
            # An empty file cannot be mapped: zero rows live in memory.
            self._data = (
                np.memmap(self.path, dtype=np.float16, mode="r", shape=(self.n, self.dim))
                if self.n
                else np.zeros((0, self.dim), np.float16)
            )
        return self._data

    def release(self) -> None:
        """Unmap: pages gathered so far leave this process's resident memory (the kernel's
        page cache may keep them, at no cost to anyone who needs the memory)."""
        self._data = None

    @classmethod
    def create(cls, path: Path, n: int, dim: int) -> Vectors:
        """A new file of n zero rows (sparse until written)."""
        with open(path, "wb") as fh:
            fh.truncate(int(n) * int(dim) * 2)
        return cls(path, n, dim)

    @classmethod
    def fill(
        cls, path: Path, n: int, dim: int, produce: Callable[[int, int], np.ndarray], chunk: int = CHUNK
    ) -> Vectors:
        """A new file of n rows, written `chunk` rows at a time by `produce(lo, hi)`."""
        out = cls.create(path, n, dim)
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            out[lo:hi] = produce(lo, hi)
        return out

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.dim)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    def __len__(self) -> int:
        return self.n

    def _span(self, index) -> tuple[int, int] | None:
        """(lo, hi) when `index` is a plain slice of rows."""
        if isinstance(index, slice) and index.step in (None, 1):
            lo, hi, _ = index.indices(self.n)
            return lo, max(lo, hi)
        return None

    def __getitem__(self, index) -> np.ndarray:
        span = self._span(index)
        if span is not None:  # a run of rows: read from the file, nothing stays mapped
            lo, hi = span
            block = np.fromfile(self.path, dtype=np.float16, count=(hi - lo) * self.dim, offset=lo * 2 * self.dim)
            return block.reshape(hi - lo, self.dim).astype(np.float32)
        return np.asarray(self._map[index], dtype=np.float32)

    def __setitem__(self, index, values) -> None:
        """Rows are written as a run (`vectors[lo:hi] = block`), through the file."""
        span = self._span(index)
        if span is None:
            raise TypeError("Vectors are written a run of rows at a time: vectors[lo:hi] = block")
        lo, hi = span
        block = np.ascontiguousarray(np.broadcast_to(values, (hi - lo, self.dim)), dtype=np.float16)
        with open(self.path, "r+b") as fh:
            fh.seek(lo * 2 * self.dim)
            fh.write(block.tobytes())
        self._data = None  # a map made before the write may not show it

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self[:].astype(dtype or np.float32, copy=False)

    def chunks(self, size: int = CHUNK) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, float32 block) over the whole matrix, read from the file rather than
        the map, so a pass over a million rows leaves none of them resident."""
        for lo in range(0, self.n, size):
            yield lo, self[lo : lo + size]

    def rowdot(self, other: Vectors | np.ndarray, size: int = CHUNK) -> np.ndarray:
        """Row-wise inner products with `other` (same shape): cosine, for normalised rows."""
        out = np.empty(self.n, np.float32)
        for lo, block in self.chunks(size):
            out[lo : lo + len(block)] = np.einsum("nd,nd->n", block, as_float32(other, lo, lo + len(block)))
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


def mean_pairwise_cos(vectors: np.ndarray) -> float:
    """Mean cosine over the distinct pairs of rows, which must be unit vectors (1.0 for fewer
    than two). Summed in float64: float16 rows would overflow."""
    m = len(vectors)
    if m < 2:
        return 1.0
    total = np.asarray(vectors, np.float32).sum(axis=0, dtype=np.float64)
    return float((total @ total - m) / (m * (m - 1)))


def iter_chunks(vectors: Vectors | np.ndarray, size: int = CHUNK) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, float32 block) for an array or Vectors."""
    if isinstance(vectors, Vectors):
        yield from vectors.chunks(size)
        return
    for lo in range(0, len(vectors), size):
        yield lo, np.ascontiguousarray(vectors[lo : lo + size], dtype=np.float32)
