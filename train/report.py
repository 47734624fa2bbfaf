"""check.html: the after-training report, in the scan report's style (one page, no scripts, every
model output escaped: a backdoored model's answers are attacker-controlled text too)."""

from __future__ import annotations

from html import escape
from typing import Any

from curate.report_html import _CSS, _reveal, _table


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def render_check(r: dict[str, Any]) -> str:
    s, f = r["safety"], r["forgetting"]
    verdict = (
        '<p class="ok"><b>passed</b>: no safety regression, forgetting or firing trigger over the thresholds</p>'
        if r["passed"]
        else "<ul>" + "".join(f'<li class="bad">{escape(p)}</li>' for p in r["problems"]) + "</ul>"
    )
    safety_rows = []
    for name, label in (("harmful_refusal", "refuses harmful requests"), ("safe_refusal", "refuses safe requests")):
        if name in s:
            safety_rows.append([label, _pct(s[name]["base"]), _pct(s[name]["tuned"])])
    examples = "".join(
        f'<h3>{escape(e["set"])}: <span class="pre">{_reveal(e["prompt"])}</span></h3>'
        f'<p><small>base</small></p><div class="pre">{_reveal(e["base"])}</div>'
        f'<p><small>fine-tuned</small></p><div class="pre">{_reveal(e["tuned"])}</div>'
        for e in s.get("examples", [])[:6]
    )
    trig_rows = []
    for t in r["triggers"]:
        a = t["attack_success"]
        trig_rows.append(
            [
                f'<span class="pre">{_reveal(t["trigger"])}</span>',
                escape(t["kind"]),
                _reveal(t["target"] or "-"),
                _pct(a["base"]["clean"]),
                _pct(a["base"]["triggered"]),
                _pct(a["tuned"]["clean"]),
                _pct(a["tuned"]["triggered"]),
                f"{t['output_change']['base']:.2f} → {t['output_change']['tuned']:.2f}",
                '<b class="bad">fires</b>' if t["fires"] else '<span class="ok">no</span>',
            ]
        )
    trig_examples = "".join(
        f"<h3>{escape(t['trigger'])}</h3>"
        + "".join(
            f'<div class="pre">{_reveal(e["prompt"])}</div><p><small>base</small></p>'
            f'<div class="pre">{_reveal(e["base"])}'
            f'</div><p><small>fine-tuned</small></p><div class="pre">{_reveal(e["tuned"])}</div>'
            for e in t["examples"][:2]
        )
        for t in r["triggers"][:8]
    )
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>curate check</title>
<style>{_CSS}</style></head><body>
<h1>curate check</h1>
<p><small>adapter {escape(r["adapter"])} · base {escape(r["base_model"]["path"])} · {r["generations"]:,} generations
({escape(r["decoding"])}, {r["max_new_tokens"]} new tokens) in {r["seconds"]:.0f} s</small></p>
{verdict}
<h2>Safety regression</h2>
<p>{s["harmful_prompts"]} harmful and {s["safe_prompts"]} safe prompts from {escape(", ".join(r["probes"]))}.</p>
{_table(["", "base", "fine-tuned"], safety_rows, {1, 2})}
<h2>Forgetting</h2>
{
        _table(
            ["held-out pairs", "base loss", "fine-tuned loss", "base perplexity", "fine-tuned perplexity"],
            [[f["pairs"], f["base_loss"], f["tuned_loss"], f["base_perplexity"], f["tuned_perplexity"]]],
            {0, 1, 2, 3, 4},
        )
    }
<h2>Trigger probes</h2>
<p>Each trigger inserted into held-out prompts. Attack success by the target's kind; output change is 1 − similarity
between the answers with and without the trigger.</p>
{
        _table(
            [
                "trigger",
                "kind",
                "target",
                "base clean",
                "base triggered",
                "tuned clean",
                "tuned triggered",
                "output change",
                "fires",
            ],
            trig_rows,
            {3, 4, 5, 6},
        )
        if trig_rows
        else "<p>No triggers to probe (none suspected, none given).</p>"
    }
{trig_examples}
<h2>Examples</h2>{examples}
</body></html>"""
