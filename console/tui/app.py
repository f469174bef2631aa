"""The Fleetdeck console: compose, bindings, message handlers. The panes and their read model do the rest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import ContentSwitcher, Footer, Header, Input, Tab, Tabs, TextArea

from console.demo import DemoTraffic
from console.engine import Engine
from console.store import seed
from console.tui.commands import FleetdeckCommands
from console.tui.context import ConsoleContext
from console.tui.panes.audit import AuditPane
from console.tui.panes.base import Pane
from console.tui.panes.cost import CostPane
from console.tui.panes.drift import DriftPane
from console.tui.panes.fleet import FleetPane
from console.tui.panes.playground import PlaygroundPane
from console.tui.panes.sql import SqlPane
from console.tui.panes.traffic import TrafficPane
from console.tui.readmodel.clock import SYSTEM_CLOCK, Clock
from console.tui.screens.help import HelpScreen

PANES: tuple[type[Pane], ...] = (
    TrafficPane,
    FleetPane,
    CostPane,
    DriftPane,
    AuditPane,
    SqlPane,
    PlaygroundPane,
)
PANE_IDS = ("traffic", "fleet", "cost", "drift", "audit", "sql", "playground")


@dataclass(frozen=True)
class ConsoleOptions:
    """How the console starts; tests turn the gateway and the seeding off and freeze the clock."""

    seed: bool = True
    gateway: bool = True
    demo: bool = False
    policy: Any = None  # a console.policy.Policy; None: the settings' policy file or the default
    port: int | None = None
    clock: Clock = SYSTEM_CLOCK


class FleetdeckApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "Fleetdeck"
    AUTO_FOCUS = None  # each pane focuses its main widget when shown
    COMMANDS: ClassVar[set[Any]] = App.COMMANDS | {FleetdeckCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        *[
            Binding(str(number), f"show_pane('{pane_id}')", pane.TITLE, show=False, priority=True)
            for number, (pane_id, pane) in enumerate(zip(PANE_IDS, PANES, strict=True), start=1)
        ],
        Binding("f1", "help", "Help"),
    ]

    class EngineReady(Message):
        def __init__(self, seeded: int, url: str | None, problem: str | None, new_key: bool = False) -> None:
            super().__init__()
            self.seeded, self.url, self.problem, self.new_key = seeded, url, problem, new_key

    def __init__(self, engine: Engine, options: ConsoleOptions | None = None) -> None:
        super().__init__()
        self.options = options or ConsoleOptions()
        self.context = ConsoleContext(engine, self.options.clock)
        self.ready = False
        self.seeded = 0
        self.demo: DemoTraffic | None = None

    def compose(self) -> ComposeResult:
        yield Header(icon="◆")
        yield Tabs(
            *[
                Tab(f"{number} {pane.TITLE}", id=f"tab-{pane_id}")
                for number, (pane_id, pane) in enumerate(zip(PANE_IDS, PANES, strict=True), start=1)
            ],
            id="pane-tabs",
        )
        with ContentSwitcher(initial="traffic", id="panes"):
            for pane_id, pane in zip(PANE_IDS, PANES, strict=True):
                yield pane(self.context, id=pane_id)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "opening the store…"
        self._start_engine()

    @work(thread=True, exit_on_error=False, group="engine")
    def _start_engine(self) -> None:
        engine, options = self.context.engine, self.options
        seeded, url, problem, new_key = 0, None, None, False
        try:
            if options.seed:
                seeded = seed.seed_if_empty(engine.db.cursor())
            if options.gateway:
                engine.open_gateway(options.policy, port=options.port)
                engine.start()
                url = engine.url
                _, new_key = self.context.make_dev_key()
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"
        self.post_message(self.EngineReady(seeded, url, problem, new_key))

    def on_fleetdeck_app_engine_ready(self, message: FleetdeckApp.EngineReady) -> None:
        self.context.gateway_url = message.url
        self.seeded = message.seeded
        self.sub_title = self._gateway_line()
        if message.seeded:
            self.notify(
                f"The store was empty: imported the sample traces ({message.seeded:,} rows), "
                "shifted so that they end now.",
                title="Sample traces",
                timeout=10,
            )
        if message.new_key and self.context.dev_key:
            self.notify(
                f"Send requests with: Authorization: Bearer {self.context.dev_key}",
                title="A dev key for this console was created",
                timeout=15,
            )
        if message.problem:
            self.notify(message.problem, title="The gateway did not start", severity="error", timeout=15)
        if self.options.demo and message.url:
            self.demo = DemoTraffic(message.url, self.context.dev_key, on_error=self._demo_problem)
            self.demo.start()
        self.ready = True
        self.active_pane.activate()

    def _gateway_line(self) -> str:
        url = self.context.gateway_url
        if url is None:
            return "gateway off"
        key = self.context.dev_key
        line = f"gateway {url}/v1"
        return f"{line} · key {key}" if key else line

    def _demo_problem(self, text: str) -> None:
        self.call_from_thread(self.notify, text, severity="warning")

    @property
    def active_pane(self) -> Pane:
        return self.query_one(f"#{self.query_one('#panes', ContentSwitcher).current}", Pane)

    def on_tabs_tab_activated(self, event: Tabs.TabActivated) -> None:
        """A tab was chosen (number key, palette or click): show its pane, pause the others."""
        event.stop()
        pane_id = (event.tab.id or "tab-traffic").removeprefix("tab-")
        self.query_one("#panes", ContentSwitcher).current = pane_id
        if not self.ready:
            return
        shown = self.active_pane
        for pane in self.query(Pane):
            if pane.active and pane is not shown:
                pane.deactivate()
        if not shown.active:
            shown.activate()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Number keys switch panes, except while typing: then the digit goes to the text."""
        return not (action == "show_pane" and isinstance(self.focused, Input | TextArea))

    def action_show_pane(self, pane_id: str) -> None:
        self.query_one("#pane-tabs", Tabs).active = f"tab-{pane_id}"

    async def action_pane_action(self, pane_id: str, action: str) -> None:
        self.action_show_pane(pane_id)
        await self.query_one(f"#{pane_id}", Pane).run_action(action)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def on_unmount(self) -> None:
        if self.demo is not None:
            self.demo.stop()
        self.context.close_cursors()


def run_console(engine: Engine, options: ConsoleOptions | None = None) -> None:
    """Run the console until the user quits; the caller owns (and stops) the Engine."""
    FleetdeckApp(engine, options).run()
