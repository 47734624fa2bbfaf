"""Decide: from reasons and their actions to one verdict per row, and `--fail-on` thresholds.

Precedence is quarantine > flag > drop > keep: a row that needs a person's eyes is never silently
dropped, and a row that could not be read is never mistaken for anything else.

In: each row's reasons with their actions. Out: one verdict per row; the `--fail-on` checks.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

from curate.errors import UsageError

VERDICTS = ("keep", "drop", "flag", "quarantine")
_RANK = {"keep": 0, "annotate": 0, "redact": 0, "drop": 1, "flag": 2, "quarantine": 3}
_BY_RANK = {0: "keep", 1: "drop", 2: "flag", 3: "quarantine"}


def verdict_of(actions: list[str]) -> str:
    return _BY_RANK[max((_RANK[a] for a in actions), default=0)]


_OPS = {">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne, ">": operator.gt, "<": operator.lt}
_EXPR = re.compile(r"^\s*([a-z][a-z0-9_:-]*?)(-rate)?\s*(>=|<=|==|!=|>|<)\s*([0-9]*\.?[0-9]+(?:e-?\d+)?)\s*$")

FAIL_ON_HELP = """\
An expression is NAME OP NUMBER, where OP is one of > >= < <= == !=.
NAME is a verdict (keep, drop, flag, quarantine), a reason namespace (input, dup, quality, pii,
poison, review), a full reason code (dup:near, pii:email, quality:invisible-chars), or `rows`.
It counts rows; add `-rate` to compare the fraction of rows read instead.
Examples: "flag-rate>0.01", "pii>0", "quarantine>=1", "dup:exact-rate>0.2".
Several --fail-on may be given: the scan exits 1 when any of them holds."""


@dataclass(frozen=True)
class Threshold:
    text: str
    name: str
    rate: bool
    op: str
    value: float

    def measure(self, counts: dict[str, int], by_reason: dict[str, int], total: int) -> float:
        if self.name == "rows":
            count = total
        elif self.name in VERDICTS:
            count = counts.get(self.name, 0)
        elif ":" in self.name:
            count = by_reason.get(self.name, 0)
        else:
            count = by_reason.get(f"{self.name}:*", 0)
        if self.rate:
            return count / total if total else 0.0
        return float(count)

    def holds(self, counts: dict[str, int], by_reason: dict[str, int], total: int) -> bool:
        return _OPS[self.op](self.measure(counts, by_reason, total), self.value)


def parse_fail_on(expressions: list[str] | str | None) -> list[Threshold]:
    if not expressions:
        return []
    if isinstance(expressions, str):
        expressions = [expressions]
    out = []
    for text in expressions:
        for part in filter(None, (p.strip() for p in text.split(","))):
            match = _EXPR.match(part)
            if not match:
                raise UsageError(f"bad --fail-on expression {part!r}.\n{FAIL_ON_HELP}")
            name, rate, op, value = match.groups()
            if rate is None and name.endswith("-rate"):
                name, rate = name[:-5], "-rate"
            known_ns = {"input", "dup", "quality", "pii", "poison", "review"}
            if name not in VERDICTS and name != "rows" and name not in known_ns and ":" not in name:
                raise UsageError(f"unknown --fail-on metric {name!r}.\n{FAIL_ON_HELP}")
            out.append(Threshold(part, name, rate is not None, op, float(value)))
    return out
