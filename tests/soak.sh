#!/usr/bin/env bash
# make soak: the multi-process suites, ROUNDS times in a row (default 50),
# to find tests that fail only now and then. The suites are the Rust
# integration tests that fork or spawn processes against one throttle:
# tests/changes.rs (rate-change storms), chaos.rs (workers SIGKILLed
# mid-call), keyed_chaos.rs (the same across the keys of a keyed throttle,
# and holders of its key table's lock killed), fork.rs, named.rs and
# owners.rs (other users' objects; its tests need root and say SKIPPED
# otherwise). They are built once, in release mode, then run as they are,
# one after the other.
#
# Each failing run's output is kept in build/soak/; the last line is the
# tally, "soak: R rounds of S suites: F failed runs", and the exit status
# is 1 when F > 0.
set -u
cd "$(dirname "$0")/.."

rounds=${ROUNDS:-50}
suites=(changes chaos keyed_chaos fork named owners)
out=build/soak
mkdir -p "$out"
rm -f "$out"/*.log

args=()
for s in "${suites[@]}"; do args+=(--test "$s"); done
# One binary per suite; cargo prints where each is.
mapfile -t bins < <(${CARGO:-cargo} test --release --no-run --message-format=json "${args[@]}" 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"] + " " + m["executable"])
')
if [ "${#bins[@]}" -ne "${#suites[@]}" ]; then
    echo "soak: cargo built ${#bins[@]} of ${#suites[@]} suites" >&2
    exit 1
fi

failed=0
started=$(date +%s)
for ((r = 1; r <= rounds; r++)); do
    line="round $r:"
    for entry in "${bins[@]}"; do
        name=${entry%% *}
        bin=${entry#* }
        log="$out/round$r-$name.log"
        if "$bin" >"$log" 2>&1; then
            rm -f "$log"
            line+=" $name ok"
        else
            failed=$((failed + 1))
            line+=" $name FAILED ($log)"
        fi
    done
    echo "$line ($(($(date +%s) - started)) s)"
done
echo "soak: $rounds rounds of ${#suites[@]} suites: $failed failed runs"
[ "$failed" -eq 0 ]
