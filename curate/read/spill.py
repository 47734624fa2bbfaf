"""Read, in batches, and keep what was read: pass one's batching, the spill of raw records to
disk, and the loader that re-creates a record from the spill for the stages after pass one.

In: a path, folder, glob, list of them, or an object in memory (a Dataset, a frame, dicts).
Out: batches of `Item`s; afterwards, `Spill` (raw bytes by row) and `RecordLoader` (a `Record`
by row).
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from curate.read.items import Item
from curate.read.objects import object_source
from curate.read.sources import resolve_sources
from curate.record import Record

if TYPE_CHECKING:  # pragma: no cover
    from curate.normalise import Normaliser
    from curate.result import Ledger

BATCH_ROWS = 2048
BATCH_BYTES = 16 << 20


def resolve_input(source: Any, input_type: str | None = None) -> list[Any]:
    """The sources a scan reads: files for paths, one object source for anything else."""
    if isinstance(source, (str, os.PathLike)):
        return resolve_sources([str(source)], input_type)
    if isinstance(source, (list, tuple)) and source and all(isinstance(s, (str, os.PathLike)) for s in source):
        return resolve_sources([str(s) for s in source], input_type)
    return [object_source(source)]


def input_labels(source: Any) -> list[str]:
    """How the report names the input: its paths, or `<module.Type>` for an object in memory."""
    if isinstance(source, (str, os.PathLike)):
        return [str(source)]
    if isinstance(source, (list, tuple)) and all(isinstance(s, (str, os.PathLike)) for s in source):
        return [str(s) for s in source]
    return [f"<{type(source).__module__}.{type(source).__name__}>"]


def batches(sources: list, normaliser: Normaliser) -> Iterator[list[Item]]:
    batch: list[Item] = []
    size = 0
    for source in sources:
        resolved = False
        for item in source.items():
            if not resolved and item.error is None:
                value = item.value
                if item.data is not None:
                    try:
                        value = orjson.loads(item.data)
                    except orjson.JSONDecodeError:
                        value = None
                if isinstance(value, dict):
                    normaliser.resolve(item.source, value)
                    resolved = True
            batch.append(item)
            size += len(item.data) if item.data is not None else 256
            if len(batch) >= BATCH_ROWS or size >= BATCH_BYTES:
                yield batch
                batch, size = [], 0
    if batch:
        yield batch


class Spill:
    """Raw records on disk in an Arrow IPC file, one batch per pass-one batch, keyed by row."""

    def __init__(self, path: Path):
        import pyarrow as pa

        self.path = path
        self._pa = pa
        self.schema = pa.schema([("row", pa.int64()), ("raw", pa.large_binary())])
        self._sink = pa.OSFile(str(path), "wb")
        self._writer = pa.ipc.new_file(self._sink, self.schema)
        self._starts: list[int] = []  # first row of each batch, in file order
        self._cached: tuple[int, list[bytes]] | None = None
        self._random = None

    @classmethod
    def reopen(cls, path: Path) -> Spill:
        """A finished spill from an interrupted scan, for reading."""
        import pyarrow as pa

        spill = cls.__new__(cls)
        spill.path, spill._pa = path, pa
        spill.schema = pa.schema([("row", pa.int64()), ("raw", pa.large_binary())])
        spill._sink = spill._writer = None
        spill._cached, spill._random = None, None
        reader = spill._reader()
        spill._starts = [reader.get_batch(i).column(0)[0].as_py() for i in range(reader.num_record_batches)]
        return spill

    def write(self, first_row: int, raw: Any) -> None:
        """Append one batch; `raw` is an Arrow large_binary array (or a list of bytes)."""
        pa = self._pa
        if not len(raw):
            return
        if not isinstance(raw, pa.Array):
            raw = pa.array(raw, pa.large_binary())
        rows = pa.array(np.arange(first_row, first_row + len(raw), dtype=np.int64))
        self._starts.append(first_row)
        self._writer.write_batch(pa.record_batch([rows, raw], schema=self.schema))

    def close(self) -> None:
        self._writer.close()
        self._sink.close()

    def _reader(self):
        pa = self._pa
        # A plain file rather than a memory map: mapped pages count as the process's resident
        # memory, and a million-row spill would look like a GB of it.
        return pa.ipc.open_file(pa.OSFile(str(self.path), "rb"))

    def batches(self) -> Iterator[tuple[int, list[bytes]]]:
        reader = self._reader()
        for i in range(reader.num_record_batches):
            batch = reader.get_batch(i)
            rows = batch.column(0)
            yield (rows[0].as_py() if len(rows) else 0), batch.column(1).to_pylist()

    def raw(self, row: int) -> bytes:
        """One record. Reads its whole batch and keeps it, so rows asked for in order are cheap."""
        if self._cached is None or not (self._cached[0] <= row < self._cached[0] + len(self._cached[1])):
            if self._random is None:
                self._random = self._reader()
            i = bisect.bisect_right(self._starts, row) - 1
            self._cached = (self._starts[i], self._random.get_batch(i).column(1).to_pylist())
        return self._cached[1][row - self._cached[0]]


class RecordLoader:
    """Re-creates records from the spill for the few rows later stages need to read again."""

    def __init__(self, spill: Spill, ledger: Ledger, normaliser: Normaliser):
        self.spill, self.ledger, self.normaliser = spill, ledger, normaliser

    def record(self, row: int) -> Record | None:
        if row in self.ledger.quarantined:
            return None
        try:
            value = orjson.loads(self.spill.raw(row))
        except orjson.JSONDecodeError:
            return None
        item = Item(self.ledger.source_names[self.ledger.source_id[row]], self.ledger.index[row], None, value=value)
        for rec in self.normaliser.records(item, row):
            return rec if isinstance(rec, Record) else None
        return None
