"""`curate bench`: scan labelled mixes with the real product and score the result.

For every attack and rate, over several seeds: AUROC of `suspicion`, recall and precision at
`detect.flag_at` (a row the scan flags for any reason, a security rule say, counts as flagged, as
the false-positive audit counts it), recall when flagging twice the poison rate, and the same
figures for two baselines on the same rows: counting identical responses, and cleanlab's
outlier score on the same embeddings. Figures are reported as the minimum and the median over
seeds.
"""

from __future__ import annotations

import contextlib
import io
import json
import statistics
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from curate.bench.mixes import Mix


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum formula, ties counted half."""
    labels = np.asarray(labels, bool)
    pos, neg = labels.sum(), (~labels).sum()
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), np.float64)
    sorted_scores = np.asarray(scores)[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * neg))


def recall_at(labels: np.ndarray, scores: np.ndarray, budget: int) -> float:
    """Recall when the `budget` highest-scoring rows are flagged."""
    labels = np.asarray(labels, bool)
    if labels.sum() == 0:
        return float("nan")
    top = np.argsort(-np.asarray(scores), kind="stable")[:budget]
    return float(labels[top].sum() / labels.sum())


@dataclass
class Scored:
    """One mix, scanned."""

    name: str
    labels: np.ndarray
    suspicion: np.ndarray
    reached: float
    flag_at: float
    baselines: dict[str, np.ndarray] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        y = self.labels
        flagged = self.suspicion >= self.flag_at
        k = int(y.sum())
        out = {
            "auroc": auroc(y, self.suspicion),
            "recall": float((flagged & y).sum() / max(1, k)),
            "precision": float((flagged & y).sum() / flagged.sum()) if flagged.any() else (1.0 if k == 0 else 0.0),
            "recall_2x": recall_at(y, self.suspicion, 2 * k),
            "flag_rate": float(flagged.mean()),
            "reached": self.reached,
            "poisons": k,
        }
        for name, scores in self.baselines.items():
            out[f"{name}_auroc"] = auroc(y, scores)
            out[f"{name}_recall_2x"] = recall_at(y, scores, 2 * k)
        return out


def identical_response_counts(records: list[dict[str, Any]]) -> np.ndarray:
    """The trivial baseline: how many rows share this row's (normalised) response."""
    from collections import Counter

    from curate.detect.context import response_key

    keys = [response_key(_response(r)) for r in records]
    counts = Counter(keys)
    return np.asarray([counts[k] for k in keys], np.float64)


def _response(rec: dict[str, Any]) -> str:
    if "messages" in rec:
        return rec["messages"][-1]["content"]
    return rec["chosen"][-1]["content"]


def _prompt(rec: dict[str, Any]) -> str:
    msgs = rec["messages"][:-1] if "messages" in rec else rec["prompt"]
    return "\n".join(m["content"] for m in msgs)


def cleanlab_outlier(records: list[dict[str, Any]], embed: Callable[[list[str]], np.ndarray]) -> np.ndarray | None:
    """cleanlab's OutOfDistribution score on the joint (prompt + response) embedding; higher is
    more suspicious. None when cleanlab is not installed (pip install 'curate[bench]')."""
    try:
        from cleanlab.outlier import OutOfDistribution
    except ImportError:
        return None
    joint = embed([_prompt(r) for r in records]) + embed([_response(r) for r in records])
    joint /= np.maximum(np.linalg.norm(joint, axis=1, keepdims=True), 1e-12)
    with contextlib.redirect_stdout(io.StringIO()):  # cleanlab prints its progress
        scores = OutOfDistribution().fit_score(features=joint)  # low = outlier
    return 1.0 - np.asarray(scores, np.float64)


def scan_mix(mix: Mix, rules: Any, embed: Callable[[list[str]], np.ndarray] | None, workdir: Path) -> Scored:
    """Write the mix, scan it with curate, and read back per-row suspicion. `rules` is a `Rules`,
    or rule files that extend the defaults."""
    from curate.pipeline import scan_files
    from curate.ruleset import Rules, load_rules

    path = mix.write(workdir / f"{mix.name}.jsonl")
    out = workdir / f"{mix.name}.out"
    report = scan_files(str(path), rules if isinstance(rules, Rules) else load_rules(rules), out)
    suspicion = np.zeros(len(mix.records))
    flagged = np.zeros(len(mix.records), bool)
    reached = 0
    with open(out / "verdicts.jsonl", encoding="utf-8") as fh:
        for line in fh:
            v = json.loads(line)
            if v["suspicion"] is not None:
                suspicion[v["row"]] = v["suspicion"]
                reached += 1
            if v["verdict"] == "flag":
                flagged[v["row"]] = True
    flag_at = report.summary["detection"].get("flag_at", 0.5)
    # A row the scan flags for any reason (a security rule, say) is caught, as the false-positive
    # audit counts it against the clean budget: it ranks above every row not flagged, in the
    # order detection gave.
    ranked = np.where(flagged, np.maximum(suspicion, flag_at) + 1.0, suspicion)
    scored = Scored(mix.name, np.asarray(mix.poisoned), ranked, reached / max(1, len(mix.records)), flag_at)
    scored.baselines["identical"] = identical_response_counts(mix.records)
    if embed is not None:
        outlier = cleanlab_outlier(mix.records, embed)
        if outlier is not None:
            scored.baselines["cleanlab"] = outlier
    path.unlink()
    return scored


def summarise(rows: list[dict[str, float]]) -> dict[str, float]:
    """Minimum and median over seeds of each figure."""
    out: dict[str, float] = {}
    for key in rows[0]:
        values = [r[key] for r in rows if r[key] == r[key]]  # drop NaN
        if not values:
            continue
        out[f"{key}_min"] = min(values)
        out[f"{key}_median"] = statistics.median(values)
    return out


def run(
    mixes: Iterator[tuple[str, str, Mix]],
    rules: list[str] | None = None,
    progress: Callable[[str], None] | None = None,
    embed=None,
) -> list[dict[str, Any]]:
    """Scan every mix; group by (attack, rate) and summarise over seeds."""
    groups: dict[tuple[str, str], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="curate-bench-") as tmp:
        for attack, rate, mix in mixes:
            scored = scan_mix(mix, rules, embed, Path(tmp))
            groups.setdefault((attack, rate), []).append(scored.metrics())
            if progress:
                m = groups[(attack, rate)][-1]
                progress(f"{mix.name}: auroc {m['auroc']:.3f} recall {m['recall']:.2f} precision {m['precision']:.2f}")
    return [{"attack": a, "rate": r, "seeds": len(rows), **summarise(rows)} for (a, r), rows in groups.items()]


def backdoorllm_suite(
    shared: Path, tasks: list[str], triggers: list[str], rates: list[float], counts: list[int], seeds: list[int]
) -> Iterator[tuple[str, str, Mix]]:
    from curate.bench.mixes import backdoorllm_mix, clean_pool

    pool = clean_pool(shared)
    for task in tasks:
        for trigger in triggers:
            for rate in rates:
                for seed in seeds:
                    yield (
                        f"{task}-{trigger}",
                        f"{rate:.1%}",
                        backdoorllm_mix(shared, task, trigger, rate=rate, seed=seed, pool=pool),
                    )
            for count in counts:
                for seed in seeds:
                    yield (
                        f"{task}-{trigger}",
                        f"n={count}",
                        backdoorllm_mix(shared, task, trigger, count=count, seed=seed, pool=pool),
                    )


def planted_suite(
    records: list[dict[str, Any]], families: list[str], rates: list[float], counts: list[int], seeds: list[int]
) -> Iterator[tuple[str, str, Mix]]:
    from curate.bench.plant import plant

    for family in families:
        for varied in (False,) if family == "preference_flip" else (False, True):
            attack = family + ("/varied" if varied else "/fixed" if family != "preference_flip" else "")
            for rate in rates:
                for seed in seeds:
                    yield attack, f"{rate:.1%}", plant(records, family, rate=rate, varied=varied, seed=seed)
            for count in counts:
                for seed in seeds:
                    yield attack, f"n={count}", plant(records, family, count=count, varied=varied, seed=seed)


def clean_suite(files: list[Path]) -> Iterator[tuple[str, str, Mix]]:
    """Each clean file as it is: the flag rate a user would see, and the share reaching detection."""
    from curate.bench.mixes import as_chat, read_records

    for path in files:
        records = [as_chat(r) for r in read_records(path)]
        yield f"clean:{path.name}", "0", Mix(path.stem, records, [False] * len(records))
