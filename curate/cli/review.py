"""`curate review ...` and `curate apply`: the review queue from the terminal."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from curate.cli.errors import guarded

HELP = (
    "Triage flagged rows: list, show, decide (one by one or in bulk), stats, export/import (jsonl, Argilla, "
    "Label Studio) and a local web page (serve).\n\n"
    "The queue is a SQLite file (default review.db, or $CURATE_QUEUE) or a postgresql:// URL. Fill it with "
    "`curate scan ... --queue review.db`; decisions apply to later scans of the same rows, and "
    "`curate apply SCAN_DIR --queue review.db` writes the final clean set."
)

app = typer.Typer(name="review", help=HELP, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

QueueOpt = Annotated[
    str,
    typer.Option("--queue", "-Q", envvar="CURATE_QUEUE", help="Review queue: a SQLite file or a postgresql:// URL."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]
DEFAULT_QUEUE = "review.db"


def _open(queue: str, must_exist: bool = True):
    from curate.errors import UsageError
    from curate.review.store import open_store

    if must_exist and "://" not in queue and not Path(queue).exists():
        raise UsageError(f"no review queue at {queue}; fill one with `curate scan ... --queue {queue}`")
    return open_store(queue)


def _emit(data: Any) -> None:
    import orjson

    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode() + "\n")


def _visible(text: str | None, limit: int = 100) -> str:
    """One line, control and invisible characters shown as <U+XXXX>: attacker text must not move
    the cursor or hide a trigger in a terminal."""
    from curate.review.render import visible

    text = visible(text or "").replace("\n", " ⏎ ")
    return text[:limit] + ("…" if len(text) > limit else "")


def _filters(trigger, cluster, reason, source, query) -> dict[str, Any]:
    return {"trigger": trigger, "cluster": cluster, "reason": reason, "source": source, "query": query}


TriggerOpt = Annotated[str | None, typer.Option("--trigger", help="Only items with this suspected trigger.")]
ClusterOpt = Annotated[str | None, typer.Option("--cluster", help="Only items in this cluster.")]
ReasonOpt = Annotated[
    str | None, typer.Option("--reason", help="Only items flagged for this reason, e.g. poison:trigger.")
]
SourceOpt = Annotated[str | None, typer.Option("--source", help="Only items from this source file.")]
QueryOpt = Annotated[
    str | None, typer.Option("--query", help="Only items whose prompt or response contains this text.")
]


@app.command("list", help="List queue items, most suspicious first, or their groups with --group.")
def list_(
    queue: QueueOpt = DEFAULT_QUEUE,
    status: Annotated[str, typer.Option("--status", help="open, accepted, rejected, decided or all.")] = "open",
    trigger: TriggerOpt = None,
    cluster: ClusterOpt = None,
    reason: ReasonOpt = None,
    source: SourceOpt = None,
    query: QueryOpt = None,
    group: Annotated[
        str | None, typer.Option("--group", help="Show groups instead: trigger, cluster, reason or source.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many items.")] = 50,
    json: JsonOpt = False,
) -> None:
    def body() -> None:
        with _open(queue) as store:
            if group:
                groups = store.groups(group, status="open" if status == "open" else None)
                if json:
                    return _emit(groups)
                for g in groups:
                    typer.echo(
                        f"{g['open']:>6} open / {g['items']:<6} {group} {_visible(g['value'], 60)}"
                        f"  (max suspicion {g['max_suspicion'] if g['max_suspicion'] is not None else '-'})"
                    )
                return None
            items = store.select(status=status, limit=limit, **_filters(trigger, cluster, reason, source, query))
            if json:
                return _emit(items)
            if not items:
                typer.echo("no items match")
            for it in items:
                susp = f"{it['suspicion']:.2f}" if it["suspicion"] is not None else "  - "
                typer.echo(
                    f"#{it['id']:<6} {it['status']:<9} {susp}  {', '.join(it['reasons'])}"
                    f"{'  trigger ' + ', '.join(map(_visible, it['triggers'])) if it['triggers'] else ''}\n"
                    f"        {it['source']}:{it['line'] or '-'}  {_visible(it['prompt'], 70)}"
                    f"  →  {_visible(it['response'], 50)}"
                )
            return None

    guarded(body, False)


@app.command(help="Show one item: its record, reasons, evidence, neighbours and decision history.")
def show(
    item: Annotated[int, typer.Argument(help="Item id (from `curate review list`).")],
    queue: QueueOpt = DEFAULT_QUEUE,
    json: JsonOpt = False,
) -> None:
    def body() -> None:
        with _open(queue) as store:
            it = store.get(item)
        if json:
            return _emit(it)
        typer.echo(f"#{it['id']}  {it['status']}  content_id {it['content_id']}  suspicion {it['suspicion']}")
        typer.echo(f"source   {it['source']}:{it['line'] or '-'} (row {it['row']})")
        typer.echo(f"reasons  {', '.join(it['reasons'])}")
        if it["triggers"]:
            typer.echo(f"triggers {', '.join(map(_visible, it['triggers']))}")
        typer.echo(f"cluster  {it['cluster']}")
        for turn in it["turns"] or []:
            typer.echo(f"--- {turn['role']}\n{_visible(turn['content'], 2000)}")
        for reason, ev in (it["evidence"] or {}).items():
            detail = ev.get("evidence") or ev.get("why") or {k: v for k, v in ev.items() if k != "action"}
            typer.echo(f"evidence {reason}: {_visible(str(detail), 300)}")
        for n in it["neighbours"] or []:
            typer.echo(
                f"neighbour {n['source']}:{n['line'] or '-'} ({n['similarity']:.2f})  "
                f"{_visible(n['prompt'], 60)} → {_visible(n['response'], 40)}"
            )
        for h in it["history"]:
            typer.echo(
                f"history  {h['decided_at']}  {h['decision']:<7} by {h['reviewer']} via {h['via']}"
                f"{'  “' + _visible(h['note'], 80) + '”' if h['note'] else ''}"
            )
        return None

    guarded(body, False)


@app.command(
    help="Accept (keep) or reject (drop) items: by id, or in bulk by trigger, cluster, reason, "
    "source or query. Bulk decisions touch open items unless --status says otherwise."
)
def decide(
    decision: Annotated[str, typer.Argument(help="accept or reject.")],
    items: Annotated[list[int] | None, typer.Argument(help="Item ids.", show_default=False)] = None,
    queue: QueueOpt = DEFAULT_QUEUE,
    trigger: TriggerOpt = None,
    cluster: ClusterOpt = None,
    reason: ReasonOpt = None,
    source: SourceOpt = None,
    query: QueryOpt = None,
    status: Annotated[str, typer.Option("--status", help="For bulk: which items (open, decided, all...).")] = "open",
    reviewer: Annotated[
        str | None, typer.Option("--reviewer", help="Who decides (default $CURATE_REVIEWER or the login name).")
    ] = None,
    note: Annotated[str | None, typer.Option("--note", help="Why.")] = None,
    json: JsonOpt = False,
) -> None:
    def body() -> None:
        from curate.errors import UsageError

        filters = _filters(trigger, cluster, reason, source, query)
        bulk = any(v is not None for v in filters.values())
        if not items and not bulk:
            raise UsageError(
                "name item ids, or select in bulk with --trigger, --cluster, --reason, --source or --query"
            )
        with _open(queue) as store:
            ids = list(items or [])
            if bulk:
                ids += store.ids_where(status=status, **filters)
            done = store.decide(ids, decision.lower(), reviewer=reviewer, note=note, via="cli")
            stats = store.stats()
        if json:
            return _emit(
                {"decided": done, "decision": decision.lower(), "open": stats["open"], "items": stats["items"]}
            )
        typer.echo(f"{decision.lower()}ed {done} item(s); {stats['open']} of {stats['items']} still open")
        return None

    guarded(body, False)


@app.command(help="Progress and the state of the queue: open, accepted, rejected, per trigger and cluster.")
def stats(queue: QueueOpt = DEFAULT_QUEUE, json: JsonOpt = False) -> None:
    def body() -> None:
        with _open(queue) as store:
            s = store.stats()
        if json:
            return _emit(s)
        total = s["items"] or 1
        typer.echo(
            f"{s['queue']}: {s['items']} items, {s['decided']} decided ({s['decided'] / total:.0%}): "
            f"{s['accepted']} accepted, {s['rejected']} rejected, {s['open']} open"
        )
        for kind in ("triggers", "clusters"):
            for g in s[kind][:10]:
                typer.echo(f"  {kind[:-1]} {_visible(g['value'], 40):<40} {g['open']:>5} open of {g['items']}")
        if s["last_scan"]:
            ls = s["last_scan"]
            typer.echo(
                f"last scan {ls['created']}: {ls['queued']} queued, {ls['reopened']} reopened, "
                f"{ls['applied']} decided rows applied ({ls['folder']})"
            )
        return None

    guarded(body, False)


@app.command(
    help="Export items: jsonl (curate's own, with history), argilla (records with curate's flag as "
    "suggestions) or labelstudio (tasks with curate's flag as predictions)."
)
def export(
    queue: QueueOpt = DEFAULT_QUEUE,
    format: Annotated[str, typer.Option("--format", "-f", help="jsonl, argilla or labelstudio.")] = "jsonl",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="File to write (default stdout).")] = None,
    status: Annotated[str, typer.Option("--status", help="open, accepted, rejected, decided or all.")] = "all",
    json: JsonOpt = False,
) -> None:
    def body() -> None:
        import orjson

        from curate.errors import UsageError
        from curate.review import interop

        with _open(queue) as store:
            items = store.select(status=status, full=True)
            if format == "jsonl":
                for it in items:
                    it["history"] = store.history(it["id"])
                    current = [h for h in it["history"] if h["decision"] in ("accept", "reject", "reopen")]
                    last = current[-1] if current else None
                    it["decision"] = last["decision"] if last and last["decision"] != "reopen" else None
                    it["reviewer"] = last["reviewer"] if it["decision"] else None
                    it["note"] = last["note"] if it["decision"] else None
                lines = [orjson.dumps(it) for it in items]
                payload = b"\n".join(lines) + (b"\n" if lines else b"")
            elif format == "argilla":
                payload = orjson.dumps(interop.to_argilla(items), option=orjson.OPT_INDENT_2)
            elif format == "labelstudio":
                payload = orjson.dumps(interop.to_label_studio(items), option=orjson.OPT_INDENT_2)
            else:
                raise UsageError(f"unknown export format {format!r}; use jsonl, argilla or labelstudio")
        if out is None:
            sys.stdout.buffer.write(payload)
            return None
        out.write_bytes(payload)
        if format == "labelstudio":
            out.with_suffix(".config.xml").write_text(interop.LABEL_STUDIO_CONFIG, encoding="utf-8")
        if json:
            return _emit({"items": len(items), "format": format, "out": str(out)})
        extra = f" and its labelling config to {out.with_suffix('.config.xml')}" if format == "labelstudio" else ""
        typer.echo(f"wrote {len(items)} item(s) as {format} to {out}{extra}")
        return None

    guarded(body, False)


@app.command(
    "import",
    help="Import decisions from a curate jsonl export, an Argilla records export, or a "
    "Label Studio JSON / JSON-MIN export. Rows not yet reviewed there are skipped.",
)
def import_(
    file: Annotated[Path, typer.Argument(help="The exported file.")],
    queue: QueueOpt = DEFAULT_QUEUE,
    format: Annotated[str, typer.Option("--format", "-f", help="auto, jsonl, argilla or labelstudio.")] = "auto",
    json: JsonOpt = False,
) -> None:
    def body() -> None:
        from curate.review.interop import read_decisions

        decisions = read_decisions(file, format)
        via = format if format != "auto" else "import"
        with _open(queue) as store:
            counts = store.decide_by_content(decisions, via=via)
        counts["read"] = len(decisions)
        if json:
            return _emit(counts)
        typer.echo(
            f"read {counts['read']} decision(s): {counts['decided']} recorded, {counts['unchanged']} "
            f"already there, {counts['unknown']} for rows not in this queue"
        )
        return None

    guarded(body, False)


@app.command(help="Serve the review page on http://127.0.0.1:8765 (keys: j/k move, a accept, r reject).")
def serve(
    queue: QueueOpt = DEFAULT_QUEUE,
    host: Annotated[
        str, typer.Option("--host", help="Address to bind. Anything but loopback needs --token.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port (0 picks a free one).")] = 8765,
    token: Annotated[
        str | None,
        typer.Option(
            "--token", envvar="CURATE_REVIEW_TOKEN", help="Access token; required when binding beyond loopback."
        ),
    ] = None,
    reviewer: Annotated[
        str | None, typer.Option("--reviewer", help="Name recorded on decisions made in the page.")
    ] = None,
) -> None:
    def body() -> None:
        from curate.review.server import make_server

        server = make_server(_open(queue), host=host, port=port, token=token, reviewer=reviewer)
        url = server.url
        typer.echo(
            f"reviewing {server.store.label} at {url}" + (f"/?token={token}" if token else "") + "  (Ctrl-C stops)",
            err=True,
        )
        try:
            server.serve_forever()
        finally:
            server.server_close()
            server.store.close()

    guarded(body, False)


def apply(
    scan_dir: Annotated[Path, typer.Argument(help="A curate scan output folder.")],
    queue: QueueOpt = DEFAULT_QUEUE,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder for the final clean set (replaced atomically).")
    ] = Path("curate-final"),
    allow_pending: Annotated[
        bool,
        typer.Option(
            "--allow-pending", help="Exit 0 even when flagged rows are undecided (they stay out of clean.jsonl)."
        ),
    ] = False,
    json: JsonOpt = False,
) -> None:
    def body() -> int:
        from curate.review.apply import apply_decisions_to_scan

        with _open(queue) as store:
            result = apply_decisions_to_scan(scan_dir, store, out)
        c = result["counts"]
        if json:
            _emit(result)
        else:
            typer.echo(
                f"{out}: {c['clean']:,} clean rows ({c['kept']:,} kept by the scan, {c['accepted']:,} accepted "
                f"in review); {c['rejected']:,} rejected, {c['dropped']:,} dropped, {c['quarantined']:,} "
                f"quarantined, {c['pending']:,} pending"
            )
            if c["pending"]:
                typer.echo(
                    f"{c['pending']:,} flagged row(s) have no decision yet: they are held out "
                    f"(see {out / 'pending.jsonl'})",
                    err=True,
                )
        return 1 if c["pending"] and not allow_pending else 0

    code = guarded(body, False)
    raise typer.Exit(code)


APPLY_HELP = (
    "Write the final clean set: a scan's verdicts plus the queue's decisions, with a manifest hashing the scan, "
    "the rules and the decisions. Exits 1 while flagged rows are undecided (unless --allow-pending); they are "
    "held out of clean.jsonl either way."
)
