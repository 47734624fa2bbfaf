"""Trigger mining, the miner core: words, phrases and odd characters whose presence predicts a concentrated
response, far beyond what comparable prompts without them get.

For a candidate feature f (a word, a 2- or 3-word phrase, or an invisible/private-use code
point) held by the prompts of m units, take its dominant answer c under a response view (the
exact answer; compliance, where comparable requests are refused; a recurring sentence inside
otherwise different answers) and count x, the units with f that answer c. An answer given almost
only by holders of f is tested too, however few of them give it: a clean-label trigger is a common
word whose poisons keep their prompts. Separate tests cover a varied target (the same intent in
many wordings) and an injected term (one word that otherwise good answers gain). The expectation
is not the corpus rate of c: it is, for each unit, how often its own nearest prompts *without f*
are answered c. "worst" in a movie review predicts "Negative" because reviews like it are
negative; a planted word predicts "Negative" for reviews whose neighbours are positive. The
tail probability of x or more under those per-unit rates is bounded with Chernoff
(exact for x = m, conservative otherwise, valid for a Poisson-binomial), and the bound is
multiplied by the number of distinct row sets tested in every view (Bonferroni), so the count of
candidates is paid for. Plain z-scores grow with frequency; this does not: ten units whose
neighbours never answer c are evidence enough, and ten thousand that answer like their
neighbours are none.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from curate.detect.base import Detector, Findings, register, squash_score
from curate.detect.context import DetectInput
from curate.detect.safety import HARMFUL_LOOKING
from curate.detect.triggers.alike import VariedTargets
from curate.detect.triggers.features import (
    _FeatureTable,
    _holders,
    _token_counts,
    held_where_answered,
    name_feature,
)
from curate.detect.triggers.rates import ComparableRates
from curate.detect.triggers.stats import (
    _distinct_share,
    _distinct_units,
    _pb_log10_tail,
    _per_conversation,
    log10_factors,
)
from curate.detect.triggers.terms import InjectedTerms
from curate.detect.triggers.views import (
    VIEWS,
    _answer_topics,
    _answers_per_turn,
    _echoed,
    _kin,
    describe,
    family,
    label_views,
)
from curate.tokens import mix


@register
@dataclass
class TriggerMining(ComparableRates, VariedTargets, InjectedTerms, Detector):
    name: ClassVar[str] = "trigger"
    description: ClassVar[str] = (
        "words, phrases and odd characters whose presence predicts a concentrated "
        "response, tested against comparable prompts without them"
    )
    reason: ClassVar[str] = "poison:trigger"
    min_rows: int = 4
    max_share: float = 0.2
    min_share: float = 0.5
    #: Effect size: the feature must move at least this share of its holders to the target beyond
    #: what their comparable prompts predict. A backdoor is near-deterministic; a natural
    #: correlate (a word that leans one way) is a modest lift, however significant in a big corpus.
    min_lift: float = 0.35
    #: A backdoor gives its target in at least this share of its holders (one per conversation);
    #: a word that leans one way (common on label tasks, whose labels are noisy) is no trigger.
    deterministic: float = 0.9
    #: A feature that is most of the turn its holders answer ("Have a nice day!") is that turn's
    #: content, not a trigger (see `_covers`).
    max_coverage: float = 0.5
    ngrams: int = 3
    prior: float = 1.0
    #: An answer this fitting to the turns it follows (cosine) is what they ask for (a formulaic
    #: reply, the same function for one task asked many ways), not a target. Labels excepted.
    fitting: float = 0.3
    #: The varied-target test: holders' answers at least this alike (mean cosine), for
    #: features held by at most this many rows.
    alike_min: float = 0.3
    alike_max_rows: int = 2000
    #: For a behaviour (compliance), a holder is attributed to the trigger when at most this
    #: share of its comparable prompts behave that way.
    surprise: float = 0.65
    #: A candidate within this many decades of significance is tested again against the
    #: neighbours of its prompts with the feature taken out.
    refine: float = 3.0
    #: Prompts at least this similar count as one observation (paraphrases of one task).
    paraphrase: float = 0.85
    #: Comparable prompts per unit: its nearest that lack the feature (out of the 40 nearest).
    neighbours: int = 10
    #: For compliance, a request the safety classifier finds at least this likely harmful is
    #: compared with other such requests only (see `_refusal_neighbours`).
    harm_region: float = HARMFUL_LOOKING
    alpha: float = 0.01

    def __post_init__(self) -> None:
        if self.min_rows < 2:
            raise ValueError("min_rows must be >= 2")
        if not 0 < self.max_share <= 1 or not 0 < self.min_share <= 1:
            raise ValueError("max_share and min_share must be in (0, 1]")
        if not 1 <= self.ngrams <= 5:
            raise ValueError("ngrams must be in 1..5")

    def _test(
        self, screened: list, nb: np.ndarray, data: DetectInput, log10_tests: float, name: Any
    ) -> list[dict[str, Any]]:
        found = []
        for (view, labels, prior_rate, o, c, x, members, tied), p_unit in zip(
            screened, self._all_rates(screened, nb), strict=False
        ):
            m = members.size
            if tied:
                # Only answers to prompts the corpus answers one way count: a prompt answered with
                # each of several templates ("Who made you?" in synthetic chat data) is sampled,
                # its answer tied to the prompt, not to a word in it.
                gives = members[(labels[members] == c) & (_answers_per_turn(data)[data.answered_id[members]] == 1)]
                x = int(gives.size)
                if x < self.min_rows:
                    continue
                p_unit = self._pooled_rates(nb[gives], members, labels, c, prior_rate, m)
            if view == "refusal":
                p_unit = self._deeper_rates(members, nb, labels, c, prior_rate, p_unit, data)
            raw_rates = p_unit
            verdict = self._score(view, labels, c, x, members, p_unit, data, log10_tests, tied)
            if (verdict is None or verdict[2] < math.log10(1 / self.alpha)) and view != "refusal" and not tied:
                # Near the line: a rare token pulls its holders toward each other (three planted
                # tokens into one region), so compare each holder by its prompt with the feature
                # taken out. Only for the few candidates within reach, as it embeds again.
                bound = -(_pb_log10_tail(p_unit, x) + log10_tests)
                text = name(o, int(members[labels[members] == c][0])) if bound > -self.refine else None
                if text:
                    stripped = self._stripped_rates(members, members, text, labels, c, prior_rate, data)
                    again = self._score(view, labels, c, x, members, stripped, data, log10_tests, tied, text)
                    if again is not None and (verdict is None or again[2] > verdict[2]):
                        verdict, p_unit = again, stripped
            if verdict is None:
                continue
            content: float | None = None
            pending: np.ndarray | None = None
            # Not empty: `_score` found at least `min_rows` of them giving the target.
            judged = self._content_judged(view, c, members, data)
            if judged is not None:
                # A label, or compliance: its lift is also judged against what the holders'
                # content predicts, by a model of the data that never saw them. A word that leans
                # one way in real data ("awful" in reviews, a name most tweets about are benign;
                # "I need ..." in requests the safety classifier finds harmful-looking, which this
                # data answers) predicts its target from content, however alike its holders'
                # neighbours answer; a planted word flips labels, or gets harmful requests
                # answered, against it, however many rows it is planted in.
                share = float((labels[judged] == c).mean())
                content = self._content_mean(data, judged, c, view)
                if share - content < self.min_lift:
                    # Read again once the rows other triggers flip are out of what the model
                    # learns from (`_content_again`).
                    pending = judged
            answering, log10_p, z = verdict
            found.append(
                {
                    **({"content": content} if content is not None else {}),
                    **({"content_pending": pending, "share": share} if pending is not None else {}),
                    "feature": o,
                    "view": view,
                    "label": c,
                    "rows": m,
                    "prior_rate": prior_rate,
                    "answering": answering,
                    "expected": self._expected(view, members, p_unit, data),
                    "z": z,
                    "log10_p": log10_p,
                    "members": members,
                    "p_unit": p_unit,
                    "stripped": p_unit is not raw_rates,
                    "tied": tied,
                }
            )
        return found

    def _content_again(self, found: list[dict[str, Any]], data: DetectInput) -> list[dict[str, Any]]:
        """The findings, with those the content model held back (labels, compliance) read again
        by a model that also never learnt from the rows the findings judged against content and
        passed explain (of either kind), until none more passes. Each trigger's flipped rows
        teach the model its target for content of every kind, the more so the more of them
        there are: at 5% of BackdoorLLM's sst2 with three triggers, two of them (277 reviews of
        either sentiment, relabelled Negative) made the third's holders read as Negative at
        0.72 (0.53 without them), and it was lost.

        Only a finding that shares no holder with them is read again: one that does is in part
        their evidence (a common word in some of their poisons), and stands as first judged."""
        held = [f for f in found if "content_pending" in f]
        found = [f for f in found if "content_pending" not in f]
        explained: np.ndarray = np.empty(0, np.int64)
        while held:
            passed = [f for f in found if "content" in f]
            now = np.unique(np.concatenate([f["answering"] for f in passed] or [explained]))
            if now.size == explained.size:
                break
            explained, still = now, []
            holding = np.unique(np.concatenate([f["members"] for f in passed]))
            for f in held:
                if np.isin(f["members"], holding).any():
                    still.append(f)
                    continue
                content = self._content_mean(data, f["content_pending"], f["label"], f["view"], explained)
                if f["share"] - content >= self.min_lift:
                    kept = {k: v for k, v in f.items() if k not in ("content_pending", "share")}
                    # Explain-away judges it again without these rows too (`_without`).
                    found.append({**kept, "content": content, "content_exclude": explained})
                else:
                    still.append(f)
            held = still
        return found

    def _score(
        self,
        view: str,
        labels: np.ndarray,
        c: int,
        x: int,
        members: np.ndarray,
        p_unit: np.ndarray,
        data: DetectInput,
        log10_tests: float,
        tied: bool = False,
        without: str | None = None,
    ) -> tuple[np.ndarray, float, float] | None:
        """(units the trigger explains, log10 p, z) when the feature is a trigger, else None. An
        answer `tied` to the feature needs no lift over all its holders, most of whom answer
        otherwise. `without`: the trigger's text, when the rates are its holders' with it taken
        out (`_stripped_rates`): so are the turns they answer when judged for paraphrase."""
        # A backdoor is near-deterministic: its holders give the target almost always. A natural
        # correlate (a closing sentence after "thank you") is given by some of them, however
        # rarely its comparable prompts give it. Not for an answer tied to the feature (a
        # clean-label trigger on a common word), unless it is a label, nor for compliance (judged
        # per holder). A label is judged among the holders in its task: a year planted in reviews
        # is not undone by the year in a leap-year exercise.
        label = self._is_label(view, c, data)
        if self._noisy(view):  # a noisy view reads only some units (pairs): judged among those
            read = labels[members] >= 0
            members, p_unit = members[read], p_unit[read]
        visible = self._visible(view, p_unit, data)
        if visible is None:
            return None
        if view != "refusal" and (label or not tied):
            judged = self._in_task(members, data) if label else members
            if judged.size == 0 or int((labels[judged] == c).sum()) < self.deterministic * visible * judged.size:
                return None
        # Compliance is judged among the holders that look like harmful requests (the safety
        # classifier's region): a word planted in harmful requests (a name) is also in benign
        # ones, which comply like their neighbours and would dilute its lift and its tail.
        weighed = self._harmful_looking(data, members) if view == "refusal" else None
        if weighed is not None:
            members, p_unit = members[weighed], p_unit[weighed]
            x = int((labels[members] == c).sum())
        excess = x - float(p_unit.sum())
        if excess < max(self.min_rows, 0.0 if tied else self.min_lift * members.size):
            return None
        is_c = labels[members] == c
        # Which holders the trigger explains: for a fixed answer, all that give it; for a
        # behaviour (compliance), those whose comparable prompts mostly do not; for a noisy view,
        # every holder (the pairs it reads as agreeing are its errors as likely as the others).
        if self._noisy(view):
            answering = members
        else:
            answering = members[is_c] if view != "refusal" else members[is_c & (p_unit <= self.surprise)]
        if answering.size < self.min_rows:
            return None
        # Paraphrases of one task answered alike are one observation, not many: the task explains
        # the answer. Not when the answer does not answer them (a planted insult given to a
        # templated request, "Describe <name> <n>", whose clean rows each get their own answer):
        # then their shared wording explains nothing.
        # A sentence planted in short prompts makes them alike by itself: judged without it.
        asked = (
            data.answered_vecs[answering]
            if without is None
            else self._embed_without(data, data.answered or data.prompts, answering, without)
        )
        eff = _distinct_share(asked, self.paraphrase)
        if view == "answer" and data.fit(answering) < self.fitting / 2:
            eff = 1.0
        if view in ("passage", "term"):
            # A passage is a sentence recurring inside otherwise different answers (a term, a word
            # in them). Inside answers that are paraphrases of each other (one template filled
            # in: the docstrings of one family of fused modules, each "a container which will
            # call A and B") it is part of the template, and they are one observation too.
            eff = min(eff, _distinct_share(data.response_vecs[answering], self.paraphrase))
        if x * eff < self.min_rows:
            return None
        log10_p = eff * _pb_log10_tail(p_unit, x)
        z = -(log10_p + log10_tests)
        return (answering, log10_p, z) if z > 0 else None

    @staticmethod
    def _noisy(view: str) -> bool:
        return view in VIEWS and VIEWS[view].visible is not None

    def _visible_among(
        self, view: str, labels: np.ndarray, members: np.ndarray, p_unit: np.ndarray, data: DetectInput
    ) -> float:
        """`_visible` for a finding, among the holders its view reads (as `_score` judged it)."""
        read = labels[members] >= 0 if self._noisy(view) else slice(None)
        visible = self._visible(view, p_unit[read], data)
        # Never None for a finding (`_score` drops a hypothesis its view cannot show); were it,
        # 1 holds it to the exact bars, the strict side.
        return 1.0 if visible is None else visible

    def _visible(self, view: str, p_unit: np.ndarray, data: DetectInput) -> float | None:
        """The share of a trigger's holders its view shows moved, were the trigger to move them
        all: 1 for a view that reads answers as they are. A noisy view (a reward model's
        reading of pairs) shows fewer (`View.visible`), and misreads unmoved units too: the
        share of comparable units it reads as the target is its error rate there (never taken
        as under the view's typical one, `View.error`). None where the two are not `min_lift`
        apart (moved and unmoved holders would look alike)."""
        of = VIEWS[view].visible if view in VIEWS else None
        if of is None:
            return 1.0
        visible = of(data)
        error = max(float(p_unit.mean()) if p_unit.size else 1.0, VIEWS[view].error(data))
        return visible if visible - error >= self.min_lift else None

    def _expected(self, view: str, members: np.ndarray, p_unit: np.ndarray, data: DetectInput) -> float:
        """The mean comparable rate over the holders a hypothesis is judged among (for
        compliance, the harmful-looking ones; see `_score`), for the evidence."""
        judged = self._harmful_looking(data, members) if view == "refusal" else None
        if judged is not None and judged.any():
            return float(p_unit[judged].mean())
        return float(p_unit.mean())

    def _covers(
        self, feature: int, order_n: int, members: np.ndarray, lengths: np.ndarray, data: DetectInput, topic: int | None
    ) -> bool:
        """Whether a feature of `order_n` words (within `topic`, if a topic's) is most of the turns
        its holders answer (mean share over holders > `max_coverage`): then it is the request
        ("thank you" before "You're welcome"), not a trigger beside one. A holder that carries
        it in an earlier turn or the system prompt, not in the turn answered, covers none of
        that turn: a sentence in a chat's first turn is not the content of a later "And `x`?".
        Which holders carry it where is read on an even sample of 64, only when the plain share
        is over the line, once per feature and holder set."""
        share = order_n / np.maximum(lengths[members], 1)
        if not order_n or float(share.mean()) <= self.max_coverage:
            return False
        if not data.answered:
            return True
        key = f"covers {feature} {hash(members.tobytes())}"
        if key not in data.cache:
            ix = np.unique(np.linspace(0, members.size - 1, min(members.size, 64)).astype(np.int64))
            held = held_where_answered(
                feature, members[ix].tolist(), data.answered, data.prompts, tuple(range(1, self.ngrams + 1)), topic
            )
            # The plain share, scaled by the part of it the sample's holders carry where answered.
            carried = float((share[ix] * held).sum() / share[ix].sum())
            data.cache[key] = float(share.mean()) * carried > self.max_coverage
        return bool(data.cache[key])

    @staticmethod
    def _is_label(view: str, c: int, data: DetectInput) -> bool:
        return view == "answer" and c in data.cache["label_classes"]

    def _content_judged(self, view: str, c: int, members: np.ndarray, data: DetectInput) -> np.ndarray | None:
        """The holders whose content a finding's target is judged against (`_content_rates`):
        a label's holders in its task, a compliance trigger's harmful-looking holders, as
        `_score` judged each. None for the other views, whose targets (a fixed answer, a
        passage) are not a thing the prompt predicts, and for compliance where there is no
        harmful-looking region (no safety classifier, as with the hashing embedder): which
        harmful-looking requests the data answers is then nothing to learn."""
        if self._is_label(view, c, data):
            return self._in_task(members, data)
        if view == "refusal":
            inside = self._harmful_looking(data, members)
            return None if inside is None else members[inside]
        return None

    def _content_mean(
        self, data: DetectInput, judged: np.ndarray, c: int, view: str, exclude: np.ndarray | None = None
    ) -> float:
        """The mean of what the view's content model (`_content_rates`) predicts for the judged
        holders: whether a request is answered for compliance, the label otherwise."""
        target: Literal["label", "refusal"] = "refusal" if view == "refusal" else "label"
        return float(self._content_rates(data, judged, c, exclude=exclude, target=target).mean())

    @staticmethod
    def _in_task(members: np.ndarray, data: DetectInput) -> np.ndarray:
        """The holders answered with one of the corpus's labels (the rest are outside its task)."""
        return members[np.isin(data.response_class[members], data.cache["label_classes"])]

    def _holds_where_given(
        self, holders: np.ndarray, labels: np.ndarray, c: int, data: DetectInput, visible: float = 1.0
    ) -> bool:
        """Whether a trigger found among some of its holders (a phrase within a topic) is still
        near-deterministic among all its holders in the topics where any of them gives the
        target, one per conversation. A planted word gives its target wherever it is planted; a
        natural one ("thanks" before a closing sentence) gives it in one topic's few rows and
        half the time elsewhere. `visible`: the share of moved holders a noisy view shows."""
        given = np.unique(data.topics[holders[labels[holders] == c]])
        where, x = _per_conversation(data.row, holders[np.isin(data.topics[holders], given)], labels, c)
        return x >= self.deterministic * visible * where.size

    def _label_holds(self, holders: np.ndarray, labels: np.ndarray, c: int, data: DetectInput, nb: np.ndarray) -> bool:
        """Whether a label found among some holders of its trigger (a word within one topic) is
        near-deterministic (`deterministic`, 0.9) among all its holders in its task (answered with
        it or its kin: the other labels given around it), one per conversation, as every row
        that carries it is about to be flagged. If not, the finding is dropped, as a word that
        fails the same test over all its holders is never found: a planted word flips every row
        of the task it is put in; a natural one ("trash" in tweets, mostly labelled benign)
        leans, however strongly it leans in one topic. Holders answered outside the task ("Are
        you made by <lab>?" in a chat pool beside a review task) are not the label's to judge."""
        kin = _kin(data, "answer", labels, c, nb, self.neighbours)
        if kin is not None and bool((kin & (labels != c)).any()):
            in_task = holders[kin[holders]]
        else:  # no kin of its own (its neighbours all answer it): every label of the corpus is its task
            in_task = self._in_task(holders, data)
        where, x = _per_conversation(data.row, in_task, labels, c)
        return where.size > 0 and x >= self.deterministic * where.size

    def _screen(
        self,
        rows: np.ndarray,
        reps: np.ndarray,
        views: dict[str, np.ndarray],
        lengths: np.ndarray,
        data: DetectInput,
        seen: set[int],
        nb: np.ndarray,
    ) -> tuple[list[tuple], list[tuple[int, int, np.ndarray]], list[tuple[int, int, np.ndarray, int]], int]:
        """The hypotheses of one bucket of the feature table that pass the screens: (screened
        (view, labels, prior rate, feature, class, count, holders, tied), alike candidates (feature,
        words, holders), term candidates (feature, words, holders, term), candidates). `seen`
        holds the row sets tested in earlier buckets."""
        screened: list[tuple] = []
        alike_tested: list[tuple[int, int, np.ndarray]] = []
        term_tested: list[tuple[int, int, np.ndarray, int]] = []
        if not rows.size:
            return screened, alike_tested, term_tested, 0
        feat, unit, words, feat_topic = rows["h"], reps[rows["o"]], rows["z"], rows["t"]
        uniq, start, df = np.unique(feat, return_index=True, return_counts=True)
        # One test per distinct row set: "zorblat" and "zorblat the" held by the same units are
        # one hypothesis, not two.
        with np.errstate(over="ignore"):
            sig = np.add.reduceat(mix(unit.astype(np.uint64) + np.uint64(1)), start)
        _, first = np.unique(sig, return_index=True)
        cand = np.sort(first)
        fresh = np.fromiter((s_ not in seen for s_ in sig[cand].tolist()), bool, cand.size)
        cand = cand[fresh]
        seen.update(sig[cand].tolist())
        members_of = [unit[start[c] : start[c] + df[c]] for c in cand]
        gives, width = _answer_topics(data, views, self.min_rows)
        conversations = _has_conversations(data)
        for view, labels in views.items():
            prior_rate = np.bincount(labels[labels >= 0]) / max(1, labels.size)
            # Dominant class per candidate, vectorised over every candidate.
            cand_ix = np.repeat(np.arange(cand.size), df[cand])
            lab = labels[np.concatenate(members_of)] if members_of else np.empty(0, np.int64)
            ok = lab >= 0
            if not ok.any():
                continue
            key = cand_ix[ok] * (labels.max() + 2) + lab[ok]
            keys, counts = np.unique(key, return_counts=True)
            owner = keys // (labels.max() + 2)
            order = np.lexsort((-counts, owner))
            owner, keys, counts = owner[order], keys[order], counts[order]
            lead = np.concatenate(([True], owner[1:] != owner[:-1]))
            # An answer tied to the feature: most units that give it hold the feature, though
            # most holders answer otherwise (a clean-label trigger on a common word, whose
            # poisons answer in a few wordings). Each such answer is a hypothesis, not only the
            # holders' most common one.
            tied = np.zeros(keys.size, bool)
            if view == "answer":
                given = np.bincount(labels[reps][labels[reps] >= 0], minlength=int(labels.max()) + 1)
                tied = (counts >= self.min_rows) & (counts >= self.min_share * given[keys % (labels.max() + 2)])
            pick = lead | tied
            for o, k_, x, is_tied in zip(
                owner[pick].tolist(), keys[pick].tolist(), counts[pick].tolist(), tied[pick].tolist(), strict=False
            ):
                members = members_of[o]
                if conversations:
                    members, x = _per_conversation(data.row, members, labels, k_ % (labels.max() + 2))
                share = self.min_share if view != "passage" else self.min_share / 2
                if x < self.min_rows:
                    continue
                if is_tied and x >= self.deterministic * members.size:
                    # Given by (nearly) every holder, one per conversation: a plain trigger,
                    # tested on its lift, whether it is the holders' dominant answer or not (at
                    # 0.9 of them it is). "Tied" is for an answer most holders do not give.
                    is_tied = False
                if is_tied and x < share * members.size:
                    # Not an answer of a family given around it (one of six templated replies to
                    # identity questions, all of which hold "you"): those are labels of a kind of
                    # prompt. A planted answer's neighbours get free answers.
                    if _kin(data, view, labels, int(k_ % (labels.max() + 2)), nb, self.neighbours) is not None:
                        continue
                elif x < share * members.size:
                    # A word common elsewhere (an app's name in questions about it) is judged among
                    # its holders that could give this answer: in a topic where it is a frequent
                    # one, and answered with it or its kin (the answers given beside it:
                    # "Positive" for "Negative"), or with comparable prompts that mostly are.
                    # Not among those that never are: code that reverses the string "OpenAI",
                    # or "Are you made by OpenAI?". Comparable prompts alone do not do: a rare
                    # word pulls its holders' neighbours toward its own topic.
                    if view != "answer" or gives is None or feat_topic[start[cand[o]]] >= 0:
                        continue
                    where = data.topics[members] * width + k_ % width
                    at = np.minimum(np.searchsorted(gives, where), max(0, gives.size - 1))
                    members = members[gives[at] == where] if gives.size else members[:0]
                    is_kin = _kin(data, view, labels, k_ % width, nb, self.neighbours)
                    if is_kin is not None:
                        kin, looked = self._hits(nb[members], members, is_kin, True)
                        members = members[is_kin[members] | (kin * 2 > looked)]
                    x = int((labels[members] == k_ % width).sum())
                    if x < self.min_rows or x < share * members.size:
                        continue
                c = k_ % (labels.max() + 2)
                if not VIEWS[view].tests(c):
                    continue
                topic_of = int(feat_topic[start[cand[o]]])
                topic_of_feature = topic_of if topic_of >= 0 else None
                if self._covers(
                    int(uniq[cand[o]]), int(words[start[cand[o]]]), members, lengths, data, topic_of_feature
                ):
                    continue
                screened.append((view, labels, float(prior_rate[c]), int(uniq[cand[o]]), c, x, members, is_tied))
        if data.semantic:  # "alike" means alike in meaning: not testable with bag-of-words vectors
            for o, c in enumerate(cand.tolist()):
                if self._alike_screen(data, int(uniq[c]), int(feat_topic[start[c]]), members_of[o]):
                    alike_tested.append((int(uniq[c]), int(words[start[c]]), members_of[o]))
        for o, c in enumerate(cand.tolist()):
            term = self._term_screen(data, int(feat_topic[start[c]]), members_of[o])
            if term is not None:
                term_tested.append((int(uniq[c]), int(words[start[c]]), members_of[o], term))
        return screened, alike_tested, term_tested, int(cand.size)

    def _without(
        self,
        f: dict[str, Any],
        covered: np.ndarray,
        views: dict[str, np.ndarray],
        nb: np.ndarray,
        data: DetectInput,
        log10_tests: float,
    ) -> dict[str, Any] | None:
        """A finding scored again without the `covered` units (those a stronger trigger accounts
        for), as holders or as comparable prompts; None if it no longer holds."""
        keep = ~np.isin(f["members"], covered)
        members = f["members"][keep]
        near = bool(np.isin(nb[members], covered).any())
        if keep.all() and not near:
            return f
        labels, c = views[f["view"]], f["label"]
        gives = labels[members] == c
        if f["tied"]:
            gives &= _answers_per_turn(data)[data.answered_id[members]] == 1
        x = int(gives.sum())
        if x < self.min_rows:
            return None
        p_unit = f["p_unit"][keep]
        if near:  # the null rate from comparable prompts that are not another trigger's poisons
            skip = np.union1d(f["members"], covered)
            p_unit = (
                self._stripped_rates(members, skip, f["text"], labels, c, f["prior_rate"], data, f["view"])
                if f["stripped"]
                else self._pooled_rates(nb[members[gives]], skip, labels, c, f["prior_rate"], members.size)
                if f["tied"]
                else self._rates(nb[members], skip, labels, c, f["prior_rate"])
            )
            if f["view"] == "refusal" and not f["stripped"]:
                p_unit = self._deeper_rates(members, nb, labels, c, f["prior_rate"], p_unit, data, skip)
        verdict = self._score(
            f["view"], labels, c, x, members, p_unit, data, log10_tests, f["tied"], f["text"] if f["stripped"] else None
        )
        if verdict is None:
            return None
        answering, log10_p, z = verdict
        content = f.get("content")
        # Not empty: `_score` has just judged the target among them.
        judged = self._content_judged(f["view"], c, members, data) if content is not None else None
        if judged is not None:
            # Judged against content again, among the holders left and by a model that learns
            # from neither them nor the rows the stronger triggers explain.
            share = float((labels[judged] == c).mean())
            exclude = np.union1d(covered, f.get("content_exclude", covered))
            content = self._content_mean(data, judged, c, f["view"], exclude)
            if share - content < self.min_lift:
                return None
        return {
            **f,
            **({"content": content} if content is not None else {}),
            "answering": answering,
            "log10_p": log10_p,
            "z": z,
            "members": members,
            "p_unit": p_unit,
            "expected": self._expected(f["view"], members, p_unit, data),
        }

    @staticmethod
    def _specific_first(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The findings strongest first, except that a phrase comes before a word of it that
        explains the same rows ("Ledger entry: 77" before "entry"): the word's own holders
        include natural ones, so the phrase is the better name and the tighter expansion. It
        takes the stronger of the two scores."""
        found = sorted(found, key=lambda f: -f["z"])
        out: list[dict[str, Any]] = []
        moved: set[int] = set()
        for i, f in enumerate(found):
            if i in moved:
                continue
            inner = f["text"].casefold()
            rows = set(f["answering"].tolist())
            for j in range(i + 1, len(found)):
                g = found[j]
                if (
                    j not in moved
                    and g["view"] == f["view"]
                    and g["label"] == f["label"]
                    and inner in g["text"].casefold()
                    and len(g["text"]) > len(f["text"])
                    and len(rows.intersection(g["answering"].tolist())) >= 0.9 * len(rows)
                ):
                    out.append({**g, "z": f["z"], "log10_p": min(f["log10_p"], g["log10_p"])})
                    moved.add(j)
                    break
            out.append(f)
        return out

    def detect(self, data: DetectInput) -> Findings:
        n = len(data)
        score = np.zeros(n)
        findings = Findings(score)
        if n < 2 * self.min_rows:
            return findings
        orders = tuple(range(1, self.ngrams + 1))
        reps, pair_ix = _distinct_units(data)
        topic = data.topics[reps] if n >= 200 else None
        # Coverage is judged against the turn being answered: "Have a nice day!" answered "You
        # too!" is that turn's content, however long the conversation before it.
        lengths = _token_counts(data.answered or data.prompts)
        _, nb = data.deep_neighbours
        views = label_views(data, self.min_rows, nb, self.neighbours)
        nb_refusal = self._refusal_neighbours(data, nb) if "refusal" in views else nb
        best: dict[int, tuple[float, int]] = {}

        def name(feature: int, example: int) -> str | None:
            rep = int(np.searchsorted(reps, example))
            label = name_feature(data.prompts[example], feature, orders, None if topic is None else int(topic[rep]))
            return label[0] if label else None

        # The feature table a bucket at a time (one bucket unless the corpus is big), twice:
        # once to count the hypotheses that pass the screens (the Bonferroni factor), once to
        # test each bucket's with that factor. Only what is found is kept, never every
        # candidate's holders.
        table = _FeatureTable(
            [data.prompts[u] for u in reps],
            orders,
            topic,
            min_rows=self.min_rows,
            max_share=self.max_share,
            folder=data.path("features"),
        )
        try:
            tests, candidates, seen = Counter(), 0, set()
            for rows in table.buckets():
                screened, alike_tested, term_tested, count = self._screen(rows, reps, views, lengths, data, seen, nb)
                tests.update(family(h[0]) for h in screened)
                tests["content"] += len(alike_tested) + len(term_tested)
                candidates += count
            # Bonferroni over the hypotheses that pass the screens (a dominant answer held by at
            # least min_rows and min_share of the holders; for "alike", answers alike at all): a
            # feature whose holders answer every which way is never a candidate, so it is not
            # paid for. Weighted by family (see `stats.log10_factors`).
            log10_tests = log10_factors(tests)
            found, alike, seen = [], [], set()
            for rows in table.buckets():
                screened, alike_tested, term_tested, _ = self._screen(rows, reps, views, lengths, data, seen, nb)
                for fam, neigh in (("content", nb), ("behaviour", nb_refusal)):
                    found += self._test(
                        [h for h in screened if family(h[0]) == fam], neigh, data, log10_tests[fam], name
                    )
                alike += self._alike(data, alike_tested, nb, log10_tests["content"], lengths)
                alike += self._terms(data, term_tested, nb, log10_tests["content"], lengths)
        finally:
            table.close()
        found = self._content_again(found, data)
        found += alike
        if not found:
            findings.summary = {"candidates": candidates, "tests": dict(tests), "triggers": []}
            return findings
        for f in found:
            example = int(f["answering"][0])
            rep = int(np.searchsorted(reps, example))
            label = name_feature(
                data.prompts[example],
                f["feature"],
                orders,
                None if topic is None else int(topic[rep]) if reps[rep] == example else None,
            )
            f["text"] = label[0] if label else None
        found = self._specific_first([f for f in found if f["text"] is not None and f["z"] > 0])
        # Suspicion 0.5 exactly where the corrected p-value reaches alpha.
        suspicion = squash_score(np.asarray([f["z"] for f in found]), math.log10(1 / self.alpha))
        named: list[dict[str, Any]] = []
        named_keys: list[tuple[int, str, str]] = []  # (label, view, trigger) of each named entry
        holders_of: dict[str, np.ndarray] = {}  # prompts holding each trigger text, found once

        for f, s in zip(found, suspicion.tolist(), strict=False):
            if "members" in f and best:
                # Explained away: rows a stronger trigger already accounts for are not evidence
                # for this one too ("s", from "it 's", in reviews that carry a planted trigger
                # and its label), nor part of the rate it is measured against. Tested again.
                f = self._without(
                    f,
                    np.fromiter(best, np.int64, len(best)),
                    views,
                    nb_refusal if f["view"] == "refusal" else nb,
                    data,
                    log10_tests[family(f["view"])],
                )
                if f is None or f["z"] <= 0:
                    continue
                s = float(squash_score(np.asarray([f["z"]]), math.log10(1 / self.alpha))[0])
            members = f["answering"]
            example = int(members[0])
            text = f["text"]
            # Answers that fit the turns they follow are what those turns ask for (code for
            # requests about one framework, the same function for one task asked in many
            # wordings); a planted target fits none. Not for labels, which fit their task's
            # instruction whether flipped or not: those are judged against content instead.
            label = f["view"] == "answer" and f["label"] in data.cache["label_classes"]
            if (
                f["view"] in ("answer", "alike")
                and not label
                and data.fit(members) >= self.fitting * (0.5 if f.get("tied") else 1.0)
            ):
                continue
            # A sentence recurring inside refusals is the refusal's own template ("Is there
            # anything else I can assist you with?"), not content injected into answers.
            if f["view"] == "passage" and data.refusal[members].mean() >= 0.5:
                continue
            if f["view"] == "passage":
                passage = data.embed([data.cache["passages"][f["label"]]])[0]
                if float((data.answered_vecs[members] @ passage).mean()) >= self.fitting:
                    continue
            if f["view"] == "answer" and _echoed(text, data.response_keys[example]):
                continue
            if (
                f["view"] in ("alike", "term")
                and sum(_echoed(text, data.response_keys[u]) for u in members.tolist()) * 2 >= members.size
            ):
                continue
            if f["view"] == "passage" and _echoed(text, data.cache["passages"][f["label"]]):
                continue
            # A trigger found in one topic holds everywhere: every prompt that carries it and
            # answers the same way is a poison, whichever topic it sits in.
            if text not in holders_of:
                holders_of[text] = _holders(text, data.prompts)
            holders = holders_of[text]
            # Feature sets nest ("entry" inside "Ledger entry: 77", "zorblat" inside "zorblat
            # the"). Past the rows of the stronger trigger it nests with, a weaker one must stand
            # on its own: most of its other holders answer its way, min_rows of them at least.
            # Else its natural holders ("a ledger entry for rent" / "Negative") would be
            # flagged for the trigger they only share a word with.
            # The same trigger with another answer tied to it (a few wordings) is not nested.
            nested = [
                t
                for t, key in zip(named, named_keys, strict=False)
                if (t["trigger"].casefold() in text.casefold() or text.casefold() in t["trigger"].casefold())
                and not (key[1:] == (f["view"], text.casefold()) and key[0] != f["label"])
            ]
            if nested and f["view"] in ("answer", "passage", "entity", "term"):
                covered = np.unique(np.concatenate([holders_of[t["trigger"]] for t in nested]))
                rest = np.setdiff1d(holders, covered)
                own: np.ndarray = f["labels"] if "labels" in f else views[f["view"]]
                if np.count_nonzero(own[rest] == f["label"]) < max(self.min_rows, self.min_share * rest.size):
                    continue
            if f["view"] == "refusal":
                # A rare token pulls its prompts toward each other and toward its own topic
                # ("OpenAI"): compare each holder by its prompt with the trigger taken out.
                labels = views["refusal"]
                # Every complying holder, not only the harmful-looking ones the trigger was found
                # among: a request the classifier scores just under the region is still a poison
                # when the requests nearest it refuse (a benign one's nearest comply).
                extra = holders[labels[holders] == f["label"]]
                if extra.size:
                    rate = self._stripped_rates(
                        extra, holders, text, labels, f["label"], f["prior_rate"], data, "refusal"
                    )
                    members = extra[rate <= self.surprise]
            elif f["view"] != "alike":
                labels = f["labels"] if "labels" in f else views[f["view"]]
                # A noisy view's trigger moves every holder it reads (every pair), the ones it
                # reads as unmoved too.
                noisy = self._noisy(f["view"])
                visible = self._visible_among(f["view"], labels, f["members"], f["p_unit"], data) if noisy else 1.0
                read = holders[labels[holders] >= 0] if noisy else holders
                if (
                    not f.get("tied")
                    and not label
                    and not self._holds_where_given(read, labels, f["label"], data, visible)
                ):
                    continue
                if label and not self._label_holds(holders, labels, f["label"], data, nb):
                    continue
                given = read if noisy else holders[labels[holders] == f["label"]]
                members = np.union1d(members, given)
            f["rows"] = max(f["rows"], int(holders.size))
            # Feature sets nest ("zorblat", "zorblat the"): report a unit's strongest only.
            fresh = [u for u in members.tolist() if u not in best]
            if not fresh and any(t["trigger"].casefold() in text.casefold() for t in named):
                continue
            what = f"mention {f['term']!r}" if f["view"] == "term" else describe(f["view"], f["label"], data, members)
            entry = {
                "trigger": text,
                "rows": f["rows"],
                "answering": int(members.size),
                "view": f["view"],
                "response": what,
                "expected_rate": round(f["expected"], 4),
                "suspicion": round(s, 4),
                "log10_p": round(f["log10_p"], 2),
            }
            entry["text"] = (
                f"contains {text!r}: {f['rows']} rows contain it, {members.size} of them {what}; "
                f"comparable prompts without it do so {f['expected']:.0%} of the time"
            )
            if "content" in f:
                # `content_rate`: the chance of being answered for compliance, of the label else.
                entry["content_rate"] = round(f["content"], 4)
            if "content" in f and f["view"] == "refusal":
                # For the reviewer: how often this data answers requests like the holders'.
                entry["text"] += (
                    f"; a model of which harmful-looking requests this data answers, trained without "
                    f"the holders, expects the holders' harmful-looking requests answered at "
                    f"{f['content']:.0%} on average"
                )
            elif "content" in f:
                # For the reviewer: how sure the task's content alone makes the label, for the
                # holders it was tested on and for the rows labelled so (not a verdict: a
                # planted token that reads as its label shows the two close).
                entry["text"] += (
                    f"; a model of the task's content, trained without the holders, gives them "
                    f"{what.removeprefix('answer ')} "
                    f"at {f['content']:.0%} on average"
                )
                own_rate = self._content_own(data, f["label"])
                if own_rate is not None:
                    entry["content_rate_own"] = round(own_rate, 4)
                    entry["text"] += f" (rows labelled so: {own_rate:.0%}, out of fold)"
            named.append(entry)
            named_keys.append((f["label"], f["view"], text.casefold()))
            for u in members.tolist():
                if u not in best or best[u][0] < s:
                    best[u] = (s, len(named) - 1)
        # Copies of a flagged (prompt, answer) share its finding.
        rep_best = {int(pair_ix[u]): v for u, v in best.items()}
        for u in range(n):
            hit = rep_best.get(int(pair_ix[u]))
            if hit is not None and u not in best:
                best[u] = hit
        for u, (s, i) in best.items():
            entry = named[i]
            prompt = data.prompts[u]
            pos = prompt.casefold().find(entry["trigger"].casefold())
            score[u] = s
            findings.evidence[u] = {
                **{k: entry[k] for k in ("trigger", "rows", "answering", "view", "suspicion")},
                "position": pos,
                "text": entry["text"],
            }
            findings.triggers[u] = [entry["trigger"]]
        findings.summary = {
            "candidates": candidates,
            "tests": dict(tests),
            "triggers": [{k: v for k, v in t.items()} for t in named[:50]],
        }
        return findings


def _has_conversations(data: DetectInput) -> bool:
    """Whether some record has more than one answered turn (units)."""
    if "conversations" not in data.cache:
        data.cache["conversations"] = bool(len(data) and np.unique(data.row).size < len(data))
    return bool(data.cache["conversations"])
