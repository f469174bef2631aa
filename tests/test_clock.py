"""Ids: request ids are ULIDs of the millisecond they were made, unique and in the order they
were made, from any thread; local ids are unique UUIDs (PostgreSQL's ledger keys holds by them)."""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid

from ulid import ULID

from console.clock import new_local_id, new_request_id


def test_request_ids_are_ulids_of_now_in_the_order_they_were_made() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_request_id() for _ in range(50_000)]
    after = time.time_ns() // 1_000_000
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    parsed = [ULID.from_str(found) for found in (ids[0], ids[-1])]
    assert [str(ulid) for ulid in parsed] == [ids[0], ids[-1]]
    assert before <= parsed[0].milliseconds <= parsed[1].milliseconds <= after + 1


def test_request_ids_made_on_many_threads_are_unique() -> None:
    made: list[list[str]] = [[] for _ in range(4)]

    def make(into: list[str]) -> None:
        into.extend(new_request_id() for _ in range(20_000))

    threads = [threading.Thread(target=make, args=(into,)) for into in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [found for into in made for found in into]
    assert len(set(every)) == len(every) == 80_000
    assert all(into == sorted(into) for into in made)


def test_local_ids_are_unique_uuids() -> None:
    ids = [new_local_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(str(uuid.UUID(found)) == found for found in ids)


def test_a_forked_child_makes_local_ids_of_its_own() -> None:
    made_here = new_local_id()
    with multiprocessing.get_context("fork").Pool(1) as pool:
        made_there = pool.apply(new_local_id)
    assert made_there.split("-")[:2] != made_here.split("-")[:2]
