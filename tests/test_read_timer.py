"""ReadTimer: each read within its own limit, as asyncio.timeout around each read would."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from console.gateway.read_timer import ReadTimer


async def _ready(value: int) -> int:
    return value


def run(main: object) -> object:
    return uvloop.run(main)  # type: ignore[arg-type]


def test_reads_that_are_ready_pass_even_with_no_time_left() -> None:
    async def main() -> list[int]:
        timer = ReadTimer()
        try:
            return [await timer.within(_ready(i), limit) for i, limit in enumerate((5.0, 0.0, 5.0))]
        finally:
            timer.close()

    assert run(main()) == [0, 1, 2]


def test_a_read_that_waits_past_its_limit_times_out_and_the_next_read_has_its_own() -> None:
    async def main() -> tuple[int, int]:
        timer = ReadTimer()
        try:
            with pytest.raises(TimeoutError):
                await timer.within(asyncio.Event().wait(), 0.01)
            current = asyncio.current_task()
            assert current is not None
            return current.cancelling(), await timer.within(_ready(7), 5.0)  # its own cancel taken back
        finally:
            timer.close()

    assert run(main()) == (0, 7)


def test_a_long_limit_set_first_does_not_hold_up_a_shorter_one() -> None:
    async def main() -> None:
        timer = ReadTimer()
        try:
            await timer.within(_ready(1), 60.0)  # arms the timer a minute out
            with pytest.raises(TimeoutError):
                await timer.within(asyncio.Event().wait(), 0.01)
        finally:
            timer.close()

    run(main())


def test_a_read_that_comes_in_time_is_not_cut_by_an_earlier_reads_timer() -> None:
    async def main() -> str:
        timer = ReadTimer()
        later = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(later.set_result, "in time")
        try:
            await timer.within(_ready(0), 0.0)  # armed for now; fires with no read waiting
            return str(await timer.within(later, 60.0))
        finally:
            timer.close()

    assert run(main()) == "in time"


def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    async def main() -> bool:
        timer = ReadTimer()
        reading = asyncio.ensure_future(timer.within(asyncio.Event().wait(), 60.0))
        await asyncio.sleep(0)
        reading.cancel()
        try:
            await reading
        except asyncio.CancelledError:
            return True
        finally:
            timer.close()
        return False

    assert run(main()) is True
