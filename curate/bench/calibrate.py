"""`curate scan --calibrate`: plant curate's attack families into a copy of the user's own data,
scan each copy, and report the recall to expect on that data, family by family."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any


def calibrate(
    paths: list[str], rules: Any, *, rate: float = 0.01, min_count: int = 10, seed: int = 0
) -> dict[str, Any]:
    """Per family (fixed and varied target): planted rows, recall at flag_at and AUROC. (No
    precision: rows the data already had flagged would count against it.)"""
    from curate.bench.mixes import as_chat, read_records
    from curate.bench.plant import FAMILIES, plant
    from curate.bench.run import scan_mix

    records = [as_chat(r) for p in paths for r in read_records(p)]
    if not records:
        return {"status": "skipped", "reason": "no readable records"}
    pairs = any("chosen" in r for r in records)
    plan = [("preference_flip", False)] if pairs else [(f, v) for f in FAMILIES for v in (False, True)]
    count = max(min_count, round(rate * len(records)))
    families = []
    with tempfile.TemporaryDirectory(prefix="curate-calibrate-") as tmp:
        for family, varied in plan:
            mix = plant(records, family, count=count, varied=varied, seed=seed)
            m = scan_mix(mix, rules, None, Path(tmp)).metrics()
            families.append(
                {
                    "family": family,
                    "target": "varied" if varied else "fixed",
                    "planted": m["poisons"],
                    "recall": round(m["recall"], 4),
                    "auroc": round(m["auroc"], 4),
                }
            )
    return {"status": "ok", "rows": len(records), "planted_per_family": count, "seed": seed, "families": families}
