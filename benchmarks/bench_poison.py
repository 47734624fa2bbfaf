"""Poison detection on real and planted attacks: the `curate bench` suites, as one script.

    python benchmarks/bench_poison.py [--seeds 0,1,2,3,4] [--quick]

BackdoorLLM (../shared/bench, the fair protocol of its README): refusal and negsentiment at 0.5%
and 1%, sst2 at 1% and 50 rows, jailbreak at 1%, every trigger; curate's planted families at 1%
into the clean pool; swapped preference pairs at 1%; and the flag rate of every clean file. Prints
the tables `curate bench` prints (min and median over seeds). --quick: one seed, 1% only.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from synth import SHARED  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if not (SHARED / "backdoorllm").is_dir():
        sys.exit(f"needs {SHARED} (the shared benchmark data)")
    seeds = "0" if args.quick else args.seeds
    bench = [sys.executable, "-m", "curate", "bench", "--seeds", seeds]
    runs = [
        ["--backdoorllm", str(SHARED), "--tasks", "sst2", "--rates", "0.01", "--counts", "" if args.quick else "50"],
        ["--backdoorllm", str(SHARED), "--tasks", "jailbreak", "--rates", "0.01", "--counts", ""],
        [
            "--backdoorllm",
            str(SHARED),
            "--tasks",
            "refusal,negsentiment",
            "--rates",
            "0.01" if args.quick else "0.005,0.01",
            "--counts",
            "",
        ],
    ]
    clean = sorted(p for p in (SHARED / "clean").iterdir() if p.suffix in {".json", ".jsonl"})
    runs.append([arg for p in clean for arg in ("--clean", str(p))] + ["--no-baselines"])
    with tempfile.TemporaryDirectory() as tmp:
        from curate.bench.mixes import Mix, clean_pool

        pool = clean_pool(SHARED)
        pool_file = Mix("pool", pool, [False] * len(pool)).write(Path(tmp) / "pool.jsonl")
        runs.append(["--plant", str(pool_file), "--rates", "0.01", "--counts", "", "--no-baselines"])
        runs.append(
            [
                *(
                    arg
                    for p in sorted((SHARED / "preference").iterdir())
                    if p.suffix in {".gz", ".json"}
                    for arg in ("--plant", str(p))
                ),
                "--rates",
                "0.01",
                "--counts",
                "",
                "--no-baselines",
            ]
        )
        for extra in runs:
            subprocess.run([*bench, *extra], check=True)


if __name__ == "__main__":
    main()
