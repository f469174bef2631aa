"""Cost: cost per outcome per workflow with its trend, spend by route, small-model share, cache savings."""

from __future__ import annotations

from typing import ClassVar

import duckdb
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.widgets import DataTable, Static

from console.tui import humanize
from console.tui.context import ConsoleContext
from console.tui.panes.base import Pane, traces_of
from console.tui.panes.charts import TOGGLE, Chart, ChartRow
from console.tui.panes.tables import Cell, fill, right
from console.tui.readmodel import charts, cost
from console.tui.readmodel.cost import CostView, RouteSpend, WorkflowCost
from console.tui.readmodel.overview import Opens

WORKFLOW_COLUMNS = (
    "workflow",
    "cost / outcome",
    f"trend ({cost.TREND_DAYS} d)",
    "resolved",
    "tasks",
    "total cost",
)
ROUTE_COLUMNS = ("route", "calls", "spend", "share", f"daily ({cost.TREND_DAYS} d)")


def workflow_row(item: WorkflowCost) -> list[Cell]:
    return [
        item.workflow_id or "(no workflow)",
        right(humanize.usd(item.cost_per_outcome_usd)),
        humanize.spark(item.trend),
        right(humanize.count(item.resolved_tasks)),
        right(humanize.count(item.tasks)),
        right(humanize.usd(item.total_cost_usd)),
    ]


def route_row(item: RouteSpend, total: float) -> list[Cell]:
    return [
        item.route or "(no route)",
        right(humanize.count(item.calls)),
        right(humanize.usd(item.cost_usd)),
        right(humanize.percent(item.cost_usd / total if total else None)),
        humanize.spark(item.daily),
    ]


def headline(view: CostView) -> str:
    saved = humanize.usd(view.cache_saved_usd)
    return (
        f"last {view.window_days} days · spend {humanize.usd(view.total_spend_usd)} · "
        f"calls on small or local models {humanize.percent(view.small_or_local_share)} · "
        f"cache hits {humanize.count(view.cache_hits)}, saved ≈ {saved}"
    )


class CostPane(Pane):
    TITLE = "Cost"
    REFRESH_S = 5.0
    FOCUS = "#cost-workflows"
    BINDINGS: ClassVar[list[BindingType]] = [TOGGLE]

    def __init__(self, context: ConsoleContext, *, id: str = "cost") -> None:
        super().__init__(context, id=id)
        self.view: CostView | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="cost-headline", classes="pane-status")
        yield ChartRow(Chart(id="cost-spend-chart"), Chart(id="cost-outcome-chart"), id="cost-charts")
        yield Static("Cost per resolved task, per workflow", classes="section-title")
        yield DataTable(id="cost-workflows", cursor_type="row", zebra_stripes=True)
        yield Static("Spend by route", classes="section-title")
        yield DataTable(id="cost-routes", cursor_type="row", zebra_stripes=True)

    def fetch(self, cursor: duckdb.DuckDBPyConnection) -> CostView:
        return cost.snapshot(cursor, self.context.clock())

    def show(self, data: CostView) -> None:
        self.view = data
        self.query_one("#cost-headline", Static).update(headline(data))
        self.query_one("#cost-spend-chart", Chart).show(charts.spend_per_day(data.routes, data.days))
        outcome = charts.cost_per_outcome(data.workflows, data.window_days)
        self.query_one("#cost-outcome-chart", Chart).show(outcome)
        workflows: DataTable[Cell] = self.query_one("#cost-workflows", DataTable)
        fill(workflows, WORKFLOW_COLUMNS, [workflow_row(item) for item in data.workflows])
        routes: DataTable[Cell] = self.query_one("#cost-routes", DataTable)
        fill(routes, ROUTE_COLUMNS, [route_row(item, data.total_spend_usd) for item in data.routes])

    def behind(self, table: str, row: int) -> Opens | None:
        """Enter on a workflow or a route: its traces over the pane's window."""
        view, since = self.view, f"{self.view.window_days}d" if self.view else ""
        if view is not None and table == "cost-workflows" and row < len(view.workflows):
            return traces_of("workflow", view.workflows[row].workflow_id, since)
        if view is not None and table == "cost-routes" and row < len(view.routes):
            return traces_of("route", view.routes[row].route, since)
        return None
