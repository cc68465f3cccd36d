# mp_throttle: the C side of the project (GNU make 4.3 or later).
#
#   make lib             cargo build --release: target/release/libmp_throttle.{so,a}
#   make header          regenerate include/mp_throttle.h (cbindgen, via cargo test)
#   make examples        build examples-c/*.c, each linked dynamically and statically
#   make check-c         build and run tests/c/*.c in both link modes, check the
#                        header (C99, C++17, two C files in one program), then
#                        run the asan and valgrind variants, then check-cxx
#                        (about 80 s together on 2 cores). The exported
#                        symbols and the SONAME are checked by tests/abi.rs.
#   make check-cxx       the C++ wrapper include/mp_throttle.hpp: build and run
#                        tests/cxx/*.cpp (dynamic, with extra warnings; then
#                        static under ASan+UBSan), and compile them as C++20
#   make check-examples  run every example (dynamic build) and check its output
#   make check-examples-static   the same with the static builds
#   make asan            tests/c/*.c with -fsanitize=address,undefined (static lib)
#   make valgrind        tests/c/*.c (dynamic) under valgrind
#   make demo            build and run examples-c/tutorial.c
#   make lint            cargo fmt --check, cargo clippy -D warnings, and the
#                        README's examples are the tested ones
#                        (tests/check_readme.py)
#   make install         install under PREFIX (default /usr/local; DESTDIR for
#                        staging; LIBDIR, INCLUDEDIR, PKGCONFIGDIR to move
#                        parts): lib/libmp_throttle.so.VERSION and its links
#                        .so.ABI and .so, lib/libmp_throttle.a, include/
#                        mp_throttle.h and mp_throttle.hpp, lib/pkgconfig/
#                        mp_throttle.pc. Builds first; NO_BUILD=1 installs
#                        what `make lib` built without running cargo (for
#                        `sudo make install NO_BUILD=1`)
#   make uninstall       remove those files (same variables)
#   make check-install   tests/check_install.sh: install into a temporary
#                        prefix, build examples-c/tutorial.c with nothing but
#                        pkg-config's flags, dynamically and statically, run
#                        and check both; the links, versions and .pc
#   make check-bindings  run every bindings/*/test.sh (all, then the verdict)
#                        with MPT_LIB_DIR and MPT_INCLUDE_DIR naming this build
#   make bench           every benchmark (benches/run.sh) into BENCHMARKS-run.md
#   make fuzz            tests/c/fuzz_api.c for 10 minutes under ASan+UBSan
#   make test            lint, cargo test (which runs check-c and check-examples
#                        through tests/c_suite.rs), then check-examples-static,
#                        check-install and check-bindings (every step runs,
#                        then the verdict)
#   make clean
#
# The C programs are built with the flags of STYLE.md item 27. Every binary
# depends on the library files, and the library rule always asks cargo (a
# no-op when nothing changed), so `make check-c` after editing src/ rebuilds
# and relinks what it must.

CARGO    ?= cargo
CC       := $(if $(filter default,$(origin CC)),cc,$(CC))
CXX      := $(if $(filter default,$(origin CXX)),c++,$(CXX))
VALGRIND ?= valgrind

# cargo's output directory (CARGO_TARGET_DIR if set, as cargo does).
RELEASE := $(or $(CARGO_TARGET_DIR),target)/release
SO      := $(RELEASE)/libmp_throttle.so
A       := $(RELEASE)/libmp_throttle.a
# The SONAME is libmp_throttle.so.$(ABI) (build.rs); programs linked against
# the .so look for that name at run time, next to it (-rpath).
ABI     := $(shell sed -n 's/^.define MPT_ABI_VERSION \([0-9]*\)$$/\1/p' include/mp_throttle.h)
SONAME  := $(SO).$(ABI)
# The version of [package] in Cargo.toml: the installed file's name
# (libmp_throttle.so.$(VERSION)) and mp_throttle.pc's Version. The header's
# MPT_VERSION_* say the same (tests/header.rs, tests/check_install.sh).
VERSION := $(shell sed -n '/^\[package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml)

CSTD     := -std=c99 -Wall -Wextra -Wpedantic -Werror -D_GNU_SOURCE -Iinclude
CXXSTD   := -std=c++17 -Wall -Wextra -Werror -pedantic -Iinclude
# The C++ wrapper's tests also build with these (a header others include
# must not warn under their flags).
CXXSTRICT := -Wshadow -Wconversion -Wsign-conversion -Wold-style-cast -Wnon-virtual-dtor
CFLAGS   ?= -O2 -g
CXXFLAGS ?= -O2 -g
DYN_LINK := -L$(RELEASE) -Wl,-rpath,$(abspath $(RELEASE)) -lmp_throttle -pthread -lm
# What the Rust staticlib needs besides libc, as printed by
#   cargo rustc --release --lib --crate-type staticlib -- --print native-static-libs
STATIC_LIBS := -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
SANITIZE := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
# Each C test program gets this long at most: a hang fails fast and says so.
BOUND    := timeout --kill-after=10 300
VALGRIND_FLAGS := --error-exitcode=1 --leak-check=full --suppressions=tests/c/valgrind.supp -q

EXAMPLE_SRCS := $(sort $(wildcard examples-c/*.c))
EXAMPLES     := $(patsubst examples-c/%.c,build/examples/%,$(EXAMPLE_SRCS))
TEST_SRCS    := $(sort $(wildcard tests/c/*.c))
TESTS        := $(patsubst tests/c/%.c,build/tests/%,$(TEST_SRCS))
ASAN_TESTS   := $(patsubst tests/c/%.c,build/asan/%,$(TEST_SRCS))
TEST_DEPS    := tests/c/check.h include/mp_throttle.h
CXX_SRCS     := $(sort $(wildcard tests/cxx/*.cpp))
CXX_TESTS    := $(patsubst tests/cxx/%.cpp,build/cxx/%,$(CXX_SRCS))
CXX_ASAN     := $(patsubst tests/cxx/%.cpp,build/cxx-asan/%,$(CXX_SRCS))
CXX_DEPS     := include/mp_throttle.hpp include/mp_throttle.h
BINDING_TESTS := $(sort $(wildcard bindings/*/test.sh))

.PHONY: all lib header examples check-c check-examples check-examples-static asan \
        valgrind demo test lint bench clean run-tests check-header FORCE \
        check-cxx install uninstall check-install check-bindings
.DELETE_ON_ERROR:
# cargo's files: never deleted by make, even when cargo fails.
.PRECIOUS: $(SO) $(A)

all: lib examples

# ---------------------------------------------------------------- library

# One cargo run makes both files; FORCE so that cargo, not make, decides
# whether anything changed (make re-reads the files' times afterwards).
$(SO) $(A) &: FORCE
	$(CARGO) build --release
	ln -sfn libmp_throttle.so $(SONAME)

lib: $(SO) $(A)

header:
	MPT_BLESS=1 $(CARGO) test --test header

# ---------------------------------------------------------------- examples

build/examples/%: examples-c/%.c include/mp_throttle.h $(SO)
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(CFLAGS) -o $@ $< $(DYN_LINK)

build/examples/%-static: examples-c/%.c include/mp_throttle.h $(A)
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(CFLAGS) -o $@ $< $(A) $(STATIC_LIBS)

examples: $(EXAMPLES) $(addsuffix -static,$(EXAMPLES))

check-examples: $(EXAMPLES)
	tests/check_examples.sh $(EXAMPLES)

check-examples-static: $(addsuffix -static,$(EXAMPLES))
	tests/check_examples.sh $^

demo: build/examples/tutorial
	build/examples/tutorial

# ---------------------------------------------------------------- C tests

build/tests/%: tests/c/%.c $(TEST_DEPS) $(SO)
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(CFLAGS) -o $@ $< $(DYN_LINK)

build/tests/%-static: tests/c/%.c $(TEST_DEPS) $(A)
	@mkdir -p $(@D)
	$(CC) $(CSTD) $(CFLAGS) -o $@ $< $(A) $(STATIC_LIBS)

build/asan/%: tests/c/%.c $(TEST_DEPS) $(A)
	@mkdir -p $(@D)
	$(CC) $(CSTD) -O1 -g $(SANITIZE) -o $@ $< $(A) $(STATIC_LIBS)

# Runs each test program, dynamic then static; all run even if one fails.
run-tests: $(TESTS) $(addsuffix -static,$(TESTS))
	@fail=0; for t in $^; do \
	    echo "== $$t"; $(BOUND) $$t || { echo "** $$t FAILED"; fail=1; }; \
	done; exit $$fail

# STYLE.md 24: the header compiles as C99 and as C++17 (also with stricter
# warnings), and two C files that both include it link into one program.
build/header/double: tests/c/header/one.c tests/c/header/two.c include/mp_throttle.h $(SO)
	@mkdir -p $(@D)
	$(CC) $(CSTD) -Wstrict-prototypes -Wmissing-prototypes -Wundef -Wshadow $(CFLAGS) \
	    -o $@ tests/c/header/one.c tests/c/header/two.c $(DYN_LINK)

build/header/cxx: tests/c/header/cxx.cpp include/mp_throttle.h $(SO)
	@mkdir -p $(@D)
	$(CXX) $(CXXSTD) $(CFLAGS) -o $@ $< $(DYN_LINK)

check-header: build/header/double build/header/cxx
	$(CC) $(CSTD) -Wstrict-prototypes -Wundef -Wshadow -fsyntax-only -x c include/mp_throttle.h
	$(CXX) $(CXXSTD) -fsyntax-only -x c++ include/mp_throttle.h
	build/header/double
	build/header/cxx

asan: $(ASAN_TESTS)
	@fail=0; for t in $^; do \
	    echo "== $$t"; \
	    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
	        $(BOUND) $$t || { echo "** $$t FAILED under asan"; fail=1; }; \
	done; exit $$fail

valgrind: $(TESTS)
	@fail=0; for t in $^; do \
	    echo "== valgrind $$t"; \
	    $(BOUND) $(VALGRIND) $(VALGRIND_FLAGS) $$t || { echo "** $$t FAILED under valgrind"; fail=1; }; \
	done; exit $$fail

check-c: lib
	@fail=0; \
	for step in run-tests check-header asan valgrind check-cxx; do \
	    $(MAKE) --no-print-directory $$step || { echo "** make $$step FAILED"; fail=1; }; \
	done; exit $$fail

# ---------------------------------------------------------------- C++ wrapper

build/cxx/%: tests/cxx/%.cpp $(CXX_DEPS) $(SO)
	@mkdir -p $(@D)
	$(CXX) $(CXXSTD) $(CXXSTRICT) $(CXXFLAGS) -o $@ $< $(DYN_LINK)

build/cxx-asan/%: tests/cxx/%.cpp $(CXX_DEPS) $(A)
	@mkdir -p $(@D)
	$(CXX) $(CXXSTD) -O1 -g $(SANITIZE) -o $@ $< $(A) $(STATIC_LIBS)

# Each test program, dynamic then under ASan+UBSan; all run even if one fails.
check-cxx: $(CXX_TESTS) $(CXX_ASAN)
	@fail=0; \
	for src in $(CXX_SRCS); do \
	    $(CXX) $(subst c++17,c++20,$(CXXSTD)) $(CXXSTRICT) -fsyntax-only $$src || fail=1; \
	done; \
	for t in $^; do \
	    echo "== $$t"; \
	    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
	        $(BOUND) $$t || { echo "** $$t FAILED"; fail=1; }; \
	done; exit $$fail

# ---------------------------------------------------------------- install

PREFIX       ?= /usr/local
LIBDIR       ?= $(PREFIX)/lib
INCLUDEDIR   ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
INSTALL      ?= install
REALNAME     := libmp_throttle.so.$(VERSION)
# mp_throttle.pc names its directories relative to ${prefix} where it can.
pc_dir = $(patsubst $(PREFIX)/%,$${prefix}/%,$(1))

install: $(if $(NO_BUILD),,lib)
	@test -n "$(VERSION)" -a -n "$(ABI)" || { echo "no version in Cargo.toml or no MPT_ABI_VERSION in the header" >&2; exit 1; }
	@mkdir -p build
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(call pc_dir,$(LIBDIR))|g' \
	    -e 's|@INCLUDEDIR@|$(call pc_dir,$(INCLUDEDIR))|g' -e 's|@VERSION@|$(VERSION)|g' \
	    -e 's|@LIBS_PRIVATE@|$(STATIC_LIBS)|g' mp_throttle.pc.in >build/mp_throttle.pc
	$(INSTALL) -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR)
	$(INSTALL) -m 755 $(SO) $(DESTDIR)$(LIBDIR)/$(REALNAME)
	ln -sfn $(REALNAME) $(DESTDIR)$(LIBDIR)/libmp_throttle.so.$(ABI)
	ln -sfn libmp_throttle.so.$(ABI) $(DESTDIR)$(LIBDIR)/libmp_throttle.so
	$(INSTALL) -m 644 $(A) $(DESTDIR)$(LIBDIR)/libmp_throttle.a
	$(INSTALL) -m 644 include/mp_throttle.h include/mp_throttle.hpp $(DESTDIR)$(INCLUDEDIR)
	$(INSTALL) -m 644 build/mp_throttle.pc $(DESTDIR)$(PKGCONFIGDIR)/mp_throttle.pc

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/$(REALNAME) $(DESTDIR)$(LIBDIR)/libmp_throttle.so.$(ABI) \
	    $(DESTDIR)$(LIBDIR)/libmp_throttle.so $(DESTDIR)$(LIBDIR)/libmp_throttle.a \
	    $(DESTDIR)$(INCLUDEDIR)/mp_throttle.h $(DESTDIR)$(INCLUDEDIR)/mp_throttle.hpp \
	    $(DESTDIR)$(PKGCONFIGDIR)/mp_throttle.pc

check-install: lib
	MAKE="$(MAKE)" CARGO="$(CARGO)" sh tests/check_install.sh

# ---------------------------------------------------------------- bindings

# Each bindings/*/test.sh (run from the top directory, one after the other)
# against this build; all run even if one fails, then the verdict.
check-bindings: lib
	@fail=0; \
	test -n "$(BINDING_TESTS)" || echo "check-bindings: no bindings/*/test.sh"; \
	for t in $(BINDING_TESTS); do \
	    echo "== $$t"; \
	    if [ -x $$t ]; then run=$$t; else run="bash $$t"; fi; \
	    MPT_LIB_DIR=$(abspath $(RELEASE)) MPT_INCLUDE_DIR=$(abspath include) \
	        $(BOUND) $$run || { echo "** $$t FAILED"; fail=1; }; \
	done; \
	if [ $$fail -eq 0 ]; then echo "check-bindings: all passed"; else echo "check-bindings: FAILED"; fi; \
	exit $$fail

# ---------------------------------------------------------------- all tests

# cargo test covers the rest; the static builds of the examples, the install
# and the bindings are checked here.
# Every suite runs even if one fails (--no-fail-fast), then the verdict.
test: lib examples
	@fail=0; \
	$(MAKE) --no-print-directory lint || fail=1; \
	$(CARGO) test --no-fail-fast || { echo "** cargo test FAILED"; fail=1; }; \
	for step in check-examples-static check-install check-bindings; do \
	    $(MAKE) --no-print-directory $$step || { echo "** make $$step FAILED"; fail=1; }; \
	done; \
	exit $$fail

# Every benchmark, one after the other, into BENCHMARKS-run.md (about 8
# minutes; nothing else should run meanwhile). BENCHMARKS.md quotes a run.
bench:
	benches/run.sh BENCHMARKS-run.md

# STYLE.md 35: formatting and lints, warnings as errors.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --quiet -- -D warnings
	python3 tests/check_readme.py

clean:
	rm -rf build
	rm -f $(SONAME)

FORCE:

# The API fuzzer (tests/c/fuzz_api.c) for 10 minutes under ASan+UBSan;
# `make check-c` runs it for 3 s in every variant. MPT_FUZZ_SECONDS and
# MPT_FUZZ_SEED (printed by every run) override the duration and replay a run.
.PHONY: fuzz
fuzz: build/asan/fuzz_api
	MPT_FUZZ_SECONDS=$${MPT_FUZZ_SECONDS:-600} \
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
	    build/asan/fuzz_api
