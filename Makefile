# mp_throttle: the C side of the project (GNU make 4.3 or later).
#
#   make lib             cargo build --release: target/release/libmp_throttle.{so,a}
#   make cli             the command-line tool target/release/mpt (cli/), and
#                        its man pages and shell completions in build/cli/
#   make header          regenerate include/mp_throttle.h (cbindgen, via cargo test)
#   make examples        build examples-c/*.c, each linked dynamically and statically
#   make check-c         build and run tests/c/*.c in both link modes, check the
#                        header (C99, C++17, two C files in one program), run
#                        check-c-redis, then the asan and valgrind variants,
#                        then check-cxx
#                        (about 80 s together on 2 cores). The exported
#                        symbols and the SONAME are checked by tests/abi.rs.
#   make check-c-redis   tests/c/lifecycle.c and tests/c/cancel.c against
#                        the Redis store, on a redis-server of their own
#                        (tests/with_redis.sh)
#   make check-cxx       the C++ wrapper include/mp_throttle.hpp: build and run
#                        tests/cxx/*.cpp (dynamic, with extra warnings; then
#                        static under ASan+UBSan), and compile them as C++20
#   make check-examples  run every example (dynamic build) and check its output
#   make check-examples-static   the same with the static builds
#   make asan            tests/c/*.c with -fsanitize=address,undefined (static lib)
#   make valgrind        tests/c/*.c (dynamic) under valgrind (both with
#                        MPT_TEST_SLOW=10: their bounds on lateness are 10x
#                        wider, see tests/c/check.h)
#   make demo            build and run examples-c/tutorial.c
#   make lint            cargo fmt --check, cargo clippy -D warnings, and the
#                        README's examples are the tested ones
#                        (tests/check_readme.py)
#   make install         install under PREFIX (default /usr/local; DESTDIR for
#                        staging; LIBDIR, INCLUDEDIR, PKGCONFIGDIR, CMAKEDIR
#                        to move parts): lib/libmp_throttle.so.VERSION and
#                        its links .so.ABI and .so, lib/libmp_throttle.a,
#                        include/mp_throttle.h and mp_throttle.hpp, lib/
#                        pkgconfig/mp_throttle.pc, lib/cmake/mp_throttle/
#                        mp_throttleConfig.cmake and ...ConfigVersion.cmake
#                        (find_package(mp_throttle): the imported targets
#                        mp_throttle::mp_throttle, the .so, and
#                        mp_throttle::mp_throttle_static, the .a); bin/mpt
#                        (BINDIR), its man pages (MANDIR/man1) and its
#                        bash, zsh and fish completions (BASHCOMPDIR,
#                        ZSHCOMPDIR, FISHCOMPDIR). The
#                        installed libraries are stripped, as distributions
#                        do (STRIP=: keeps the debug info): the .so with
#                        --strip-unneeded; the .a is the build's archive
#                        made one object (ld -r) whose only global symbols
#                        are the mpt_ functions (objcopy
#                        --keep-global-symbols), without its debug info and
#                        LLVM bitcode: the Rust standard library inside it
#                        cannot clash with another Rust staticlib's (files
#                        in build/install/). Builds first; NO_BUILD=1 installs
#                        what `make lib` built without running cargo (for
#                        `sudo make install NO_BUILD=1`). Then, with DESTDIR
#                        empty, as root, and LIBDIR a directory the dynamic
#                        linker searches (the defaults, or listed by
#                        `ldconfig -v`, i.e. ld.so.conf), runs ldconfig
#                        (LDCONFIG=) so that the .so.ABI is found; otherwise
#                        prints a one-line hint of what to do instead
#   make uninstall       remove those files (same variables)
#   make check-install   tests/check_install.sh: install into a temporary
#                        prefix, build examples-c/tutorial.c with nothing but
#                        pkg-config's flags, dynamically, with the archive
#                        and fully static (cc -static), and with CMake's
#                        find_package (both targets), run and check each;
#                        the links, versions, stripping, symbols and .pc
#   make check-rust-project  tests/check_rust_project.sh: a cargo project
#                        outside the repository, with a path dependency on
#                        this checkout as the README says, built offline
#                        and run
#   make check-bindings  run every bindings/*/test.sh with MPT_LIB_DIR and
#                        MPT_INCLUDE_DIR naming this build (all of them, then
#                        the summary: one line per binding, then the verdict)
#   make bench           every benchmark (benches/run.sh) into BENCHMARKS-run.md
#   make fuzz            tests/c/fuzz_api.c for 10 minutes under ASan+UBSan
#   make soak            tests/soak.sh: the multi-process Rust suites
#                        (changes, chaos, fork, named, owners) ROUNDS times
#                        in a row (default 50, about 2 minutes a round),
#                        then the number of failed runs
#   make test            the suites lint, cargo test (which runs check-c and
#                        check-examples through tests/c_suite.rs),
#                        check-examples-static, check-install, and each
#                        binding (bindings/*/test.sh); every suite runs even if
#                        one fails, then the summary (below)
#   make deps            .ci/deps.sh: install what the tests need and is
#                        missing (Debian packages; pytest into .venv/); .ci/run
#                        runs the same script, then `make test`
#   make clean
#
# Suites and their summary. `make test`, `make check-bindings` and `make
# check-install` run each suite's command and note its verdict from its exit
# status: 0 is "passed"; 77 is "SKIPPED: why" (automake's convention), where
# the suite printed a line "SKIPPED: why" (or "NAME: SKIPPED: why") on its
# standard output and the last such line gives the why; anything else is
# "FAILED". A suite that passes but printed such lines (cargo test, whose
# tests/owners.rs needs root) is "passed in part, SKIPPED: why", counted as
# skipped. A suite skips when a toolchain it needs is missing, and only
# when CI is unset: with CI set (as .ci/run sets it) the same suite fails
# (exit 1). The summary lists every suite with its verdict, then one verdict
# line: "PASSED: N passed, 0 failed, 0 skipped", "INCOMPLETE: ..." (nothing
# failed but something was skipped: exit 0, yet not everything was tested)
# or "FAILED: ..." (exit status 1). A skipped suite is never counted as passed.
#
# The C programs are built with strict warning flags. Every binary
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
# What the Rust staticlib needs, as printed by
#   cargo rustc --release --lib --crate-type staticlib -- --print native-static-libs
# (-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc) but -lgcc_s: the unwinder
# (_Unwind_*) is libgcc's, which the C compiler's driver links itself,
# libgcc_s dynamically and libgcc_eh under -static, where a libgcc_s does not
# exist ("cannot find -lgcc_s"). mp_throttle.pc's Libs.private and the
# CMake package's static target say the same.
STATIC_LIBS := -lutil -lrt -lpthread -lm -ldl -lc
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
CXX_DEPS     := include/mp_throttle.hpp include/mp_throttle.h tests/cxx/check.hpp
BINDING_TESTS := $(sort $(wildcard bindings/*/test.sh))

.PHONY: all lib cli header examples check-c check-c-redis check-examples check-examples-static asan \
        valgrind demo test lint bench clean run-tests check-header FORCE \
        check-cxx install uninstall check-install check-rust-project check-bindings deps

# The shell functions of the recipes that run suites (see "Suites and their
# summary" above), put at the start of such a recipe:
#   suite NAME COMMAND...  runs COMMAND (its standard output also kept, through
#                          tee) and notes NAME's verdict from its exit status
#   summary TITLE          prints every verdict noted and the verdict line;
#                          returns 1 if a suite failed
SUITE_FUNCTIONS = \
	notes=$$(mktemp -d) && trap 'rm -rf "$$notes"' EXIT && \
	passed=0 && failed=0 && skipped=0 && : >"$$notes/summary" && \
	suite() { \
	    name=$$1; shift; \
	    { "$$@"; echo $$? >"$$notes/rc"; } | tee "$$notes/out"; \
	    rc=$$(cat "$$notes/rc"); \
	    skips=$$(sed -n 's/^\([^ ]*: \)\{0,1\}SKIPPED: *//p' "$$notes/out" | sort -u | paste -sd ';' -); \
	    case $$rc in \
	    0) if [ -n "$$skips" ]; then \
	           verdict="passed in part, SKIPPED: $$skips"; skipped=$$((skipped + 1)); \
	       else verdict=passed; passed=$$((passed + 1)); fi ;; \
	    77) why=$$(sed -n 's/^\([^ ]*: \)\{0,1\}SKIPPED: *//p' "$$notes/out" | tail -n 1); \
	        verdict="SKIPPED: $${why:-(no reason printed)}"; skipped=$$((skipped + 1)) ;; \
	    *) verdict="FAILED (exit status $$rc)"; failed=$$((failed + 1)) ;; \
	    esac; \
	    printf '  %-22s %s\n' "$$name" "$$verdict" >>"$$notes/summary"; \
	}; \
	summary() { \
	    echo; echo "== $$1: summary"; cat "$$notes/summary"; \
	    if [ $$failed -gt 0 ]; then word=FAILED; \
	    elif [ $$skipped -gt 0 ]; then word=INCOMPLETE; \
	        echo "  (skipped suites were not tested; with CI set they fail)"; \
	    else word=PASSED; fi; \
	    echo "$$word: $$passed passed, $$failed failed, $$skipped skipped"; \
	    [ $$failed -eq 0 ]; \
	}

.DELETE_ON_ERROR:
# cargo's files: never deleted by make, even when cargo fails.
.PRECIOUS: $(SO) $(A)

all: lib cli examples

# ---------------------------------------------------------------- library

# One cargo run makes both files; FORCE so that cargo, not make, decides
# whether anything changed (make re-reads the files' times afterwards).
$(SO) $(A) &: FORCE
	$(CARGO) build --release
	ln -sfn libmp_throttle.so $(SONAME)

lib: $(SO) $(A)

# ---------------------------------------------------------------- mpt

# The command-line tool (cli/), its man pages and shell completions, which
# the tool writes itself (clap_mangen, clap_complete) into build/cli/.
MPT_BIN := $(RELEASE)/mpt
CLI_FILES := build/cli

cli:
	$(CARGO) build --release -p mp_throttle_cli
	rm -rf $(CLI_FILES) && $(MPT_BIN) generate $(CLI_FILES)

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

# The header compiles as C99 and as C++17 (also with stricter
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
	        MPT_TEST_SLOW=10 $(BOUND) $$t || { echo "** $$t FAILED under asan"; fail=1; }; \
	done; exit $$fail

valgrind: $(TESTS)
	@fail=0; for t in $^; do \
	    echo "== valgrind $$t"; \
	    MPT_TEST_SLOW=10 $(BOUND) $(VALGRIND) $(VALGRIND_FLAGS) $$t || { echo "** $$t FAILED under valgrind"; fail=1; }; \
	done; exit $$fail

# The C tests that take the store as a parameter, against a redis-server
# of their own (tests/with_redis.sh): lifecycle dynamic then static, and
# cancellation inside Redis round trips.
REDIS_TESTS := build/tests/lifecycle build/tests/lifecycle-static build/tests/cancel
check-c-redis: $(REDIS_TESTS)
	@fail=0; for t in $^; do \
	    echo "== $$t (Redis store)"; \
	    $(BOUND) tests/with_redis.sh $$t || { echo "** $$t FAILED against Redis"; fail=1; }; \
	done; exit $$fail

check-c: lib
	@fail=0; \
	for step in run-tests check-header check-c-redis asan valgrind check-cxx; do \
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
CMAKEDIR     ?= $(LIBDIR)/cmake/mp_throttle
BINDIR       ?= $(PREFIX)/bin
MANDIR       ?= $(PREFIX)/share/man
BASHCOMPDIR  ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR   ?= $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR  ?= $(PREFIX)/share/fish/vendor_completions.d
INSTALL      ?= install
LDCONFIG     ?= ldconfig
STRIP        ?= strip
OBJCOPY      ?= objcopy
READELF      ?= readelf
REALNAME     := libmp_throttle.so.$(VERSION)
# mp_throttle.pc names its directories relative to ${prefix} where it can.
pc_dir = $(patsubst $(PREFIX)/%,$${prefix}/%,$(1))
# The CMake package's: absolute; STATIC_LIBS as a CMake list (util;rt;...).
empty :=
space := $(empty) $(empty)
CMAKE_LIBS := $(subst $(space),;,$(strip $(patsubst -l%,%,$(STATIC_LIBS))))
# The size of a pointer in the library (its ELF class), read when installing.
SIZEOF_VOID_P = $(if $(filter ELF32,$(shell $(READELF) -h $(SO) 2>/dev/null | sed -n 's/^ *Class: *//p')),4,8)
CONFIGURE = sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' -e 's|@ABI@|$(ABI)|g' \
	    -e 's|@LIBS_PRIVATE@|$(STATIC_LIBS)|g' -e 's|@CMAKE_LIBS@|$(CMAKE_LIBS)|g' \
	    -e 's|@SIZEOF_VOID_P@|$(SIZEOF_VOID_P)|g'
STAGE := build/install

install: $(if $(NO_BUILD),,lib cli)
	@test -n "$(VERSION)" -a -n "$(ABI)" || { echo "no version in Cargo.toml or no MPT_ABI_VERSION in the header" >&2; exit 1; }
	rm -rf $(STAGE) && mkdir -p $(STAGE)
	$(CONFIGURE) -e 's|@LIBDIR@|$(call pc_dir,$(LIBDIR))|g' \
	    -e 's|@INCLUDEDIR@|$(call pc_dir,$(INCLUDEDIR))|g' mp_throttle.pc.in >$(STAGE)/mp_throttle.pc
	for f in mp_throttleConfig mp_throttleConfigVersion; do \
	    $(CONFIGURE) -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' \
	        cmake/$$f.cmake.in >$(STAGE)/$$f.cmake || exit 1; \
	done
	cp $(SO) $(STAGE)/$(REALNAME)
	$(STRIP) --strip-unneeded $(STAGE)/$(REALNAME)
	$(READELF) -sW $(A) | awk 'NF >= 8 && $$5 != "LOCAL" && $$7 != "UND" && $$8 ~ /^mpt_/ { print $$8 }' \
	    | sort -u >$(STAGE)/exports
	@test -s $(STAGE)/exports || { echo "install: no mpt_ symbol in $(A)" >&2; exit 1; }
	$(LD) -r --whole-archive $(A) -o $(STAGE)/mp_throttle.o
	$(OBJCOPY) --keep-global-symbols=$(STAGE)/exports -R .llvmbc -R .llvmcmd $(STAGE)/mp_throttle.o
	$(STRIP) --strip-debug $(STAGE)/mp_throttle.o
	$(AR) rcsD $(STAGE)/libmp_throttle.a $(STAGE)/mp_throttle.o
	$(INSTALL) -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(CMAKEDIR)
	$(INSTALL) -m 755 $(STAGE)/$(REALNAME) $(DESTDIR)$(LIBDIR)/$(REALNAME)
	ln -sfn $(REALNAME) $(DESTDIR)$(LIBDIR)/libmp_throttle.so.$(ABI)
	ln -sfn libmp_throttle.so.$(ABI) $(DESTDIR)$(LIBDIR)/libmp_throttle.so
	$(INSTALL) -m 644 $(STAGE)/libmp_throttle.a $(DESTDIR)$(LIBDIR)/libmp_throttle.a
	$(INSTALL) -m 644 include/mp_throttle.h include/mp_throttle.hpp $(DESTDIR)$(INCLUDEDIR)
	$(INSTALL) -m 644 $(STAGE)/mp_throttle.pc $(DESTDIR)$(PKGCONFIGDIR)/mp_throttle.pc
	$(INSTALL) -m 644 $(STAGE)/mp_throttleConfig.cmake $(STAGE)/mp_throttleConfigVersion.cmake \
	    $(DESTDIR)$(CMAKEDIR)
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(BASHCOMPDIR) \
	    $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR)
	$(INSTALL) -m 755 $(MPT_BIN) $(DESTDIR)$(BINDIR)/mpt
	$(STRIP) $(DESTDIR)$(BINDIR)/mpt
	$(INSTALL) -m 644 $(CLI_FILES)/*.1 $(DESTDIR)$(MANDIR)/man1
	$(INSTALL) -m 644 $(CLI_FILES)/mpt.bash $(DESTDIR)$(BASHCOMPDIR)/mpt
	$(INSTALL) -m 644 $(CLI_FILES)/_mpt $(DESTDIR)$(ZSHCOMPDIR)/_mpt
	$(INSTALL) -m 644 $(CLI_FILES)/mpt.fish $(DESTDIR)$(FISHCOMPDIR)/mpt.fish
	@$(LDCONFIG_STEP)

# After an install: ldconfig, so that programs find libmp_throttle.so.ABI,
# when that can and should be done here: nothing staged (DESTDIR empty), run
# by root, and LIBDIR one of the directories the dynamic linker searches (the
# default ones, or one that `ldconfig -v` lists from ld.so.conf, compared
# after resolving symbolic links). Otherwise one line says what to do.
LDCONFIG_STEP = \
	PATH="$$PATH:/sbin:/usr/sbin"; \
	if [ -n "$(DESTDIR)" ]; then \
	    echo "install: staged under DESTDIR; run ldconfig once the files are in $(LIBDIR)"; \
	    exit 0; \
	fi; \
	libdir=$$(readlink -f "$(LIBDIR)"); searched=no; \
	for d in /lib /usr/lib /lib64 /usr/lib64 \
	    $$($(LDCONFIG) -v -N -X 2>/dev/null | sed -n 's|^\(/[^:]*\):.*|\1|p'); do \
	    if [ "$$(readlink -f "$$d")" = "$$libdir" ]; then searched=yes; fi; \
	done; \
	if [ $$searched = no ]; then \
	    echo "install: $(LIBDIR) is not searched by the dynamic linker: link with" \
	        "-Wl,-rpath,$(LIBDIR), set LD_LIBRARY_PATH, or list it in /etc/ld.so.conf.d/ and run ldconfig"; \
	elif [ "$$(id -u)" -ne 0 ]; then \
	    echo "install: not root, so ldconfig was not run: run 'sudo ldconfig' so that" \
	        "libmp_throttle.so.$(ABI) is found in $(LIBDIR)"; \
	else \
	    echo "$(LDCONFIG)"; $(LDCONFIG); \
	fi

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/$(REALNAME) $(DESTDIR)$(LIBDIR)/libmp_throttle.so.$(ABI) \
	    $(DESTDIR)$(LIBDIR)/libmp_throttle.so $(DESTDIR)$(LIBDIR)/libmp_throttle.a \
	    $(DESTDIR)$(INCLUDEDIR)/mp_throttle.h $(DESTDIR)$(INCLUDEDIR)/mp_throttle.hpp \
	    $(DESTDIR)$(PKGCONFIGDIR)/mp_throttle.pc \
	    $(DESTDIR)$(CMAKEDIR)/mp_throttleConfig.cmake $(DESTDIR)$(CMAKEDIR)/mp_throttleConfigVersion.cmake
	rmdir $(DESTDIR)$(CMAKEDIR) 2>/dev/null || true
	rm -f $(DESTDIR)$(BINDIR)/mpt $(DESTDIR)$(MANDIR)/man1/mpt.1 $(DESTDIR)$(MANDIR)/man1/mpt-*.1 \
	    $(DESTDIR)$(BASHCOMPDIR)/mpt $(DESTDIR)$(ZSHCOMPDIR)/_mpt $(DESTDIR)$(FISHCOMPDIR)/mpt.fish

CHECK_INSTALL = env MAKE="$(MAKE)" CARGO="$(CARGO)" sh tests/check_install.sh

check-install: lib cli
	@$(SUITE_FUNCTIONS); \
	suite check-install $(CHECK_INSTALL); \
	summary check-install

# A cargo project outside the repository that depends on this checkout the
# way README.md's Rust section says (tests/check_rust_project.sh).
CHECK_RUST_PROJECT = env CARGO="$(CARGO)" sh tests/check_rust_project.sh

check-rust-project:
	@$(SUITE_FUNCTIONS); \
	suite check-rust-project $(CHECK_RUST_PROJECT); \
	summary check-rust-project

# ---------------------------------------------------------------- bindings

# Each bindings/*/test.sh (run from the top directory, one after the other)
# against this build, as the suite "binding NAME"; all run even if one fails.
BINDING_SUITES = \
	test -n "$(BINDING_TESTS)" || echo "no bindings/*/test.sh"; \
	for t in $(BINDING_TESTS); do \
	    b=$${t\#bindings/}; b=$${b%/test.sh}; \
	    if [ -x $$t ]; then run=$$t; else run="bash $$t"; fi; \
	    echo "== $$t"; \
	    suite "binding $$b" env MPT_LIB_DIR=$(abspath $(RELEASE)) \
	        MPT_INCLUDE_DIR=$(abspath include) $(BOUND) $$run; \
	done

check-bindings: lib
	@$(SUITE_FUNCTIONS); \
	$(BINDING_SUITES); \
	summary check-bindings

# ---------------------------------------------------------------- all tests

# cargo test covers the rest; the static builds of the examples, the install
# and the bindings are checked here. Every suite runs even if one fails
# (cargo test --no-fail-fast; --all-features also runs the tokio feature's
# tests), then the summary.
test: lib examples
	@$(SUITE_FUNCTIONS); \
	suite lint $(MAKE) --no-print-directory lint; \
	suite "cargo test" $(CARGO) test --workspace --no-fail-fast --all-features; \
	suite check-examples-static $(MAKE) --no-print-directory check-examples-static; \
	suite check-install $(CHECK_INSTALL); \
	suite check-rust-project $(CHECK_RUST_PROJECT); \
	$(BINDING_SUITES); \
	summary "make test"

# What the tests need and is missing (.ci/run runs the same script).
deps:
	bash .ci/deps.sh

# Every benchmark, one after the other, into BENCHMARKS-run.md (about 8
# minutes; nothing else should run meanwhile). BENCHMARKS.md quotes a run.
bench:
	benches/run.sh BENCHMARKS-run.md

# Formatting, lints and the API docs (no broken link), warnings as errors.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --all-features --quiet -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --all-features --quiet
	python3 tests/check_readme.py

clean:
	rm -rf build bindings/python/build
	rm -f $(SONAME)

FORCE:

# The multi-process suites, ROUNDS times in a row (tests/soak.sh).
.PHONY: soak
soak:
	CARGO=$(CARGO) bash tests/soak.sh

# The API fuzzer (tests/c/fuzz_api.c) for 10 minutes under ASan+UBSan;
# `make check-c` runs it for 3 s in every variant. MPT_FUZZ_SECONDS and
# MPT_FUZZ_SEED (printed by every run) override the duration and replay a run.
.PHONY: fuzz
fuzz: build/asan/fuzz_api
	MPT_FUZZ_SECONDS=$${MPT_FUZZ_SECONDS:-600} \
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
	    build/asan/fuzz_api
# Every status the fuzzer gets back must be in the "Returns:" list of that
# function's doc in the header: tests/gen_statuses.py turns the lists into
# build/fuzz/statuses.h (and fails on a function without one), which each
# build of the fuzzer includes.
FUZZ_BINS := build/tests/fuzz_api build/tests/fuzz_api-static build/asan/fuzz_api
$(FUZZ_BINS): build/fuzz/statuses.h
$(FUZZ_BINS): CSTD += -Ibuild/fuzz
build/fuzz/statuses.h: include/mp_throttle.h tests/gen_statuses.py
	@mkdir -p $(@D)
	python3 tests/gen_statuses.py include/mp_throttle.h $@
