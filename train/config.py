"""Training settings: defaults that work for a small LoRA run, overridable from a YAML or JSON file
(`--config`) and a few command-line flags. Unknown keys are an error, not a silent no-op."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curate.errors import UsageError


@dataclass
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] | None = None  # None: chosen by architecture (train/models.py)


@dataclass
class TrainConfig:
    method: str = "auto"  # auto (dpo for preference pairs, kto for thumbs-up/down labels, else sft), sft, dpo, kto
    epochs: float = 1.0
    batch_size: int = 8
    grad_accum: int = 1
    learning_rate: float = 2e-4
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_length: int = 512  # tokens per example; longer ones are cut from the left of the prompt
    val_fraction: float = 0.05  # held out for validation loss (at least 1 row when there are 10+)
    eval_every: int = 50  # steps; also evaluated at the end
    save_every: int = 50  # steps between checkpoints (resume picks the latest)
    seed: int = 0
    dpo_beta: float = 0.1  # DPO's and KTO's beta
    qlora: str = "auto"  # auto (on when CUDA and bitsandbytes are there), on, off
    max_steps: int | None = None  # stop early, for smoke runs
    lora: LoraSettings = field(default_factory=LoraSettings)
    #: Any other setting of TRL's config class for the method (SFTConfig, DPOConfig, KTOConfig):
    #: gradient_checkpointing, packing, report_to, bf16, ... Checked against the class when training.
    trl: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _apply(obj: Any, values: dict[str, Any], where: str) -> None:
    names = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in values.items():
        if key not in names:
            raise UsageError(f"{where}: unknown setting {key!r}; valid: {', '.join(sorted(names))}")
        current = getattr(obj, key)
        if isinstance(current, dict):
            if not isinstance(value, dict):
                raise UsageError(f"{where}: {key} must be a mapping")
            setattr(obj, key, dict(value))
        elif dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise UsageError(f"{where}: {key} must be a mapping")
            _apply(current, value, f"{where}: {key}")
        else:
            setattr(obj, key, value)


def load_config(path: str | Path | None, **overrides: Any) -> TrainConfig:
    config = TrainConfig()
    if path is not None:
        import yaml

        path = Path(path)
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise UsageError(f"cannot read training config {path}: {exc}") from None
        if not isinstance(values, dict):
            raise UsageError(f"{path}: a training config is a mapping of settings")
        _apply(config, values, str(path))
    _apply(config, {k: v for k, v in overrides.items() if v is not None}, "command line")
    if config.method not in {"auto", "sft", "dpo", "kto"}:
        raise UsageError(f"method must be auto, sft, dpo or kto (got {config.method!r})")
    if config.trl.get("push_to_hub"):
        raise UsageError("trl: push_to_hub is refused: curate trains offline and keeps the adapter beside its data")
    if config.qlora not in {"auto", "on", "off"}:
        raise UsageError(f"qlora must be auto, on or off (got {config.qlora!r})")
    if config.batch_size < 1 or config.grad_accum < 1 or config.epochs <= 0:
        raise UsageError("batch_size and grad_accum must be >= 1 and epochs > 0")
    if not isinstance(config.warmup_ratio, (int, float)) or not 0 <= config.warmup_ratio < 1:
        raise UsageError(f"warmup_ratio is a share of the steps, in [0, 1) (got {config.warmup_ratio!r})")
    return config
