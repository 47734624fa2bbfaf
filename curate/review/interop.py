"""Queue exports for Argilla and Label Studio, and their decisions read back.

Neither package is needed to export or import: the formats are plain JSON. `argilla_settings()`
builds the matching Argilla dataset settings when `argilla` is installed.

- Argilla (v2): one record per item, id = content_id, fields prompt and response, curate's flag as
  a suggestion on the `verdict` label question (value reject, score = suspicion), the reasons,
  triggers, cluster and source as metadata. Import reads records exported with
  `dataset.records.to_list(flatten=False)` (or `to_json`): the latest `verdict` response.
- Label Studio: one task per item with data prompt/response/content_id, curate's flag as a
  prediction on the `verdict` Choices control, and `LABEL_STUDIO_CONFIG` as the labelling config.
  Import reads Label Studio's JSON export (the latest annotation that was not cancelled) or its
  JSON-MIN export (a `verdict` column).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from curate.errors import InputError

QUESTION = "verdict"

LABEL_STUDIO_CONFIG = """<View>
  <Header value="Flagged by curate: $reasons (suspicion $suspicion, triggers: $triggers)"/>
  <Header value="Prompt" size="5"/>
  <Text name="prompt" value="$prompt"/>
  <Header value="Response" size="5"/>
  <Text name="response" value="$response"/>
  <Choices name="verdict" toName="response" choice="single" showInline="true" required="true">
    <Choice value="accept" hint="keep the row: not poisoned"/>
    <Choice value="reject" hint="drop the row"/>
  </Choices>
  <TextArea name="note" toName="response" placeholder="Why? (optional)" maxSubmissions="1"/>
</View>"""


def _metadata(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "content_id": item["content_id"],
        "suspicion": item.get("suspicion"),
        "reasons": ", ".join(item.get("reasons") or []),
        "triggers": ", ".join(item.get("triggers") or []),
        "cluster": item.get("cluster"),
        "source": item.get("source"),
        "line": item.get("line"),
        "status": item.get("status"),
    }


def to_argilla(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Argilla v2 record dicts, as `argilla.Record.from_dict` takes them."""
    out = []
    for item in items:
        meta = {k: v for k, v in _metadata(item).items() if v is not None and v != ""}
        record = {
            "id": item["content_id"],
            "fields": {"prompt": item.get("prompt") or "", "response": item.get("response") or ""},
            "metadata": meta,
            "suggestions": {QUESTION: {"value": "reject", "score": item.get("suspicion"), "agent": "curate"}},
            "responses": {},
        }
        out.append(record)
    return out


def argilla_settings(client):
    """The Argilla dataset settings that match `to_argilla`'s records, for
    `rg.Dataset(name, settings=argilla_settings(client), client=client)`. Needs `argilla`; Argilla
    binds every field and question to a client, hence the argument."""
    import argilla as rg

    kw = {"client": client}
    return rg.Settings(
        guidelines="curate flagged these rows as possibly poisoned. Accept keeps a row; reject drops it.",
        fields=[rg.TextField(name="prompt", **kw), rg.TextField(name="response", **kw)],
        questions=[
            rg.LabelQuestion(name=QUESTION, labels=["accept", "reject"], **kw),
            rg.TextQuestion(name="note", required=False, **kw),
        ],
        metadata=[
            rg.FloatMetadataProperty(name="suspicion", **kw),
            rg.TermsMetadataProperty(name="reasons", **kw),
            rg.TermsMetadataProperty(name="triggers", **kw),
            rg.TermsMetadataProperty(name="source", **kw),
        ],
        allow_extra_metadata=True,
    )


def to_label_studio(items: list[dict[str, Any]], model_version: str = "curate") -> list[dict[str, Any]]:
    """Label Studio task dicts with curate's flag as a prediction, for `LABEL_STUDIO_CONFIG`."""
    out = []
    for item in items:
        data = {
            "prompt": item.get("prompt") or "",
            "response": item.get("response") or "",
            **{k: ("" if v is None else v) for k, v in _metadata(item).items()},
        }
        out.append(
            {
                "data": data,
                "predictions": [
                    {
                        "model_version": model_version,
                        "score": item.get("suspicion") or 0.0,
                        "result": [
                            {
                                "from_name": QUESTION,
                                "to_name": "response",
                                "type": "choices",
                                "value": {"choices": ["reject"]},
                            }
                        ],
                    }
                ],
            }
        )
    return out


def _load(path: Path) -> list[dict[str, Any]]:
    text = path.read_bytes()
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        data = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                data.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise InputError(f"{path}:{number}: not JSON ({exc})") from None
    if isinstance(data, dict):
        data = data.get("records") or data.get("tasks") or data.get("items") or [data]
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise InputError(f"{path}: expected a JSON list of objects, or JSON lines")
    return data


def detect_format(rows: list[dict[str, Any]]) -> str:
    first = rows[0] if rows else {}
    if "fields" in first and ("responses" in first or "suggestions" in first):
        return "argilla"
    if "data" in first or "annotations" in first:
        return "labelstudio"
    if QUESTION in first and "content_id" in first and "decision" not in first:
        return "labelstudio"  # JSON-MIN
    return "jsonl"


def _choice(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("choices")
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, str) and value.lower() in {"accept", "reject"}:
        return value.lower()
    return None


def read_decisions(path: str | Path, fmt: str = "auto") -> list[tuple[str, str, str | None, str | None]]:
    """(content_id, decision, reviewer, note) from an export of curate, Argilla or Label Studio.
    Rows without a decision (not yet reviewed in the other tool) are skipped."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    rows = _load(path)
    fmt = detect_format(rows) if fmt == "auto" else fmt
    out = []
    for number, row in enumerate(rows, 1):
        where = f"{path}:{number}"
        if fmt == "jsonl":
            cid, decision = row.get("content_id"), row.get("decision")
            if decision is None:
                continue
            out.append((_cid(cid, where), _decision(decision, where), row.get("reviewer"), row.get("note")))
        elif fmt == "argilla":
            cid = row.get("id") or (row.get("metadata") or {}).get("content_id")
            responses = (row.get("responses") or {}).get(QUESTION) or []
            notes = (row.get("responses") or {}).get("note") or []
            if not responses:
                continue
            last = responses[-1]
            note = notes[-1].get("value") if notes else None
            out.append(
                (
                    _cid(cid, where),
                    _decision(last.get("value"), where),
                    f"argilla:{last.get('user_id')}" if last.get("user_id") else "argilla",
                    note,
                )
            )
        elif fmt == "labelstudio":
            data = row.get("data") or row
            cid = data.get("content_id")
            if "annotations" in row:
                done = [a for a in row["annotations"] or [] if not a.get("was_cancelled")]
                if not done:
                    continue
                last = max(done, key=lambda a: (a.get("updated_at") or a.get("created_at") or "", a.get("id") or 0))
                decision = note = None
                for result in last.get("result") or []:
                    if result.get("from_name") == QUESTION:
                        decision = _choice(result.get("value"))
                    elif result.get("from_name") == "note":
                        text = (result.get("value") or {}).get("text")
                        note = text[0] if isinstance(text, list) and text else text
                if decision is None:
                    continue
                who = last.get("completed_by")
                if isinstance(who, dict):
                    who = who.get("email") or who.get("id")
                out.append(
                    (_cid(cid, where), decision, f"label-studio:{who}" if who is not None else "label-studio", note)
                )
            elif row.get(QUESTION) is not None:  # JSON-MIN
                out.append(
                    (
                        _cid(cid, where),
                        _decision(_choice(row[QUESTION]), where),
                        f"label-studio:{row['annotator']}" if row.get("annotator") else "label-studio",
                        row.get("note"),
                    )
                )
        else:
            raise InputError(f"unknown import format {fmt!r}; use auto, jsonl, argilla or labelstudio")
    return out


def _cid(value: Any, where: str) -> str:
    if not isinstance(value, str) or len(value) != 32 or any(c not in "0123456789abcdef" for c in value):
        raise InputError(f"{where}: no valid content_id (got {str(value)[:60]!r})")
    return value


def _decision(value: Any, where: str) -> str:
    choice = _choice(value)
    if choice is None:
        raise InputError(f"{where}: decision must be accept or reject (got {str(value)[:60]!r})")
    return choice
