"""Nearest neighbours and k-means with faiss: GPU indexes when a GPU build and a GPU are present,
exact search for small corpora and IVF for large ones, chosen automatically.

curate depends on faiss-cpu; swap it for a GPU build (`pip uninstall faiss-cpu && pip install
faiss-gpu-cu12`) and the same calls run on the GPU, because both install the `faiss` module.

Vectors may be a float32 array or on-disk `Vectors`: indexes are filled and searched a chunk at a
time, and past `SQ8_FROM` vectors the IVF lists hold 8-bit codes (a quarter of float32), so a
million-row corpus never needs its matrix as float32 in memory.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from curate.embed.vectors import CHUNK, Vectors, iter_chunks

#: Up to this many vectors, exact inner-product search; beyond, IVF with `nprobe` lists probed.
EXACT_UP_TO = 50_000
#: From this many vectors, IVF lists store 8-bit scalar-quantised codes instead of float32.
SQ8_FROM = 200_000
#: At most this many vectors (or 39 per list, what faiss asks for) train the IVF lists; k-means
#: past K_SAMPLE_FROM vectors trains on 256 per centroid, as faiss would sample anyway.
TRAIN_SAMPLE = 100_000
K_SAMPLE_FROM = 200_000


def _gpu(faiss) -> bool:
    try:
        return faiss.get_num_gpus() > 0
    except AttributeError:
        return False


def _rows(vectors: Vectors | np.ndarray, rows: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(vectors[rows], dtype=np.float32)


def _sample(n: int, size: int, seed: int) -> np.ndarray:
    if size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def build_index(vectors: Vectors | np.ndarray, *, exact: bool | None = None, nprobe: int = 16, seed: int = 0):
    """An inner-product faiss index holding `vectors`: flat up to EXACT_UP_TO, else IVF."""
    import faiss

    n, dim = vectors.shape
    if exact is None:
        exact = n <= EXACT_UP_TO
    if exact:
        index = faiss.IndexFlatIP(dim)
    else:
        nlist = max(1, min(int(4 * np.sqrt(n)), n // 39))
        quantizer = faiss.IndexFlatIP(dim)
        if n >= SQ8_FROM:
            index = faiss.IndexIVFScalarQuantizer(
                quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
            )
        else:
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(_rows(vectors, _sample(n, max(TRAIN_SAMPLE, 39 * nlist), seed)))
        index.nprobe = min(nprobe, nlist)
    if _gpu(faiss):
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    for _, block in iter_chunks(vectors):
        index.add(block)
    return index


def search(index, queries: Vectors | np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(similarities, ids) of each query's k nearest in `index`, searched a chunk at a time."""
    sims = np.empty((len(queries), k), np.float32)
    ids = np.empty((len(queries), k), np.int64)
    for lo, block in iter_chunks(queries):
        sims[lo : lo + len(block)], ids[lo : lo + len(block)] = index.search(block, k)
    return sims, ids


def knn_chunks(
    vectors: Vectors | np.ndarray,
    k: int,
    *,
    exact: bool | None = None,
    nprobe: int = 16,
    seed: int = 0,
    index=None,
    chunk: int = CHUNK,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(first row, similarities, ids) per chunk of rows: each vector's k nearest among the
    others (itself excluded), for callers that reduce each chunk before keeping it."""
    n = len(vectors)
    want = min(k + 1, n)
    if index is None:
        index = build_index(vectors, exact=exact, nprobe=nprobe, seed=seed)
    for lo, block in iter_chunks(vectors, chunk):
        sims, ids = index.search(block, want)
        # Drop each row's own hit wherever it landed (ties can put a duplicate first).
        is_self = ids == np.arange(lo, lo + len(block))[:, None]
        order = np.argsort(is_self, axis=1, kind="stable")[:, : want - 1]
        yield lo, np.take_along_axis(sims, order, axis=1), np.take_along_axis(ids, order, axis=1)


def knn(
    vectors: Vectors | np.ndarray,
    k: int,
    queries: Vectors | np.ndarray | None = None,
    *,
    exact: bool | None = None,
    nprobe: int = 16,
    seed: int = 0,
    index=None,
) -> tuple[np.ndarray, np.ndarray]:
    """(similarities, indices), each (len(queries), k), over L2-normalised `vectors` by inner
    product. With no `queries`, every vector's neighbours among the others (itself excluded).
    `index` reuses one `build_index` made over the same vectors."""
    n = len(vectors)
    if index is None:
        index = build_index(vectors, exact=exact, nprobe=nprobe, seed=seed)
    if queries is not None:
        return search(index, queries, min(k, n))
    want = max(0, min(k + 1, n) - 1)
    sims = np.empty((n, want), np.float32)
    ids = np.empty((n, want), np.int64)
    for lo, s, i in knn_chunks(vectors, k, index=index):
        sims[lo : lo + len(s)], ids[lo : lo + len(s)] = s, i
    return sims, ids


def kmeans(vectors: Vectors | np.ndarray, k: int, *, seed: int = 0, niter: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """(centroids, assignment of each vector). Deterministic for a seed."""
    import faiss

    n = len(vectors)
    k = max(1, min(k, n))
    train = _rows(vectors, _sample(n, 256 * k, seed) if n >= K_SAMPLE_FROM else np.arange(n))
    km = faiss.Kmeans(
        train.shape[1],
        k,
        niter=niter,
        seed=seed,
        spherical=True,
        gpu=_gpu(faiss),
        verbose=False,
        min_points_per_centroid=1,
    )
    km.train(train)
    del train
    assignment = np.empty(n, np.int64)
    for lo, block in iter_chunks(vectors):
        assignment[lo : lo + len(block)] = km.index.search(block, 1)[1][:, 0]
    return km.centroids, assignment
