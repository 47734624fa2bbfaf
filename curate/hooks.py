"""Pipeline hooks. `CurateCallback` guards a transformers `Trainer` (and TRL's trainers, which are
Trainers): in `on_train_begin` it scans the training data and raises `curate.PoisonedDataError`
before the first step when the data crosses `fail_on`.

    trainer = Trainer(..., callbacks=[CurateCallback(fail_on=["flag>0"])])
    trainer.train()   # raises PoisonedDataError, with the scan's Report, if the data is flagged

A curate output folder as `source` (a scan's or `curate apply`'s, as `curate train` passes) is
not scanned again: the gate (`curate.guards.gate`) verifies its manifest on every rank instead.

What it scans: `source` when given (the raw rows: a path, a Dataset, a frame, dicts — best, since
curate then sees prompts and responses apart); else the trainer's training dataset: its text
columns when it kept them, or its `input_ids` decoded with the trainer's tokenizer when only token
columns are left (the default `remove_unused_columns=True`, and TRL's tokenized datasets).
Importing this module imports transformers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from curate.guards import DEFAULT_FAIL_ON, GateError, gate, guard

TOKEN_COLUMNS = {
    "input_ids",
    "attention_mask",
    "labels",
    "token_type_ids",
    "position_ids",
    "completion_mask",
    "assistant_masks",
    "special_tokens_mask",
    "seq_lengths",
}


class CurateCallback(TrainerCallback):
    def __init__(
        self,
        source: Any = None,
        fail_on: Sequence[str] | str | None = DEFAULT_FAIL_ON,
        *,
        rules: Any = None,
        queue: str | None = None,
        out: str | Path | None = None,
        expect_sha256: str | None = None,
        **scan_options: Any,
    ):
        self.source, self.fail_on, self.rules, self.queue, self.out = source, fail_on, rules, queue, out
        self.expect_sha256 = expect_sha256
        self.scan_options = scan_options
        self.report = None
        self.provenance: dict[str, Any] | None = None

    def _from_trainer(self, kwargs: dict[str, Any]) -> Any:
        loader = kwargs.get("train_dataloader")
        dataset = getattr(loader, "dataset", None)
        while dataset is not None and not hasattr(dataset, "column_names") and hasattr(dataset, "dataset"):
            dataset = dataset.dataset  # samplers and shards wrap the real dataset
        if dataset is None or not hasattr(dataset, "column_names"):
            raise ValueError("CurateCallback cannot see the training dataset: pass it as CurateCallback(source=...)")
        text = [c for c in dataset.column_names if c not in TOKEN_COLUMNS]
        if text:
            return dataset.select_columns(text)
        tokenizer = kwargs.get("processing_class") or kwargs.get("tokenizer")
        if tokenizer is None or "input_ids" not in dataset.column_names:
            raise ValueError(
                "the training dataset holds only token ids and the trainer has no tokenizer: pass the "
                "raw rows as CurateCallback(source=...)"
            )
        return [{"text": tokenizer.decode(ids, skip_special_tokens=True)} for ids in dataset["input_ids"]]

    def _output(self) -> Path | None:
        """The curate output folder `source` names (a scan's or apply's, with a manifest), if any."""
        if isinstance(self.source, (str, Path)) and (Path(self.source) / "manifest.json").is_file():
            return Path(self.source)
        return None

    def on_train_begin(self, args, state, control, **kwargs):
        folder = self._output()
        if folder is not None:
            # Already scanned: the gate verifies its manifest (every output's hash) and that no
            # review queue still holds rows of it, on every rank, since every rank reads the data;
            # and that the data is the one the trainer was built from.
            provenance, _ = gate(folder)
            if self.expect_sha256 and provenance["data"]["sha256"] != self.expect_sha256:
                raise GateError(f"{folder}: its clean set changed after training read it; start again")
            self.provenance = provenance
            return control
        if not state.is_world_process_zero:
            return control
        source = self.source if self.source is not None else self._from_trainer(kwargs)
        # Raises PoisonedDataError (with the report) before any step is taken.
        self.report = guard(source, self.fail_on, rules=self.rules, out=self.out, queue=self.queue, **self.scan_options)
        return control
