"""`curate`: the entry point. Commands import their heavy modules when they run, not before."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

import typer

from curate.errors import CurateError

EXIT_CODES = """Exit codes: 0 success · 1 findings over a --fail-on threshold · 2 usage error or
unreadable input · 3 internal error (one line; the traceback with --debug)."""

app = typer.Typer(
    name="curate",
    help="Scan fine-tuning data for duplicates, junk, PII and poisoned rows before you train.\n\n" + EXIT_CODES,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def guarded(fn: Callable[[], Any], debug: bool) -> Any:
    """Run a command body, turning curate's errors into a message and an exit code."""
    try:
        return fn()
    except CurateError as exc:
        if debug:
            traceback.print_exc()
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None
    except typer.Exit:
        raise
    except Exception as exc:  # the last line of defence: no traceback without --debug
        if debug:
            traceback.print_exc()
        typer.echo(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", err=True)
        raise typer.Exit(3) from None


def _register() -> None:
    from curate.cli import bench as bench_cmd
    from curate.cli import review as review_cmd
    from curate.cli import scan as scan_cmd
    from curate.cli import tools
    from curate.cli import train as train_cmd

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
