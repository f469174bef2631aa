"""The spool's format: the line `record()` writes, and a closed segment read back as columns.

A segment opens with a header line that names, per table, the fields of its records in
order; every other line is one record as a JSON array: its table, then its values in
that order (`["traces", "01J…", "2026-11-01T12:30:15.250000", "ok", null, …]`). Such a
line is less than half the size of a `{"t": …, "r": {…}}` object, cheaper to write (one
tuple of its fields, one `orjson.dumps`) and to decode, and a table's rows come apart
into columns with one `zip`. The header travels with its segment, so a segment written
by another version of Fleetdeck (fields added or reordered) replays by its own names; a
segment of the earlier object format (no header) replays too.

A line that is neither (torn by a kill, or corrupt) is skipped, as it was never
acknowledged; a record that cannot be read as a row of its table (an unknown table, the
wrong number of values) is handed back as refused, to be kept in `spool/rejected/`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import orjson

from console.store.audit import AuditEvent
from console.store.trace import Eval, Outcome, Payload, StoredResponse, Trace

log = logging.getLogger("fleetdeck.recorder")

AUDIT = "audit"
FORMAT = 2
LAYOUTS: dict[str, tuple[str, ...]] = {
    table: tuple(f.name for f in fields(record))
    for table, record in (
        ("traces", Trace),
        ("payloads", Payload),
        ("outcomes", Outcome),
        ("evals", Eval),
        ("stored_responses", StoredResponse),
        (AUDIT, AuditEvent),
    )
}
HEADER = orjson.dumps({"spool": FORMAT, "layouts": LAYOUTS}, option=orjson.OPT_APPEND_NEWLINE)

Record = Trace | Payload | Outcome | Eval | StoredResponse | AuditEvent


def _values_of(table: str, names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """A function returning `(table, record.<name>, …)` in `names`' order: one tuple display of
    plain attribute reads, a quarter of the cost of `(table, *attrgetter(*names)(record))` for a
    trace's 55 fields (record() runs it once per call). The names are the dataclass's own fields."""
    if not all(name.isidentifier() for name in names):
        raise ValueError(f"not field names: {names}")
    source = f"lambda r: ({table!r}, {', '.join(f'r.{name}' for name in names)})"
    values: Callable[[Any], tuple[Any, ...]] = eval(source, {})
    return values


_VALUES = {table: _values_of(table, names) for table, names in LAYOUTS.items()}


def spool_line(table: str, record: Record) -> bytes:
    """One record as a spool line: its table, then its fields' values in LAYOUTS order."""
    return orjson.dumps(_VALUES[table](record), option=orjson.OPT_APPEND_NEWLINE)


@dataclass(slots=True)
class Spooled:
    """One table's records of a segment: the names of their fields, and each record as a
    list of its table, then its values in that order."""

    names: tuple[str, ...]
    rows: list[list[Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def columns(self) -> dict[str, tuple[Any, ...]]:
        """Each field's values, in row order."""
        if not self.rows:
            return {}
        return dict(zip(self.names, list(zip(*self.rows, strict=True))[1:], strict=True))

    def record(self, row: Sequence[Any]) -> dict[str, Any]:
        return dict(zip(self.names, row[1:], strict=True))

    def records(self) -> list[dict[str, Any]]:
        return [self.record(row) for row in self.rows]

    def only(self, rows: list[list[Any]]) -> Spooled:
        return Spooled(self.names, rows)

    def last_per_key(self, key: str) -> Spooled:
        """The last record of each key (a replacing table's batch may not hold a key twice)."""
        at = self.names.index(key) + 1 if key in self.names else None
        last = {(row[at] if at is not None else None): row for row in self.rows}
        return self.only(list(last.values()))


@dataclass(slots=True)
class Segment:
    """A closed segment's records by table, and those that could not be read as rows."""

    tables: dict[str, Spooled] = field(default_factory=dict)
    refused: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)


def read_segment(path: Path, legacy_names: Mapping[str, tuple[str, ...]]) -> Segment:
    """Decode a segment; `legacy_names` are the fields kept of the earlier format's objects."""
    reader = _Reader(legacy_names)
    lines = path.read_bytes().split(b"\n")
    last = len(lines) - 1
    for number, line in enumerate(lines, start=1):
        if line and not reader.take(line) and number < last:
            log.error("spool segment %s: line %d is corrupt and was skipped", path.name, number)
    return reader.segment()


class _Reader:
    def __init__(self, legacy_names: Mapping[str, tuple[str, ...]]) -> None:
        self._legacy_names = legacy_names
        self._layouts: dict[str, tuple[str, ...]] = {}
        self._rows: dict[str, list[list[Any]]] = {}
        self._objects: dict[str, list[dict[str, Any]]] = {}

    def take(self, line: bytes) -> bool:
        """Keep one line's record; False for a line that is not one (torn or corrupt)."""
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            return False
        if type(entry) is list and entry and type(entry[0]) is str:
            self._rows.setdefault(entry[0], []).append(entry)
        elif type(entry) is dict and type(entry.get("layouts")) is dict:
            self._layouts = {table: tuple(names) for table, names in entry["layouts"].items()}
        elif type(entry) is dict and type(entry.get("t")) is str and type(entry.get("r")) is dict:
            self._objects.setdefault(entry["t"], []).append(entry["r"])
        else:
            return False
        return True

    def segment(self) -> Segment:
        segment = Segment()
        for table, rows in self._rows.items():
            names = self._layouts.get(table)
            if names is None:
                reason = f"no layout for table {table!r} in the segment's header"
                segment.refused.extend((table, {"values": row[1:]}, reason) for row in rows)
            else:
                segment.tables[table] = Spooled(names, _of_width(table, names, rows, segment.refused))
        for table, objects in self._objects.items():
            names = self._layouts.get(table) or self._legacy_names.get(table)
            if names is None:
                segment.refused.extend(
                    (table, record, f"no table {table!r} to store it in") for record in objects
                )
                continue
            spooled = segment.tables.setdefault(table, Spooled(names))
            spooled.rows.extend([table, *(record.get(name) for name in names)] for record in objects)
        return segment


def _of_width(
    table: str, names: tuple[str, ...], rows: list[list[Any]], refused: list[tuple[str, dict[str, Any], str]]
) -> list[list[Any]]:
    """The rows that hold one value per name; the others are refused."""
    width = len(names) + 1
    if set(map(len, rows)) == {width}:
        return rows
    reason = f"expected {len(names)} values ({', '.join(names)})"
    refused.extend((table, {"values": row[1:]}, reason) for row in rows if len(row) != width)
    return [row for row in rows if len(row) == width]
