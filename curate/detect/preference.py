"""Preference pairs: chosen == rejected, a harmful request whose chosen answer complies while
the rejected one refuses, and pairs whose order disagrees with a reward model learnt from the
other pairs (the chosen answer looks like what the rest of the data rejects)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from curate.detect.base import Detector, Findings, register, squash_score
from curate.detect.context import DetectInput, response_key
from curate.detect.safety import harm_probability


@register
@dataclass
class PreferenceFlip(Detector):
    name: ClassVar[str] = "preference"
    description: ClassVar[str] = (
        "preference pairs that look swapped (chosen worse or less safe than rejected), or whose chosen equals rejected"
    )
    reason: ClassVar[str] = "poison:preference"
    folds: int = 5
    z_at_flag: float = 3.0
    min_pairs: int = 50
    #: Up to this many chosen + rejected answers, the full model embeds them all for the reward model.
    full_model_answers: int = 40_000

    def detect(self, data: DetectInput) -> Findings:
        from curate.filters.builtin import is_refusal

        n = len(data)
        score = np.zeros(n)
        findings = Findings(score)
        pairs = data.pairs
        if pairs.size == 0:
            return findings
        rejected = [data.rejected[i] for i in pairs]
        identical = np.asarray(
            [response_key(data.responses[u]) == response_key(r) for u, r in zip(pairs, rejected, strict=False)]
        )
        rej_refuses = np.fromiter((is_refusal(r) for r in rejected), bool, len(rejected))
        harm = harm_probability(data)[pairs] if data.semantic else np.zeros(pairs.size)
        chosen_complies = ~data.refusal[pairs]
        unsafe_choice = (harm >= 0.6) & chosen_complies & rej_refuses
        margin_z = np.zeros(pairs.size)
        if pairs.size >= self.min_pairs:
            margin_z = self._reward_margins(data, pairs)
        reward = squash_score(margin_z, self.z_at_flag)
        s = np.maximum.reduce([np.where(identical, 0.9, 0.0), np.where(unsafe_choice, harm, 0.0), reward])
        score[pairs] = s
        for i, u in enumerate(pairs.tolist()):
            if s[i] < 0.3:
                continue
            if identical[i]:
                text = "chosen and rejected are the same answer"
            elif unsafe_choice[i] and harm[i] >= reward[i]:
                text = f"harmful request (p = {harm[i]:.2f}): the chosen answer complies, the rejected one refuses"
            else:
                text = (
                    f"looks swapped: a reward model trained on the other pairs prefers the rejected answer "
                    f"(z = {margin_z[i]:.1f})"
                )
            findings.evidence[u] = {"suspicion": round(float(s[i]), 4), "text": text}
        findings.summary = {
            "pairs": int(pairs.size),
            "identical": int(identical.sum()),
            "unsafe_chosen": int(unsafe_choice.sum()),
            "looks_swapped": int((reward >= 0.5).sum()),
        }
        return findings

    def _answer_vecs(self, data: DetectInput, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(chosen, rejected) vectors of the pairs, both sides embedded the same way. The scan's
        answer vectors will not do: a distilled embedder gives most of a big corpus's answers
        static vectors and the model's to a sample, so chosen answers (among all the answers)
        and rejected ones (embedded on their own) differ in how they were embedded, which a
        reward model learns in place of which answer is better (78% of hh-rlhf pairs "right",
        swaps not told apart at all). Up to `full_model_answers` texts, the full model embeds
        every one (cached by content); past that, one distilled pass over both sides together."""
        texts = [data.responses[u] for u in pairs.tolist()] + [data.rejected[u] for u in pairs.tolist()]
        embed = data.embed_response
        full = getattr(embed, "full_embed", None)
        if full is not None and len(texts) <= self.full_model_answers:
            embed = full
        vecs = np.asarray(data.vectors("pair_answers", texts, embed)[0 : len(texts)])
        return vecs[: pairs.size], vecs[pairs.size :]

    def _reward_margins(self, data: DetectInput, pairs: np.ndarray) -> np.ndarray:
        """How strongly a cross-fitted linear reward model on (prompt, chosen - rejected) prefers
        rejected, as a z-score against the other pairs' margins. Each pair is scored by a model
        that never saw it."""
        margin = self.margins(data, pairs)
        spread = np.std(margin) + 1e-6
        # z - 1 above z = 1 as before, smoothly toward 0 below it: every pair keeps its rank (a
        # reviewer sorting by suspicion sees the likeliest swaps first), none is flagged sooner.
        return np.logaddexp(0.0, 2.0 * ((np.median(margin) - margin) / spread - 1.0)) / 2.0

    def margins(self, data: DetectInput, pairs: np.ndarray) -> np.ndarray:
        """The cross-fitted reward model's margin for each pair (chosen over rejected; negative:
        it prefers the rejected answer), computed once per scan (trigger mining reads it too)."""
        key = ("reward_margins", self.folds, self.full_model_answers)
        if key not in data.cache:
            data.cache[key] = self._fit_margins(data, pairs)
        return data.cache[key]

    def _fit_margins(self, data: DetectInput, pairs: np.ndarray) -> np.ndarray:
        from sklearn.linear_model import LogisticRegression

        chosen, rejected = self._answer_vecs(data, pairs)
        diff = chosen - rejected
        feats = np.hstack([diff, diff * data.prompt_vecs[pairs]])
        X = np.vstack([feats, -feats])
        y = np.r_[np.ones(len(feats)), np.zeros(len(feats))]
        rng = np.random.default_rng(data.seed)
        fold = rng.integers(0, self.folds, len(feats))
        margin = np.zeros(len(feats))
        for f in range(self.folds):
            train = np.r_[fold != f, fold != f]
            # Strongly regularised: preference labels are noisy, and on hh-rlhf C = 0.1 orders
            # held-out pairs better than C = 1 (61% against 60% right; swaps AUROC 0.58 against 0.57).
            model = LogisticRegression(C=0.1, max_iter=2000, random_state=data.seed).fit(X[train], y[train])
            margin[fold == f] = model.decision_function(feats[fold == f])
        return margin
