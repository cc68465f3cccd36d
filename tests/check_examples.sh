#!/bin/sh
# check_examples.sh PROGRAM...
#
# Runs the example programs given (built from examples-c/*.c; `make
# check-examples` passes every one), all at once (they mostly sleep), and
# checks what each prints. Bounds are generous (the machine may be small and
# noisy), but the library's schedule is exact.
#
#   tutorial, threads  the tutorial's four lines; Total 20 or 21 (4 per 1 s
#                      for 5 s: units at 0, 0.25, ..., 5.0 s), the means
#                      consistent with Total / Runtime; threads: the per-thread
#                      counts add up to Total
#   stats              10 samples of (latest, mean); after the first second
#                      both run at 3 to 5 per second; then the four lines
#   monitor_only       Total equals what the workers say they emitted
#   bandwidth          32 (31) chunks in the 2 s at 1 MiB/s, 8 (7 to 9) in
#                      the 2 s at 256 KiB/s, the rate read back, and a new
#                      chunk's wait behind the 3 queued between 0.7 and 1 s
#   named_producer     the tutorial's four lines, Total 30 or 31 (10 per 1 s
#                      for 3 s); the 3 workers it spawned took Total between
#                      them; the name is gone from /dev/shm afterwards
#   many_hosts         run against a redis-server of its own
#                      (tests/with_redis.sh): 10 units, at least 1.8 s from
#                      the first to the last (5 per second, the tank empty
#                      at the start), Total 10, the throttle unlinked
#   per_host           18 GET lines; per host (a, b, c.example: 8, 6, 4
#                      requests) its times in order keep to 2 per second
#                      with a full tank at first: request k at (k - 2) x
#                      0.5 s or later, any 3 in a row at least 0.5 s apart,
#                      none starved (the last by (n - 2) x 0.5 + 1.5 s);
#                      the hosts in parallel: all 18 in under 6 s (one
#                      rate for all would need 8 s); 3 hosts in the table
#
# named_worker is not run on its own: named_producer starts it (the one next
# to it: named_worker-static for named_producer-static).
#
# NAME-static (the statically linked build) gets the check of NAME. An
# example without a check here fails: add its check when adding it.
set -u

if [ $# -eq 0 ]; then
    echo "usage: $0 PROGRAM..." >&2
    exit 2
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
fail=0

# Runs example `$1` (named `$2`); many_hosts against a redis-server of its
# own, whose URL tests/with_redis.sh gives it.
run_example() {
    case "${2%-static}" in
    many_hosts)
        "$(dirname "$0")/with_redis.sh" sh -c \
            'exec "$0" "$MPT_TEST_REDIS_URL" "$1"' "$1" "examples-$2"
        ;;
    *) "$1" ;;
    esac
}

names=""
for exe in "$@"; do
    name=$(basename "$exe")
    case "${name%-static}" in
    named_worker)
        echo "ok: $name (run by named_producer)"
        continue
        ;;
    esac
    names="$names $name"
    (
        run_example "$exe" "$name" >"$out/$name.out" 2>"$out/$name.err"
        echo $? >"$out/$name.rc"
    ) &
done
wait

# awk: whether seconds-between b and per-second r (printed with %f, six
# decimals) are each other's inverse.
INVERSE='function inverse(b, r) { return b * r > 0.999 - 5e-7 * r && b * r < 1.001 + 5e-7 * r }'

# The tutorial's four lines: Total in [lo, hi], Runtime about `secs`, and the
# two means consistent with Total / Runtime.
check_summary() { # file lo hi secs
    awk -v lo="$2" -v hi="$3" -v secs="$4" "$INVERSE"'
        /^Runtime: /                { rt = $2; n++ }
        /^Total: /                  { total = $2; n++ }
        /^Time between processes: / { between = $4; n++ }
        /^Processes per second: /   { rate = $4; n++ }
        END {
            if (n != 4) { print "  missing summary lines"; exit 1 }
            if (total < lo || total > hi) { print "  Total " total " not in [" lo ", " hi "]"; exit 1 }
            if (rt < secs - 0.01 || rt > secs + 1.5) { print "  Runtime " rt " not about " secs " s"; exit 1 }
            want = total / rt
            if (rate < want * 0.999 || rate > want * 1.001) { print "  Processes per second " rate " != Total / Runtime " want; exit 1 }
            if (!inverse(between, rate)) { print "  Time between processes " between " != 1 / " rate; exit 1 }
        }' "$1"
}

check_tutorial() { check_summary "$1" 20 21 5; }

check_bandwidth() {
    awk '
        /^At 1 MiB\/s: /    { fast = $4; n++ }
        /^At 256 KiB\/s: /  { slow = $4; n++ }
        /^Rate now: /        { rate = $3 " per " $5 " " $6; wait = $(NF - 1); n++ }
        END {
            if (n != 3) { print "  missing lines"; exit 1 }
            if (fast < 31 || fast > 32) { print "  " fast " chunks at 1 MiB/s, not 31 or 32"; exit 1 }
            if (slow < 7 || slow > 9) { print "  " slow " chunks at 256 KiB/s, not 7 to 9"; exit 1 }
            if (rate != "262144 per 1 s;") { print "  rate read back: " rate; exit 1 }
            if (wait < 0.7 || wait > 1.0) { print "  a new chunk would wait " wait " s"; exit 1 }
        }' "$1"
}

check_threads() {
    check_summary "$1" 20 21 5 || return 1
    awk '
        /^Total: /            { total = $2 }
        /^Thread [0-9]+: /    { sum += $3; threads++ }
        /^Sum over threads: / { said = $4 }
        END {
            if (threads != 4) { print "  expected 4 thread lines, got " threads; exit 1 }
            if (sum != total || said != total) { print "  threads got " sum " (says " said "), Total is " total; exit 1 }
        }' "$1"
}

check_stats() {
    check_summary "$1" 20 21 5 || return 1
    # [T s] latest: (A, B)  mean: (C, D)
    awk "$INVERSE"'
        /^\[[0-9.]+ s\] latest: / {
            line = $0
            gsub(/[][(),:]/, " ", line)
            split(line, f, " ")
            t = f[1]; lb = f[4]; lr = f[5]; mb = f[7]; mr = f[8]
            samples++
            if (t != (samples - 1) * 0.5) { print "  sample " samples " at " t " s"; bad = 1 }
            if (lr < 0 || mr < 0) { print "  negative rate at " t " s"; bad = 1 }
            if (lr > 0 && !inverse(lb, lr)) { print "  latest (" lb ", " lr ") inconsistent at " t " s"; bad = 1 }
            if (mr > 0 && !inverse(mb, mr)) { print "  mean (" mb ", " mr ") inconsistent at " t " s"; bad = 1 }
            if (t > 1.0) {
                if (mr < 3 || mr > 5) { print "  mean " mr "/s at " t " s not in [3, 5]"; bad = 1 }
                if (lr < 3 || lr > 5) { print "  latest " lr "/s at " t " s not in [3, 5]"; bad = 1 }
            }
        }
        /^Shortest interval \(lo_hi\): / { lo = $4; gsub(/[(),]/, "", lo) }
        /^Longest interval \(hi_lo\): /  { hi = $4; gsub(/[(),]/, "", hi) }
        END {
            if (samples != 10) { print "  expected 10 samples, got " samples; exit 1 }
            if (lo == "" || hi == "" || lo <= 0 || lo > hi || hi > 0.5) { print "  lo_hi " lo " / hi_lo " hi " implausible"; exit 1 }
            exit bad
        }' "$1"
}

check_monitor_only() {
    awk '
        /^Runtime: /            { rt = $2 }
        /^Total: /              { total = $2 }
        /^Emitted by workers: / { emitted = $4 }
        /^\[[0-9]+ s\] latest: / { stats++ }
        END {
            if (stats != 3) { print "  expected 3 stats lines, got " stats; exit 1 }
            if (total == "" || emitted == "") { print "  missing Total or Emitted lines"; exit 1 }
            if (total != emitted) { print "  Total " total " != emitted by workers " emitted; exit 1 }
            # 3 workers at 10 per second each for about 3 s.
            if (total < 60 || total > 100) { print "  Total " total " not about 90"; exit 1 }
            if (rt < 2.99 || rt > 4.5) { print "  Runtime " rt " not about 3 s"; exit 1 }
        }' "$1"
}

check_many_hosts() {
    awk '
        /^unit +[0-9]+ at / { n++; t[n] = $4 }
        /^Total \(every host\): / { total = $4 }
        /^Unlinked / { unlinked = 1 }
        END {
            if (n != 10) { print "  " n " units, not 10"; exit 1 }
            if (t[10] - t[1] < 1.79) { print "  10 units in " t[10] - t[1] " s (5 per second: at least 1.8 s)"; exit 1 }
            if (total != 10) { print "  Total " total ", not 10"; exit 1 }
            if (!unlinked) { print "  the throttle was not unlinked"; exit 1 }
        }' "$1"
}

check_per_host() {
    awk '
        /^\[[0-9.]+ s\] worker [0-9]+: GET / { gets++ }
        /^[a-c]\.example: [0-9]+ requests at / {
            host = $1; sub(/:$/, "", host)
            n = $2; want = host == "a.example" ? 8 : host == "b.example" ? 6 : 4
            hosts++
            if (n != want || NF != n + 4) { print "  " host ": " n " requests (" NF - 4 " times), not " want; bad = 1; next }
            for (k = 1; k <= n; k++) {
                t[k] = $(k + 4)
                if (k > 1 && t[k] < t[k - 1]) { print "  " host ": times out of order"; bad = 1 }
                if (t[k] < (k - 2) * 0.5 - 0.001) { print "  " host ": request " k " at " t[k] " s, before " (k - 2) * 0.5 " s"; bad = 1 }
                if (k > 2 && t[k] - t[k - 2] < 0.499) { print "  " host ": requests " k - 2 " to " k " within " t[k] - t[k - 2] " s"; bad = 1 }
            }
            if (t[n] > (n - 2) * 0.5 + 1.5) { print "  " host ": the last request at " t[n] " s"; bad = 1 }
        }
        /^[0-9]+ requests in [0-9.]+ s: / { total = $1; span = $4 }
        /^Hosts in the table: / { table = $5 }
        END {
            if (gets != 18) { print "  " gets " GET lines, not 18"; exit 1 }
            if (hosts != 3) { print "  " hosts " host lines, not 3"; exit 1 }
            if (total != 18 || span == "") { print "  no \"18 requests in\" line"; exit 1 }
            if (span < 2.999 || span >= 6) { print "  18 requests in " span " s, not 3 to 6 s"; exit 1 }
            if (table != 3) { print "  " table " hosts in the table, not 3"; exit 1 }
            exit bad
        }' "$1"
}

check_named_producer() {
    check_summary "$1" 30 31 3 || return 1
    awk '
        /^Throttle [^ ]+: /                { throttle = $2; sub(/:$/, "", throttle) }
        /^Total: /                         { total = $2 }
        /^Worker [0-9]+ \(pid [0-9]+\): took / { sum += $6; workers++ }
        /^Sum over workers: /              { said = $4 }
        /^Unlinked /                       { unlinked = $2 }
        END {
            if (workers != 3) { print "  expected 3 worker lines, got " workers; exit 1 }
            if (sum != total || said != total) { print "  workers took " sum " (says " said "), Total is " total; exit 1 }
            if (throttle == "" || unlinked != throttle) { print "  throttle " throttle " not unlinked (" unlinked ")"; exit 1 }
        }' "$1" || return 1
    name=$(sed -n 's/^Unlinked //p' "$1")
    if [ -e "/dev/shm/mp_throttle.$name" ]; then
        echo "  /dev/shm/mp_throttle.$name is still there"
        return 1
    fi
}

for name in $names; do
    rc=$(cat "$out/$name.rc")
    result=ok
    if [ "$rc" != 0 ]; then
        echo "FAIL: $name exited with $rc"
        result=FAIL
    elif ! command -v "check_${name%-static}" >/dev/null 2>&1; then
        echo "FAIL: $name: no output check in $0"
        result=FAIL
    elif ! msg=$("check_${name%-static}" "$out/$name.out"); then
        echo "FAIL: $name output:"
        echo "$msg"
        result=FAIL
    else
        echo "ok: $name"
    fi
    if [ "$result" = FAIL ]; then
        fail=1
        sed 's/^/    | /' "$out/$name.out"
        [ -s "$out/$name.err" ] && sed 's/^/    ! /' "$out/$name.err"
    fi
done

[ "$fail" -eq 0 ] && echo "check_examples: all passed" || echo "check_examples: FAILED"
exit "$fail"
