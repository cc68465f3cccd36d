#!/bin/sh
# mpt acquire from a shell loop: how many grants per second one process per
# grant gives, against the floor of starting any process (/bin/true), in
# one hyperfine run on one machine. The throttle never denies (10^9 per
# second), so this is mpt's own cost: exec, open the named throttle, take
# a unit, exit.
#
#   sh benches/mpt_acquire.sh        (builds target/release/mpt first)
set -eu
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || { echo "mpt_acquire: hyperfine not found (make deps installs it)" >&2; exit 1; }
cargo build --release --quiet -p mp_throttle_cli
mpt=$(pwd)/target/release/mpt
name=mpt-bench-$$
"$mpt" create "$name" 1G/s --start
trap '"$mpt" rm "$name"' EXIT
out=$(mktemp -d)
loop() { echo "sh -c 'i=0; while [ \$i -lt 1000 ]; do $1; i=\$((i+1)); done'"; }

echo "## mpt acquire: grants per second from a shell loop"
echo
echo "- command: \`sh benches/mpt_acquire.sh\`; $(date -u +%Y-%m-%dT%H:%M:%SZ), git $(git rev-parse --short HEAD), nproc $(nproc), $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), loadavg \`$(cat /proc/loadavg)\`"
echo
echo "One process per call (hyperfine -N, no shell; 50 warm-up runs, then 1000):"
echo
hyperfine -N --style none --warmup 50 --runs 1000 --export-markdown "$out/one.md" \
    -n "/bin/true (floor: start a process)" /bin/true \
    -n "mpt --version (start mpt)" "$mpt --version" \
    -n "mpt acquire (a grant)" "$mpt acquire $name" >/dev/null
cat "$out/one.md"
echo
echo "A shell loop of 1000 calls (5 runs each):"
echo
hyperfine --style none --warmup 1 --runs 5 --export-markdown "$out/loop.md" \
    -n "1000 x /bin/true" "$(loop /bin/true)" \
    -n "1000 x mpt acquire" "$(loop "$mpt acquire $name")" >/dev/null
cat "$out/loop.md"
echo
echo "Grants counted by the throttle: $("$mpt" stats "$name" --json --sample 0 | sed 's/.*"emissions":\([0-9]*\).*/\1/')"
rm -rf "$out"
