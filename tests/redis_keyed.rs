//! Keyed throttles in Redis, against a real `redis-server` (started by each
//! test on a free loopback port, and stopped after it): each key's own
//! schedule, shared by processes forked from this one that stand in for
//! hosts; each key's Redis key expiring at the instant it is idle again;
//! the C API's `mpt_keyed_connect`. Timing bounds are generous (these
//! machines are noisy).

mod common;
#[path = "common/redis_server.rs"]
mod redis_server;

use common::{
    Kids, MS, Overrun, SEC, Shm, Test, TestResult, check, max_in_window, note, now, run, sleep_ms,
    wait_for,
};
use mp_throttle::config::{Config, Options};
use mp_throttle::error::Error;
use mp_throttle::keyed::{KEY_MAX, Keyed};
use mp_throttle::schedule::Hardcap;
use mp_throttle::store::redis::RedisStore;
use redis_server::RedisServer;

const HOSTS: usize = 4;

fn opts(hardcap: Hardcap) -> Options {
    Options {
        hardcap,
        as_monitor: false,
        ..Options::default()
    }
}

/// A keyed throttle of `max_n` per `per_s` in the Redis at `url`.
fn connect(
    url: &str,
    name: &str,
    max_n: u64,
    per_s: f64,
    hardcap: Hardcap,
) -> Result<Keyed<RedisStore>, String> {
    let config = Config::keyed_remote(max_n, per_s, &opts(hardcap)).map_err(|e| e.to_string())?;
    Keyed::connect(url, name, config).map_err(|e| e.to_string())
}

fn e(err: Error) -> String {
    format!("{err:?}")
}

/// The TTL in ms of a Redis key, through redis-cli.
fn pttl(server: &RedisServer, key: &[u8]) -> i64 {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &server.port.to_string(), "--no-raw", "PTTL"])
        .arg(std::ffi::OsStr::new(std::str::from_utf8(key).unwrap()))
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("(integer) ")
        .parse()
        .unwrap_or(-3)
}

/// Whether a key's PTTL `ttl` (ms), read after a reservation made at
/// `t0`, says it expires `idle_ms` after that reservation: never later
/// (rounded up by 2 ms), and no earlier than the time since `t0` allows.
fn expires_as(ttl: i64, idle_ms: i64, t0: i64) -> bool {
    let since = (now() - t0) / MS;
    ttl <= idle_ms + 2 && ttl + since + 2 >= idle_ms
}

/// A new key's tank is full; a key at its limit never slows another; keys
/// of every length, NUL bytes; peek and forget.
fn keys_of_their_own() -> TestResult {
    let server = RedisServer::start();
    let k = connect(&server.url(), "own", 3, 1.0, Hardcap::Limit)?;
    check!(k.created(), "the first connect creates");
    check!(
        k.has_fuel(b"a", 1) == Err(Error::NoFuel),
        "before start: no fuel"
    );
    k.start().map_err(e)?;
    check!(
        k.peek(b"a", 3).map_err(e)? == (3, 0),
        "a key never seen: a full tank"
    );
    for i in 0..3 {
        check!(k.has_fuel(b"a", 1).is_ok(), "unit {i} of a's full tank");
    }
    check!(k.has_fuel(b"a", 1) == Err(Error::NoFuel), "a is empty");
    check!(
        k.has_fuel(b"b", 3).is_ok(),
        "b: its own full tank of 3, at once"
    );
    let (level, wait) = k.peek(b"a", 1).map_err(e)?;
    check!(
        level == 0 && (200 * MS..=334 * MS).contains(&wait),
        "a's next unit in ~333 ms ({level}, {wait})"
    );
    // Keys of every length; NUL bytes and the length are part of the key.
    for len in [0, 1, 17, KEY_MAX] {
        let key = vec![b'k'; len];
        check!(
            k.has_fuel(&key, 3).is_ok(),
            "a key of {len} bytes: a full tank"
        );
        check!(
            k.has_fuel(&key, 1) == Err(Error::NoFuel),
            "a key of {len} bytes: its own"
        );
    }
    check!(
        matches!(
            k.has_fuel(&[b'k'; KEY_MAX + 1], 1),
            Err(Error::InvalidArgument(_))
        ),
        "over KEY_MAX"
    );
    for key in [&b"n\0b"[..], b"n\0c", b"n", b"n\0"] {
        check!(k.has_fuel(key, 3).is_ok(), "{key:?} is a key of its own");
    }
    let figures = k.key_figures(b"a").map_err(e)?;
    check!(
        figures.map(|f| f.granted) == Some(3),
        "a: 3 granted ({figures:?})"
    );
    check!(k.forget(b"a").map_err(e)?, "a was there");
    check!(!k.forget(b"a").map_err(e)?, "a is gone");
    check!(k.has_fuel(b"a", 3).is_ok(), "forgotten: a full tank again");
    check!(
        matches!(k.has_fuel(b"a", 4), Err(Error::InvalidArgument(_))),
        "4 > a tank of 3"
    );
    k.kill();
    check!(k.has_fuel(b"z", 1) == Err(Error::Killed), "killed");
    Ok(())
}

/// Hosts share each key's schedule: 4 processes take from 2 keys for
/// 1.2 s; each key gets its burst and its rate, never more.
fn hosts_share_each_key() -> TestResult {
    let server = RedisServer::start();
    let k = connect(&server.url(), "share", 5, 0.5, Hardcap::Limit)?; // 10/s, tank 5
    k.start().map_err(e)?;
    let shm = Shm::new(2 * HOSTS * 64);
    let mut kids = Kids::new();
    let t0 = now();
    for h in 0..HOSTS {
        let url = server.url();
        let shm = &shm;
        kids.spawn(move || {
            let Ok(k) = connect(&url, "share", 5, 0.5, Hardcap::Limit) else {
                return 2;
            };
            let mut got = [0usize; 2];
            while now() - t0 < 1200 * MS {
                for (i, key) in [&b"x"[..], b"y"].iter().enumerate() {
                    if let Ok(g) = k.has_fuel(key, 1) {
                        if got[i] < 64 {
                            shm.set((i * HOSTS + h) * 64 + got[i], g);
                        }
                        got[i] += 1;
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            0
        });
    }
    kids.wait_all_ok(20 * SEC)?;
    let elapsed = now() - t0;
    for (i, name) in ["x", "y"].iter().enumerate() {
        let mut grants: Vec<i64> = (0..HOSTS * 64)
            .map(|j| shm.get(i * HOSTS * 64 + j))
            .filter(|&g| g != 0)
            .collect();
        grants.sort_unstable();
        let most = 5 + (elapsed / (100 * MS)) as usize + 1;
        check!(
            grants.len() <= most,
            "key {name}: {} grants in {} ms (at most {most})",
            grants.len(),
            elapsed / MS
        );
        check!(
            grants.len() >= 10,
            "key {name}: only {} grants",
            grants.len()
        );
        // The token bucket on every interval (grant times are in each
        // host's clock: allow 5 ms).
        for a in 0..grants.len() {
            for b in a..grants.len() {
                let span = grants[b] - grants[a] + 5 * MS;
                let allowed = 5 + (span / (100 * MS)) as usize;
                check!(
                    b - a < allowed,
                    "key {name}: {} grants in {} ms",
                    b - a + 1,
                    span / MS
                );
            }
        }
    }
    Ok(())
}

/// WINDOW per key across hosts: never more than max_n in any window.
fn window_per_key_across_hosts() -> TestResult {
    let server = RedisServer::start();
    let k = connect(&server.url(), "win", 3, 0.3, Hardcap::Window)?;
    k.start().map_err(e)?;
    let shm = Shm::new(HOSTS * 128);
    let mut kids = Kids::new();
    for h in 0..HOSTS {
        let url = server.url();
        let shm = &shm;
        kids.spawn(move || {
            let Ok(k) = connect(&url, "win", 3, 0.3, Hardcap::Window) else {
                return 2;
            };
            let mut n = 0;
            let t0 = now();
            while now() - t0 < 1000 * MS && n < 128 {
                if let Ok(g) = k.await_fuel(b"w", 1, Some(200 * MS), None) {
                    shm.set(h * 128 + n, g);
                    n += 1;
                }
            }
            0
        });
    }
    kids.wait_all_ok(20 * SEC)?;
    let mut grants: Vec<i64> = (0..HOSTS * 128)
        .map(|j| shm.get(j))
        .filter(|&g| g != 0)
        .collect();
    grants.sort_unstable();
    // Grant times are in each host's clock, read a one-way delay after the
    // server's decision: allow 5 ms.
    let most = max_in_window(&grants, 300 * MS - 5 * MS);
    check!(
        most <= 3,
        "{most} grants in a window of 295 ms (WINDOW of 3 per 300 ms)"
    );
    check!(grants.len() >= 6, "only {} grants in 1 s", grants.len());
    Ok(())
}

/// Each key's Redis key expires at the instant the key is idle again: the
/// tank full (LIMIT), the window empty (WINDOW); then it is gone from Redis
/// and behaves as new; the live keys and the drops are counted.
fn idle_keys_expire() -> TestResult {
    let server = RedisServer::start();
    let k = connect(&server.url(), "exp", 2, 0.4, Hardcap::Limit)?; // 5/s, tank 2
    k.start().map_err(e)?;
    let t0 = now();
    k.has_fuel(b"h", 2).map_err(e)?;
    let ttl = pttl(&server, b"mpt:{exp}:k:h");
    check!(
        expires_as(ttl, 400, t0),
        "the key expires when its tank is full again, in 400 ms (PTTL {ttl})"
    );
    note!("a key emptied at 5/s with a tank of 2: PTTL {ttl} ms (full again in 400)");
    let t = k.table_figures().map_err(e)?;
    check!(
        (t.live, t.capacity, t.added) == (1, 0, 1),
        "one live key, no capacity: {t:?}"
    );
    let t0 = now();
    k.has_fuel(b"g", 1).map_err(e)?;
    let ttl = pttl(&server, b"mpt:{exp}:k:g");
    check!(
        expires_as(ttl, 200, t0),
        "one unit taken: full again in 200 ms (PTTL {ttl})"
    );
    check!(
        wait_for(2 * SEC, || pttl(&server, b"mpt:{exp}:k:h") == -2),
        "h expired"
    );
    let t = k.table_figures().map_err(e)?;
    check!(
        t.live == 0 && t.evictions == 2,
        "both idle keys dropped: {t:?}"
    );
    check!(k.key_figures(b"h").map_err(e)?.is_none(), "h is not there");
    check!(k.has_fuel(b"h", 2).is_ok(), "h behaves as new: a full tank");
    // WINDOW: gone once its window is empty.
    let w = connect(&server.url(), "expw", 2, 0.3, Hardcap::Window)?;
    w.start().map_err(e)?;
    let t0 = now();
    w.has_fuel(b"q", 2).map_err(e)?;
    let ttl = pttl(&server, b"mpt:{expw}:kw:q");
    check!(
        expires_as(ttl, 300, t0),
        "WINDOW's grant times expire with the window, in 300 ms (PTTL {ttl})"
    );
    check!(
        w.has_fuel(b"q", 1) == Err(Error::NoFuel),
        "the window is full"
    );
    sleep_ms(320);
    check!(w.has_fuel(b"q", 2).is_ok(), "the window is empty again");
    // NONE counts from a key's first use.
    let none = connect(&server.url(), "none", 1, 0.2, Hardcap::None)?;
    none.start().map_err(e)?;
    sleep_ms(500);
    check!(none.has_fuel(b"n", 1).is_ok(), "the first use: one unit");
    check!(
        none.has_fuel(b"n", 1) == Err(Error::NoFuel),
        "nothing banked before it"
    );
    Ok(())
}

/// Kill reaches a waiter on a key in another process; a plain throttle and
/// a keyed one of one name are a mismatch; unlink.
fn kill_mismatch_and_unlink() -> TestResult {
    let server = RedisServer::start();
    let url = server.url();
    let k = connect(&url, "kk", 1, 1000.0, Hardcap::Limit)?;
    k.start().map_err(e)?;
    k.has_fuel(b"slow", 1).map_err(e)?;
    let shm = Shm::new(2);
    let mut kids = Kids::new();
    {
        let url = url.clone();
        let shm = &shm;
        kids.spawn(move || {
            let Ok(k) = connect(&url, "kk", 1, 1000.0, Hardcap::Limit) else {
                return 2;
            };
            shm.set(0, 1);
            match k.await_fuel(b"slow", 1, None, None) {
                Err(Error::Killed) => {
                    shm.set(1, now());
                    0
                }
                _ => 3,
            }
        });
    }
    check!(wait_for(5 * SEC, || shm.get(0) == 1), "the child connected");
    sleep_ms(200);
    let killed_at = now();
    k.kill();
    kids.wait_all_ok(5 * SEC)?;
    check!(
        shm.get(1) - killed_at < 500 * MS,
        "the waiter heard of the kill {} ms after",
        (shm.get(1) - killed_at) / MS
    );
    let plain = mp_throttle::Throttle::connect(
        &url,
        "kk",
        1,
        std::time::Duration::from_secs(1000),
        &mp_throttle::Options::new().monitor(false),
    );
    check!(
        matches!(plain, Err(mp_throttle::Error::Mismatch(_))),
        "a plain connect to a keyed name: {plain:?}"
    );
    let reopened = Keyed::open_url(&url, "kk", &Options::default());
    check!(
        reopened.is_ok(),
        "open_url of a keyed throttle: {:?}",
        reopened.err()
    );
    let p = mp_throttle::Throttle::connect(
        &url,
        "plain",
        1,
        std::time::Duration::from_secs(1),
        &mp_throttle::Options::new().monitor(false),
    )
    .map_err(|e| e.to_string())?;
    check!(
        matches!(
            Keyed::open_url(&url, "plain", &Options::default()),
            Err(Error::Mismatch(_))
        ),
        "open_url of a plain throttle as keyed"
    );
    check!(
        matches!(connect(&url, "plain", 1, 1.0, Hardcap::Limit), Err(m) if m.contains("exists")),
        "a keyed connect to a plain name"
    );
    drop(p);
    mp_throttle::Throttle::unlink_url(&url, "kk").map_err(|e| e.to_string())?;
    check!(
        wait_for(2 * SEC, || k.kill_flag_is_set()),
        "unlinked: its users find it killed"
    );
    Ok(())
}

/// A signal handled while a call waits on its socket (Go's runtime signals
/// its threads all the time) never ends the call as "unreachable": 2,000
/// calls with SIGALRM every 200 us, its handler installed with SA_RESTART.
fn signals_do_not_break_calls() -> TestResult {
    extern "C" fn nothing(_: libc::c_int) {}
    let server = RedisServer::start();
    let k = connect(&server.url(), "sig", 1_000_000, 1.0, Hardcap::Limit)?;
    k.start().map_err(e)?;
    // SAFETY: a zeroed sigaction is valid (plain data).
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = nothing as extern "C" fn(libc::c_int) as usize;
    sa.sa_flags = libc::SA_RESTART;
    // SAFETY: a valid sigaction whose handler does nothing (async-signal
    // safe); the timer that raises it is stopped before the test returns.
    unsafe { libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut()) };
    let every = libc::timeval {
        tv_sec: 0,
        tv_usec: 200,
    };
    let timer = libc::itimerval {
        it_interval: every,
        it_value: every,
    };
    // SAFETY: a valid itimerval; the old value is not wanted.
    unsafe { libc::setitimer(libc::ITIMER_REAL, &timer, std::ptr::null_mut()) };
    let mut failures = Vec::new();
    for i in 0..2000 {
        if let Err(err) = k.has_fuel(format!("k{}", i % 7).as_bytes(), 1) {
            failures.push(format!("{i}: {err:?}"));
        }
    }
    let off = libc::itimerval {
        it_interval: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        it_value: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
    };
    // SAFETY: as above; stops the timer.
    unsafe { libc::setitimer(libc::ITIMER_REAL, &off, std::ptr::null_mut()) };
    check!(
        failures.is_empty(),
        "{} of 2000 calls failed, first: {:?}",
        failures.len(),
        failures.first()
    );
    Ok(())
}

/// The C API: `mpt_keyed_connect`, a grant, a key's figures, bad input.
fn c_api() -> TestResult {
    use mp_throttle::ffi::MptStatus;
    use mp_throttle::ffi::keyed::*;
    use std::ffi::CString;
    let server = RedisServer::start();
    let url = CString::new(server.url()).unwrap();
    let name = CString::new("capi").unwrap();
    let mut k = std::ptr::null_mut();
    // SAFETY: valid strings; NULL options; a valid out pointer.
    let s = unsafe {
        mpt_keyed_connect(
            url.as_ptr(),
            name.as_ptr(),
            2,
            1.0,
            std::ptr::null(),
            &mut k,
        )
    };
    check!(s == MptStatus::Ok, "connect: {s:?}");
    // SAFETY: a live handle.
    check!(unsafe { mpt_keyed_start(k) } == MptStatus::Ok, "start");
    let key = b"c\0api";
    let mut g = 0i64;
    for i in 0..2 {
        // SAFETY: a live handle; key valid for its length; a valid out pointer.
        let s = unsafe { mpt_keyed_has_fuel(k, key.as_ptr().cast(), key.len(), 1, &mut g) };
        check!(s == MptStatus::Ok, "unit {i}: {s:?}");
    }
    // SAFETY: as above.
    let s = unsafe { mpt_keyed_has_fuel(k, key.as_ptr().cast(), key.len(), 1, &mut g) };
    check!(
        s == MptStatus::NoFuel,
        "the key's tank of 2 is empty: {s:?}"
    );
    let mut st = MptKeyStats::default();
    // SAFETY: as above.
    let s = unsafe { mpt_keyed_key_stats(k, key.as_ptr().cast(), key.len(), &mut st) };
    check!(
        s == MptStatus::Ok && st.in_table == 1 && st.granted == 2,
        "key stats: {s:?} {st:?}"
    );
    let bad = CString::new("redis://127.0.0.1:1/0").unwrap();
    let mut k2 = std::ptr::null_mut();
    // SAFETY: valid strings and out pointer.
    let s = unsafe {
        mpt_keyed_connect(
            bad.as_ptr(),
            name.as_ptr(),
            2,
            1.0,
            std::ptr::null(),
            &mut k2,
        )
    };
    check!(
        s == MptStatus::Unreachable,
        "nothing listens on port 1: {s:?}"
    );
    // SAFETY: a live handle, freed once.
    check!(unsafe { mpt_keyed_free(k) } == MptStatus::Ok, "free");
    Ok(())
}

fn main() {
    let tests: &[Test] = &[
        ("keys_of_their_own", keys_of_their_own, 30),
        ("hosts_share_each_key", hosts_share_each_key, 60),
        (
            "window_per_key_across_hosts",
            window_per_key_across_hosts,
            60,
        ),
        ("idle_keys_expire", idle_keys_expire, 30),
        ("kill_mismatch_and_unlink", kill_mismatch_and_unlink, 30),
        ("c_api", c_api, 30),
        ("signals_do_not_break_calls", signals_do_not_break_calls, 60),
    ];
    run(
        tests,
        Overrun {
            cleanup: redis_server::kill_server,
            done: " (its redis-server was killed)",
        },
        || {},
    );
}
