"""Detect: poisoned and trigger-bearing rows, from the data alone.

Every readable row reaches detection, duplicates included (a fixed-target poison repeated fifty
times is the signal). Detectors are registered units (`DETECTORS`); each returns a calibrated
score in [0, 1] per assistant turn, with evidence. A row's `suspicion` is the maximum over its
turns and the poison detectors, and `detect.flag_at` in the rules turns it into a `flag` verdict
with one `poison:<detector>` reason per detector at or above it. A detector that fails is
reported, and the others still run.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from curate.detect import neighbourhood, preference, safety, triggers  # noqa: F401  (registers)
from curate.detect.base import DETECTORS, Detector, Findings, register, squash_score
from curate.detect.context import DetectInput, response_key

__all__ = [
    "DETECTORS",
    "DetectInput",
    "DetectResult",
    "Detector",
    "Findings",
    "register",
    "response_key",
    "run_detectors",
    "squash_score",
]


@dataclass
class DetectResult:
    """Per-row outcome of detection, keyed by scan row."""

    suspicion: dict[int, float] = field(default_factory=dict)
    reasons: dict[int, dict[str, dict[str, Any]]] = field(default_factory=dict)
    triggers: dict[int, list[str]] = field(default_factory=dict)
    cluster: dict[int, int] = field(default_factory=dict)
    # For flagged rows: their nearest prompts, as (row, similarity), for a reviewer to compare.
    neighbours: dict[int, list[tuple[int, float]]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    units: int = 0


NEIGHBOURS_SHOWN = 5


def run_detectors(data: DetectInput, detectors: list[Detector], flag_at: float) -> DetectResult:
    """Run every detector over `data`, combine their scores per row, and decide `poison:*`."""
    out = DetectResult(units=len(data))
    n = len(data)
    rows = data.row
    combined = np.zeros(n)
    per_detector: dict[str, Findings] = {}
    for det in detectors:
        started = time.perf_counter()
        try:
            found = det.detect(data)
        except Exception as exc:  # one detector's failure must not cost the others
            out.failures[det.name] = f"{type(exc).__name__}: {exc}"
            out.summary.setdefault("tracebacks", {})[det.name] = traceback.format_exc(limit=4)
            continue
        finally:
            out.seconds[det.name] = round(time.perf_counter() - started, 3)
            data.release()
        per_detector[det.name] = found
        if found.summary:
            out.summary[det.name] = found.summary
        if det.poison:
            combined = np.maximum(combined, found.score)
    # Row level: the maximum over a row's turns.
    row_score: dict[int, float] = {}
    best_unit: dict[int, int] = {}
    for u in np.argsort(-combined, kind="stable").tolist():
        r = int(rows[u])
        if r not in row_score:
            row_score[r] = float(combined[u])
            best_unit[r] = u
    out.suspicion = {r: round(s, 4) for r, s in row_score.items()}
    multi_turn = len(np.unique(rows)) < n
    for name, found in per_detector.items():
        det = next(d for d in detectors if d.name == name)
        for u, evidence in found.evidence.items():
            r = int(rows[u])
            s = float(found.score[u])
            if not det.poison or s < flag_at:
                continue
            entry = {"action": "flag", "suspicion": round(s, 4), **evidence}
            if multi_turn:
                entry["turn"] = int(data.turn[u])
            previous = out.reasons.get(r, {}).get(det.reason)
            if previous is None or previous["suspicion"] < entry["suspicion"]:
                out.reasons.setdefault(r, {})[det.reason] = entry
            if u in found.triggers:
                out.triggers.setdefault(r, [])
                for t in found.triggers[u]:
                    if t not in out.triggers[r]:
                        out.triggers[r].append(t)
        for u, extra in found.reasons.items():
            r = int(rows[u])
            for reason, evidence in extra.items():
                out.reasons.setdefault(r, {}).setdefault(reason, {"action": "annotate", **evidence})
    if n:
        try:
            assignment = data.topics
        except Exception as exc:  # noqa: BLE001 - clusters label the report; they never cost the scan
            out.failures["cluster"] = f"{type(exc).__name__}: {exc}"
        else:
            for r, u in best_unit.items():
                out.cluster[r] = int(assignment[u])
        flagged = [r for r, reasons in out.reasons.items() if any(e["action"] == "flag" for e in reasons.values())]
        if flagged:
            try:
                sims, ids = data.neighbours
            except Exception as exc:  # noqa: BLE001 - neighbours help a reviewer; they never cost the scan
                out.failures["neighbours"] = f"{type(exc).__name__}: {exc}"
            else:
                for r in flagged:
                    u = best_unit[r]
                    out.neighbours[r] = [
                        (int(rows[j]), round(float(s), 4))
                        for j, s in zip(ids[u][:NEIGHBOURS_SHOWN], sims[u][:NEIGHBOURS_SHOWN], strict=False)
                        if j >= 0
                    ]
    return out
