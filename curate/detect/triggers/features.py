"""The feature table of trigger mining: which prompts hold which words, 2- and 3-word phrases
and odd characters (invisible or private-use code points), and, within a topic (a prompt
cluster), which words. Built in chunks and, for big corpora, sorted in buckets on disk: the
statistics downstream are counts per feature, so a shard's table merges with another's by
concatenation.

In: the prompts (one per distinct answered turn and answer) and their topics. Out: rows of
(feature hash, unit, words in the feature, topic or -1), one per distinct (feature, unit), for
the features held by enough units; and the way back from a hash to the words of a prompt.
"""

from __future__ import annotations

import math
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from curate.tokens import mix, ngram_hashes, token_hashes, token_strings

_ODD = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ue000-\uf8ff\U000e0000-\U000e0fff]"
)
#: A run of word characters: one that holds an underscore is an identifier ("config_fc",
#: "__init__"), and each of its parts is also a word of the prompt, as a model's subword
#: tokenizer reads it. (Matched plainly and split in Python: linear on any input.)
_WORD = re.compile(r"\w+")
_ODD_TAG = np.uint64(0x6F64646368617221)
_TOPIC_TAG = np.uint64(0x746F706963000001)


def _char_feature(ch: str) -> int:
    return int(mix(np.asarray([ord(ch)], np.uint64) ^ _ODD_TAG)[0])


#: Feature rows (one per distinct feature in a prompt) sorted at once. Past this, the rows go to
#: disk in buckets by the hash's top bits and each bucket is sorted alone: a million prompts give
#: a few hundred million rows, several GB as one table.
BUCKET_ROWS = 8_000_000
_ROW = np.dtype([("h", "<u8"), ("o", "<i4"), ("z", "i1"), ("t", "<i4")])


def identifier_parts(text: str) -> list[str]:
    """The parts of the identifiers in (casefolded) `text`, once each, in order: the pieces
    between underscores of every word that holds one."""
    if "_" not in text:
        return []
    text = text.casefold()
    return list(dict.fromkeys(p for w in _WORD.findall(text) if "_" in w for p in w.split("_") if p))


def _chunk_features(prompts: list[str], base: int, orders: tuple[int, ...], topic: np.ndarray | None) -> np.ndarray:
    """Feature rows of `prompts` (units base, base + 1, ...), unsorted, repeats included. The
    parts of an identifier are words too ("config" in "config_fc"), with the hash of the word."""
    toks, lengths = token_hashes(prompts)
    parts = token_hashes([" ".join(identifier_parts(p)) for p in prompts]) if 1 in orders else None
    hashes, owners, sizes, topics = [], [], [], []
    for n in orders:
        h, owner = ngram_hashes(toks, lengths, n, short_as_one=False)
        if n == 1 and parts is not None:
            h_parts, owner_parts = ngram_hashes(*parts, 1, short_as_one=False)
            h, owner = np.concatenate([h, h_parts]), np.concatenate([owner, owner_parts])
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

    def __init__(
        self,
        prompts: list[str],
        orders: tuple[int, ...],
        topic: np.ndarray | None = None,
        *,
        min_rows: int = 1,
        max_share: float = 1.0,
        folder: Path | None = None,
        chunk: int = 20_000,
    ):
        n = len(prompts)
        self._filter = (
            n,
            np.bincount(topic) if topic is not None and topic.size else np.zeros(0, np.int64),
            min_rows,
            max_share,
        )
        self._tmp = None
        self._paths: list[Path] = []
        self._filtered = False
        self._memory: np.ndarray | None = None
        bits, files, parts = 0, [], []
        try:
            for lo in range(0, n, chunk):
                rows = _chunk_features(prompts[lo : lo + chunk], lo, orders, topic)
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
                    rows[bounds[b] : bounds[b + 1]].tofile(files[b])
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


def _features(
    prompts: list[str], orders: tuple[int, ...], topic: np.ndarray | None = None, **kwargs
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The whole of a `_FeatureTable`, as (hash, unit, words, topic) columns."""
    table = _FeatureTable(prompts, orders, topic, **kwargs)
    try:
        kept = list(table.buckets())
    finally:
        table.close()
    rows = np.concatenate(kept) if kept else np.empty(0, _ROW)
    return rows["h"], rows["o"].astype(np.int64), rows["z"].astype(np.int64), rows["t"].astype(np.int64)


def _distinct_frequent(rows: np.ndarray, n: int, topic_size: np.ndarray, min_rows: int, max_share: float) -> np.ndarray:
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
    parts = [token_hashes(list(texts[lo : lo + chunk]))[1] for lo in range(0, len(texts), chunk)]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def held_where_answered(
    feature: int,
    units: list[int],
    answered: list[str],
    prompts: list[str],
    orders: tuple[int, ...],
    topic: int | None,
) -> np.ndarray:
    """Per unit of `units` (each of which holds the feature in its prompt), whether the turn it
    answers holds it too, not only an earlier turn or the system prompt. `topic`: the feature's
    topic, for a feature within one."""
    return np.fromiter(
        (answered[u] == prompts[u] or name_feature(answered[u], feature, orders, topic) is not None for u in units),
        bool,
        len(units),
    )


def _pattern(trigger: str) -> re.Pattern:
    """A case-insensitive pattern for a trigger: "U+XXXX" for a character, else its words with
    any separators between them."""
    if trigger.startswith("U+") and len(trigger) <= 8:
        return re.compile(re.escape(chr(int(trigger[2:], 16))))
    words = token_strings(trigger) or [trigger]
    body = r"\W+".join(re.escape(w) for w in words)
    if any("_" in w for w in words):  # an identifier itself: not a part of a longer one
        return re.compile(r"(?<!\w)" + body + r"(?!\w)", re.IGNORECASE)
    # Bounded by anything but a letter or digit: a part of an identifier is a word of its own.
    return re.compile(r"(?<![^\W_])" + body + r"(?![^\W_])", re.IGNORECASE)


def _holders(trigger: str, prompts: list[str]) -> np.ndarray:
    """Units whose (casefolded) prompt carries `trigger`."""
    pattern = _pattern(trigger)
    words = token_strings(trigger)
    first = words[0] if words and not trigger.startswith("U+") else ""
    return np.asarray(
        [i for i, p in enumerate(prompts) if first in (f := p.casefold()) and pattern.search(f)], np.int64
    )


def _text_hashes(toks: np.ndarray, lengths: np.ndarray, n: int, topic: int | None) -> np.ndarray:
    """The feature hashes `_chunk_features` gives one text's `n`-word runs (then, with `topic`,
    the same runs as features within it)."""
    h, _ = ngram_hashes(toks, lengths, n, short_as_one=False)
    with np.errstate(over="ignore"):
        h = h * np.uint64(2 * n + 1)
        if topic is not None:
            h = np.concatenate([h, mix(h ^ (np.uint64(topic) * _TOPIC_TAG))])
    return h


def name_feature(
    prompt: str, feature: int, orders: tuple[int, ...], topic: int | None = None
) -> tuple[str, int] | None:
    """(the feature as written in `prompt`, its character offset), or None."""
    for ch in set(_ODD.findall(prompt)):
        if _char_feature(ch) == feature:
            return f"U+{ord(ch):04X}", prompt.index(ch)
    words = token_strings(prompt)
    toks, lengths = token_hashes([prompt])
    for n in orders:
        h = _text_hashes(toks, lengths, n, topic)
        hit = np.flatnonzero(h == np.uint64(feature)) % max(1, len(words) - n + 1)
        if hit.size:
            j = int(hit[0])
            parts = words[j : j + n]
            pattern = r"\W+".join(re.escape(w) for w in parts)
            match = re.search(pattern, prompt, re.IGNORECASE)
            if match:
                return match.group(), match.start()
            return " ".join(parts), -1
    if 1 in orders:
        # A part of an identifier, named as the word whose hash matched (a part may be several
        # words to the tokenizer: each CJK character is one).
        joined = " ".join(identifier_parts(prompt))
        words = token_strings(joined)
        h = _text_hashes(*token_hashes([joined]), 1, topic)
        hit = np.flatnonzero(h == np.uint64(feature)) % max(1, len(words))
        if hit.size:
            word = words[int(hit[0])]
            match = _pattern(word).search(prompt)
            return (match.group(), match.start()) if match else (word, -1)
    return None
