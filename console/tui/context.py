"""What every pane needs from the running console, without Textual: the engine, a clock, cursors.

Each pane gets a DuckDB cursor of its own (a connection to the one database of the
Engine) that only its refresh worker uses, one run at a time; the context closes them
all when the console exits, before the Engine closes the database.
"""

from __future__ import annotations

import threading
from typing import Any

import duckdb

from console.engine import Engine
from console.policy import Policy
from console.tui.readmodel.clock import SYSTEM_CLOCK, Clock


class ConsoleContext:
    def __init__(self, engine: Engine, clock: Clock = SYSTEM_CLOCK) -> None:
        self.engine = engine
        self.clock = clock
        self.gateway_url: str | None = None
        self.dev_key: str | None = None  # the console's own key for the gateway, once made
        # The recorder of this process tells the panes what each flush stored (panes/base.py);
        # False: they poll (the gateway is off, or another process writes the store).
        self.pushed = False
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._lock = threading.Lock()

    def new_cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor for one pane's workers; closed by close_cursors()."""
        cursor = self.engine.db.new_cursor()
        with self._lock:
            self._cursors.append(cursor)
        return cursor

    def release(self, cursor: duckdb.DuckDBPyConnection) -> None:
        """Close a cursor from new_cursor() that is no longer needed (a closed trace view)."""
        with self._lock:
            if cursor in self._cursors:
                self._cursors.remove(cursor)
        cursor.close()

    def close_cursors(self) -> None:
        with self._lock:
            cursors, self._cursors = self._cursors, []
        for cursor in cursors:
            try:
                cursor.interrupt()
                cursor.close()
            except duckdb.Error:
                pass

    def health(self) -> dict[str, Any] | None:
        """The Engine's health (providers, breakers) once its gateway is open, else None."""
        if self.gateway_url is None:
            return None
        try:
            health: dict[str, Any] = self.engine.health()
        except (AttributeError, RuntimeError):
            return None
        return health

    @property
    def policy(self) -> Policy | None:
        return self.engine.policy

    def make_dev_key(self) -> tuple[str, bool]:
        """The Engine's console key (created on first run): (key, just made)."""
        self.dev_key, made = self.engine.console_key()
        return self.dev_key, made
