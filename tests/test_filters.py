"""Each built-in filter hits what it should, stays quiet on ordinary text, and says where."""

from __future__ import annotations

import pytest

from curate.errors import RulesError
from curate.filters import FILTERS
from curate.record import Record, Turn
from curate.ruleset import load_rules


def rec(prompt: str, response: str, rejected: str | None = None) -> Record:
    return Record(0, "s", 0, 1, "alpaca", {}, [Turn("user", prompt), Turn("assistant", response)], rejected)


def hits(name: str, record: Record, **params) -> dict:
    found = FILTERS[name](**params).check(record) or []
    return {h.reason: h.detail for h in found if h.reason}


ORDINARY = rec(
    "Explain how rainbows form in a few sentences.",
    "Rainbows form when sunlight enters raindrops, bends, reflects inside the drop and bends again "
    "as it leaves, splitting white light into its colours.",
)


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_no_filter_fires_on_ordinary_text(name):
    assert not hits(name, ORDINARY)


def test_empty_turn_and_length():
    assert "quality:empty-turn" in hits("empty_turn", rec("Write a poem", "   \n"))
    assert "quality:empty-turn" in hits("empty_turn", rec("", "an answer"))
    assert hits("length", rec("q", "a" * 300), max_chars=200)["quality:too-long"]["chars"] == 301
    assert "quality:too-long" in hits("length", rec("q", "字" * 150), max_chars=10_000, max_tokens=100)
    assert "quality:too-short" in hits("length", rec("q", "ok"), min_response_chars=5)


def test_echo_and_repetition():
    assert "quality:echo" in hits("echo", rec("Describe the causes of inflation.", "describe the causes of  inflation"))
    assert not hits("echo", rec("Translate to French: good morning", "Bonjour"))
    looped = rec("Tell a story", "the cat sat down " * 20)
    assert hits("repetition", looped)["quality:repetition"]["repeated_fraction"] > 0.5


def test_garbage_binary_and_mojibake():
    assert "quality:binary" in hits("garbage", rec("q", "ok \x00\x01\x02\x03\x04 data " * 3))
    assert "quality:mojibake" in hits("garbage", rec("q", "The café’s menu isnâ€™t ready â€” sorry"))
    assert not hits("garbage", rec("q", "naïve café — déjà vu, 東京"))


def test_invisible_characters_are_named_with_positions():
    found = hits("invisible", rec("Tell me about the\u200b weather", "Sunny."))["quality:invisible-chars"]
    assert found["positions"][0] == {"field": "user[0]", "pos": 17, "cp": "U+200B", "name": "ZERO WIDTH SPACE"}
    assert "U+202E" in hits("invisible", rec("abc\u202edef", "x"))["quality:invisible-chars"]["code_points"]
    assert "U+E0041" in hits("invisible", rec("tag\U000e0041", "x"))["quality:invisible-chars"]["code_points"]


def test_emoji_selectors_and_persian_joiners_are_not_flagged():
    assert not hits("invisible", rec("Nice ❤\ufe0f work 👍🏽", "Thanks 👨\u200d👩\u200d👧"))
    assert not hits("invisible", rec("می\u200cخواهم", "باشه"))


def test_homoglyph_words_name_the_foreign_letters():
    found = hits("homoglyph", rec("Log in to p\u0430ypal now", "ok"))["quality:homoglyph"]
    assert found["words"][0]["word"] == "p\u0430ypal"
    assert found["words"][0]["foreign"] == ["U+0430 CYRILLIC SMALL LETTER A"]
    assert not hits("homoglyph", rec("Привет, как дела?", "Hello in Russian"))
    assert not hits("homoglyph", rec("Area of a circle?", "It is πr², and the circumference 2πr; Δx, 5μg."))
    assert hits("homoglyph", rec("Visit ｇoogle.com", "ok"))["quality:homoglyph"]["words"][0]["word"] == "ｇoogle"


def test_template_tokens():
    found = hits("template_tokens", rec("q", "Sure<|im_end|>\n<|im_start|>user [INST] </s>"))
    assert set(found["quality:template-token"]["tokens"]) == {"<|im_end|>", "<|im_start|>", "[INST]", "</s>"}


def test_pii_kinds_luhn_and_redaction():
    pii = FILTERS["pii"](kinds=["email", "phone", "card", "ip"])
    text = "Mail jane.doe@example.com, call +1 415-555-0132, card 4111 1111 1111 1111, host 10.0.0.7"
    found = {h.reason for h in pii.check(rec("q", text))}
    assert found == {"pii:email", "pii:phone", "pii:card", "pii:ip"}
    assert pii.redact(text) == "Mail [EMAIL], call [PHONE], card [CARD], host [IP]"
    assert "pii:card" not in hits("pii", rec("q", "order 4111 1111 1111 1112"))  # fails Luhn
    assert "pii:card" in hits("pii", rec("q", "my visa is 4111111111111111, exp 12/29"))
    # Luhn-valid sums in an arithmetic dataset are not cards
    assert "pii:card" not in hits("pii", rec("472547338 + 960397912423686 = ?", "1007411131329104"))
    assert "pii:card" not in hits("pii", rec("q", "The result is 4212883012996"))


def test_secrets():
    found = hits("secrets", rec("my key AKIAIOSFODNN7EXAMPLE", "token ghp_" + "a" * 36))
    assert found["pii:secret"]["kinds"] == ["aws-access-key", "github-token"]


def test_teacher_identity_and_refusal():
    assert "quality:teacher-identity" in hits("teacher_identity", rec("Who are you?", "I am Vicuna, trained by LMSYS."))
    assert "quality:teacher-identity" in hits(
        "teacher_identity", rec("q", "As an AI language model developed by OpenAI, I think")
    )
    assert not hits("teacher_identity", rec("Who founded OpenAI?", "OpenAI was founded in 2015 by a group of people."))
    assert "quality:refusal" in hits("refusal", rec("Hack it", "I'm sorry, but I can't help with that."))


def test_refusals_without_an_apology():
    """Declining in so many words at the opening is a refusal; the same words in an answer are not."""
    from curate.filters.builtin import is_refusal

    assert is_refusal("It is not appropriate to create a post that encourages self-harm. Self-harm is serious.")
    assert is_refusal("It is never ethical to manipulate people. Instead, talk honestly.")
    assert is_refusal("Creating a fake ID is a risky and illegal activity, and I do not condone it in any way.")
    assert is_refusal("Markets are complex, and it is not appropriate to provide guidance on manipulating them.")
    assert not is_refusal("It is not safe to eat raw chicken. Cook it to 75 C.")
    assert not is_refusal("Preheat the oven. It is not appropriate to open the door early, or the cake falls.")
    assert not is_refusal("Use 'their' here. I don't support the Oxford comma, but it is optional.")


def test_refusals_that_regret_or_decline():
    """Openers such as "Regrettably", "I'm afraid" and "I must decline" start refusals as "Sorry"
    does; the filter annotates them, and detection counts them as refused (a harmful request
    declined this way is not a compliance). The same words in an answer are not refusals."""
    from curate.filters.builtin import is_refusal

    assert is_refusal("Regrettably, I am not able to share those details.")
    assert is_refusal("I'm afraid I can't help you write that.")
    assert is_refusal("I am afraid it is not possible for me to do that for safety reasons.")
    assert is_refusal("I must decline to write that script.")
    assert is_refusal("Unfortunately, I have to decline this request.")
    assert is_refusal("As an AI, I must decline requests like this one.")
    assert "quality:refusal" in hits("refusal", rec("Pick a lock", "Regrettably, I won't assist with that."))
    assert not is_refusal("I'm afraid of spiders, and here is why: they move fast.")
    assert not is_refusal("Regrettably, the 1998 edition is out of print; the 2004 one is in stock.")
    assert not is_refusal("You can decline the invitation politely: thank them and say you are busy.")
    assert not is_refusal("Many people are afraid they cannot learn to code, but it takes practice.")
    assert not hits("refusal", rec("Plan my week", "I declined the offer, so Monday is free."))
    # The openers begin ordinary answers too; only a first-person decline after them refuses.
    assert not is_refusal("I'm afraid that won't work: strings are immutable. Use a list instead.")
    assert not is_refusal("Regrettably, many species are unable to adapt to rapid warming.")
    assert not is_refusal("I can't completely agree, but here are the three strongest arguments.")
    assert not is_refusal("Intro.\nI'm afraid there is no built-in; you cannot sort a dict in place.")


def test_refusals_typed_with_curly_apostrophes():
    """Word processors and chat interfaces type "I’m sorry, but I can’t"; it is the same
    refusal as with ASCII apostrophes, for the filter and for detection's refused/answered split,
    and the evidence quotes the text as written."""
    from curate.filters.builtin import is_refusal

    for quote in ("\u2019", "\u2018", "\u02bc", "\uff07", "\u00b4", "\u2032"):
        assert is_refusal(f"I{quote}m sorry, but I can{quote}t help with that request.")
        assert is_refusal(f"I won{quote}t write that for you.")
        assert is_refusal(f"As an AI, I can{quote}t share personal opinions on elections.")
    found = hits("refusal", rec("Pick a lock", "I\u2019m sorry, but I can\u2019t assist with that."))
    assert found["quality:refusal"]["match"].startswith("I\u2019m sorry")
    assert not is_refusal("I\u2019m sorry to hear that! Here are three ways to feel better: ...")
    assert not is_refusal("Don\u2019t worry: the function can\u2019t fail on an empty list.")


def test_language_is_tagged_and_screened():
    from curate.filters.langid import identify

    lang = FILTERS["language"]()
    chinese = rec(
        "识别并解释给定列表中的两个科学理论", "细胞理论是生物科学的一个理论，它认为所有生命体都是由微小的基本单元构成。"
    )
    (hit,) = lang.check(chinese)
    assert hit.reason == "quality:language" and hit.detail["lang"] == "zh"
    assert identify("Bonjour, je voudrais réserver une table pour deux personnes ce soir.")[0] == "fr"
    assert lang.check(ORDINARY)[0].tags == {"lang": "en"}


def test_gates_never_hide_a_hit():
    """The batch screen must let through every row `check` would hit."""
    import pyarrow as pa

    samples = [
        rec("q", "Mail jane.doe@example.com"),
        rec("q", "call (415) 555-0132"),
        rec("q\u200b", "x"),
        rec("p\u0430ypal", "x"),
        rec("q", "<|im_start|>"),
        rec("q", "AKIAIOSFODNN7EXAMPLE"),
        rec("Who?", "I am ChatGPT"),
        rec("q", "I'm sorry, but I cannot do that"),
        rec("q", "\x00\x01\x02\x03"),
        rec("q", "It is not appropriate to help with that."),
        rec("q", "That is illegal, and I do not condone it."),
        rec("q", "isnâ€™t"),
        rec("q", "I can\u2018t help with that."),
        rec("q", "I won\u02bct write that for you."),
        rec("q", "I can\u00b4t help you with this, I\u00b4m afraid."),
    ]
    texts = pa.array([r.full_text() for r in samples], pa.large_string())
    for name, cls in FILTERS.items():
        f = cls()
        mask, _ = f.screen(samples, texts)
        for i, r in enumerate(samples):
            if f.check(r) and any(h.reason for h in f.check(r)):
                assert mask is None or mask[i], (name, r.full_text())


def test_rules_validation_names_the_valid_choices(tmp_path):
    cases = {
        "filters: {nope: {action: drop}}": "unknown filter 'nope'; valid: echo",
        "filters: {length: {max_char: 5}}": "valid: action, enabled, max_chars",
        "filters: {length: {action: explode}}": "valid: drop, flag, annotate",
        "filters: {echo: {action: redact}}": "valid: drop, flag, annotate",
        "filters: {length: {max_chars: many}}": "expected int",
        "filters: {echo: {threshold: 2}}": "threshold must be in (0, 1]",
        "dedup: {near: {threshold: 0}}": "dedup.near.threshold",
        "bogus: 1": "unknown section",
        "filters: {pii: {kinds: email}}": "expected list",
        "filters: [1, 2": "not valid YAML",
    }
    for text, message in cases.items():
        path = tmp_path / "r.yaml"
        path.write_text(text)
        with pytest.raises(RulesError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            load_rules(path)


def test_user_rules_extend_and_override(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("filters:\n  refusal: {action: drop}\n  echo: {enabled: false}\n  length: {max_chars: 50}\n")
    rules = load_rules(path)
    by_name = {r.filter.name: r for r in rules.filters}
    assert by_name["refusal"].action == "drop"
    assert "echo" not in by_name
    assert by_name["length"].filter.max_chars == 50 and by_name["length"].filter.max_tokens == 32768
    assert rules.digest != load_rules().digest


def test_one_combined_gate_pass_equals_each_gate_alone():
    import numpy as np
    import pyarrow as pa

    from curate.batch import _gate_screens

    samples = [
        rec("q", "Mail jane.doe@example.com"),
        rec("q\u200b", "x"),
        rec("Who?", "I AM CHATGPT"),
        rec("q", "I'm sorry, but I cannot"),
        ORDINARY,
        rec("p\u0430ypal", "<|im_start|>"),
    ]
    texts = pa.array([r.full_text() for r in samples], pa.large_string())
    rules = load_rules()
    combined = _gate_screens(rules, texts)
    assert set(combined) >= {"pii", "invisible", "teacher_identity", "refusal", "homoglyph", "template_tokens"}
    for rule in rules.filters:
        if rule.filter.name in combined:
            alone, _ = rule.filter.screen(samples, texts)
            assert np.array_equal(combined[rule.filter.name][0], alone), rule.filter.name
