"""One timer for all of a stream's reads: each read within its own limit, as `asyncio.timeout`
around each read would, without scheduling and cancelling a timer per chunk.

A stream's chunks mostly come in bursts that need no timer at all. A read here only notes
the loop time it must end by; the one timer, when it fires, finds the read still waiting
past its limit (and cancels it: `TimeoutError`, as asyncio.timeout raises) or moves on to
the limit of the read waiting now, or rests until the next read when none is waiting.
Limits never move earlier (a read's limit is its idle timeout or the call's deadline,
whichever comes first), so a timer never fires late.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")
SLACK_S = 0.001  # a loop's timers may fire this early (libuv's are in milliseconds)


class ReadTimer:
    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for = 0.0  # the loop time the timer fires at
        self._limit = 0.0  # the loop time the waiting read must end by
        self._waiting: asyncio.Task[object] | None = None
        self._expired = False

    async def within(self, read: Awaitable[T], limit_s: float) -> T:
        """`read`'s result, or TimeoutError once it has waited `limit_s`."""
        task = asyncio.current_task(self._loop)
        assert task is not None, "a read is awaited by a task"
        self._limit = self._loop.time() + limit_s
        if self._timer is None or self._armed_for > self._limit:
            self._arm(self._limit)
        self._waiting, cancelling = task, task.cancelling()
        try:
            return await read
        except asyncio.CancelledError:
            if self._expired and task.uncancel() <= cancelling:
                raise TimeoutError from None
            raise
        finally:
            self._waiting, self._expired = None, False

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, when: float) -> None:
        self.close()
        self._timer, self._armed_for = self._loop.call_at(when, self._fire), when

    def _fire(self) -> None:
        self._timer = None
        waiting = self._waiting
        if waiting is None:
            return  # between reads: the next one arms it again
        if self._loop.time() + SLACK_S >= self._limit:
            self._expired = True
            waiting.cancel()
        else:
            self._arm(self._limit)
