"""The `fleetdeck` command line. Every command takes --data-dir."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import duckdb
import typer

from console import formats
from console.engine import Engine
from console.settings import load_settings
from console.store import adhoc, importer, queries, seed

app = typer.Typer(
    name="fleetdeck",
    help="Fleetdeck: a local-first operator console for production LLM traffic.",
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Where the database and spool live (env FLEETDECK_DATA_DIR; default $XDG_DATA_HOME/fleetdeck).",
        file_okay=False,
    ),
]


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"fleetdeck: {message}", err=True)
    raise typer.Exit(code)


@app.callback(invoke_without_command=True)
def default(ctx: typer.Context, data_dir: DataDir = None) -> None:
    """With no command, open the console."""
    if ctx.invoked_subcommand is None:
        tui(data_dir=data_dir)


@app.command()
def tui(data_dir: DataDir = None) -> None:
    """Open the console. Until the console lands: seed an empty store and print a summary."""
    settings = load_settings(data_dir)
    with Engine(settings) as engine:
        cur = engine.db.cursor()
        seeded = seed.seed_if_empty(cur)
        if seeded:
            typer.echo(f"Empty database: imported the sample traces ({seeded} rows), rebased to end now.")
        typer.echo(seed.summary(cur, settings.db_path))


@app.command("import")
def import_(
    paths: Annotated[list[Path], typer.Argument(help="Parquet or JSONL files, or folders of them.")],
    rebase_to_now: Annotated[
        bool, typer.Option("--rebase-to-now", help="Shift every timestamp so the set ends now.")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Import traces, payloads, outcomes, evals and audit rows; all or nothing; exit 2 on bad input."""
    with Engine(load_settings(data_dir)) as engine:
        try:
            done = importer.import_files(engine.db.cursor(), paths, rebase_to_now=rebase_to_now)
        except importer.ImportRefused as exc:
            fail(f"nothing imported: {exc}", code=2)
    for item in done:
        skipped = item.rows - item.inserted
        typer.echo(f"{item.path}: {item.inserted} rows into {item.table} ({skipped} already present)")


@app.command()
def query(
    sql: Annotated[str | None, typer.Argument(help="One read-only SQL statement.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="A named query from queries/.")] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="key=value for the named query (repeatable).")
    ] = None,
    fmt: Annotated[formats.Format, typer.Option("--format", help="Output format.")] = formats.Format.table,
    out: Annotated[Path | None, typer.Option("--out", help="Write to FILE instead of stdout.")] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the named queries and exit.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Run read-only SQL, or a named query, over the traces."""
    if list_:
        for named in queries.available():
            typer.echo(f"{named.name:24} {named.purpose}")
        return
    if (sql is None) == (name is None):
        fail('give either "SQL" or --name NAME (see --list)', code=2)
    with Engine(load_settings(data_dir)) as engine:
        cur = engine.db.cursor()
        try:
            if name is not None:
                result = queries.run(cur, name, _params(param or []))
            else:
                assert sql is not None
                result = adhoc.run_read_only(cur, sql)
        except (queries.QueryError, adhoc.QueryRefused) as exc:
            fail(str(exc), code=2)
        except duckdb.Error as exc:
            fail(f"query failed: {exc}")
    try:
        formats.write(result, fmt, out)
    except ValueError as exc:
        fail(str(exc), code=2)


def _params(pairs: list[str]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--param {pair!r}: expected key=value", code=2)
        params[key.strip()] = value
    return params


def main() -> None:
    app()
