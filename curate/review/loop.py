"""Where scans meet the queue: decisions applied to a scan's rows, and flagged rows pushed back.

A row is reviewable when a reason with action `flag` applies to it. A decision answers the flag
reasons its item had; on a later scan, a row with the same content id whose flag reasons are all
answered takes the decision instead of being flagged again:

- accept: its flag reasons become annotations and `review:accepted` (action keep) is added, so
  the row's verdict is what its other reasons say (keep, or drop for a duplicate);
- reject: `review:rejected` (action drop) is added.

A row with a flag reason the decision did not answer stays flagged, and the push reopens its item.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:  # pragma: no cover
    from curate.read.spill import RecordLoader
    from curate.result import Ledger, ScanResult
    from curate.review.store import Decision, Store

PREVIEW = 300


def flag_reasons(reasons: dict[str, dict[str, Any]]) -> list[str]:
    return [r for r, e in reasons.items() if e.get("action") == "flag"]


@dataclass
class QueueDecisions:
    """The scan step (see `curate.result.Step`): the queue's decisions, applied after detection."""

    store: Store
    name: str = "review"

    def __call__(self, ledger: Ledger, loader: RecordLoader) -> dict[str, Any]:
        return apply_decisions(ledger, self.store)


def push_flagged(result: ScanResult, store: Store, out: Path, summary: dict[str, Any]) -> None:
    """Send the rows still flagged to the review queue, after the outputs are in place."""
    manifest = out / "manifest.json"
    scan = {
        "id": uuid.uuid4().hex,
        "folder": str(out.resolve()),
        "manifest_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest(),
        "rules_sha256": result.rules.digest,
        "rows": result.ledger.n,
        "applied": (result.review or {}).get("accepted", 0) + (result.review or {}).get("rejected", 0),
    }
    summary["review"] = {**(result.review or {}), **store.push(queue_items(result), scan)}


def apply_decisions(ledger: Ledger, store: Store) -> dict[str, Any]:
    """Apply the queue's decisions to the ledger in place. Returns counts and a digest of the
    decisions that changed a verdict, for the manifest."""
    flagged = {row: flag_reasons(reasons) for row, reasons in ledger.reasons.items()}
    flagged = {row: f for row, f in flagged.items() if f}
    cids = {row: ledger.content_id(row) for row in flagged}
    decisions = store.decisions_for(c for c in cids.values() if c)
    counts = {"queue": store.label, "accepted": 0, "rejected": 0, "reopened": 0}
    used: dict[int, Decision] = {}
    for row, reasons in flagged.items():
        decision = decisions.get(cids[row])
        if decision is None:
            continue
        if set(reasons) - set(decision.reasons):
            counts["reopened"] += 1
            continue
        entries = ledger.reasons[row]
        for reason in reasons:
            entries[reason] = {**entries[reason], "action": "annotate", "reviewed": decision.decision}
        name = "review:accepted" if decision.decision == "accept" else "review:rejected"
        ledger.add_reason(
            row,
            name,
            {
                "action": "keep" if decision.decision == "accept" else "drop",
                "decision_id": decision.id,
                "reviewer": decision.reviewer,
                "note": decision.note,
                "decided_at": decision.decided_at,
                "answered": list(decision.reasons),
            },
        )
        counts["accepted" if decision.decision == "accept" else "rejected"] += 1
        used[decision.id] = decision
    counts["decisions_sha256"] = decisions_digest(used.values())
    return counts


def decisions_digest(decisions) -> str:
    canonical = sorted((d.content_id, d.decision, list(d.reasons), d.id) for d in decisions)
    return hashlib.sha256(orjson.dumps(canonical)).hexdigest()


def _preview(text: str) -> str:
    return text[:PREVIEW] + ("…" if len(text) > PREVIEW else "")


def queue_items(result: ScanResult) -> list[dict[str, Any]]:
    """One item per distinct content id among the rows the scan flagged."""
    ledger = result.ledger
    items: dict[str, dict[str, Any]] = {}
    for row, verdict in enumerate(result.verdicts):
        if verdict != "flag":
            continue
        cid = ledger.content_id(row)
        if cid is None:
            continue
        reasons = ledger.reasons.get(row, {})
        flags = flag_reasons(reasons)
        found = items.get(cid)
        if found is not None:  # an exact copy: one item, every reason
            found["reasons"] = sorted(set(found["reasons"]) | set(flags))
            continue
        record = result.loader.record(row)
        where = ledger.where(row)
        try:
            raw = orjson.loads(result.spill.raw(row))
        except orjson.JSONDecodeError:
            raw = None
        neighbours = []
        for other, similarity in ledger.neighbours.get(row, []):
            rec = result.loader.record(other)
            if rec is None:
                continue
            neighbours.append(
                {
                    **ledger.where(other),
                    "similarity": similarity,
                    "prompt": _preview(rec.last_user or rec.prompt),
                    "response": _preview(rec.response),
                }
            )
        items[cid] = {
            "content_id": cid,
            "reasons": sorted(flags),
            "suspicion": ledger.suspicion.get(row),
            "triggers": ledger.triggers.get(row, []),
            "cluster": ledger.cluster.get(row),
            "source": where["source"],
            "line": where["line"],
            "row": row,
            "prompt": record.prompt if record else "",
            "response": record.response if record else "",
            "turns": [{"role": t.role, "content": t.content} for t in record.turns] if record else [],
            "record": raw,
            "evidence": reasons,
            "neighbours": neighbours,
        }
    return list(items.values())
