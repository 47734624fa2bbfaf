"""`curate.guard`: scan, and raise when the data crosses a threshold. The one call a pipeline
needs before it trains: a CI job, a Trainer callback, a pre-commit hook."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from curate.errors import PoisonedDataError

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
