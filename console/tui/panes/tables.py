"""Filling Textual DataTables from plain rows, keeping the cursor where the reader left it."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import DataTable

Cell = str | Text


def fill(table: DataTable[Cell], columns: Sequence[str], rows: Sequence[Sequence[Cell]]) -> None:
    labels = [str(column.label) for column in table.columns.values()]
    if labels != list(columns):
        table.clear(columns=True)
        table.add_columns(*columns)
    row, column = table.cursor_coordinate
    table.clear()
    table.add_rows(rows)
    if rows:
        table.move_cursor(row=min(row, len(rows) - 1), column=column, animate=False, scroll=False)


def right(text: str) -> Text:
    """A right-aligned cell, for numbers."""
    return Text(text, justify="right")


def flagged(text: str, style: str) -> Text:
    return Text(text, style=style)
