"""Merges a partition's small segments into one, never showing a reader both or neither.

The merged file is written under a temp name and renamed into place, then the old segments
are removed; a reader that lists the partition between those two steps sees each row twice,
so readers keep one row per identity (console/lake/attach.py; docs/lake.md says so for other
engines: the merged segment's name starts with `merged-`, and the rows it holds are the
same rows as the parts it replaced, so counting distinct identities is exact throughout).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from console.clock import new_request_id
from console.lake import layout
from console.lake.export import write_segment

SMALL_BYTES = 8 * 1024 * 1024


def compact(lake: Path, before_date: str | None = None) -> int:
    """Segments merged away; a partition dated `before_date` or later (still open) is left alone."""
    merged = 0
    for table in layout.TABLES:
        for partition in sorted({p.parent for p in layout.segments(lake, table)}):
            date = partition.parent.name.removeprefix("date=")
            if before_date is not None and date >= before_date:
                continue
            merged += _compact_partition(partition)
    return merged


def _compact_partition(partition: Path) -> int:
    small = [p for p in sorted(partition.glob("*.parquet")) if p.stat().st_size < SMALL_BYTES]
    if len(small) < 2:
        return 0
    rows = pa.concat_tables([pq.read_table(p) for p in small], promote_options="default")
    write_segment(rows, partition, f"merged-{new_request_id()}")
    for path in small:
        path.unlink()
    return len(small)
