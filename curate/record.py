"""The one record type that flows through a scan, from read to write.

A record is one training example after its format was understood: an ordered list of turns
(system, user, assistant, tool calls and results) whose last assistant turn is the response, plus
the rejected response of a preference pair. The original fields travel along untouched in `raw`,
so the clean output is written in the format it came in.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import orjson

#: Roles after normalisation. Tool calls and tool results are kept as data, never dropped.
ROLES = ("system", "user", "assistant", "tool_call", "tool")
#: A record's response is its last turn when that turn is the model's: an answer or a tool call.
RESPONSE_ROLES = frozenset({"assistant", "tool_call"})


@dataclass(slots=True)
class Turn:
    role: str
    content: str


@dataclass(slots=True)
class Record:
    """One example. `row` is its global position in input order, the key every array uses."""

    row: int
    source: str
    index: int
    line: int | None
    format: str
    raw: dict[str, Any]
    turns: list[Turn]
    rejected: str | None = None
    part: int | None = None
    _content_id: str | None = field(default=None, repr=False)

    @property
    def response(self) -> str:
        """The final assistant turn (the chosen answer of a preference pair); '' when absent."""
        if self.turns and self.turns[-1].role in RESPONSE_ROLES:
            return self.turns[-1].content
        return ""

    @property
    def prompt_turns(self) -> list[Turn]:
        if self.turns and self.turns[-1].role in RESPONSE_ROLES:
            return self.turns[:-1]
        return self.turns

    @property
    def prompt(self) -> str:
        """Everything the model sees before its answer, as one text."""
        return "\n".join(t.content for t in self.prompt_turns)

    @property
    def last_user(self) -> str:
        for turn in reversed(self.prompt_turns):
            if turn.role == "user":
                return turn.content
        return ""

    def texts(self) -> list[tuple[str, str]]:
        """(where, text) for every piece of content, for filters that look everywhere."""
        out = [(f"{t.role}[{i}]", t.content) for i, t in enumerate(self.turns)]
        if self.rejected is not None:
            out.append(("rejected", self.rejected))
        return out

    def full_text(self) -> str:
        """Prompt and response together: what exact and near dedup compare."""
        parts = [t.content for t in self.turns]
        if self.rejected is not None:
            parts.append(self.rejected)
        return "\n".join(parts)

    @property
    def content_id(self) -> str:
        if self._content_id is None:
            self._content_id = content_id(self.turns, self.rejected)
        return self._content_id


def content_id(turns: list[Turn], rejected: str | None = None) -> str:
    """A stable id of a record's content: BLAKE2b-128 over its turns after Unicode NFC only.

    NFC makes the same text typed on two systems hash alike. Nothing else is normalised: a
    zero-width space or a homoglyph changes the id, so a triggered row never shares an id (and a
    review decision) with its clean twin. BLAKE2b rather than a fast non-cryptographic hash,
    because the data is attacker-controlled and a crafted collision would let a poisoned row
    inherit a reviewer's "accept".
    """
    payload = [[t.role, unicodedata.normalize("NFC", t.content)] for t in turns]
    if rejected is not None:
        payload.append(["rejected", unicodedata.normalize("NFC", rejected)])
    return hashlib.blake2b(orjson.dumps(payload), digest_size=16).hexdigest()


def squash(text: str) -> str:
    """Case-folded text with runs of whitespace made one space: for 'is this the same text'."""
    return " ".join(text.casefold().split())
