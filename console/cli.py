"""The `fleetdeck` command line. Every command takes --data-dir."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO, Annotated, Any, NoReturn

import duckdb
import pyarrow as pa
import typer

from console import formats
from console import policy as policies
from console.commands import instance
from console.commands.terminal_progress import TerminalProgress
from console.engine import Engine
from console.errors import DomainError, Invalid
from console.progress import Step
from console.secrets import SecretStoreUnavailable, set_provider_secret
from console.settings import Settings, load_settings
from console.store import adhoc, importer, queries, seed

app = typer.Typer(
    name="fleetdeck",
    help="Fleetdeck: a local-first operator console for production LLM traffic.",
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
policy_app = typer.Typer(help="Check routing policies (routes.yaml).", rich_markup_mode=None)
app.add_typer(policy_app, name="policy")
keys_app = typer.Typer(help="Virtual keys per environment, and provider secrets.", rich_markup_mode=None)
app.add_typer(keys_app, name="keys")
audit_app = typer.Typer(help="The tamper-evident audit trail.", rich_markup_mode=None)
app.add_typer(audit_app, name="audit")
routes_app = typer.Typer(help="Stop and resume routes.", rich_markup_mode=None)
app.add_typer(routes_app, name="routes")
approvals_app = typer.Typer(help="Tool calls held for a human's approval.", rich_markup_mode=None)
app.add_typer(approvals_app, name="approvals")
eval_app = typer.Typer(
    help="Golden sets: gated runs through the gateway, harvested from production.", rich_markup_mode=None
)
app.add_typer(eval_app, name="eval")
prompts_app = typer.Typer(help="The prompt registry: versioned templates and pins.", rich_markup_mode=None)
app.add_typer(prompts_app, name="prompts")
routing_app = typer.Typer(
    help="Learned routing: difficulty thresholds from judged traffic.", rich_markup_mode=None
)
app.add_typer(routing_app, name="routing")

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Where the database and spool live (env FLEETDECK_DATA_DIR; default $XDG_DATA_HOME/fleetdeck).",
        file_okay=False,
    ),
]
Lake = Annotated[
    Path | None,
    typer.Option(
        "--lake",
        help="Read every replica's rows from this Parquet lake, read-only (env FLEETDECK_LAKE_ATTACH).",
        file_okay=False,
    ),
]


def _settings(data_dir: Path | None, lake: Path | None = None) -> Settings:
    """The settings with `--data-dir` and, when given, `--lake` applied."""
    settings = load_settings(data_dir)
    return settings.model_copy(update={"lake_attach": lake}) if lake is not None else settings


def fail(message: str, code: int = 1) -> NoReturn:
    say_error(message)
    raise typer.Exit(code)


def say_error(message: str) -> None:
    """`fleetdeck: message` on the caller's stderr, even while a model loads on another thread:
    llama-cpp-python then points fd 2 and sys.stderr at /dev/null, so the copy made at import
    is written to, unless stderr is captured (a test's CliRunner)."""
    stream = _callers_stderr()
    if stream is not None:
        stream.write(f"fleetdeck: {message}\n")
        stream.flush()
    else:
        typer.echo(f"fleetdeck: {message}", err=True)


def _callers_stderr() -> IO[str] | None:
    """The copy of the caller's stderr, unless sys.stderr is captured (a test's CliRunner)."""
    quieted = getattr(sys.stderr, "name", None) == os.devnull
    return _STDERR if sys.stderr is sys.__stderr__ or quieted else None


def progress(title: str) -> TerminalProgress:
    """A progress bar on stderr when it is a terminal; nothing when it is piped or captured."""
    stream = _callers_stderr()
    return TerminalProgress(stream if stream is not None and stream.isatty() else None, title)


def refused(error: DomainError) -> NoReturn:
    """A refusal of the instance or the Engine: exit 2 for a request refused as asked, else 1."""
    fail(error.message, code=2 if isinstance(error, Invalid) else 1)


@app.callback(invoke_without_command=True)
def default(ctx: typer.Context, data_dir: DataDir = None) -> None:
    """With no command, open the console."""
    if ctx.invoked_subcommand is None:
        tui(data_dir=data_dir)


@app.command()
def tui(
    demo: Annotated[
        bool, typer.Option("--demo", help="Also send a realistic mix of requests to the local model.")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Open the console (the gateway runs inside it). Without a terminal: seed and print a summary."""
    settings = load_settings(data_dir)
    with Engine(settings) as engine:
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            typer.echo("fleetdeck: not a terminal, so no console: a summary of the store instead", err=True)
            _print_summary(engine, settings)
            return
        from console.tui.app import ConsoleOptions, run_console

        run_console(engine, ConsoleOptions(demo=demo))


def _print_summary(engine: Engine, settings: Settings) -> None:
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
            with progress("import") as report:
                done = importer.import_files(
                    engine.db.cursor(),
                    paths,
                    rebase_to_now=rebase_to_now,
                    progress=lambda step: report(_import_step(step)),
                )
        except importer.ImportRefused as exc:
            fail(f"nothing imported: {exc}", code=2)
    for item in done:
        skipped = item.rows - item.inserted
        typer.echo(f"{item.path}: {item.inserted} rows into {item.table} ({skipped} already present)")


def _import_step(step: importer.ImportProgress) -> Step:
    return Step(step.done, step.total, f"{step.step} {step.path.name}" if step.path else step.step)


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
    lake: Lake = None,
) -> None:
    """Run read-only SQL, or a named query, over the traces."""
    if list_:
        for named in queries.available():
            typer.echo(f"{named.name:24} {named.purpose}")
        return
    if (sql is None) == (name is None):
        fail('give either "SQL" or --name NAME (see --list)', code=2)
    settings = _settings(data_dir, lake)
    request: dict[str, object] = (
        {"name": name, "params": _params(param or [])} if name is not None else {"sql": sql}
    )
    result = _run_query(settings, request)
    try:
        formats.write(result, fmt, out)
    except ValueError as exc:
        fail(str(exc), code=2)


def _run_query(settings: Settings, request: dict[str, object]) -> pa.Table:
    """Through the running instance's admin API when one owns the database, else directly."""
    with instance.opened(settings) as fleetdeck:
        try:
            return fleetdeck.query(request)
        except DomainError as exc:
            fail(exc.message, code=2 if exc.code == "query_refused" else 1)
        except (queries.QueryError, adhoc.QueryRefused) as exc:
            fail(str(exc), code=2)
        except duckdb.Error as exc:
            fail(f"query failed: {exc}")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option("--host", help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="Port (default 8787; 0 picks a free one).")
    ] = None,
    policy: Annotated[
        Path | None, typer.Option("--policy", help="routes.yaml (default: the shipped one).")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Run the gateway headless: an OpenAI-compatible API on http://HOST:PORT/v1."""
    announce = _own_stdout()  # before any thread loads a model
    settings = load_settings(data_dir)
    try:
        chosen = policies.load_policy(policy) if policy else None
    except policies.PolicyError as exc:
        fail(str(exc), code=2)
    if policy is not None:
        settings = settings.model_copy(update={"policy_file": policy.resolve()})
    with Engine(settings) as engine:
        engine.open_gateway(chosen, host=host, port=port)
        if settings.auth_required and not any(not key.revoked for key in engine.key_admin.registry.known()):
            typer.echo(
                "fleetdeck: no virtual keys yet, and requests need one: "
                "fleetdeck keys create --name app --env dev",
                err=True,
            )
        engine.on_listening = lambda url: announce(
            f"Fleetdeck gateway on {url}/v1 (data: {settings.data_dir})"
        )
        with contextlib.suppress(KeyboardInterrupt):
            engine.serve()


def _own_stdout() -> Callable[[str], None]:
    """A writer to this process's stdout that survives llama-cpp-python's quiet loading, which
    points file descriptors 1 and 2 at /dev/null while a model loads, on any thread (the
    embedders warm up while the gateway starts): the address line must reach the caller."""
    stream = _copy_of(sys.stdout)
    if stream is None:  # no real stdout (e.g. captured): echo as usual
        return typer.echo

    def write(line: str) -> None:
        stream.write(line + "\n")
        stream.flush()

    return write


def _copy_of(stream: IO[str] | None) -> IO[str] | None:
    try:
        return os.fdopen(os.dup(stream.fileno()), "w", buffering=1, encoding="utf-8")  # type: ignore[union-attr]
    except (OSError, ValueError, AttributeError):
        return None


# Made at import, before any model loads, so that an error raised while one loads on another
# thread (fd 2 then points at /dev/null) still reaches the caller.
_STDERR = _copy_of(sys.stderr)


@policy_app.command("check")
def policy_check(path: Annotated[Path, typer.Argument(help="The routes.yaml to check.")]) -> None:
    """Validate a policy file; exit 2 naming file, line and field of every problem."""
    try:
        typer.echo(policies.check_policy_file(path))
    except policies.PolicyError as exc:
        fail(str(exc), code=2)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="A name for the key (never reused).")],
    env: Annotated[str, typer.Option("--env", help="dev, staging or prod.")],
    daily_cap: Annotated[float | None, typer.Option("--daily-cap", help="Hard cap, USD per UTC day.")] = None,
    monthly_cap: Annotated[
        float | None, typer.Option("--monthly-cap", help="Hard cap, USD per UTC month.")
    ] = None,
    routes: Annotated[
        list[str] | None, typer.Option("--routes", help="Only these routes (repeatable; default: all).")
    ] = None,
    rpm: Annotated[
        int | None, typer.Option("--rpm", help="Requests per minute (default: the policy's).")
    ] = None,
    tpm: Annotated[
        int | None, typer.Option("--tpm", help="Tokens per minute (default: the policy's).")
    ] = None,
    concurrent: Annotated[
        int | None, typer.Option("--concurrent", help="Calls in flight at once (default: the policy's).")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Create a virtual key and print it once; only a keyed hash is stored."""
    answer = _keys_action(
        load_settings(data_dir),
        {
            "action": "create",
            "name": name,
            "environment": env,
            "daily_cap": daily_cap,
            "monthly_cap": monthly_cap,
            "routes": routes,
            "requests_per_minute": rpm,
            "tokens_per_minute": tpm,
            "concurrent": concurrent,
            "actor": _operator(),
        },
    )
    typer.echo(answer["token"])
    typer.echo(f"Key {name!r} ({env}) created. It is shown this once: store it now.", err=True)


@keys_app.command("list")
def keys_list(
    fmt: Annotated[formats.Format, typer.Option("--format", help="Output format.")] = formats.Format.table,
    data_dir: DataDir = None,
) -> None:
    """The virtual keys (never the keys themselves): environment, caps, routes, revoked."""
    rows = _keys_action(load_settings(data_dir), {"action": "list"})["keys"]
    columns = [
        "name",
        "environment",
        "key_hint",
        "daily_cap",
        "monthly_cap",
        "requests_per_minute",
        "tokens_per_minute",
        "concurrent",
        "routes",
        "created_at",
        "revoked_at",
        "key_id",
    ]
    table = (
        pa.Table.from_pylist([{c: row.get(c) for c in columns} for row in rows])
        if rows
        else pa.table({c: pa.array([], pa.string()) for c in columns})
    )
    formats.write(table, fmt, None)


@keys_app.command("revoke")
def keys_revoke(
    name: Annotated[str, typer.Argument(help="The key's name.")], data_dir: DataDir = None
) -> None:
    """Revoke a key; a running instance refuses it from the next request on."""
    _keys_action(load_settings(data_dir), {"action": "revoke", "name": name, "actor": _operator()})
    typer.echo(f"Key {name!r} revoked.")


@keys_app.command("set-secret")
def keys_set_secret(
    name: Annotated[str, typer.Argument(help="The secret's name, as in the policy's `secret:`.")],
) -> None:
    """Store a provider's API key in keyring (read from stdin or a hidden prompt)."""
    value = typer.prompt(f"Secret for {name!r}", hide_input=True) if sys.stdin.isatty() else sys.stdin.read()
    value = value.strip()
    if not value:
        fail("no secret given", code=2)
    try:
        set_provider_secret(name, value)
    except SecretStoreUnavailable as exc:
        fail(str(exc), code=2)
    typer.echo(f"Secret {name!r} stored in keyring (service 'fleetdeck').")


@audit_app.command("verify")
def audit_verify(data_dir: DataDir = None, lake: Lake = None) -> None:
    """Check the audit chain and its signed checkpoints; exit 1 naming the first bad entry."""
    found = instance.ask(_settings(data_dir, lake), "audit_verify", {}, timeout_s=600)
    ok, report = found["problem"] is None, str(found["report"])
    typer.echo(report, err=not ok)
    if not ok:
        raise typer.Exit(1)


@audit_app.command("export")
def audit_export(
    out: Annotated[Path, typer.Option("--out", help="The folder to write the pack into.", file_okay=False)],
    start: Annotated[str | None, typer.Option("--from", help="Start (UTC date or time), inclusive.")] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="End (UTC date or time), exclusive; default now.")
    ] = None,
    data_dir: DataDir = None,
    lake: Lake = None,
) -> None:
    """The evidence pack of a window (default: the last six months): Parquet, checkpoints, SUMMARY.md."""
    from console.reports import evidence, period

    try:
        window = period.resolve(None if start else "183d", start, end)
    except period.PeriodError as exc:
        fail(str(exc), code=2)
    settings = _settings(data_dir, lake)
    try:
        with progress("audit export") as report, instance.opened(settings) as fleetdeck:
            written = evidence.export(fleetdeck, settings, window, out, report)
    except DomainError as exc:
        fail(exc.message)
    for path in written:
        typer.echo(str(path))


@audit_app.command("override")
def audit_override(
    request_id: Annotated[str, typer.Option("--request", help="The request_id of the call.")],
    verdict: Annotated[str, typer.Option("--verdict", help="correct, partial or incorrect.")],
    reason: Annotated[str, typer.Option("--reason", help="Why: kept in the audit log.")],
    component: Annotated[str, typer.Option("--component", help="What is judged.")] = "answer",
    data_dir: DataDir = None,
) -> None:
    """Record a human verdict on a call, over the judge's, with actor and reason."""
    request = {"action": "override", "request_id": request_id, "verdict": verdict, "reason": reason}
    answer = _oversight(load_settings(data_dir), {**request, "component": component})
    typer.echo(f"Override recorded for {request_id} (eval {answer['eval_id']}).")


@routes_app.command("stop")
def routes_stop(
    route: Annotated[str, typer.Argument(help="The route (intent) to stop.")],
    reason: Annotated[str, typer.Option("--reason", help="Why: kept in the audit log.")],
    data_dir: DataDir = None,
) -> None:
    """Stop a route: new calls are refused (503 route_stopped) until it is resumed."""
    _oversight(load_settings(data_dir), {"action": "stop", "route": route, "reason": reason})
    typer.echo(f"Route {route!r} stopped.")


@routes_app.command("resume")
def routes_resume(
    route: Annotated[str, typer.Argument(help="The stopped route.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (optional).")] = "",
    data_dir: DataDir = None,
) -> None:
    """Resume a stopped route."""
    _oversight(load_settings(data_dir), {"action": "resume", "route": route, "reason": reason})
    typer.echo(f"Route {route!r} resumed.")


@approvals_app.command("list")
def approvals_list(data_dir: DataDir = None) -> None:
    """The tool calls waiting for a decision, oldest first."""
    answer = _approvals(load_settings(data_dir), {"action": "list"})
    pending = answer["pending"]
    if answer.get("elsewhere_unavailable"):
        typer.echo(f"Only this replica's calls: {answer['elsewhere_unavailable']}", err=True)
    if not pending:
        typer.echo("No tool call is waiting for approval.")
    for call in pending:
        where = f"route {call['route']}  " if call.get("route") else ""  # an MCP tool call may have none
        held_on = f"  on {call['replica']}" if call.get("replica") else ""  # cluster mode
        gone = "  (gone: its replica stopped)" if call.get("state") == "gone" else ""
        typer.echo(
            f"{call['approval_id']}  {call['held_at'][:19]}  {call['tool']}  {where}"
            f"by {call['requested_by']}  args {call['arguments'][:80]}{held_on}{gone}"
        )


@approvals_app.command("approve")
def approvals_approve(
    approval_id: Annotated[str, typer.Argument(help="The held call (see approvals list).")],
    reason: Annotated[str, typer.Option("--reason", help="Why (optional).")] = "",
    data_dir: DataDir = None,
) -> None:
    """Release a held tool call to the app that asked for it."""
    _approvals(load_settings(data_dir), {"action": "approve", "approval_id": approval_id, "reason": reason})
    typer.echo(f"Approved {approval_id}.")


@approvals_app.command("deny")
def approvals_deny(
    approval_id: Annotated[str, typer.Argument(help="The held call (see approvals list).")],
    reason: Annotated[str, typer.Option("--reason", help="Why (optional).")] = "",
    data_dir: DataDir = None,
) -> None:
    """Refuse a held tool call: the response goes out without it."""
    _approvals(load_settings(data_dir), {"action": "deny", "approval_id": approval_id, "reason": reason})
    typer.echo(f"Denied {approval_id}.")


@eval_app.command("run")
def eval_run(
    file: Annotated[Path, typer.Argument(help="The golden set (YAML).", dir_okay=False)],
    route: Annotated[
        str | None, typer.Option("--route", help="Model or route:<intent> (default: the file's).")
    ] = None,
    prompt: Annotated[
        str | None,
        typer.Option("--prompt", help="name@version, or name for the pinned one (default: the file's)."),
    ] = None,
    gate: Annotated[
        float | None,
        typer.Option("--gate", help="Pass rate the run must reach, 0..1 (default: the file's threshold)."),
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option("--policy", help="routes.yaml when no instance runs (default: the configured one)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write the run's JSON report to FILE.")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Run every case through the gateway; exit 1 when the gate fails, 2 on a bad file or prompt."""
    from console.commands import eval_run as runs
    from console.quality import golden

    try:
        golden_set = golden.load(file)
        chosen = policies.load_policy(policy) if policy else None
    except (golden.GoldenSetError, policies.PolicyError) as exc:
        fail(str(exc), code=2)
    options = runs.RunOptions(route=route, prompt=prompt, gate=gate, policy=chosen, actor=_operator())
    try:
        with progress("eval run") as report:
            result = runs.run_golden_set(load_settings(data_dir), golden_set, options, report)
    except runs.EvalRunError as exc:
        fail(str(exc), code=2)
    formats.write(result.table(), formats.Format.table, None)
    typer.echo(result.summary())
    if out is not None:
        runs.write_report(result, out)
    if not result.gate.passed:
        raise typer.Exit(1)


@eval_app.command("harvest")
def eval_harvest(
    workflow: Annotated[str, typer.Option("--workflow", help="The workflow whose judged calls to take.")],
    out: Annotated[Path, typer.Option("--out", help="The golden set to write (YAML).", dir_okay=False)],
    verdict: Annotated[str, typer.Option("--verdict", help="correct, partial or incorrect.")] = "incorrect",
    limit: Annotated[int, typer.Option("--limit", help="At most this many cases, newest first.", min=1)] = 50,
    data_dir: DataDir = None,
) -> None:
    """Turn judged production calls (with their stored request) into golden cases."""
    from console.commands import harvest

    settings = load_settings(data_dir)
    try:
        request = harvest.query_request(workflow, verdict, limit)
        rows = _run_query(settings, request).to_pylist()
        written = harvest.write_golden_set(rows, workflow, verdict, out)
    except harvest.HarvestError as exc:
        fail(str(exc), code=2)
    typer.echo(f"{written} cases from {workflow} ({verdict}) written to {out}.")


@prompts_app.command("add")
def prompts_add(
    name: Annotated[str, typer.Argument(help="The prompt's name.")],
    file: Annotated[Path, typer.Argument(help="The template (text; {{var}} placeholders).", dir_okay=False)],
    data_dir: DataDir = None,
) -> None:
    """Add a version of a prompt (v1, v2, …); the same text again adds nothing."""
    try:
        template = file.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"{file}: cannot read it ({exc.strerror})", code=2)
    request: dict[str, object] = {"action": "add", "name": name, "template": template, "actor": _operator()}
    answer = _prompts_action(load_settings(data_dir), request)
    if answer["added"]:
        typer.echo(f"Prompt {name} {answer['version']} added (sha256 {answer['hash'][:12]}).")
    else:
        typer.echo(f"Prompt {name} unchanged: this text is {answer['version']} already.")


@prompts_app.command("list")
def prompts_list(
    fmt: Annotated[formats.Format, typer.Option("--format", help="Output format.")] = formats.Format.table,
    data_dir: DataDir = None,
) -> None:
    """Every version of every prompt, with the pinned one marked."""
    rows = _prompts_action(load_settings(data_dir), {"action": "list"})["prompts"]
    if not rows:
        typer.echo("No prompts yet: fleetdeck prompts add NAME FILE")
        return
    formats.write(pa.Table.from_pylist(rows), fmt, None)


@prompts_app.command("pin")
def prompts_pin(
    name: Annotated[str, typer.Argument(help="The prompt's name.")],
    version: Annotated[
        str, typer.Argument(help="The version requests naming the prompt get (rollback: an older one).")
    ],
    data_dir: DataDir = None,
) -> None:
    """Pin the version requests naming the prompt alone get; a running gateway applies it at once."""
    request: dict[str, object] = {"action": "pin", "name": name, "version": version, "actor": _operator()}
    answer = _prompts_action(load_settings(data_dir), request)
    was = f" (was {answer['previous']})" if answer["previous"] else ""
    typer.echo(f"Prompt {name} pinned to {answer['version']}{was}.")


@prompts_app.command("optimize")
def prompts_optimize(
    name: Annotated[
        str, typer.Argument(help="The prompt to improve (from its pinned, else latest, version).")
    ],
    golden_file: Annotated[
        Path, typer.Option("--golden", help="The golden set (YAML) that says what good is.", dir_okay=False)
    ],
    route: Annotated[
        str | None, typer.Option("--route", help="What answers the cases (default: the golden set's).")
    ] = None,
    optimizer_route: Annotated[
        str,
        typer.Option("--optimizer-route", help="The model that proposes edits (default: the local model)."),
    ] = "local/smollm2-135m",
    rounds: Annotated[int, typer.Option("--rounds", help="At most this many rounds.", min=0)] = 3,
    budget: Annotated[
        float, typer.Option("--budget", help="USD the whole search may spend, every call counted.", min=0)
    ] = 1.0,
    candidates: Annotated[
        int, typer.Option("--candidates", help="Edits asked of the optimizer per round.", min=1)
    ] = 3,
    holdout: Annotated[
        float,
        typer.Option(
            "--holdout", help="Share of the cases kept out of the optimizer's sight.", min=0, max=0.9
        ),
    ] = 0.3,
    seed: Annotated[int, typer.Option("--seed", help="Shuffles the train/held-out split.")] = 0,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", help="max_tokens of cases that set none.", min=1)
    ] = 256,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Price the search's worst case; send nothing.")
    ] = False,
    policy: Annotated[
        Path | None,
        typer.Option("--policy", help="routes.yaml when no instance runs (default: the configured one)."),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Search for a better version of a prompt against a golden set; the best is added, never pinned.

    Exit 0 when a better version was added (or on a dry run), 1 when none beat the current one,
    2 on a bad file, prompt or route."""
    from console.commands import eval_run as runs
    from console.commands import prompts_optimize as search
    from console.quality import golden

    try:
        golden_set = golden.load(golden_file)
        chosen = policies.load_policy(policy) if policy else None
    except (golden.GoldenSetError, policies.PolicyError) as exc:
        fail(str(exc), code=2)
    options = search.OptimizeOptions(
        name, route, optimizer_route, rounds, candidates, budget, holdout, seed, max_tokens, dry_run,
        chosen, _operator(),
    )  # fmt: skip
    try:
        with progress("prompts optimize") as report:
            result = search.optimize_prompt(load_settings(data_dir), golden_set, options, report)
    except (search.OptimizeError, runs.EvalRunError) as exc:
        fail(str(exc), code=2)
    except DomainError as exc:
        refused(exc)
    if result.outcome is None:
        formats.write(search.worst_case_table(result, options), formats.Format.table, None)
    else:
        formats.write(search.table(result.outcome), formats.Format.table, None)
    typer.echo(search.summary(result, options))
    if result.outcome is not None and not result.added:
        raise typer.Exit(1)


def _prompts_action(settings: Settings, request: dict[str, object]) -> dict[str, Any]:
    return _ask(settings, "prompts", request)


def _approvals(settings: Settings, request: dict[str, object]) -> dict[str, Any]:
    """Held calls live in the running instance: there is nothing to decide without one."""
    running = instance.running(settings)
    if running is None:
        fail("no Fleetdeck instance runs on this data dir, so no tool call is held", code=1)
    try:
        return running.ask("approvals", {**request, "actor": _operator()})
    except DomainError as exc:
        refused(exc)


def _oversight(settings: Settings, request: dict[str, object]) -> dict[str, Any]:
    return _ask(settings, "oversight", {**request, "actor": _operator()})


def _keys_action(settings: Settings, request: dict[str, object]) -> dict[str, Any]:
    return _ask(settings, "keys", request)


def _ask(settings: Settings, action: str, request: dict[str, object]) -> dict[str, Any]:
    """Through the running instance when one owns the database, so changes apply at once."""
    try:
        return instance.ask(settings, action, request)
    except DomainError as exc:
        refused(exc)


def _ask_showing(step: Step, settings: Settings, action: str, request: dict[str, object]) -> dict[str, Any]:
    """`_ask` under a spinner naming the step; a refusal is said once it has stopped, below it."""
    try:
        with progress(action) as report:
            report(step)
            return instance.ask(settings, action, request)
    except DomainError as exc:
        refused(exc)


def _operator() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


@app.command()
def scorecard(
    fmt: Annotated[
        str | None, typer.Option("--format", help="html, md, json or csv (default: from --out, else md).")
    ] = None,
    period: Annotated[
        str | None, typer.Option("--period", help="Length ending at --to: 30d (default), 2w, 12h.")
    ] = None,
    from_: Annotated[str | None, typer.Option("--from", help="Start of the period (UTC), inclusive.")] = None,
    to: Annotated[str | None, typer.Option("--to", help="End (UTC), exclusive; default now.")] = None,
    workflow: Annotated[
        list[str] | None, typer.Option("--workflow", help="Only this workflow (repeatable; default: all).")
    ] = None,
    slo: Annotated[
        list[str] | None, typer.Option("--slo", help="route=ms latency SLO (repeatable; default 2000).")
    ] = None,
    policy: Annotated[
        Path | None, typer.Option("--policy", help="routes.yaml whose caps are budgets (default: in use).")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write to FILE instead of stdout.")] = None,
    data_dir: DataDir = None,
    lake: Lake = None,
) -> None:
    """The executive AI scorecard, per workflow and overall, against the previous period."""
    from console.commands import reports as scorecards

    try:
        text = scorecards.make(
            _settings(data_dir, lake),
            scorecards.Request(
                period=period,
                start=from_,
                end=to,
                workflows=workflow or (),
                slo=slo or (),
                policy_file=policy,
                fmt=scorecards.ReportFormat(fmt) if fmt else None,
                out=out,
            ),
        )
    except ValueError:
        fail(f"--format {fmt!r}: expected html, md, json or csv", code=2)
    except scorecards.ScorecardError as exc:
        fail(str(exc), code=2)
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")


@routing_app.command("calibrate")
def routing_calibrate(
    route: Annotated[str, typer.Option("--route", help="The route (intent) to calibrate.")],
    target_large_share: Annotated[
        float, typer.Option("--target-large-share", help="Share of calls the large tier should answer (0-1).")
    ],
    from_: Annotated[str | None, typer.Option("--from", help="Traffic from (UTC), inclusive.")] = None,
    to: Annotated[str | None, typer.Option("--to", help="Traffic to (UTC), exclusive.")] = None,
    small_tier: Annotated[
        str | None, typer.Option("--small-tier", help="Tier name (default: cheaper).")
    ] = None,
    large_tier: Annotated[
        str | None, typer.Option("--large-tier", help="Tier name (default: dearer).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report only; keep no threshold.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
    data_dir: DataDir = None,
) -> None:
    """Fit a route's difficulty threshold on judged traffic; cost and quality vs always small/large."""
    from console.routing import calibrate

    if fmt not in ("table", "json"):
        fail(f"--format {fmt!r}: expected table or json", code=2)
    window = {name: _when(name, value) for name, value in (("--from", from_), ("--to", to))}
    with Engine(load_settings(data_dir)) as engine:
        try:
            fitted = calibrate.calibrate(
                engine.db.cursor(),
                route,
                target_large_share,
                small_tier=small_tier,
                large_tier=large_tier,
                start=window["--from"],
                end=window["--to"],
            )
        except calibrate.CalibrationError as exc:
            fail(str(exc), code=2)
        if not dry_run:
            calibrate.save(engine.db.cursor(), fitted, _operator())
            engine.start_recorder()
            engine.recorder.record_audit(calibrate.audit_event(fitted, _operator()))
    if fmt == "json":
        typer.echo(json.dumps(calibrate.report_json(fitted), indent=2))
        return
    typer.echo(calibrate.render(fitted), nl=False)
    if not dry_run:
        typer.echo(f"Threshold kept for route {route}; the gateway uses it from its next start.")


def _when(option: str, value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        fail(f"{option} {value!r}: expected an ISO date or timestamp", code=2)


@app.command()
def drift(
    workflow: Annotated[str | None, typer.Option("--workflow", help="Only this workflow.")] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="End of the recent window (UTC date or time); default now.")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
    data_dir: DataDir = None,
    lake: Lake = None,
) -> None:
    """Drift per workflow: the 7 days before --as-of against the 28 before; new alerts are stored."""
    from console.commands import drift as drift_command
    from console.quality.monitor import parse_as_of

    try:
        chosen = drift_command.ReportFormat(fmt)
        parse_as_of(as_of)
    except ValueError:
        fail(f"--format {fmt!r}: expected table or json", code=2)
    except DomainError as exc:
        fail(exc.message, code=2)
    settings, request = _settings(data_dir, lake), drift_command.request(as_of, workflow)
    step = Step(0, None, "the last 7 days against the 28 before")
    doc = _ask_showing(step, settings, "drift", request)
    typer.echo(drift_command.render(doc, chosen), nl=False)
    if doc["webhook_error"]:
        typer.echo(f"fleetdeck: {doc['webhook_error']}", err=True)


# -- MCP -----------------------------------------------------------------------------------

mcp_app = typer.Typer(help="The MCP servers behind /mcp.", rich_markup_mode=None)
app.add_typer(mcp_app, name="mcp")


@mcp_app.command("list")
def mcp_list(data_dir: DataDir = None) -> None:
    """The MCP servers (up, restarting, breaker open), their tools and the calls made to them."""
    from console.commands import mcp_servers

    typer.echo(mcp_servers.render(_ask(load_settings(data_dir), "mcp", {})), nl=False)


# -- retention ---------------------------------------------------------------------------

retention_app = typer.Typer(help="Retention: purge what the store keeps no longer.", rich_markup_mode=None)
app.add_typer(retention_app, name="retention")


@retention_app.command("apply")
def retention_apply(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count what would be deleted, per table.")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Delete payloads, traces and audit payloads past their retention; print the rows per table."""
    from console.store import retention

    request: dict[str, object] = {"dry_run": dry_run, "actor": _operator()}
    step = Step(0, None, "counting what is past retention" if dry_run else "purging what is past retention")
    doc = _ask_showing(step, load_settings(data_dir), "retention", request)
    typer.echo(retention.render(doc), nl=False)


def _params(pairs: list[str]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--param {pair!r}: expected key=value", code=2)
        params[key.strip()] = value
    return params


# -- lake ----------------------------------------------------------------------------------

lake_app = typer.Typer(
    help="The Parquet lake: every replica's traces, evals, outcomes and audit log.", rich_markup_mode=None
)
app.add_typer(lake_app, name="lake")


@lake_app.command("attach")
def lake_attach(
    path: Annotated[
        Path, typer.Argument(help="The lake (the folder of table=… partitions).", file_okay=False)
    ],
    data_dir: DataDir = None,
) -> None:
    """Open the console read-only over the whole lake. Without a terminal: print a summary."""
    from console.lake import attach as lake_store

    settings = _settings(data_dir, path)
    with instance.attached(settings) as lake:
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            replicas = lake_store.replicas(lake.engine.db)
            typer.echo(f"Lake {path}: {len(replicas)} replica(s) {', '.join(replicas)}")
            typer.echo(seed.summary(lake.engine.db.cursor(), path))
            return
        from console.tui.app import ConsoleOptions, run_console

        run_console(lake.engine, ConsoleOptions(seed=False, gateway=False, source=f"lake {path} (read-only)"))


@lake_app.command("export")
def lake_export(
    to: Annotated[
        Path | None, typer.Option("--to", help="The lake (default: the lake setting, FLEETDECK_LAKE).")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Copy what this data dir recorded into the lake now (a serving instance does it every 30 s)."""
    from console.lake import layout
    from console.lake.export import export

    settings = load_settings(data_dir).model_copy(update={"lake_attach": None})
    lake = to or settings.lake
    if lake is None:
        fail("no lake: pass --to PATH or set FLEETDECK_LAKE", code=2)
    with instance.opened(settings) as fleetdeck:
        if not isinstance(fleetdeck, instance.LocalEngine):
            fail("an instance serves this data dir and exports to its lake itself; stop it to export here")
        with progress("lake export") as report:
            written = export(fleetdeck.engine.db, lake, layout.replica_id(settings.data_dir), progress=report)
    for table, rows in written.items():
        typer.echo(f"{table}: {rows} rows")


# -- cluster -------------------------------------------------------------------------------

cluster_app = typer.Typer(
    help="Cluster mode: replicas sharing keys, stops and budgets through PostgreSQL.", rich_markup_mode=None
)
app.add_typer(cluster_app, name="cluster")
ClusterUrl = Annotated[
    str | None,
    typer.Option("--cluster", help="postgresql://… (default: the cluster setting, FLEETDECK_CLUSTER)."),
]


def _cluster_target(url: str | None, data_dir: Path | None) -> tuple[str, str]:
    settings = load_settings(data_dir)
    conninfo = url or settings.cluster
    if not conninfo:
        fail("no cluster: pass --cluster postgresql://… or set FLEETDECK_CLUSTER", code=2)
    return conninfo, settings.cluster_schema


@cluster_app.command("init")
def cluster_init(url: ClusterUrl = None, data_dir: DataDir = None) -> None:
    """Create or migrate the cluster's tables in PostgreSQL (replicas also do it at start)."""
    from console.cluster import status as cluster_status

    conninfo, schema_name = _cluster_target(url, data_dir)
    try:
        doc = cluster_status.init(conninfo, schema_name)
    except ConnectionError as exc:
        fail(str(exc))
    typer.echo(
        f"Cluster schema {doc['schema']} on {doc['postgresql']}: version {doc['version']} "
        f"({doc['applied']} migration(s) applied)."
    )


@cluster_app.command("status")
def cluster_status_command(
    url: ClusterUrl = None,
    fmt: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
    data_dir: DataDir = None,
) -> None:
    """Replicas seen (heartbeats), keys, route stops and the shared ledger's spend and holds."""
    from console.cluster import status as cluster_status

    if fmt not in ("table", "json"):
        fail(f"--format {fmt!r}: expected table or json", code=2)
    conninfo, schema_name = _cluster_target(url, data_dir)
    try:
        doc = cluster_status.status(conninfo, schema_name)
    except ConnectionError as exc:
        fail(str(exc))
    typer.echo(json.dumps(doc, indent=2) if fmt == "json" else cluster_status.render(doc), nl=fmt == "json")


def main() -> None:
    from pydantic import ValidationError

    try:
        app()
    except ValidationError as exc:  # a setting from the environment that cannot be used
        problems = "; ".join(str(error["msg"]).removeprefix("Value error, ") for error in exc.errors())
        say_error(f"bad setting: {problems}")
        raise SystemExit(2) from None
    except DomainError as exc:  # refused before a command could say so itself (a lake that is not there)
        say_error(exc.message)
        raise SystemExit(2 if isinstance(exc, Invalid) else 1) from None
