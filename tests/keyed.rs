//! Keyed throttles on a manual clock: each key's exact schedule, keys that
//! never slow each other, the eviction rule, a full table, forced hash
//! collisions, keys of every length and with NUL bytes; then a few waits
//! on the real clock (first come, first served on one key), and named
//! keyed throttles.

use mp_throttle::clock::ManualClock;
use mp_throttle::config::{Config, Options};
use mp_throttle::error::Error;
use mp_throttle::keyed::{KEY_MAX, Keyed};
use mp_throttle::schedule::Hardcap;
use std::sync::Arc;

const SEC: i64 = 1_000_000_000;
const MS: i64 = 1_000_000;
const T0: i64 = 5_000 * SEC + 123;

fn keyed(max_n: u64, per_s: f64, capacity: u64, hardcap: Hardcap) -> (Keyed, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    let options = Options {
        hardcap,
        as_monitor: false,
        ..Options::default()
    };
    let config = Config::keyed(max_n, per_s, capacity, &options).unwrap();
    let k = Keyed::with_clock(config, clock.clone()).unwrap();
    k.start().unwrap();
    (k, clock)
}

/// Takes every unit `key` has now.
fn take_all(k: &Keyed, key: &[u8]) -> Vec<i64> {
    let mut out = Vec::new();
    loop {
        match k.has_fuel(key, 1) {
            Ok(g) => out.push(g),
            Err(Error::NoFuel) => return out,
            Err(e) => panic!("has_fuel: {e:?}"),
        }
        assert!(out.len() < 100_000, "the tank never empties");
    }
}

fn key(i: usize) -> Vec<u8> {
    format!("host-{i}.example").into_bytes()
}

#[test]
fn each_key_has_a_full_tank_at_first_then_its_own_rate() {
    // LIMIT: 4 per second per key; 200 keys at once.
    let (k, clock) = keyed(4, 1.0, 1000, Hardcap::Limit);
    for i in 0..200 {
        assert_eq!(
            take_all(&k, &key(i)).len(),
            4,
            "key {i}: a full tank at first"
        );
    }
    // Each refills at 1 per 250 ms, on its own.
    for step in 1..=8 {
        clock.advance(250 * MS);
        for i in 0..200 {
            let got = take_all(&k, &key(i));
            assert_eq!(got, vec![T0 + step * 250 * MS], "key {i} at step {step}");
        }
    }
    let t = k.table_figures().unwrap();
    assert_eq!(
        (t.live, t.capacity, t.evictions, t.added),
        (200, 1000, 0, 200)
    );
    assert_eq!(k.key_figures(&key(7)).unwrap().unwrap().granted, 12);
    assert_eq!(k.key_figures(b"never").unwrap(), None);
}

#[test]
fn a_key_at_its_limit_never_slows_another() {
    let (k, clock) = keyed(2, 1.0, 16, Hardcap::Limit);
    assert_eq!(take_all(&k, b"busy").len(), 2);
    assert_eq!(k.has_fuel(b"busy", 1), Err(Error::NoFuel));
    // Another key, at the same instant and later: a full tank.
    assert_eq!(take_all(&k, b"idle").len(), 2);
    clock.advance(MS);
    assert_eq!(k.has_fuel(b"busy", 1), Err(Error::NoFuel));
    assert_eq!(k.has_fuel(b"third", 2), Ok(T0 + MS));
}

#[test]
fn one_spaces_each_keys_grants() {
    let (k, clock) = keyed(10, 1.0, 64, Hardcap::One);
    let mut grants: Vec<Vec<i64>> = vec![Vec::new(); 20];
    for _ in 0..400 {
        for (i, g) in grants.iter_mut().enumerate() {
            g.extend(take_all(&k, &key(i)));
        }
        clock.advance(7 * MS);
    }
    for (i, g) in grants.iter().enumerate() {
        assert_eq!(g[0], T0, "key {i}: its first grant at once");
        for w in g.windows(2) {
            assert!(w[1] - w[0] >= 100 * MS, "key {i}: {} apart", w[1] - w[0]);
        }
        // ONE keeps nothing for a late taker: on a 7 ms grid, a grant
        // every 105 ms, up to 399 * 7 ms.
        assert_eq!(g.len(), 1 + 399 * 7 / 105, "key {i}");
    }
    assert_eq!(
        k.has_fuel(b"x", 2),
        Err(Error::InvalidArgument(
            "2 units can never be granted at once: a key's tank holds at most 1 (One hardcap)"
                .into()
        ))
    );
}

#[test]
fn window_never_holds_more_than_max_n_per_key() {
    let (k, clock) = keyed(5, 1.0, 64, Hardcap::Window);
    let mut grants: Vec<Vec<i64>> = vec![Vec::new(); 30];
    let mut x: u64 = 12345;
    for _ in 0..3000 {
        // Random steps, random keys, random sizes.
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        clock.advance((x >> 40) as i64 % (40 * MS));
        let i = (x >> 20) as usize % 30;
        let n = 1 + (x >> 10) % 3;
        if let Ok(g) = k.has_fuel(&key(i), n) {
            grants[i].extend(std::iter::repeat_n(g, n as usize));
        }
    }
    for (i, g) in grants.iter().enumerate() {
        for (j, &t) in g.iter().enumerate() {
            let in_window = g[j..].iter().take_while(|&&u| u < t + SEC).count();
            assert!(
                in_window <= 5,
                "key {i}: {in_window} grants in 1 s from {t}"
            );
        }
        assert!(g.len() > 5, "key {i} got {}", g.len());
    }
}

#[test]
fn none_counts_from_first_use_and_banks() {
    let (k, clock) = keyed(1, 1.0, 8, Hardcap::None);
    clock.advance(10 * SEC); // the throttle ran 10 s before the key's first use
    assert_eq!(
        take_all(&k, b"late").len(),
        1,
        "one unit at first use, no more"
    );
    clock.advance(5 * SEC);
    assert_eq!(take_all(&k, b"late").len(), 5, "5 s banked");
    assert_eq!(k.peek(b"late", 3).unwrap(), (0, 3 * SEC));
}

#[test]
fn an_idle_key_is_evicted_and_behaves_as_new() {
    let (k, clock) = keyed(2, 1.0, 2, Hardcap::Limit);
    take_all(&k, b"a");
    take_all(&k, b"b");
    // Both hold back fuel: no room for a third, and nothing taken.
    match k.has_fuel(b"c", 1) {
        Err(Error::NoRoom(m)) => assert!(m.contains("capacity of 2"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(k.table_figures().unwrap().live, 2);
    assert_eq!(k.key_figures(b"c").unwrap(), None);
    // "a" and "b" are untouched: still empty.
    assert_eq!(k.has_fuel(b"a", 1), Err(Error::NoFuel));
    // 1 ms before "a" and "b" are full again (2 units, 500 ms each), no
    // key may be dropped yet; at 1 s both may.
    clock.advance(SEC - MS);
    assert!(matches!(k.has_fuel(b"c", 1), Err(Error::NoRoom(_))));
    clock.advance(MS);
    assert_eq!(take_all(&k, b"c").len(), 2, "room made: c has a full tank");
    let t = k.table_figures().unwrap();
    assert_eq!((t.live, t.evictions), (2, 1));
    // Whichever was dropped behaves as a new key: a full tank, at once.
    let dropped = if k.key_figures(b"a").unwrap().is_none() {
        "a"
    } else {
        "b"
    };
    clock.advance(500 * MS);
    assert_eq!(take_all(&k, dropped.as_bytes()).len(), 2);
}

#[test]
fn a_key_holding_back_fuel_is_never_evicted() {
    for hardcap in [Hardcap::Limit, Hardcap::One, Hardcap::None, Hardcap::Window] {
        let (k, clock) = keyed(3, 3.0, 1, hardcap);
        take_all(&k, b"held");
        // One second per unit: just before the key is idle again...
        let idle_after = match hardcap {
            Hardcap::Window => 3 * SEC,
            Hardcap::None | Hardcap::One => SEC,
            _ => 3 * SEC,
        };
        clock.advance(idle_after - 1);
        assert!(
            matches!(k.has_fuel(b"new", 1), Err(Error::NoRoom(_))),
            "{hardcap:?}: evicted while it held back fuel"
        );
        clock.advance(1);
        assert!(
            k.has_fuel(b"new", 1).is_ok(),
            "{hardcap:?}: idle, so evicted"
        );
        assert_eq!(k.table_figures().unwrap().evictions, 1, "{hardcap:?}");
    }
}

#[test]
fn keys_that_collide_are_all_kept_until_their_slots_run_out() {
    // 100 keys of capacity: 128 slots; a key may go in the 32 slots from
    // the one its hash points at.
    let (k, _clock) = keyed(1, 1.0, 100, Hardcap::Limit);
    let (_, slots) = k.home_slot(b"x").unwrap();
    assert_eq!(slots, 128);
    let target = k.home_slot(b"anchor").unwrap().0;
    let mut same: Vec<Vec<u8>> = Vec::new();
    let mut i = 0;
    while same.len() < 33 {
        let c = format!("collider-{i}").into_bytes();
        if k.home_slot(&c).unwrap().0 == target {
            same.push(c);
        }
        i += 1;
    }
    for (j, c) in same.iter().enumerate().take(32) {
        assert!(k.has_fuel(c, 1).is_ok(), "collider {j}");
    }
    // Each is found again, in its own slot: empty now.
    for c in same.iter().take(32) {
        assert_eq!(k.has_fuel(c, 1), Err(Error::NoFuel));
    }
    // The 33rd has no slot left among its 32, whose keys all hold back
    // fuel, though the table holds 32 of 100.
    match k.has_fuel(&same[32], 1) {
        Err(Error::NoRoom(m)) => assert!(m.contains("32 slots"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(k.table_figures().unwrap().live, 32);
    // A key with another home is unaffected.
    let other = (0..)
        .map(|i| format!("other-{i}").into_bytes())
        .find(|c| {
            let h = k.home_slot(c).unwrap().0;
            (h + 128 - target) % 128 >= 40
        })
        .unwrap();
    assert!(k.has_fuel(&other, 1).is_ok());
}

#[test]
fn keys_of_every_length_and_with_nul_bytes() {
    let (k, _clock) = keyed(1, 1.0, 1000, Hardcap::Limit);
    for len in 0..=KEY_MAX {
        let key = vec![b'k'; len];
        assert!(k.has_fuel(&key, 1).is_ok(), "length {len}");
    }
    for len in 0..=KEY_MAX {
        assert_eq!(
            k.has_fuel(&vec![b'k'; len], 1),
            Err(Error::NoFuel),
            "length {len}: found"
        );
    }
    let long = vec![b'k'; KEY_MAX + 1];
    assert!(matches!(
        k.has_fuel(&long, 1),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(k.peek(&long, 1), Err(Error::InvalidArgument(_))));
    // NUL bytes are part of the key; so is its length.
    for key in [&b"a\0b"[..], b"a\0c", b"a", b"a\0", b"\0", b"\0\0"] {
        assert!(k.has_fuel(key, 1).is_ok(), "{key:?} is a key of its own");
    }
    assert_eq!(k.has_fuel(b"a\0b", 1), Err(Error::NoFuel));
}

#[test]
fn forget_and_peek() {
    let (k, clock) = keyed(4, 1.0, 8, Hardcap::Limit);
    assert_eq!(k.peek(b"h", 4).unwrap(), (4, 0), "a key never seen: full");
    assert_eq!(k.key_figures(b"h").unwrap(), None, "peek adds nothing");
    take_all(&k, b"h");
    assert_eq!(k.peek(b"h", 1).unwrap(), (0, 250 * MS));
    assert_eq!(k.peek(b"h", 4).unwrap(), (0, SEC));
    clock.advance(600 * MS);
    assert_eq!(k.peek(b"h", 4).unwrap(), (2, 400 * MS));
    assert_eq!(k.forget(b"h"), Ok(true));
    assert_eq!(k.forget(b"h"), Ok(false));
    assert_eq!(take_all(&k, b"h").len(), 4, "forgotten: starts afresh");
    k.kill();
    assert_eq!(k.has_fuel(b"h", 1), Err(Error::Killed));
    assert_eq!(k.peek(b"h", 1), Err(Error::Killed));
    assert!(matches!(
        k.has_fuel(b"h", 0),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn keys_keep_their_schedules_across_a_stop() {
    let (k, clock) = keyed(2, 1.0, 8, Hardcap::Limit);
    take_all(&k, b"h");
    k.stop().unwrap();
    assert_eq!(k.has_fuel(b"h", 1), Err(Error::Killed));
    clock.advance(100 * MS);
    k.start().unwrap();
    assert_eq!(
        k.has_fuel(b"h", 1),
        Err(Error::NoFuel),
        "still empty after the pause"
    );
    clock.advance(400 * MS);
    assert_eq!(take_all(&k, b"h").len(), 1);
    assert_eq!(k.summary().total, 3, "every grant counted, over every key");
}

#[test]
fn bad_configurations_are_refused() {
    let o = Options::default();
    assert!(Config::keyed(4, 1.0, 0, &o).is_err());
    assert!(Config::keyed(4, 1.0, (1 << 26) + 1, &o).is_err());
    assert!(Config::keyed((1 << 24) + 1, 1.0, 4, &o).is_err());
    let w = Options {
        hardcap: Hardcap::Window,
        ..o
    };
    assert!(Config::keyed((1 << 16) + 1, 1.0, 4, &w).is_err());
    assert!(Config::keyed(1 << 16, 1.0, 4, &w).is_ok());
    let off = Options {
        as_throttle: false,
        ..o
    };
    assert!(Config::keyed(4, 1.0, 4, &off).is_err());
    assert!(Keyed::new(Config::new(4, 1.0, &o).unwrap()).is_err());
}

#[test]
fn waiters_on_one_key_are_served_in_order_and_others_go_at_once() {
    let options = Options {
        as_monitor: false,
        ..Options::default()
    };
    // 1 per 40 ms per key.
    let k = Arc::new(Keyed::new(Config::keyed(1, 0.04, 64, &options).unwrap()).unwrap());
    k.start().unwrap();
    k.has_fuel(b"slow", 1).unwrap();
    let mut waiters = Vec::new();
    for i in 0..4 {
        let k = Arc::clone(&k);
        waiters.push(std::thread::spawn(move || {
            let g = k.await_fuel(b"slow", 1, Some(5 * SEC), None).unwrap();
            (i, g)
        }));
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // Meanwhile another key goes at once.
    let t = mp_throttle::clock::monotonic_ns();
    let g = k.await_fuel(b"fast", 1, Some(0), None).unwrap();
    assert!(g - t < 100 * MS, "another key waited {} ns", g - t);
    let mut got: Vec<(i32, i64)> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
    got.sort_by_key(|&(_, g)| g);
    let order: Vec<i32> = got.iter().map(|&(i, _)| i).collect();
    assert_eq!(order, vec![0, 1, 2, 3], "first come, first served");
    for w in got.windows(2) {
        assert!(w[1].1 - w[0].1 >= 40 * MS, "{} ns apart", w[1].1 - w[0].1);
    }
    // A waiter whose grant would come after its timeout takes nothing, and
    // kill wakes a sleeping waiter: on a key whose next unit is 1,000 s away.
    let long = Arc::new(Keyed::new(Config::keyed(1, 1000.0, 4, &options).unwrap()).unwrap());
    long.start().unwrap();
    long.has_fuel(b"slow", 1).unwrap();
    let t = mp_throttle::clock::monotonic_ns();
    assert_eq!(
        long.await_fuel(b"slow", 1, Some(10 * MS), None),
        Err(Error::Timeout)
    );
    assert!(
        mp_throttle::clock::monotonic_ns() - t >= 10 * MS,
        "not before its timeout"
    );
    let k2 = Arc::clone(&long);
    let w = std::thread::spawn(move || k2.await_fuel(b"slow", 1, None, None));
    std::thread::sleep(std::time::Duration::from_millis(10));
    long.kill();
    assert_eq!(w.join().unwrap(), Err(Error::Killed));
}

#[test]
fn named_keyed_throttles() {
    let name = format!("keyed-test-{}", std::process::id());
    let o = Options {
        as_monitor: false,
        ..Options::default()
    };
    let a = Keyed::create_named(&name, Config::keyed(3, 1.0, 50, &o).unwrap()).unwrap();
    assert!(a.created());
    let b = Keyed::open(&name, &o).unwrap();
    assert!(!b.created());
    assert_eq!(b.config().keys, 50);
    a.start().unwrap();
    assert_eq!(take_all(&a, b"shared").len(), 3);
    assert_eq!(
        b.has_fuel(b"shared", 1),
        Err(Error::NoFuel),
        "one schedule per key, shared"
    );
    // Another capacity is another configuration.
    assert!(matches!(
        Keyed::create_named(&name, Config::keyed(3, 1.0, 51, &o).unwrap()),
        Err(Error::Mismatch(_))
    ));
    // A plain open of a keyed throttle, and the other way round.
    assert!(matches!(
        mp_throttle::throttle::Throttle::open(&name, &o),
        Err(Error::Mismatch(_))
    ));
    let plain = format!("keyed-test-plain-{}", std::process::id());
    let _p =
        mp_throttle::throttle::Throttle::create_named(&plain, Config::new(3, 1.0, &o).unwrap())
            .unwrap();
    assert!(matches!(Keyed::open(&plain, &o), Err(Error::Mismatch(_))));
    mp_throttle::throttle::Throttle::unlink(&plain).unwrap();
    mp_throttle::throttle::Throttle::unlink(&name).unwrap();
}
