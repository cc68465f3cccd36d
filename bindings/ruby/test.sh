#!/bin/sh
# Runs the Ruby binding's tests (minitest) and its example, then the
# packaging checks: `gem build` of mp_throttle.gemspec, `gem install --local`
# of the .gem into a temporary GEM_HOME, the installed gem's example.rb with
# the library found through a pkg-config file written here for $MPT_LIB_DIR,
# and `ruby -I bindings/ruby/lib bindings/ruby/example.rb` from the
# repository root, the library found as this checkout's build; both without
# MPT_LIB_DIR. (Not run when arguments select tests.)
#
#   MPT_LIB_DIR      directory of libmp_throttle.so(.0)  (default: <repo>/target/release)
#   MPT_INCLUDE_DIR  directory of mp_throttle.h          (default: <repo>/include)
#   RUBY             the ruby to use                     (default: ruby)
#
# Needs Ruby >= 2.7 with the ffi gem and minitest (Debian: ruby ruby-ffi
# ruby-minitest; `make deps` installs them) and a C compiler (the struct
# layout check). Without Ruby or its gems: fails if $CI is set, else prints a
# line "SKIPPED: why" and exits 77 (skipped, as automake's tests say it;
# `make check-bindings` and `make test` report it).
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
    exit 77
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

"$RUBY" -S gem --version >/dev/null 2>&1 || missing "the gem command (RubyGems) not found"

cd "$here"
# One process runs every test file; a bound so that a hang fails, not blocks.
timeout --kill-after=10 110 "$RUBY" -w -I lib -I test \
    -e 'Dir[File.join(__dir__, "test", "test_*.rb")].sort.each { |f| require f }' -- "$@"

if [ $# -gt 0 ]; then
    echo "packaging checks not run (arguments select tests)"
    exit 0
fi

# ---------------------------------------------------------------- packaging

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
libdir=$(cd "$MPT_LIB_DIR" && pwd)

fail() {
    echo "FAILED: $1" >&2
    for log in "$tmp"/*.log; do
        [ -s "$log" ] && { echo "--- ${log##*/}" >&2; cat "$log" >&2; }
    done
    exit 1
}

# Checks the output of example.rb in file $1 as test_processes.rb does: four
# lines, about 5 s, 4 per second (one unit at the start instant).
check_example() {
    "$RUBY" -e '
        lines = File.readlines(ARGV[0], chomp: true)
        ok = lines.size == 4
        runtime = lines[0].to_s[/\ARuntime: (\d+\.\d{3})\z/, 1]
        total = lines[1].to_s[/\ATotal: (\d+)\z/, 1]
        between = lines[2].to_s[/\ATime between processes: (\d+\.\d{3})\z/, 1]
        per_second = lines[3].to_s[/\AProcesses per second: (\d+\.\d{3})\z/, 1]
        ok &&= [runtime, total, between, per_second].none?(&:nil?)
        if ok
          runtime = runtime.to_f
          total = total.to_i
          expected = 1 + (runtime * 4).floor
          ok = (4.99..5.6).cover?(runtime) && ((expected - 1)..expected).cover?(total) &&
               (runtime / total - between.to_f).abs <= 0.002 &&
               (total / runtime - per_second.to_f).abs <= 0.002
        end
        exit(ok ? 0 : 1)' "$1"
}

# Prints the file of mp_throttle.rb and of the library that `require
# "mp_throttle"` loads, run as `env ARGUMENTS -e ...` (environment, ruby and
# its options).
where_loaded() {
    env "$@" -e 'require "mp_throttle"
        puts $LOADED_FEATURES.grep(%r{/mp_throttle\.rb\z}).first, MpThrottle::Native.ffi_libraries.first.name'
}

# 1. gem build.
version=$(sed -n 's/^#define MPT_VERSION_STRING "\(.*\)"$/\1/p' "$MPT_INCLUDE_DIR/mp_throttle.h")
gem_file="$tmp/mp_throttle-$version.gem"
"$RUBY" -S gem build mp_throttle.gemspec --output "$gem_file" >"$tmp/gem-build.log" 2>&1 ||
    fail "gem build mp_throttle.gemspec"
echo "gem build: $(sed -n 's/^ *\(Name\|Version\): //p' "$tmp/gem-build.log" | paste -sd ' ' -)"

# 2. gem install --local into a temporary GEM_HOME. GEM_PATH keeps the gems
#    this ruby sees (Debian's ruby-ffi is a gem there, so the dependency is
#    met); an ffi that only $RUBYLIB provides is no gem: skip the check then.
gem_home="$tmp/gem_home"
gem_path="$gem_home:$("$RUBY" -e 'print Gem.path.join(":")')"
deps=
"$RUBY" -e 'gem "ffi"' >/dev/null 2>&1 || deps=--ignore-dependencies
env GEM_HOME="$gem_home" GEM_PATH="$gem_path" "$RUBY" -S gem install --local --no-document $deps \
    "$gem_file" >"$tmp/gem-install.log" 2>&1 || fail "gem install --local $deps $gem_file"
gem_dir="$gem_home/gems/mp_throttle-$version"
[ -f "$gem_dir/lib/mp_throttle.rb" ] && [ -f "$gem_dir/example.rb" ] && [ -f "$gem_dir/README.md" ] ||
    fail "gem install: $gem_dir lacks lib/mp_throttle.rb, example.rb or README.md"
echo "gem install --local ${deps:+$deps }$(basename "$gem_file"): $(head -n 1 "$tmp/gem-install.log")"

# 3. The installed gem's example, no MPT_LIB_DIR, the library found through
#    a pkg-config file for $MPT_LIB_DIR (mp_throttle.pc.in as `make install`
#    fills it) and nothing else: LD_LIBRARY_PATH is not needed.
if command -v "${PKG_CONFIG:-pkg-config}" >/dev/null 2>&1; then
    mkdir "$tmp/pkgconfig"
    sed -e "s|@PREFIX@|$repo|g" -e "s|@LIBDIR@|$libdir|g" -e "s|@INCLUDEDIR@|$MPT_INCLUDE_DIR|g" \
        -e "s|@VERSION@|$version|g" -e "s|@LIBS_PRIVATE@||g" "$repo/mp_throttle.pc.in" \
        >"$tmp/pkgconfig/mp_throttle.pc"
    found=$(PKG_CONFIG_PATH="$tmp/pkgconfig" "${PKG_CONFIG:-pkg-config}" --variable=libdir mp_throttle)
    [ "$found" = "$libdir" ] || fail "pkg-config --variable=libdir mp_throttle: '$found', not $libdir"
    run_env="-u MPT_LIB_DIR -u LD_LIBRARY_PATH -u RUBYLIB GEM_HOME=$gem_home GEM_PATH=$gem_path
             PKG_CONFIG_PATH=$tmp/pkgconfig"
    how="pkg-config (PKG_CONFIG_PATH=$tmp/pkgconfig)"
else
    [ -z "${CI:-}" ] || fail "pkg-config not found"
    echo "pkg-config not found: the installed gem's example finds the library through LD_LIBRARY_PATH"
    run_env="-u MPT_LIB_DIR -u RUBYLIB GEM_HOME=$gem_home GEM_PATH=$gem_path LD_LIBRARY_PATH=$libdir"
    how="LD_LIBRARY_PATH"
    lib_expected=libmp_throttle.so.0
fi
cd "$tmp"
# shellcheck disable=SC2086 # run_env is a list of words
loaded=$(where_loaded $run_env "$RUBY" 2>"$tmp/where.log") || fail "require \"mp_throttle\" from the installed gem"
expected="$gem_dir/lib/mp_throttle.rb
${lib_expected:-$libdir/libmp_throttle.so.0}"
[ "$loaded" = "$expected" ] || fail "the installed gem loaded
$loaded
not
$expected"
# shellcheck disable=SC2086
env $run_env timeout 60 "$RUBY" "$gem_dir/example.rb" >"$tmp/gem-example.out" 2>"$tmp/gem-example.log" ||
    fail "ruby $gem_dir/example.rb (installed gem)"
check_example "$tmp/gem-example.out" || fail "installed gem's example.rb printed: $(cat "$tmp/gem-example.out")"
echo "installed gem's example.rb, library $(echo "$loaded" | tail -n 1) through $how:"
sed 's/^/    /' "$tmp/gem-example.out"

# 4. The README's command from the repository root, no MPT_LIB_DIR: the
#    library is this checkout's build, target/release.
cd "$repo"
if [ -e target/release/libmp_throttle.so.0 ]; then
    loaded=$(where_loaded -u MPT_LIB_DIR -u RUBYLIB "$RUBY" -I bindings/ruby/lib 2>"$tmp/where.log" |
             tail -n 1) || true
    [ "$loaded" = "$repo/target/release/libmp_throttle.so.0" ] ||
        fail "ruby -I bindings/ruby/lib loaded '$loaded', not $repo/target/release/libmp_throttle.so.0"
    env -u MPT_LIB_DIR -u RUBYLIB timeout 60 "$RUBY" -I bindings/ruby/lib bindings/ruby/example.rb \
        >"$tmp/checkout-example.out" 2>"$tmp/checkout-example.log" ||
        fail "ruby -I bindings/ruby/lib bindings/ruby/example.rb"
    check_example "$tmp/checkout-example.out" ||
        fail "bindings/ruby/example.rb printed: $(cat "$tmp/checkout-example.out")"
    echo "ruby -I bindings/ruby/lib bindings/ruby/example.rb (no MPT_LIB_DIR), library $loaded:"
    sed 's/^/    /' "$tmp/checkout-example.out"
else
    echo "ruby -I bindings/ruby/lib bindings/ruby/example.rb not run: target/release holds no library"
fi
