"""The review page, rendered on the server. Every byte of record text goes through `html.escape`
after `visible()` has made control and invisible characters readable, so a record can neither run
script nor hide a trigger from the reviewer."""

from __future__ import annotations

import html
import re
import unicodedata
from typing import Any
from urllib.parse import urlencode

_HIDDEN_CATEGORIES = {"Cc", "Cf", "Co", "Cs", "Zl", "Zp"}
_HIDDEN_EXTRA = {"\u115f", "\u1160", "\u3164", "\uffa0", "\u2800"}  # fillers that render as blanks
GROUP_LIMIT = 300


def _label(ch: str) -> str:
    return f"⟨U+{ord(ch):04X}⟩"


def visible(text: str) -> str:
    """`text` with control, format (zero-width, bidi), private-use and filler characters spelt as
    ⟨U+XXXX⟩; newlines and tabs stay."""
    if not text:
        return ""
    out = []
    for ch in text:
        if ch in "\n\t":
            out.append(ch)
        elif ch in _HIDDEN_EXTRA or unicodedata.category(ch) in _HIDDEN_CATEGORIES:
            out.append(_label(ch))
        else:
            out.append(ch)
    return "".join(out)


_CODEPOINT = re.compile(r"^U\+([0-9A-Fa-f]{4,6})$")


def _trigger_forms(trigger: str) -> list[str]:
    """How a trigger appears in `visible()` text: itself, or ⟨U+XXXX⟩ for an invisible one."""
    match = _CODEPOINT.match(trigger.strip())
    if match:
        return [_label(chr(int(match.group(1), 16)))]
    if trigger.startswith("topic:"):
        return []
    return [visible(trigger)]


def highlight(text: str, triggers: list[str]) -> str:
    """Escaped HTML of `text` with each trigger's occurrences (case-insensitive) in <mark>."""
    shown = visible(text or "")
    forms = sorted({f for t in triggers or [] for f in _trigger_forms(str(t)) if f.strip()}, key=len, reverse=True)
    if not forms:
        return html.escape(shown)
    pattern = re.compile("|".join(re.escape(f) for f in forms), re.IGNORECASE)
    out, last = [], 0
    for m in pattern.finditer(shown):
        out.append(html.escape(shown[last : m.start()]))
        out.append(f"<mark>{html.escape(m.group(0))}</mark>")
        last = m.end()
    out.append(html.escape(shown[last:]))
    return "".join(out)


def esc(value: Any) -> str:
    return html.escape(visible("" if value is None else str(value)))


CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d1d1f;background:#f6f6f8}
header{position:sticky;top:0;background:#fff;border-bottom:1px solid #ddd;padding:8px 16px;z-index:2}
h1{font-size:16px;margin:0 12px 0 0;display:inline}
.progress{display:inline-block;width:220px;height:10px;background:#e5e5ea;border-radius:5px;vertical-align:middle}
.progress i{display:block;height:100%;background:#34c759;border-radius:5px}
form.filters{display:inline;margin-left:12px}
form.filters input,form.filters select{font-size:13px;margin-right:4px}
main{padding:8px 16px 80px}
section.group{background:#fff;border:1px solid #ddd;border-radius:8px;margin:12px 0;padding:8px 12px}
section.group h2{font-size:14px;margin:4px 0 8px}
.bulk{display:inline;margin-left:8px}
article.item{border-top:1px solid #eee;padding:8px 4px;outline:none}
article.item:focus,article.item.current{background:#eef4ff;box-shadow:inset 3px 0 #0a84ff}
.meta{color:#666;font-size:12px}
.turn{white-space:pre-wrap;word-break:break-word;margin:4px 0;padding:4px 8px;border-radius:4px;max-height:16em;
  overflow:auto}
.turn.user,.turn.system{background:#f2f2f7}.turn.assistant{background:#fff8e6}
.role{font-size:11px;color:#888;text-transform:uppercase}
mark{background:#ffd60a;color:#000;padding:0 1px}
.badge{display:inline-block;padding:0 6px;border-radius:9px;font-size:12px;background:#e5e5ea}
.badge.accepted{background:#d1f7d6}.badge.rejected{background:#ffd6d6}.badge.open{background:#e5e5ea}
details{margin:4px 0}summary{cursor:pointer;color:#555;font-size:12px}
.evidence,.neighbours{font-size:12px;white-space:pre-wrap;word-break:break-word}
button{font-size:12px;cursor:pointer}
button.accept{border:1px solid #34c759}button.reject{border:1px solid #ff3b30}
.keys{color:#888;font-size:12px;margin-left:12px}
"""

JS = """
(function(){
  const bar=document.getElementById('bar'); bar.style.width=bar.dataset.width+'%';
  const items=[...document.querySelectorAll('article.item')];
  let i=-1;
  function focus(n){ if(!items.length) return; i=Math.max(0,Math.min(items.length-1,n));
    items.forEach(x=>x.classList.remove('current')); items[i].classList.add('current');
    items[i].focus({preventScroll:true}); items[i].scrollIntoView({block:'nearest'}); }
  items.forEach((el,n)=>el.addEventListener('focus',()=>{i=n;
    items.forEach(x=>x.classList.remove('current')); el.classList.add('current');}));
  async function decide(el,decision){
    const body=new URLSearchParams({id:el.dataset.id,decision:decision,csrf:document.body.dataset.csrf});
    const r=await fetch('decide',{method:'POST',body:body,headers:{'Accept':'application/json'},
                                  credentials:'same-origin'});
    if(!r.ok){ alert('decision failed: '+r.status); return; }
    const s=await r.json();
    const b=el.querySelector('.badge'); b.textContent=s.status; b.className='badge '+s.status;
    document.getElementById('decided').textContent=s.decided;
    document.getElementById('bar').style.width=(s.items? 100*s.decided/s.items:0)+'%';
  }
  document.addEventListener('keydown',e=>{
    if(e.target.closest('input,select,textarea')||e.ctrlKey||e.metaKey||e.altKey) return;
    if(e.key==='j'){ focus(i+1); e.preventDefault(); }
    else if(e.key==='k'){ focus(i-1); e.preventDefault(); }
    else if((e.key==='a'||e.key==='r')&&i>=0){ const el=items[i];
      decide(el,e.key==='a'?'accept':'reject').then(()=>focus(i+1)); e.preventDefault(); }
  });
})();
"""


def _evidence_text(evidence: dict[str, Any]) -> str:
    lines = []
    for reason, ev in (evidence or {}).items():
        if not isinstance(ev, dict):
            continue
        text = ev.get("evidence") or ev.get("why")
        if not text:
            text = ", ".join(
                f"{k}={v}" for k, v in ev.items() if k not in {"action"} and not isinstance(v, (dict, list))
            )
        lines.append(f"{reason} ({ev.get('action', '')}): {text}")
    return "\n".join(lines)


def _group_key(item: dict[str, Any]) -> tuple[str, str]:
    if item.get("triggers"):
        return "trigger", str(item["triggers"][0])
    if item.get("cluster") is not None:
        return "cluster", str(item["cluster"])
    return "reason", item["reasons"][0] if item.get("reasons") else "-"


def _item_html(item: dict[str, Any], csrf: str, back: str) -> str:
    triggers = [str(t) for t in item.get("triggers") or []]
    turns = item.get("turns") or [
        {"role": "user", "content": item.get("prompt") or ""},
        {"role": "assistant", "content": item.get("response") or ""},
    ]
    body = "".join(
        f'<div class="turn {esc(t.get("role"))}"><span class="role">{esc(t.get("role"))}</span>\n'
        f"{highlight(str(t.get('content') or ''), triggers)}</div>"
        for t in turns
    )
    neighbours = "\n".join(
        f"{n.get('similarity', 0):.2f}  {n.get('source')}:{n.get('line') or '-'}  "
        f"{n.get('prompt')} → {n.get('response')}"
        for n in item.get("neighbours") or []
    )
    susp = "-" if item.get("suspicion") is None else f"{item['suspicion']:.2f}"
    buttons = "".join(
        f'<form method="post" action="decide" class="bulk"><input type="hidden" name="csrf" value="{esc(csrf)}">'
        f'<input type="hidden" name="id" value="{int(item["id"])}">'
        f'<input type="hidden" name="next" value="{esc(back)}">'
        f'<button class="{d}" name="decision" value="{d}">{d}</button></form>'
        for d in ("accept", "reject")
    )
    return (
        f'<article class="item" tabindex="0" data-id="{int(item["id"])}" id="item-{int(item["id"])}">'
        f'<div class="meta"><span class="badge {esc(item["status"])}">{esc(item["status"])}</span> '
        f"#{int(item['id'])} · suspicion {susp} · {esc(', '.join(item.get('reasons') or []))}"
        f"{' · trigger ' + esc(', '.join(triggers)) if triggers else ''} · cluster {esc(item.get('cluster'))}"
        f" · {esc(item.get('source'))}:{esc(item.get('line') or '-')} {buttons}</div>{body}"
        f'<details><summary>evidence</summary><div class="evidence">{esc(_evidence_text(item.get("evidence")))}'
        f"</div></details>"
        + (
            f"<details><summary>nearest prompts ({len(item.get('neighbours') or [])})</summary>"
            f'<div class="neighbours">{esc(neighbours)}</div></details>'
            if neighbours
            else ""
        )
        + "</article>"
    )


def page(store, params: dict[str, str], csrf: str, nonce: str) -> str:
    status = params.get("status") or "open"
    filters = {k: params.get(k) or None for k in ("trigger", "cluster", "reason", "source")}
    query = params.get("q") or None
    items = store.select(status=status, query=query, full=True, limit=GROUP_LIMIT * 10, **filters)
    stats = store.stats()
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for item in items:  # already most suspicious first
        groups.setdefault(_group_key(item), []).append(item)
    back = "./?" + urlencode(
        {k: v for k, v in params.items() if k in {"status", "trigger", "cluster", "reason", "source", "q"} and v}
    )
    sections = []
    for (kind, value), members in groups.items():
        bulk = "".join(
            f'<form method="post" action="bulk" class="bulk"><input type="hidden" name="csrf" value="{esc(csrf)}">'
            f'<input type="hidden" name="kind" value="{esc(kind)}">'
            f'<input type="hidden" name="value" value="{esc(value)}">'
            f'<input type="hidden" name="status" value="{esc(status)}">'
            f'<input type="hidden" name="next" value="{esc(back)}">'
            f'<button class="{d}" name="decision" value="{d}">{d} all {len(members)}</button></form>'
            for d in ("accept", "reject")
        )
        shown = members[:GROUP_LIMIT]
        more = (
            f'<p class="meta">… {len(members) - len(shown)} more in this group</p>' if len(members) > len(shown) else ""
        )
        sections.append(
            f'<section class="group" data-kind="{esc(kind)}" data-value="{esc(value)}"><h2>{esc(kind)} '
            f"<mark>{esc(value)}</mark> · {len(members)} item(s){bulk}</h2>"
            + "".join(_item_html(it, csrf, back) for it in shown)
            + more
            + "</section>"
        )
    total = stats["items"]
    width = 100 * stats["decided"] / total if total else 0
    options = "".join(
        f'<option value="{s}"{" selected" if s == status else ""}>{s}</option>'
        for s in ("open", "accepted", "rejected", "decided", "all")
    )

    def field(name, label):
        return f'<input name="{name}" placeholder="{label}" value="{esc(params.get(name) or "")}" size="12">'

    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>curate review</title>
<style nonce="{nonce}">{CSS}</style></head>
<body data-csrf="{esc(csrf)}"><header><h1>curate review</h1>
<span class="progress"><i id="bar" data-width="{width:.1f}"></i></span>
<span class="meta"><b id="decided">{stats["decided"]}</b> / <b id="total">{total}</b> decided ·
{stats["accepted"]} accepted · {stats["rejected"]} rejected</span>
<form class="filters" method="get" action="./"><select name="status">{options}</select>
{field("trigger", "trigger")}{field("cluster", "cluster")}{field("reason", "reason")}{field("source", "source")}
{field("q", "text contains")}<button>filter</button></form>
<span class="keys">j/k move · a accept · r reject</span></header>
<main>{"".join(sections) or "<p>Nothing to review here.</p>"}</main>
<script nonce="{nonce}">{JS}</script></body></html>"""
