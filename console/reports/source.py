"""Where the scorecard's named queries run: the running instance's admin API, or the file itself."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import pyarrow as pa

from console.engine import Engine
from console.gateway.admin import AdminEndpoint
from console.settings import Settings
from console.store import queries

QueryRunner = Callable[[str, Mapping[str, str]], pa.Table]


@contextmanager
def named_queries(settings: Settings) -> Iterator[QueryRunner]:
    """A runner of named queries: through the admin API when an instance owns the data dir, else direct.

    Both raise what their path raises: ApiError from the instance, QueryError or
    duckdb.Error from the store.
    """
    instance = AdminEndpoint.find(settings.data_dir)
    if instance is not None:
        yield lambda name, params: instance.query({"name": name, "params": dict(params)})
        return
    with Engine(settings) as engine:
        cursor = engine.db.cursor()
        yield lambda name, params: queries.run(cursor, name, params)
