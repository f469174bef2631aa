"""Long jobs of the console's start: the header shows their percentage, a notification their end."""

from __future__ import annotations

import time

import numpy as np
from fakes.openai_upstream import FakeOpenAI
from textual.pilot import Pilot

from console.engine import Engine
from console.gateway.cache_index import INDEX_LOAD
from console.gateway.cache_store import Entry, StoredEntries
from console.progress import Step

from .conftest import drive, until
from .test_with_gateway import gateway_app


def cached(n: int) -> list[Entry]:
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((n, 32)).astype(np.float32)
    expires = time.time() + 3600
    return [
        Entry(
            f"e{i}",
            f"x{i}",
            "a-scope",
            "general",
            {},
            None,
            0.0,
            expires,
            "q",
            vector / np.linalg.norm(vector),
        )
        for i, vector in enumerate(vectors)
    ]


def test_the_cache_index_load_is_told_when_done(console_engine: Engine, upstream: FakeOpenAI) -> None:
    StoredEntries(console_engine.db).write(cached(40))
    app = gateway_app(console_engine, upstream)

    async def scenario(pilot: Pilot[None]) -> None:
        await until(pilot, lambda: any(INDEX_LOAD in str(n.message) for n in app._notifications), "the toast")
        (told,) = [n for n in app._notifications if INDEX_LOAD in str(n.message)]
        assert str(told.message) == f"{INDEX_LOAD}: done (100%)"
        assert INDEX_LOAD not in app.sub_title

    drive(app, scenario)


def test_a_job_under_way_shows_its_percentage_in_the_header(
    console_engine: Engine, upstream: FakeOpenAI
) -> None:
    app = gateway_app(console_engine, upstream)

    async def scenario(pilot: Pilot[None]) -> None:
        app._job_step(Step(3, 4, "MiniLM conversion"))  # as the cache's warm-up thread tells it
        await until(pilot, lambda: "MiniLM conversion 75%" in app.sub_title, "the percentage")
        assert app.sub_title.startswith(f"gateway {app.context.gateway_url}/v1")
        app._job_step(Step(4, 4, "MiniLM conversion"))
        await until(pilot, lambda: "MiniLM conversion" not in app.sub_title, "the job's end")
        assert any(str(n.message) == "MiniLM conversion: done (100%)" for n in app._notifications)

    drive(app, scenario)
