"""mp_throttle: throttle and monitor many workers through libmp_throttle.

A drop-in successor of the Python package mp-throttle 0.0.5: the same
:class:`Throttle` (constructor, ``kill_flag``, ``await_fuel``, ``has_fuel``,
``emit``, ``latest``, ``mean``, ``lo_hi``, ``hi_lo``, ``start``, ``stop``),
backed by the C library, whose schedule is exact: 4 per second for 5 s gives
20 or 21 grants, shared by threads, ``fork``-ed and ``spawn``-ed processes
and unrelated programs. Additions: ``n`` units at once (``await_fuel(n=...)``,
``has_fuel(n=...)``), ``peek``, ``set_rate``/``rate`` (a live rate change
seen by every process), and a blocking ``await_fuel`` in the main thread
that Ctrl-C (KeyboardInterrupt) interrupts without disturbing the other
waiters, and an asyncio API (``await throttle.acquire(n, timeout)``,
``async with throttle:``) whose waits do not block the event loop and give
their place back when the task is cancelled.

A Throttle travels to other processes by reference: its creator makes a
*named* throttle, and pickling sends the name, which the receiving process
opens. See README.md for the rules (in short: workers must unpickle it while
the creating Throttle is alive).

Processes on many hosts share one rate through a Redis server:
``Throttle.connect(url, name, max_n, per)`` makes or joins the throttle
``name`` there (library 0.2.0), and :func:`unlink_url` removes it.

:class:`KeyedThrottle` is many throttles in one (library 0.2.0): one
configuration and a table of keys (hosts, users), each key with a schedule
of its own: ``keyed.await_fuel(key="example.com")``; in shared memory, or
in a Redis server (``KeyedThrottle.connect(url, name, max_n, per)``).
"""

import _thread
import atexit
import collections
import math
import os
import re
import secrets
import signal
import threading
import time
import weakref
from ctypes import byref, c_bool, c_double, c_int64, c_uint64

from . import _ffi
from ._ffi import NoRoomError, ThrottleError

__all__ = [
    "Throttle",
    "KeyedThrottle",
    "KeyStats",
    "KeyedStats",
    "KillFlag",
    "ThrottleError",
    "NoRoomError",
    "KEY_MAX",
    "clock_ns",
    "library_version",
    "unlink_url",
    "HARDCAP_LIMIT",
    "HARDCAP_ONE",
    "HARDCAP_NONE",
    "HARDCAP_WINDOW",
]

__version__ = "0.2.0"

#: Values of ``hardcap=``. mp_throttle 0.0.5 knew 'limit' and 'one' and took
#: any other value as "unbounded"; so does this binding ('none' is one such
#: value). 'window' is new: an exact sliding window.
HARDCAP_LIMIT = "limit"
HARDCAP_ONE = "one"
HARDCAP_NONE = "none"
HARDCAP_WINDOW = "window"

_HARDCAPS = {
    HARDCAP_LIMIT: _ffi.HARDCAP_LIMIT,
    HARDCAP_ONE: _ffi.HARDCAP_ONE,
    HARDCAP_WINDOW: _ffi.HARDCAP_WINDOW,
}


def _hardcap_code(hardcap):
    # 0.0.5: 'limit', 'one', anything else unbounded.
    if isinstance(hardcap, str):
        return _HARDCAPS.get(hardcap, _ffi.HARDCAP_NONE)
    return _ffi.HARDCAP_NONE


def clock_ns():
    """The library's clock (``CLOCK_MONOTONIC``) in nanoseconds: the clock
    of grant times and of :meth:`Throttle.emit_at_ns`. On Linux it is the
    clock of :func:`time.monotonic_ns` too."""
    now = c_int64()
    _ffi.call("mpt_clock_now", byref(now))
    return now.value


def library_version():
    """The version of the loaded libmp_throttle, ``(major, minor, patch)``."""
    return _ffi.version()


# ---------------------------------------------------------------- bookkeeping

# Every open Throttle of this process, so that a fork()ed child can renew
# their locks (another thread may have held one at the fork) and the
# interpreter's exit can unlink the names this process created.
_live = weakref.WeakSet()
_live_lock = threading.Lock()


def _after_fork_in_child():
    global _live_lock
    _live_lock = threading.Lock()
    for throttle in list(_live):
        throttle._lock = threading.Lock()
        throttle._busy = 0  # the threads that were inside calls are gone


os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _at_exit():
    for throttle in list(_live):
        try:
            throttle.close()
        except Exception:  # noqa: BLE001 - nothing to report to at exit
            pass


def _unlink(name):
    try:
        _ffi.call("mpt_throttle_unlink", _name_bytes(name), ok=(_ffi.STATUS_OK, _ffi.STATUS_NOT_FOUND))
    except ThrottleError:
        pass


def unlink_url(url, name):
    """Removes the throttle ``name`` from the Redis server at ``url``
    (``mpt_throttle_unlink_url``), the counterpart of
    :meth:`Throttle.connect` and :meth:`KeyedThrottle.connect` (a plain or
    a keyed throttle): the processes that use it, on every host, find it
    killed (their waits return False) and do not make it again; a later
    ``connect`` makes a new one. Raises :class:`ThrottleError`:
    MPT_STATUS_NOT_FOUND if the server has no such throttle,
    MPT_STATUS_UNREACHABLE if nothing answers at ``url`` (one round trip, at
    most 2 s), MPT_STATUS_UNSUPPORTED with a library without the Redis store
    (or a build from before it)."""
    _ffi.require("mpt_throttle_unlink_url", "unlink_url")
    _ffi.call("mpt_throttle_unlink_url", _url_bytes(url), _name_bytes(name))


def _new_name():
    # Unique per process and per throttle; at most MAX_NAME_LEN bytes, no '/'.
    return f"py-{os.getpid()}-{secrets.token_hex(8)}"


def _options(
    as_throttle=True,
    as_monitor=True,
    auto_emit=None,
    hardcap="limit",
    rf_rate=0.01,
    timer_slack_ns=None,
    spin_s=None,
    group_shared=False,
):
    options = _ffi.mpt_options()
    # Version 1 unless group sharing is asked: a library that predates it
    # (0.2.0) knows only version 1.
    version = _ffi.OPTIONS_VERSION if group_shared else _ffi.OPTIONS_VERSION_1
    _ffi.call("mpt_options_init", byref(options), version)
    if group_shared:
        options.group_shared = 1
    options.as_throttle = 1 if as_throttle else 0
    options.as_monitor = 1 if as_monitor else 0
    if auto_emit is None:
        options.auto_emit = _ffi.AUTO_EMIT_DEFAULT
    else:
        options.auto_emit = 1 if auto_emit else 0
    options.hardcap = _hardcap_code(hardcap)
    options.refresh_s = float(rf_rate)
    if timer_slack_ns is not None:
        options.timer_slack_ns = _uint(timer_slack_ns, "timer_slack_ns", 2**32)
    if spin_s is not None:
        options.spin_s = float(spin_s)
    return options


def _uint(value, what, limit, function="Throttle"):
    # Refuses what ctypes would wrap around (negative, too big) or truncate;
    # the library judges the rest (0, more than the tank holds, ...).
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < limit:
        raise ThrottleError(
            _ffi.STATUS_INVALID_ARGUMENT,
            f"{what} must be a whole number from 0 to {limit - 1}, got {value!r}",
            function,
        )
    return value


def _timeout(t, function):
    """await_fuel's ``t`` as the C ``timeout_s``."""
    if t is None:
        return _ffi.FOREVER
    timeout = float(t)
    # Checked here, not left to the library: -1.0 would mean "forever" to
    # it, and a main-thread wait first asks with a timeout of 0 (which may
    # succeed) before it passes this one on.
    if not 0 <= timeout < math.inf:
        raise ThrottleError(
            _ffi.STATUS_INVALID_ARGUMENT,
            f"timeout must be None or a finite number of seconds >= 0, got {t!r}",
            function,
        )
    return timeout


def _name_bytes(name):
    if not isinstance(name, str):
        raise TypeError(f"a throttle name is a str, not {type(name).__name__}")
    return name.encode()


def _url_bytes(url):
    if not isinstance(url, str):
        raise TypeError(f"a Redis URL is a str, not {type(url).__name__}")
    return url.encode()


def _shown_url(url):
    """``url`` without its password (``redis://user:***@host``), as the
    library's messages show it: a repr may end up in a log."""
    return re.sub(r"^([^:/]+://[^:@/]*:)[^@/]*@", r"\1***@", url)


def _reopen(name, config):
    """Unpickles a Throttle: opens the named throttle ``name``."""
    return Throttle._open(name, config)


def _reconnect(url, name, config):
    """Unpickles a Throttle of a Redis server: connects to it again."""
    return Throttle._connect(url, name, config)


# ---------------------------------------------------------------- Ctrl-C

# How a blocking await_fuel in the main thread stays interruptible.
#
# Python runs signal handlers (the one raising KeyboardInterrupt included)
# only in the main thread, between bytecodes: while the main thread sleeps in
# a C call, a SIGINT is recorded and its handler runs when the call returns,
# which for await_fuel() may be never. Waiting in slices of a C wait would
# let the handler run, but each slice that times out gives up its place in
# the queue (the library reserves nothing for a wait that would end after
# its timeout), so the waiter would always be served last.
#
# So the main thread does not sleep in C. It first asks with a timeout of 0
# (fuel there now: taken at once, no thread; see _take_now). Otherwise a
# helper thread makes the one real wait, mpt_await_fuel_cancellable (for a
# KeyedThrottle mpt_keyed_await_fuel_cancellable) with a cancellation token of
# its own, while the main thread sleeps on a lock, which a signal interrupts
# (Python runs the handler there). If the handler raises (KeyboardInterrupt,
# or a SystemExit of a SIGTERM handler, ...), the main thread fires the
# token: the wait ends at once with MPT_STATUS_CANCELLED, having taken
# nothing, its reserved units given back to the waiters behind it, in every
# process. The main thread waits for the helper to be out of the call, then
# re-raises. Other threads cannot receive KeyboardInterrupt; they call
# mpt_await_fuel_n directly.
#
# The helper blocks every signal, so that the kernel delivers process-wide
# signals to a thread that can act on them; the main thread also wakes every
# _POLL_S seconds, in case the signal was caught by another thread anyway.
# Token and handle: the helper holds the handle through Throttle._use() like
# any call, and the token is freed by whichever of the two threads lets go
# of the wait last, under _Wait.guard, so fire() never touches a freed
# token, whatever the timing of a second Ctrl-C.

_POLL_S = 0.1
_WAIT_OK = (_ffi.STATUS_OK, _ffi.STATUS_TIMEOUT, _ffi.STATUS_KILLED)
_SIGNALS = signal.valid_signals()


def _take_now(handle, n, grant):
    """A wait with a timeout of 0: takes ``n`` units if the tank holds them
    now. Returns the status a wait would (OK, TIMEOUT or KILLED).

    It asks mpt_has_fuel_n, whose answer is that of mpt_await_fuel_n with
    a timeout of 0 (the same check in the library; NO_FUEL where the wait
    says TIMEOUT), rather than the wait itself: a Redis throttle's wait of
    0 s sees its reply arrive after its deadline, which the library of this
    release retries instead of giving up."""
    status = _ffi.call(
        "mpt_has_fuel_n",
        handle,
        n,
        byref(grant),
        ok=(_ffi.STATUS_OK, _ffi.STATUS_NO_FUEL, _ffi.STATUS_KILLED),
    )
    return _ffi.STATUS_TIMEOUT if status == _ffi.STATUS_NO_FUEL else status


def _cancellable_wait(n, timeout):
    """The blocking wait of a helper thread (see _Wait): a function of
    (handle, token, grant) that makes mpt_await_fuel_cancellable for ``n``
    units, ``timeout`` (C seconds), and returns its status."""

    def wait(handle, token, grant):
        return _ffi.call(
            "mpt_await_fuel_cancellable",
            handle,
            n,
            timeout,
            token,
            byref(grant),
            ok=_WAIT_OK + (_ffi.STATUS_CANCELLED,),
        )

    return wait


def _in_main_thread():
    return threading.current_thread() is threading.main_thread()


class _Wait:
    """One blocking wait of the main thread, made by a helper thread.

    ``wait(handle, token, grant)`` makes the cancellable C call on the
    handle of ``throttle`` (a Throttle or a KeyedThrottle) and returns its
    status (see _cancellable_wait)."""

    __slots__ = (
        "throttle", "wait", "token", "guard", "done",
        "entered", "finished", "abandoned", "status", "grant", "error",
    )

    def __init__(self, throttle, wait):
        self.throttle, self.wait = throttle, wait
        token = _ffi.CANCEL()
        _ffi.call("mpt_cancel_new", byref(token))
        self.token = token
        self.guard = threading.Lock()  # token, entered, finished, abandoned
        self.done = threading.Lock()  # released by the helper when it is out
        self.done.acquire()
        self.entered = self.finished = self.abandoned = False
        self.status = self.grant = self.error = None

    def run(self):
        """The helper thread."""
        try:
            try:
                signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
            except (OSError, ValueError):  # best effort: the main thread also polls
                pass
            with self.guard:
                if self.abandoned:  # the main thread gave up before we ran
                    return
                self.entered = True
            grant = c_int64()
            try:
                with self.throttle._use("await_fuel") as handle:
                    self.status = self.wait(handle, self.token, grant)
                self.grant = grant.value
            except BaseException as e:  # noqa: BLE001 - handed to the main thread
                self.error = e
            with self.guard:
                self.finished = True
                if self.abandoned:
                    self._free_token()
        finally:
            self.done.release()

    def fire(self):
        with self.guard:
            if self.token is not None:
                _ffi.lib.mpt_cancel_fire(self.token)

    def let_go(self):
        """The main thread is done with the wait (normally or not)."""
        with self.guard:
            self.abandoned = True
            if not self.entered or self.finished:
                self._free_token()

    def _free_token(self):
        # With self.guard held.
        token, self.token = self.token, None
        if token is not None:
            _ffi.lib.mpt_cancel_free(token)


def _await_interruptibly(throttle, wait):
    """The cancellable wait ``wait`` (see _Wait) made by a helper thread
    while the main thread stays able to run signal handlers. Returns
    (status, grant)."""
    wait = _Wait(throttle, wait)
    try:
        try:
            _thread.start_new_thread(wait.run, ())
            while not wait.done.acquire(timeout=_POLL_S):
                pass
        except BaseException:
            # KeyboardInterrupt & co.: end the wait, taking nothing. It ends
            # at once; wait (at most 2 s, through further Ctrl-Cs, firing
            # again after each) until the helper is out of the library, so
            # that the units are given back when this raises.
            deadline = None
            while True:
                try:
                    wait.fire()
                    with wait.guard:
                        if not wait.entered or wait.finished:
                            break
                    if deadline is None:
                        deadline = time.monotonic() + 2.0
                    elif time.monotonic() >= deadline:
                        break
                    if wait.done.acquire(timeout=0.01):
                        break
                except BaseException:  # noqa: BLE001 - the first one is raised
                    pass
            raise
    finally:
        wait.let_go()
    if wait.error is not None:
        raise wait.error
    return wait.status, wait.grant


# ---------------------------------------------------------------- asyncio

# Throttle.acquire: the same two steps as a main-thread wait. First a wait
# with a timeout of 0 in the event loop's thread (it never sleeps): fuel
# there now is taken at once, no thread. Otherwise a helper thread (a
# _Wait, as above: one per wait, its own cancellation token, signals
# blocked) makes the one real wait, mpt_await_fuel_cancellable, and wakes
# the loop through call_soon_threadsafe when it returns; the coroutine
# awaits that behind asyncio.shield. When the task is cancelled (by
# task.cancel(), asyncio.wait_for, a TaskGroup, asyncio.run ending...), the
# coroutine fires the token: the wait ends at once with
# MPT_STATUS_CANCELLED, having taken nothing, and its reserved units go to
# the waiters behind it, in every process. The coroutine awaits the helper
# (through further cancellations, firing again) before it re-raises
# CancelledError, so the units are back when the cancelled task is done.


def _settle(future):
    if not future.done():
        future.set_result(None)


async def _acquire(throttle, n, timeout, function):
    """The asyncio wait of a Throttle: returns the grant time (ns) or None."""
    timeout = _timeout(timeout, function)
    n = _uint(n, "n", 2**64, function)
    return await _acquire_with(
        throttle,
        function,
        timeout,
        lambda handle, grant: _take_now(handle, n, grant),
        _cancellable_wait(n, timeout),
    )


async def _acquire_with(throttle, function, timeout, take_now, wait):
    """The asyncio wait: ``take_now(handle, grant)`` (a wait of 0 s, as
    _take_now), then if that found no fuel and ``timeout`` (C seconds,
    checked) allows, the cancellable ``wait`` (see _Wait) in a helper
    thread. Returns the grant time (ns) or None."""
    import asyncio  # here, not at import: most users never need it

    loop = asyncio.get_running_loop()
    grant = c_int64()
    with throttle._use(function) as handle:
        status = take_now(handle, grant)
    if status != _ffi.STATUS_TIMEOUT or timeout == 0:
        return grant.value if status == _ffi.STATUS_OK else None

    finished = loop.create_future()
    wait = _Wait(throttle, wait)

    def helper():
        try:
            wait.run()
        finally:
            try:
                loop.call_soon_threadsafe(_settle, finished)
            except RuntimeError:  # the loop is closed: nobody is waiting
                pass

    try:
        _thread.start_new_thread(helper, ())
        try:
            await asyncio.shield(finished)
        except GeneratorExit:
            # The coroutine is closed without being resumed (its loop is
            # gone): end the wait; it may not await any more. The helper
            # frees the token when it is out (let_go below).
            wait.fire()
            raise
        except BaseException:
            # Cancelled (or interrupted): end the wait, taking nothing, and
            # wait until the helper is out of the library.
            wait.fire()
            while not finished.done():
                try:
                    await asyncio.shield(finished)
                except asyncio.CancelledError:  # again: the first one is raised
                    wait.fire()
            raise
    finally:
        wait.let_go()
    if wait.error is not None:
        raise wait.error
    return wait.grant if wait.status == _ffi.STATUS_OK else None


# ---------------------------------------------------------------- API


class KillFlag:
    """The throttle's kill flag, shared by every process that uses it
    (mp_throttle 0.0.5's ``multiprocessing.Event``): a :class:`Throttle`'s
    or a :class:`KeyedThrottle`'s (``kill_flag``).

    ``set()`` tells every worker to finish: every waiter in every process
    returns at once, and every later ``await_fuel``/``has_fuel`` returns
    False, until the next ``start()`` (which clears it). ``stop()`` sets it
    too.
    """

    __slots__ = ("_throttle",)

    def __init__(self, throttle):
        self._throttle = throttle

    def is_set(self):
        """Whether the kill flag is set (``mpt_kill_flag_is_set``;
        ``mpt_keyed_kill_flag_is_set`` for a KeyedThrottle, which a library
        from before it lacks: MPT_STATUS_UNSUPPORTED then)."""
        function = self._throttle._KILL_FLAG_IS_SET
        _ffi.require(function, "kill_flag.is_set")
        flag = c_bool()
        with self._throttle._use("kill_flag.is_set") as handle:
            _ffi.call(function, handle, byref(flag))
        return flag.value

    def set(self):
        """Sets the kill flag (``mpt_kill``, ``mpt_keyed_kill``); the
        throttle keeps running (its runtime counts) until ``stop()``."""
        with self._throttle._use("kill_flag.set") as handle:
            _ffi.call(self._throttle._KILL, handle)

    def wait(self, timeout=None):
        """Returns True once the flag is set, False if ``timeout`` seconds
        pass first. Polls every 5 ms (the library has no call that waits for
        the flag alone)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def __reduce__(self):
        return (_kill_flag_of, (self._throttle,))


def _kill_flag_of(throttle):
    return throttle.kill_flag


class _Use:
    """Context manager of one call on a Throttle's (or a KeyedThrottle's)
    handle (see Throttle._use)."""

    __slots__ = ("_throttle", "_what")

    def __init__(self, throttle, what):
        self._throttle = throttle
        self._what = what

    def __enter__(self):
        t = self._throttle
        with t._lock:
            # A fork()ed child of the process that connected a Redis
            # throttle: the handle's connection is the parent's, which the
            # library refuses to use here (MPT_STATUS_WRONG_STATE).
            reconnect = t._url is not None and t._pid != os.getpid()
            if t._closing or (t._handle is None and not reconnect):
                raise ThrottleError(
                    _ffi.STATUS_BAD_HANDLE, f"the {type(t).__name__} is closed", self._what
                )
            if reconnect:
                # Connect again, the first time the child uses it (and at the
                # next call if that fails). No call is in flight in this
                # process (_after_fork_in_child cleared _busy).
                t._reconnect_here()
            t._busy += 1
            return t._handle

    def __exit__(self, *exc):
        t = self._throttle
        with t._lock:
            t._busy -= 1
            if t._closing and t._busy == 0:
                t._free()
        return False


class Throttle:
    """At most ``max_n`` pieces of work per ``per`` seconds, shared by every
    thread and process that holds this Throttle, and statistics of the rate
    they really achieved.

    Parameters as in mp_throttle 0.0.5:

    - ``max_n`` (default 0, which the library rejects: give it), ``per``
      (seconds, default 1);
    - ``as_monitor`` (default True): keep statistics; False makes
      ``latest``/``mean``/``lo_hi``/``hi_lo`` raise;
    - ``as_throttle`` (default True): ration fuel; False: fuel is always
      there, the Throttle only counts;
    - ``auto_emit`` (default: as ``as_throttle``): each unit of fuel taken
      counts one emission; False: workers call :meth:`emit`;
    - ``hardcap``: 'limit' (default; the tank holds max_n), 'one' (the tank
      holds 1: grants at least per/max_n apart), 'window' (new: never more
      than max_n in any window of ``per``), anything else: unbounded, slow
      phases are caught up;
    - ``rf_rate``: seconds between monitor refreshes (default 0.01; 0 is
      rejected);
    - ``auto_calibrate``, ``_correction``: accepted and ignored; the
      library's schedule is exact and needs no calibration.

    New keyword parameters:

    - ``name``: the name under which the throttle is shared (default: a
      unique generated one). Any process of the same user can open it with
      :meth:`Throttle.open`. The creating Throttle unlinks it when closed.
    - ``spin_s``, ``timer_slack_ns``: how this process waits (the C
      ``mpt_options`` fields of the same names).
    - ``group_shared`` (default False): share the named throttle with the
      creator's group (mode 0660) rather than keep it to this user; the
      other users of the group open it with
      ``Throttle.open(name, group_shared=True)``. Part of the
      configuration: a name that exists with the other value raises
      MPT_STATUS_MISMATCH. Another user's throttle is never used otherwise
      (MPT_STATUS_PERMISSION_DENIED); see the C ``mpt_throttle_open``.

    :meth:`Throttle.connect` makes (or joins) a throttle kept in a Redis
    server instead, shared by processes on many hosts.

    ``max_n`` and ``per`` are read-only properties: the rate in force, read
    from the shared throttle at each access (:meth:`rate`), so that a
    :meth:`set_rate` from any process shows; as given to the constructor
    while unchanged, the last rate seen once closed.

    Every failure raises :class:`ThrottleError` (status code + the library's
    message). The handle is released by :meth:`close`, by the end of a
    ``with`` block, by garbage collection or at interpreter exit.
    """

    # The C functions behind KillFlag.
    _KILL_FLAG_IS_SET = "mpt_kill_flag_is_set"
    _KILL = "mpt_kill"

    def __init__(
        self,
        max_n=0,
        per=1,
        *,
        as_monitor=True,
        as_throttle=True,
        auto_emit=None,
        auto_calibrate=None,
        hardcap="limit",
        rf_rate=0.01,
        _correction=0,
        name=None,
        spin_s=None,
        timer_slack_ns=None,
        group_shared=False,
    ):
        self._init_state()
        self._max_n = max_n
        self._per = per
        self.as_monitor = as_monitor
        self.as_throttle = as_throttle
        self.auto_emit = (as_throttle == True) if auto_emit is None else auto_emit  # noqa: E712 (as 0.0.5)
        self.auto_calibrate = False  # never needed
        self.hardcap = hardcap
        self.refresh_rate = rf_rate
        self._correction = 0
        self._wait_options = {"spin_s": spin_s, "timer_slack_ns": timer_slack_ns}
        if group_shared:
            # A process that unpickles it accepts the group-shared throttle.
            self._wait_options["group_shared"] = True
        options = _options(
            as_throttle,
            as_monitor,
            self.auto_emit,
            hardcap,
            rf_rate,
            timer_slack_ns,
            spin_s,
            group_shared,
        )
        max_n = _uint(max_n, "max_n", 2**64)
        name = _new_name() if name is None else name
        handle = _ffi.HANDLE()
        _ffi.call(
            "mpt_throttle_create_named",
            _name_bytes(name),
            max_n,
            float(per),
            byref(options),
            byref(handle),
        )
        # Only the Throttle that created the name removes it: one made with
        # the name of an existing throttle (same settings) merely opened it.
        created = c_bool()
        _ffi.call("mpt_throttle_created", handle, byref(created))
        self._adopt(handle, name, owner=created.value)

    @classmethod
    def open(cls, name, *, spin_s=None, timer_slack_ns=None, group_shared=False):
        """Opens the named throttle ``name``, made by another process (in any
        language) of the same user. Its settings are the creator's: ``max_n``
        and ``per`` are the rate in force (:meth:`rate`), ``as_monitor``,
        ``as_throttle``, ``auto_emit``, ``hardcap`` (a string) and
        ``refresh_rate`` are read from the throttle. Closing it does not
        unlink the name. ``group_shared=True`` also accepts a throttle of
        another user of one of this process's groups that was made with
        ``group_shared=True`` (anything else of another user raises
        MPT_STATUS_PERMISSION_DENIED)."""
        config = {"wait": {"spin_s": spin_s, "timer_slack_ns": timer_slack_ns}}
        if group_shared:
            config["wait"]["group_shared"] = True
        return cls._open(name, config)

    @classmethod
    def connect(
        cls,
        url,
        name,
        max_n,
        per=1,
        *,
        as_monitor=True,
        as_throttle=True,
        auto_emit=None,
        hardcap="limit",
        rf_rate=0.01,
        spin_s=None,
        timer_slack_ns=None,
    ):
        """Makes the throttle ``name`` in the Redis server at ``url``, or
        joins it if it exists there with the same configuration
        (``mpt_throttle_connect``, library 0.2.0): processes on any number
        of hosts, each with its own Throttle, share one rate, decided by the
        server on its own clock. The Throttle is like any other: every
        method works on it.

        - ``url``: ``redis://[user[:password]@]host[:port][/db]`` or
          ``redis+unix:///path/to/socket``;
        - ``name``: 1 to 200 bytes of UTF-8 without ``{`` or ``}``;
        - ``max_n``, ``per`` and the keyword parameters: as for the
          constructor (no ``group_shared``: the server's access control
          decides who uses it). ``per`` must be a whole number of
          microseconds. All but ``spin_s`` and ``timer_slack_ns`` are the
          throttle's configuration: a join with other values raises
          MPT_STATUS_MISMATCH.

        Raises :class:`ThrottleError`: MPT_STATUS_UNREACHABLE (nothing
        answers at ``url``, it does not answer in 2 s, or it is not Redis),
        MPT_STATUS_PERMISSION_DENIED (credentials refused),
        MPT_STATUS_MISMATCH, MPT_STATUS_INVALID_ARGUMENT (a bad URL, name,
        number or option), MPT_STATUS_UNSUPPORTED (a library without the
        Redis store, or a build from before it).

        Closing it (``close()``, ``with``, garbage collection, exit) leaves
        the throttle on the server, for the other hosts: :func:`unlink_url`
        removes it. Pickling sends the URL, the name and this configuration,
        and the receiving process connects again; so does a ``fork()``ed
        child, the first time it uses an inherited Throttle (a connection
        belongs to the process that made it)."""
        config = {
            "max_n": max_n,
            "per": per,
            "as_monitor": as_monitor,
            "as_throttle": as_throttle,
            "auto_emit": auto_emit,
            "hardcap": hardcap,
            "rf_rate": rf_rate,
            "wait": {"spin_s": spin_s, "timer_slack_ns": timer_slack_ns},
        }
        return cls._connect(url, name, config)

    @classmethod
    def _connect(cls, url, name, config):
        _ffi.require("mpt_throttle_connect", "Throttle.connect")
        _url_bytes(url)  # (a TypeError before anything is made)
        self = cls.__new__(cls)
        self._init_state()
        self._max_n = config["max_n"]
        self._per = config["per"]
        self.as_monitor = config["as_monitor"]
        self.as_throttle = config["as_throttle"]
        auto_emit = config["auto_emit"]
        if auto_emit is None:  # as the constructor (0.0.5's rule)
            auto_emit = self.as_throttle == True  # noqa: E712
        self.auto_emit = auto_emit
        self.auto_calibrate = False
        self.hardcap = config["hardcap"]
        self.refresh_rate = config["rf_rate"]
        self._correction = 0
        self._wait_options = dict(config["wait"])
        # Kept as given: what a pickle sends, and what a fork()ed child
        # connects with (the configuration the throttle was made with, which
        # a set_rate() does not change).
        self._url = url
        self._name = name
        self._connect_config = dict(config, wait=dict(config["wait"]))
        handle = self._connect_handle()
        self._adopt(handle, name, owner=False)
        return self

    def _connect_handle(self):
        """A new handle on this Throttle's Redis throttle (mpt_throttle_connect)."""
        config = self._connect_config
        options = _options(
            config["as_throttle"],
            config["as_monitor"],
            self.auto_emit,
            config["hardcap"],
            config["rf_rate"],
            config["wait"]["timer_slack_ns"],
            config["wait"]["spin_s"],
        )
        max_n = _uint(config["max_n"], "max_n", 2**64, "Throttle.connect")
        handle = _ffi.HANDLE()
        _ffi.call(
            "mpt_throttle_connect",
            _url_bytes(self._url),
            _name_bytes(self._name),
            max_n,
            float(config["per"]),
            byref(options),
            byref(handle),
        )
        return handle

    def _reconnect_here(self):
        # Called with self._lock held and no call in flight in this process.
        # The parent's handle first: freeing it in the child closes the
        # child's copies of its sockets and joins no thread (the library
        # checks). And before the new handle exists: that release lets go
        # of the parent's event thread by its thread id, which the new
        # handle's event thread may reuse in this process.
        self._free()
        self._handle = self._connect_handle()
        self._pid = os.getpid()

    @classmethod
    def _open(cls, name, config):
        self = cls.__new__(cls)
        self._init_state()
        self._max_n = config.get("max_n")
        self._per = config.get("per")
        for attr in ("as_monitor", "as_throttle", "auto_emit", "hardcap"):
            setattr(self, attr, config.get(attr))
        self.refresh_rate = config.get("rf_rate")
        self.auto_calibrate = False
        self._correction = 0
        self._wait_options = dict(config.get("wait") or {})
        options = _options(**{k: v for k, v in self._wait_options.items()})
        handle = _ffi.HANDLE()
        _ffi.call("mpt_throttle_open", _name_bytes(name), byref(options), byref(handle))
        self._adopt(handle, name, owner=False)
        self._refresh_rate()  # the rate in force, whatever the pickler knew
        got = _ffi.mpt_options()
        with self._use("open") as h:
            _ffi.call("mpt_get_options", h, byref(got))
        names = {code: text for text, code in _HARDCAPS.items()}
        self.as_monitor = bool(got.as_monitor)
        self.as_throttle = bool(got.as_throttle)
        self.auto_emit = bool(got.auto_emit)
        self.hardcap = names.get(got.hardcap, HARDCAP_NONE)
        self.refresh_rate = got.refresh_s
        return self

    def _init_state(self):
        self._max_n = self._per = None
        self._handle = None
        self._closing = False
        self._busy = 0
        self._lock = threading.Lock()
        self._owner_pid = None
        self._pid = None  # the process that made the handle
        self._name = None
        self._url = None  # a Redis throttle's (Throttle.connect)
        self._connect_config = None

    def _adopt(self, handle, name, owner):
        self._handle = handle
        self._name = name
        self._owner_pid = os.getpid() if owner else None
        self._pid = os.getpid()
        with _live_lock:
            _live.add(self)

    def _use(self, what):
        # Every C call on the handle goes through this: close() from another
        # thread waits for the calls in flight (the last one frees the handle)
        # instead of freeing memory they use.
        return _Use(self, what)

    # ------------------------------------------------------------ lifecycle

    @property
    def kill_flag(self):
        """The shared kill flag: ``kill_flag.is_set()``, ``kill_flag.set()``
        (see :class:`KillFlag`)."""
        # Made on each access: a stored KillFlag would make a reference cycle,
        # and the Throttle would wait for the cyclic GC to be freed.
        return KillFlag(self)

    @property
    def name(self):
        """The name other processes open this throttle by (or connect to,
        for a Redis throttle)."""
        return self._name

    @property
    def url(self):
        """The URL of the Redis server of a throttle made by
        :meth:`Throttle.connect`, as given; None for one in shared memory."""
        return self._url

    @property
    def max_n(self):
        """Units of fuel per ``per`` seconds: the rate in force (see
        :meth:`rate`; read-only, change it with :meth:`set_rate`)."""
        self._refresh_rate()
        return self._max_n

    @property
    def per(self):
        """The period in seconds of ``max_n``: the rate in force (see
        :meth:`rate`; read-only, change it with :meth:`set_rate`)."""
        self._refresh_rate()
        return self._per

    def _refresh_rate(self):
        try:
            max_n, per = self.rate()
        except ThrottleError:  # closed: the last rate seen
            return
        # Keep the values as given (1 stays 1, not 1.0) while they are the
        # rate in force; the library keeps per in whole nanoseconds.
        if max_n != self._max_n or not (
            isinstance(self._per, (int, float)) and abs(per - self._per) <= 0.5e-9
        ):
            self._max_n, self._per = max_n, per

    @property
    def closed(self):
        # (A Redis throttle's handle is None in a fork()ed child whose
        # connect failed: not closed, the next call connects again.)
        return self._closing or (self._handle is None and self._url is None)

    def close(self):
        """Releases this process's handle (``mpt_throttle_free``) and, in the
        process that created the throttle, unlinks its name. Does not stop
        the throttle. Safe to call twice; calls in flight in other threads
        finish first (the last of them frees the handle); later calls raise
        :class:`ThrottleError` (MPT_STATUS_BAD_HANDLE)."""
        with self._lock:
            if self.closed:
                return
            self._closing = True
            if self._owner_pid == os.getpid():
                _unlink(self._name)
            if self._busy == 0:
                self._free()

    def _free(self):
        # Called with self._lock held and no call in flight.
        handle, self._handle = self._handle, None
        if handle:
            _ffi.lib.mpt_throttle_free(handle)

    def __del__(self):
        # No call can be in flight: each holds a reference to self.
        try:
            if self._handle is None:
                return
            if self._owner_pid == os.getpid() and not self._closing:
                _unlink(self._name)
            self._closing = True
            self._free()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        """Stops the throttle if this process created it and it still runs,
        then closes it."""
        try:
            if self._owner_pid == os.getpid() and not self.closed and self.is_running():
                try:
                    self.stop()
                except ThrottleError as e:
                    if e.status != _ffi.STATUS_WRONG_STATE:  # stopped meanwhile
                        raise
        finally:
            self.close()
        return False

    def __reduce__(self):
        # Pickled by reference: the receiving process opens the name.
        if self.closed:
            raise ThrottleError(_ffi.STATUS_BAD_HANDLE, "the Throttle is closed", "pickle")
        if self._url is not None:
            # A Redis throttle: the receiver connects with the configuration
            # it was made with (the rate in force may differ: set_rate).
            return (_reconnect, (self._url, self._name, self._connect_config))
        config = {
            "max_n": self.max_n,
            "per": self.per,
            "as_monitor": self.as_monitor,
            "as_throttle": self.as_throttle,
            "auto_emit": self.auto_emit,
            "hardcap": self.hardcap,
            "rf_rate": self.refresh_rate,
            "wait": self._wait_options,
        }
        return (_reopen, (self._name, config))

    def __repr__(self):
        state = "closed" if self.closed else "open"
        where = f" at {_shown_url(self._url)}" if self._url is not None else ""
        rate = f"max_n={self.max_n} per={self.per}"
        return f"<mp_throttle.Throttle {self._name!r}{where} {rate} {state}>"

    # ------------------------------------------------------------ run

    def start(self):
        """Starts (or resumes) the throttle: clears the kill flag, opens the
        tank (its first unit is there at once, then one every per/max_n) and
        starts the monitor thread in this process."""
        with self._use("start") as handle:
            _ffi.call("mpt_start", handle)

    def stop(self):
        """Stops (pauses) the throttle: sets the kill flag, wakes every
        waiter in every process, and returns ``(runtime, total emissions,
        mean time between emissions, mean emissions per second)``."""
        summary = _ffi.mpt_summary()
        with self._use("stop") as handle:
            _ffi.call("mpt_stop", handle, byref(summary))
        return _summary(summary)

    def summary(self):
        """What :meth:`stop` would return, now, running or not."""
        summary = _ffi.mpt_summary()
        with self._use("summary") as handle:
            _ffi.call("mpt_get_summary", handle, byref(summary))
        return _summary(summary)

    def is_running(self):
        """Whether the throttle is started and not stopped."""
        flag = c_bool()
        with self._use("is_running") as handle:
            _ffi.call("mpt_is_running", handle, byref(flag))
        return flag.value

    # ------------------------------------------------------------ fuel

    def await_fuel(self, t=None, *, n=1):
        """Blocks until a unit of fuel is granted (returns True), ``t``
        seconds pass (False; ``None``: no limit) or the kill flag is set
        (False). Before ``start()`` it waits for the start.

        ``n`` (keyword, new): take ``n`` units at once (a budget of max_n
        bytes per ``per``: one call per message of ``n`` bytes); at most
        what the tank holds (max_n; 1 with hardcap 'one'). Waiters keep their
        order whatever their ``n``; with auto_emit the ``n`` units count as
        one emission.

        In the main thread a blocking wait is interrupted by Ctrl-C: it
        raises KeyboardInterrupt (or whatever a signal handler raises) at
        once, having taken nothing, and the waiters behind it move up (see
        README.md, "Ctrl-C")."""
        return self.await_fuel_ns(t, n=n) is not None

    def await_fuel_ns(self, t=None, *, n=1):
        """As :meth:`await_fuel`, but returns the grant time (``CLOCK_MONOTONIC``
        ns, see :func:`clock_ns`) instead of True, and None instead of False."""
        timeout = _timeout(t, "await_fuel")
        n = _uint(n, "n", 2**64, "await_fuel")
        main = timeout != 0 and _in_main_thread()
        deadline = time.monotonic() + timeout if main and timeout > 0 else None
        grant = c_int64()
        with self._use("await_fuel") as handle:
            if main or timeout == 0:
                # The main thread first asks without sleeping (see "Ctrl-C" above).
                status = _take_now(handle, n, grant)
            else:
                status = _ffi.call(
                    "mpt_await_fuel_n", handle, n, timeout, byref(grant), ok=_WAIT_OK
                )
        if status == _ffi.STATUS_TIMEOUT and main:
            if deadline is not None:
                timeout = max(0.0, deadline - time.monotonic())
            status, grant.value = _await_interruptibly(self, _cancellable_wait(n, timeout))
        return grant.value if status == _ffi.STATUS_OK else None

    def has_fuel(self, *, n=1):
        """Takes a unit of fuel (``n`` units, keyword, new) if the tank holds
        it now (True), else returns False (also when not started or killed);
        never blocks."""
        return self.has_fuel_ns(n=n) is not None

    def has_fuel_ns(self, *, n=1):
        """As :meth:`has_fuel`, but returns the grant time (ns) or None."""
        n = _uint(n, "n", 2**64, "has_fuel")
        grant = c_int64()
        with self._use("has_fuel") as handle:
            status = _ffi.call(
                "mpt_has_fuel_n",
                handle,
                n,
                byref(grant),
                ok=(_ffi.STATUS_OK, _ffi.STATUS_NO_FUEL, _ffi.STATUS_KILLED),
            )
        return grant.value if status == _ffi.STATUS_OK else None

    # ------------------------------------------------------------ asyncio

    async def acquire(self, n=1, timeout=None):
        """asyncio: ``await throttle.acquire()`` waits until ``n`` units of
        fuel are granted (True), ``timeout`` seconds pass (False; ``None``:
        no limit) or the kill flag is set (False), as :meth:`await_fuel`,
        without blocking the event loop: the wait runs in a helper thread.
        Waiters keep one order, whether they wait in coroutines, threads or
        other processes. Cancelling the task (``task.cancel()``,
        ``asyncio.wait_for``, ...) ends the wait at once, having taken
        nothing: its reserved units go to the waiters behind it, and they
        are back by the time the cancelled task is done. (A cancellation
        that comes once the grant is made raises CancelledError all the
        same, and the units stay taken.) Fuel there now is taken without a
        thread."""
        return await _acquire(self, n, timeout, "acquire") is not None

    async def acquire_ns(self, n=1, timeout=None):
        """As :meth:`acquire`, but returns the grant time (``CLOCK_MONOTONIC``
        ns, see :func:`clock_ns`) instead of True, and None instead of False."""
        return await _acquire(self, n, timeout, "acquire")

    async def __aenter__(self):
        """``async with throttle:`` takes one unit of fuel (waiting for it
        as :meth:`acquire` does) and runs the block; nothing happens at its
        end (fuel is not given back). Unlike ``with throttle:``, it neither
        stops nor closes the throttle. Raises :class:`ThrottleError`
        (MPT_STATUS_KILLED) if the kill flag is set, since the block must
        not run without fuel."""
        if await _acquire(self, 1, None, "async with") is None:
            raise ThrottleError(
                _ffi.STATUS_KILLED,
                "the kill flag is set (stop() or kill_flag.set()): no fuel for the block",
                "async with",
            )
        return self

    async def __aexit__(self, *exc):
        return False

    def peek(self, n=1):
        """Looks at the tank without taking anything: ``(level, wait)``, the
        units in the tank now (an int; ``math.inf`` with
        ``as_throttle=False``) and the seconds until ``n`` units would be
        granted to a waiter arriving now, after those already queued (0.0:
        now). Raises :class:`ThrottleError`: MPT_STATUS_KILLED while the
        kill flag is set (``stop()`` sets it), MPT_STATUS_NOT_RUNNING before
        ``start()``: nothing accrues then."""
        n = _uint(n, "n", 2**64, "peek")
        level, wait = c_uint64(), c_double()
        with self._use("peek") as handle:
            _ffi.call("mpt_peek_fuel", handle, n, byref(level), byref(wait))
        return (math.inf if level.value == 2**64 - 1 else level.value, wait.value)

    def set_rate(self, max_n, per):
        """Changes the rate to ``max_n`` units per ``per`` seconds, from now
        on, for every process that shares the throttle, running or not.
        Waiters asleep in every process are rescheduled at once, in their
        order; fuel in the tank is kept up to what the new tank holds (with
        hardcap 'window' the grants before the change count in the new
        window). A waiter whose new grant falls after its timeout returns
        False. Raises :class:`ThrottleError` as the constructor does for bad
        values, and for a 'window' max_n above the grant times it keeps
        (max(its first max_n, 4096))."""
        max_n = _uint(max_n, "max_n", 2**64, "set_rate")
        with self._use("set_rate") as handle:
            _ffi.call("mpt_set_rate", handle, max_n, float(per))
        self._max_n, self._per = max_n, per
        self._refresh_rate()  # (per as the library keeps it, if it differs)

    def rate(self):
        """The rate in force, ``(max_n, per)`` (int, float seconds): the
        throttle's own, or the last :meth:`set_rate` from any process."""
        max_n, per = c_uint64(), c_double()
        with self._use("rate") as handle:
            _ffi.call("mpt_get_rate", handle, byref(max_n), byref(per))
        return (max_n.value, per.value)

    def emit(self, timestamp=None):
        """Counts one emission (throttles made with ``auto_emit=False``).

        ``timestamp``: as in mp_throttle 0.0.5, an epoch time in seconds
        (``time.time()``), converted to the library's monotonic clock;
        None: now. Raises :class:`ThrottleError` if auto_emit is on
        (MPT_STATUS_WRONG_STATE), if the throttle is not running
        (MPT_STATUS_NOT_RUNNING) or was stopped or killed
        (MPT_STATUS_KILLED)."""
        if timestamp is None:
            with self._use("emit") as handle:
                _ffi.call("mpt_emit", handle)
            return
        timestamp = float(timestamp)
        if not math.isfinite(timestamp):
            raise ThrottleError(
                _ffi.STATUS_INVALID_ARGUMENT,
                f"timestamp must be a finite epoch time, got {timestamp!r}",
                "emit",
            )
        ns = clock_ns() + round((timestamp - time.time()) * 1e9)
        self.emit_at_ns(ns)

    def emit_at_ns(self, monotonic_ns):
        """Counts one emission at ``monotonic_ns`` (``CLOCK_MONOTONIC`` ns, see
        :func:`clock_ns`)."""
        ns = int(monotonic_ns)
        if not -(2**63) <= ns < 2**63:
            raise ThrottleError(
                _ffi.STATUS_INVALID_ARGUMENT, f"timestamp out of range: {ns}", "emit_at_ns"
            )
        with self._use("emit") as handle:
            _ffi.call("mpt_emit_at", handle, ns)

    # ------------------------------------------------------------ statistics

    def _rate(self, function):
        rate = _ffi.mpt_rate()
        with self._use(function) as handle:
            _ffi.call(function, handle, byref(rate))
        return (rate.seconds_between, rate.per_second)

    def latest(self):
        """The last second: ``(time between emissions, emissions per second)``."""
        return self._rate("mpt_latest")

    def mean(self):
        """The whole running time: ``(mean time between emissions, mean
        emissions per second)``."""
        return self._rate("mpt_mean")

    def lo_hi(self):
        """The shortest interval seen between emissions and its rate;
        ``(0.0, 0.0)`` until one has been seen."""
        return self._rate("mpt_lo_hi")

    def hi_lo(self):
        """The longest interval seen between emissions and its rate;
        ``(0.0, 0.0)`` until one has been seen."""
        return self._rate("mpt_hi_lo")

    def _calibrate(self):
        """mp_throttle 0.0.5 measured a correction here; the library's
        schedule is exact, so there is nothing to do."""


def _summary(s):
    return (s.runtime_s, int(s.total), s.mean_seconds_between, s.mean_per_second)


# ---------------------------------------------------------------- keyed


#: What :meth:`KeyedThrottle.key_stats` returns: whether the key is in the
#: table (False: never used, forgotten, or dropped once idle; the other
#: fields are then 0), the units granted to it since it was added, and when
#: that was (``CLOCK_MONOTONIC`` ns, see :func:`clock_ns`).
KeyStats = collections.namedtuple("KeyStats", "in_table granted since_ns")

#: What :meth:`KeyedThrottle.stats` returns: the keys in the table now, the
#: most it holds, the idle keys dropped to make room for new ones (ever), the
#: keys added (ever: a key dropped and used again counts twice), and the
#: :meth:`KeyedThrottle.stop` tuple of the whole keyed throttle, now.
KeyedStats = collections.namedtuple("KeyedStats", "live_keys capacity evictions added summary")

#: The longest key of a keyed throttle, in bytes (``MPT_KEY_MAX``).
KEY_MAX = _ffi.KEY_MAX


def _key_bytes(key):
    """A key as the C API takes it: a str as its UTF-8, bytes (bytearray,
    memoryview) as they are, NUL bytes included. Its length is the
    library's to judge (0 to KEY_MAX bytes)."""
    if isinstance(key, str):
        return key.encode("utf-8")
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key)
    raise TypeError(f"a key is a str or bytes, not {type(key).__name__}")


def _reopen_keyed(name, wait):
    """Unpickles a named KeyedThrottle: opens the name."""
    return KeyedThrottle.open(name, **wait)


def _reconnect_keyed(url, name, config):
    """Unpickles a KeyedThrottle of a Redis server: connects to it again."""
    return KeyedThrottle._connect(url, name, config)


#: hardcap code -> its name, for what a keyed throttle opened or joined
#: reports (mpt_keyed_get_config).
_HARDCAP_NAMES = {code: text for text, code in _HARDCAPS.items()}
_HARDCAP_NAMES[_ffi.HARDCAP_NONE] = HARDCAP_NONE


class KeyedThrottle:
    """Many throttles in one: at most ``max_n`` pieces of work per ``per``
    seconds *for each key* (a host, a user, an API token), shared by every
    thread and process that holds it. One configuration, and a table of up
    to ``capacity`` keys made at once; each key has a schedule of its own,
    with every guarantee of its ``hardcap``: a key at its limit never slows
    another, and waiters on one key are served first come, first served.

    Keys are ``str`` (used as their UTF-8 bytes: ``"é"`` and
    ``"é".encode()`` are one key) or ``bytes`` (NUL bytes allowed), 0 to
    :data:`KEY_MAX` (128) bytes; a longer one raises :class:`ThrottleError`
    (MPT_STATUS_INVALID_ARGUMENT). A key never seen has a full tank: its
    first request goes at once. A key is added to the table by its first
    :meth:`await_fuel` or :meth:`has_fuel`, and dropped only when it has
    become exactly like a key never seen (its tank full again) and the room
    is needed for a new key, or by :meth:`forget`. A new key for which there
    is no room (every key in the table still holds back fuel) raises
    :class:`NoRoomError`, having taken nothing.

    Parameters:

    - ``max_n``: 1 to 2**24 units per key (2**16 with hardcap 'window');
      ``per``: seconds; ``capacity``: the most keys the table holds (1 to
      2**26; its shared memory, 192 bytes for each of about 1.25 *
      capacity slots rounded up to a power of two, is reserved at once);
    - ``hardcap``: as for :class:`Throttle` ('limit', 'one', 'window',
      anything else unbounded), per key;
    - ``as_monitor`` (default True): keep the statistics of the whole keyed
      throttle (:meth:`latest`, :meth:`mean`); each grant counts one
      emission;
    - ``rf_rate``, ``spin_s``, ``timer_slack_ns``: as for :class:`Throttle`.

    The constructor makes an anonymous keyed throttle, which this process's
    threads and its ``fork()``-ed children share (``os.fork``, the 'fork'
    start method of multiprocessing). :meth:`create_named` makes a named
    one that any process of the same user opens with :meth:`open`; named
    keyed throttles share the namespace of named :class:`Throttle` s, and
    :meth:`unlink` removes a name. :meth:`connect` makes (or joins) one in
    a Redis server, whose keys processes on many hosts share.

    The configuration is in the attributes ``max_n``, ``per``, ``hardcap``
    (a string), ``as_monitor``, ``refresh_rate`` and the property
    ``capacity``: as given to the constructor and :meth:`create_named`;
    read from the library (``mpt_keyed_get_config``) for one
    :meth:`open` ed or :meth:`connect` ed, so the creator's. ``created``
    says whether this handle made the keyed throttle rather than opened or
    joined one.

    Every failure raises :class:`ThrottleError`. The handle is released by
    :meth:`close`, by the end of a ``with`` block (which first stops the
    keyed throttle if this handle made it in shared memory and it runs),
    by garbage collection or at interpreter exit. Nothing removes a name
    but :meth:`unlink` (:meth:`unlink_url` in Redis): unlike a
    :class:`Throttle`, whose generated name its creator removes when it
    closes it, a keyed throttle's name is chosen by its user, and outlives
    the handle that created it.
    """

    # The C functions behind KillFlag.
    _KILL_FLAG_IS_SET = "mpt_keyed_kill_flag_is_set"
    _KILL = "mpt_keyed_kill"

    def __init__(
        self,
        max_n,
        per,
        capacity,
        *,
        hardcap="limit",
        as_monitor=True,
        rf_rate=0.01,
        spin_s=None,
        timer_slack_ns=None,
    ):
        _ffi.require("mpt_keyed_new", "KeyedThrottle")
        self._init_state(max_n, per, hardcap, as_monitor, rf_rate)
        options = _options(True, as_monitor, None, hardcap, rf_rate, timer_slack_ns, spin_s)
        handle = _ffi.KEYED()
        _ffi.call(
            "mpt_keyed_new",
            _uint(max_n, "max_n", 2**64, "KeyedThrottle"),
            float(per),
            _uint(capacity, "capacity", 2**64, "KeyedThrottle"),
            byref(options),
            byref(handle),
        )
        self._adopt(handle, None, owner=True)

    @classmethod
    def create_named(
        cls,
        name,
        max_n,
        per,
        capacity,
        *,
        hardcap="limit",
        as_monitor=True,
        rf_rate=0.01,
        spin_s=None,
        timer_slack_ns=None,
        group_shared=False,
    ):
        """Creates the named keyed throttle ``name`` (1 to 200 bytes, no
        '/'), or opens it if it exists with the same configuration (capacity
        included; another raises MPT_STATUS_MISMATCH, and so does a plain
        :class:`Throttle` of that name). Parameters as for the constructor;
        ``group_shared`` as for :class:`Throttle`. ``created`` says which
        it did; only the one that created it stops it at the end of a
        ``with`` block. Closing it does not remove the name: :meth:`unlink`
        does."""
        _ffi.require("mpt_keyed_create_named", "KeyedThrottle.create_named")
        self = cls.__new__(cls)
        self._init_state(max_n, per, hardcap, as_monitor, rf_rate)
        options = _options(
            True, as_monitor, None, hardcap, rf_rate, timer_slack_ns, spin_s, group_shared
        )
        handle = _ffi.KEYED()
        _ffi.call(
            "mpt_keyed_create_named",
            _name_bytes(name),
            _uint(max_n, "max_n", 2**64, "KeyedThrottle.create_named"),
            float(per),
            _uint(capacity, "capacity", 2**64, "KeyedThrottle.create_named"),
            byref(options),
            byref(handle),
        )
        self._wait_options = {"spin_s": spin_s, "timer_slack_ns": timer_slack_ns}
        if group_shared:
            self._wait_options["group_shared"] = True
        # Whether it created the name (a library without
        # mpt_keyed_get_config cannot tell: taken as created, as before).
        self._adopt(handle, name, owner=None)
        return self

    @classmethod
    def open(cls, name, *, spin_s=None, timer_slack_ns=None, group_shared=False):
        """Opens the named keyed throttle ``name``, made by another process
        (in any language) of the same user, adopting its configuration:
        ``max_n``, ``per``, ``hardcap``, ``as_monitor``, ``refresh_rate``
        and ``capacity`` are the creator's (with a library from before
        ``mpt_keyed_get_config``, all but ``capacity`` are None).
        MPT_STATUS_NOT_FOUND if there is no such name, MPT_STATUS_MISMATCH
        if it is a plain throttle. ``group_shared`` as for
        :meth:`Throttle.open`."""
        _ffi.require("mpt_keyed_open", "KeyedThrottle.open")
        self = cls.__new__(cls)
        self._init_state(None, None, None, None, None)
        self._wait_options = {"spin_s": spin_s, "timer_slack_ns": timer_slack_ns}
        if group_shared:
            self._wait_options["group_shared"] = True
        options = _options(**self._wait_options)
        handle = _ffi.KEYED()
        _ffi.call("mpt_keyed_open", _name_bytes(name), byref(options), byref(handle))
        self._adopt(handle, name, owner=False, adopt_config=True)
        return self

    @classmethod
    def connect(
        cls,
        url,
        name,
        max_n,
        per,
        *,
        hardcap="limit",
        as_monitor=True,
        rf_rate=0.01,
        spin_s=None,
        timer_slack_ns=None,
    ):
        """Makes the keyed throttle ``name`` in the Redis server at ``url``,
        or joins it if it exists there with the same configuration
        (``mpt_keyed_connect``), as :meth:`Throttle.connect` does a plain
        throttle: processes on any number of hosts, each with its own
        KeyedThrottle, share each key's schedule, decided by the server on
        its own clock. Every method works on it.

        - ``url``, ``name``: as for :meth:`Throttle.connect` (names are
          shared with plain throttles in the server: a plain throttle of
          that name raises MPT_STATUS_MISMATCH, and so does
          :meth:`Throttle.connect` of a keyed one);
        - ``max_n`` (at most 2**24; 2**16 with hardcap 'window'), ``per``
          (a whole number of microseconds) and the keyword parameters: as
          for the constructor. All but ``spin_s`` and ``timer_slack_ns``
          are the configuration: a join with others raises
          MPT_STATUS_MISMATCH. The attributes ``max_n``, ``per``,
          ``hardcap``, ``as_monitor`` and ``refresh_rate`` are read back
          from the library (``per`` a float, ``hardcap`` 'limit', 'one',
          'window' or 'none'); ``created`` says whether this connect made
          it.

        There is no capacity: each key is a Redis key that expires once
        the key is idle again (its tank full), so ``capacity`` and
        ``stats().capacity`` are 0 (no bound), :class:`NoRoomError` is
        never raised, and ``stats().evictions`` counts the keys that went
        idle. Raises :class:`ThrottleError` as :meth:`Throttle.connect`
        does (MPT_STATUS_UNREACHABLE, MPT_STATUS_PERMISSION_DENIED,
        MPT_STATUS_MISMATCH, MPT_STATUS_INVALID_ARGUMENT,
        MPT_STATUS_UNSUPPORTED for a library without it).

        As with :meth:`Throttle.connect`: closing it (``close()``, ``with``,
        garbage collection, exit) neither stops it nor removes it from the
        server, where the other hosts go on using it; :meth:`unlink_url`
        (:func:`unlink_url`) removes it. Pickling sends the URL, the name
        and this configuration, and the receiving process connects again;
        so does a ``fork()``ed child, the first time it uses an inherited
        KeyedThrottle."""
        config = {
            "max_n": max_n,
            "per": per,
            "hardcap": hardcap,
            "as_monitor": as_monitor,
            "rf_rate": rf_rate,
            "wait": {"spin_s": spin_s, "timer_slack_ns": timer_slack_ns},
        }
        return cls._connect(url, name, config)

    @classmethod
    def _connect(cls, url, name, config):
        _ffi.require("mpt_keyed_connect", "KeyedThrottle.connect")
        _url_bytes(url)  # (a TypeError before anything is made)
        self = cls.__new__(cls)
        self._init_state(
            config["max_n"],
            config["per"],
            config["hardcap"],
            config["as_monitor"],
            config["rf_rate"],
        )
        self._wait_options = dict(config["wait"])
        # Kept as given: what a pickle sends, and what a fork()ed child
        # connects with.
        self._url = url
        self._name = name
        self._connect_config = dict(config, wait=dict(config["wait"]))
        handle = self._connect_handle()
        self._adopt(handle, name, owner=False, adopt_config=True)
        return self

    def _connect_handle(self):
        """A new handle on this KeyedThrottle's Redis keyed throttle
        (mpt_keyed_connect)."""
        config = self._connect_config
        options = _options(
            True,
            config["as_monitor"],
            None,
            config["hardcap"],
            config["rf_rate"],
            config["wait"]["timer_slack_ns"],
            config["wait"]["spin_s"],
        )
        handle = _ffi.KEYED()
        _ffi.call(
            "mpt_keyed_connect",
            _url_bytes(self._url),
            _name_bytes(self._name),
            _uint(config["max_n"], "max_n", 2**64, "KeyedThrottle.connect"),
            float(config["per"]),
            byref(options),
            byref(handle),
        )
        return handle

    def _reconnect_here(self):
        # As Throttle._reconnect_here (called by _Use in a fork()ed child,
        # with self._lock held and no call in flight in this process): the
        # parent's handle first, then a connection of this process's own.
        self._free()
        self._handle = self._connect_handle()
        self._pid = os.getpid()
        self._read_config(self._handle, True)

    @staticmethod
    def unlink(name):
        """Removes the name of a named (keyed or plain) throttle
        (``mpt_throttle_unlink``). Processes that have it open go on using
        it; a later :meth:`create_named` makes a new one.
        MPT_STATUS_NOT_FOUND if there is no such name."""
        _ffi.call("mpt_throttle_unlink", _name_bytes(name))

    @staticmethod
    def unlink_url(url, name):
        """Removes the keyed throttle ``name`` from the Redis server at
        ``url``: :func:`unlink_url` (``mpt_throttle_unlink_url``, which
        removes a keyed or a plain throttle). The processes that use it, on
        every host, find it killed (their waits return False); a later
        :meth:`connect` makes a new one. MPT_STATUS_NOT_FOUND if the server
        has no such throttle."""
        unlink_url(url, name)

    def _init_state(self, max_n, per, hardcap, as_monitor, rf_rate):
        self.max_n, self.per, self.hardcap = max_n, per, hardcap
        self.as_monitor, self.refresh_rate = as_monitor, rf_rate
        self._capacity = None  # (mpt_keyed_get_config's, when the library has it)
        self._created = None
        self._handle = None
        self._closing = False
        self._busy = 0
        self._lock = threading.Lock()
        self._owner_pid = None
        self._pid = None  # the process that made the handle
        self._name = None
        self._url = None  # a Redis keyed throttle's (KeyedThrottle.connect)
        self._connect_config = None
        self._wait_options = {}

    def _adopt(self, handle, name, owner, adopt_config=False):
        """Takes ``handle``. ``owner``: whether this process stops it at the
        end of a ``with`` block (None: if the handle created it);
        ``adopt_config``: take the configuration from the library."""
        self._handle = handle
        self._name = name
        self._pid = os.getpid()
        with _live_lock:
            _live.add(self)
        self._read_config(handle, adopt_config)
        if owner is None:
            owner = self._created is not False
        self._owner_pid = os.getpid() if owner else None

    def _read_config(self, handle, adopt_config):
        """What ``mpt_keyed_get_config`` says of ``handle``: its capacity and
        whether it created the keyed throttle; with ``adopt_config`` also
        ``max_n``, ``per``, ``hardcap``, ``as_monitor`` and
        ``refresh_rate``. A library without the function leaves them all
        as they are (None for one opened by name)."""
        if "mpt_keyed_get_config" in _ffi.MISSING:
            return
        options = _ffi.mpt_options()  # (version 0: the 40 bytes of version 1)
        max_n, per, capacity, created = c_uint64(), c_double(), c_uint64(), c_bool()
        _ffi.call(
            "mpt_keyed_get_config",
            handle,
            byref(options),
            byref(max_n),
            byref(per),
            byref(capacity),
            byref(created),
        )
        self._capacity = capacity.value
        self._created = created.value
        if adopt_config:
            self.max_n, self.per = max_n.value, per.value
            self.hardcap = _HARDCAP_NAMES.get(options.hardcap, HARDCAP_NONE)
            self.as_monitor = bool(options.as_monitor)
            self.refresh_rate = options.refresh_s

    def _use(self, what):
        # As Throttle._use: close() waits for the calls in flight.
        return _Use(self, what)

    # ------------------------------------------------------------ lifecycle

    @property
    def name(self):
        """The name other processes open it by (or connect to, in Redis);
        None for an anonymous one."""
        return self._name

    @property
    def url(self):
        """The URL of the Redis server of one made by :meth:`connect`, as
        given; None for one in shared memory."""
        return self._url

    @property
    def capacity(self):
        """The most keys the table holds (as made); 0 for one in Redis (no
        bound: idle keys expire)."""
        if self._capacity is not None:
            return self._capacity
        return self.stats().capacity  # (a library without mpt_keyed_get_config)

    @property
    def created(self):
        """Whether this handle made the keyed throttle (the constructor; a
        :meth:`create_named` or :meth:`connect` that made the name) rather
        than opened or joined one that existed. None with a library from
        before ``mpt_keyed_get_config``."""
        return self._created

    @property
    def kill_flag(self):
        """The shared kill flag of the whole keyed throttle, as
        :attr:`Throttle.kill_flag`: ``kill_flag.is_set()``,
        ``kill_flag.set()`` (as :meth:`kill`), ``kill_flag.wait(timeout)``
        (see :class:`KillFlag`)."""
        return KillFlag(self)

    @property
    def closed(self):
        # (A Redis one's handle is None in a fork()ed child whose connect
        # failed: not closed, the next call connects again.)
        return self._closing or (self._handle is None and self._url is None)

    def close(self):
        """Releases this process's handle (``mpt_keyed_free``). Neither
        stops the keyed throttle nor removes its name (nor, for one in
        Redis, the throttle from the server). Safe to call twice; calls in
        flight in other threads finish first; later calls raise
        :class:`ThrottleError` (MPT_STATUS_BAD_HANDLE)."""
        with self._lock:
            if self.closed:
                return
            self._closing = True
            if self._busy == 0:
                self._free()

    def _free(self):
        # Called with self._lock held and no call in flight.
        handle, self._handle = self._handle, None
        if handle:
            _ffi.lib.mpt_keyed_free(handle)

    def __del__(self):
        try:
            if self._handle is None:
                return
            self._closing = True
            self._free()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        """Stops the keyed throttle if this process made it (the
        constructor, or a :meth:`create_named` that created the name) and
        it still runs, then closes it. One of :meth:`connect` is only
        closed, as a :class:`Throttle` of a Redis server is."""
        try:
            if self._owner_pid == os.getpid() and not self.closed and self.is_running():
                try:
                    self.stop()
                except ThrottleError as e:
                    if e.status != _ffi.STATUS_WRONG_STATE:  # stopped meanwhile
                        raise
        finally:
            self.close()
        return False

    def __reduce__(self):
        # A named one is pickled by reference: the receiving process opens
        # the name (or connects again, for one in Redis). An anonymous one
        # reaches other processes by fork() only.
        if self.closed:
            raise ThrottleError(_ffi.STATUS_BAD_HANDLE, "the KeyedThrottle is closed", "pickle")
        if self._url is not None:
            return (_reconnect_keyed, (self._url, self._name, self._connect_config))
        if self._name is None:
            raise TypeError(
                "an anonymous KeyedThrottle cannot be pickled (fork()ed children inherit it): "
                "make it with KeyedThrottle.create_named to share it by name"
            )
        return (_reopen_keyed, (self._name, dict(self._wait_options)))

    def __repr__(self):
        state = "closed" if self.closed else "open"
        label = f" {self._name!r}" if self._name is not None else ""
        where = f" at {_shown_url(self._url)}" if self._url is not None else ""
        rate = f" max_n={self.max_n} per={self.per}" if self.max_n is not None else ""
        return f"<mp_throttle.KeyedThrottle{label}{where}{rate} {state}>"

    # ------------------------------------------------------------ run

    def start(self):
        """Starts (or resumes) the keyed throttle: clears the kill flag and
        starts the monitor thread in this process. Keys keep their
        schedules across a stop and a start. MPT_STATUS_WRONG_STATE if it
        runs already."""
        with self._use("start") as handle:
            _ffi.call("mpt_keyed_start", handle)

    def stop(self):
        """Stops (pauses) the keyed throttle: sets the kill flag, wakes every
        waiter on every key in every process, and returns ``(runtime, total
        emissions, mean time between emissions, mean emissions per
        second)`` over every key (each grant is one emission)."""
        summary = _ffi.mpt_summary()
        with self._use("stop") as handle:
            _ffi.call("mpt_keyed_stop", handle, byref(summary))
        return _summary(summary)

    def kill(self):
        """Sets the kill flag: every waiter on every key, in every process,
        returns False at once, and so does every later :meth:`await_fuel`
        and :meth:`has_fuel`, until the next :meth:`start` (after a
        :meth:`stop`). It keeps running (its runtime counts) until
        :meth:`stop`."""
        with self._use("kill") as handle:
            _ffi.call("mpt_keyed_kill", handle)

    def is_running(self):
        """Whether the keyed throttle is started and not stopped."""
        flag = c_bool()
        with self._use("is_running") as handle:
            _ffi.call("mpt_keyed_is_running", handle, byref(flag))
        return flag.value

    # ------------------------------------------------------------ fuel

    def await_fuel(self, key, n=1, timeout=None):
        """Blocks until ``n`` units of the fuel of ``key`` are granted, all
        at once (True), ``timeout`` seconds pass (False; None: no limit) or
        the kill flag is set (False). Before :meth:`start` it waits for the
        start. ``n`` is at most what a key's tank holds (max_n; 1 with
        hardcap 'one'). Raises :class:`NoRoomError` for a new key that the
        table has no room for (nothing taken).

        In the main thread a blocking wait is interrupted by Ctrl-C, as
        :meth:`Throttle.await_fuel`'s: KeyboardInterrupt at once, having
        taken nothing."""
        return self.await_fuel_ns(key, n, timeout) is not None

    def await_fuel_ns(self, key, n=1, timeout=None):
        """As :meth:`await_fuel`, but returns the grant time (``CLOCK_MONOTONIC``
        ns, see :func:`clock_ns`) instead of True, and None instead of False."""
        key = _key_bytes(key)
        timeout = _timeout(timeout, "await_fuel")
        n = _uint(n, "n", 2**64, "await_fuel")
        main = timeout != 0 and _in_main_thread()
        deadline = time.monotonic() + timeout if main and timeout > 0 else None
        grant = c_int64()
        with self._use("await_fuel") as handle:
            if main or timeout == 0:
                # The main thread first asks without sleeping (see "Ctrl-C" above).
                status = self._take_now(handle, key, n, grant)
            else:
                status = _ffi.call(
                    "mpt_keyed_await_fuel",
                    handle,
                    key,
                    len(key),
                    n,
                    timeout,
                    byref(grant),
                    ok=_WAIT_OK,
                )
        if status == _ffi.STATUS_TIMEOUT and main:
            if deadline is not None:
                timeout = max(0.0, deadline - time.monotonic())
            status, grant.value = _await_interruptibly(self, self._cancellable(key, n, timeout))
        return grant.value if status == _ffi.STATUS_OK else None

    def has_fuel(self, key, n=1):
        """Takes ``n`` units of the fuel of ``key`` if its tank holds them
        now (True), else returns False (also when not started or killed);
        never blocks. Raises :class:`NoRoomError` for a new key that the
        table has no room for."""
        return self.has_fuel_ns(key, n) is not None

    def has_fuel_ns(self, key, n=1):
        """As :meth:`has_fuel`, but returns the grant time (ns) or None."""
        key = _key_bytes(key)
        n = _uint(n, "n", 2**64, "has_fuel")
        grant = c_int64()
        with self._use("has_fuel") as handle:
            status = self._take_now(handle, key, n, grant)
        return grant.value if status == _ffi.STATUS_OK else None

    @staticmethod
    def _take_now(handle, key, n, grant):
        """A wait of 0 s on ``key``: OK, TIMEOUT (no fuel now, or not
        running) or KILLED, as _take_now."""
        status = _ffi.call(
            "mpt_keyed_has_fuel",
            handle,
            key,
            len(key),
            n,
            byref(grant),
            ok=(_ffi.STATUS_OK, _ffi.STATUS_NO_FUEL, _ffi.STATUS_KILLED),
        )
        return _ffi.STATUS_TIMEOUT if status == _ffi.STATUS_NO_FUEL else status

    @staticmethod
    def _cancellable(key, n, timeout):
        """The helper thread's wait on ``key`` (see _Wait)."""

        def wait(handle, token, grant):
            return _ffi.call(
                "mpt_keyed_await_fuel_cancellable",
                handle,
                key,
                len(key),
                n,
                timeout,
                token,
                byref(grant),
                ok=_WAIT_OK + (_ffi.STATUS_CANCELLED,),
            )

        return wait

    async def acquire(self, key, n=1, timeout=None):
        """asyncio: ``await keyed.acquire(key)`` waits as :meth:`await_fuel`
        does, without blocking the event loop, as :meth:`Throttle.acquire`:
        the wait runs in a helper thread, and cancelling the task ends it at
        once, having taken nothing. Fuel there now is taken without a
        thread."""
        return await self._acquire(key, n, timeout) is not None

    async def acquire_ns(self, key, n=1, timeout=None):
        """As :meth:`acquire`, but returns the grant time (ns) or None."""
        return await self._acquire(key, n, timeout)

    async def _acquire(self, key, n, timeout):
        key = _key_bytes(key)
        timeout = _timeout(timeout, "acquire")
        n = _uint(n, "n", 2**64, "acquire")
        return await _acquire_with(
            self,
            "acquire",
            timeout,
            lambda handle, grant: self._take_now(handle, key, n, grant),
            self._cancellable(key, n, timeout),
        )

    def peek(self, key, n=1):
        """Looks at the tank of ``key`` without taking anything (and without
        adding the key): ``(level, wait)``, the units in it now and the
        seconds until ``n`` units would be granted to a waiter arriving now,
        after those already queued on the key (0.0: now). A key not in the
        table has a full tank. Raises :class:`ThrottleError`:
        MPT_STATUS_KILLED while the kill flag is set, MPT_STATUS_NOT_RUNNING
        before :meth:`start`."""
        key = _key_bytes(key)
        n = _uint(n, "n", 2**64, "peek")
        level, wait = c_uint64(), c_double()
        with self._use("peek") as handle:
            _ffi.call("mpt_keyed_peek", handle, key, len(key), n, byref(level), byref(wait))
        return (level.value, wait.value)

    def forget(self, key):
        """Drops ``key`` from the table, whatever its state: its next use
        starts afresh, as a key never seen (which may let through what its
        schedule still held back). Waiters asleep on it keep their grant
        times. Returns whether the key was in the table."""
        key = _key_bytes(key)
        found = c_bool()
        with self._use("forget") as handle:
            _ffi.call("mpt_keyed_forget", handle, key, len(key), byref(found))
        return found.value

    # ------------------------------------------------------------ statistics

    def key_stats(self, key):
        """The figures of ``key``: a :class:`KeyStats` ``(in_table, granted,
        since_ns)``."""
        key = _key_bytes(key)
        stats = _ffi.mpt_key_stats()
        with self._use("key_stats") as handle:
            _ffi.call("mpt_keyed_key_stats", handle, key, len(key), byref(stats))
        return KeyStats(bool(stats.in_table), int(stats.granted), int(stats.since_ns))

    def stats(self):
        """The figures of the whole keyed throttle: a :class:`KeyedStats`
        ``(live_keys, capacity, evictions, added, summary)``, ``summary``
        being what :meth:`stop` would return now."""
        stats = _ffi.mpt_keyed_stats()
        with self._use("stats") as handle:
            _ffi.call("mpt_keyed_get_stats", handle, byref(stats))
        return KeyedStats(
            int(stats.live_keys),
            int(stats.capacity),
            int(stats.evictions),
            int(stats.added),
            _summary(stats.summary),
        )

    def _rate(self, function):
        rate = _ffi.mpt_rate()
        with self._use(function) as handle:
            _ffi.call(function, handle, byref(rate))
        return (rate.seconds_between, rate.per_second)

    def latest(self):
        """The last second, over every key: ``(time between emissions,
        emissions per second)``. MPT_STATUS_MONITOR_OFF with
        ``as_monitor=False``."""
        return self._rate("mpt_keyed_latest")

    def mean(self):
        """The whole running time, over every key: ``(mean time between
        emissions, mean emissions per second)``."""
        return self._rate("mpt_keyed_mean")
