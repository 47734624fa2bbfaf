"""curate: scan fine-tuning data before you train.

    >>> import curate
    >>> report = curate.scan("data/train.jsonl", out="scan")
    >>> report.counts
    {'keep': ..., 'drop': ..., 'flag': ..., 'quarantine': ...}

Heavy modules load on first use, so `import curate` and `curate --help` stay instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from curate.errors import CurateError, InputError, ManifestError, PoisonedDataError, RulesError, UsageError

__version__ = "0.1.0"

__all__ = [
    "CurateError",
    "InputError",
    "ManifestError",
    "PoisonedDataError",
    "Report",
    "RulesError",
    "UsageError",
    "guard",
    "load_rules",
    "scan",
    "verify_manifest",
]

if TYPE_CHECKING:  # pragma: no cover
    from curate.api import scan
    from curate.guards import guard
    from curate.ruleset import load_rules
    from curate.write import Report, verify_manifest

_LAZY = {
    "scan": "curate.api",
    "Report": "curate.write",
    "load_rules": "curate.ruleset",
    "verify_manifest": "curate.write",
    "guard": "curate.guards",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'curate' has no attribute {name!r}")
