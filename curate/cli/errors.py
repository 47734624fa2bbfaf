"""How every command reports failure: curate's errors as one line and an exit code, anything else
as one line of internal error (the traceback only with --debug). Commands import `guarded`."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

import typer

from curate.errors import CurateError

EXIT_CODES = """Exit codes: 0 success · 1 findings over a --fail-on threshold · 2 usage error or
unreadable input · 3 internal error (one line; the traceback with --debug)."""


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
