"""The semantic cache's vector indexes: one usearch HNSW index per scope, saved beside the
database so that a start loads them instead of rebuilding them from every stored vector.

A saved index is a hint, never the truth: at start it is reconciled with the entries the
store still holds (entries gone since it was saved are removed, entries it never saw are
added), so an index saved before a crash, a purge or an expiry still answers exactly as a
rebuilt one would. A scope with no saved index, or one that cannot be read, is rebuilt; so
is one that lost more than a tenth of its entries (removals cost an HNSW graph recall).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import orjson

from console.gateway.cache_store import Entry
from console.gateway.embedders import Vector
from console.progress import Progress, Step, silent

log = logging.getLogger("fleetdeck.cache")

SEARCH_LIST = 24  # HNSW expansion_search (usearch's default: 64)
# Removals leave holes in an HNSW graph that cost recall; a saved index that lost more than
# this share of its entries since it was saved is rebuilt instead of reconciled.
REBUILD_AFTER_REMOVED = 0.1

INDEX_LOAD = "cache index load"  # the job `progress` hears about


class ScopeIndex:
    """Vectors of one scope in a usearch HNSW index (inner product on unit vectors = cosine)."""

    def __init__(self, dimensions: int, index: object | None = None) -> None:
        from usearch.index import Index

        self.dimensions = dimensions
        # A hit's neighbour is near (cosine ≥ the threshold), an easy query for HNSW: a short
        # search list finds it (recall@1 ≥ 0.99 in bench/cache.py) at a fraction of the cost.
        self.index = index or Index(ndim=dimensions, metric="ip", dtype="f16", expansion_search=SEARCH_LIST)
        self.entry_ids: dict[int, str] = {}
        self.keys: dict[str, int] = {}

    def add(self, key: int, entry_id: str, vector: Vector) -> None:
        self.index.add(key, vector, threads=1)  # type: ignore[attr-defined]
        self.entry_ids[key] = entry_id
        self.keys[entry_id] = key

    def add_many(self, keys: list[int], entry_ids: list[str], vectors: Vector, threads: int = 0) -> None:
        """A batch at once (loading at start): usearch builds it on every core."""
        self.index.add(np.asarray(keys, dtype=np.uint64), vectors, threads=threads)  # type: ignore[attr-defined]
        for key, entry_id in zip(keys, entry_ids, strict=True):
            self.entry_ids[key] = entry_id
            self.keys[entry_id] = key

    def remove(self, entry_id: str) -> None:
        key = self.keys.pop(entry_id, None)
        if key is not None:
            self.entry_ids.pop(key, None)
            self.index.remove(key)  # type: ignore[attr-defined]

    def nearest(self, vector: Vector, count: int) -> Iterator[tuple[str, float]]:
        if not self.entry_ids:
            return
        matches = self.index.search(vector, min(count, len(self.entry_ids)), threads=1)  # type: ignore[attr-defined]
        for key, distance in zip(matches.keys, matches.distances, strict=True):
            entry_id = self.entry_ids.get(int(key))
            if entry_id is not None:
                yield entry_id, 1.0 - float(distance)

    def __len__(self) -> int:
        return len(self.entry_ids)


class SavedIndexes:
    """The scopes' indexes in a folder: `<sha1 of scope>.usearch` and its `.keys.json`."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    def save(self, scopes: Mapping[str, ScopeIndex]) -> None:
        """Write every scope's index (atomically, file by file); forget the scopes gone."""
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        kept = set()
        for scope, index in scopes.items():
            stem = _stem(scope)
            kept.add(stem)
            keys = {"scope": scope, "dimensions": index.dimensions, "keys": list(index.entry_ids.items())}
            _replace(self.directory / f"{stem}.keys.json", orjson.dumps(keys))
            partial = self.directory / f"{stem}.usearch.partial"
            index.index.save(str(partial))  # type: ignore[attr-defined]
            partial.replace(self.directory / f"{stem}.usearch")
        for stale in self.directory.glob("*.keys.json"):
            if stale.name.removesuffix(".keys.json") not in kept:
                stale.unlink(missing_ok=True)
                (self.directory / stale.name.replace(".keys.json", ".usearch")).unlink(missing_ok=True)

    def load(
        self, by_scope: Mapping[str, Sequence[Entry]], keys: Iterator[int], progress: Progress = silent
    ) -> dict[str, ScopeIndex]:
        """Every scope's index: the saved one reconciled with `by_scope`, else rebuilt.
        `keys` hands out new keys; it must start above every saved key (see `highest_key`).
        `progress` hears the entries indexed so far, after each scope."""
        scopes: dict[str, ScopeIndex] = {}
        total, done = sum(len(entries) for entries in by_scope.values()), 0
        for scope, entries in by_scope.items():
            saved = self._restore(scope, len(entries[0].vector))  # type: ignore[arg-type]
            scopes[scope] = _reconciled(saved, entries, keys) if saved is not None else _built(entries, keys)
            done += len(entries)
            progress(Step(done, total, INDEX_LOAD))
        return scopes

    def highest_key(self) -> int:
        """The largest key any saved index uses (0 without any)."""
        highest = 0
        for found in self.directory.glob("*.keys.json") if self.directory is not None else ():
            try:
                pairs = orjson.loads(found.read_bytes())["keys"]
            except (OSError, ValueError, KeyError):
                continue
            highest = max([highest, *(int(key) for key, _ in pairs)])
        return highest

    def _restore(self, scope: str, dimensions: int) -> ScopeIndex | None:
        from usearch.index import Index

        if self.directory is None:
            return None
        stem = self.directory / _stem(scope)
        try:
            saved = orjson.loads(Path(f"{stem}.keys.json").read_bytes())
            index = Index.restore(f"{stem}.usearch")
        except (OSError, ValueError, RuntimeError):
            return None  # missing or unreadable: rebuilt
        if index is None or saved.get("scope") != scope or saved.get("dimensions") != dimensions:
            return None
        index.expansion_search = SEARCH_LIST  # type: ignore[misc]  # settable; not saved with the index
        restored = ScopeIndex(dimensions, index)
        for key, entry_id in saved["keys"]:
            restored.entry_ids[int(key)] = entry_id
            restored.keys[entry_id] = int(key)
        return restored


def _reconciled(index: ScopeIndex, entries: Sequence[Entry], keys: Iterator[int]) -> ScopeIndex:
    live = {entry.entry_id for entry in entries}
    gone = [entry_id for entry_id in index.keys if entry_id not in live]
    if len(gone) > REBUILD_AFTER_REMOVED * len(index):
        return _built(entries, keys)
    for entry_id in gone:
        index.remove(entry_id)
    new = [entry for entry in entries if entry.entry_id not in index.keys]
    if new:
        _add(index, new, keys)
    return index


def _built(entries: Sequence[Entry], keys: Iterator[int]) -> ScopeIndex:
    index = ScopeIndex(len(entries[0].vector))  # type: ignore[arg-type]
    _add(index, entries, keys)
    return index


def _add(index: ScopeIndex, entries: Sequence[Entry], keys: Iterator[int]) -> None:
    vectors = np.stack([entry.vector for entry in entries if entry.vector is not None])
    index.add_many([next(keys) for _ in entries], [entry.entry_id for entry in entries], vectors)


def _stem(scope: str) -> str:
    return hashlib.sha1(scope.encode(), usedforsecurity=False).hexdigest()


def _replace(path: Path, content: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(content)
    partial.replace(path)
