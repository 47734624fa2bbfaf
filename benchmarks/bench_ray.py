"""The Ray engine's overhead against the local engine on this machine.

    python benchmarks/bench_ray.py                 # 100k rows, detection with the hashing embedder
    python benchmarks/bench_ray.py --model default # the packaged MiniLM (slow on a CPU)

Both engines scan the same synthetic rows (benchmarks/synth.py) as `curate scan` subprocesses;
the Ray one starts a local cluster on this machine, as `--engine ray` does without `--address`.
Peak memory is the resident memory of the scan's whole process tree (Ray's daemons included).
The verdicts of the two must be identical: the script checks it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_throughput import run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--model", default="hash", help="CURATE_MODEL for both scans (default: hash)")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="curate-bench-ray-"))
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ["CURATE_MODEL"] = args.model
    results = {}
    for engine in ("local", "ray"):
        # Each engine embeds from an empty cache: the embedding work is the same for both.
        os.environ["CURATE_HOME"] = str(workdir / f"home-{engine}")
        results[engine] = run(args.rows, workdir, None, ["--engine", engine], tag=f"-{engine}")
    same = (workdir / f"out-{args.rows}-local" / "verdicts.jsonl").read_bytes() == (
        workdir / f"out-{args.rows}-ray" / "verdicts.jsonl"
    ).read_bytes()
    print(f"\nlocal vs Ray engine · {args.rows:,} rows · {os.cpu_count()} cores · model={args.model}\n")
    head = ("engine", "wall s", "pass 1 s", "dedup s", "embed s", "detectors s", "write s", "peak RSS MB")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for engine, r in results.items():
        s = r["report"]["seconds"]
        d = r["report"].get("detection", {}).get("seconds", {})
        detectors = sum(v for k, v in d.items() if k not in ("load_model", "gather", "embed"))
        print(
            "| "
            + " | ".join(
                [
                    engine,
                    f"{r['wall']:.1f}",
                    f"{s['pass1']:.1f}",
                    f"{s['exact'] + s['near']:.1f}",
                    f"{d.get('embed', 0):.1f}",
                    f"{detectors:.1f}",
                    f"{s['write']:.1f}",
                    f"{r['peak'] / 2**20:,.0f}",
                ]
            )
            + " |"
        )
    overhead = results["ray"]["wall"] - results["local"]["wall"]
    print(
        f"\nRay overhead: {overhead:+.1f} s ({results['ray']['wall'] / results['local']['wall']:.2f}x wall); "
        f"verdicts identical: {same}"
    )


if __name__ == "__main__":
    main()
