"""Detectors that compare a unit with its neighbourhood of comparable prompts: response
concentration, neighbour disagreement, prompt-response relevance, and (annotation only) kNN
outliers and semantic duplicates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from curate.detect.base import Detector, Findings, register, squash_score
from curate.detect.context import DetectInput
from curate.embed.vectors import Vectors, mean_pairwise_cos, rowdot

CHUNK = 4096


def _distinct(data: DetectInput, members: np.ndarray) -> np.ndarray:
    """`members`, one per answered turn (the first): copies of a row count once."""
    _, first = np.unique(data.answered_id[members], return_index=True)
    return members[np.sort(first)]


@register
@dataclass
class ResponseConcentration(Detector):
    """Many unrelated prompts answered with the very same text. Natural repeats ("I am Vicuna"
    to identity questions, a label to one task's inputs) come from related prompts; a planted
    target is attached to prompts as spread out as the corpus itself.

    With `over_refusal` (off by default), the same for one intent in many wordings: refusals of
    benign requests (under the harm classifier's HARMFUL_LOOKING) whose nearest requests are
    answered. Alone such a refusal is a cautious answer; alike (cosine `refusal_alike`) across
    unrelated requests they are the over-refusal attack (AutoPoison), which teaches a model to
    decline what it should answer. An exact-answer group lends no support to the refusals that
    merely read like it (else one planted exact refusal gathers a corpus's own capability
    refusals: "I don't have the capability to book ..."). Off by default because a corpus whose
    own refusals decline borderline requests that its other rows answer is, by these counts, the
    same: hh-rlhf harmless-base holds 16 such (home addresses of celebrities, insults; harm
    probability 0.37-0.50, where planted refusals of docstring questions score 0.29-0.49), one
    group at suspicion 0.71."""

    name: ClassVar[str] = "concentration"
    description: ClassVar[str] = (
        "unusually large groups of identical responses to unrelated prompts (optionally, of alike "
        "refusals of benign requests)"
    )
    reason: ClassVar[str] = "poison:concentration"
    min_prompts: int = 5
    min_words: int = 3
    half: float = 6.0
    #: Mean similarity of the target to what neighbouring prompts are answered at which the
    #: target counts as entirely familiar.
    familiar_at: float = 0.5
    #: An answer this fitting to the turns it follows (cosine) is a formulaic reply ("Thanks!" /
    #: "You're welcome!"), not a planted target.
    fitting: float = 0.3
    #: Also group alike refusals of benign requests (the over-refusal attack); see the class doc.
    over_refusal: bool = False
    #: A refusal counts toward an over-refusal group where at least this share of its nearest
    #: requests (of other conversations, at least min_prompts of them) are answered.
    answered_around: float = 0.8
    #: Response cosine at which two such refusals say the same thing.
    refusal_alike: float = 0.5
    #: Group strength (distinct requests x spread x foreignness) beyond one refusal at which a
    #: group reaches suspicion 0.5: about four alike refusals of unrelated benign requests. Clean
    #: corpora's own refusals of benign requests are mostly few and varied (at most three alike,
    #: strength 1.7, in the FP-audit corpora but hh-rlhf, whose 16 refusals of borderline
    #: requests make one group at 0.71: why over_refusal is off by default).
    refusal_half: float = 3.0

    def detect(self, data: DetectInput) -> Findings:
        n = len(data)
        score = np.zeros(n)
        findings = Findings(score)
        if n < self.min_prompts:
            return findings
        P = data.prompt_vecs
        rng = np.random.default_rng(data.seed)
        sample = P[rng.choice(n, size=min(n, 4000), replace=False)]
        corpus_spread = max(1e-3, 1 - mean_pairwise_cos(sample))
        classes = data.response_class
        _, nb = data.neighbours
        order = np.argsort(classes, kind="stable")
        bounds = np.flatnonzero(np.diff(classes[order])) + 1
        for members in np.split(order, bounds):
            if members.size < self.min_prompts:
                continue
            distinct = _distinct(data, members)
            if distinct.size < self.min_prompts:
                continue
            key = data.response_keys[int(members[0])]
            if len(key.split()) < self.min_words or data.fit(distinct) >= self.fitting:
                continue
            # Foreign to the neighbourhood: what similar prompts outside the group get answered
            # is unlike the target. Identity questions get identity answers everywhere; a
            # planted insult is unlike anything the neighbours say.
            neigh = nb[distinct]
            outside = (neigh >= 0) & ~np.isin(neigh, members)
            target = data.response_vecs[int(members[0])]
            near_resp = np.where(outside, data.response_vecs[np.maximum(neigh, 0)] @ target, np.nan)
            familiar = float(np.nanmean(near_resp)) if outside.any() else 0.0
            strength, spread = self._strength(data, distinct, familiar, corpus_spread)
            s = float(squash_score(strength - self.min_prompts + 1, self.half))
            if s <= 0:
                continue
            text = data.responses[int(members[0])].strip()
            shown = text[:80] + ("..." if len(text) > 80 else "")
            entry = {
                "rows": int(np.unique(data.row[members]).size),  # conversations, as over-refusal counts them
                "distinct_prompts": int(distinct.size),
                "prompt_spread": round(float(spread), 3),
                "familiar": round(familiar, 3),
                "suspicion": round(s, 4),
                "response": shown,
                "text": f"{distinct.size} different prompts all answered {shown!r} "
                f"(prompts {min(1.0, spread):.0%} as spread out as the whole corpus)",
            }
            for u in members.tolist():
                score[u] = s
                findings.evidence[u] = entry
        if self.over_refusal and data.semantic:
            self._over_refusal(data, corpus_spread, score, findings)
        # Each group once, and only while it is some row's evidence: exact refusals grouped
        # again by the over-refusal path are the same rows, reported by whichever scores higher.
        groups = sorted({id(e): e for e in findings.evidence.values()}.values(), key=lambda g: -g["suspicion"])
        findings.summary = {"groups": groups[:50]}
        return findings

    def _strength(
        self, data: DetectInput, distinct: np.ndarray, familiar: float, corpus_spread: float
    ) -> tuple[float, float]:
        """(strength, spread) of a group: its distinct requests x how spread out their prompts
        are (a share of the corpus's spread, at most 1) x how foreign the answer is to what
        neighbouring prompts are answered (`familiar`, mean cosine; 0 from `familiar_at` up)."""
        spread = (1 - mean_pairwise_cos(data.prompt_vecs[distinct])) / corpus_spread
        foreign = float(np.clip((self.familiar_at - familiar) / self.familiar_at, 0, 1))
        return distinct.size * min(1.0, max(0.0, spread)) * foreign, float(spread)

    def _over_refusal(self, data: DetectInput, corpus_spread: float, score: np.ndarray, findings: Findings) -> None:
        """Groups of alike refusals of benign requests that comparable requests see answered;
        each member scored by its group (raising `score` where the group says more)."""
        from curate.detect.safety import HARMFUL_LOOKING, harm_probability

        _, nb = data.neighbours
        valid = data.other_conversation
        k_eff = valid.sum(axis=1)
        answered = np.where(valid, ~data.refusal[np.maximum(nb, 0)], False).sum(axis=1)
        cand = np.flatnonzero(
            data.refusal
            & data.trained
            & (k_eff >= self.min_prompts)
            & (answered >= self.answered_around * np.maximum(k_eff, 1))
        )
        if cand.size < 2:
            return
        cand = cand[harm_probability(data)[cand] < HARMFUL_LOOKING]
        # An answer given word for word to many requests is the exact-answer path's group (above)
        # and lends no support to the refusals that merely read like it, nor they to it: each
        # side is grouped among itself. Else one planted exact refusal takes into its group every
        # refusal of the corpus's own that reads like it (BackdoorLLM's "I do not have the
        # capability to follow the given instruction" gathered the clean pool's "I don't have the
        # capability to book movie tickets").
        exact = score[cand] > 0
        found = self._refusal_groups(data, cand[exact], corpus_spread)
        found += self._refusal_groups(data, cand[~exact], corpus_spread)
        for members, s, entry in found:
            for u in members.tolist():
                if s > score[u]:
                    score[u] = s
                    findings.evidence[u] = entry

    def _refusal_groups(self, data: DetectInput, cand: np.ndarray, corpus_spread: float) -> list:
        """(members, score, evidence) of each group of alike refusals among `cand`."""
        if cand.size < 2:
            return []
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        _, nb = data.neighbours
        valid = data.other_conversation[cand]
        k_eff = valid.sum(axis=1)
        R, P = data.response_vecs[cand], data.prompt_vecs[cand]
        # Each refusal is linked to its most alike few only (an approximation of single linkage
        # at refusal_alike: a group is found whole unless it splits into alike cliques larger
        # than k), so thousands of alike refusals keep a few edges each, not millions; blocks of
        # rows keep the candidates x block products near 64 MB.
        top = min(cand.size, data.k)
        block = max(1, min(CHUNK, 2**24 // cand.size))
        rows, cols = [], []
        familiar = np.zeros(cand.size)
        for lo in range(0, cand.size, block):
            hi = min(cand.size, lo + block)
            sims = R[lo:hi] @ R.T
            sims[P[lo:hi] @ P.T >= 0.5] = -1  # related requests (itself too) say less
            j = np.argpartition(sims, -top, axis=1)[:, -top:]
            keep = np.take_along_axis(sims, j, axis=1) >= self.refusal_alike
            rows.append(np.nonzero(keep)[0] + lo)
            cols.append(j[keep])
            # How like what its nearest requests are answered each refusal is.
            near = np.einsum("cd,ckd->ck", R[lo:hi], data.response_vecs[np.maximum(nb[cand[lo:hi]], 0)])
            familiar[lo:hi] = (near * valid[lo:hi]).sum(axis=1) / np.maximum(k_eff[lo:hi], 1)
        i, j = np.concatenate(rows), np.concatenate(cols)
        _, comp = connected_components(coo_matrix((np.ones(i.size), (i, j)), shape=(cand.size,) * 2), directed=False)
        found = []
        for c in np.unique(comp):
            members = cand[comp == c]
            distinct = _distinct(data, members)
            if distinct.size < 2:
                continue
            known = float(familiar[comp == c].mean())
            strength, spread = self._strength(data, distinct, known, corpus_spread)
            s = float(squash_score(strength - 1, self.refusal_half))
            if s <= 0:
                continue
            shown = [data.responses[int(u)].strip()[:80] for u in distinct[:3]]
            entry = {
                "rows": int(np.unique(data.row[members]).size),
                "distinct_prompts": int(distinct.size),
                "prompt_spread": round(float(spread), 3),
                "familiar": round(known, 3),
                "suspicion": round(s, 4),
                "response": shown[0],
                "text": f"{distinct.size} unrelated benign requests refused alike where comparable requests "
                f"are answered (e.g. {'; '.join(map(repr, shown))})",
            }
            found.append((members, s, entry))
        return found


@register
@dataclass
class NeighbourDisagreement(Detector):
    """A response that departs from what an agreeing neighbourhood answers.

    The fit of a unit's response to its neighbours' responses is compared with how well each
    neighbour fits the others (a z-score within the neighbourhood), so a tight neighbourhood
    (refusals to harmful requests, one label per kind of input) speaks loudly and a diverse one
    barely at all. Discrete answers are checked too: a unit that complies where every comparable
    prompt is refused, or gives one label where its neighbours all give another. A label that
    is common a little further out (a negative review among reviews) is the neighbourhood's own
    variety, not a flip: the embedding cannot see sentiment, and its nearest few agreeing is chance."""

    name: ClassVar[str] = "disagreement"
    description: ClassVar[str] = "responses that depart from what an agreeing neighbourhood of similar prompts answers"
    reason: ClassVar[str] = "poison:disagreement"
    min_similarity: float = 0.35
    min_neighbours: int = 5
    min_agreement: float = 0.35
    z_at_flag: float = 9.0
    #: See ResponseConcentration.fitting.
    fitting: float = 0.3
    #: Added to a neighbourhood's spread, so near-identical templated neighbours do not make
    #: every small difference look extreme.
    spread_floor: float = 0.1
    discrete_weight: float = 0.6
    #: A label this common among the unit's deeper neighbours is a normal answer around it (a
    #: negative review among reviews), not a flip, however its nearest few answer.
    local_share: float = 0.1

    def detect(self, data: DetectInput) -> Findings:
        n = len(data)
        score = np.zeros(n)
        findings = Findings(score)
        sims, nb = data.neighbours
        if n < self.min_neighbours + 1 or nb.shape[1] == 0:
            return findings
        R = data.response_vecs
        valid = (nb >= 0) & (sims >= self.min_similarity)
        z = np.zeros(n)
        mu_all = np.zeros(n)
        for lo in range(0, n, CHUNK):
            hi = min(n, lo + CHUNK)
            ids = np.maximum(nb[lo:hi], 0)
            v = valid[lo:hi].astype(np.float32)
            G = R[ids]  # (c, k, d)
            own = np.einsum("cd,ckd->ck", R[lo:hi], G)  # unit vs each neighbour
            gram = np.einsum("cid,cjd->cij", G, G)
            pair_v = v[:, :, None] * v[:, None, :]
            k_eff = v.sum(axis=1)
            agree = ((gram * pair_v).sum(axis=2) - v) / np.maximum(k_eff[:, None] - 1, 1)
            mu = (agree * v).sum(axis=1) / np.maximum(k_eff, 1)
            var = (((agree - mu[:, None]) ** 2) * v).sum(axis=1) / np.maximum(k_eff - 1, 1)
            fit = (own * v).sum(axis=1) / np.maximum(k_eff, 1)
            zz = (mu - fit) / (np.sqrt(var) + self.spread_floor)
            ok = (k_eff >= self.min_neighbours) & (mu >= self.min_agreement)
            z[lo:hi] = np.where(ok, zz, 0.0)
            mu_all[lo:hi] = mu
        cont = squash_score(z, self.z_at_flag)
        # Discrete: refusal where neighbours answer, compliance where they refuse, another label.
        disc = np.zeros(n)
        disc_what: dict[int, str] = {}
        counts = np.bincount(data.response_class)
        # A repeated answer that fits the turn it follows ("You're welcome!") is not a flip.
        own_fit = rowdot(data.answered_vecs, R)
        labelled = (counts[data.response_class] >= 3) & (own_fit < self.fitting)
        # Refusal is tested one way: complying where comparable prompts are refused. Refusing
        # where others answer is what a cautious model does and is not poison evidence.
        _, deep = data.deep_neighbours
        deep_lab = np.where(deep >= 0, data.response_class[np.maximum(deep, 0)], -1)
        common = (deep_lab == data.response_class[:, None]).sum(axis=1) >= self.local_share * np.maximum(
            (deep_lab >= 0).sum(axis=1), 1
        )
        for name, labels, usable, eligible in (
            ("refusal", data.refusal.astype(np.int64), ~data.refusal, ~data.refusal),
            ("answer", data.response_class, labelled, labelled & ~common),
        ):
            lab_nb = np.where(valid & usable[np.maximum(nb, 0)], labels[np.maximum(nb, 0)], -1)
            v = (lab_nb >= 0).sum(axis=1)
            same = (lab_nb == labels[:, None]).sum(axis=1)
            # The most common other label among the neighbours.
            other = np.where(lab_nb == labels[:, None], -1, lab_nb)
            top = np.zeros(n)
            for u in np.flatnonzero((v >= self.min_neighbours) & (same == 0) & eligible):
                vals = other[u][other[u] >= 0]
                if vals.size:
                    top[u] = np.bincount(vals).max() / v[u]
            s = self.discrete_weight * top**2
            better = s > disc
            disc = np.where(better, s, disc)
            for u in np.flatnonzero(better & (s > 0.3)).tolist():
                if name == "refusal":
                    disc_what[u] = (
                        "refuses where comparable prompts are answered"
                        if data.refusal[u]
                        else "answers where comparable prompts are refused"
                    )
                else:
                    disc_what[u] = "answers differently from every comparable prompt"
                disc_what[u] += f" ({top[u]:.0%} of its {int(v[u])} nearest agree with each other)"
        # The same for the graded score: a recurring answer common around the unit is not a departure.
        cont = np.where(labelled & common, 0.0, cont)
        score[:] = np.maximum(cont, disc)
        for u in np.flatnonzero(score >= 0.3).tolist():
            if disc[u] >= cont[u]:
                text = disc_what.get(u, "departs from its neighbours")
            else:
                text = (
                    f"response departs from its {int(valid[u].sum())} nearest prompts' responses "
                    f"(z = {z[u]:.1f} within a neighbourhood agreeing at {mu_all[u]:.2f})"
                )
            findings.evidence[u] = {
                "z": round(float(z[u]), 2),
                "suspicion": round(float(score[u]), 4),
                "neighbours": [int(data.row[x]) for x in nb[u][valid[u]][:5]],
                "text": text,
            }
        return findings


@register
@dataclass
class Relevance(Detector):
    """A response that does not address its prompt, judged against how closely the neighbours'
    responses address theirs."""

    name: ClassVar[str] = "relevance"
    description: ClassVar[str] = "responses that do not address their prompt, compared with similar prompts"
    reason: ClassVar[str] = "poison:relevance"
    z_at_flag: float = 10.0

    def detect(self, data: DetectInput) -> Findings:
        n = len(data)
        score = np.zeros(n)
        findings = Findings(score)
        _, nb = data.neighbours
        if n < 6 or nb.shape[1] == 0:
            return findings
        rel = rowdot(data.prompt_vecs, data.response_vecs)
        rel_nb = np.where(nb >= 0, rel[np.maximum(nb, 0)], np.nan)
        has = (nb >= 0).any(axis=1)
        med = np.zeros(n)
        mad = np.zeros(n)
        med[has] = np.nanmedian(rel_nb[has], axis=1)
        mad[has] = np.nanmedian(np.abs(rel_nb[has] - med[has, None]), axis=1) * 1.4826
        z = np.where(has, (med - rel) / (mad + 0.05), 0.0)
        score[:] = squash_score(z, self.z_at_flag)
        for u in np.flatnonzero(score >= 0.3).tolist():
            findings.evidence[u] = {
                "relevance": round(float(rel[u]), 3),
                "neighbours": round(float(med[u]), 3),
                "suspicion": round(float(score[u]), 4),
                "text": f"response barely addresses its prompt (similarity {rel[u]:.2f}, "
                f"similar prompts' responses {med[u]:.2f})",
            }
        return findings


@register
@dataclass
class Outliers(Detector):
    """cleanlab's rule: mean distance to the k nearest neighbours (prompt and response together),
    above Q3 + 1.5 IQR. An annotation, not poison evidence: measured on real poisons, they are
    *less* outlying than clean rows, because poisons resemble each other."""

    name: ClassVar[str] = "outlier"
    description: ClassVar[str] = "rows far from every other row (kNN distance above the IQR fence); annotation"
    reason: ClassVar[str] = "detect:outlier"
    poison: ClassVar[bool] = False
    k: int = 10
    iqr: float = 1.5
    semantic_eps: float = 0.02
    #: Below this many rows a distance distribution says little: no outlier annotations.
    min_rows: int = 100

    def detect(self, data: DetectInput) -> Findings:
        from curate.embed import knn

        n = len(data)
        score = np.zeros(n)
        findings = Findings(score)
        if n < max(self.min_rows, self.k + 2):
            return findings

        def joint_rows(lo: int, hi: int) -> np.ndarray:
            joint = data.prompt_vecs[lo:hi] + data.response_vecs[lo:hi]
            return joint / np.maximum(np.linalg.norm(joint, axis=1, keepdims=True), 1e-12)

        joint = Vectors.fill(data.path("joint.f16"), n, data.prompt_vecs.shape[1], joint_rows)
        sims, ids = knn(joint, self.k, seed=data.seed)
        dist = 1 - sims.mean(axis=1)
        q1, q3 = np.percentile(dist, [25, 75])
        fence = q3 + self.iqr * (q3 - q1)
        score[:] = np.clip((dist - q3) / max(fence - q3, 1e-6) * 0.5, 0, 1)
        for u in np.flatnonzero(dist > fence).tolist():
            findings.reasons.setdefault(u, {})["detect:outlier"] = {
                "distance": round(float(dist[u]), 4),
                "fence": round(float(fence), 4),
                "text": f"far from every other row: mean distance {dist[u]:.3f} to its {self.k} nearest, "
                f"fence {fence:.3f}",
            }
        # SemDeDup: within cos >= 1 - eps of an earlier unit with other text.
        close = (sims[:, 0] >= 1 - self.semantic_eps) & (ids[:, 0] >= 0)
        dups = 0
        for u in np.flatnonzero(close).tolist():
            other = int(ids[u, 0])
            if other < u and data.prompt_id[other] != data.prompt_id[u]:
                dups += 1
                findings.reasons.setdefault(u, {})["dup:semantic"] = {
                    "similar_row": int(data.row[other]),
                    "similarity": round(float(sims[u, 0]), 4),
                    "text": f"semantic duplicate (cosine {sims[u, 0]:.3f}) of an earlier row",
                }
        findings.summary = {
            "fence": round(float(fence), 4),
            "outliers": int((dist > fence).sum()),
            "semantic_duplicates": dups,
        }
        return findings
