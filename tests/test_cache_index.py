"""The semantic cache's saved indexes: loaded at start and reconciled with the store, they
serve the same hits as indexes rebuilt from every stored vector."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np

from console.gateway.cache import ResponseCache
from console.gateway.cache_index import INDEX_LOAD, SavedIndexes
from console.gateway.cache_store import Entry, StoredEntries
from console.progress import Step
from console.store.db import Database

DIMENSIONS = 64
SCOPES = ("scope-a", "scope-b")


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.standard_normal((n, DIMENSIONS)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def entries(rng: np.random.Generator, scope: str, first: int, n: int) -> list[Entry]:
    expires = time.time() + 3600
    return [
        Entry(f"{scope}-{first + i}", f"x{first + i}", scope, "r", {}, None, 0.0, expires, "q", vector)
        for i, vector in enumerate(unit(rng, n))
    ]


def top_hits(indexes: dict, queries: dict[str, list[np.ndarray]]) -> dict[str, list[str]]:
    return {
        scope: [next(indexes[scope].nearest(q, 1))[0] for q in scope_queries]
        for scope, scope_queries in queries.items()
    }


def near(rng: np.random.Generator, kept: list[Entry]) -> tuple[list[np.ndarray], list[str]]:
    """A paraphrase of each of 100 stored entries (its vector, slightly moved), and the entry."""
    picked = rng.choice(len(kept), 100, replace=False)
    moved = [kept[i].vector + 0.05 * unit(rng, 1)[0] for i in picked]  # type: ignore[operator]
    return [v / np.linalg.norm(v) for v in moved], [kept[i].entry_id for i in picked]


def test_a_saved_index_reconciled_with_the_store_answers_as_a_rebuilt_one(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    stored = {scope: entries(rng, scope, 0, 1500) for scope in SCOPES}
    saved = SavedIndexes(tmp_path / "cache-index")
    saved.save(saved.load(stored, itertools.count(1)))  # the last run: built, then saved at stop

    # Since then: entries expired or purged (fewer than a tenth), new ones stored (e.g. by a
    # run that crashed).
    now = {scope: found[100:] + entries(rng, scope, 5000, 200) for scope, found in stored.items()}
    restarted = SavedIndexes(tmp_path / "cache-index")
    assert restarted.highest_key() == 3000
    loaded = restarted.load(now, itertools.count(restarted.highest_key() + 1))
    rebuilt = SavedIndexes(None).load(now, itertools.count(1))

    for scope in SCOPES:
        assert len(loaded[scope]) == len(rebuilt[scope]) == 1600  # 1500 - 100 + 200
        assert set(loaded[scope].keys) == {entry.entry_id for entry in now[scope]}
    asked = {scope: near(rng, now[scope]) for scope in SCOPES}
    queries = {scope: vectors for scope, (vectors, _) in asked.items()}
    hits, rebuilt_hits = top_hits(loaded, queries), top_hits(rebuilt, queries)
    for scope, (_, sources) in asked.items():
        right = sum(hit == source for hit, source in zip(hits[scope], sources, strict=True))
        again = sum(hit == source for hit, source in zip(rebuilt_hits[scope], sources, strict=True))
        # HNSW is approximate: both find the paraphrased entry (recall@1 ≥ 0.97), as often as each other
        assert right >= 97 and abs(right - again) <= 2, (scope, right, again)
    gone = {entry.entry_id for scope in SCOPES for entry in stored[scope][:100]}
    assert not gone & {hit for found in hits.values() for hit in found}
    new_keys = [
        key
        for index in loaded.values()
        for key, found in index.entry_ids.items()
        if int(found.split("-")[-1]) >= 5000
    ]
    assert min(new_keys) > 3000  # new entries never reuse a saved key
    kept_keys = [key for index in loaded.values() for key in index.entry_ids if key <= 3000]
    assert len(kept_keys) == 2 * 1400  # reconciled: the saved entries kept their keys


def test_a_saved_index_that_lost_more_than_a_tenth_is_rebuilt(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    stored = {scope: entries(rng, scope, 0, 1000) for scope in SCOPES}
    saved = SavedIndexes(tmp_path / "cache-index")
    saved.save(saved.load(stored, itertools.count(1)))
    now = {scope: found[300:] for scope, found in stored.items()}
    restarted = SavedIndexes(tmp_path / "cache-index")
    loaded = restarted.load(now, itertools.count(restarted.highest_key() + 1))
    for scope in SCOPES:
        assert set(loaded[scope].keys) == {entry.entry_id for entry in now[scope]}
        assert min(loaded[scope].entry_ids) > 2000  # every entry under a new key: built afresh


def test_an_unreadable_saved_index_is_rebuilt(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    stored = {"scope-a": entries(rng, "scope-a", 0, 300)}
    saved = SavedIndexes(tmp_path)
    saved.save(saved.load(stored, itertools.count(1)))
    for found in tmp_path.glob("*.usearch"):
        found.write_bytes(b"not an index")
    loaded = SavedIndexes(tmp_path).load(stored, itertools.count(1000))
    query = stored["scope-a"][42].vector
    assert len(loaded["scope-a"]) == 300
    assert next(loaded["scope-a"].nearest(query, 1))[0] == "scope-a-42"  # type: ignore[arg-type]


def test_loading_tells_the_entries_indexed_after_each_scope(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    stored = {"scope-a": entries(rng, "scope-a", 0, 30), "scope-b": entries(rng, "scope-b", 0, 10)}
    heard: list[Step] = []
    SavedIndexes(tmp_path / "cache-index").load(stored, itertools.count(1), heard.append)
    assert [(step.done, step.total, step.percent) for step in heard] == [(30, 40, 75), (40, 40, 100)]
    assert {step.name for step in heard} == {INDEX_LOAD}


def test_a_cache_starting_on_stored_entries_tells_their_indexing(tmp_path: Path) -> None:
    db = Database(tmp_path / "fleetdeck.duckdb")
    rng = np.random.default_rng(5)
    StoredEntries(db).write(entries(rng, "scope-a", 0, 20) + entries(rng, "scope-b", 0, 5))
    heard: list[Step] = []
    cache = ResponseCache(db, tmp_path / "models", index_dir=tmp_path / "cache-index", progress=heard.append)
    try:
        cache.start()  # returns at once: the writer thread loads and indexes
        assert cache._indexed.wait(60)  # set by the writer thread once the stored vectors are searchable
        assert cache.stats()["entries"] == 25
    finally:
        cache.stop()
        db.close()
    assert [(step.name, step.done, step.total) for step in heard] == [
        (INDEX_LOAD, 0, 25),
        (INDEX_LOAD, 20, 25),
        (INDEX_LOAD, 25, 25),
    ]
