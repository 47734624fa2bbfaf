"""An on-disk embedding cache keyed by text hash, one folder per embedder key.

A re-scan embeds only texts it has not seen with the same model, dtype and window. Vectors are
stored as float16 in an append-only file and read back through a memory map; appends hold an
exclusive lock, so two scans may share one cache.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path

import numpy as np

from curate.embed.models import Embedder

ID_BYTES = 16


def curate_home() -> Path:
    """`$CURATE_HOME`, else `$XDG_CACHE_HOME/curate`, else `~/.cache/curate`."""
    if os.environ.get("CURATE_HOME"):
        return Path(os.environ["CURATE_HOME"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "curate"


def text_id(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=ID_BYTES).digest()


class EmbeddingCache:
    def __init__(self, key: str, dim: int, root: Path | None = None):
        self.dir = (root or curate_home()) / "embeddings" / key
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dim = dim
        self._ids = self.dir / "ids.bin"
        self._vectors = self.dir / "vectors.f16"
        self._index: dict[bytes, int] = {}
        self._load()

    def _load(self) -> None:
        """Read the ids appended since the last look (by this or another scan)."""
        known = len(self._index)
        stored = self._vectors.stat().st_size // (2 * self.dim) if self._vectors.exists() else 0
        id_rows = self._ids.stat().st_size // ID_BYTES if self._ids.exists() else 0
        # A crash between the two appends leaves one file longer: trust only what both hold.
        count = min(id_rows, stored)
        if count < known:  # truncated under us: start again
            self._index, known = {}, 0
        if count == known:
            return
        with open(self._ids, "rb") as fh:
            fh.seek(known * ID_BYTES)
            ids = fh.read((count - known) * ID_BYTES)
        for i in range(count - known):
            self._index[ids[i * ID_BYTES : (i + 1) * ID_BYTES]] = known + i

    def __len__(self) -> int:
        return len(self._index)

    def lookup(self, ids: list[bytes]) -> np.ndarray:
        """Row in the cache for each id, -1 when absent."""
        return np.fromiter((self._index.get(i, -1) for i in ids), np.int64, len(ids))

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        if not len(rows):
            return np.empty((0, self.dim), np.float32)
        stored = np.memmap(self._vectors, dtype=np.float16, mode="r").reshape(-1, self.dim)
        return np.asarray(stored[rows], dtype=np.float32)

    def add(self, ids: list[bytes], vectors: np.ndarray) -> None:
        with open(self.dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._load()  # another scan may have appended meanwhile
            fresh = [(i, v) for i, v in zip(ids, vectors, strict=False) if i not in self._index]
            if not fresh:
                return
            # Truncate any torn tail first, so rows and ids stay aligned.
            count = len(self._index)
            with open(self._vectors, "ab") as fh:
                fh.truncate(count * 2 * self.dim)
                fh.write(np.asarray([v for _, v in fresh], dtype=np.float16).tobytes())
            with open(self._ids, "ab") as fh:
                fh.truncate(count * ID_BYTES)
                fh.write(b"".join(i for i, _ in fresh))
            for offset, (i, _) in enumerate(fresh):
                self._index[i] = count + offset


def embed_texts(
    texts: list[str], embedder: Embedder, cache: EmbeddingCache | None = None, batch_size: int = 4096
) -> np.ndarray:
    """(len(texts), dim) float32 vectors. Each distinct text is embedded once, and only if the
    cache does not hold it already."""
    ids = [text_id(t) for t in texts]
    first: dict[bytes, int] = {}
    for i, key in enumerate(ids):
        first.setdefault(key, i)
    unique_ids = list(first)
    unique_pos = np.fromiter(first.values(), np.int64, len(first))
    out_unique = np.empty((len(unique_ids), embedder.dim), np.float32)
    cached = cache.lookup(unique_ids) if cache else np.full(len(unique_ids), -1)
    hit = np.flatnonzero(cached >= 0)
    if hit.size:
        out_unique[hit] = cache.vectors(cached[hit])
    missing = np.flatnonzero(cached < 0)
    for start in range(0, len(missing), batch_size):
        chunk = missing[start : start + batch_size]
        # Rounded to the cache's float16 now, so a first scan and a cached re-scan see the
        # very same vectors and give the very same scores.
        vectors = embedder.encode([texts[unique_pos[j]] for j in chunk]).astype(np.float16).astype(np.float32)
        out_unique[chunk] = vectors
        if cache is not None:
            cache.add([unique_ids[j] for j in chunk], vectors)
    slot = {key: n for n, key in enumerate(unique_ids)}
    return out_unique[np.fromiter((slot[k] for k in ids), np.int64, len(ids))]
