#!/usr/bin/env bash
# Tests of the Go binding (the module mp-throttle.dev/mpthrottle, in
# bindings/go/mpthrottle): gofmt, go vet, then go test five ways: dynamic
# link, every test; the race detector over the concurrency tests; static
# link (-tags mpt_static); the examples built as a user of an installed
# library builds them, with no flags (the library on the default search
# paths) and with its mp_throttle.pc on PKG_CONFIG_PATH (installed under
# another PREFIX). Last, a module outside the repository that requires the
# package with a replace directive, built as the README says.
#
# The package takes its flags from pkg-config (#cgo pkg-config: mp_throttle),
# so no include or library flag is set here: every step points
# PKG_CONFIG_PATH at an mp_throttle.pc made from mp_throttle.pc.in as
# `make install` makes it, for this build (or for a staged install of it).
#
#   MPT_LIB_DIR      dir with libmp_throttle.so, .so.0 and .a (default <repo>/target/release)
#   MPT_INCLUDE_DIR  dir with mp_throttle.h                     (default <repo>/include)
#
# Without Go, a C compiler or pkg-config: a line "SKIPPED: why" and exit 77
# (skipped, as automake's tests say it; `make check-bindings` and `make test`
# report it), or exit 1 if CI is set.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
pkg_dir=$here/mpthrottle
repo=$(cd "$here/../.." && pwd)
lib_dir=$(cd "${MPT_LIB_DIR:-$repo/target/release}" 2>/dev/null && pwd) || lib_dir=${MPT_LIB_DIR:-$repo/target/release}
include_dir=$(cd "${MPT_INCLUDE_DIR:-$repo/include}" 2>/dev/null && pwd) || include_dir=${MPT_INCLUDE_DIR:-$repo/include}
module=mp-throttle.dev/mpthrottle

missing() {
    if [ -n "${CI:-}" ]; then
        echo "bindings/go/test.sh: error: $1 not found (CI is set, so this is a failure)" >&2
        exit 1
    fi
    echo "SKIPPED: $1 not found: the Go binding was not tested"
    exit 77
}
command -v go >/dev/null 2>&1 || missing "go (the Go toolchain)"
command -v "${CC:-gcc}" >/dev/null 2>&1 || command -v cc >/dev/null 2>&1 ||
    missing "a C compiler (cgo needs one)"
command -v "${PKG_CONFIG:-pkg-config}" >/dev/null 2>&1 ||
    missing "pkg-config (the package's #cgo pkg-config directive runs it)"

for f in "$lib_dir/libmp_throttle.so" "$lib_dir/libmp_throttle.a" "$include_dir/mp_throttle.h" \
    "$repo/mp_throttle.pc.in"; do
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
pc() { "${PKG_CONFIG:-pkg-config}" "$@"; }

cd "$pkg_dir"
log=$(mktemp)
scratch=$(mktemp -d)
trap 'rm -rf "$log" "$scratch"' EXIT

# write_pc PREFIX LIBDIR INCLUDEDIR FILE: mp_throttle.pc as `make install`
# writes it (the Makefile's sed over mp_throttle.pc.in; a directory under
# PREFIX is written ${prefix}/...).
version=$(sed -n 's/^#define MPT_VERSION_STRING "\(.*\)"$/\1/p' "$include_dir/mp_throttle.h")
static_libs=$(sed -n 's/^STATIC_LIBS *:= *//p' "$repo/Makefile")
write_pc() {
    local prefix=$1 libdir=$2 includedir=$3
    case $libdir in "$prefix"/*) libdir="\${prefix}/${libdir#"$prefix"/}" ;; esac
    case $includedir in "$prefix"/*) includedir="\${prefix}/${includedir#"$prefix"/}" ;; esac
    mkdir -p "$(dirname "$4")"
    sed -e "s|@PREFIX@|$prefix|g" -e "s|@LIBDIR@|$libdir|g" -e "s|@INCLUDEDIR@|$includedir|g" \
        -e "s|@VERSION@|$version|g" -e "s|@LIBS_PRIVATE@|$static_libs|g" \
        "$repo/mp_throttle.pc.in" >"$4"
}
# The .pc of this build: the library and header where they are.
write_pc "$repo" "$lib_dir" "$include_dir" "$scratch/build/mp_throttle.pc"
export PKG_CONFIG_PATH="$scratch/build"
export LD_LIBRARY_PATH="$lib_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# Go's build cache notices neither a changed C header or library nor a
# changed pkg-config output (Go 1.19 does not hash it): a define that hashes
# them makes the package (and so the test binaries) rebuild and relink
# whenever they change. It is no include or library flag.
base_cflags=${CGO_CFLAGS:--O2 -g}
lib_hash=$(cat "$include_dir/mp_throttle.h" "$lib_dir/libmp_throttle.so" "$lib_dir/libmp_throttle.a" |
    sha256sum | cut -c1-16)
# key_cflags: CGO_CFLAGS for the pkg-config environment in force.
key_cflags() {
    local key
    key=$(printf '%s\n' "$lib_hash" "$(pc --cflags --libs mp_throttle)" \
        "$(pc --static --libs mp_throttle)" | sha256sum | cut -c1-16)
    echo "$base_cflags -DMPT_GO_TEST_KEY=$key"
}
CGO_CFLAGS=$(key_cflags)
export CGO_CFLAGS

echo "== go $(go env GOVERSION); library $lib_dir; header $include_dir"
echo "== pkg-config --cflags --libs mp_throttle: $(pc --cflags --libs mp_throttle)"
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

# Static: the test binaries must not need libmp_throttle.so: they run without
# LD_LIBRARY_PATH, and their dynamic section is checked when readelf is there.
# (A function run by step runs without set -e: each failure is returned.)
static_link() {
    local rc=0
    unset LD_LIBRARY_PATH
    go test -tags mpt_static -count=1 -v -timeout 100s \
        -run 'Example|Lifecycle|Named|Processes|ConcurrentErrorMessages|Redis' ./... || rc=1
    if command -v readelf >/dev/null 2>&1; then
        go test -tags mpt_static -c -o "$scratch/static.test" . || return 1
        if readelf -d "$scratch/static.test" | grep -q 'NEEDED.*libmp_throttle'; then
            echo "static link: the test binary needs libmp_throttle.so:" >&2
            readelf -d "$scratch/static.test" | grep NEEDED >&2
            return 1
        fi
        echo "static link: the test binary does not need libmp_throttle.so"
    fi
    return $rc
}
step "go test -tags mpt_static (static link)" static_link

# As a user of an installed library builds: no cgo flags at all. Installed
# in /usr, the library's mp_throttle.pc says only -lmp_throttle (pkg-config
# drops the system directories, emulated by PKG_CONFIG_SYSTEM_*_PATH) and the
# compiler finds the rest on its default search paths (emulated by CPATH and
# LIBRARY_PATH)...
examples_default_paths() {
    unset CGO_LDFLAGS
    export PKG_CONFIG_SYSTEM_INCLUDE_PATH="$include_dir" PKG_CONFIG_SYSTEM_LIBRARY_PATH="$lib_dir"
    local flags
    flags=$(pc --cflags --libs mp_throttle)
    if [ "$(echo $flags)" != "-lmp_throttle" ]; then
        echo "pkg-config did not drop the system directories: '$flags'" >&2
        return 1
    fi
    base_cflags="-O2 -g"
    CGO_CFLAGS=$(key_cflags)
    export CGO_CFLAGS
    export CPATH="$include_dir${CPATH:+:$CPATH}" LIBRARY_PATH="$lib_dir${LIBRARY_PATH:+:$LIBRARY_PATH}"
    go test -count=1 -v -run 'Example' ./...
}
step "the examples, with no cgo flags: the library on the default search paths" \
    examples_default_paths

# ... or installed elsewhere (`make install PREFIX=...`, staged here with
# links to this build): its mp_throttle.pc on PKG_CONFIG_PATH, its lib on
# LD_LIBRARY_PATH, and still no cgo flags.
prefix=$scratch/prefix
mkdir -p "$prefix/lib" "$prefix/include"
for f in libmp_throttle.so libmp_throttle.so.0 libmp_throttle.a; do
    ln -s "$lib_dir/$f" "$prefix/lib/$f"
done
ln -s "$include_dir/mp_throttle.h" "$prefix/include/mp_throttle.h"
write_pc "$prefix" "$prefix/lib" "$prefix/include" "$prefix/lib/pkgconfig/mp_throttle.pc"
examples_installed() {
    unset CGO_LDFLAGS
    export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
    export LD_LIBRARY_PATH="$prefix/lib"
    echo "pkg-config --cflags --libs mp_throttle: $(pc --cflags --libs mp_throttle)"
    base_cflags="-O2 -g"
    CGO_CFLAGS=$(key_cflags)
    export CGO_CFLAGS
    go test -count=1 -v -run 'Example' ./...
}
step "the examples, against a library installed under another PREFIX (PKG_CONFIG_PATH)" \
    examples_installed

# A module outside the repository, exactly as the README says: require the
# module, replace it by this checkout, go build. Only PKG_CONFIG_PATH (the
# .pc of this build, as for an installed library) and LD_LIBRARY_PATH are
# set: no cgo flags, no GOFLAGS. go build -a, the README's recipe after a
# library upgrade: without a cgo flag to key the cache on, the package could
# otherwise come from Go's build cache, built against an older header.
outside_module() {
    unset CGO_CFLAGS CGO_LDFLAGS CPATH LIBRARY_PATH C_INCLUDE_PATH GOFLAGS
    export PKG_CONFIG_PATH="$scratch/build"
    local user=$scratch/user out
    mkdir -p "$user"
    cat >"$user/go.mod" <<MOD
module example.com/fuel

go 1.19

require $module v0.0.0

replace $module => $pkg_dir
MOD
    cat >"$user/main.go" <<'GO'
package main

import (
	"context"
	"fmt"
	"log"
	"time"

	"mp-throttle.dev/mpthrottle"
)

func main() {
	th, err := mpthrottle.New(100, time.Second) // 100 units of fuel per second
	if err != nil {
		log.Fatal(err)
	}
	defer th.Close()
	if err := th.Start(); err != nil {
		log.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if err := th.AwaitFuel(context.Background()); err != nil {
			log.Fatal(err)
		}
	}
	s, err := th.Stop()
	if err != nil {
		log.Fatal(err)
	}
	major, minor, patch := mpthrottle.Version()
	fmt.Printf("header %s, library %d.%d.%d: %d units of fuel taken\n",
		mpthrottle.HeaderVersion, major, minor, patch, s.Total)
}
GO
    echo "go.mod:"
    sed 's/^/    /' "$user/go.mod"
    (cd "$user" && go build -a -o fuel .) || return 1
    out=$(cd "$user" && LD_LIBRARY_PATH=$(pc --variable=libdir mp_throttle) ./fuel) || return 1
    echo "$out"
    if [ "$out" = "header $version, library $version: 5 units of fuel taken" ]; then
        echo "--- PASS: OutsideModule (go build of a module that requires $module)"
    else
        echo "--- FAIL: OutsideModule: want 'header $version, library $version: 5 units of fuel taken'"
        return 1
    fi
}
step "a module outside the repository: require $module, replace it by this checkout" \
    outside_module

passed=$(grep -c -- '^\s*--- PASS' "$log" || true)
failed=$(grep -c -- '^\s*--- FAIL' "$log" || true)
echo "go: $passed passed, $failed failed"
[ "$fail" -eq 0 ] && [ "$failed" -eq 0 ]
