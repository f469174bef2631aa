"""The one read-write DuckDB connection of this process, with a cursor per thread."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb

MIGRATION_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")

# The store's DuckDB instance reads and writes its own file and nothing else: every
# query of every surface (SQL pane, `fleetdeck query`, the admin API, named queries)
# runs on it, so no file, URL, extension or secret is within reach of an analyst's SQL.
# Fleetdeck's own file work (imports, exports, evidence packs) goes through pyarrow and
# polars and reaches DuckDB as registered Arrow tables. The configuration is locked, so
# no statement can SET any of it back.
SANDBOX: dict[str, str | bool] = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "allow_unsigned_extensions": False,
    "allow_unredacted_secrets": False,
    "python_enable_replacements": False,
    "lock_configuration": True,
}


def first_row(
    cur: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None
) -> tuple[Any, ...]:
    """The first row of a query, or (None,); unlike fetchone, it leaves no result open."""
    rows = cur.execute(sql, params or []).fetchall()
    return tuple(rows[0]) if rows else (None,)


class StoreError(Exception):
    """A problem with the database file that the user can act on."""


_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")


def lock_holder(message: str) -> str | None:
    """`PID 123 (its command line)` of the process DuckDB says holds the file's lock, or None."""
    found = _HOLDER.search(message)
    if found is None:
        return None
    pid = found["pid"]
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        command = " ".join(" ".join(a.decode(errors="replace").split()) for a in argv if a)[:200]
    except OSError:  # another OS, or the process is gone
        command = found["program"]
    return f"PID {pid} ({command or found['program']})"


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped in console/store/migrations."""
    found = []
    for entry in resources.files("console.store").joinpath("migrations").iterdir():
        match = MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text("utf-8")))
    return sorted(found)


class Database:
    """Opens (creating if needed) the DuckDB file and brings its schema up to date."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = duckdb.connect(str(path), config=dict(SANDBOX))
        except duckdb.IOException as exc:
            holder = lock_holder(str(exc))
            if holder is None:
                raise StoreError(f"cannot open {path}: {exc}") from exc
            raise StoreError(
                f"cannot open {path}: it is held by {holder}. Another Fleetdeck process may own it; "
                "stop it, or point --data-dir elsewhere."
            ) from exc
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._cursors_lock = threading.Lock()
        self._migrate()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor; DuckDB connections must not be shared across threads."""
        cur: duckdb.DuckDBPyConnection | None = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._conn.cursor()
            self._local.cursor = cur
            with self._cursors_lock:
                self._cursors.append(cur)
        return cur

    def new_cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor of its own for work the caller manages (and closes), e.g. a UI worker."""
        return self._conn.cursor()

    def schema_version(self) -> int:
        (version,) = first_row(self.cursor(), "SELECT max(version) FROM schema_migrations")
        return int(version) if version is not None else 0

    def close(self) -> None:
        with self._cursors_lock:
            for cur in self._cursors:
                cur.close()
            self._cursors.clear()
        self._conn.close()

    def _migrate(self) -> None:
        conn = self._conn
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMP)"
        )
        applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations").fetchall()}
        for version, name, sql in migrations():
            if version in applied:
                continue
            conn.execute("BEGIN")
            try:
                conn.execute(sql)
                conn.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                    [version, name, datetime.now(UTC).replace(tzinfo=None)],
                )
                conn.execute("COMMIT")
            except duckdb.Error as exc:
                conn.execute("ROLLBACK")
                raise StoreError(f"migration {version:03d}_{name} failed on {self.path}: {exc}") from exc
