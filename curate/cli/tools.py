"""Small commands: `curate rules`, `curate formats`, `curate verify`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from curate.cli.errors import guarded


def rules(json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    def body() -> None:
        from curate.detect import DETECTORS
        from curate.filters import FILTERS
        from curate.plugins import load_plugins

        load_plugins()

        listing = [
            {
                "name": name,
                "reasons": list(cls.reasons),
                "default_action": cls.default_action,
                "description": cls.description,
                "parameters": cls.params(),
            }
            for name, cls in sorted(FILTERS.items())
        ]
        listing += [
            {
                "name": f"detect.{name}",
                "reasons": [cls.reason],
                "default_action": "flag" if cls.poison else "annotate",
                "description": cls.description,
                "parameters": cls.params(),
            }
            for name, cls in sorted(DETECTORS.items())
        ]
        if json:
            import orjson

            typer.echo(orjson.dumps(listing, option=orjson.OPT_INDENT_2).decode())
            return
        for f in listing:
            params = ", ".join(f"{k}={v!r}" for k, v in f["parameters"].items()) or "no parameters"
            typer.echo(
                f"{f['name']}  ({f['default_action']})  {', '.join(f['reasons'])}\n    {f['description']}\n    {params}"
            )

    guarded(body, False)


def formats() -> None:
    from curate.normalise.formats import FORMATS
    from curate.normalise.mapping import PRESETS

    for name, fmt in FORMATS.items():
        typer.echo(f"{name:20} {fmt.description}")
    for name, (mapping, target) in PRESETS.items():
        fields = ",".join(f"{t}={p}" for t, p in mapping.fields)
        typer.echo(f"{name:20} read as {target} with --map {fields}")


def verify(folder: Annotated[Path, typer.Argument(help="A curate output folder.")]) -> None:
    def body() -> None:
        from curate.write import verify_manifest

        manifest = verify_manifest(folder)
        typer.echo(f"ok: {len(manifest['outputs'])} files match the manifest of {folder}")

    guarded(body, False)
