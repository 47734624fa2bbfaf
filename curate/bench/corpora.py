"""Real clean corpora for the attack zoo and the false-positive audit, and their split.

Each corpus has a kind (what a scan must not mistake for poison there: labels, code, templated
chat, another language, tool calls, preference pairs) and a split. Detection is tuned on the
`tune` corpora only; the `held_out` corpora are scanned once, at the end. Where a kind has one
corpus only (code, the hate-speech label task), its rows are split in two halves by row number,
one per split. The files are third-party data in ../shared/bench (see its README); nothing here
is needed by the tests. The `fresh` corpora are not in ../shared: they are built from the
docstrings installed on this machine (`curate.bench.pydocs`), and were never tuned on.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curate.bench.mixes import as_chat, read_records
from curate.bench.pydocs import LOADERS

Record = dict[str, Any]

#: Instruction wordings of the hate-speech label task, and the label words each uses.
LABEL_WORDINGS = (
    ("Is the following tweet offensive? Answer Offensive or Not offensive.", ("Not offensive", "Offensive")),
    (
        "Classify the text below as hateful or offensive (Offensive) or not (Not offensive).",
        ("Not offensive", "Offensive"),
    ),
    ("Label this post for a moderation queue: Offensive or Not offensive.", ("Not offensive", "Offensive")),
)


@dataclass(frozen=True)
class Corpus:
    name: str
    kind: str
    split: str
    load: Callable[[Path], list[Record]]
    #: For the real OpenBackdoor families: the row-aligned poisoned twin of `load`'s rows.
    real: Callable[[Path, str], list[Record]] | None = None


def _chat_file(*names: str) -> Callable[[Path], list[Record]]:
    def load(shared: Path) -> list[Record]:
        out: list[Record] = []
        for name in names:
            out += [as_chat(r) for r in read_records(shared / name)]
        return out

    return load


def _half(load: Callable[[Path], list[Record]], part: int) -> Callable[[Path], list[Record]]:
    return lambda shared: load(shared)[part::2]


def _hsol_rows(shared: Path, attack: str, poisoned: bool) -> list[tuple[str, int]]:
    path = shared / "openbackdoor_hsol" / attack / ("train-poison.csv" if poisoned else "train-clean.csv")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))[1:]
    return [(r[1], int(r[2])) for r in rows]


def _label_task(text: str, label: int, i: int) -> Record:
    wording, words = LABEL_WORDINGS[i % len(LABEL_WORDINGS)]
    return {
        "messages": [
            {"role": "user", "content": f"{wording}\n\n{text}"},
            {"role": "assistant", "content": words[label]},
        ]
    }


def hsol(shared: Path) -> list[Record]:
    """The clean HSOL tweets as a label task with several instruction wordings."""
    return [_label_task(t, y, i) for i, (t, y) in enumerate(_hsol_rows(shared, "badnets", False))]


def hsol_poisoned(shared: Path, attack: str) -> list[Record]:
    """OpenBackdoor's poisoned twin of every HSOL row (label set to the target), same wording."""
    return [_label_task(t, y, i) for i, (t, y) in enumerate(_hsol_rows(shared, attack, True))]


def _hsol_half(part: int) -> tuple[Callable[[Path], list[Record]], Callable[[Path, str], list[Record]]]:
    return (lambda shared: hsol(shared)[part::2]), (lambda shared, attack: hsol_poisoned(shared, attack)[part::2])


def hh_rlhf(shared: Path, limit: int = 2312) -> list[Record]:
    return [as_chat(r) for r in read_records(shared / "preference" / "hh_rlhf_harmless_base_test.jsonl.gz")][:limit]


def openai_preference(path: Path) -> list[Record]:
    """The OpenAI/Azure DPO schema (`input.messages`, `preferred_output`, `non_preferred_output`)."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            out.append(
                {
                    "prompt": row["input"]["messages"],
                    "chosen": row["preferred_output"][-1:],
                    "rejected": row["non_preferred_output"][-1:],
                }
            )
    return out


def dpo_pairs(shared: Path) -> list[Record]:
    """Orca DPO pairs and LLaMA-Factory's DPO demo together."""
    return openai_preference(shared / "preference" / "orca_dpo_pairs_validation.jsonl") + [
        as_chat(r) for r in read_records(shared / "preference" / "llamafactory_dpo_en_demo.json")
    ]


_code = _chat_file("clean/gpteacher_codegen_instruct.json")
_hsol_a, _hsol_a_real = _hsol_half(0)
_hsol_b, _hsol_b_real = _hsol_half(1)

CORPORA: dict[str, Corpus] = {
    c.name: c
    for c in (
        Corpus("alpaca_eval", "instruction", "tune", _chat_file("clean/alpaca_eval_outputs.json")),
        Corpus("gpteacher_code_a", "code", "tune", _half(_code, 0)),
        Corpus("hsol_label_a", "label", "tune", _hsol_a, _hsol_a_real),
        Corpus("glaive_toolcall", "toolcall", "tune", _chat_file("clean/llamafactory_glaive_toolcall_en_demo.json")),
        Corpus("hh_rlhf", "preference", "tune", hh_rlhf),
        Corpus(
            "self_instruct",
            "instruction",
            "held_out",
            _chat_file(
                "clean/self_instruct_user_oriented.jsonl",
                "clean/self_instruct_davinci003_predictions.jsonl",
                "clean/self_instruct_seed_tasks.jsonl",
            ),
        ),
        Corpus("gpteacher_code_b", "code", "held_out", _half(_code, 1)),
        Corpus("hsol_label_b", "label", "held_out", _hsol_b, _hsol_b_real),
        Corpus("fastchat", "chat", "held_out", _chat_file("clean/fastchat_dummy_conversation.json")),
        Corpus("alpaca_zh", "multilingual", "held_out", _chat_file("clean/llamafactory_alpaca_zh_demo.json")),
        Corpus("dpo_pairs", "preference", "held_out", dpo_pairs),
        *(Corpus(name, kind, "fresh", load) for name, (kind, load) in LOADERS.items()),
    )
}

#: Which real OpenBackdoor attack each real zoo family reads.
REAL_ATTACKS = {"stylebkd": "stylebkd", "synbkd": "synbkd"}


def family_kind(corpus: Corpus, family: str) -> str:
    """The kind a family sees a corpus as: the HSOL label task is also where the real
    OpenBackdoor families live."""
    return "label-hsol" if family in REAL_ATTACKS and corpus.real is not None else corpus.kind


def refusal_pool(shared: Path, seed: int = 0, share: float = 0.1) -> list[Record]:
    """An instruction pool that also holds harmful requests answered with refusals: the clean
    instruction files plus BackdoorLLM's jailbreak `none_*` refusals, `share` of the total."""
    pool = _chat_file("clean/alpaca_eval_outputs.json", "clean/self_instruct_user_oriented.jsonl")(shared)
    folder = shared / "backdoorllm" / "poison_data" / "jailbreak" / "badnet"
    refusals = json.loads(next(folder.glob("none_backdoor*.json")).read_text())
    k = min(len(refusals), round(share * len(pool) / (1 - share)))
    from curate.bench.mixes import alpaca_chat

    picked = random.Random(seed).sample(refusals, k)
    return pool + [alpaca_chat(r) for r in picked]
