"""The `fleetdeck` command line. Every command takes --data-dir."""

from __future__ import annotations

import contextlib
import getpass
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import duckdb
import pyarrow as pa
import typer

from console import formats
from console import policy as policies
from console.engine import Engine
from console.gateway.admin import AdminEndpoint
from console.gateway.keys import SecretStoreUnavailable, set_provider_secret
from console.gateway.openai_api import ApiError
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
    settings = load_settings(data_dir)
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
    instance = AdminEndpoint.find(settings.data_dir)
    if instance is not None:
        try:
            return instance.query(request)
        except ApiError as exc:
            fail(exc.message, code=2 if exc.code == "query_refused" else 1)
    with Engine(settings) as engine:
        cur = engine.db.cursor()
        try:
            if isinstance(request.get("name"), str):
                return queries.run(cur, str(request["name"]), request["params"])  # type: ignore[arg-type]
            return adhoc.run_read_only(cur, str(request["sql"]))
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
        engine.on_listening = lambda url: typer.echo(
            f"Fleetdeck gateway on {url}/v1 (data: {settings.data_dir})"
        )
        with contextlib.suppress(KeyboardInterrupt):
            engine.serve()


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
def audit_verify(data_dir: DataDir = None) -> None:
    """Check the audit chain and its signed checkpoints; exit 1 naming the first bad entry."""
    settings = load_settings(data_dir)
    instance = AdminEndpoint.find(settings.data_dir)
    if instance is not None:
        found = instance.call("audit_verify", {}, timeout_s=600)
        ok, report = found["problem"] is None, str(found["report"])
    else:
        with Engine(settings) as engine:
            verification = engine.verify_audit()
        ok, report = verification.ok, verification.report()
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
) -> None:
    """The evidence pack of a window (default: the last six months): Parquet, checkpoints, SUMMARY.md."""
    from console.reports import evidence, period

    try:
        window = period.resolve(None if start else "183d", start, end)
    except period.PeriodError as exc:
        fail(str(exc), code=2)
    settings = load_settings(data_dir)
    try:
        written = evidence.export(settings, window, out)
    except ApiError as exc:
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
    pending = _approvals(load_settings(data_dir), {"action": "list"})["pending"]
    if not pending:
        typer.echo("No tool call is waiting for approval.")
    for call in pending:
        typer.echo(
            f"{call['approval_id']}  {call['held_at'][:19]}  {call['tool']}  route {call['route']}  "
            f"by {call['requested_by']}  args {call['arguments'][:80]}"
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


def _approvals(settings: Settings, request: dict[str, object]) -> dict[str, Any]:
    """Held calls live in the running instance: there is nothing to decide without one."""
    instance = AdminEndpoint.find(settings.data_dir)
    if instance is None:
        fail("no Fleetdeck instance runs on this data dir, so no tool call is held", code=1)
    try:
        return instance.call("approvals", {**request, "actor": _operator()})
    except ApiError as exc:
        fail(exc.message, code=2 if exc.status == 400 else 1)


def _oversight(settings: Settings, request: dict[str, object]) -> dict[str, Any]:
    return _instance_or_engine(settings, "oversight", {**request, "actor": _operator()}, _engine_oversight)


def _engine_oversight(engine: Engine, request: dict[str, object]) -> dict[str, Any]:
    return engine.oversight.answer(request)


def _instance_or_engine(
    settings: Settings,
    action: str,
    request: dict[str, object],
    direct: Callable[[Engine, dict[str, object]], dict[str, Any]],
) -> dict[str, Any]:
    """Through the running instance when one owns the database, so changes apply at once."""
    instance = AdminEndpoint.find(settings.data_dir)
    try:
        if instance is not None:
            return instance.call(action, request)
        with Engine(settings) as engine:
            return direct(engine, request)
    except ApiError as exc:
        fail(exc.message, code=2 if exc.status == 400 else 1)


def _keys_action(settings: Settings, request: dict[str, object]) -> dict[str, Any]:
    return _instance_or_engine(
        settings, "keys", request, lambda engine, asked: engine.key_admin.answer(asked)
    )


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
) -> None:
    """The executive AI scorecard, per workflow and overall, against the previous period."""
    from console.reports import command as scorecards

    try:
        text = scorecards.make(
            load_settings(data_dir),
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


@app.command()
def drift(
    workflow: Annotated[str | None, typer.Option("--workflow", help="Only this workflow.")] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="End of the recent window (UTC date or time); default now.")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
    data_dir: DataDir = None,
) -> None:
    """Drift per workflow: the 7 days before --as-of against the 28 before; new alerts are stored."""
    from console.quality import drift_report

    try:
        chosen = drift_report.ReportFormat(fmt)
        drift_report.parse_as_of(as_of)
    except ValueError:
        fail(f"--format {fmt!r}: expected table or json", code=2)
    except ApiError as exc:
        fail(exc.message, code=2)
    settings, request = load_settings(data_dir), drift_report.request(as_of, workflow)
    doc = _instance_or_engine(settings, "drift", request, drift_report.answer_for)
    typer.echo(drift_report.render(doc, chosen), nl=False)
    if doc["webhook_error"]:
        typer.echo(f"fleetdeck: {doc['webhook_error']}", err=True)


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
