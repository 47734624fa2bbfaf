"""The scan as a whole: verdict precedence, accounting, outputs, manifest, the Python API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import curate
from conftest import alpaca, read_jsonl, varied_rows, write_jsonl
from curate.decide import parse_fail_on, verdict_of
from curate.errors import UsageError
from servers import require

SCHEMA = Path(__file__).resolve().parents[1] / "curate" / "schema" / "verdict.schema.json"


def test_precedence_quarantine_over_flag_over_drop_over_keep():
    assert verdict_of(["annotate", "redact"]) == "keep"
    assert verdict_of(["drop", "annotate"]) == "drop"
    assert verdict_of(["drop", "flag"]) == "flag"
    assert verdict_of(["flag", "quarantine", "drop"]) == "quarantine"


def test_every_row_gets_exactly_one_verdict_and_counts_add_up(tmp_path):
    rows = varied_rows(30) + [alpaca("Hi\u200b there", "Hello."), alpaca("Poem?", ""), dict(varied_rows(1)[0])]
    path = write_jsonl(tmp_path / "in.jsonl", rows, {5: b"{broken", 9: b"[1, 2]"})
    report = curate.scan(path, out=tmp_path / "out")
    verdicts = read_jsonl(report.out / "verdicts.jsonl")
    assert [v["row"] for v in verdicts] == list(range(35))
    assert sum(report.counts.values()) == report.rows == 35
    assert report.counts == {"keep": 30, "drop": 2, "flag": 1, "quarantine": 2}
    assert len(read_jsonl(report.out / "clean.jsonl")) == report.counts["keep"]
    assert len(read_jsonl(report.out / "flagged.jsonl")) == report.counts["flag"]
    assert len(read_jsonl(report.out / "quarantine.jsonl")) == report.counts["quarantine"]
    source = report.summary["sources"][0]
    assert source["rows"] == sum(source[v] for v in ("keep", "drop", "flag", "quarantine")) == 35


def test_verdict_lines_follow_the_shipped_schema(tmp_path):
    jsonschema = require("jsonschema")
    schema = json.loads(SCHEMA.read_text())
    rows = varied_rows(5) + [alpaca("Email me at a@b.co", "Sure.")]
    report = curate.scan(write_jsonl(tmp_path / "in.jsonl", rows, {2: b"nope"}), out=tmp_path / "out")
    for line in read_jsonl(report.out / "verdicts.jsonl"):
        jsonschema.validate(line, schema)
    assert (report.out / "verdict.schema.json").read_text() == SCHEMA.read_text()


def test_clean_output_keeps_original_fields_and_redacts_pii(tmp_path):
    rows = [{**r, "id": i, "meta": {"src": "vendor"}} for i, r in enumerate(varied_rows(3))]
    rows.append({"instruction": "Who do I ask?", "input": "", "output": "Write to jane@example.com today.", "id": 9})
    report = curate.scan(write_jsonl(tmp_path / "in.jsonl", rows), out=tmp_path / "out")
    clean = read_jsonl(report.out / "clean.jsonl")
    assert clean[:3] == rows[:3]
    assert clean[3] == {**rows[3], "output": "Write to [EMAIL] today."}


def test_outputs_are_swapped_in_whole_and_manifest_checks_out(tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", varied_rows(5))
    out = tmp_path / "out"
    curate.scan(path, out=out)
    first = json.loads((out / "manifest.json").read_text())
    assert set(first["outputs"]) >= {"clean.jsonl", "verdicts.jsonl", "report.json", "report.html"}
    assert first["inputs"][0]["sha256"] and first["rules"]["sha256"] and first["versions"]["python"]
    curate.verify_manifest(out)
    write_jsonl(path, varied_rows(7))
    curate.scan(path, out=out)  # replaces the old folder
    assert curate.scan(path, out=out).rows == 7
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")], "no staging folders left behind"
    (out / "clean.jsonl").write_text("tampered\n")
    with pytest.raises(curate.ManifestError, match="clean.jsonl changed"):
        curate.verify_manifest(out)


def test_refuses_to_replace_a_folder_that_is_not_a_scan(tmp_path):
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(UsageError, match="not a curate output folder"):
        curate.scan(write_jsonl(tmp_path / "in.jsonl", varied_rows(2)), out=precious)
    assert (precious / "thesis.tex").read_text() == "years of work"


def test_a_crash_mid_write_leaves_the_previous_output(tmp_path, monkeypatch):
    import curate.write as write

    path = write_jsonl(tmp_path / "in.jsonl", varied_rows(4))
    out = tmp_path / "out"
    curate.scan(path, out=out)
    before = (out / "manifest.json").read_text()

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(write, "render_html", boom, raising=False)
    monkeypatch.setattr("curate.report_html.render_html", boom)
    with pytest.raises(RuntimeError):
        curate.scan(write_jsonl(path, varied_rows(9)), out=out)
    assert (out / "manifest.json").read_text() == before
    curate.verify_manifest(out)


def test_python_api_accepts_frames_datasets_and_iterables(tmp_path):
    import pandas as pd
    import polars as pl

    rows = varied_rows(6) + [alpaca("Blank?", "")]
    for source, kind in ((pl.DataFrame(rows), pl.DataFrame), (pd.DataFrame(rows), pd.DataFrame), (iter(rows), list)):
        report = curate.scan(source)
        assert report.rows == 7 and report.counts["drop"] == 1
        clean = report.clean()
        assert isinstance(clean, kind) and len(clean) == 6
    datasets = require("datasets")
    report = curate.scan(datasets.Dataset.from_list(rows))
    clean = report.clean()
    assert isinstance(clean, datasets.Dataset) and clean.num_rows == 6
    assert report.verdicts().height == 7


def test_python_api_rejects_what_it_cannot_scan():
    with pytest.raises(curate.InputError, match="cannot scan a int"):
        curate.scan(42)


def test_non_dict_items_from_python_are_quarantined():
    report = curate.scan(varied_rows(2) + ["just a string"])
    assert report.counts["quarantine"] == 1


def test_fail_on_grammar():
    t = parse_fail_on(["flag-rate>0.01", "pii>0,dup:exact-rate>=0.5"])
    assert [(x.name, x.rate, x.op, x.value) for x in t] == [
        ("flag", True, ">", 0.01),
        ("pii", False, ">", 0.0),
        ("dup:exact", True, ">=", 0.5),
    ]
    counts = {"keep": 98, "drop": 0, "flag": 2, "quarantine": 0}
    assert t[0].holds(counts, {}, 100) and not t[1].holds(counts, {}, 100)
    assert t[1].holds(counts, {"pii:*": 1}, 100)
    for bad in ("flag>>1", "nonsense>1", "flag-rate>x"):
        with pytest.raises(UsageError, match="fail-on"):
            parse_fail_on(bad)


def test_report_html_escapes_record_text(tmp_path):
    evil = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    rows = varied_rows(3) + [alpaca(evil, evil), alpaca(evil, evil)]
    report = curate.scan(write_jsonl(tmp_path / "in.jsonl", rows), out=tmp_path / "out")
    html = (report.out / "report.html").read_text()
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_a_worker_pool_gives_the_same_verdicts_as_one_process(tmp_path, monkeypatch):
    import curate.read.spill as spill

    monkeypatch.setattr(spill, "BATCH_ROWS", 16)  # many batches, finishing out of order
    rows = varied_rows(150) + [alpaca("Hi\u200b", "Hello."), alpaca("Poem?", "")] + varied_rows(20)
    path = write_jsonl(tmp_path / "in.jsonl", rows, {40: b"{bad"})
    one = curate.scan(path, out=tmp_path / "one", workers=1)
    two = curate.scan(path, out=tmp_path / "two", workers=2)
    assert read_jsonl(one.out / "verdicts.jsonl") == read_jsonl(two.out / "verdicts.jsonl")
    assert (one.out / "clean.jsonl").read_bytes() == (two.out / "clean.jsonl").read_bytes()
    assert two.counts["drop"] == 21 and two.counts["quarantine"] == 1


def test_report_html_shows_invisible_characters_and_flagged_rows(tmp_path):
    rows = varied_rows(3) + [alpaca("Tell me about the\u200b weather", "Sunny.")]
    report = curate.scan(write_jsonl(tmp_path / "in.jsonl", rows), out=tmp_path / "out")
    html = (report.out / "report.html").read_text()
    assert "Flagged for review" in html and "quality:invisible-chars" in html
    assert "the<mark" in html and ">U+200B</mark>" in html


def test_a_killed_scan_resumes_from_its_finished_stages(tmp_path):
    """A real SIGKILL part-way through: the rerun reuses pass one and gives the same verdicts."""
    import os
    import signal
    import subprocess
    import sys
    import time

    rows = varied_rows(15000)
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    env = {**os.environ, "CURATE_MODEL": "hash"}
    cmd = [sys.executable, "-m", "curate", "scan", str(data), "-o", str(tmp_path / "out"), "--workers", "1", "--json"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and not list(tmp_path.glob(".out.work-*/pass1.pkl")):
        assert proc.poll() is None, "the scan ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "out").exists()  # nothing half-written in place
    (work,) = tmp_path.glob(".out.work-*")

    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=True)
    summary = json.loads(again.stdout)
    assert summary["resumed"][0] == "pass1" and summary["rows"] == 15000
    assert not work.exists()  # a finished scan cleans its work folder

    fresh = subprocess.run(
        [*cmd[:6], str(tmp_path / "fresh"), *cmd[7:]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    assert json.loads(fresh.stdout)["resumed"] == []
    assert read_jsonl(tmp_path / "out" / "verdicts.jsonl") == read_jsonl(tmp_path / "fresh" / "verdicts.jsonl")
