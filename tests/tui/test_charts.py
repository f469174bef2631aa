"""The panes' charts: what they plot from known rows; drawn at 80x24 and 250x70 on the sample store."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from rich.text import Text
from textual.color import Color
from textual.pilot import Pilot
from textual.widgets import DataTable, Input

from console.engine import Engine
from console.tui.app import FleetdeckApp
from console.tui.panes.charts import Chart, legend
from console.tui.panes.drift import DriftPane
from console.tui.readmodel import charts
from console.tui.readmodel.cost import RouteSpend

from .conftest import FROZEN_NOW, Scenario, loaded, offline_app, show, until

CHART_PANES = [
    ("2", "traffic", ("traffic-load-chart", "traffic-latency-chart")),
    ("3", "fleet", ("fleet-tokens-chart", "fleet-flight-chart")),
    ("4", "cost", ("cost-spend-chart", "cost-outcome-chart")),
    ("5", "drift", ("drift-distribution-chart", "drift-verdicts-chart")),
]


# -- what the charts plot ------------------------------------------------------------


def minute(back: int) -> Any:
    return FROZEN_NOW.replace(second=0, microsecond=0) - timedelta(minutes=back)


def test_the_traffic_charts_have_a_point_per_minute_and_latency_only_where_calls_were() -> None:
    rows = [
        {"minute": minute(0), "calls": 120, "errors": 6, "latency_p50_ms": 800.0, "latency_p95_ms": 2400.0},
        {"minute": minute(10), "calls": 60, "errors": 0, "latency_p50_ms": 500.0, "latency_p95_ms": None},
        {"minute": minute(90), "calls": 999, "errors": 9, "latency_p50_ms": 1.0, "latency_p95_ms": 1.0},
    ]
    found = charts.traffic_charts(rows, FROZEN_NOW, "all traffic")
    requests, errors = found.load.series
    assert len(requests.values) == charts.TIMELINE_MINUTES == len(found.load.x)
    assert (requests.values[-1], errors.values[-1], requests.values[-11]) == (2.0, 0.1, 1.0)
    assert sum(requests.values) == 3.0  # the row from 90 minutes ago is outside the hour
    p50, p95 = found.latency.series
    assert (p50.x, p50.values) == ([49.0, 59.0], [500.0, 800.0])
    assert (p95.x, p95.values, p95.role) == ([59.0], [2400.0], "warning")
    assert all(label.endswith(("0", "5")) for _, label in found.load.xticks)  # every five minutes


def test_spend_per_day_stacks_the_five_dearest_routes_and_sums_the_rest() -> None:
    days = [FROZEN_NOW.date() - timedelta(days=back) for back in (1, 0)]
    routes = [RouteSpend(f"r{i}", 1, float(i), [float(i), 2.0 * i]) for i in range(1, 8)]
    chart = charts.spend_per_day(routes, days)
    assert [s.name for s in chart.series] == ["r7", "r6", "r5", "r4", "r3", "other (2)"]
    assert chart.series[-1].values == [3.0, 6.0] and chart.series[-1].role == "muted"
    assert chart.top == 56.0  # the tallest stack: every route's spend on the second day
    assert [label for _, label in chart.xticks] == [d.strftime("%m-%d") for d in days]


def test_the_verdict_mix_is_two_stacks_of_shares() -> None:
    counts = {"baseline": {"correct": 60, "partial": 30, "incorrect": 10}, "current": {"incorrect": 4}}
    chart = charts.verdict_mix("mix", counts, ("baseline 28 d", "last 7 d"))
    assert {s.name: s.values for s in chart.series} == {
        "correct": [60.0, 0.0],
        "partial": [30.0, 0.0],
        "incorrect": [10.0, 100.0],
    }
    assert [s.role for s in chart.series] == ["success", "warning", "error"]
    assert [label for _, label in chart.xticks] == ["baseline 28 d (100)", "last 7 d (4)"]


def test_a_distribution_is_each_windows_share_per_shared_bin() -> None:
    baseline = np.array([100.0] * 50 + [200.0] * 50)
    current = np.array([200.0] * 30 + [300.0] * 10)
    chart = charts.distribution("latency", baseline, current, ("base", "recent"), "latency", "ms")
    base, recent = chart.series
    assert sum(base.values) == pytest.approx(100.0) and sum(recent.values) == pytest.approx(100.0)
    assert base.values[0] == pytest.approx(50.0)  # the lowest bin holds half of the baseline
    assert (base.name, recent.name) == ("base (100)", "recent (40)")
    assert len(chart.x) == charts.HISTOGRAM_BINS and chart.unit == "%"


def test_value_ticks_read_as_the_panes_print_numbers() -> None:
    assert [label for _, label in charts.value_ticks(2000.0, 3, "ms")] == ["0 ms", "1.00 s", "2.00 s"]
    assert [label for _, label in charts.value_ticks(10.0, 2, "usd")] == ["$0", "$10.00"]
    assert charts.ChartData("t", "lines", [0.0], [charts.Series("s", [0.0])]).has_data is False


def test_the_legend_names_each_series_in_its_theme_colour() -> None:
    chart = charts.ChartData(
        "t",
        "lines",
        [0.0, 1.0],
        [charts.Series("requests/s", [1, 2]), charts.Series("errors/s", [0, 1], "error")],
        ylabel="per s",
    )
    assert legend(chart) == "[$primary]■[/] requests/s  [$error]■[/] errors/s  per s"


# -- the charts in the panes ------------------------------------------------------------


def play(app: FleetdeckApp, size: tuple[int, int], scenario: Scenario) -> None:
    async def run() -> None:
        async with app.run_test(size=size) as pilot:
            await until(pilot, lambda: app.ready, "the console")
            await scenario(pilot)

    asyncio.run(run())


def drawn(chart: Chart) -> Text:
    """The chart as it renders now: plotext's figure, exactly the widget's size."""
    rendered = chart.render()
    assert isinstance(rendered, Text)
    assert chart.draws > 0, f"{chart.id} drew no figure: {rendered.plain!r}"
    lines = rendered.plain.removesuffix("\n").split("\n")
    assert len(lines) == chart.size.height
    assert max(len(line) for line in lines) == chart.size.width
    return rendered


async def pane_charts(pilot: Pilot[None], key: str, pane_id: str, ids: tuple[str, ...]) -> list[Chart]:
    pane = await show(pilot, key, pane_id)
    await loaded(pilot, pane)
    found = [pilot.app.query_one(f"#{chart_id}", Chart) for chart_id in ids]
    await until(pilot, lambda: all(c.data is not None for c in found), f"the charts of {pane_id}")
    await pilot.pause()
    return found


@pytest.mark.parametrize("size", [(80, 24), (250, 70)], ids=["80x24", "250x70"])
def test_every_chart_draws_the_sample_data_at_the_size_of_the_terminal(
    console_engine: Engine, size: tuple[int, int]
) -> None:
    app = offline_app(console_engine)

    async def scenario(pilot: Pilot[None]) -> None:
        for key, pane_id, ids in CHART_PANES:
            for chart in await pane_charts(pilot, key, pane_id, ids):
                assert chart.data is not None and chart.data.has_data, f"{chart.id} has no data"
                assert chart.size.width >= 16 and chart.size.height >= 3, f"{chart.id}: {chart.size}"
                drawn(chart)
                assert chart.border_title and chart.data.title in str(chart.border_title)

    play(app, size, scenario)


def test_a_chart_follows_the_terminals_size_and_the_theme(console_engine: Engine) -> None:
    app = offline_app(console_engine)

    async def scenario(pilot: Pilot[None]) -> None:
        chart = (await pane_charts(pilot, "4", "cost", CHART_PANES[2][2]))[0]
        small = chart.size
        drawn(chart)
        await pilot.resize_terminal(250, 70)
        await until(pilot, lambda: chart.size.width > small.width, "a wider chart")
        await pilot.pause()
        assert chart.size.height > small.height
        drawn(chart)

        before, draws = chart.theme_colour("primary"), chart.draws
        drawn(chart)
        assert chart.draws == draws, "a refresh with the same data, size and theme drew again"
        app.theme = "textual-light"
        await until(pilot, lambda: chart.draws > draws, "the chart redrawn in the new theme")
        assert chart.theme_colour("primary") == Color.parse(app.theme_variables["primary"]).rgb != before
        drawn(chart)

    play(app, (80, 24), scenario)


def test_the_traffic_charts_follow_the_filter_and_c_hides_and_shows_them(console_engine: Engine) -> None:
    app = offline_app(console_engine)

    async def scenario(pilot: Pilot[None]) -> None:
        load = (await pane_charts(pilot, "2", "traffic", CHART_PANES[0][2]))[0]
        assert load.data is not None
        everything = sum(load.data.series[0].values)
        assert "all traffic" in load.data.title

        await pilot.press("slash")
        field = app.query_one("#traffic-filter", Input)
        field.value = "route:triage_ticket"
        await pilot.press("enter")
        await until(pilot, lambda: load.data is not None and "route=triage_ticket" in load.data.title)
        assert load.data is not None and 0 < sum(load.data.series[0].values) < everything

        row = app.query_one("#traffic-charts")
        await pilot.press("c")
        assert not row.display or row.has_class("-hidden")
        assert row.region.height == 0 or not row.display
        await pilot.press("c")
        await pilot.pause()
        assert not row.has_class("-hidden") and row.region.height > 0

    play(app, (80, 24), scenario)


def test_the_drift_charts_show_the_highlighted_workflow_and_m_switches_the_distribution(
    console_engine: Engine,
) -> None:
    app = offline_app(console_engine)

    async def scenario(pilot: Pilot[None]) -> None:
        distribution, verdicts = await pane_charts(pilot, "5", "drift", CHART_PANES[3][2])
        pane = app.query_one(DriftPane)
        assert pane.view is not None
        first = pane.view.report.statistics[0].workflow_id
        assert pane.charted == first and distribution.data is not None
        assert distribution.data.title == f"Latency · {first}"

        await pilot.press("m")
        assert distribution.data.title == f"Output tokens · {first}"
        drawn(distribution)

        table = app.query_one("#drift-table", DataTable)
        other = next(i for i, s in enumerate(pane.view.report.statistics) if s.workflow_id != first)
        table.move_cursor(row=other)
        await until(pilot, lambda: pane.charted != first, "the next workflow")
        assert verdicts.data is not None and verdicts.data.title == f"Verdict mix · {pane.charted}"
        assert distribution.data.title == f"Output tokens · {pane.charted}"

    play(app, (180, 48), scenario)


def test_the_hours_charts_count_what_the_store_holds(console_engine: Engine) -> None:
    cur = console_engine.db.cursor()
    hour = [FROZEN_NOW - timedelta(hours=1), FROZEN_NOW]
    sql = (
        "SELECT count(*),"
        " sum(output_tokens) FILTER (WHERE status IN ('ok', 'partial') AND provider IS NOT NULL),"
        " sum(latency_ms) FILTER (WHERE provider IS NOT NULL)"
        " FROM traces WHERE ts_start >= ? AND ts_start < ?"
    )
    ((calls, tokens, busy_ms),) = console_engine.db.cursor().execute(sql, hour).fetchall()
    assert calls == 5  # as the Overview's requests tile counts the sample's last hour

    traffic = charts.traffic_charts(charts.traffic_timeline(cur, {}, FROZEN_NOW), FROZEN_NOW, "all traffic")
    assert sum(traffic.load.series[0].values) * 60 == pytest.approx(calls)
    fleet = charts.fleet_charts(charts.provider_minutes(cur, FROZEN_NOW), FROZEN_NOW)
    assert sum(v for s in fleet.tokens.series for v in s.values) * 60 == pytest.approx(tokens)
    assert sum(v for s in fleet.in_flight.series for v in s.values) * 60_000 == pytest.approx(busy_ms)
    assert {s.name for s in fleet.tokens.series} == {"anthropic", "openai"}
