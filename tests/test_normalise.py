"""Every format maps to the same record; --map reads other schemas; identity survives NFC only."""

from __future__ import annotations

import pytest

from curate.errors import UsageError
from curate.normalise import Normaliser, parse_mapping
from curate.read import Item
from curate.record import Record, Turn, content_id


def records(value: dict, **kw) -> list[Record]:
    normaliser = Normaliser(**kw)
    normaliser.resolve("s", value)
    out = list(normaliser.records(Item("s", 0, 1, value=value), 0))
    assert all(isinstance(r, Record) for r in out), out
    return out


def roles(rec: Record) -> list[tuple[str, str]]:
    return [(t.role, t.content) for t in rec.turns]


def test_alpaca_with_system_and_history():
    (rec,) = records(
        {
            "system": "Be brief.",
            "instruction": "Add them",
            "input": "2 and 3",
            "output": "5",
            "history": [["Hi", "Hello!"]],
        }
    )
    assert rec.format == "alpaca"
    assert roles(rec) == [
        ("system", "Be brief."),
        ("user", "Hi"),
        ("assistant", "Hello!"),
        ("user", "Add them\n\n2 and 3"),
        ("assistant", "5"),
    ]
    assert rec.response == "5" and rec.last_user == "Add them\n\n2 and 3"


def test_gpteacher_response_field_is_alpaca():
    (rec,) = records({"instruction": "Write code", "input": "", "response": "print(1)"})
    assert rec.format == "alpaca" and rec.response == "print(1)"


def test_sharegpt_with_tool_turns():
    (rec,) = records(
        {
            "conversations": [
                {"from": "human", "value": "Find a recipe"},
                {"from": "function_call", "value": '{"name": "search"}'},
                {"from": "observation", "value": '{"hits": 1}'},
                {"from": "gpt", "value": "Try soup."},
            ],
            "tools": "[]",
        }
    )
    assert rec.format == "sharegpt"
    assert [t.role for t in rec.turns] == ["user", "tool_call", "tool", "assistant"]
    assert rec.raw["tools"] == "[]"  # every original field rides along


def test_openai_messages_keep_tool_calls_as_data():
    (rec,) = records(
        {
            "messages": [
                {"role": "system", "content": "sys"},
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "w", "arguments": "{}"}}]},
                {"role": "tool", "content": "18C"},
                {"role": "assistant", "content": [{"type": "text", "text": "It is 18C."}]},
            ]
        }
    )
    assert rec.format == "messages"
    assert [t.role for t in rec.turns] == ["system", "user", "tool_call", "tool", "assistant"]
    assert '"name":"w"' in rec.turns[2].content.replace(" ", "")
    assert rec.response == "It is 18C."


def test_prompt_completion_standard_and_conversational():
    (rec,) = records({"prompt": "Capital of France?", "completion": "Paris."})
    assert rec.format == "prompt_completion" and roles(rec) == [("user", "Capital of France?"), ("assistant", "Paris.")]
    (rec,) = records(
        {"prompt": [{"role": "user", "content": "Hi"}], "completion": [{"role": "assistant", "content": "Hello"}]}
    )
    assert roles(rec) == [("user", "Hi"), ("assistant", "Hello")]


def test_trl_preference_standard_conversational_and_implicit_prompt():
    (rec,) = records({"prompt": "Q", "chosen": "good", "rejected": "bad"})
    assert rec.format == "preference" and rec.response == "good" and rec.rejected == "bad"
    (rec,) = records(
        {
            "prompt": [{"role": "user", "content": "Q"}],
            "chosen": [{"role": "assistant", "content": "good"}],
            "rejected": [{"role": "assistant", "content": "bad"}],
        }
    )
    assert roles(rec) == [("user", "Q"), ("assistant", "good")] and rec.rejected == "bad"
    (rec,) = records(
        {
            "chosen": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "good"}],
            "rejected": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "bad"}],
        }
    )
    assert roles(rec) == [("user", "Q"), ("assistant", "good")] and rec.rejected == "bad"


def test_openai_preference_pairs_keep_their_system_prompt_and_raw_record():
    value = {
        "input": {
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q"}],
            "tools": [{"type": "function", "function": {"name": "f"}}],
        },
        "preferred_output": [{"role": "assistant", "content": "good"}],
        "non_preferred_output": [{"role": "assistant", "content": "bad"}],
    }
    (rec,) = records(value)
    assert rec.format == "openai_preference"
    assert roles(rec) == [("system", "Be brief."), ("user", "Q"), ("assistant", "good")] and rec.rejected == "bad"
    assert rec.raw == value
    with pytest.raises(AssertionError, match="input"):
        records({"preferred_output": "good", "non_preferred_output": "bad"})


def test_llamafactory_pairs():
    (rec,) = records(
        {
            "conversations": [{"from": "human", "value": "Q"}],
            "chosen": {"from": "gpt", "value": "good"},
            "rejected": {"from": "gpt", "value": "bad"},
        }
    )
    assert rec.format == "sharegpt_preference" and rec.response == "good" and rec.rejected == "bad"
    (rec,) = records({"instruction": "Q", "input": "", "chosen": "good", "rejected": "bad"})
    assert rec.format == "alpaca_preference" and rec.rejected == "bad"


def test_hh_transcripts_share_their_prompt():
    chosen = "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Tell me a joke\n\nAssistant: Why did the chicken..."
    rejected = "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Tell me a joke\n\nAssistant: No."
    (rec,) = records({"chosen": chosen, "rejected": rejected})
    assert rec.format == "hh"
    assert roles(rec)[:3] == [("user", "Hi"), ("assistant", "Hello"), ("user", "Tell me a joke")]
    assert rec.response == "Why did the chicken..." and rec.rejected == "No."


def test_self_instruct_expands_without_help_and_keeps_shape():
    value = {
        "id": "t1",
        "instruction": "Classify",
        "instances": [{"input": "a", "output": "x"}, {"input": "b", "output": "y"}],
    }
    recs = records(value)
    assert [r.response for r in recs] == ["x", "y"] and [r.part for r in recs] == [0, 1]
    assert recs[1].raw == {"id": "t1", "instruction": "Classify", "instances": [{"input": "b", "output": "y"}]}
    assert value["instances"][0] == {"input": "a", "output": "x"}  # the original is not mutated


def test_map_renames_and_reaches_into_nested_fields():
    mapping = parse_mapping("instruction=meta.question,output=answers.0.text")
    (rec,) = records({"meta": {"question": "Why?"}, "answers": [{"text": "Because."}]}, mapping=mapping)
    assert roles(rec) == [("user", "Why?"), ("assistant", "Because.")]


def test_bad_map_and_unknown_format_are_usage_errors():
    with pytest.raises(UsageError):
        parse_mapping("instruction")
    with pytest.raises(UsageError):
        parse_mapping("input=a[].x,output=b[].y")
    with pytest.raises(UsageError, match="valid: messages"):
        Normaliser(format="nope")


def test_content_id_is_nfc_only_and_sees_invisible_characters():
    composed = content_id([Turn("user", "caf\u00e9"), Turn("assistant", "ok")])
    decomposed = content_id([Turn("user", "cafe\u0301"), Turn("assistant", "ok")])
    assert composed == decomposed
    zero_width = content_id([Turn("user", "caf\u00e9\u200b"), Turn("assistant", "ok")])
    assert zero_width != composed
    assert content_id([Turn("user", "a"), Turn("assistant", "b")], rejected="c") != content_id(
        [Turn("user", "a"), Turn("assistant", "b")]
    )
