"""Dedup: exact (content hash) and near (MinHash-LSH, verified by exact Jaccard) duplicates."""

from __future__ import annotations

from curate.dedup.exact import ExactGroups
from curate.dedup.minhash import LSHIndex, band_hashes, shingle_set, shingle_sets, signatures
from curate.dedup.near import UnionFind, candidate_pairs

__all__ = ["ExactGroups", "LSHIndex", "UnionFind", "band_hashes", "candidate_pairs", "shingle_set", "shingle_sets",
           "signatures"]
