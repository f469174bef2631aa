"""Where a command's request goes: the running instance when one owns the data dir, else an Engine here.

An instance that runs owns the DuckDB file, so a command asks it over the loopback admin
API (console/gateway/admin.py), and what it changes applies at once (a revoked key is
refused from the next request on). With none, the command opens an Engine on the data
dir itself. Both answer the same documents; a refusal is a DomainError either way. A
query raises what its path raises: a DomainError from the instance, QueryError,
QueryRefused or duckdb.Error from the store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from console.engine import Engine
from console.errors import Invalid
from console.gateway.admin import AdminEndpoint
from console.gateway.errors_http import domain_error_from
from console.gateway.key_admin import CONSOLE_KEY_SECRET
from console.gateway.openai_api import ApiError
from console.policy import Policy
from console.secrets import read_local_secret, store_local_secret
from console.settings import Settings
from console.store import adhoc, queries

EVAL_KEY_SECRET = "eval-key"
ASK_TIMEOUT_S = 30.0


class RunningInstance:
    """The instance that owns the data dir, asked over its admin API."""

    def __init__(self, endpoint: AdminEndpoint, settings: Settings) -> None:
        self.endpoint, self.settings = endpoint, settings

    def ask(
        self, action: str, request: Mapping[str, Any], timeout_s: float = ASK_TIMEOUT_S
    ) -> dict[str, Any]:
        try:
            return self.endpoint.call(action, request, timeout_s=timeout_s)
        except ApiError as error:
            raise domain_error_from(error) from None

    def query(self, request: Mapping[str, Any]) -> pa.Table:
        try:
            return self.endpoint.query(request)
        except ApiError as error:
            raise domain_error_from(error) from None

    def named(self, name: str, params: Mapping[str, Any]) -> pa.Table:
        return self.query({"name": name, "params": dict(params)})

    def gateway(self, policy: Policy | None) -> str:
        """The instance's gateway URL (it serves its own policy, not `policy`)."""
        return self.endpoint.url

    def gateway_key(self, actor: str) -> str | None:
        """The console's dev key, else an eval key made once through the instance and kept like it."""
        for name in (CONSOLE_KEY_SECRET, EVAL_KEY_SECRET):
            stored = read_local_secret(name, self.settings)
            if stored:
                return stored
        created = self.ask(
            "keys",
            {
                "action": "create",
                "name": f"fleetdeck-eval-{secrets.token_hex(3)}",
                "environment": "dev",
                "actor": actor,
            },
        )
        token = str(created["token"])
        store_local_secret(EVAL_KEY_SECRET, token, self.settings)
        return token


class LocalEngine:
    """No instance runs: an Engine opened here answers, on the database itself."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def ask(
        self, action: str, request: Mapping[str, Any], timeout_s: float = ASK_TIMEOUT_S
    ) -> dict[str, Any]:
        return self.engine.answer(action, request)

    def query(self, request: Mapping[str, Any]) -> pa.Table:
        """`{"name": …, "params": {…}}` or `{"sql": …}` on the database itself."""
        if isinstance(request.get("name"), str):
            return self.named(str(request["name"]), request.get("params") or {})
        return adhoc.run_read_only(self.engine.db.cursor(), str(request["sql"]))

    def named(self, name: str, params: Mapping[str, Any]) -> pa.Table:
        return queries.run(self.engine.db.cursor(), name, params)

    def gateway(self, policy: Policy | None) -> str:
        """This Engine's gateway, opened with `policy` (default: the configured one) on a free port."""
        self.engine.open_gateway(policy, port=0)
        self.engine.start()
        return self.engine.url

    def gateway_key(self, actor: str) -> str | None:
        """The console's dev key when requests need one."""
        return self.engine.console_key()[0] if self.engine.settings.auth_required else None


class AttachedLake(LocalEngine):
    """Every replica's rows, read from the lake: reads answer as on one store, changes are refused."""

    READS = frozenset({"drift", "audit_verify"})

    def __init__(self, engine: Engine, lake: Path) -> None:
        super().__init__(engine)
        self.lake = lake

    def ask(
        self, action: str, request: Mapping[str, Any], timeout_s: float = ASK_TIMEOUT_S
    ) -> dict[str, Any]:
        if action not in self.READS:
            raise Invalid(
                f"the lake {self.lake} is attached read-only, and {action!r} changes a store: "
                "run it against a replica (--data-dir, or the instance that serves it)"
            )
        if action == "audit_verify":
            from console.lake import attach as lake_store

            verification = lake_store.verify(self.engine.db)
            return {**dataclasses.asdict(verification), "report": verification.report()}
        return self.engine.answer(action, request)

    def gateway(self, policy: Policy | None) -> str:
        raise Invalid(f"the lake {self.lake} is attached read-only: no gateway serves over it")

    def gateway_key(self, actor: str) -> str | None:
        return None


Fleetdeck = RunningInstance | LocalEngine


def running(settings: Settings) -> RunningInstance | None:
    """The instance that owns the data dir, if one runs."""
    endpoint = AdminEndpoint.find(settings.data_dir)
    return RunningInstance(endpoint, settings) if endpoint is not None else None


@contextlib.contextmanager
def attached(settings: Settings) -> Iterator[AttachedLake]:
    """The lake at `settings.lake_attach` as one store, copied into a temp dir for the block's length.

    The copy is a DuckDB file the store's own migrations made, so every named query, the
    scorecard, drift and the console run on it unchanged; nothing is ever written to the lake.
    """
    lake = settings.lake_attach
    assert lake is not None, "attached() needs settings.lake_attach"
    with tempfile.TemporaryDirectory(prefix="fleetdeck-lake-") as scratch:
        copy = settings.model_copy(
            update={
                "data_dir": Path(scratch),
                "lake": None,
                "lake_attach": None,
                "cluster": None,
                "drift_webhook_url": None,
            }
        )
        from console.lake import attach as lake_store  # pyarrow.dataset, only over a lake

        try:
            lake_store.attach(lake, copy.db_path).close()
        except FileNotFoundError as exc:
            raise Invalid(str(exc)) from None
        with Engine(copy) as engine:
            yield AttachedLake(engine, lake)


@contextlib.contextmanager
def opened(settings: Settings) -> Iterator[Fleetdeck]:
    """The running instance, else an Engine opened on the data dir for as long as the block runs;
    with `lake_attach` set, the lake read-only instead."""
    if settings.lake_attach is not None:
        with attached(settings) as lake:
            yield lake
        return
    instance = running(settings)
    if instance is not None:
        yield instance
        return
    with Engine(settings) as engine:
        yield LocalEngine(engine)


def ask(
    settings: Settings, action: str, request: Mapping[str, Any], timeout_s: float = ASK_TIMEOUT_S
) -> dict[str, Any]:
    """One admin action, answered by whichever of the two owns the data dir."""
    with opened(settings) as fleetdeck:
        return fleetdeck.ask(action, request, timeout_s)
