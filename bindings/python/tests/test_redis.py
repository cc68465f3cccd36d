"""The Redis store (library 0.2.0): Throttle.connect, KeyedThrottle.connect
and unlink_url against a real redis-server, started for this module on a free loopback port (no
persistence) and stopped after it, whether the tests pass or fail. Without
redis-server on the PATH the module is skipped, unless CI is set (then it
fails)."""

import multiprocessing
import os
import pickle
import secrets
import shutil
import socket
import subprocess
import threading
import time

import pytest

import mp_throttle
from helpers import take_key_and_close, take_one_and_close, wait_until
from mp_throttle import KeyedThrottle, ThrottleError, _ffi


def raises(status_name, fn, *args, **kwargs):
    """Calls fn, which must raise ThrottleError with that status and a message."""
    with pytest.raises(ThrottleError) as e:
        fn(*args, **kwargs)
    err = e.value
    assert err.status_name == status_name, err
    assert err.message and err.message in str(err)
    return err


def free_port():
    """A loopback port nothing listens on (the kernel's pick for port 0; it
    is free again once the socket is closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pong(port):
    """Whether a Redis server answers PING on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(server, log):
    """Starts `server` on a free port; returns (Popen, port) once it answers
    PING. Tries another port if the one picked was taken meanwhile."""
    for _ in range(3):
        port = free_port()
        proc = subprocess.Popen(
            [server, "--port", str(port), "--bind", "127.0.0.1"]
            + ["--save", "", "--appendonly", "no"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            if pong(port):
                return proc, port
            time.sleep(0.02)
        stop_redis(proc)
    raise AssertionError(f"{server} did not answer PING (its output: {log.name})")


def stop_redis(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    """redis://127.0.0.1:PORT of a redis-server of this module's own."""
    server = shutil.which("redis-server")
    if server is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server not found (CI is set): the Redis store is not tested")
        pytest.skip("redis-server not found: the Redis store is not tested")
    _ffi.require("mpt_throttle_connect", "test_redis")  # (a library older than 0.2.0 fails here)
    log_path = tmp_path_factory.mktemp("redis") / "redis-server.log"
    with open(log_path, "wb") as log:
        proc, port = start_redis(server, log)
        try:
            yield f"redis://127.0.0.1:{port}"
        finally:
            stop_redis(proc)


def new_name():
    # Unique per test and run: the server outlives no test run, but a
    # name's configuration is fixed once made.
    return f"py-test-{os.getpid()}-{secrets.token_hex(4)}"


def wait_for_total(throttle, total, limit=5.0):
    """Polls summary() until its total reaches `total` (each process sends
    its emissions to the server every 50 ms); returns the last total."""
    deadline = time.monotonic() + limit
    while True:
        seen = throttle.summary()[1]
        if seen >= total or time.monotonic() >= deadline:
            return seen
        time.sleep(0.02)


def test_two_handles_share_one_throttle(redis_url):
    name = new_name()
    a = mp_throttle.Throttle.connect(redis_url, name, 5, 1)
    b = mp_throttle.Throttle.connect(redis_url, name, 5, 1)
    try:
        assert (a.url, a.name, b.url, b.name) == (redis_url, name, redis_url, name)
        assert (a.max_n, a.per, b.rate()) == (5, 1, (5, 1.0))
        assert redis_url in repr(a) and name in repr(a)
        assert not b.is_running()
        a.start()
        assert b.is_running()  # started through the other handle
        # 5 per 1 s, LIMIT: the tank's 5 units, taken in turn through both.
        for i in range(5):
            assert (a, b)[i % 2].await_fuel(2.0), f"unit {i + 1} not granted"
        # The tank is empty for both: the 6th is refused, and a short wait
        # times out (the next unit is 0.2 s after the 5th at the earliest).
        assert not b.has_fuel()
        assert not a.has_fuel()
        t0 = time.monotonic()
        assert b.await_fuel(0.05) is False
        assert 0.04 <= time.monotonic() - t0 < 1.0
        # Another configuration of the same name is refused.
        err = raises("MPT_STATUS_MISMATCH", mp_throttle.Throttle.connect, redis_url, name, 6, 1)
        assert err.function == "mpt_throttle_connect" and name in err.message
        connect = mp_throttle.Throttle.connect
        raises("MPT_STATUS_MISMATCH", connect, redis_url, name, 5, 1, hardcap="one")
        # stop() counts the grants of both handles (b's reach the server
        # within 50 ms).
        assert wait_for_total(a, 5) == 5
        runtime, total, _, _ = a.stop()
        assert total == 5
        assert runtime > 0
        assert not b.is_running()
        assert b.await_fuel(1.0) is False  # stopped: the kill flag is set
        assert b.kill_flag.is_set()
    finally:
        a.close()
        b.close()
    # Closing the handles left the throttle on the server; unlink_url
    # removes it, once.
    mp_throttle.unlink_url(redis_url, name)
    err = raises("MPT_STATUS_NOT_FOUND", mp_throttle.unlink_url, redis_url, name)
    assert err.function == "mpt_throttle_unlink_url" and name in err.message
    # A later connect makes a new one, stopped, of any configuration.
    with mp_throttle.Throttle.connect(redis_url, name, 7, 2) as c:
        assert c.rate() == (7, 2.0) and not c.is_running()
    mp_throttle.unlink_url(redis_url, name)


def test_nothing_listening_is_unreachable_at_once():
    url = f"redis://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    err = raises("MPT_STATUS_UNREACHABLE", mp_throttle.Throttle.connect, url, new_name(), 5, 1)
    assert time.monotonic() - t0 < 1.0, "a refused connection should fail at once"
    assert err.status == _ffi.STATUS_UNREACHABLE == 18
    assert err.function == "mpt_throttle_connect" and "127.0.0.1" in err.message
    raises("MPT_STATUS_UNREACHABLE", mp_throttle.unlink_url, url, new_name())


def test_unlink_url_kills_the_throttle_for_its_users(redis_url):
    name = new_name()
    with mp_throttle.Throttle.connect(redis_url, name, 10, 1) as t:
        t.start()
        assert t.await_fuel(1.0)
        mp_throttle.unlink_url(redis_url, name)
        # The handle finds it gone: killed, and not made again.
        t0 = time.monotonic()
        assert t.await_fuel(2.0) is False
        assert time.monotonic() - t0 < 1.5
        raises("MPT_STATUS_NOT_FOUND", mp_throttle.unlink_url, redis_url, name)


def test_bad_arguments(redis_url):
    name = new_name()
    # A Redis throttle's period is a whole number of microseconds.
    connect = mp_throttle.Throttle.connect
    err = raises("MPT_STATUS_INVALID_ARGUMENT", connect, redis_url, name, 3, 1.5e-6)
    assert "per" in err.message
    raises("MPT_STATUS_INVALID_ARGUMENT", connect, redis_url, "a{b}", 5, 1)
    raises("MPT_STATUS_INVALID_ARGUMENT", connect, "http://127.0.0.1:1", name, 5, 1)
    raises("MPT_STATUS_INVALID_ARGUMENT", connect, redis_url, name, 0, 1)
    with pytest.raises(TypeError):
        mp_throttle.Throttle.connect(redis_url.encode(), name, 5, 1)
    with pytest.raises(TypeError):
        mp_throttle.Throttle.connect(redis_url, name, 5, 1, group_shared=True)
    # Nothing was made by the refused calls.
    raises("MPT_STATUS_NOT_FOUND", mp_throttle.unlink_url, redis_url, name)


def test_repr_hides_the_password():
    shown = mp_throttle._shown_url
    assert shown("redis://user:s3cret@host:6379/0") == "redis://user:***@host:6379/0"
    assert shown("redis://:s3cret@host") == "redis://:***@host"
    assert shown("redis://host:6379") == "redis://host:6379"


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_children_connect_again(redis_url, method):
    """A fork()ed child inherits the Throttle and connects again on first
    use (the parent's connection is not its own); a spawned child gets it
    pickled (URL, name, configuration) and connects. Either way it draws
    from the parent's throttle: 1 per 10 s, so the child's unit is the only
    one for 10 s."""
    name = new_name()
    ctx = multiprocessing.get_context(method)
    results = ctx.Queue()
    with mp_throttle.Throttle.connect(redis_url, name, 1, 10) as t:
        t.start()
        child = ctx.Process(target=take_one_and_close, args=(t, results))
        child.start()
        try:
            pid, grant, connected_in = results.get(timeout=30)
        finally:
            child.join(timeout=30)
        assert child.exitcode == 0
        assert pid == child.pid != os.getpid()
        assert grant is not None, "the child got no unit"
        assert connected_in == pid  # its own connection, not the parent's
        assert t._pid == os.getpid()  # the parent's is untouched
        # The child's unit was the tank's only one: none left here, or in a
        # copy unpickled in this process (a connection of its own).
        assert not t.has_fuel()
        copy = pickle.loads(pickle.dumps(t))
        try:
            assert copy.url == redis_url and copy.name == name and copy is not t
            level, wait = copy.peek()
            assert level == 0 and 5 < wait <= 10
        finally:
            copy.close()
        assert wait_for_total(t, 1) == 1
        assert t.stop()[1] == 1
    mp_throttle.unlink_url(redis_url, name)


# ---------------------------------------------------------------- keyed


def test_keyed_two_handles_share_each_key(redis_url):
    """Two KeyedThrottle.connect of one name: one configuration, read back by
    both; each key's full tank is taken once between them; a key at its
    limit does not slow another; a kill through one reaches the other's
    waiter."""
    name = new_name()
    # 3 per 60 s on each key: a tank of 3, then one unit every 20 s.
    a = KeyedThrottle.connect(redis_url, name, 3, 60)
    b = KeyedThrottle.connect(redis_url, name, 3, 60)
    waiter = None
    try:
        # The configuration, read back from the library (mpt_keyed_get_config).
        for k in (a, b):
            assert (k.url, k.name, k.max_n, k.per, k.hardcap) == (redis_url, name, 3, 60.0, "limit")
            assert (k.as_monitor, k.refresh_rate, k.capacity) == (True, 0.01, 0)
        assert type(a.per) is float and type(b.per) is float  # (60 was given)
        assert (a.created, b.created) == (True, False)
        assert redis_url in repr(b) and name in repr(b) and "max_n=3" in repr(b)
        assert not b.is_running() and not b.has_fuel("h")  # not started: no fuel
        a.start()
        assert b.is_running()  # started through the other handle
        # Key "h": its tank of 3, taken in turn through both, once.
        for i in range(3):
            assert (a, b)[i % 2].await_fuel("h", timeout=2.0), f"unit {i + 1} not granted"
        assert not a.has_fuel("h") and not b.has_fuel("h")
        t0 = time.monotonic()
        assert b.await_fuel("h", timeout=0.05) is False
        assert 0.04 <= time.monotonic() - t0 < 1.0
        level, wait = a.peek("h")
        assert level == 0 and 15 < wait <= 20
        # Key "other" is not slowed by "h" at its limit: its own full tank,
        # at once, through either handle.
        t0 = time.monotonic()
        assert b.await_fuel("other", n=2, timeout=5.0)
        assert a.await_fuel("other", timeout=5.0)
        assert time.monotonic() - t0 < 2.0
        assert not a.has_fuel("other")
        assert a.key_stats("h")[:2] == (True, 3) and b.key_stats("other")[:2] == (True, 3)
        stats = b.stats()
        assert (stats.live_keys, stats.capacity, stats.added) == (2, 0, 2)
        # A waiter on "h" (20 s away) through b; a kill through a ends it.
        results = []
        waiter = threading.Thread(target=lambda: results.append(b.await_fuel("h", timeout=30)))
        waiter.start()
        assert wait_until(lambda: a.peek("h")[1] > 25), "the waiter did not queue on 'h'"
        assert not b.kill_flag.is_set()
        t0 = time.monotonic()
        a.kill_flag.set()
        waiter.join(timeout=10)
        assert not waiter.is_alive() and results == [False]
        assert time.monotonic() - t0 < 5.0
        assert a.kill_flag.is_set()
        assert b.kill_flag.wait(5.0), "b never saw the kill flag set through a"
        assert not b.has_fuel("new") and b.is_running()  # killed, not stopped
        a.stop()
        assert not b.is_running() and b.kill_flag.is_set()
    finally:
        if waiter is not None:
            waiter.join(timeout=30)
        a.close()
        b.close()
    # Closing the handles left it on the server; unlink_url removes it, once.
    KeyedThrottle.unlink_url(redis_url, name)
    err = raises("MPT_STATUS_NOT_FOUND", mp_throttle.unlink_url, redis_url, name)
    assert name in err.message
    # A later connect makes a new one, of any configuration.
    with KeyedThrottle.connect(redis_url, name, 7, 2, hardcap="one") as c:
        assert c.created is True and (c.max_n, c.per, c.hardcap) == (7, 2.0, "one")
        assert not c.is_running()
    mp_throttle.unlink_url(redis_url, name)


def test_keyed_and_plain_names_mismatch(redis_url):
    """A plain connect to a keyed name, a keyed connect to a plain name, and
    a keyed connect of another configuration: MPT_STATUS_MISMATCH, and
    nothing changes on the server."""
    keyed, plain = new_name(), new_name()
    with KeyedThrottle.connect(redis_url, keyed, 3, 1, hardcap="window") as k:
        err = raises("MPT_STATUS_MISMATCH", mp_throttle.Throttle.connect, redis_url, keyed, 3, 1,
                     hardcap="window")
        assert err.function == "mpt_throttle_connect" and keyed in err.message
        connect = KeyedThrottle.connect
        for args, options in (
            ((4, 1), {"hardcap": "window"}),
            ((3, 2), {"hardcap": "window"}),
            ((3, 1), {}),
            ((3, 1), {"hardcap": "window", "as_monitor": False}),
        ):
            err = raises("MPT_STATUS_MISMATCH", connect, redis_url, keyed, *args, **options)
            assert err.function == "mpt_keyed_connect"
        # The waiting preferences are not the configuration.
        with connect(redis_url, keyed, 3, 1, hardcap="window", spin_s=0.001) as same:
            assert same.created is False
        with mp_throttle.Throttle.connect(redis_url, plain, 3, 1):
            err = raises("MPT_STATUS_MISMATCH", connect, redis_url, plain, 3, 1)
            assert err.function == "mpt_keyed_connect" and plain in err.message
        k.start()
        assert k.has_fuel("x", n=3)  # still as made: 3 per 1 s, 'window'
        assert not k.has_fuel("x")
    mp_throttle.unlink_url(redis_url, keyed)
    mp_throttle.unlink_url(redis_url, plain)


def test_keyed_configuration_read_back(redis_url):
    """A connect reports the configuration in force, read from the library
    (mpt_keyed_get_config): the creator's, for the one that joins it too."""
    name = new_name()
    options = {"hardcap": "unbounded", "as_monitor": False, "rf_rate": 0.05}
    with KeyedThrottle.connect(redis_url, name, 4, 1, **options) as a:
        with KeyedThrottle.connect(redis_url, name, 4, 1, **options, spin_s=0.0005) as b:
            for k in (a, b):
                config = (k.max_n, k.per, k.hardcap, k.as_monitor, k.refresh_rate, k.capacity)
                assert config == (4, 1.0, "none", False, 0.05, 0)
            assert (a.created, b.created) == (True, False)
            # Pickled, it connects with the configuration it was made with.
            c = pickle.loads(pickle.dumps(b))
            try:
                assert (c.hardcap, c.as_monitor, c.created) == ("none", False, False)
            finally:
                c.close()
    mp_throttle.unlink_url(redis_url, name)


def test_keyed_bad_arguments_and_nothing_listening(redis_url):
    name = new_name()
    connect = KeyedThrottle.connect
    err = raises("MPT_STATUS_INVALID_ARGUMENT", connect, redis_url, name, 3, 1.5e-6)
    assert "per" in err.message
    raises("MPT_STATUS_INVALID_ARGUMENT", connect, redis_url, name, 2**24 + 1, 1)
    raises("MPT_STATUS_INVALID_ARGUMENT", connect, redis_url, name, 2**16 + 1, 1, hardcap="window")
    raises("MPT_STATUS_INVALID_ARGUMENT", connect, redis_url, name, 0, 1)
    raises("MPT_STATUS_INVALID_ARGUMENT", connect, redis_url, "a{b}", 5, 1)
    with pytest.raises(TypeError):
        connect(redis_url.encode(), name, 5, 1)
    with pytest.raises(TypeError):
        connect(redis_url, name, 5, 1, group_shared=True)
    with pytest.raises(TypeError):
        connect(redis_url, name, 5, 1, capacity=10)  # no capacity in Redis
    raises("MPT_STATUS_NOT_FOUND", mp_throttle.unlink_url, redis_url, name)  # nothing made
    url = f"redis://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    err = raises("MPT_STATUS_UNREACHABLE", connect, url, name, 5, 1)
    assert time.monotonic() - t0 < 1.0, "a refused connection should fail at once"
    assert err.function == "mpt_keyed_connect"


def test_keyed_unlink_url_kills_its_users(redis_url):
    name = new_name()
    with KeyedThrottle.connect(redis_url, name, 1, 60) as k:
        k.start()
        assert k.has_fuel("a")
        KeyedThrottle.unlink_url(redis_url, name)
        t0 = time.monotonic()
        assert k.await_fuel("b", timeout=2.0) is False  # gone: killed, not made again
        assert time.monotonic() - t0 < 1.5
        assert k.kill_flag.wait(5.0)
        raises("MPT_STATUS_NOT_FOUND", mp_throttle.unlink_url, redis_url, name)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_keyed_children_connect_again(redis_url, method):
    """As test_children_connect_again, for a KeyedThrottle: a fork()ed child
    connects again on first use, a spawned one gets it pickled; either way
    the child's unit of a key is that key's only one for 10 s, here too,
    and other keys keep their full tanks."""
    name = new_name()
    ctx = multiprocessing.get_context(method)
    results = ctx.Queue()
    with KeyedThrottle.connect(redis_url, name, 1, 10, as_monitor=False) as k:
        k.start()
        child = ctx.Process(target=take_key_and_close, args=(k, "shared", results))
        child.start()
        try:
            pid, grant, connected_in, created = results.get(timeout=30)
        finally:
            child.join(timeout=30)
        assert child.exitcode == 0
        assert pid == child.pid != os.getpid()
        assert grant is not None, "the child got no unit"
        assert connected_in == pid and created is False  # joined, with its own connection
        assert k._pid == os.getpid() and k.created is True
        assert not k.has_fuel("shared")  # the child took the key's only unit
        assert k.has_fuel("mine")
        copy = pickle.loads(pickle.dumps(k))
        try:
            assert (copy.url, copy.name, copy.max_n, copy.per) == (redis_url, name, 1, 10.0)
            assert copy.as_monitor is False and copy is not k
            level, wait = copy.peek("shared")
            assert level == 0 and 5 < wait <= 10
            assert not copy.has_fuel("mine")
        finally:
            copy.close()
        assert k.key_stats("shared").granted == 1
    mp_throttle.unlink_url(redis_url, name)
