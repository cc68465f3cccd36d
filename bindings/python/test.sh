#!/bin/sh
# bindings/python/test.sh: runs the Python binding's tests (pytest).
#
#   MPT_LIB_DIR      directory of libmp_throttle.so.0 (default <repo>/target/release)
#   MPT_INCLUDE_DIR  directory of mp_throttle.h (default <repo>/include); the
#                    ctypes declarations are checked against it
#   CI               if set and non-empty, a missing python3 or pytest fails
#                    the run; otherwise it is reported as SKIPPED (exit 0)
#
# Any extra arguments go to pytest (e.g. -k tutorial, -x, -vv).
# Takes about 40 s; a hang is killed after 170 s.
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
        echo "bindings/python/test.sh: FAILED: $1 not found (CI is set)" >&2
        exit 1
    fi
    echo "SKIPPED: $1 not found (bindings/python tests not run)"
    exit 0
}

command -v python3 >/dev/null 2>&1 || missing python3
python3 -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null ||
    missing "python3 >= 3.9"
python3 -m pytest --version >/dev/null 2>&1 || missing "pytest (python3 -m pytest)"

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
exec $guard python3 -m pytest -q -p no:cacheprovider bindings/python/tests "$@"
