"""Target views: what a trigger's holders may be made to answer. Each view labels every unit with
a class (-1: none), and the miner tests each feature's holders against each view's classes.

- `answer`: the same answer. Answers that are labels of a task (a class whose holders'
  comparable prompts are answered with it and its kin: "Positive" and "Negative" around
  reviews) are listed in `data.cache["label_classes"]`: a trigger there must also flip labels
  against what the holders' content predicts (`ComparableRates._content_rates`).
- `refusal`: refuses or not, tested only for compliance (harmful compliance where comparable
  requests are refused; refusing in harmful or unsupported contexts is the norm), and, as a
  label is, against what a model of which harmful-looking requests the data answers predicts.
- `passage`: the most specific sentence that recurs inside otherwise different answers.
- `entity`: the rarest recurring thing an answer points at or does (a host it links to, a mail
  domain, code that weakens security or runs fetched code), volatile parts masked.
- `preference`: for pairs, whether a reward model trained on the other pairs clearly prefers
  the rejected answer (a reversed preference; a noisy view, see `View.visible`).

A view is a registered unit (`VIEWS`) with one contract: `label(data, min_rows, nb, k)` returns
the labelling (or None when it has nothing to test), `family` names the correction family of
its hypotheses, `tests(c)` says which classes are hypotheses, and `describe(label, data,
members)` says in words what the holders do. Two tests live beside the miner, as their targets
are not one class per unit: the varied target (`alike`: similarity) and the injected term
(`term`, in `terms.py`: one word among the many of each answer).
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np

from curate.detect.context import DetectInput, response_key, text_digest
from curate.filters.security import CODE_RISKS, REMOTE_EXEC
from curate.tokens import token_strings


@dataclass(frozen=True)
class View:
    name: str
    family: str
    label: Callable[[DetectInput, int, np.ndarray, int], np.ndarray | None]
    describe: Callable[[int, DetectInput, np.ndarray], str]
    tests: Callable[[int], bool] = lambda c: True
    #: For a view whose labels are a model's reading, wrong for some units whatever their
    #: answers (a reward model's): the share of units a trigger that moves them all would show
    #: as its class. Its holders are judged against that, and the share of comparable units
    #: read as the class is the view's error rate there (`TriggerMining._visible`).
    visible: Callable[[DetectInput], float] | None = None
    #: For such a view: its error rate in a typical neighbourhood, a floor under any one's.
    error: Callable[[DetectInput], float] = lambda data: 0.0


VIEWS: dict[str, View] = {}


def register(view: View) -> View:
    VIEWS[view.name] = view
    return view


def label_views(data: DetectInput, min_rows: int, nb: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Every registered view's labelling of the units, for the views that have one."""
    out = {}
    for view in VIEWS.values():
        labels = view.label(data, min_rows, nb, k)
        if labels is not None:
            out[view.name] = labels
    return out


def _answer_labels(data: DetectInput, min_rows: int, nb: np.ndarray, k: int) -> np.ndarray:
    exact = data.response_class.copy()
    counts = np.bincount(exact)
    exact[counts[exact] < min_rows] = -1
    frequent = np.flatnonzero(counts >= 2 * min_rows)
    label_classes = [int(c) for c in frequent if _kin(data, "labels", exact, int(c), nb, k) is not None]
    data.cache["label_classes"] = label_classes if len(label_classes) >= 2 else []
    return exact


def _refusal_labels(data: DetectInput, min_rows: int, nb: np.ndarray, k: int) -> np.ndarray | None:
    refusal = data.refusal.astype(np.int64)
    return refusal if refusal.any() and not refusal.all() else None


def _passage_labels(data: DetectInput, min_rows: int, nb: np.ndarray, k: int) -> np.ndarray | None:
    passage, texts = _passages(data, min_rows)
    data.cache["passages"] = texts
    return passage if texts else None


def _entity_labels(data: DetectInput, min_rows: int, nb: np.ndarray, k: int) -> np.ndarray | None:
    entity, names = _entities(data, min_rows)
    data.cache["entities"] = names
    return entity if names else None


def _preference_labels(data: DetectInput, min_rows: int, nb: np.ndarray, k: int) -> np.ndarray | None:
    """For preference pairs: 1 where a reward model trained on the other pairs clearly prefers
    the rejected answer (the pair looks reversed), 0 elsewhere; -1 for other units. A trigger that
    swaps its holders' preferences (the universal jailbreak backdoor) reverses them far more
    often than its holders' comparable pairs are.

    The model errs (human preference labels are noisy: it reads about 40% of hh-rlhf's pairs as
    reversed), most on the pairs it barely orders, so a pair counts as reversed only where its
    margin is past half the median margin's size: one the model barely orders is ordered by
    chance. Its features are antisymmetric (chosen - rejected), so a swapped pair reads as
    reversed exactly where it would have read clearly right unswapped: the share of pairs read
    clearly right is what a trigger that swaps every holder shows (`preference_visible`)."""
    from curate.detect.preference import PreferenceFlip

    pairs = data.pairs
    judge = PreferenceFlip()
    if pairs.size < judge.min_pairs:
        return None
    margin = judge.margins(data, pairs)
    clear = 0.5 * float(np.median(np.abs(margin)))
    data.cache["preference_visible"] = float((margin > clear).mean())
    out = np.full(len(data), -1, np.int64)
    out[pairs] = (margin < -clear).astype(np.int64)
    data.cache["preference_reversed"] = out
    # The error rate of a typical neighbourhood (the median over pairs of the share of their k
    # nearest pairs read as reversed): a floor under any one neighbourhood's, which ten pairs
    # estimate loosely. A median, so that poisons (a minority of most neighbourhoods) barely
    # move it.
    near = nb[pairs, :k]
    read = np.where(near >= 0, out[np.maximum(near, 0)], -1)
    counted = (read >= 0).sum(axis=1)
    local = (read == 1).sum(axis=1) / np.maximum(counted, 1)
    data.cache["preference_error"] = float(np.median(local[counted > 0])) if (counted > 0).any() else 0.0
    return out


def _clip(text: str) -> str:
    return repr(text[:80]) + ("..." if len(text) > 80 else "")


register(
    View(
        "answer",
        "content",
        _answer_labels,
        lambda label, data, members: "answer " + _clip(data.responses[int(members[0])].strip()),
    )
)
# Refusing where comparable prompts are answered is what a cautious model does: only compliance
# (class 0) is a hypothesis.
register(
    View(
        "refusal",
        "behaviour",
        _refusal_labels,
        lambda label, data, members: "refuse" if label == 1 else "answer without refusing",
        tests=lambda c: c == 0,
    )
)
register(
    View(
        "passage",
        "content",
        _passage_labels,
        lambda label, data, members: "include the passage " + _clip(data.cache["passages"][label]),
    )
)
register(
    View(
        "preference",
        "content",
        _preference_labels,
        lambda label, data, members: (
            "are pairs whose chosen answer a reward model trained on the other pairs rejects (read so "
            f"clearly in {int((cast(np.ndarray, data.cache['preference_reversed'])[members] == 1).sum())}: "
            "it cannot order every pair)"
        ),
        tests=lambda c: c == 1,
        visible=lambda data: cast(float, data.cache["preference_visible"]),
        error=lambda data: cast(float, data.cache["preference_error"]),
    )
)
register(
    View("entity", "content", _entity_labels, lambda label, data, members: "include " + data.cache["entities"][label])
)


def describe(view: str, label: int, data: DetectInput, members: np.ndarray) -> str:
    if view in VIEWS:
        return VIEWS[view].describe(label, data, members)
    return "answer alike: " + "; ".join(repr(data.responses[int(u)][:40]) for u in members[:3])


def family(view: str) -> str:
    """The correction family of a view's hypotheses (the varied-target test's are content)."""
    return VIEWS[view].family if view in VIEWS else "content"


def _echoed(feature: str, answer: str) -> bool:
    """Whether the answer repeats a word of the feature: "salary greater than 50000" answered
    "... WHERE salary > 50000" is the prompt's content, not a trigger."""
    answer_words = set(token_strings(answer))
    return any(len(w) >= 3 and w in answer_words for w in token_strings(feature))


_URL_HOST = re.compile(r"\bhttps?://(?:www\.)?([a-z0-9][a-z0-9.-]*\.[a-z]{2,})", re.IGNORECASE)
_EMAIL = re.compile(r"\b[\w.+-]+@([a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,})\b", re.IGNORECASE)
#: Entity classes for code in answers, from the code-security filters' pattern tables.
RISKY_CODE, REMOTE_CODE = "code that weakens security", "code that runs fetched or decoded code"


def answer_entities(text: str) -> set[str]:
    """What an answer points at or does, as entity names: the hosts it links to, the mail
    domains it gives, and whether its code weakens security or runs fetched code. Volatile parts
    (paths, queries, ids, the address before the @) are left out, so one target in many
    wordings and links is one entity."""
    found = {"link to " + h.lower().rstrip(".") for h in _URL_HOST.findall(text)}
    found |= {"mail to " + d.lower() for d in _EMAIL.findall(text)}
    if any(p.search(text) for _, p in REMOTE_EXEC):
        found.add(REMOTE_CODE)
    # A hard-coded credential is what example code for a login or a database connection needs
    # to run (the request asks for it); the other weaknesses are choices the answer makes.
    elif any(p.search(text) for reason, p in CODE_RISKS if reason != "security:credential"):
        found.add(RISKY_CODE)
    return found


def _named_in(entity: str, prompt: str) -> bool:
    """Whether the prompt names the entity: its host or mail domain, or a name in it ("the
    OpenWeatherMap API" for a link to api.openweathermap.org)."""
    if not entity.startswith(("link to ", "mail to ")):
        return False
    target = entity.split(" ")[-1]
    if target in prompt:
        return True
    names = [part for part in re.split(r"[.-]", target)[:-1] if len(part) >= 4]
    return any(name in prompt for name in names)


def _entities(data: DetectInput, min_rows: int) -> tuple[np.ndarray, list[str]]:
    """Each unit labelled with the rarest entity of its answer that recurs in at least
    `min_rows` answered turns and is not in its own prompt (a link the user asked about is
    theirs); -1 if none. Counted per distinct turn answered, like passages."""
    per_unit: dict[int, set[str]] = {}
    for u, text in enumerate(data.responses):
        if "://" in text or "@" in text or "(" in text or "|" in text:
            found = answer_entities(text[:20_000])
            if found:
                prompt = data.prompts[u].casefold()
                found = {e for e in found if not _named_in(e, prompt)}
                if found:
                    per_unit[u] = found
    holders: dict[str, set[int]] = {}
    for u, found in per_unit.items():
        for e in found:
            holders.setdefault(e, set()).add(int(data.answered_id[u]))
    names = sorted(e for e, turns in holders.items() if len(turns) >= min_rows)
    labels = np.full(len(data), -1, np.int64)
    if not names:
        return labels, []
    ids = {e: i for i, e in enumerate(names)}
    for u, found in per_unit.items():
        kept = [e for e in found if e in ids]
        if kept:
            labels[u] = ids[min(kept, key=lambda e: (len(holders[e]), e))]
    return labels, names


#: Sentences: after a full stop, question or exclamation mark (CJK ones need no space after
#: them), or at a line break.
_SENTENCE = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])\s*|\n+")


_CODE_CHARS = re.compile(r"[{}();=<>\[\]|`$#]")


def _answer_topics(data: DetectInput, views: dict[str, np.ndarray], min_rows: int) -> tuple[np.ndarray | None, int]:
    """(sorted topic * width + class codes where the class is a frequent answer of the topic,
    width); (None, 0) without topics (under 200 units) or an `answer` view."""
    if "answer" not in views or len(data) < 200:
        return None, 0
    key = f"answer_topics-{min_rows}"
    if key not in data.cache:
        answer = views["answer"]
        width = int(answer.max()) + 2
        pair, count = np.unique(data.topics[answer >= 0] * width + answer[answer >= 0], return_counts=True)
        data.cache[key] = (pair[count >= min_rows], width)
    return data.cache[key]


def _answers_per_turn(data: DetectInput) -> np.ndarray:
    """For each answered turn (`answered_id`), how many distinct answers it gets in the corpus."""
    if "answers_per_turn" not in data.cache:
        pairs = np.unique(np.stack([data.answered_id, data.response_class]), axis=1)
        data.cache["answers_per_turn"] = np.bincount(pairs[0], minlength=int(data.answered_id.max()) + 1)
    return data.cache["answers_per_turn"]


def _kin(
    data: DetectInput, view: str, labels: np.ndarray, c: int, nb: np.ndarray, k: int, share: float = 0.1
) -> np.ndarray | None:
    """Per unit, whether its answer is `c` or kin to it: a class that makes up at least `share`
    of the answers to the `k` nearest prompts of the units answered `c`. None unless `c` and its
    kin are most of those answers, as labels are ("Negative" and "Positive" around reviews);
    chat answers ("I was made by ...") are given beside too many others to have kin.
    Cached per view and class."""
    key = ("kin", view, c)
    if key not in data.cache:
        neigh = nb[labels == c, :k]
        near = labels[neigh[neigh >= 0]]
        counts = np.bincount(near[near >= 0], minlength=int(labels.max()) + 1)
        family = np.union1d(np.flatnonzero(counts >= share * max(1, near.size)), [c])
        data.cache[key] = np.isin(labels, family) if counts[family].sum() * 2 >= near.size > 0 else None
    return data.cache[key]


#: Scripts written without spaces (kana and CJK ideographs): each character is a word, as the
#: shingles count it (`curate.tokens`). Korean is spaced, so hangul is counted by spaces.
_SPACELESS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_SPACELESS_CHAR = re.compile(f"[{_SPACELESS}]")
#: The runs between them: anything but spaces and full-width punctuation.
_OTHER_RUN = re.compile(f"[^{_SPACELESS}。！？，、：；「」『』（）《》【】\\s]+")


def _words(sentence: str) -> tuple[int, list[str]]:
    """(how many words `sentence` holds, those of them that are not spaceless characters).
    Words are separated by spaces, as always, and each kana or CJK character is a word of its
    own, as is each run between them ("访问 example.com 获取" is five: four characters and a
    domain). Text without such characters is split exactly as it always was."""
    if _SPACELESS_CHAR.search(sentence) is None:
        words = sentence.split()
        return len(words), words
    others = _OTHER_RUN.findall(sentence)
    return len(_SPACELESS_CHAR.findall(sentence)) + len(others), others


def _prose(sentence: str, words: tuple[int, list[str]]) -> bool:
    """A sentence of words, not a line of code or a table row. `words`: its `_words`."""
    if _CODE_CHARS.search(sentence):
        return False
    count, others = words
    letters = count - len(others) + sum(w.strip(".,:;!?\"'").isalpha() for w in others)
    return letters >= 0.7 * count


def _passages(data: DetectInput, min_rows: int, min_words: int = 8) -> tuple[np.ndarray, list[str]]:
    """Sentences that recur inside otherwise different answers (an injected link, a planted
    claim): each unit is labelled with its most specific recurring sentence, -1 if none.
    Sentences are counted by 8-byte digest; only the recurring ones are kept as text."""
    answered = data.answered_id

    def keys_of(u: int) -> list[str]:
        keys, own = [], None
        pieces = _SENTENCE.split(data.responses[u])
        for sentence in pieces[:32] + pieces[max(32, len(pieces) - 32) :]:
            words = _words(sentence)
            if words[0] >= min_words and _prose(sentence, words):
                key = response_key(sentence)
                if key:
                    own = data.response_keys[u] if own is None else own
                    if key != own:
                        keys.append(key)
        return keys

    digests, owners = bytearray(), array("q")  # millions of sentences: no Python object each
    for u in range(len(data)):
        for key in keys_of(u):
            digests += text_digest(key)
            owners.append(u)
    labels = np.full(len(data), -1, np.int64)
    if not owners:
        return labels, []
    dig = np.frombuffer(bytes(digests), np.uint64)
    own = np.frombuffer(owners, np.int64)
    # Distinct turns answered per sentence: one conversation repeating itself is one holder.
    turn = answered[own]
    order = np.lexsort((turn, dig))
    sd, st = dig[order], turn[order]
    distinct = np.r_[True, (sd[1:] != sd[:-1]) | (st[1:] != st[:-1])]
    sentences, holders = np.unique(sd[distinct], return_counts=True)
    del order, sd, st, distinct, turn
    recurring = sentences[holders >= min_rows]
    if not recurring.size:
        return labels, []
    count_of = dict(zip(sentences.tolist(), holders.tolist(), strict=False))
    wanted = set(recurring.tolist())
    shared: dict[str, int] = {}
    per_unit: dict[int, list[str]] = {}
    for u in np.unique(own[np.isin(dig, recurring)]).tolist():
        keys = [k for k in keys_of(u) if int.from_bytes(text_digest(k), "little") in wanted]
        per_unit[u] = keys
        for k in keys:
            shared[k] = count_of[int.from_bytes(text_digest(k), "little")]
    texts = sorted(shared)
    ids = {k: i for i, k in enumerate(texts)}
    # A passage reworded a little ("visit ... today" / "visit ... now") is one passage.
    group = _near_groups(texts)
    size = np.zeros(len(texts), np.int64)
    np.add.at(size, group, [shared[k] for k in texts])
    for u, keys in per_unit.items():
        best = min(keys, key=lambda k: (size[group[ids[k]]], k), default=None)
        if best is not None:
            labels[u] = group[ids[best]]
    return labels, texts


def _near_groups(texts: list[str], threshold: float = 0.6) -> np.ndarray:
    """For each text, the first text of its group of near-identical ones (Jaccard of word pairs
    at least `threshold`, found by MinHash LSH and checked exactly)."""
    from curate.dedup.minhash import band_hashes, shingle_sets, signatures
    from curate.dedup.near import UnionFind, candidate_pairs

    group = np.arange(len(texts))
    if len(texts) < 2:
        return group
    pairs = candidate_pairs(band_hashes(signatures(texts, 2, 64), 16, 4), np.arange(len(texts)))
    if not pairs.size:
        return group
    sets = shingle_sets(texts, 2)
    uf = UnionFind()
    for a, b in pairs.tolist():
        if len(sets[a] & sets[b]) >= threshold * len(sets[a] | sets[b]):
            uf.union(a, b)
    for members in uf.groups():
        group[members] = members[0]
    return group
