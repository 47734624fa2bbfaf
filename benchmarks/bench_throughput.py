"""Ingest + filters + exact and near dedup: rows/s per stage and peak memory.

    python benchmarks/bench_throughput.py            # 100k and 1M rows
    python benchmarks/bench_throughput.py --rows 100000

Synthetic Alpaca rows of realistic length (benchmarks/synth.py) with 5% exact and 5% near
duplicates planted. Each size runs `curate scan` as a subprocess, with the default workers (one
per core), while a sampler sums the resident memory of the whole process tree every 100 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from synth import make_rows, write_jsonl  # noqa: E402


def tree_rss(pid: int) -> int:
    """Resident bytes of pid and all its descendants."""
    total = 0
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/statm") as fh:
                total += int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
        stack.extend(children.get(p, []))
    return total


def run(rows: int, workdir: Path, workers: int | None, extra: list[str] | None = None, tag: str = "") -> dict:
    data = workdir / f"synth-{rows}.jsonl"
    if not data.exists():
        t = time.perf_counter()
        generated, _ = make_rows(rows, seed=1)
        write_jsonl(generated, data)
        del generated
        print(
            f"  generated {rows:,} rows ({data.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.0f} s",
            file=sys.stderr,
        )
    cmd = [
        sys.executable,
        "-m",
        "curate",
        "scan",
        str(data),
        "-o",
        str(workdir / f"out-{rows}{tag}"),
        "--json",
        *(extra or []),
    ]
    if workers:
        cmd += ["--workers", str(workers)]
    peak = 0
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss(proc.pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    done.set()
    sampler.join()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"scan failed ({proc.returncode}): {err[-2000:]}")
    report = json.loads(out)
    return {"rows": rows, "wall": wall, "peak": peak, "report": report}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="curate-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = [run(n, workdir, args.workers) for n in args.rows]
    print(f"\ncurate scan throughput · {os.cpu_count()} cores · workers={args.workers or 'default'}\n")
    head = (
        "rows",
        "wall s",
        "rows/s end-to-end",
        "pass 1 rows/s",
        "per-row CPU µs: read",
        "filter",
        "minhash",
        "exact s",
        "near s",
        "write s",
        "peak RSS MB",
        "dropped exact",
        "dropped near",
    )
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in results:
        rep = r["report"]
        s = rep["seconds"]
        n = r["rows"]
        print(
            "| "
            + " | ".join(
                [
                    f"{n:,}",
                    f"{r['wall']:.1f}",
                    f"{n / r['wall']:,.0f}",
                    f"{n / s['pass1']:,.0f}",
                    f"{s['read'] / n * 1e6:.0f}",
                    f"{s['filter'] / n * 1e6:.0f}",
                    f"{s['minhash'] / n * 1e6:.0f}",
                    f"{s['exact']:.2f}",
                    f"{s['near']:.1f}",
                    f"{s['write']:.1f}",
                    f"{r['peak'] / 2**20:,.0f}",
                    f"{rep['dedup']['exact']['rows_dropped']:,}",
                    f"{rep['dedup']['near']['rows_dropped']:,}",
                ]
            )
            + " |"
        )
    print(
        "\npass 1 = read + normalise + filters + MinHash signatures, in the worker pool; the per-row CPU"
        "\ncolumns add up the workers' time. Planted: 5% exact and 5% near duplicates."
    )


if __name__ == "__main__":
    main()
