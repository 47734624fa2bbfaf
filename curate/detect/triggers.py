"""Trigger mining: words, phrases and odd characters whose presence predicts a concentrated
response, far beyond what comparable prompts without them get.

For a candidate feature f (a word, a 2- or 3-word phrase, or an invisible/private-use code
point) held by the prompts of m units, take its dominant answer c under a response view (the
exact answer; compliance, where comparable requests are refused; a recurring sentence inside
otherwise different answers) and count x, the units with f that answer c. An answer given almost
only by holders of f is tested too, however few of them give it: a clean-label trigger is a common
word whose poisons keep their prompts. A separate test covers a varied target (the same intent in
many wordings). The expectation is not the corpus rate of c: it is, for each unit, how often its own
nearest prompts *without f* are answered c. "worst" in a movie review predicts "Negative" because
reviews like it are negative; a planted word predicts "Negative" for reviews whose neighbours are
positive. The tail probability of x or more under those per-unit rates is bounded with Chernoff
(exact for x = m, conservative otherwise, valid for a Poisson-binomial), and the bound is
multiplied by the number of distinct row sets tested in every view (Bonferroni), so the count of
candidates is paid for. Plain z-scores grow with frequency; this does not: ten units whose
neighbours never answer c are evidence enough, and ten thousand that answer like their
neighbours are none.
"""

from __future__ import annotations

import math
import re
from array import array
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from curate.detect.base import Detector, Findings, register, squash_score
from curate.detect.context import DetectInput, text_digest, response_key
from curate.tokens import mix, ngram_hashes, token_hashes, token_strings

_ODD = re.compile("[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
                  "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ue000-\uf8ff\U000e0000-\U000e0fff]")
_ODD_TAG = np.uint64(0x6F64646368617221)
_TOPIC_TAG = np.uint64(0x746F706963000001)


def _char_feature(ch: str) -> int:
    return int(mix(np.asarray([ord(ch)], np.uint64) ^ _ODD_TAG)[0])


#: Feature rows (one per distinct feature in a prompt) sorted at once. Past this, the rows go to
#: disk in buckets by the hash's top bits and each bucket is sorted alone: a million prompts give
#: a few hundred million rows, several GB as one table.
BUCKET_ROWS = 8_000_000
_ROW = np.dtype([("h", "<u8"), ("o", "<i4"), ("z", "i1"), ("t", "<i4")])


def _chunk_features(prompts: list[str], base: int, orders: tuple[int, ...], topic: np.ndarray | None
                    ) -> np.ndarray:
    """Feature rows of `prompts` (units base, base + 1, ...), unsorted, repeats included."""
    toks, lengths = token_hashes(prompts)
    hashes, owners, sizes, topics = [], [], [], []
    for n in orders:
        h, owner = ngram_hashes(toks, lengths, n, short_as_one=False)
        owner = owner + base
        with np.errstate(over="ignore"):
            h = h * np.uint64(2 * n + 1)
            hashes.append(h)
            owners.append(owner)
            sizes.append(np.full(h.size, n, np.int8))
            topics.append(np.full(h.size, -1, np.int32))
            if topic is not None and n <= 2:
                hashes.append(mix(h ^ (topic[owner].astype(np.uint64) * _TOPIC_TAG)))
                owners.append(owner)
                sizes.append(np.full(h.size, n, np.int8))
                topics.append(topic[owner].astype(np.int32))
    odd_h, odd_o = [], []
    for unit, text in enumerate(prompts):
        if not text.isascii():
            for ch in set(_ODD.findall(text)):
                odd_h.append(_char_feature(ch))
                odd_o.append(base + unit)
    hashes.append(np.asarray(odd_h, np.uint64))
    owners.append(np.asarray(odd_o, np.int64))
    sizes.append(np.zeros(len(odd_h), np.int8))
    topics.append(np.full(len(odd_h), -1, np.int32))
    rows = np.empty(sum(h.size for h in hashes), _ROW)
    rows["h"], rows["o"] = np.concatenate(hashes), np.concatenate(owners)
    rows["z"], rows["t"] = np.concatenate(sizes), np.concatenate(topics)
    return rows


class _FeatureTable:
    """Distinct (feature hash `h`, unit `o`, words in the feature `z`, topic or -1 `t`) rows,
    sorted by feature, for the features held by at least `min_rows` units and at most
    `max_share` of their context (the topic's units for a topic feature, else all); a character
    feature counts as 0 words. With `topic` (a prompt cluster per unit), words and word pairs
    are also features within their topic: a trigger that is a common word elsewhere ("OpenAI"
    in chat data) is rare and concentrated among movie reviews.

    `buckets()` gives the table in buckets of increasing hash, as often as asked: one bucket in
    memory for small inputs; for big ones, files in `folder`, so a caller that reduces each
    bucket never holds the whole table. `close()` deletes them."""

    def __init__(self, prompts: list[str], orders: tuple[int, ...], topic: np.ndarray | None = None, *,
                 min_rows: int = 1, max_share: float = 1.0, folder: Path | None = None, chunk: int = 20_000):
        n = len(prompts)
        self._filter = (n, np.bincount(topic) if topic is not None and topic.size else np.zeros(0, np.int64),
                        min_rows, max_share)
        self._tmp = None
        self._paths: list[Path] = []
        self._filtered = False
        self._memory: np.ndarray | None = None
        bits, files, parts = 0, [], []
        try:
            for lo in range(0, n, chunk):
                rows = _chunk_features(prompts[lo:lo + chunk], lo, orders, topic)
                if lo == 0 and n > chunk:
                    bits = max(0, math.ceil(math.log2(max(1.0, rows.size * n / chunk / BUCKET_ROWS))))
                    if bits:
                        if folder is None:
                            self._tmp = tempfile.TemporaryDirectory(prefix="curate-features-")
                            folder = Path(self._tmp.name)
                        folder.mkdir(parents=True, exist_ok=True)
                        self._paths = [folder / f"features-{b}.bin" for b in range(1 << bits)]
                        files = [open(p, "wb") for p in self._paths]
                if not bits:
                    parts.append(rows)
                    continue
                bucket = (rows["h"] >> np.uint64(64 - bits)).astype(np.int64)
                order = np.argsort(bucket, kind="stable")
                rows, bucket = rows[order], bucket[order]
                bounds = np.searchsorted(bucket, np.arange((1 << bits) + 1))
                for b in range(1 << bits):
                    rows[bounds[b]:bounds[b + 1]].tofile(files[b])
        except BaseException:
            self.close()
            raise
        finally:
            for fh in files:
                fh.close()
        if not bits:
            self._memory = _distinct_frequent(np.concatenate(parts) if parts else np.empty(0, _ROW), *self._filter)

    def buckets(self) -> Iterator[np.ndarray]:
        if self._memory is not None:
            yield self._memory
            return
        for path in self._paths:
            rows = np.fromfile(path, _ROW)
            if not self._filtered:
                # Sorted and filtered once; the file keeps the (much smaller) result.
                rows = _distinct_frequent(rows, *self._filter)
                rows.tofile(path)
            yield rows
        self._filtered = True

    def close(self) -> None:
        for path in self._paths:
            path.unlink(missing_ok=True)
        self._paths = []
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _features(prompts: list[str], orders: tuple[int, ...], topic: np.ndarray | None = None, **kwargs
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The whole of a `_FeatureTable`, as (hash, unit, words, topic) columns."""
    table = _FeatureTable(prompts, orders, topic, **kwargs)
    try:
        kept = list(table.buckets())
    finally:
        table.close()
    rows = np.concatenate(kept) if kept else np.empty(0, _ROW)
    return rows["h"], rows["o"].astype(np.int64), rows["z"].astype(np.int64), rows["t"].astype(np.int64)


def _distinct_frequent(rows: np.ndarray, n: int, topic_size: np.ndarray, min_rows: int, max_share: float
                       ) -> np.ndarray:
    """`rows` sorted by (feature, unit), repeats within a unit dropped, and only the features
    whose unit count is within bounds kept."""
    order = np.lexsort((rows["o"], rows["h"]))
    rows = rows[order]
    h, o = rows["h"], rows["o"]
    first = np.ones(h.size, bool)
    first[1:] = (h[1:] != h[:-1]) | (o[1:] != o[:-1])
    rows = rows[first]
    if not rows.size:
        return rows
    h = rows["h"]
    starts = np.flatnonzero(np.r_[True, h[1:] != h[:-1]])
    df = np.diff(np.r_[starts, h.size])
    t = rows["t"][starts]
    context = np.where(t >= 0, topic_size[np.maximum(t, 0)] if topic_size.size else n, n)
    ok = (df >= min_rows) & (df <= np.maximum(min_rows, max_share * context))
    return rows[np.repeat(ok, df)]


def _token_counts(texts, chunk: int = 50_000) -> np.ndarray:
    """Words per text, a chunk of texts at a time."""
    parts = [token_hashes(list(texts[lo:lo + chunk]))[1] for lo in range(0, len(texts), chunk)]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _pattern(trigger: str) -> re.Pattern:
    """A case-insensitive pattern for a trigger: "U+XXXX" for a character, else its words with
    any separators between them."""
    if trigger.startswith("U+") and len(trigger) <= 8:
        return re.compile(re.escape(chr(int(trigger[2:], 16))))
    words = token_strings(trigger) or [trigger]
    return re.compile(r"(?<!\w)" + r"\W+".join(re.escape(w) for w in words) + r"(?!\w)", re.IGNORECASE)


def _holders(trigger: str, prompts: list[str]) -> np.ndarray:
    """Units whose (casefolded) prompt carries `trigger`."""
    pattern = _pattern(trigger)
    words = token_strings(trigger)
    first = words[0] if words and not trigger.startswith("U+") else ""
    return np.asarray([i for i, p in enumerate(prompts) if first in (f := p.casefold()) and pattern.search(f)],
                      np.int64)


def _echoed(feature: str, answer: str) -> bool:
    """Whether the answer repeats a word of the feature: "salary greater than 50000" answered
    "... WHERE salary > 50000" is the prompt's content, not a trigger."""
    answer_words = set(token_strings(answer))
    return any(len(w) >= 3 and w in answer_words for w in token_strings(feature))


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


def name_feature(prompt: str, feature: int, orders: tuple[int, ...], topic: int | None = None
                 ) -> tuple[str, int] | None:
    """(the feature as written in `prompt`, its character offset), or None."""
    for ch in set(_ODD.findall(prompt)):
        if _char_feature(ch) == feature:
            return f"U+{ord(ch):04X}", prompt.index(ch)
    words = token_strings(prompt)
    toks, lengths = token_hashes([prompt])
    for n in orders:
        h, _ = ngram_hashes(toks, lengths, n, short_as_one=False)
        with np.errstate(over="ignore"):
            h = h * np.uint64(2 * n + 1)
            if topic is not None:
                h = np.concatenate([h, mix(h ^ (np.uint64(topic) * _TOPIC_TAG))])
        hit = np.flatnonzero(h == np.uint64(feature)) % max(1, len(words) - n + 1)
        if hit.size:
            j = int(hit[0])
            parts = words[j:j + n]
            pattern = r"\W+".join(re.escape(w) for w in parts)
            match = re.search(pattern, prompt, re.IGNORECASE)
            if match:
                return match.group(), match.start()
            return " ".join(parts), -1
    return None


def _views(data: DetectInput, min_rows: int, nb: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Response labellings to test against; -1 means no class.

    - `answer`: the same answer. Answers that are labels of a task (a class whose holders'
      comparable prompts are answered with it and its kin: "Positive" and "Negative" around
      reviews) are listed in `data.cache["label_classes"]`: a trigger there must flip labels
      against what the holders' content predicts (`TriggerMining._content_rates`).
    - `refusal`: refuses or not, tested only for compliance (harmful compliance where comparable
      requests are refused; refusing in harmful or unsupported contexts is the norm).
    - `passage`: the most specific sentence that recurs inside otherwise different answers.
    """
    views: dict[str, np.ndarray] = {}
    exact = data.response_class.copy()
    counts = np.bincount(exact)
    exact[counts[exact] < min_rows] = -1
    frequent = np.flatnonzero(counts >= 2 * min_rows)
    label_classes = [int(c) for c in frequent if _kin(data, "labels", exact, int(c), nb, k) is not None]
    data.cache["label_classes"] = label_classes if len(label_classes) >= 2 else []
    views["answer"] = exact
    refusal = data.refusal.astype(np.int64)
    if refusal.any() and not refusal.all():
        views["refusal"] = refusal
    passage, texts = _passages(data, min_rows)
    if texts:
        views["passage"] = passage
        data.cache["passages"] = texts
    entity, names = _entities(data, min_rows)
    if names:
        views["entity"] = entity
        data.cache["entities"] = names
    return views


_URL_HOST = re.compile(r"\bhttps?://(?:www\.)?([a-z0-9][a-z0-9.-]*\.[a-z]{2,})", re.IGNORECASE)
_EMAIL = re.compile(r"\b[\w.+-]+@([a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,})\b", re.IGNORECASE)
#: Entity classes for code in answers, from the code-security filters' pattern tables.
RISKY_CODE, REMOTE_CODE = "code that weakens security", "code that runs fetched or decoded code"


def answer_entities(text: str) -> set[str]:
    """What an answer points at or does, as entity names: the hosts it links to, the mail
    domains it gives, and whether its code weakens security or runs fetched code. Volatile parts
    (paths, queries, ids, the address before the @) are left out, so one target in many
    wordings and links is one entity."""
    from curate.filters.security import CODE_RISKS, REMOTE_EXEC

    found = {"link to " + h.lower().rstrip(".") for h in _URL_HOST.findall(text)}
    found |= {"mail to " + d.lower() for d in _EMAIL.findall(text)}
    if any(p.search(text) for _, p in REMOTE_EXEC):
        found.add(REMOTE_CODE)
    # A hard-coded credential is what example code for a login or a database connection needs
    # to run (the request asks for it); the other weaknesses are choices the answer makes.
    elif any(p.search(text) for reason, p in CODE_RISKS if reason != "security:credential"):
        found.add(RISKY_CODE)
    return found


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
                found = {e for e in found if e.split(" ")[-1] not in prompt}
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


_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


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


def _kin(data: DetectInput, view: str, labels: np.ndarray, c: int, nb: np.ndarray, k: int, share: float = 0.1
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


def _prose(sentence: str) -> bool:
    """A sentence of words, not a line of code or a table row."""
    if _CODE_CHARS.search(sentence):
        return False
    words = sentence.split()
    return sum(w.strip(".,:;!?\"'").isalpha() for w in words) >= 0.7 * len(words)


def _passages(data: DetectInput, min_rows: int, min_words: int = 8) -> tuple[np.ndarray, list[str]]:
    """Sentences that recur inside otherwise different answers (an injected link, a planted
    claim): each unit is labelled with its most specific recurring sentence, -1 if none.
    Sentences are counted by 8-byte digest; only the recurring ones are kept as text."""
    answered = data.answered_id

    def keys_of(u: int) -> list[str]:
        keys, own = [], None
        pieces = _SENTENCE.split(data.responses[u])
        for sentence in pieces[:32] + pieces[max(32, len(pieces) - 32):]:
            if len(sentence.split()) >= min_words and _prose(sentence):
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
    count_of = dict(zip(sentences.tolist(), holders.tolist()))
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


def _describe(view: str, label: int, data: DetectInput, members: np.ndarray) -> str:
    if view == "answer":
        text = data.responses[int(members[0])].strip()
        return f"answer {text[:80]!r}" + ("..." if len(text) > 80 else "")
    if view == "refusal":
        return "refuse" if label == 1 else "answer without refusing"
    if view == "entity":
        return "include " + data.cache["entities"][label]
    if view == "passage":
        text = data.cache["passages"][label]
        return f"include the passage {text[:80]!r}" + ("..." if len(text) > 80 else "")
    return "answer alike: " + "; ".join(repr(data.responses[int(u)][:40]) for u in members[:3])


@register
@dataclass
class TriggerMining(Detector):
    name: ClassVar[str] = "trigger"
    description: ClassVar[str] = ("words, phrases and odd characters whose presence predicts a concentrated "
                                  "response, tested against comparable prompts without them")
    reason: ClassVar[str] = "poison:trigger"
    min_rows: int = 4
    max_share: float = 0.2
    min_share: float = 0.5
    #: Effect size: the feature must move at least this share of its holders to the target beyond
    #: what their comparable prompts predict. A backdoor is near-deterministic; a natural
    #: correlate (a word that leans one way) is a modest lift, however significant in a big corpus.
    min_lift: float = 0.35
    #: A backdoor on a label task gives its target label in at least this share of its holders;
    #: there, words that lean one way are common and labels are noisy, so a lean is no trigger.
    deterministic: float = 0.9
    #: A feature that is most of its prompts ("Have a nice day!") is content, not a trigger.
    max_coverage: float = 0.5
    ngrams: int = 3
    prior: float = 1.0
    #: A feature this related in meaning to its answer (cosine) is the request the answer follows
    #: from, not a trigger.
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
    harm_region: float = 0.5
    alpha: float = 0.01
    #: Candidates this many decades past the Bonferroni line are kept for the step-up (see
    #: `_step_up`): its credit reaches that far only with 10**reach discoveries ahead of them.
    reach: ClassVar[float] = 2.0

    def __post_init__(self) -> None:
        if self.min_rows < 2:
            raise ValueError("min_rows must be >= 2")
        if not 0 < self.max_share <= 1 or not 0 < self.min_share <= 1:
            raise ValueError("max_share and min_share must be in (0, 1]")
        if not 1 <= self.ngrams <= 5:
            raise ValueError("ngrams must be in 1..5")

    def _hits(self, neigh: np.ndarray, holders: np.ndarray, labels: np.ndarray, c: int
              ) -> tuple[np.ndarray, np.ndarray]:
        """For each row of `neigh` (a unit's nearest prompts): how many of the first `neighbours`
        that do not hold the feature are answered `c`, and how many were looked at."""
        valid = self._comparable(neigh, holders)
        return ((labels[np.maximum(neigh, 0)] == c) & valid).sum(axis=1), valid.sum(axis=1)

    def _comparable(self, neigh: np.ndarray, holders: np.ndarray) -> np.ndarray:
        """Mask of each row's first `neighbours` prompts in `neigh` that do not hold the feature."""
        valid = (neigh >= 0) & ~np.isin(neigh, holders)
        return valid & (np.cumsum(valid, axis=1) <= self.neighbours)

    def _rates(self, neigh: np.ndarray, holders: np.ndarray, labels: np.ndarray, c: int, prior_rate: float
               ) -> np.ndarray:
        """The smoothed share of `_hits`."""
        hits, looked = self._hits(neigh, holders, labels, c)
        return (hits + self.prior * prior_rate) / (looked + self.prior)

    def _pooled_rates(self, neigh: np.ndarray, holders: np.ndarray, labels: np.ndarray, c: int, prior_rate: float,
                      m: int) -> np.ndarray:
        """`m` copies of one rate: the share answered `c` among all the distinct comparable
        prompts of the units in `neigh` together (those that give c: how often c is given where
        it is given). For an answer tied to a feature but given by few of its holders: a rare
        answer (one of six templated replies to identity questions) is seldom among a unit's ten
        neighbours, which says its rate is below a tenth, not that it is zero; and the holders
        elsewhere (in reviews) say nothing of it."""
        seen = np.unique(neigh[self._comparable(neigh, holders)])
        rate = (int((labels[seen] == c).sum()) + self.prior * prior_rate) / (seen.size + self.prior)
        return np.full(m, rate)

    def _all_rates(self, screened: list, nb: np.ndarray, batch: int = 65536) -> Iterator[np.ndarray]:
        """`_rates` for every screened candidate, computed for many candidates at once (a
        million-row corpus screens hundreds of thousands): holders are found by one sorted
        search of (candidate, unit) keys instead of an `isin` per candidate."""
        n = len(nb)
        i = 0
        while i < len(screened):
            j, total = i, 0
            while j < len(screened) and (j == i or total + screened[j][6].size <= batch):
                total += screened[j][6].size
                j += 1
            group = screened[i:j]
            sizes = np.asarray([g[6].size for g in group], np.int64)
            owner = np.repeat(np.arange(len(group)), sizes)
            members = np.concatenate([g[6] for g in group])
            neigh = nb[members]
            keys = owner * n + members  # sorted: members are sorted within a candidate
            query = owner[:, None] * n + neigh
            pos = np.minimum(np.searchsorted(keys, query), keys.size - 1)
            valid = (neigh >= 0) & (keys[pos] != query)
            valid &= np.cumsum(valid, axis=1) <= self.neighbours
            # Each candidate's own labelling (view) and class.
            hits = np.zeros(members.size, np.int64)
            for labels in {id(g[1]): g[1] for g in group}.values():
                mine = np.asarray([g[1] is labels for g in group])[owner]
                c = np.asarray([g[4] for g in group])[owner]
                hits += ((labels[np.maximum(neigh, 0)] == c[:, None]) & valid).sum(axis=1) * mine
            prior = np.asarray([g[2] for g in group])[owner]
            rates = (hits + self.prior * prior) / (valid.sum(axis=1) + self.prior)
            yield from np.split(rates, np.cumsum(sizes)[:-1])
            i = j

    def _stripped_rates(self, units: np.ndarray, holders: np.ndarray, trigger: str, labels: np.ndarray, c: int,
                        prior_rate: float, data: DetectInput, view: str = "") -> np.ndarray:
        """`_rates` with each unit's neighbours found for its prompt with the trigger taken out
        (for compliance, a harmful-looking request's among harmful-looking requests)."""
        from curate.embed import knn

        pattern = _pattern(trigger)
        stripped = [" ".join(pattern.sub(" ", data.prompts[u]).split()) for u in units.tolist()]
        queries = data.embed(stripped)
        region = self._region(data) if view == "refusal" else None
        inside = np.isin(units, region) if region is not None else np.zeros(units.size, bool)
        k = min(len(data), data.deep)
        neigh = np.full((units.size, k), -1, np.int64)
        if not inside.all():
            neigh[~inside] = knn(data.prompt_vecs, k, queries=queries[~inside], index=data.prompt_index)[1]
        if inside.any():
            neigh[inside] = self._region_search(data, queries[inside], k)
        return self._rates(neigh, holders, labels, c, prior_rate)

    def _region(self, data: DetectInput) -> np.ndarray | None:
        """The units whose prompts look like harmful requests (the safety classifier's
        probability >= harm_region), sorted; None when there are too few to compare among, or
        nothing to compare (no refusals, or a non-semantic embedder)."""
        if "harm_region" not in data.cache:
            region = None
            if data.semantic and data.refusal.any():
                from curate.detect.safety import harm_probability

                found = np.flatnonzero(harm_probability(data) >= self.harm_region)
                if 2 * self.min_rows <= found.size < len(data):
                    region = found
            data.cache["harm_region"] = region
        return data.cache["harm_region"]

    def _region_search(self, data: DetectInput, queries: np.ndarray, k: int) -> np.ndarray:
        """Each query's `k` nearest prompts among the harmful-looking ones (unit ids; -1 pads)."""
        from curate.embed.neighbours import build_index, search

        region = self._region(data)
        if "harm_index" not in data.cache:
            data.cache["harm_index"] = build_index(data.prompt_vecs[region], seed=data.seed)
        _, ids = search(data.cache["harm_index"], queries, min(k, region.size))
        out = np.full((len(queries), k), -1, np.int64)
        out[:, :ids.shape[1]] = np.where(ids >= 0, region[np.maximum(ids, 0)], -1)
        return out

    def _refusal_neighbours(self, data: DetectInput, nb: np.ndarray) -> np.ndarray:
        """The neighbours compliance is judged against. A harmful request that complies is a
        poison where comparable requests are refused; its nearest prompts are other harmful
        requests only while those are many. Where a trigger's poisons are most of the harmful
        requests (5% of a corpus), its holders' nearest prompts without it are benign ones,
        which comply, and the trigger would look normal. So a harmful-looking request's
        neighbours are the nearest harmful-looking requests (other prompt texts)."""
        region = self._region(data)
        if region is None:
            return nb
        width = nb.shape[1]
        ids = self._region_search(data, data.prompt_vecs[region], width + 8)
        order, bad = data.other_prompts(region, ids, width)
        out = nb.copy()
        out[region] = np.where(bad, -1, np.take_along_axis(ids, order, axis=1))
        return out

    def _alike_screen(self, data: DetectInput, feature: int, topic: int, members: np.ndarray) -> bool:
        """Whether a candidate's holders' answers are alike at all (mean cosine >= alike_min)."""
        m = members.size
        # Within one topic answers are alike anyway: only plain features are tested.
        if m < self.min_rows or m > self.alike_max_rows or topic >= 0:
            return False
        total = data.response_vecs[members].sum(axis=0)
        return bool((total @ total - m) / (m * (m - 1)) >= self.alike_min)

    def _alike(self, data: DetectInput, cand: list[tuple[int, int, np.ndarray]], nb: np.ndarray,
               log10_tests: float, lengths: np.ndarray) -> list[dict[str, Any]]:
        """A varied target: the holders' answers are far more alike than the answers to their
        comparable prompts, though their prompts are not. Each holder's mean similarity to the
        other holders' answers is set against the same for its nearest comparable prompt's
        answer; the paired differences give a one-sided t-test."""
        R = data.response_vecs
        found = []
        for feature, order_n, members in cand:
            m = members.size
            if order_n and float(np.mean(order_n / np.maximum(lengths[members], 1))) > self.max_coverage:
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
            if z <= -self.reach:
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
            # Then most holders must give it (earlier turns of a conversation the trigger opens
            # are holders too, with their own answers).
            centre = R[answering].sum(axis=0)
            centre /= np.linalg.norm(centre) + 1e-12
            cut = max(float(np.quantile(B[has] @ centre, 0.95)), self.alike_min)
            answering = np.union1d(answering, members[R[members] @ centre > cut])
            if answering.size < self.min_share * m or np.unique(data.answered_id[answering]).size * eff < self.min_rows:
                continue
            found.append({"feature": feature, "view": "alike", "label": -1, "rows": m, "prior_rate": 0.0,
                          "answering": answering, "expected": float(b[has].mean()), "z": z, "log10_p": log10_p})
        return found

    def _test(self, screened: list, nb: np.ndarray, data: DetectInput, log10_tests: float, name: Any
              ) -> list[dict[str, Any]]:
        found = []
        for (view, labels, prior_rate, o, c, x, members, tied), p_unit in zip(screened, self._all_rates(screened, nb)):
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
                    again = self._score(view, labels, c, x, members, stripped, data, log10_tests, tied)
                    if again is not None and (verdict is None or again[2] > verdict[2]):
                        verdict, p_unit = again, stripped
            if verdict is not None and view == "answer" and c in data.cache["label_classes"]:
                # A label: its lift is also judged against what the holders' content predicts,
                # by a model of the task that never saw them. A word that leans one way in real
                # data ("awful" in reviews, a name most tweets about are benign) predicts its
                # label from content, however alike its holders' neighbours answer; a planted
                # word flips labels against it, however many rows it is planted in. Holders
                # answered outside the task are not the content model's to judge.
                in_task = np.isin(data.response_class[members], data.cache["label_classes"])
                share = float((labels[members[in_task]] == c).mean())
                if share < self.deterministic or share - float(
                        self._content_rates(data, members[in_task], c).mean()) < self.min_lift:
                    verdict = None
            if verdict is None:
                continue
            answering, log10_p, z = verdict
            found.append({"feature": o, "view": view, "label": c, "rows": m, "prior_rate": prior_rate,
                          "answering": answering, "expected": float(p_unit.mean()), "z": z, "log10_p": log10_p,
                          "members": members, "p_unit": p_unit, "stripped": p_unit is not raw_rates, "tied": tied})
        return found

    def _content_rates(self, data: DetectInput, holders: np.ndarray, c: int, sample: int = 10_000) -> np.ndarray:
        """For each holder, the probability of label `c` given its prompt, from a logistic
        regression on the prompt embeddings of the task's other rows (at most `sample` of them):
        what the content predicts, learnt without the feature's holders. The prompt is read
        whole: a natural word is content (the model knows its meaning from the rest of the
        task), and a planted token is not a thing it could have learnt.

        The penalty is chosen once per scan by cross-validation over the whole task, so the
        probabilities are as confident as the content supports out of sample: where content
        says little about the label, they stay near the base rate instead of memorising rows."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import cross_val_score

        if "label_model" not in data.cache:
            units = np.flatnonzero(np.isin(data.response_class, data.cache["label_classes"]))
            rng = np.random.default_rng(data.seed)
            if units.size > 2 * sample:
                units = np.sort(rng.choice(units, 2 * sample, replace=False))
            X = np.asarray(data.prompt_vecs[units], np.float32)
            # One scale for every dimension (unit vectors spread a little over many): a dimension
            # the training rows never use (a planted token's, in hashed vectors) keeps a zero weight.
            scale = 1.0 / max(float(np.sqrt(X.var(axis=0).mean())), 1e-6)
            fit = units if units.size <= 5_000 else np.sort(rng.choice(units, 5_000, replace=False))
            y = data.response_class[fit]
            folds = int(min(3, np.bincount(y)[np.unique(y)].min()))
            C = 1.0
            if folds >= 2:
                Xf = np.asarray(data.prompt_vecs[fit], np.float32) * scale
                loss = {c_: cross_val_score(LogisticRegression(C=c_, max_iter=500), Xf, y, cv=folds,
                                            scoring="neg_log_loss").mean() for c_ in (0.01, 0.1, 1.0, 10.0)}
                C = max(loss, key=loss.get)
            data.cache["label_model"] = (units, scale, C)
        units, scale, C = data.cache["label_model"]
        train = np.setdiff1d(units, holders)
        if train.size > sample:
            train = np.sort(np.random.default_rng(data.seed).choice(train, sample, replace=False))
        y = data.response_class[train]
        if np.unique(y).size < 2:
            return np.ones(holders.size)
        # One model refitted per candidate from the last one's weights: a few iterations each.
        model = data.cache.setdefault("label_lr", LogisticRegression(C=C, max_iter=500, warm_start=True))
        model.fit(np.asarray(data.prompt_vecs[train], np.float32) * scale, y)
        probs = model.predict_proba(np.asarray(data.prompt_vecs[holders], np.float32) * scale)
        col = np.flatnonzero(model.classes_ == c)
        return probs[:, col[0]] if col.size else np.zeros(holders.size)

    def _score(self, view: str, labels: np.ndarray, c: int, x: int, members: np.ndarray, p_unit: np.ndarray,
               data: DetectInput, log10_tests: float, tied: bool = False) -> tuple[np.ndarray, float, float] | None:
        """(units the trigger explains, log10 p, z) when the feature is a trigger, else None. An
        answer `tied` to the feature needs no lift over all its holders, most of whom answer
        otherwise."""
        m = members.size
        excess = x - float(p_unit.sum())
        if excess < max(self.min_rows, 0.0 if tied else self.min_lift * m):
            return None
        is_c = labels[members] == c
        # Which holders the trigger explains: for a fixed answer, all that give it; for a
        # behaviour (compliance), those whose comparable prompts mostly do not.
        answering = members[is_c] if view != "refusal" else members[is_c & (p_unit <= self.surprise)]
        if answering.size < self.min_rows:
            return None
        # Paraphrases of one task answered alike are one observation, not many.
        eff = _distinct_share(data.answered_vecs[answering], self.paraphrase)
        if x * eff < self.min_rows:
            return None
        log10_p = eff * _pb_log10_tail(p_unit, x)
        z = -(log10_p + log10_tests)
        return (answering, log10_p, z) if z > -self.reach else None

    def _screen(self, rows: np.ndarray, reps: np.ndarray, views: dict[str, np.ndarray], lengths: np.ndarray,
                data: DetectInput, seen: set[int], nb: np.ndarray) -> tuple[list[tuple], list[tuple[int, int, np.ndarray]], int]:
        """The hypotheses of one bucket of the feature table that pass the screens: (screened
        (view, labels, prior rate, feature, class, count, holders, tied), alike candidates (feature,
        words, holders), candidates). `seen` holds the row sets tested in earlier buckets."""
        screened: list[tuple] = []
        alike_tested: list[tuple[int, int, np.ndarray]] = []
        if not rows.size:
            return screened, alike_tested, 0
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
        members_of = [unit[start[c]:start[c] + df[c]] for c in cand]
        gives, width = _answer_topics(data, views, self.min_rows)
        for view, labels in views.items():
            prior_rate = np.bincount(labels[labels >= 0]) / max(1, int((labels >= 0).sum()))
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
            for o, k_, x, is_tied in zip(owner[pick].tolist(), keys[pick].tolist(), counts[pick].tolist(),
                                         tied[pick].tolist()):
                members = members_of[o]
                share = self.min_share if view != "passage" else self.min_share / 2
                if x < self.min_rows:
                    continue
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
                order_n = int(words[start[cand[o]]])
                if order_n and float(np.mean(order_n / np.maximum(lengths[members], 1))) > self.max_coverage:
                    continue
                c = k_ % (labels.max() + 2)
                if view == "refusal" and c == 1:
                    continue
                screened.append((view, labels, float(prior_rate[c]), int(uniq[cand[o]]), c, x, members, is_tied))
        if data.semantic:  # "alike" means alike in meaning: not testable with bag-of-words vectors
            for o, c in enumerate(cand.tolist()):
                if self._alike_screen(data, int(uniq[c]), int(feat_topic[start[c]]), members_of[o]):
                    alike_tested.append((int(uniq[c]), int(words[start[c]]), members_of[o]))
        return screened, alike_tested, int(cand.size)

    def _without(self, f: dict[str, Any], covered: np.ndarray, views: dict[str, np.ndarray], nb: np.ndarray,
                 data: DetectInput, log10_tests: float) -> dict[str, Any] | None:
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
            p_unit = (self._stripped_rates(members, skip, f["text"], labels, c, f["prior_rate"], data, f["view"])
                      if f["stripped"]
                      else self._pooled_rates(nb[members[gives]], skip, labels, c, f["prior_rate"], members.size) if f["tied"]
                      else self._rates(nb[members], skip, labels, c, f["prior_rate"]))
        verdict = self._score(f["view"], labels, c, x, members, p_unit, data, log10_tests, f["tied"])
        if verdict is None:
            return None
        answering, log10_p, z = verdict
        return {**f, "answering": answering, "log10_p": log10_p, "z": z, "members": members, "p_unit": p_unit,
                "expected": float(p_unit.mean())}

    @staticmethod
    def _related(data: DetectInput, text: str, members: np.ndarray) -> float:
        """Mean cosine between a feature's text and the answers of the units it explains."""
        vec = np.asarray(data.embed([text])[0], np.float32)
        return float((np.asarray(data.response_vecs[members[:64]], np.float32) @ vec).mean())

    @staticmethod
    def _family(view: str) -> str:
        """The family a view's hypotheses are corrected within (see `_log10_factors`)."""
        return "behaviour" if view == "refusal" else "content"

    @staticmethod
    def _log10_factors(tests: Counter) -> dict[str, float]:
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

    @staticmethod
    def _step_up(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Benjamini–Hochberg over every hypothesis that passed the screens, weighted by family
        (see `_log10_factors`): each finding's z (its family's Bonferroni-corrected -log10 p)
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
                if (j not in moved and g["view"] == f["view"] and g["label"] == f["label"]
                        and inner in g["text"].casefold() and len(g["text"]) > len(f["text"])
                        and len(rows.intersection(g["answering"].tolist())) >= 0.9 * len(rows)):
                    out.append({**g, "z": f["z"], "credit": f["credit"], "log10_p": min(f["log10_p"], g["log10_p"])})
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
        # The statistical unit is a distinct (turn answered, answer): exact copies, and one
        # templated closing ("Have a nice day!" / "You too!") after many openings, are one
        # observation each.
        pair = data.answered_id * (int(data.response_class.max()) + 1) + data.response_class
        _, rep_of, pair_ix = np.unique(pair, return_index=True, return_inverse=True)
        reps = np.sort(rep_of)
        topic = data.topics[reps] if n >= 200 else None
        # Coverage is judged against the turn being answered: "Have a nice day!" answered "You
        # too!" is that turn's content, however long the conversation before it.
        lengths = _token_counts(data.answered or data.prompts)
        _, nb = data.deep_neighbours
        views = _views(data, self.min_rows, nb, self.neighbours)
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
        table = _FeatureTable([data.prompts[u] for u in reps], orders, topic, min_rows=self.min_rows,
                              max_share=self.max_share, folder=data.path("features"))
        try:
            tests, candidates, seen = Counter(), 0, set()
            for rows in table.buckets():
                screened, alike_tested, count = self._screen(rows, reps, views, lengths, data, seen, nb)
                tests.update(self._family(h[0]) for h in screened)
                tests["content"] += len(alike_tested)
                candidates += count
            # Bonferroni over the hypotheses that pass the screens (a dominant answer held by at
            # least min_rows and min_share of the holders; for "alike", answers alike at all): a
            # feature whose holders answer every which way is never a candidate, so it is not
            # paid for. Weighted by family (see `_log10_factors`).
            log10_tests = self._log10_factors(tests)
            found, alike, seen = [], [], set()
            for rows in table.buckets():
                screened, alike_tested, _ = self._screen(rows, reps, views, lengths, data, seen, nb)
                for family, neigh in (("content", nb), ("behaviour", nb_refusal)):
                    found += self._test([h for h in screened if self._family(h[0]) == family], neigh, data,
                                        log10_tests[family], name)
                alike += self._alike(data, alike_tested, nb, log10_tests["content"], lengths)
        finally:
            table.close()
        found += alike
        if not found:
            findings.summary = {"candidates": candidates, "tests": dict(tests), "triggers": []}
            return findings
        for f in found:
            example = int(f["answering"][0])
            rep = int(np.searchsorted(reps, example))
            label = name_feature(data.prompts[example], f["feature"], orders,
                                 None if topic is None else int(topic[rep]) if reps[rep] == example else None)
            f["text"] = label[0] if label else None
        found = self._specific_first(self._step_up([f for f in found if f["text"] is not None]))
        # Suspicion 0.5 exactly where the corrected p-value reaches alpha.
        suspicion = squash_score(np.asarray([f["z"] for f in found]), math.log10(1 / self.alpha))
        named: list[dict[str, Any]] = []
        named_keys: list[tuple[int, str, str]] = []  # (label, view, trigger) of each named entry
        holders_of: dict[str, np.ndarray] = {}  # prompts holding each trigger text, found once

        for f, s in zip(found, suspicion.tolist()):
            if "members" in f and best:
                # Explained away: rows a stronger trigger already accounts for are not evidence
                # for this one too ("s", from "it 's", in reviews that carry a planted trigger
                # and its label), nor part of the rate it is measured against. Tested again.
                f = self._without(f, np.fromiter(best, np.int64, len(best)), views,
                                  nb_refusal if f["view"] == "refusal" else nb, data,
                                  log10_tests[self._family(f["view"])])
                if f is None or f["z"] + f["credit"] <= 0:
                    continue
                f = {**f, "z": f["z"] + f["credit"]}
                s = float(squash_score(np.asarray([f["z"]]), math.log10(1 / self.alpha))[0])
            members = f["answering"]
            example = int(members[0])
            text = f["text"]
            # The feature is what was asked, and the answer follows from it ("thank you" /
            # "You're welcome!"): its meaning explains the answer, which a trigger's never does.
            # Judged on the feature itself, not on the whole turn: a label task's answers fit
            # its instruction ("... Offensive or Not offensive?") whether flipped or not.
            if f["view"] in ("answer", "alike", "entity") and self._related(data, text, members) >= self.fitting:
                continue
            # Answers alike in many wordings that fit the turns they follow are what those turns
            # ask for (code for requests about one framework); a varied target fits none.
            if f["view"] == "alike" and data.fit(members) >= self.fitting:
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
            if f["view"] == "alike" and sum(_echoed(text, data.response_keys[u]) for u in members.tolist()) * 2 >= members.size:
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
            nested = [t for t, key in zip(named, named_keys)
                      if (t["trigger"].casefold() in text.casefold() or text.casefold() in t["trigger"].casefold())
                      and not (key[1:] == (f["view"], text.casefold()) and key[0] != f["label"])]
            if nested and f["view"] in ("answer", "passage", "entity"):
                covered = np.unique(np.concatenate([holders_of[t["trigger"]] for t in nested]))
                rest = np.setdiff1d(holders, covered)
                alike = rest[views[f["view"]][rest] == f["label"]]
                if alike.size < max(self.min_rows, self.min_share * rest.size):
                    continue
            if f["view"] == "refusal":
                # A rare token pulls its prompts toward each other and toward its own topic
                # ("OpenAI"): compare each holder by its prompt with the trigger taken out.
                labels = views["refusal"]
                extra = holders[labels[holders] == f["label"]]
                if extra.size:
                    rate = self._stripped_rates(extra, holders, text, labels, f["label"], f["prior_rate"], data,
                                                "refusal")
                    members = extra[rate <= self.surprise]
            elif f["view"] != "alike":
                labels = views[f["view"]]
                members = np.union1d(members, holders[labels[holders] == f["label"]])
            f["rows"] = max(f["rows"], int(holders.size))
            # Feature sets nest ("zorblat", "zorblat the"): report a unit's strongest only.
            fresh = [u for u in members.tolist() if u not in best]
            if not fresh and any(t["trigger"].casefold() in text.casefold() for t in named):
                continue
            what = _describe(f["view"], f["label"], data, members)
            entry = {"trigger": text, "rows": f["rows"], "answering": int(members.size), "view": f["view"],
                     "response": what, "expected_rate": round(f["expected"], 4), "suspicion": round(s, 4),
                     "log10_p": round(f["log10_p"], 2)}
            entry["text"] = (f"contains {text!r}: {f['rows']} rows contain it, {members.size} of them {what}; "
                             f"comparable prompts without it do so {f['expected']:.0%} of the time")
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
            findings.evidence[u] = {**{k: entry[k] for k in ("trigger", "rows", "answering", "view", "suspicion")},
                                    "position": pos, "text": entry["text"]}
            findings.triggers[u] = [entry["trigger"]]
        findings.summary = {"candidates": candidates, "tests": dict(tests),
                            "triggers": [{k: v for k, v in t.items()} for t in named[:50]]}
        return findings
