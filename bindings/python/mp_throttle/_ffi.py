"""The ctypes layer: loads libmp_throttle and declares every C function.

Nothing here knows about the Python API of ``mp_throttle``; it mirrors
``include/mp_throttle.h`` one to one (``tests/test_ffi.py`` checks every
prototype, struct and constant below against the header), and turns a failed
status into :class:`ThrottleError` (:class:`NoRoomError` for
MPT_STATUS_NO_ROOM).

The library is looked for, in order:

1. ``$MPT_LIB_DIR/libmp_throttle.so.0`` (then ``libmp_throttle.so``) if the
   environment variable ``MPT_LIB_DIR`` is set, and only there;
2. the library shipped inside this package, ``libmp_throttle*.so`` next to
   this file (``pip install ./bindings/python`` builds it and puts it there
   as ``libmp_throttle.abi3.so``; a checkout has none);
3. in a checkout of the repository (this package run from
   ``bindings/python``), what ``make lib`` built: ``target/release/
   libmp_throttle.so.0`` at the top of the checkout;
4. ``ctypes.util.find_library("mp_throttle")`` (the linker's search path);
5. ``libmp_throttle.so.0`` through the dynamic loader (``LD_LIBRARY_PATH``).

It needs library 0.2.0 or a later 0.x (checked at import, before anything
is bound); the Redis store's and the keyed throttles' functions
(:data:`NEWER`, library 0.2.0) are bound when the library has them.
ctypes releases the GIL during every foreign call, so a thread
blocked in ``mpt_await_fuel`` does not block the others. The library's
last-error message is per OS thread; a Python thread is one OS thread, and
:func:`call` reads the message right after the failing call, in the same
thread.
"""

import ctypes
import ctypes.util
import os
from ctypes import (
    POINTER,
    Structure,
    c_bool,
    c_char,
    c_char_p,
    c_double,
    c_int32,
    c_int64,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)

# ---------------------------------------------------------------- constants
# (the header's #defines and enums; checked against it by the tests)

ABI_VERSION = 0  # the N of libmp_throttle.so.N this module was written for
VERSION_MAJOR = 0
VERSION_MINOR = 2  # the oldest library version this binding works with: 0.2.0
FOREVER = -1.0
OPTIONS_VERSION = 2  # version 1 (40 bytes, no group_shared) is what 0.2.0 knows
OPTIONS_VERSION_1 = 1
AUTO_EMIT_DEFAULT = -1
MAX_NAME_LEN = 200
MAX_SPIN_S = 1.0
KEY_MAX = 128  # longest key of a keyed throttle, in bytes
KEYED_MAX_CAPACITY = 1 << 26  # most keys a keyed throttle holds
KEYED_MAX_N = 1 << 24  # largest max_n of a keyed throttle
KEYED_MAX_WINDOW = 1 << 16  # ... with HARDCAP_WINDOW

STATUS_OK = 0
STATUS_TIMEOUT = 1
STATUS_KILLED = 2
STATUS_NO_FUEL = 3
STATUS_NOT_RUNNING = 4
STATUS_NULL_POINTER = 5
STATUS_BAD_HANDLE = 6
STATUS_INVALID_ARGUMENT = 7
STATUS_WRONG_STATE = 8
STATUS_MONITOR_OFF = 9
STATUS_SYSTEM = 10
STATUS_UNSUPPORTED = 11
STATUS_CORRUPT = 12
STATUS_PANIC = 13
STATUS_NOT_FOUND = 14
STATUS_PERMISSION_DENIED = 15
STATUS_MISMATCH = 16
STATUS_CANCELLED = 17
STATUS_UNREACHABLE = 18
STATUS_NO_ROOM = 19

#: status code -> its name in the header (``MPT_STATUS_...``)
STATUS_NAMES = {
    value: "MPT_" + name
    for name, value in globals().items()
    if name.startswith("STATUS_") and isinstance(value, int)
}

HARDCAP_LIMIT = 0
HARDCAP_ONE = 1
HARDCAP_NONE = 2
HARDCAP_WINDOW = 3


# ---------------------------------------------------------------- types


class mpt_throttle(Structure):
    """The opaque handle type; only pointers to it are used."""


class mpt_cancel(Structure):
    """The opaque cancellation token type; only pointers to it are used."""


class mpt_keyed(Structure):
    """The opaque keyed throttle handle type; only pointers to it are used."""


class mpt_rate(Structure):
    _fields_ = [
        ("seconds_between", c_double),
        ("per_second", c_double),
    ]


class mpt_summary(Structure):
    _fields_ = [
        ("runtime_s", c_double),
        ("total", c_uint64),
        ("mean_seconds_between", c_double),
        ("mean_per_second", c_double),
    ]


class mpt_key_stats(Structure):
    _fields_ = [
        ("in_table", c_uint32),
        ("granted", c_uint64),
        ("since_ns", c_int64),
    ]


class mpt_keyed_stats(Structure):
    _fields_ = [
        ("live_keys", c_uint64),
        ("capacity", c_uint64),
        ("evictions", c_uint64),
        ("added", c_uint64),
        ("summary", mpt_summary),
    ]


class mpt_options(Structure):
    _fields_ = [
        ("version", c_uint32),
        ("as_throttle", c_uint32),
        ("as_monitor", c_uint32),
        ("auto_emit", c_int32),
        ("hardcap", c_uint32),
        ("timer_slack_ns", c_uint32),
        ("refresh_s", c_double),
        ("spin_s", c_double),
        ("group_shared", c_uint32),  # options version 2
    ]


HANDLE = POINTER(mpt_throttle)
CANCEL = POINTER(mpt_cancel)
KEYED = POINTER(mpt_keyed)
_status = c_int32

#: name -> (restype, argtypes), in the header's order.
PROTOTYPES = {
    "mpt_strerror": (c_char_p, [c_int32]),
    "mpt_last_error_message": (_status, [POINTER(c_char), c_size_t, POINTER(c_size_t)]),
    "mpt_cancel_new": (_status, [POINTER(CANCEL)]),
    "mpt_cancel_free": (_status, [CANCEL]),
    "mpt_cancel_fire": (_status, [CANCEL]),
    "mpt_cancel_reset": (_status, [CANCEL]),
    "mpt_await_fuel_cancellable": (_status, [HANDLE, c_uint64, c_double, CANCEL, POINTER(c_int64)]),
    "mpt_keyed_new": (
        _status,
        [c_uint64, c_double, c_uint64, POINTER(mpt_options), POINTER(KEYED)],
    ),
    "mpt_keyed_create_named": (
        _status,
        [c_char_p, c_uint64, c_double, c_uint64, POINTER(mpt_options), POINTER(KEYED)],
    ),
    "mpt_keyed_open": (_status, [c_char_p, POINTER(mpt_options), POINTER(KEYED)]),
    "mpt_keyed_connect": (
        _status,
        [c_char_p, c_char_p, c_uint64, c_double, POINTER(mpt_options), POINTER(KEYED)],
    ),
    "mpt_keyed_free": (_status, [KEYED]),
    "mpt_keyed_start": (_status, [KEYED]),
    "mpt_keyed_stop": (_status, [KEYED, POINTER(mpt_summary)]),
    "mpt_keyed_kill": (_status, [KEYED]),
    "mpt_keyed_is_running": (_status, [KEYED, POINTER(c_bool)]),
    "mpt_keyed_kill_flag_is_set": (_status, [KEYED, POINTER(c_bool)]),
    "mpt_keyed_get_config": (
        _status,
        [
            KEYED,
            POINTER(mpt_options),
            POINTER(c_uint64),
            POINTER(c_double),
            POINTER(c_uint64),
            POINTER(c_bool),
        ],
    ),
    "mpt_keyed_await_fuel": (
        _status,
        [KEYED, c_void_p, c_size_t, c_uint64, c_double, POINTER(c_int64)],
    ),
    "mpt_keyed_await_fuel_cancellable": (
        _status,
        [KEYED, c_void_p, c_size_t, c_uint64, c_double, CANCEL, POINTER(c_int64)],
    ),
    "mpt_keyed_has_fuel": (_status, [KEYED, c_void_p, c_size_t, c_uint64, POINTER(c_int64)]),
    "mpt_keyed_peek": (
        _status,
        [KEYED, c_void_p, c_size_t, c_uint64, POINTER(c_uint64), POINTER(c_double)],
    ),
    "mpt_keyed_forget": (_status, [KEYED, c_void_p, c_size_t, POINTER(c_bool)]),
    "mpt_keyed_key_stats": (_status, [KEYED, c_void_p, c_size_t, POINTER(mpt_key_stats)]),
    "mpt_keyed_get_stats": (_status, [KEYED, POINTER(mpt_keyed_stats)]),
    "mpt_keyed_latest": (_status, [KEYED, POINTER(mpt_rate)]),
    "mpt_keyed_mean": (_status, [KEYED, POINTER(mpt_rate)]),
    "mpt_latest": (_status, [HANDLE, POINTER(mpt_rate)]),
    "mpt_mean": (_status, [HANDLE, POINTER(mpt_rate)]),
    "mpt_lo_hi": (_status, [HANDLE, POINTER(mpt_rate)]),
    "mpt_hi_lo": (_status, [HANDLE, POINTER(mpt_rate)]),
    "mpt_get_summary": (_status, [HANDLE, POINTER(mpt_summary)]),
    "mpt_options_init": (_status, [POINTER(mpt_options), c_uint32]),
    "mpt_throttle_new": (_status, [c_uint64, c_double, POINTER(mpt_options), POINTER(HANDLE)]),
    "mpt_throttle_create_named": (
        _status,
        [c_char_p, c_uint64, c_double, POINTER(mpt_options), POINTER(HANDLE)],
    ),
    "mpt_throttle_open": (_status, [c_char_p, POINTER(mpt_options), POINTER(HANDLE)]),
    "mpt_throttle_unlink": (_status, [c_char_p]),
    "mpt_throttle_connect": (
        _status,
        [c_char_p, c_char_p, c_uint64, c_double, POINTER(mpt_options), POINTER(HANDLE)],
    ),
    "mpt_throttle_unlink_url": (_status, [c_char_p, c_char_p]),
    "mpt_throttle_free": (_status, [HANDLE]),
    "mpt_start": (_status, [HANDLE]),
    "mpt_stop": (_status, [HANDLE, POINTER(mpt_summary)]),
    "mpt_await_fuel": (_status, [HANDLE, c_double, POINTER(c_int64)]),
    "mpt_has_fuel": (_status, [HANDLE, POINTER(c_int64)]),
    "mpt_await_fuel_n": (_status, [HANDLE, c_uint64, c_double, POINTER(c_int64)]),
    "mpt_has_fuel_n": (_status, [HANDLE, c_uint64, POINTER(c_int64)]),
    "mpt_peek_fuel": (_status, [HANDLE, c_uint64, POINTER(c_uint64), POINTER(c_double)]),
    "mpt_set_rate": (_status, [HANDLE, c_uint64, c_double]),
    "mpt_get_rate": (_status, [HANDLE, POINTER(c_uint64), POINTER(c_double)]),
    "mpt_get_options": (_status, [HANDLE, POINTER(mpt_options)]),
    "mpt_throttle_created": (_status, [HANDLE, POINTER(c_bool)]),
    "mpt_emit": (_status, [HANDLE]),
    "mpt_emit_at": (_status, [HANDLE, c_int64]),
    "mpt_kill": (_status, [HANDLE]),
    "mpt_kill_flag_is_set": (_status, [HANDLE, POINTER(c_bool)]),
    "mpt_is_running": (_status, [HANDLE, POINTER(c_bool)]),
    "mpt_clock_now": (_status, [POINTER(c_int64)]),
    "mpt_version": (_status, [POINTER(c_uint32), POINTER(c_uint32), POINTER(c_uint32)]),
    "mpt_version_string": (c_char_p, []),
}

#: Functions newer than the oldest library this binding accepts (0.2.0),
#: with the version that brought them: a library that lacks one still
#: loads, without it (see :data:`MISSING` and :func:`require`), so that
#: everything else keeps working with an older library.
NEWER = {
    "mpt_throttle_connect": "0.2.0",
    "mpt_throttle_unlink_url": "0.2.0",
    # Keyed throttles (0.2.0, later still in its making): every one,
    # mpt_keyed_connect, mpt_keyed_get_config and mpt_keyed_kill_flag_is_set
    # (the last added) included, so that a build from before any of them
    # still loads, without what it lacks.
    **{name: "0.2.0" for name in PROTOTYPES if name.startswith("mpt_keyed_")},
}

#: The functions of :data:`NEWER` the loaded library lacks (filled at load).
MISSING = set()


# ---------------------------------------------------------------- errors


class ThrottleError(Exception):
    """A call into libmp_throttle failed.

    Attributes:

    - ``status``: the ``mpt_status`` code (an int, e.g. 7);
    - ``status_name``: its name in the header (``"MPT_STATUS_INVALID_ARGUMENT"``);
    - ``message``: what the library said went wrong, in words (its
      thread-local last-error message), or the binding's own words when the
      binding refused the call itself;
    - ``function``: the C function (or Python method) that failed.

    It derives from :class:`Exception`, which is what mp_throttle 0.0.5
    raised, so ``except Exception`` code keeps working.
    """

    def __init__(self, status, message, function=None):
        self.status = status
        self.status_name = STATUS_NAMES.get(status, f"status {status}")
        self.message = message
        self.function = function
        super().__init__(status, message, function)

    def __str__(self):
        where = f"{self.function}: " if self.function else ""
        return f"{where}{self.message} ({self.status_name}, status {self.status})"

    def __reduce__(self):
        return (type(self), (self.status, self.message, self.function))


class NoRoomError(ThrottleError):
    """MPT_STATUS_NO_ROOM: a keyed throttle's table has no room for a new
    key. It holds its capacity of keys (or the slots the key may go in are
    taken), and every one of them still holds back fuel, so none may be
    dropped for it (see the C ``mpt_keyed_new``). Nothing was taken. A
    :class:`ThrottleError` like any other (``status`` is
    :data:`STATUS_NO_ROOM`), so ``except ThrottleError`` catches it too."""


#: The statuses that raise a subclass of :class:`ThrottleError` (every
#: other failure raises ThrottleError itself).
ERRORS = {
    STATUS_NO_ROOM: NoRoomError,
}


# ---------------------------------------------------------------- loading


def _shipped():
    """The libraries shipped inside the package (``pip install`` puts one
    there: ``libmp_throttle.abi3.so``, or with another suffix)."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        names = os.listdir(here)
    except OSError:
        return []
    return [
        os.path.join(here, name)
        for name in sorted(names)
        if name.startswith("libmp_throttle") and name.endswith(".so")
    ]


def _candidates():
    # A generator: find_library (which runs ldconfig) only when needed.
    lib_dir = os.environ.get("MPT_LIB_DIR")
    if lib_dir:
        yield os.path.join(lib_dir, f"libmp_throttle.so.{ABI_VERSION}")
        yield os.path.join(lib_dir, "libmp_throttle.so")
        return
    yield from _shipped()
    here = os.path.dirname(os.path.abspath(__file__))
    top = os.path.dirname(os.path.dirname(os.path.dirname(here)))
    built = os.path.join(top, "target", "release", f"libmp_throttle.so.{ABI_VERSION}")
    if os.path.basename(os.path.dirname(os.path.dirname(here))) == "bindings" and os.path.exists(
        built
    ):
        yield built
    found = ctypes.util.find_library("mp_throttle")
    if found:
        yield found
    yield f"libmp_throttle.so.{ABI_VERSION}"


def _load():
    errors = []
    for path in _candidates():
        if os.sep in path and not os.path.exists(path):
            errors.append(f"{path}: no such file")
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            errors.append(str(e))
            continue
        _check_version(lib, path)
        for name, (restype, argtypes) in PROTOTYPES.items():
            try:
                fn = getattr(lib, name)
            except AttributeError:
                if name in NEWER:
                    MISSING.add(name)
                    continue
                raise ImportError(
                    f"mp_throttle: {path} has no {name}: a build older than this binding "
                    "(rebuild it, or reinstall the package)"
                ) from None
            fn.restype = restype
            fn.argtypes = argtypes
        return lib, path
    raise ImportError(
        "mp_throttle: cannot load libmp_throttle (install the package with "
        "`pip install ./bindings/python`, which ships the library inside it; or set "
        "MPT_LIB_DIR to the directory holding libmp_throttle.so.0, or install it on "
        "the loader's path): "
        + "; ".join(errors)
    )


def _check_version(lib, path):
    """Refuses a library older than this binding (a 0.1 library lacks the
    0.2 functions) or of another major version, before binding anything."""
    restype, argtypes = PROTOTYPES["mpt_version"]
    lib.mpt_version.restype = restype
    lib.mpt_version.argtypes = argtypes
    major, minor, patch = c_uint32(), c_uint32(), c_uint32()
    lib.mpt_version(ctypes.byref(major), ctypes.byref(minor), ctypes.byref(patch))
    found = (major.value, minor.value, patch.value)
    if found[0] != VERSION_MAJOR or found[1] < VERSION_MINOR:
        raise ImportError(
            f"mp_throttle: {path} is version {'.'.join(map(str, found))}; this binding needs "
            f"{VERSION_MAJOR}.{VERSION_MINOR}.0 or a later {VERSION_MAJOR}.x"
        )


lib, lib_path = _load()


def version():
    """The linked library's version, ``(major, minor, patch)``."""
    major, minor, patch = c_uint32(), c_uint32(), c_uint32()
    call("mpt_version", ctypes.byref(major), ctypes.byref(minor), ctypes.byref(patch))
    return (major.value, minor.value, patch.value)


def version_string():
    """The linked library's version as a string, ``"MAJOR.MINOR.PATCH"``."""
    return lib.mpt_version_string().decode("ascii", "replace")


def strerror(status):
    """The library's description of a status code."""
    return lib.mpt_strerror(status).decode("utf-8", "replace")


def last_error_message():
    """The calling thread's last error message (call it in the thread that failed)."""
    size = 512
    while True:
        buf = ctypes.create_string_buffer(size)
        n = c_size_t()
        if lib.mpt_last_error_message(buf, size, ctypes.byref(n)) != STATUS_OK:
            return ""
        if n.value < size:
            return buf.value.decode("utf-8", "replace")
        size = n.value + 1


def require(name, function=None):
    """Raises :class:`ThrottleError` (MPT_STATUS_UNSUPPORTED) if the loaded
    library lacks ``name``, one of :data:`NEWER`: the same status a library
    built without the feature returns, with the version that has it."""
    if name in MISSING:
        raise ThrottleError(
            STATUS_UNSUPPORTED,
            f"{lib_path} (version {version_string()}) has no {name}: it needs libmp_throttle "
            f"{NEWER[name]} or later",
            function or name,
        )


def call(name, *args, ok=(STATUS_OK,)):
    """Calls the C function ``name``; returns its status if it is in ``ok``,
    otherwise raises :class:`ThrottleError` (or the subclass :data:`ERRORS`
    names for the status) with the library's message, read in this same
    thread right after the call."""
    status = getattr(lib, name)(*args)
    if status in ok:
        return status
    message = last_error_message() or strerror(status)
    raise ERRORS.get(status, ThrottleError)(status, message, name)
