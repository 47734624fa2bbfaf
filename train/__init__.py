"""curate.train: LoRA fine-tuning on a scan's (or apply's) clean set, with provenance, and the
checks of what the training did.

Installed as `curate.train` (setuptools `package-dir`), so a user's own `train.py` never shadows
it. Heavy imports (torch, transformers, peft) happen inside the functions.

    from curate.train import train, check, load_config
    manifest = train("final/", "path/to/model", "adapter/", load_config("train.yaml"))
    report = check("adapter/")
"""

from __future__ import annotations

from typing import Any


def train(*args: Any, **kwargs: Any) -> dict[str, Any]:
    from curate.train.trainer import train as run

    return run(*args, **kwargs)


def check(*args: Any, **kwargs: Any) -> dict[str, Any]:
    from curate.train.checks import check as run

    return run(*args, **kwargs)


def load_config(*args: Any, **kwargs: Any):
    from curate.train.config import load_config as load

    return load(*args, **kwargs)


__all__ = ["check", "load_config", "train"]
