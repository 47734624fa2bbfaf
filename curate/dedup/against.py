"""`--against`: rows whose prompt duplicates an evaluation prompt (`dup:eval`), exactly or by
MinHash-LSH and Jaccard. A step the caller composes into a scan (see `curate.result.Step`).

In: evaluation files, the ledger and the record loader. Out: `dup:eval` reasons; the number of
evaluation prompts read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from curate.dedup.minhash import LSHIndex, band_hashes, shingle_set, shingle_sets, signatures
from curate.normalise import Normaliser
from curate.read import Item, parse_item, resolve_sources
from curate.read.spill import BATCH_ROWS
from curate.record import Record, squash

if TYPE_CHECKING:  # pragma: no cover
    from curate.read.spill import RecordLoader
    from curate.result import Ledger
    from curate.ruleset import Rules


@dataclass
class Against:
    """The step: mark this scan's rows against the evaluation sets in `paths`."""

    paths: tuple[str, ...]
    rules: Rules
    name: str = "against"

    def __call__(self, ledger: Ledger, loader: RecordLoader) -> int:
        return mark_eval_duplicates(self.paths, ledger, self.rules, loader)


def _eval_prompt(value: dict, normaliser: Normaliser, source: str) -> str | None:
    item = Item(source, 0, None, value=value)
    for rec in normaliser.records(item, 0):
        if isinstance(rec, Record):
            return rec.last_user or rec.prompt
    for key in ("prompt", "question", "instruction", "goal", "query", "input", "text"):
        if isinstance(value.get(key), str) and value[key].strip():
            return value[key]
    return None


def mark_eval_duplicates(paths: tuple[str, ...], ledger: Ledger, rules: Rules, loader: RecordLoader) -> int:
    """Mark rows whose prompt duplicates an evaluation prompt (`dup:eval`). Returns eval size."""
    exact: dict[str, str] = {}
    prompts: list[tuple[str, str]] = []
    normaliser = Normaliser()
    for source in resolve_sources(list(paths)):
        for item in source.items():
            parse_item(item)
            if item.value is None:
                continue
            normaliser.resolve(item.source, item.value)  # detects once per source, then cached
            prompt = _eval_prompt(item.value, normaliser, item.source)
            if prompt:
                where = item.where
                exact.setdefault(squash(prompt), where)
                prompts.append((where, prompt))
    if not prompts:
        return 0
    cfg = rules.near
    ngram = rules.against.ngram
    index = LSHIndex(cfg.bands, cfg.rows)
    eval_shingles = []
    for start in range(0, len(prompts), BATCH_ROWS):
        chunk = prompts[start : start + BATCH_ROWS]
        sig = signatures([p for _, p in chunk], ngram, cfg.bands * cfg.rows)
        index.add(band_hashes(sig, cfg.bands, cfg.rows), list(range(start, start + len(chunk))))
        eval_shingles.extend(shingle_sets([p for _, p in chunk], ngram))
    threshold = rules.against.threshold
    action = rules.against.action
    rows = [r for r in range(ledger.n) if r not in ledger.quarantined]
    for start in range(0, len(rows), BATCH_ROWS):
        chunk_rows = rows[start : start + BATCH_ROWS]
        texts = []
        for row in chunk_rows:
            rec = loader.record(row)
            texts.append((rec.last_user or rec.prompt) if rec else "")
        sig = signatures(texts, ngram, cfg.bands * cfg.rows)
        bands = band_hashes(sig, cfg.bands, cfg.rows)
        for i, (row, text) in enumerate(zip(chunk_rows, texts, strict=False)):
            if not text.strip():
                continue
            hit = exact.get(squash(text))
            if hit:
                ledger.add_reason(row, "dup:eval", {"action": action, "eval": hit, "similarity": 1.0})
                continue
            candidates = index.query(bands[i])
            if not candidates:
                continue
            mine = shingle_set(text, ngram)
            best, best_score = None, 0.0
            for c in candidates:
                other = eval_shingles[c]
                union = len(mine | other)
                score = len(mine & other) / union if union else 0.0
                if score > best_score:
                    best, best_score = c, score
            if best is not None and best_score >= threshold:
                ledger.add_reason(
                    row, "dup:eval", {"action": action, "eval": prompts[best][0], "similarity": round(best_score, 4)}
                )
    return len(prompts)
