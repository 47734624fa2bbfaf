"""Nearest neighbours and k-means with faiss: GPU indexes when a GPU build and a GPU are present,
exact search for small corpora and IVF for large ones, chosen automatically.

curate depends on faiss-cpu; swap it for a GPU build (`pip uninstall faiss-cpu && pip install
faiss-gpu-cu12`) and the same calls run on the GPU, because both install the `faiss` module.
"""

from __future__ import annotations

import numpy as np

#: Up to this many vectors, exact inner-product search; beyond, IVF with `nprobe` lists probed.
EXACT_UP_TO = 50_000


def _gpu(faiss) -> bool:
    try:
        return faiss.get_num_gpus() > 0
    except AttributeError:
        return False


def knn(vectors: np.ndarray, k: int, queries: np.ndarray | None = None, *, exact: bool | None = None,
        nprobe: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(similarities, indices), each (len(queries), k), over L2-normalised `vectors` by inner
    product. With no `queries`, every vector's neighbours among the others (itself excluded)."""
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = x.shape
    self_search = queries is None
    q = x if self_search else np.ascontiguousarray(queries, dtype=np.float32)
    want = min(k + (1 if self_search else 0), n)
    if exact is None:
        exact = n <= EXACT_UP_TO
    if exact:
        index = faiss.IndexFlatIP(dim)
    else:
        nlist = max(1, min(int(4 * np.sqrt(n)), n // 39))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(x)
        index.nprobe = min(nprobe, nlist)
    if _gpu(faiss):
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    index.add(x)
    sims, ids = index.search(q, want)
    if self_search:
        # Drop each row's own hit wherever it landed (ties can put a duplicate first).
        is_self = ids == np.arange(len(q))[:, None]
        order = np.argsort(is_self, axis=1, kind="stable")[:, : want - 1]
        sims = np.take_along_axis(sims, order, axis=1)
        ids = np.take_along_axis(ids, order, axis=1)
    return sims, ids


def kmeans(vectors: np.ndarray, k: int, *, seed: int = 0, niter: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """(centroids, assignment of each vector). Deterministic for a seed."""
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    k = max(1, min(k, len(x)))
    km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, spherical=True, gpu=_gpu(faiss), verbose=False,
                      min_points_per_centroid=1)
    km.train(x)
    _, assignment = km.index.search(x, 1)
    return km.centroids, assignment[:, 0]
