"""The statistics of trigger mining, each a plain function of counts and rates: the tail of a
Poisson-binomial, the share of distinct observations among paraphrases, the weighted Bonferroni
factor per family of hypotheses and the Benjamini–Hochberg step-up over the findings.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np


def _distinct_share(vectors: np.ndarray, threshold: float) -> float:
    """The share of vectors left after merging those within `threshold` cosine of an earlier one."""
    if len(vectors) < 2:
        return 1.0
    gram = vectors @ vectors.T
    taken = np.zeros(len(vectors), bool)
    groups = 0
    for i in range(len(vectors)):
        if not taken[i]:
            groups += 1
            taken |= gram[i] >= threshold
    return groups / len(vectors)


def _pb_log10_tail(p: np.ndarray, x: int) -> float:
    """log10 of a Chernoff bound on P(X >= x) for X a sum of independent Bernoulli(p_i): the
    Poisson-binomial, whose spread is far below a binomial's when the p_i differ (a trigger
    among prompts that are normally answered and prompts that are normally refused). Exact
    (the product of the p_i) when x is every unit."""
    p = np.clip(np.asarray(p, np.float64), 1e-12, 1.0)
    if x <= p.sum():
        return 0.0
    t = np.geomspace(1e-3, 60.0, 128)[:, None]
    log_mgf = np.log1p(p[None, :] * np.expm1(t)).sum(axis=1)
    return float(np.min(log_mgf - t[:, 0] * x) / math.log(10))


def log10_factors(tests: Counter) -> dict[str, float]:
    """log10 of the Bonferroni factor of each family of hypotheses: a weighted Bonferroni
    that gives each family present an equal share of alpha, its hypotheses equal shares of
    that. Behaviour (does an answer comply where comparable requests are refused) is
    screened for nearly every feature of a corpus that mostly complies, most of it out of
    reach of significance; content (the same answer, alike answers, a passage) is a few
    hundred hypotheses. Pooled, the first would set the factor for the second, and more so
    the bigger the corpus; split, it costs content a factor of two at most. The family-wise
    error stays at most alpha (the weights are fixed before looking)."""
    present = [f for f in ("behaviour", "content") if tests[f]]
    return {f: math.log10(max(1, len(present) * tests[f])) for f in ("behaviour", "content")}


def step_up(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Benjamini–Hochberg over every hypothesis that passed the screens, weighted by family
    (see `log10_factors`): each finding's z (its family's Bonferroni-corrected -log10 p)
    gains log10 of its rank, stepped up from the weakest; those left at or below 0 (the
    false discovery rate's line at alpha) are dropped. Hypotheses that were not found count
    in the total and never rank ahead. The credit is kept (`credit`) for a finding scored
    again later. One correction, not one per stage: the false discovery rate is what a
    reviewer pays for, and a corpus with many planted rows should not make each of them
    harder to find."""
    ordered = sorted(found, key=lambda f: -f["z"])
    best = -math.inf
    for j in range(len(ordered), 0, -1):
        f = ordered[j - 1]
        best = max(best, f["z"] + math.log10(j))
        f["credit"] = best - f["z"]
        f["z"] = best
    return [f for f in ordered if f["z"] > 0]
