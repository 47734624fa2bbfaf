"""Checkpoints, so that a scan killed part-way starts again after its last finished stage.

A scan of files on disk works in a folder named by its fingerprint (the inputs' paths, sizes and
mtimes, the rules, the options, the model and curate's version); each finished stage leaves a
pickle there, written whole or not at all. Objects in memory have no fingerprint: their scans
work in a fresh folder and do not resume.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from curate.read.spill import input_labels
from curate.write import versions

if TYPE_CHECKING:  # pragma: no cover
    from curate.result import ScanOptions
    from curate.ruleset import Rules

#: Bumped when what a checkpoint holds changes shape (2: the result types left curate.pipeline;
#: 3: the ledger keeps the formats each source was read as).
FORMAT = 3


def work_folder(source: Any, rules: Rules, options: ScanOptions, out: Path) -> tuple[Path, bool]:
    """The folder a scan into `out` works in, and whether it may resume from checkpoints there."""
    key = fingerprint(source, rules, options)
    if key is None:
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent)), False
    # A stable work folder per (inputs, rules, options): a scan killed part-way leaves its
    # finished stages there, and the same scan run again starts after them.
    workdir = out.parent / f".{out.name}.work-{key[:16]}"
    for stale in out.parent.glob(f".{out.name}.work-*"):
        if stale != workdir:
            shutil.rmtree(stale, ignore_errors=True)
    workdir.mkdir(exist_ok=True)
    return workdir, True


def fingerprint(source: Any, rules: Rules, options: ScanOptions) -> str | None:
    """What a scan's work depends on, for sources on disk: each file's path, size and mtime, the
    rules, the options, the embedding model and curate's version. None for objects in memory."""
    labels = input_labels(source)
    if labels[0].startswith("<") or labels == ["-"]:
        return None
    files = []
    for label in labels:
        path = Path(label)
        found = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for p in found:
            try:
                st = p.stat()
            except OSError:
                return None
            files.append((str(p.resolve()), st.st_size, st.st_mtime_ns))
    key = orjson.dumps(
        {
            "files": files,
            "rules": rules.digest,
            "options": repr(options),
            "model": os.environ.get("CURATE_MODEL", ""),
            "version": versions().get("curate"),
            "checkpoint": FORMAT,
        },
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(key).hexdigest()


def save(path: Path, value: Any) -> None:
    """A stage checkpoint, written whole or not at all."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


def load(path: Path) -> Any:
    with open(path, "rb") as fh:
        return pickle.load(fh)  # noqa: S301 - our own checkpoint, in our own work folder
