"""Fleet: providers and models, breaker state, latency, errors, load, and today's budget burn."""

from __future__ import annotations

from typing import ClassVar

import duckdb
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Label, ProgressBar, Static

from console.tui import humanize
from console.tui.context import ConsoleContext
from console.tui.panes.base import Pane, traces_of
from console.tui.panes.charts import TOGGLE, Chart, ChartRow
from console.tui.panes.tables import Cell, fill, right
from console.tui.readmodel import fleet
from console.tui.readmodel.fleet import (
    BudgetBurn,
    DeploymentState,
    FleetView,
    McpServerState,
    ModelLoad,
    ProviderState,
    ReplicaState,
)
from console.tui.readmodel.overview import Opens

PROVIDER_COLUMNS = (
    "provider",
    "kind",
    "device",
    "layers on GPU",
    "backends",
    "models",
    "breakers",
    "decode",
    "queue",
)
MODEL_COLUMNS = ("provider", "model", "calls", "req/s", "p50", "p99", "errors", "error rate", "tok/s")
DEPLOYMENT_COLUMNS = (
    "route",
    "deployment",
    "strategy",
    "weight",
    "in flight",
    "share, last min",
    "requests left",
    "tokens left",
    "cooling",
)
REPLICA_COLUMNS = ("replica", "state", "seen", "url")
BREAKER_STYLE = {"closed": "green", "half_open": "yellow", "open": "bold red"}
MCP_COLUMNS = ("MCP server", "transport", "status", "tools", "calls", "refused", "failed")
MCP_STYLE = {"up": "green", "starting": "yellow", "restarting": "yellow", "breaker open": "bold red"}


def mcp_row(server: McpServerState) -> list[Cell]:
    return [
        server.name,
        server.transport + (", remote" if server.remote else ""),
        Text(server.status, style=MCP_STYLE.get(server.status, "dim")),
        ", ".join(server.tools) or humanize.DASH,
        right(humanize.count(server.calls)),
        right(humanize.count(server.refused)),
        right(humanize.count(server.failed)),
    ]


def provider_row(state: ProviderState) -> list[Cell]:
    breakers = Text()
    for target, status in sorted(state.breakers.items()):
        breakers.append(f"{target.split('/', 1)[-1]} ", style="dim")
        breakers.append(f"{status}  ", style=BREAKER_STYLE.get(status, ""))
    queue = "busy" if state.busy else "idle" if state.busy is not None else humanize.DASH
    if state.queued:
        queue += f" +{state.queued}"
    return [
        state.name,
        state.kind,
        device_cell(state),
        offload_cell(state),
        ", ".join(state.backends) or humanize.DASH,
        ", ".join(state.models) or humanize.DASH,
        breakers if state.breakers else Text("all closed", style="green"),
        right(humanize.per_second(state.tokens_per_second).replace("/s", " tok/s")),
        queue,
    ]


def device_cell(state: ProviderState) -> str:
    """CPU, or GPU with the devices llama.cpp put layers on (`GPU CUDA0`)."""
    device = (state.device or humanize.DASH).upper()
    return " ".join([device, *state.offload_devices]) if state.device == "gpu" else device


def offload_cell(state: ProviderState) -> Cell:
    """`0/31` layers offloaded, as llama.cpp reported them; `not loaded` before the first call."""
    if not state.local:
        return humanize.DASH
    if state.layers is None or state.layers_offloaded is None:
        return Text("not loaded", style="dim")
    return right(f"{state.layers_offloaded}/{state.layers}")


def deployment_row(state: DeploymentState) -> list[Cell]:
    cooling = Text(f"{state.cooling_s:.1f}s", style="yellow") if state.cooling_s else "–"
    return [
        state.route,
        state.deployment,
        state.strategy.replace("_", " "),
        right(f"{state.weight:g}"),
        right(str(state.in_flight)),
        right(humanize.percent(state.share) if state.share is not None else "–"),
        right(state.requests_left or "–"),
        right(state.tokens_left or "–"),
        cooling,
    ]


def replica_row(replica: ReplicaState) -> list[Cell]:
    state = Text("alive", style="green") if replica.alive else Text("gone", style="bold red")
    name = f"{replica.name} (this one)" if replica.this else replica.name
    return [name, state, right(f"{replica.seen_s_ago:.1f} s ago"), replica.url or humanize.DASH]


def model_row(load: ModelLoad) -> list[Cell]:
    rate = humanize.percent(load.error_rate)
    return [
        load.provider,
        load.model or humanize.DASH,
        right(humanize.count(load.calls)),
        right(humanize.per_second(load.rps)),
        right(humanize.duration_ms(load.latency_p50_ms)),
        right(humanize.duration_ms(load.latency_p99_ms)),
        right(humanize.count(load.errors)),
        Text(rate, style="bold red" if (load.error_rate or 0) >= 0.05 else "", justify="right"),
        right(humanize.per_second(load.tokens_per_second)),
    ]


class BudgetRow(Horizontal):
    def __init__(self, burn: BudgetBurn) -> None:
        super().__init__(classes="budget-row")
        self.burn = burn

    def compose(self) -> ComposeResult:
        yield Label(f"{self.burn.scope} {self.burn.name}", classes="budget-name")
        if self.burn.cap_usd:
            yield ProgressBar(total=self.burn.cap_usd, show_eta=False, classes="budget-bar")
        else:
            yield Label("", classes="budget-bar")
        yield Label(self._spend(), classes="budget-spend")

    def on_mount(self) -> None:
        if self.burn.cap_usd:
            self.query_one(ProgressBar).update(progress=min(self.burn.spend_usd, self.burn.cap_usd))

    def _spend(self) -> str:
        period = "today" if self.burn.period == "day" else f"this {self.burn.period}"
        held = f" (+{humanize.usd(self.burn.held_usd)} held)" if self.burn.held_usd else ""
        if self.burn.cap_usd:
            cap = humanize.usd(self.burn.cap_usd)
            return f"{humanize.usd(self.burn.spend_usd)}{held} of {cap} {period}"
        return f"{humanize.usd(self.burn.spend_usd)} {period} (no cap)"


class FleetPane(Pane):
    TITLE = "Fleet"
    REFRESH_S = 2.0
    IDLE_S = 2.0  # pushed too: calls in flight, breakers and holds are no flush's news
    FOCUS = "#fleet-models"
    BINDINGS: ClassVar[list[BindingType]] = [TOGGLE]

    def __init__(self, context: ConsoleContext, *, id: str = "fleet") -> None:
        super().__init__(context, id=id)
        self._budget_keys: list[tuple[str, str, float, float | None]] | None = None
        self.view: FleetView | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="fleet-gateway", classes="pane-status")
        yield ChartRow(Chart(id="fleet-tokens-chart"), Chart(id="fleet-flight-chart"), id="fleet-charts")
        yield Static("Replicas", id="fleet-replicas-title", classes="section-title")
        yield DataTable(id="fleet-replicas", cursor_type="row", zebra_stripes=True)
        yield Static("Providers", classes="section-title")
        yield DataTable(id="fleet-providers", cursor_type="row", zebra_stripes=True)
        yield Static("Deployments", id="fleet-deployments-title", classes="section-title")
        yield DataTable(id="fleet-deployments", cursor_type="row", zebra_stripes=True)
        yield Static("Models, last hour", id="fleet-models-title", classes="section-title")
        yield DataTable(id="fleet-models", cursor_type="row", zebra_stripes=True)
        if getattr(self.context.policy, "mcp_servers", None):  # only when the policy names some
            yield Static("MCP servers (calls: last 30 days)", classes="section-title")
            yield DataTable(id="fleet-mcp", cursor_type="row", zebra_stripes=True)
        yield Static("Budget burn (UTC days and months)", classes="section-title")
        yield VerticalScroll(id="fleet-budgets")

    def fetch(self, cursor: duckdb.DuckDBPyConnection) -> FleetView:
        return fleet.snapshot(cursor, self.context.clock(), self.context.health(), self.context.policy)

    def show(self, data: FleetView) -> None:
        self.view = data
        url = self.context.gateway_url
        self.query_one("#fleet-gateway", Static).update(
            f"gateway {url}/v1" if url else "gateway not running: providers and breakers appear when it is"
        )
        if data.charts is not None:
            self.query_one("#fleet-tokens-chart", Chart).show(data.charts.tokens)
            self.query_one("#fleet-flight-chart", Chart).show(data.charts.in_flight)
        self._show_replicas(data)
        providers: DataTable[Cell] = self.query_one("#fleet-providers", DataTable)
        fill(providers, PROVIDER_COLUMNS, [provider_row(state) for state in data.providers])
        deployments: DataTable[Cell] = self.query_one("#fleet-deployments", DataTable)
        fill(deployments, DEPLOYMENT_COLUMNS, [deployment_row(state) for state in data.deployments])
        for shown in (deployments, self.query_one("#fleet-deployments-title", Static)):
            shown.display = bool(data.deployments)  # only with a balanced route
        models: DataTable[Cell] = self.query_one("#fleet-models", DataTable)
        fill(models, MODEL_COLUMNS, [model_row(load) for load in data.models])
        if data.mcp_servers and self.query("#fleet-mcp"):
            servers: DataTable[Cell] = self.query_one("#fleet-mcp", DataTable)
            fill(servers, MCP_COLUMNS, [mcp_row(server) for server in data.mcp_servers])
        self._show_budgets(data.budgets)

    def _show_replicas(self, data: FleetView) -> None:
        """The cluster's replicas, when the gateway is one of them; nothing on one box."""
        title = self.query_one("#fleet-replicas-title", Static)
        table: DataTable[Cell] = self.query_one("#fleet-replicas", DataTable)
        title.display = table.display = bool(data.replicas or data.cluster_outage)
        alive = sum(replica.alive for replica in data.replicas)
        heading = f"Replicas ({alive} of {len(data.replicas)} alive)"
        title.update(f"{heading}: {data.cluster_outage}" if data.cluster_outage else heading)
        fill(table, REPLICA_COLUMNS, [replica_row(replica) for replica in data.replicas])

    def _show_budgets(self, burns: list[BudgetBurn]) -> None:
        keys = [(b.scope, b.name, round(b.spend_usd + b.held_usd, 4), b.cap_usd) for b in burns]
        if keys == self._budget_keys:
            return
        self._budget_keys = keys
        box = self.query_one("#fleet-budgets", VerticalScroll)
        box.remove_children()
        if not burns:
            box.mount(Label("no spend today", classes="budget-empty"))
            return
        box.mount_all(BudgetRow(burn) for burn in burns)

    def behind(self, table: str, row: int) -> Opens | None:
        """Enter on a model or a provider: its traces of the last hour."""
        if self.view is not None and table == "fleet-models" and row < len(self.view.models):
            return traces_of("model", self.view.models[row].model, "1h")
        if self.view is not None and table == "fleet-providers" and row < len(self.view.providers):
            return traces_of("provider", self.view.providers[row].name, "1h")
        return None
