"""Shared by the tests: paths, the environment of child Pythons, /dev/shm
checks, and the worker functions that multiprocessing children run (they
live in an importable module so that 'spawn' children can find them)."""

import math
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BINDING = os.path.dirname(HERE)  # bindings/python
REPO = os.path.dirname(os.path.dirname(BINDING))
DATA = os.path.join(HERE, "data")
SHM = "/dev/shm"


def include_dir():
    return os.environ.get("MPT_INCLUDE_DIR") or os.path.join(REPO, "include")


def child_env(**extra):
    """The environment of a child Python: this binding first on the path and
    the library test.sh chose (MPT_LIB_DIR)."""
    env = dict(os.environ)
    paths = [BINDING] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def start_script(path, *args, cwd=None):
    """Starts `python3 path args...` with child_env(); returns the Popen."""
    return subprocess.Popen(
        [sys.executable, path, *args],
        cwd=cwd or HERE,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc, timeout):
    """Waits for a started script (killing it after `timeout` s); returns
    (returncode, stdout, stderr)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"{proc.args} ran over {timeout} s\nstdout:\n{out}\nstderr:\n{err}")
    return proc.returncode, out, err


def run_python(code, timeout=30):
    """Runs `python3 -c code` with child_env(); returns CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=HERE,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def shm_path(name):
    """Where the library keeps the named throttle `name`."""
    return os.path.join(SHM, "mp_throttle." + name)


def shm_names_of(pid):
    """Names left in /dev/shm by Throttles that process `pid` created."""
    prefix = f"mp_throttle.py-{pid}-"
    return sorted(f for f in os.listdir(SHM) if f.startswith(prefix))


def grant_bounds(rate, runtime, held_back=0.3):
    """How many units a run of `runtime` seconds at `rate` per second grants
    to waiters that are always there: units fall due at 0, 1/rate, 2/rate,
    ... so at most 1 + floor(rate * runtime) (exact: the library's
    schedule never lets more through). At least that less the units due in
    the last `held_back` seconds, which a waiter the machine held back that
    long may not have taken before the stop (the unit due at the stop
    instant is often one of them). Returns (low, high)."""
    high = 1 + int(rate * runtime + 1e-9)
    return high - max(1, math.ceil(rate * held_back)), high


# ---------------------------------------------------------------- workers
# Run in multiprocessing children. `ready` and `results` are queues.


def describe(throttle):
    """How this process holds `throttle`: (pid, name, reopened by name?)."""
    return (os.getpid(), throttle.name, throttle._owner_pid is None)


def count_until_killed(throttle, ready, results, n=1):
    """The tutorial's worker, counting the grants it had (of `n` units
    each); with n > 1 it also reports their grant times."""
    ready.put(os.getpid())
    grants = []
    while not throttle.kill_flag.is_set():
        grant = throttle.await_fuel_ns(n=n) if n > 1 else throttle.await_fuel_ns()
        if grant is not None:
            grants.append(grant)
    results.put(describe(throttle) + (len(grants),) + ((grants,) if n > 1 else ()))


def stats_of(throttle):
    """A task: the statistics this process reads from `throttle`."""
    return describe(throttle) + (
        throttle.is_running(),
        throttle.mean(),
        throttle.latest(),
        throttle.summary(),
    )


def set_rate_after(throttle, seconds, max_n, per):
    """A task: sleep, then change the rate (from this process). Returns
    (pid, the library's clock just before the change, the rate after it)."""
    import time

    import mp_throttle

    time.sleep(seconds)
    before = mp_throttle.clock_ns()
    throttle.set_rate(max_n, per)
    return os.getpid(), before, throttle.rate()


def kill_after(throttle, seconds):
    """A task: sleep, then set the kill flag (from this process)."""
    import time

    time.sleep(seconds)
    before = time.monotonic()
    throttle.kill_flag.set()
    return describe(throttle) + (before,)


def take_one_and_close(throttle, results):
    """A child's part in test_redis.py: one unit through the Throttle it was
    handed (inherited by a fork()ed child, connected again on first use;
    unpickled by a spawned one), then the handle closed, which sends the
    emission to the server at once. Reports (pid, grant time or None, the
    process whose connection the Throttle used)."""
    grant = throttle.await_fuel_ns(5.0)
    results.put((os.getpid(), grant, throttle._pid))
    throttle.close()


def take_key_and_close(keyed, key, results):
    """take_one_and_close for a KeyedThrottle of a Redis server: one unit of
    ``key`` through the KeyedThrottle it was handed (inherited, connected
    again on first use; or unpickled), then the handle closed. Reports
    (pid, grant time or None, the process whose connection it used,
    whether that handle created the keyed throttle)."""
    grant = keyed.await_fuel_ns(key, timeout=5.0)
    results.put((os.getpid(), grant, keyed._pid, keyed.created))
    keyed.close()


def wait_until(predicate, timeout=10.0):
    """Polls predicate() every 5 ms; True once it holds, False after timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)
    return True
