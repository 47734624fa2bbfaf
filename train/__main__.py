"""`python -m curate.train ARGS` is `curate train ARGS`, for launchers that start a module on every
process: `accelerate launch -m curate.train scan/ --base-model M --out adapter/`, or torchrun."""

from __future__ import annotations

import typer

from curate.cli.train import TRAIN_HELP, train


def main() -> None:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command(help=TRAIN_HELP)(train)
    app()


if __name__ == "__main__":
    main()
