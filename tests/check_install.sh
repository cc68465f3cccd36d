#!/bin/sh
# check_install.sh: `make install` as a user of the library meets it. Run by
# `make check-install` (and `make test`); it tests the Makefile's install
# rule, so it installs what `make lib` builds (target/release, or
# $CARGO_TARGET_DIR/release) and the headers of include/.
#
# - make install PREFIX=<temporary prefix>: lib/libmp_throttle.so.VERSION a
#   regular file (mode 755, the built .so stripped: no .debug_ section,
#   smaller, the same dynamic symbols, SONAME libmp_throttle.so.ABI),
#   libmp_throttle.so.ABI -> it, libmp_throttle.so -> libmp_throttle.so.ABI,
#   lib/libmp_throttle.a (644, no .debug_ section, and its only global
#   symbols are the built archive's mpt_ functions), include/mp_throttle.h
#   and .hpp (644, identical to the sources), lib/pkgconfig/mp_throttle.pc,
#   lib/cmake/mp_throttle/mp_throttleConfig.cmake and
#   mp_throttleConfigVersion.cmake; bin/mpt (755, stripped: no .debug_info; runs: creates,
#   starts, grants, removes), share/man/man1/mpt.1 and mpt-SUBCOMMAND.1,
#   mpt's bash, zsh and fish completions; a second install over it works.
# - Versions: Cargo.toml's [package] version = the header's MPT_VERSION_MAJOR,
#   _MINOR, _PATCH, _STRING = the .pc's Version = the real file's name =
#   mpt_version() and mpt_version_string() of the installed library (a C++
#   program using the installed mp_throttle.hpp); MPT_ABI_VERSION = the
#   major = the SONAME's number.
# - examples-c/tutorial.c built with nothing but pkg-config's flags
#   (PKG_CONFIG_PATH into the prefix):
#     dynamic: `pkg-config --cflags --libs`; NEEDED libmp_throttle.so.ABI,
#              which ldd resolves to the prefix's (LD_LIBRARY_PATH)
#     static:  `pkg-config --static --libs`, -lmp_throttle asking for the
#              archive (-l:libmp_throttle.a, as mp_throttle.pc says); no
#              dynamic dependency on libmp_throttle, mpt_ functions inside
#     fully static: `cc -static ... $(pkg-config --static --libs)` as is
#              (Libs.private names no -lgcc_s); no dynamic section at all
#   each runs and its output is checked by tests/check_examples.sh.
# - CMake: a project in a temporary directory (examples-c/tutorial.c, one
#   executable per imported target) configured with
#   -DCMAKE_PREFIX_PATH=<prefix> finds mp_throttle MAJOR.MINOR (find_package
#   and the version file), builds against mp_throttle::mp_throttle (NEEDED
#   libmp_throttle.so.ABI) and mp_throttle::mp_throttle_static (no such
#   dependency); both run and are checked as above. A newer minor or the
#   next major is refused. Without cmake: a line "check_install: SKIPPED:
#   cmake not found ..." and the rest still runs (a failure if CI is set).
# - DESTDIR staging with PREFIX=/usr and a Debian-style LIBDIR: files land
#   under DESTDIR, the .pc names the final paths (relative to ${prefix}), the
#   CMake files too (absolute);
#   `make uninstall` removes every file installed.
# - ldconfig: an install into the temporary prefix (which the dynamic linker
#   does not search) prints the hint and runs no ldconfig; with a stand-in
#   LDCONFIG that lists the prefix as searched, the install runs it when root
#   (else says to run it); a staged install (DESTDIR) never runs it.
#
# Without one of the tools it needs: a line "check_install: SKIPPED: why" and
# exit 77 (skipped: `make check-install` and `make test` report it), or exit 1
# if CI is set.
#
# (tests/abi.rs checks the exported symbols and the SONAME of the build;
# tests/header.rs the version macros against Cargo.toml at the source.)
set -u

root=$(cd "$(dirname "$0")/.." && pwd)
MAKE=${MAKE:-make}
# The installs below say where they go; nothing of a calling make (its
# command-line variables travel in MAKEFLAGS) or of the environment moves them.
unset MAKEFLAGS MFLAGS MAKELEVEL PREFIX DESTDIR LIBDIR INCLUDEDIR PKGCONFIGDIR NO_BUILD LDCONFIG
release=${CARGO_TARGET_DIR:-$root/target}/release
case "$release" in /*) ;; *) release=$root/$release ;; esac

for tool in pkg-config cc c++ readelf ldd nm cmp ld objcopy strip ar md5sum; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        if [ -n "${CI:-}" ]; then
            echo "check_install: FAILED: $tool not found (CI is set)" >&2
            exit 1
        fi
        echo "check_install: SKIPPED: $tool not found"
        exit 77
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
# The number of DWARF sections (.debug_*, .zdebug_*) of a file (of every
# member of an archive).
debug_sections() { readelf -SW "$1" 2>/dev/null | grep -cE '\] \.z?debug_'; }
# The global (and weak) symbols a file (every member of an archive) defines,
# sorted, one a line. Through readelf: `nm -g --defined-only` reads the Rust
# standard library's members through an LLVM plugin when one is installed
# (/usr/lib/bfd-plugins), which may find no symbol in them.
global_defined() {
    readelf -sW "$1" 2>/dev/null |
        awk 'NF >= 8 && ($5 == "GLOBAL" || $5 == "WEAK") && $7 != "UND" { print $8 }' | sort
}
# The dynamic symbols a shared library defines, sorted.
dynamic_defined() {
    readelf --dyn-syms -W "$1" 2>/dev/null | awk 'NF >= 8 && $7 != "UND" { print $8 }' | sort
}
size_of() { stat -c %s "$1" 2>/dev/null; }

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

# ------------------------------------------------------------ ldconfig
check "make install into a prefix the dynamic linker does not search says so, once" \
    test "$(grep -c -F "install: $lib is not searched by the dynamic linker" "$install_log")" = 1
check "... and runs no ldconfig" sh -c "! grep -q '^ldconfig' '$install_log'"
# A stand-in ldconfig: lists the prefix's lib as a searched directory (-v)
# and notes every other run.
fake_ldconfig=$tmp/ldconfig
cat >"$fake_ldconfig" <<EOF
#!/bin/sh
case "\$1" in
-v) echo "$lib: (from the stand-in)" ;;
*) echo "ldconfig \$*" >>"$tmp/ldconfig.runs" ;;
esac
EOF
chmod +x "$fake_ldconfig"
"$MAKE" --no-print-directory -s -C "$root" install PREFIX="$prefix" DESTDIR= NO_BUILD=1 \
    LDCONFIG="$fake_ldconfig" >"$tmp/ldconfig.log" 2>&1
if [ "$(id -u)" -eq 0 ]; then
    same "as root, into a searched LIBDIR: make install runs ldconfig" \
        "$(cat "$tmp/ldconfig.runs" 2>/dev/null)" "ldconfig "
else
    check "not root, into a searched LIBDIR: make install runs no ldconfig" test ! -e "$tmp/ldconfig.runs"
    check "... and says to run it" grep -q "sudo ldconfig" "$tmp/ldconfig.log"
fi
rm -f "$tmp/ldconfig.runs"
"$MAKE" --no-print-directory -s -C "$root" install PREFIX="$prefix" DESTDIR="$tmp/ldconfig-stage" \
    NO_BUILD=1 LDCONFIG="$fake_ldconfig" >"$tmp/ldconfig.log" 2>&1
check "staged (DESTDIR): make install runs no ldconfig" test ! -e "$tmp/ldconfig.runs"
check "... and says when to run it" grep -q "staged under DESTDIR" "$tmp/ldconfig.log"
rm -rf "$tmp/ldconfig-stage"

header=$prefix/include/mp_throttle.h
abi=$(macro MPT_ABI_VERSION "$header")
real=$lib/libmp_throttle.so.$version

# ------------------------------------------------------------ files
check "libmp_throttle.so.$version is a regular file" test -f "$real" -a ! -L "$real"
same "mode of libmp_throttle.so.$version" "$(mode_of "$real")" 755
# The build's, stripped (the build's keeps its debug info): no DWARF,
# smaller, the same exports.
same "DWARF sections of the installed libmp_throttle.so.$version" "$(debug_sections "$real")" 0
check "... the built one has some (the install strips, not the build)" \
    test "$(debug_sections "$release/libmp_throttle.so")" -gt 0
check "... smaller: $(size_of "$real") bytes, the build's $(size_of "$release/libmp_throttle.so")" \
    test "$(size_of "$real")" -lt "$(size_of "$release/libmp_throttle.so")"
same "... its dynamic symbols are the built library's ($(dynamic_defined "$real" | wc -l))" \
    "$(dynamic_defined "$real" | md5sum)" "$(dynamic_defined "$release/libmp_throttle.so" | md5sum)"
same "libmp_throttle.so.$abi ->" "$(readlink "$lib/libmp_throttle.so.$abi")" "libmp_throttle.so.$version"
same "libmp_throttle.so ->" "$(readlink "$lib/libmp_throttle.so")" "libmp_throttle.so.$abi"
same "SONAME of the installed library" "$(soname_of "$real")" "libmp_throttle.so.$abi"
same "mode of libmp_throttle.a" "$(mode_of "$lib/libmp_throttle.a")" 644
same "DWARF sections of the installed libmp_throttle.a" "$(debug_sections "$lib/libmp_throttle.a")" 0
check "... smaller: $(size_of "$lib/libmp_throttle.a") bytes, the build's $(size_of "$release/libmp_throttle.a")" \
    test "$(size_of "$lib/libmp_throttle.a")" -lt "$(size_of "$release/libmp_throttle.a")"
# Its global symbols: the mpt_ functions and nothing else (the build's
# archive also has those of the Rust code and its standard library).
built_globals=$(global_defined "$release/libmp_throttle.a" | sort -u)
built_mpt=$(echo "$built_globals" | grep '^mpt_')
same "global symbols of the installed libmp_throttle.a: the built archive's mpt_ ones ($(echo "$built_mpt" | wc -l) of $(echo "$built_globals" | wc -l))" \
    "$(global_defined "$lib/libmp_throttle.a" | md5sum)" "$(echo "$built_mpt" | md5sum)"
for h in mp_throttle.h mp_throttle.hpp; do
    check "include/$h is the source's" cmp -s "$prefix/include/$h" "$root/include/$h"
    same "mode of include/$h" "$(mode_of "$prefix/include/$h")" 644
done
# The command-line tool: stripped, runs from the prefix, with its man pages
# and completions where man and the shells look.
mpt=$prefix/bin/mpt
same "mode of bin/mpt" "$(mode_of "$mpt")" 755
check "bin/mpt is stripped" sh -c "! readelf -S '$mpt' | grep -q '\.debug_info'"
same "bin/mpt --version" "$("$mpt" --version)" "mpt $version"
for page in mpt.1 mpt-acquire.1 mpt-run.1 mpt-stats.1; do
    check "share/man/man1/$page is a man page" grep -q "^\.TH mpt" "$prefix/share/man/man1/$page"
done
check "bash completion for mpt" grep -q "complete -F" "$prefix/share/bash-completion/completions/mpt"
check "zsh completion for mpt" grep -q "^#compdef mpt" "$prefix/share/zsh/site-functions/_mpt"
check "fish completion for mpt" grep -q "complete -c mpt" "$prefix/share/fish/vendor_completions.d/mpt.fish"
name=mpt-install-check-$$
check "the installed mpt creates, starts, grants and removes a throttle" \
    sh -c "'$mpt' create $name 5/s --start && '$mpt' acquire $name --timeout 5s && '$mpt' rm $name"
pc=$lib/pkgconfig/mp_throttle.pc
same "mode of lib/pkgconfig/mp_throttle.pc" "$(mode_of "$pc")" 644
cmakedir=$lib/cmake/mp_throttle
for f in mp_throttleConfig.cmake mp_throttleConfigVersion.cmake; do
    same "mode of lib/cmake/mp_throttle/$f" "$(mode_of "$cmakedir/$f")" 644
done

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
    std::printf("%u.%u.%u %d.%d.%d %s %s\n", v.major, v.minor, v.patch, MPT_VERSION_MAJOR,
                MPT_VERSION_MINOR, MPT_VERSION_PATCH, MPT_VERSION_STRING, mpt_version_string());
    return 0;
}
EOF
# shellcheck disable=SC2086 # pkg-config's flags are words
if build "C++17 program with the installed mp_throttle.hpp" \
    c++ -std=c++17 -Wall -Wextra -Werror -pedantic -o "$bin/version" "$tmp/version.cpp" $cflags $libs; then
    same "mpt_version() of the installed library, header macros, mpt_version_string()" \
        "$("$bin/version" 2>&1)" "$version $version $version $version"
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

# Fully static: pkg-config's flags as they are; -static makes the linker
# take the archive (and libgcc_eh where a dynamic link takes libgcc_s).
full=$tmp/full
mkdir -p "$full"
# shellcheck disable=SC2086
if build "tutorial.c, fully static: cc -static \$(pkg-config --static --libs mp_throttle)" \
    cc -static -Wall -Wextra -Werror -O2 -o "$full/tutorial-static" "$root/examples-c/tutorial.c" \
    $cflags $static_libs; then
    same "fully static tutorial: NEEDs nothing" "$(readelf -d "$full/tutorial-static" 2>&1 | grep -c NEEDED)" 0
    check "... holds mpt_throttle_new" sh -c "nm '$full/tutorial-static' | grep -q ' T mpt_throttle_new\$'"
    if "$root/tests/check_examples.sh" "$full/tutorial-static" >"$tmp/run.log" 2>&1; then
        ok "the fully static tutorial runs and prints the expected summary"
    else
        bad "the fully static tutorial's output"
    fi
    sed 's/^/    | /' "$tmp/run.log"
fi
unset LD_LIBRARY_PATH PKG_CONFIG_PATH

# ------------------------------------------------------------ CMake
# A project of its own, as a user writes one: find_package with the prefix
# in CMAKE_PREFIX_PATH, one executable per imported target.
if command -v cmake >/dev/null 2>&1; then
    proj=$tmp/cmake
    mkdir -p "$proj"
    cp "$root/examples-c/tutorial.c" "$proj/"
    cat >"$proj/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.10)
project(mpt_install_check C)
find_package(mp_throttle $major.$minor REQUIRED)
if(NOT mp_throttle_VERSION STREQUAL "$version")
  message(FATAL_ERROR "mp_throttle_VERSION is \${mp_throttle_VERSION}")
endif()
add_executable(tutorial tutorial.c)
target_link_libraries(tutorial PRIVATE mp_throttle::mp_throttle)
add_executable(tutorial-static tutorial.c)
target_link_libraries(tutorial-static PRIVATE mp_throttle::mp_throttle_static)
CMAKE
    if build "cmake -DCMAKE_PREFIX_PATH=<prefix>: find_package(mp_throttle $major.$minor)" \
        cmake -S "$proj" -B "$proj/build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release &&
        build "cmake --build: mp_throttle::mp_throttle and mp_throttle::mp_throttle_static" \
            cmake --build "$proj/build"; then
        cbin=$proj/build
        needed=$(readelf -d "$cbin/tutorial" | sed -n 's/.*(NEEDED).*\[\(libmp_throttle[^]]*\)\].*/\1/p')
        same "CMake's tutorial (mp_throttle::mp_throttle) NEEDs" "$needed" "libmp_throttle.so.$abi"
        same "CMake's tutorial-static (mp_throttle::mp_throttle_static) NEEDs no libmp_throttle" \
            "$(readelf -d "$cbin/tutorial-static" | grep -c 'libmp_throttle')" 0
        # One at a time: they have the names of the tutorials above. (The
        # CMake build's RUNPATH finds the prefix's library.)
        for exe in "$cbin/tutorial" "$cbin/tutorial-static"; do
            if "$root/tests/check_examples.sh" "$exe" >"$tmp/run.log" 2>&1; then
                ok "CMake's $(basename "$exe") runs and prints the expected summary"
            else
                bad "CMake's $(basename "$exe"): its output"
            fi
            sed 's/^/    | /' "$tmp/run.log"
        done
    fi
    # A newer minor version, or the next major, is refused (ConfigVersion).
    cat >"$proj/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.10)
project(mpt_version_check C)
find_package(mp_throttle $major.$((minor + 1)) QUIET)
if(mp_throttle_FOUND)
  message(FATAL_ERROR "found mp_throttle $version for $major.$((minor + 1))")
endif()
find_package(mp_throttle $((major + 1)).0 QUIET)
if(mp_throttle_FOUND)
  message(FATAL_ERROR "found mp_throttle $version for $((major + 1)).0")
endif()
CMAKE
    rm -rf "$proj/build"
    build "find_package refuses mp_throttle $major.$((minor + 1)) and $((major + 1)).0" \
        cmake -S "$proj" -B "$proj/build" -DCMAKE_PREFIX_PATH="$prefix"
elif [ -n "${CI:-}" ]; then
    bad "cmake not found (CI is set): the CMake package is not tested"
else
    echo "check_install: SKIPPED: cmake not found (the CMake package is not tested)"
fi

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
        -a -f "$stage/usr/include/mp_throttle.hpp" -a -x "$stage/usr/bin/mpt" \
        -a -f "$stage/usr/share/man/man1/mpt.1"
    spc=$stage$multiarch/pkgconfig/mp_throttle.pc
    same "staged .pc prefix" "$(sed -n 's/^prefix=//p' "$spc")" /usr
    same "staged .pc libdir" "$(sed -n 's/^libdir=//p' "$spc")" "\${prefix}/lib/x86_64-linux-gnu"
    same "staged .pc includedir" "$(sed -n 's/^includedir=//p' "$spc")" "\${prefix}/include"
    same "staged .pc resolves libdir" \
        "$(PKG_CONFIG_PATH= pkg-config --variable=libdir "$spc" 2>&1)" "$multiarch"
    scm=$stage$multiarch/cmake/mp_throttle/mp_throttleConfig.cmake
    same "staged mp_throttleConfig.cmake's library directory" \
        "$(sed -n 's/^set(mp_throttle_LIBRARY_DIR "\(.*\)")$/\1/p' "$scm")" "$multiarch"
    same "staged mp_throttleConfig.cmake's include directory" \
        "$(sed -n 's/^set(mp_throttle_INCLUDE_DIR "\(.*\)")$/\1/p' "$scm")" /usr/include
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
