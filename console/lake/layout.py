"""Where a segment lives in the lake, and what identifies a row of each table."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

# table -> (the date column, the columns that identify one recorded version of a row). The
# signed checkpoints go before the audit log: every checkpoint exported then signs entries
# the same export carries, so the lake's chain verifies against them at every moment.
TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "traces": ("ts_start", ("request_id",)),
    "evals": ("ts", ("eval_id", "ts")),
    "outcomes": ("ts", ("task_id", "ts")),
    "audit_checkpoints": ("ts", ("seq",)),
    "audit_log": ("ts", ("seq",)),
}
# The row a reader keeps when a key was exported more than once (an outcome reported late): latest ts.
READ_KEYS: dict[str, tuple[str, ...]] = {
    "traces": ("request_id",),
    "evals": ("eval_id",),
    "outcomes": ("task_id",),
    "audit_checkpoints": ("replica", "seq"),
    "audit_log": ("replica", "seq"),
}
# Tables whose rows are per replica (a chain each): kept whole, with their `replica` column.
PER_REPLICA = ("audit_checkpoints", "audit_log")
PARTITIONS = ("date", "replica")


def replica_id(data_dir: Path) -> str:
    """Stable across restarts of one data dir: the host and a digest of the data dir's path."""
    digest = hashlib.sha1(str(data_dir.resolve()).encode()).hexdigest()[:8]
    return f"{socket.gethostname()}-{digest}"


def table_dir(lake: Path, table: str) -> Path:
    return lake / f"table={table}"


def partition_dir(lake: Path, table: str, date: str, replica: str) -> Path:
    return table_dir(lake, table) / f"date={date}" / f"replica={replica}"


def segments(lake: Path, table: str) -> list[Path]:
    return sorted(table_dir(lake, table).glob("date=*/replica=*/*.parquet"))


def date_of(segment: Path) -> str:
    """The date partition a segment is in (YYYY-MM-DD)."""
    return segment.parent.parent.name.removeprefix("date=")
