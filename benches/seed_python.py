#!/usr/bin/env python3
"""The accuracy benchmark's workload on mp-throttle 0.0.5, the Python package
mp_throttle succeeds. Run through benches/seed_python.sh (makes the venv).

For each hardcap and rate (`rate` per 1 s): the throttle is made first (for
max_n/per >= 49 mp_throttle calibrates itself there, ~1 s with os.cpu_count()
dummy workers; timed and reported apart: `calib s`, `calib CPU s`,
`correction`). Then 4 multiprocessing workers (fork) loop

    while not thr.kill_flag.is_set():
        if thr.await_fuel(TIMEOUT): record time.time()

(await_fuel() with no timeout would block forever once stop() has ended the
filler process, so the loop could never see the kill flag), the parent calls
start(), sleeps `--secs`, calls stop(), joins the workers, and prints one
markdown row:

- grants: returns with fuel counted by the workers between start and stop;
  `after stop`: returns with fuel after stop() returned (stop() means to
  drain the gas queue but never does: `while self.gas.empty == False`);
- mp_throttle total: stop()'s total (its monitor's count);
- expected: rate x runtime (stop()'s runtime), and the difference in %;
- max in 1 s: the most worker return times in any half-open 1 s window
  (two-pointer sweep over all of them), and how many windows (one starting at
  each return) exceed max_n;
- CPU seconds (user + sys) of the workers (each one's own getrusage), of
  mp_throttle's filler and monitor processes (the rest of the RUSAGE_CHILDREN
  delta over the timed part) and of the parent (RUSAGE_SELF delta).

There is no grant time to compare with, so there is no lateness column.
"""

import argparse
import gc
import multiprocessing as mp
import os
import resource
import sys
import time

import mp_throttle

WORKER_TIMEOUT_S = 0.1


def cpu(who):
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def worker(thr, buf, cap, counts, overflow, cpus, idx):
    n = 0
    lost = 0
    kill = thr.kill_flag
    while not kill.is_set():
        if thr.await_fuel(WORKER_TIMEOUT_S):
            t = time.time()
            if n < cap:
                buf[n] = t
                n += 1
            else:
                lost += 1
    counts[idx] = n
    overflow[idx] = lost
    cpus[idx] = cpu(resource.RUSAGE_SELF)


def thousands(n):
    return f"{n:,}"


def max_window(ts, per, max_n):
    """Most timestamps in any half-open window [t, t + per), and how many
    windows starting at a timestamp hold more than max_n."""
    best = 0
    over = 0
    j = 0
    for i, t in enumerate(ts):
        if j < i:
            j = i
        end = t + per
        while j < len(ts) and ts[j] < end:
            j += 1
        c = j - i
        if c > best:
            best = c
        if c > max_n:
            over += 1
    return best, over


def run_one(hardcap, rate, secs, workers):
    notes = []
    gc.collect()
    c0 = cpu(resource.RUSAGE_CHILDREN) + cpu(resource.RUSAGE_SELF)
    w0 = time.perf_counter()
    thr = mp_throttle.Throttle(rate, 1, hardcap=hardcap)
    calib_s = time.perf_counter() - w0
    # _calibrate's Pool of dummy workers is never closed; it is terminated
    # when garbage collected. Anything still alive now would blur the CPU
    # figures of the timed part.
    gc.collect()
    left = mp.active_children()
    if left:
        notes.append(f"{len(left)} processes left over from construction (terminated)")
        for p in left:
            p.terminate()
            p.join()
    calib_cpu = cpu(resource.RUSAGE_CHILDREN) + cpu(resource.RUSAGE_SELF) - c0

    cap = int(rate * secs * 1.5) + 100
    bufs = [mp.RawArray("d", cap) for _ in range(workers)]
    counts = mp.RawArray("q", workers)
    overflow = mp.RawArray("q", workers)
    cpus = mp.RawArray("d", workers)
    procs = [
        mp.Process(target=worker, args=(thr, bufs[i], cap, counts, overflow, cpus, i))
        for i in range(workers)
    ]
    for p in procs:
        p.start()
    time.sleep(0.2)  # every worker blocks in await_fuel before the start

    ch0 = cpu(resource.RUSAGE_CHILDREN)
    s0 = cpu(resource.RUSAGE_SELF)
    t_start = time.time()
    thr.start()
    time.sleep(secs)
    runtime, total, _mean_s, _mean_ps = thr.stop()
    t_stop = time.time()
    s1 = cpu(resource.RUSAGE_SELF)
    for p in procs:
        p.join(10)
        if p.exitcode is None:
            notes.append(f"worker {p.pid} still running 10 s after stop (terminated)")
            p.terminate()
            p.join()
    ch1 = cpu(resource.RUSAGE_CHILDREN)

    ts = []
    for i in range(workers):
        ts.extend(bufs[i][: counts[i]])
    ts.sort()
    lost = sum(overflow)
    if lost:
        notes.append(f"{lost} grants not recorded (buffer full)")
    before = [t for t in ts if t <= t_stop]
    after = len(ts) - len(before)
    early = sum(1 for t in ts if t < t_start)
    if early:
        notes.append(f"{early} returns before start() was called")
    grants = len(before)
    expected = rate * runtime
    diff_pct = (grants - expected) / expected * 100 if expected else 0.0
    best, over = max_window(ts, 1.0, rate)
    workers_cpu = sum(cpus)
    return {
        "hardcap": hardcap,
        "rate": rate,
        "calib_s": calib_s,
        "calib_cpu": calib_cpu,
        "correction": thr._correction,
        "runtime": runtime,
        "grants": grants,
        "total": total,
        "expected": expected,
        "diff_pct": diff_pct,
        "max_win": best,
        "over": over,
        "after": after,
        "workers_cpu": workers_cpu,
        "thr_mon_cpu": (ch1 - ch0) - workers_cpu,
        "parent_cpu": s1 - s0,
        "notes": notes,
    }


def load_average():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="4,100,1000,10000",
                    help="comma-separated max_n values, per = 1 s")
    ap.add_argument("--hardcaps", default="limit,one",
                    help="comma-separated: limit, one, none (any other value is mp_throttle's unbounded tank)")
    ap.add_argument("--secs", type=float, default=5.0)
    ap.add_argument("--workers", type=int, default=4)
    a = ap.parse_args()
    rates = [int(float(r.replace("_", ""))) for r in a.rates.split(",")]
    hardcaps = [h.strip().lower() for h in a.hardcaps.split(",")]

    mp.set_start_method("fork")
    py = sys.version.split()[0]
    print(f"seed: mp_throttle {getattr(mp_throttle, '__version__', '0.0.5')} (Python {py}), "
          f"{a.workers} workers (multiprocessing, fork) x await_fuel({WORKER_TIMEOUT_S}), "
          f"per = 1 s, {a.secs} s per run; {os.cpu_count()} CPUs; "
          f"load average before: {load_average()}")
    print()
    print("| hardcap | rate/s | calib s | calib CPU s | correction | runtime s | grants (workers) "
          "| mp_throttle total | expected | diff % | max in 1 s | >max_n | after stop "
          "| workers CPU s | filler+monitor CPU s | parent CPU s |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    notes = []
    for h in hardcaps:
        for rate in rates:
            print(f"seed: {h} {rate} per 1 s ...", file=sys.stderr, flush=True)
            r = run_one(h, rate, a.secs, a.workers)
            print(f"| {h} | {thousands(rate)} | {r['calib_s']:.2f} | {r['calib_cpu']:.2f} "
                  f"| {r['correction']:.4f} | {r['runtime']:.4f} | {thousands(r['grants'])} "
                  f"| {thousands(r['total'])} | {r['expected']:,.1f} | {r['diff_pct']:+.2f} "
                  f"| {thousands(r['max_win'])} | {r['over']} | {r['after']} "
                  f"| {r['workers_cpu']:.3f} | {r['thr_mon_cpu']:.3f} | {r['parent_cpu']:.3f} |",
                  flush=True)
            notes.extend(f"{h} {rate}/s: {n}" for n in r["notes"])
    print()
    print(f"load average after: {load_average()}")
    if notes:
        print("notes:")
        for n in notes:
            print(f"- {n}")


if __name__ == "__main__":
    main()
