#!/usr/bin/env bash
# .ci/deps.sh: installs what the tests (`make test`) and the benches need,
# and only what is missing; run by `make deps` and by
# .ci/run, so the two cannot drift. A second run installs nothing.
#
#   Debian packages (apt-get; `apt-get update` only when one is missing):
#     gcc g++ make valgrind     the C and C++ side (make check-c)
#     pkg-config                make check-install, the Go binding (#cgo pkg-config)
#     cmake                     make check-install (the CMake package)
#     golang-go                 bindings/go
#     ruby ruby-ffi ruby-minitest   bindings/ruby
#     python3 python3-venv      bindings/python, and the virtual environment
#     tmux curl                 mpt's tests (its live view in a terminal; the
#                               crawl example, cli/examples/crawl.sh)
#     hyperfine                 mpt's start-up measurement (BENCHMARKS.md)
#     redis-server redis-tools  the Redis store's tests (tests/redis.rs, make
#                               check-c-redis, the bindings' and the many_hosts
#                               example's: each starts its own server) and
#                               its bench (redis-benchmark)
#     openssl                   tests/redis_tls.rs makes its certificates
#   As root: apt-get itself; otherwise through sudo if there is one; else it
#   prints the apt-get command to run and exits 1.
#
#   PyPI packages, into the virtual environment .venv/ at the top of the
#   checkout (made with python3 -m venv if missing or broken; gitignored):
#     pytest                    bindings/python/test.sh runs .venv/bin/python
#   and, as wheels in .venv/wheelhouse, the build backend of
#   bindings/python/pyproject.toml (setuptools, setuptools-rust), for the
#   binding's install test in a fresh virtual environment.
#
#   cargo (the Rust toolchain, with rustfmt and clippy for `make lint`) is
#   not installed here: it comes with the machine (rustup). Missing, it is
#   said clearly and the script exits 1, after installing the rest.
#
# Exits 0 when everything is there at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)

DEBIAN_PACKAGES=(
    gcc g++ make valgrind pkg-config cmake
    golang-go
    ruby ruby-ffi ruby-minitest
    python3 python3-venv
    tmux curl hyperfine
    redis-server redis-tools openssl
)
PYPI_PACKAGES=(pytest)
VENV=$top/.venv

say() { echo "deps: $*"; }
die() {
    echo "deps: error: $*" >&2
    exit 1
}

# ---------------------------------------------------------------- Debian
# installed PACKAGE: dpkg says it is installed (not merely known or removed).
installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == *" ok installed" ]]
}
if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    die "no dpkg-query or apt-get: this is not a Debian system. Install the equivalents of" \
        "these Debian packages by hand: ${DEBIAN_PACKAGES[*]}"
fi
missing=()
for p in "${DEBIAN_PACKAGES[@]}"; do
    installed "$p" || missing+=("$p")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]]; then
        as_root=()
    elif command -v sudo >/dev/null 2>&1; then
        as_root=(sudo)
    else
        die "missing Debian packages, and neither root nor sudo to install them. Run as root:" \
            "apt-get update && apt-get install -y ${missing[*]}"
    fi
    say "installing Debian packages: ${missing[*]}"
    ${as_root[@]+"${as_root[@]}"} apt-get update -qq
    ${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    still=()
    for p in "${missing[@]}"; do
        installed "$p" || still+=("$p")
    done
    ((${#still[@]} == 0)) || die "apt-get did not install: ${still[*]}"
else
    say "Debian packages: all ${#DEBIAN_PACKAGES[@]} installed"
fi

# ---------------------------------------------------------------- PyPI
command -v python3 >/dev/null 2>&1 || die "python3 is not on PATH (Debian package python3)"
if ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 9))' >/dev/null 2>&1; then
    # Missing, or made by a Python that is gone (or too old): make it anew.
    say "making the virtual environment $VENV with $(command -v python3) ($(python3 --version 2>&1))"
    python3 -m venv --clear "$VENV" || die "python3 -m venv failed (Debian package python3-venv?)"
fi
# The distributions the venv lacks, by their metadata (quicker than pip).
read -r -a need_pypi <<<"$("$VENV/bin/python" -c '
import sys
from importlib import metadata
for name in sys.argv[1:]:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        print(name, end=" ")
' "${PYPI_PACKAGES[@]}")"
if ((${#need_pypi[@]})); then
    say "installing into $VENV from PyPI: ${need_pypi[*]}"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${need_pypi[@]}"
else
    say "PyPI packages in .venv: ${PYPI_PACKAGES[*]} installed"
fi
"$VENV/bin/python" -m pytest --version >/dev/null 2>&1 || die "pytest does not run in $VENV"
# The build backend of bindings/python/pyproject.toml, as wheels: the
# binding's check_install.sh then runs `pip install ./bindings/python` in a
# fresh virtual environment offline (--no-index).
WHEELHOUSE=$VENV/wheelhouse
BUILD_BACKEND=('setuptools>=77' 'setuptools-rust>=1.9')
if compgen -G "$WHEELHOUSE/setuptools_rust-*.whl" >/dev/null &&
    compgen -G "$WHEELHOUSE/setuptools-*.whl" >/dev/null; then
    say "build backend wheels in $WHEELHOUSE: present"
else
    say "downloading the build backend of bindings/python into $WHEELHOUSE: ${BUILD_BACKEND[*]}"
    "$VENV/bin/python" -m pip download -q --disable-pip-version-check -d "$WHEELHOUSE" \
        "${BUILD_BACKEND[@]}"
fi

# ---------------------------------------------------------------- Rust
if ! command -v cargo >/dev/null 2>&1; then
    if [[ -x "${HOME:-/nonexistent}/.cargo/bin/cargo" ]]; then
        die "cargo is not on PATH, but $HOME/.cargo/bin/cargo exists: add $HOME/.cargo/bin to PATH" \
            "(.ci/run does)"
    fi
    die "cargo (the Rust toolchain, 1.85 or later) is missing: it is not installed by this" \
        "script; install it with rustup, with the components rustfmt and clippy"
fi
for component in fmt clippy; do
    cargo "$component" --version >/dev/null 2>&1 ||
        die "cargo $component is missing (make lint needs it): rustup component add" \
            "$([[ $component == fmt ]] && echo rustfmt || echo clippy)"
done
say "cargo: $(cargo --version), with fmt and clippy"
say "everything the tests need is installed"
