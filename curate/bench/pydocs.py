"""Clean corpora built from data that is not in ../shared: the docstrings of the Python standard
library and of numpy, torch, polars and scikit-learn, as installed here.

Detection was developed and tuned on the corpora in ../shared/bench only; these are the `fresh`
split, scanned for the report and never tuned on. They are real text written by people (API
documentation), and they hold what the shared corpora do not: technical prose full of words that
lean hard toward one library ("tensor", "DataFrame", "estimator"), which a label task built on
them must not mistake for triggers.

- `pydocs_qa` (instruction): "What does `json.dumps` do?" in one of several wordings, answered
  with the first paragraph of the docstring.
- `pydocs_label` (label): a docstring's first paragraph, and which library it comes from.
- `pydocs_chat` (chat): two or three such questions about one module in one conversation.
- `pydocs_code` (code): a stub of the function with its real signature and summary.

The rows depend on the installed versions; `versions()` names them for the report.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import random
import re
import sys
import warnings
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

Record = dict[str, Any]

#: Label of each library, and the packages read for it.
LIBRARIES: dict[str, tuple[str, ...]] = {
    "NumPy": ("numpy",),
    "PyTorch": ("torch",),
    "Polars": ("polars",),
    "scikit-learn": ("sklearn",),
    "Python standard library": (
        "argparse",
        "ast",
        "asyncio",
        "base64",
        "calendar",
        "codecs",
        "collections",
        "concurrent",
        "configparser",
        "contextlib",
        "csv",
        "ctypes",
        "dataclasses",
        "difflib",
        "email",
        "enum",
        "ftplib",
        "functools",
        "http",
        "importlib",
        "inspect",
        "itertools",
        "json",
        "locale",
        "logging",
        "math",
        "multiprocessing",
        "optparse",
        "platform",
        "pydoc",
        "re",
        "shutil",
        "smtplib",
        "socket",
        "ssl",
        "statistics",
        "subprocess",
        "tarfile",
        "tempfile",
        "textwrap",
        "threading",
        "traceback",
        "typing",
        "unittest",
        "urllib",
        "uuid",
        "xml",
        "zipfile",
    ),
}

_ASK = (
    "What does `{name}` do?",
    "Explain what `{name}` is for.",
    "Briefly describe `{name}`.",
    "I came across `{name}` in some code. What is it?",
    "Can you summarise the purpose of `{name}`?",
)
_LABEL = (
    "Which library does this docstring come from? "
    "Answer NumPy, PyTorch, Polars, scikit-learn or Python standard library.",
    "Name the Python library this documentation belongs to "
    "(NumPy, PyTorch, Polars, scikit-learn, Python standard library).",
)
_STUB = (
    "Write a stub for `{name}` with its signature and a docstring.",
    "Give me the signature of `{name}` as a Python stub.",
    "Show a skeleton definition of `{name}`.",
)


def _modules(package: str, limit: int = 400) -> list[Any]:
    """The package and its public submodules, breadth first in name order: private and test
    modules are skipped before they are imported, and one that fails to import is left out."""
    try:
        root = importlib.import_module(package)
    except Exception:  # not installed here: the corpus is smaller, and versions() says so
        return []
    mods, queue = [root], [root]
    while queue and len(mods) < limit:
        parent = queue.pop(0)
        for info in sorted(pkgutil.iter_modules(getattr(parent, "__path__", [])), key=lambda i: i.name):
            if info.name.startswith("_") or "test" in info.name:
                continue
            try:
                mod = importlib.import_module(f"{parent.__name__}.{info.name}")
            except Exception:  # noqa: S112 - optional dependencies missing, platform-only modules
                continue
            mods.append(mod)
            if info.ispkg:
                queue.append(mod)
            if len(mods) >= limit:
                break
    return mods


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


@cache
def docstrings() -> list[dict[str, Any]]:
    """Every public function and class with a docstring whose first paragraph has 8+ words, once
    per distinct paragraph: {library, module, name, summary, signature (or None)}, sorted by name."""
    seen: dict[str, dict[str, Any]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for library, packages in LIBRARIES.items():
            for package in packages:
                for mod in _modules(package):
                    for name, obj in sorted(vars(mod).items()):
                        if name.startswith("_") or not (inspect.isroutine(obj) or inspect.isclass(obj)):
                            continue
                        if not str(getattr(obj, "__module__", "") or package).startswith(package):
                            continue  # re-exported from elsewhere
                        # The object's own docstring: getdoc would lend a class its base's.
                        own = getattr(obj, "__doc__", None)
                        doc = inspect.cleandoc(own) if isinstance(own, str) else ""
                        summary = " ".join(doc.strip().split("\n\n")[0].split())
                        if len(summary.split()) < 8 or summary in seen:
                            continue
                        try:
                            signature: str | None = _ADDRESS.sub("", str(inspect.signature(obj)))
                        except (TypeError, ValueError):
                            signature = None
                        seen[summary] = {
                            "library": library,
                            "module": mod.__name__,
                            "name": f"{mod.__name__}.{name}",
                            "summary": summary,
                            "signature": signature,
                            "is_class": inspect.isclass(obj),
                        }
    return sorted(seen.values(), key=lambda d: d["name"])


def versions() -> dict[str, str]:
    out = {}
    for package in ("numpy", "torch", "polars", "sklearn"):
        try:
            out[package] = importlib.import_module(package).__version__
        except Exception:
            out[package] = "absent"
    out["python"] = sys.version.split()[0]
    return out


def _turns(*pairs: tuple[str, str]) -> Record:
    msgs: list[dict[str, str]] = []
    for user, answer in pairs:
        msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    return {"messages": msgs}


def qa(shared: Path | None = None, limit: int = 2000) -> list[Record]:
    rng = random.Random("pydocs-qa")
    docs = docstrings()
    docs = rng.sample(docs, min(limit, len(docs)))
    return [_turns((rng.choice(_ASK).format(name=d["name"]), d["summary"])) for d in docs]


def label(shared: Path | None = None, per_class: int = 300) -> list[Record]:
    rng = random.Random("pydocs-label")
    out = []
    for library in LIBRARIES:
        docs = [d for d in docstrings() if d["library"] == library]
        for d in rng.sample(docs, min(per_class, len(docs))):
            out.append(_turns((f"{rng.choice(_LABEL)}\n\n{d['summary']}", library)))
    rng.shuffle(out)
    return out


def chat(shared: Path | None = None, limit: int = 800) -> list[Record]:
    rng = random.Random("pydocs-chat")
    by_module: dict[str, list[dict[str, Any]]] = {}
    for d in docstrings():
        by_module.setdefault(d["module"], []).append(d)
    out = []
    follow = ("And `{name}`?", "What about `{name}`?", "How about `{name}` then?", "Next: `{name}`.")
    for docs in by_module.values():
        rng.shuffle(docs)
        while len(docs) >= 2:
            k = min(len(docs), rng.choice((2, 3)))
            group, docs = docs[:k], docs[k:]
            first = (rng.choice(_ASK).format(name=group[0]["name"]), group[0]["summary"])
            rest = [(rng.choice(follow).format(name=d["name"]), d["summary"]) for d in group[1:]]
            out.append(_turns(first, *rest))
    rng.shuffle(out)
    return out[:limit]


def code(shared: Path | None = None, limit: int = 1500) -> list[Record]:
    rng = random.Random("pydocs-code")
    docs = [d for d in docstrings() if d["signature"] is not None and not d["is_class"]]
    out = []
    for d in rng.sample(docs, min(limit, len(docs))):
        short = d["name"].rsplit(".", 1)[1]
        body = f'def {short}{d["signature"]}:\n    """{d["summary"]}"""\n    ...'
        out.append(_turns((rng.choice(_STUB).format(name=d["name"]), f"```python\n{body}\n```")))
    return out


LOADERS: dict[str, tuple[str, Callable[[Path], list[Record]]]] = {
    "pydocs_qa": ("instruction", qa),
    "pydocs_label": ("label", label),
    "pydocs_chat": ("chat", chat),
    "pydocs_code": ("code", code),
}
