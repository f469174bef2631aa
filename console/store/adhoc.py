"""Ad-hoc SQL from analysts (the SQL pane, `fleetdeck query`, the admin API): one read-only statement.

The query surface reads the store only. The boundary is DuckDB's own: the store's
instance runs with external access off and its configuration locked (console/store/db.py),
so no file, URL, extension or secret can be reached whatever the SQL says. In front of
it, the statement is checked so that an attempt is refused with a message that names
the problem: one statement, of a read-only type, calling no function that reads files
or secrets and scanning no file by name. Anything DuckDB itself refuses for lack of
permission is reported the same way. The statement runs inside a transaction that is
rolled back, so nothing an analyst types can change the traces.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import duckdb
import orjson
import pyarrow as pa

READ_ONLY = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
STORE_ONLY = "the query surface reads the store only"
# Functions that read files, list directories, run SQL given as text or show secrets.
# With external access off DuckDB refuses the file ones anyway; naming them here gives
# the analyst a clear reason before anything runs.
OUTSIDE_FUNCTIONS = re.compile(
    r"read_\w+|\w+_scan|glob|sniff_csv|parquet_\w+|iceberg_\w+|delta_\w+|\w+_attach|"
    r"duckdb_secrets|which_secret|load_aws_credentials|query|query_table|getenv|"
    r"from_csv_auto|from_json\w*|csv_scanner|http_\w+",
    re.IGNORECASE,
)
# A table name with these characters is a file (or URL) DuckDB would scan by replacement.
FILE_LIKE = re.compile(r"[./\\:*?~]")


class QueryRefused(Exception):
    """A statement that is not a single read-only query over the store."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"{STORE_ONLY}: {problem}")


def check_read_only(cur: duckdb.DuckDBPyConnection, sql: str) -> None:
    statement = _one_statement(cur, sql)
    kind = statement.type
    inner = _explained(statement.query) if kind == duckdb.StatementType.EXPLAIN else statement.query
    inner_kind = _one_statement(cur, inner).type if inner != statement.query else kind
    if kind not in READ_ONLY or inner_kind not in READ_ONLY:
        name = "EXPLAIN of a write" if kind in READ_ONLY else _kind_name(kind)
        raise QueryRefused(
            f"{name} statements are refused: queries are read-only (SELECT, WITH, FROM, "
            "DESCRIBE, SHOW, SUMMARIZE, EXPLAIN) and touch no file, database, extension, "
            "setting or secret. Change data through fleetdeck's own commands; export with --out."
        )
    _check_references(cur, inner)


def _one_statement(cur: duckdb.DuckDBPyConnection, sql: str) -> Any:
    try:
        statements = cur.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryRefused(f"the SQL does not parse ({exc})") from exc
    if not statements:
        raise QueryRefused("the query is empty")
    if len(statements) > 1:
        raise QueryRefused(f"one statement at a time, please ({len(statements)} given); it was refused")
    return statements[0]


def _kind_name(kind: duckdb.StatementType) -> str:
    return kind.name.removesuffix("_STATEMENT").replace("VARIABLE_SET", "SET").replace("_", " ")


def _explained(sql: str) -> str:
    """The statement an EXPLAIN [ANALYZE] [(options)] explains."""
    inner = re.sub(r"^\s*explain\s+(analyze\s+)?(\([^)]*\)\s*)?", "", _strip_comments(sql), flags=re.I)
    return inner


def _strip_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*|/\*.*?\*/", " ", sql, flags=re.DOTALL).strip()


def _check_references(cur: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse functions that reach outside the store and tables named like files."""
    try:
        (tree_text,) = cur.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0]
    except duckdb.Error:
        return  # DuckDB's sandbox still holds; the statement is only not serialisable
    tree = orjson.loads(tree_text)
    for function in _values(tree, "function_name"):
        if OUTSIDE_FUNCTIONS.fullmatch(function):
            raise QueryRefused(f"{function}() reaches outside the store (files, URLs or secrets): refused")
    for table in _values(tree, "table_name"):
        if FILE_LIKE.search(table):
            raise QueryRefused(f"FROM {table!r} would read a file, not a table of the store: refused")


def _values(node: object, key: str) -> Iterator[str]:
    if isinstance(node, dict):
        for name, value in node.items():
            if name == key and isinstance(value, str) and value:
                yield value
            else:
                yield from _values(value, key)
    elif isinstance(node, list):
        for item in node:
            yield from _values(item, key)


def refused_by_duckdb(exc: duckdb.Error) -> QueryRefused | None:
    """The refusal to report for an error DuckDB raised because the sandbox held, else None."""
    if isinstance(exc, duckdb.PermissionException) or "disabled by configuration" in str(exc):
        return QueryRefused(f"DuckDB refused it ({exc})")
    return None


def run_read_only(cur: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    check_read_only(cur, sql)
    cur.execute("BEGIN")
    try:
        return cur.sql(sql).to_arrow_table()
    except duckdb.Error as exc:
        raise refused_by_duckdb(exc) or exc from None
    finally:
        cur.execute("ROLLBACK")
