"""A full scan with poison detection on a cold cache: seconds per stage.

    python benchmarks/bench_detect_speed.py [--rows 10000] [--model default]

Rows are synthetic (benchmarks/synth.py): prompts of about 20 words and responses of about 110,
log-normally spread (a tail past 500 words); 95% unique (2.5% exact and 2.5% near duplicates). The embedding
cache is a fresh temporary folder, so every text is embedded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from synth import make_rows  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["CURATE_HOME"] = str(Path(tmp) / "home")
        os.environ["CURATE_MODEL"] = args.model
        rows, _ = make_rows(args.rows, exact=0.025, near=0.025)
        path = Path(tmp) / "rows.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        words = sorted(len(r["output"].split()) for r in rows)
        prompt_words = sorted(len((r["instruction"] + " " + r["input"]).split()) for r in rows)
        import curate

        started = time.perf_counter()
        report = curate.scan(str(path), out=Path(tmp) / "out")
        total = time.perf_counter() - started
        s = report.summary
        d = s["detection"]
        print("| rows | prompt words (median) | response words (median / p99) | model | total s | rows/s |")
        print("|---|---|---|---|---|---|")
        print(
            f"| {args.rows:,} | {prompt_words[len(rows) // 2]} | {words[len(words) // 2]} / "
            f"{words[int(len(words) * 0.99)]} | {args.model} | {total:.1f} | {args.rows / total:,.0f} |"
        )
        print()
        print("| stage | seconds |")
        print("|---|---|")
        for stage in ("pass1", "exact", "near", "detect", "write"):
            print(f"| {stage} | {s['seconds'].get(stage, 0):.1f} |")
        for stage, sec in d.get("seconds", {}).items():
            print(f"| detect: {stage} | {sec:.1f} |")
        print(
            f"\nflagged {d.get('flagged')} of {d.get('rows')} (status {d.get('status')}); "
            f"responses embedded: {d.get('responses')}"
        )


if __name__ == "__main__":
    main()
