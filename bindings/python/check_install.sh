#!/bin/sh
# bindings/python/check_install.sh: the package as a user installs it.
#
# In a temporary directory: a copy of the checkout (as a fresh clone has it:
# no target/, no .venv/, no build output), a new virtual environment
# (python -m venv, without the system's site-packages), then, in the copy,
#
#     pip install ./bindings/python
#
# (pyproject.toml: setuptools-rust runs cargo and puts libmp_throttle inside
# the package). Then, from a directory outside the copy, with neither
# PYTHONPATH nor MPT_LIB_DIR: `import mp_throttle` loads the library shipped
# in the installed package, the installed wheel's tag is a platform one
# (not py3-none-any), and example.py (the README's example) and
# example_asyncio.py run and print what they should. Run by test.sh after
# the tests; takes 20 to 60 s (a release build of the crate).
#
#   PYTHON                 the Python to make the venv with (default python3)
#   MPT_PY_WHEELHOUSE      a directory of wheels of the build backend
#                          (setuptools, setuptools-rust, their dependencies):
#                          pip then installs it from there, offline
#                          (--no-index). Default <repo>/.venv/wheelhouse if it
#                          holds a setuptools_rust wheel ('make deps'
#                          fills it); otherwise pip asks the package index,
#                          as it does for a user.
#   MPT_PY_CARGO_TARGET_DIR  cargo's output directory for the build (default:
#                          the copy's bindings/python/build/cargo, removed
#                          with it). CARGO_TARGET_DIR itself is ignored, so
#                          that the build never replaces the library of the
#                          checkout's build.
#   CI                     if set and non-empty, a missing cargo, venv or
#                          package index fails; otherwise "SKIPPED: why" and
#                          exit 77.
#   KEEP=1                 keep the temporary directory (its path is printed).
set -u

case "$0" in
*/*) here=${0%/*} ;;
*) here=. ;;
esac
here=$(cd "$here" && pwd)
repo=$(cd "$here/../.." && pwd)
python=${PYTHON:-python3}
# What test.sh sets for the tests; the install must not depend on it.
unset CARGO_TARGET_DIR PYTHONPATH MPT_LIB_DIR
say() { echo "check_install: $*"; }
fail() {
    echo "bindings/python/check_install.sh: FAILED: $*" >&2
    exit 1
}
missing() {
    if [ -n "${CI:-}" ]; then
        fail "$1 (CI is set)"
    fi
    echo "SKIPPED: $1 (pip install ./bindings/python not checked)"
    exit 77
}

command -v cargo >/dev/null 2>&1 || missing "cargo not found"
command -v "$python" >/dev/null 2>&1 || missing "$python not found"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mpt-py-install.XXXXXX") || fail "mktemp"
if [ "${KEEP:-}" = 1 ]; then
    say "keeping $tmp"
else
    trap 'rm -rf "$tmp"' EXIT
    trap 'exit 130' INT TERM
fi

# The copy: the checkout's files but its build output and environments.
mkdir "$tmp/src" "$tmp/run" || fail "mkdir"
(cd "$repo" && tar -cf - --exclude=./.git --exclude=./target --exclude=./.venv \
    --exclude=./build --exclude=./bindings/python/build \
    --exclude='./bindings/python/*.egg-info' --exclude='__pycache__' \
    --exclude='./bindings/python/mp_throttle/libmp_throttle*.so' .) |
    (cd "$tmp/src" && tar -xmf -) || fail "copying the checkout to $tmp/src"
# (-m: the copies are new files. With the original times, cargo would take
# an older build in MPT_PY_CARGO_TARGET_DIR, newer than a file edited since,
# for up to date: it compares times, and ignores where the sources are.)

"$python" -m venv "$tmp/venv" >"$tmp/venv.log" 2>&1 ||
    missing "$python -m venv failed ($(tail -n 1 "$tmp/venv.log"); Debian package python3-venv?)"
py=$tmp/venv/bin/python

# The build backend: from the wheelhouse (offline), else from the index.
wheelhouse=${MPT_PY_WHEELHOUSE:-$repo/.venv/wheelhouse}
set -- install --disable-pip-version-check --no-input
if ls "$wheelhouse"/setuptools_rust-*.whl >/dev/null 2>&1; then
    say "build backend from $wheelhouse (offline: --no-index)"
    set -- "$@" --no-index --find-links "$wheelhouse"
elif ! "$py" -m pip download --disable-pip-version-check --no-input --no-deps -q \
    -d "$tmp/probe" setuptools-rust >"$tmp/probe.log" 2>&1; then
    missing "no wheelhouse ($wheelhouse) and the package index does not answer ('make deps' fills the wheelhouse)"
else
    say "build backend from the package index (no wheelhouse in $wheelhouse)"
fi

if [ -n "${MPT_PY_CARGO_TARGET_DIR:-}" ]; then
    CARGO_TARGET_DIR=$MPT_PY_CARGO_TARGET_DIR
    export CARGO_TARGET_DIR
fi
guard=""
if command -v timeout >/dev/null 2>&1; then
    guard="timeout --kill-after=10 900"
fi

say "cd <copy> && pip install ./bindings/python (pip $("$py" -m pip --version | cut -d' ' -f2))"
if ! (cd "$tmp/src" && $guard "$py" -m pip "$@" ./bindings/python) >"$tmp/pip.log" 2>&1; then
    tail -n 40 "$tmp/pip.log" >&2
    fail "pip install ./bindings/python (the log's end above)"
fi
grep -E '^(Successfully|  Created wheel)' "$tmp/pip.log" | sed 's/ size=.*//; s/^ */check_install: /'

# From outside the copy, with no PYTHONPATH and no MPT_LIB_DIR.
cp "$repo/bindings/python/example.py" "$repo/bindings/python/example_asyncio.py" "$tmp/run/" ||
    fail "copying the examples"
cd "$tmp/run" || fail "cd $tmp/run"
"$py" - "$tmp/venv" <<'EOF' || fail "the installed package"
import os, sys
from importlib import metadata
import mp_throttle, mp_throttle._ffi as ffi
venv = os.path.realpath(sys.argv[1])
lib = os.path.realpath(ffi.lib_path)
pkg = os.path.dirname(os.path.realpath(mp_throttle.__file__))
assert pkg.startswith(venv + os.sep), f"mp_throttle imported from {pkg}, not from the venv"
assert os.path.dirname(lib) == pkg, f"library {lib} is not the one shipped in {pkg}"
tags = [l.split(":", 1)[1].strip() for l in metadata.distribution("mp_throttle").read_text("WHEEL").splitlines() if l.startswith("Tag:")]
assert tags and all("linux" in t.split("-")[-1] for t in tags), f"wheel tags {tags}: not a platform one"
print(f"check_install: import mp_throttle {mp_throttle.__version__}: {os.path.relpath(lib, venv)}"
      f" (library {'.'.join(map(str, mp_throttle.library_version()))}), wheel tag {', '.join(tags)}")
EOF

$guard "$py" example.py >example.out 2>example.err &
example=$!
$guard "$py" example_asyncio.py >asyncio.out 2>asyncio.err
asyncio_status=$?
wait "$example"
example_status=$?
for name in example asyncio; do
    sed "s/^/check_install: $name: /" "$name.out"
    if [ -s "$name.err" ]; then
        cat "$name.err" >&2
        fail "$name printed to stderr"
    fi
done
[ "$example_status" -eq 0 ] || fail "example.py exited with $example_status"
[ "$asyncio_status" -eq 0 ] || fail "example_asyncio.py exited with $asyncio_status"
# 4 per second for 2 s: 8 or 9 units (at 0, 0.25, ... 2 s); see tests/test_examples.py.
grep -Eqx '(8|9) units of fuel in 2\.[0-9][0-9] s' example.out ||
    fail "example.py: not '8 or 9 units of fuel in 2.xx s'"
printf '21 jobs done\nFalse\n' >asyncio.want
head -n 2 asyncio.out | cmp -s - asyncio.want && [ "$(wc -l <asyncio.out)" -eq 3 ] &&
    tail -n 1 asyncio.out | grep -Eqx '21 units of fuel in (2\.[4-9]|3\.[0-9]) s' ||
    fail "example_asyncio.py: not '21 jobs done', 'False', '21 units of fuel in 2.5 s'"
say "passed: pip install ./bindings/python, then example.py and example_asyncio.py outside the checkout"
