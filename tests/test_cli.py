"""The command line: exit codes, output modes, start-up cost, and the installed entry point."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import SAMPLES, alpaca, assert_one_verdict_per_line, varied_rows, write_jsonl


def test_scan_prints_a_summary_and_exits_0(tmp_path, cli):
    path = write_jsonl(tmp_path / "in.jsonl", varied_rows(5))
    result = cli("scan", path, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "keep" in result.output and "counts add up" in result.output
    assert (tmp_path / "out" / "manifest.json").exists()


def test_unreadable_records_are_named_by_file_and_line(tmp_path, cli):
    path = write_jsonl(tmp_path / "in.jsonl", varied_rows(3), {1: b'{"instruction": [oops'})
    result = cli("scan", path, "-o", tmp_path / "out")
    assert result.exit_code == 0
    assert f"quarantined {path}:2: input:json: malformed JSON" in result.output


def test_fail_on_exits_1_and_names_the_threshold(tmp_path, cli):
    path = write_jsonl(tmp_path / "in.jsonl", varied_rows(5) + [alpaca("Mail me", "x@example.com")])
    result = cli("scan", path, "-o", tmp_path / "out", "--fail-on", "pii>0", "--fail-on", "flag-rate>0.5")
    assert result.exit_code == 1
    assert "failed: pii>0" in result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["failed"] == ["pii>0"]
    assert cli("scan", path, "-o", tmp_path / "out", "--fail-on", "pii>5").exit_code == 0


def test_usage_errors_exit_2_without_traceback(tmp_path, cli):
    path = write_jsonl(tmp_path / "in.jsonl", varied_rows(2))
    for args, message in (
        (["--fail-on", "flag>>1"], "bad --fail-on"),
        (["--format", "nope"], "unknown format 'nope'"),
        (["--map", "instruction"], "bad --map entry"),
        (["--rules", str(tmp_path / "missing.yaml")], "cannot read rules file"),
    ):
        result = cli("scan", path, "-o", tmp_path / "out", *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output


def test_internal_error_is_one_line_unless_debug(tmp_path, cli, monkeypatch):
    import curate.pipeline

    def broken(*a, **k):
        raise ValueError("something impossible")

    monkeypatch.setattr(curate.pipeline, "run_scan", broken)
    path = write_jsonl(tmp_path / "in.jsonl", varied_rows(2))
    result = cli("scan", path, "-o", tmp_path / "out")
    assert result.exit_code == 3
    assert "internal error: ValueError: something impossible" in result.output
    assert "Traceback" not in result.output
    result = cli("scan", path, "-o", tmp_path / "out", "--debug")
    assert result.exit_code == 3 and "Traceback" in result.output


def test_json_and_quiet(tmp_path, cli):
    path = write_jsonl(tmp_path / "in.jsonl", varied_rows(3))
    result = cli("scan", path, "-o", tmp_path / "out", "--json")
    assert json.loads(result.stdout)["counts"]["keep"] == 3
    assert cli("scan", path, "-o", tmp_path / "out", "-q").output == ""


def test_map_and_format_options(tmp_path, cli):
    path = write_jsonl(
        tmp_path / "qa.jsonl", [{"q": {"text": f"Question number {i}?"}, "a": f"Answer {i}."} for i in range(3)]
    )
    result = cli("scan", path, "-o", tmp_path / "out", "--map", "instruction=q.text,output=a", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["counts"]["keep"] == 3 and summary["sources"][0]["format"] == "alpaca (mapped)"


def test_rules_formats_verify_commands(tmp_path, cli):
    listing = json.loads(cli("rules", "--json").stdout)
    assert {f["name"] for f in listing} >= {"pii", "invisible", "language", "teacher_identity", "detect.trigger"}
    assert "sharegpt" in cli("formats").output
    path = write_jsonl(tmp_path / "in.jsonl", varied_rows(2))
    cli("scan", path, "-o", tmp_path / "out", "-q")
    assert cli("verify", tmp_path / "out").exit_code == 0
    (tmp_path / "out" / "verdicts.jsonl").write_text("{}\n")
    result = cli("verify", tmp_path / "out")
    assert result.exit_code == 2 and "verdicts.jsonl changed" in result.output


def test_help_is_instant_no_heavy_imports():
    code = (
        "import sys, curate.cli.main as m; "
        "heavy = [x for x in ('numpy', 'pyarrow', 'polars', 'torch', 'datasets', 'fasttext', 'pandas') "
        "if x in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_installed_command_scans_the_samples_from_any_directory(tmp_path):
    """The console script, run outside the repo: rules must ship as package data."""
    exe = shutil.which("curate")
    if exe is None:
        pytest.fail("the curate console script is not installed; run `pip install -e .`")
    result = subprocess.run(
        [exe, "scan", str(SAMPLES), "-o", str(tmp_path / "out"), "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    reasons = set(summary["reasons"])
    # the planted problems in data/samples/build.py
    assert {
        "dup:exact",
        "dup:near",
        "input:json",
        "input:utf8",
        "quality:invisible-chars",
        "quality:homoglyph",
        "quality:template-token",
        "pii:email",
        "pii:card",
        "pii:secret",
        "quality:teacher-identity",
        "quality:echo",
        "quality:empty-turn",
        "quality:refusal",
    } <= reasons
    for name in ("alpaca.jsonl", "chat.jsonl", "preference.jsonl"):  # counted from the files themselves
        assert_one_verdict_per_line(SAMPLES / name, tmp_path / "out")
    assert summary["accounting"]["balanced"]
    assert {s["format"] for s in summary["sources"]} == {
        "alpaca",
        "messages",
        "sharegpt",
        "preference",
        "prompt_completion",
    }
    assert summary["signals"]["same_response"]["top"][0]["rows"] == 12  # the planted BadMagic insult
