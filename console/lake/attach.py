"""The whole lake as one read-only store: the store's schema, filled from every replica.

The tables are made by the store's own migrations, so the named queries, the scorecard and
drift run on it unchanged; each table holds the lake's rows, the latest version of a row
kept (layout.READ_KEYS). The audit log and its checkpoints keep each replica's chain side by
side (seq is per replica), so they are made without the store's primary key and with a
`replica` column; `verify` checks each replica's chain on its own.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds

from console.lake import layout
from console.store import audit, rollups
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


def attach(lake: Path, into: Path = Path(":memory:")) -> Database:
    """A store at `into` (default: in memory) holding the lake's rows; nothing is written back."""
    if not lake.is_dir():
        raise FileNotFoundError(f"no lake at {lake}: expected a folder of table=…/date=…/replica=… segments")
    db = Database(into)
    cur = db.cursor()
    for table, keys in layout.READ_KEYS.items():
        rows = read_table(lake, table)
        if rows is None:
            continue
        cur.register("lake_rows", rows)
        per_replica = table in layout.PER_REPLICA
        latest = (
            f"SELECT * EXCLUDE (date{'' if per_replica else ', replica'}) FROM lake_rows "
            f"QUALIFY row_number() OVER (PARTITION BY {', '.join(keys)} "
            f"ORDER BY {layout.TABLES[table][0]} DESC, replica) = 1"
        )
        if per_replica:
            cur.execute(f"DROP TABLE {table}")
            cur.execute(f"CREATE TABLE {table} AS {latest}")
        else:
            cur.execute(f"INSERT INTO {table} BY NAME {latest}")
        cur.unregister("lake_rows")
    rollups.rebuild(cur)
    return db


def replicas(db: Database) -> list[str]:
    """The replicas whose audit log the attached lake holds."""
    cur = db.cursor()
    if "replica" not in {row[0] for row in cur.execute("DESCRIBE audit_log").fetchall()}:
        return []
    return [row[0] for row in cur.execute("SELECT DISTINCT replica FROM audit_log ORDER BY 1").fetchall()]


def verify(db: Database) -> audit.Verification:
    """Each replica's chain against its own signed checkpoints; the first problem names its replica."""
    entries = checkpoints = 0
    for replica in replicas(db):
        found = _verify_replica(db, replica)
        if not found.ok:
            return audit.Verification(
                entries + found.entries,
                checkpoints + found.checkpoints,
                found.first_bad_seq,
                f"replica {replica}: {found.problem}",
            )
        entries, checkpoints = entries + found.entries, checkpoints + found.checkpoints
    return audit.Verification(entries, checkpoints)


def _verify_replica(db: Database, replica: str) -> audit.Verification:
    """The replica's rows in a store of their own, where the chain check runs as on the replica."""
    one = Database(Path(":memory:"))
    try:
        cur, source = one.cursor(), db.cursor()
        for table in layout.PER_REPLICA:
            if "replica" not in {row[0] for row in source.execute(f"DESCRIBE {table}").fetchall()}:
                continue
            rows = source.execute(
                f"SELECT * EXCLUDE (replica) FROM {table} WHERE replica = ?", [replica]
            ).to_arrow_table()
            cur.register("replica_rows", rows)
            cur.execute(f"INSERT INTO {table} BY NAME SELECT * FROM replica_rows")
            cur.unregister("replica_rows")
        return audit.verify(cur)
    finally:
        one.close()
