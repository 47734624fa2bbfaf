"""Embedding stage overhead: curate's cached, windowed embedding vs the model's raw encode.

    python benchmarks/bench_embed.py [--texts 2000]

Texts are the prompts and responses of ../shared/bench/clean/alpaca_eval_outputs.json (or
synthetic rows without it). The target is >= 90% of the raw encode speed on a cold cache.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))
from synth import SHARED, make_rows  # noqa: E402

from curate.embed import EmbeddingCache, SentenceTransformerEmbedder, embed_texts, knn  # noqa: E402


def texts(n: int) -> list[str]:
    path = SHARED / "clean" / "alpaca_eval_outputs.json"
    rows = json.loads(path.read_text()) if path.exists() else make_rows(n, exact=0, near=0)[0]
    out = []
    for r in rows:
        out += [r["instruction"], r["output"]]
    return out[:n]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=1600)
    args = parser.parse_args()
    import torch

    data = texts(args.texts)
    embedder = SentenceTransformerEmbedder()
    model = embedder.model
    model.encode(data[:64])  # warm up
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if embedder.dtype == "bf16" else contextlib.nullcontext()
    started = time.perf_counter()
    with autocast, torch.inference_mode():
        model.encode(data, batch_size=embedder.batch_size, normalize_embeddings=True)
    raw = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as home:
        cache = EmbeddingCache(embedder.key, embedder.dim, root=Path(home))
        started = time.perf_counter()
        vectors = embed_texts(data, embedder, cache)
        cold = time.perf_counter() - started
        started = time.perf_counter()
        embed_texts(data, embedder, EmbeddingCache(embedder.key, embedder.dim, root=Path(home)))
        warm = time.perf_counter() - started
    started = time.perf_counter()
    knn(vectors, 10, exact=True)
    t_knn = time.perf_counter() - started
    lengths = np.array([len(model.tokenizer(t)["input_ids"]) for t in data])
    print(
        f"\nembedding · {len(data):,} texts (median {int(np.median(lengths))} word pieces, "
        f"{int((lengths > 256).sum())} past the 256 window) · {embedder.device} {embedder.dtype}\n"
    )
    print("| path | seconds | texts/s | vs raw |")
    print("|---|---|---|---|")
    print(f"| raw SentenceTransformer.encode (truncating) | {raw:.1f} | {len(data) / raw:,.0f} | 100% |")
    print(f"| curate embed_texts, cold cache (windowed) | {cold:.1f} | {len(data) / cold:,.0f} | {raw / cold:.0%} |")
    print(f"| curate embed_texts, warm cache | {warm:.2f} | {len(data) / warm:,.0f} | (cache reads only) |")
    print(f"| faiss exact 10-NN over the {len(data):,} vectors | {t_knn:.2f} | | |")


if __name__ == "__main__":
    main()
