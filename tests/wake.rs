//! Wakers make no system call when nobody waits, and exactly one when
//! somebody does. (Its own test binary: the count is per process.)

use mp_throttle::config::{Config, Options};
use mp_throttle::error::Error;
use mp_throttle::throttle::Throttle;
use mp_throttle::wait::wake_calls;
use std::sync::Arc;
use std::time::Duration;

#[test]
fn wakers_call_futex_wake_only_when_someone_sleeps() {
    // No monitor thread: it would be a sleeper itself.
    let options = Options {
        as_monitor: false,
        ..Options::default()
    };
    let t = Arc::new(Throttle::new(Config::new(1, 1000.0, &options).unwrap()).unwrap());

    let before = wake_calls();
    t.start().unwrap();
    assert!(t.has_fuel().is_ok(), "the first unit is there at the start");
    assert_eq!(t.has_fuel(), Err(Error::NoFuel));
    t.kill();
    t.stop().unwrap();
    t.start().unwrap();
    assert_eq!(
        wake_calls(),
        before,
        "start, kill and stop with nobody asleep"
    );

    // The restart keeps the bucket: the next unit is 1000 s away.
    let sleeper = {
        let t = Arc::clone(&t);
        std::thread::spawn(move || t.await_fuel(None))
    };
    std::thread::sleep(Duration::from_millis(200));
    assert!(!sleeper.is_finished(), "the waiter sleeps");
    t.kill();
    assert_eq!(sleeper.join().unwrap(), Err(Error::Killed));
    assert_eq!(wake_calls(), before + 1, "one FUTEX_WAKE for the sleeper");
}
