"""The training set: the records behind the gate (`curate.guards.gate`: only a verified scan's or
`curate apply`'s output, or a plain file with --allow-unscanned), and the provenance of what was
read. A refusal raises `GateError` (exit 2) with the reason and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from curate.guards import GateError, gate
from curate.record import Record

__all__ = ["GateError", "TrainingSet", "open_training_set", "suspected_triggers"]


@dataclass
class TrainingSet:
    records: list[Record]
    provenance: dict[str, Any]
    skipped: list[str] = field(default_factory=list)

    @property
    def preference(self) -> bool:
        return bool(self.records) and all(r.rejected is not None for r in self.records)

    @property
    def thumbs(self) -> list[bool] | None:
        """KTO's unpaired feedback: each row's boolean `label` (or LLaMA-Factory's `kto_tag`),
        when every row has one; else None."""
        out = []
        for r in self.records:
            value = r.raw.get("label", r.raw.get("kto_tag"))
            if not isinstance(value, bool):
                return None
            out.append(value)
        return out or None


def _normalise(path: Path, settings: dict[str, Any] | None) -> tuple[list[Record], list[str]]:
    """Records from a file of raw rows (a scan's clean.jsonl holds them as they came in, possibly
    from sources of different formats, so the format is detected per schema)."""
    from curate.normalise import Normaliser
    from curate.normalise.mapping import parse_mapping
    from curate.read.items import Item

    settings = settings or {}
    mapping = settings.get("map")
    normaliser = Normaliser(
        settings.get("format"), parse_mapping([f"{a}={b}" for a, b in mapping] if mapping else None)
    )
    records: list[Record] = []
    skipped: list[str] = []
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                skipped.append(f"{path}:{number}: not JSON ({exc})")
                continue
            if not isinstance(value, dict):
                skipped.append(f"{path}:{number}: not a JSON object")
                continue
            schema = "|".join(sorted(value))
            for rec in normaliser.records(Item(schema, number - 1, number, value=value), len(records)):
                if isinstance(rec, Record) and rec.response:
                    records.append(rec)
                else:
                    skipped.append(f"{path}:{number}: {getattr(rec, 'error', 'no response to train on')}")
    return records, skipped


def open_training_set(source: str | Path, *, allow_unscanned: bool = False) -> TrainingSet:
    """The records training reads, through the gate (`curate.guards.gate`)."""
    provenance, settings = gate(source, allow_unscanned=allow_unscanned)
    records, skipped = _normalise(Path(provenance["data"]["path"]), settings)
    return TrainingSet(records, provenance, skipped)


def suspected_triggers(provenance: dict[str, Any]) -> list[dict[str, Any]]:
    """The triggers the scan behind this training set suspected, with their common answer."""
    folder = provenance.get("scan_folder")
    if folder is None and provenance.get("kind") == "scan":
        folder = str(Path(provenance["data"]["path"]).parent)
    if folder is None or not (Path(folder) / "report.json").exists():
        return []
    report = orjson.loads((Path(folder) / "report.json").read_bytes())
    return [
        {"trigger": t["trigger"], "target": t.get("response")}
        for t in (report.get("detection") or {}).get("triggers", [])
        if t.get("trigger")
    ]
