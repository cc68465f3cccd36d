//! Rates and durations as people write them: `10/s`, `600/min`, `5/250ms`,
//! `1MB/s` (units of fuel are then bytes); `2s`, `500ms`, `1.5m`.

use std::time::Duration;

/// A rate: `max_n` units of fuel per `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Units per period.
    pub max_n: u64,
    /// The period.
    pub per: Duration,
}

impl Rate {
    /// Units per second.
    pub fn per_second(&self) -> f64 {
        self.max_n as f64 / self.per.as_secs_f64()
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.max_n, show_duration(self.per))
    }
}

/// What a rate looks like, for messages and `--help`.
pub const RATE_FORMS: &str = "COUNT/PERIOD, e.g. 10/s, 600/min, 5/250ms, 1MB/s (COUNT may end \
                              in k, M, G, or B, kB, MB, GB, KiB, MiB, GiB for bytes; PERIOD is \
                              an optional number and ns, us, ms, s, min or h)";

/// Parses a rate (see [`RATE_FORMS`]).
pub fn parse_rate(text: &str) -> Result<Rate, String> {
    let bad = |why: &str| format!("{text:?} is not a rate: {why}; write {RATE_FORMS}");
    let (count, period) = text.split_once('/').ok_or_else(|| bad("it has no '/'"))?;
    let max_n = parse_count(count.trim()).map_err(|why| bad(&why))?;
    let period = period.trim();
    // A bare unit is one of it: "s" is "1s".
    let per = if period.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        parse_duration(period).map_err(|why| bad(&why))?
    } else {
        parse_duration(&format!("1{period}")).map_err(|why| bad(&why))?
    };
    if per.is_zero() {
        return Err(bad("the period is zero"));
    }
    Ok(Rate { max_n, per })
}

/// A count with an optional multiplier suffix.
fn parse_count(text: &str) -> Result<u64, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    if digits.is_empty() {
        return Err(format!("the count {text:?} is not a whole number"));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("the count {digits} is too large"))?;
    let times: u64 = match suffix {
        "" | "B" => 1,
        "k" | "K" | "kB" | "KB" => 1_000,
        "M" | "MB" => 1_000_000,
        "G" | "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => return Err(format!("{other:?} is not a unit of count")),
    };
    let n = n
        .checked_mul(times)
        .ok_or_else(|| format!("the count {text} is too large"))?;
    if n == 0 {
        return Err("the count is zero".into());
    }
    Ok(n)
}

/// What a duration looks like, for messages and `--help`.
pub const DURATION_FORMS: &str = "a number and ns, us, ms, s, m (or min) or h, e.g. 2s, 500ms, \
                                  1.5m; a bare number is seconds";

/// Parses a duration (see [`DURATION_FORMS`]).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration: write {DURATION_FORMS}"))?;
    let seconds = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "" | "s" | "sec" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "{other:?} is not a unit of time in {text:?}: write {DURATION_FORMS}"
            ));
        }
    };
    let secs = value * seconds;
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|_| secs.is_finite())
        .ok_or_else(|| format!("{text:?} is not a duration: out of range"))
}

/// A duration as short as it can be written back: `1s`, `250ms`, `1min`.
pub fn show_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    for (unit, size) in [
        ("h", 3_600_000_000_000u128),
        ("min", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
    ] {
        if ns >= size && ns % size == 0 {
            let n = ns / size;
            return if n == 1 && unit != "us" && unit != "ms" {
                unit.to_string()
            } else {
                format!("{n}{unit}")
            };
        }
    }
    format!("{ns}ns")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(max_n: u64, per_ns: u64) -> Rate {
        Rate {
            max_n,
            per: Duration::from_nanos(per_ns),
        }
    }

    #[test]
    fn rates_people_write() {
        assert_eq!(parse_rate("10/s"), Ok(rate(10, 1_000_000_000)));
        assert_eq!(parse_rate("600/min"), Ok(rate(600, 60_000_000_000)));
        assert_eq!(parse_rate("5/250ms"), Ok(rate(5, 250_000_000)));
        assert_eq!(parse_rate("1MB/s"), Ok(rate(1_000_000, 1_000_000_000)));
        assert_eq!(parse_rate("2KiB/100ms"), Ok(rate(2048, 100_000_000)));
        assert_eq!(parse_rate("3k/2s"), Ok(rate(3000, 2_000_000_000)));
        assert_eq!(parse_rate("1/h"), Ok(rate(1, 3_600_000_000_000)));
        assert_eq!(parse_rate(" 7 / 1.5s "), Ok(rate(7, 1_500_000_000)));
    }

    #[test]
    fn bad_rates_are_explained() {
        for (text, says) in [
            ("10", "no '/'"),
            ("0/s", "zero"),
            ("ten/s", "whole number"),
            ("10/fortnight", "unit of time"),
            ("10/0s", "zero"),
            ("10XB/s", "unit of count"),
            ("99999999999999999999/s", "too large"),
            ("18446744073709551615GB/s", "too large"),
        ] {
            let e = parse_rate(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
            assert!(
                e.contains("10/s"),
                "{text}: the message shows the forms: {e}"
            );
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1 week").is_err());
        assert!(parse_duration("1e400s").is_err());
    }

    #[test]
    fn shown_back() {
        assert_eq!(rate(10, 1_000_000_000).to_string(), "10/s");
        assert_eq!(rate(5, 250_000_000).to_string(), "5/250ms");
        assert_eq!(rate(600, 60_000_000_000).to_string(), "600/min");
        assert_eq!(rate(7, 1_500_000_000).to_string(), "7/1500ms");
        for text in ["10/s", "5/250ms", "600/min", "1/h", "3/7ns"] {
            assert_eq!(parse_rate(text).unwrap().to_string(), text);
        }
    }
}
