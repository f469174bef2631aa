"""Stop or resume a route from the console: which route, and why (kept in the audit log)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static


@dataclass(frozen=True)
class RouteAction:
    route: str
    reason: str
    stop: bool


class RouteActionScreen(ModalScreen[RouteAction | None]):
    """Asks for a route and a reason; a stop needs a reason, a resume may have one."""

    AUTO_FOCUS = "#route-name"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, stop: bool, routes: list[str], route: str = "") -> None:
        super().__init__()
        self._stop, self._routes, self._route = stop, routes, route

    def compose(self) -> ComposeResult:
        verb = "Stop" if self._stop else "Resume"
        with Vertical(id="route-dialog", classes="dialog"):
            yield Static(
                f"{verb} a route — routes: {', '.join(self._routes) or 'none'}", classes="section-title"
            )
            yield Input(value=self._route, placeholder="route (intent)", id="route-name")
            yield Input(placeholder="why (kept in the audit log)", id="route-reason")
            yield Static("", id="route-problem", classes="pane-status -error")
            with Horizontal(classes="dialog-buttons"):
                yield Button(verb, variant="error" if self._stop else "primary", id="route-go")
                yield Button("Cancel", id="route-cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "route-go":
            self._submit()
        else:
            self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._submit()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _submit(self) -> None:
        route = self.query_one("#route-name", Input).value.strip()
        reason = self.query_one("#route-reason", Input).value.strip()
        problem = self.query_one("#route-problem", Static)
        if route not in self._routes:
            problem.update(f"no route {route!r}")
        elif self._stop and not reason:
            problem.update("say why the route is stopped")
        else:
            self.dismiss(RouteAction(route, reason, self._stop))
