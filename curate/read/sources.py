"""Sources: files (JSONL, JSON, Parquet, CSV, compressed), folders, globs, stdin, saved datasets.

In: what the user named (a path, folder, glob or `-`). Out: `Source`s, and from each a stream of
raw `Item`s with their `file:line`; bytes that cannot be parsed become items that say why.
"""

from __future__ import annotations

import codecs
import csv
import glob as globlib
import gzip
import io
import json
import os
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from curate.errors import InputError, UsageError
from curate.read.items import Item, raw_text

#: A line longer than this is quarantined unread (it would only be dropped as too long anyway).
MAX_RECORD_BYTES = 256 << 20
CHUNK = 1 << 20

KINDS = ("jsonl", "json", "parquet", "csv", "tsv", "dataset")
_SUFFIX_KIND = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".csv": "csv",
    ".tsv": "tsv",
}
_COMPRESSION = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}


@dataclass
class Source:
    """One readable thing. `problems` collects file-level notes (empty file, truncation)."""

    name: str
    kind: str
    path: Path | None = None
    compression: str | None = None
    stream: BinaryIO | None = None
    problems: list[str] = field(default_factory=list)

    def items(self) -> Iterator[Item]:
        reader = {
            "jsonl": _read_jsonl,
            "json": _read_json,
            "parquet": _read_parquet,
            "csv": _read_csv,
            "tsv": _read_csv,
            "dataset": _read_dataset,
            "sniff": _read_json,
        }[self.kind]
        count = 0
        for item in reader(self):
            count += 1
            yield item
        if count == 0 and not self.problems:
            self.problems.append("empty: no records")


def _kind_of(path: Path) -> tuple[str | None, str | None]:
    suffixes = [s.lower() for s in path.suffixes]
    compression = _COMPRESSION.get(suffixes[-1]) if suffixes else None
    if compression:
        suffixes = suffixes[:-1]
    kind = _SUFFIX_KIND.get(suffixes[-1]) if suffixes else None
    return kind, compression


def _is_saved_dataset(path: Path) -> bool:
    return (
        (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists() or (path / "state.json").exists()
    )


def resolve_sources(specs: list[str] | str, fmt_kind: str | None = None) -> list[Source]:
    """Expand paths, folders and globs into sources, sorted so the order is deterministic."""
    if isinstance(specs, (str, os.PathLike)):
        specs = [str(specs)]
    if not specs:
        raise UsageError("no input given")
    sources: list[Source] = []
    for spec in specs:
        spec = str(spec)
        if spec == "-":
            sources.append(Source("<stdin>", fmt_kind or "sniff", stream=sys.stdin.buffer))
            continue
        path = Path(spec)
        if path.is_dir():
            if _is_saved_dataset(path):
                sources.append(Source(str(path), "dataset", path))
                continue
            found = sorted(p for p in path.rglob("*") if p.is_file() and _kind_of(p)[0])
            found = [p for p in found if not any(part.startswith(".") for part in p.relative_to(path).parts)]
            if not found:
                raise InputError(
                    "folder holds no readable files (.jsonl, .json, .parquet, .csv, .tsv, optionally .gz/.zst)",
                    source=spec,
                )
            sources.extend(open_source(p, fmt_kind) for p in found)
        elif path.exists():
            sources.append(open_source(path, fmt_kind))
        elif any(ch in spec for ch in "*?["):
            matched = sorted(Path(p) for p in globlib.glob(spec, recursive=True) if Path(p).is_file())
            if not matched:
                raise InputError("glob matches no files", source=spec)
            sources.extend(open_source(p, fmt_kind) for p in matched)
        else:
            raise InputError("no such file or folder", source=spec)
    return sources


def open_source(path: Path | str, fmt_kind: str | None = None) -> Source:
    path = Path(path)
    kind, compression = _kind_of(path)
    kind = fmt_kind or kind
    if kind is None:
        raise InputError(
            f"cannot tell the file type from its name; pass --input-type ({', '.join(KINDS)})", source=str(path)
        )
    if kind not in KINDS:
        raise UsageError(f"unknown input type {kind!r}; valid: {', '.join(KINDS)}")
    return Source(str(path), kind, path, compression)


def _open_binary(source: Source) -> BinaryIO:
    if source.stream is not None:
        return source.stream
    if source.path is None:
        raise InputError("neither a path nor a stream to read", source=source.name)
    raw = open(source.path, "rb")
    if source.compression == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if source.compression == "zstd":
        import zstandard

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=True))
    return raw


_TRUNCATION_ERRORS = (EOFError, zlib.error, OSError)
_BOM = b"\xef\xbb\xbf"  # Windows tools write it; it is not part of the first record


def _broken(source: Source, index: int, line: int | None, exc: BaseException) -> Item:
    message = f"file is truncated or corrupt after this point ({type(exc).__name__}: {exc})"
    source.problems.append(f"line {line}: {message}" if line else message)
    return Item(source.name, index, line, error=message, reason="input:truncated", raw_text="")


def _sniff(source: Source, stream: BinaryIO) -> tuple[str, bytes]:
    """Tell a JSON array from JSON Lines by the first non-space byte, keeping what was read."""
    head = b""
    while True:
        chunk = stream.read(4096)
        if not chunk:
            break
        head += chunk
        if head.lstrip():
            break
    if head.startswith(_BOM):
        head = head[len(_BOM) :]
    first = head.lstrip()[:1]
    if first == b"[":
        return "json", head
    return "jsonl", head


def _read_jsonl(source: Source) -> Iterator[Item]:
    try:
        stream = _open_binary(source)
    except OSError as exc:
        yield _broken(source, 0, None, exc)
        return
    yield from _jsonl_lines(source, stream, b"")


def _jsonl_lines(source: Source, stream: BinaryIO, head: bytes) -> Iterator[Item]:
    """One item per non-blank line. Whole chunks are split in C; only a line cut by a chunk's
    end is carried over to the next."""
    # read1 hands over what one decompression step produced, so a truncated .gz loses only its
    # last step, not everything a 1 MiB read() had gathered before the error.
    read = getattr(stream, "read1", stream.read)
    name = source.name
    index = 0
    lineno = 0
    carry = head

    def emit(lines: list[bytes]) -> Iterator[Item]:
        nonlocal index, lineno
        for line in lines:
            lineno += 1
            if lineno == 1 and line.startswith(_BOM):
                line = line[len(_BOM) :]
            if line.strip():
                yield Item(name, index, lineno, data=line.rstrip(b"\r"))
                index += 1

    try:
        while True:
            chunk = read(CHUNK)
            if not chunk:
                break
            data = carry + chunk if carry else chunk
            cut = data.rfind(b"\n")
            if cut < 0:
                carry = data
                if len(carry) > MAX_RECORD_BYTES:
                    # Skip the rest of an oversized line without holding it.
                    size = len(carry)
                    while True:
                        chunk = read(CHUNK)
                        if not chunk or b"\n" in chunk:
                            break
                        size += len(chunk)
                    lineno += 1
                    yield Item(
                        name,
                        index,
                        lineno,
                        error=f"record of over {size} bytes exceeds the {MAX_RECORD_BYTES >> 20} MiB limit",
                        reason="input:too-large",
                        raw_text=raw_text(carry),
                    )
                    index += 1
                    carry = chunk[chunk.find(b"\n") + 1 :] if chunk else b""
                continue
            carry = data[cut + 1 :]
            yield from emit(data[:cut].split(b"\n"))
    except _TRUNCATION_ERRORS as exc:
        if carry.strip():
            lineno += 1
            item = _broken(source, index, lineno, exc)
            item.raw_text = raw_text(carry)
            yield item
        else:
            yield _broken(source, index, lineno + 1, exc)
        return
    if carry:
        yield from emit(carry.split(b"\n"))


def _read_json(source: Source) -> Iterator[Item]:
    """Stream the elements of a top-level JSON array without loading the file whole."""
    try:
        stream = _open_binary(source)
        kind, head = _sniff(source, stream)
    except _TRUNCATION_ERRORS as exc:
        yield _broken(source, 0, None, exc)
        return
    if kind == "jsonl":
        # A .json file holding JSON Lines, or one object: both read as lines of objects.
        text_head = head.lstrip()
        if text_head.startswith(b"{") and not _looks_like_lines(text_head):
            yield from _single_document(source, stream, head)
            return
        yield from _jsonl_lines(source, stream, head)
        return
    yield from _json_array(source, stream, head)


def _looks_like_lines(head: bytes) -> bool:
    first = head.split(b"\n", 1)[0]
    try:
        json.loads(first)
        return True
    except ValueError:
        return False


def _single_document(source: Source, stream: BinaryIO, head: bytes) -> Iterator[Item]:
    """One pretty-printed object, or JSON Lines whose first line was longer than the sniffed head."""
    data = head + stream.read()
    try:
        json.loads(data)
    except ValueError:
        yield from _jsonl_lines(source, io.BytesIO(data), b"")
        return
    yield Item(source.name, 0, 1 + data[: len(data) - len(data.lstrip())].count(b"\n"), data=data)


def _json_array(source: Source, stream: BinaryIO, head: bytes) -> Iterator[Item]:
    decoder = json.JSONDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8")("strict")
    eof = False
    buf = ""
    pos = 0
    line = 1  # line number at buf[pos]
    index = 0

    def more(want: int) -> bool:
        nonlocal buf, pos, eof
        if eof:
            return False
        data = head_once() or stream.read(max(CHUNK, want))
        if not data:
            eof = True
            buf += utf8.decode(b"", final=True)
            return False
        buf = buf[pos:] + utf8.decode(data)
        pos = 0
        return True

    pending_head = [head]

    def head_once() -> bytes:
        data, pending_head[0] = pending_head[0], b""
        return data

    def skip_ws() -> bool:
        nonlocal pos, line
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n":
                if buf[pos] == "\n":
                    line += 1
                pos += 1
            if pos < len(buf):
                return True
            if not more(0):
                return False

    def fail(message: str) -> Item:
        rest = buf[pos : pos + 2000]
        msg = f"malformed JSON array: {message}; the rest of the file cannot be read"
        source.problems.append(f"line {line}: {msg}")
        return Item(source.name, index, line, error=msg, reason="input:json", raw_text=rest)

    try:
        if not skip_ws() or buf[pos] != "[":
            if buf[pos : pos + 1]:
                yield fail(f"expected '[' but found {buf[pos : pos + 20]!r}")
            return
        pos += 1
        expect_value = True
        while True:
            if not skip_ws():
                yield fail("file ends inside the array")
                return
            ch = buf[pos]
            if ch == "]":
                return
            if not expect_value:
                if ch != ",":
                    yield fail(f"expected ',' or ']' but found {buf[pos : pos + 20]!r}")
                    return
                pos += 1
                expect_value = True
                continue
            while True:
                try:
                    value, end = decoder.raw_decode(buf, pos)
                    break
                except ValueError as exc:
                    if more(len(buf)):
                        continue
                    yield fail(str(exc))
                    return
            start_line = line
            line += buf.count("\n", pos, end)
            pos = end
            if isinstance(value, dict):
                yield Item(source.name, index, start_line, value=value)
            else:
                yield Item(
                    source.name,
                    index,
                    start_line,
                    error=f"expected a JSON object, got {type(value).__name__}",
                    reason="input:not-an-object",
                    raw_text=raw_text(json.dumps(value)),
                )
            index += 1
            expect_value = False
    except UnicodeDecodeError as exc:
        yield fail(f"invalid UTF-8 ({exc.reason}) near byte {exc.start} of a chunk")
    except _TRUNCATION_ERRORS as exc:
        yield _broken(source, index, line, exc)


def _read_csv(source: Source) -> Iterator[Item]:
    csv.field_size_limit(MAX_RECORD_BYTES)
    try:
        stream = io.TextIOWrapper(_open_binary(source), encoding="utf-8-sig", errors="surrogateescape", newline="")
        reader = csv.reader(stream, delimiter="\t" if source.kind == "tsv" else ",")
        header = next(reader, None)
    except _TRUNCATION_ERRORS + (csv.Error,) as exc:
        yield _broken(source, 0, 1, exc)
        return
    if header is None:
        return
    index = 0
    prev_end = reader.line_num
    try:
        for values in reader:
            start = prev_end + 1
            prev_end = reader.line_num
            if not values:
                continue
            row_text = ",".join(values)
            if len(values) != len(header):
                yield Item(
                    source.name,
                    index,
                    start,
                    error=f"expected {len(header)} columns, got {len(values)}",
                    reason="input:csv",
                    raw_text=raw_text(row_text),
                )
            elif any("\udc80" <= ch <= "\udcff" for v in values for ch in v if not v.isascii()):
                yield Item(
                    source.name,
                    index,
                    start,
                    error="invalid UTF-8",
                    reason="input:utf8",
                    raw_text=raw_text(row_text.encode("utf-8", "surrogateescape")),
                )
            else:
                yield Item(source.name, index, start, value=dict(zip(header, values, strict=False)))
            index += 1
    except csv.Error as exc:
        yield Item(source.name, index, prev_end + 1, error=f"malformed CSV: {exc}", reason="input:csv", raw_text="")
    except _TRUNCATION_ERRORS as exc:
        yield _broken(source, index, prev_end + 1, exc)


def _read_parquet(source: Source) -> Iterator[Item]:
    import pyarrow.parquet as pq

    index = 0
    try:
        parquet = pq.ParquetFile(source.path)
        for batch in parquet.iter_batches(batch_size=4096):
            for value in batch.to_pylist():
                yield Item(source.name, index, None, value=value)
                index += 1
    except Exception as exc:  # pyarrow raises many types for corrupt files
        yield _broken(source, index, None, exc)


def _read_dataset(source: Source) -> Iterator[Item]:
    try:
        import datasets
    except ImportError as exc:
        raise InputError(
            "reading a saved `datasets` dataset needs the datasets package: pip install 'curate[hf]'",
            source=source.name,
        ) from exc
    loaded = datasets.load_from_disk(str(source.path))
    splits: list[tuple[str, Any]] = list(loaded.items()) if isinstance(loaded, datasets.DatasetDict) else [("", loaded)]
    for split, ds in splits:
        name = f"{source.name}[{split}]" if split else source.name
        for index, value in enumerate(ds):
            yield Item(name, index, None, value=value)
