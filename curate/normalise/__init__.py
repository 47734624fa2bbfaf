"""Normalise: detect each file's format and turn its raw items into `Record`s.

Every format maps to the same record (turns plus an optional rejected answer) while the original
fields ride along in `record.raw`. A record that does not fit its file's format is quarantined with
a message that names its place and the fields it has, never dropped.
"""

from __future__ import annotations

from curate.normalise.formats import FORMATS, FormatMismatch, detect_format
from curate.normalise.mapping import Mapping, parse_mapping
from curate.normalise.normaliser import Normaliser

__all__ = ["FORMATS", "FormatMismatch", "Mapping", "Normaliser", "detect_format", "parse_mapping"]
