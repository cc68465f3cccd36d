//! What `mpt` prints about throttles: the list, a stop's totals, the
//! figures once (text, JSON, Prometheus) and the live view.

use crate::args::Format;
use crate::units::{Rate, show_duration};
use crate::{Done, Failure};
use crossterm::event::{self, Event, KeyCode, KeyModifiers};
use crossterm::{cursor, execute, queue, style, terminal};
use mp_throttle::{Error, Hardcap, Options, Summary, Throttle};
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// What one look at a throttle finds.
struct Figures {
    rate: Option<Rate>,
    hardcap: Hardcap,
    state: &'static str,
    summary: Summary,
    counts_grants: bool,
    sleepers: u32,
}

fn look(t: &Throttle) -> Figures {
    Figures {
        rate: t.rate().ok().map(|(max_n, per)| Rate { max_n, per }),
        hardcap: t.hardcap(),
        state: state(t),
        summary: t.summary(),
        counts_grants: t.counts_grants(),
        sleepers: t.sleepers(),
    }
}

fn state(t: &Throttle) -> &'static str {
    match (t.is_running(), t.is_killed()) {
        (true, false) => "running",
        (true, true) => "killed",
        (false, _) => "stopped",
    }
}

fn hardcap_name(h: Hardcap) -> &'static str {
    match h {
        Hardcap::Limit => "limit",
        Hardcap::One => "one",
        Hardcap::None => "none",
        Hardcap::Window => "window",
    }
}

/// `mpt ls`: the named throttles of this machine, or (`redis`) the
/// throttles in that Redis server, whose owner is "-".
pub fn list(as_json: bool, redis: Option<&str>) -> Done {
    if let Some(url) = redis {
        let found = Throttle::list_url(url).map_err(|e| Failure::of("ls", &e))?;
        let mut rows: Vec<[String; 5]> = Vec::new();
        for listed in &found {
            let name = &listed.name;
            let (rate, hardcap, state) = match Throttle::open_url(url, name, &Options::new()) {
                Ok(t) => {
                    let f = look(&t);
                    (
                        f.rate.map_or("?".into(), |r| r.to_string()),
                        hardcap_name(f.hardcap).to_string(),
                        f.state.to_string(),
                    )
                }
                Err(e) => ("-".into(), "-".into(), format!("unreadable: {e}")),
            };
            rows.push([name.clone(), rate, hardcap, state, "-".into()]);
        }
        return print_list(&rows, &vec![None; rows.len()], as_json);
    }
    let found = Throttle::list_named().map_err(|e| Failure::of("ls", &e))?;
    // Each row: name, rate, hardcap, state, owner.
    let mut rows: Vec<[String; 5]> = Vec::new();
    let mut uids = Vec::new();
    for l in &found {
        // Another user's throttle is not opened: its owner is what we say.
        let (rate, hardcap, state) = match Throttle::open(&l.name) {
            Ok(t) => {
                let f = look(&t);
                (
                    f.rate.map_or("?".into(), |r| r.to_string()),
                    hardcap_name(f.hardcap).to_string(),
                    f.state.to_string(),
                )
            }
            Err(Error::PermissionDenied(_)) => ("-".into(), "-".into(), "another user's".into()),
            Err(e) => ("-".into(), "-".into(), format!("unreadable: {e}")),
        };
        rows.push([l.name.clone(), rate, hardcap, state, l.owner.clone()]);
        uids.push(Some(l.uid));
    }
    print_list(&rows, &uids, as_json)
}

/// The rows of `mpt ls`, as a table or as JSON (`uid`: null for a
/// throttle in Redis).
fn print_list(rows: &[[String; 5]], uids: &[Option<u32>], as_json: bool) -> Done {
    if as_json {
        let v: Vec<_> = rows
            .iter()
            .zip(uids)
            .map(|([name, rate, hardcap, state, owner], uid)| {
                json!({"name": name, "rate": rate, "hardcap": hardcap, "state": state,
                       "owner": owner, "uid": uid})
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return Ok(());
    }
    let head = ["NAME", "RATE", "HARDCAP", "STATE", "OWNER"];
    let widths: Vec<usize> = (0..head.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].len())
                .fold(head[c].len(), usize::max)
        })
        .collect();
    let line = |cells: [&str; 5]| {
        let mut out = String::new();
        for (c, cell) in cells.iter().enumerate() {
            if c + 1 < cells.len() {
                out += &format!("{cell:w$}  ", w = widths[c]);
            } else {
                out += cell;
            }
        }
        println!("{out}");
    };
    line(head);
    for r in rows {
        line([&r[0], &r[1], &r[2], &r[3], &r[4]]);
    }
    Ok(())
}

/// A stop's totals.
pub fn print_summary(name: &str, s: &Summary, as_json: bool) {
    if as_json {
        println!(
            "{}",
            json!({"name": name, "runtime_s": s.runtime.as_secs_f64(), "total": s.total,
                   "mean_per_second": s.mean.per_second,
                   "mean_seconds_between": s.mean.seconds_between})
        );
    } else {
        println!(
            "{name}: {} emissions in {:.3} s, {:.3} per second",
            s.total,
            s.runtime.as_secs_f64(),
            s.mean.per_second
        );
    }
}

/// Emissions per second over `sample`, counted here (a throttle made by
/// `mpt create` runs no monitor thread).
fn current(t: &Throttle, sample: Duration) -> Option<f64> {
    if sample.is_zero() {
        return None;
    }
    let (e0, t0) = (t.summary().total, Instant::now());
    std::thread::sleep(sample);
    let (e1, dt) = (t.summary().total, t0.elapsed().as_secs_f64());
    Some(e1.saturating_sub(e0) as f64 / dt)
}

/// `mpt stats` without --watch.
pub fn once(name: &str, t: &Throttle, format: Format, sample: Duration) -> Done {
    let now = current(t, sample);
    let f = look(t);
    print!("{}", render(name, &f, now, sample, format));
    Ok(())
}

fn render(name: &str, f: &Figures, now: Option<f64>, sample: Duration, format: Format) -> String {
    let s = &f.summary;
    let target = f.rate.map(|r| r.per_second());
    match format {
        Format::Text => {
            let mut out = String::new();
            let rate = f.rate.map_or("?".into(), |r| {
                format!("{r} ({:.3} per second)", r.per_second())
            });
            out += &format!("throttle:  {name}\n");
            out += &format!("rate:      {rate}, hardcap {}\n", hardcap_name(f.hardcap));
            out += &format!("state:     {}\n", f.state);
            out += &format!("runtime:   {:.3} s\n", s.runtime.as_secs_f64());
            out += &format!(
                "emissions: {}{}\n",
                s.total,
                if f.counts_grants {
                    " (one per grant)"
                } else {
                    ""
                }
            );
            out += &format!("mean:      {:.3} per second\n", s.mean.per_second);
            if let Some(now) = now {
                out += &format!(
                    "current:   {now:.3} per second (the last {})\n",
                    show_duration(sample)
                );
            }
            out += &format!("waiters:   {} asleep\n", f.sleepers);
            out
        }
        Format::Json => {
            let v = json!({
                "name": name,
                "max_n": f.rate.map(|r| r.max_n),
                "per_s": f.rate.map(|r| r.per.as_secs_f64()),
                "target_per_second": target,
                "hardcap": hardcap_name(f.hardcap),
                "state": f.state,
                "running": f.state != "stopped",
                "killed": f.state == "killed",
                "runtime_s": s.runtime.as_secs_f64(),
                "emissions": s.total,
                "grants": f.counts_grants.then_some(s.total),
                "mean_per_second": s.mean.per_second,
                "current_per_second": now,
                "waiters": f.sleepers,
            });
            format!("{v}\n")
        }
        Format::Prometheus => prometheus(name, f, now, target),
    }
}

/// Prometheus' text exposition format: one family per figure, the throttle
/// in a label.
fn prometheus(name: &str, f: &Figures, now: Option<f64>, target: Option<f64>) -> String {
    let label = format!(
        "{{throttle=\"{}\"}}",
        name.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    );
    let s = &f.summary;
    let mut out = String::new();
    let mut family = |metric: &str, kind: &str, help: &str, value: Option<f64>| {
        if let Some(v) = value {
            out +=
                &format!("# HELP {metric} {help}\n# TYPE {metric} {kind}\n{metric}{label} {v}\n");
        }
    };
    family(
        "mp_throttle_emissions_total",
        "counter",
        "Emissions counted by every process (with auto_emit, one per grant).",
        Some(s.total as f64),
    );
    family(
        "mp_throttle_grants_total",
        "counter",
        "Grants of fuel (calls that took fuel), where each counts an emission.",
        f.counts_grants.then_some(s.total as f64),
    );
    family(
        "mp_throttle_runtime_seconds_total",
        "counter",
        "Time the throttle has been running, over all its runs.",
        Some(s.runtime.as_secs_f64()),
    );
    family(
        "mp_throttle_rate_per_second",
        "gauge",
        "Emissions per second, counted over the sample before this scrape.",
        now,
    );
    family(
        "mp_throttle_target_rate_per_second",
        "gauge",
        "The rate in force: max_n per period, per second.",
        target,
    );
    family(
        "mp_throttle_waiters",
        "gauge",
        "Threads asleep in a wait on the throttle, in every process.",
        Some(f64::from(f.sleepers)),
    );
    family(
        "mp_throttle_running",
        "gauge",
        "1 if the throttle is started and not stopped.",
        Some(if f.state == "stopped" { 0.0 } else { 1.0 }),
    );
    family(
        "mp_throttle_killed",
        "gauge",
        "1 if the kill flag is set: every wait ends.",
        Some(if f.state == "killed" { 1.0 } else { 0.0 }),
    );
    out
}

/// Eight heights of a bar, for the sparkline.
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The sparkline of `rates` against `top` (the target, or the highest).
fn sparkline(rates: &[f64], top: f64) -> String {
    let top = rates.iter().copied().fold(top, f64::max);
    rates
        .iter()
        .map(|&r| {
            if top <= 0.0 {
                BARS[0]
            } else {
                let i = ((r / top) * (BARS.len() - 1) as f64).round() as usize;
                BARS[i.min(BARS.len() - 1)]
            }
        })
        .collect()
}

/// `mpt stats --watch`: a live view on a terminal, plain lines otherwise.
pub fn watch(name: &str, t: &Throttle, format: Format, interval: Duration) -> Done {
    let interval = interval.max(Duration::from_millis(50));
    if !std::io::stdout().is_terminal() || format != Format::Text {
        return watch_lines(name, t, format, interval);
    }
    let mut out = std::io::stdout();
    let io = |e: std::io::Error| Failure::other(format!("stats --watch: the terminal: {e}"));
    terminal::enable_raw_mode().map_err(io)?;
    let shown = execute!(out, terminal::EnterAlternateScreen, cursor::Hide)
        .map_err(io)
        .and_then(|()| live(name, t, interval, &mut out));
    let _ = execute!(out, cursor::Show, terminal::LeaveAlternateScreen);
    let _ = terminal::disable_raw_mode();
    shown
}

/// The live view, until q, Esc or Ctrl-C.
fn live(name: &str, t: &Throttle, interval: Duration, out: &mut std::io::Stdout) -> Done {
    let io = |e: std::io::Error| Failure::other(format!("stats --watch: the terminal: {e}"));
    // A minute of rates, one per interval.
    let keep = (60.0 / interval.as_secs_f64()).ceil().max(1.0) as usize;
    let mut history: Vec<f64> = Vec::new();
    let mut last = (t.summary().total, Instant::now());
    loop {
        let f = look(t);
        let target = f.rate.map(|r| r.per_second());
        let lines = [
            format!(
                "mpt stats {name}   every {}, q quits",
                show_duration(interval)
            ),
            String::new(),
            format!(
                "rate      {}   target {}",
                history.last().map_or("-".into(), |r| format!("{r:.1}/s")),
                f.rate.map_or("?".into(), |r| format!(
                    "{:.1}/s ({r}, {})",
                    r.per_second(),
                    hardcap_name(f.hardcap)
                ))
            ),
            format!("last min  {}", sparkline(&history, target.unwrap_or(0.0))),
            format!(
                "totals    {} emissions in {:.1} s, mean {:.1}/s",
                f.summary.total,
                f.summary.runtime.as_secs_f64(),
                f.summary.mean.per_second
            ),
            format!("waiters   {} asleep", f.sleepers),
            format!("state     {}", f.state),
        ];
        queue!(out, terminal::Clear(terminal::ClearType::All)).map_err(io)?;
        for (row, line) in lines.iter().enumerate() {
            queue!(out, cursor::MoveTo(0, row as u16), style::Print(line)).map_err(io)?;
        }
        out.flush().map_err(io)?;
        // Until the next look, or a key.
        let next = last.1 + interval;
        while let Some(wait) = next.checked_duration_since(Instant::now()) {
            if event::poll(wait).map_err(io)? {
                if let Event::Key(k) = event::read().map_err(io)? {
                    let ctrl_c =
                        k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                    if ctrl_c || matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) {
                        return Ok(());
                    }
                }
            }
        }
        let (total, now) = (t.summary().total, Instant::now());
        let dt = now.duration_since(last.1).as_secs_f64();
        history.push(total.saturating_sub(last.0) as f64 / dt.max(1e-9));
        if history.len() > keep {
            history.remove(0);
        }
        last = (total, now);
    }
}

/// `--watch` into a pipe or a file: a line (or a JSON object, or a
/// Prometheus block) every interval.
fn watch_lines(name: &str, t: &Throttle, format: Format, interval: Duration) -> Done {
    let mut out = std::io::stdout();
    loop {
        let now = current(t, interval);
        let f = look(t);
        let text = match format {
            Format::Text => format!(
                "{name} state={} rate={:.1}/s target={} emissions={} waiters={}\n",
                f.state,
                now.unwrap_or(0.0),
                f.rate
                    .map_or("?".into(), |r| format!("{:.1}/s", r.per_second())),
                f.summary.total,
                f.sleepers
            ),
            other => render(name, &f, now, interval, other),
        };
        // A closed pipe (`| head`) ends the watch.
        if out
            .write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            return Ok(());
        }
    }
}
