#!/bin/sh
# bindings/python/test.sh: runs the Python binding's tests (pytest).
#
#   MPT_LIB_DIR      directory of libmp_throttle.so.0 (default <repo>/target/release)
#   MPT_INCLUDE_DIR  directory of mp_throttle.h (default <repo>/include); the
#                    ctypes declarations are checked against it
#   CI               if set and non-empty, a missing python3 or pytest fails
#                    the run; otherwise a line "SKIPPED: why" and exit 77
#                    (skipped, as automake's tests say it; `make
#                    check-bindings` and `make test` report it)
#
# The Python: <repo>/.venv/bin/python (the virtual environment `make deps`
# makes, with pytest) when it exists and has pytest; else python3 from PATH
# if it has pytest; else SKIPPED.
#
# Then check_install.sh: `pip install ./bindings/python` into a new virtual
# environment, from a copy of the checkout, and example.py and
# example_asyncio.py run from outside it with neither PYTHONPATH nor
# MPT_LIB_DIR (see that script for MPT_PY_WHEELHOUSE, the build backend
# offline). Without cargo, venv or a source of the build backend it prints
# "SKIPPED: why" and the suite passes in part (fails if CI is set).
#   MPT_PY_CHECK_INSTALL=0  skips that step (saying SKIPPED).
#
# Any extra arguments go to pytest (e.g. -k tutorial, -x, -vv).
# Takes about 40 s, then 20 to 60 s for the install check; a hang of the
# tests is killed after 170 s.
set -u

case "$0" in
*/*) here=${0%/*} ;;
*) here=. ;;
esac
here=$(cd "$here" && pwd)
repo=$(cd "$here/../.." && pwd)
MPT_LIB_DIR=${MPT_LIB_DIR:-$repo/target/release}
MPT_INCLUDE_DIR=${MPT_INCLUDE_DIR:-$repo/include}
export MPT_LIB_DIR MPT_INCLUDE_DIR

missing() {
    if [ -n "${CI:-}" ]; then
        echo "bindings/python/test.sh: FAILED: $1 (CI is set)" >&2
        exit 1
    fi
    echo "SKIPPED: $1 (bindings/python tests not run)"
    exit 77
}

# has_pytest PYTHON: PYTHON runs, is 3.9 or later, and has pytest.
has_pytest() {
    "$1" -c 'import sys; sys.exit(sys.version_info < (3, 9))' >/dev/null 2>&1 &&
        "$1" -m pytest --version >/dev/null 2>&1
}
venv_python=$repo/.venv/bin/python
if [ -x "$venv_python" ] && has_pytest "$venv_python"; then
    python=$venv_python
else
    if [ -x "$venv_python" ]; then
        echo "bindings/python/test.sh: $venv_python has no pytest (or is older than 3.9):" \
            "trying python3 from PATH ('make deps' repairs the venv)" >&2
    fi
    command -v python3 >/dev/null 2>&1 || missing "python3 not found, nor .venv (run 'make deps')"
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null ||
        missing "python3 >= 3.9 not found"
    python3 -m pytest --version >/dev/null 2>&1 ||
        missing "pytest not found, neither in .venv nor for python3 (run 'make deps')"
    python=python3
fi

if [ ! -e "$MPT_LIB_DIR/libmp_throttle.so.0" ] && [ ! -e "$MPT_LIB_DIR/libmp_throttle.so" ]; then
    echo "bindings/python/test.sh: no libmp_throttle.so(.0) in MPT_LIB_DIR=$MPT_LIB_DIR" \
        "(build it with 'make lib', or point MPT_LIB_DIR at a build)" >&2
    exit 1
fi
if [ ! -e "$MPT_INCLUDE_DIR/mp_throttle.h" ]; then
    echo "bindings/python/test.sh: no mp_throttle.h in MPT_INCLUDE_DIR=$MPT_INCLUDE_DIR" >&2
    exit 1
fi

cd "$repo" || exit 1
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
PYTHONDONTWRITEBYTECODE=1
export PYTHONPATH PYTHONDONTWRITEBYTECODE

guard=""
if command -v timeout >/dev/null 2>&1; then
    guard="timeout --kill-after=10 170"
fi
# -p no:cacheprovider: write nothing into the checkout.
echo "== $("$python" -c 'import sys; print(sys.executable, sys.version.split()[0])')," \
    "$("$python" -m pytest --version 2>&1)"
$guard "$python" -m pytest -q -p no:cacheprovider bindings/python/tests "$@"
tests_status=$?

if [ "${MPT_PY_CHECK_INSTALL:-1}" = 0 ]; then
    echo "SKIPPED: MPT_PY_CHECK_INSTALL=0 (pip install ./bindings/python not checked)"
    exit "$tests_status"
fi
echo "== pip install ./bindings/python in a new venv (check_install.sh)"
PYTHON=$python sh "$here/check_install.sh"
install_status=$?
if [ "$tests_status" -ne 0 ]; then
    exit "$tests_status"
fi
case $install_status in
0 | 77) exit 0 ;; # 77: it printed "SKIPPED: why": passed in part
*) exit 1 ;;
esac
