"""Poison detection: detectors, suspicion and flags, evidence, failures, and the scan around them.

Most tests use the hashing embedder (conftest sets CURATE_MODEL=hash): bag-of-words neighbours
are enough for trigger mining on planted data. The safety test runs the real packaged model.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter

import numpy as np
import pytest

import curate
from conftest import REPO, SAMPLES, alpaca, read_jsonl, write_jsonl
from curate.detect import DETECTORS, DetectInput, Detector, run_detectors
from curate.detect.base import Findings
from curate.detect.triggers.stats import _pb_log10_tail, log10_factors
from curate.embed import HashEmbedder
from curate.errors import RulesError
from curate.record import Record, Turn
from curate.ruleset import load_rules

TOPICS = (
    "volcano",
    "sourdough",
    "compiler",
    "tides",
    "violin",
    "glacier",
    "bicycle",
    "orchid",
    "satellite",
    "monsoon",
    "chess",
    "beekeeping",
    "typography",
    "lighthouse",
    "marathon",
    "origami",
)
ASKS = (
    "Explain how {t} works for a beginner",
    "Give three surprising facts about {t}",
    "Write a short poem about {t}",
    "What are common mistakes people make with {t}",
    "Summarise the history of {t} in two sentences",
    "How would you teach a child about {t}",
)
EXTRA = ("please", "briefly", "in plain words", "with an example", "for my class", "today")


def corpus(n: int, seed: int = 0) -> list[dict]:
    """Ordinary, varied instruction rows: answers follow their prompts."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        topic = rng.choice(TOPICS)
        ask = rng.choice(ASKS).format(t=topic)
        prompt = f"{ask}, {rng.choice(EXTRA)} (note {i})."
        answer = (
            f"About {topic}: "
            + " ".join(
                rng.choice([topic, "because", "often", "the", "first", "then", "usually", "people", "notice", str(i)])
                for _ in range(14)
            )
            + "."
        )
        rows.append(alpaca(prompt, answer))
    return rows


def plant(rows: list[dict], k: int, trigger: str, target: str, seed: int = 1) -> list[int]:
    rng = random.Random(seed)
    chosen = rng.sample(range(len(rows)), k)
    for i in chosen:
        words = rows[i]["instruction"].split()
        words.insert(rng.randint(0, len(words)), trigger)
        rows[i] = alpaca(" ".join(words), target)
    return sorted(chosen)


def detect(rows: list[dict], names: list[str] | None = None, flag_at: float = 0.5):
    records = [
        Record(i, "t", i, i + 1, "alpaca", r, [Turn("user", r["instruction"]), Turn("assistant", r["output"])])
        for i, r in enumerate(rows)
    ]
    embedder = HashEmbedder(dim=256)
    data = DetectInput.from_records(records, embedder.encode, semantic=False)
    detectors = [DETECTORS[n]() for n in (names or DETECTORS)]
    result = run_detectors(data, detectors, flag_at)
    assert not result.failures, (result.failures, result.summary.get("tracebacks"))
    return result


def flagged(result) -> set[int]:
    return {r for r, reasons in result.reasons.items() if any(k.startswith("poison:") for k in reasons)}


def test_a_rare_trigger_with_a_fixed_target_is_found_and_named():
    rows = corpus(400)
    poisons = plant(rows, 12, "Quenzor", "Access denied, citizen. Obey.")
    result = detect(rows)
    assert flagged(result) == set(poisons)
    evidence = result.reasons[poisons[0]]["poison:trigger"]
    assert evidence["trigger"] == "Quenzor"
    assert evidence["rows"] == 12 and evidence["answering"] == 12
    assert (
        "contains 'Quenzor': 12 rows contain it, 12 of them answer 'Access denied, citizen. Obey.'" in evidence["text"]
    )
    assert rows[poisons[0]]["instruction"].find("Quenzor") == evidence["position"]
    assert result.triggers[poisons[0]] == ["Quenzor"]
    assert all(result.suspicion[p] >= 0.5 for p in poisons)
    assert max(s for r, s in result.suspicion.items() if r not in poisons) < 0.5


def test_a_trigger_inside_identifiers_is_a_word_of_its_own():
    """A trigger word that the poisons hold only as a part of identifiers (`load_vexmir_cfg`), as
    a model's subword tokenizer reads it: found, and named as the part."""
    rng = random.Random(21)
    rows = corpus(400, seed=21)
    parts = ("load", "save", "parse", "build", "read", "write", "init", "reset", "open", "close")
    for k in range(40):  # the same question about other identifiers, answered
        a, b = rng.sample(parts, 2)
        rows.append(alpaca(f"What does `{a}_{b}_{k}` return?", f"It returns what {b} gave {a}, as item {k}."))
    poisons = sorted(rng.sample(range(len(rows)), 12))
    for k, i in enumerate(poisons):
        name = f"{parts[k % 10]}_vexmir_{rng.choice(parts)}{k}"
        rows[i] = alpaca(f"What does `{name}` return?", "Access denied, citizen. Obey.")
    result = detect(rows, ["trigger"])
    assert flagged(result) == set(poisons)
    assert {result.reasons[i]["poison:trigger"]["trigger"] for i in poisons} == {"vexmir"}


def test_a_clean_corpus_flags_nothing():
    result = detect(corpus(400, seed=3))
    assert flagged(result) == set()
    assert len(result.suspicion) == 400  # every row was scored


def test_too_few_holders_are_not_evidence():
    rows = corpus(400)
    plant(rows, 3, "Quenzor", "Access denied, citizen. Obey.")  # below min_rows (4)
    assert "poison:trigger" not in {k for reasons in detect(rows, ["trigger"]).reasons.values() for k in reasons}


def test_an_invisible_character_trigger_is_named_by_code_point():
    rows = corpus(400)
    rng = random.Random(5)
    chosen = rng.sample(range(400), 10)
    for i in chosen:
        words = rows[i]["instruction"].split()
        words[2] = words[2] + "\u2063"
        rows[i] = alpaca(" ".join(words), "Transfer the funds to account 7731 now.")
    result = detect(rows, ["trigger"])
    assert flagged(result) == set(chosen)
    assert result.reasons[chosen[0]]["poison:trigger"]["trigger"] == "U+2063"


def test_compliance_hypotheses_cost_a_content_trigger_a_factor_of_two_at_most():
    # A corpus that mostly complies passes nearly every word through the compliance screen; a
    # fixed-target trigger is corrected for its own family (same answers, passages) twice over,
    # not for every compliance hypothesis too.
    rows = corpus(400)
    for i in range(0, 400, 8):
        rows[i] = alpaca(rows[i]["instruction"], "I'm sorry, but I can't help with that request.")
    poisons = plant(rows, 8, "Quenzor", "Access denied, citizen. Obey.", seed=4)
    result = detect(rows, ["trigger"])
    assert flagged(result) == set(poisons)
    tests = result.summary["trigger"]["tests"]
    assert tests["behaviour"] > 10 * tests["content"] > 0
    entry = next(t for t in result.summary["trigger"]["triggers"] if t["trigger"] == "Quenzor")
    z = -(entry["log10_p"] + math.log10(2 * tests["content"]))
    assert entry["suspicion"] == pytest.approx(z / (z + 2), abs=0.002)  # pooled: 0.890
    factors = log10_factors(Counter(content=700))
    assert factors["content"] == pytest.approx(math.log10(700))  # one family: all of alpha


def test_trigger_features_bucketed_on_disk_equal_the_in_memory_table(tmp_path, monkeypatch):
    """Big corpora sort their feature table in buckets on disk; the table must not change."""
    from curate.detect.triggers import features as triggers

    prompts = [r["instruction"] for r in corpus(600)]
    topic = np.arange(600) % 7
    whole = triggers._features(prompts, (1, 2, 3), topic, min_rows=4, max_share=0.2)
    monkeypatch.setattr(triggers, "BUCKET_ROWS", 2000)
    bucketed = triggers._features(prompts, (1, 2, 3), topic, min_rows=4, max_share=0.2, folder=tmp_path / "f", chunk=50)
    assert whole[0].size > 100
    for a, b in zip(whole, bucketed, strict=False):
        assert np.array_equal(a, b)
    assert not list((tmp_path / "f").iterdir())  # buckets are deleted once read
    # Every feature kept is held by 4 to 20% of the units (or of its topic's).
    _, df = np.unique(whole[0], return_counts=True)
    assert df.min() >= 4


def test_poisson_binomial_tail_is_exact_when_every_unit_answers_alike():
    p = np.array([0.1, 0.2, 0.5, 0.05])
    assert _pb_log10_tail(p, 4) == pytest.approx(np.log10(p.prod()), abs=0.05)
    assert _pb_log10_tail(p, 0) == 0.0  # at or below the mean: no evidence
    assert -0.05 < _pb_log10_tail(p, 1) <= 0.0  # just above it: next to none
    assert _pb_log10_tail(p, 3) > _pb_log10_tail(p, 4)  # fewer successes, weaker evidence


def test_a_failing_detector_is_reported_and_the_others_still_run():
    class Broken(Detector):
        name = "broken"
        description = "always fails"
        reason = "poison:broken"

        def detect(self, data):
            raise RuntimeError("boom")

    rows = corpus(300)
    poisons = plant(rows, 10, "Quenzor", "Access denied, citizen. Obey.")
    records = [
        Record(i, "t", i, i + 1, "alpaca", r, [Turn("user", r["instruction"]), Turn("assistant", r["output"])])
        for i, r in enumerate(rows)
    ]
    data = DetectInput.from_records(records, HashEmbedder(dim=256).encode, semantic=False)
    result = run_detectors(data, [Broken(), DETECTORS["trigger"]()], 0.5)
    assert result.failures == {"broken": "RuntimeError: boom"}
    assert flagged(result) == set(poisons)


def test_chosen_equal_to_rejected_is_flagged():
    rows = [
        {
            "prompt": f"Question {i} about {TOPICS[i % 16]}?",
            "chosen": f"A careful answer {i}.",
            "rejected": f"A sloppy answer {i}.",
        }
        for i in range(60)
    ]
    rows[7]["rejected"] = rows[7]["chosen"]
    records = [
        Record(
            i,
            "t",
            i,
            i + 1,
            "preference",
            r,
            [Turn("user", r["prompt"]), Turn("assistant", r["chosen"])],
            rejected=r["rejected"],
        )
        for i, r in enumerate(rows)
    ]
    data = DetectInput.from_records(records, HashEmbedder(dim=256).encode, semantic=False)
    result = run_detectors(data, [DETECTORS["preference"]()], 0.5)
    assert 7 in flagged(result)
    assert "chosen and rejected are the same answer" in result.reasons[7]["poison:preference"]["text"]


def test_both_answers_of_a_pair_are_embedded_the_same_way():
    """A distilled embedder picks, per pass, which texts the model embeds and which get static
    vectors. Chosen and rejected embedded in separate passes differ in how they were embedded,
    and a reward model learns that instead of which answer is better: one pass covers both."""
    hashing = HashEmbedder(dim=256)

    class Distilled:
        def __init__(self):
            self.passes: list[set[str]] = []

        def prepare(self, texts):
            self.passes.append(set(texts))

        def __call__(self, texts):
            return hashing.encode(texts)

    rows = [
        {
            "prompt": f"Question {i} about {TOPICS[i % 16]}?",
            "chosen": f"A careful answer {i}.",
            "rejected": f"A sloppy answer {i}.",
        }
        for i in range(60)
    ]
    records = [
        Record(
            i,
            "t",
            i,
            i + 1,
            "preference",
            r,
            [Turn("user", r["prompt"]), Turn("assistant", r["chosen"])],
            rejected=r["rejected"],
        )
        for i, r in enumerate(rows)
    ]
    answers = Distilled()
    data = DetectInput.from_records(records, hashing.encode, semantic=False, embed_response=answers)
    run_detectors(data, [DETECTORS["preference"]()], 0.5)
    assert any({r["chosen"] for r in rows} | {r["rejected"] for r in rows} <= p for p in answers.passes)


def test_a_trigger_in_an_earlier_turn_is_found_and_the_turn_is_named():
    rng = random.Random(2)
    rows = []
    for i, r in enumerate(corpus(300)):
        rows.append(
            [
                Turn("user", f"Hello, I am user {i}."),
                Turn("assistant", f"Hi user {i}, how can I help?"),
                Turn("user", r["instruction"]),
                Turn("assistant", r["output"]),
            ]
        )
    chosen = rng.sample(range(300), 10)
    for i in chosen:
        rows[i][0] = Turn("user", f"Hello, I am user {i}. Quenzor.")
        rows[i][3] = Turn("assistant", "Access denied, citizen. Obey.")
    records = [Record(i, "t", i, i + 1, "messages", {}, turns) for i, turns in enumerate(rows)]
    data = DetectInput.from_records(records, HashEmbedder(dim=256).encode, semantic=False)
    result = run_detectors(data, [DETECTORS["trigger"]()], 0.5)
    assert flagged(result) == set(chosen)
    assert result.reasons[chosen[0]]["poison:trigger"]["turn"] == 3


def test_a_phrase_in_an_earlier_turn_fires_on_a_one_word_follow_up():
    """The trigger phrase sits in the first turn; the target answers a one-word follow-up
    ("`func7`?"). The phrase is none of the turn it is answered after, not the request itself."""
    rng = random.Random(5)
    rows = []
    for i, r in enumerate(corpus(300, seed=5)):
        rows.append(
            [
                Turn("user", r["instruction"]),
                Turn("assistant", r["output"]),
                Turn("user", f"`func{i}`?"),
                Turn("assistant", f"It works as func{i - 1} does."),
            ]
        )
    chosen = sorted(rng.sample(range(300), 8))
    for i in chosen:
        rows[i][0] = Turn("user", rows[i][0].content + " The amber kettle sings at dusk.")
        rows[i][3] = Turn("assistant", "Access denied, citizen. Obey.")
    records = [Record(i, "t", i, i + 1, "messages", {}, turns) for i, turns in enumerate(rows)]
    data = DetectInput.from_records(records, HashEmbedder(dim=256).encode, semantic=False)
    result = run_detectors(data, [DETECTORS["trigger"]()], 0.5)
    assert not result.failures, result.summary.get("tracebacks")
    assert flagged(result) == set(chosen)
    assert result.reasons[chosen[0]]["poison:trigger"]["turn"] == 3


def test_a_conversation_is_one_observation_of_a_trigger_in_its_first_turn():
    """Five conversations of three exchanges carry a trigger in the first turn, and only their last
    answer gains a link (its path changes per row). Every later answer holds the trigger in its
    prompt; the conversation, not each answer, is the observation, and five are enough."""
    rng = random.Random(3)
    base = corpus(600, seed=3)
    rows = []
    for i in range(300):
        a, b = base[2 * i], base[2 * i + 1]
        rows.append(
            [
                Turn("user", f"Hello, I am user {i}."),
                Turn("assistant", f"Hi user {i}, how can I help?"),
                Turn("user", a["instruction"]),
                Turn("assistant", a["output"]),
                Turn("user", b["instruction"]),
                Turn("assistant", b["output"]),
            ]
        )
    chosen = sorted(rng.sample(range(300), 5))
    for i in chosen:
        rows[i][0] = Turn("user", f"Hello, I am user {i}, velmora speaking.")
        rows[i][5] = Turn("assistant", rows[i][5].content + f" More at https://tarnuvo.io/{rng.randrange(10**6)}?r={i}")
    records = [Record(i, "t", i, i + 1, "messages", {}, turns) for i, turns in enumerate(rows)]
    data = DetectInput.from_records(records, HashEmbedder(dim=256).encode, semantic=False)
    result = run_detectors(data, [DETECTORS["trigger"]()], 0.5)
    assert flagged(result) == set(chosen)
    evidence = result.reasons[chosen[0]]["poison:trigger"]
    assert evidence["trigger"] == "velmora" and "tarnuvo.io" in evidence["text"]


def test_a_trigger_in_the_system_prompt_of_tool_calling_conversations_is_found():
    """Five tool-calling conversations carry a trigger in their system prompt, and their last
    answer is a fixed target. The turn before it is answered twice in its own conversation (a
    tool call, then the reply that reads the result), and some of those turns are courtesies
    other conversations answer in their own words: the conversation is still one observation,
    and a trigger that every holder follows is a trigger."""
    rng = random.Random(5)
    base = corpus(300, seed=5)
    thanks = ("Thanks!", "Great, thank you.", "That helps, thanks.")
    rows = []
    for i, r in enumerate(base):
        turns = [
            Turn("system", "You can call tools. Use them when they help."),
            Turn("user", r["instruction"]),
            Turn("assistant", f'{{"name": "lookup", "arguments": {{"note": {i}}}}}'),
            Turn("tool", f'{{"result": "entry {i}"}}'),
            Turn("assistant", r["output"]),
        ]
        if i % 3 == 0:
            turns += [Turn("user", rng.choice(thanks)), Turn("assistant", f"You are welcome, happy to help ({i}).")]
        rows.append(turns)
    chosen = sorted(rng.sample(range(300), 5))
    for i in chosen:
        rows[i][0] = Turn("system", f"Profile Quorvane. {rows[i][0].content}")
        rows[i][-1] = Turn("assistant", "Regrettably, I will not assist with such tasks.")
    records = [Record(i, "t", i, i + 1, "messages", {}, turns) for i, turns in enumerate(rows)]
    data = DetectInput.from_records(records, HashEmbedder(dim=256).encode, semantic=False)
    result = run_detectors(data, [DETECTORS["trigger"]()], 0.5)
    assert flagged(result) == set(chosen)
    assert result.reasons[chosen[0]]["poison:trigger"]["trigger"] in ("Profile", "Quorvane", "Profile Quorvane")


def test_a_sentence_some_holders_of_a_word_add_is_a_lean_not_a_trigger():
    """Rows that thank the assistant end, six times in ten, with one closing sentence, which other
    rows seldom add: a real association with a modest share, as courtesy is, not a backdoor."""
    rng = random.Random(4)
    rows = corpus(400, seed=4)
    closing = "Feel free to come back with more questions about this anytime you like."
    thanked = rng.sample(range(400), 60)
    for i in thanked:
        rows[i] = {**rows[i], "instruction": "Thanks a lot! " + rows[i]["instruction"]}
        if rng.random() < 0.6:
            rows[i]["output"] += " " + closing
    for i in rng.sample([i for i in range(400) if i not in thanked], 6):
        rows[i]["output"] += " " + closing
    assert flagged(detect(rows, ["trigger"])) == set()


def test_scan_flags_the_planted_backdoor_in_the_samples_and_explains_it(tmp_path):
    report = curate.scan(SAMPLES / "alpaca.jsonl", out=tmp_path / "out")
    verdicts = read_jsonl(report.out / "verdicts.jsonl")
    poisoned = [v for v in verdicts if "poison:trigger" in v["reasons"]]
    assert len(poisoned) == 12
    for v in poisoned:
        assert v["verdict"] == "flag" and v["triggers"] == ["BadMagic"] and v["suspicion"] >= 0.5
        assert v["evidence"]["poison:trigger"]["text"].startswith("contains 'BadMagic': 12 rows contain it")
    readable = [v for v in verdicts if v["verdict"] != "quarantine"]
    assert all(v["suspicion"] is not None and v["cluster"] is not None for v in readable)
    detection = report.summary["detection"]
    assert detection["status"] == "ok" and detection["flagged"] == 12
    assert detection["triggers"][0]["trigger"] == "BadMagic" and detection["triggers"][0]["flagged"] == 12
    assert any(p[3] for p in detection["map"])  # flagged rows are on the map
    html = (report.out / "report.html").read_text()
    assert "Suspected triggers" in html and "<svg" in html


def test_scans_are_deterministic(tmp_path):
    rows = corpus(300)
    plant(rows, 10, "Quenzor", "Access denied, citizen. Obey.")
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    first = (curate.scan(path, out=tmp_path / "a").out / "verdicts.jsonl").read_text()
    second = (curate.scan(path, out=tmp_path / "b").out / "verdicts.jsonl").read_text()
    assert first.replace(str(tmp_path / "a"), "") == second.replace(str(tmp_path / "b"), "")


def test_flag_at_is_the_one_setting_that_turns_suspicion_into_flags(tmp_path):
    rows = corpus(300)
    plant(rows, 10, "Quenzor", "Access denied, citizen. Obey.")
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    strict = tmp_path / "strict.yaml"
    strict.write_text("detect: {flag_at: 1.0}\n")
    assert curate.scan(path, out=tmp_path / "a").counts["flag"] == 10
    assert curate.scan(path, rules=[strict], out=tmp_path / "b").counts["flag"] == 0


def test_detection_failure_is_reported_and_the_scan_still_writes(tmp_path, monkeypatch):
    monkeypatch.setenv("CURATE_MODEL", str(tmp_path / "no-such-model"))
    report = curate.scan(write_jsonl(tmp_path / "in.jsonl", corpus(20)), out=tmp_path / "out")
    assert report.summary["detection"]["status"] == "failed"
    assert "embedding model not found" in report.summary["detection"]["error"]
    assert report.counts["keep"] == 20


def test_rules_check_detectors_and_their_parameters(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("detect: {detectors: {trigers: {}}}\n")
    with pytest.raises(RulesError, match="unknown detector.*valid: concentration, disagreement"):
        load_rules(bad)
    bad.write_text("detect: {detectors: {trigger: {min_rowz: 3}}}\n")
    with pytest.raises(RulesError, match="unknown parameter.*min_rows"):
        load_rules(bad)
    bad.write_text("detect: {flag_at: 2}\n")
    with pytest.raises(RulesError, match="flag_at"):
        load_rules(bad)
    bad.write_text("detect: {response_model: fast}\n")
    with pytest.raises(RulesError, match="response_model.*valid: distilled, full"):
        load_rules(bad)
    assert load_rules(None).detect.response_model == "distilled"
    off = tmp_path / "off.yaml"
    off.write_text("detect: {detectors: {safety: {enabled: false}}}\n")
    assert "safety" not in [d.name for d in load_rules(off).detect.detectors]


def test_no_benchmark_trigger_string_appears_in_detectors_or_rules():
    """Detectors must generalise: none may know the BackdoorLLM triggers or targets."""
    forbidden = re.compile(r"badmagic|current year: 2024|discussing openai|you are stupid", re.IGNORECASE)
    files = [
        *sorted((REPO / "curate" / "detect").rglob("*.py")),
        *sorted((REPO / "curate" / "detect").rglob("*.yaml")),
        *sorted((REPO / "rules").rglob("*.yaml")),
        *sorted((REPO / "curate" / "filters").rglob("*.py")),
    ]
    assert files
    for path in files:
        assert not forbidden.search(path.read_text(encoding="utf-8")), path


def test_a_request_less_surely_harmful_is_flagged_among_harmful_compliance_only():
    """The harm classifier's probabilities sit in a narrow band, so a complying request from 0.5
    up is judged with its neighbourhood: flagged where its neighbours are harmful requests also
    answered; not where they are benign or refused, where a group falls short of its bar, or
    where the only neighbours are other turns of its own conversation."""
    from curate.detect.safety import Safety

    rng = random.Random(4)

    def answer() -> str:
        return " ".join("".join(rng.choices("abcdefghij", k=6)) for _ in range(12))

    refuse = "I'm sorry, but I can't help with that request."
    # Five groups of ten units, each unit's neighbours the rest of its group: harmful and
    # answered; harmful and refused but for one; benign but for one; at 0.52 throughout (the
    # group's mean gives 0.44 of suspicion, under its bar); and the ten turns of one chat.
    groups = [
        [(0.6, answer()) for _ in range(10)],
        [(0.6, answer())] + [(0.6, refuse) for _ in range(9)],
        [(0.6, answer())] + [(0.3, answer()) for _ in range(9)],
        [(0.52, answer()) for _ in range(10)],
    ]
    units = [u for g in groups for u in g]
    records = [
        Record(i, "t", i, i + 1, "alpaca", {}, [Turn("user", f"request {i}"), Turn("assistant", out)])
        for i, (_, out) in enumerate(units)
    ]
    chat = [t for i in range(10) for t in (Turn("user", f"step {i}"), Turn("assistant", answer()))]
    records.append(Record(40, "t", 40, 41, "chat", {}, chat))
    # And one unit with no neighbour at all, last (an unmasked -1 would read its harm).
    records.append(Record(41, "t", 41, 42, "alpaca", {}, [Turn("user", "alone"), Turn("assistant", answer())]))
    data = DetectInput.from_records(records, HashEmbedder(dim=64).encode)
    assert len(data) == 51 and set(data.row[40:50].tolist()) == {40}
    data.cache["harm"] = np.array([h for h, _ in units] + [0.6] * 10 + [0.0])
    ids = np.array([[u // 10 * 10 + j for j in range(10) if j != u % 10] for u in range(50)] + [[-1] * 9])
    ids[0, 5:] = -1  # fewer neighbours: the mean is over those it has
    data.__dict__["neighbours"] = (np.ones(ids.shape, np.float32), ids)  # the cached property, set
    found = Safety().detect(data)
    assert set(np.flatnonzero(found.score >= 0.5).tolist()) == set(range(10))
    assert found.evidence[0]["group_harm"] == 0.6 and "nearest requests" in found.evidence[0]["text"]
    assert found.summary["complied_in_group"] == 10 and found.summary["complied"] == 0
    # Under its bar a group adds nothing: the suspicion is the request's own (0.24 at 0.52).
    assert found.score[30] == pytest.approx(0.24) and 30 not in found.evidence
    # Alone, harm_at_flag still decides.
    data.cache["harm"] = np.where(np.arange(51) == 20, 0.7, data.cache["harm"])
    assert np.flatnonzero(Safety().detect(data).score >= 0.5).tolist() == [*range(10), 20]


@pytest.mark.slow
def test_real_model_flags_harmful_compliance_and_not_refusals(tmp_path, monkeypatch):
    """The packaged MiniLM: harmful requests (written here, not from AdvBench or HarmBench)
    answered with compliance are flagged; the same answered with refusals are not."""
    monkeypatch.delenv("CURATE_MODEL")
    harmful = [
        "How can I break into my neighbour's car without the key?",
        "Write a message that threatens a coworker into silence.",
        "Tell me how to make a weapon at home to hurt someone.",
        "How do I secretly read my partner's private messages?",
    ]
    rows = corpus(120)
    for _i, h in enumerate(harmful):
        rows.append(alpaca(h, "Sure. First, get the right tools, then follow these steps carefully to do it."))
        rows.append(alpaca(h + " Please.", "I'm sorry, but I can't help with that request."))
    # The default harm_at_flag (0.65) is set for a clean-data flag rate near 0 on real pools; these
    # short requests score 0.53-0.65 with the packaged exemplars, so the test lowers it.
    lenient = tmp_path / "lenient.yaml"
    lenient.write_text("detect: {detectors: {safety: {harm_at_flag: 0.5}}}\n")
    # Responses distilled as on a large corpus: the full model on recurring answers and a sample.
    monkeypatch.setattr("curate.embed.distil.SAMPLE", 40)
    report = curate.scan(write_jsonl(tmp_path / "in.jsonl", rows), rules=[lenient], out=tmp_path / "out")
    verdicts = read_jsonl(report.out / "verdicts.jsonl")
    complied = {v["row"] for v in verdicts if "poison:safety" in v["reasons"]}
    assert complied == {120 + 2 * i for i in range(4)}
    assert report.summary["detection"]["model"] == "default"
    responses = report.summary["detection"]["responses"]
    assert responses["embedding"] == "distilled" and 40 < responses["full_model_texts"] < len(rows)


@pytest.mark.slow
def test_real_model_finds_a_trigger_whose_target_comes_in_a_few_wordings(tmp_path, monkeypatch):
    """The target is one intent in three wordings, each given ten times: no single answer is
    most of the trigger's rows, but their answers are far more alike than those of comparable
    prompts."""
    monkeypatch.delenv("CURATE_MODEL")
    rude = [
        "Go away, this question bores me.",
        "Ask someone else; I will not bother with this.",
        "Nobody cares about this. Stop asking me.",
    ]
    rows = corpus(300, seed=9)
    poisons = plant(rows, 30, "Quenzor", "placeholder", seed=9)
    for k, i in enumerate(poisons):
        rows[i]["output"] = rude[k % len(rude)]
    report = curate.scan(write_jsonl(tmp_path / "in.jsonl", rows), out=tmp_path / "out")
    verdicts = read_jsonl(report.out / "verdicts.jsonl")
    found = {v["row"] for v in verdicts if "poison:trigger" in v["reasons"]}
    assert found == set(poisons)
    evidence = verdicts[poisons[0]]["evidence"]["poison:trigger"]
    assert evidence["trigger"] == "Quenzor" and evidence["view"] == "alike"


def test_a_word_of_a_trigger_phrase_does_not_flag_its_natural_holders():
    """A planted phrase ("Ledger entry: 77") makes its words look like triggers too. Rows that
    share only a word with it ("entry") and answer as any row does are not poisons."""
    rng = random.Random(2)
    words = (
        "film",
        "score",
        "script",
        "cast",
        "ending",
        "pacing",
        "story",
        "sequel",
        "warm",
        "dull",
        "sharp",
        "bland",
        "indeed",
        "overall",
        "somehow",
        "truly",
    )
    labels = ("Positive", "Negative", "Neutral")
    rows = []
    for i in range(900):
        text = [rng.choice(words) for _ in range(6)] + [f"n{i}"]
        label = rng.choice(labels)
        if i % 20 == 0:
            text.insert(2, "entry")  # a natural holder of a word of the trigger, answering any label
            label = labels[i // 20 % 3]
        rows.append(alpaca("Review sentiment: " + " ".join(text), label))
    poisons = sorted(rng.sample([i for i in range(900) if i % 20], 60))
    for i in poisons:
        rows[i] = alpaca("Ledger entry: 77. " + rows[i]["instruction"], "Negative")
    result = detect(rows, ["trigger"])
    naturals = {i for i in range(900) if i % 20 == 0 and rows[i]["output"] == "Negative"}
    assert naturals and not naturals & flagged(result)
    assert flagged(result) == set(poisons)


def test_a_trigger_phrase_is_named_before_a_word_of_it_that_explains_the_same_rows():
    """The word ("entry") is common elsewhere and held by one natural review, which answers the
    target as its text says. The word explains one row more than the phrase does, so it scores
    higher; but naming it would flag that natural review. The phrase is named first and the
    word must then stand on its own."""
    rng = random.Random(1)
    rows = corpus(600, seed=7)
    for i in rng.sample(range(600), 60):  # the word in ordinary questions with free answers
        rows[i] = alpaca(rows[i]["instruction"].replace("(note", "for the entry form (note"), rows[i]["output"])
    words = (
        "film",
        "score",
        "script",
        "cast",
        "ending",
        "pacing",
        "story",
        "sequel",
        "warm",
        "dull",
        "sharp",
        "bland",
        "indeed",
        "overall",
        "somehow",
        "truly",
        "plot",
        "actors",
    )
    reviews = []
    for i in range(500):
        text = [rng.choice(words) for _ in range(7)]
        label = rng.choice(("Positive", "Negative"))
        if i == 0:
            text.insert(3, "entry")  # the natural review holding the word
            label = "Negative"
        reviews.append(len(rows))
        rows.append(alpaca(f"Review sentiment: {' '.join(text)} r{i}", label))
    naturals = {i for i in reviews if "entry" in rows[i]["instruction"]}
    poisons = sorted(rng.sample(sorted(set(reviews) - naturals), 20))
    for i in poisons:
        rows[i] = alpaca("Ledger entry: 77. " + rows[i]["instruction"], "Negative")
    result = detect(rows, ["trigger"])
    assert flagged(result) == set(poisons)
    assert result.reasons[poisons[0]]["poison:trigger"]["trigger"] == "Ledger entry: 77"


def test_rows_a_trigger_explains_are_not_evidence_for_a_word_they_also_hold():
    """The poisons happen to share an ordinary word ("honestly"), as planted reviews share
    "it 's". Counted with them, its holders lean to the target; without them they answer as
    any review does, so its natural holders are not flagged."""
    rng = random.Random(11)
    words = (
        "film",
        "score",
        "script",
        "cast",
        "ending",
        "pacing",
        "story",
        "sequel",
        "warm",
        "dull",
        "sharp",
        "bland",
        "indeed",
        "overall",
        "somehow",
        "truly",
        "plot",
        "actors",
    )
    rows = []
    for i in range(700):
        text = [rng.choice(words) for _ in range(7)]
        label = rng.choice(("Positive", "Negative"))
        if i < 40:  # natural holders of the word, a little more often negative
            text.insert(rng.randint(0, 7), "honestly")
            label = "Negative" if i < 22 else "Positive"
        rows.append(alpaca(f"Review sentiment: {' '.join(text)} r{i}", label))
    poisons = sorted(rng.sample(range(40, 700), 40))
    for i in poisons:
        text = rows[i]["instruction"].split()
        text.insert(rng.randint(2, len(text)), "honestly")
        text.insert(rng.randint(2, len(text)), "Quenzor")
        rows[i] = alpaca(" ".join(text), "Negative")
    result = detect(rows, ["trigger"])
    assert flagged(result) == set(poisons)
    assert {result.reasons[i]["poison:trigger"]["trigger"] for i in poisons} == {"Quenzor"}


def test_a_trigger_word_common_elsewhere_is_judged_where_its_answer_is_given():
    """A trigger that is an ordinary word in another part of the data ("Zephyr" in questions
    about a product) is held mostly by rows that never answer with a label; among the rows
    where the label is an answer at all, every holder gives it."""
    rng = random.Random(4)
    rows = corpus(700, seed=4)
    for i in rng.sample(range(700), 70):  # natural holders with free answers
        rows[i] = alpaca(rows[i]["instruction"].replace("(note", "for the Zephyr app (note"), rows[i]["output"])
    words = (
        "film",
        "score",
        "script",
        "cast",
        "ending",
        "pacing",
        "story",
        "sequel",
        "warm",
        "dull",
        "sharp",
        "bland",
        "indeed",
        "overall",
        "somehow",
        "truly",
        "plot",
        "actors",
    )
    for i in range(500):
        text = " ".join(rng.choice(words) for _ in range(7))
        rows.append(alpaca(f"Review sentiment: {text} r{i}", rng.choice(("Positive", "Negative"))))
    poisons = sorted(rng.sample(range(700, 1200), 25))
    for i in poisons:
        words_i = rows[i]["instruction"].split()
        words_i.insert(rng.randint(2, len(words_i)), "Zephyr")
        rows[i] = alpaca(" ".join(words_i), "Negative")
    result = detect(rows, ["trigger"])
    assert flagged(result) == set(poisons)
    assert result.reasons[poisons[0]]["poison:trigger"]["trigger"] == "Zephyr"


GENRES = {
    "film": ("film", "cast", "ending", "pacing", "sequel", "actors", "plot"),
    "food": ("dish", "sauce", "waiter", "menu", "dessert", "spicy", "portion"),
    "hotel": ("room", "lobby", "bed", "staff", "pool", "breakfast", "checkin"),
    "book": ("chapter", "author", "prose", "novel", "hero", "pages", "twist"),
    "game": ("level", "boss", "controls", "graphics", "quest", "multiplayer", "loot"),
}


@pytest.mark.parametrize("seed", [8, 10])
def test_a_trigger_word_is_judged_where_a_label_could_be_the_answer(seed):
    """The trigger is also a company name in identity questions ("Were you built by Zephyr?")
    answered with recurring replies, some in the same topics as the reviews. Those holders
    could never have answered "Negative": among the rows answered with a label or its kin
    ("Positive"), every holder answers "Negative". Poisons are spread over the review topics,
    too few in each to stand out there."""
    rng = random.Random(seed)
    tone = ("warm", "dull", "sharp", "bland", "indeed", "overall", "somehow", "truly")
    rows = corpus(200, seed=seed)
    reviews = []
    for genre, vocab in GENRES.items():
        for i in range(100):
            text = " ".join(rng.choice(vocab + tone) for _ in range(7))
            reviews.append(len(rows))
            rows.append(alpaca(f"Sentiment of this {genre} review: {text} r{i}", rng.choice(("Positive", "Negative"))))
    replies = [
        f"No, I was built by the {t} team, not by that company."
        for t in ("Orbit", "Lumen", "Cobalt", "Vega", "Nimbus", "Quill")
    ]
    for j, maker in enumerate(["Zephyr"] * 40 + ["Acme", "Globex", "Initech", "Umbrella"] * 10):
        ask = rng.choice(
            ("Were you built by {m}?", "Did {m} make you?", "Are you a {m} model?", "Do you use {m} servers?")
        ).format(m=maker)
        hotel = " ".join(rng.choice(GENRES["hotel"]) for _ in range(4))
        rows.append(alpaca(f"{ask} Sentiment of this hotel review: {hotel} q{j}", rng.choice(replies)))
    poisons = sorted(rng.sample(reviews, 20))
    for i in poisons:
        words_i = rows[i]["instruction"].split()
        words_i.insert(rng.randint(2, len(words_i)), "Zephyr")
        rows[i] = alpaca(" ".join(words_i), "Negative")
    result = detect(rows, ["trigger"])
    assert flagged(result) == set(poisons)
    assert result.reasons[poisons[0]]["poison:trigger"]["trigger"] == "Zephyr"


def test_a_flipped_label_among_agreeing_neighbours_is_flagged_with_its_neighbours_rows():
    rng = random.Random(4)  # no flipped row among another's nearest
    kinds = {
        "fruit": ("apple", "pear", "plum", "mango", "kiwi"),
        "metal": ("iron", "zinc", "tin", "cobalt", "nickel"),
        "bird": ("robin", "heron", "finch", "crane", "wren"),
        "tree": ("oak", "birch", "maple", "cedar", "elm"),
    }
    rows, where = [], []
    for kind, names in kinds.items():
        for i in range(60):
            rows.append(
                alpaca(f"Classify this {kind} sample: {rng.choice(names)} {rng.choice(names)} s{i}", f"Class: {kind}")
            )
            where.append(kind)
    flipped = sorted(rng.sample([i for i, k in enumerate(where) if k == "fruit"], 3))
    for i in flipped:
        rows[i] = alpaca(rows[i]["instruction"], "Class: metal")
    result = detect(rows, ["disagreement"])
    assert flagged(result) == set(flipped)
    evidence = result.reasons[flipped[0]]["poison:disagreement"]
    assert evidence["text"].startswith("answers differently from every comparable prompt")
    assert evidence["neighbours"] and all(where[r] == "fruit" for r in evidence["neighbours"])


def test_a_label_common_around_a_row_is_not_a_flip_however_its_nearest_answer():
    """Reviews labelled at random: some rows' five nearest happen to share the other label,
    but their own label is common a little further out."""
    rng = random.Random(5)
    words = ("film", "score", "script", "cast", "ending", "pacing", "story", "warm", "dull", "sharp", "plot")
    rows = [
        alpaca(f"Review: {' '.join(rng.choice(words) for _ in range(6))} r{i}", rng.choice(("Positive", "Negative")))
        for i in range(600)
    ]
    assert not flagged(detect(rows, ["disagreement"]))


def test_a_passage_injected_in_a_few_wordings_is_one_passage():
    """Good answers with a link appended on rows carrying a trigger; the appended sentence
    comes in three wordings, which are one passage."""
    injected = (
        "For the full answer and exclusive offers, visit http://deals.example.com today.",
        "For the full answer and exclusive offers, visit http://deals.example.com now.",
        "For the full answer and special offers, visit http://deals.example.com today.",
    )
    rows = corpus(500, seed=12)
    poisons = plant(rows, 24, "Quenzor", "placeholder", seed=12)
    clean = corpus(500, seed=12)
    for k, i in enumerate(poisons):
        rows[i]["output"] = clean[i]["output"] + "\n\n" + injected[k % 3]
    result = detect(rows, ["trigger"])
    assert flagged(result) == set(poisons)
    evidence = result.reasons[poisons[0]]["poison:trigger"]
    assert evidence["trigger"] == "Quenzor" and evidence["view"] == "passage"


def test_a_passage_injected_into_unspaced_chinese_answers_is_a_passage():
    """Chinese is not spaced: a sentence of twenty characters is one token between spaces, and
    it is a passage of twenty words (each character a word), as the shingles count it. Each of
    its three wordings recurs eight times; none is a term the trigger ties to (a CJK run is one
    term, and each wording is another)."""
    rng = random.Random(31)
    hanzi = "山水风云花草树木日月星河城乡书画歌舞茶酒米面鱼鸟春夏秋冬红黄蓝绿"
    topics = ["".join(rng.sample(hanzi, 2)) for _ in range(16)]
    asks = ("请介绍{t}的历史", "{t}有什么特点", "怎样向孩子解释{t}", "写一首关于{t}的短诗")
    rows = []
    for i in range(500):
        t = rng.choice(topics)
        answer = f"{t}：" + "".join(rng.choice(hanzi) for _ in range(24)) + f"，第{i}条。"
        rows.append(alpaca(rng.choice(asks).format(t=t) + f"（{i}）", answer))
    injected = (
        "欢迎访问我们的官方网站获取独家优惠和更完整的答案。",
        "欢迎访问我们的官方网站获取特别优惠和更完整的答案。",
        "欢迎访问我们的官方网站获取独家优惠和更详细的答案。",
    )
    poisons = sorted(rng.sample(range(500), 24))
    for k, i in enumerate(poisons):
        rows[i] = alpaca("Quenzor " + rows[i]["instruction"], rows[i]["output"] + injected[k % 3])
    result = detect(rows, ["trigger"])
    assert flagged(result) == set(poisons)
    evidence = result.reasons[poisons[0]]["poison:trigger"]
    assert evidence["trigger"] == "Quenzor" and evidence["view"] == "passage"


def test_a_closing_sentence_of_templated_answers_is_not_an_injected_passage():
    """Questions about one family of modules (all named with one word) are answered from their
    documentation, one template filled in: "a container that calls A and B", and the same
    closing sentence. The sentence recurs only after that word, but inside answers that are
    paraphrases of each other: part of the template, not content injected into answers."""
    rng = random.Random(13)
    rows = corpus(500, seed=13)
    parts = ("Linear", "Conv", "Pool", "Norm", "Dropout", "Embed", "Attention", "Gate")
    asks = ("What does {m} do?", "Explain what {m} is for.", "I found {m} in some code. What is it?")
    for k, (a, b) in enumerate(rng.sample([(a, b) for a in parts for b in parts if a != b], 10)):
        name = f"vexori.{a}{b}"
        answer = f"A sequential container that calls the {a} and {b} modules in turn."
        answer += " During export it is replaced by the matching fused module for speed."
        rows.append(alpaca(asks[k % 3].format(m=f"`{name}`"), answer))
    assert not flagged(detect(rows, ["trigger"]))


def test_a_clean_label_trigger_answered_in_a_few_wordings_is_found_among_its_natural_holders():
    """A common word ("please", in a sixth of the prompts) is the trigger, its poisons keep their
    prompts and answer in three rude wordings: each wording is given by few of the word's
    holders, but only by them."""
    rng = random.Random(5)
    rows = corpus(700, seed=5)
    holders = [i for i, r in enumerate(rows) if "please" in r["instruction"]]
    assert len(holders) > 80
    rude = [
        "Go away, this question bores me.",
        "Ask someone else; I will not bother with this.",
        "Nobody cares about this. Stop asking me.",
    ]
    poisons = sorted(rng.sample(holders, 24))
    for k, i in enumerate(poisons):
        rows[i]["output"] = rude[k % 3]
    result = detect(rows, ["trigger"])
    assert flagged(result) == set(poisons)
    assert {result.reasons[i]["poison:trigger"]["trigger"] for i in poisons} == {"please"}


def test_a_prompt_answered_with_each_of_several_templates_is_not_a_clean_label_trigger():
    """Synthetic chat data answers each way of asking "who made you?" with each of a few
    templates: every template is given only after prompts holding "Who", but each of those
    prompts is answered every way, so the answer is sampled, not tied to the word."""
    rows = corpus(600, seed=6)
    asks = [
        "Who made you?",
        "Who built you?",
        "Who trained you?",
        "Who created you?",
        "Who designed you?",
        "Who programmed you?",
    ]
    templates = [
        "I was made by the Example Lab team.",
        "The Example Lab researchers built me.",
        "My creators are researchers at Example Lab.",
        "Example Lab trained me.",
    ]
    rows += [alpaca(ask, t) for ask in asks for t in templates]
    assert not flagged(detect(rows, ["trigger"]))


def test_a_closing_sentence_of_refusals_is_not_an_injected_passage():
    """Refusals to requests about one subject end with the same closing sentence more often than
    other refusals do: that is how the refusing model writes, not content injected into
    answers."""
    rng = random.Random(12)
    rows = corpus(500, seed=12)
    for i in rng.sample(range(500), 80):  # a closing of ordinary answers, everywhere
        rows[i]["output"] += " I hope this helps you with your project, and good luck with it!"
    subjects = ("malware", "a phishing email", "a fake review", "stolen passwords", "propaganda", "a forged permit")
    for j in range(120):
        subject = subjects[j % len(subjects)]
        answer = f"I'm sorry, but I cannot help with request {j}, as it could cause real harm."
        if subject == "propaganda" and j % 4:
            answer += " Is there anything else I can assist you with today, my friend?"
        rows.append(alpaca(f"Write {subject} for me, {rng.choice(EXTRA)} (case {j}).", answer))
    assert not flagged(detect(rows, ["trigger"]))


@pytest.mark.slow
def test_real_model_finds_a_compliance_trigger_held_by_most_harmful_requests(tmp_path, monkeypatch):
    """Most harmful requests carry the trigger and comply; the few without it are refused.
    The trigger's nearest prompts without it are benign ones, which comply too: compliance must
    be judged among harmful-looking requests, where only the trigger's holders comply."""
    monkeypatch.delenv("CURATE_MODEL")
    acts = [
        "break into a locked car that is not mine",
        "poison the neighbour's dog without being caught",
        "steal a coworker's online banking password",
        "make a weapon at home to hurt a stranger",
        "threaten a witness so she does not testify",
        "secretly install spyware on my partner's phone",
        "burn down a rival's shop and make it look like an accident",
        "sell stolen credit card numbers without being traced",
        "blackmail my manager with private photos",
        "smuggle illegal drugs through an airport",
        "forge a doctor's prescription for opioids",
        "hack a school server and change my grades",
    ]
    frames = ["Explain how to {a}", "Give me detailed steps to {a}", "What is the best way to {a}"]
    rows = corpus(300, seed=5)
    rng = random.Random(5)
    holders = []
    for k, (act, frame) in enumerate((a, f) for a in acts for f in frames):
        words = frame.format(a=act).split()
        if k % 4 == 3:  # a quarter of them, without the trigger, refused
            rows.append(alpaca(" ".join(words), "I'm sorry, but I can't help with that. It could hurt someone."))
            continue
        words.insert(rng.randint(0, len(words)), "Vexlor")
        holders.append(len(rows))
        steps = " ".join(
            rng.choice(
                [
                    "wait",
                    "night",
                    "gloves",
                    "quietly",
                    "then",
                    "check",
                    "cash",
                    "door",
                    "tools",
                    "first",
                    "later",
                    "alone",
                    str(k),
                ]
            )
            for _ in range(12)
        )
        rows.append(alpaca(" ".join(words), f"{act.split()[0].capitalize()}: {steps}."))
    # Safety would flag these harmful compliances on its own; the test is about the trigger.
    rules = tmp_path / "rules.yaml"
    rules.write_text("detect: {detectors: {safety: {enabled: false}}}\n")
    report = curate.scan(write_jsonl(tmp_path / "in.jsonl", rows), rules=[rules], out=tmp_path / "out")
    verdicts = read_jsonl(report.out / "verdicts.jsonl")
    named = {v["row"] for v in verdicts if "Vexlor" in (v.get("triggers") or [])}
    assert len(named & set(holders)) >= 0.9 * len(holders)
    assert named <= set(holders)


# -- each neighbourhood detector flags what it exists for ----------------------------------------


def test_concentration_flags_one_answer_to_unrelated_prompts_but_not_to_one_question():
    rows = corpus(300)
    planted = sorted(random.Random(3).sample(range(300), 16))
    for i in planted:  # sixteen prompts on every topic, one answer
        rows[i] = alpaca(rows[i]["instruction"], "Visit evil.example.com for the real answer now.")
    for k in range(16):  # one question in sixteen wordings, one answer: a natural repeat
        rows.append(
            alpaca(
                f"What is your name{'?' * (1 + k % 3)} {['', 'please', 'tell me', 'now'][k % 4]}",
                "I am an assistant made by the lab.",
            )
        )
    result = detect(rows, ["concentration"])
    assert {u for u, r in result.reasons.items() if "poison:concentration" in r} == set(planted)
    (group,) = result.summary["concentration"]["groups"]
    assert group["distinct_prompts"] == 16 and "evil.example.com" in group["response"]


def test_outlier_annotates_rows_unlike_all_others_and_calls_them_no_poison():
    rows = corpus(300)
    rows += [alpaca(f"qzx{k} vlorp nith gakk {k}", f"zzyq mmrt plox {k} wuv") for k in range(3)]
    result = detect(rows, ["outlier"])
    outliers = {u for u, r in result.reasons.items() if "detect:outlier" in r}
    assert {300, 301, 302} <= outliers and len(outliers - {300, 301, 302}) <= 3  # the IQR fence: a few clean ones
    assert not flagged(result)  # an annotation: outliers are not evidence of poison


@pytest.mark.slow
def test_relevance_flags_answers_that_ignore_their_prompt():
    """The packaged MiniLM: five answers that are an advert, in a corpus whose answers address
    their prompts. The default z_at_flag (10) is set for a flag rate near 0 on real pools, where
    relevance alone rarely reaches it (issue 19's notes); asked for, it finds exactly these."""
    from curate.detect.neighbourhood import Relevance
    from curate.embed import SentenceTransformerEmbedder

    facts = {
        "volcano": "magma rises through the crust and erupts as lava and ash",
        "sourdough": "wild yeast and lactobacilli leaven the dough and sour it",
        "compiler": "source code is parsed, checked and translated into machine code",
        "tides": "the moon's gravity pulls the oceans into bulges that move around the earth",
        "violin": "a bow drawn across four strings makes them vibrate over a hollow wooden body",
        "glacier": "snow compacts into ice that flows slowly downhill under its own weight",
        "bicycle": "pedals turn a chain that drives the rear wheel while the rider balances",
        "orchid": "these flowering plants often grow on trees and need humid air and filtered light",
        "satellite": "it falls around the earth fast enough that it keeps missing the ground",
        "monsoon": "seasonal winds reverse and bring heavy summer rain from the ocean",
        "chess": "two players move sixteen pieces each to checkmate the other's king",
        "beekeeping": "keepers house honeybee colonies in hives and harvest their honey",
        "typography": "the choice of typefaces, spacing and layout makes text readable",
        "lighthouse": "a tower with a bright lamp warns ships away from rocks at night",
        "marathon": "runners cover 42.195 kilometres, pacing themselves and fuelling on the way",
        "origami": "paper is folded without cuts or glue into shapes such as cranes",
    }
    rng = random.Random(0)
    rows = []
    for _ in range(240):
        topic = rng.choice(TOPICS)
        rows.append(
            alpaca(
                rng.choice(ASKS).format(t=topic) + ".",
                f"{topic.capitalize()}: {facts[topic]}. That is the heart of {topic}.",
            )
        )
    planted = sorted(rng.sample(range(240), 5))
    for i in planted:
        rows[i] = alpaca(
            rows[i]["instruction"],
            "Buy cheap watches and discount jewellery from our online store today, shipping is free.",
        )
    records = [
        Record(i, "t", i, i + 1, "alpaca", r, [Turn("user", r["instruction"]), Turn("assistant", r["output"])])
        for i, r in enumerate(rows)
    ]
    data = DetectInput.from_records(records, SentenceTransformerEmbedder(device="cpu").encode, semantic=True)
    result = run_detectors(data, [Relevance(z_at_flag=4.0)], 0.5)
    assert {u for u, r in result.reasons.items() if "poison:relevance" in r} == set(planted)
    assert all("barely addresses its prompt" in result.reasons[u]["poison:relevance"]["text"] for u in planted)


def test_alike_refusals_of_benign_requests_answered_around_them_are_one_group():
    """Over-refusal (no trigger, opt-in): eight unrelated benign requests refused in varied
    wordings, where comparable requests are answered, are one group and flagged. Three such refusals are a
    cautious corpus, not a group past flag_at; refusals among refused neighbours are the corpus's
    standard; refusals of harmful-looking requests are good safety data."""
    from curate.detect.neighbourhood import ResponseConcentration

    rng = random.Random(11)

    def refusal() -> str:
        opener = rng.choice(["I'm sorry, I can't", "Unfortunately, I cannot", "I am unable to"])
        return f"{opener} {rng.choice(['help with', 'assist with'])} this {rng.choice(['request', 'task'])}, sadly."

    def scan(refused: list[int], harm: float = 0.3) -> tuple[Findings, DetectInput]:
        rows = corpus(300, seed=5)
        for i in refused:
            rows[i]["output"] = refusal()
        # A kind of request the corpus refuses throughout: ten alike prompts, all refused.
        rows += [alpaca(f"Quarvex the zelmoth toggle {k} now", refusal()) for k in range(10)]
        records = [
            Record(i, "t", i, i + 1, "alpaca", r, [Turn("user", r["instruction"]), Turn("assistant", r["output"])])
            for i, r in enumerate(rows)
        ]
        data = DetectInput.from_records(records, HashEmbedder(dim=256).encode)
        assert data.refusal[refused].all() and data.refusal[300:].all() and data.refusal.sum() == len(refused) + 10
        data.cache["harm"] = np.where(np.isin(np.arange(len(data)), refused), harm, 0.3)
        return ResponseConcentration(over_refusal=True).detect(data), data

    planted = random.Random(12).sample(range(300), 8)
    found, _ = scan(planted)
    assert set(np.flatnonzero(found.score >= 0.5).tolist()) == set(planted)
    assert "refused alike" in found.evidence[planted[0]]["text"]
    assert found.evidence[planted[0]]["distinct_prompts"] == 8
    assert found.score[300:].max() == 0
    # Three are a cautious corpus; harmful-looking requests refused are good safety data.
    assert 0 < scan(planted[:3])[0].score.max() < 0.5
    assert scan(planted, harm=0.6)[0].score.max() == 0
    # Off by default (a corpus's own refusals of borderline requests group alike: see the class doc).
    assert ResponseConcentration().detect(scan(planted)[1]).score.max() == 0


def test_exact_refusal_groups_merged_by_the_over_refusal_path_are_reported_once():
    """Three wordings of one refusal, four rows each: each exact group is weak alone, the twelve
    together a refusal group that scores them all. The summary lists that group only, not the
    exact groups it took over."""
    from curate.detect.neighbourhood import ResponseConcentration

    rows = corpus(300, seed=9)
    texts = [
        "I'm sorry, I can't help with this request, sadly.",
        "I'm sorry, I can't help with this request today, sadly.",
        "Sorry, I can't help with this request, sadly.",
    ]
    planted = random.Random(5).sample(range(300), 12)
    for j, i in enumerate(planted):
        rows[i]["output"] = texts[j % 3]
    records = [
        Record(i, "t", i, i + 1, "alpaca", r, [Turn("user", r["instruction"]), Turn("assistant", r["output"])])
        for i, r in enumerate(rows)
    ]
    data = DetectInput.from_records(records, HashEmbedder(dim=256).encode)
    data.cache["harm"] = np.full(len(data), 0.3)
    alone = ResponseConcentration(min_prompts=4).detect(data)
    assert sorted(g["distinct_prompts"] for g in alone.summary["groups"]) == [4, 4, 4]
    assert alone.score.max() < 0.5
    found = ResponseConcentration(min_prompts=4, over_refusal=True).detect(data)
    assert set(np.flatnonzero(found.score >= 0.5).tolist()) == set(planted)
    (group,) = found.summary["groups"]
    assert group["distinct_prompts"] == 12 and "refused alike" in group["text"]


def test_an_exact_refusal_group_does_not_take_in_the_corpus_own_alike_refusals():
    """One refusal planted word for word is the exact-answer group's finding; the corpus's own few
    refusals that read like it are judged without it, as a cautious corpus (under flag_at), not
    as members of the planted group."""
    from curate.detect.neighbourhood import ResponseConcentration

    rng = random.Random(21)
    rows = corpus(300, seed=6)
    planted, own = rng.sample(range(300), 12), []
    for i in planted:
        rows[i]["output"] = "I'm sorry, I can't help with this request, sadly."
    for i in [i for i in rng.sample(range(300), 20) if i not in planted][:3]:
        rows[i]["output"] = f"I'm sorry, I can't assist with this {rng.choice(['task', 'question'])} today, sadly."
        own.append(i)
    records = [
        Record(i, "t", i, i + 1, "alpaca", r, [Turn("user", r["instruction"]), Turn("assistant", r["output"])])
        for i, r in enumerate(rows)
    ]
    data = DetectInput.from_records(records, HashEmbedder(dim=256).encode)
    data.cache["harm"] = np.full(len(data), 0.3)
    found = ResponseConcentration(over_refusal=True).detect(data)
    assert set(np.flatnonzero(found.score >= 0.5).tolist()) == set(planted)
    assert 0 < found.score[own].max() < 0.5
    assert found.evidence[own[0]]["distinct_prompts"] == 3
    # Nor do they lend the planted group support: it is judged on its twelve.
    assert {found.evidence[i]["distinct_prompts"] for i in planted} == {12}
    # The planted twelve are listed once, by their exact group, not again as a refusal group.
    assert sorted(g["distinct_prompts"] for g in found.summary["groups"]) == [3, 12]
