"""Embed: sentence embeddings for prompts and responses, cached on disk, and faiss neighbours.

The stage that poison detection builds on. Heavy modules (torch, sentence-transformers, faiss)
load only when an embedder or an index is first used.
"""

from __future__ import annotations

from curate.embed.cache import EmbeddingCache, curate_home, embed_texts
from curate.embed.models import Embedder, HashEmbedder, SentenceTransformerEmbedder, make_embedder
from curate.embed.neighbours import kmeans, knn

__all__ = [
    "EmbeddingCache",
    "Embedder",
    "HashEmbedder",
    "SentenceTransformerEmbedder",
    "curate_home",
    "embed_texts",
    "kmeans",
    "knn",
    "make_embedder",
]
