"""Where to export the SQL pane's result, and as what."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, RadioButton, RadioSet, Static

from console.tui.readmodel.sql import ExportFormat

DEFAULT_NAME = "fleetdeck-result"


@dataclass(frozen=True)
class ExportRequest:
    path: Path
    format: ExportFormat


class ExportScreen(ModalScreen[ExportRequest | None]):
    AUTO_FOCUS = "*"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(id="export-dialog", classes="dialog"):
            yield Static("Export the whole result (not only the rows shown)", classes="section-title")
            with RadioSet(id="export-format"):
                yield RadioButton("CSV", value=True, id="format-csv")
                yield RadioButton("Parquet", id="format-parquet")
            yield Input(value=str(Path.cwd() / f"{DEFAULT_NAME}.csv"), id="export-path")
            yield Static("", id="export-problem", classes="pane-status -error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Export", variant="primary", id="export-go")
                yield Button("Cancel", id="export-cancel")

    @property
    def chosen_format(self) -> ExportFormat:
        pressed = self.query_one("#export-format", RadioSet).pressed_button
        if pressed is not None and pressed.id == "format-parquet":
            return ExportFormat.parquet
        return ExportFormat.csv

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        path_input = self.query_one("#export-path", Input)
        path = Path(path_input.value)
        path_input.value = str(path.with_suffix(f".{self.chosen_format.value}"))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "export-go":
            self._submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _submit(self) -> None:
        typed = self.query_one("#export-path", Input).value.strip()
        if not typed:
            self.query_one("#export-problem", Static).update("give a file name")
            return
        path = Path(typed).expanduser()
        if path.is_dir():
            path = path / f"{DEFAULT_NAME}.{self.chosen_format.value}"
        self.dismiss(ExportRequest(path, self.chosen_format))
