"""The whole lake as one read-only store: the store's schema in memory, filled from every replica.

The tables are made by the store's own migrations, so the named queries, the scorecard and
drift run on it unchanged; each table holds the lake's rows, the latest version of a row
kept (layout.READ_KEYS). The audit log keeps each replica's chain side by side (its seq is
per replica), so it is made without the store's primary key and with a `replica` column.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds

from console.lake import layout
from console.store import rollups
from console.store.db import Database


def read_table(lake: Path, table: str) -> pa.Table | None:
    """Every segment of `table`, hive partitions (date, replica) as columns; None if it has none."""
    files = layout.segments(lake, table)
    if not files:
        return None
    partitioning = ds.partitioning(
        pa.schema([("date", pa.string()), ("replica", pa.string())]), flavor="hive"
    )
    dataset = ds.dataset(
        [str(p) for p in files],
        format="parquet",
        partitioning=partitioning,
        partition_base_dir=str(layout.table_dir(lake, table)),
    )
    return dataset.to_table()


def attach(lake: Path) -> Database:
    """An in-memory store over the lake; nothing is written back."""
    db = Database(Path(":memory:"))
    cur = db.cursor()
    for table, keys in layout.READ_KEYS.items():
        rows = read_table(lake, table)
        if rows is None:
            continue
        cur.register("lake_rows", rows)
        latest = (
            f"SELECT * EXCLUDE (date{'' if table == 'audit_log' else ', replica'}) FROM lake_rows "
            f"QUALIFY row_number() OVER (PARTITION BY {', '.join(keys)} "
            f"ORDER BY {layout.TABLES[table][0]} DESC, replica) = 1"
        )
        if table == "audit_log":
            cur.execute("DROP TABLE audit_log")
            cur.execute(f"CREATE TABLE audit_log AS {latest}")
        else:
            cur.execute(f"INSERT INTO {table} BY NAME {latest}")
        cur.unregister("lake_rows")
    rollups.rebuild(cur)
    return db
