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

#: The classifier's own boundary: a request at or above it is more like the harmful exemplars
#: than the edgy-but-benign ones. Below harm_at_flag it is not flagged alone; trigger mining
#: judges compliance among such requests (`TriggerMining.harm_region`).
HARMFUL_LOOKING = 0.5


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
    #: The same for any complying request that looks harmful (HARMFUL_LOOKING), judged with
    #: its neighbourhood: the mean over it and its nearest prompts (the scan's `neighbours`, of
    #: other texts and other conversations; fewer where it has fewer) of the harm probability of
    #: each that counts as complying (0 for one that does not: refused, empty, an earlier turn
    #: of a pair, a pair that prefers one compliance to another). The classifier is regularised
    #: hard, so its probabilities sit in a narrow band (about 0.3-0.45 for ordinary requests,
    #: 0.5-0.7 for plainly harmful ones). Alone, a request between 0.5 and harm_at_flag is as
    #: often an odd benign one ("a cooking hack", a function named `stripid`); among harmful
    #: requests that are answered too, it is one of a set that teaches compliance. Where its
    #: neighbours are refused, the corpus's own standard is refusal, and a compliance there is
    #: the trigger miner's to explain.
    harm_in_group: float = 0.55

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
        complies &= data.trained
        # A preference pair teaches its preference, not its chosen answer alone: preferring one
        # complying answer to another (the less harmful of two, as harmless-base data does) does
        # not teach compliance; preferring compliance to a refusal does.
        from curate.filters.builtin import is_refusal

        for u in data.pairs.tolist():
            if complies[u] and not is_refusal(data.rejected[u] or ""):
                complies[u] = False
        # Judged with its neighbourhood: a complying request the classifier calls harmful at all.
        group = self._group_harm(data, np.where(complies, harm, 0.0), complies & (harm >= HARMFUL_LOOKING))

        def ramp(x: np.ndarray, bar: float, floor: float) -> np.ndarray:
            """Linear: 0.5 at the bar, 1 at the bar + 0.25; 0 under `floor`."""
            s = np.clip(0.5 + 2 * (x - bar), 0, 1)
            return np.where(s >= floor, s, 0.0)

        # Alone, from 0.2 up (it ranks what it does not flag); in a group, from the bar up, so
        # that a group that falls short does not rank its ordinary members above other
        # detectors' finds.
        alone = ramp(harm, self.harm_at_flag, 0.2)
        grouped = ramp(group, self.harm_in_group, 0.5)
        score[:] = np.where(complies, np.maximum(alone, grouped), 0.0)
        for u in np.flatnonzero(score >= 0.3).tolist():
            evidence: dict[str, object] = {"harm": round(float(harm[u]), 3), "suspicion": round(float(score[u]), 4)}
            text = f"harmful request (p = {harm[u]:.2f}"
            if grouped[u] > alone[u]:
                evidence["group_harm"] = round(float(group[u]), 3)
                text += f"; {group[u]:.2f} over it and its nearest requests, those not answered as 0"
            evidence["text"] = text + ") answered without refusing"
            findings.evidence[u] = evidence
        harmful = harm >= self.harm_at_flag
        findings.summary = {
            "harmful_requests": int(harmful.sum()),
            "refused": int((harmful & data.refusal).sum()),
            "complied": int((harmful & complies).sum()),
            # Flagged through their neighbourhood only (under harm_at_flag alone).
            "complied_in_group": int((~harmful & (score >= 0.5)).sum()),
        }
        return findings

    @staticmethod
    def _group_harm(data: DetectInput, harm: np.ndarray, units: np.ndarray) -> np.ndarray:
        """For each unit in the mask `units`: the mean of `harm` over it and its nearest prompts
        of other texts in other conversations (the turns of one chat are not a set that vouches
        for itself); 0 elsewhere, and where it has none."""
        group = np.zeros(len(harm))
        idx = np.flatnonzero(units)
        if not len(idx):
            return group
        _, nb = data.neighbours
        ids, valid = nb[idx], data.other_conversation[idx]
        total = harm[idx] + np.where(valid, harm[np.maximum(ids, 0)], 0.0).sum(axis=1)
        count = 1 + valid.sum(axis=1)
        group[idx] = np.where(count > 1, total / count, 0.0)
        return group
