"""The asyncio API: ``await throttle.acquire(n, timeout)``, ``acquire_ns``
and ``async with throttle:``. The event loop keeps running during a wait,
and a cancelled acquire gives its reserved units back to the waiters behind
it. (No pytest-asyncio: each test runs its coroutine with asyncio.run.)"""

import asyncio
import time

import pytest

import mp_throttle
from mp_throttle import ThrottleError, clock_ns

S = 1_000_000_000


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def drain(t):
    """Takes every unit in the tank now; returns the clock (ns) after."""
    while t.has_fuel():
        pass
    return clock_ns()


async def until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


def test_acquire_waits_without_blocking_the_loop():
    """10 per second: 3 units beyond the tank take about 0.3 s, during which
    a ticker task keeps running every 10 ms."""

    async def main():
        with mp_throttle.Throttle(10, 1) as t:
            t.start()
            start = drain(t)
            ticks = []
            stop = asyncio.Event()

            async def ticker():
                while not stop.is_set():
                    ticks.append(time.monotonic())
                    await asyncio.sleep(0.01)

            task = asyncio.create_task(ticker())
            got = [await t.acquire() for _ in range(3)]
            elapsed = (clock_ns() - start) / S
            stop.set()
            await task
            return got, elapsed, len(ticks)

    got, elapsed, ticks = run(main())
    assert got == [True, True, True]
    assert 0.25 <= elapsed < 1.0, elapsed
    # ~30 ticks when the loop is free; a blocked loop would give 1 or 2.
    assert ticks >= 8, ticks


def test_acquire_takes_fuel_there_now_and_n_units_at_once():
    """The tank holds one unit at the start: acquire(timeout=0) takes it,
    the next finds none and does not wait. n=2 at 10 per second comes two
    periods after the tank was emptied, at the grant time returned."""

    async def main():
        with mp_throttle.Throttle(1, 60) as slow:
            slow.start()
            assert await slow.acquire(1, timeout=0) is True
            t0 = time.monotonic()
            assert await slow.acquire(timeout=0) is False  # empty: no wait
            assert time.monotonic() - t0 < 0.1
        with mp_throttle.Throttle(10, 1) as t:
            t.start()
            start = drain(t)
            got = await t.acquire_ns(n=2)
            return start, got, clock_ns()

    start, got, end = run(main())
    assert start <= got <= end
    assert (got - start) / S == pytest.approx(0.2, abs=0.08)


def test_a_cancelled_acquire_gives_its_unit_to_the_next_waiter():
    """2 per second, tank drained: A waits for the unit due 0.5 s later, B
    for the one after (1.0 s). Cancelling A at 0.15 s gives A's unit back:
    peek's wait for a newcomer shrinks by a period, and B is granted at
    0.5 s, not 1.0 s."""

    async def main():
        with mp_throttle.Throttle(2, 1) as t:
            t.start()
            start = drain(t)
            a = asyncio.create_task(t.acquire_ns())
            await asyncio.sleep(0.05)
            b = asyncio.create_task(t.acquire_ns())
            await asyncio.sleep(0.1)
            _, wait_before = t.peek()
            a.cancel()
            with pytest.raises(asyncio.CancelledError):
                await a
            _, wait_after = t.peek()  # the unit is back once `a` is done
            grant_b = await b
            return start, wait_before, wait_after, grant_b

    start, wait_before, wait_after, grant_b = run(main())
    # A newcomer would come after A and B (1.5 s), then after B only (1.0 s).
    assert wait_before - wait_after == pytest.approx(0.5, abs=0.1), (wait_before, wait_after)
    assert (grant_b - start) / S == pytest.approx(0.5, abs=0.1)


def test_wait_for_timeout_cancels_and_gives_the_unit_back():
    async def main():
        with mp_throttle.Throttle(1, 2) as t:
            t.start()
            drain(t)
            _, wait_before = t.peek()
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(t.acquire(), 0.1)
            _, wait_after = t.peek()
            return wait_before, wait_after

    wait_before, wait_after = run(main())
    # Nothing stays reserved: a newcomer waits no longer than before.
    assert wait_after <= wait_before


def test_acquire_timeout_returns_false_and_takes_nothing():
    async def main():
        with mp_throttle.Throttle(1, 10) as t:
            t.start()
            drain(t)
            t0 = time.monotonic()
            got = await t.acquire(timeout=0.2)
            return got, time.monotonic() - t0

    got, elapsed = run(main())
    assert got is False
    assert 0.19 <= elapsed < 1.5, elapsed


def test_async_with_takes_one_unit():
    async def main():
        with mp_throttle.Throttle(5, 60) as t:
            t.start()  # the tank holds 1 unit at the start
            before, _ = t.peek()
            async with t as same:
                assert same is t
                inside, _ = t.peek()
            after, _ = t.peek()
            assert not t.closed and t.is_running()  # the block ends nothing
            return before, inside, after

    before, inside, after = run(main())
    assert (before, inside, after) == (1, 0, 0)


def test_async_with_raises_when_killed():
    async def main():
        with mp_throttle.Throttle(5, 1) as t:
            t.start()
            t.kill_flag.set()
            with pytest.raises(ThrottleError) as e:
                async with t:
                    raise AssertionError("the block ran without fuel")
            return e.value

    error = run(main())
    assert error.status_name == "MPT_STATUS_KILLED"


def test_stop_wakes_a_waiting_acquire():
    async def main():
        with mp_throttle.Throttle(1, 60) as t:
            t.start()
            drain(t)
            waiter = asyncio.create_task(t.acquire())
            await asyncio.sleep(0.1)
            assert not waiter.done()
            t.stop()
            return await asyncio.wait_for(waiter, 5)

    assert run(main()) is False


def test_acquire_before_start_waits_for_the_start():
    async def main():
        with mp_throttle.Throttle(5, 1) as t:
            waiter = asyncio.create_task(t.acquire())
            await asyncio.sleep(0.1)
            assert not waiter.done()
            t.start()
            return await asyncio.wait_for(waiter, 5)

    assert run(main()) is True


def test_many_coroutines_are_served_in_order():
    """Coroutines that queue one after another are granted in that order,
    one period apart (4 per second)."""

    async def main():
        with mp_throttle.Throttle(4, 1) as t:
            t.start()
            drain(t)
            tasks = []
            for _ in range(4):
                before = t.peek()[1]
                tasks.append(asyncio.create_task(t.acquire_ns()))
                # it waits in a helper thread: let it take its place first
                await until(lambda: t.peek()[1] > before + 0.15)
            return await asyncio.gather(*tasks)

    grants = run(main())
    gaps = [(b - a) / S for a, b in zip(grants, grants[1:])]
    assert all(g == pytest.approx(0.25, abs=0.02) for g in gaps), gaps


def test_bad_arguments_and_closed_throttle_raise():
    async def main():
        t = mp_throttle.Throttle(5, 1)
        t.start()
        with pytest.raises(ThrottleError) as e:
            await t.acquire(timeout=-1)
        assert e.value.status_name == "MPT_STATUS_INVALID_ARGUMENT"
        with pytest.raises(ThrottleError) as e:
            await t.acquire(n=-1)
        assert e.value.status_name == "MPT_STATUS_INVALID_ARGUMENT"
        with pytest.raises(ThrottleError) as e:
            await t.acquire(n=6)  # more than the tank holds
        assert e.value.status_name == "MPT_STATUS_INVALID_ARGUMENT"
        t.stop()
        t.close()
        with pytest.raises(ThrottleError) as e:
            await t.acquire()
        assert e.value.status_name == "MPT_STATUS_BAD_HANDLE"

    run(main())
