"""Overview: the fleet at a glance, a tile per signal (green, amber, red); Enter opens what is behind one."""

from __future__ import annotations

from typing import ClassVar

import duckdb
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid
from textual.events import Resize
from textual.message import Message
from textual.widgets import Static

from console.tui.context import ConsoleContext
from console.tui.panes.base import OpenBehind, Pane
from console.tui.readmodel import overview
from console.tui.readmodel.overview import LEVELS, Opens, Oversight, Tile

TILE_WIDTH = 24  # the narrowest a tile may be; the grid has as many columns as fit
MAX_COLUMNS = 4  # wider tiles beyond that, so that each reads as a line
TILE_NAMES = (
    "spend_day",
    "spend_month",
    "requests",
    "errors",
    "latency",
    "drift",
    "approvals",
    "stops",
    "breakers",
    "judge",
    "keys",
)


class OverviewTile(Static, can_focus=True):
    """One signal: its title on the border, the value, a line of detail; Enter opens what is behind it."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("enter", "open", "Open")]

    class Chosen(Message):
        def __init__(self, opens: Opens) -> None:
            super().__init__()
            self.opens = opens

    def __init__(self, name: str) -> None:
        super().__init__("", id=f"tile-{name}", classes="tile")
        self.tile: Tile | None = None

    def show(self, tile: Tile) -> None:
        self.tile = tile
        self.border_title = tile.title
        self.border_subtitle = tile.level
        for level in LEVELS:
            self.set_class(level == tile.level, f"-{level}")
        self.update(f"[b]{tile.value}[/b]\n{tile.detail}")

    def action_open(self) -> None:
        if self.tile is not None:
            self.post_message(self.Chosen(self.tile.opens))


class OverviewPane(Pane):
    TITLE = "Overview"
    REFRESH_S = 2.0
    FOCUS = "#tile-errors"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left", "move(-1, 0)", "Left", show=False),
        Binding("right", "move(1, 0)", "Right", show=False),
        Binding("up", "move(0, -1)", "Up", show=False),
        Binding("down", "move(0, 1)", "Down", show=False),
    ]

    def __init__(self, context: ConsoleContext, *, id: str = "overview") -> None:
        super().__init__(context, id=id)
        self.tiles: list[Tile] = []

    def compose(self) -> ComposeResult:
        yield Static("", id="overview-status", classes="pane-status")
        with Grid(id="overview-tiles"):
            for name in TILE_NAMES:
                yield OverviewTile(name)

    def fetch(self, cursor: duckdb.DuckDBPyConnection) -> list[Tile]:
        return overview.snapshot(
            cursor, self.context.clock(), self.context.health(), self.context.policy, self._oversight()
        )

    def _oversight(self) -> Oversight:
        """Held calls and stops, as the Engine holds them (in memory; loaded from the store)."""
        engine = self.context.engine
        stopped = list(engine.oversight.stops.stopped())
        if self.context.gateway_url is None:
            return Oversight(stopped=stopped)
        approvals = engine.gateway.approvals
        held = [call.held_at for call in approvals.pending()] if approvals is not None else []
        return Oversight(held_since=held, stopped=stopped, gateway=True)

    def show(self, data: list[Tile]) -> None:
        self.tiles = data
        for tile in data:
            self.query_one(f"#tile-{tile.name}", OverviewTile).show(tile)
        counts = {level: sum(t.level == level for t in data) for level in LEVELS}
        self.query_one("#overview-status", Static).update(
            f"{counts['red']} red · {counts['amber']} amber · {counts['green']} green · "
            "arrows move, Enter opens what is behind a tile"
        )

    def on_resize(self, event: Resize) -> None:
        grid = self.query_one("#overview-tiles", Grid)
        grid.styles.grid_size_columns = max(1, min(MAX_COLUMNS, event.size.width // TILE_WIDTH))

    def action_move(self, across: int, down: int) -> None:
        tiles = list(self.query(OverviewTile))
        focused = self.screen.focused
        index = tiles.index(focused) if isinstance(focused, OverviewTile) and focused in tiles else 0
        columns = self.query_one("#overview-tiles", Grid).styles.grid_size_columns or 1
        target = index + across + down * columns
        if 0 <= target < len(tiles):
            tiles[target].focus()

    def on_overview_tile_chosen(self, message: OverviewTile.Chosen) -> None:
        message.stop()
        self.app.post_message(OpenBehind(message.opens))
