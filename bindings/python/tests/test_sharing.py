"""(b), (c) A Throttle shared with worker processes.

multiprocessing hands a Throttle to a child in one of two ways:
- 'spawn' and 'forkserver' pickle the Process arguments (Pool initargs
  included): the child opens the named throttle by name;
- 'fork' does not pickle Process arguments: the child inherits the handle
  (the state is a MAP_SHARED mapping); Pool *tasks* are pickled under every
  method, so a Throttle in apply_async arguments is reopened by name.
Either way every process draws from the one schedule.
"""

import multiprocessing
import os
import pickle
import subprocess
import sys
import threading
import time

import pytest

import mp_throttle
from helpers import (
    HERE,
    child_env,
    count_until_killed,
    grant_bounds,
    kill_after,
    run_python,
    shm_path,
    stats_of,
)

METHODS = ["spawn", "fork", "forkserver"]


def run_workers(method, workers, max_n, seconds):
    """The tutorial's shape with the start method `method`: a Pool whose
    initializer is the worker loop, handed the Throttle in initargs. Returns
    (stop() tuple, each worker's (pid, name, reopened, taken), throttle name)."""
    ctx = multiprocessing.get_context(method)
    ready, results = ctx.Queue(), ctx.Queue()
    with mp_throttle.Throttle(max_n, 1) as throttle:
        pool = ctx.Pool(workers, initializer=count_until_killed, initargs=(throttle, ready, results))
        try:
            # Start once every worker has the Throttle and is about to wait
            # (spawned workers take a while to start): then no unit is missed.
            for _ in range(workers):
                ready.get(timeout=60)
            throttle.start()
            time.sleep(seconds)
            summary = throttle.stop()
            reports = [results.get(timeout=30) for _ in range(workers)]
            final = throttle.summary()  # every worker is done now
        finally:
            pool.terminate()
            pool.join()
        return summary, final, reports, throttle.name


@pytest.mark.parametrize("method", METHODS)
def test_pool_workers_share_the_rate(method):
    summary, final, reports, name = run_workers(method, workers=3, max_n=10, seconds=2)
    runtime, total, _, _ = summary
    # 10 per 1 s for 2 s: units at 0, 0.1, ..., 2.0 s: 20 or 21 (more if
    # sleep(2) overran).
    assert 2.0 <= runtime < 3.0
    low, high = grant_bounds(10, runtime)
    assert low <= total <= high, summary
    pids = {pid for pid, _, _, _ in reports}
    assert len(pids) == 3 and os.getpid() not in pids
    # Every unit was taken by a worker (auto_emit counts them) ...
    taken = sum(taken for _, _, _, taken in reports)
    assert taken == final[1], (reports, final)
    # ... and stop() reported them all.
    assert total == taken, (summary, final, reports)
    for _, worker_name, reopened, _ in reports:
        assert worker_name == name
        # 'fork' children inherit the handle; the others open the name.
        assert reopened == (method != "fork"), reports
    # The creator unlinked the name when the `with` block closed it.
    assert not os.path.exists(shm_path(name))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_pool_task_reads_statistics_and_kills(method):
    """A Pool task gets the Throttle (pickled: reopened by name), reads the
    statistics of the run this process drives, then sets the kill flag,
    which wakes this process's waiter at once."""
    ctx = multiprocessing.get_context(method)
    # hardcap 'one': grants at least 0.05 s apart whatever the timing, so the
    # figures have exact upper bounds (the lower ones are generous).
    with mp_throttle.Throttle(20, 1, hardcap="one") as throttle, ctx.Pool(1) as pool:
        taken, ended = [0], []

        def take():  # this process's worker: a thread taking fuel
            while throttle.await_fuel():
                taken[0] += 1
            ended.append(time.monotonic())

        thread = threading.Thread(target=take)
        thread.start()
        throttle.start()
        time.sleep(1.2)
        pid, name, reopened, running, mean, latest, summary = pool.apply(stats_of, (throttle,))
        assert pid != os.getpid() and name == throttle.name
        assert reopened and running
        # Read in the other process, of the run of this one (20 per second;
        # at most 1 + 20 * runtime units in all, at most 21 in a second).
        runtime = summary[0]
        assert runtime >= 1.2
        assert 10 <= latest[1] <= 21, latest
        assert 10 * runtime <= summary[1] <= 1 + 20 * runtime, summary
        assert 10 <= mean[1] <= 20 + 1 / 1.2, mean
        killed_at = pool.apply_async(kill_after, (throttle, 0.3)).get(timeout=30)[3]
        thread.join(timeout=10)
        assert not thread.is_alive()
        # CLOCK_MONOTONIC (time.monotonic) is one clock for all processes.
        assert 0 <= ended[0] - killed_at < 2.0, (ended, killed_at)
        assert throttle.kill_flag.is_set()
        assert throttle.is_running()  # the kill flag does not stop it
        _, total, _, _ = throttle.stop()
        assert taken[0] == total


def test_unrelated_process_opens_by_name():
    """A Python process that only knows the name (Throttle.open)."""
    with mp_throttle.Throttle(10, 1) as throttle:
        code = f"""
import mp_throttle
t = mp_throttle.Throttle.open({throttle.name!r})
# The rate and the settings are the creator's, read from the throttle.
assert (t.max_n, t.per, t.rate()) == (10, 1.0, (10, 1.0)), (t.max_n, t.per)
assert (t.hardcap, t.as_monitor, t.as_throttle, t.auto_emit) == ("limit", True, True, True)
assert t.refresh_rate == 0.01, t.refresh_rate
n = 0
while t.await_fuel():
    n += 1
print(n)
t.close()
"""
        proc = subprocess.Popen(
            [sys.executable, "-c", code], cwd=HERE, env=child_env(), stdout=subprocess.PIPE, text=True
        )
        time.sleep(0.5)  # it waits for the start, whenever it comes
        throttle.start()
        time.sleep(1.5)
        runtime, total, _, _ = throttle.stop()
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0
        # 10 per 1 s for 1.5 s: units at 0, 0.1, ..., 1.5 s: 15 or 16.
        low, high = grant_bounds(10, runtime)
        assert 1.5 <= runtime < 2.5 and low <= total <= high
        assert int(out) == throttle.summary()[1]
        assert int(out) == total
        # Closing a Throttle.open() handle did not unlink the name.
        assert os.path.exists(shm_path(throttle.name))


def test_pickle_reopens_and_survives_unlink():
    throttle = mp_throttle.Throttle(5, 1)
    data = pickle.dumps(throttle)
    assert throttle.name.encode() in data
    other = pickle.loads(data)
    assert other.name == throttle.name and other._owner_pid is None
    assert (other.max_n, other.per, other.hardcap) == (5, 1, "limit")
    throttle.start()
    assert other.is_running()
    throttle.close()  # the creator lets go: the name is unlinked ...
    assert not os.path.exists(shm_path(other.name))
    with pytest.raises(mp_throttle.ThrottleError) as e:
        pickle.loads(data)  # ... so nobody can open it any more ...
    assert e.value.status_name == "MPT_STATUS_NOT_FOUND"
    assert e.value.function == "mpt_throttle_open" and e.value.message
    # ... but an open handle keeps working.
    assert other.has_fuel() is True  # the unit at the start instant
    _, total, _, _ = other.stop()
    assert total == 1
    other.close()


def test_fork_child_gc_and_exit_do_not_unlink():
    """A fork()ed child holding a copy of the creator's Throttle collects it
    and exits normally (atexit runs): the name must survive; the creator's
    exit then removes it."""
    proc = run_python(
        """
import gc, os, sys
import mp_throttle
t = mp_throttle.Throttle(100, 1)
t.start()
path = '/dev/shm/mp_throttle.' + t.name
pid = os.fork()
if pid == 0:
    assert t.has_fuel()          # the inherited handle works in the child
    del t
    gc.collect()
    sys.exit(0)                  # a normal exit: atexit handlers run
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0
assert os.path.exists(path), 'the child unlinked the name'
assert t.summary()[1] == 1
print(path)
"""
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert not os.path.exists(proc.stdout.strip())


def test_a_throttle_made_with_an_existing_name_does_not_own_it():
    """Throttle(name=...) of a name that exists (same settings) opens it:
    closing it leaves the name to its creator (mpt_throttle_created)."""
    with mp_throttle.Throttle(10, 1) as first:
        second = mp_throttle.Throttle(10, 1, name=first.name)
        second.close()
        # The name is still there: a third process can open it.
        third = mp_throttle.Throttle.open(first.name)
        third.close()
