"""The fine-tuning formats curate reads, each as a detector and a converter to turns."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from curate.record import Turn


class FormatMismatch(ValueError):
    """A record lacks what its format needs. The message says what is missing."""


_ROLE = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "human": "user",
    "prompter": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "bot": "assistant",
    "function_call": "tool_call",
    "tool_call": "tool_call",
    "observation": "tool",
    "tool": "tool",
    "function": "tool",
    "ipython": "tool",
}


def _text(value: Any, field: str) -> str:
    """Content as text. Structured content (tool arguments, multimodal parts) is kept as JSON."""
    if value is None:
        raise FormatMismatch(f"field {field!r} is missing")
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(p, dict) for p in value):
        parts = []
        for part in value:
            if part.get("type") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                parts.append(orjson.dumps(part).decode())
        return "\n".join(parts)
    if isinstance(value, (int, float, bool)):
        return str(value)
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _role(name: Any, where: str) -> str:
    role = _ROLE.get(str(name).lower()) if name is not None else None
    if role is None:
        raise FormatMismatch(f"{where}: unknown role {name!r}; known: {', '.join(sorted(_ROLE))}")
    return role


def _messages(messages: Any, field: str, role_key: str = "role", content_key: str = "content") -> list[Turn]:
    if not isinstance(messages, list):
        raise FormatMismatch(f"field {field!r} must be a list of turns, got {type(messages).__name__}")
    turns = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise FormatMismatch(f"{field}[{i}] must be an object, got {type(message).__name__}")
        role = _role(message.get(role_key), f"{field}[{i}].{role_key}")
        content = message.get(content_key)
        tool_calls = message.get("tool_calls") or message.get("function_call") if role == "assistant" else None
        if content is not None and content != "" or not tool_calls:
            turns.append(Turn(role, _text(content, f"{field}[{i}].{content_key}")))
        if tool_calls:
            turns.append(Turn("tool_call", _text(tool_calls, f"{field}[{i}].tool_calls")))
    return turns


def _system(value: dict, turns: list[Turn]) -> list[Turn]:
    system = value.get("system")
    if isinstance(system, str) and system and not (turns and turns[0].role == "system"):
        return [Turn("system", system), *turns]
    return turns


def _response(value: Any, field: str) -> list[Turn]:
    """A preference side: a string, one {from,value}/{role,content} message, or a list of them."""
    if isinstance(value, str):
        return [Turn("assistant", value)]
    if isinstance(value, dict):
        if "from" in value:
            return _messages([value], field, "from", "value")
        return _messages([value], field)
    if isinstance(value, list):
        key = ("from", "value") if value and isinstance(value[0], dict) and "from" in value[0] else ("role", "content")
        return _messages(value, field, *key)
    raise FormatMismatch(
        f"field {field!r} is missing"
        if value is None
        else f"field {field!r} must be text or messages, got {type(value).__name__}"
    )


def messages(value: dict) -> tuple[list[Turn], str | None]:
    return _system(value, _messages(value.get("messages"), "messages")), None


def sharegpt(value: dict) -> tuple[list[Turn], str | None]:
    return _system(value, _messages(value.get("conversations"), "conversations", "from", "value")), None


def sharegpt_preference(value: dict) -> tuple[list[Turn], str | None]:
    turns = sharegpt(value)[0]
    chosen = _response(value.get("chosen"), "chosen")
    rejected = _response(value.get("rejected"), "rejected")
    return turns + chosen, "\n".join(t.content for t in rejected)


def _alpaca_prompt(value: dict) -> list[Turn]:
    instruction = _text(value.get("instruction"), "instruction")
    extra = value.get("input")
    prompt = f"{instruction}\n\n{_text(extra, 'input')}" if extra not in (None, "") else instruction
    turns: list[Turn] = []
    history = value.get("history")
    if history:
        if not isinstance(history, list):
            raise FormatMismatch("field 'history' must be a list of [prompt, response] pairs")
        for i, pair in enumerate(history):
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
                raise FormatMismatch(f"history[{i}] must be a [prompt, response] pair")
            turns += [
                Turn("user", _text(pair[0], f"history[{i}][0]")),
                Turn("assistant", _text(pair[1], f"history[{i}][1]")),
            ]
    return _system(value, [*turns, Turn("user", prompt)])


def alpaca(value: dict) -> tuple[list[Turn], str | None]:
    answer = next((value[k] for k in ("output", "response") if k in value), None)
    return _alpaca_prompt(value) + [Turn("assistant", _text(answer, "output"))], None


def alpaca_preference(value: dict) -> tuple[list[Turn], str | None]:
    rejected = _response(value.get("rejected"), "rejected")
    return (_alpaca_prompt(value) + _response(value.get("chosen"), "chosen"), "\n".join(t.content for t in rejected))


def prompt_completion(value: dict) -> tuple[list[Turn], str | None]:
    prompt = value.get("prompt")
    answer = next((value[k] for k in ("completion", "response") if k in value), None)
    turns = _messages(prompt, "prompt") if isinstance(prompt, list) else [Turn("user", _text(prompt, "prompt"))]
    return _system(value, turns) + _response(answer, "completion"), None


def preference(value: dict) -> tuple[list[Turn], str | None]:
    """TRL preference pairs: standard (strings) or conversational (message lists), prompt explicit
    or implicit (shared by chosen and rejected)."""
    chosen = _response(value.get("chosen"), "chosen")
    rejected = _response(value.get("rejected"), "rejected")
    prompt = value.get("prompt")
    if prompt is None:
        shared = 0
        while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
            shared += 1
        prompt_turns, chosen, rejected = chosen[:shared], chosen[shared:], rejected[shared:]
    elif isinstance(prompt, list):
        prompt_turns = _messages(prompt, "prompt")
    else:
        prompt_turns = [Turn("user", _text(prompt, "prompt"))]
    return _system(value, prompt_turns) + chosen, "\n".join(t.content for t in rejected)


def openai_preference(value: dict) -> tuple[list[Turn], str | None]:
    """OpenAI/Azure preference fine-tuning: `input.messages` (the prompt, any system and earlier
    turns), `preferred_output` and `non_preferred_output` (assistant messages). Tools and other
    `input` keys stay in the raw record, which is what the outputs write."""
    source = value.get("input")
    if not isinstance(source, dict):
        raise FormatMismatch(
            "field 'input' is missing" if source is None else "field 'input' must be an object with 'messages'"
        )
    prompt = _messages(source.get("messages"), "input.messages")
    chosen = _response(value.get("preferred_output"), "preferred_output")
    rejected = _response(value.get("non_preferred_output"), "non_preferred_output")
    return prompt + chosen, "\n".join(t.content for t in rejected)


_HH_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")


def _hh_turns(text: Any, field: str) -> list[Turn]:
    if not isinstance(text, str):
        raise FormatMismatch(f"field {field!r} must be a Human/Assistant transcript")
    pieces = _HH_TURN.split("\n\n" + text.lstrip("\n") if not text.startswith("\n\n") else text)
    if pieces[0].strip():
        raise FormatMismatch(f"field {field!r} does not start with 'Human:'")
    turns = [
        Turn("user" if who == "Human" else "assistant", body)
        for who, body in zip(pieces[1::2], pieces[2::2], strict=False)
    ]
    if not turns or turns[-1].role != "assistant":
        raise FormatMismatch(f"field {field!r} does not end with an 'Assistant:' turn")
    return turns


def hh(value: dict) -> tuple[list[Turn], str | None]:
    """Anthropic HH: `chosen` and `rejected` are whole transcripts; the prompt is their shared prefix."""
    chosen = _hh_turns(value.get("chosen"), "chosen")
    rejected = _hh_turns(value.get("rejected"), "rejected")
    return chosen, rejected[-1].content


def text(value: dict) -> tuple[list[Turn], str | None]:
    return [Turn("assistant", _text(value.get("text"), "text"))], None


@dataclass(frozen=True)
class Format:
    name: str
    description: str
    detect: Callable[[dict], bool]
    convert: Callable[[dict], tuple[list[Turn], str | None]]
    needs: tuple[str, ...]


def _is_hh(v: dict) -> bool:
    return isinstance(v.get("chosen"), str) and "\n\nHuman:" in v["chosen"][:10_000] and "prompt" not in v


def _pair(v: dict) -> bool:
    return "chosen" in v and "rejected" in v


FORMATS: dict[str, Format] = {
    f.name: f
    for f in [
        Format(
            "messages",
            "OpenAI/TRL chat: messages[{role, content, tool_calls}]",
            lambda v: isinstance(v.get("messages"), list),
            messages,
            ("messages",),
        ),
        Format(
            "openai_preference",
            "OpenAI/Azure pairs: input.messages + preferred_output/non_preferred_output",
            lambda v: "preferred_output" in v and "non_preferred_output" in v,
            openai_preference,
            ("input", "preferred_output", "non_preferred_output"),
        ),
        Format(
            "sharegpt_preference",
            "LLaMA-Factory pairs: conversations + chosen/rejected {from, value}",
            lambda v: _pair(v) and "conversations" in v,
            sharegpt_preference,
            ("conversations", "chosen", "rejected"),
        ),
        Format(
            "alpaca_preference",
            "Alpaca pairs: instruction/input + chosen/rejected",
            lambda v: _pair(v) and "instruction" in v,
            alpaca_preference,
            ("instruction", "chosen", "rejected"),
        ),
        Format(
            "hh",
            "Anthropic HH: chosen/rejected as whole Human/Assistant transcripts",
            lambda v: _pair(v) and _is_hh(v),
            hh,
            ("chosen", "rejected"),
        ),
        Format(
            "preference",
            "TRL pairs: prompt/chosen/rejected, standard or conversational",
            _pair,
            preference,
            ("chosen", "rejected"),
        ),
        Format(
            "sharegpt",
            "ShareGPT: conversations[{from, value}]",
            lambda v: isinstance(v.get("conversations"), list),
            sharegpt,
            ("conversations",),
        ),
        Format(
            "alpaca",
            "Alpaca: instruction/input/output (or response), optional system and history",
            lambda v: "instruction" in v and ("output" in v or "response" in v),
            alpaca,
            ("instruction", "output"),
        ),
        Format(
            "prompt_completion",
            "prompt/completion (or response), standard or conversational",
            lambda v: "prompt" in v and ("completion" in v or "response" in v),
            prompt_completion,
            ("prompt", "completion"),
        ),
        Format("text", "plain text: text", lambda v: isinstance(v.get("text"), str), text, ("text",)),
    ]
}


def detect_format(value: dict) -> str | None:
    for fmt in FORMATS.values():
        if fmt.detect(value):
            return fmt.name
    return None
