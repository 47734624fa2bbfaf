"""The Ray engine: the same scan, with its per-row work on a Ray cluster through Ray Data.

`curate scan --engine ray [--address ray://head:10001]`, or `curate.scan(..., engine="ray")`.

- Pass one (parse, normalise, filters, MinHash signatures) runs as Ray Data `map_batches`
  tasks over the batches the local engine would make. The driver reads the sources, so the
  workers need no access to the files; it sends a window of batches at a time, so its memory
  stays bounded, and gets the results back in order.
- Embedding runs as `map_batches` on a pool of actors that each load the model once: one GPU
  each when the cluster has GPUs, else CPU actors. The driver's embedding cache still answers
  first, so a re-scan sends only new texts.
- Dedup and detection run on the driver over the gathered signatures and vectors, exactly as
  in the local engine, so both engines give the same verdicts.

Needs `pip install 'curate[ray]'`. Without `--address`, Ray starts a local cluster on this
machine (or joins the one `RAY_ADDRESS` names).
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Iterator

import numpy as np

from curate.errors import UsageError

#: Pass-one batches per Ray Data job: enough to keep every worker busy, few enough that the
#: driver holds only a window of the input.
WINDOW = 32
#: Texts per embedding job (the actors load the model once per job).
EMBED_JOB = 262_144
#: Fewer texts than this are embedded on the driver: starting a job costs more than they do
#: (trigger mining embeds a few prompts at a time with the trigger taken out).
LOCAL_BELOW = 2048


#: Seconds to wait for a named head's port to answer before saying it cannot be reached.
CONNECT_TIMEOUT = 5.0


def _check_reachable(address: str | None) -> None:
    """`ray.init` waits minutes on a head that does not answer (it retries the GCS); ask its port
    first, so a wrong `--address` is a clear error at once. "auto", "local" and no address at all
    are Ray's own to resolve."""
    address = address or os.environ.get("RAY_ADDRESS")
    if not address or address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"Ray address {address!r}: use host:port or ray://host:port")
    import socket

    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as exc:
        raise UsageError(f"cannot reach a Ray cluster at {address}: {exc.strerror or exc}") from None


def init(address: str | None = None):
    """Connect to (or start) the cluster, quietly; returns the `ray` module."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise UsageError("the Ray engine needs Ray Data: pip install 'curate[ray]'") from exc
    # Ray Data logs each job at INFO; a scan prints its own summary.
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    logging.getLogger("ray").setLevel(logging.ERROR)
    if not ray.is_initialized():
        _check_reachable(address)
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        try:
            ray.init(
                address=address,
                ignore_reinit_error=True,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise UsageError(f"cannot reach a Ray cluster at {address or 'a new local one'}: {exc}") from exc
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # results come back in row order
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    return ray


def _process(batch: dict[str, np.ndarray], normaliser, rules) -> dict[str, np.ndarray]:
    from curate.batch import process_batch

    out = []
    for blob in batch["items"]:
        result = process_batch(pickle.loads(blob), normaliser, rules)  # noqa: S301 - our own batches
        out.append(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
    return {"result": np.asarray(out, dtype=object)}


def run_batches(batches: Iterator[list], normaliser, rules, address: str | None = None) -> Iterator:
    """The local engine's `_run_batches`, on Ray: BatchResults in input order."""
    ray = init(address)
    window: list[list] = []

    def flush() -> Iterator:
        ds = ray.data.from_items([{"items": pickle.dumps(b, protocol=pickle.HIGHEST_PROTOCOL)} for b in window])
        ds = ds.map_batches(
            _process, batch_size=1, batch_format="numpy", fn_kwargs={"normaliser": normaliser, "rules": rules}
        )
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for blob in batch["result"]:
                yield pickle.loads(blob)  # noqa: S301 - our own results

    for batch in batches:
        window.append(batch)
        if len(window) >= WINDOW:
            yield from flush()
            window = []
    if window:
        yield from flush()


class _EmbedWorker:
    """A Ray actor holding one embedder."""

    def __init__(self, spec: str, head: int | None = None):
        from curate.embed import make_embedder

        self.embedder = make_embedder(spec).with_head(head)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = self.embedder.encode([str(t) for t in batch["text"]])
        return {"vector": vectors.astype(np.float32)}


class RayEmbedder:
    """An embedder whose `encode` runs on the cluster's actors; the key is the model's, so the
    cache is shared with local scans."""

    def __init__(self, local, spec: str, address: str | None = None, batch_size: int = 256):
        self.local, self.spec, self.address, self.batch_size = local, spec, address, batch_size
        self.dim = local.dim
        self.semantic = getattr(local, "semantic", True)

    @property
    def key(self) -> str:
        return self.local.key

    def encode(self, texts: list[str]) -> np.ndarray:
        if len(texts) < LOCAL_BELOW:
            return self.local.encode(texts)
        ray = init(self.address)
        gpus = int(ray.cluster_resources().get("GPU", 0))
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        workers = gpus or max(1, min(cpus, len(texts) // self.batch_size or 1))
        ds = ray.data.from_items([{"text": t} for t in texts])
        # The actors read the same head of each text as the driver's embedder (the cache key says which).
        head = getattr(self.local, "head", None)
        ds = ds.map_batches(
            _EmbedWorker,
            fn_constructor_args=(self.spec, head),
            batch_size=self.batch_size,
            batch_format="numpy",
            concurrency=workers,
            num_gpus=1 if gpus else 0,
        )
        parts = [batch["vector"] for batch in ds.iter_batches(batch_size=None, batch_format="numpy")]
        return np.concatenate(parts).astype(np.float32) if parts else np.empty((0, self.dim), np.float32)
