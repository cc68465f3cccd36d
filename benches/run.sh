#!/usr/bin/env bash
# Runs the benchmarks one after the other and collects their markdown reports
# into one file.
#
#   benches/run.sh OUT.md [BENCH...]
#
# BENCH defaults to all of: fast_path aggregate keyed kill_wakeup start_cost accuracy
# precise sleep_floor mpt_acquire seed_python redis. `keyed` (about 1.5 minutes, 0.5 GB
# of memory) measures keyed throttles beside the unkeyed fast path and governor's
# keyed limiter. `redis` (about 1.5 minutes) starts
# its own redis-server (packages redis-server, redis-tools). `mpt_acquire` runs benches/mpt_acquire.sh
# (hyperfine: the command-line tool from a shell loop). `accuracy` runs benches/accuracy.sh if that
# exists, else `cargo bench --bench accuracy`. `precise` runs the accuracy
# workload in each waiting mode (kernel timer slack, the default 1 ns slack,
# spin tails of 50 and 200 us). `sleep_floor` times sleeping with no library
# at all. `seed_python` (its first run installs mp-throttle 0.0.5 from PyPI
# into a venv) runs benches/seed_python.sh, the accuracy workload on the
# Python seed. OUT.md gets each bench's
# markdown report (criterion's own progress output is left out of it);
# OUT.log (next to it) gets everything every bench printed, stderr included.
# Knobs passed through the environment: MPT_BENCH_SECONDS, MPT_BENCH_SAMPLES
# (fast_path, keyed), MPT_BENCH_REPS (kill_wakeup). Takes about 3 minutes plus
# the accuracy bench. Exits non-zero if any bench failed (the others still
# run). Nothing else should run on the machine meanwhile: the figures are
# only as quiet as the machine.
set -u -o pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

if [ $# -lt 1 ]; then
    echo "usage: $0 OUT.md [fast_path|aggregate|keyed|kill_wakeup|start_cost|accuracy|precise|sleep_floor|mpt_acquire|seed_python|redis ...]" >&2
    exit 2
fi
out=$1
shift
case "$out" in
    /*) ;;
    *) out="$OLDPWD/$out" ;;
esac
log="${out%.md}.log"
[ "$log" = "$out" ] && log="$out.log"
benches=("$@")
[ ${#benches[@]} -eq 0 ] && benches=(fast_path aggregate keyed kill_wakeup start_cost accuracy precise sleep_floor mpt_acquire seed_python redis)

declares() { grep -Eq "^name = \"$1\"" Cargo.toml && [ -f "benches/$1.rs" ]; }

: >"$log"
{
    echo "# mp_throttle benchmarks"
    echo
    echo "- collected by: \`benches/run.sh $out ${benches[*]}\`"
    echo "- $(date -u +%Y-%m-%dT%H:%M:%SZ), git $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo ' (with uncommitted changes)'), $(uname -sr), nproc $(nproc), loadavg \`$(cat /proc/loadavg)\`"
    echo "- $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null)"
    echo "- environment: MPT_BENCH_SECONDS=${MPT_BENCH_SECONDS:-default} MPT_BENCH_SAMPLES=${MPT_BENCH_SAMPLES:-default} MPT_BENCH_REPS=${MPT_BENCH_REPS:-default}"
} >"$out"

# Build first, so that compiling never overlaps a measurement.
build=()
for b in "${benches[@]}"; do
    if declares "$b" && { [ "$b" != accuracy ] || [ ! -f benches/accuracy.sh ]; }; then
        build+=(--bench "$b")
    fi
done
if [ ${#build[@]} -gt 0 ]; then
    echo "== cargo bench --no-run ${build[*]}" | tee -a "$log" >&2
    if ! cargo bench --no-run "${build[@]}" >>"$log" 2>&1; then
        echo "benches/run.sh: the build failed; see $log" >&2
        printf '\n**The build failed** (see %s).\n' "$log" >>"$out"
        exit 1
    fi
fi

failed=()
for b in "${benches[@]}"; do
    case "$b" in
        accuracy)
            if [ -f benches/accuracy.sh ]; then
                cmd=(bash benches/accuracy.sh)
            elif declares accuracy; then
                cmd=(cargo bench --bench accuracy)
            else
                echo "== accuracy: no benches/accuracy.sh nor [[bench]] accuracy: skipped" | tee -a "$log" >&2
                printf '\n## accuracy\n\nSkipped: no benches/accuracy.sh nor `[[bench]] accuracy`.\n' >>"$out"
                continue
            fi
            filter=(cat)
            ;;
        mpt_acquire)
            cmd=(sh benches/mpt_acquire.sh)
            filter=(cat)
            ;;
        seed_python)
            if [ ! -f benches/seed_python.sh ]; then
                echo "== seed_python: no benches/seed_python.sh: skipped" | tee -a "$log" >&2
                continue
            fi
            cmd=(sh benches/seed_python.sh)
            filter=(cat)
            ;;
        precise)
            # The waiting modes at the rates the precise mode is for: the
            # kernel's default timer slack, the library's default (1 ns), and
            # the precise mode with two spin tails.
            cmd=(bash -c 'for mode in "--slack 0" "--slack 1" "--spin 0.00005" "--spin 0.0002"; do
                echo "### accuracy $mode (LIMIT, WINDOW; 4 to 10,000 per second)"; echo
                cargo bench --quiet --bench accuracy -- --hardcaps limit,window --rates 4,100,1000,10000 $mode || exit 1
                echo; done')
            filter=(cat)
            ;;
        sleep_floor)
            # No library: 4 processes sleeping every 400 us, the floor of the
            # CPU that waiters sharing 10,000 grants per second must cost.
            cmd=(bash -c 'mkdir -p target && cc -O2 -o target/sleep_floor benches/sleep_floor.c &&
                echo "## sleep floor: 4 processes x 12,500 absolute sleeps of 400 us, no library" && echo &&
                echo "command: cc -O2 -o target/sleep_floor benches/sleep_floor.c; 4 x target/sleep_floor [tight]" && echo &&
                for arg in "" tight; do echo "timer slack: ${arg:-kernel default}"; echo;
                    for i in 1 2 3 4; do target/sleep_floor $arg & done; wait; echo; done')
            filter=(cat)
            ;;
        fast_path | keyed)
            cmd=(cargo bench --bench "$b")
            # Only the report that ends the output, not criterion's progress.
            filter=(sed -n '/^## /,$p')
            ;;
        *)
            cmd=(cargo bench --bench "$b")
            filter=(cat)
            ;;
    esac
    echo "== ${cmd[*]}" | tee -a "$log" >&2
    start=$(date +%s)
    tmp=$(mktemp)
    "${cmd[@]}" 2> >(tee -a "$log" >&2) | tee -a "$log" >"$tmp"
    rc=$?
    echo >>"$out"
    "${filter[@]}" "$tmp" >>"$out"
    rm -f "$tmp"
    echo "== $b: exit $rc after $(($(date +%s) - start)) s" | tee -a "$log" >&2
    if [ $rc -ne 0 ]; then
        failed+=("$b")
        printf '\n**%s exited with status %s** (see %s).\n' "$b" "$rc" "$log" >>"$out"
    fi
done

echo >>"$out"
if [ ${#failed[@]} -gt 0 ]; then
    echo "benches/run.sh: failed: ${failed[*]}; report in $out, full output in $log" >&2
    exit 1
fi
echo "benches/run.sh: report in $out, full output in $log" >&2
