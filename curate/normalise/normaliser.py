"""Per-source format detection and conversion of items to records."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from curate.errors import UsageError
from curate.normalise.formats import FORMATS, FormatMismatch, detect_format
from curate.normalise.mapping import PRESETS, Mapping, detect_preset
from curate.read.items import Item, dump_json, raw_text
from curate.record import Record


def _unencodable(rec: Record) -> str | None:
    for where, text in rec.texts():
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                return where
    return None


@dataclass(slots=True)
class Unreadable:
    """An item that could not become a record. It ends as a quarantine verdict."""

    row: int
    source: str
    index: int
    line: int | None
    reason: str
    error: str
    raw_text: str


@dataclass
class Normaliser:
    """Turns parsed items into records. Detects the format once per source, from its first object."""

    format: str | None = None
    mapping: Mapping | None = None
    _formats: dict[str, tuple[str | None, Mapping | None]] = field(default_factory=dict)
    _names: dict[str, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.format is not None and self.format not in FORMATS and self.format not in PRESETS:
            valid = ", ".join([*FORMATS, *PRESETS])
            raise UsageError(f"unknown format {self.format!r}; valid: {valid}")

    def source_format(self, source: str, read: set[str] | None = None) -> str | None:
        """The format a source was read as: its first record's, then the others among `read`
        (the formats its records were read as) that a file of concatenated datasets mixes in."""
        name = self._names.get(source)
        others = sorted((read or set()) - {self._formats.get(source, (None, None))[0]})
        return " + ".join([name, *others]) if name and others else name

    def resolve(self, source: str, value: dict) -> tuple[str | None, Mapping | None]:
        if source in self._formats:
            return self._formats[source]
        mapping = self.mapping
        fmt = name = self.format
        if fmt in PRESETS:
            mapping, fmt = PRESETS[fmt]
        elif mapping is None and fmt is None and (preset := detect_preset(value)):
            name = preset
            mapping, fmt = PRESETS[preset]
        if fmt is None:
            try:
                probe = mapping.apply(value)[0][0] if mapping else value
            except FormatMismatch:
                probe = value
            fmt = detect_format(probe)
        self._formats[source] = (fmt, mapping)
        self._names[source] = name or (f"{fmt} (mapped)" if self.mapping and fmt else fmt)
        return fmt, mapping

    def records(self, item: Item, row: int) -> Iterator[Record | Unreadable]:
        """The record(s) of one parsed item; `row` is the global row of the first."""
        if item.error is not None:
            yield Unreadable(
                row,
                item.source,
                item.index,
                item.line,
                item.reason or "input:unreadable",
                item.error,
                item.raw_text or "",
            )
            return
        value = item.value
        fmt, mapping = self.resolve(item.source, value)
        if fmt is not None and mapping is None and self.format is None and not FORMATS[fmt].detect(value):
            # A file that concatenates datasets: a record that is plainly another format (it has
            # none of the fields the file's format needs, and nothing was forced or mapped) is
            # read as that format, record by record. Any other record keeps the file's format,
            # and its message.
            other = detect_format(value)
            if other and not any(key in value for key in FORMATS[fmt].needs):
                fmt = other
        try:
            if fmt is None:
                raise FormatMismatch(
                    f"cannot tell the format from the fields {sorted(value)[:12]}; "
                    f"pass --format ({', '.join([*FORMATS, *PRESETS])}) or --map field=path"
                )
            convert = FORMATS[fmt].convert
            produced = mapping.apply(value) if mapping else [(value, value)]
            results = []
            for part, (mapped, raw) in enumerate(produced):
                turns, rejected = convert(mapped)
                results.append(
                    Record(
                        row + part,
                        item.source,
                        item.index,
                        item.line,
                        fmt,
                        raw,
                        turns,
                        rejected,
                        part if mapping and mapping.expands else None,
                    )
                )
        except FormatMismatch as exc:
            fields = ", ".join(sorted(map(str, value))[:12])
            needs = f" ({fmt} needs {', '.join(FORMATS[fmt].needs)}; this record has {fields})" if fmt else ""
            other = detect_format(value) or (detect_preset(value) and "self_instruct")
            if fmt and other and other != fmt:
                reason, needs = "input:format", f" (this record looks like {other}, but the file is {fmt})"
            else:
                reason = "input:missing-field" if "missing" in str(exc) else "input:format"
            yield Unreadable(
                row, item.source, item.index, item.line, reason, f"{exc}{needs}", raw_text(dump_json(value).decode())
            )
            return
        for rec in results:
            where = _unencodable(rec)
            if where:
                yield Unreadable(
                    row,
                    item.source,
                    item.index,
                    item.line,
                    "input:utf8",
                    f"{where} holds a lone surrogate code point, which no UTF-8 file can hold",
                    raw_text(dump_json(value).decode()),
                )
                return
        if not results:
            yield Unreadable(
                row,
                item.source,
                item.index,
                item.line,
                "input:missing-field",
                f"list {mapping.expands!r} is empty: no records to read" if mapping else "empty",
                raw_text(dump_json(value).decode()),
            )
            return
        yield from results
