"""Every row's verdict, reasons, suspicion and evidence on the shipped samples, pinned.

A refactor that moves code must not change what a scan decides. The pinned file is the scan of
`data/samples` with the hashing embedder (the tests' default); after a change that is *meant* to
change verdicts, regenerate it with `CURATE_UPDATE_PINNED=1 python -m pytest tests/test_pinned.py`
and say why in the commit.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

import curate

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "data" / "samples"
PINNED = Path(__file__).parent / "pinned" / "samples_verdicts.jsonl"


def _rounded(value: Any) -> Any:
    """Floats to 3 places: the last digits of a BLAS sum may differ between machines."""
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def _rows(text: str) -> list[dict[str, Any]]:
    return [_rounded(orjson.loads(line)) for line in text.splitlines() if line.strip()]


def test_sample_verdicts_are_pinned(tmp_path):
    report = curate.scan(str(SAMPLES), out=tmp_path / "out")
    got = (report.out / "verdicts.jsonl").read_text().replace(str(SAMPLES), "data/samples")
    if os.environ.get("CURATE_UPDATE_PINNED"):
        PINNED.parent.mkdir(exist_ok=True)
        PINNED.write_text(got)
    want = _rows(PINNED.read_text())
    rows = _rows(got)
    assert len(rows) == len(want) == report.rows
    for mine, pinned in zip(rows, want, strict=False):
        assert mine == pinned, f"row {pinned['row']} ({pinned['source']}:{pinned['line']}) changed"
    # The pin means something only if the samples exercise the verdicts that matter.
    assert {"keep", "flag", "drop", "quarantine"} <= {r["verdict"] for r in want}
    assert any(r["triggers"] for r in want)
