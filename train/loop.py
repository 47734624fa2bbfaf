"""LoRA training: supervised (loss on response tokens) or DPO (preference pairs), with a validation
split, checkpoints, resume, and a provenance manifest written last.

Why a loop of our own rather than transformers' Trainer and TRL's DPOTrainer: one short loop
serves both methods with the same gate, checkpoints and manifest; resume restores the exact data
order and RNG state; and DPO's reference model is the base model with the adapter switched off
(peft's `disable_adapter()`), so no second copy of the weights is held. The DPO loss is the
paper's sigmoid loss (Rafailov et al., 2023).

Work happens in `.<out>.partial/` beside the output: checkpoints every `save_every` steps, the
latest one resumed on the next run with the same output. The finished adapter is staged there and
renamed into place.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from curate.errors import CurateError, UsageError
from curate.train.config import TrainConfig
from curate.train.data import TrainingSet
from curate.train.encode import collate, encode_pair, encode_record
from curate.train.models import (
    BaseModel,
    can_quantize,
    device,
    load_model,
    load_tokenizer,
    model_hash,
    target_modules,
)

STATE = "trainer_state.pt"


def _seed(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in ("curate", "torch", "transformers", "peft", "gguf", "bitsandbytes", "accelerate"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def _split(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(n * fraction)) if n >= 10 and fraction > 0 else 0
    return sorted(order[n_val:]), sorted(order[:n_val])


def _sequence_logp(model: Any, batch: dict[str, Any]) -> Any:
    """Sum of log-probabilities of the labelled tokens, per sequence."""
    import torch

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    mask = labels != -100
    logp = torch.log_softmax(logits.float(), dim=-1)
    picked = torch.gather(logp, 2, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(-1)


class Trainer:
    def __init__(
        self,
        data: TrainingSet,
        base: BaseModel,
        out: Path,
        config: TrainConfig,
        progress: Callable[[dict[str, Any]], None] | None = None,
    ):
        self.data, self.base, self.out, self.config, self.progress = data, base, Path(out), config, progress
        self.work = self.out.parent / f".{self.out.name}.partial"
        if config.method == "dpo" and not data.preference:
            raise UsageError("method dpo needs preference pairs (prompt, chosen, rejected) in every row")
        self.method = "dpo" if config.method == "dpo" or (config.method == "auto" and data.preference) else "sft"

    # -- setup ---------------------------------------------------------------------------------

    def _encode(self, tokenizer: Any) -> tuple[list[Any], int]:
        examples, dropped = [], 0
        for record in self.data.records:
            enc = (encode_pair if self.method == "dpo" else encode_record)(tokenizer, record, self.config.max_length)
            if enc is None:
                dropped += 1
            else:
                examples.append(enc)
        return examples, dropped

    def _model(self):
        from peft import LoraConfig, get_peft_model

        quantize = self.config.qlora == "on" or (self.config.qlora == "auto" and can_quantize())
        model = load_model(self.base, quantize_4bit=quantize)
        if quantize:
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model)
        lora = self.config.lora
        peft_config = LoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            bias="none",
            target_modules=target_modules(model, lora.target_modules),
            task_type="CAUSAL_LM",
        )
        return get_peft_model(model, peft_config), quantize

    # -- the loop ------------------------------------------------------------------------------

    def _batches(self, examples: list[Any], indices: list[int], epoch: int) -> list[list[Any]]:
        order = list(indices)
        random.Random(self.config.seed * 1_000_003 + epoch).shuffle(order)
        size = self.config.batch_size
        return [[examples[i] for i in order[k : k + size]] for k in range(0, len(order), size)]

    def _to(self, batch: dict[str, Any], on: str) -> dict[str, Any]:
        return {k: v.to(on) for k, v in batch.items()}

    def _loss(self, model: Any, group: list[Any], pad: int, on: str) -> tuple[Any, dict[str, float]]:
        import torch
        import torch.nn.functional as F

        if self.method == "sft":
            batch = self._to(collate(group, pad), on)
            out = model(**batch)
            return out.loss, {"tokens": float((batch["labels"] != -100).sum())}
        chosen = self._to(collate([c for c, _ in group], pad), on)
        rejected = self._to(collate([r for _, r in group], pad), on)
        policy_c, policy_r = _sequence_logp(model, chosen), _sequence_logp(model, rejected)
        with torch.no_grad(), model.disable_adapter():
            ref_c, ref_r = _sequence_logp(model, chosen), _sequence_logp(model, rejected)
        margin = self.config.dpo_beta * ((policy_c - ref_c) - (policy_r - ref_r))
        loss = -F.logsigmoid(margin).mean()
        return loss, {"reward_accuracy": float((margin > 0).float().mean()), "tokens": float(len(group))}

    def _evaluate(self, model: Any, examples: list[Any], val: list[int], pad: int, on: str) -> dict[str, float] | None:
        import torch

        if not val:
            return None
        model.eval()
        total, weight, accuracy = 0.0, 0.0, 0.0
        with torch.no_grad():
            size = self.config.batch_size
            for k in range(0, len(val), size):
                group = [examples[i] for i in val[k : k + size]]
                loss, info = self._loss(model, group, pad, on)
                w = info["tokens"]
                total += float(loss) * w
                weight += w
                accuracy += info.get("reward_accuracy", 0.0) * len(group)
        model.train()
        result = {"loss": round(total / max(weight, 1e-9), 5)}
        if self.method == "dpo":
            result["reward_accuracy"] = round(accuracy / len(val), 4)
        return result

    def _checkpoint(self, model: Any, optimizer: Any, scheduler: Any, step: int, history: dict[str, Any]) -> None:
        import torch

        target = self.work / "checkpoints" / f"step-{step:07d}"
        tmp = Path(tempfile.mkdtemp(prefix=".ckpt-", dir=self.work))
        model.save_pretrained(tmp)
        torch.save(
            {
                "step": step,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "history": history,
                "torch_rng": torch.get_rng_state(),
                "python_rng": random.getstate(),
                "fingerprint": self._fingerprint,
            },
            tmp / STATE,
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, target)
        for old in sorted(target.parent.glob("step-*"))[:-2]:  # keep the last two
            shutil.rmtree(old, ignore_errors=True)

    def _latest(self) -> Path | None:
        found = sorted((self.work / "checkpoints").glob("step-*")) if (self.work / "checkpoints").exists() else []
        for path in reversed(found):
            if (path / STATE).exists():
                return path
        return None

    def run(self, resume: bool = True) -> dict[str, Any]:
        import torch
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        started = time.perf_counter()
        config = self.config
        _seed(config.seed)
        on = device()
        tokenizer = load_tokenizer(self.base)
        examples, dropped = self._encode(tokenizer)
        if len(examples) < 1:
            raise UsageError("nothing to train on: no row has a response within max_length")
        train_idx, val_idx = _split(len(examples), config.val_fraction, config.seed)
        self._fingerprint = {
            "data": self.data.provenance["data"]["sha256"],
            "base": model_hash(self.base),
            "config": config.to_dict(),
            "method": self.method,
        }
        model, quantized = self._model()
        model.train()
        steps_per_epoch = math.ceil(len(train_idx) / config.batch_size / config.grad_accum)
        total = max(1, math.ceil(steps_per_epoch * config.epochs))
        if config.max_steps:
            total = min(total, config.max_steps)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
        warmup = int(total * config.warmup_ratio)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup)),
        )
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        history: dict[str, Any] = {"train_loss": [], "val": []}
        step = 0
        self.work.mkdir(parents=True, exist_ok=True)
        latest = self._latest() if resume else None
        resumed_from = None
        if latest is not None:
            state = torch.load(latest / STATE, weights_only=False)
            if state.get("fingerprint") != self._fingerprint:
                raise CurateError(
                    f"{self.work} holds checkpoints of a different run (data, base model or config "
                    "changed); delete it or choose another --out"
                )
            set_peft_model_state_dict(model, load_file(latest / "adapter_model.safetensors"))
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            history, step = state["history"], state["step"]
            torch.set_rng_state(state["torch_rng"])
            random.setstate(state["python_rng"])
            resumed_from = step
        elif not resume and self.work.exists():
            shutil.rmtree(self.work / "checkpoints", ignore_errors=True)
        if step == 0:
            first = self._evaluate(model, examples, val_idx, pad, on)
            if first:
                history["val"].append({"step": 0, **first})
        step_seconds: list[float] = []
        running, count = 0.0, 0
        while step < total:
            epoch, position = divmod(step, steps_per_epoch)
            batches = self._batches(examples, train_idx, epoch)
            groups = [batches[k : k + config.grad_accum] for k in range(0, len(batches), config.grad_accum)]
            for group in groups[position:]:
                if step >= total:
                    break
                t = time.perf_counter()
                optimizer.zero_grad(set_to_none=True)
                loss_sum = 0.0
                for micro in group:
                    loss, _ = self._loss(model, micro, pad, on)
                    (loss / len(group)).backward()
                    loss_sum += float(loss.detach()) / len(group)
                if not math.isfinite(loss_sum):
                    raise CurateError(f"training diverged at step {step + 1} (loss {loss_sum}); lower learning_rate")
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                step += 1
                step_seconds.append(time.perf_counter() - t)
                running += loss_sum
                count += 1
                evaluated = None
                if step % config.eval_every == 0 or step == total:
                    history["train_loss"].append({"step": step, "loss": round(running / count, 5)})
                    running, count = 0.0, 0
                    evaluated = self._evaluate(model, examples, val_idx, pad, on)
                    if evaluated:
                        history["val"].append({"step": step, **evaluated})
                if self.progress:
                    self.progress(
                        {
                            "step": step,
                            "total": total,
                            "loss": loss_sum,
                            "val": evaluated,
                            "seconds_per_step": step_seconds[-1],
                        }
                    )
                if step % config.save_every == 0 and step < total:
                    self._checkpoint(model, optimizer, scheduler, step, history)
        metrics = {
            "method": self.method,
            "examples": len(examples),
            "train_examples": len(train_idx),
            "val_examples": len(val_idx),
            "dropped_examples": dropped,
            "skipped_rows": len(self.data.skipped),
            "steps": total,
            "epochs": config.epochs,
            "resumed_from_step": resumed_from,
            "seconds": round(time.perf_counter() - started, 2),
            "seconds_per_step": round(sum(step_seconds) / len(step_seconds), 3) if step_seconds else None,
            "train_loss": history["train_loss"],
            "val": history["val"],
            "final_val_loss": history["val"][-1]["loss"] if history["val"] else None,
            "initial_val_loss": history["val"][0]["loss"] if history["val"] else None,
            "device": on,
            "qlora": quantized,
        }
        return self._finish(model, tokenizer, metrics)

    def _finish(self, model: Any, tokenizer: Any, metrics: dict[str, Any]) -> dict[str, Any]:
        from curate.write import _replace, _sha256

        stage = Path(tempfile.mkdtemp(prefix=".adapter-", dir=self.work))
        model.save_pretrained(stage)
        tokenizer.save_pretrained(stage / "tokenizer")
        files = sorted(p for p in stage.rglob("*") if p.is_file())
        manifest = {
            "schema_version": 1,
            "tool": "curate",
            "kind": "adapter",
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "base_model": {
                "path": str(self.base.path.resolve()),
                "gguf_file": self.base.gguf_file,
                "sha256": self._fingerprint["base"],
            },
            "data": self.data.provenance,
            "config": self.config.to_dict(),
            "seed": self.config.seed,
            "method": self.method,
            "versions": _versions(),
            "metrics": metrics,
            "outputs": {str(p.relative_to(stage)): {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in files},
        }
        (stage / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        if self.out.exists() and not (self.out / "manifest.json").exists() and any(self.out.iterdir()):
            raise UsageError(f"refusing to replace {self.out}: it exists and is not a curate adapter folder")
        _replace(stage, self.out)
        shutil.rmtree(self.work, ignore_errors=True)
        return manifest


def train(
    source: str | Path,
    base_model: str | Path,
    out: str | Path,
    config: TrainConfig | None = None,
    *,
    allow_unscanned: bool = False,
    resume: bool = True,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train a LoRA adapter on a scan's or apply's clean set; returns the adapter's manifest."""
    from curate.train.config import TrainConfig as Config
    from curate.train.data import open_training_set
    from curate.train.models import resolve

    base = resolve(base_model)
    data = open_training_set(source, allow_unscanned=allow_unscanned)
    return Trainer(data, base, Path(out), config or Config(), progress).run(resume=resume)
