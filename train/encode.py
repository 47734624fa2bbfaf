"""Records to token ids: the model's chat template, with the loss on response tokens only.

The template is rendered for each prefix of the conversation; the tokens an assistant turn adds
are the ones trained on (labels), everything else is -100. A tokenizer without a chat template
gets a plain `### role:` layout. Too long an example loses prompt tokens from the left, never
tokens of the last response, unless that response alone is longer than `max_length`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from curate.record import Record

IGNORE = -100
FALLBACK_TEMPLATE = (
    "{% for m in messages %}### {{ m['role'] }}:\n{{ m['content'] }}\n\n{% endfor %}"
    "{% if add_generation_prompt %}### assistant:\n{% endif %}"
)
ROLES = {"system": "system", "user": "user", "assistant": "assistant", "tool": "tool", "tool_call": "assistant"}


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]


def ensure_template(tokenizer: Any) -> None:
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = FALLBACK_TEMPLATE


def messages(turns) -> list[dict[str, str]]:
    out = []
    for t in turns:
        role = ROLES.get(t.role, "user")
        if out and out[-1]["role"] == role and role != "assistant":  # templates want alternation
            out[-1]["content"] += "\n\n" + t.content
        else:
            out.append({"role": role, "content": t.content})
    return out


def _ids(tokenizer: Any, msgs: list[dict[str, str]], generation_prompt: bool) -> list[int]:
    if not msgs:
        return []
    out = tokenizer.apply_chat_template(msgs, tokenize=True, add_generation_prompt=generation_prompt)
    if isinstance(out, dict) or hasattr(out, "input_ids"):
        out = out["input_ids"]
    return list(out)


def encode_conversation(tokenizer: Any, msgs: list[dict[str, str]], max_length: int) -> Encoded | None:
    """Token ids and labels for a conversation that ends with an assistant turn."""
    ensure_template(tokenizer)
    ids: list[int] = []
    labels: list[int] = []
    last_start = 0
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        before = _ids(tokenizer, msgs[:i], generation_prompt=True)
        after = _ids(tokenizer, msgs[: i + 1], generation_prompt=False)
        if after[: len(ids)] != ids:
            # A template that rewrites earlier turns: keep only this turn's labels.
            labels = [IGNORE] * len(ids)
        common = 0
        while common < min(len(before), len(after)) and before[common] == after[common]:
            common += 1
        common = max(common, len(ids)) if after[: len(ids)] == ids else common
        labels = labels[:common] + [IGNORE] * (common - len(labels[:common])) + after[common:]
        ids, last_start = after, common
    if not any(label != IGNORE for label in labels):
        return None
    if len(ids) > max_length:
        # Drop the oldest tokens (earlier turns, the start of the prompt) while the last answer
        # fits; an answer longer than max_length alone loses its end instead.
        cut = len(ids) - max_length
        if cut <= last_start:
            ids, labels = ids[cut:], labels[cut:]
        else:
            ids, labels = ids[:max_length], labels[:max_length]
    return Encoded(ids, labels)


def encode_record(tokenizer: Any, record: Record, max_length: int) -> Encoded | None:
    return encode_conversation(tokenizer, messages(record.turns), max_length)


def prompt_ids(tokenizer: Any, msgs: list[dict[str, str]]) -> list[int]:
    """Ids of a prompt ready for generation."""
    ensure_template(tokenizer)
    return _ids(tokenizer, msgs, generation_prompt=True)


def collate(batch: list[Encoded], pad_id: int):
    """Right-padded tensors: input_ids, attention_mask, labels."""
    import torch

    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
