//! The statistics of docs/design.md ("Statistics"), computed from emission timestamps: pure data
//! structures with no threads and no shared memory, driven by the monitor.
//!
//! - `latest`: emissions whose timestamp lies in the last second
//!   (`(now - 1 s, ∞)`, as mp_throttle counts them).
//! - `lo` / `hi`: the shortest and longest interval between two emissions
//!   that follow each other in time, over all runs; intervals that span a
//!   pause are not counted.
//!
//! Emissions reach the monitor a little late and in no particular order
//! across processes, so timestamps wait `lag` before they are put in order
//! and measured; one that arrives later still is counted but measured against
//! nothing. Emissions that come faster than the monitor reads them (about
//! 400,000 per second per emitting thread) still count in `latest`, by the
//! time they reached the monitor; no interval is measured across the gap
//! their lost timestamps leave.

#![forbid(unsafe_code)]

use std::collections::VecDeque;

/// One second in nanoseconds.
pub const SECOND_NS: i64 = 1_000_000_000;

/// A `(time between emissions, emissions per second)` pair, as every
/// statistic of mp_throttle is.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RatePair {
    /// Seconds between emissions (0 when there were none).
    pub seconds_between: f64,
    /// Emissions per second (0 when there were none; infinite for an
    /// interval of 0 ns).
    pub per_second: f64,
}

impl RatePair {
    /// From a rate in emissions per second.
    pub fn from_rate(per_second: f64) -> Self {
        if per_second > 0.0 {
            Self {
                seconds_between: 1.0 / per_second,
                per_second,
            }
        } else {
            Self::default()
        }
    }

    /// From an interval in nanoseconds; `None` (no interval yet) gives zeros.
    pub fn from_interval(ns: Option<i64>) -> Self {
        match ns {
            Some(ns) if ns >= 0 => {
                let s = ns as f64 / 1e9;
                Self {
                    seconds_between: s,
                    per_second: if ns == 0 { f64::INFINITY } else { 1.0 / s },
                }
            }
            _ => Self::default(),
        }
    }

    /// `count` emissions over `runtime_ns`.
    pub fn mean(count: u64, runtime_ns: i64) -> Self {
        if count == 0 || runtime_ns <= 0 {
            return Self::default();
        }
        Self::from_rate(count as f64 / (runtime_ns as f64 / 1e9))
    }
}

/// Running statistics over emission timestamps.
#[derive(Debug)]
pub struct Engine {
    lag_ns: i64,
    /// Measured timestamps of the last second, in order.
    recent: VecDeque<i64>,
    /// Timestamps waiting `lag_ns` to be put in order.
    pending: Vec<i64>,
    /// Scratch space for the settled ones (kept to avoid allocating).
    batch: Vec<i64>,
    last: Option<i64>,
    run_start: i64,
    lo: Option<i64>,
    hi: Option<i64>,
    /// Emissions counted but whose timestamps were lost (lane overrun), by
    /// when the loss was seen: they count in `latest` by that time.
    lost: VecDeque<(i64, u64)>,
    lost_recent: u64,
    /// Timestamps up to here may have lost neighbours: no interval is
    /// measured across them.
    unmeasured_until: i64,
}

impl Engine {
    /// An engine that lets timestamps settle for `lag_ns`.
    pub fn new(lag_ns: i64) -> Self {
        Self {
            lag_ns: lag_ns.max(0),
            recent: VecDeque::new(),
            pending: Vec::new(),
            batch: Vec::new(),
            last: None,
            run_start: i64::MIN,
            lo: None,
            hi: None,
            lost: VecDeque::new(),
            lost_recent: 0,
            unmeasured_until: i64::MIN,
        }
    }

    /// `count` emissions reached the monitor by `now` without their
    /// timestamps (they came faster than it reads). They count in `latest`
    /// as of `now`; intervals are not measured over the gap they leave.
    pub fn note_lost(&mut self, now: i64, count: u64) {
        if count == 0 {
            return;
        }
        self.lost.push_back((now, count));
        self.lost_recent = self.lost_recent.saturating_add(count);
        self.unmeasured_until = now;
        self.last = None;
    }

    /// Carries `lo`/`hi` over from earlier runs (perhaps kept by another
    /// process's monitor).
    pub fn resume_extremes(&mut self, lo: Option<i64>, hi: Option<i64>) {
        self.lo = lo;
        self.hi = hi;
    }

    /// A run starts at `t`: no interval reaches back over the pause before
    /// it, and the last second starts afresh (older timestamps that arrive
    /// late are counted in no statistic). `lo`/`hi` carry over.
    pub fn new_run(&mut self, t: i64) {
        self.recent.clear();
        self.pending.clear();
        self.lost.clear();
        self.lost_recent = 0;
        self.last = None;
        self.run_start = t;
    }

    /// Adds one emission timestamp.
    pub fn add(&mut self, ts: i64) {
        self.pending.push(ts);
    }

    /// Measures the timestamps that have settled by `now`.
    pub fn settle(&mut self, now: i64) {
        let horizon = now.saturating_sub(self.lag_ns);
        self.pending.sort_unstable();
        let ready = self.pending.partition_point(|&t| t <= horizon);
        // Through a buffer kept between calls: no allocation once warm (a
        // monitor that allocates makes fork() under some allocators riskier).
        let mut batch = std::mem::take(&mut self.batch);
        batch.extend(self.pending.drain(..ready));
        for &ts in &batch {
            self.measure(ts);
        }
        batch.clear();
        self.batch = batch;
    }

    /// Measures everything pending (the run is over).
    pub fn finish(&mut self) {
        self.settle(i64::MAX);
    }

    fn measure(&mut self, ts: i64) {
        if ts < self.run_start {
            return;
        }
        if ts <= self.unmeasured_until {
            // Its neighbours may be among the lost: measure from the next.
            self.last = None;
        } else {
            if let Some(last) = self.last.filter(|&l| ts >= l) {
                let d = ts - last;
                self.lo = Some(self.lo.map_or(d, |lo| lo.min(d)));
                self.hi = Some(self.hi.map_or(d, |hi| hi.max(d)));
            }
            self.last = Some(self.last.map_or(ts, |l| l.max(ts)));
        }
        match self.recent.back() {
            Some(&back) if back > ts => {
                let at = self.recent.partition_point(|&t| t <= ts);
                self.recent.insert(at, ts);
            }
            _ => self.recent.push_back(ts),
        }
    }

    /// Emissions in the last second before `now` (see the module docs).
    pub fn latest(&mut self, now: i64) -> u64 {
        let cut = now.saturating_sub(SECOND_NS);
        while self.recent.front().is_some_and(|&t| t <= cut) {
            self.recent.pop_front();
        }
        while self.lost.front().is_some_and(|&(t, _)| t <= cut) {
            if let Some((_, count)) = self.lost.pop_front() {
                self.lost_recent = self.lost_recent.saturating_sub(count);
            }
        }
        let cut = cut.max(self.run_start.saturating_sub(1));
        let waiting = self.pending.iter().filter(|&&t| t > cut).count();
        ((self.recent.len() + waiting) as u64).saturating_add(self.lost_recent)
    }

    /// Shortest interval seen, ns.
    pub fn lo(&self) -> Option<i64> {
        self.lo
    }

    /// Longest interval seen, ns.
    pub fn hi(&self) -> Option<i64> {
        self.hi
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    #[test]
    fn latest_counts_the_last_second() {
        let mut e = Engine::new(0);
        e.new_run(0);
        for k in 0..10 {
            e.add(k * 250 * MS); // 4 per second for 2.25 s
        }
        e.settle(2_500 * MS);
        // (1.5 s, 2.5 s] holds 1.75, 2.0, 2.25 s.
        assert_eq!(e.latest(2_500 * MS), 3);
        assert_eq!(e.lo(), Some(250 * MS));
        assert_eq!(e.hi(), Some(250 * MS));
    }

    #[test]
    fn out_of_order_batches_are_sorted_and_pauses_not_measured() {
        let mut e = Engine::new(10 * MS);
        e.new_run(0);
        for t in [300, 100, 200, 150] {
            e.add(t * MS);
        }
        e.settle(500 * MS);
        assert_eq!(e.lo(), Some(50 * MS));
        assert_eq!(e.hi(), Some(100 * MS));
        e.new_run(10_000 * MS);
        e.add(10_000 * MS);
        e.add(10_020 * MS);
        e.finish();
        assert_eq!(e.lo(), Some(20 * MS));
        assert_eq!(e.hi(), Some(100 * MS), "the 9.7 s pause is not an interval");
    }

    #[test]
    fn extremes_carry_over_and_stale_timestamps_are_ignored() {
        let mut e = Engine::new(0);
        e.resume_extremes(Some(5 * MS), Some(200 * MS));
        e.new_run(1_000 * MS);
        e.add(900 * MS); // left over from before the run
        e.add(1_050 * MS);
        e.add(1_100 * MS);
        e.settle(1_200 * MS);
        assert_eq!(e.latest(1_200 * MS), 2);
        assert_eq!(e.lo(), Some(5 * MS));
        assert_eq!(e.hi(), Some(200 * MS), "900 -> 1050 spans the pause");
    }

    #[test]
    fn lost_timestamps_still_count_and_break_intervals() {
        let mut e = Engine::new(0);
        e.new_run(0);
        e.add(100 * MS);
        e.add(110 * MS);
        e.settle(150 * MS);
        e.note_lost(200 * MS, 1000);
        e.add(190 * MS); // read in the lossy batch: neighbours may be gone
        e.add(300 * MS);
        e.add(302 * MS);
        e.settle(400 * MS);
        assert_eq!(e.latest(400 * MS), 1005);
        assert_eq!(e.lo(), Some(2 * MS));
        assert_eq!(e.hi(), Some(10 * MS), "no interval across the loss");
        assert_eq!(e.latest(1_250 * MS), 2, "the lost ones age out at 1.2 s");
    }

    #[test]
    fn timestamps_wait_for_the_lag() {
        let mut e = Engine::new(20 * MS);
        e.new_run(0);
        e.add(100 * MS);
        e.add(105 * MS);
        e.settle(110 * MS);
        assert_eq!(e.lo(), None, "not settled yet");
        assert_eq!(e.latest(110 * MS), 2, "pending ones still count");
        e.settle(130 * MS);
        assert_eq!(e.lo(), Some(5 * MS));
    }

    #[test]
    fn pairs() {
        assert_eq!(
            RatePair::from_rate(4.0),
            RatePair {
                seconds_between: 0.25,
                per_second: 4.0
            }
        );
        assert_eq!(RatePair::from_rate(0.0), RatePair::default());
        assert_eq!(RatePair::from_interval(None), RatePair::default());
        assert_eq!(RatePair::from_interval(Some(0)).per_second, f64::INFINITY);
        assert_eq!(RatePair::mean(20, 5 * SECOND_NS), RatePair::from_rate(4.0));
        assert_eq!(RatePair::mean(0, 5 * SECOND_NS), RatePair::default());
    }
}
