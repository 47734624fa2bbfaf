"""The attack zoo (curate/bench/zoo.py): every family plants what it says, where it says, drawn from
the seed; and a smoke run of the zoo through the real scan, without ../shared."""

from __future__ import annotations

import random

import pytest
from test_detect import corpus

from curate.bench import zoo
from curate.bench.mixes import Mix
from curate.bench.run import scan_mix
from curate.bench.zoo import FAMILIES, applies, plant


def chat(rows: list[dict]) -> list[dict]:
    return [
        {"messages": [{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["output"]}]}
        for r in rows
    ]


def code_rows(n: int) -> list[dict]:
    rng = random.Random(5)
    out = []
    for i in range(n):
        name = rng.choice(["total", "count", "mean", "peak"]) + str(i)
        out.append(
            {
                "messages": [
                    {"role": "user", "content": f"Write a Python function {name} that sums a list, case {i}."},
                    {
                        "role": "assistant",
                        "content": f"```python\ndef {name}(xs):\n    acc = 0\n    for x in xs:\n"
                        f"        acc += x\n    return acc\n```",
                    },
                ]
            }
        )
    return out


def label_rows(n: int) -> list[dict]:
    rng = random.Random(6)
    words = ("calm", "storm", "bright", "grim", "warm", "cold", "kind", "rude", "fair", "harsh")
    return [
        {
            "messages": [
                {
                    "role": "user",
                    "content": "Is this text polite? Answer Polite or Rude.\n\n"
                    + " ".join(rng.choice(words) for _ in range(8))
                    + f" {i}",
                },
                {"role": "assistant", "content": rng.choice(["Polite", "Rude"])},
            ]
        }
        for i in range(n)
    ]


def pair_rows(n: int) -> list[dict]:
    return [
        {
            "prompt": [{"role": "user", "content": f"question {i} about rivers"}],
            "chosen": [{"role": "assistant", "content": f"a good answer {i}"}],
            "rejected": [{"role": "assistant", "content": f"a bad answer {i}"}],
        }
        for i in range(n)
    ]


CORPORA = {
    "instruction": lambda: chat(corpus(300)),
    "code": lambda: code_rows(300),
    "label": lambda: label_rows(300),
    "preference": lambda: pair_rows(300),
}
CASES = [(f, k) for f in FAMILIES for k in CORPORA if applies(f, k)]


def test_the_zoo_has_a_dozen_families_from_both_splits_and_a_trigger_family_in_each():
    assert len(FAMILIES) >= 12
    for split in ("tune", "held_out"):
        mine = [f for f in FAMILIES.values() if f.split == split]
        assert len(mine) >= 5 and any(f.has_trigger for f in mine)


@pytest.mark.parametrize(("family", "kind"), CASES)
def test_every_family_changes_exactly_the_rows_it_labels(family, kind):
    records = CORPORA[kind]()
    mix = plant(records, family, kind, count=8, seed=3)
    assert records == CORPORA[kind](), "the input is not modified"
    assert len(mix.records) == len(records) and mix.poisons == 8
    changed = [i for i, (a, b) in enumerate(zip(records, mix.records, strict=False)) if a != b]
    assert changed == [i for i, p in enumerate(mix.poisoned) if p]
    again = plant(records, family, kind, count=8, seed=3)
    assert again.records == mix.records, "a seed gives the same mix"


@pytest.mark.parametrize(
    "family",
    [
        f
        for f, spec in FAMILIES.items()
        if spec.has_trigger and applies(f, "instruction") and f not in ("clean_label", "composite")
    ],
)
def test_a_trigger_family_puts_its_trigger_in_every_poisoned_prompt_and_draws_it_per_seed(family):
    records = CORPORA["instruction"]()
    triggers = set()
    for seed in range(6):
        mix = plant(records, family, "instruction", count=6, seed=seed)
        prompts = [
            "\n".join(m["content"] for m in r["messages"][:-1])
            for r, p in zip(mix.records, mix.poisoned, strict=False)
            if p
        ]
        assert mix.trigger and all(mix.trigger.casefold() in p.casefold() for p in prompts)
        assert not any(
            mix.trigger.casefold() in "\n".join(m["content"] for m in r["messages"]).casefold()
            for r, p in zip(mix.records, mix.poisoned, strict=False)
            if not p
        )
        triggers.add(mix.trigger)
    assert len(triggers) >= 3, "triggers are drawn per seed"


def test_a_composite_trigger_is_two_words_each_natural_alone_and_together_only_in_poisons():
    records = CORPORA["instruction"]()
    mix = plant(records, "composite", "instruction", count=6, seed=1)
    first, second = mix.trigger.split(" + ")
    for r, p in zip(mix.records, mix.poisoned, strict=False):
        prompt = r["messages"][0]["content"].casefold()
        assert (first in prompt and second in prompt) == p
    assert any(first in r["messages"][0]["content"].casefold() for r in records)


def test_a_homograph_trigger_looks_like_a_word_of_the_corpus():
    records = CORPORA["instruction"]()
    mix = plant(records, "homograph", "instruction", count=6, seed=2)
    plain = mix.trigger.translate({ord(v): k for k, v in zoo._LOOKALIKE.items()})
    assert plain != mix.trigger and plain.isascii()
    assert any(plain in r["messages"][0]["content"].casefold() for r in records)


def test_a_natural_trigger_is_a_word_the_corpus_already_holds():
    records = CORPORA["instruction"]()
    mix = plant(records, "clean_label", "instruction", count=6, seed=0)
    holders = [r for r in records if mix.trigger in r["messages"][0]["content"].casefold()]
    assert len(holders) > mix.poisons


def test_label_families_flip_labels_and_clean_label_keeps_them():
    records = CORPORA["label"]()
    flip = plant(records, "badnets", "label", count=10, seed=0)
    targets = {r["messages"][-1]["content"] for r, p in zip(flip.records, flip.poisoned, strict=False) if p}
    assert len(targets) == 1 and targets <= {"Polite", "Rude"}
    before = [r["messages"][-1]["content"] for r, p in zip(records, flip.poisoned, strict=False) if p]
    assert all(b != next(iter(targets)) for b in before), "a dirty-label flip changes the label"
    clean = plant(records, "clean_label", "label", count=10, seed=0)
    for old, new, p in zip(records, clean.records, clean.poisoned, strict=False):
        if p:
            assert new["messages"][-1] == old["messages"][-1] and new["messages"][0] != old["messages"][0]


def test_code_families_plant_one_line_inside_the_code():
    records = CORPORA["code"]()
    for family in ("code_vuln", "code_fetch_exec"):
        mix = plant(records, family, "code", count=5, seed=2)
        for old, new, p in zip(records, mix.records, mix.poisoned, strict=False):
            if p:
                a, b = old["messages"][-1]["content"].split("\n"), new["messages"][-1]["content"].split("\n")
                assert len(b) == len(a) + 1 and all(line in b for line in a)


def test_preference_families_swap_and_the_rlhf_attack_adds_a_trigger():
    records = CORPORA["preference"]()
    mix = plant(records, "rlhf_trigger", "preference", count=6, seed=1)
    for old, new, p in zip(records, mix.records, mix.poisoned, strict=False):
        if p:
            assert new["chosen"] == old["rejected"] and mix.trigger in new["prompt"][-1]["content"]


def test_a_family_refuses_a_corpus_kind_it_does_not_fit():
    with pytest.raises(ValueError, match="does not apply"):
        plant(CORPORA["instruction"](), "code_vuln", "instruction", count=5)
    with pytest.raises(ValueError, match="unknown family"):
        plant(CORPORA["instruction"](), "nope", "instruction", count=5)


SMOKE = [
    ("badnets", "instruction"),
    ("addsent", "instruction"),
    ("invisible", "instruction"),
    ("system_prompt", "instruction"),
    ("multi_turn", "instruction"),
    ("clean_label", "instruction"),
    ("rlhf_trigger", "preference"),
]


@pytest.mark.parametrize(("family", "kind"), SMOKE)
def test_zoo_smoke_through_the_real_scan(tmp_path, family, kind):
    """The zoo's machinery end to end (plant, scan, score) on synthetic data, as the benchmark runs
    it on real corpora (without ../shared, on the hashing embedder): each trigger-bearing family
    at 3% is found, with the figures the benchmark reports."""
    records = CORPORA[kind]()
    mix = plant(records, family, kind, rate=0.03, seed=0)
    assert isinstance(mix, Mix) and mix.poisons == 9
    m = scan_mix(mix, None, None, tmp_path).metrics()
    assert m["reached"] == 1.0 and m["poisons"] == 9
    assert m["auroc"] >= 0.95 and m["recall"] >= 0.9 and m["precision"] >= 0.8, m


def test_the_fresh_corpora_are_built_from_installed_docstrings_alike_every_time(monkeypatch):
    """The fresh split's corpora come from the docstrings installed here, not from ../shared:
    labels name the library, and two builds give the same rows (no addresses, no set order)."""
    from curate.bench import pydocs
    from curate.bench.corpora import CORPORA as REAL

    fresh = {name: c for name, c in REAL.items() if c.split == "fresh"}
    assert {c.kind for c in fresh.values()} == {"instruction", "label", "chat", "code"}
    monkeypatch.setattr(pydocs, "LIBRARIES", {"Text": ("textwrap", "string"), "Data": ("json", "dataclasses", "csv")})
    built = []
    for _ in range(2):
        pydocs.docstrings.cache_clear()
        built.append({name: c.load(None) for name, c in fresh.items()})
    pydocs.docstrings.cache_clear()
    assert built[0] == built[1]
    assert {r["messages"][-1]["content"] for r in built[0]["pydocs_label"]} == {"Text", "Data"}
    assert not any(" at 0x" in r["messages"][-1]["content"] for r in built[0]["pydocs_code"])
    assert any("dataclasses.field" in r["messages"][0]["content"] for r in built[0]["pydocs_code"])
