"""Pipeline hooks: curate.guard, `curate guard`, the Trainer callback (transformers and TRL), the
pre-commit hook, and plugins from the `curate.plugins` entry-point group."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, varied_rows, write_jsonl
from servers import require

ZW = "\u200b"


def poisoned_rows(n: int = 20) -> list[dict]:
    rows = varied_rows(n)
    rows[5]["instruction"] += ZW  # quality:invisible-chars, action flag
    return rows


# -- curate.guard ----------------------------------------------------------------------------------


def test_guard_returns_the_report_or_raises_with_it(tmp_path):
    import curate

    report = curate.guard(varied_rows(20))
    assert report.counts["keep"] == 20

    data = write_jsonl(tmp_path / "data.jsonl", poisoned_rows())
    with pytest.raises(curate.PoisonedDataError) as caught:
        curate.guard(data)
    err = caught.value
    assert err.failed == ["flag>0"] and err.report.counts["flag"] == 1
    assert f"flagged {data}:6: quality:invisible-chars" in str(err)
    assert curate.guard(data, fail_on="quarantine>0").counts["flag"] == 1  # the threshold is the caller's


def test_guard_fails_when_detection_cannot_run_unless_told(tmp_path, monkeypatch):
    import curate

    monkeypatch.setenv("CURATE_MODEL", str(tmp_path / "no-such-model"))
    with pytest.raises(curate.PoisonedDataError, match="poison detection did not run"):
        curate.guard(varied_rows(20))
    assert curate.guard(varied_rows(20), detect=False).counts["keep"] == 20


def test_guard_command_exit_codes(tmp_path, cli):
    clean = write_jsonl(tmp_path / "clean.jsonl", varied_rows(20))
    ok = cli("guard", str(clean))
    assert ok.exit_code == 0 and "curate guard: ok" in ok.output
    bad = write_jsonl(tmp_path / "bad.jsonl", poisoned_rows())
    failed = cli("guard", str(bad))
    assert failed.exit_code == 1 and f"{bad}:6" in failed.output
    assert cli("guard", str(bad), "--fail-on", "drop>5").exit_code == 0
    assert cli("guard", str(bad), "--fail-on", "nonsense").exit_code == 2


# -- the Trainer callback ----------------------------------------------------------------------------


def _tokenized(tokenizer, rows):
    import datasets

    texts = [f"{r['instruction']}\n{r['output']}" for r in rows]
    return datasets.Dataset.from_dict({"text": texts}).map(
        lambda b: tokenizer(b["text"], truncation=True, max_length=64), batched=True, remove_columns=["text"]
    )


def _trainer(model_dir, tmp_path, dataset, callback, tokenizer):
    from transformers import (
        AutoModelForCausalLM,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
    )

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    args = TrainingArguments(
        output_dir=str(tmp_path / "hf"),
        max_steps=1,
        per_device_train_batch_size=4,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_strategy="no",
    )
    return Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[callback],
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
    )


def test_callback_stops_a_real_trainer_before_its_first_step(tmp_path, tiny_model):
    from transformers import AutoTokenizer

    import curate
    from curate.hooks import CurateCallback

    tok = AutoTokenizer.from_pretrained(tiny_model)
    # No source given: the callback decodes the tokenized training set it finds in the trainer.
    callback = CurateCallback(detect=False)
    trainer = _trainer(tiny_model, tmp_path, _tokenized(tok, poisoned_rows()), callback, tok)
    with pytest.raises(curate.PoisonedDataError, match="flag>0"):
        trainer.train()
    assert trainer.state.global_step == 0

    # The raw rows as the source: same verdict, and a clean set trains.
    raw = write_jsonl(tmp_path / "raw.jsonl", poisoned_rows())
    with pytest.raises(curate.PoisonedDataError):
        _trainer(tiny_model, tmp_path, _tokenized(tok, poisoned_rows()), CurateCallback(raw, detect=False), tok).train()
    clean = CurateCallback(varied_rows(20), detect=False)
    trainer = _trainer(tiny_model, tmp_path, _tokenized(tok, varied_rows(20)), clean, tok)
    trainer.train()
    assert trainer.state.global_step == 1 and clean.report.counts["keep"] == 20


def test_callback_guards_trl_sft_trainer(tmp_path, tiny_model):
    trl = require("trl")
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import curate
    from curate.hooks import CurateCallback

    tok = AutoTokenizer.from_pretrained(tiny_model)
    rows = poisoned_rows()
    data = datasets.Dataset.from_list(
        [
            {"messages": [{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["output"]}]}
            for r in rows
        ]
    )
    args = trl.SFTConfig(
        output_dir=str(tmp_path / "sft"),
        max_steps=1,
        per_device_train_batch_size=4,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        max_length=64,
    )
    trainer = trl.SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model),
        args=args,
        train_dataset=data,
        processing_class=tok,
        callbacks=[CurateCallback(detect=False)],
    )
    with pytest.raises(curate.PoisonedDataError):
        trainer.train()
    assert trainer.state.global_step == 0


# -- plugins ----------------------------------------------------------------------------------------

PLUGIN = """
import dataclasses
from typing import ClassVar

from curate.filters import Filter, Hit, register


@register
@dataclasses.dataclass
class Banned(Filter):
    name: ClassVar[str] = "acme_banned"
    reasons: ClassVar[tuple] = ("quality:acme-banned",)
    default_action: ClassVar[str] = "drop"
    description: ClassVar[str] = "rows that mention a banned word (an ACME plugin)"
    word: str = "zorblax"

    def check(self, record):
        return [Hit("quality:acme-banned", 1.0, {"word": self.word})] if self.word in record.full_text().lower() else []
"""


def _install_plugin(tmp_path: Path, body: str, name: str = "acme_curate") -> Path:
    src = tmp_path / f"{name}-src"
    (src / name).mkdir(parents=True)
    (src / name / "__init__.py").write_text(body)
    (src / "pyproject.toml").write_text(f'''[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"
[project]
name = "{name}"
version = "0.1"
[project.entry-points."curate.plugins"]
acme = "{name}"
''')
    target = tmp_path / f"{name}-site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    return target


def _curate(args: list[str], site: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "CURATE_MODEL": "hash"}
    return subprocess.run(
        [sys.executable, "-m", "curate", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
        check=False,
    )


def test_a_plugin_package_adds_a_filter(tmp_path):
    from conftest import alpaca

    require("setuptools")
    site = _install_plugin(tmp_path, PLUGIN)
    listed = _curate(["rules"], site, tmp_path)
    assert listed.returncode == 0 and "acme_banned" in listed.stdout
    rows = varied_rows(10) + [alpaca("Tell me about zorblax", "It is banned.")]
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    rules = tmp_path / "rules.yaml"
    rules.write_text("filters:\n  acme_banned: {action: flag}\ndetect: {enabled: false}\n")
    scanned = _curate(["scan", str(data), "-r", str(rules), "-o", "out", "--json"], site, tmp_path)
    assert scanned.returncode == 0, scanned.stderr
    import json

    summary = json.loads(scanned.stdout)
    assert summary["reasons"]["quality:acme-banned"] == {"rows": 1, "action": "flag"}


def test_a_broken_plugin_is_named(tmp_path):
    site = _install_plugin(tmp_path, "raise RuntimeError('boom')\n", name="broken_curate")
    result = _curate(["rules"], site, tmp_path)
    assert result.returncode == 2 and "plugin 'acme'" in result.stderr and "boom" in result.stderr
    assert "Traceback" not in result.stderr


# -- pre-commit ---------------------------------------------------------------------------------------


def _hook_repo(tmp_path: Path) -> Path:
    """pre-commit installs hooks from a git repository: the checkout itself, or, from a source tree
    without `.git` (an sdist, a copied folder), a throwaway repository made of that tree."""
    if (REPO / ".git").exists():
        return REPO
    import shutil

    copy = tmp_path / "curate-src"
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(".venv", "*.egg-info", "__pycache__", "out", ".cache"))

    def git(*a):
        return subprocess.run(["git", *a], cwd=copy, check=True, capture_output=True)

    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "source tree")
    return copy


def test_pre_commit_hook_blocks_a_commit_of_flagged_data(tmp_path):
    require("pre_commit")
    hooks = _hook_repo(tmp_path)
    repo = tmp_path / "data-repo"
    repo.mkdir()

    def git(*a):
        return subprocess.run(["git", *a], cwd=repo, check=True, capture_output=True)

    git("init", "-q")
    write_jsonl(repo / "good.jsonl", varied_rows(12))
    write_jsonl(repo / "bad.jsonl", poisoned_rows(12))
    git("add", ".")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pc-home"), "CURATE_HOME": str(tmp_path / "home")}

    def run(*files):
        return subprocess.run(
            [sys.executable, "-m", "pre_commit", "try-repo", str(hooks), "curate-guard-fast", "--files", *files],
            cwd=repo,
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
            check=False,
        )

    good = run("good.jsonl")
    assert good.returncode == 0, good.stdout + good.stderr
    bad = run("bad.jsonl")
    assert bad.returncode == 1 and "bad.jsonl:6" in bad.stdout
