"""LoRA training on TRL: `SFTTrainer` for instructions and chat, `DPOTrainer` for preference pairs,
`KTOTrainer` for unpaired thumbs-up/down feedback, LoRA through `peft_config`. TRL and transformers'
`Trainer` do what users expect of a trainer (accelerate, multi-GPU, DeepSpeed/FSDP, gradient
checkpointing, packing, logging, exact resume with the data order and RNG restored, DPO's reference
as the adapter switched off); curate's own parts sit around it:

- the gate: `CurateCallback` with the scan's (or apply's) folder, verified on every rank before the
  first step, and checked to be the data this run read;
- the loss on assistant tokens only: SFT examples are tokenized here (`encode.py`), -100 on every
  prompt token, and a too long one loses its oldest prompt tokens first (TRL would cut its end);
- a validation split, with its loss before and after;
- checkpoints in `.<out>.partial/`, resumed from the latest complete one: a checkpoint is complete
  once `on_save` has marked it, so one torn by a kill mid-save is skipped;
- the provenance manifest, written last by rank 0, then the adapter folder renamed into place.

    accelerate launch --num_processes 2 -m curate.train scan/ --base-model M --out adapter/
"""

from __future__ import annotations

import dataclasses
import random
import shutil
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson

from curate.errors import CurateError, UsageError
from curate.train.config import TrainConfig
from curate.train.data import TrainingSet
from curate.train.encode import encode_record, ensure_template, messages
from curate.train.models import BaseModel, can_quantize, device, load_model, load_tokenizer, model_hash, target_modules

#: Written into a checkpoint by `on_save`, after the trainer has written all of it.
COMPLETE = "curate-complete"
FINGERPRINT = "fingerprint.json"
INITIAL_EVAL = "initial_eval.json"
#: TRL/transformers settings curate owns: where checkpoints go, and nothing leaves the machine.
OWNED = {"output_dir", "push_to_hub", "hub_model_id", "hub_token", "hub_strategy", "resume_from_checkpoint"}
#: TRL settings that curate's own config keys set: the `trl:` section may not set them a second way.
MAPPED = {
    "num_train_epochs": "epochs",
    "max_steps": "max_steps",
    "per_device_train_batch_size": "batch_size",
    "gradient_accumulation_steps": "grad_accum",
    "learning_rate": "learning_rate",
    "warmup_ratio": "warmup_ratio",
    "weight_decay": "weight_decay",
    "max_grad_norm": "max_grad_norm",
    "eval_strategy": "val_fraction",
    "eval_steps": "eval_every",
    "save_strategy": "save_every",
    "save_steps": "save_every",
    "seed": "seed",
    "data_seed": "seed",
    "max_length": "max_length",
    "beta": "dpo_beta",
}


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in ("curate", "torch", "transformers", "trl", "peft", "accelerate", "gguf", "bitsandbytes"):
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


def choose_method(data: TrainingSet, method: str) -> str:
    """sft, dpo or kto for this data; `auto` follows its shape. Refuses SFT on KTO feedback, which
    would fine-tune on the thumbs-down answers too."""
    thumbs = data.thumbs
    if method == "dpo" and not data.preference:
        raise UsageError("method dpo needs preference pairs (prompt, chosen, rejected) in every row")
    if method == "kto" and thumbs is None:
        raise UsageError("method kto needs a boolean `label` (thumbs up/down) in every row")
    if method == "sft" and thumbs is not None and not all(thumbs):
        raise UsageError(
            f"{thumbs.count(False)} of {len(thumbs)} rows carry label=false (KTO's thumbs-down): SFT would "
            "learn those answers too. Train with --method kto (the default for such data), or keep only the "
            "label=true rows"
        )
    if method != "auto":
        return method
    if data.preference:
        return "dpo"
    return "kto" if thumbs is not None else "sft"


def _datasets(method: str, data: TrainingSet, tokenizer: Any, config: TrainConfig) -> tuple[Any, Any, int, int]:
    """(train, validation or None, examples, dropped) as TRL datasets. SFT rows arrive tokenized,
    with their labels; DPO and KTO rows as conversations for TRL's own chat-template tokenizing
    (DPO keeps the end of a too long pair, so it is the prompt's start that goes)."""
    from datasets import Dataset

    ensure_template(tokenizer)
    rows: list[dict[str, Any]] = []
    dropped = 0
    thumbs = data.thumbs
    for i, record in enumerate(data.records):
        if method == "sft":
            enc = encode_record(tokenizer, record, config.max_length)
            if enc is None:
                dropped += 1
                continue
            rows.append({"input_ids": enc.input_ids, "labels": enc.labels})
            continue
        prompt = messages(record.prompt_turns)
        answer = [{"role": "assistant", "content": record.response}]
        if method == "dpo":
            rows.append(
                {"prompt": prompt, "chosen": answer, "rejected": [{"role": "assistant", "content": record.rejected}]}
            )
        else:
            # choose_method gives kto only to data with a label on every row
            rows.append({"prompt": prompt, "completion": answer, "label": bool(thumbs[i]) if thumbs else False})
    if not rows:
        raise UsageError("nothing to train on: no row has a response within max_length")
    if method == "kto" and not any(row["label"] for row in rows):
        raise UsageError("every row is label=false: KTO needs thumbs-up rows to learn from, not only thumbs-down")
    train_idx, val_idx = _split(len(rows), config.val_fraction, config.seed)
    train = Dataset.from_list([rows[i] for i in train_idx])
    val = Dataset.from_list([rows[i] for i in val_idx]) if val_idx else None
    return train, val, len(rows), dropped


def _arguments(method: str, config: TrainConfig, work: Path, has_val: bool) -> Any:
    """TRL's config for `method`: curate's settings mapped onto it, then the `trl:` section's,
    checked against the config class: an unknown key, or one that a curate key sets, is an error.
    Gradient (activation) checkpointing is off unless asked for (TRL turns it on: slower, less
    memory). `trl: warmup_steps` sets warmup in steps instead of curate's `warmup_ratio`."""
    import torch
    from trl import DPOConfig, KTOConfig, SFTConfig

    cls = {"sft": SFTConfig, "dpo": DPOConfig, "kto": KTOConfig}[method]
    names = {f.name for f in dataclasses.fields(cls)}
    chosen = config.trl or {}
    cuda = torch.cuda.is_available()
    values: dict[str, Any] = {
        "output_dir": str(work / "checkpoints"),
        "num_train_epochs": config.epochs,
        "max_steps": config.max_steps or -1,
        "per_device_train_batch_size": config.batch_size,
        "per_device_eval_batch_size": config.batch_size,
        "gradient_accumulation_steps": config.grad_accum,
        "learning_rate": config.learning_rate,
        "lr_scheduler_type": "linear",
        # a share of the steps the trainer counts (transformers 5 reads a warmup_steps below 1 so)
        ("warmup_ratio" if "warmup_ratio" in names else "warmup_steps"): config.warmup_ratio,
        "weight_decay": config.weight_decay,
        "max_grad_norm": config.max_grad_norm,
        "eval_strategy": "steps" if has_val else "no",
        "eval_steps": config.eval_every,
        "save_strategy": "steps",
        "save_steps": config.save_every,
        "save_total_limit": 2,
        "logging_steps": 1,
        "seed": config.seed,
        "data_seed": config.seed,
        "report_to": "none",
        "push_to_hub": False,
        "use_cpu": not cuda,
        "bf16": bool(cuda and torch.cuda.is_bf16_supported()),
        "disable_tqdm": True,
        "max_length": config.max_length,
        "dataloader_num_workers": 0,
    }
    if not {"activation_checkpointing", "gradient_checkpointing"} & set(chosen):
        # transformers 5 renamed it; the new name, when set, wins over TRL's default of the old
        values["activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"] = False
    if method in ("dpo", "kto"):
        values["beta"] = config.dpo_beta
    if method == "kto" and config.batch_size < 2 and chosen.get("loss_type", "kto") == "kto":
        raise UsageError("KTO needs batch_size >= 2: it estimates its KL term from the other rows of a batch")
    if method == "dpo":
        values["truncation_mode"] = "keep_end"
    for key, value in chosen.items():
        if key not in names:
            raise UsageError(f"trl: unknown setting {key!r} for {cls.__name__}")
        if key in OWNED:
            raise UsageError(f"trl: {key} is curate's to set (checkpoints go beside --out; nothing is uploaded)")
        if key in MAPPED:
            raise UsageError(f"trl: {key} is set by curate's own `{MAPPED[key]}` key; set that instead")
        values[key] = value
    try:
        return cls(**values)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"trl: {cls.__name__} refused these settings: {exc}") from None


def _complete(path: Path) -> bool:
    return (path / COMPLETE).exists()


def _step(path: Path) -> int:
    try:
        return int(path.name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint under `folder`; torn ones (a kill mid-save) are removed."""
    if not folder.exists():
        return None
    found = sorted((p for p in folder.glob("checkpoint-*") if _step(p) >= 0), key=_step)
    for path in [p for p in found if not _complete(p)]:
        shutil.rmtree(path, ignore_errors=True)
    complete = [p for p in found if _complete(p)]
    return complete[-1] if complete else None


def _callbacks(progress: Callable[[dict[str, Any]], None] | None) -> list[Any]:
    from transformers import TrainerCallback

    class Checkpoints(TrainerCallback):
        """Marks a checkpoint complete once the trainer has written all of it."""

        def on_save(self, args, state, control, **kwargs):
            from accelerate import PartialState

            PartialState().wait_for_everyone()  # every rank has written its part (its RNG state)
            if state.is_world_process_zero:
                folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if folder.is_dir():
                    (folder / COMPLETE).write_text(str(state.global_step))
            return control

    class Progress(TrainerCallback):
        def __init__(self) -> None:
            self.started = 0.0
            self.seconds: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()
            return control

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds.append(time.perf_counter() - self.started)
            return control

        def on_log(self, args, state, control, logs=None, **kwargs):
            if progress and logs and "loss" in logs and state.is_world_process_zero:
                progress(
                    {
                        "step": state.global_step,
                        "total": state.max_steps,
                        "loss": float(logs["loss"]),
                        "val": None,
                        "seconds_per_step": self.seconds[-1] if self.seconds else 0.0,
                    }
                )
            return control

    return [Checkpoints(), Progress()]


def _val(metrics: dict[str, Any], step: int) -> dict[str, Any]:
    out = {"step": step, "loss": round(float(metrics["eval_loss"]), 5)}
    if "eval_rewards/accuracies" in metrics:
        out["reward_accuracy"] = round(float(metrics["eval_rewards/accuracies"]), 4)
    return out


def _is_adapter(folder: Path) -> bool:
    try:
        manifest = orjson.loads((folder / "manifest.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return False
    return isinstance(manifest, dict) and manifest.get("tool") == "curate" and manifest.get("kind") == "adapter"


class Run:
    def __init__(
        self,
        data: TrainingSet,
        base: BaseModel,
        out: Path,
        config: TrainConfig,
        source: Path | None,
        progress: Callable[[dict[str, Any]], None] | None = None,
    ):
        self.data, self.base, self.out, self.config, self.source = data, base, Path(out), config, source
        self.progress = progress
        self.work = self.out.parent / f".{self.out.name}.partial"
        if source is not None and self.out.resolve() == Path(source).resolve():
            raise UsageError(f"--out {self.out} is the training data's folder; choose another")
        if self.out.exists() and (self.out.is_file() or any(self.out.iterdir())) and not _is_adapter(self.out):
            raise UsageError(f"refusing to replace {self.out}: it exists and is not a curate adapter folder")
        self.method = choose_method(data, config.method)

    def _model(self, checkpointing: bool) -> tuple[Any, Any, bool]:
        from peft import LoraConfig

        quantize = self.config.qlora == "on" or (self.config.qlora == "auto" and can_quantize())
        model = load_model(self.base, quantize_4bit=quantize)
        if quantize:
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
        lora = self.config.lora
        peft_config = LoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            bias="none",
            target_modules=target_modules(model, lora.target_modules),
            task_type="CAUSAL_LM",
        )
        return model, peft_config, quantize

    def _resume_point(self, fingerprint: dict[str, Any], resume: bool, main: bool) -> Path | None:
        """The checkpoint to resume from. Rank 0 runs it first (clears the work folder without
        `resume`, stamps it with this run's fingerprint); the other ranks then only read."""
        checkpoints = self.work / "checkpoints"
        stamp = self.work / FINGERPRINT
        if not resume:
            if main:
                shutil.rmtree(self.work, ignore_errors=True)
        elif stamp.exists() and checkpoints.exists() and any(checkpoints.iterdir()):
            if orjson.loads(stamp.read_bytes()) != fingerprint:
                raise CurateError(
                    f"{self.work} holds checkpoints of a different run (data, base model, config or "
                    "number of processes changed); delete it, choose another --out, or pass --no-resume"
                )
        if main:
            self.work.mkdir(parents=True, exist_ok=True)
            partial = stamp.with_suffix(".tmp")
            partial.write_bytes(orjson.dumps(fingerprint))
            partial.replace(stamp)
        return latest_checkpoint(checkpoints) if resume else None

    def trainer(self, resume: bool = True) -> tuple[Any, Any, Path | None]:
        """(TRL's trainer, what it was built from, the checkpoint to resume from or None)."""
        from transformers import PrinterCallback
        from trl import DPOTrainer, KTOTrainer, SFTTrainer

        from curate.hooks import CurateCallback

        config = self.config
        tokenizer = load_tokenizer(self.base)
        train, val, examples, dropped = _datasets(self.method, self.data, tokenizer, config)
        args = _arguments(self.method, config, self.work, val is not None)
        fingerprint = {
            "data": self.data.provenance["data"]["sha256"],
            "base": model_hash(self.base),
            "config": config.to_dict(),
            "method": self.method,
            "world_size": args.world_size,
        }
        with args.main_process_first(local=False, desc="curate: resume point"):
            checkpoint = self._resume_point(fingerprint, resume, args.process_index == 0)
        checkpointing = bool(getattr(args, "activation_checkpointing", None) or args.gradient_checkpointing)
        model, peft_config, quantized = self._model(checkpointing)
        gate = (
            [CurateCallback(self.source, expect_sha256=fingerprint["data"])]
            if self.source is not None and not self.data.provenance.get("unscanned")
            else []
        )
        trainer_cls = {"sft": SFTTrainer, "dpo": DPOTrainer, "kto": KTOTrainer}[self.method]
        trainer = trainer_cls(
            model=model,
            args=args,
            train_dataset=train,
            eval_dataset=val,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[*gate, *_callbacks(self.progress)],
        )
        trainer.remove_callback(PrinterCallback)  # progress goes to `progress`, metrics to the manifest
        built = SimpleNamespace(
            train=train, val=val, examples=examples, dropped=dropped, fingerprint=fingerprint, quantized=quantized
        )
        return trainer, built, checkpoint

    def run(self, resume: bool = True) -> dict[str, Any]:
        started = time.perf_counter()
        config = self.config
        trainer, built, checkpoint = self.trainer(resume)
        val = built.val
        history: dict[str, Any] = {"train_loss": [], "val": []}
        initial = self.work / INITIAL_EVAL
        if checkpoint is None and val is not None:
            history["val"].append(_val(trainer.evaluate(), 0))
            if trainer.is_world_process_zero():
                initial.write_bytes(orjson.dumps(history["val"][0]))  # a resumed run reports it too
        elif val is not None and initial.exists():
            history["val"].append(orjson.loads(initial.read_bytes()))
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        for entry in trainer.state.log_history:
            if "loss" in entry and "step" in entry:
                history["train_loss"].append({"step": entry["step"], "loss": round(float(entry["loss"]), 5)})
            elif "eval_loss" in entry:
                history["val"].append(_val(entry, int(entry["step"])))
        if val is not None and (not history["val"] or history["val"][-1]["step"] != trainer.state.global_step):
            history["val"].append(_val(trainer.evaluate(), trainer.state.global_step))
        speed: dict[str, Any] = next((e for e in trainer.state.log_history if "train_steps_per_second" in e), {})
        metrics = {
            "method": self.method,
            "trainer": type(trainer).__name__,
            "examples": built.examples,
            "train_examples": len(built.train),
            "val_examples": len(val) if val is not None else 0,
            "dropped_examples": built.dropped,
            "skipped_rows": len(self.data.skipped),
            "steps": trainer.state.global_step,
            "epochs": config.epochs,
            "resumed_from_step": _step(checkpoint) if checkpoint else None,
            "seconds": round(time.perf_counter() - started, 2),
            "seconds_per_step": (
                round(1 / speed["train_steps_per_second"], 3) if speed.get("train_steps_per_second") else None
            ),
            "train_loss": history["train_loss"],
            "val": history["val"],
            "final_val_loss": history["val"][-1]["loss"] if history["val"] else None,
            "initial_val_loss": history["val"][0]["loss"] if history["val"] else None,
            "device": device(),
            "world_size": trainer.args.world_size,
            "qlora": built.quantized,
        }
        manifest = self._manifest(built.fingerprint, metrics)
        self._finish(trainer, manifest)
        return manifest

    def _manifest(self, fingerprint: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "tool": "curate",
            "kind": "adapter",
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "base_model": {
                "path": str(self.base.path.resolve()),
                "gguf_file": self.base.gguf_file,
                "sha256": fingerprint["base"],
            },
            "data": self.data.provenance,
            "config": self.config.to_dict(),
            "seed": self.config.seed,
            "method": self.method,
            "versions": _versions(),
            "metrics": metrics,
        }

    def _finish(self, trainer: Any, manifest: dict[str, Any]) -> None:
        """Every rank saves (DeepSpeed ZeRO-3 gathers the adapter's shards there, and FSDP with a
        full state dict; neither has run here: only one process and CPU DDP have); rank 0
        adds the trainer's logs and the manifest (last) and renames the folder into place."""
        from curate.write import _replace, _sha256

        stage = self.work / "adapter"
        main = trainer.is_world_process_zero()
        try:
            if main:
                shutil.rmtree(stage, ignore_errors=True)
            trainer.accelerator.wait_for_everyone()
            trainer.save_model(str(stage))  # the adapter and the tokenizer
            if not main:
                return
            if not (stage / "adapter_model.safetensors").is_file():
                raise CurateError(
                    "the trainer saved no adapter weights (under FSDP, set fsdp_state_dict_type: "
                    "FULL_STATE_DICT in accelerate's config); nothing was written to --out"
                )
            (stage / "training_args.bin").unlink(missing_ok=True)  # a pickle; the manifest holds the config
            logs = Path(trainer.args.output_dir) / "runs"  # TensorBoard's, when report_to asks for it
            if logs.is_dir():
                shutil.move(str(logs), str(stage / "runs"))
            files = sorted(p for p in stage.rglob("*") if p.is_file())
            manifest["outputs"] = {
                str(p.relative_to(stage)): {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in files
            }
            (stage / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
            _replace(stage, self.out)
            shutil.rmtree(self.work, ignore_errors=True)
        finally:
            trainer.accelerator.wait_for_everyone()


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
    return Run(data, base, Path(out), config or Config(), Path(source), progress).run(resume=resume)
