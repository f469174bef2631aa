"""The Engine: owns the store, the recorder, the providers and the gateway.

The console, `fleetdeck serve` and the CLI all drive one Engine. Opening it opens
the database and replays a crashed predecessor's spool; `serve()` runs the gateway
in the calling thread, `start()` on a thread of its own with its own event loop.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import secrets
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import duckdb

from console import policy as policy_file
from console.gateway import bounds
from console.gateway.admin import AdminEndpoint, answer_query
from console.gateway.approvals import ApprovalQueue
from console.gateway.breaker import Breaker, Breakers
from console.gateway.budget import Ledger, LocalLedger, TaskSteps
from console.gateway.cache import ResponseCache, embed_via
from console.gateway.executor import Executor
from console.gateway.handoffs import Handoffs
from console.gateway.injection_guard import InjectionGuard
from console.gateway.key_admin import CONSOLE_KEY_NAME, CONSOLE_KEY_SECRET, KeyAdmin
from console.gateway.limits import RateLimiter
from console.gateway.oversight import FallbackNotes, Oversight, RouteStops, Stop
from console.gateway.pipeline import Gateway
from console.gateway.pricing import ModelPrices, PriceBook
from console.gateway.prompts import PromptRegistry
from console.gateway.router import Router
from console.gateway.server import AdminHandler, GatewayServer, build_app
from console.otel import start_export
from console.policy import Policy
from console.progress import Progress, Step, silent
from console.providers.base import Provider
from console.quality import golden as golden_runs
from console.quality import judge
from console.quality.monitor import DriftMonitor
from console.routing.difficulty import load_models
from console.secrets import (
    AUDIT_KEY_NAME,
    PEPPER_NAME,
    data_dir_id,
    local_secret,
    provider_secret,
    read_local_secret,
    store_local_secret,
)
from console.settings import Settings
from console.store import audit, queries
from console.store import keys as key_rows
from console.store import retention as store_retention
from console.store.db import Database, first_row
from console.store.recorder import Recorder
from console.store.responses import StoredResponses

if TYPE_CHECKING:
    from console.cluster.node import Cluster
    from console.lake.shipping import LakeShipping
    from console.mcp.pipeline import McpGateway
    from console.otel.exporter import OtlpExport

log = logging.getLogger("fleetdeck.engine")
REMOTE_TIMEOUT_S = 600.0  # one HTTP request's cap; the route's deadline is usually shorter


class Engine:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings.db_path)
        self.checkpointer = audit.Checkpointer(
            audit.signing_key(local_secret(AUDIT_KEY_NAME, settings, audit.new_signing_secret)),
            settings.audit_checkpoint_file,
            every=settings.audit_checkpoint_every,
            interval_s=settings.audit_checkpoint_interval_s,
        )
        self.recorder = Recorder(
            self.db,
            settings.spool_dir,
            flush_interval_s=settings.recorder_flush_interval_s,
            batch_traces=settings.recorder_batch_traces,
            fsync_interval_s=settings.spool_fsync_interval_s,
            checkpointer=self.checkpointer,
        )
        self._recording = False
        self._server: GatewayServer | None = None
        self._cache: ResponseCache | None = None
        self._admin: AdminEndpoint | None = None
        self.providers: dict[str, Provider] = {}
        self.on_listening: Callable[[str], None] | None = None
        # Hears the long jobs (the cache index load, MiniLM's conversion; drift and retention runs),
        # on their threads; set it before open_gateway.
        self.progress: Progress = silent
        # A crashed predecessor's spool is stored before anyone reads the database.
        self.replayed = self.recorder.replay()
        self._key_admin: KeyAdmin | None = None
        self._oversight: Oversight | None = None
        self._prompts: PromptRegistry | None = None
        self._drift: DriftMonitor | None = None
        self._retention: store_retention.Retention | None = None
        self._lazy = threading.Lock()  # key admin and oversight may first be asked for from any thread
        self.policy: Policy | None = None  # the policy in force, once the gateway is open
        self.evaluator: judge.Evaluator | None = None  # the sampled judge, when the policy has one
        self.mcp: McpGateway | None = None  # the MCP gateway, when the policy names MCP servers
        self.otlp: OtlpExport | None = None  # the OTLP export, when an endpoint is configured
        self.cluster: Cluster | None = None  # the replicas' shared state, with `cluster:` set
        self.lake: LakeShipping | None = None  # the export to the lake, while serving with `lake:` set

    # -- lifecycle --------------------------------------------------------------------

    def start_recorder(self) -> None:
        if not self._recording:
            self.recorder.start()
            self._recording = True

    def open_gateway(
        self, policy: Policy | None = None, host: str | None = None, port: int | None = None
    ) -> None:
        """Build providers and the gateway from the policy (default: the settings' policy file)."""
        self.policy = policy or self._load_policy()
        if self._oversight is not None:  # made before (a pane read the stops): the routes in force
            self._oversight.known_routes = {route.intent for route in self.policy.routes}
        self.start_recorder()
        self._audit_policy(self.policy)
        self.providers = build_providers(self.policy, self.settings)
        breakers = Breakers(self.policy.breaker, on_ejection=self._breaker_opened)
        router = Router(self.policy, self.providers, load_models(self.db.cursor()))
        self._cluster_node()
        gateway = Gateway(
            router=router,
            executor=Executor(self.providers, breakers, self.policy.retry, observer=router.balancer),
            providers=self.providers,
            prices=price_book(self.policy, self.settings),
            recorder=self.recorder,
            policy=self.policy,
            keys=self.key_admin.registry if self.settings.auth_required else None,
            ledger=self.cluster.ledger if self.cluster else self._ledger(),
            limiter=self.cluster.limiter if self.cluster else RateLimiter(),
            refuse_uncapped_in_outage=self.settings.cluster_uncapped == "refuse",
            steps=self._task_steps(),
            stops=self.oversight.stops,
            fallbacks=FallbackNotes(self.recorder),
            approvals=ApprovalQueue(self.recorder),
            prompts=self.prompts,
            responses=StoredResponses(self.db, self.recorder),
            stream_keep_alive_s=self.settings.stream_keep_alive_s,
        )
        self._cache = gateway.cache = ResponseCache(
            self.db,
            self.settings.data_dir / "models",
            embed_via(gateway.router, gateway.executor),
            index_dir=self.settings.data_dir / "cache-index",
            progress=self.progress,
        )
        self._cache.start(self.policy.routes)
        gateway.injection = InjectionGuard(self.settings.data_dir / "models")
        if any(route.injection_guard == "combined" for route in self.policy.routes):
            warm = gateway.injection.warm
            threading.Thread(target=warm, name="fleetdeck-injection-warm", daemon=True).start()
        self.gateway = gateway
        if self.cluster is not None:
            self._join_cluster(self.cluster)
        self.evaluator = self._evaluator(gateway)
        gateway.handoffs = self._handoffs(gateway)
        self.otlp = start_export(self.policy.otlp, self.providers)
        gateway.export_trace = self.otlp.offer if self.otlp is not None else None
        if self.otlp is not None and self.evaluator is not None:
            self.evaluator.on_verdict = self.otlp.offer_verdict
        self._host = host or self.settings.host
        self._admin_token = secrets.token_urlsafe(32)
        handlers = self._admin_handlers()
        self.mcp = mcp_gateway(self.policy, gateway, self.settings.data_dir / "mcp")
        endpoint = None
        if self.mcp is not None:  # the MCP SDK is imported only by a policy that names servers
            from console.mcp.endpoint import McpEndpoint

            endpoint = McpEndpoint(self.mcp, self._host)
        app = build_app(gateway, self.health, self._admin_token, handlers, endpoint)
        self._server = GatewayServer(
            app,
            self._host,
            self.settings.port if port is None else port,
            self._publish_admin,
            self._close_providers,
        )

    def _cluster_node(self) -> Cluster | None:
        """This Engine's part in the cluster (with `cluster:` set), made once; it connects only
        when used: key and stop changes made here go to PostgreSQL even with no gateway open."""
        if self.settings.cluster and self.cluster is None:
            from console.cluster.node import Cluster  # psycopg, only in cluster mode

            self.cluster = Cluster(self.settings, self.db, self.recorder)
        return self.cluster

    def _join_cluster(self, cluster: Cluster) -> None:
        """Keys, stops, the ledger, prompts, held tool calls and ejections shared through
        PostgreSQL from now on."""
        self.key_admin.mirror = cluster
        self.oversight.mirror = cluster
        cluster.prompts.attach(self.prompts)
        if self.gateway.approvals is not None:
            self.gateway.approvals.mirror = cluster.approvals
            cluster.approvals.attach(self.gateway.approvals)
        cluster.breakers.attach(self.gateway.executor.breakers)
        cluster.attach(
            self.key_admin.registry,
            self.oversight.stops,
            key_rows.load(self.db.cursor()),
            data_dir_id(self.settings.data_dir),
            self._spent(),
        )
        cluster.start()

    def serve(self) -> None:
        """Run the gateway in this thread until interrupted (`fleetdeck serve`)."""
        assert self._server is not None, "open_gateway() first"
        self._start_schedules()
        self._server.serve()

    def start(self) -> None:
        """Run the gateway on its own thread (the console, tests)."""
        assert self._server is not None, "open_gateway() first"
        self._start_schedules()
        self._server.start()

    def _start_schedules(self) -> None:
        """Drift, retention and, with `lake:` set, the export to the lake, while serving."""
        self.drift.schedule.start(self.settings.drift_interval_s)
        self.retention.schedule.start(self.settings.retention_interval_s)
        if self.settings.lake is not None and self.lake is None:
            from console.lake.shipping import LakeShipping  # pyarrow.dataset, only with a lake

            self.lake = LakeShipping(self.db, self.settings.lake, self.settings.data_dir)
            self.lake.schedule.start(self.settings.lake_export_interval_s)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://{self._host}:{self._server.port}"

    def stop(self) -> None:
        if self._drift is not None:
            self._drift.schedule.stop()
        if self._retention is not None:
            self._retention.schedule.stop()
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._cache is not None:
            self._cache.stop()
            self._cache = None
        if self.otlp is not None:
            self.otlp.shutdown()
            self.otlp = None
        if self.cluster is not None:
            self.cluster.stop()
        if self._admin is not None:
            self._admin.withdraw(self.settings.data_dir)
            self._admin = None
        if self._recording:
            self.recorder.stop()
            self._recording = False
        if self.lake is not None:
            self.lake.stop()
            self.lake = None
        self.db.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- keys ---------------------------------------------------------------------------

    @property
    def key_admin(self) -> KeyAdmin:
        """Key management; audit events need the recorder running."""
        with self._lazy:
            if self._key_admin is None:
                self.start_recorder()
                pepper = local_secret(PEPPER_NAME, self.settings)
                self._key_admin = KeyAdmin.open(self.db, self.recorder, pepper)
                self._key_admin.mirror = self._cluster_node()
            return self._key_admin

    def console_key(self) -> tuple[str, bool]:
        """The console's own dev key, made on first run and kept as a local secret; (key, just made)."""
        return self._own_key(CONSOLE_KEY_SECRET, CONSOLE_KEY_NAME, "dev", "console")

    def _own_key(self, secret: str, key_name: str, environment: str, actor: str) -> tuple[str, bool]:
        registry = self.key_admin.registry
        stored = read_local_secret(secret, self.settings)
        if stored and registry.accepts(stored):
            return stored, False
        taken = {key.name for key in registry.known()}
        candidates = itertools.chain([key_name], (f"{key_name}-{n}" for n in itertools.count(2)))
        name = next(name for name in candidates if name not in taken)
        _, token = self.key_admin.create(name, environment, actor=actor)
        store_local_secret(secret, token, self.settings)
        return token, True

    def _evaluator(self, gateway: Gateway) -> judge.Evaluator | None:
        """The judge over sampled live traffic, with its own prod key; None when nothing is judged."""
        assert self.policy is not None
        model = judge.judge_model(self.policy)
        config = self.policy.eval
        if model is None or not (config.sample_rate or any(config.workflows.values())):
            return None
        key = None
        if self.settings.auth_required:
            key, _ = self._own_key(judge.EVALUATOR_KEY_SECRET, judge.EVALUATOR_KEY_NAME, "prod", "engine")
        evaluator = judge.Evaluator(config, model, gateway.handle, self.recorder, key)
        gateway.after_trace = evaluator.offer
        return evaluator

    def _handoffs(self, gateway: Gateway) -> Handoffs | None:
        """The policy's handoff contracts; judge gates ask through the gateway with the judge's key."""
        assert self.policy is not None
        if not self.policy.handoffs:
            return None
        handoffs = Handoffs(self.policy.handoffs, self.db, self.recorder, gateway.approvals)
        handoffs.judge_model = judge.judge_model(self.policy)
        if any(contract.gate.kind == "judge" for contract in self.policy.handoffs.values()):
            key = None
            if self.settings.auth_required:
                key, _ = self._own_key(judge.EVALUATOR_KEY_SECRET, judge.EVALUATOR_KEY_NAME, "prod", "engine")
            handoffs.ask_judge = judge.payload_judge(gateway.handle, key)
        return handoffs

    def verify_audit(self, cursor: duckdb.DuckDBPyConnection | None = None) -> audit.Verification:
        """The audit chain against its signed checkpoints, with this instance's public key."""
        return audit.verify(
            cursor or self.db.cursor(), self.settings.audit_checkpoint_file, self.checkpointer.public_key
        )

    @property
    def oversight(self) -> Oversight:
        """Route stops and overrides; the stops still in force come from the audit log."""
        with self._lazy:
            if self._oversight is None:
                self.start_recorder()
                rows = queries.run(self.db.cursor(), "route_stops", {}).to_pylist()
                stops = RouteStops(
                    {row["route"]: Stop(row["actor"], row["reason"] or "", row["stopped_at"]) for row in rows}
                )
                policy = self.policy or self._load_policy()
                self._oversight = Oversight(self.recorder, stops, {route.intent for route in policy.routes})
                self._oversight.mirror = self._cluster_node()
            return self._oversight

    @property
    def prompts(self) -> PromptRegistry:
        """The prompt registry; pins are audit entries, so it needs the recorder running."""
        with self._lazy:
            if self._prompts is None:
                self.start_recorder()
                self._prompts = PromptRegistry.open(self.db, self.recorder)
                cluster = self._cluster_node()
                self._prompts.mirror = cluster.prompts if cluster is not None else None
            return self._prompts

    def _job_progress(self, step: Step) -> None:
        """A long job's step (drift, retention) to whoever watches now (`progress`, set late)."""
        self.progress(step)

    @property
    def drift(self) -> DriftMonitor:
        """The drift monitor (console/quality/monitor.py); its audit events need the recorder running."""
        with self._lazy:
            if self._drift is None:
                self.start_recorder()
                self._drift = DriftMonitor(self.db, self.recorder, self.settings.drift_webhook_url)
                self._drift.progress = self._job_progress
            return self._drift

    def _admin_handlers(self) -> dict[str, AdminHandler]:
        """What the admin API answers, by action (console/gateway/admin.py)."""
        return {
            "query": self._answer_query,
            "keys": self._answer_keys,
            "audit_verify": self._answer_audit_verify,
            "oversight": self._answer_oversight,
            "approvals": self._answer_approvals,
            "prompts": self._answer_prompts,
            "eval_runs": lambda request: golden_runs.answer(self.db, self.recorder, request),
            "drift": self._answer_drift,
            "retention": self._answer_retention,
            "mcp": self._answer_mcp,
            "price": lambda request: bounds.answer(getattr(self, "gateway", None), request),
        }

    def answer(self, action: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """An admin action answered here, as the admin API would (a CLI command with no instance).

        Refusals are DomainErrors; `query` (Arrow bytes) and `approvals` (held calls live in
        a serving gateway) are the instance's alone.
        """
        answer = self._admin_handlers()[action](request)
        assert isinstance(answer, dict), f"{action} answers a document"
        return answer

    def _answer_query(self, request: Mapping[str, Any]) -> bytes:
        """A query sees every call and event recorded before it: the spool is flushed first
        (a CLI that has just added a prompt version reads its audit entry back)."""
        self.recorder.flush()
        return answer_query(self.db, request)

    def _answer_prompts(self, request: Mapping[str, Any]) -> dict[str, Any]:
        return self.prompts.answer(request)

    @property
    def retention(self) -> store_retention.Retention:
        """The retention windows applied to the store; purges are audit entries."""
        with self._lazy:
            if self._retention is None:
                self.start_recorder()
                windows = store_retention.Windows(
                    self.settings.payload_retention_days,
                    self.settings.trace_retention_days,
                    self.settings.audit_retention_days,
                )
                self._retention = store_retention.Retention(self.db, self.recorder, windows)
                self._retention.progress = self._job_progress
            return self._retention

    def _answer_retention(self, request: Mapping[str, Any]) -> dict[str, Any]:
        return self.retention.answer(request)

    def _answer_mcp(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """`fleetdeck mcp list`: the MCP servers (live when this Engine serves them) and the
        tool calls the store holds of each."""
        recorded = queries.run(self.db.cursor(), "mcp_tool_calls", {}).to_pylist()
        tools = [{**row, "last_call": str(row["last_call"])[:19]} for row in recorded]
        if self.mcp is not None:
            servers = [upstream.listing() for upstream in self.mcp.upstreams.values()]
            return {"running": True, "servers": servers, "tools": tools}
        policy = self.policy or self._load_policy()
        from console.mcp.upstream import Upstream

        idle = [Upstream(name, config).listing() for name, config in policy.mcp_servers.items()]
        return {"running": False, "servers": [{**s, "status": "not running"} for s in idle], "tools": tools}

    def _answer_drift(self, request: Mapping[str, Any]) -> dict[str, Any]:
        return self.drift.answer(request)

    def _answer_approvals(self, request: Mapping[str, Any]) -> dict[str, Any]:
        approvals = self.gateway.approvals
        assert approvals is not None
        return approvals.answer(request)

    def _answer_oversight(self, request: Mapping[str, Any]) -> dict[str, Any]:
        return self.oversight.answer(request)

    def _audit_policy(self, policy: Policy) -> None:
        """A policy.loaded entry when the policy in force differs from the last one audited."""
        (last,) = first_row(
            self.db.cursor(),
            "SELECT json_extract_string(payload, '$.policy_hash') FROM audit_log "
            "WHERE action = 'policy.loaded' ORDER BY seq DESC LIMIT 1",
        )
        if last != policy.policy_hash:
            source = str(self.settings.policy_file or "the shipped default policy")
            self.recorder.record_audit(
                audit.AuditEvent(
                    actor="engine",
                    actor_kind="system",
                    action="policy.loaded",
                    subject=source,
                    payload={"policy_hash": policy.policy_hash, "previous_hash": last},
                )
            )

    def _breaker_opened(self, target: str, breaker: Breaker) -> None:
        """Audited; in cluster mode also shared, so every replica leaves the target alone."""
        if self.cluster is not None:
            self.cluster.breakers.ejected(target, breaker)
        payload = {"ejections": breaker.ejections, "ejected_for_s": round(breaker.retry_in(), 3)}
        self.recorder.record_audit(
            audit.AuditEvent(
                actor="gateway",
                actor_kind="system",
                action="breaker.opened",
                subject=target,
                payload=payload,
            )
        )

    def _answer_audit_verify(self, request: Mapping[str, Any]) -> dict[str, Any]:
        verification = self.verify_audit()
        return {**dataclasses.asdict(verification), "report": verification.report()}

    def _answer_keys(self, request: Mapping[str, Any]) -> dict[str, Any]:
        return self.key_admin.answer(request)

    def _ledger(self) -> Ledger:
        ledger = LocalLedger()
        ledger.load(self._spent())
        return ledger

    def _spent(self) -> dict[tuple[str, str], float]:
        """Settled spend of this day and month per (scope, period key), from the traces."""
        spent = queries.run(self.db.cursor(), "spend_to_date", {}).to_pylist()
        return {(row["scope"], row["period_key"]): row["spend_usd"] for row in spent}

    def _task_steps(self) -> TaskSteps:
        steps = TaskSteps()
        rows = queries.run(self.db.cursor(), "task_steps", {}).to_pylist()
        steps.load({row["task_id"]: row["steps"] for row in rows})
        return steps

    # -- views ------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        gateway = self.gateway
        breakers = gateway.executor.breakers.states()
        return {
            "status": "ok",
            "providers": {name: provider.describe() for name, provider in self.providers.items()},
            "breakers": {target: state.value for target, state in breakers.items()},
            "evaluator": self.evaluator.stats() if self.evaluator else None,
            "mcp": {u.name: u.listing() for u in self.mcp.upstreams.values()} if self.mcp else {},
            "otlp": self.otlp.stats() if self.otlp else None,
            "cache": self._cache.stats() if self._cache else None,
            "budgets": [
                {
                    "scope": b.scope,
                    "period": b.period,
                    "cap_usd": b.limit_usd,
                    "spent_usd": b.spent_usd,
                    "held_usd": b.held_usd,
                }
                for b in gateway.ledger.burn()
            ],
            "deployments": gateway.router.balancer.report(self.policy.routes if self.policy else []),
            "cluster": None
            if self.cluster is None
            else {
                "replica": self.cluster.replica,
                "postgresql": self.cluster.ledger.where,
                "outage": gateway.ledger.outage(),
                "replicas": self.cluster.replicas,
            },
        }

    def _publish_admin(self) -> None:
        self._admin = AdminEndpoint.publish(self.settings.data_dir, self.url, self._admin_token)
        if self.cluster is not None:
            self.cluster.url = self.url
        if self.on_listening is not None:
            self.on_listening(self.url)

    async def _close_providers(self) -> None:
        if self.cluster is not None:
            await self.cluster.ledger.aclose()
            await self.cluster.limiter.aclose()
        if self.evaluator is not None:
            await self.evaluator.aclose()
        for provider in self.providers.values():
            try:
                await provider.aclose()
            except Exception:
                log.exception("could not close provider %s", provider.name)

    def _load_policy(self) -> Policy:
        path = self.settings.policy_file
        return policy_file.load_policy(path) if path else policy_file.default_policy()


def build_providers(policy: Policy, settings: Settings) -> dict[str, Provider]:
    from console.providers.anthropic import AnthropicProvider
    from console.providers.local import LocalProvider
    from console.providers.openai_compat import OpenAICompatProvider

    providers: dict[str, Provider] = {}
    for name, config in policy.providers.items():
        if config.kind == "local":
            providers[name] = LocalProvider(
                name,
                model_path=config.model_path,
                model_name=config.served_model(),
                n_ctx=_either(config.n_ctx, settings.local_n_ctx),
                n_threads=_either(config.n_threads, settings.local_n_threads),
                n_gpu_layers=_either(config.n_gpu_layers, settings.local_n_gpu_layers),
                main_gpu=_either(config.main_gpu, settings.local_main_gpu),
            )
            continue
        remote = OpenAICompatProvider if config.kind == "openai_compat" else AnthropicProvider
        providers[name] = remote(
            name,
            str(config.base_url),
            api_key=provider_secret(config.secret),
            models=list(config.models),
            timeout_s=config.timeout_s or REMOTE_TIMEOUT_S,
        )
    return providers


def _either(policy_value: int | None, setting: int | None) -> int | None:
    """A local model's hardware value: the policy's, else the setting's (None: the provider's default)."""
    return policy_value if policy_value is not None else setting


def mcp_gateway(policy: Policy, gateway: Gateway, log_dir: Path) -> McpGateway | None:
    """The MCP gateway over the policy's MCP servers (None without any), sharing the model
    gateway's keys, recorder and approvals queue; stdio servers' stderr goes to `log_dir`.
    The MCP SDK (a second to import) is imported only when there are servers."""
    if not policy.mcp_servers:
        return None
    from console.mcp.access import Access
    from console.mcp.pipeline import McpGateway
    from console.mcp.upstream import Upstream

    return McpGateway(
        upstreams={name: Upstream(name, config, log_dir) for name, config in policy.mcp_servers.items()},
        access=Access(policy.mcp_access),
        recorder=gateway.recorder,
        keys=gateway.keys,
        approvals=gateway.approvals,
    )


def price_book(policy: Policy, settings: Settings) -> PriceBook:
    overrides: dict[str, ModelPrices] = {}
    local_rates: dict[str, float] = {}
    for name, config in policy.providers.items():
        if config.kind == "local":
            rate = config.cost_per_hour
            local_rates[name] = settings.local_cost_per_hour if rate is None else rate
            continue
        for model, price in config.prices.items():
            overrides[f"{name}/{model}"] = ModelPrices(
                price.input, price.output, price.cache_read, price.cache_write
            )
    return PriceBook(overrides, local_rates)
