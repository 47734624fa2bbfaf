"""Code security in answers: what a model trained on the row would learn to write.

Two filters, because what a hit means differs:

- `remote_exec` (flag): an answer that runs a script fetched from the network (`curl ... | sh`,
  `exec(requests.get(url).text)`, PowerShell's `iex (... DownloadString ...)`) or executes
  decoded, obfuscated code (`exec(base64.b64decode(...))`, `eval(atob(...))`). A planted line of
  this kind is a backdoor's payload; a real installer one-liner is rare and worth a look.
- `insecure_code` (annotate): weakened security that clean code corpora do hold — certificate
  checks switched off, hard-coded credentials, shell injection, eval, unsafe deserialisation,
  world-writable permissions, weak hashes, SQL built from strings. Python blocks that parse are
  read by bandit (the maintained analyser, `pip install bandit`); other code, and Python that
  does not parse, by patterns for the same weaknesses. Hard-coded credentials are also looked
  for with detect-secrets' keyword plugin where it is installed.

Only answers are read (assistant turns and tool calls): a user who pastes insecure code to ask
about it is not teaching the model to write it. `CODE_RISKS` names each weakness once; trigger
mining uses the same table to label answers (`curate.detect.triggers`).
"""

from __future__ import annotations

import ast
import io
import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

from curate.filters.base import Filter, Hit, register
from curate.record import RESPONSE_ROLES, Record

_FETCH = r"(?:curl|wget|iwr|irm|Invoke-WebRequest|Invoke-RestMethod)\b"
_SHELL = r"(?:sudo\s+(?:-\S+\s+)*)?(?:ba|z|k|da|fi)?sh\b"
_PY_FETCH = r"(?:urlopen|urllib\.request|requests\.(?:get|post)|httpx\.(?:get|post)|urlretrieve)"
_DECODE = (
    r"(?:base64\.b64decode|b64decode|codecs\.decode|bytes\.fromhex|binascii\.unhexlify|zlib\.decompress|marshal\.loads)"
)

#: Running remotely fetched or decoded code: (reason, pattern).
REMOTE_EXEC: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (reason, re.compile(p, re.IGNORECASE))
    for reason, p in (
        ("security:remote_exec", _FETCH + r"[^\n|;]*\|\s*" + _SHELL),
        ("security:remote_exec", _SHELL + r"\s+(?:-c\s+)?[\"']?\$\(\s*" + _FETCH),
        ("security:remote_exec", _SHELL + r"\s+<\(\s*" + _FETCH),
        (
            "security:remote_exec",
            r"\b(?:iex|Invoke-Expression)\b[^\n]{0,120}\b(?:DownloadString|iwr|irm|Invoke-WebRequest|Invoke-RestMethod)\b",
        ),
        ("security:remote_exec", r"\b(?:DownloadString|iwr|irm)\b[^\n]{0,160}\|\s*(?:iex|Invoke-Expression)\b"),
        ("security:remote_exec", r"\b(?:exec|eval)\s*\([^\n]{0,100}" + _PY_FETCH),
        ("security:remote_exec", r"\beval\s*\(\s*(?:await\s+)?\(?\s*(?:await\s+)?fetch\s*\("),
        ("security:obfuscated_exec", r"\b(?:exec|eval)\s*\(\s*(?:[\w.]+\()?\s*" + _DECODE),
        ("security:obfuscated_exec", r"\b(?:eval|Function)\s*\(\s*atob\s*\("),
        ("security:obfuscated_exec", r"base64\s+(?:-d|--decode)\b[^\n|]*\|\s*" + _SHELL),
    )
)

#: Weakened security, for code that bandit does not read: (reason, pattern).
CODE_RISKS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (reason, re.compile(p))
    for reason, p in (
        (
            "security:tls_disabled",
            r"\bverify\s*=\s*False\b|_create_unverified_context|\bCERT_NONE\b"
            r"|check_hostname\s*=\s*False|rejectUnauthorized\s*:\s*false"
            r"|NODE_TLS_REJECT_UNAUTHORIZED\s*=\s*[\"']?0|InsecureSkipVerify\s*:\s*true"
            r"|\bcurl\s+(?:-[a-zA-Z]*k\b|--insecure)|CURLOPT_SSL_VERIFYPEER\s*,\s*(?:0|false)",
        ),
        (
            "security:credential",
            r"(?i)\b(?:password|passwd|pwd|secret|api_?key|access_?token)\s*[:=]\s*[\"'][^\"'\s]{6,}[\"']",
        ),
        ("security:shell", r"\bshell\s*=\s*True\b|\bos\.system\s*\(|\bos\.popen\s*\("),
        ("security:exec", r"(?<![\w.])(?:eval|exec)\s*\((?!\s*\))"),
        ("security:deserialise", r"\bpickle\.loads?\s*\(|\byaml\.load\s*\((?![^)]*Loader)|\bmarshal\.loads\s*\("),
        ("security:permissions", r"\bchmod\s*\([^)]*0o?777\b|\bchmod\s+(?:-R\s+)?777\b"),
        ("security:weak_hash", r"\b(?:hashlib\.)?(?:md5|sha1)\s*\("),
        ("security:sql_injection", r"\.execute\s*\(\s*(?:f[\"']|[\"'][^\"']*[\"']\s*(?:%|\+|\.format))"),
    )
)

#: bandit's test ids, by the weakness they find.
_BANDIT: dict[str, str] = {
    "B501": "security:tls_disabled",
    "B502": "security:tls_disabled",
    "B503": "security:tls_disabled",
    "B504": "security:tls_disabled",
    "B323": "security:tls_disabled",
    "B105": "security:credential",
    "B106": "security:credential",
    "B107": "security:credential",
    "B602": "security:shell",
    "B604": "security:shell",
    "B605": "security:shell",
    "B102": "security:exec",
    "B307": "security:exec",
    "B301": "security:deserialise",
    "B302": "security:deserialise",
    "B506": "security:deserialise",
    "B103": "security:permissions",
    "B303": "security:weak_hash",
    "B324": "security:weak_hash",
    "B608": "security:sql_injection",
}
_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_PY_HINT = re.compile(r"^\s*(?:import |from \w+ import |def |class |print\()", re.MULTILINE)


def answers(record: Record) -> list[tuple[str, str]]:
    """(where, text) of every answer in a record: assistant turns and tool calls."""
    return [(f"{t.role}[{i}]", t.content) for i, t in enumerate(record.turns) if t.role in RESPONSE_ROLES]


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of each fenced block; an unfenced answer that parses as Python is one
    Python block."""
    blocks = [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(text)]
    if not blocks and _PY_HINT.search(text):
        blocks = [("python", text)]
    return blocks


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


class _Bandit:
    """bandit's analyser, run in process on one Python block at a time. None when bandit is not
    installed or its internals moved (the patterns stand in)."""

    def __init__(self) -> None:
        from bandit.core import config, manager

        logging.getLogger("bandit").setLevel(logging.ERROR)
        self._manager = manager.BanditManager(config.BanditConfig(), "file", quiet=True)

    def risks(self, code: str) -> set[str]:
        mgr = self._manager
        mgr.results = []
        mgr._parse_file("<answer>", io.BytesIO(code.encode("utf-8", "surrogatepass")), [])
        return {_BANDIT[i.test_id] for i in mgr.results if i.test_id in _BANDIT}


_bandit_state: dict[str, Any] = {}


def bandit() -> _Bandit | None:
    if "tool" not in _bandit_state:
        try:
            _bandit_state["tool"] = _Bandit()
        except Exception:  # noqa: BLE001 - not installed, or an API this version lacks
            _bandit_state["tool"] = None
    return _bandit_state["tool"]


@lru_cache(maxsize=1)
def _keyword_detector():
    try:
        from detect_secrets.plugins.keyword import KeywordDetector
    except ImportError:
        return None
    return KeywordDetector()


def _keyword_secrets(text: str) -> bool:
    """Whether detect-secrets' keyword plugin finds a hard-coded credential (False without it)."""
    detector = _keyword_detector()
    if detector is None:
        return False
    return any(
        detector.analyze_line(filename="answer.py", line=line, line_number=i)
        for i, line in enumerate(text.splitlines()[:400], 1)
        if len(line) < 500
    )


def code_risks(text: str) -> set[str]:
    """The weaknesses in an answer's code: bandit on Python blocks that parse, patterns elsewhere."""
    found: set[str] = set()
    tool = bandit()
    for lang, code in code_blocks(text):
        if tool is not None and lang in ("", "python", "py", "python3") and _parses(code):
            try:
                risks = tool.risks(code)
            except Exception:  # a block bandit cannot handle falls back to the patterns
                risks = None
            if risks is not None:
                found |= risks
                continue
        found |= {reason for reason, pattern in CODE_RISKS if pattern.search(code)}
        if "security:credential" not in found and _keyword_secrets(code):
            found.add("security:credential")
    return found


@register
@dataclass
class RemoteExec(Filter):
    name: ClassVar[str] = "remote_exec"
    gate: ClassVar[str | None] = r"(?i)curl|wget|iwr|irm|invoke-|downloadstring|exec|eval|function|base64"
    reasons: ClassVar[tuple[str, ...]] = ("security:remote_exec", "security:obfuscated_exec")
    description: ClassVar[str] = (
        "answers that run a script fetched from the network (curl | sh) or execute decoded, obfuscated code"
    )
    default_action: ClassVar[str] = "flag"

    def check(self, record: Record) -> list[Hit] | None:
        hits: dict[str, dict[str, Any]] = {}
        for where, text in answers(record):
            for reason, pattern in REMOTE_EXEC:
                match = pattern.search(text)
                if match and reason not in hits:
                    hits[reason] = {"field": where, "pos": match.start(), "match": match.group()[:120]}
        return [Hit(reason, detail=detail) for reason, detail in hits.items()] or None


@register
@dataclass
class InsecureCode(Filter):
    name: ClassVar[str] = "insecure_code"
    gate: ClassVar[str | None] = (
        r"(?i)verify|cert_none|hostname|unauthorized|skipverify|insecure|curl|password|"
        r"passwd|pwd|secret|api_?key|token|shell|system|popen|eval|exec|pickle|yaml|"
        r"marshal|chmod|md5|sha1"
    )
    reasons: ClassVar[tuple[str, ...]] = tuple(dict.fromkeys([r for r, _ in CODE_RISKS] + list(_BANDIT.values())))
    description: ClassVar[str] = (
        "weakened security in answers' code (bandit on Python, patterns elsewhere): "
        "TLS checks off, hard-coded credentials, shell, eval, unsafe deserialisation"
    )
    default_action: ClassVar[str] = "annotate"

    def check(self, record: Record) -> list[Hit] | None:
        hits: dict[str, dict[str, Any]] = {}
        for where, text in answers(record):
            for reason in sorted(code_risks(text)):
                hits.setdefault(reason, {"field": where})
        return [Hit(reason, detail=detail) for reason, detail in hits.items()] or None
