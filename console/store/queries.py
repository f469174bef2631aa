"""Named SQL from queries/: one query per file, the file name is the query's name.

Each file starts with a header of `--` comment lines:

    -- <name>: <one-line purpose>
    -- <details: any number of lines, e.g. the exact semantics>
    -- param <name>: <TYPE> = <default> | <description>
    -- users: <who runs it>, <…>

TYPE is one of TIMESTAMP, DOUBLE, INTEGER, BIGINT, VARCHAR, BOOLEAN. Parameters are
DuckDB named parameters ($name). One the caller leaves out is bound to NULL and the
SQL applies its default with coalesce, so the header's default documents it. Loading
checks that the header declares exactly the $names the SQL uses.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa

import console

ENV_DIR = "FLEETDECK_QUERIES_DIR"
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
PARAM_LINE = re.compile(
    r"^param\s+(?P<name>[A-Za-z_]\w*)\s*:\s*(?P<type>[A-Z]+)\s*=\s*(?P<default>.+?)\s+\|\s+(?P<description>.+)$"
)
# String literals, quoted identifiers and comments are matched (and skipped) so that
# a `$` inside them is not taken for a parameter.
SQL_TOKENS = re.compile(
    r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|/\*.*?\*/|\$\$.*?\$\$|\$(?P<param>[A-Za-z_]\w*)""",
    re.DOTALL,
)
INTEGER_RANGES = {"INTEGER": (-(2**31), 2**31 - 1), "BIGINT": (-(2**63), 2**63 - 1)}
TRUE_WORDS = frozenset({"true", "t", "yes", "y", "on", "1"})
FALSE_WORDS = frozenset({"false", "f", "no", "n", "off", "0"})


class QueryError(Exception):
    """Base of the errors below; its message is meant for the user."""


class UnknownQueryError(QueryError):
    """No named query of that name."""


class QueryParamError(QueryError):
    """A parameter the query does not take, or a value that does not convert to its type."""


class QueryDefinitionError(QueryError):
    """A file in queries/ whose header is malformed or disagrees with its SQL."""


def _timestamp(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def _double(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _integer(kind: str) -> Callable[[str], int]:
    low, high = INTEGER_RANGES[kind]

    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise ValueError(text)
        return value

    return parse


def _boolean(text: str) -> bool:
    word = text.lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(text)


PARSERS: dict[str, Callable[[str], object]] = {
    "TIMESTAMP": _timestamp,
    "DOUBLE": _double,
    "INTEGER": _integer("INTEGER"),
    "BIGINT": _integer("BIGINT"),
    "VARCHAR": str,
    "BOOLEAN": _boolean,
}
EXPECTED = {
    "TIMESTAMP": "an ISO date or date-time in UTC, e.g. 2026-01-31 or 2026-01-31T08:30:00",
    "DOUBLE": "a finite number, e.g. 2000 or 0.5",
    "INTEGER": "a whole number from -2147483648 to 2147483647",
    "BIGINT": "a whole number from -9223372036854775808 to 9223372036854775807",
    "VARCHAR": "text",
    "BOOLEAN": "true or false",
}


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: str
    description: str

    def convert(self, value: object) -> object:
        """The value as the declared type; None, or an empty or blank string, means the default."""
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        # Scalars that are not strings go through their text form: str() of a datetime,
        # date, int or float is what the parsers accept, and a bool given for a number fails.
        if not isinstance(value, str | int | float | date):
            raise self._error(value)
        text = value if isinstance(value, str) and self.type == "VARCHAR" else str(value).strip()
        try:
            return PARSERS[self.type](text)
        except (ValueError, OverflowError):
            raise self._error(value) from None

    def _error(self, value: object) -> QueryParamError:
        return QueryParamError(
            f"parameter {self.name!r}: {value!r} is not a {self.type} (expected {EXPECTED[self.type]})"
        )


@dataclass(frozen=True)
class NamedQuery:
    name: str
    purpose: str
    params: tuple[Param, ...]
    users: tuple[str, ...]
    sql: str
    details: str = ""

    def bind(self, raw: Mapping[str, object]) -> dict[str, object]:
        """DuckDB parameters for this query: every declared one, None where not given."""
        declared = {param.name: param for param in self.params}
        unknown = sorted(set(raw) - set(declared))
        if unknown:
            takes = ", ".join(declared) if declared else "none"
            raise QueryParamError(
                f"query {self.name!r} has no parameter {unknown[0]!r} (its parameters: {takes})"
            )
        bound: dict[str, object] = {}
        for name, param in declared.items():
            try:
                bound[name] = param.convert(raw.get(name))
            except QueryParamError as exc:
                raise QueryParamError(f"query {self.name!r}, {exc}") from None
        return bound


def queries_dir() -> Path:
    override = os.environ.get(ENV_DIR)
    if override:
        return Path(override)
    return Path(console.__file__).resolve().parent.parent / "queries"


def available() -> list[NamedQuery]:
    return [_read(path) for path in sorted(queries_dir().glob("*.sql"))]


def load(name: str) -> NamedQuery:
    path = queries_dir() / f"{name}.sql"
    if not NAME.match(name) or not path.is_file():
        names = ", ".join(sorted(p.stem for p in queries_dir().glob("*.sql"))) or "none"
        raise UnknownQueryError(f"no named query {name!r} (available: {names})")
    return _read(path)


def run(
    cursor: duckdb.DuckDBPyConnection,
    name_or_query: str | NamedQuery,
    raw_params: Mapping[str, object] | None = None,
) -> pa.Table:
    query = load(name_or_query) if isinstance(name_or_query, str) else name_or_query
    return cursor.sql(query.sql, params=query.bind(raw_params or {})).to_arrow_table()


def sql_param_names(sql: str) -> set[str]:
    """The $names the SQL uses, outside string literals, quoted identifiers and comments."""
    return {match["param"] for match in SQL_TOKENS.finditer(sql) if match["param"]}


def _read(path: Path) -> NamedQuery:
    return parse(path.stem, path.read_text("utf-8"), source=str(path))


def parse(name: str, text: str, source: str | None = None) -> NamedQuery:
    """The query in `text`; raises QueryDefinitionError naming `source` (default: the name)."""
    where = source or name
    lines = text.strip().splitlines()
    header = [line[2:].strip() for line in _leading_comments(lines)]
    sql = "\n".join(lines[len(header) :]).strip()
    if not header:
        raise QueryDefinitionError(f"{where}: no header; the first line must be '-- {name}: <purpose>'")
    title, _, purpose = header[0].partition(":")
    if title.strip() != name or not purpose.strip():
        raise QueryDefinitionError(f"{where}, line 1: expected '-- {name}: <purpose>', got {header[0]!r}")
    params: list[Param] = []
    users: list[str] = []
    details: list[str] = []
    for number, comment in enumerate(header[1:], start=2):
        if comment.startswith("param ") or comment.startswith("param:"):
            params.append(_parse_param(comment, f"{where}, line {number}"))
        elif comment.startswith("users:"):
            users.extend(user.strip() for user in comment.removeprefix("users:").split(",") if user.strip())
        else:
            details.append(comment)
    query = NamedQuery(name, purpose.strip(), tuple(params), tuple(users), sql, "\n".join(details).strip())
    _check(query, where)
    return query


def _leading_comments(lines: list[str]) -> list[str]:
    header = []
    for line in lines:
        if not line.startswith("--"):
            break
        header.append(line)
    return header


def _parse_param(comment: str, where: str) -> Param:
    match = PARAM_LINE.match(comment)
    if match is None:
        raise QueryDefinitionError(
            f"{where}: expected 'param <name>: <TYPE> = <default> | <description>', got {comment!r}"
        )
    if match["type"] not in PARSERS:
        raise QueryDefinitionError(f"{where}: unknown type {match['type']!r} (known: {', '.join(PARSERS)})")
    return Param(match["name"], match["type"], match["default"], match["description"].strip())


def _check(query: NamedQuery, where: str) -> None:
    declared = [param.name for param in query.params]
    if len(set(declared)) != len(declared):
        raise QueryDefinitionError(f"{where}: a parameter is declared twice ({', '.join(declared)})")
    if not query.users:
        raise QueryDefinitionError(f"{where}: no '-- users: …' line in the header")
    if not query.sql:
        raise QueryDefinitionError(f"{where}: no SQL after the header")
    used = sql_param_names(query.sql)
    if undeclared := sorted(used - set(declared)):
        raise QueryDefinitionError(f"{where}: the SQL uses undeclared parameters: ${', $'.join(undeclared)}")
    if unused := sorted(set(declared) - used):
        raise QueryDefinitionError(f"{where}: declared parameters the SQL never uses: {', '.join(unused)}")
