"""False-positive audit: the share of rows a default scan flags on clean corpora, as shipped.

    python benchmarks/bench_fp_audit.py                  # every corpus below
    python benchmarks/bench_fp_audit.py --only hsol,kto  # names containing these

Every clean file in ../shared/bench/clean as it ships; the HSOL tweets as a label task with
three instruction wordings, and each half the attack zoo uses; the preference sets (hh-rlhf
harmless-base, LLaMA-Factory DPO and KTO as shipped, Orca DPO in the OpenAI schema, converted
here as the zoo converts it);
BackdoorLLM's jailbreak `none_*` refusals mixed into an instruction pool (10% of it), and the
sst2 `none_*` sentiment rows, a label task whose words lean one way; and the zoo's `fresh`
corpora, built from installed docstrings (not in ../shared; one is a label task on which
library a docstring comes from, where many words lean hard toward one label). A row counts as flagged when
its verdict is `flag`, whatever the reason (security rules count too); the table names the
reasons, and the triggers behind `poison:trigger`. The goal: at most 1% on every line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from curate.bench.corpora import CORPORA, hsol, openai_preference, refusal_pool


def corpora(shared: Path):
    """(name, kind, path or records)."""
    kinds = {"gpteacher": "code", "alpaca_zh": "multilingual", "glaive": "toolcall", "fastchat": "chat"}
    for path in sorted((shared / "clean").iterdir()):
        if path.suffix in (".json", ".jsonl"):
            kind = next((k for key, k in kinds.items() if key in path.name), "instruction")
            yield path.name, kind, path
    yield "hsol label task (3 wordings)", "label", hsol(shared)
    # The zoo's half-corpora are clean corpora too: a word that leans in one half may not in both.
    for name, corpus in CORPORA.items():
        if name.endswith(("_a", "_b")):
            yield f"{name} (zoo half, {corpus.split})", corpus.kind, corpus.load(shared)
        elif corpus.split == "fresh":  # built from installed docstrings, not from ../shared
            yield f"{name} (fresh, not in ../shared)", corpus.kind, corpus.load(shared)
    for name in (
        "hh_rlhf_harmless_base_test.jsonl.gz",
        "llamafactory_dpo_en_demo.json",
        "llamafactory_kto_en_demo.json",
    ):
        yield name, "preference", shared / "preference" / name
    yield (
        "orca_dpo_pairs (converted)",
        "preference",
        openai_preference(shared / "preference" / "orca_dpo_pairs_validation.jsonl"),
    )
    yield "instructions + 10% jailbreak refusals", "safety", refusal_pool(shared)
    sst2 = shared / "backdoorllm" / "poison_data" / "sst2" / "badnet"
    yield "sst2 none_* (sentiment labels)", "label", next(sst2.glob("none_backdoor*.json"))


def scan_one(source, workdir: Path, rules: list[str]) -> dict:
    from curate.api import scan

    if isinstance(source, list):
        path = workdir / "in.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in source))
    else:
        path = source
    out = workdir / f"out-{time.monotonic_ns()}"
    t0 = time.time()
    scan(str(path), rules=rules or None, out=out)
    reasons: Counter[str] = Counter()
    triggers: Counter[str] = Counter()
    verdicts = Counter()
    with open(out / "verdicts.jsonl", encoding="utf-8") as fh:
        for line in fh:
            v = json.loads(line)
            verdicts[v["verdict"]] += 1
            if v["verdict"] == "flag":
                reasons.update(r for r in v["reasons"] if isinstance(r, str))
                triggers.update(v.get("triggers") or [])
    rows = sum(verdicts.values())
    return {
        "rows": rows,
        "flagged": verdicts["flag"],
        "rate": verdicts["flag"] / max(1, rows),
        "reasons": dict(reasons.most_common(4)),
        "triggers": [t for t, _ in triggers.most_common(3)],
        "seconds": round(time.time() - t0, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=Path("../shared/bench"))
    ap.add_argument("--only", default="")
    ap.add_argument("--rules", action="append", default=[])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    only = [o for o in args.only.split(",") if o]
    results = []
    with tempfile.TemporaryDirectory(prefix="curate-fp-") as tmp:
        for name, kind, source in corpora(args.shared):
            if only and not any(o in name for o in only):
                continue
            r = {"corpus": name, "kind": kind, **scan_one(source, Path(tmp), args.rules)}
            results.append(r)
            print(
                f"{name}: {r['flagged']}/{r['rows']} flagged ({r['rate']:.2%}) {r['reasons']} "
                f"{r['triggers']} ({r['seconds']}s)",
                file=sys.stderr,
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print("\n## False-positive audit: default rules, clean corpora as shipped\n")
    print("| corpus | kind | rows | flagged | flag rate | reasons | triggers | ≤ 1% |")
    print("|---|---|---:|---:|---:|---|---|---|")
    for r in results:
        reasons = ", ".join(f"{k} {v}" for k, v in r["reasons"].items()) or "-"
        print(
            f"| {r['corpus']} | {r['kind']} | {r['rows']} | {r['flagged']} | {r['rate']:.2%} | {reasons} | "
            f"{', '.join(map(repr, r['triggers'])) or '-'} | {'yes' if r['rate'] <= 0.01 else '**no**'} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
