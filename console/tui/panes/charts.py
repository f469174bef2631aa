"""A chart of the read model's `ChartData`, drawn by plotext at the widget's size in the theme's colours.

The widget keeps the data and draws it on every render, so it redraws itself when the
terminal is resized and when the theme changes (plotext's canvas takes the theme's
surface colour through textual-plotext's "auto" theme; the series take the theme's
primary, accent, success, warning and error colours here).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rich.text import Text
from textual.app import RenderResult
from textual.binding import Binding
from textual.color import Color, ColorParseError
from textual.containers import Horizontal
from textual.markup import escape
from textual_plotext import Plot, PlotextPlot

from console.tui.readmodel.charts import ChartData, Role, value_ticks

RGB = tuple[int, int, int]
# Theme variables: a series without a role takes the next of PALETTE (distinct from the roles' colours).
PALETTE = (
    "primary",
    "accent",
    "success",
    "primary-lighten-3",
    "secondary-lighten-2",
    "foreground-darken-1",
)
ROLES: dict[Role, str] = {
    "success": "success",
    "warning": "warning",
    "error": "error",
    "muted": "foreground-darken-3",
}
MIN_WIDTH, MIN_HEIGHT = 16, 3  # below this a chart shows its title only
TICK_GAP = 2  # columns between two x tick labels
TOGGLE = Binding("c", "toggle_charts", "Charts")  # a pane with charts hides or shows them


def colour_names(roles: Sequence[Role]) -> list[str]:
    """The theme variable of each series: its role's, else the next of PALETTE."""
    names, cycle = [], 0
    for role in roles:
        if role:
            names.append(ROLES[role])
        else:
            names.append(PALETTE[cycle % len(PALETTE)])
            cycle += 1
    return names


def legend(data: ChartData) -> str:
    """The series' names, each after a square of its colour (markup with theme variables), and the unit."""
    names = colour_names([series.role for series in data.series])
    keys = [f"[${name}]■[/] {escape(series.name)}" for series, name in zip(data.series, names, strict=True)]
    if data.kind == "hbars":
        keys = []
    return "  ".join([*keys, *([escape(data.ylabel)] if data.ylabel else [])])


class Chart(PlotextPlot):
    """One chart; `show()` gives it new data (a redraw only when the data changed).

    Its title is on the top border, the legend and the unit on the bottom one.
    """

    def __init__(self, *, id: str) -> None:
        super().__init__(id=id, classes="chart")
        self.data: ChartData | None = None
        self.draws = 0  # plotext figures built, for tests
        self._drawn: tuple[tuple[int, int, int, str], RenderResult] | None = (
            None  # the last figure, by its key
        )

    def show(self, data: ChartData) -> None:
        if data == self.data:
            return
        self.data = data
        self.border_title = escape(data.title)
        self.border_subtitle = legend(data) if data.has_data else ""
        self.refresh()

    def render(self) -> RenderResult:
        data = self.data
        width, height = self.size
        if data is None:
            return Text("…", style="dim")
        if not data.has_data:
            return Text(data.empty, style="dim", justify="center")
        if width < MIN_WIDTH or height < MIN_HEIGHT:
            return Text(data.title, style="dim")
        key = (id(data), width, height, self.app.theme)
        if self._drawn is not None and self._drawn[0] == key:
            return self._drawn[1]  # a refresh for another reason (focus, a border): the same figure
        self.plt.clear_figure()
        names = colour_names([series.role for series in data.series])
        draw(self.plt, data, [self.theme_colour(name) for name in names], width, height)
        self.draws += 1
        figure = super().render()
        self._drawn = (key, figure)
        return figure

    def theme_colour(self, name: str) -> RGB:
        variables = self.app.theme_variables
        try:
            return Color.parse(variables.get(name) or variables.get("foreground") or "white").rgb
        except ColorParseError:
            return Color.parse("white").rgb


def draw(plt: Plot, data: ChartData, colours: Sequence[RGB], width: int, height: int) -> None:
    """The figure of one chart on a cleared plotext figure: no frame, no legend (the border has it)."""
    plt.frame(False)
    top = data.top or 1.0
    if data.kind == "hbars":
        plt.bar(data.labels, data.series[0].values, orientation="horizontal", color=colours[0], width=0.6)
        positions, labels = thinned(value_ticks(top, 5, data.unit), width)
        plt.xlim(0, top)
        plt.xticks(positions, labels)
        return
    elif data.kind == "stacked":
        # The stack as bars of its running sums, the tallest first, each drawn over the one before:
        # every bar has the same columns (plotext's own stacked_bar rounds each layer apart).
        sums = np.cumsum([series.values for series in data.series], axis=0)
        for layer in range(len(data.series) - 1, -1, -1):
            plt.bar(data.x, [float(v) for v in sums[layer]], color=colours[layer], width=0.5)
    else:
        for series, colour in zip(data.series, colours, strict=True):
            if series.values:  # a series may have no point at all (no call sent this hour)
                plt.plot(data.x if series.x is None else series.x, series.values, color=colour, marker="hd")
        if len(data.x) > 1:
            plt.xlim(min(data.x), max(data.x))
    ticks = value_ticks(top, min(6, height // 2), data.unit)
    plt.ylim(0, top)
    plt.yticks([position for position, _ in ticks], [label for _, label in ticks])
    if data.xticks:
        positions, labels = thinned(data.xticks, width)
        plt.xticks(positions, labels)


def thinned(ticks: Sequence[tuple[float, str]], width: int) -> tuple[list[float], list[str]]:
    """As many tick labels as fit across `width` (every k-th)."""
    widest = max(len(label) for _, label in ticks) + TICK_GAP
    room = max(1, (width - 10) // widest)  # labels that would overlap are never both kept
    step = max(1, -(-len(ticks) // room))
    kept = list(ticks[::step])
    return [position for position, _ in kept], [label for _, label in kept]


class ChartRow(Horizontal):
    """Charts side by side, each an equal share of the width (styled in app.tcss)."""

    def __init__(self, *charts: Chart, id: str) -> None:
        super().__init__(*charts, id=id, classes="chart-row")
