"""The raw item a reader yields, and the JSON parse that turns its bytes into a dict."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

#: Raw text kept for a quarantined record, so a person can see what was there.
MAX_RAW_TEXT = 1 << 20


@dataclass(slots=True)
class Item:
    """One raw record. Exactly one of `data` (unparsed JSON), `value` or `error` is set."""

    source: str
    index: int
    line: int | None
    data: bytes | None = None
    value: Any = None
    error: str | None = None
    reason: str | None = None
    raw_text: str | None = None

    def __reduce__(self):
        # Items cross to worker processes by the thousand: a plain tuple pickles 20x faster than
        # the default slots-dataclass state.
        return (
            Item,
            (self.source, self.index, self.line, self.data, self.value, self.error, self.reason, self.raw_text),
        )

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}" if self.line is not None else f"{self.source}#{self.index}"


def raw_text(data: bytes | str) -> str:
    if isinstance(data, bytes):
        text = data[:MAX_RAW_TEXT].decode("utf-8", "backslashreplace")
    else:
        text = data[:MAX_RAW_TEXT]
    if len(data) > MAX_RAW_TEXT:
        text += f"... [{len(data) - MAX_RAW_TEXT} more bytes cut]"
    return text


def dump_json(value: Any) -> bytes:
    """JSON bytes for any parsed value. orjson first; values it refuses (lone surrogates from a
    Python caller, ints past 64 bits) go through the standard library with ASCII escapes, which
    always yields valid UTF-8."""
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        import json

        return json.dumps(value, default=str, ensure_ascii=True).encode("ascii")


def parse_item(item: Item) -> Item:
    """Parse `item.data` in place. Bad JSON and bad UTF-8 become an error, never an exception."""
    if item.data is None:
        return item
    data, item.data = item.data, None
    try:
        item.value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as uexc:
            item.error = f"invalid UTF-8 at byte {uexc.start}: {data[uexc.start : uexc.start + 4]!r}"
            item.reason = "input:utf8"
        else:
            item.error = f"malformed JSON: {exc}"
            item.reason = "input:json"
        item.raw_text = raw_text(data)
        return item
    if not isinstance(item.value, dict):
        item.error = f"expected a JSON object, got {type(item.value).__name__}"
        item.reason = "input:not-an-object"
        item.raw_text = raw_text(data)
        item.value = None
    return item
