"""(f) Library 0.2.0's additions, without signals: n units at once
(weighted fuel), peek, and a live rate change (set_rate / rate) seen by
every process, waiters asleep included."""

import math
import multiprocessing
import threading
import time

import pytest

import mp_throttle
from helpers import count_until_killed, set_rate_after
from mp_throttle import ThrottleError, clock_ns

MS = 1_000_000


def raises(status_name, fn, *args, **kwargs):
    with pytest.raises(ThrottleError) as e:
        fn(*args, **kwargs)
    assert e.value.status_name == status_name, e.value
    assert e.value.message
    return e.value


# ---------------------------------------------------------------- n units


def test_weighted_fuel_from_pool_workers():
    """1000 units per second taken 100 at a time by 3 Pool workers for about
    2 s: a grant every 100 ms. Unit k falls due at start + k ms, so grant j
    (units 100j .. 100j+99) at start + (100j + 99) ms: 20 in 2.05 s."""
    ctx = multiprocessing.get_context("fork")
    ready, results = ctx.Queue(), ctx.Queue()
    with mp_throttle.Throttle(1000, 1) as throttle:
        pool = ctx.Pool(3, initializer=count_until_killed, initargs=(throttle, ready, results, 100))
        try:
            for _ in range(3):
                ready.get(timeout=60)
            time.sleep(0.1)  # (each is in await_fuel by now, waiting for the start)
            before = clock_ns()
            throttle.start()
            after = clock_ns()
            # The stop falls halfway between two grants (due at 1999 and
            # 2099 ms), so that the last one due has 50 ms to be taken.
            time.sleep(2.05)
            runtime, total, _, _ = throttle.stop()
            reports = [results.get(timeout=30) for _ in range(3)]
        finally:
            pool.terminate()
            pool.join()
    grants = sorted(g for report in reports for g in report[4])
    assert len(grants) == sum(report[3] for report in reports) == total  # one emission each
    assert len({report[0] for report in reports}) == 3
    # At most the grants due by the end of the run; at least those due 0.15 s
    # before it (a worker the machine held back at the end loses its grant).
    high = 1 + int((runtime * 1000 - 99) // 100)
    assert 2.05 <= runtime < 3.0 and high - 2 <= total <= high, (runtime, total)
    assert high - 2 >= 18
    for j, grant in enumerate(grants):
        # Never earlier than the schedule allows (the bucket starts empty) ...
        assert grant >= before + (100 * j + 99) * MS, (j, grant - before)
    # ... and the grants made on their slot are exactly 100 ms apart.
    on_slot = [(j, g) for j, g in enumerate(grants) if g <= after + (100 * j + 99) * MS]
    assert len(on_slot) >= len(grants) - 2, [g - before for g in grants]
    for (i, gi), (j, gj) in zip(on_slot, on_slot[1:]):
        assert gj - gi == (j - i) * 100 * MS, [g - before for g in grants]


def test_n_units_in_one_process():
    with mp_throttle.Throttle(4, 0.4) as t:  # T = 0.1 s; the tank holds 4
        t.start()
        time.sleep(0.5)  # the tank is full: 4 (more time adds nothing)
        assert t.peek(4) == (4, 0.0)
        took = t.has_fuel_ns(n=4)
        assert took is not None
        # The next units come at took + T, + 2T, ...: 2 of them not before took + 0.2 s.
        more = t.has_fuel_ns(n=2)
        assert more is None or more - took >= 200 * MS
        if more is None:
            asked = clock_ns()
            grant = t.await_fuel_ns(n=3)  # the units due at took + 0.1, 0.2, 0.3 s
            # Granted on the slot of its third unit, or when asked if later.
            assert took + 300 * MS <= grant <= max(took + 300 * MS, asked) + 1000, (grant - took) / MS
        assert t.await_fuel(0.05, n=4) is False  # 0.4 s away: times out
        assert t.summary()[1] == 2  # n units count as one emission
        for n, where in ((0, "await_fuel"), (5, "await_fuel"), (0, "has_fuel"), (5, "has_fuel")):
            fn = t.await_fuel if where == "await_fuel" else t.has_fuel
            err = raises("MPT_STATUS_INVALID_ARGUMENT", fn, n=n)
            assert err.function.startswith("mpt_")  # the library's own words
        for n in (-1, 2**64, 1.5, "2", True):
            assert "n must" in raises("MPT_STATUS_INVALID_ARGUMENT", t.await_fuel, n=n).message
            raises("MPT_STATUS_INVALID_ARGUMENT", t.has_fuel, n=n)
            raises("MPT_STATUS_INVALID_ARGUMENT", t.peek, n)
        with pytest.raises(TypeError):
            t.has_fuel(2)  # n is keyword-only: 0.0.5's signatures stay as they were
        with pytest.raises(TypeError):
            t.await_fuel(1, 2)
        t.stop()
    with mp_throttle.Throttle(10, 1, hardcap="one") as t:  # the tank holds 1
        t.start()
        raises("MPT_STATUS_INVALID_ARGUMENT", t.await_fuel, n=2)
        t.stop()


# ---------------------------------------------------------------- peek


def test_peek_agrees_with_has_fuel():
    """peek() then has_fuel(): a level of n or more means has_fuel(n) takes
    them; a wait means that has_fuel(n) gives nothing before it is over."""
    with mp_throttle.Throttle(20, 1) as t:  # T = 0.05 s
        raises("MPT_STATUS_NOT_RUNNING", t.peek)  # nothing accrues before the start
        t.start()
        level, wait = t.peek()
        assert level >= 1 and wait == 0.0  # the unit at the start instant
        agreed = {"took": 0, "empty": 0, "after wait": 0}
        deadline = time.monotonic() + 10
        k = 0
        while min(agreed["took"], agreed["empty"]) < 10 and time.monotonic() < deadline:
            n = 1 + k % 3
            k += 1
            before = clock_ns()
            level, wait = t.peek(n)
            assert type(level) is int and type(wait) is float
            assert (level >= n) == (wait == 0.0), (n, level, wait)
            grant = t.has_fuel_ns(n=n)
            if level >= n:
                assert grant is not None, (n, level)  # nobody else takes fuel
                agreed["took"] += 1
            elif grant is None:
                agreed["empty"] += 1
            else:  # the units came in between: not before peek said
                assert grant >= before + wait * 1e9 - 1000, (n, level, wait, grant - before)
                agreed["after wait"] += 1
            time.sleep(0.013)
        assert agreed["took"] >= 10 and agreed["empty"] >= 10, agreed
        t.stop()
        raises("MPT_STATUS_KILLED", t.peek)  # stop sets the kill flag
    with mp_throttle.Throttle(1, 1, as_throttle=False) as t:
        t.start()
        assert t.peek() == (math.inf, 0.0)  # fuel is always there
        t.stop()


# ---------------------------------------------------------------- set_rate


def test_set_rate_from_a_pool_worker_reschedules_a_sleeper():
    """The parent's main thread sleeps in await_fuel for a unit due in 10 s;
    a Pool worker (another process, which reopens the throttle by name)
    changes the rate to 100 per second: the sleeper is granted at once."""
    ctx = multiprocessing.get_context("fork")
    with mp_throttle.Throttle(1, 10) as t, ctx.Pool(1) as pool:
        t.start()
        first = t.has_fuel_ns()  # the next unit is due at first + 10 s
        assert first is not None and t.peek()[1] > 9.5
        change = pool.apply_async(set_rate_after, (t, 0.3, 100, 1))
        grant = t.await_fuel_ns(20)  # the main thread: the interruptible wait
        returned = clock_ns()
        pid, set_at, seen_there = change.get(timeout=30)
        assert seen_there == (100, 1.0)
        assert grant is not None and set_at <= grant <= returned
        assert returned - set_at < 1e9, (returned - set_at) / 1e9  # not 10 s later
        assert grant - first < 5e9
        # Every process sees the rate in force, the attributes included.
        assert t.rate() == (100, 1.0) and (t.max_n, t.per) == (100, 1.0)
        # The configuration the name was created with is what create compares.
        again = mp_throttle.Throttle(1, 10, name=t.name)  # (opens it: same configuration)
        assert again.rate() == (100, 1.0) and again.max_n == 100
        raises("MPT_STATUS_MISMATCH", mp_throttle.Throttle, 100, 1, name=t.name)
        again.close()  # (a creator too, for the binding: it unlinks the name)
        # The new rate holds: 100 per second accrue in the tank.
        while t.has_fuel():
            pass
        emptied = clock_ns()
        time.sleep(0.2)
        level, wait = t.peek()
        assert 19 <= level <= 1 + (clock_ns() - emptied) / (10 * MS) and wait == 0.0, level
        t.stop()


def test_set_rate_times_out_a_waiter_it_pushes_past_its_timeout():
    with mp_throttle.Throttle(1, 2) as t:  # T = 2 s
        t.start()
        assert t.has_fuel()
        returned = []
        called = clock_ns()
        waiter = threading.Thread(target=lambda: returned.append((t.await_fuel(2.5), clock_ns())))
        waiter.start()
        deadline = time.monotonic() + 10
        while t.peek()[1] < 2.5 and time.monotonic() < deadline:
            time.sleep(0.005)  # until it is queued for the unit due at 2 s
        assert returned == []
        t.set_rate(1, 60)  # its unit would now come after its timeout of 2.5 s
        time.sleep(0.1)
        # Given back at once: a new arrival would get that unit (about 60 s
        # on), not the one after it (about 120 s).
        assert t.peek()[1] < 61
        waiter.join(timeout=10)
        assert returned and returned[0][0] is False
        assert 2.5e9 <= returned[0][1] - called < 3.0e9  # at its timeout, not before
        assert t.summary()[1] == 1
        assert (t.max_n, t.per) == (1, 60)  # as given (60, not 60.0)
        t.stop()


def test_set_rate_errors_and_attributes():
    with mp_throttle.Throttle(4, 1, hardcap="window") as t:
        t.set_rate(8, 2)  # WINDOW: max_n grows to the 4096 grant times kept
        assert t.rate() == (8, 2.0)
        raises("MPT_STATUS_INVALID_ARGUMENT", t.set_rate, 4097, 1)
        assert t.rate() == (8, 2.0)
    with mp_throttle.Throttle(4, 1) as t:
        for max_n, per in ((0, 1), (4, 0), (4, -1), (4, math.nan), (4, math.inf)):
            err = raises("MPT_STATUS_INVALID_ARGUMENT", t.set_rate, max_n, per)
            assert err.function == "mpt_set_rate"
        for max_n in (-1, 2**64, 2.5):
            raises("MPT_STATUS_INVALID_ARGUMENT", t.set_rate, max_n, 1)
        assert t.rate() == (4, 1.0) and (t.max_n, t.per) == (4, 1)
        t.set_rate(3, 1 / 3)
        assert t.rate() == (3, 0.333333333)  # the library keeps whole ns
        assert (t.max_n, t.per) == (3, 1 / 3)  # the value given, while in force
        with pytest.raises(AttributeError):
            t.max_n = 5  # read-only: set_rate() changes it for every process
    assert (t.max_n, t.per) == (3, 1 / 3)  # closed: the last rate seen
