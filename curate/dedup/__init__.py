"""Dedup: exact (content hash) and near (MinHash-LSH, verified by exact Jaccard) duplicates."""

from __future__ import annotations

from curate.dedup.minhash import LSHIndex, band_hashes, shingle_arrays, shingle_set, shingle_sets, signatures
from curate.dedup.near import UnionFind, candidate_pairs, star_groups

__all__ = [
    "LSHIndex",
    "UnionFind",
    "band_hashes",
    "candidate_pairs",
    "shingle_arrays",
    "shingle_set",
    "shingle_sets",
    "signatures",
    "star_groups",
]
