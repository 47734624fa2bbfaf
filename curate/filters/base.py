"""The filter contract and its registry."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from curate.record import Record

#: What a rule may do with a hit. `redact` rewrites the matched spans in the clean output.
ACTIONS = ("drop", "flag", "annotate", "redact")


@dataclass(slots=True)
class Hit:
    """One finding. `reason=None` carries tags only (the language of a row, say)."""

    reason: str | None
    score: float = 1.0
    detail: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, Any] | None = None


@dataclass
class Filter:
    """Base class: subclasses set the class variables, declare parameters as dataclass fields,
    validate them in `__post_init__` and implement `check`."""

    name: ClassVar[str]
    reasons: ClassVar[tuple[str, ...]]
    description: ClassVar[str]
    default_action: ClassVar[str] = "drop"
    redactable: ClassVar[bool] = False
    #: An RE2 pattern that every record this filter could hit must match. The batch runner
    #: screens whole batches with it in Arrow's compiled regex engine, and calls `check` only on
    #: the rows that match: most filters look for rare things, and this is what makes them cheap.
    gate: ClassVar[str | None] = None

    def check(self, record: Record) -> list[Hit] | None:
        raise NotImplementedError

    def screen(self, records: list[Record], texts: Any) -> tuple[Any, Hit | None]:
        """(mask of rows to `check`, hit for the others) for one batch; `texts` is an Arrow array
        of each record's full text. (None, None) means check every row."""
        if self.gate is None:
            return None, None
        import pyarrow.compute as pc

        return pc.match_substring_regex(texts, self.gate).to_numpy(zero_copy_only=False), None

    def redact(self, text: str) -> str:  # pragma: no cover - only filters with redactable=True
        raise NotImplementedError(f"filter {self.name!r} cannot redact")

    @classmethod
    def params(cls) -> dict[str, Any]:
        return {
            f.name: f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
            for f in dataclasses.fields(cls)
            if f.init
        }


FILTERS: dict[str, type[Filter]] = {}


def register(cls: type[Filter]) -> type[Filter]:
    """Class decorator that makes a filter nameable from a rules file."""
    if cls.name in FILTERS and FILTERS[cls.name] is not cls:
        raise ValueError(f"filter name {cls.name!r} is taken by {FILTERS[cls.name].__qualname__}")
    FILTERS[cls.name] = cls
    return cls
