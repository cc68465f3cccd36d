//! The mp_throttle tutorial in Rust: 5 worker threads share 4 units of fuel
//! per second for 5 seconds, then the throttle is stopped and its summary
//! printed. Run: `cargo run --example rust_tutorial`. The schedule is exact:
//! units at 0, 0.25, ... 5.0 s, so the total is 20 or 21.

// README begin
use mp_throttle::{Error, Summary, Throttle};
use std::time::Duration;

/// `workers` threads take fuel from a throttle of `max_n` per `per` until it
/// is stopped after `run_for`; returns the summary and each thread's count.
pub fn run(
    workers: usize,
    max_n: u64,
    per: Duration,
    run_for: Duration,
) -> Result<(Summary, Vec<u64>), Error> {
    let throttle = Throttle::new(max_n, per)?;
    throttle.start()?; // the first unit is there at once
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut units = 0;
                    // Blocks until fuel is there; Err(Killed) once stopped.
                    while throttle.await_fuel(None).is_ok() {
                        units += 1; // do something and repeat
                    }
                    units
                })
            })
            .collect();
        std::thread::sleep(run_for);
        let summary = throttle.stop()?; // sets the kill flag: every worker finishes
        let counts = handles.into_iter().map(|h| h.join().unwrap()).collect();
        Ok((summary, counts))
    })
}

fn main() -> Result<(), Error> {
    let (s, counts) = run(5, 4, Duration::from_secs(1), Duration::from_secs(5))?;
    println!("Runtime: {:.6}", s.runtime.as_secs_f64());
    println!("Total: {}", s.total);
    println!("Time between processes: {:.6}", s.mean.seconds_between);
    println!("Processes per second: {:.6}", s.mean.per_second);
    for (i, units) in counts.iter().enumerate() {
        println!("Thread {i}: {units} units");
    }
    println!("Sum over threads: {}", counts.iter().sum::<u64>());
    Ok(())
}
// README end
