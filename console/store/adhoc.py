"""Ad-hoc SQL from analysts (the SQL pane and `fleetdeck query`): one read-only statement.

The statement's type is checked before it runs, and it runs inside a transaction that
is rolled back, so nothing an analyst types can change the traces.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

READ_ONLY = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


class QueryRefused(Exception):
    """A statement that is not a single read-only query."""


def check_read_only(cur: duckdb.DuckDBPyConnection, sql: str) -> None:
    try:
        statements = cur.extract_statements(sql)
    except duckdb.ParserException as exc:
        raise QueryRefused(str(exc)) from exc
    if not statements:
        raise QueryRefused("the query is empty")
    if len(statements) > 1:
        raise QueryRefused(f"one statement at a time, please ({len(statements)} given)")
    kind = statements[0].type
    if kind not in READ_ONLY or _explains_a_write(cur, sql, kind):
        name = "EXPLAIN of a write" if kind in READ_ONLY else kind.name
        raise QueryRefused(
            f"{name} statements are refused: queries are read-only (SELECT, WITH, FROM, "
            "DESCRIBE, SHOW, SUMMARIZE, EXPLAIN). Change data through fleetdeck's own commands."
        )


def _explains_a_write(cur: duckdb.DuckDBPyConnection, sql: str, kind: duckdb.StatementType) -> bool:
    if kind != duckdb.StatementType.EXPLAIN:
        return False
    words = sql.split()
    inner = words[2:] if len(words) > 1 and words[1].upper() == "ANALYZE" else words[1:]
    explained = cur.extract_statements(" ".join(inner))
    return any(s.type not in READ_ONLY for s in explained)


def run_read_only(cur: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    check_read_only(cur, sql)
    cur.execute("BEGIN")
    try:
        return cur.sql(sql).to_arrow_table()
    finally:
        cur.execute("ROLLBACK")
