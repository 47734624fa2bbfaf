"""`--map`: read other schemas by naming where each standard field lives.

`--map instruction=question,output=answer` renames; `meta.prompt` reaches into nested objects and
`turns.0.text` into lists; `instances[].output` expands one raw record into one record per list
element, as self-instruct stores several input/output instances under one instruction.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from curate.errors import UsageError
from curate.normalise.formats import FormatMismatch

_MISSING = object()


@dataclass(frozen=True)
class Mapping:
    """Target field -> source path. At most one list may be expanded with `[]`."""

    fields: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        lists = {path.split("[]", 1)[0] for _, path in self.fields if "[]" in path}
        if len(lists) > 1:
            raise UsageError(f"--map may expand one list per record, got {sorted(lists)}")
        for target, path in self.fields:
            if not target or not path or path.count("[]") > 1:
                raise UsageError(f"bad --map entry {target}={path}; use field=path, e.g. output=instances[].output")

    @property
    def expands(self) -> str | None:
        for _, path in self.fields:
            if "[]" in path:
                return path.split("[]", 1)[0]
        return None

    def apply(self, value: dict) -> list[tuple[dict, dict]]:
        """(mapped fields, raw record for the clean output) per produced record."""
        base = {k: v for k, v in value.items()}
        flat = [(target, path) for target, path in self.fields if "[]" not in path]
        for target, path in flat:
            got = get_path(value, path)
            base[target] = None if got is _MISSING else got
        prefix = self.expands
        if prefix is None:
            return [(base, value)]
        elements = get_path(value, prefix)
        if not isinstance(elements, list):
            raise FormatMismatch(
                f"field {prefix!r} must be a list to expand"
                + ("" if elements is not _MISSING else ", but it is missing")
            )
        out = []
        for element in elements:
            mapped = dict(base)
            for target, path in self.fields:
                if "[]" in path:
                    rest = path.split("[]", 1)[1].lstrip(".")
                    got = get_path(element, rest) if rest else element
                    mapped[target] = None if got is _MISSING else got
            out.append((mapped, _narrow(value, prefix, element)))
        return out


def _narrow(value: dict, prefix: str, element: Any) -> dict:
    """The raw record with the expanded list cut down to one element: its original shape."""
    narrowed = copy.copy(value)
    keys = prefix.split(".")
    node = narrowed
    for key in keys[:-1]:
        node[key] = copy.copy(node[key])
        node = node[key]
    node[keys[-1]] = [element]
    return narrowed


def get_path(value: Any, path: str) -> Any:
    node = value
    for key in path.split("."):
        if isinstance(node, dict):
            node = node.get(key, _MISSING)
        elif isinstance(node, list) and key.lstrip("-").isdigit():
            index = int(key)
            node = node[index] if -len(node) <= index < len(node) else _MISSING
        else:
            return _MISSING
        if node is _MISSING:
            return _MISSING
    return node


def parse_mapping(spec: str | dict[str, str] | list[str] | None) -> Mapping | None:
    """Parse `instruction=question,output=answer` (or a dict) into a `Mapping`."""
    if not spec:
        return None
    if isinstance(spec, dict):
        pairs = list(spec.items())
    else:
        entries = [e for s in ([spec] if isinstance(spec, str) else spec) for e in s.split(",") if e.strip()]
        pairs = []
        for entry in entries:
            if "=" not in entry:
                raise UsageError(f"bad --map entry {entry!r}; use field=path, e.g. instruction=question")
            target, path = entry.split("=", 1)
            pairs.append((target.strip(), path.strip()))
    return Mapping(tuple(pairs))


#: Schemas read without help because they are mappings onto a standard format.
PRESETS: dict[str, tuple[Mapping, str]] = {
    "self_instruct": (
        Mapping((("instruction", "instruction"), ("input", "instances[].input"), ("output", "instances[].output"))),
        "alpaca",
    ),
}


def detect_preset(value: dict) -> str | None:
    if "instruction" in value and isinstance(value.get("instances"), list) and "output" not in value:
        return "self_instruct"
    return None
