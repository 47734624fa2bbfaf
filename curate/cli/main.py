"""`curate`: the entry point. It only registers the commands; each command module imports its heavy
modules when it runs, not before, and reports errors through `curate.cli.errors.guarded`."""

from __future__ import annotations

import typer

from curate.cli import bench as bench_cmd
from curate.cli import review as review_cmd
from curate.cli import scan as scan_cmd
from curate.cli import tools
from curate.cli import train as train_cmd
from curate.cli.errors import EXIT_CODES

app = typer.Typer(
    name="curate",
    help="Scan fine-tuning data for duplicates, junk, PII and poisoned rows before you train.\n\n" + EXIT_CODES,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    app.command("scan", help=scan_cmd.HELP)(scan_cmd.scan)
    app.command("guard", help=scan_cmd.GUARD_HELP)(scan_cmd.guard)
    app.command("rules", help="List the filters a rules file can name, with parameters and reason codes.")(tools.rules)
    app.command("formats", help="List the record formats curate reads.")(tools.formats)
    app.command("bench", help=bench_cmd.HELP)(bench_cmd.bench)
    app.add_typer(review_cmd.app, name="review")
    app.command("apply", help=review_cmd.APPLY_HELP)(review_cmd.apply)
    app.command("train", help=train_cmd.TRAIN_HELP)(train_cmd.train)
    app.command("check", help=train_cmd.CHECK_HELP)(train_cmd.check)
    app.command("verify", help="Check that a scan folder's files match its manifest (exit 2 if not).")(tools.verify)


_register()


def run() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    run()
