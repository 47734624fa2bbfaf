"""The review queue at scale: push, bulk decide, the scan-time lookup, the page, and apply.

    python benchmarks/bench_review.py [--items 20000] [--rows 100000] [--postgres URL]

Items are synthetic flagged rows (1 kB prompt and response, 50 triggers, 200 clusters). `apply`
runs over a real scan of --rows synthetic rows, a tenth of them flagged by an `invisible: flag`
rule, with every flagged row decided. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path


def items(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        trigger = f"trig{rng.randrange(50)}"
        out.append(
            {
                "content_id": f"{i:032x}",
                "reasons": ["poison:trigger"],
                "suspicion": rng.random(),
                "triggers": [trigger],
                "cluster": rng.randrange(200),
                "source": f"part-{i % 8}.jsonl",
                "line": i + 1,
                "row": i,
                "prompt": f"{trigger} " + "word " * 200,
                "response": "answer " * 150,
                "turns": [],
                "record": {"i": i},
                "evidence": {"poison:trigger": {"action": "flag"}},
                "neighbours": [
                    {"row": i + 1, "source": "x", "line": 1, "similarity": 0.9, "prompt": "p", "response": "r"}
                ]
                * 5,
            }
        )
    return out


def timed(label: str, fn, rows: list, n: int) -> None:
    started = time.perf_counter()
    fn()
    seconds = time.perf_counter() - started
    rows.append((label, n, seconds))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=20000)
    parser.add_argument("--rows", type=int, default=100000)
    parser.add_argument("--postgres", default=None, help="Also run the store steps on this postgresql:// URL.")
    args = parser.parse_args()
    from curate.review import open_store
    from curate.review.render import page

    table: list[tuple[str, int, float]] = []
    data = items(args.items)
    with tempfile.TemporaryDirectory() as tmp:
        targets = [("sqlite", str(Path(tmp) / "review.db"))] + ([("postgres", args.postgres)] if args.postgres else [])
        for name, target in targets:
            store = open_store(target)
            timed(f"{name}: push (new items)", lambda store=store: store.push(data, {"id": "a"}), table, len(data))
            timed(f"{name}: push again (re-scan)", lambda store=store: store.push(data, {"id": "b"}), table, len(data))
            ids = store.ids_where(status="open", trigger="trig7")
            timed(
                f"{name}: bulk decide one trigger",
                lambda store=store, ids=ids: store.decide(ids, "reject"),
                table,
                len(ids),
            )
            all_ids = store.ids_where(status="open")
            timed(
                f"{name}: bulk decide the rest",
                lambda store=store, all_ids=all_ids: store.decide(all_ids, "accept"),
                table,
                len(all_ids),
            )
            cids = [d["content_id"] for d in data]
            timed(
                f"{name}: scan-time decision lookup",
                lambda store=store, cids=cids: store.decisions_for(cids),
                table,
                len(cids),
            )
            timed(
                f"{name}: render the page (status=all)",
                lambda store=store: page(store, {"status": "all"}, "csrf", "nonce"),
                table,
                len(data),
            )
            store.close()

        # apply over a real scan
        import curate

        rng = random.Random(1)
        path = Path(tmp) / "rows.jsonl"
        with open(path, "w") as fh:
            for i in range(args.rows):
                mark = "\u200b" if i % 10 == 0 else ""
                fh.write(
                    json.dumps(
                        {
                            "instruction": f"Question {i}: explain item {rng.random()}{mark}",
                            "output": f"Answer {i} with detail {rng.random()} and more words.",
                        }
                    )
                    + "\n"
                )
        rules = Path(tmp) / "rules.yaml"
        rules.write_text("detect: {enabled: false}\n")
        queue = str(Path(tmp) / "apply.db")
        started = time.perf_counter()
        report = curate.scan(str(path), rules=[rules], out=Path(tmp) / "scan", queue=queue)
        table.append(
            (f"scan --queue ({report.counts['flag']:,} flagged pushed)", args.rows, time.perf_counter() - started)
        )
        store = open_store(queue)
        store.decide(store.ids_where(status="open"), "accept")
        store.close()
        store = open_store(queue)
        timed(
            "apply (all flagged rows decided)", lambda: _apply(report.out, store, Path(tmp) / "final"), table, args.rows
        )
        store.close()

    print("| step | rows/items | seconds | per second |")
    print("|---|---:|---:|---:|")
    for label, n, seconds in table:
        print(f"| {label} | {n:,} | {seconds:.2f} | {n / seconds if seconds else 0:,.0f} |")


def _apply(scan, store, out):
    from curate.review.apply import apply_decisions_to_scan

    result = apply_decisions_to_scan(scan, store, out)
    assert result["counts"]["pending"] == 0, result["counts"]


if __name__ == "__main__":
    sys.exit(main())
