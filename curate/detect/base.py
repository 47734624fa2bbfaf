"""The detector contract: a registered unit with a name, a per-row score and readable evidence.

Like cleanlab's issue managers, each detector is a small class with one method; like NeMo
Curator's filters, it scores and leaves the decision to the rules (`detect.flag_at`). Scores are
already calibrated to [0, 1], so they combine into one `suspicion` by taking the maximum: the
strongest single line of evidence decides, and the evidence says which one it was.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from curate.detect.context import DetectInput

DETECTORS: dict[str, type[Detector]] = {}


def register(cls: type[Detector]) -> type[Detector]:
    DETECTORS[cls.name] = cls
    return cls


@dataclass
class Findings:
    """What one detector found, per unit (an assistant turn; `DetectInput.row` maps it to a row).

    `score` is calibrated suspicion in [0, 1]. `evidence` holds a readable entry for every unit
    worth showing; `triggers` the trigger strings a unit carries; `summary` goes in the report."""

    score: np.ndarray
    evidence: dict[int, dict[str, Any]] = field(default_factory=dict)
    triggers: dict[int, list[str]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    #: Reasons outside the poison namespace (e.g. `dup:semantic`), unit -> reason -> evidence.
    reasons: dict[int, dict[str, dict[str, Any]]] = field(default_factory=dict)


@dataclass
class Detector:
    name: ClassVar[str]
    description: ClassVar[str]
    #: The reason a unit above `flag_at` gets: poison:<name>.
    reason: ClassVar[str]
    #: Whether this detector's score counts toward suspicion (outliers only annotate).
    poison: ClassVar[bool] = True

    def detect(self, data: DetectInput) -> Findings:  # pragma: no cover - interface
        raise NotImplementedError

    @classmethod
    def params(cls) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                out[f.name] = f.default_factory()  # type: ignore[misc]
        return out


def squash_score(z: np.ndarray | float, half: float) -> np.ndarray:
    """Map evidence strength z >= 0 onto [0, 1): 0 at z = 0, 0.5 at z = half, toward 1 beyond."""
    z = np.maximum(np.asarray(z, dtype=np.float64), 0.0)
    return z / (z + half)
