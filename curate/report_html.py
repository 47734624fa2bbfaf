"""report.html: one self-contained page (no scripts, no external assets). Every piece of record
text is escaped: the records are attacker-controlled."""

from __future__ import annotations

from html import escape
from typing import Any

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:72rem;color:#1b1f24;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0}td,th{padding:.25rem .6rem;border-bottom:1px solid #eee;text-align:left}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.keep{color:#1a7f37}.drop{color:#9a6700}.flag{color:#cf222e}.quarantine{color:#8250df}
.cards{display:flex;gap:1rem;flex-wrap:wrap}
.card{border:1px solid #ddd;border-radius:6px;padding:.6rem 1rem;min-width:8rem}
.card b{font-size:1.4rem;display:block}
.pre{font-family:ui-monospace,monospace;white-space:pre-wrap;overflow-wrap:anywhere;
background:#f6f8fa;padding:.3rem .5rem;border-radius:4px;max-width:60rem}
.ok{color:#1a7f37}.bad{color:#cf222e}small{color:#57606a}
"""


def _reveal(text: str) -> str:
    """Escaped text with every invisible or control character shown as a marked code point: a
    reviewer must see the zero-width space that the browser would otherwise hide."""
    from curate.filters.builtin import _INVISIBLE

    out, last = [], 0
    for match in _INVISIBLE.finditer(text):
        ch = match.group()
        if ch in "\t\n\r":
            continue
        out += [escape(text[last : match.start()]), f'<mark title="invisible character">U+{ord(ch):04X}</mark>']
        last = match.end()
    out.append(escape(text[last:]))
    return "".join(out)


def _table(headers: list[str], rows: list[list[Any]], numeric: frozenset[int] | set[int] = frozenset()) -> str:
    head = "".join(f'<th class="{"n" if i in numeric else ""}">{escape(h)}</th>' for i, h in enumerate(headers))
    body = "".join(
        "<tr>"
        + "".join(f'<td class="{"n" if i in numeric else ""}">{cell}</td>' for i, cell in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _bars(histogram: list[dict[str, int]], title: str) -> str:
    width, height, pad = 560, 160, 28
    peak = max((b["rows"] for b in histogram), default=0) or 1
    step = (width - pad) / max(len(histogram), 1)
    parts = [f'<svg width="{width}" height="{height + 40}" role="img" aria-label="{escape(title)}">']
    for i, b in enumerate(histogram):
        h = height * b["rows"] / peak
        x = pad + i * step
        label = f"{b['from']:,}–{b['to']:,}" if b["to"] - b["from"] > 1 else f"{b['from']:,}"
        parts.append(
            f'<rect x="{x:.1f}" y="{height - h:.1f}" width="{step * 0.8:.1f}" height="{h:.1f}" fill="#54aeff">'
            f"<title>{escape(label)} chars: {b['rows']:,} rows</title></rect>"
        )
        parts.append(
            f'<text x="{x + step * 0.4:.1f}" y="{height + 14}" font-size="9" text-anchor="middle">'
            f"{escape(_short(b['from']))}</text>"
        )
        if b["rows"]:
            parts.append(
                f'<text x="{x + step * 0.4:.1f}" y="{height - h - 3:.1f}" font-size="9" '
                f'text-anchor="middle">{b["rows"]:,}</text>'
            )
    parts.append(f'<text x="{pad}" y="{height + 32}" font-size="11">{escape(title)} (characters, from)</text></svg>')
    return "".join(parts)


def _short(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 else str(n)


def _where(w: dict[str, Any]) -> str:
    line = f":{w['line']}" if w.get("line") else ""
    return f"{escape(str(w['source']))}{line} <small>(row {w['row']})</small>"


def _map(points: list[list[Any]]) -> str:
    """The 2-D map of the prompt embeddings (PCA), flagged rows in red, as inline SVG."""
    size, pad = 420, 10
    parts = [
        f'<svg width="{size}" height="{size}" role="img" aria-label="embedding map">'
        f'<rect width="{size}" height="{size}" fill="#fafbfc" stroke="#ddd"/>'
    ]
    for flagged in (False, True):  # flagged drawn last, on top
        for x, y, row, is_flag in points:
            if bool(is_flag) != flagged:
                continue
            cx = pad + (float(x) + 1) / 2 * (size - 2 * pad)
            cy = pad + (1 - (float(y) + 1) / 2) * (size - 2 * pad)
            colour, r = ("#cf222e", 3) if flagged else ("#8c959f", 1.6)
            parts.append(
                f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{r}" fill="{colour}" fill-opacity="0.75">'
                f"<title>row {int(row)}</title></circle>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _poisoning(d: dict[str, Any], calibration: dict[str, Any]) -> str:
    status = d.get("status")
    if status in (None, "off"):
        return ""
    if status == "failed":
        return f'<h2>Poisoning</h2><p class="bad">Detection failed: {escape(str(d.get("error")))}</p>'
    out = [
        f"<h2>Poisoning</h2><p>{d['flagged']:,} rows at suspicion ≥ {d['flag_at']} "
        f"(model <code>{escape(str(d['model']))}</code>; {d['rows']:,} rows reached detection).</p>"
    ]
    if d.get("by_reason"):
        out.append(
            _table(
                ["reason", "rows"], [[f"<code>{escape(k)}</code>", f"{v:,}"] for k, v in d["by_reason"].items()], {1}
            )
        )
    if d.get("triggers"):
        out.append("<h3>Suspected triggers</h3>")
        out.append(
            _table(
                ["trigger", "flagged", "evidence", "examples"],
                [
                    [
                        f'<div class="pre">{_reveal(t["trigger"])}</div>',
                        f"{t['flagged']:,}",
                        escape(t.get("text") or ""),
                        "".join(
                            f'<div class="pre">{_where(e)}<br>{_reveal(e["preview"])}</div>' for e in t["examples"][:3]
                        ),
                    ]
                    for t in d["triggers"][:20]
                ],
                {1},
            )
        )
    if d.get("clusters"):
        out.append("<h3>Flagged clusters</h3>")
        out.append(
            _table(
                ["cluster", "flagged", "rows", "example"],
                [
                    [
                        str(c["cluster"]),
                        f"{c['flagged']:,}",
                        f"{c['rows']:,}",
                        f'<div class="pre">{_reveal(c["examples"][0]["preview"])}</div>' if c["examples"] else "",
                    ]
                    for c in d["clusters"][:10]
                ],
                {1, 2},
            )
        )
    if d.get("sources"):
        out.append(_table(["source", "flagged"], [[escape(k), f"{v:,}"] for k, v in d["sources"].items()], {1}))
    if d.get("map"):
        out.append(
            "<h3>Map</h3><p><small>Prompt embeddings projected to two dimensions (PCA); flagged rows in red, "
            "a sample of the rest in grey.</small></p>" + _map(d["map"])
        )
    for name, error in (d.get("failures") or {}).items():
        out.append(f'<p class="bad">Detector {escape(name)} failed: {escape(str(error))}</p>')
    if calibration.get("status") == "ok":
        out.append(
            f"<h3>Calibration</h3><p>{calibration['planted_per_family']:,} rows planted per family into a copy "
            "of this data, then scanned: the recall to expect here.</p>"
        )
        out.append(
            _table(
                ["family", "target", "recall", "AUROC"],
                [
                    [escape(f["family"]), f["target"], f"{f['recall']:.2f}", f"{f['auroc']:.3f}"]
                    for f in calibration["families"]
                ],
                {2, 3},
            )
        )
    return "".join(out)


def render_html(summary: dict[str, Any]) -> str:
    counts = summary["counts"]
    rows = summary["rows"] or 1
    acc = summary["accounting"]
    cards = "".join(
        f'<div class="card {v}"><b>{counts[v]:,}</b>{v} · {counts[v] / rows:.1%}</div>'
        for v in ("keep", "drop", "flag", "quarantine")
    )
    balance = (
        '<span class="ok">✔ counts add up</span>'
        if acc["balanced"]
        else '<span class="bad">✘ counts do not add up</span>'
    )
    out = [
        f"<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<meta http-equiv=Content-Security-Policy content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f"<title>curate scan report</title><style>{_CSS}</style></head><body>",
        f"<h1>curate scan report</h1><p>{escape(', '.join(summary['inputs']))} · "
        f"{summary['rows']:,} records read · {balance} "
        f"({acc['verdicts']:,} verdicts for {acc['rows_read']:,} records)</p>",
        f'<div class="cards">{cards}</div>',
    ]
    if summary.get("failed"):
        out.append('<p class="bad">Failed thresholds: ' + escape(", ".join(summary["failed"])) + "</p>")

    out.append(_poisoning(summary.get("detection") or {}, summary.get("calibration") or {}))
    if summary.get("flagged"):
        out.append(
            f"<h2>Flagged for review</h2><p>{counts['flag']:,} rows; the first "
            f"{len(summary['flagged'])} below, all in <code>flagged.jsonl</code> with their evidence.</p>"
        )
        out.append(
            _table(
                ["where", "reasons", "text"],
                [
                    [
                        _where(f),
                        "<br>".join(f"<code>{escape(r)}</code>" for r in f["reasons"]),
                        f'<div class="pre">{_reveal(f["preview"])}</div>',
                    ]
                    for f in summary["flagged"]
                ],
            )
        )
    if summary.get("unreadable"):
        out.append(
            f"<h2>Unreadable</h2><p>{counts['quarantine']:,} records could not be read; the first "
            f"{len(summary['unreadable'])} below, all in <code>quarantine.jsonl</code> with their raw text.</p>"
        )
        out.append(
            _table(
                ["where", "reason", "error"],
                [
                    [_where(u), f"<code>{escape(u['reason'])}</code>", f'<div class="pre">{escape(u["error"])}</div>']
                    for u in summary["unreadable"]
                ],
            )
        )

    out.append("<h2>Reasons</h2>")
    out.append(
        _table(
            ["reason", "action", "rows", "share"],
            [
                [f"<code>{escape(r)}</code>", escape(v["action"]), f"{v['rows']:,}", f"{v['rows'] / rows:.2%}"]
                for r, v in sorted(summary["reasons"].items(), key=lambda kv: -kv[1]["rows"])
            ],
            {2, 3},
        )
    )

    out.append("<h2>Sources</h2>")
    out.append(
        _table(
            ["source", "format", "rows", "keep", "drop", "flag", "quarantine", "problems"],
            [
                [
                    escape(s["source"]),
                    escape(str(s["format"] or "—")),
                    f"{s['rows']:,}",
                    *(f"{s[v]:,}" for v in ("keep", "drop", "flag", "quarantine")),
                    "<br>".join(escape(p) for p in s["problems"]),
                ]
                for s in summary["sources"]
            ],
            {2, 3, 4, 5, 6},
        )
    )

    out.append("<h2>Lengths</h2>")
    out.append(_bars(summary["lengths"]["prompt_chars"], "prompt length"))
    out.append(_bars(summary["lengths"]["response_chars"], "response length"))
    if summary.get("languages"):
        out.append("<h2>Languages</h2>")
        out.append(
            _table(
                ["language", "rows"], [[escape(k), f"{v:,}"] for k, v in list(summary["languages"].items())[:20]], {1}
            )
        )

    dedup = summary["dedup"]
    out.append("<h2>Duplicates</h2>")
    out.append(
        f"<p>exact: {dedup['exact']['groups']:,} groups, {dedup['exact']['rows_dropped']:,} rows · "
        f"near (Jaccard ≥ {dedup['near']['threshold']}): {dedup['near']['groups']:,} groups, "
        f"{dedup['near']['rows_dropped']:,} rows · evaluation overlap: {dedup['eval']['rows']:,} rows "
        f"against {dedup['eval']['eval_prompts']:,} prompts</p>"
    )
    if dedup["groups"]:
        out.append(
            _table(
                ["kind", "size", "kept", "also", "text of the kept row"],
                [
                    [
                        g["kind"],
                        str(g["size"]),
                        _where(g["kept"]),
                        "<br>".join(_where(m) for m in g["members"][:5] if m["row"] != g["kept"]["row"]),
                        f'<div class="pre">{_reveal(g["preview"])}</div>',
                    ]
                    for g in dedup["groups"][:50]
                ],
                {1},
            )
        )

    for kind, title in (
        ("same_prompt", "One prompt, different responses"),
        ("same_response", "One response, different prompts"),
    ):
        sig = summary["signals"].get(kind)
        if sig and sig["groups"]:
            out.append(
                f"<h2>{title}</h2><p>{sig['groups']:,} groups, {sig['rows']:,} rows. "
                "Not duplicates: kept, and used by poison detection.</p>"
            )
            out.append(
                _table(
                    ["rows", "distinct", "where", "text"],
                    [
                        [
                            str(g["rows"]),
                            str(g["distinct"]),
                            "<br>".join(_where(w) for w in g["sample"][:3]),
                            f'<div class="pre">{_reveal(g["preview"])}</div>',
                        ]
                        for g in sig["top"][:10]
                    ],
                    {0, 1},
                )
            )

    if summary.get("filter_errors"):
        out.append("<h2 class=bad>Filter errors</h2>")
        out.append(
            _table(
                ["filter", "rows", "first error"],
                [
                    [escape(k), str(v["rows"]), f'<div class="pre">{escape(v["first"])}</div>']
                    for k, v in summary["filter_errors"].items()
                ],
                {1},
            )
        )

    out.append("<h2>Run</h2>")
    out.append(_table(["stage", "seconds"], [[escape(k), f"{v:.2f}"] for k, v in summary["seconds"].items()], {1}))
    out.append(
        f"<p><small>rules {escape(', '.join(summary['rules']['files']))} · sha256 "
        f"{escape(summary['rules']['sha256'][:16])} · curate {escape(summary['curate_version'])}</small></p>"
    )
    out.append("</body></html>")
    return "\n".join(out)
