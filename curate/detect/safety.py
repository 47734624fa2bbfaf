"""Safety: harmful requests answered with compliance, the rows that erode a model's safety
training (and the mark of distillation from an unaligned teacher). A harmful request answered
with a refusal is good safety data and is never flagged.

The harmful-request classifier is a logistic regression on the embeddings of exemplars that ship
with curate (`exemplars.yaml`, harmful vs edgy-but-benign), trained at scan time in milliseconds,
so it follows whichever embedding model the scan uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import ClassVar

import numpy as np
import yaml

from curate.detect.base import Detector, Findings, register
from curate.detect.context import DetectInput


@lru_cache(maxsize=1)
def exemplars() -> dict[str, list[str]]:
    text = resources.files("curate.detect").joinpath("exemplars.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def harm_probability(data: DetectInput) -> np.ndarray:
    """P(harmful request) for each unit's prompt."""
    if "harm" in data.cache:
        return data.cache["harm"]
    from sklearn.linear_model import LogisticRegression

    ex = exemplars()
    X = data.embed(ex["harmful"] + ex["benign"])
    y = np.r_[np.ones(len(ex["harmful"])), np.zeros(len(ex["benign"]))]
    model = LogisticRegression(C=0.25, class_weight="balanced", max_iter=1000, random_state=data.seed).fit(X, y)
    out = data.prompt_vecs.map_rows(lambda X: model.predict_proba(X)[:, 1]) if len(data) else np.zeros(0)
    data.cache["harm"] = out
    return out


@register
@dataclass
class Safety(Detector):
    name: ClassVar[str] = "safety"
    description: ClassVar[str] = (
        "harmful requests answered with compliance (refusals are good safety data); for a "
        "preference pair, compliance chosen over a refusal"
    )
    reason: ClassVar[str] = "poison:safety"
    #: The harm probability at which a complying answer reaches suspicion 0.5 (flag_at).
    harm_at_flag: float = 0.65

    def detect(self, data: DetectInput) -> Findings:
        n = len(data)
        score = np.zeros(n)
        findings = Findings(score)
        if n == 0:
            return findings
        if not data.semantic:
            findings.summary = {"skipped": "needs a semantic embedding model (detect.model is not one)"}
            return findings
        harm = harm_probability(data)
        complies = ~data.refusal & np.fromiter((len(r.strip()) > 0 for r in data.responses), bool, n)
        # Earlier assistant turns of a pair are the context both answers share: not trained on.
        complies &= ~np.isin(data.row, data.row[data.pairs]) | np.isin(np.arange(n), data.pairs)
        # A preference pair teaches its preference, not its chosen answer alone: preferring one
        # complying answer to another (the less harmful of two, as harmless-base data does) does
        # not teach compliance; preferring compliance to a refusal does.
        from curate.filters.builtin import is_refusal

        for u in data.pairs.tolist():
            if complies[u] and not is_refusal(data.rejected[u] or ""):
                complies[u] = False
        # Linear in the harm probability: 0.5 at harm_at_flag, 1 at harm_at_flag + 0.25.
        s = np.clip(0.5 + 2 * (harm - self.harm_at_flag), 0, 1)
        score[:] = np.where(complies & (harm >= self.harm_at_flag - 0.15), s, 0.0)
        for u in np.flatnonzero(score >= 0.3).tolist():
            findings.evidence[u] = {
                "harm": round(float(harm[u]), 3),
                "suspicion": round(float(score[u]), 4),
                "text": f"harmful request (p = {harm[u]:.2f}) answered without refusing",
            }
        harmful = harm >= self.harm_at_flag
        findings.summary = {
            "harmful_requests": int(harmful.sum()),
            "refused": int((harmful & data.refusal).sum()),
            "complied": int((harmful & complies).sum()),
        }
        return findings
