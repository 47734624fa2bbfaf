"""`curate scan`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from curate.cli.errors import guarded

HELP = """Scan fine-tuning data: read any common format, dedup, filter by rules, write verdicts.

SOURCES are files (.jsonl, .json, .parquet, .csv, .tsv, optionally .gz/.zst), folders, globs, a
saved `datasets` dataset, or - for stdin. Outputs go to --out: clean.jsonl, verdicts.jsonl,
flagged.jsonl, quarantine.jsonl, report.json, report.html and manifest.json (written last).

Exit codes: 0 success · 1 a --fail-on threshold was crossed · 2 usage error or unreadable input
· 3 internal error."""


def scan(
    sources: Annotated[list[str], typer.Argument(help="Files, folders, globs, or - for stdin.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (replaced atomically).")] = Path("curate-out"),
    rules: Annotated[
        list[Path] | None, typer.Option("--rules", "-r", help="Rules file extending the defaults; repeatable.")
    ] = None,
    format: Annotated[
        str | None,
        typer.Option(
            "--format", "-f", help="Record format for every file, instead of detecting it (see `curate formats`)."
        ),
    ] = None,
    map: Annotated[
        list[str] | None,
        typer.Option(
            "--map", "-m", help="Field mapping, e.g. instruction=question,output=answer or output=instances[].output."
        ),
    ] = None,
    input_type: Annotated[
        str | None,
        typer.Option(
            "--input-type", help="File type when the name does not tell: jsonl, json, parquet, csv, tsv, dataset."
        ),
    ] = None,
    against: Annotated[
        list[str] | None,
        typer.Option(
            "--against",
            help="Evaluation set: rows whose prompt duplicates one of its prompts get dup:eval; repeatable.",
        ),
    ] = None,
    fail_on: Annotated[
        list[str] | None,
        typer.Option("--fail-on", help='Exit 1 when this holds, e.g. "flag-rate>0.01" or "pii>0"; repeatable.'),
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", "-w", help="Processes for the per-row stages (default: one per core).")
    ] = None,
    calibrate: Annotated[
        bool,
        typer.Option(
            "--calibrate",
            help="Also plant curate's attack families into copies of the input, scan them, and report the recall "
            "to expect per family (about 16 extra scans).",
        ),
    ] = False,
    engine: Annotated[
        str, typer.Option("--engine", help="local (this machine) or ray (a Ray cluster; needs curate[ray]).")
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="Ray cluster address for --engine ray, e.g. ray://head:10001 (default: $RAY_ADDRESS, else a "
            "local cluster).",
        ),
    ] = None,
    queue: Annotated[
        str | None,
        typer.Option(
            "--queue",
            "-Q",
            help="Review queue (SQLite file or postgresql:// URL): apply its decisions to these rows and push the "
            "rows still flagged to it.",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
    json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for internal errors.")] = False,
) -> None:
    def body() -> int:
        from curate.api import scan as run_scan
        from curate.cli.render import print_summary, progress_bar
        from curate.decide import parse_fail_on

        parse_fail_on(fail_on)  # fail fast on a bad expression, before reading anything
        with progress_bar(enabled=not quiet and not json and sys.stderr.isatty()) as progress:
            report = run_scan(
                sources if len(sources) > 1 else sources[0],
                rules=[str(r) for r in rules or []],
                out=out,
                format=format,
                map=map,
                input_type=input_type,
                against=against,
                fail_on=fail_on,
                workers=workers or "auto",
                progress=progress,
                calibrate=calibrate,
                queue=queue,
                engine=engine,
                address=address,
            )
        if json:
            import orjson

            sys.stdout.write(orjson.dumps(report.summary, option=orjson.OPT_INDENT_2).decode() + "\n")
        elif not quiet:
            print_summary(report)
        return report.exit_code

    code = guarded(body, debug)
    raise typer.Exit(code)


GUARD_HELP = """Scan and fail: exit 1, naming the rows to look at, when any --fail-on expression holds
(default: "flag>0" and "quarantine>0": rows still flagged for review, or unreadable). For CI jobs
and pre-commit hooks; outputs go to a temporary folder unless --out is given."""


def guard(
    sources: Annotated[list[str], typer.Argument(help="Files, folders, globs, or - for stdin.", show_default=False)],
    fail_on: Annotated[
        list[str] | None, typer.Option("--fail-on", help='Fail when this holds, e.g. "poison>0"; repeatable.')
    ] = None,
    rules: Annotated[
        list[Path] | None, typer.Option("--rules", "-r", help="Rules file extending the defaults; repeatable.")
    ] = None,
    engine: Annotated[
        str, typer.Option("--engine", help="local (this machine) or ray (a Ray cluster; needs curate[ray]).")
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="Ray cluster address for --engine ray, e.g. ray://head:10001 (default: $RAY_ADDRESS, else a "
            "local cluster).",
        ),
    ] = None,
    queue: Annotated[
        str | None, typer.Option("--queue", "-Q", help="Review queue whose decisions apply (accepted rows pass).")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Keep the scan's outputs here.")] = None,
    format: Annotated[
        str | None, typer.Option("--format", "-f", help="Record format for every file (see `curate formats`).")
    ] = None,
    no_detect: Annotated[
        bool,
        typer.Option(
            "--no-detect",
            help="Skip poison detection (dedup and rules only). Without it, a detection failure fails the guard.",
        ),
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for internal errors.")] = False,
) -> None:
    def body() -> int:
        from curate.decide import parse_fail_on
        from curate.errors import PoisonedDataError
        from curate.guards import DEFAULT_FAIL_ON
        from curate.guards import guard as run_guard

        expressions = fail_on or list(DEFAULT_FAIL_ON)
        parse_fail_on(expressions)
        try:
            report = run_guard(
                sources if len(sources) > 1 else sources[0],
                expressions,
                rules=[str(r) for r in rules or []],
                out=out,
                queue=queue,
                format=format,
                detect=not no_detect,
            )
        except PoisonedDataError as exc:
            typer.echo(str(exc), err=True)
            return 1
        counts = ", ".join(f"{v} {c:,}" for v, c in report.counts.items())
        typer.echo(f"curate guard: ok ({report.rows:,} rows: {counts}; none of {', '.join(expressions)})")
        return 0

    raise typer.Exit(guarded(body, debug))
