"""The varied-target test of trigger mining: one intent in many wordings. A feature's holders
answer far more alike than the answers to their comparable prompts, though their prompts are not
alike; tested with a paired one-sided t-test over holders.

`VariedTargets` is mixed into the miner: it reads the miner's parameters.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from curate.detect.context import DetectInput
from curate.detect.triggers.stats import _distinct_share, _per_conversation
from curate.embed.vectors import mean_pairwise_cos


class VariedTargets:
    min_rows: int
    deterministic: float
    alike_min: float
    alike_max_rows: int
    paraphrase: float
    _covers: Callable[..., bool]  # the miner's: whether a feature is most of the turns its holders answer

    def _alike_screen(self, data: DetectInput, feature: int, topic: int, members: np.ndarray) -> bool:
        """Whether a candidate's holders' answers are alike at all (mean cosine >= alike_min)."""
        m = members.size
        # Within one topic answers are alike anyway: only plain features are tested.
        if m < self.min_rows or m > self.alike_max_rows or topic >= 0:
            return False
        return mean_pairwise_cos(data.response_vecs[members]) >= self.alike_min

    def _alike(
        self,
        data: DetectInput,
        cand: list[tuple[int, int, np.ndarray]],
        nb: np.ndarray,
        log10_tests: float,
        lengths: np.ndarray,
    ) -> list[dict[str, Any]]:
        """A varied target: the holders' answers are far more alike than the answers to their
        comparable prompts, though their prompts are not. Each holder's mean similarity to the
        other holders' answers is set against the same for its nearest comparable prompt's
        answer; the paired differences give a one-sided t-test."""
        R = data.response_vecs
        found = []
        for feature, order_n, members in cand:
            m = members.size
            if self._covers(feature, order_n, members, lengths, data, topic=None):  # plain features only
                continue
            total = R[members].sum(axis=0)
            a = (R[members] @ total - 1.0) / (m - 1)
            if a.mean() < self.alike_min:
                continue
            neigh = nb[members]
            valid = (neigh >= 0) & ~np.isin(neigh, members)
            first = np.argmax(valid, axis=1)
            has = valid[np.arange(m), first]
            if has.sum() < self.min_rows:
                continue
            B = R[neigh[np.arange(m), first]]
            b = (B @ B[has].sum(axis=0) - np.einsum("nd,nd->n", B, B) * has) / max(1, int(has.sum()) - 1)
            d = (a - b)[has]
            eff = _distinct_share(data.answered_vecs[members], self.paraphrase)
            n_eff = max(2.0, d.size * eff)
            t = float(d.mean() / (d.std(ddof=1) / math.sqrt(n_eff) + 1e-3))
            if t <= 0 or d.mean() < 0.1:
                continue
            log10_p = math.log10(max(0.5 * math.erfc(t / math.sqrt(2)), 1e-300))
            z = -(log10_p + log10_tests)
            if z <= 0:
                continue
            answering = members[has][(a[has] >= self.alike_min) & (d >= 0.1)]
            if answering.size < self.min_rows:
                continue
            # Varied wording of one intent, in sentences: one answer given by most is the `answer`
            # view's (a few wordings each repeated are not), and one-word labels ("Positive",
            # "Negative") embed alike whatever they say.
            keys = [data.response_keys[u] for u in answering.tolist()]
            if Counter(keys).most_common(1)[0][1] * 2 >= len(keys) or np.median([len(k.split()) for k in keys]) < 3:
                continue
            # The holders that give the target in a less typical wording (alike to the core of
            # those answers, though less to every other holder's): at least alike_min to the
            # core's centroid, and closer than all but 5% of the comparable prompts' answers.
            # Then nearly every holder must give it, one per conversation (earlier turns of a
            # conversation the trigger opens are holders too, with their own answers): a backdoor
            # is near-deterministic, as for a fixed answer. Answers about what a word names
            # ("math" in "What does `math.log` do?") are alike for most of its holders, not all.
            centre = R[answering].sum(axis=0)
            centre /= np.linalg.norm(centre) + 1e-12
            cut = max(float(np.quantile(B[has] @ centre, 0.95)), self.alike_min)
            answering = np.union1d(answering, members[R[members] @ centre > cut])
            gives = np.zeros(len(data), np.int64)
            gives[answering] = 1
            where, x = _per_conversation(data.row, members, gives, 1)
            if x < self.deterministic * where.size or np.unique(data.answered_id[answering]).size * eff < self.min_rows:
                continue
            # A target makes answers to unrelated turns alike. Answers alike because the turns
            # they answer are ("What does `numpy.char.find` do?", "... `numpy.char.join` ...",
            # each answered from its documentation) are the turns' likeness, not a target.
            if mean_pairwise_cos(data.answered_vecs[answering]) >= mean_pairwise_cos(R[answering]):
                continue
            found.append(
                {
                    "feature": feature,
                    "view": "alike",
                    "label": -1,
                    "rows": m,
                    "prior_rate": 0.0,
                    "answering": answering,
                    "expected": float(b[has].mean()),
                    "z": z,
                    "log10_p": log10_p,
                }
            )
        return found
