"""(d) The API of one process: errors, the kill flag, has_fuel, emit with a
timestamp, the shapes of the statistics, hardcaps and the 0.0.5 signature."""

import inspect
import math
import os
import pickle
import stat
import threading
import time

import pytest

import mp_throttle
from helpers import shm_path
from mp_throttle import ThrottleError, clock_ns


def raises(status_name, fn, *args, **kwargs):
    """Calls fn, which must raise ThrottleError with that status and a message."""
    with pytest.raises(ThrottleError) as e:
        fn(*args, **kwargs)
    err = e.value
    assert err.status_name == status_name, err
    assert isinstance(err.status, int) and err.status > 0
    assert err.message and err.message in str(err) and status_name in str(err)
    return err


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "args, kwargs, word",
    [
        ((), {}, "max_n"),  # 0.0.5's default max_n=0
        ((0, 1), {}, "max_n"),
        ((4, 0), {}, "per"),
        ((4, -1), {}, "per"),
        ((4, float("nan")), {}, "per"),
        ((4, float("inf")), {}, "per"),
        ((4, 1), {"rf_rate": 0}, "refresh"),  # 0.0.5: "rf_rate can not be 0."
        ((4, 1), {"rf_rate": float("nan")}, "refresh"),
        ((4, 1), {"as_throttle": False, "as_monitor": False}, "as_"),
        ((4, 1), {"spin_s": 2.0}, "spin"),
        ((4, 1), {"name": "a/b"}, "name"),
        ((4, 1), {"name": "x" * 201}, "name"),
        ((4, 1), {"name": ""}, "name"),
        ((5_000_000, 1), {"hardcap": "window"}, "max_n"),
    ],
)
def test_bad_arguments_raise_with_the_library_message(args, kwargs, word):
    err = raises("MPT_STATUS_INVALID_ARGUMENT", mp_throttle.Throttle, *args, **kwargs)
    assert err.status == 7
    assert err.function == "mpt_throttle_create_named"  # the library's own words
    assert word in err.message, err.message


def test_bad_arguments_caught_by_the_binding():
    # Numbers ctypes would wrap around; -1 s, which the C API reads as "forever".
    for max_n in (-1, 2**64, 1.5, "4"):
        err = raises("MPT_STATUS_INVALID_ARGUMENT", mp_throttle.Throttle, max_n, 1)
        assert "max_n" in err.message
    with mp_throttle.Throttle(4, 1) as t:
        assert "timeout" in raises("MPT_STATUS_INVALID_ARGUMENT", t.await_fuel, -1).message
        assert "timeout" in raises("MPT_STATUS_INVALID_ARGUMENT", t.await_fuel, float("nan")).message
        assert "timeout" in raises("MPT_STATUS_INVALID_ARGUMENT", t.await_fuel, float("inf")).message
    with pytest.raises(TypeError):
        mp_throttle.Throttle(4, 1, no_such_option=True)


def test_wrong_state_errors():
    with mp_throttle.Throttle(4, 1) as t:
        assert "not running" in raises("MPT_STATUS_WRONG_STATE", t.stop).message
        t.start()
        raises("MPT_STATUS_WRONG_STATE", t.start)
        # auto_emit is on (the default when throttling): 0.0.5 raised too.
        assert "auto_emit" in raises("MPT_STATUS_WRONG_STATE", t.emit).message
        t.stop()


def test_monitor_off():
    with mp_throttle.Throttle(4, 1, as_monitor=False) as t:
        t.start()
        for stat in (t.latest, t.mean, t.lo_hi, t.hi_lo):
            raises("MPT_STATUS_MONITOR_OFF", stat)
        assert t.has_fuel()
        # stop() still counts (the C library counts without a monitor).
        assert t.stop()[1] == 1


def test_name_taken_with_another_configuration():
    with mp_throttle.Throttle(4, 1) as t:
        raises("MPT_STATUS_MISMATCH", mp_throttle.Throttle, 5, 1, name=t.name)
        # The same configuration opens it (the C create-or-open).
        with mp_throttle.Throttle(4, 1, name=t.name) as same:
            t.start()
            assert same.is_running()
            t.stop()
    raises("MPT_STATUS_NOT_FOUND", mp_throttle.Throttle.open, t.name)


def test_group_shared_is_part_of_the_configuration():
    """group_shared: the object is mode 0660 of this process's group; a name
    made otherwise is a mismatch; its owner opens it, asking or not (the
    sharing between users is tested as root by tests/owners.rs)."""
    with mp_throttle.Throttle(4, 1, group_shared=True) as t:
        st = os.stat(shm_path(t.name))
        assert stat.S_IMODE(st.st_mode) == 0o660
        assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid())
        raises("MPT_STATUS_MISMATCH", mp_throttle.Throttle, 4, 1, name=t.name)
        with mp_throttle.Throttle(4, 1, name=t.name, group_shared=True) as same:
            t.start()
            assert same.is_running()
            t.stop()
        for kwargs in ({}, {"group_shared": True}):
            with mp_throttle.Throttle.open(t.name, **kwargs) as opened:
                assert opened.max_n == 4
        # Pickled, it reopens accepting group sharing.
        with pickle.loads(pickle.dumps(t)) as again:
            assert again.max_n == 4
    with mp_throttle.Throttle(4, 1) as private:
        assert stat.S_IMODE(os.stat(shm_path(private.name)).st_mode) == 0o600
        raises("MPT_STATUS_MISMATCH", mp_throttle.Throttle, 4, 1, name=private.name,
               group_shared=True)


def test_error_messages_are_per_thread():
    """Each thread's exception carries the message of its own failure, even
    with other threads failing differently at the same moment."""
    causes = {
        "max_n": lambda: mp_throttle.Throttle(0, 1),
        "per": lambda: mp_throttle.Throttle(1, -1),
        "refresh": lambda: mp_throttle.Throttle(1, 1, rf_rate=0),
    }
    wrong = []

    def fail_repeatedly(word, fn):
        for _ in range(300):
            try:
                fn()
            except ThrottleError as e:
                if word not in e.message:
                    wrong.append((word, e.message))
            else:
                wrong.append((word, "no exception"))

    threads = [threading.Thread(target=fail_repeatedly, args=item) for item in causes.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


def test_error_is_an_exception_and_pickles():
    err = raises("MPT_STATUS_INVALID_ARGUMENT", mp_throttle.Throttle, 0, 1)
    assert isinstance(err, Exception)  # what 0.0.5 raised
    back = pickle.loads(pickle.dumps(err))  # crosses a Pool boundary
    assert (back.status, back.message, back.function) == (err.status, err.message, err.function)


# ---------------------------------------------------------------- kill flag


def test_kill_flag_wakes_waiters_and_clears_on_start():
    with mp_throttle.Throttle(1, 60) as t:
        assert t.kill_flag.is_set() is False
        t.start()
        assert t.has_fuel()  # the unit at the start instant; the next in 60 s
        returned = []
        waiter = threading.Thread(target=lambda: returned.append((t.await_fuel(), time.monotonic())))
        waiter.start()
        time.sleep(0.2)
        assert returned == []  # it waits
        set_at = time.monotonic()
        t.kill_flag.set()
        waiter.join(timeout=10)
        assert returned and returned[0][0] is False
        assert returned[0][1] - set_at < 2.0  # woken at once, not after 60 s
        assert t.kill_flag.is_set() is True
        assert t.kill_flag.wait(0) is True
        assert t.has_fuel() is False and t.await_fuel(0.1) is False
        assert t.is_running()  # kill is not stop
        runtime, total, _, _ = t.stop()
        assert total == 1
        t.start()  # start clears the flag: waiters wait again
        assert t.kill_flag.is_set() is False
        assert t.kill_flag.wait(0.05) is False
        t0 = time.monotonic()
        # (The rate holds across the pause: the next unit is 60 s after the
        # first, so this times out rather than returning "killed" at once.)
        assert t.await_fuel(0.3) is False
        assert time.monotonic() - t0 >= 0.29
        t.stop()
        assert t.kill_flag.is_set() is True  # stop sets it


def test_kill_flag_pickles_with_its_throttle():
    with mp_throttle.Throttle(4, 1) as t:
        flag = pickle.loads(pickle.dumps(t.kill_flag))
        t.start()
        flag.set()
        assert t.kill_flag.is_set()
        t.stop()


# ---------------------------------------------------------------- fuel


def test_has_fuel():
    with mp_throttle.Throttle(4, 1) as t:
        assert t.has_fuel() is False  # not started: nothing accrues
        t.start()
        first = t.has_fuel_ns()
        second = t.has_fuel_ns()
        after = clock_ns()
        assert first is not None
        # The next unit is due 0.25 s after the first (units at 0, T, 2T, ...).
        if second is not None:
            assert second - first >= 250_000_000
        elif after - first < 250_000_000:
            assert second is None
        time.sleep(0.3)
        assert t.has_fuel() is True
        t.stop()
        assert t.has_fuel() is False  # stopped (killed)


def test_await_fuel_timeout_and_grant_times():
    T = 100_000_000  # 10 per 1 s: a unit every 0.1 s
    with mp_throttle.Throttle(10, 1) as t:
        t0 = time.monotonic()
        assert t.await_fuel(0.2) is False  # not started: waits for the start
        assert 0.19 <= time.monotonic() - t0 < 2
        before_start = clock_ns()
        t.start()
        after_start = clock_ns()
        grants = []
        for k in range(6):
            grant = t.await_fuel_ns(5)
            returned = clock_ns()
            assert grant is not None
            # Unit k is due k*T after the start (exact integer schedule), and
            # granted at its slot, or when asked for if that is later (a late
            # waiter finds it in the tank); the call returns after it.
            assert before_start + k * T <= grant <= max(after_start + k * T, returned)
            grants.append((k, grant))
        assert abs(clock_ns() - time.monotonic_ns()) < 50_000_000  # one clock
        # The units granted at their slots are exactly k*T apart.
        on_slot = [(k, g) for k, g in grants if g <= after_start + k * T]
        for (j, gj), (k, gk) in zip(on_slot, on_slot[1:]):
            assert gk - gj == (k - j) * T, grants
        t.stop()


def test_as_throttle_false_counts_only():
    with mp_throttle.Throttle(1, 1, as_throttle=False) as t:
        assert t.auto_emit is False  # 0.0.5's default without throttling
        t.start()
        assert all(t.has_fuel() for _ in range(100))  # not rationed
        assert t.summary()[1] == 0  # and not counted
        for _ in range(3):
            t.emit()
        assert t.stop()[1] == 3


# ---------------------------------------------------------------- emit


def test_emit_with_timestamps():
    with mp_throttle.Throttle(10, 1, auto_emit=False) as t:
        assert "not running" in raises("MPT_STATUS_NOT_RUNNING", t.emit).message
        t.start()
        assert t.await_fuel(1) and t.summary()[1] == 0  # fuel no longer counts
        t.emit()  # now
        t.emit(time.time() + 3.0)  # 0.0.5: an epoch time, in seconds
        t.emit(time.time() - 10.0)  # long ago: counted, but not in latest()
        t.emit_at_ns(clock_ns() + 3_000_000_000)  # the library's own clock
        assert t.summary()[1] == 4
        # latest() counts the two stamped 3 s ahead (until they are a second
        # old, as 0.0.5 did) and the one of now (for a second), not the old one.
        deadline = time.monotonic() + 2.5
        while t.latest()[1] < 2 and time.monotonic() < deadline:
            time.sleep(0.01)  # the monitor refreshes every 0.01 s
        latest = t.latest()
        assert latest[1] in (2.0, 3.0) and latest[0] == pytest.approx(1 / latest[1])
        raises("MPT_STATUS_INVALID_ARGUMENT", t.emit_at_ns, -1)
        raises("MPT_STATUS_INVALID_ARGUMENT", t.emit, float("nan"))
        t.kill_flag.set()
        raises("MPT_STATUS_KILLED", t.emit)
        assert t.stop()[1] == 4


# ---------------------------------------------------------------- statistics


def test_statistics_shapes_and_values():
    # hardcap 'one': grants at least T = 0.05 s apart, whatever the timing,
    # so the figures have exact upper bounds (the lower ones are generous: a
    # waiter the machine holds back loses its units with this hardcap).
    with mp_throttle.Throttle(20, 1, hardcap="one") as t:
        for stat in (t.latest, t.mean, t.lo_hi, t.hi_lo):
            value = stat()
            assert type(value) is tuple and len(value) == 2
            assert all(type(x) is float for x in value)
        assert t.lo_hi() == (0.0, 0.0) and t.hi_lo() == (0.0, 0.0)  # nothing seen yet
        t.start()
        deadline = time.monotonic() + 1.2
        taken = 0
        while t.await_fuel(max(0.0, deadline - time.monotonic())):
            taken += 1
        time.sleep(0.05)  # a few refreshes
        latest, mean, lo_hi, hi_lo = t.latest(), t.mean(), t.lo_hi(), t.hi_lo()
        summary = t.stop()
    runtime, total, between, per_second = summary
    assert type(runtime) is float and type(total) is int
    assert type(between) is float and type(per_second) is float
    assert total == taken and 12 <= total <= 25  # units at 0, 0.05, ..., 1.2 s
    assert math.isclose(between, runtime / total, rel_tol=1e-3)
    assert math.isclose(per_second, total / runtime, rel_tol=1e-3)
    assert 10 <= latest[1] <= 21 and math.isclose(latest[0], 1 / latest[1])
    assert 10 <= mean[1] <= 20 + 1 / 1.2 and math.isclose(mean[0], 1 / mean[1])
    assert 0.05 - 1e-9 <= lo_hi[0] <= hi_lo[0] < 1.0
    assert math.isclose(lo_hi[1], 1 / lo_hi[0]) and math.isclose(hi_lo[1], 1 / hi_lo[0])


# ---------------------------------------------------------------- hardcaps


@pytest.mark.parametrize("hardcap", ["limit", "one", "window", "none", "unbounded", 7])
def test_hardcaps(hardcap):
    """4 per 0.5 s (T = 0.125 s), nobody taking fuel for 0.65 s (units due
    at 0, 0.125, ..., 0.625 s: 6), then as many as there are, at once."""
    T = 125_000_000
    with mp_throttle.Throttle(4, 0.5, hardcap=hardcap) as t:
        before_start = clock_ns()
        t.start()
        after_start = clock_ns()
        time.sleep(0.65)
        loop_start = clock_ns()
        got = 0
        while t.has_fuel():
            got += 1
        loop_end = clock_ns()
        t.stop()

    # Unit k falls due at start + k*T, the start being in [before_start, after_start].
    def certain(a, b):  # units surely due in (a, b]
        return sum(1 for k in range(100) if a < after_start + k * T <= b)

    def possible(a, b):  # units that may have fallen due in (a, b]
        return sum(1 for k in range(100) if after_start + k * T > a and before_start + k * T <= b)

    since_start = 1 + certain(after_start, loop_start)  # unit 0 is due at the start
    assert since_start >= 6
    during = possible(loop_start, loop_end)  # none, unless the loop was held up
    if hardcap == "limit":  # the tank holds max_n
        assert 4 <= got <= 4 + during
    elif hardcap == "one":  # the tank holds 1
        assert 1 <= got <= 1 + during
    elif hardcap == "window":  # at most max_n in any window of 0.5 s
        assert got == 4 or (got > 4 and loop_end - loop_start >= 500_000_000)
    else:  # 0.0.5: anything else is unbounded: every unit since the start
        assert since_start <= got <= possible(before_start - 1, loop_end)


# ---------------------------------------------------------------- signature


def test_signature_and_attributes_of_0_0_5():
    params = inspect.signature(mp_throttle.Throttle).parameters
    assert params["max_n"].default == 0 and params["per"].default == 1
    t = mp_throttle.Throttle(
        4, 1, as_monitor=True, as_throttle=True, auto_emit=True, auto_calibrate=True,
        hardcap="limit", rf_rate=0.02, _correction=0.1,
    )
    try:
        assert (t.max_n, t.per, t.as_monitor, t.as_throttle, t.auto_emit) == (4, 1, True, True, True)
        assert (t.hardcap, t.refresh_rate, t.auto_calibrate) == ("limit", 0.02, False)
        assert t._calibrate() is None  # nothing to calibrate
        for method in ("await_fuel", "has_fuel", "emit", "latest", "mean", "lo_hi", "hi_lo",
                       "start", "stop"):
            assert callable(getattr(t, method))
        assert inspect.signature(t.await_fuel).parameters["t"].default is None
        assert inspect.signature(t.emit).parameters["timestamp"].default is None
        assert mp_throttle.library_version()[0] == 0
    finally:
        t.close()
