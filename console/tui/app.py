"""The Fleetdeck console: compose, bindings, message handlers. The panes and their read model do the rest."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from textual import events, work
from textual.app import App, ComposeResult
from textual.await_complete import AwaitComplete
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.widgets import ContentSwitcher, Footer, Header, Input, Tab, Tabs, TextArea

from console.demo import DemoTraffic
from console.engine import Engine
from console.progress import Step
from console.store import importer, seed
from console.store.flushed import Flushed
from console.tui.commands import FleetdeckCommands
from console.tui.context import ConsoleContext
from console.tui.panes.audit import AuditPane
from console.tui.panes.base import OpenBehind, Pane
from console.tui.panes.cost import CostPane
from console.tui.panes.drift import DriftPane
from console.tui.panes.fleet import FleetPane
from console.tui.panes.overview import OverviewPane
from console.tui.panes.playground import PlaygroundPane
from console.tui.panes.sql import SqlPane
from console.tui.panes.traffic import TrafficPane
from console.tui.readmodel.clock import SYSTEM_CLOCK, Clock
from console.tui.screens.trace import TraceScreen

PANES: tuple[type[Pane], ...] = (
    OverviewPane,
    TrafficPane,
    FleetPane,
    CostPane,
    DriftPane,
    AuditPane,
    SqlPane,
    PlaygroundPane,
)
SETUP = "importing the sample traces"
SHORT_ROWS = 34  # below this many rows (80×24, say) the panes tighten: see `-short` in app.tcss
NARROW_COLUMNS = 120  # below this many columns the side lists narrow: `-narrow` in app.tcss
PANE_IDS = ("overview", "traffic", "fleet", "cost", "drift", "audit", "sql", "playground")
PANE_KINDS: dict[str, type[Pane]] = dict(zip(PANE_IDS, PANES, strict=True))
FIRST_PANE = "overview"  # the pane a start shows, and the only one it composes (the others: when first shown)
PaneT = TypeVar("PaneT", bound=Pane)
# The gateway opens once the pane shown has drawn the store (its imports and start would slow that
# first screenful down), or after this long at most.
FIRST_SCREEN_WAIT_S = 2.0


@dataclass(frozen=True)
class ConsoleOptions:
    """How the console starts; tests turn the gateway and the seeding off and freeze the clock."""

    seed: bool = True
    gateway: bool = True
    demo: bool = False
    policy: Any = None  # a console.policy.Policy; None: the settings' policy file or the default
    port: int | None = None
    clock: Clock = SYSTEM_CLOCK
    # The panes learn of stored traces from the recorder's flushes (False: they poll, as without a
    # gateway here; bench/live_tail.py compares the two).
    push: bool = True
    # What the console reads when it serves nothing (e.g. "lake PATH (read-only)"); None: its store.
    source: str | None = None
    # Called on the setup thread after each step of the first-run import (tests hold it there).
    on_setup: Callable[[importer.ImportProgress], None] | None = None


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
        # Alt+digit switches panes from anywhere, while typing too (a plain digit is typed there).
        *[
            Binding(f"alt+{number}", f"jump_pane('{pane_id}')", pane.TITLE, show=False, priority=True)
            for number, (pane_id, pane) in enumerate(zip(PANE_IDS, PANES, strict=True), start=1)
        ],
        Binding("f1", "help", "Help"),
    ]

    class StoreOpen(Message):
        """The store is open and the first run decided: the panes go live, from the store, while
        the gateway opens (a warm start shows its traffic before the model has loaded)."""

    class EngineReady(Message):
        """The gateway is up (or did not start); a first-run import may still run."""

        def __init__(self, url: str | None, problem: str | None, new_key: bool = False) -> None:
            super().__init__()
            self.url, self.problem, self.new_key = url, problem, new_key

    class SetupProgress(Message):
        def __init__(self, step: importer.ImportProgress) -> None:
            super().__init__()
            self.step = step

    class JobProgress(Message):
        """A step of one of the gateway's start-up jobs (Engine.progress), from the job's thread."""

        def __init__(self, step: Step) -> None:
            super().__init__()
            self.step = step

    class TracesStored(Message):
        """The recorder committed a flush (posted from its writer's thread): what it stored."""

        def __init__(self, flushed: Flushed) -> None:
            super().__init__()
            self.flushed = flushed

    class SetupDone(Message):
        """The first-run setup is over: `seeded` sample rows imported (0: none were needed)."""

        def __init__(self, seeded: int, problem: str | None) -> None:
            super().__init__()
            self.seeded, self.problem = seeded, problem

    def __init__(self, engine: Engine, options: ConsoleOptions | None = None) -> None:
        super().__init__()
        self.options = options or ConsoleOptions()
        self.context = ConsoleContext(engine, self.options.clock)
        self.live = False  # the panes show the store (it is open)
        self.ready = False  # and the gateway is up, or off
        self.setting_up = True  # until the first-run setup (the sample import) is over
        self.seeded = 0
        self.demo: DemoTraffic | None = None
        self.jobs: dict[str, Step] = {}  # long jobs under way, by name: shown with their percentage
        self._unsubscribe: Callable[[], None] | None = None  # from the recorder's flushes
        self._mounting: dict[str, AwaitComplete] = {}  # panes mounted since the start, by id
        self._first_screen = threading.Event()  # the pane shown has drawn the store

    def compose(self) -> ComposeResult:
        yield Header(icon="◆")
        yield Tabs(
            *[
                Tab(f"{number} {pane.TITLE}", id=f"tab-{pane_id}")
                for number, (pane_id, pane) in enumerate(zip(PANE_IDS, PANES, strict=True), start=1)
            ],
            id="pane-tabs",
        )
        with ContentSwitcher(initial=FIRST_PANE, id="panes"):
            yield PANE_KINDS[FIRST_PANE](self.context, id=FIRST_PANE)
        yield Footer()

    async def pane(self, kind: type[PaneT]) -> PaneT:
        """The pane of that kind, mounted (hidden) the first time it is asked for: a start composes
        only the pane it shows, and each other pane waits until it is first wanted."""
        pane_id = PANE_IDS[PANES.index(kind)]
        switcher = self.query_one("#panes", ContentSwitcher)
        if pane_id != FIRST_PANE and pane_id not in self._mounting:
            self._mounting[pane_id] = switcher.add_content(kind(self.context, id=pane_id))
        if pane_id in self._mounting:
            await self._mounting[pane_id]  # again when already mounted: at once
        return switcher.get_child_by_id(pane_id, kind)

    def on_mount(self) -> None:
        self.sub_title = "opening the store…"
        self._fit(self.size)
        self._start_engine()

    def on_resize(self, event: events.Resize) -> None:
        self._fit(event.size)  # the event's: the app's own size is updated after its handlers

    def _fit(self, size: Size) -> None:
        """A short terminal gets smaller charts and tighter sections, a narrow one narrower side
        lists (app.tcss, `-short` and `-narrow`)."""
        self.set_class(size.height < SHORT_ROWS, "-short")
        self.set_class(size.width < NARROW_COLUMNS, "-narrow")

    @work(thread=True, exit_on_error=False, group="engine")
    def _start_engine(self) -> None:
        """Decide the first-run import, open the gateway, then import: calls are served meanwhile."""
        engine, options = self.context.engine, self.options
        url, problem, new_key = None, None, False
        try:
            pending = seed.first_run(engine.db.cursor()) if options.seed else None
        except Exception as exc:
            pending, problem = None, f"{type(exc).__name__}: {exc}"
        engine.progress = self._job_step  # the long jobs: the cache's, drift's, retention's
        self.post_message(self.StoreOpen())
        if options.gateway and problem is None:
            self._first_screen.wait(FIRST_SCREEN_WAIT_S)
            try:
                engine.open_gateway(options.policy, port=options.port)
                if options.push:  # before the panes' first query: no flush falls between the two
                    self._unsubscribe = engine.recorder.on_flush(self._flushed)
                engine.start()
                url = engine.url
                _, new_key = self.context.make_dev_key()
            except Exception as exc:
                problem = f"{type(exc).__name__}: {exc}"
        self.post_message(self.EngineReady(url, problem, new_key))
        self._first_run(pending)

    def _first_run(self, pending: seed.SampleImport | None) -> None:
        seeded, problem = 0, None
        if pending is not None:
            try:
                seeded = pending.run(self.context.engine.db.cursor(), progress=self._setup_step)
            except Exception as exc:
                problem = f"{type(exc).__name__}: {exc}"
        self.post_message(self.SetupDone(seeded, problem))

    def _setup_step(self, step: importer.ImportProgress) -> None:
        """On the setup thread: tell the console, then whoever watches the setup (tests)."""
        self.post_message(self.SetupProgress(step))
        if self.options.on_setup is not None:
            self.options.on_setup(step)

    def _flushed(self, flushed: Flushed) -> None:
        """On the recorder's writer thread: hand the flush to the UI's loop, never wait for it."""
        self.post_message(self.TracesStored(flushed))

    def on_fleetdeck_app_traces_stored(self, message: FleetdeckApp.TracesStored) -> None:
        for pane in self.query(Pane):
            pane.flushed(message.flushed)

    def _job_step(self, step: Step) -> None:
        """On the job's thread (the cache's writer or warm-up, drift, retention, an export): tell the UI."""
        self.post_message(self.JobProgress(step))

    def on_fleetdeck_app_store_open(self, message: FleetdeckApp.StoreOpen) -> None:
        self.context.pushed = self.options.gateway and self.options.push  # as the gateway will be
        self.live = True
        self._show_jobs()
        self._activate(self.active_pane)

    def on_fleetdeck_app_engine_ready(self, message: FleetdeckApp.EngineReady) -> None:
        self.context.gateway_url = message.url
        pushed = message.url is not None and self._unsubscribe is not None
        if pushed != self.context.pushed:  # the gateway did not start: the panes poll
            self.context.pushed = pushed
            for pane in self.query(Pane):
                pane.retime()
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
        self._show_jobs()

    def on_fleetdeck_app_setup_progress(self, message: FleetdeckApp.SetupProgress) -> None:
        step = message.step
        if step.step != "committed":
            self.jobs[SETUP] = Step(step.done, step.total, SETUP)
            self._show_jobs()

    def on_fleetdeck_app_job_progress(self, message: FleetdeckApp.JobProgress) -> None:
        """The sub-title shows the job's percentage; a notification says when it is done."""
        step = message.step
        if step.total is not None and step.done >= step.total:
            if self.jobs.pop(step.name, None) is not None:
                self.notify(f"{step.name}: done (100%)", title="Fleetdeck", timeout=5)
        else:
            self.jobs[step.name] = step
        self._show_jobs()

    def _show_jobs(self) -> None:
        under_way = [f"{name} {step.percent or 0}%" for name, step in self.jobs.items()]
        self.sub_title = " · ".join([self._gateway_line(), *under_way])

    def on_fleetdeck_app_setup_done(self, message: FleetdeckApp.SetupDone) -> None:
        self.seeded = message.seeded
        self.setting_up = False
        self.jobs.pop(SETUP, None)
        self._show_jobs()
        if message.seeded:
            self.notify(
                f"The store was empty: imported the sample traces ({message.seeded:,} rows), "
                "shifted so that they end when the console started.",
                title="Sample traces",
                timeout=10,
            )
        if message.problem:
            self.notify(
                message.problem, title="The sample traces were not imported", severity="error", timeout=15
            )
        if self.live and message.seeded:  # the pane shown may hold none of what was imported yet
            self.active_pane.reload()

    def _gateway_line(self) -> str:
        url = self.context.gateway_url
        if url is None and self.options.gateway and not self.ready:
            return "opening the gateway…"
        if url is None:
            return self.options.source or "gateway off"
        key = self.context.dev_key
        line = f"gateway {url}/v1"
        return f"{line} · key {key}" if key else line

    def _demo_problem(self, text: str) -> None:
        self.call_from_thread(self.notify, text, severity="warning")

    @property
    def active_pane(self) -> Pane:
        return self.query_one(f"#{self.query_one('#panes', ContentSwitcher).current}", Pane)

    async def on_tabs_tab_activated(self, event: Tabs.TabActivated) -> None:
        """A tab was chosen (number key, palette or click): show its pane, pause the others."""
        event.stop()
        pane_id = (event.tab.id or f"tab-{FIRST_PANE}").removeprefix("tab-")
        shown = await self.pane(PANE_KINDS[pane_id])
        self.query_one("#panes", ContentSwitcher).current = pane_id
        if not self.live:
            return
        for pane in self.query(Pane):
            if pane.active and pane is not shown:
                pane.deactivate()
        if not shown.active:
            self._activate(shown)

    def _activate(self, pane: Pane) -> None:
        """Show the pane's data; one that reads nothing from the store at once (SQL, Playground)
        has nothing for the gateway's start to wait for."""
        pane.activate()
        if not pane.loading_now:
            self._first_screen.set()

    def on_pane_drawn(self, message: Pane.Drawn) -> None:
        self._first_screen.set()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Number keys switch panes, except while typing: then the digit goes to the text."""
        return not (action == "show_pane" and isinstance(self.focused, Input | TextArea))

    def action_show_pane(self, pane_id: str) -> None:
        self.query_one("#pane-tabs", Tabs).active = f"tab-{pane_id}"

    def action_jump_pane(self, pane_id: str) -> None:
        """Alt+digit: the pane, wherever the focus is (a dialog first closes: it has no panes)."""
        if self.screen is self.screen_stack[0]:
            self.action_show_pane(pane_id)

    async def on_trace_screen_replay(self, message: TraceScreen.Replay) -> None:
        """A trace replayed: the Playground with its conversation, the last prompt ready to send."""
        self.action_show_pane("playground")
        playground = await self.pane(PlaygroundPane)
        playground.prefill(message.model, message.history, message.prompt)

    async def on_open_behind(self, message: OpenBehind) -> None:
        """A tile was opened: its pane; Traffic with the tile's filter typed in its field, to edit."""
        self.action_show_pane(message.opens.pane)
        if message.opens.filter is not None:
            traffic = await self.pane(TrafficPane)
            traffic.show_filter(message.opens.filter)

    async def action_pane_action(self, pane_id: str, action: str) -> None:
        self.action_show_pane(pane_id)
        pane = await self.pane(PANE_KINDS[pane_id])
        await pane.run_action(action)

    def action_help(self) -> None:
        from console.tui.screens.help import HelpScreen  # Markdown: imported when first asked for

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def on_unmount(self) -> None:
        self._first_screen.set()  # a start under way goes on at once (and finds the console gone)
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self.demo is not None:
            self.demo.stop()
        self.context.close_cursors()


def run_console(engine: Engine, options: ConsoleOptions | None = None) -> None:
    """Run the console until the user quits; the caller owns (and stops) the Engine."""
    FleetdeckApp(engine, options).run()
