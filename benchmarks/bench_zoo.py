"""The attack zoo over real clean corpora: AUROC, recall and precision at `flag_at`, per family.

    python benchmarks/bench_zoo.py --split tune                         # what detection is tuned on
    python benchmarks/bench_zoo.py --split held_out                     # run once, at the end
    python benchmarks/bench_zoo.py --split fresh                        # data and attacks not in ../shared
    python benchmarks/bench_zoo.py --split tune --rates 0.01 --seeds 0  # a quick look

Families (curate/bench/zoo.py) and corpora (curate/bench/corpora.py) are each split in two; a
third split, `fresh`, plants every family (its own new ones included) into corpora that are not
in ../shared (curate/bench/pydocs.py). A split's run plants its own families into its own
corpora, at every rate and seed, scans each mix with the real product (default rules) and prints
one line per family x corpus x rate: min (and median) over seeds, beside the trivial baseline
(rows sharing the row's exact answer). Then, per family at 1%, the worst corpus; and the rate
check: recall at 10% against recall at 1%.
Embeddings are cached by text (curate's embedding cache), so each corpus is embedded once.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from curate.bench.corpora import CORPORA, REAL_ATTACKS, family_kind
from curate.bench.run import scan_mix
from curate.bench.zoo import FAMILIES, applies, plant


def cells(split: str, families: list[str] | None, corpora: list[str] | None):
    for cname, corpus in CORPORA.items():
        if (corpora and cname not in corpora) or (not corpora and corpus.split != split):
            continue
        for fname, family in FAMILIES.items():
            # A fresh corpus gets every family that fits it; a fresh family goes nowhere else.
            if family.split == "fresh" and corpus.split != "fresh":
                continue
            mine = family.split == corpus.split or corpus.split == "fresh"
            if (families and fname not in families) or (not families and not mine):
                continue
            if applies(fname, family_kind(corpus, fname)):
                yield corpus, fname


def fmt(values: list[float]) -> str:
    values = [v for v in values if v == v]
    if not values:
        return "-"
    lo, mid = min(values), statistics.median(values)
    return f"{lo:.3f}" if abs(lo - mid) < 5e-4 else f"{lo:.3f} ({mid:.3f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=Path("../shared/bench"))
    ap.add_argument("--split", choices=["tune", "held_out", "fresh"], default="tune")
    ap.add_argument("--families", default="", help="comma-separated; default: the split's")
    ap.add_argument("--corpora", default="", help="comma-separated; default: the split's")
    ap.add_argument("--rates", default="0.001,0.01,0.05,0.1")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--rules", action="append", default=[])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--jsonl", type=Path, help="append each mix's row as it finishes; rows already there are skipped")
    ap.add_argument("--report", type=Path, nargs="+", help="print the tables from these --jsonl files and stop")
    args = ap.parse_args()
    if args.report:
        rows = [json.loads(line) for f in args.report for line in f.read_text().splitlines() if line.strip()]
        report(rows, args.split, sum(r["seconds"] for r in rows))
        return 0
    rates = [float(r) for r in args.rates.split(",") if r]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    chosen = list(
        cells(
            args.split,
            [f for f in args.families.split(",") if f] or None,
            [c for c in args.corpora.split(",") if c] or None,
        )
    )
    results: list[dict] = []
    done: set[tuple] = set()
    if args.jsonl and args.jsonl.exists():
        results = [json.loads(line) for line in args.jsonl.read_text().splitlines() if line.strip()]
        done = {(r["family"], r["corpus"], r["rate"], r["seed"]) for r in results}
    loaded: dict[str, list] = {}
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="curate-zoo-") as tmp:
        for corpus, fname in chosen:
            if corpus.name not in loaded:
                loaded = {corpus.name: corpus.load(args.shared)}
            records = loaded[corpus.name]
            real = corpus.real(args.shared, REAL_ATTACKS[fname]) if fname in REAL_ATTACKS else None
            for rate in rates:
                for seed in seeds:
                    if (fname, corpus.name, rate, seed) in done:
                        continue
                    mix = plant(records, fname, family_kind(corpus, fname), rate=rate, seed=seed, real=real)
                    t0 = time.time()
                    scored = scan_mix(mix, args.rules or None, None, Path(tmp))
                    m = scored.metrics()
                    row = {
                        "family": fname,
                        "corpus": corpus.name,
                        "kind": corpus.kind,
                        "rate": rate,
                        "seed": seed,
                        "trigger": mix.trigger,
                        "seconds": round(time.time() - t0, 1),
                        **m,
                    }
                    results.append(row)
                    if args.jsonl:
                        with args.jsonl.open("a") as out:
                            out.write(json.dumps(row) + "\n")
                    print(
                        f"{fname:22s} {corpus.name:17s} {rate:6.1%} s{seed} poisons {m['poisons']:4d}  "
                        f"auroc {m['auroc']:.3f} recall {m['recall']:.2f} precision {m['precision']:.2f}  "
                        f"identical {m['identical_auroc']:.3f}  ({row['seconds']}s)",
                        file=sys.stderr,
                        flush=True,
                    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    report(results, args.split, time.time() - started)
    return 0


def report(results: list[dict], split: str, seconds: float) -> None:
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["family"], r["corpus"], r["rate"]), []).append(r)
    print(
        f"\n## Attack zoo, {split} split: min (median) over {len({r['seed'] for r in results})} seeds "
        f"({seconds / 60:.1f} min)\n"
    )
    print("| family | corpus | rate | poisons | AUROC | recall@flag | precision@flag | flag rate | identical AUROC |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for (fam, corpus, rate), rows in groups.items():
        print(
            f"| {fam} | {corpus} | {rate:.1%} | {rows[0]['poisons']} | {fmt([r['auroc'] for r in rows])} | "
            f"{fmt([r['recall'] for r in rows])} | {fmt([r['precision'] for r in rows])} | "
            f"{fmt([r['flag_rate'] for r in rows])} | {fmt([r['identical_auroc'] for r in rows])} |"
        )
    print("\n### Per family at 1%: the worst corpus (min over corpora and seeds)\n")
    print("| family | trigger | corpora | AUROC | recall@flag | precision@flag | identical AUROC |")
    print("|---|---|---|---:|---:|---:|---:|")
    for fam in dict.fromkeys(r["family"] for r in results):
        rows = [r for r in results if r["family"] == fam and abs(r["rate"] - 0.01) < 1e-9]
        if rows:
            trig = "yes" if FAMILIES[fam].has_trigger else "no"
            print(
                f"| {fam} | {trig} | {len({r['corpus'] for r in rows})} | {min(r['auroc'] for r in rows):.3f} | "
                f"{min(r['recall'] for r in rows):.3f} | {min(r['precision'] for r in rows):.3f} | "
                f"{min(r['identical_auroc'] for r in rows):.3f} |"
            )
    print("\n### More poison never means less recall: seed-mean recall, 1% against 10%\n")
    print("| family | corpus | recall 1% | recall 10% | holds (>= 1% - 0.05) |")
    print("|---|---|---:|---:|---|")
    for (fam, corpus, rate), rows in groups.items():
        if abs(rate - 0.01) > 1e-9 or (fam, corpus, 0.1) not in groups:
            continue
        lo = statistics.mean(r["recall"] for r in rows)
        hi = statistics.mean(r["recall"] for r in groups[(fam, corpus, 0.1)])
        print(f"| {fam} | {corpus} | {lo:.3f} | {hi:.3f} | {'yes' if hi >= lo - 0.05 else '**no**'} |")


if __name__ == "__main__":
    raise SystemExit(main())
