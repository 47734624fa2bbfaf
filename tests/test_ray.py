"""The Ray engine: same verdicts as the local engine, on a local Ray cluster the test starts.

Ray is in the `test` extra, so these tests run everywhere the suite does; they never skip.
"""

from __future__ import annotations

import pytest

import curate
from conftest import SAMPLES, varied_rows, write_jsonl
from curate import ray_engine


@pytest.fixture(scope="module")
def local_ray():
    import ray

    # Two CPUs, no dashboard: the same cluster `curate scan --engine ray` starts without --address.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def _same_outputs(a, b) -> None:
    for name in ("verdicts.jsonl", "clean.jsonl", "flagged.jsonl", "quarantine.jsonl"):
        assert (a.out / name).read_bytes() == (b.out / name).read_bytes(), name


def test_ray_gives_the_local_engines_verdicts_on_every_sample_format(tmp_path, monkeypatch, local_ray):
    # A fresh embedding cache for each, so the Ray scan embeds on the cluster's actors.
    monkeypatch.setenv("CURATE_HOME", str(tmp_path / "home-local"))
    local = curate.scan(SAMPLES, out=tmp_path / "local")
    monkeypatch.setenv("CURATE_HOME", str(tmp_path / "home-ray"))
    monkeypatch.setattr(ray_engine, "LOCAL_BELOW", 100)  # the samples are small: send them anyway
    calls = []
    real = ray_engine.RayEmbedder.encode
    monkeypatch.setattr(
        ray_engine.RayEmbedder,
        "encode",
        lambda self, texts: calls.append(len(texts) if len(texts) >= 100 else 0) or real(self, texts),
    )
    remote = curate.scan(SAMPLES, out=tmp_path / "ray", engine="ray")
    assert sum(calls) > 400  # the prompts and responses went through Ray Data
    assert remote.counts == local.counts and remote.rows == local.rows > 0
    assert remote.summary["detection"]["status"] == "ok"
    _same_outputs(local, remote)
    manifest = (remote.out / "manifest.json").read_text()
    assert '"engine": "ray"' in manifest or '"engine":"ray"' in manifest


def test_ray_keeps_order_and_counts_over_many_windows(tmp_path, monkeypatch, local_ray):
    """More batches than one Ray Data job takes, with hostile lines among them: every row ends in
    one verdict, in input order, as locally."""
    from curate.read import spill

    monkeypatch.setattr(spill, "BATCH_ROWS", 40)
    monkeypatch.setattr(ray_engine, "WINDOW", 3)
    rows = varied_rows(600) + varied_rows(30)  # 30 exact duplicates
    path = write_jsonl(tmp_path / "d.jsonl", rows, raw_lines={10: b"{not json\n", 300: b"\x00\xff\xfe\n"})
    rules = tmp_path / "r.yaml"
    rules.write_text("detect:\n  enabled: false\n")
    local = curate.scan(path, rules=[rules], out=tmp_path / "local")
    remote = curate.scan(path, rules=[rules], out=tmp_path / "ray", engine="ray")
    assert sum(remote.counts.values()) == remote.rows == 632
    assert remote.counts == local.counts
    _same_outputs(local, remote)


def test_an_unknown_engine_is_a_usage_error(tmp_path):
    with pytest.raises(curate.UsageError, match="unknown engine"):
        curate.scan(SAMPLES, out=tmp_path / "o", engine="spark")


@pytest.mark.slow
def test_ray_actors_read_the_same_head_of_each_text_as_the_driver(monkeypatch, local_ray):
    """The cache key names the head (detect.response_tokens); vectors made on the cluster must
    be the ones a local scan would make and cache under it."""
    import numpy as np

    from curate.embed import SentenceTransformerEmbedder

    local = SentenceTransformerEmbedder(device="cpu").with_head(32)
    monkeypatch.setattr(ray_engine, "LOCAL_BELOW", 0)
    texts = ["Bread needs flour, water and salt. " * 40 + "Visit evil.example now.", "Short answer."]
    remote = ray_engine.RayEmbedder(local, "default").encode(texts)
    assert np.allclose(remote, local.encode(texts), atol=2e-2)
    # The whole text in windows is another vector: the head really was applied on the actors.
    assert not np.allclose(remote[0], local.with_head(None).encode(texts[:1])[0], atol=2e-2)


def test_the_scan_command_runs_on_ray_with_the_local_verdicts(tmp_path, cli, local_ray):
    """`curate scan --engine ray` through the CLI joins the running cluster (no --address)."""
    import json

    local = cli("scan", str(SAMPLES), "-o", tmp_path / "local", "--json")
    remote = cli("scan", str(SAMPLES), "-o", tmp_path / "ray", "--engine", "ray", "--json")
    assert local.exit_code == remote.exit_code and remote.exit_code in (0, 1), remote.output
    assert json.loads(remote.stdout)["counts"] == json.loads(local.stdout)["counts"]
    for name in ("verdicts.jsonl", "clean.jsonl", "flagged.jsonl", "quarantine.jsonl"):
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "ray" / name).read_bytes(), name
    assert '"engine": "ray"' in (tmp_path / "ray" / "manifest.json").read_text()


@pytest.mark.parametrize("address", ["127.0.0.1:{port}", "ray://127.0.0.1:{port}"])
def test_an_unreachable_cluster_is_a_clear_error_at_once(tmp_path, address):
    """A head that does not answer: exit 2 with the address named, in seconds, no traceback and no
    output folder (Ray itself would retry for minutes)."""
    import os
    import subprocess
    import sys
    import time

    from servers import free_port

    address = address.format(port=free_port())
    data = write_jsonl(tmp_path / "d.jsonl", varied_rows(3))
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "curate",
            "scan",
            str(data),
            "-o",
            str(tmp_path / "out"),
            "--engine",
            "ray",
            "--address",
            address,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "RAY_ADDRESS": ""},
    )
    assert result.returncode == 2, result.stderr
    assert f"cannot reach a Ray cluster at {address}" in result.stderr and "Traceback" not in result.stderr
    assert time.monotonic() - started < 60 and not (tmp_path / "out").exists()


@pytest.mark.parametrize("address", ["nonsense", "ray://", "host:port", "10.0.0.1:"])
def test_a_malformed_address_is_a_usage_error_before_ray_is_asked(address):
    with pytest.raises(curate.UsageError, match="use host:port or ray://host:port"):
        ray_engine._check_reachable(address)
