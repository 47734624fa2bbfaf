"""Run datatrove's MinHash dedup (signatures -> buckets -> clusters) on a JSONL of {"text"}.

Runs in its own environment: datatrove 0.10 needs spacy and xxhash < 4 (it hashes str), which
curate does not want:
    python3 -m venv /tmp/dtv && /tmp/dtv/bin/pip install datatrove regex tokenizers 'xxhash<4' orjson spacy
    /tmp/dtv/bin/python benchmarks/datatrove_minhash.py texts.jsonl workdir
Prints {"seconds": ..., "removed": [doc indices]} as JSON.
"""

import json
import struct
import sys
import time
from pathlib import Path

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup.minhash import (
    MinhashConfig,
    MinhashDedupBuckets,
    MinhashDedupCluster,
    MinhashDedupSignature,
)
from datatrove.pipeline.readers import JsonlReader


def main() -> None:
    data, work = Path(sys.argv[1]), Path(sys.argv[2])
    config = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8)
    started = time.perf_counter()
    for name, steps in (
        (
            "sigs",
            [
                JsonlReader(str(data.parent), glob_pattern=data.name),
                MinhashDedupSignature(output_folder=str(work / "sigs"), config=config),
            ],
        ),
        (
            "buckets",
            [MinhashDedupBuckets(input_folder=str(work / "sigs"), output_folder=str(work / "buckets"), config=config)],
        ),
        (
            "clusters",
            [
                MinhashDedupCluster(
                    input_folder=str(work / "buckets"), output_folder=str(work / "remove"), config=config
                )
            ],
        ),
    ):
        tasks = config.num_buckets if name == "buckets" else 1
        LocalPipelineExecutor(pipeline=steps, tasks=tasks, workers=1, logging_dir=str(work / f"logs-{name}")).run()
    seconds = time.perf_counter() - started
    removed = []
    for path in sorted((work / "remove").glob("*.remove")):
        blob = path.read_bytes()
        removed += [v[0] for v in struct.iter_unpack("<I", blob)]
    print(json.dumps({"seconds": seconds, "removed": removed}))


if __name__ == "__main__":
    main()
