"""Python objects as sources: a `datasets.Dataset`, a polars or pandas frame, an iterable of dicts."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from curate.errors import InputError
from curate.read.items import Item


@dataclass
class ObjectSource:
    name: str
    rows: Iterable[Any]
    kind: str = "python"
    path: None = None
    problems: list[str] = field(default_factory=list)

    def items(self) -> Iterator[Item]:
        count = 0
        for index, value in enumerate(self.rows):
            count += 1
            if isinstance(value, dict):
                yield Item(self.name, index, None, value=value)
            else:
                yield Item(
                    self.name,
                    index,
                    None,
                    error=f"expected a dict, got {type(value).__name__}",
                    reason="input:not-an-object",
                    raw_text=repr(value)[:10_000],
                )
        if count == 0:
            self.problems.append("empty: no records")


def object_kind(obj: Any) -> str | None:
    """'dataset', 'polars', 'pandas' or 'iterable' for objects curate can scan, else None."""
    module = type(obj).__module__ or ""
    if module.startswith("datasets"):
        return "dataset"
    if module.startswith("polars"):
        return "polars"
    if module.startswith("pandas"):
        return "pandas"
    if isinstance(obj, (str, bytes)) or not isinstance(obj, Iterable):
        return None
    return "iterable"


def _frame_rows(frame: Any, kind: str) -> Iterator[dict]:
    if kind == "polars":
        for offset in range(0, frame.height, 4096):
            yield from frame.slice(offset, 4096).to_dicts()
    else:
        for offset in range(0, len(frame), 4096):
            yield from frame.iloc[offset : offset + 4096].to_dict("records")


def object_source(obj: Any) -> ObjectSource:
    kind = object_kind(obj)
    if kind == "dataset":
        if hasattr(obj, "keys") and not hasattr(obj, "features"):
            raise InputError("pass one split of a DatasetDict, e.g. ds['train']")
        return ObjectSource("<dataset>", iter(obj), kind)
    if kind in ("polars", "pandas"):
        if not hasattr(obj, "columns"):
            raise InputError(f"cannot scan a {type(obj).__name__}; pass a DataFrame")
        return ObjectSource(f"<{kind}>", _frame_rows(obj, kind), kind)
    if kind == "iterable":
        return ObjectSource("<python>", obj, kind)
    raise InputError(
        f"cannot scan a {type(obj).__name__}: pass a path, a datasets.Dataset, "
        "a polars or pandas DataFrame, or an iterable of dicts"
    )
