"""The scan: read → normalise → filter → dedup → embed → detect → decide → write, over any source.

Pass one streams the input in batches (on every core when there are several) and keeps only
small per-row columns in memory; the records themselves spill to an Arrow file on disk, keyed by
row. Dedup is decided on those columns; detection streams the spill once more (embedding every
readable row); the verdicts follow, and a last pass streams the spill into the outputs. Every row read ends in exactly one verdict, and the counts are checked before writing.
"""

from __future__ import annotations

import bisect
import os
import shutil
import sys
from array import array
import tempfile
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from curate.batch import BatchResult, process_batch
from curate.decide import Threshold, parse_fail_on, verdict_of
from curate.dedup.minhash import LSHIndex, band_hashes, shingle_arrays, shingle_set, shingle_sets, signatures
from curate.dedup.near import candidate_pairs, star_groups
from curate.errors import CurateError, UsageError
from curate.memory import trim
from curate.normalise import Normaliser, parse_mapping
from curate.normalise.mapping import Mapping
from curate.read import Item, resolve_sources
from curate.read.objects import object_source
from curate.record import Record, squash
from curate.ruleset import Rules, load_rules

BATCH_ROWS = 2048
BATCH_BYTES = 16 << 20


@dataclass
class Ledger:
    """Per-row columns for the whole scan, addressed by row."""

    n: int = 0
    source_names: list[str] = field(default_factory=list)
    # Compact typed columns: a million rows cost tens of MB, not the GB of Python int lists.
    source_id: array = field(default_factory=lambda: array("i"))
    index: array = field(default_factory=lambda: array("q"))
    line: array = field(default_factory=lambda: array("q"))
    part: array = field(default_factory=lambda: array("i"))
    content_ids: bytearray = field(default_factory=bytearray)  # 16 bytes a row; zeros when unreadable
    prompt_key: array = field(default_factory=lambda: array("Q"))
    response_key: array = field(default_factory=lambda: array("Q"))
    prompt_chars: array = field(default_factory=lambda: array("q"))
    response_chars: array = field(default_factory=lambda: array("q"))
    lang: list[str] = field(default_factory=list)
    reasons: dict[int, dict[str, dict[str, Any]]] = field(default_factory=dict)
    signals: dict[int, dict[str, Any]] = field(default_factory=dict)
    quarantined: set[int] = field(default_factory=set)
    bands: list[np.ndarray] = field(default_factory=list)
    band_rows: list[np.ndarray] = field(default_factory=list)
    filter_errors: dict[str, list] = field(default_factory=dict)
    suspicion: dict[int, float] = field(default_factory=dict)
    triggers: dict[int, list[str]] = field(default_factory=dict)
    cluster: dict[int, int] = field(default_factory=dict)
    neighbours: dict[int, list[tuple[int, float]]] = field(default_factory=dict)
    seconds: Counter = field(default_factory=Counter)
    _source_ids: dict[str, int] = field(default_factory=dict)

    def add_reason(self, row: int, reason: str, evidence: dict[str, Any]) -> None:
        self.reasons.setdefault(row, {})[reason] = evidence

    def merge(self, result: BatchResult, rules: Rules) -> None:
        base = self.n
        for name in result.source:
            if name not in self._source_ids:
                self._source_ids[name] = len(self.source_names)
                self.source_names.append(name)
        ids = self._source_ids
        self.source_id.extend(ids[name] for name in result.source)
        self.index.extend(result.index)
        self.line.extend(result.line)
        self.part.extend(result.part)
        for cid in result.content_id:
            self.content_ids += cid if cid is not None else bytes(16)
        self.prompt_key.extend(result.prompt_key)
        self.response_key.extend(result.response_key)
        self.prompt_chars.extend(result.prompt_chars)
        self.response_chars.extend(result.response_chars)
        self.lang.extend(sys.intern(lang) for lang in result.lang)
        for local, hits in result.hits.items():
            for reason, score, detail in hits:
                self.add_reason(base + local, reason, {"action": rules.action_of(reason),
                                                      "score": round(score, 4), **detail})
        for local, (reason, error) in result.quarantine.items():
            self.quarantined.add(base + local)
            self.add_reason(base + local, reason, {"action": "quarantine", "error": error})
        if result.bands is not None and len(result.band_rows):
            self.bands.append(result.bands)
            self.band_rows.append(result.band_rows + base)
        for name, (count, first) in result.filter_errors.items():
            entry = self.filter_errors.setdefault(name, [0, first])
            entry[0] += count
        self.seconds.update(result.seconds)
        self.n += result.n

    def content_id(self, row: int) -> str | None:
        return None if row in self.quarantined else self.content_ids[16 * row:16 * row + 16].hex()

    def exact_groups(self) -> list[list[int]]:
        """Rows that share a content id, in groups of two or more, each in row order."""
        ids = np.frombuffer(bytes(self.content_ids), dtype="V16")
        readable = np.ones(self.n, dtype=bool)
        if self.quarantined:
            readable[list(self.quarantined)] = False
        rows = np.flatnonzero(readable)
        _, inverse, counts = np.unique(ids[rows], return_inverse=True, return_counts=True)
        dup = counts[inverse] > 1
        rows, inverse = rows[dup], inverse[dup]
        order = np.lexsort((rows, inverse))
        rows, inverse = rows[order], inverse[order]
        breaks = np.flatnonzero(np.diff(inverse)) + 1
        return [g.tolist() for g in np.split(rows, breaks)] if rows.size else []

    def where(self, row: int) -> dict[str, Any]:
        line = self.line[row]
        return {"row": row, "source": self.source_names[self.source_id[row]],
                "line": None if line < 0 else line}

    def verdict(self, row: int) -> str:
        """The verdict the reasons so far give: after the filters, the filter verdict; at the
        end, the final one."""
        reasons = self.reasons.get(row)
        return verdict_of([e["action"] for e in reasons.values()]) if reasons else "keep"


class Spill:
    """Raw records on disk in an Arrow IPC file, one batch per pass-one batch, keyed by row."""

    def __init__(self, path: Path):
        import pyarrow as pa

        self.path = path
        self._pa = pa
        self.schema = pa.schema([("row", pa.int64()), ("raw", pa.large_binary())])
        self._sink = pa.OSFile(str(path), "wb")
        self._writer = pa.ipc.new_file(self._sink, self.schema)
        self._starts: list[int] = []  # first row of each batch, in file order
        self._cached: tuple[int, list[bytes]] | None = None
        self._random = None

    @classmethod
    def reopen(cls, path: Path) -> Spill:
        """A finished spill from an interrupted scan, for reading."""
        import pyarrow as pa

        spill = cls.__new__(cls)
        spill.path, spill._pa = path, pa
        spill.schema = pa.schema([("row", pa.int64()), ("raw", pa.large_binary())])
        spill._sink = spill._writer = None
        spill._cached, spill._random = None, None
        reader = spill._reader()
        spill._starts = [reader.get_batch(i).column(0)[0].as_py() for i in range(reader.num_record_batches)]
        return spill

    def write(self, first_row: int, raw: Any) -> None:
        """Append one batch; `raw` is an Arrow large_binary array (or a list of bytes)."""
        pa = self._pa
        if not len(raw):
            return
        if not isinstance(raw, pa.Array):
            raw = pa.array(raw, pa.large_binary())
        rows = pa.array(np.arange(first_row, first_row + len(raw), dtype=np.int64))
        self._starts.append(first_row)
        self._writer.write_batch(pa.record_batch([rows, raw], schema=self.schema))

    def close(self) -> None:
        self._writer.close()
        self._sink.close()

    def _reader(self):
        pa = self._pa
        # A plain file rather than a memory map: mapped pages count as the process's resident
        # memory, and a million-row spill would look like a GB of it.
        return pa.ipc.open_file(pa.OSFile(str(self.path), "rb"))

    def batches(self) -> Iterator[tuple[int, list[bytes]]]:
        reader = self._reader()
        for i in range(reader.num_record_batches):
            batch = reader.get_batch(i)
            rows = batch.column(0)
            yield (rows[0].as_py() if len(rows) else 0), batch.column(1).to_pylist()

    def raw(self, row: int) -> bytes:
        """One record. Reads its whole batch and keeps it, so rows asked for in order are cheap."""
        if self._cached is None or not (self._cached[0] <= row < self._cached[0] + len(self._cached[1])):
            if self._random is None:
                self._random = self._reader()
            i = bisect.bisect_right(self._starts, row) - 1
            self._cached = (self._starts[i], self._random.get_batch(i).column(1).to_pylist())
        return self._cached[1][row - self._cached[0]]


@dataclass
class ScanOptions:
    """Everything but the data and the rules that changes what a scan does."""

    format: str | None = None
    mapping: Mapping | None = None
    input_type: str | None = None
    against: tuple[str, ...] = ()
    workers: int = 1
    seed: int = 0
    #: "local" (this process and its worker pool) or "ray" (a Ray cluster, see curate.ray_engine).
    engine: str = "local"
    address: str | None = None

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise UsageError("workers must be >= 1")
        if self.engine not in ("local", "ray"):
            raise UsageError(f"unknown engine {self.engine!r}: use local or ray")


def _batches(sources: list, normaliser: Normaliser) -> Iterator[list[Item]]:
    batch: list[Item] = []
    size = 0
    for source in sources:
        resolved = False
        for item in source.items():
            if not resolved and item.error is None:
                value = item.value
                if item.data is not None:
                    try:
                        value = orjson.loads(item.data)
                    except orjson.JSONDecodeError:
                        value = None
                if isinstance(value, dict):
                    normaliser.resolve(item.source, value)
                    resolved = True
            batch.append(item)
            size += len(item.data) if item.data is not None else 256
            if len(batch) >= BATCH_ROWS or size >= BATCH_BYTES:
                yield batch
                batch, size = [], 0
    if batch:
        yield batch


def _run_batches(batches: Iterator[list[Item]], normaliser: Normaliser, rules: Rules,
                 workers: int) -> Iterator[BatchResult]:
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


def _representative(rows: list[int], ledger: Ledger) -> int:
    """The first row that passes the filters; failing that, the first not dropped; else the first."""
    for wanted in ("keep", "flag"):
        for row in rows:
            if ledger.verdict(row) == wanted:
                return row
    return rows[0]


class RecordLoader:
    """Re-creates records from the spill for the few rows later stages need to read again."""

    def __init__(self, spill: Spill, ledger: Ledger, normaliser: Normaliser):
        self.spill, self.ledger, self.normaliser = spill, ledger, normaliser

    def record(self, row: int) -> Record | None:
        if row in self.ledger.quarantined:
            return None
        try:
            value = orjson.loads(self.spill.raw(row))
        except orjson.JSONDecodeError:
            return None
        item = Item(self.ledger.source_names[self.ledger.source_id[row]], self.ledger.index[row], None, value=value)
        for rec in self.normaliser.records(item, row):
            return rec if isinstance(rec, Record) else None
        return None


def _near_dedup(ledger: Ledger, rules: Rules, loader: RecordLoader, alive: np.ndarray
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
        chunk = involved[start:start + BATCH_ROWS].tolist()
        texts = []
        for row in chunk:
            rec = loader.record(row)
            texts.append(rec.full_text() if rec else "")
        for row, values in zip(chunk, shingle_arrays(texts, rules.near.ngram)):
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


def _eval_prompt(value: dict, normaliser: Normaliser, source: str) -> str | None:
    item = Item(source, 0, None, value=value)
    for rec in normaliser.records(item, 0):
        if isinstance(rec, Record):
            return rec.last_user or rec.prompt
    for key in ("prompt", "question", "instruction", "goal", "query", "input", "text"):
        if isinstance(value.get(key), str) and value[key].strip():
            return value[key]
    return None


def _against(paths: tuple[str, ...], ledger: Ledger, rules: Rules, loader: RecordLoader) -> int:
    """Mark rows whose prompt duplicates an evaluation prompt (`dup:eval`). Returns eval size."""
    from curate.read import parse_item

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
        chunk = prompts[start:start + BATCH_ROWS]
        sig = signatures([p for _, p in chunk], ngram, cfg.bands * cfg.rows)
        index.add(band_hashes(sig, cfg.bands, cfg.rows), list(range(start, start + len(chunk))))
        eval_shingles.extend(shingle_sets([p for _, p in chunk], ngram))
    threshold = rules.against.threshold
    action = rules.against.action
    rows = [r for r in range(ledger.n) if r not in ledger.quarantined]
    for start in range(0, len(rows), BATCH_ROWS):
        chunk_rows = rows[start:start + BATCH_ROWS]
        texts = []
        for row in chunk_rows:
            rec = loader.record(row)
            texts.append((rec.last_user or rec.prompt) if rec else "")
        sig = signatures(texts, ngram, cfg.bands * cfg.rows)
        bands = band_hashes(sig, cfg.bands, cfg.rows)
        for i, (row, text) in enumerate(zip(chunk_rows, texts)):
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
                ledger.add_reason(row, "dup:eval", {"action": action, "eval": prompts[best][0],
                                                   "similarity": round(best_score, 4)})
    return len(prompts)


def _repeat_signals(ledger: Ledger) -> dict[str, Any]:
    """Same prompt with different responses, same response to different prompts: not duplicates,
    but what trigger and target mining look at. Recorded in evidence and the report."""
    out: dict[str, Any] = {}
    for kind, key_col, other_col, chars in (
            ("same_prompt", ledger.prompt_key, ledger.response_key, ledger.prompt_chars),
            ("same_response", ledger.response_key, ledger.prompt_key, ledger.response_chars)):
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
        for r, g in zip(rows.tolist(), inverse.tolist()):
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


@dataclass
class ScanResult:
    """What the writer needs: the ledger, the verdicts and the groups, before any file exists."""

    ledger: Ledger
    verdicts: list[str]
    spill: Spill
    loader: RecordLoader
    rules: Rules
    options: ScanOptions
    sources: list[Any]
    normaliser: Normaliser
    exact_groups: list[tuple[int, list[int]]]
    near_groups: list[tuple[int, list[int], float]]
    signals: dict[str, Any]
    eval_rows: int
    seconds: dict[str, float]
    workdir: Path
    detection: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None
    review: dict[str, Any] | None = None
    resumed: list[str] = field(default_factory=list)


def _resolve_input(source: Any, options: ScanOptions) -> list[Any]:
    if isinstance(source, (str, os.PathLike)):
        return resolve_sources([str(source)], options.input_type)
    if isinstance(source, (list, tuple)) and source and all(isinstance(s, (str, os.PathLike)) for s in source):
        return resolve_sources([str(s) for s in source], options.input_type)
    return [object_source(source)]


def run_scan(source: Any, rules: Rules, options: ScanOptions, workdir: Path,
             progress: Callable[[int], None] | None = None, store: Any = None, resume: bool = False) -> ScanResult:
    """The scan up to the verdicts. With `resume`, each finished stage leaves a checkpoint in
    `workdir` (pass one: the spill and the ledger; then dedup and detection), and a rerun in the
    same `workdir` starts after the last one."""
    clock = time.perf_counter
    sources = _resolve_input(source, options)
    resumed: list[str] = []
    pass1_ckpt, detect_ckpt = workdir / "pass1.pkl", workdir / "detect.pkl"
    if resume and pass1_ckpt.exists() and (workdir / "spill.arrow").exists():
        ledger, normaliser = _load(pass1_ckpt)
        spill = Spill.reopen(workdir / "spill.arrow")
        seconds = {"pass1": 0.0}
        resumed.append("pass1")
    else:
        normaliser = Normaliser(options.format, options.mapping)
        ledger = Ledger()
        spill = Spill(workdir / "spill.arrow")
        started = clock()
        try:
            if options.engine == "ray":
                from curate import ray_engine

                results = ray_engine.run_batches(_batches(sources, normaliser), normaliser, rules, options.address)
            else:
                results = _run_batches(_batches(sources, normaliser), normaliser, rules, options.workers)
            for result in results:
                first = ledger.n
                spill.write(first, result.raw)
                result.raw = []
                ledger.merge(result, rules)
                if progress:
                    progress(ledger.n)
        finally:
            spill.close()
        seconds = {"pass1": clock() - started}
        trim()
        if resume:
            _save(pass1_ckpt, (ledger, normaliser))
    # Formats detected in worker processes were detected the same way here, from the first object.
    loader = RecordLoader(spill, ledger, normaliser)

    if resume and detect_ckpt.exists() and "pass1" in resumed:
        ledger, exact_groups, near_groups, eval_rows, detection, done = _load(detect_ckpt)
        loader.ledger = ledger
        seconds.update({k: 0.0 for k in done})
        resumed.append("dedup+detect")
    else:
        exact_groups, near_groups, eval_rows, detection = _dedup_and_detect(ledger, rules, options, loader, spill,
                                                                            normaliser, seconds)
        if resume:
            _save(detect_ckpt, (ledger, exact_groups, near_groups, eval_rows, detection,
                                [k for k in ("exact", "near", "against", "detect") if k in seconds]))
    review = None
    if store is not None:
        from curate.review.loop import apply_decisions

        review = apply_decisions(ledger, store)
    signals = _repeat_signals(ledger)
    verdicts = [ledger.verdict(row) for row in range(ledger.n)]
    counts = Counter(verdicts)
    if sum(counts.values()) != ledger.n:  # pragma: no cover - an invariant, checked on every scan
        raise CurateError(f"internal error: {sum(counts.values())} verdicts for {ledger.n} rows")
    return ScanResult(ledger, verdicts, spill, loader, rules, options, sources, normaliser, exact_groups,
                      near_groups, signals, eval_rows, {**dict(ledger.seconds), **seconds}, workdir, detection,
                      review=review, resumed=resumed)


def _save(path: Path, value: Any) -> None:
    """A stage checkpoint, written whole or not at all."""
    import pickle

    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


def _load(path: Path) -> Any:
    import pickle

    with open(path, "rb") as fh:
        return pickle.load(fh)  # noqa: S301 - our own checkpoint, in our own work folder


def _dedup_and_detect(ledger: Ledger, rules: Rules, options: ScanOptions, loader: RecordLoader, spill: Spill,
                      normaliser: Normaliser, seconds: dict[str, float]):
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
            ledger.add_reason(row, "dup:near", {"action": rules.near.action, **_kept(ledger, rep),
                                                "similarity": round(similarity, 4)})
    # The band hashes did their work (20 x 8 bytes a row): detection needs the memory more.
    ledger.bands, ledger.band_rows = [], []
    trim()
    for rep, rows in exact_groups:
        final = kept_of.get(rep, rep)
        for row in rows:
            if row != rep:
                ledger.add_reason(row, "dup:exact", {"action": rules.exact.action, **_kept(ledger, final)})
    seconds["near"] = clock() - t

    t = clock()
    eval_rows = _against(options.against, ledger, rules, loader) if options.against else 0
    seconds["against"] = clock() - t

    t = clock()
    detection = (_detect(ledger, rules, spill, normaliser, options) if rules.detect.enabled and rules.detect.detectors
                 else None)
    seconds["detect"] = clock() - t
    return exact_groups, near_groups, eval_rows, detection


def _detect(ledger: Ledger, rules: Rules, spill: Spill, normaliser: Normaliser, options: ScanOptions) -> dict[str, Any]:
    """Poison detection over every readable row, duplicates included. A failure here (a missing
    model, say) is reported in the summary and the scan's other verdicts still stand."""
    from curate.detect.stage import detect_records, model_spec

    def records() -> Iterator[Record]:
        for first, raws in spill.batches():
            for offset, raw in enumerate(raws):
                row = first + offset
                if row in ledger.quarantined:
                    continue
                try:
                    value = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    continue
                item = Item(ledger.source_names[ledger.source_id[row]], ledger.index[row], None, value=value)
                for rec in normaliser.records(item, row):
                    if isinstance(rec, Record):
                        yield rec
                    break

    try:
        folder = spill.path.parent / "vectors"
        folder.mkdir(exist_ok=True)
        result = detect_records(records(), rules.detect, folder=folder,
                                engine=(options.engine, options.address))
    except Exception as exc:  # noqa: BLE001 - reported, and the scan goes on without detection
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    for row, reasons in result.reasons.items():
        for reason, evidence in reasons.items():
            ledger.add_reason(row, reason, evidence)
    ledger.suspicion = result.suspicion
    ledger.triggers = result.triggers
    ledger.cluster = result.cluster
    ledger.neighbours = result.neighbours
    return {"status": "ok" if not result.failures else "partial", "units": result.units,
            "rows": len(result.suspicion), "flag_at": rules.detect.flag_at, "model": model_spec(rules.detect),
            "failures": result.failures, "seconds": result.seconds, "detectors": result.summary}


def _kept(ledger: Ledger, row: int) -> dict[str, Any]:
    where = ledger.where(row)
    return {"kept_row": row, "kept_source": where["source"], "kept_line": where["line"]}


class Report:
    """The outcome of a scan: counts, reasons, groups, and the output folder.

    `summary` is the content of `report.json`. `verdicts()` gives one row per input record as a
    polars frame; `clean()` the kept records, as the same kind of object that was scanned.
    """

    def __init__(self, summary: dict[str, Any], out: Path, failed: list[Threshold],
                 source: Any = None, tmp: tempfile.TemporaryDirectory | None = None):
        self.summary = summary
        self.out = out
        self.failed = failed
        self._source = source
        self._tmp = tmp

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.summary["counts"])

    @property
    def rows(self) -> int:
        return self.summary["rows"]

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def verdicts(self):
        """One row per input record. `evidence` and `triggers` stay JSON text: their shape varies
        by reason, and a frame needs one schema."""
        import polars as pl

        columns: dict[str, list] = {}
        with open(self.out / "verdicts.jsonl", "rb") as fh:
            for line in fh:
                verdict = orjson.loads(line)
                verdict["evidence"] = orjson.dumps(verdict["evidence"]).decode()
                verdict["triggers"] = orjson.dumps(verdict["triggers"]).decode()
                for key, value in verdict.items():
                    columns.setdefault(key, []).append(value)
        return pl.DataFrame(columns, strict=False)

    def clean_records(self) -> list[dict[str, Any]]:
        with open(self.out / "clean.jsonl", "rb") as fh:
            return [orjson.loads(line) for line in fh if line.strip()]

    def clean(self):
        rows = self.clean_records()
        module = type(self._source).__module__ or ""
        if module.startswith("polars"):
            import polars as pl

            return pl.DataFrame(rows) if rows else self._source.clear()
        if module.startswith("pandas"):
            import pandas as pd

            return pd.DataFrame(rows, columns=list(self._source.columns))
        if module.startswith("datasets"):
            import datasets

            return datasets.Dataset.from_list(rows, features=self._source.features)
        return rows

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in self.counts.items())
        return f"Report(rows={self.rows}, {counts}, out={str(self.out)!r})"


def scan(source: Any, rules: Rules | str | Path | list | None = None, out: str | Path | None = None, *,
         format: str | None = None, map: str | dict | None = None, input_type: str | None = None,
         against: list[str] | str | None = None, fail_on: list[str] | str | None = None,
         workers: int | str | None = None, progress: Callable[[int], None] | None = None,
         calibrate: bool = False, queue: str | os.PathLike | None = None, engine: str = "local",
         address: str | None = None) -> Report:
    """Scan `source` and write the outputs to `out` (a temporary folder when None).

    `source` is a path, folder, glob or list of them, a `datasets.Dataset`, a polars or pandas
    frame, or an iterable of dicts. `workers` > 1 (or "auto": one per core past 8 MB of files)
    runs the per-row stages in a process pool; as with any multiprocessing, the calling script
    then needs an `if __name__ == "__main__":` guard. The default, 1, runs in this process. `rules` is a `Rules`, or rule files that extend the defaults.
    With `calibrate`, curate's attack families are first planted into copies of the input and
    scanned, and report.json gets the recall to expect per family (about 16 extra scans).
    With `queue` (a review.db path or a postgresql:// URL), the queue's decisions apply to this
    scan's rows (`review:accepted`, `review:rejected`) and the rows still flagged are pushed to it.
    `engine="ray"` runs the per-row stages and embedding on a Ray cluster (`address`, else
    `$RAY_ADDRESS`, else a local one) and gives the same verdicts; see `curate.ray_engine`.
    Bad records never raise: they are quarantined and counted. Raises `UsageError` or
    `InputError` for bad arguments or a source that cannot be opened.
    """
    from curate.write import check_out_folder, write_outputs

    if not isinstance(rules, Rules):
        rules = load_rules(rules)
    options = ScanOptions(
        format=format, mapping=map if isinstance(map, Mapping) else parse_mapping(map),
        input_type=input_type, against=tuple([against] if isinstance(against, str) else against or ()),
        workers=(auto_workers(source) if workers == "auto" else workers) or 1, engine=engine, address=address)
    thresholds = parse_fail_on(fail_on)
    tmp = None
    if out is None:
        tmp = tempfile.TemporaryDirectory(prefix="curate-")
        out = Path(tmp.name) / "out"
    out = Path(out)
    check_out_folder(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    store = None
    if queue is not None:
        from curate.review.store import open_store

        store = open_store(queue)
    fingerprint = _fingerprint(source, rules, options)
    if fingerprint is None:
        workdir, resume = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent)), False
    else:
        # A stable work folder per (inputs, rules, options): a scan killed part-way leaves its
        # finished stages there, and the same scan run again starts after them.
        workdir, resume = out.parent / f".{out.name}.work-{fingerprint[:16]}", True
        for stale in out.parent.glob(f".{out.name}.work-*"):
            if stale != workdir:
                shutil.rmtree(stale, ignore_errors=True)
        workdir.mkdir(exist_ok=True)
    finished = False
    try:
        result = run_scan(source, rules, options, workdir, progress, store=store, resume=resume)
        if calibrate:
            result.calibration = _calibrate(source, rules)
        summary = write_outputs(result, out, thresholds, source_label=_label(source))
        if store is not None:
            _push(result, store, out, summary)
        finished = True
    finally:
        if finished or not resume:
            shutil.rmtree(workdir, ignore_errors=True)
        if store is not None:
            store.close()
    failed = [t for t in thresholds if t.holds(summary["counts"], summary["fail_on_counts"], summary["rows"])]
    return Report(summary, out, failed, source, tmp)


def _fingerprint(source: Any, rules: Rules, options: ScanOptions) -> str | None:
    """What a scan's work depends on, for sources on disk: each file's path, size and mtime, the
    rules, the options, the embedding model and curate's version. None for objects in memory."""
    import hashlib

    labels = _label(source)
    if labels[0].startswith("<") or labels == ["-"]:
        return None
    files = []
    for label in labels:
        path = Path(label)
        found = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for p in found:
            try:
                st = p.stat()
            except OSError:
                return None
            files.append((str(p.resolve()), st.st_size, st.st_mtime_ns))
    from curate.write import versions

    key = orjson.dumps({"files": files, "rules": rules.digest, "options": repr(options),
                        "model": os.environ.get("CURATE_MODEL", ""), "version": versions().get("curate")},
                       option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(key).hexdigest()


def _push(result: ScanResult, store: Any, out: Path, summary: dict[str, Any]) -> None:
    """Send the rows still flagged to the review queue, after the outputs are in place."""
    import hashlib
    import uuid

    from curate.review.loop import queue_items

    manifest = out / "manifest.json"
    scan = {"id": uuid.uuid4().hex, "folder": str(out.resolve()),
            "manifest_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest(),
            "rules_sha256": result.rules.digest, "rows": result.ledger.n,
            "applied": (result.review or {}).get("accepted", 0) + (result.review or {}).get("rejected", 0)}
    summary["review"] = {**(result.review or {}), **store.push(queue_items(result), scan)}


def _calibrate(source: Any, rules: Rules) -> dict[str, Any]:
    from curate.bench.calibrate import calibrate

    labels = _label(source)
    if labels[0].startswith("<"):
        return {"status": "skipped", "reason": "calibration plants into files; pass a path"}
    paths = [s.path for s in resolve_sources(labels) if getattr(s, "path", None)]
    return calibrate([str(p) for p in paths], rules)


def _label(source: Any) -> list[str]:
    if isinstance(source, (str, os.PathLike)):
        return [str(source)]
    if isinstance(source, (list, tuple)) and all(isinstance(s, (str, os.PathLike)) for s in source):
        return [str(s) for s in source]
    return [f"<{type(source).__module__}.{type(source).__name__}>"]


def auto_workers(source: Any) -> int:
    """A process pool pays off only past a few MB of input; objects in memory stay in process."""
    paths = [source] if isinstance(source, (str, os.PathLike)) else (
        source if isinstance(source, (list, tuple)) and all(isinstance(s, (str, os.PathLike)) for s in source) else [])
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
