"""(g) Ctrl-C: a blocking await_fuel in the main thread ends with
KeyboardInterrupt at once, takes nothing, and gives its place in the queue
back to the waiters behind it (README.md, "Ctrl-C"). Each case runs in a
child Python, which gets the signals."""

import os
import signal
import subprocess
import sys
import threading
import time

import mp_throttle
from helpers import HERE, child_env, run_python, shm_path, wait_until
from mp_throttle import clock_ns

S = 1_000_000_000


def test_sigint_ends_a_wait_and_the_next_waiter_moves_up():
    """1 unit per 2 s. A child process takes the unit due at the start, then
    waits in its main thread, with no timeout, for the next one (due 2 s
    later); a thread of this process queues behind it (due 4 s after the
    start). SIGINT to the child: it exits with KeyboardInterrupt at once, and
    the waiter here is granted the child's unit, 2 s after the start."""
    T = 2 * S
    with mp_throttle.Throttle(1, 2) as t:
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"""
import mp_throttle
t = mp_throttle.Throttle.open({t.name!r})
print("ready", flush=True)
print(t.await_fuel_ns(), flush=True)   # waits for the start: the unit due then
t.await_fuel()                         # forever
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
            assert child.stdout.readline() == "ready\n"
            t.start()
            first = int(child.stdout.readline())  # unit 0; unit 1 is due at first + T

            def newcomer_due():  # when a waiter arriving now would be granted
                return clock_ns() + t.peek()[1] * S

            # (Within about 0.1 ms, far from the 2 s it has.)
            assert wait_until(lambda: newcomer_due() > first + 1.5 * T), "the child is not queued"
            assert clock_ns() < first + T
            granted = []
            waiter = threading.Thread(target=lambda: granted.append(t.await_fuel_ns()))
            waiter.start()
            assert wait_until(lambda: newcomer_due() > first + 2.5 * T), "the waiter is not queued"
            # Queued: the child for unit 1 (first + T), the waiter for unit 2 (first + 2T).
            assert granted == []
            sent = clock_ns()
            child.send_signal(signal.SIGINT)
            _, err = child.communicate(timeout=10)
            exited = clock_ns()
            assert child.returncode == -signal.SIGINT, err  # Python's exit for KeyboardInterrupt
            assert err.rstrip().endswith("KeyboardInterrupt"), err
            assert exited - sent < 1 * S, (exited - sent) / S
            # The child's unit went back to the queue: the waiter has it now ...
            assert exited < first + T
            assert first + 1.5 * T < newcomer_due() < first + 2.5 * T
            waiter.join(timeout=10)
            # ... and was granted it exactly on its slot, not T later.
            assert granted == [first + T], [(g - first) / S for g in granted]
            _, total, _, _ = t.stop()
            assert total == 2  # unit 0 (the child), unit 1 (the waiter)
        finally:
            if child.poll() is None:
                child.kill()
                child.communicate()


def test_interrupted_waits_in_one_process():
    """SIGINT (from another thread, through the kernel), a SIGUSR1 handler
    that raises, and the kill flag, each while the main thread sleeps in
    await_fuel; after each, the throttle is as if the wait had not been
    made, and the main thread waits normally again."""
    proc = run_python(
        r"""
import os, signal, threading, time
import mp_throttle

def tasks():
    return len(os.listdir('/proc/self/task'))

def later(seconds, fn, *args):
    timer = threading.Timer(seconds, fn, args)
    timer.start()
    return timer

class Alarm(Exception):
    pass

def on_usr1(signum, frame):
    raise Alarm()

signal.signal(signal.SIGUSR1, on_usr1)
t = mp_throttle.Throttle(1, 60)
t.start()
assert t.has_fuel()                    # the next unit is due in 60 s
due = t.peek()[1]

# Ctrl-C in a wait without a timeout, and in one with a timeout.
for timeout in (None, 30):
    timer = later(0.3, os.kill, os.getpid(), signal.SIGINT)
    t0 = time.monotonic()
    try:
        t.await_fuel(timeout)
        raise SystemExit('not interrupted')
    except KeyboardInterrupt:
        took = time.monotonic() - t0
    timer.join()
    assert 0.25 <= took < 1.0, took
    # Nothing taken, nothing reserved: a newcomer is still next in line.
    assert t.summary()[1] == 1
    assert t.peek()[1] <= due, (t.peek(), due)

# Any exception a signal handler raises ends the wait the same way.
timer = later(0.3, os.kill, os.getpid(), signal.SIGUSR1)
try:
    t.await_fuel()
    raise SystemExit('not interrupted')
except Alarm:
    pass
timer.join()
assert t.peek()[1] <= due and t.summary()[1] == 1

# A second Ctrl-C while the wait is being ended (here: right in the first
# attempt to fire its token) does not leave it running: the first
# KeyboardInterrupt is raised once the wait has ended.
fire = mp_throttle._Wait.fire
fired = []
def fire_interrupted_once(wait):
    fired.append(wait)
    if len(fired) == 1:
        raise KeyboardInterrupt('second')
    fire(wait)
mp_throttle._Wait.fire = fire_interrupted_once
timer = later(0.3, os.kill, os.getpid(), signal.SIGINT)
try:
    t.await_fuel()
    raise SystemExit('not interrupted')
except KeyboardInterrupt as e:
    assert e.args == (), e.args        # the first one
mp_throttle._Wait.fire = fire
timer.join()
assert len(fired) >= 2 and fired[0].finished and fired[0].status == 17   # MPT_STATUS_CANCELLED
assert t.peek()[1] <= due and t.summary()[1] == 1

# A thread's wait is not disturbed by the main thread's interruption.
got = []
thread = threading.Thread(target=lambda: got.append(t.await_fuel_ns()))
thread.start()
time.sleep(0.1)
ahead = t.peek()[1]                    # the thread holds the unit due
assert ahead > due + 50, (ahead, due)  # (a newcomer's is 60 s later)
timer = later(0.2, os.kill, os.getpid(), signal.SIGINT)
try:
    t.await_fuel()
    raise SystemExit('not interrupted')
except KeyboardInterrupt:
    pass
timer.join()
assert thread.is_alive() and got == []
assert due + 50 < t.peek()[1] < ahead, (t.peek(), ahead)   # still behind the thread only

# The main thread still waits normally: a timeout, the kill flag.
t0 = time.monotonic()
assert t.await_fuel(0.2) is False
assert 0.19 <= time.monotonic() - t0 < 1.0
timer = later(0.2, t.kill_flag.set)
t0 = time.monotonic()
assert t.await_fuel() is False
assert 0.15 <= time.monotonic() - t0 < 1.0
timer.join()
thread.join(5)
assert got == [None]                   # killed too
assert t.stop()[1] == 1
time.sleep(0.05)
assert tasks() == 1, tasks()           # no helper thread left behind (nor the monitor)
print('ok')
""",
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ok\n" and proc.stderr == ""


def test_ctrl_c_then_exit_unlinks():
    """A script interrupted while it waits exits through KeyboardInterrupt
    normally: its throttle's name is unlinked at exit."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            """
import mp_throttle
t = mp_throttle.Throttle(1, 60)
print(t.name, flush=True)
t.start()
t.await_fuel()
t.await_fuel()
""",
        ],
        cwd=HERE,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        name = proc.stdout.readline().strip()
        assert os.path.exists(shm_path(name))
        watcher = mp_throttle.Throttle.open(name)
        # The script took the unit due at the start and waits for the next
        # (due 60 s later): a newcomer would be served 60 s after that.
        assert wait_until(lambda: watcher.is_running() and watcher.peek()[1] > 90)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == -signal.SIGINT and "KeyboardInterrupt" in err, err
        assert not os.path.exists(shm_path(name))
        watcher.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
