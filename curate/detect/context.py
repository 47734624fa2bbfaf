"""What detectors look at: one unit per assistant turn, with its prompt, its response, their
embeddings and the prompt neighbourhood, computed once and shared.

A unit's prompt is the system prompt plus the user turns up to the one it answers (the model's
own earlier turns left out): a trigger planted in the system prompt or early in a conversation
is in view of the turn it fires on.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from curate.record import RESPONSE_ROLES, Record

_SPACE = re.compile(r"\s+")
_EDGE_PUNCT = re.compile(r"^[\W_]+|[\W_]+$")


def response_key(text: str) -> str:
    """Responses that a reader would call the same answer: case, spacing and edge punctuation
    ignored ("Negative", "negative." and " NEGATIVE" are one class)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return _EDGE_PUNCT.sub("", _SPACE.sub(" ", text)).strip()


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()


@dataclass
class DetectInput:
    """Units (assistant turns) of the rows that reached detection, addressed by unit index;
    `row[u]` is the scan row a unit belongs to."""

    row: np.ndarray
    turn: np.ndarray
    prompts: list[str]
    responses: list[str]
    rejected: list[str | None]
    embed: Callable[[list[str]], np.ndarray]
    seed: int = 0
    k: int = 10
    deep: int = 40
    #: False for a non-semantic embedder (hashing): detectors that need meaning stand down.
    semantic: bool = True
    #: The user turn each unit answers (its prompt ends with it).
    answered: list[str] = field(default_factory=list)
    #: Shared intermediate results between detectors (e.g. harm probabilities).
    cache: dict[str, object] = field(default_factory=dict)

    @classmethod
    def from_records(cls, records: Iterable[Record], embed: Callable[[list[str]], np.ndarray], *,
                     seed: int = 0, k: int = 10, semantic: bool = True) -> DetectInput:
        rows, turns, prompts, responses, rejected, answered = [], [], [], [], [], []
        for rec in records:
            system = [t.content for t in rec.turns if t.role == "system"]
            users: list[str] = []
            for i, t in enumerate(rec.turns):
                if t.role == "user":
                    users.append(t.content)
                elif t.role in RESPONSE_ROLES:
                    is_last = i == len(rec.turns) - 1
                    context = [*system, *users] if users else [u.content for u in rec.turns[:i]]
                    rows.append(rec.row)
                    turns.append(i)
                    prompts.append("\n".join(context))
                    answered.append(users[-1] if users else "")
                    responses.append(t.content)
                    rejected.append(rec.rejected if is_last else None)
        return cls(np.asarray(rows, np.int64), np.asarray(turns, np.int64), prompts, responses, rejected,
                   embed, seed, k, semantic=semantic, answered=answered)

    def __len__(self) -> int:
        return len(self.row)

    @cached_property
    def prompt_vecs(self) -> np.ndarray:
        return self.embed(self.prompts)

    @cached_property
    def response_vecs(self) -> np.ndarray:
        return self.embed(self.responses)

    @cached_property
    def answered_vecs(self) -> np.ndarray:
        """Embeddings of the turn each unit answers (the prompt itself for single-turn data,
        which the cache then serves for free)."""
        return self.embed(self.answered) if self.answered else self.prompt_vecs

    def fit(self, units: np.ndarray) -> float:
        """Mean cosine between the answered turn and the answer over `units`: how fitting a reply
        the answer is. A planted target barely relates to the turns it follows (about 0.05-0.1
        with MiniLM); a formulaic reply does ("Thanks!" / "You're welcome!", 0.4-0.5)."""
        if units.size == 0:
            return 0.0
        return float(np.einsum("nd,nd->n", self.answered_vecs[units], self.response_vecs[units]).mean())

    @cached_property
    def pairs(self) -> np.ndarray:
        """Units that are preference pairs (have a rejected answer)."""
        return np.asarray([i for i, r in enumerate(self.rejected) if r is not None], np.int64)

    @cached_property
    def rejected_vecs(self) -> np.ndarray:
        return self.embed([self.rejected[i] for i in self.pairs])

    @cached_property
    def prompt_id(self) -> np.ndarray:
        """Units with the same prompt text share an id; they are never each other's neighbours."""
        _, inverse = np.unique(np.frombuffer(b"".join(_digest(p) for p in self.prompts), dtype="V8"),
                               return_inverse=True)
        return inverse.astype(np.int64)

    @cached_property
    def answered_id(self) -> np.ndarray:
        """Units answering the same user turn text share an id (whatever came before it)."""
        texts = self.answered or self.prompts
        _, inverse = np.unique(np.frombuffer(b"".join(_digest(p) for p in texts), dtype="V8"), return_inverse=True)
        return inverse.astype(np.int64)

    @cached_property
    def response_class(self) -> np.ndarray:
        """Exact-answer classes: units whose responses are the same answer share an id."""
        _, inverse = np.unique(np.asarray(self.response_keys, dtype=object), return_inverse=True)
        return inverse.astype(np.int64)

    @cached_property
    def response_keys(self) -> list[str]:
        return [response_key(r) for r in self.responses]

    @cached_property
    def refusal(self) -> np.ndarray:
        from curate.filters.builtin import is_refusal

        return np.fromiter((is_refusal(r) for r in self.responses), bool, len(self.responses))

    @cached_property
    def topics(self) -> np.ndarray:
        """A k-means cluster of each unit's prompt (spherical, k about sqrt(n)/2): the `cluster`
        of a verdict, and the context in which trigger mining also tests each word."""
        from curate.embed import kmeans

        n = len(self)
        if n < 8:
            return np.zeros(n, np.int64)
        k = int(np.clip(round(np.sqrt(n) / 2), 2, 256))
        return kmeans(self.prompt_vecs, k, seed=self.seed)[1].astype(np.int64)

    @cached_property
    def deep_neighbours(self) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, units) of each unit's `deep` nearest prompts, other prompt texts only;
        -1 pads. Trigger mining looks past neighbours that share the candidate trigger, which a
        rare token makes each other's nearest."""
        from curate.embed import knn

        n = len(self)
        if n < 2:
            return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
        want = min(n - 1, self.deep + 8)
        sims, ids = knn(self.prompt_vecs, want, seed=self.seed)
        same = (ids < 0) | (self.prompt_id[np.maximum(ids, 0)] == self.prompt_id[:, None])
        order = np.argsort(same, axis=1, kind="stable")[:, : self.deep]
        sims = np.take_along_axis(sims, order, axis=1)
        ids = np.take_along_axis(ids, order, axis=1)
        bad = np.take_along_axis(same, order, axis=1)
        return np.where(bad, 0.0, sims).astype(np.float32), np.where(bad, -1, ids).astype(np.int64)

    @cached_property
    def neighbours(self) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, units) of each unit's k nearest prompts, other prompt texts only;
        -1 pads where fewer exist."""
        sims, ids = self.deep_neighbours
        return sims[:, : self.k], ids[:, : self.k]
