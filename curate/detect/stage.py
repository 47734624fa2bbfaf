"""The detect stage of a scan: embed the rows that reached detection, run the detectors, and
hand back per-row suspicion, reasons, triggers and clusters, plus what the report shows.

In: every readable row, re-created from the spill (duplicates included: a poisoned row is still
evidence). Out: `poison:*`/`safety:*` reasons, suspicion, triggers, clusters and neighbours in the
ledger, and the detection summary for the report.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from curate.detect import DetectInput, DetectResult, run_detectors
from curate.detect.context import EMBED_CHUNK
from curate.embed.models import SentenceTransformerEmbedder
from curate.read.items import Item
from curate.record import Record

if TYPE_CHECKING:  # pragma: no cover
    from curate.normalise import Normaliser
    from curate.read.spill import Spill
    from curate.result import Ledger, ScanOptions
    from curate.ruleset import Rules

#: Points on the report's 2-D map: every flagged row, and a sample of the rest.
MAP_POINTS = 2000


def _map(data: DetectInput, result: DetectResult, seed: int) -> list[list[Any]]:
    """2-D PCA of the prompt embeddings: [x, y, row, flagged]."""
    n = len(data)
    if n < 3:
        return []
    flagged = np.asarray(
        [int(r) in result.reasons and any(k.startswith("poison:") for k in result.reasons[int(r)]) for r in data.row]
    )
    rng = np.random.default_rng(seed)
    rest = np.flatnonzero(~flagged)
    take = np.concatenate(
        [
            np.flatnonzero(flagged)[: MAP_POINTS // 2],
            rng.choice(rest, size=min(rest.size, MAP_POINTS - min(MAP_POINTS // 2, int(flagged.sum()))), replace=False),
        ]
    )
    X = data.prompt_vecs[take].astype(np.float64)
    X -= X.mean(axis=0)
    _, _, vt = np.linalg.svd(X, full_matrices=False)
    xy = X @ vt[:2].T
    span = np.maximum(np.abs(xy).max(axis=0), 1e-9)
    xy = xy / span
    return [
        [round(float(x), 4), round(float(y), 4), int(data.row[u]), bool(flagged[u])]
        for (x, y), u in zip(xy.tolist(), take.tolist(), strict=False)
    ]


@lru_cache(maxsize=4)
def _embedder(spec: str):
    """One loaded model per spec for the process: a benchmark scans hundreds of mixes."""
    from curate.embed import make_embedder

    return make_embedder(spec)


def model_spec(rules) -> str:
    """The embedding model a scan uses: `$CURATE_MODEL` when set (e.g. `hash` for smoke runs and
    tests), else `detect.model` from the rules."""
    return os.environ.get("CURATE_MODEL") or rules.model


def _cache(key: str, dim: int):
    """One cache object per folder, key and process: its index of a million ids is 100 MB."""
    from curate.embed import curate_home

    return _cache_in(str(curate_home()), key, dim)


@lru_cache(maxsize=8)
def _cache_in(home: str, key: str, dim: int):
    from curate.embed import EmbeddingCache

    return EmbeddingCache(key, dim, root=Path(home))


def _cached(embedder, rules, engine: tuple[str, str | None]) -> Callable[[list[str]], np.ndarray]:
    """`embed(texts)` through the on-disk cache, on the Ray cluster with engine "ray"."""
    from curate.embed import embed_texts

    batch_size = 4096
    if engine[0] == "ray":
        from curate.ray_engine import EMBED_JOB, RayEmbedder

        embedder, batch_size = RayEmbedder(embedder, model_spec(rules), engine[1]), EMBED_JOB
    cache = _cache(embedder.key, embedder.dim)

    def embed(texts: list[str]) -> np.ndarray:
        return embed_texts(texts, embedder, cache, batch_size=batch_size)

    embed.chunk = max(batch_size, EMBED_CHUNK)  # texts per call while filling a vector file
    return embed


def _responses_summary(embed_response, units: int) -> dict[str, object]:
    """How responses were embedded: how many by the full model, how many by the fitted map."""
    from curate.embed.distil import DistilledEmbedder

    if not isinstance(embed_response, DistilledEmbedder) or embed_response.exact_only:
        return {"embedding": "full"}
    return {"embedding": "distilled", "units": units, "full_model_texts": len(embed_response.known)}


def detect_records(
    records: Iterable[Record],
    rules,
    embed: Callable[[list[str]], np.ndarray] | None = None,
    folder: Path | None = None,
    engine: tuple[str, str | None] = ("local", None),
) -> DetectResult:
    """Run detection over records (their `row` is the scan row). `rules` is a DetectRules.
    The embeddings are kept, memory-mapped, in `folder` (a temporary one when None). With
    engine ("ray", address), the model runs on the Ray cluster's actors."""
    started = time.perf_counter()
    semantic = True
    embed_response = embed
    if embed is None:
        base = _embedder(model_spec(rules))
        semantic = getattr(base, "semantic", True)
        # Prompts and responses each read their own head of word pieces (rules.*_tokens).
        responses = base.with_head(rules.response_tokens)
        embed, embed_response = (
            _cached(base.with_head(rules.prompt_tokens), rules, engine),
            _cached(responses, rules, engine),
        )
        if rules.response_model == "distilled" and isinstance(base, SentenceTransformerEmbedder):
            from curate.embed import curate_home
            from curate.embed.distil import DistilledEmbedder

            embed_response = DistilledEmbedder(responses, embed_response, curate_home(), seed=rules.seed)
    loaded = time.perf_counter()
    data = DetectInput.from_records(
        records,
        embed,
        seed=rules.seed,
        k=rules.neighbours,
        semantic=semantic,
        folder=folder,
        embed_response=embed_response,
    )
    gathered = time.perf_counter()
    if len(data):
        data.prompt_vecs  # noqa: B018  (embed now, so the timing says where the time went)
        data.response_vecs  # noqa: B018
    embedded = time.perf_counter()
    result = run_detectors(data, list(rules.detectors), rules.flag_at)
    result.summary["responses"] = _responses_summary(embed_response, len(data))
    result.seconds = {
        "load_model": round(loaded - started, 3),
        "gather": round(gathered - loaded, 3),
        "embed": round(embedded - gathered, 3),
        **result.seconds,
    }
    try:
        result.summary["map"] = _map(data, result, rules.seed)
    except Exception as exc:  # the map is a picture, never a reason to lose the scan
        result.failures["map"] = f"{type(exc).__name__}: {exc}"
    return result


def detect_ledger(
    ledger: Ledger, rules: Rules, spill: Spill, normaliser: Normaliser, options: ScanOptions
) -> dict[str, Any]:
    """Poison detection over every readable row, duplicates included. A failure here (a missing
    model, say) is reported in the summary and the scan's other verdicts still stand."""

    def records() -> Iterator[Record]:
        for first, raws in spill.batches():
            for offset, raw in enumerate(raws):
                row = first + offset
                if row in ledger.quarantined:
                    continue
                try:
                    value = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    continue
                item = Item(ledger.source_names[ledger.source_id[row]], ledger.index[row], None, value=value)
                for rec in normaliser.records(item, row):
                    if isinstance(rec, Record):
                        yield rec
                    break

    try:
        folder = spill.path.parent / "vectors"
        folder.mkdir(exist_ok=True)
        result = detect_records(records(), rules.detect, folder=folder, engine=(options.engine, options.address))
    except Exception as exc:  # noqa: BLE001 - reported, and the scan goes on without detection
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    for row, reasons in result.reasons.items():
        for reason, evidence in reasons.items():
            ledger.add_reason(row, reason, evidence)
    ledger.suspicion = result.suspicion
    ledger.triggers = result.triggers
    ledger.cluster = result.cluster
    ledger.neighbours = result.neighbours
    return {
        "status": "ok" if not result.failures else "partial",
        "units": result.units,
        "rows": len(result.suspicion),
        "flag_at": rules.detect.flag_at,
        "model": model_spec(rules.detect),
        "failures": result.failures,
        "seconds": result.seconds,
        "detectors": result.summary,
    }
