"""The injected-term test of trigger mining: a word the holders' answers gain. A trigger that
steers otherwise good answers to mention one thing (a product, a name) in varied wording gives
no fixed answer, no recurring sentence and no alike answers: only one word, in nearly every
holder's answer, that the holder's prompt does not hold and the answers to comparable prompts
seldom do.

A unit's terms are the words of its answer (runs of three or more letters, casefolded) that its
own prompt does not hold, among those some `min_rows` answers hold and at most `max_share` do.
A feature's hypothesis is a term tied to it both ways (`deterministic`): nearly every holder
gives it, and nearly every answer that gives it is a holder's. Its null rate is, per holder,
how often the answers to its nearest comparable prompts hold the term, as for any view. The
term must not be what the holders ask about: the sentences that carry it must not fit the
turns they answer (`fitting`), as a planted passage must not. Counted per unit, in numpy: a
per-unit list of term ids (CSR) and one gather per candidate.

`InjectedTerms` is mixed into the miner: it reads the miner's parameters.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Callable
from typing import Any, cast

import numpy as np

from curate.detect.context import DetectInput
from curate.detect.triggers.stats import _distinct_units, _per_conversation
from curate.detect.triggers.views import _SENTENCE
from curate.tokens import words

_TERM = re.compile(r"[^\W\d_]{3,}")
#: How much of an answer is read for terms (an attacker-sized answer is not read whole).
_READ = 20_000


class AnswerTerms:
    """Each unit's answer terms as CSR (`start`, `ids`), the terms' text, the units whose
    answers hold each term (`labels`), and how many distinct units do (`df`)."""

    def __init__(self, data: DetectInput, min_rows: int, max_share: float) -> None:
        vocab: dict[str, int] = {}
        ids, sizes = array("q"), array("q")  # millions of rows: no Python list each
        for prompt, answer in zip(data.prompts, data.responses, strict=False):
            found = set(_TERM.findall(answer[:_READ].casefold()))
            if found:
                found -= set(_TERM.findall(prompt[-_READ:].casefold()))
            # Sorted: a term's id, which breaks ties, must not follow the process's string hashing.
            ids.extend(vocab.setdefault(w, len(vocab)) for w in sorted(found))
            sizes.append(len(found))
        n = len(sizes)
        lengths = np.frombuffer(sizes, np.int64) if n else np.zeros(0, np.int64)
        flat = np.frombuffer(ids, np.int64) if len(ids) else np.zeros(0, np.int64)
        owner = np.repeat(np.arange(n), lengths)
        # Counted as the miner counts holders: once per distinct (turn answered, answer), so
        # that copies of a row weigh the same on both sides of the tie.
        counted = np.zeros(n, bool)
        counted[_distinct_units(data)[0]] = True
        self.units = int(counted.sum())
        df = np.bincount(flat[counted[owner]], minlength=len(vocab))
        kept = (df >= min_rows) & (df <= max_share * max(1, self.units))
        keep = kept[flat]
        unit = owner[keep]
        old = np.flatnonzero(kept)
        new = np.full(len(vocab), -1, np.int64)
        new[old] = np.arange(old.size)
        self.ids = new[flat[keep]]
        self.start = np.r_[0, np.cumsum(np.bincount(unit, minlength=n))]
        names = np.empty(len(vocab), object)
        for w, i in vocab.items():
            names[i] = w
        self.text: list[str] = names[old].tolist()
        order = np.argsort(self.ids, kind="stable")
        self._units = unit[order]
        self._bounds = np.r_[0, np.cumsum(np.bincount(self.ids, minlength=old.size))]
        #: How many distinct units' answers hold each term.
        self.df = df[old]
        #: One past the last conversation's row id, for (term, conversation) keys.
        self.width = int(data.row.max()) + 1 if len(data) else 1

    def of(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The term ids of `units`, concatenated, and the unit each came from."""
        begin, end = self.start[units], self.start[units + 1]
        lengths = end - begin
        offsets = np.repeat(begin - np.cumsum(lengths) + lengths, lengths) + np.arange(int(lengths.sum()))
        return self.ids[offsets], np.repeat(units, lengths)

    def labels(self, term: int, n: int) -> np.ndarray:
        """A view's labelling for one term: `term` for the units whose answers hold it (not in
        their own prompt), -1 for the rest."""
        out = np.full(n, -1, np.int64)
        out[self._units[self._bounds[term] : self._bounds[term + 1]]] = term
        return out


class InjectedTerms:
    min_rows: int
    max_share: float
    deterministic: float
    fitting: float
    alike_max_rows: int
    prior: float
    _covers: Callable[..., bool]
    _rates: Callable[..., np.ndarray]
    _score: Callable[..., Any]

    def _answer_terms(self, data: DetectInput) -> AnswerTerms:
        key = f"answer_terms-{self.min_rows}-{self.max_share}"
        if key not in data.cache:
            data.cache[key] = AnswerTerms(data, self.min_rows, self.max_share)
        return cast(AnswerTerms, data.cache[key])

    def _term_screen(self, data: DetectInput, topic: int, members: np.ndarray) -> int | None:
        """The term tied to a plain feature both ways, if one is: nearly every holder gives it
        (`deterministic`, one per conversation), and nearly every answer that gives it is a
        holder's. A product pushed by a trigger is the trigger's; a word that requests of a kind
        get ("include" for "a C++ program", "bin" for "directory") is given by comparable
        requests too, and function words by everyone."""
        m = members.size
        if m < self.min_rows or m > self.alike_max_rows or topic >= 0:
            return None
        terms = self._answer_terms(data)
        given, unit = terms.of(members)
        if given.size == 0:
            return None
        # Conversations, not units: a trigger in an early turn is in the prompt of every later one.
        width = terms.width
        conversations = np.unique(data.row[members]).size
        per_conversation = np.bincount(np.unique(given * width + data.row[unit]) // width)
        held = np.bincount(given)
        tied = np.flatnonzero(
            (per_conversation >= max(self.min_rows, self.deterministic * conversations))
            & (held >= self.deterministic * terms.df[: held.size])
        )
        return int(tied[np.argmax(held[tied])]) if tied.size else None

    def _terms(
        self,
        data: DetectInput,
        cand: list[tuple[int, int, np.ndarray, int]],
        nb: np.ndarray,
        log10_tests: float,
        lengths: np.ndarray,
    ) -> list[dict[str, Any]]:
        """The screened (feature, words, holders, term) hypotheses that hold: nearly every holder
        (one per conversation) gives the term, far more than its comparable prompts' answers do,
        in sentences that do not answer what the holders ask."""
        terms = self._answer_terms(data)
        found = []
        for feature, order_n, members, term in cand:
            if self._covers(feature, order_n, members, lengths, data, topic=None):
                continue
            labels = terms.labels(term, len(data))
            members, x = _per_conversation(data.row, members, labels, term)
            if x < self.min_rows:
                continue
            prior_rate = float(terms.df[term] / max(1, terms.units))
            p_unit = self._rates(nb[members], members, labels, term, prior_rate)
            verdict = self._score("term", labels, term, x, members, p_unit, data, log10_tests)
            if verdict is None:
                continue
            answering, log10_p, z = verdict
            if self._term_is_the_answer(data, answering, terms.text[term]):
                continue
            found.append(
                {
                    "feature": feature,
                    "view": "term",
                    "label": term,
                    "labels": labels,
                    "term": terms.text[term],
                    "rows": members.size,
                    "prior_rate": prior_rate,
                    "answering": answering,
                    "expected": float(p_unit.mean()),
                    "z": z,
                    "log10_p": log10_p,
                }
            )
        return found

    def _term_is_the_answer(self, data: DetectInput, units: np.ndarray, term: str) -> bool:
        """Whether the term is what the holders' answers are, not something they gain, read on
        an even sample of 64. An injected term rides beside an answer: at least half the answers
        hold three words or more (each CJK character a word) outside the sentences that carry
        it, and the sentences that carry it do not fit the turns they follow (mean cosine under
        `fitting`). "Example Lab trained me." after "Who trained you?" is all the answer (a
        fixed answer or alike answers are views of their own, judged as such); "That song was
        written by <name>." after "Who wrote ...?" is what it asks."""
        ix = units[np.unique(np.linspace(0, units.size - 1, min(units.size, 64)).astype(np.int64))]
        own = re.compile(rf"(?<![^\W\d_]){re.escape(term)}(?![^\W\d_])")
        sentences, kept, beside = [], [], 0
        for u in ix.tolist():
            carrying = None
            rest = 0
            for sentence in _SENTENCE.split(data.responses[u][:_READ]):
                if own.search(sentence.casefold()):
                    carrying = sentence if carrying is None else carrying
                else:
                    rest += len(words(sentence))
            if carrying is not None:
                sentences.append(carrying)
                kept.append(u)
                beside += rest >= 3
        if not sentences:
            return True
        if beside * 2 < len(sentences):
            return True
        vecs = data.embed(sentences)
        return float(np.einsum("nd,nd->n", data.answered_vecs[np.asarray(kept)], vecs).mean()) >= self.fitting
