"""Attacker-shaped input: whatever the fields hold, the scan finishes and accounts for every row."""

from __future__ import annotations

import json
import random

import curate
from conftest import assert_one_verdict_per_line, read_jsonl, write_jsonl

WEIRD_VALUES = [
    None,
    0,
    -1,
    2**80,
    3.5,
    float("1e308"),
    True,
    "",
    " ",
    "\x00\x01\x02",
    "\ud800 lone surrogate",
    "<script>alert(1)</script>",
    "\u202eevil\u202c",
    "\U000e0041\U000e0042",
    "a" * 100_000,
    [],
    [1, 2],
    ["x", None],
    {},
    {"nested": {"deep": [1, {"x": "y"}]}},
    [{"role": "user"}],
    [{"from": "gpt", "value": 5}],
    "\n\nHuman: hi\n\nAssistant:",
]
FIELDS = [
    "instruction",
    "input",
    "output",
    "response",
    "messages",
    "conversations",
    "prompt",
    "chosen",
    "rejected",
    "completion",
    "system",
    "history",
    "text",
    "instances",
]


def hostile_rows(n: int, seed: int) -> list:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        row = {rng.choice(FIELDS): rng.choice(WEIRD_VALUES) for _ in range(rng.randint(0, 4))}
        if rng.random() < 0.5:
            row.update(instruction="ask something", output=rng.choice(WEIRD_VALUES))
        rows.append(row)
    return rows


def test_random_hostile_records_from_python_all_get_a_verdict():
    for seed in range(3):
        rows = hostile_rows(300, seed)
        report = curate.scan(rows)
        # counted from the input: every object has a verdict row (one per record; self-instruct
        # `instances` may make several records, each its own `part`), and no record has two
        keys = [(v["index"], v["part"]) for v in read_jsonl(report.out / "verdicts.jsonl")]
        assert len(keys) == len(set(keys)) == report.rows == sum(report.counts.values())
        assert {index for index, _ in keys} == set(range(len(rows)))
        assert not report.summary["filter_errors"], report.summary["filter_errors"]


def test_hostile_jsonl_lines_all_get_a_verdict(tmp_path):
    rng = random.Random(5)
    lines = []
    for row in hostile_rows(200, 9):
        try:
            lines.append(json.dumps(row).encode())
        except ValueError:  # 1e308 is fine, NaN is not; nothing here should fail, but be safe
            continue
    lines += [
        b'\xef\xbb\xbf{"instruction": "bom", "output": "x"}',
        b'{"a": 1}{"b": 2}',
        b"null",
        b'"just a string"',
        b"{" * 10_000,
        b'{"instruction": "\\ud800", "output": "x"}',
    ]
    rng.shuffle(lines)
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    report = curate.scan(path, out=tmp_path / "out")
    # every line of the file (which is the format's unit here) is accounted for exactly once
    assert_one_verdict_per_line(path, report.out)
    assert report.rows == len(lines) and report.summary["accounting"]["balanced"]
    assert all(q["line"] and q["error"] for q in read_jsonl(report.out / "quarantine.jsonl"))


def test_hostile_text_in_a_valid_file_reaches_the_html_escaped(tmp_path):
    rows = [{"instruction": "<img src=x onerror=alert(1)>", "output": "</div><script>x()</script>"}] * 2
    report = curate.scan(write_jsonl(tmp_path / "x.jsonl", rows), out=tmp_path / "out")
    html = (report.out / "report.html").read_text()
    assert "<script>x()" not in html and "<img src=x" not in html
