#!/bin/sh
# The accuracy benchmark's workload on the Python package this library
# succeeds, mp-throttle 0.0.5 (PyPI), for comparison with
# `cargo bench --bench accuracy`.
#
# Makes (once) a virtualenv with mp-throttle==0.0.5 under target/seed-venv
# (or $SEED_VENV), then runs benches/seed_python.py with the arguments given,
# e.g.:
#
#   benches/seed_python.sh                       # rates 4,100,1000,10000; limit, one; 5 s
#   benches/seed_python.sh --rates 4,1000 --hardcaps limit --secs 1
#
# Needs python3 with the venv module and access to PyPI (first run only).
set -eu
cd "$(dirname "$0")/.."
venv=${SEED_VENV:-target/seed-venv}
python=${PYTHON:-python3}

have_seed() {
    [ -x "$venv/bin/python" ] &&
        "$venv/bin/python" -c 'import importlib.metadata as m, sys
sys.exit(m.version("mp-throttle") != "0.0.5")' 2>/dev/null
}

if ! have_seed; then
    echo "seed_python.sh: making $venv with mp-throttle==0.0.5" >&2
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'mp-throttle==0.0.5'
    have_seed || { echo "seed_python.sh: mp-throttle 0.0.5 did not install" >&2; exit 1; }
fi

exec "$venv/bin/python" benches/seed_python.py "$@"
