"""(e) Handles and names: close(), garbage collection, `with`, interpreter
exit, and close() racing calls in other threads."""

import gc
import os
import pickle
import subprocess
import sys
import threading
import time

import pytest

import mp_throttle
from helpers import child_env, run_python, shm_names_of, shm_path
from mp_throttle import ThrottleError


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def test_close_twice_and_use_after_close():
    t = mp_throttle.Throttle(4, 1)
    path = shm_path(t.name)
    assert os.path.exists(path)
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"  # the library's mode
    t.close()
    t.close()  # a no-op
    assert t.closed and not os.path.exists(path)
    calls = [t.start, t.stop, t.await_fuel, t.has_fuel, t.emit, t.latest, t.mean, t.lo_hi,
             t.hi_lo, t.summary, t.is_running, t.kill_flag.is_set, t.kill_flag.set]
    for call in calls:
        with pytest.raises(ThrottleError) as e:
            call()
        assert e.value.status_name == "MPT_STATUS_BAD_HANDLE" and "closed" in e.value.message
    with pytest.raises(ThrottleError):
        pickle.dumps(t)


def test_garbage_collection_frees_and_unlinks():
    t = mp_throttle.Throttle(4, 1)
    path = shm_path(t.name)
    t.start()
    del t
    gc.collect()
    assert not os.path.exists(path)
    # A throttle that only this frame referenced, never closed by hand:
    def make():
        u = mp_throttle.Throttle(4, 1)
        return shm_path(u.name)

    gc.disable()  # reference counting alone frees it: no cycle keeps it
    try:
        assert not os.path.exists(make())
    finally:
        gc.enable()


def test_reopened_handle_does_not_unlink():
    t = mp_throttle.Throttle(4, 1)
    other = pickle.loads(pickle.dumps(t))
    other.close()
    del other
    gc.collect()
    assert os.path.exists(shm_path(t.name))  # only the creator unlinks
    t.close()
    assert not os.path.exists(shm_path(t.name))


def test_with_block_stops_and_closes():
    with mp_throttle.Throttle(4, 1) as t:
        other = pickle.loads(pickle.dumps(t))
        t.start()
    assert t.closed
    assert not os.path.exists(shm_path(t.name))
    assert not other.is_running()  # stopped by the end of the block
    assert other.kill_flag.is_set()
    other.close()
    # Not started, or stopped already: the block just closes.
    with mp_throttle.Throttle(4, 1) as t:
        pass
    with mp_throttle.Throttle(4, 1) as t:
        t.start()
        t.stop()
    assert t.closed


def test_many_throttles_leak_nothing():
    fds, pid = open_fds(), os.getpid()
    for i in range(300):
        t = mp_throttle.Throttle(4, 1)
        if i % 3 == 0:
            t.start()
            pickle.loads(pickle.dumps(t)).close()
            t.stop()
        if i % 2:
            t.close()
        del t
    gc.collect()
    assert open_fds() == fds
    assert shm_names_of(pid) == []


def test_close_waits_for_calls_in_flight():
    """close() in one thread while another sleeps in await_fuel on the same
    handle: the handle is freed only when that call has returned (freeing
    it under the call would be a use after free in C)."""
    t = mp_throttle.Throttle(1, 60)
    waker = pickle.loads(pickle.dumps(t))  # a second handle, to wake it
    t.start()
    assert t.has_fuel()  # the next unit is 60 s away
    returned = []
    waiter = threading.Thread(target=lambda: returned.append(t.await_fuel()))
    waiter.start()
    time.sleep(0.2)
    t.close()  # returns at once; the free is deferred
    assert t.closed and t._handle is not None and returned == []
    with pytest.raises(ThrottleError):
        t.has_fuel()  # no new call on a closing handle
    assert not os.path.exists(shm_path(t.name))  # the name is gone already
    waker.kill_flag.set()
    waiter.join(timeout=10)
    assert returned == [False]
    assert t._handle is None  # the last call out freed it
    assert waker.is_running()  # close() does not stop the throttle
    waker.stop()
    waker.close()


def test_threads_share_one_throttle():
    """Threads calling while another thread closes: every call either works
    or raises ThrottleError (closed); nothing crashes."""
    t = mp_throttle.Throttle(1000, 1, as_monitor=True)
    t.start()
    outcomes = {"ok": 0, "closed": 0, "other": []}
    lock = threading.Lock()

    def hammer():  # until the handle is closed (or 20 s)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                t.has_fuel()
                t.kill_flag.is_set()
                t.latest()
            except ThrottleError as e:
                with lock:
                    if e.status_name == "MPT_STATUS_BAD_HANDLE":
                        outcomes["closed"] += 1
                    else:
                        outcomes["other"].append(e)
                return
            with lock:
                outcomes["ok"] += 1

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    t.close()
    for thread in threads:
        thread.join(timeout=30)
    assert outcomes["other"] == []
    assert outcomes["ok"] > 0 and outcomes["closed"] == 4
    assert t._handle is None


def test_interpreter_exit_with_running_throttle_and_blocked_thread():
    """A script that leaves with its throttle running and a daemon thread
    asleep in await_fuel: it exits cleanly (the handle the thread uses is
    not freed under it) and the name is unlinked."""
    proc = run_python(
        """
import threading, time
import mp_throttle
t = mp_throttle.Throttle(1, 60)
t.start()
assert t.has_fuel()
threading.Thread(target=t.await_fuel, daemon=True).start()
kept = mp_throttle.Throttle(2, 1)   # never started, never closed
time.sleep(0.2)
print(t.name, kept.name)
"""
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    for name in proc.stdout.split():
        assert not os.path.exists(shm_path(name)), name


def test_library_location_from_mpt_lib_dir():
    from mp_throttle import _ffi

    lib_dir = os.environ.get("MPT_LIB_DIR")
    if lib_dir:  # test.sh always sets it: the library under test is loaded
        assert os.path.dirname(_ffi.lib_path) == os.path.normpath(lib_dir)
    proc = subprocess.run(
        [sys.executable, "-c", "import mp_throttle"],
        env=child_env(MPT_LIB_DIR="/nonexistent-mpt-dir"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr and "MPT_LIB_DIR" in proc.stderr
    assert "/nonexistent-mpt-dir/libmp_throttle.so.0" in proc.stderr
