"""The gate: what training may read, and the provenance of what it read.

- A scan folder whose manifest checks out: its `clean.jsonl`. If that scan fed a review queue,
  it is refused: rows rejected in review are only out of `curate apply`'s output.
- An `apply` folder whose manifest checks out: its `clean.jsonl`.
- A plain file, only with `--allow-unscanned`; the adapter's manifest then says so.

A refusal raises `GateError` (exit 2) with the reason and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from curate.errors import CurateError
from curate.record import Record
from curate.write import _sha256


class GateError(CurateError):
    exit_code = 2


@dataclass
class TrainingSet:
    records: list[Record]
    provenance: dict[str, Any]
    skipped: list[str] = field(default_factory=list)

    @property
    def preference(self) -> bool:
        return bool(self.records) and all(r.rejected is not None for r in self.records)


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
    records, skipped = [], []
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
    from curate.errors import ManifestError
    from curate.write import verify_manifest

    source = Path(source)
    if not source.exists():
        raise GateError(f"{source}: no such file or folder")
    if source.is_file():
        if not allow_unscanned:
            raise GateError(
                f"{source} is a plain file, not a curate output folder: scan it first "
                f"(`curate scan {source} --out scan`) and train on scan/, or pass --allow-unscanned "
                "to train on it as is (the adapter's manifest will record that)"
            )
        records, skipped = _normalise(source, None)
        return TrainingSet(
            records, {"unscanned": True, "data": {"path": str(source.resolve()), "sha256": _sha256(source)}}, skipped
        )
    try:
        manifest = verify_manifest(source)
    except ManifestError as exc:
        raise GateError(f"refusing to train: {exc}") from None
    kind = manifest.get("kind", "scan")
    clean = source / "clean.jsonl"
    provenance: dict[str, Any] = {
        "unscanned": False,
        "kind": kind,
        "manifest_sha256": _sha256(source / "manifest.json"),
        "data": {"path": str(clean.resolve()), "sha256": manifest["outputs"]["clean.jsonl"]["sha256"]},
        "rules_sha256": manifest["rules"]["sha256"],
    }
    if kind == "scan":
        review = manifest.get("review")
        if review:
            raise GateError(
                f"refusing to train on {source}: this scan fed the review queue {review.get('queue')}, "
                f"so rows rejected in review may still be in it. Run `curate apply {source} --queue "
                f"{review.get('queue')} --out final` and train on final/"
            )
        provenance["scan_report_sha256"] = manifest["outputs"]["report.json"]["sha256"]
        settings = manifest.get("settings")
    elif kind == "apply":
        scan_dir = Path(manifest["scan"]["folder"])
        provenance["scan_manifest_sha256"] = manifest["scan"]["manifest_sha256"]
        provenance["decisions_sha256"] = manifest["review"]["decisions_sha256"]
        provenance["pending_held_out"] = manifest["counts"]["pending"]
        settings = None
        if (scan_dir / "manifest.json").exists():
            scan_manifest = orjson.loads((scan_dir / "manifest.json").read_bytes())
            settings = scan_manifest.get("settings")
            if _sha256(scan_dir / "manifest.json") == manifest["scan"]["manifest_sha256"]:
                provenance["scan_report_sha256"] = scan_manifest["outputs"]["report.json"]["sha256"]
                provenance["scan_folder"] = str(scan_dir)
    else:
        raise GateError(f"refusing to train on {source}: a '{kind}' folder; train on a scan or apply output")
    records, skipped = _normalise(clean, settings)
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
