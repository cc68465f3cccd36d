"""The Redis store (library 0.2.0): Throttle.connect and unlink_url against
a real redis-server, started for this module on a free loopback port (no
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
import time

import pytest

import mp_throttle
from helpers import take_one_and_close
from mp_throttle import ThrottleError, _ffi


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
