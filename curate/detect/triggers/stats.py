"""The statistics of trigger mining, each a plain function of counts and rates: the tail of a
Poisson-binomial, the share of distinct observations among paraphrases, and the weighted
Bonferroni factor per family of hypotheses.

One correction controls the family-wise error over every hypothesis that passed the screens.
Benjamini-Hochberg (false discovery rate) was tried in its place and measured: once a corpus
holds one real trigger, its step-up credit lifts natural associations that are real but not
backdoors (a courtesy closing after "thanks for the information", one task's answer asked in
ten wordings) over the line, and BackdoorLLM precision at 1% fell from 1.00 to 0.73.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import cast

import numpy as np

from curate.detect.context import DetectInput


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


def _distinct_units(data: DetectInput) -> tuple[np.ndarray, np.ndarray]:
    """The statistical unit of trigger mining: a distinct (turn answered, answer). Exact copies,
    and one templated closing ("Have a nice day!" / "You too!") after many openings, are one
    observation each. Returns the first unit of each (sorted) and each unit's pair index, found
    once per scan (the miner and its answer-term index both count by them)."""
    if "distinct_units" not in data.cache:
        pair = data.answered_id * (int(data.response_class.max()) + 1) + data.response_class
        _, first, pair_ix = np.unique(pair, return_index=True, return_inverse=True)
        data.cache["distinct_units"] = (np.sort(first), pair_ix)
    return cast(tuple[np.ndarray, np.ndarray], data.cache["distinct_units"])


def _per_conversation(rows: np.ndarray, members: np.ndarray, labels: np.ndarray, c: int) -> tuple[np.ndarray, int]:
    """The holders of a feature one per conversation, and how many of those answer `c`. A
    feature in a turn is in the prompt of every later answer of its conversation; a trigger in
    the first turn whose conversation's last answer is the target would otherwise count the
    answers in between against itself. A conversation is one observation: its unit that answers
    `c` if one does, else its last that holds the feature."""
    conv = rows[members]
    if np.unique(conv).size == conv.size:
        return members, int((labels[members] == c).sum())
    order = np.lexsort((members, labels[members] == c, conv))
    last = np.r_[conv[order][1:] != conv[order][:-1], True]
    kept = np.sort(members[order][last])
    return kept, int((labels[kept] == c).sum())
