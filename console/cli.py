"""The `fleetdeck` command line. Every command takes --data-dir."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from console.settings import load_settings

app = typer.Typer(
    name="fleetdeck",
    help="Fleetdeck: a local-first operator console for production LLM traffic.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Where the database and spool live (env FLEETDECK_DATA_DIR; default $XDG_DATA_HOME/fleetdeck).",
        file_okay=False,
    ),
]


@app.callback(invoke_without_command=True)
def default(ctx: typer.Context, data_dir: DataDir = None) -> None:
    """With no command, open the console."""
    if ctx.invoked_subcommand is None:
        tui(data_dir=data_dir)


@app.command()
def tui(data_dir: DataDir = None) -> None:
    """Open the console (until the console lands: seed the store and print a summary)."""
    settings = load_settings(data_dir)
    typer.echo(f"data dir: {settings.data_dir}")


def main() -> None:
    app()
