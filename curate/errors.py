"""curate's own exceptions. The CLI turns them into one-line messages and exit codes."""

from __future__ import annotations


class CurateError(Exception):
    """Base class for every error curate raises on purpose."""

    exit_code = 3


class UsageError(CurateError):
    """Bad arguments, rules or settings: the user must change the command."""

    exit_code = 2


class InputError(CurateError):
    """Input that cannot be opened at all (a missing path, an unknown format).

    Problems inside a readable file never raise: they become quarantined records.
    """

    exit_code = 2

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None):
        self.source = source
        self.line = line
        where = f"{source}:{line}: " if source and line else (f"{source}: " if source else "")
        super().__init__(f"{where}{message}")


class RulesError(UsageError):
    """A rules file names an unknown unit or parameter, or holds an impossible value."""


class ManifestError(CurateError):
    """An output folder's manifest is missing or does not match its files."""

    exit_code = 2


class PoisonedDataError(CurateError):
    """`curate.guard` found data over a `fail_on` threshold. `report` is the scan's Report."""

    exit_code = 1

    def __init__(self, message: str, report=None, failed: list[str] | None = None):
        self.report = report
        self.failed = failed or []
        super().__init__(message)


class PluginError(UsageError):
    """A `curate.plugins` entry point failed to load or registered something invalid."""
