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
# A partition still being written (today's) is merged once it holds this many small segments:
# a minutely export then leaves at most this many files a day per table and replica.
OPEN_PARTITION_SEGMENTS = 32


def compact(lake: Path, replica: str | None = None, open_date: str | None = None) -> int:
    """Segments merged away, in `replica`'s partitions (None: every replica's, for a lake no
    replica writes to). Partitions dated `open_date` or later are merged only once they hold
    OPEN_PARTITION_SEGMENTS small segments; closed ones whenever they hold two."""
    merged = 0
    for table in layout.TABLES:
        partitions = {p.parent for p in layout.segments(lake, table)}
        for partition in sorted(partitions):
            if replica is not None and partition.name != f"replica={replica}":
                continue
            still_open = open_date is not None and partition.parent.name.removeprefix("date=") >= open_date
            merged += _compact_partition(partition, OPEN_PARTITION_SEGMENTS if still_open else 2)
    return merged


def _compact_partition(partition: Path, at_least: int) -> int:
    small = [p for p in sorted(partition.glob("*.parquet")) if p.stat().st_size < SMALL_BYTES]
    if len(small) < at_least:
        return 0
    rows = pa.concat_tables([pq.read_table(p) for p in small], promote_options="default")
    write_segment(rows, partition, f"merged-{new_request_id()}")
    for path in small:
        path.unlink()
    return len(small)
