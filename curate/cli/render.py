"""Terminal output: a rich summary table and a progress bar for long runs."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def progress_bar(enabled: bool) -> Iterator[Callable[[int], None] | None]:
    if not enabled:
        yield None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    started = time.perf_counter()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), transient=True) as bar:
        task = bar.add_task("reading")

        def update(rows: int) -> None:
            rate = rows / max(time.perf_counter() - started, 1e-6)
            bar.update(task, description=f"scanned {rows:,} rows ({rate:,.0f}/s)")

        yield update


def print_summary(report) -> None:
    from rich.console import Console
    from rich.table import Table

    s = report.summary
    console = Console()
    rows = s["rows"] or 1
    table = Table(title=f"curate scan · {s['rows']:,} records", title_justify="left")
    table.add_column("verdict")
    table.add_column("rows", justify="right")
    table.add_column("share", justify="right")
    style = {"keep": "green", "drop": "yellow", "flag": "red", "quarantine": "magenta"}
    for verdict, count in s["counts"].items():
        table.add_row(f"[{style[verdict]}]{verdict}[/]", f"{count:,}", f"{count / rows:.1%}")
    console.print(table)
    if s["reasons"]:
        reasons = Table(title="reasons", title_justify="left")
        reasons.add_column("reason")
        reasons.add_column("action")
        reasons.add_column("rows", justify="right")
        for reason, info in sorted(s["reasons"].items(), key=lambda kv: -kv[1]["rows"])[:15]:
            reasons.add_row(reason, info["action"], f"{info['rows']:,}")
        console.print(reasons)
    shown = s.get("unreadable", [])[:10]
    for q in shown:
        where = f"{q['source']}:{q['line']}" if q["line"] else f"{q['source']} (row {q['row']})"
        # markup off: the error quotes attacker-controlled text, which may hold [rich] tags
        console.print(f"quarantined {where}: {q['reason']}: {q['error']}", highlight=False, markup=False,
                      style="magenta")
    if s["counts"]["quarantine"] > len(shown):
        console.print(f"… and {s['counts']['quarantine'] - len(shown):,} more in quarantine.jsonl", highlight=False)
    for src in s["sources"]:
        for problem in src["problems"]:
            console.print(f"[yellow]warning[/]: {src['source']}: {problem}", highlight=False)
    for name, info in s.get("filter_errors", {}).items():
        console.print(f"[red]filter {name} failed on {info['rows']} rows[/]: {info['first']}", highlight=False)
    balanced = "counts add up" if s["accounting"]["balanced"] else "COUNTS DO NOT ADD UP"
    console.print(f"{balanced}: {s['accounting']['verdicts']:,} verdicts for {s['rows']:,} records · "
                  f"{s['rows_per_second'] or 0:,.0f} rows/s · outputs in {report.out}", highlight=False)
    if report.failed:
        console.print(f"[red]failed[/]: {', '.join(t.text for t in report.failed)}", highlight=False)
