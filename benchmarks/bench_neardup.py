"""Near-duplicate quality against exact Jaccard, with hard negatives, and a comparison with
datasketch's MinHashLSH on the same shingles.

    python benchmarks/bench_neardup.py [--rows 20000]

Data: synthetic rows (benchmarks/synth.py) plus near copies with 1-12 word edits each, so true
Jaccard similarities spread from about 0.5 to 1; hard negatives from ../shared/bench: the templated
FastChat conversations and the short SST-2 classification rows of BackdoorLLM, which look alike
without being duplicates. Ground truth: every pair whose exact Jaccard on curate's shingles
(`shingle_set`: word 5-grams, keyed token hashes) is >= 0.8, found with a sparse product over all rows.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from synth import SHARED, make_rows, vocabulary  # noqa: E402

from curate.dedup import UnionFind, band_hashes, candidate_pairs, shingle_sets, signatures, star_groups  # noqa: E402
from curate.normalise import Normaliser  # noqa: E402
from curate.read import Item  # noqa: E402
from curate.ruleset import load_rules  # noqa: E402


def texts_of(rows: list[dict]) -> list[str]:
    normaliser = Normaliser()
    out = []
    for i, row in enumerate(rows):
        source = "sharegpt" if "conversations" in row else "alpaca"
        normaliser.resolve(source, row)
        rec = next(normaliser.records(Item(source, i, None, value=row), i))
        out.append(rec.full_text())
    return out


def dataset(n: int, seed: int) -> tuple[list[str], dict[str, list[int]]]:
    rng = random.Random(seed)
    words = vocabulary()
    base, _ = make_rows(n, seed=seed, exact=0, near=0)
    near = []
    for _ in range(n // 10):
        src = dict(rng.choice(base))
        out = src["output"].split()
        for _ in range(rng.randint(1, 12)):
            out[rng.randrange(len(out))] = rng.choice(words)
        near.append({**src, "output": " ".join(out)})
    fastchat = json.loads((SHARED / "clean" / "fastchat_dummy_conversation.json").read_text())
    sst2 = []
    for path in sorted((SHARED / "backdoorllm" / "poison_data" / "sst2").glob("*/none_*.json")):
        sst2 += json.loads(path.read_text())
    rows = base + near + fastchat + sst2[:1000]
    kinds = {
        "synthetic": list(range(len(base) + len(near))),
        "fastchat": list(range(len(base) + len(near), len(base) + len(near) + len(fastchat))),
        "sst2": list(range(len(rows) - len(sst2[:1000]), len(rows))),
    }
    texts = texts_of(rows)
    seen, unique = set(), []
    for t in texts:  # exact duplicates are the exact stage's job: keep one copy of each text
        if t not in seen:
            seen.add(t)
            unique.append(t)
    return unique, kinds


def truth_pairs(sets: list[set[int]], threshold: float) -> set[tuple[int, int]]:
    from scipy import sparse

    vocab: dict[int, int] = {}
    indptr, indices = [0], []
    for s in sets:
        indices.extend(vocab.setdefault(h, len(vocab)) for h in s)
        indptr.append(len(indices))
    x = sparse.csr_matrix((np.ones(len(indices), np.int32), indices, indptr), shape=(len(sets), len(vocab)))
    inter = (x @ x.T).tocoo()
    sizes = np.array([len(s) for s in sets])
    keep = inter.row < inter.col
    r, c, v = inter.row[keep], inter.col[keep], inter.data[keep]
    jac = v / (sizes[r] + sizes[c] - v)
    return {(int(a), int(b)) for a, b in zip(r[jac >= threshold], c[jac >= threshold], strict=False)}


def curate_edges(texts: list[str], sets: list[set[int]], threshold: float, bands: int, rows: int, ngram: int):
    started = time.perf_counter()
    sigs = [signatures(texts[i : i + 2048], ngram, bands * rows) for i in range(0, len(texts), 2048)]
    bh = band_hashes(np.concatenate(sigs), bands, rows)
    candidates = candidate_pairs(bh, np.arange(len(texts)))
    signed = time.perf_counter() - started
    candidates = {tuple(p) for p in candidates.tolist()}
    edges = {}
    for a, b in candidates:
        sa, sb = sets[a], sets[b]
        score = len(sa & sb) / max(len(sa | sb), 1)
        if score >= threshold:
            edges[(a, b)] = score
    groups = star_groups([(a, b, s) for (a, b), s in edges.items()], pick=min)
    return candidates, set(edges), groups, signed, time.perf_counter() - started


def datasketch_pairs(texts: list[str], threshold: float, ngram: int, num_perm: int = 128):
    import xxhash
    from datasketch import MinHash, MinHashLSH

    from curate.dedup.minhash import tokens

    started = time.perf_counter()
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    hashes = []
    for i, text in enumerate(texts):
        toks = tokens(text)
        shingles = [" ".join(toks[j : j + ngram]).encode() for j in range(max(1, len(toks) - ngram + 1))]
        m = MinHash(num_perm=num_perm, hashfunc=xxhash.xxh32_intdigest)
        m.update_batch(shingles)
        hashes.append(m)
        lsh.insert(i, m)
    pairs = set()
    for i, m in enumerate(hashes):
        for j in lsh.query(m):
            if j != i:
                pairs.add((min(i, j), max(i, j)))
    return pairs, time.perf_counter() - started


def closure(edges: set[tuple[int, int]]) -> set[tuple[int, int]]:
    """Every pair within a connected component: what plain union-find grouping would call copies."""
    uf = UnionFind()
    for a, b in edges:
        uf.union(a, b)
    return {(m[i], m[j]) for m in uf.groups() for i in range(len(m)) for j in range(i + 1, len(m))}


def drop_metrics(groups, truth: set, n: int) -> tuple[float, float]:
    """Precision: the share of (dropped row, kept row) pairs that are true near-duplicates.
    Recall: the share of true pairs of which at most one row is kept."""
    dropped = {row: rep for rep, members in groups for row in members}
    drops = {(min(r, k), max(r, k)) for r, k in dropped.items()}
    precision = len(drops & truth) / len(drops) if drops else 1.0
    recall = sum(1 for a, b in truth if a in dropped or b in dropped) / len(truth) if truth else 1.0
    return precision, recall


def pr(pred: set, truth: set) -> tuple[float, float]:
    hit = len(pred & truth)
    return (hit / len(pred) if pred else 1.0), (hit / len(truth) if truth else 1.0)


def datatrove_removed(texts: list[str], python: str) -> tuple[set[int], float]:
    import subprocess
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="curate-datatrove-"))
    data = work / "texts.jsonl"
    with open(data, "w") as fh:
        for i, text in enumerate(texts):
            fh.write(json.dumps({"text": text, "id": str(i)}) + "\n")
    out = subprocess.run(
        [python, str(Path(__file__).parent / "datatrove_minhash.py"), str(data), str(work / "run")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = json.loads(out)
    return set(result["removed"]), result["seconds"]


def row_metrics(removed: set[int], truth: set) -> tuple[float, float]:
    """Precision: removed rows that have a true near-duplicate partner. Recall: true pairs with
    at least one row removed. Comparable across tools that do not say which row they kept."""
    partnered = {r for pair in truth for r in pair}
    precision = len(removed & partnered) / len(removed) if removed else 1.0
    recall = sum(1 for a, b in truth if a in removed or b in removed) / len(truth) if truth else 1.0
    return precision, recall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--datatrove-python",
        default=None,
        help="a Python with datatrove installed (see datatrove_minhash.py) to compare with",
    )
    args = parser.parse_args()
    near = load_rules().near
    texts, kinds = dataset(args.rows, args.seed)
    sets = shingle_sets(texts, near.ngram)
    truth = truth_pairs(sets, near.threshold)
    candidates, edges, groups, t_sig, t_curate = curate_edges(
        texts, sets, near.threshold, near.bands, near.rows, near.ngram
    )
    lines = [
        ("curate: drops (dropped row vs its kept row)", *drop_metrics(groups, truth, len(texts)), t_curate),
        ("curate: verified pairs", *pr(edges, truth), t_curate),
        ("curate: LSH candidates before verification", *pr(candidates, truth), t_sig),
        ("union-find closure of the verified pairs (not used)", *pr(closure(edges), truth), t_curate),
    ]
    curate_removed = {row for _, members in groups for row in members}
    lines.append(("curate: removed rows (row-level, as below)", *row_metrics(curate_removed, truth), t_curate))
    try:
        ds_pairs, t_ds = datasketch_pairs(texts, near.threshold, near.ngram)
        lines.append(("datasketch MinHashLSH 128 perm: pairs", *pr(ds_pairs, truth), t_ds))
    except ImportError:
        t_ds = None
    t_dt = None
    if args.datatrove_python:
        dt_removed, t_dt = datatrove_removed(texts, args.datatrove_python)
        lines.append(("datatrove MinhashDedup 14x8: removed rows", *row_metrics(dt_removed, truth), t_dt))
    hard = set(kinds["fastchat"]) | set(kinds["sst2"])
    print(
        f"\nnear-duplicate quality · {len(texts):,} unique texts · threshold {near.threshold} · "
        f"{near.bands}x{near.rows} bands · {len(truth):,} true pairs "
        f"({sum(1 for a, b in truth if a in hard or b in hard):,} among the hard negatives)\n"
    )
    print(
        "drops: precision = dropped rows whose Jaccard with their kept row >= threshold; recall = true pairs"
        "\nof which at most one row is kept. pairs: precision/recall over pairs with Jaccard >= threshold.\n"
    )
    print("| method | precision | recall | seconds |")
    print("|---|---|---|---|")
    for name, p, r, t in lines:
        print(f"| {name} | {p:.4f} | {r:.4f} | {t:.1f} |")
    if t_ds:
        print(
            f"\nspeed: curate signatures + LSH + exact verification are {t_ds / t_curate:.1f}x faster than "
            "datasketch's MinHash + MinHashLSH (which does no verification)"
        )
    if t_dt:
        print(
            f"speed: {t_dt / t_curate:.1f}x faster than datatrove's three MinHash stages (one task each, "
            "including its process start and file I/O; it normalises text its own way, so its shingles differ)"
        )


if __name__ == "__main__":
    main()
