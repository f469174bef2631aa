"""Stop or resume a route from the console: which route, and why (kept in the audit log)."""

from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass
from typing import ClassVar, TypeVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

_T = TypeVar("_T")


def console_actor() -> str:
    """Who acts from this console, as the audit log names them."""
    return f"console:{getpass.getuser()}@{socket.gethostname()}"


class _Dialog(ModalScreen[_T | None]):
    """A form: its go button or Enter in any field submits, Escape or the other button cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id and event.button.id.endswith("-go"):
            self._submit()
        else:
            self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._submit()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _submit(self) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class RouteAction:
    route: str
    reason: str
    stop: bool


class RouteActionScreen(_Dialog[RouteAction]):
    """Asks for a route and a reason; a stop needs a reason, a resume may have one."""

    AUTO_FOCUS = "#route-name"

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


@dataclass(frozen=True)
class Override:
    request_id: str
    verdict: str
    reason: str


class OverrideScreen(_Dialog[Override]):
    """A human verdict on one call: its request id, pass / partial / fail, and why.

    The store's verdicts are correct, partial and incorrect; pass and fail are the same two.
    Opened from a trace, the request id is filled in and the verdict field has the focus.
    """

    AUTO_FOCUS = "#override-request"
    VERDICTS = ("correct", "partial", "incorrect")
    ALIASES: ClassVar[dict[str, str]] = {"pass": "correct", "fail": "incorrect"}

    def __init__(self, request_id: str = "") -> None:
        super().__init__()
        self._request_id = request_id

    def on_mount(self) -> None:
        if self._request_id:  # the call is known: the verdict is what to type (before AUTO_FOCUS)
            self.query_one("#override-verdict", Input).focus()

    def compose(self) -> ComposeResult:
        with Vertical(id="override-dialog", classes="dialog"):
            yield Static("Override the verdict on a call (kept in the audit log)", classes="section-title")
            yield Input(value=self._request_id, placeholder="request id", id="override-request")
            yield Input(placeholder="pass (correct), partial or fail (incorrect)", id="override-verdict")
            yield Input(placeholder="why", id="override-reason")
            yield Static("", id="override-problem", classes="pane-status -error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Override", variant="primary", id="override-go")
                yield Button("Cancel", id="override-cancel")

    def _submit(self) -> None:
        values = [
            self.query_one(f"#override-{name}", Input).value.strip()
            for name in ("request", "verdict", "reason")
        ]
        request_id, verdict, reason = values
        verdict = self.ALIASES.get(verdict.lower(), verdict.lower())
        problem = self.query_one("#override-problem", Static)
        if not request_id:
            problem.update("which call? (its request id, from Traffic)")
        elif verdict not in self.VERDICTS:
            problem.update("the verdict is pass, partial or fail (correct, partial or incorrect)")
        elif not reason:
            problem.update("say why: an override without a reason cannot be audited")
        else:
            self.dismiss(Override(request_id, verdict, reason))
