"""Dedup, after pass one: exact duplicates (same content id) and near duplicates (MinHash-LSH
candidates verified by exact Jaccard), each group keeping its best row; and the repeat signals
(one prompt with several answers, one answer to several prompts) that are not duplicates.

In: the ledger pass one filled (content ids, band hashes, prompt and response keys) and the
record loader. Out: the exact and near groups; `dup:*` reasons and repeat signals in the ledger.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import numpy as np

from curate.dedup.minhash import shingle_arrays
from curate.dedup.near import candidate_pairs, star_groups
from curate.memory import trim
from curate.read.spill import BATCH_ROWS

if TYPE_CHECKING:  # pragma: no cover
    from curate.read.spill import RecordLoader
    from curate.result import Ledger
    from curate.ruleset import Rules


def dedup(
    ledger: Ledger, rules: Rules, loader: RecordLoader, seconds: dict[str, float]
) -> tuple[list[tuple[int, list[int]]], list[tuple[int, list[int], float]]]:
    """Mark every duplicate with `dup:exact` or `dup:near`, naming the row kept; returns the exact
    groups (kept row, rows) and the near groups (kept row, rows, least similarity)."""
    clock = time.perf_counter
    t = clock()
    exact_groups = []
    dropped = np.zeros(ledger.n, dtype=bool)
    kept_of: dict[int, int] = {}
    for rows in ledger.exact_groups():
        rep = _representative(rows, ledger)
        exact_groups.append((rep, rows))
        for row in rows:
            if row != rep:
                dropped[row] = True
                kept_of[row] = rep
    seconds["exact"] = clock() - t

    t = clock()
    alive = ~dropped
    if ledger.quarantined:
        alive[list(ledger.quarantined)] = False
    near_groups = []
    for rep, members in _near_dedup(ledger, rules, loader, alive):
        near_groups.append((rep, sorted([rep, *members]), min(members.values())))
        for row, similarity in members.items():
            kept_of[row] = rep
            ledger.add_reason(
                row, "dup:near", {"action": rules.near.action, **_kept(ledger, rep), "similarity": round(similarity, 4)}
            )
    # The band hashes did their work (20 x 8 bytes a row): detection needs the memory more.
    ledger.bands, ledger.band_rows = [], []
    trim()
    for rep, rows in exact_groups:
        final = kept_of.get(rep, rep)
        for row in rows:
            if row != rep:
                ledger.add_reason(row, "dup:exact", {"action": rules.exact.action, **_kept(ledger, final)})
    seconds["near"] = clock() - t
    return exact_groups, near_groups


def _representative(rows: list[int], ledger: Ledger) -> int:
    """The first row that passes the filters; failing that, the first not dropped; else the first."""
    for wanted in ("keep", "flag"):
        for row in rows:
            if ledger.verdict(row) == wanted:
                return row
    return rows[0]


def _near_dedup(
    ledger: Ledger, rules: Rules, loader: RecordLoader, alive: np.ndarray
) -> list[tuple[int, dict[int, float]]]:
    if not ledger.bands:
        return []
    bands = np.concatenate(ledger.bands)
    keys = np.concatenate(ledger.band_rows)
    keep = alive[keys]
    bands, keys = bands[keep], keys[keep]
    pairs = candidate_pairs(bands, keys)
    if not len(pairs):
        return []
    involved = np.unique(pairs)
    shingles: dict[int, np.ndarray] = {}
    for start in range(0, len(involved), BATCH_ROWS):
        chunk = involved[start : start + BATCH_ROWS].tolist()
        texts = []
        for row in chunk:
            rec = loader.record(row)
            texts.append(rec.full_text() if rec else "")
        for row, values in zip(chunk, shingle_arrays(texts, rules.near.ngram), strict=False):
            shingles[row] = values
    edges = []
    for a, b in pairs.tolist():
        sa, sb = shingles[a], shingles[b]
        common = np.intersect1d(sa, sb, assume_unique=True).size
        union = sa.size + sb.size - common
        score = common / union if union else 0.0
        if score >= rules.near.threshold:
            edges.append((a, b, score))
    return star_groups(edges, lambda rows: _representative(rows, ledger))


def _kept(ledger: Ledger, row: int) -> dict[str, Any]:
    where = ledger.where(row)
    return {"kept_row": row, "kept_source": where["source"], "kept_line": where["line"]}


def repeat_signals(ledger: Ledger) -> dict[str, Any]:
    """Same prompt with different responses, same response to different prompts: not duplicates,
    but what trigger and target mining look at. Recorded in evidence and the report."""
    out: dict[str, Any] = {}
    for kind, key_col, other_col, chars in (
        ("same_prompt", ledger.prompt_key, ledger.response_key, ledger.prompt_chars),
        ("same_response", ledger.response_key, ledger.prompt_key, ledger.response_chars),
    ):
        keys = np.asarray(key_col, dtype=np.uint64)
        others = np.asarray(other_col, dtype=np.uint64)
        has_text = np.asarray(chars, dtype=np.int64) > 0
        rows = np.flatnonzero(has_text)
        if rows.size == 0:
            out[kind] = []
            continue
        _, inverse, counts = np.unique(keys[rows], return_inverse=True, return_counts=True)
        multi = np.flatnonzero(counts > 1)
        groups = []
        members_of: dict[int, list[int]] = defaultdict(list)
        wanted = set(multi.tolist())
        for r, g in zip(rows.tolist(), inverse.tolist(), strict=False):
            if g in wanted:
                members_of[g].append(r)
        for members in members_of.values():
            distinct = len({int(others[r]) for r in members})
            if distinct < 2:
                continue  # an exact duplicate, not a signal
            groups.append((len(members), distinct, members))
            for r in members:
                ledger.signals.setdefault(r, {})[kind] = {"rows": len(members), "distinct": distinct}
        groups.sort(key=lambda g: (-g[0], g[2][0]))
        out[kind] = groups
    return out
