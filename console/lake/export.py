"""Copies what a store recorded since its last export into the lake, one segment per partition.

Idempotent without state of its own: a row whose identity (layout.TABLES) this replica's
partitions already hold is not written again, so running twice, or after a crash between
two segments, never doubles a row. A segment is written to a hidden temp file and renamed.

`since` (a date) bounds one export to the rows dated that day or later, read against only
those partitions: what a periodic export needs, at a cost that does not grow with the store.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from console.clock import new_request_id
from console.lake import layout
from console.progress import Progress, Step, silent
from console.store.db import Database


def export(
    db: Database, lake: Path, replica: str, since: str | None = None, progress: Progress = silent
) -> dict[str, int]:
    """Rows written per table (dated `since` or later, when given: YYYY-MM-DD); `progress` hears each."""
    written = {}
    for done, table in enumerate(layout.TABLES):
        progress(Step(done, len(layout.TABLES), table))
        written[table] = _export_table(db, lake, replica, table, since)
    progress(Step(len(layout.TABLES), len(layout.TABLES), "written"))
    return written


def _export_table(db: Database, lake: Path, replica: str, table: str, since: str | None) -> int:
    date_col, identity = layout.TABLES[table]
    cur = db.new_cursor()
    try:
        cur.register("lake_have", _exported_identities(lake, replica, table, identity, since))
        on = " AND ".join(f"t.{c} = h.{c}" for c in identity)
        recent = f"WHERE t.{date_col} >= CAST(? AS DATE)" if since else ""
        rows = cur.sql(
            f"SELECT t.*, strftime(t.{date_col}, '%Y-%m-%d') AS lake_date FROM {table} t "
            f"ANTI JOIN lake_have h ON {on} {recent} ORDER BY ALL",
            params=[since] if since else None,
        ).to_arrow_table()
    finally:
        cur.close()
    rows = stable_types(rows)
    for date in pc.unique(rows["lake_date"]).to_pylist():
        part = rows.filter(pc.equal(rows["lake_date"], date)).drop_columns(["lake_date"])
        write_segment(part, layout.partition_dir(lake, table, date, replica), f"part-{new_request_id()}")
    return int(rows.num_rows)


def _exported_identities(
    lake: Path, replica: str, table: str, identity: tuple[str, ...], since: str | None
) -> pa.Table:
    files = [
        p
        for p in layout.segments(lake, table)
        if p.parent.name == f"replica={replica}" and (since is None or layout.date_of(p) >= since)
    ]
    if not files:
        return _empty(identity)
    return ds.dataset([str(p) for p in files], format="parquet").to_table(columns=list(identity))


def _empty(identity: tuple[str, ...]) -> pa.Table:
    types = {"seq": pa.int64(), "ts": pa.timestamp("us")}
    return pa.table({c: pa.array([], type=types.get(c, pa.string())) for c in identity})


def stable_types(rows: pa.Table) -> pa.Table:
    """JSON as UTF-8 strings, timestamps in microseconds without zone: what every engine reads alike."""
    fields = []
    for field in rows.schema:
        kind = field.type
        if isinstance(kind, pa.ExtensionType):
            kind = kind.storage_type
        if pa.types.is_timestamp(kind):
            kind = pa.timestamp("us")
        if pa.types.is_large_string(kind):
            kind = pa.string()
        fields.append(pa.field(field.name, kind))
    columns = [
        col.cast(f.type)
        if not isinstance(col.type, pa.ExtensionType)
        else pa.chunked_array([c.storage for c in col.chunks], type=col.type.storage_type).cast(f.type)
        for col, f in zip(rows.columns, fields, strict=True)
    ]
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def write_segment(rows: pa.Table, directory: Path, stem: str) -> Path:
    """Written beside its final name and renamed: a reader sees the whole segment or none of it."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{stem}.parquet"
    temp = directory / f".{stem}.parquet.tmp"
    pq.write_table(rows, temp, coerce_timestamps="us")
    temp.replace(final)
    return final
