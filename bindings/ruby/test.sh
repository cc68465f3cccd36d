#!/bin/sh
# Runs the Ruby binding's tests (minitest) and its example.
#
#   MPT_LIB_DIR      directory of libmp_throttle.so(.0)  (default: <repo>/target/release)
#   MPT_INCLUDE_DIR  directory of mp_throttle.h          (default: <repo>/include)
#   RUBY             the ruby to use                     (default: ruby)
#
# Needs Ruby >= 2.7 with the ffi gem and minitest (Debian: ruby ruby-ffi
# ruby-minitest) and a C compiler (the struct layout check). Without Ruby or
# its gems: fails if $CI is set, else prints SKIPPED and succeeds.
# Extra arguments go to minitest (e.g. -n /named/ -v).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
MPT_LIB_DIR=${MPT_LIB_DIR:-$repo/target/release}
MPT_INCLUDE_DIR=${MPT_INCLUDE_DIR:-$repo/include}
RUBY=${RUBY:-ruby}
export MPT_LIB_DIR MPT_INCLUDE_DIR

missing() {
    if [ -n "${CI:-}" ]; then
        echo "FAILED: $1 (needed by bindings/ruby; install ruby ruby-ffi ruby-minitest)" >&2
        exit 1
    fi
    echo "SKIPPED: $1 (bindings/ruby tests not run)"
    exit 0
}

command -v "$RUBY" >/dev/null 2>&1 || missing "ruby not found"
"$RUBY" -e 'exit(RUBY_VERSION >= "2.7" ? 0 : 1)' || missing "ruby >= 2.7 not found"
"$RUBY" -e 'require "ffi"' >/dev/null 2>&1 || missing "the ruby ffi gem not found"
"$RUBY" -e 'require "minitest"' >/dev/null 2>&1 || missing "the ruby minitest gem not found"

if [ ! -e "$MPT_LIB_DIR/libmp_throttle.so.0" ]; then
    echo "FAILED: $MPT_LIB_DIR/libmp_throttle.so.0 not found (build the library, or set MPT_LIB_DIR)" >&2
    exit 1
fi
if [ ! -e "$MPT_INCLUDE_DIR/mp_throttle.h" ]; then
    echo "FAILED: $MPT_INCLUDE_DIR/mp_throttle.h not found (set MPT_INCLUDE_DIR)" >&2
    exit 1
fi

cd "$here"
# One process runs every test file; a bound so that a hang fails, not blocks.
exec timeout --kill-after=10 110 "$RUBY" -w -I lib -I test \
    -e 'Dir[File.join(__dir__, "test", "test_*.rb")].sort.each { |f| require f }' -- "$@"
