"""A cheap stand-in for a sentence-transformers model, fitted to it on the corpus at hand.

Embedding every response with the full model is most of a scan's time on CPU (100k responses:
about 5 minutes for MiniLM on 2 cores). What detectors ask of a response vector is coarse: does
this answer resemble that one (the same label, a refusal, the same planted target), does it
address its prompt. A static embedding gets most of that for almost nothing:

1. **Token table** (once per model, cached under `$CURATE_HOME/static/`): each word piece of the
   vocabulary run through the model alone, between its special tokens, mean-pooled. MiniLM's
   30k pieces take about 12 s on 2 cores. This is Model2Vec's distillation without the PCA.
2. **Static vector** of a text: the mean of its word pieces' rows, over the same head of
   `response_tokens` pieces the full model would read. Tokenising is most of the cost.
3. **Fitted map**: a ridge regression from static vectors to the full model's vectors, fitted at
   scan time on a seeded sample of the corpus's own texts (4,096 by default) that the full model
   embeds (through the cache). It puts the static vectors back into the model's space, so
   cosines with prompts (embedded by the full model) and every threshold tuned on the full model
   keep their meaning.

`benchmarks/bench_distil.py` measures it: on held-out distinct answers (synthetic, BackdoorLLM,
the clean pool) the mapped vectors have cosine 0.73-0.80 to the full model's, and rank-correlate
0.65-0.74 with it on answer-answer similarity and 0.63-0.80 on prompt-answer relevance; the
plain static mean, without the map, reaches 0.28-0.42 on each. About 20x the full model's speed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

#: Texts the full model embeds to fit the map.
SAMPLE = 4096
#: Most recurring texts the full model embeds exactly.
REPEATED = 8192
#: Ridge strength, relative to the mean diagonal of the Gram matrix.
RIDGE = 1e-2
#: Characters of a text handed to the tokenizer per word piece of the head: enough for ordinary
#: text, and a field of megabytes costs no more than a long answer.
CHARS_PER_PIECE = 10


def token_table(embedder, home: Path) -> np.ndarray:
    """(vocabulary, dim) float32: each word piece through the model alone, mean-pooled. Cached
    per model file digest and dtype."""
    path = home / "static" / f"{embedder._digest}-{embedder.dtype}.npy"
    if path.exists():
        try:
            return np.load(path).astype(np.float32)
        except (OSError, ValueError):
            pass  # a torn or foreign file: build it again
    import contextlib

    import torch

    model = embedder.model
    tokenizer = model.tokenizer
    transformer = model[0].auto_model
    size = int(transformer.get_input_embeddings().num_embeddings)
    # The special tokens the model sees around a text: a probe with and without them.
    bare = tokenizer("word", add_special_tokens=False)["input_ids"]
    full = tokenizer("word")["input_ids"]
    at = next((i for i in range(len(full) - len(bare) + 1) if full[i : i + len(bare)] == bare), 0)
    before, after = full[:at], full[at + len(bare) :]
    device = embedder.device
    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16)
        if device == "cpu" and embedder.dtype == "bf16"
        else contextlib.nullcontext()
    )
    out = np.empty((size, embedder.dim), np.float32)
    with autocast, torch.inference_mode():
        for lo in range(0, size, 2048):
            ids = torch.arange(lo, min(size, lo + 2048)).unsqueeze(1)
            batch = torch.cat(
                [
                    torch.tensor([before] * len(ids), dtype=torch.long).reshape(len(ids), -1),
                    ids,
                    torch.tensor([after] * len(ids), dtype=torch.long).reshape(len(ids), -1),
                ],
                1,
            ).to(device)
            hidden = transformer(input_ids=batch, attention_mask=torch.ones_like(batch)).last_hidden_state
            out[lo : lo + len(ids)] = hidden.float().mean(dim=1).cpu().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{id(out)}.npy")
    half = out.astype(np.float16)
    np.save(tmp, half)
    tmp.replace(path)
    return half.astype(np.float32)  # what a later scan reads back: the same vectors either way


class DistilledEmbedder:
    """`embed(texts)` for the texts one model reads a head of, at the cost of tokenising them.

    `full` is the SentenceTransformerEmbedder view (with its head) it stands in for, and
    `full_embed` embeds through the scan's cache with it. `prepare(texts)` decides, once, which
    texts the full model embeds exactly and fits the map on them:

    - every text that recurs (up to `REPEATED` of the most frequent): the labels of a task, a
      planted target repeated 50 times, a stock refusal. They are few distinct texts, and they
      are what concentration, disagreement and trigger mining compare everything else with;
    - a seeded sample of `sample` of the texts that occur once.

    Every other text gets its static vector through the map. A corpus with no more distinct texts
    than that is embedded by the full model throughout (the cost would be the same).
    """

    def __init__(
        self,
        full,
        full_embed: Callable[[list[str]], np.ndarray],
        home: Path,
        *,
        sample: int | None = None,
        seed: int = 0,
    ):
        self.full = full
        self.full_embed = full_embed
        self.home = home
        self.sample = SAMPLE if sample is None else sample
        self.seed = seed
        self.chunk = 65536
        self.weights: np.ndarray | None = None
        self.exact_only = False
        self.known: dict[str, np.ndarray] = {}
        self._table: np.ndarray | None = None

    @property
    def dim(self) -> int:
        return self.full.dim

    @property
    def table(self) -> np.ndarray:
        if self._table is None:
            self._table = token_table(self.full, self.home)
        return self._table

    def static(self, texts: Sequence[str]) -> np.ndarray:
        """Mean word-piece rows over each text's head (zeros for a text with no pieces)."""
        head = self.full.head or self.full.max_length
        out = np.zeros((len(texts), self.table.shape[1]), np.float32)
        if not len(texts):
            return out
        limit = head * CHARS_PER_PIECE
        ids = self.full.model.tokenizer(
            [t[:limit] for t in texts], add_special_tokens=False, truncation=True, max_length=head
        )["input_ids"]
        lengths = np.fromiter((len(x) for x in ids), np.int64, len(ids))
        flat = np.fromiter((i for x in ids for i in x), np.int64, int(lengths.sum()))
        if flat.size:
            from scipy.sparse import csr_matrix

            # (texts x vocabulary) with 1/length per piece, times the table: the means without
            # materialising a row per piece.
            weights = np.repeat(1.0 / np.maximum(lengths, 1), lengths).astype(np.float32)
            means = csr_matrix(
                (weights, np.minimum(flat, len(self.table) - 1), np.r_[0, np.cumsum(lengths)]),
                shape=(len(texts), len(self.table)),
            )
            out[:] = means @ self.table
        return out

    def prepare(self, texts: Sequence[str]) -> None:
        """Choose the texts the full model embeds and fit the map on them (once)."""
        if self.weights is not None or self.exact_only:
            return
        counts = Counter(texts)
        # Most frequent first; a stable sort keeps first occurrence among equals (deterministic).
        repeated = sorted((t for t, c in counts.items() if c > 1), key=lambda t: -counts[t])[:REPEATED]
        once = [t for t, c in counts.items() if c == 1]
        if len(once) <= self.sample:
            self.exact_only = True
            return
        rng = np.random.default_rng(self.seed)
        sampled = [once[i] for i in np.sort(rng.choice(len(once), size=self.sample, replace=False)).tolist()]
        exact = repeated + sampled
        Y = np.asarray(self.full_embed(exact), np.float32)
        self.known = dict(zip(exact, Y, strict=False))
        X = self._design(self.static(exact))
        gram = X.T @ X
        ridge = RIDGE * max(float(np.trace(gram)) / X.shape[1], 1e-6)
        self.weights = np.linalg.solve(gram + ridge * np.eye(X.shape[1]), X.T @ Y).astype(np.float32)

    @staticmethod
    def _design(S: np.ndarray) -> np.ndarray:
        return np.hstack([S, np.ones((len(S), 1), np.float32)])

    def encode(self, texts: list[str]) -> np.ndarray:
        if self.weights is None and not self.exact_only:
            self.prepare(texts)
        if self.exact_only:
            return self.full_embed(texts)
        Y = self._design(self.static(texts)) @ self.weights
        Y /= np.maximum(np.linalg.norm(Y, axis=1, keepdims=True), 1e-12)
        for i, text in enumerate(texts):
            vector = self.known.get(text)
            if vector is not None:
                Y[i] = vector
        return Y

    __call__ = encode
