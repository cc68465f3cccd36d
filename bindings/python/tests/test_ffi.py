"""The ctypes declarations against the C header (MPT_INCLUDE_DIR, default
<repo>/include): every bound function's return and argument types, every
struct's fields, every constant. ctypes trusts what it is told, so a wrong
argtype would corrupt memory silently; this test is what catches it."""

import ctypes
import json
import os
import re
import secrets
import shutil
import subprocess
import sys

import pytest

from helpers import BINDING, HERE, REPO, child_env, include_dir
from mp_throttle import _ffi

HEADER = os.path.join(include_dir(), "mp_throttle.h")

# C type (const dropped, spaces normalised) -> ctypes type.
C_TYPES = {
    "int32_t": ctypes.c_int32,
    "uint32_t": ctypes.c_uint32,
    "int64_t": ctypes.c_int64,
    "uint64_t": ctypes.c_uint64,
    "double": ctypes.c_double,
    "size_t": ctypes.c_size_t,
    "bool": ctypes.c_bool,
    "mpt_status": ctypes.c_int32,
    "mpt_hardcap": ctypes.c_uint32,
    "struct mpt_throttle": _ffi.mpt_throttle,
    "struct mpt_cancel": _ffi.mpt_cancel,
    "struct mpt_keyed": _ffi.mpt_keyed,
    "struct mpt_key_stats": _ffi.mpt_key_stats,
    "struct mpt_keyed_stats": _ffi.mpt_keyed_stats,
    "struct mpt_rate": _ffi.mpt_rate,
    "struct mpt_summary": _ffi.mpt_summary,
    "struct mpt_options": _ffi.mpt_options,
}


def ctype_of(c_type):
    c_type = " ".join(c_type.replace("*", " * ").split())
    if c_type == "const char *":
        return ctypes.c_char_p  # a NUL-terminated string in (or a static one out)
    if c_type == "char *":
        return ctypes.POINTER(ctypes.c_char)  # a buffer the library writes
    c_type = c_type.replace("const ", "")
    if c_type == "void *":
        return ctypes.c_void_p  # a key: any bytes, with their length
    stars = c_type.count("*")
    result = C_TYPES[c_type.replace("*", "").strip()]
    for _ in range(stars):
        result = ctypes.POINTER(result)
    return result


@pytest.fixture(scope="module")
def header():
    with open(HEADER, encoding="utf-8") as f:
        return f.read()


@pytest.fixture(scope="module")
def functions(header):
    """name -> (return C type, [argument C types], since version)."""
    found = {}
    pattern = re.compile(
        r"/\*\*((?:(?!\*/).)*)\*/\s*(?:MPT_MUST_USE\s+)?([\w\s\*]+?)\s*\b(mpt_\w+)\(([^)]*)\);",
        re.S,
    )
    for doc, ret, name, params in pattern.findall(header):
        since = re.search(r"Since: (\d+\.\d+\.\d+)", doc)
        args = []
        for param in params.split(","):
            param = " ".join(param.split())
            if param == "void" and params.strip() == "void":  # f(void): no argument
                break
            m = re.fullmatch(r"(.+?[\s\*])(\w+)", param)
            assert m, (name, param)
            args.append(m[1].strip())
        found[name] = (ret.strip(), args, since and since[1])
    assert len(found) >= 34, sorted(found)
    return found


def test_every_bound_function_matches_the_header(functions):
    for name, (restype, argtypes) in _ffi.PROTOTYPES.items():
        assert name in functions, f"{name} is not in {HEADER}"
        ret, args, _ = functions[name]
        assert restype == ctype_of(ret), (name, ret)
        assert argtypes == [ctype_of(a) for a in args], (name, args)
        fn = getattr(_ffi.lib, name)
        assert fn.restype == restype and fn.argtypes == argtypes


def test_binding_covers_the_whole_api(functions):
    """Every function of the header is bound (0.2.0's additions included),
    and every one has its Since: line."""
    assert set(functions) == set(_ffi.PROTOTYPES)
    since = {name: v for name, (_, _, v) in functions.items()}
    assert None not in since.values(), since
    added = {
        "mpt_await_fuel_n", "mpt_has_fuel_n", "mpt_peek_fuel", "mpt_set_rate", "mpt_get_rate",
        "mpt_cancel_new", "mpt_cancel_free", "mpt_cancel_fire", "mpt_cancel_reset",
        "mpt_await_fuel_cancellable", "mpt_get_options", "mpt_throttle_created",
        "mpt_version_string", "mpt_throttle_connect", "mpt_throttle_unlink_url",
    } | {name for name in functions if name.startswith("mpt_keyed_")}
    assert len([name for name in functions if name.startswith("mpt_keyed_")]) == 20
    assert {name for name, v in since.items() if v == "0.2.0"} == added
    # The Redis store's and the keyed throttles' (0.2.0, late in its
    # making) are those a library may lack (NEWER), each with its version.
    assert _ffi.NEWER == {
        "mpt_throttle_connect": "0.2.0",
        "mpt_throttle_unlink_url": "0.2.0",
        **{name: "0.2.0" for name in functions if name.startswith("mpt_keyed_")},
    }
    assert all(since[name] == v for name, v in _ffi.NEWER.items())
    assert set(since.values()) == {"0.1.0", "0.2.0"}


def test_newer_functions_missing_from_the_library_are_refused(monkeypatch):
    """A library older than a NEWER function loads without it; the call
    that needs it raises MPT_STATUS_UNSUPPORTED, naming the version."""
    import mp_throttle

    assert _ffi.MISSING <= set(_ffi.NEWER)
    monkeypatch.setattr(_ffi, "MISSING", set(_ffi.NEWER))
    for call in (
        lambda: mp_throttle.Throttle.connect("redis://127.0.0.1:1", "x", 5, 1),
        lambda: mp_throttle.unlink_url("redis://127.0.0.1:1", "x"),
        lambda: mp_throttle.KeyedThrottle(5, 1, 10),
        lambda: mp_throttle.KeyedThrottle.create_named("x", 5, 1, 10),
        lambda: mp_throttle.KeyedThrottle.open("x"),
        lambda: mp_throttle.KeyedThrottle.connect("redis://127.0.0.1:1", "x", 5, 1),
    ):
        with pytest.raises(_ffi.ThrottleError) as e:
            call()
        assert e.value.status == _ffi.STATUS_UNSUPPORTED
        assert "0.2.0 or later" in e.value.message


#: The keyed functions added last (0.2.0): a build of the library from
#: before them must still load.
NEWEST_KEYED = ("mpt_keyed_connect", "mpt_keyed_get_config", "mpt_keyed_kill_flag_is_set")


def library_without(tmp_path, left_out):
    """A real libmp_throttle.so.0 that lacks the functions ``left_out``, as a
    build from before them would: this build's own archive
    (libmp_throttle.a, which `make lib` makes beside the .so in
    MPT_LIB_DIR), linked with a version script that exports every other
    function the binding knows. Returns its directory."""
    lib_dir = os.environ.get("MPT_LIB_DIR") or os.path.join(REPO, "target", "release")
    archive = os.path.join(lib_dir, "libmp_throttle.a")
    cc = os.environ.get("CC") or "cc"
    if not os.path.exists(archive) or shutil.which(cc) is None:
        why = f"no {archive} or no C compiler ({cc}): a library without {left_out} is not made"
        if os.environ.get("CI"):
            pytest.fail(why + " (CI is set)")
        pytest.skip(why)
    exported = sorted(set(_ffi.PROTOTYPES) - set(left_out))
    script = tmp_path / "exports.map"
    script.write_text("{ global: " + " ".join(f"{n};" for n in exported) + " local: *; };\n")
    out = tmp_path / "lib"
    out.mkdir()
    made = subprocess.run(
        [
            cc, "-shared", "-o", str(out / "libmp_throttle.so.0"),
            "-Wl,-soname,libmp_throttle.so.0",
            "-Wl,--whole-archive", archive, "-Wl,--no-whole-archive",
            f"-Wl,--version-script={script}",
            "-lutil", "-lrt", "-lpthread", "-lm", "-ldl", "-lc",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    return out


def test_a_library_without_the_newest_keyed_functions_still_loads(tmp_path):
    """A library that lacks mpt_keyed_connect, mpt_keyed_get_config and
    mpt_keyed_kill_flag_is_set (a real one: see library_without) loads:
    keyed throttles work, without what needs those three. Its KeyedThrottle
    knows what it was given, and nothing of one opened by name but its
    capacity (from the statistics); connect and kill_flag.is_set() raise
    MPT_STATUS_UNSUPPORTED, naming the version that has them."""
    lib_dir = library_without(tmp_path, NEWEST_KEYED)
    name = f"py-ffi-old-{os.getpid()}-{secrets.token_hex(4)}"
    code = f"""
import json
from mp_throttle import KeyedThrottle, Throttle, ThrottleError, _ffi
out = {{"lib": _ffi.lib_path, "missing": sorted(_ffi.MISSING)}}
k = KeyedThrottle(2, 60, 4)
k.start()
out["anonymous"] = [k.has_fuel("a"), k.has_fuel("a"), k.has_fuel("a"),
                    k.max_n, k.per, k.capacity, k.created]
a = KeyedThrottle.create_named({name!r}, 3, 30, 8, hardcap="one")
try:
    b = KeyedThrottle.open({name!r})
    out["opened"] = [b.max_n, b.per, b.hardcap, b.capacity, b.created]
    out["created_named"] = [a.max_n, a.per, a.hardcap, a.capacity, a.created,
                            a._owner_pid is not None]
    failures = {{}}
    for what, call in (
        ("connect", lambda: KeyedThrottle.connect("redis://127.0.0.1:1", "x", 2, 1)),
        ("kill_flag", lambda: b.kill_flag.is_set()),
    ):
        try:
            call()
            failures[what] = None
        except ThrottleError as e:
            failures[what] = [e.status_name, "0.2.0 or later" in e.message]
    out["failures"] = failures
    a.start()
    b.kill()
    out["killed"] = [a.has_fuel("z"), a.is_running()]
finally:
    KeyedThrottle.unlink({name!r})
print(json.dumps(out))
"""
    env = child_env(MPT_LIB_DIR=str(lib_dir))
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=HERE, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["lib"] == str(lib_dir / "libmp_throttle.so.0")
    assert out["missing"] == sorted(NEWEST_KEYED)
    assert out["anonymous"] == [True, True, False, 2, 60, 4, None]
    assert out["opened"] == [None, None, None, 8, None]
    # Taken as created, as before mpt_keyed_get_config: the with block
    # stops it.
    assert out["created_named"] == [3, 30, "one", 8, None, True]
    unsupported = ["MPT_STATUS_UNSUPPORTED", True]
    assert out["failures"] == {"connect": unsupported, "kill_flag": unsupported}
    assert out["killed"] == [False, True]


@pytest.mark.parametrize(
    "struct",
    [_ffi.mpt_rate, _ffi.mpt_summary, _ffi.mpt_options, _ffi.mpt_key_stats, _ffi.mpt_keyed_stats],
)
def test_structs_match_the_header(header, struct):
    m = re.search(
        r"typedef struct " + struct.__name__ + r" \{(.*?)\} " + struct.__name__ + ";", header, re.S
    )
    assert m, struct.__name__
    body = re.sub(r"/\*.*?\*/", "", m[1], flags=re.S)
    # "type name", the type perhaps of two words ("struct mpt_summary summary").
    fields = [f.split() for f in body.split(";") if f.strip()]
    assert [(f[-1], ctype_of(" ".join(f[:-1]))) for f in fields] == list(struct._fields_)


def test_constants_match_the_header(header):
    defines = dict(re.findall(r"#define (\w+) (\S+)", header))
    assert float(defines["MPT_FOREVER"]) == _ffi.FOREVER
    assert int(defines["MPT_OPTIONS_VERSION"]) == _ffi.OPTIONS_VERSION
    assert int(defines["MPT_AUTO_EMIT_DEFAULT"]) == _ffi.AUTO_EMIT_DEFAULT
    assert int(defines["MPT_MAX_NAME_LEN"]) == _ffi.MAX_NAME_LEN
    assert float(defines["MPT_MAX_SPIN_S"]) == _ffi.MAX_SPIN_S
    assert int(defines["MPT_KEY_MAX"]) == _ffi.KEY_MAX == 128
    shifts = {
        name: int(a) << int(b)
        for name, a, b in re.findall(r"#define (\w+) \((\d+) << (\d+)\)", header)
    }
    assert shifts["MPT_KEYED_MAX_CAPACITY"] == _ffi.KEYED_MAX_CAPACITY
    assert shifts["MPT_KEYED_MAX_N"] == _ffi.KEYED_MAX_N
    assert shifts["MPT_KEYED_MAX_WINDOW"] == _ffi.KEYED_MAX_WINDOW
    assert int(defines["MPT_ABI_VERSION"]) == _ffi.ABI_VERSION
    assert int(defines["MPT_VERSION_MAJOR"]) == _ffi.VERSION_MAJOR
    assert int(defines["MPT_VERSION_MINOR"]) >= _ffi.VERSION_MINOR
    enums = {name: int(value) for name, value in re.findall(r"\b(MPT_(?:STATUS|HARDCAP)_\w+) = (\d+)", header)}
    # The binding names every value of the header, with the header's number.
    known = {
        "MPT_" + name: value
        for name, value in vars(_ffi).items()
        if name.startswith(("STATUS_", "HARDCAP_")) and isinstance(value, int)
    }
    assert known == enums
    assert len(known) == 20 + 4 and known["MPT_STATUS_NO_ROOM"] == 19
    for code, name in _ffi.STATUS_NAMES.items():
        assert enums[name] == code


def test_strerror_and_version():
    assert _ffi.strerror(_ffi.STATUS_INVALID_ARGUMENT)
    assert _ffi.strerror(9999) == "unknown status"
    major, minor, patch = _ffi.version()
    assert major == _ffi.VERSION_MAJOR and minor >= _ffi.VERSION_MINOR == 2
    assert _ffi.version_string() == f"{major}.{minor}.{patch}"


class FakeLibrary:
    """Stands in for a libmp_throttle of another version (mpt_version only)."""

    def __init__(self, version):
        library = self

        class Function:
            def __call__(self, *pointers):
                for pointer, value in zip(pointers, library.version):
                    pointer._obj.value = value  # (what ctypes.byref points to)
                return _ffi.STATUS_OK

        self.version = version
        self.mpt_version = Function()


@pytest.mark.parametrize("version", [(0, 1, 0), (0, 1, 9), (1, 2, 0), (1, 0, 0)])
def test_older_or_other_major_library_is_refused(version):
    with pytest.raises(ImportError) as e:
        _ffi._check_version(FakeLibrary(version), "/x/libmp_throttle.so.0")
    assert ".".join(map(str, version)) in str(e.value) and "0.2.0" in str(e.value)


@pytest.mark.parametrize("version", [(0, 2, 0), (0, 2, 7), (0, 3, 0)])
def test_newer_minor_library_is_accepted(version):
    _ffi._check_version(FakeLibrary(version), "/x/libmp_throttle.so.0")


def _lib_path_in_child(env):
    code = "import mp_throttle._ffi as f; print(f.lib_path)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=HERE, env=env, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_where_the_library_is_loaded_from(tmp_path):
    """MPT_LIB_DIR decides alone when set; without it, a library shipped in
    the package (as `pip install` puts it) comes first, then the checkout's
    target/release. (check_install.sh checks the installed package.)"""
    env = child_env()
    assert _lib_path_in_child(env) == os.path.join(env["MPT_LIB_DIR"], "libmp_throttle.so.0")
    # A copy of the package with a library shipped in it, as installed.
    pkg = tmp_path / "site" / "mp_throttle"
    shutil.copytree(os.path.join(BINDING, "mp_throttle"), pkg)
    lib = os.path.realpath(os.path.join(env["MPT_LIB_DIR"], "libmp_throttle.so.0"))
    shutil.copyfile(lib, pkg / "libmp_throttle.abi3.so")
    env["PYTHONPATH"] = str(tmp_path / "site")
    assert _lib_path_in_child(env) == os.path.join(env["MPT_LIB_DIR"], "libmp_throttle.so.0")
    del env["MPT_LIB_DIR"]
    assert _lib_path_in_child(env) == str(pkg / "libmp_throttle.abi3.so")
    # The checkout's package, not installed: what `make lib` built, if it did.
    built = os.path.join(REPO, "target", "release", "libmp_throttle.so.0")
    if os.path.exists(built):
        env["PYTHONPATH"] = BINDING
        assert _lib_path_in_child(env) == built
