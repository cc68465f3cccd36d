#!/usr/bin/env bash
# Tests of the Go binding: gofmt, go vet, then go test five ways: dynamic
# link, every test; the race detector over the concurrency tests; static
# link (-tags mpt_static); the examples built as a user of an installed
# library builds them, with no flags (the library on the default search
# paths) and with the flags of a pkg-config file.
#
#   MPT_LIB_DIR      dir with libmp_throttle.so, .so.0 and .a (default <repo>/target/release)
#   MPT_INCLUDE_DIR  dir with mp_throttle.h                     (default <repo>/include)
#
# Without Go or a C compiler: "SKIPPED" and exit 0, or exit 1 if CI is set.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
lib_dir=$(cd "${MPT_LIB_DIR:-$repo/target/release}" 2>/dev/null && pwd) || lib_dir=${MPT_LIB_DIR:-$repo/target/release}
include_dir=$(cd "${MPT_INCLUDE_DIR:-$repo/include}" 2>/dev/null && pwd) || include_dir=${MPT_INCLUDE_DIR:-$repo/include}

missing() {
    if [ -n "${CI:-}" ]; then
        echo "bindings/go/test.sh: error: $1 not found (CI is set, so this is a failure)" >&2
        exit 1
    fi
    echo "SKIPPED: $1 not found: the Go binding was not tested"
    exit 0
}
command -v go >/dev/null 2>&1 || missing "go (the Go toolchain)"
command -v "${CC:-gcc}" >/dev/null 2>&1 || command -v cc >/dev/null 2>&1 ||
    missing "a C compiler (cgo needs one)"

for f in "$lib_dir/libmp_throttle.so" "$lib_dir/libmp_throttle.a" "$include_dir/mp_throttle.h"; do
    if [ ! -e "$f" ]; then
        echo "bindings/go/test.sh: error: $f is missing: run 'make lib' at the top of the repository," \
            "or set MPT_LIB_DIR / MPT_INCLUDE_DIR" >&2
        exit 1
    fi
done

# Private caches when HOME cannot hold them.
if [ -z "${HOME:-}" ] || [ ! -w "${HOME}" ]; then
    private=/tmp/mpt-go-$(id -u)
    mkdir -p "$private"
    export GOCACHE="$private/cache" GOPATH="$private/path"
fi
# No module downloads: the module has no requirements.
export GOFLAGS=-mod=mod GOPROXY=off GOSUMDB=off GOTOOLCHAIN=local CGO_ENABLED=1
# Go's build cache does not notice a changed C header or library: a define
# that hashes them makes the package (and so the test binaries) rebuild and
# relink whenever the library does.
key="-DMPT_GO_TEST_KEY=$(cat "$include_dir/mp_throttle.h" "$lib_dir/libmp_throttle.so" \
    "$lib_dir/libmp_throttle.a" | sha256sum | cut -c1-16)"
export CGO_CFLAGS="${CGO_CFLAGS:--O2 -g} $key -I$include_dir"
base_ldflags=${CGO_LDFLAGS:-}
export CGO_LDFLAGS="$base_ldflags -L$lib_dir -Wl,-rpath,$lib_dir"

cd "$here"
log=$(mktemp)
scratch=$(mktemp -d)
trap 'rm -rf "$log" "$scratch"' EXIT

echo "== go $(go env GOVERSION); library $lib_dir; header $include_dir"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
    echo "gofmt: these files need formatting:" >&2
    echo "$unformatted" >&2
    exit 1
fi
go vet ./...
go vet -tags mpt_static ./...

fail=0
# step TITLE CMD...: runs one go test (a command, or a function, which runs in
# a subshell: its exports stay there), logging its output; a failure is
# counted, and the next steps still run.
step() {
    echo "== $1"
    shift
    "$@" 2>&1 | tee -a "$log" || fail=1
}

step "go test (dynamic link)" go test -count=1 -v -timeout 100s ./...
step "go test -race (the concurrency tests)" go test -race -count=1 -v -timeout 100s \
    -run 'Concurrent|Close|Cancel|Kill|Finalizer|Lifecycle|Named|Deadline|Fair|Tokens|SetRate|Peek' ./...
step "go test -tags mpt_static (static link)" go test -tags mpt_static -count=1 -v -timeout 100s \
    -run 'Example|Lifecycle|Named|Processes|ConcurrentErrorMessages' ./...

# As a user of an installed library builds: no cgo flags at all, the library
# being on the compiler's default search paths (emulated by CPATH and
# LIBRARY_PATH)...
examples_default_paths() {
    unset CGO_LDFLAGS
    export CGO_CFLAGS="-O2 -g $key"
    export CPATH="$include_dir${CPATH:+:$CPATH}" LIBRARY_PATH="$lib_dir${LIBRARY_PATH:+:$LIBRARY_PATH}"
    export LD_LIBRARY_PATH="$lib_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    go test -count=1 -v -run 'Example' ./...
}
step "the examples, with no cgo flags: the library on the default search paths" \
    examples_default_paths

# ... or with the flags of its mp_throttle.pc (as `make install` writes it).
examples_pkg_config() {
    cat >"$scratch/mp_throttle.pc" <<PC
libdir=$lib_dir
includedir=$include_dir

Name: mp_throttle
Description: throttle and monitor many workers
Version: $(sed -n 's/^#define MPT_VERSION_STRING "\(.*\)"$/\1/p' "$include_dir/mp_throttle.h")
Cflags: -I\${includedir}
Libs: -L\${libdir} -lmp_throttle
PC
    export PKG_CONFIG_PATH="$scratch"
    export CGO_CFLAGS="-O2 -g $key $(pkg-config --cflags mp_throttle)"
    export CGO_LDFLAGS="$base_ldflags $(pkg-config --libs mp_throttle)"
    export LD_LIBRARY_PATH="$(pkg-config --variable=libdir mp_throttle)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    go test -count=1 -v -run 'Example' ./...
}
if command -v pkg-config >/dev/null 2>&1; then
    step "the examples, built with the flags of mp_throttle.pc" \
        examples_pkg_config
else
    echo "(pkg-config not found: the pkg-config recipe was not checked; the other runs were)"
fi

passed=$(grep -c -- '^\s*--- PASS' "$log" || true)
failed=$(grep -c -- '^\s*--- FAIL' "$log" || true)
echo "go: $passed passed, $failed failed"
[ "$fail" -eq 0 ] && [ "$failed" -eq 0 ]
