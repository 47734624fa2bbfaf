"""The scan, in the order it runs: read → normalise → filter → dedup → embed → detect → decide → write.

Each stage is a module with data in and data out; this file only calls them in turn:

1. **read, normalise, filter** (`curate.read.spill.batches`, `curate.batch.run_batches`): pass one
   streams the input in batches, on every core when there are several (or on Ray), and keeps
   small per-row columns in the `Ledger`; the raw records spill to an Arrow file, by row.
2. **dedup** (`curate.dedup.stage`): exact and near groups, decided on those columns.
3. steps the caller composes before detection (`--against`: `curate.dedup.against`).
4. **embed, detect** (`curate.detect.stage`): stream the spill once more and score every readable row.
5. steps the caller composes after detection (a review queue's decisions: `curate.review.loop`).
6. **decide**: one verdict per row from its reasons (`curate.decide`); the counts must add up.
7. **write** (`curate.write`): stream the spill into the outputs, in a staging folder renamed into
   place, manifest last.

With a fingerprint (sources on disk), each finished stage leaves a checkpoint
(`curate.checkpoint`) and the same scan run again starts after the last one. The public API,
which composes the steps, the review queue and calibration, is `curate.api.scan`.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from curate import checkpoint
from curate.batch import run_batches
from curate.decide import Threshold
from curate.dedup.stage import dedup, repeat_signals
from curate.errors import CurateError
from curate.memory import trim
from curate.normalise import Normaliser
from curate.read.spill import RecordLoader, Spill, batches, input_labels, resolve_input
from curate.result import Ledger, ScanOptions, ScanResult, Step
from curate.ruleset import Rules
from curate.write import Report, check_out_folder, write_outputs


def run_scan(
    source: Any,
    rules: Rules,
    options: ScanOptions,
    workdir: Path,
    progress: Callable[[int], None] | None = None,
    *,
    resume: bool = False,
    before_detect: Sequence[Step] = (),
    after_detect: Sequence[Step] = (),
) -> ScanResult:
    """The scan up to the verdicts. With `resume`, each finished stage leaves a checkpoint in
    `workdir` (pass one: the spill and the ledger; then dedup and detection), and a rerun in the
    same `workdir` starts after the last one."""
    clock = time.perf_counter
    sources = resolve_input(source, options.input_type)
    resumed: list[str] = []
    pass1_ckpt, detect_ckpt = workdir / "pass1.pkl", workdir / "detect.pkl"
    if resume and pass1_ckpt.exists() and (workdir / "spill.arrow").exists():
        ledger, normaliser = checkpoint.load(pass1_ckpt)
        spill = Spill.reopen(workdir / "spill.arrow")
        seconds = {"pass1": 0.0}
        resumed.append("pass1")
    else:
        started = clock()
        ledger, normaliser, spill = _pass_one(sources, rules, options, workdir, progress)
        seconds = {"pass1": clock() - started}
        trim()
        if resume:
            checkpoint.save(pass1_ckpt, (ledger, normaliser))
    # Formats detected in worker processes were detected the same way here, from the first object.
    loader = RecordLoader(spill, ledger, normaliser)

    if resume and detect_ckpt.exists() and "pass1" in resumed:
        ledger, exact_groups, near_groups, steps, detection, done = checkpoint.load(detect_ckpt)
        loader.ledger = ledger
        seconds.update({k: 0.0 for k in done})
        resumed.append("dedup+detect")
    else:
        exact_groups, near_groups = dedup(ledger, rules, loader, seconds)
        steps = _run_steps(before_detect, ledger, loader, seconds)
        t = clock()
        detection = None
        if rules.detect.enabled and rules.detect.detectors:
            from curate.detect.stage import detect_ledger  # the models load only when detection runs

            detection = detect_ledger(ledger, rules, spill, normaliser, options)
        seconds["detect"] = clock() - t
        if resume:
            checkpoint.save(
                detect_ckpt, (ledger, exact_groups, near_groups, steps, detection, [k for k in seconds if k != "pass1"])
            )
    steps.update(_run_steps(after_detect, ledger, loader, seconds))
    signals = repeat_signals(ledger)
    verdicts = [ledger.verdict(row) for row in range(ledger.n)]
    if sum(Counter(verdicts).values()) != ledger.n:  # pragma: no cover - an invariant, checked on every scan
        raise CurateError(f"internal error: {len(verdicts)} verdicts for {ledger.n} rows")
    return ScanResult(
        ledger,
        verdicts,
        spill,
        loader,
        rules,
        options,
        sources,
        normaliser,
        exact_groups,
        near_groups,
        signals,
        {**dict(ledger.seconds), **seconds},
        workdir,
        detection,
        steps=steps,
        resumed=resumed,
    )


def _pass_one(
    sources: list[Any], rules: Rules, options: ScanOptions, workdir: Path, progress: Callable[[int], None] | None
) -> tuple[Ledger, Normaliser, Spill]:
    """Read, normalise and filter every record, batch by batch, into the ledger and the spill."""
    normaliser = Normaliser(options.format, options.mapping)
    ledger = Ledger()
    spill = Spill(workdir / "spill.arrow")
    try:
        if options.engine == "ray":
            from curate import ray_engine

            results = ray_engine.run_batches(batches(sources, normaliser), normaliser, rules, options.address)
        else:
            results = run_batches(batches(sources, normaliser), normaliser, rules, options.workers)
        for result in results:
            spill.write(ledger.n, result.raw)
            result.raw = []
            ledger.merge(result, rules)
            if progress:
                progress(ledger.n)
    finally:
        spill.close()
    return ledger, normaliser, spill


def _run_steps(
    steps: Sequence[Step], ledger: Ledger, loader: RecordLoader, seconds: dict[str, float]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for step in steps:
        t = time.perf_counter()
        out[step.name] = step(ledger, loader)
        seconds[step.name] = time.perf_counter() - t
    return out


def scan_into(
    source: Any,
    rules: Rules,
    out: Path,
    options: ScanOptions,
    thresholds: list[Threshold],
    progress: Callable[[int], None] | None = None,
    *,
    before_detect: Sequence[Step] = (),
    after_detect: Sequence[Step] = (),
    before_write: Callable[[ScanResult], None] | None = None,
    after_write: Callable[[ScanResult, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Scan `source` into the folder `out` and return the summary (`report.json`'s content).

    Works in a folder beside `out` (resumable for sources on disk, see `curate.checkpoint`), which
    is removed once the outputs are in place. `before_write` and `after_write` let the caller add
    to the result (calibration) and act on the written folder (a review queue's push)."""
    check_out_folder(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    workdir, resume = checkpoint.work_folder(source, rules, options, out)
    finished = False
    try:
        result = run_scan(
            source,
            rules,
            options,
            workdir,
            progress,
            resume=resume,
            before_detect=before_detect,
            after_detect=after_detect,
        )
        if before_write:
            before_write(result)
        summary = write_outputs(result, out, thresholds, source_label=input_labels(source))
        if after_write:
            after_write(result, summary)
        finished = True
    finally:
        if finished or not resume:
            shutil.rmtree(workdir, ignore_errors=True)
    return summary


def scan_files(source: Any, rules: Rules, out: Path) -> Report:
    """The plain scan, nothing composed: what benchmarks and calibration run on planted mixes."""
    summary = scan_into(source, rules, out, ScanOptions(), [])
    return Report(summary, out, [], source)
