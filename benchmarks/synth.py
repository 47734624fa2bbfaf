"""Synthetic instruction data of realistic lengths, with planted exact and near duplicates.

Words are drawn from the real clean pools in ../shared/bench when present (Zipf-like, as real
text is), else from a fixed vocabulary. Prompt and response lengths follow the Alpaca pools:
about 20 and 110 words, log-normally spread.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "bench"


def vocabulary() -> list[str]:
    path = SHARED / "clean" / "alpaca_eval_outputs.json"
    if path.exists():
        text = " ".join(r["instruction"] + " " + r["output"] for r in json.loads(path.read_text()))
        return re.findall(r"[A-Za-z']+|[.,;:?!]", text)
    return (
        "the of and to a in is that for it as with was on be by this are or an from at which "
        "data model learn train answer question write explain list describe example"
    ).split()


def _text(rng: random.Random, words: list[str], mean_words: float) -> str:
    n = max(3, int(rng.lognormvariate(0, 0.5) * mean_words))
    start = rng.randrange(len(words) - n) if len(words) > n else 0
    # a run of real text, lightly shuffled, so n-grams look like language without repeating the pool
    chunk = words[start : start + n]  # shorter than n when the vocabulary is
    for _ in range(len(chunk) // 8):
        i, j = rng.randrange(len(chunk)), rng.randrange(len(chunk))
        chunk[i], chunk[j] = chunk[j], chunk[i]
    return " ".join(chunk)


def make_rows(n: int, seed: int = 0, exact: float = 0.05, near: float = 0.05) -> tuple[list[dict], dict]:
    """`n` Alpaca rows; the last exact*n are exact copies and near*n are one-edit copies."""
    rng = random.Random(seed)
    words = vocabulary()
    n_exact, n_near = int(n * exact), int(n * near)
    base = n - n_exact - n_near
    rows = [{"instruction": _text(rng, words, 20), "input": "", "output": _text(rng, words, 110)} for _ in range(base)]
    truth = {"exact": [], "near": []}
    for _ in range(n_exact):
        src = rng.randrange(base)
        truth["exact"].append((src, len(rows)))
        rows.append(dict(rows[src]))
    for _ in range(n_near):
        src = rng.randrange(base)
        out = rows[src]["output"].split()
        for _ in range(max(1, len(out) // 60)):  # about one edit per 60 words
            out[rng.randrange(len(out))] = rng.choice(words)
        truth["near"].append((src, len(rows)))
        rows.append({**rows[src], "output": " ".join(out)})
    return rows, truth


def write_jsonl(rows: list[dict], path: Path) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path
