"""The per-row work of a scan, one batch at a time: parse, normalise, identify, filter, sign.

`process_batch` is a pure function of its inputs so a process pool can run it on every core;
its result is columnar and small (no record text), and the main process stitches batches back
together in input order. `run_batches` runs it over a stream of batches, in this process or in a
pool of workers, and gives the results back in input order.

In: batches of `Item`s, the normaliser and the rules. Out: one `BatchResult` per batch.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
import unicodedata
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from curate.dedup.minhash import band_hashes, signatures
from curate.normalise.normaliser import Normaliser, Unreadable
from curate.read.items import Item, dump_json, parse_item
from curate.record import Record

if TYPE_CHECKING:  # the rules are handed in; their module sits above the stages
    from curate.ruleset import Rules


@dataclass
class BatchResult:
    """Columns for the rows of one batch, indexed from 0 (the caller adds the batch's first row)."""

    n: int = 0
    source: list[str] = field(default_factory=list)
    index: list[int] = field(default_factory=list)
    line: list[int] = field(default_factory=list)  # -1: no line
    part: list[int] = field(default_factory=list)  # -1: not an expanded record
    content_id: list[bytes | None] = field(default_factory=list)
    prompt_key: list[int] = field(default_factory=list)
    response_key: list[int] = field(default_factory=list)
    prompt_chars: list[int] = field(default_factory=list)
    response_chars: list[int] = field(default_factory=list)
    lang: list[str] = field(default_factory=list)
    hits: dict[int, list[tuple[str, float, dict]]] = field(default_factory=dict)
    quarantine: dict[int, tuple[str, str]] = field(default_factory=dict)
    raw: Any = field(default_factory=list)  # list[bytes] while filling; an Arrow array when returned
    bands: np.ndarray | None = None
    band_rows: np.ndarray | None = None
    filter_errors: dict[str, tuple[int, str]] = field(default_factory=dict)
    formats: dict[str, set[str]] = field(default_factory=dict)  # source -> formats its records were read as
    seconds: dict[str, float] = field(default_factory=dict)


def _key(text: str) -> int:
    digest = hashlib.blake2b(
        unicodedata.normalize("NFC", text).encode("utf-8", "surrogatepass"), digest_size=8
    ).digest()
    return int.from_bytes(digest, "little")


def _gate_screens(rules: Rules, texts) -> dict[str, tuple[np.ndarray, None]]:
    """Masks of every filter that screens by `gate` alone, from one pass of all gates together:
    most rows match no gate, and only the few that do are run through each gate on its own."""
    import pyarrow.compute as pc

    from curate.filters.base import Filter

    gates = {
        r.filter.name: r.filter.gate for r in rules.filters if r.filter.gate and type(r.filter).screen is Filter.screen
    }
    if not gates:
        return {}
    combined = "|".join(f"(?:{_scoped(g)})" for g in gates.values())
    hit = np.flatnonzero(pc.match_substring_regex(texts, combined).to_numpy(zero_copy_only=False))
    subset = texts.take(hit)
    masks = {}
    for name, gate in gates.items():
        mask = np.zeros(len(texts), dtype=bool)
        if hit.size:
            mask[hit] = pc.match_substring_regex(subset, gate).to_numpy(zero_copy_only=False)
        masks[name] = (mask, None)
    return masks


def _scoped(gate: str) -> str:
    """A leading (?i) applies to the whole pattern; inside an alternation it must be scoped."""
    return f"(?i:{gate[4:]})" if gate.startswith("(?i)") else gate


def process_batch(items: list[Item], normaliser: Normaliser, rules: Rules) -> BatchResult:
    out = BatchResult()
    clock = time.perf_counter
    t0 = clock()
    records: list[Record] = []
    for item in items:
        original = item.data
        parse_item(item)
        for rec in normaliser.records(item, out.n):
            local = out.n
            out.n += 1
            out.source.append(rec.source)
            out.index.append(rec.index)
            out.line.append(-1 if rec.line is None else rec.line)
            if isinstance(rec, Unreadable):
                out.part.append(-1)
                out.content_id.append(None)
                out.prompt_key.append(0)
                out.response_key.append(0)
                out.prompt_chars.append(0)
                out.response_chars.append(0)
                out.lang.append("")
                out.quarantine[local] = (rec.reason, rec.error)
                out.raw.append(rec.raw_text.encode("utf-8", "backslashreplace"))
                continue
            out.part.append(-1 if rec.part is None else rec.part)
            out.formats.setdefault(rec.source, set()).add(rec.format)
            out.content_id.append(bytes.fromhex(rec.content_id))
            prompt, response = rec.prompt, rec.response
            out.prompt_key.append(_key(prompt))
            out.response_key.append(_key(response))
            out.prompt_chars.append(len(prompt))
            out.response_chars.append(len(response))
            out.lang.append("")
            if original is not None and rec.part is None:
                out.raw.append(original.rstrip(b"\r"))
            else:
                out.raw.append(dump_json(rec.raw))
            records.append(rec)
    t1 = clock()
    out.seconds["read"] = t1 - t0

    full_texts = [r.full_text() for r in records]
    found: dict[int, list[tuple[str, float, dict]]] = {}
    if records:
        import pyarrow as pa

        texts = pa.array(full_texts, pa.large_string()) if full_texts else None
        gated = _gate_screens(rules, texts)
        for rule in rules.filters:
            name = rule.filter.name
            try:
                mask, default = gated[name] if name in gated else rule.filter.screen(records, texts)
            except Exception as exc:  # a broken screen falls back to checking every row
                mask, default = None, None
                out.filter_errors.setdefault(name, (0, f"screen: {type(exc).__name__}: {exc}"))
            if default is not None and default.tags and "lang" in default.tags:
                for i in range(len(records)) if mask is None else np.flatnonzero(~mask).tolist():
                    out.lang[records[i].row] = default.tags["lang"]
            if default is not None and default.reason is not None:
                for i in np.flatnonzero(~mask).tolist():
                    found.setdefault(records[i].row, []).append((default.reason, default.score, default.detail))
            for i in range(len(records)) if mask is None else np.flatnonzero(mask).tolist():
                rec = records[i]
                try:
                    hits = rule.filter.check(rec)
                except Exception as exc:  # one broken filter must not sink the scan
                    count, first = out.filter_errors.get(
                        name, (0, f"{rec.source}:{rec.line}: {type(exc).__name__}: {exc}")
                    )
                    out.filter_errors[name] = (count + 1, first)
                    continue
                for hit in hits or ():
                    if hit.tags and "lang" in hit.tags:
                        out.lang[rec.row] = hit.tags["lang"]
                    if hit.reason is not None:
                        found.setdefault(rec.row, []).append((hit.reason, hit.score, hit.detail))
    out.hits = found
    t2 = clock()
    out.seconds["filter"] = t2 - t1

    if rules.near.enabled and records:
        sig = signatures(full_texts, rules.near.ngram, rules.near.bands * rules.near.rows)
        out.bands = band_hashes(sig, rules.near.bands, rules.near.rows)
        out.band_rows = np.fromiter((r.row for r in records), dtype=np.int64, count=len(records))
        has_shingles = sig[:, 0] != np.uint64(1 << 40)
        out.bands, out.band_rows = out.bands[has_shingles], out.band_rows[has_shingles]
    out.seconds["minhash"] = clock() - t2
    import pyarrow as pa

    # Built here, in the worker: an Arrow array pickles as a few buffers, and the main process
    # only has to append it to the spill.
    out.raw = pa.array(out.raw, pa.large_binary())
    return out


def run_batches(
    batches: Iterator[list[Item]], normaliser: Normaliser, rules: Rules, workers: int
) -> Iterator[BatchResult]:
    if workers <= 1:
        for batch in batches:
            yield process_batch(batch, normaliser, rules)
        return
    import multiprocessing

    # forkserver, not fork: the main process already runs Arrow's threads, and forking a
    # threaded process can deadlock the child.
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method)) as pool:
        pending: deque[Future] = deque()
        for batch in batches:
            pending.append(pool.submit(process_batch, batch, normaliser, rules))
            while len(pending) > workers * 2:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def auto_workers(source: Any) -> int:
    """A process pool pays off only past a few MB of input; objects in memory stay in process."""
    paths = (
        [source]
        if isinstance(source, (str, os.PathLike))
        else (
            source
            if isinstance(source, (list, tuple)) and all(isinstance(s, (str, os.PathLike)) for s in source)
            else []
        )
    )
    size = 0
    for p in map(Path, paths):
        if p.is_file():
            size += p.stat().st_size
        elif p.is_dir():
            size += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return default_workers() if size > 8 << 20 else 1


def default_workers() -> int:
    """One worker per core, at most 8: below a few thousand rows the pool is not worth starting."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


if sys.platform == "win32":  # pragma: no cover
    default_workers = lambda: 1  # noqa: E731
