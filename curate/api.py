"""The public scan: `curate.scan(...)`, which the CLI, the guard and the hooks call.

It turns arguments into `ScanOptions`, composes the optional steps around the pipeline
(`--against`, a review queue's decisions and push, `--calibrate`) and returns the `Report`. The
pipeline itself (`curate.pipeline`) knows none of them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from curate.batch import auto_workers
from curate.decide import parse_fail_on
from curate.normalise import parse_mapping
from curate.normalise.mapping import Mapping
from curate.pipeline import scan_into
from curate.read import resolve_sources
from curate.read.spill import input_labels
from curate.result import ScanOptions, ScanResult, Step
from curate.ruleset import Rules, load_rules
from curate.write import Report


def scan(
    source: Any,
    rules: Rules | str | Path | list | None = None,
    out: str | Path | None = None,
    *,
    format: str | None = None,
    map: str | list[str] | dict | None = None,
    input_type: str | None = None,
    against: list[str] | str | None = None,
    fail_on: list[str] | str | None = None,
    workers: int | str | None = None,
    progress: Callable[[int], None] | None = None,
    calibrate: bool = False,
    queue: str | os.PathLike | None = None,
    engine: str = "local",
    address: str | None = None,
) -> Report:
    """Scan `source` and write the outputs to `out` (a temporary folder when None).

    `source` is a path, folder, glob or list of them, a `datasets.Dataset`, a polars or pandas
    frame, or an iterable of dicts. `workers` > 1 (or "auto": one per core past 8 MB of files)
    runs the per-row stages in a process pool; as with any multiprocessing, the calling script
    then needs an `if __name__ == "__main__":` guard. The default, 1, runs in this process. `rules` is
    a `Rules`, or rule files that extend the defaults.
    With `calibrate`, curate's attack families are first planted into copies of the input and
    scanned, and report.json gets the recall to expect per family (about 16 extra scans).
    With `queue` (a review.db path or a postgresql:// URL), the queue's decisions apply to this
    scan's rows (`review:accepted`, `review:rejected`) and the rows still flagged are pushed to it.
    `engine="ray"` runs the per-row stages and embedding on a Ray cluster (`address`, else
    `$RAY_ADDRESS`, else a local one) and gives the same verdicts; see `curate.ray_engine`.
    Bad records never raise: they are quarantined and counted. Raises `UsageError` or
    `InputError` for bad arguments or a source that cannot be opened.
    """
    if not isinstance(rules, Rules):
        rules = load_rules(rules)
    options = ScanOptions(
        format=format,
        mapping=map if isinstance(map, Mapping) else parse_mapping(map),
        input_type=input_type,
        against=tuple([against] if isinstance(against, str) else against or ()),
        workers=(auto_workers(source) if workers == "auto" else int(workers or 1)) or 1,
        engine=engine,
        address=address,
    )
    thresholds = parse_fail_on(fail_on)
    tmp = None
    if out is None:
        tmp = tempfile.TemporaryDirectory(prefix="curate-")
        out = Path(tmp.name) / "out"
    out = Path(out)
    before_detect: list[Step] = []
    if options.against:
        from curate.dedup.against import Against

        before_detect.append(Against(options.against, rules))
    store = None
    if queue is not None:
        from curate.review.store import open_store

        store = open_store(queue)
    try:
        after_detect: list[Step] = []
        after_write = None
        if store is not None:
            from curate.review.loop import QueueDecisions, push_flagged

            after_detect.append(QueueDecisions(store))

            def after_write(result: ScanResult, summary: dict[str, Any]) -> None:
                push_flagged(result, store, out, summary)

        def before_write(result: ScanResult) -> None:
            if calibrate:
                result.calibration = _calibrate(source, rules)

        summary = scan_into(
            source,
            rules,
            out,
            options,
            thresholds,
            progress,
            before_detect=before_detect,
            after_detect=after_detect,
            before_write=before_write,
            after_write=after_write,
        )
    finally:
        if store is not None:
            store.close()
    failed = [t for t in thresholds if t.holds(summary["counts"], summary["fail_on_counts"], summary["rows"])]
    return Report(summary, out, failed, source, tmp)


def _calibrate(source: Any, rules: Rules) -> dict[str, Any]:
    from curate.bench.calibrate import calibrate

    labels = input_labels(source)
    if labels[0].startswith("<"):
        return {"status": "skipped", "reason": "calibration plants into files; pass a path"}
    paths = [s.path for s in resolve_sources(labels) if getattr(s, "path", None)]
    return calibrate([str(p) for p in paths], rules)
