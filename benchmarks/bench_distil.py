"""How close distilled response vectors are to the full model's, and how much faster.

    python benchmarks/bench_distil.py [--texts 8000] [--sample 4096]

For each source, `--texts` distinct (prompt, response) pairs: the DistilledEmbedder
(curate/embed/distil.py) is fitted on a seeded sample of the responses, and its vectors for the
other responses are compared with the packaged MiniLM's (heads of 32 word pieces for responses,
128 for prompts, as a scan reads them):
- cosine: mean cosine between a response's distilled and full vector;
- answer~answer: Spearman correlation of response-response cosines (20k random pairs);
- relevance: Spearman correlation of prompt-response cosines (prompts by the full model);
- the same three for the plain static mean without the fitted map;
- texts/s of the full model and of the distilled embedder (tokenising and fitting included;
  the fitting sample's full vectors are looked up, as the scan's cache would give them).
Sources: BackdoorLLM responses and the clean pool (../shared/bench), and synthetic rows
(benchmarks/synth.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from synth import SHARED, make_rows  # noqa: E402


def _pairs(source: str, n: int, seed: int) -> list[tuple[str, str]]:
    import random

    if source == "synthetic":
        rows, _ = make_rows(n, exact=0.0, near=0.0)
        return [(r["instruction"] + "\n" + r["input"], r["output"]) for r in rows]
    from curate.bench.mixes import clean_pool

    if source == "backdoorllm":
        import json

        rows = []
        for path in sorted((SHARED / "backdoorllm" / "poison_data").rglob("*.json")):
            rows += [(r["instruction"] + "\n" + r.get("input", ""), r["output"]) for r in json.loads(path.read_text())]
    else:
        rows = [
            ("\n".join(m["content"] for m in r["messages"][:-1]), r["messages"][-1]["content"])
            for r in clean_pool(SHARED)
        ]
    seen, out = set(), []
    random.Random(seed).shuffle(rows)
    for p, r in rows:
        if r not in seen:
            seen.add(r)
            out.append((p, r))
    return out[:n]


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).correlation)


def _normalise(X: np.ndarray) -> np.ndarray:
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=8000)
    parser.add_argument("--sample", type=int, default=4096)
    args = parser.parse_args()
    from curate.embed import SentenceTransformerEmbedder
    from curate.embed.distil import DistilledEmbedder

    base = SentenceTransformerEmbedder()
    full, prompts_model = base.with_head(32), base.with_head(128)
    sources = ["synthetic"] + (["backdoorllm", "clean pool"] if (SHARED / "backdoorllm").is_dir() else [])
    print(
        "| source | responses | fitted on | cosine | answer~answer | relevance | static cosine | "
        "static answer~answer | static relevance | full texts/s | distilled texts/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for source in sources:
            pairs = _pairs(source, args.texts, seed=0)
            P, R = [p for p, _ in pairs], [r for _, r in pairs]
            started = time.perf_counter()
            F = full.encode(R)
            full_rate = len(R) / (time.perf_counter() - started)
            Pv = prompts_model.encode(P)
            calls = []

            index = {r: i for i, r in enumerate(R)}

            def cached(texts, F=F, index=index, calls=calls):
                calls.append(len(texts))
                return F[[index[t] for t in texts]]

            d = DistilledEmbedder(full, cached, Path(tmp), sample=min(args.sample, len(R) // 2), seed=0)
            d.table  # noqa: B018  (build the token table outside the timing)
            started = time.perf_counter()
            d.prepare(R)
            D = d(R)
            rate = len(R) / (time.perf_counter() - started)
            held = np.array([r not in d.known for r in R])
            S = _normalise(d.static(R))
            idx = np.flatnonzero(held)
            pairs_ix = np.random.default_rng(0).choice(idx, size=(20000, 2))
            truth_aa = np.einsum("nd,nd->n", F[pairs_ix[:, 0]], F[pairs_ix[:, 1]])
            truth_rel = np.einsum("nd,nd->n", Pv[idx], F[idx])

            def scores(V, idx=idx, F=F, pairs_ix=pairs_ix, truth_aa=truth_aa, truth_rel=truth_rel, Pv=Pv):
                return (
                    float(np.einsum("nd,nd->n", V[idx], F[idx]).mean()),
                    _spearman(truth_aa, np.einsum("nd,nd->n", V[pairs_ix[:, 0]], V[pairs_ix[:, 1]])),
                    _spearman(truth_rel, np.einsum("nd,nd->n", Pv[idx], V[idx])),
                )

            c, aa, rel = scores(D)
            sc, saa, srel = scores(S)
            print(
                f"| {source} | {len(R):,} | {len(R) - held.sum():,} | {c:.3f} | {aa:.3f} | {rel:.3f} | {sc:.3f} | "
                f"{saa:.3f} | {srel:.3f} | {full_rate:,.0f} | {rate:,.0f} |"
            )


if __name__ == "__main__":
    main()
