"""Filter: small registered units that score a record, named by `rules/*.yaml`.

A filter only scores and explains (NeMo Curator's score/decide split): the rules file decides what
each hit does, `drop`, `flag`, `annotate` or `redact`. Every filter has a stable reason code and a
dataclass of parameters that the rules loader checks against.
"""

from __future__ import annotations

from curate.filters import builtin as _builtin  # noqa: F401  (registers the built-in filters)
from curate.filters import security as _security  # noqa: F401  (registers the code-security filters)
from curate.filters.base import ACTIONS, FILTERS, Filter, Hit, register

__all__ = ["ACTIONS", "FILTERS", "Filter", "Hit", "register"]
