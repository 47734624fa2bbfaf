"""What detectors look at: one unit per assistant turn, with its prompt, its response, their
embeddings and the prompt neighbourhood, computed once and shared.

A unit's prompt is the system prompt plus the user turns up to the one it answers (the model's
own earlier turns left out): a trigger planted in the system prompt or early in a conversation
is in view of the turn it fires on.
"""

from __future__ import annotations

import hashlib
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from curate.embed.vectors import Vectors
from curate.memory import trim
from curate.record import RESPONSE_ROLES, Record

#: Texts per call to the embedder while filling a vector file.
EMBED_CHUNK = 16384


def response_key(text: str) -> str:
    """Responses that a reader would call the same answer: case, spacing and edge punctuation
    ignored ("Negative", "negative." and " NEGATIVE" are one class)."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    text = " ".join(text.casefold().split())
    # Edge punctuation off ([\W_] is exactly "not isalnum"), without a regex that would try
    # every position of a long answer for a trailing run.
    i, j = 0, len(text)
    while i < j and not text[i].isalnum():
        i += 1
    while j > i and not text[j - 1].isalnum():
        j -= 1
    return text[i:j].strip()


def text_digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()


class ResponseKeys(Sequence):
    """`response_key(responses[u])`, computed on access."""

    def __init__(self, responses: Sequence[str]):
        self._responses = responses

    def __len__(self) -> int:
        return len(self._responses)

    def __getitem__(self, u):
        if isinstance(u, slice):
            return [response_key(r) for r in self._responses[u]]
        return response_key(self._responses[u])


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
    #: Where the embeddings are kept (float16, memory-mapped); a temporary folder when None.
    folder: Path | None = None
    #: How responses (and rejected answers) are embedded, when not as prompts are.
    embed_response: Callable[[list[str]], np.ndarray] | None = None

    @classmethod
    def from_records(
        cls,
        records: Iterable[Record],
        embed: Callable[[list[str]], np.ndarray],
        *,
        seed: int = 0,
        k: int = 10,
        semantic: bool = True,
        folder: Path | None = None,
        embed_response: Callable[[list[str]], np.ndarray] | None = None,
    ) -> DetectInput:
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
        trim()  # the records streamed through here are gone; their heap need not stay
        return cls(
            np.asarray(rows, np.int64),
            np.asarray(turns, np.int64),
            prompts,
            responses,
            rejected,
            embed,
            seed,
            k,
            semantic=semantic,
            answered=answered,
            folder=folder,
            embed_response=embed_response,
        )

    def __len__(self) -> int:
        return len(self.row)

    def _folder(self) -> Path:
        if self.folder is None:
            self.cache["_tmp"] = tempfile.TemporaryDirectory(prefix="curate-vectors-")
            self.folder = Path(self.cache["_tmp"].name)
        return self.folder

    def vectors(
        self, name: str, texts: Sequence[str], embed: Callable[[list[str]], np.ndarray] | None = None
    ) -> Vectors:
        """Embeddings of `texts` (by `embed`, else the prompts' embedder), written to disk a
        chunk at a time and memory-mapped."""
        embed = embed or self.embed
        prepare = getattr(embed, "prepare", None)
        if prepare is not None:  # a distilled embedder fits itself on the whole list first
            prepare(texts)
        chunk = getattr(embed, "chunk", EMBED_CHUNK)
        first = embed(list(texts[:chunk]))
        dim = first.shape[1] if first.ndim == 2 else 0
        out = Vectors.create(self.path(f"{name}.f16"), len(texts), dim)
        if len(texts):
            out[: len(first)] = first
        for lo in range(chunk, len(texts), chunk):
            out[lo : lo + chunk] = embed(list(texts[lo : lo + chunk]))
        return out

    def release(self) -> None:
        """Drop the embedding pages this process has mapped so far, and the prompt index
        (only trigger mining searches it; it is rebuilt if asked for again): between detectors."""
        for name in ("prompt_vecs", "response_vecs", "answered_vecs"):
            vectors = self.__dict__.get(name)
            if isinstance(vectors, Vectors):
                vectors.release()
        self.__dict__.pop("prompt_index", None)
        trim()

    def path(self, name: str) -> Path:
        """Where a detector keeps its own files (e.g. prompt + response vectors) beside the embeddings."""
        return self._folder() / name

    @cached_property
    def prompt_vecs(self) -> Vectors:
        return self.vectors("prompt", self.prompts)

    @cached_property
    def response_vecs(self) -> Vectors:
        return self.vectors("response", self.responses, self.embed_response)

    @cached_property
    def answered_vecs(self) -> Vectors:
        """Embeddings of the turn each unit answers: the prompt's own for single-turn data."""
        if not self.answered or all(a is p or a == p for a, p in zip(self.answered, self.prompts, strict=False)):
            return self.prompt_vecs
        return self.vectors("answered", self.answered)

    @cached_property
    def prompt_index(self):
        """One faiss index over the prompts, shared by every search against them."""
        from curate.embed.neighbours import build_index

        return build_index(self.prompt_vecs, seed=self.seed)

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
    def trained(self) -> np.ndarray:
        """Units a model is trained on: every assistant turn, but for the earlier turns of a
        preference pair's conversation, which are context both answers share."""
        return ~np.isin(self.row, self.row[self.pairs]) | np.isin(np.arange(len(self)), self.pairs)

    @cached_property
    def prompt_id(self) -> np.ndarray:
        """Units with the same prompt text share an id; they are never each other's neighbours."""
        _, inverse = np.unique(
            np.frombuffer(b"".join(text_digest(p) for p in self.prompts), dtype="V8"), return_inverse=True
        )
        return inverse.astype(np.int64)

    @cached_property
    def answered_id(self) -> np.ndarray:
        """Units answering the same user turn text share an id (whatever came before it)."""
        texts = self.answered or self.prompts
        _, inverse = np.unique(np.frombuffer(b"".join(text_digest(p) for p in texts), dtype="V8"), return_inverse=True)
        return inverse.astype(np.int64)

    @cached_property
    def response_class(self) -> np.ndarray:
        """Exact-answer classes: units whose responses are the same answer share an id."""
        _, inverse = np.unique(
            np.frombuffer(b"".join(text_digest(response_key(r)) for r in self.responses), dtype="V8"),
            return_inverse=True,
        )
        return inverse.astype(np.int64)

    @cached_property
    def response_keys(self) -> ResponseKeys:
        """`response_key` of each response, computed when asked: a million normalised copies of
        every answer would cost as much memory as the answers."""
        return ResponseKeys(self.responses)

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
        from curate.embed.neighbours import knn_chunks

        n = len(self)
        if n < 2:
            return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int32)
        want = min(n - 1, self.deep + 8)
        width = min(want, self.deep)
        out_sims = np.empty((n, width), np.float32)
        out_ids = np.empty((n, width), np.int32)  # a million rows: 160 MB less than int64
        # A chunk at a time: the raw search results for a million rows would be most of a GB.
        for lo, sims, ids in knn_chunks(self.prompt_vecs, want, index=self.prompt_index):
            hi = lo + len(sims)
            order, bad = self.other_prompts(slice(lo, hi), ids, self.deep)
            out_sims[lo:hi] = np.where(bad, 0.0, np.take_along_axis(sims, order, axis=1))
            out_ids[lo:hi] = np.where(bad, -1, np.take_along_axis(ids, order, axis=1))
        return out_sims, out_ids

    def other_prompts(self, units, ids: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        """For search results `ids` of `units` (an index or slice): the column order that puts
        hits on other prompt texts first, cut to `width`, and which columns of it are still
        not (-1 pads, the unit's own prompt text)."""
        same = (ids < 0) | (self.prompt_id[np.maximum(ids, 0)] == self.prompt_id[units, None])
        order = np.argsort(same, axis=1, kind="stable")[:, :width]
        return order, np.take_along_axis(same, order, axis=1)

    @cached_property
    def neighbours(self) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, units) of each unit's k nearest prompts, other prompt texts only;
        -1 pads where fewer exist."""
        sims, ids = self.deep_neighbours
        return sims[:, : self.k], ids[:, : self.k]

    @cached_property
    def other_conversation(self) -> np.ndarray:
        """Which of each unit's `neighbours` exist and are prompts of other conversations (the
        turns of one chat are not a set that vouches for itself)."""
        _, ids = self.neighbours
        return (ids >= 0) & (self.row[np.maximum(ids, 0)] != self.row[:, None])
