"""What the reports read their records from: named queries and admin answers, wherever they run.

A command passes the running instance or a local Engine (console/commands/instance.py);
the reports never open the store themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import pyarrow as pa

QueryRunner = Callable[[str, Mapping[str, str]], pa.Table]


class RecordSource(Protocol):
    def named(self, name: str, params: Mapping[str, Any]) -> pa.Table:
        """A named query's rows."""
        ...

    def ask(self, action: str, request: Mapping[str, Any], timeout_s: float = ...) -> dict[str, Any]:
        """An admin action's answer (`audit_verify`, …)."""
        ...
