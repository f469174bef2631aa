"""The audit trail, its chain links and the human overrides, from the named queries."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import duckdb

from console.store import queries

WINDOW_DAYS = 30
SHOWN_EVENTS = 500


@dataclass(frozen=True)
class ChainStatus:
    """Whether each event's prev_hash names the hash of the event before it (in the window).

    This checks the links only; recomputing every hash (`fleetdeck audit verify`) comes
    with the governance issue.
    """

    events: int
    first_break_seq: int | None

    @property
    def intact(self) -> bool:
        return self.first_break_seq is None


@dataclass(frozen=True)
class AuditView:
    events: list[dict[str, Any]]  # newest first, at most SHOWN_EVENTS
    total_events: int
    chain: ChainStatus
    overrides: list[dict[str, Any]]  # newest first


def snapshot(cur: duckdb.DuckDBPyConnection, now: datetime) -> AuditView:
    window = {"from": now - timedelta(days=WINDOW_DAYS), "to": now}
    events = queries.run(cur, "audit_trail", window).to_pylist()
    overrides = queries.run(cur, "overrides", window).to_pylist()
    return AuditView(
        events=events[::-1][:SHOWN_EVENTS],
        total_events=len(events),
        chain=chain_links(events),
        overrides=overrides[::-1],
    )


def chain_links(events: list[dict[str, Any]]) -> ChainStatus:
    """Events in seq order: the first one whose prev_hash is not its predecessor's hash."""
    for before, after in itertools.pairwise(events):
        if after["prev_hash"] != before["hash"] or after["seq"] != before["seq"] + 1:
            return ChainStatus(len(events), int(after["seq"]))
    return ChainStatus(len(events), None)
