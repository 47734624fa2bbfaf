"""Read: turn a path, a glob, stdin or a Python object into a stream of raw items.

An item is one raw record with its place (source, index, line). Nothing here raises on bad data
inside a file: unreadable bytes become items that carry an error and their raw text, so the
record is quarantined, never lost. Only a source that cannot be opened at all raises
`InputError`, naming the path.
"""

from __future__ import annotations

from curate.read.items import Item, parse_item
from curate.read.sources import Source, open_source, resolve_sources

__all__ = ["Item", "Source", "open_source", "parse_item", "resolve_sources"]
