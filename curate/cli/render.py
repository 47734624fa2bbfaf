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
        console.print(
            f"quarantined {where}: {q['reason']}: {q['error']}", highlight=False, markup=False, style="magenta"
        )
    if s["counts"]["quarantine"] > len(shown):
        console.print(f"… and {s['counts']['quarantine'] - len(shown):,} more in quarantine.jsonl", highlight=False)
    for src in s["sources"]:
        for problem in src["problems"]:
            console.print(f"[yellow]warning[/]: {src['source']}: {problem}", highlight=False)
    for name, info in s.get("filter_errors", {}).items():
        console.print(f"[red]filter {name} failed on {info['rows']} rows[/]: {info['first']}", highlight=False)
    _print_detection(console, s.get("detection") or {})
    _print_calibration(console, s.get("calibration") or {})
    review = s.get("review")
    if review:
        console.print(
            f"review queue {review['queue']}: {review['accepted']:,} accepted and {review['rejected']:,} "
            f"rejected rows applied; {review.get('queued', 0):,} flagged item(s) queued "
            f"({review.get('new', 0):,} new, {review.get('reopened', 0):,} reopened by a new reason)",
            highlight=False,
            markup=False,
        )
    if s.get("resumed"):
        console.print(f"resumed an interrupted scan: reused {', '.join(s['resumed'])}", highlight=False)
    balanced = "counts add up" if s["accounting"]["balanced"] else "COUNTS DO NOT ADD UP"
    console.print(
        f"{balanced}: {s['accounting']['verdicts']:,} verdicts for {s['rows']:,} records · "
        f"{s['rows_per_second'] or 0:,.0f} rows/s · outputs in {report.out}",
        highlight=False,
    )
    if report.failed:
        console.print(f"[red]failed[/]: {', '.join(t.text for t in report.failed)}", highlight=False)


def _print_detection(console, d: dict) -> None:
    """The poisoning section: suspected triggers with an example each, then failures."""
    from rich.table import Table

    status = d.get("status")
    if status in (None, "off"):
        return
    if status == "failed":
        console.print(f"[red]poison detection failed[/]: {d.get('error')}", highlight=False, markup=True)
        return
    if d.get("triggers"):
        table = Table(title="suspected triggers", title_justify="left")
        table.add_column("trigger")
        table.add_column("flagged", justify="right")
        table.add_column("evidence")
        for t in d["triggers"][:10]:
            # markup off: triggers and evidence are attacker-controlled text
            table.add_row(repr(t["trigger"]), f"{t['flagged']:,}", t.get("text") or "")
        console.print(table, markup=False, highlight=False)
    flagged = d.get("flagged", 0)
    by = ", ".join(f"{k} {v:,}" for k, v in d.get("by_reason", {}).items())
    console.print(
        f"poison detection ({d.get('model')}): {flagged:,} rows at suspicion >= {d.get('flag_at')}"
        + (f" ({by})" if by else ""),
        highlight=False,
        markup=False,
    )
    for name, error in d.get("failures", {}).items():
        console.print(f"[red]detector {name} failed[/]: {error}", highlight=False)


def _print_calibration(console, c: dict) -> None:
    from rich.table import Table

    if c.get("status") != "ok":
        if c.get("status"):
            console.print(f"calibration {c['status']}: {c.get('reason')}", highlight=False, markup=False)
        return
    table = Table(
        title=f"calibration: {c['planted_per_family']} rows planted per family into a copy of your data",
        title_justify="left",
    )
    for name in ("family", "target", "recall", "AUROC"):
        table.add_column(name, justify="left" if name in ("family", "target") else "right")
    for f in c["families"]:
        table.add_row(f["family"], f["target"], f"{f['recall']:.2f}", f"{f['auroc']:.3f}")
    console.print(table)


def print_bench(table: list[dict]) -> None:
    """The bench table: one line per attack and rate, min (median) over seeds."""
    from rich.console import Console
    from rich.table import Table

    def cell(row: dict, key: str) -> str:
        lo, mid = row.get(f"{key}_min"), row.get(f"{key}_median")
        if lo is None:
            return "-"
        return f"{lo:.3f}" if abs(lo - mid) < 5e-4 else f"{lo:.3f} ({mid:.3f})"

    out = Table(title="curate bench: min (median) over seeds", title_justify="left")
    for name in (
        "attack",
        "rate",
        "seeds",
        "AUROC",
        "recall@flag",
        "precision@flag",
        "recall@2x",
        "identical AUROC",
        "identical r@2x",
        "cleanlab AUROC",
        "cleanlab r@2x",
        "flag rate",
        "reached",
    ):
        out.add_column(name, justify="left" if name in ("attack", "rate") else "right")
    for row in table:
        out.add_row(
            row["attack"],
            row["rate"],
            str(row["seeds"]),
            cell(row, "auroc"),
            cell(row, "recall"),
            cell(row, "precision"),
            cell(row, "recall_2x"),
            cell(row, "identical_auroc"),
            cell(row, "identical_recall_2x"),
            cell(row, "cleanlab_auroc"),
            cell(row, "cleanlab_recall_2x"),
            cell(row, "flag_rate"),
            cell(row, "reached"),
        )
    Console(width=250).print(out)
