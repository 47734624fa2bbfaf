"""`curate bench` and `scan --calibrate`: planted attacks, labels, metrics and the table."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_detect import corpus

import curate
from conftest import write_jsonl
from curate.bench.mixes import Mix, as_chat, read_records
from curate.bench.plant import FAMILIES, VARIED_TARGETS, plant
from curate.bench.run import auroc, recall_at


def chat(rows: list[dict]) -> list[dict]:
    return [
        {"messages": [{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["output"]}]}
        for r in rows
    ]


def test_auroc_and_recall_at_budget():
    y = np.array([0, 0, 1, 1, 0], bool)
    assert auroc(y, np.array([0.1, 0.2, 0.9, 0.8, 0.3])) == 1.0
    assert auroc(y, np.array([0.9, 0.8, 0.1, 0.2, 0.7])) == 0.0
    assert auroc(y, np.ones(5)) == 0.5  # ties count half
    assert recall_at(y, np.array([0.1, 0.2, 0.9, 0.8, 0.3]), 1) == 0.5


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_plants_the_asked_number_of_labelled_rows_and_leaves_the_rest(family):
    records = chat(corpus(200))
    mix = plant(records, family, count=10, varied=True, seed=3)
    assert mix.poisons == 10 and len(mix.records) == 200
    changed = [i for i, (a, b) in enumerate(zip(records, mix.records, strict=False)) if a != b]
    assert changed == [i for i, p in enumerate(mix.poisoned) if p]
    assert records == chat(corpus(200)), "the input is not modified"
    if family not in ("injection",):
        assert all(
            r["messages"][-1]["content"] in VARIED_TARGETS for r, p in zip(mix.records, mix.poisoned, strict=False) if p
        )


def test_preference_flips_swap_chosen_and_rejected():
    records = [
        {
            "prompt": [{"role": "user", "content": f"q{i}"}],
            "chosen": [{"role": "assistant", "content": f"good {i}"}],
            "rejected": [{"role": "assistant", "content": f"bad {i}"}],
        }
        for i in range(100)
    ]
    mix = plant(records, "preference_flip", rate=0.05, seed=1)
    flipped = [r for r, p in zip(mix.records, mix.poisoned, strict=False) if p]
    assert len(flipped) == 5 and all(r["chosen"][0]["content"].startswith("bad") for r in flipped)


def test_bench_cli_scans_planted_mixes_and_prints_the_table(tmp_path, cli):
    path = write_jsonl(tmp_path / "clean.jsonl", corpus(300))
    out = tmp_path / "table.json"
    result = cli(
        "bench",
        "--plant",
        path,
        "--families",
        "rare_token",
        "--rates",
        "0.03",
        "--counts",
        "",
        "--seeds",
        "0,1",
        "--no-baselines",
        "--json",
        out,
    )
    assert result.exit_code == 0, result.output
    table = json.loads(out.read_text())
    fixed = next(r for r in table if r["attack"] == "rare_token/fixed")
    assert fixed["seeds"] == 2 and fixed["auroc_min"] == 1.0 and fixed["recall_min"] == 1.0
    assert fixed["reached_min"] == 1.0
    assert "rare_token/fixed" in result.output and "AUROC" in result.output


def test_bench_needs_something_to_measure(cli):
    result = cli("bench")
    assert result.exit_code == 2 and "nothing to measure" in result.output


def test_scan_calibrate_reports_recall_per_family(tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", corpus(300))
    report = curate.scan(path, out=tmp_path / "out", calibrate=True)
    calibration = report.summary["calibration"]
    assert calibration["status"] == "ok" and calibration["planted_per_family"] == 10
    families = {(f["family"], f["target"]): f for f in calibration["families"]}
    assert set(families) == {(f, t) for f in FAMILIES for t in ("fixed", "varied")}
    assert families[("rare_token", "fixed")]["recall"] == 1.0
    assert report.counts["keep"] == 300  # the user's own scan is untouched by the planted copies
    assert "Calibration" in (report.out / "report.html").read_text()


def test_mixes_round_trip_through_the_reader(tmp_path):
    mix = Mix("m", chat(corpus(5)), [False] * 5)
    assert [as_chat(r) for r in read_records(mix.write(tmp_path / "m.jsonl"))] == mix.records
