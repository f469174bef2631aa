"""Fleetdeck's clock and ids: naive UTC "now", and the ULIDs that name requests, evals and audit entries."""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
from datetime import UTC, datetime

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# A ULID's 128 bits as 13 ten-bit groups (the first holds 8): two characters each, 26 in all.
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]
_SHIFTS = tuple(range(120, -1, -10))
_RANDOM_BITS = 80


class _Ulids:
    """Monotonic ULIDs (as python-ulid makes them): within one millisecond the random part
    counts up, so ids sort in the order they were made. The random part comes from the
    `random` module (reseeded after a fork), not the OS: an id is unique, not secret, and a
    system call per id was most of what an id cost."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ms, self._random = 0, 0

    def new(self) -> str:
        ms = time.time_ns() // 1_000_000
        with self._lock:
            if ms > self._ms:
                self._ms, self._random = ms, random.getrandbits(_RANDOM_BITS)
            elif self._random + 1 < 1 << _RANDOM_BITS:
                self._random += 1
            else:  # a millisecond's ids used up: borrow the next millisecond
                self._ms, self._random = self._ms + 1, random.getrandbits(_RANDOM_BITS)
            value = self._ms << _RANDOM_BITS | self._random
        return "".join([_PAIRS[value >> shift & 1023] for shift in _SHIFTS])


_ULIDS = _Ulids()
_PROCESS = os.urandom(6).hex()
_SEQUENCE = itertools.count()


def _new_process() -> None:
    """A forked child is a process of its own: its own prefix for local ids."""
    global _PROCESS, _SEQUENCE
    _PROCESS, _SEQUENCE = os.urandom(6).hex(), itertools.count()


os.register_at_fork(after_in_child=_new_process)


def utc_now() -> datetime:
    """Now, as a naive UTC datetime (how every timestamp is stored)."""
    return datetime.now(UTC).replace(tzinfo=None)


def new_request_id() -> str:
    """A new ULID: unique, and sorting in the order it was made."""
    return _ULIDS.new()


def new_local_id() -> str:
    """An id unique across processes and restarts, in a UUID's form (48 random bits per process,
    then an 80-bit count), for what needs no order: a budget reservation. Cheaper than uuid4."""
    count = f"{next(_SEQUENCE):020x}"
    return f"{_PROCESS[:8]}-{_PROCESS[8:]}-{count[:4]}-{count[4:8]}-{count[8:]}"
