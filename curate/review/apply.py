"""`curate apply`: a scan's verdicts plus the queue's decisions, as the final clean set.

The scan folder must match its manifest. Each flagged row goes by the decision in force for its
content id, when that decision answered all of the row's flag reasons:

- accepted: kept, unless another of its reasons drops it (a duplicate stays dropped);
- rejected: dropped;
- no decision, or one that missed a reason: pending. Pending rows are held out of clean.jsonl and
  listed in pending.jsonl, and the command exits 1 unless --allow-pending.

Decisions made after the scan count: a row accepted at scan time and rejected since is dropped.
The output folder is staged and renamed into place; its manifest, written last, hashes the scan's
manifest, the rules and the decisions applied, so training can prove what it trained on.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from curate.decide import verdict_of
from curate.errors import ManifestError
from curate.review.loop import decisions_digest
from curate.review.store import Store

APPLY_OUTPUTS = ("clean.jsonl", "decisions.jsonl", "pending.jsonl")


def _reviewable(reasons: dict[str, dict[str, Any]]) -> list[str]:
    """The flag reasons of a row, including those a decision already answered at scan time."""
    return [r for r, e in reasons.items() if e.get("action") == "flag" or "reviewed" in e]


def _lines(path: Path):
    with open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                yield line.rstrip(b"\n")


def apply_decisions_to_scan(scan_dir: str | Path, store: Store, out: str | Path) -> dict[str, Any]:
    from curate.ruleset import rules_from_document
    from curate.write import (
        _replace,
        _sha256,
        check_out_folder,
        redactor,
        verify_manifest,
        versions,
    )

    scan_dir, out = Path(scan_dir), Path(out)
    manifest = verify_manifest(scan_dir)
    if manifest.get("kind", "scan") != "scan":
        raise ManifestError(f"{scan_dir}: a {manifest.get('kind')} folder, not a scan; apply takes a scan's output")
    if out.resolve() == scan_dir.resolve():
        raise ManifestError("--out must differ from the scan folder: apply never rewrites a scan")
    check_out_folder(out)
    rules = rules_from_document(manifest["rules"]["document"], manifest["rules"]["files"])
    redact = redactor(rules)

    # Pass 1: the content ids of reviewable rows, to fetch their decisions in one go.
    wanted = set()
    for line in _lines(scan_dir / "verdicts.jsonl"):
        v = orjson.loads(line)
        if v["content_id"] and _reviewable(v["evidence"]):
            wanted.add(v["content_id"])
    decisions = store.decisions_for(wanted)

    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    counts: Counter = Counter()
    used = {}
    clean_lines = _lines(scan_dir / "clean.jsonl")
    flagged_lines = _lines(scan_dir / "flagged.jsonl")
    try:
        with (
            open(stage / "clean.jsonl", "wb") as clean,
            open(stage / "decisions.jsonl", "wb") as log,
            open(stage / "pending.jsonl", "wb") as pending,
        ):
            for line in _lines(scan_dir / "verdicts.jsonl"):
                v = orjson.loads(line)
                verdict, reasons = v["verdict"], v["evidence"]
                if verdict == "keep":
                    raw = next(clean_lines)  # already redacted by the scan
                elif verdict == "flag":
                    flagged = orjson.loads(next(flagged_lines))
                    raw = redact(orjson.dumps(flagged["record"]), reasons)
                else:
                    raw = None
                counts["rows"] += 1
                flags = _reviewable(reasons) if v["content_id"] else []
                if not flags:
                    counts[verdict] += 1
                    if verdict == "keep":
                        clean.write(raw + b"\n")
                    continue
                decision = decisions.get(v["content_id"])
                where = {"row": v["row"], "source": v["source"], "line": v["line"], "content_id": v["content_id"]}
                if decision is None or set(flags) - set(decision.reasons):
                    counts["pending"] += 1
                    missed = sorted(set(flags) - set(decision.reasons)) if decision else flags
                    pending.write(
                        orjson.dumps(
                            {**where, "reasons": missed, "record": orjson.loads(raw) if raw is not None else None}
                        )
                        + b"\n"
                    )
                    continue
                used[decision.id] = decision
                entry = {
                    **where,
                    "decision": decision.decision,
                    "decision_id": decision.id,
                    "reviewer": decision.reviewer,
                    "decided_at": decision.decided_at,
                    "reasons": flags,
                }
                if decision.decision == "reject":
                    counts["rejected"] += 1
                    log.write(orjson.dumps({**entry, "outcome": "drop"}) + b"\n")
                    continue
                others = [e["action"] for r, e in reasons.items() if r not in flags and not r.startswith("review:")]
                base = verdict_of(others)
                if base != "keep":
                    counts["accepted_but_" + base] += 1
                    log.write(orjson.dumps({**entry, "outcome": base}) + b"\n")
                elif raw is None:
                    # Rejected at scan time and accepted since: the scan kept no copy of a dropped row.
                    counts["pending"] += 1
                    counts["needs_rescan"] += 1
                    pending.write(
                        orjson.dumps(
                            {
                                **where,
                                "reasons": flags,
                                "record": None,
                                "why": "accepted after the scan dropped it; rescan with --queue",
                            }
                        )
                        + b"\n"
                    )
                else:
                    counts["accepted"] += 1
                    clean.write(raw + b"\n")
                    log.write(orjson.dumps({**entry, "outcome": "keep"}) + b"\n")
        scan_sha = hashlib.sha256((scan_dir / "manifest.json").read_bytes()).hexdigest()
        kept = counts["keep"] + counts["accepted"]
        result = {
            "schema_version": 1,
            "tool": "curate",
            "kind": "apply",
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "scan": {
                "folder": str(scan_dir.resolve()),
                "manifest_sha256": scan_sha,
                "inputs": manifest.get("inputs", []),
            },
            "rules": {"files": manifest["rules"]["files"], "sha256": manifest["rules"]["sha256"]},
            "review": {
                "queue": store.label,
                "decisions": len(used),
                "decisions_sha256": decisions_digest(used.values()),
            },
            "rows": counts["rows"],
            "counts": {
                "clean": kept,
                "kept": counts["keep"],
                "accepted": counts["accepted"],
                "rejected": counts["rejected"],
                "pending": counts["pending"],
                "needs_rescan": counts["needs_rescan"],
                "dropped": counts["drop"] + sum(c for k, c in counts.items() if k.startswith("accepted_but_")),
                "quarantined": counts["quarantine"],
            },
            "versions": versions(),
            "outputs": {
                name: {"bytes": (stage / name).stat().st_size, "sha256": _sha256(stage / name)}
                for name in APPLY_OUTPUTS
            },
        }
        c = result["counts"]
        if c["clean"] + c["rejected"] + c["pending"] + c["dropped"] + c["quarantined"] != counts["rows"]:
            raise ManifestError(f"internal error: apply accounted for {c} of {counts['rows']} rows")  # pragma: no cover
        (stage / "manifest.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
        _replace(stage, out)
    except BaseException:
        import shutil

        shutil.rmtree(stage, ignore_errors=True)
        raise
    return result
