"""`curate.guard`: scan, and raise when the data crosses a threshold. The one call a pipeline
needs before it trains: a CI job, a Trainer callback, a pre-commit hook."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from curate.errors import CurateError, PoisonedDataError

DEFAULT_FAIL_ON = ("flag>0", "quarantine>0")


def describe(report: Any, failed: list[str]) -> str:
    """One readable paragraph: what crossed, and the first rows to look at."""
    s = report.summary
    lines = [
        f"curate guard: {', '.join(failed)} (of {s['rows']:,} rows: "
        + ", ".join(f"{v} {c:,}" for v, c in s["counts"].items())
        + ")"
    ]
    detection = s.get("detection") or {}
    for t in detection.get("triggers", [])[:3]:
        lines.append(f"  suspected trigger {t['trigger']!r}: {t.get('text') or str(t['flagged']) + ' rows'}")
    for f in s.get("flagged", [])[:5]:
        where = f"{f['source']}:{f['line']}" if f.get("line") else f"{f['source']} (row {f['row']})"
        lines.append(f"  flagged {where}: {', '.join(f['reasons'])}")
    for q in s.get("unreadable", [])[:3]:
        where = f"{q['source']}:{q['line']}" if q.get("line") else f"{q['source']} (row {q['row']})"
        lines.append(f"  unreadable {where}: {q['error']}")
    lines.append(f"  full report: {Path(report.out) / 'report.html'}")
    return "\n".join(lines)


def guard(
    source: Any,
    fail_on: Sequence[str] | str | None = DEFAULT_FAIL_ON,
    *,
    rules: Any = None,
    out: str | Path | None = None,
    queue: str | None = None,
    detect: bool = True,
    **scan_options: Any,
):
    """Scan `source` (anything `curate.scan` takes) and return its Report, or raise
    `PoisonedDataError` (carrying the report) when any `fail_on` expression holds. The default
    fails on rows still flagged for review or unreadable; expressions are the CLI's --fail-on.

    Poison detection must run: if it fails (no `embed` extra, a missing model), the guard fails
    too, rather than pass data nobody checked. `detect=False` turns it off on purpose."""
    import dataclasses

    from curate.api import scan
    from curate.ruleset import Rules, load_rules

    if not isinstance(rules, Rules):
        rules = load_rules(rules)
    if not detect:
        rules = dataclasses.replace(rules, detect=dataclasses.replace(rules.detect, enabled=False))
    fail_on = [fail_on] if isinstance(fail_on, str) else list(fail_on or [])
    report = scan(source, rules=rules, out=out, fail_on=fail_on, queue=queue, **scan_options)
    failed = [t.text for t in report.failed]
    detection = report.summary.get("detection") or {}
    if detect and rules.detect.enabled and detection.get("status") == "failed":
        failed.append(
            f"poison detection did not run ({detection.get('error')}); install curate[embed], "
            "or turn detection off on purpose (detect=False, --no-detect)"
        )
    if failed:
        raise PoisonedDataError(describe(report, failed), report=report, failed=failed)
    return report


class GateError(CurateError):
    """Training was refused: the data is not a verified curate output (exit 2)."""

    exit_code = 2


def gate(source: str | Path, *, allow_unscanned: bool = False) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """What training may read, and the provenance of what it read: (provenance, the scan's read
    settings). Raises `GateError` with the reason and what to do.

    - A scan folder whose manifest checks out: its `clean.jsonl`. If that scan fed a review
      queue, it is refused: rows rejected in review are only out of `curate apply`'s output.
    - An `apply` folder whose manifest checks out: its `clean.jsonl`.
    - A plain file, only with `allow_unscanned`; the provenance then says so.

    Cheap (hashes, no parsing), so a trainer runs it on every rank before the first step."""

    from curate.errors import ManifestError
    from curate.write import _sha256, verify_manifest

    source = Path(source)
    if not source.exists():
        raise GateError(f"{source}: no such file or folder")
    if source.is_file():
        if not allow_unscanned:
            raise GateError(
                f"{source} is a plain file, not a curate output folder: scan it first "
                f"(`curate scan {source} --out scan`) and train on scan/, or pass --allow-unscanned "
                "to train on it as is (the adapter's manifest will record that)"
            )
        return {"unscanned": True, "data": {"path": str(source.resolve()), "sha256": _sha256(source)}}, None
    try:
        manifest = verify_manifest(source)
    except ManifestError as exc:
        raise GateError(f"refusing to train: {exc}") from None
    if manifest.get("tool") != "curate":
        raise GateError(f"refusing to train on {source}: its manifest was not written by curate")
    kind = manifest.get("kind", "scan")
    if kind not in ("scan", "apply"):
        raise GateError(f"refusing to train on {source}: a '{kind}' folder; train on a scan or apply output")
    try:
        return _provenance(source, manifest, kind)
    except KeyError as exc:
        raise GateError(f"refusing to train on {source}: a manifest lacks {exc}; not a whole {kind} output") from None
    except (TypeError, AttributeError):
        raise GateError(f"refusing to train on {source}: a malformed manifest; not a whole {kind} output") from None


def _provenance(source: Path, manifest: dict[str, Any], kind: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    import orjson

    from curate.write import _sha256

    clean = source / "clean.jsonl"
    provenance: dict[str, Any] = {
        "unscanned": False,
        "kind": kind,
        "manifest_sha256": _sha256(source / "manifest.json"),
        "data": {"path": str(clean.resolve()), "sha256": manifest["outputs"]["clean.jsonl"]["sha256"]},
        "rules_sha256": manifest["rules"]["sha256"],
    }
    settings = None
    if kind == "scan":
        review = manifest.get("review")
        if review:
            raise GateError(
                f"refusing to train on {source}: this scan fed the review queue {review.get('queue')}, "
                f"so rows rejected in review may still be in it. Run `curate apply {source} --queue "
                f"{review.get('queue')} --out final` and train on final/"
            )
        provenance["scan_report_sha256"] = manifest["outputs"]["report.json"]["sha256"]
        settings = manifest.get("settings")
    else:
        scan_dir = Path(manifest["scan"]["folder"])
        provenance["scan_manifest_sha256"] = manifest["scan"]["manifest_sha256"]
        provenance["decisions_sha256"] = manifest["review"]["decisions_sha256"]
        provenance["pending_held_out"] = manifest["counts"]["pending"]
        if (scan_dir / "manifest.json").exists():
            scan_manifest = orjson.loads((scan_dir / "manifest.json").read_bytes())
            settings = scan_manifest.get("settings")
            if _sha256(scan_dir / "manifest.json") == manifest["scan"]["manifest_sha256"]:
                provenance["scan_report_sha256"] = scan_manifest["outputs"]["report.json"]["sha256"]
                provenance["scan_folder"] = str(scan_dir)
    return provenance, settings
