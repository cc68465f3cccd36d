#!/bin/sh
# check_install.sh: `make install` as a user of the library meets it. Run by
# `make check-install` (and `make test`); it tests the Makefile's install
# rule, so it installs what `make lib` builds (target/release, or
# $CARGO_TARGET_DIR/release) and the headers of include/.
#
# - make install PREFIX=<temporary prefix>: lib/libmp_throttle.so.VERSION a
#   regular file (mode 755, the built .so, SONAME libmp_throttle.so.ABI),
#   libmp_throttle.so.ABI -> it, libmp_throttle.so -> libmp_throttle.so.ABI,
#   lib/libmp_throttle.a, include/mp_throttle.h and .hpp (644, identical to
#   the sources), lib/pkgconfig/mp_throttle.pc; a second install over it works.
# - Versions: Cargo.toml's [package] version = the header's MPT_VERSION_MAJOR,
#   _MINOR, _PATCH, _STRING = the .pc's Version = the real file's name =
#   mpt_version() of the installed library (a C++ program using the installed
#   mp_throttle.hpp); MPT_ABI_VERSION = the major = the SONAME's number.
# - examples-c/tutorial.c built with nothing but pkg-config's flags
#   (PKG_CONFIG_PATH into the prefix):
#     dynamic: `pkg-config --cflags --libs`; NEEDED libmp_throttle.so.ABI,
#              which ldd resolves to the prefix's (LD_LIBRARY_PATH)
#     static:  `pkg-config --static --libs`, -lmp_throttle asking for the
#              archive (-l:libmp_throttle.a, as mp_throttle.pc says); no
#              dynamic dependency on libmp_throttle, mpt_ functions inside
#   both run and their output is checked by tests/check_examples.sh.
# - DESTDIR staging with PREFIX=/usr and a Debian-style LIBDIR: files land
#   under DESTDIR, the .pc names the final paths (relative to ${prefix});
#   `make uninstall` removes every file installed.
#
# (tests/abi.rs checks the exported symbols and the SONAME of the build;
# tests/header.rs the version macros against Cargo.toml at the source.)
set -u

root=$(cd "$(dirname "$0")/.." && pwd)
MAKE=${MAKE:-make}
# The installs below say where they go; nothing of a calling make (its
# command-line variables travel in MAKEFLAGS) or of the environment moves them.
unset MAKEFLAGS MFLAGS MAKELEVEL PREFIX DESTDIR LIBDIR INCLUDEDIR PKGCONFIGDIR NO_BUILD
release=${CARGO_TARGET_DIR:-$root/target}/release
case "$release" in /*) ;; *) release=$root/$release ;; esac

for tool in pkg-config cc c++ readelf ldd nm cmp; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        if [ -n "${CI:-}" ]; then
            echo "check_install: FAILED: $tool not found (CI is set)" >&2
            exit 1
        fi
        echo "check_install: SKIPPED: $tool not found"
        exit 0
    fi
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
lib=$prefix/lib
passed=0
failed=0

ok() { passed=$((passed + 1)); echo "ok: $1"; }
bad() { failed=$((failed + 1)); echo "FAIL: $1"; }
# check DESCRIPTION COMMAND...: the command must succeed.
check() {
    what=$1
    shift
    if "$@"; then ok "$what"; else bad "$what"; fi
}
# same DESCRIPTION GOT WANT
same() {
    if [ "$2" = "$3" ]; then ok "$1 ($2)"; else bad "$1: got '$2', want '$3'"; fi
}
mode_of() { stat -c %a "$1" 2>/dev/null; }
# The number a header macro is defined to (a string macro: without quotes).
macro() { sed -n "s/^#define $1 \"\{0,1\}\([^\"]*\)\"\{0,1\}\$/\1/p" "$2"; }
soname_of() { readelf -d "$1" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p'; }

version=$(sed -n '/^\[package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' "$root/Cargo.toml")
major=${version%%.*}
rest=${version#*.}
minor=${rest%%.*}
patch=${rest#*.}
echo "check_install: Cargo.toml says $version"
if [ -z "$version" ] || [ "$major.$minor.$patch" != "$version" ]; then
    echo "check_install: FAILED: cannot read the version of [package] in Cargo.toml" >&2
    exit 1
fi

# ------------------------------------------------------------ make install
install_log=$tmp/install.log
if ! "$MAKE" --no-print-directory -C "$root" install PREFIX="$prefix" DESTDIR= >"$install_log" 2>&1; then
    sed 's/^/    | /' "$install_log"
    echo "check_install: FAILED: make install PREFIX=$prefix"
    exit 1
fi
ok "make install PREFIX=$prefix"

header=$prefix/include/mp_throttle.h
abi=$(macro MPT_ABI_VERSION "$header")
real=$lib/libmp_throttle.so.$version

# ------------------------------------------------------------ files
check "libmp_throttle.so.$version is a regular file" test -f "$real" -a ! -L "$real"
same "mode of libmp_throttle.so.$version" "$(mode_of "$real")" 755
check "libmp_throttle.so.$version is the built library" cmp -s "$real" "$release/libmp_throttle.so"
same "libmp_throttle.so.$abi ->" "$(readlink "$lib/libmp_throttle.so.$abi")" "libmp_throttle.so.$version"
same "libmp_throttle.so ->" "$(readlink "$lib/libmp_throttle.so")" "libmp_throttle.so.$abi"
same "SONAME of the installed library" "$(soname_of "$real")" "libmp_throttle.so.$abi"
check "libmp_throttle.a is the built archive" cmp -s "$lib/libmp_throttle.a" "$release/libmp_throttle.a"
same "mode of libmp_throttle.a" "$(mode_of "$lib/libmp_throttle.a")" 644
for h in mp_throttle.h mp_throttle.hpp; do
    check "include/$h is the source's" cmp -s "$prefix/include/$h" "$root/include/$h"
    same "mode of include/$h" "$(mode_of "$prefix/include/$h")" 644
done
pc=$lib/pkgconfig/mp_throttle.pc
same "mode of lib/pkgconfig/mp_throttle.pc" "$(mode_of "$pc")" 644

# ------------------------------------------------------------ versions
same "MPT_VERSION_MAJOR" "$(macro MPT_VERSION_MAJOR "$header")" "$major"
same "MPT_VERSION_MINOR" "$(macro MPT_VERSION_MINOR "$header")" "$minor"
same "MPT_VERSION_PATCH" "$(macro MPT_VERSION_PATCH "$header")" "$patch"
same "MPT_VERSION_STRING" "$(macro MPT_VERSION_STRING "$header")" "$version"
same "MPT_ABI_VERSION is the major version" "$abi" "$major"

PKG_CONFIG_PATH=$lib/pkgconfig
export PKG_CONFIG_PATH
same "pkg-config finds the prefix's mp_throttle.pc" \
    "$(pkg-config --variable=pcfiledir mp_throttle 2>&1)" "$lib/pkgconfig"
check "pkg-config --validate mp_throttle" pkg-config --validate mp_throttle
same "mp_throttle.pc Version" "$(pkg-config --modversion mp_throttle 2>&1)" "$version"
cflags=$(pkg-config --cflags mp_throttle)
libs=$(pkg-config --libs mp_throttle)
static_libs=$(pkg-config --static --libs mp_throttle)
same "pkg-config --cflags" "$(echo $cflags)" "-I$prefix/include"
same "pkg-config --libs" "$(echo $libs)" "-L$lib -lmp_throttle"
case " $(echo $static_libs) " in
    " -L$lib -lmp_throttle -l"*) ok "pkg-config --static --libs adds Libs.private ($(echo $static_libs))" ;;
    *) bad "pkg-config --static --libs: '$static_libs'" ;;
esac

# ------------------------------------------------------------ builds
bin=$tmp/bin
mkdir -p "$bin"
# build DESCRIPTION COMMAND...: compile, showing the compiler's output on failure.
build() {
    what=$1
    shift
    if "$@" >"$tmp/build.log" 2>&1; then
        ok "$what"
        return 0
    fi
    bad "$what"
    sed 's/^/    | /' "$tmp/build.log"
    return 1
}
LD_LIBRARY_PATH=$lib
export LD_LIBRARY_PATH

# The C++ wrapper, and the versions the installed library reports.
cat >"$tmp/version.cpp" <<'EOF'
#include <mp_throttle.hpp>
#include <cstdio>
int main() {
    const mpt::Version v = mpt::version();
    std::printf("%u.%u.%u %d.%d.%d %s\n", v.major, v.minor, v.patch, MPT_VERSION_MAJOR,
                MPT_VERSION_MINOR, MPT_VERSION_PATCH, MPT_VERSION_STRING);
    return 0;
}
EOF
# shellcheck disable=SC2086 # pkg-config's flags are words
if build "C++17 program with the installed mp_throttle.hpp" \
    c++ -std=c++17 -Wall -Wextra -Werror -pedantic -o "$bin/version" "$tmp/version.cpp" $cflags $libs; then
    same "mpt_version() of the installed library, header macros" \
        "$("$bin/version" 2>&1)" "$version $version $version"
fi

# shellcheck disable=SC2086
build "tutorial.c, dynamic: cc \$(pkg-config --cflags --libs mp_throttle)" \
    cc -Wall -Wextra -Werror -O2 -o "$bin/tutorial" "$root/examples-c/tutorial.c" $cflags $libs
static_archive=$(echo " $static_libs " | sed 's/ -lmp_throttle / -l:libmp_throttle.a /')
# shellcheck disable=SC2086
build "tutorial.c, static: cc \$(pkg-config --static --libs mp_throttle) with -l:libmp_throttle.a" \
    cc -Wall -Wextra -Werror -O2 -o "$bin/tutorial-static" "$root/examples-c/tutorial.c" $cflags $static_archive

if [ -x "$bin/tutorial" ]; then
    needed=$(readelf -d "$bin/tutorial" | sed -n 's/.*(NEEDED).*\[\(libmp_throttle[^]]*\)\].*/\1/p')
    same "dynamic tutorial NEEDs" "$needed" "libmp_throttle.so.$abi"
    resolved=$(ldd "$bin/tutorial" | sed -n 's/^[[:space:]]*libmp_throttle[^ ]* => \([^ ]*\) .*/\1/p')
    same "ldd resolves it to the installed library" "$resolved" "$lib/libmp_throttle.so.$abi"
fi
if [ -x "$bin/tutorial-static" ]; then
    if readelf -d "$bin/tutorial-static" | grep -q 'libmp_throttle' ||
        ldd "$bin/tutorial-static" 2>&1 | grep -q 'libmp_throttle'; then
        bad "static tutorial depends on libmp_throttle dynamically"
    else
        ok "static tutorial has no dynamic dependency on libmp_throttle"
    fi
    check "static tutorial holds mpt_throttle_new" \
        sh -c "nm '$bin/tutorial-static' | grep -q ' T mpt_throttle_new\$'"
fi
if [ -x "$bin/tutorial" ] && [ -x "$bin/tutorial-static" ]; then
    if "$root/tests/check_examples.sh" "$bin/tutorial" "$bin/tutorial-static" >"$tmp/run.log" 2>&1; then
        ok "both tutorials run and print the expected summary"
    else
        bad "the tutorials' output"
    fi
    sed 's/^/    | /' "$tmp/run.log"
fi
unset LD_LIBRARY_PATH PKG_CONFIG_PATH

# ------------------------------------------------------------ again, staged, uninstall
check "make install again over the first (NO_BUILD=1)" \
    "$MAKE" --no-print-directory -s -C "$root" install PREFIX="$prefix" DESTDIR= NO_BUILD=1
same "libmp_throttle.so.$abi -> after reinstalling" "$(readlink "$lib/libmp_throttle.so.$abi")" \
    "libmp_throttle.so.$version"

stage=$tmp/stage
multiarch=/usr/lib/x86_64-linux-gnu
if "$MAKE" --no-print-directory -s -C "$root" install PREFIX=/usr LIBDIR="$multiarch" \
    DESTDIR="$stage" NO_BUILD=1 >"$install_log" 2>&1; then
    ok "make install PREFIX=/usr LIBDIR=$multiarch DESTDIR=..."
    same "staged libmp_throttle.so ->" "$(readlink "$stage$multiarch/libmp_throttle.so")" "libmp_throttle.so.$abi"
    check "staged libmp_throttle.so.$version, .a, headers" test -f "$stage$multiarch/libmp_throttle.so.$version" \
        -a -f "$stage$multiarch/libmp_throttle.a" -a -f "$stage/usr/include/mp_throttle.h" \
        -a -f "$stage/usr/include/mp_throttle.hpp"
    spc=$stage$multiarch/pkgconfig/mp_throttle.pc
    same "staged .pc prefix" "$(sed -n 's/^prefix=//p' "$spc")" /usr
    same "staged .pc libdir" "$(sed -n 's/^libdir=//p' "$spc")" "\${prefix}/lib/x86_64-linux-gnu"
    same "staged .pc includedir" "$(sed -n 's/^includedir=//p' "$spc")" "\${prefix}/include"
    same "staged .pc resolves libdir" \
        "$(PKG_CONFIG_PATH= pkg-config --variable=libdir "$spc" 2>&1)" "$multiarch"
    check "make uninstall (staged)" "$MAKE" --no-print-directory -s -C "$root" uninstall PREFIX=/usr \
        LIBDIR="$multiarch" DESTDIR="$stage"
    same "files left in the stage" "$(find "$stage" ! -type d | wc -l)" 0
else
    sed 's/^/    | /' "$install_log"
    bad "make install PREFIX=/usr LIBDIR=$multiarch DESTDIR=..."
fi

check "make uninstall PREFIX=$prefix" "$MAKE" --no-print-directory -s -C "$root" uninstall PREFIX="$prefix" DESTDIR=
left=$(find "$prefix" ! -type d)
same "files left in the prefix" "$left" ""

echo "check_install: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
