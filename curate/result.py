"""The scan's shared state: the options that shape it, the per-row ledger every stage writes its
findings into, and the result the writer turns into files.

In: nothing (a low module: every stage may import it). Out: `ScanOptions`, `Ledger`, `ScanResult`.
"""

from __future__ import annotations

import sys
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from curate.decide import verdict_of
from curate.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    from curate.batch import BatchResult
    from curate.normalise import Normaliser
    from curate.normalise.mapping import Mapping
    from curate.read.spill import RecordLoader, Spill
    from curate.ruleset import Rules


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
    formats: dict[str, set[str]] = field(default_factory=dict)
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
                self.add_reason(
                    base + local, reason, {"action": rules.action_of(reason), "score": round(score, 4), **detail}
                )
        for local, (reason, error) in result.quarantine.items():
            self.quarantined.add(base + local)
            self.add_reason(base + local, reason, {"action": "quarantine", "error": error})
        if result.bands is not None and len(result.band_rows):
            self.bands.append(result.bands)
            self.band_rows.append(result.band_rows + base)
        for name, (count, first) in result.filter_errors.items():
            entry = self.filter_errors.setdefault(name, [0, first])
            entry[0] += count
        for name, read in result.formats.items():
            self.formats.setdefault(name, set()).update(read)
        self.seconds.update(result.seconds)
        self.n += result.n

    def content_id(self, row: int) -> str | None:
        return None if row in self.quarantined else self.content_ids[16 * row : 16 * row + 16].hex()

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
        return {"row": row, "source": self.source_names[self.source_id[row]], "line": None if line < 0 else line}

    def verdict(self, row: int) -> str:
        """The verdict the reasons so far give: after the filters, the filter verdict; at the
        end, the final one."""
        reasons = self.reasons.get(row)
        return verdict_of([e["action"] for e in reasons.values()]) if reasons else "keep"


class Step(Protocol):
    """A step the caller composes into a scan (`--against`, a review queue's decisions): it marks
    rows in the ledger, and what it returns goes to the report under its `name`."""

    name: str

    def __call__(self, ledger: Ledger, loader: RecordLoader) -> Any: ...


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
    seconds: dict[str, float]
    workdir: Path
    detection: dict[str, Any] | None = None
    #: what each composed step returned, by name ("against": eval prompts read, "review": counts)
    steps: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    resumed: list[str] = field(default_factory=list)

    @property
    def eval_rows(self) -> int:
        return self.steps.get("against", 0)

    @property
    def review(self) -> dict[str, Any] | None:
        return self.steps.get("review")
