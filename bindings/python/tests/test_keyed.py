"""(k) KeyedThrottle: one configuration, a table of keys, each key with a
schedule of its own (the C mpt_keyed_* functions): per-key limits, the
table's room (NoRoomError), keys of every length and byte, str and bytes
keys, sharing with fork()ed children and by name, kill, the statistics,
Ctrl-C and asyncio cancellation of a keyed wait."""

import asyncio
import json
import os
import pickle
import secrets
import signal
import subprocess
import sys
import threading
import time

import pytest

import mp_throttle
from helpers import HERE, child_env, run_python, shm_path, wait_until
from mp_throttle import KeyedThrottle, NoRoomError, ThrottleError, _ffi, clock_ns

S = 1_000_000_000


def unique_name(tag):
    return f"py-keyed-{tag}-{os.getpid()}-{secrets.token_hex(6)}"


@pytest.fixture
def make():
    """make(max_n, per, capacity, **options): a started KeyedThrottle,
    stopped and closed after the test."""
    made = []

    def make(*args, start=True, **options):
        k = KeyedThrottle(*args, **options)
        made.append(k)
        if start:
            k.start()
        return k

    yield make
    for k in made:
        k.__exit__(None, None, None)


@pytest.fixture
def names():
    """Named throttles made by the test, unlinked after it."""
    made = []
    yield made
    for name in made:
        try:
            KeyedThrottle.unlink(name)
        except ThrottleError:
            pass


def queued(k, key, beyond_s):
    """True once a newcomer on ``key`` would wait more than ``beyond_s``
    seconds: a waiter is queued on it."""
    return wait_until(lambda: k.peek(key)[1] > beyond_s)


# ---------------------------------------------------------------- per key


def test_a_new_key_has_a_full_tank(make):
    k = make(3, 60, 16)
    for key in ("a", "b"):
        # A key never seen: its whole tank (max_n units) goes at once.
        assert k.peek(key) == (3, 0.0)
        assert [k.has_fuel(key) for _ in range(4)] == [True, True, True, False]
        level, wait = k.peek(key)
        assert level == 0 and 19 < wait <= 20  # one unit per 20 s
    # n units at once, from a new key's full tank; more than a tank holds
    # can never be granted.
    assert k.await_fuel("c", n=3, timeout=0)
    assert not k.has_fuel("c")
    with pytest.raises(ThrottleError) as e:
        k.has_fuel("d", n=4)
    assert e.value.status == _ffi.STATUS_INVALID_ARGUMENT
    # peek never adds a key.
    assert k.peek("never") == (3, 0.0)
    assert k.stats().live_keys == 3 and not k.key_stats("never").in_table


def test_a_key_at_its_limit_does_not_slow_another(make):
    """2 units per 10 s. Key "slow" is drained and a thread waits on it (its
    unit is due 5 s later); meanwhile key "fast" gets its own two units at
    once. Then kill wakes the waiter."""
    k = make(2, 10, 16)
    assert k.has_fuel("slow", n=2)
    results = []
    waiter = threading.Thread(target=lambda: results.append(k.await_fuel("slow")))
    waiter.start()
    try:
        assert queued(k, "slow", 7.5), "the waiter did not queue on 'slow'"
        began = time.monotonic()
        assert k.await_fuel("fast") and k.await_fuel(key="fast")
        assert time.monotonic() - began < 2.0  # not behind the 5 s of "slow"
        # "fast" is at its own limit now: a short wait times out.
        began = time.monotonic()
        assert not k.await_fuel("fast", timeout=0.3)
        assert 0.3 <= time.monotonic() - began < 3.0
        assert results == []  # still waiting on "slow"
        assert k.key_stats("fast").granted == 2
    finally:
        k.kill()
        waiter.join(timeout=10)
    assert not waiter.is_alive() and results == [False]


def test_kill_wakes_waiters_and_start_resumes(make):
    k = make(1, 60, 8)
    assert k.has_fuel("k")
    results = []
    waiter = threading.Thread(target=lambda: results.append(k.await_fuel_ns("k")))
    waiter.start()
    assert queued(k, "k", 90), "the waiter did not queue"
    # The main thread waits too (through its helper thread), on another key
    # that is drained; a timer kills both waits.
    assert k.has_fuel("m")
    timer = threading.Timer(0.3, k.kill)
    timer.start()
    began = time.monotonic()
    assert k.await_fuel("m") is False
    woke = time.monotonic() - began
    timer.join()
    waiter.join(timeout=10)
    assert not waiter.is_alive() and results == [None]
    assert 0.25 <= woke < 5.0, woke
    # Killed: every call that takes fuel says no, even for a new key.
    assert not k.has_fuel("new") and not k.await_fuel("new", timeout=1)
    with pytest.raises(ThrottleError) as e:
        k.peek("new")
    assert e.value.status == _ffi.STATUS_KILLED
    assert k.is_running()  # killed, not stopped
    k.stop()
    assert not k.is_running()
    with pytest.raises(ThrottleError) as e:
        k.peek("new")
    assert e.value.status == _ffi.STATUS_KILLED  # stop() sets the flag too
    assert not k.has_fuel("new")
    k.start()
    assert k.has_fuel("new")
    assert not k.has_fuel("k")  # keys keep their schedules across a stop
    assert k.stats().summary[1] == 3  # k, m, new


# ---------------------------------------------------------------- the table


def test_no_room_for_a_new_key_while_every_key_holds_back_fuel(make):
    k = make(1, 60, 2)
    assert k.has_fuel("a") and k.has_fuel("b")
    # Both keys hold back fuel (their tanks are not full again for 60 s):
    # neither may be dropped, so a third key has no room.
    for attempt in (
        lambda: k.has_fuel("c"),
        lambda: k.await_fuel("c"),
        lambda: k.await_fuel("c", timeout=5),
        lambda: k.await_fuel_ns(b"c", n=1, timeout=0),
    ):
        began = time.monotonic()
        with pytest.raises(NoRoomError) as e:
            attempt()
        assert time.monotonic() - began < 2.0  # refused at once, not waited
        assert isinstance(e.value, ThrottleError)
        assert e.value.status == _ffi.STATUS_NO_ROOM == 19
        assert e.value.status_name == "MPT_STATUS_NO_ROOM"
        assert e.value.function.startswith("mpt_keyed_")
        assert e.value.message
    # Nothing was granted, nothing was added.
    stats = k.stats()
    assert (stats.live_keys, stats.capacity, stats.evictions, stats.added) == (2, 2, 0, 2)
    assert stats.summary[1] == 2
    assert k.key_stats("c") == (False, 0, 0)
    # Keys already in the table are not refused.
    assert not k.has_fuel("a")
    # Forgetting a key makes room.
    assert k.forget("a") is True
    assert k.forget("a") is False
    assert k.has_fuel("c")
    stats = k.stats()
    assert (stats.live_keys, stats.evictions, stats.added) == (2, 0, 3)
    assert stats.summary[1] == 3


def test_an_idle_key_is_dropped_for_a_new_one(make):
    """1 unit per 0.2 s, room for one key: once "x"'s tank is full again it
    behaves as a key never seen, and makes room for "y"."""
    k = make(1, 0.2, 1)
    assert k.has_fuel("x")
    with pytest.raises(NoRoomError):
        k.has_fuel("y")  # "x" still holds back its unit
    time.sleep(0.5)
    assert k.has_fuel("y")
    stats = k.stats()
    assert (stats.live_keys, stats.evictions, stats.added) == (1, 1, 2)
    assert not k.key_stats("x").in_table and k.key_stats("y").in_table


# ---------------------------------------------------------------- keys


def test_keys_of_0_to_128_bytes_and_no_longer(make):
    k = make(1, 60, 8)
    for key in (b"", "k" * 128, bytes(range(128))):
        assert k.has_fuel(key)
        assert not k.has_fuel(key)
        assert k.key_stats(key).granted == 1
    assert k.has_fuel("é" * 64)  # 128 bytes of UTF-8
    before = k.stats()
    for key in ("k" * 129, b"\0" * 129, "é" * 64 + "x"):
        for attempt in (
            lambda: k.has_fuel(key),
            lambda: k.await_fuel(key, timeout=1),
            lambda: k.peek(key),
            lambda: k.forget(key),
            lambda: k.key_stats(key),
        ):
            with pytest.raises(ThrottleError) as e:
                attempt()
            assert e.value.status == _ffi.STATUS_INVALID_ARGUMENT, e.value
            assert not isinstance(e.value, NoRoomError)
            assert "128" in e.value.message
    after = k.stats()
    assert (after.live_keys, after.added) == (before.live_keys, before.added) == (4, 4)
    assert after.summary[1] == before.summary[1] == 4  # nothing granted
    for bad in (None, 5, ["a"]):
        with pytest.raises(TypeError):
            k.has_fuel(bad)


def test_nul_bytes_are_part_of_a_key(make):
    k = make(1, 60, 8)
    keys = [b"a", b"a\0", b"a\0b", b"a\0c", b"\0", b""]
    for key in keys:
        assert k.has_fuel(key), key  # each its own key, with a full tank
    for key in keys:
        assert not k.has_fuel(key), key
        assert k.key_stats(key) == (True, 1, k.key_stats(key).since_ns)
    assert k.stats().live_keys == len(keys)
    assert not k.has_fuel("a\0b")  # the str of the same bytes
    assert k.forget(b"a\0b") and not k.key_stats(b"a\0b").in_table
    assert k.key_stats(b"a\0c").in_table


def test_str_and_bytes_keys_are_equal_when_their_utf8_is(make):
    k = make(1, 60, 8)
    assert k.has_fuel("héllo")
    assert not k.has_fuel("héllo".encode("utf-8"))
    assert not k.has_fuel(bytearray("héllo", "utf-8"))
    assert not k.has_fuel(memoryview(b"h\xc3\xa9llo"))
    assert k.key_stats(b"h\xc3\xa9llo") == k.key_stats("héllo")
    # Other bytes are another key: Latin-1 é is not UTF-8's.
    assert k.has_fuel("héllo".encode("latin-1"))
    assert k.stats().live_keys == 2
    with pytest.raises(UnicodeEncodeError):
        k.has_fuel("\udcff")  # no UTF-8 for a lone surrogate


# ---------------------------------------------------------------- sharing


def test_forked_children_share_the_keys(make):
    k = make(3, 60, 16)
    assert k.has_fuel("parent", n=2)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return to pytest
        code = 1
        try:
            os.close(r)
            report = {
                "parent_level": k.peek("parent")[0],
                "took": sum(k.has_fuel("child") for _ in range(5)),
                "waited": k.await_fuel("child", timeout=0.3),
                "other": k.has_fuel("other"),
            }
            os.write(w, json.dumps(report).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r) as f:
        report = json.loads(f.read() or "null")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert report == {"parent_level": 1, "took": 3, "waited": False, "other": True}
    # The child's grants are this process's too.
    assert k.peek("child")[0] == 0 and not k.has_fuel("child")
    assert k.key_stats("child").granted == 3
    assert not k.has_fuel("other", n=3) and k.has_fuel("other", n=2)
    assert k.stats().summary[1] == 1 + 3 + 1 + 1  # grants: n units are one emission


def test_a_forked_child_kills_a_waiter_here(make):
    k = make(1, 60, 4)
    assert k.has_fuel("k")
    results = []
    waiter = threading.Thread(target=lambda: results.append(k.await_fuel("k")))
    waiter.start()
    assert queued(k, "k", 90)
    pid = os.fork()
    if pid == 0:
        try:
            k.kill()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    waiter.join(timeout=10)
    assert not waiter.is_alive() and results == [False]


def test_named_keyed_throttle_shared_by_name(names):
    name = unique_name("named")
    names.append(name)
    with KeyedThrottle.create_named(name, 2, 60, 8) as a:
        assert a.name == name and os.path.exists(shm_path(name))
        a.start()
        b = KeyedThrottle.open(name)
        assert b.is_running() and b.capacity == 8
        # The creator's configuration, read from the library.
        assert (b.max_n, b.per, b.hardcap) == (2, 60.0, "limit")
        assert (a.created, b.created) == (True, False)
        assert b.has_fuel("k") and b.has_fuel("k")
        assert not a.has_fuel("k")
        assert a.key_stats("k").granted == 2
        # Creating it again with the same configuration opens it ...
        c = KeyedThrottle.create_named(name, 2, 60, 8)
        assert not c.has_fuel("k")
        # ... another configuration (capacity included) does not.
        for args in ((2, 60, 9), (3, 60, 8), (2, 30, 8)):
            with pytest.raises(ThrottleError) as e:
                KeyedThrottle.create_named(name, *args)
            assert e.value.status == _ffi.STATUS_MISMATCH, args
        # An unrelated process opens it by name and takes from a key.
        proc = run_python(
            f"""
import mp_throttle
k = mp_throttle.KeyedThrottle.open({name!r})
print(k.has_fuel("far", n=2), k.has_fuel("far"), k.key_stats("far").granted)
"""
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == ["True", "False", "2"]  # units, not grants
        assert not a.has_fuel("far") and a.key_stats("far").granted == 2
        # Pickled by reference: the receiver opens the name.
        d = pickle.loads(pickle.dumps(b))
        assert d.name == name and d.key_stats("far").granted == 2
        for other in (b, c, d):
            other.close()
        # A plain throttle of the name is a mismatch, both ways.
        with pytest.raises(ThrottleError) as e:
            mp_throttle.Throttle.open(name)
        assert e.value.status == _ffi.STATUS_MISMATCH
        with pytest.raises(ThrottleError) as e:
            mp_throttle.Throttle(2, 60, name=name)
        assert e.value.status == _ffi.STATUS_MISMATCH
    # The with block stopped it (this process made it) and closed it.
    assert a.closed
    late = KeyedThrottle.open(name)
    assert not late.is_running()
    with pytest.raises(ThrottleError) as err:
        a.has_fuel("k")
    assert err.value.status == _ffi.STATUS_BAD_HANDLE
    # Unlinked: gone for new opens, still usable by those who have it.
    KeyedThrottle.unlink(name)
    assert not os.path.exists(shm_path(name))
    with pytest.raises(ThrottleError) as err:
        KeyedThrottle.open(name)
    assert err.value.status == _ffi.STATUS_NOT_FOUND
    with pytest.raises(ThrottleError) as err:
        KeyedThrottle.unlink(name)
    assert err.value.status == _ffi.STATUS_NOT_FOUND
    assert late.key_stats("k").granted == 2
    late.close()


def test_configuration_and_created_read_back(names):
    """mpt_keyed_get_config: a keyed throttle opened by name knows its
    creator's configuration, in this process and in an unrelated one; each
    handle knows whether it created it, and only the creator's with block
    stops it."""
    name = unique_name("config")
    names.append(name)
    a = KeyedThrottle.create_named(
        name, 5, 0.25, 16, hardcap="window", as_monitor=False, rf_rate=0.05
    )
    try:
        assert a.created is True and a._owner_pid == os.getpid()
        assert (a.max_n, a.per, a.hardcap, a.capacity) == (5, 0.25, "window", 16)
        b = KeyedThrottle.open(name)
        config = (b.max_n, b.per, b.hardcap, b.as_monitor, b.refresh_rate, b.capacity)
        assert config == (5, 0.25, "window", False, 0.05, 16)
        assert type(b.max_n) is int and type(b.per) is float
        assert b.created is False
        assert repr(b) == f"<mp_throttle.KeyedThrottle {name!r} max_n=5 per=0.25 open>"
        b.close()
        assert b.capacity == 16 and b.max_n == 5  # known once closed too
        # An unrelated process reads the same.
        proc = run_python(
            f"""
import mp_throttle
k = mp_throttle.KeyedThrottle.open({name!r})
print(k.max_n, k.per, k.hardcap, k.as_monitor, k.refresh_rate, k.capacity, k.created)
"""
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == ["5", "0.25", "window", "False", "0.05", "16", "False"]
        # A create_named that found it opened it: not created, so its with
        # block closes it without stopping it.
        a.start()
        with KeyedThrottle.create_named(
            name, 5, 0.25, 16, hardcap="window", as_monitor=False, rf_rate=0.05
        ) as c:
            assert c.created is False and c._owner_pid is None
        assert c.closed and a.is_running()
    finally:
        a.__exit__(None, None, None)
    assert not KeyedThrottle.open(name).is_running()  # the creator's with block stopped it
    # Any hardcap but the three is unbounded: reported as 'none'.
    other = unique_name("none")
    names.append(other)
    with KeyedThrottle.create_named(other, 2, 1, 4, hardcap="unbounded") as d:
        assert d.hardcap == "unbounded"  # as given
        assert KeyedThrottle.open(other).hardcap == "none"
    anonymous = KeyedThrottle(3, 2, 4, hardcap="one")
    assert (anonymous.created, anonymous.capacity, anonymous.hardcap) == (True, 4, "one")
    anonymous.close()


def test_kill_flag(make):
    """kill_flag (mpt_keyed_kill_flag_is_set): set by kill(), kill_flag.set()
    and stop() through any handle, in any process; cleared by start()."""
    k = make(2, 60, 4)
    flag = k.kill_flag
    assert flag.is_set() is False
    k.kill()
    assert flag.is_set() is True and k.kill_flag.wait(0) is True
    assert not k.has_fuel("a")  # killed: no fuel
    k.stop()
    assert flag.is_set() is True  # still set once stopped
    k.start()
    assert flag.is_set() is False and k.has_fuel("a")
    assert k.kill_flag.wait(0.05) is False
    # A fork()ed child sets it; this process sees it.
    pid = os.fork()
    if pid == 0:
        try:
            k.kill_flag.set()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert flag.is_set() is True
    k.stop()
    k.close()
    with pytest.raises(ThrottleError) as e:
        flag.is_set()
    assert e.value.status == _ffi.STATUS_BAD_HANDLE


def test_kill_through_another_handle_of_a_named_one(names):
    name = unique_name("kill")
    names.append(name)
    with KeyedThrottle.create_named(name, 1, 60, 4) as a:
        a.start()
        b = KeyedThrottle.open(name)
        assert not a.kill_flag.is_set() and not b.kill_flag.is_set()
        b.kill_flag.set()
        assert a.kill_flag.is_set() and b.kill_flag.is_set()
        b.close()


def test_plain_and_keyed_names_do_not_mix(names):
    name = unique_name("plain")
    names.append(name)
    with mp_throttle.Throttle(2, 60, name=name):
        with pytest.raises(ThrottleError) as e:
            KeyedThrottle.open(name)
        assert e.value.status == _ffi.STATUS_MISMATCH
        with pytest.raises(ThrottleError) as e:
            KeyedThrottle.create_named(name, 2, 60, 8)
        assert e.value.status == _ffi.STATUS_MISMATCH
    with pytest.raises(ThrottleError) as e:
        KeyedThrottle.open(unique_name("none"))
    assert e.value.status == _ffi.STATUS_NOT_FOUND


def test_an_anonymous_keyed_throttle_is_not_pickled(make):
    k = make(1, 1, 1, start=False)
    with pytest.raises(TypeError):
        pickle.dumps(k)
    k.close()
    with pytest.raises(ThrottleError) as e:
        pickle.dumps(k)
    assert e.value.status == _ffi.STATUS_BAD_HANDLE


# ---------------------------------------------------------------- statistics


def test_stats_and_key_stats(make):
    k = make(5, 1, 16, start=False)
    assert k.stats() == (0, 16, 0, 0, (0.0, 0, 0.0, 0.0))
    assert not k.is_running() and not k.has_fuel("a")  # not started: no fuel
    with pytest.raises(ThrottleError) as e:
        k.peek("a")
    assert e.value.status == _ffi.STATUS_NOT_RUNNING
    assert k.stats().live_keys == 0
    before = clock_ns()
    k.start()
    assert k.await_fuel("a", n=3)
    assert k.has_fuel("b") and k.has_fuel("b")
    after = clock_ns()
    a = k.key_stats("a")
    assert a.in_table is True and a.granted == 3 and before <= a.since_ns <= after
    assert k.key_stats("b")[:2] == (True, 2)
    assert k.key_stats("nobody") == (False, 0, 0)
    stats = k.stats()
    assert (stats.live_keys, stats.capacity, stats.evictions, stats.added) == (2, 16, 0, 2)
    assert stats.summary[1] == 3  # three grants, each one emission
    # The monitor counts the three emissions of the last second.
    assert wait_until(lambda: k.latest()[1] == 3, timeout=5), k.latest()
    assert k.latest()[0] == pytest.approx(1 / 3)
    time.sleep(0.2)
    runtime, total, between, per_second = k.stop()
    assert total == 3 and runtime >= 0.2
    assert between == pytest.approx(runtime / 3) and per_second == pytest.approx(3 / runtime)
    seconds_between, rate = k.mean()
    assert seconds_between == pytest.approx(runtime / 3) and rate == pytest.approx(3 / runtime)
    assert k.stats().summary == (runtime, total, between, per_second)
    # Stopped, the keys are still there; forgotten, one is not.
    assert k.forget("a") and not k.key_stats("a").in_table
    assert k.stats().live_keys == 1


def test_statistics_need_the_monitor(make):
    k = make(5, 1, 4, as_monitor=False)
    assert k.has_fuel("a")
    for stat in (k.latest, k.mean):
        with pytest.raises(ThrottleError) as e:
            stat()
        assert e.value.status == _ffi.STATUS_MONITOR_OFF
    assert k.stats().summary[1] == 1  # the counts need no monitor


def test_bad_configurations_are_refused():
    for args, options in (
        ((0, 1, 4), {}),
        ((1, 1, 0), {}),
        ((2**24 + 1, 1, 4), {}),
        ((2**16 + 1, 1, 4), {"hardcap": "window"}),
        ((1, 0, 4), {}),
        ((1, 1, 2**26 + 1), {}),
    ):
        with pytest.raises(ThrottleError) as e:
            KeyedThrottle(*args, **options)
        assert e.value.status == _ffi.STATUS_INVALID_ARGUMENT, (args, options)
    with pytest.raises(ThrottleError):
        KeyedThrottle(-1, 1, 4)  # refused before ctypes wraps it around
    with pytest.raises(TypeError):
        KeyedThrottle(1, 1, 4, as_throttle=False)  # a keyed throttle always rations


def test_hardcaps_apply_per_key(make):
    one = make(2, 60, 4, hardcap="one")
    assert one.has_fuel("a") and not one.has_fuel("a") and one.has_fuel("b")
    with pytest.raises(ThrottleError):
        one.has_fuel("c", n=2)  # the tank holds 1
    window = make(2, 0.4, 4, hardcap="window")
    assert window.has_fuel("a", n=2) and not window.has_fuel("a")
    assert window.has_fuel("b", n=2)
    assert window.await_fuel("a", timeout=5)  # the window moves on
    assert window.key_stats("a").granted == 3


def test_close_and_repr(make):
    k = make(3, 1.5, 4, start=False)
    assert repr(k) == "<mp_throttle.KeyedThrottle max_n=3 per=1.5 open>"
    assert k.capacity == 4 and k.name is None
    k.close()
    k.close()
    assert k.closed and repr(k).endswith(" closed>")
    for call in (k.start, k.stats, lambda: k.has_fuel("a"), lambda: k.await_fuel("a")):
        with pytest.raises(ThrottleError) as e:
            call()
        assert e.value.status == _ffi.STATUS_BAD_HANDLE
        assert "KeyedThrottle is closed" in e.value.message


# ---------------------------------------------------------------- interrupts


def test_sigint_ends_a_keyed_wait_and_gives_the_unit_back(names):
    """A child process waits in its main thread, with no timeout, on a key
    whose next unit is 60 s away; SIGINT ends the wait at once with
    KeyboardInterrupt, and the unit it had reserved goes back to the key."""
    name = unique_name("sigint")
    names.append(name)
    with KeyedThrottle.create_named(name, 1, 60, 4) as k:
        k.start()
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"""
import mp_throttle
k = mp_throttle.KeyedThrottle.open({name!r})
print(k.await_fuel("host", timeout=10), flush=True)  # the full tank's unit
k.await_fuel("host")                                 # 60 s away
print("not interrupted", flush=True)
""",
            ],
            cwd=HERE,
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout.readline() == "True\n"
            assert queued(k, "host", 90), "the child is not queued"
            sent = time.monotonic()
            child.send_signal(signal.SIGINT)
            _, err = child.communicate(timeout=20)
            assert child.returncode == -signal.SIGINT, err
            assert err.rstrip().endswith("KeyboardInterrupt"), err
            assert time.monotonic() - sent < 5.0
            # The reserved unit is back: a newcomer waits 60 s, not 120.
            assert k.peek("host")[1] < 61
            assert k.key_stats("host").granted == 1
        finally:
            if child.poll() is None:
                child.kill()
                child.communicate()


def test_asyncio_acquire_and_cancellation(make):
    k = make(2, 60, 4)

    async def main():
        assert await k.acquire("a") and await k.acquire_ns("a") is not None
        assert await k.acquire("a", timeout=0.2) is False
        # A wait of 30 s, cancelled: it ends at once and takes nothing.
        task = asyncio.ensure_future(k.acquire("a"))
        while k.peek("a")[1] < 45:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert k.peek("a")[1] < 31
        # Another key is not held up by "a".
        assert await asyncio.wait_for(k.acquire("b", n=2), timeout=5)
        with pytest.raises(NoRoomError):
            await k.acquire_ns(b"x")  # "a" to "d" fill the table
        return True

    assert k.has_fuel("c") and k.has_fuel("d")
    assert asyncio.run(asyncio.wait_for(main(), timeout=30))
    assert k.key_stats("a").granted == 2 and k.key_stats("b").granted == 2


def test_the_readme_example_runs():
    """README.md's keyed example, as a script: it runs and ends at once
    (three requests, two hosts: every one goes from a full tank)."""
    with open(os.path.join(HERE, "..", "README.md"), encoding="utf-8") as f:
        readme = f.read()
    section = readme.split("## Keyed throttles", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert "KeyedThrottle(" in code and "await_fuel(key=" in code
    began = time.monotonic()
    proc = run_python(code)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.splitlines() == [
        "fetch https://example.com/a",
        "fetch https://example.org/",
        "fetch https://example.com/b",
        "2 hosts",
    ]
    assert time.monotonic() - began < 20
