//! The `mpt` binary, driven as a shell script drives it: exit statuses,
//! shell loops sharing one rate, the output formats, the live view in a
//! real terminal (tmux), and the generated man pages and completions.

#[path = "../../tests/common/redis_server.rs"]
mod redis_server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const MPT: &str = env!("CARGO_BIN_EXE_mpt");

fn mpt(args: &[&str]) -> Output {
    Command::new(MPT)
        .args(args)
        .output()
        .expect("run target's mpt")
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A throttle name of this test, removed when dropped.
struct Name(String);

impl Name {
    fn new(what: &str) -> Self {
        Self(format!("mpt-test-{what}-{}", std::process::id()))
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = mpt(&["rm", &self.0]);
    }
}

/// Runs `args`, which must exit with `want`; returns its output.
#[track_caller]
fn expect(args: &[&str], want: i32) -> Output {
    let out = mpt(args);
    assert_eq!(
        code(&out),
        want,
        "mpt {args:?}: exit {:?}, want {want}\nstdout: {}\nstderr: {}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    out
}

/// A failure is one line on stderr, starting with "mpt: ".
#[track_caller]
fn one_line_error(out: &Output, mentions: &str) {
    let err = stderr(out);
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with("mpt: "), "{err:?}");
    assert!(
        err.contains(mentions),
        "{err:?} should mention {mentions:?}"
    );
}

#[test]
fn create_list_remove() {
    let n = Name::new("ls");
    expect(&["create", &n.0, "10/s"], 0);
    // The same configuration again is shared, not an error.
    expect(&["create", &n.0, "10/s"], 0);
    let out = expect(&["create", &n.0, "5/s"], 7);
    one_line_error(&out, "configuration");

    let ls = stdout(&expect(&["ls"], 0));
    let me = unsafe { libc::geteuid() }; // SAFETY: no preconditions.
    let row = ls
        .lines()
        .find(|l| l.split_whitespace().next() == Some(n.0.as_str()))
        .unwrap_or_else(|| panic!("ls lists {}:\n{ls}", n.0));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cols[1..4], ["10/s", "limit", "stopped"], "{row}");
    assert!(row.contains(&format!("uid {me}")), "{row}");

    let json: serde_json::Value =
        serde_json::from_str(&stdout(&expect(&["ls", "--json"], 0))).expect("ls --json parses");
    let mine = json
        .as_array()
        .expect("an array")
        .iter()
        .find(|t| t["name"] == n.0.as_str())
        .expect("listed in --json");
    assert_eq!(mine["rate"], "10/s");
    assert_eq!(mine["uid"], me);

    expect(&["rm", &n.0], 0);
    assert!(!stdout(&expect(&["ls"], 0)).contains(&n.0));
    one_line_error(&expect(&["rm", &n.0], 5), "no throttle");
}

#[test]
fn acquire_exit_statuses() {
    let n = Name::new("acq");
    expect(&["create", &n.0, "1/min", "--start"], 0);
    // The first unit is there at the start; the next comes in a minute.
    expect(&["acquire", &n.0], 0);
    let started = Instant::now();
    let out = expect(&["acquire", &n.0, "--timeout", "200ms"], 3);
    one_line_error(&out, "timeout");
    assert!(started.elapsed() >= Duration::from_millis(190));
    // More units than the tank can ever hold: a bad argument.
    one_line_error(&expect(&["acquire", &n.0, "-n", "2"], 2), "never");
    one_line_error(&expect(&["acquire", &n.0, "-n", "0"], 2), "--units");
    one_line_error(
        &expect(&["acquire", &n.0, "--timeout", "soon"], 2),
        "duration",
    );
    one_line_error(&expect(&["acquire"], 2), "NAME");
    one_line_error(&expect(&["frobnicate"], 2), "frobnicate");
    assert!(
        expect(&["--help"], 0)
            .stdout
            .starts_with(b"Throttle shell jobs")
    );

    // A waiter that the kill flag ends, and every later one.
    let waiter = Command::new(MPT)
        .args(["acquire", &n.0])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    expect(&["kill", &n.0], 0);
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    one_line_error(&expect(&["acquire", &n.0], 4), "kill");

    one_line_error(
        &expect(&["acquire", "mpt-test-no-such-name"], 5),
        "no throttle",
    );
    one_line_error(&expect(&["set", &n.0, "ten/s"], 2), "not a rate");
    expect(&["create", &format!("{}/x", n.0), "1/s"], 2);
}

#[test]
fn run_is_the_command() {
    let n = Name::new("run");
    expect(&["create", &n.0, "100/s", "--start"], 0);
    expect(&["run", &n.0, "--", "sh", "-c", "exit 7"], 7);
    let out = expect(&["run", &n.0, "--", "echo", "hello", "there"], 0);
    assert_eq!(stdout(&out), "hello there\n");
    // Its signals are its own: the command is in mpt's place.
    let out = mpt(&["run", &n.0, "--", "sh", "-c", "kill -TERM $$"]);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGTERM), "{:?}", out.status);
    one_line_error(
        &expect(&["run", &n.0, "--", "/nonexistent/command"], 127),
        "cannot run",
    );
    // No command: a usage error.
    expect(&["run", &n.0], 2);
    // Timed out: the command does not run.
    expect(&["set", &n.0, "1/min"], 0);
    // Empty the tank of one (it may be empty already: 0 or 3).
    let _ = mpt(&["acquire", &n.0, "--timeout", "0"]);
    let out = expect(&["run", &n.0, "--timeout", "100ms", "--", "echo", "ran"], 3);
    assert_eq!(stdout(&out), "");
}

/// Four shell loops share one rate: 40 grants at 20 per second, spaced
/// (hardcap one: nothing piles up), take at least 39/20 s from the start.
#[test]
fn shell_loops_share_one_rate() {
    let n = Name::new("loops");
    expect(&["create", &n.0, "20/s", "--hardcap", "one"], 0);
    let script = format!(
        "i=0; while [ $i -lt 10 ]; do '{MPT}' acquire '{}' || exit $?; i=$((i+1)); done",
        n.0
    );
    let loops: Vec<_> = (0..4)
        .map(|_| {
            Command::new("sh")
                .args(["-c", &script])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300)); // all of them waiting
    let started = Instant::now();
    expect(&["start", &n.0], 0);
    for l in loops {
        let out = l.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a loop: {:?} {}",
            out.status,
            stderr(&out)
        );
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1900),
        "40 grants at 20/s in {took:?}: faster than the rate"
    );
    assert!(took < Duration::from_secs(30), "{took:?}");
    let stats: serde_json::Value = serde_json::from_str(&stdout(&expect(
        &["stats", &n.0, "--json", "--sample", "0"],
        0,
    )))
    .unwrap();
    assert_eq!(stats["emissions"], 40, "{stats}");
    assert_eq!(stats["grants"], 40, "{stats}");
}

#[test]
fn stats_formats() {
    let n = Name::new("stats");
    expect(
        &["create", &n.0, "5/250ms", "--hardcap", "window", "--start"],
        0,
    );
    expect(&["acquire", &n.0, "-n", "3"], 0);

    let v: serde_json::Value = serde_json::from_str(&stdout(&expect(
        &["stats", &n.0, "--json", "--sample", "100ms"],
        0,
    )))
    .expect("stats --json parses");
    assert_eq!(v["name"], n.0.as_str());
    assert_eq!(v["max_n"], 5);
    assert_eq!(v["per_s"], 0.25);
    assert_eq!(v["target_per_second"], 20.0);
    assert_eq!(v["hardcap"], "window");
    assert_eq!(v["state"], "running");
    assert_eq!(v["emissions"], 1, "-n 3 is one grant, one emission");
    assert_eq!(v["current_per_second"], 0.0);

    let text = stdout(&expect(&["stats", &n.0, "--sample", "0"], 0));
    for want in ["5/250ms", "window", "running", "emissions: 1"] {
        assert!(text.contains(want), "{want:?} in:\n{text}");
    }

    let prom = stdout(&expect(&["stats", &n.0, "--format", "prometheus"], 0));
    let mut families = std::collections::BTreeMap::new();
    for line in prom.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (metric, kind) = rest.split_once(' ').unwrap();
            assert_eq!(kind == "counter", metric.ends_with("_total"), "{line}");
            families.insert(metric.to_string(), None);
        } else if !line.starts_with("# HELP ") {
            let (series, value) = line.rsplit_once(' ').expect(line);
            let metric = series
                .strip_suffix(&format!("{{throttle=\"{}\"}}", n.0))
                .unwrap_or_else(|| panic!("{line}: one label, the throttle"));
            assert!(
                metric.starts_with("mp_throttle_")
                    && metric.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{metric}"
            );
            let value: f64 = value.parse().expect(line);
            assert!(families.contains_key(metric), "{metric}: TYPE first");
            families.insert(metric.to_string(), Some(value));
        }
    }
    let value = |m: &str| families.get(m).copied().flatten();
    assert_eq!(value("mp_throttle_emissions_total"), Some(1.0), "{prom}");
    assert_eq!(value("mp_throttle_grants_total"), Some(1.0));
    assert_eq!(value("mp_throttle_target_rate_per_second"), Some(20.0));
    assert_eq!(value("mp_throttle_running"), Some(1.0));
    assert_eq!(value("mp_throttle_killed"), Some(0.0));
    assert_eq!(value("mp_throttle_waiters"), Some(0.0));
    assert!(value("mp_throttle_rate_per_second").is_some());
    assert!(value("mp_throttle_runtime_seconds_total").unwrap() > 0.0);

    let stop: serde_json::Value =
        serde_json::from_str(&stdout(&expect(&["stop", &n.0, "--json"], 0))).unwrap();
    assert_eq!(stop["total"], 1);
    expect(&["stop", &n.0], 1);
}

/// Polls `f` every 50 ms for up to `limit`.
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

fn tmux(args: &[&str]) -> Output {
    Command::new("tmux")
        .args(args)
        .env("LANG", "C.UTF-8")
        .output()
        .expect("tmux is needed by this test: `make deps` installs it")
}

/// `mpt stats --watch` in a real terminal: tmux runs it, capture-pane reads
/// the screen.
#[test]
fn watch_in_a_terminal() {
    let n = Name::new("watch");
    expect(&["create", &n.0, "10/s", "--start"], 0);
    let session = format!("mpt-test-{}", std::process::id());
    let socket = format!("mpt-test-{}", std::process::id());
    let t = |args: &[&str]| {
        let mut all = vec!["-L", socket.as_str()];
        all.extend_from_slice(args);
        tmux(&all)
    };
    let cmd = format!("'{MPT}' stats '{}' --watch --interval 200ms", n.0);
    let out = t(&[
        "-u",
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "100",
        "-y",
        "20",
        &cmd,
    ]);
    assert!(out.status.success(), "tmux: {}", stderr(&out));
    // A waiter, and grants to count.
    let mut feeder = Command::new("sh")
        .args([
            "-c",
            &format!("while '{MPT}' acquire '{}'; do :; done", n.0),
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let screen = || stdout(&t(&["capture-pane", "-p", "-t", &session]));
    let shown = eventually(Duration::from_secs(10), || {
        let s = screen();
        s.contains("emissions") && s.contains("asleep") && s.contains("rate      1")
    });
    let s = screen();
    let _ = feeder.kill();
    let _ = feeder.wait();
    assert!(shown, "the live view:\n{s}");
    assert!(s.contains(&format!("mpt stats {}", n.0)), "{s}");
    assert!(s.contains("target 10.0/s (10/s, limit)"), "{s}");
    assert!(s.contains("state     running"), "{s}");
    let spark = s
        .lines()
        .find(|l| l.starts_with("last min"))
        .unwrap_or_else(|| panic!("a sparkline row:\n{s}"));
    assert!(
        spark.chars().any(|c| ('▁'..='█').contains(&c)),
        "sparkline: {spark}"
    );
    assert!(
        s.contains("waiters   1 asleep") || s.contains("waiters   0 asleep"),
        "{s}"
    );
    // q quits, and the terminal gets its screen back.
    t(&["send-keys", "-t", &session, "q"]);
    let quit = eventually(Duration::from_secs(5), || {
        !t(&["has-session", "-t", &session]).status.success()
    });
    if !quit {
        t(&["kill-server"]);
    }
    assert!(quit, "q ends the view:\n{}", screen());
}

#[test]
fn man_pages_and_completions() {
    let dir: PathBuf = std::env::temp_dir().join(format!("mpt-gen-{}", std::process::id()));
    expect(&["generate", dir.to_str().unwrap()], 0);
    let read = |f: &str| std::fs::read_to_string(Path::new(&dir).join(f)).unwrap_or_default();
    let page = read("mpt.1");
    assert!(
        page.starts_with(".ie") || page.contains(".TH mpt"),
        "{page}"
    );
    for sub in ["acquire", "run", "stats", "create", "ls"] {
        assert!(page.contains(sub), "mpt.1 names {sub}");
        let sub_page = read(&format!("mpt-{sub}.1"));
        assert!(sub_page.contains(&format!(".TH mpt-{sub}")), "mpt-{sub}.1");
    }
    assert!(read("mpt-acquire.1").contains("timeout"));
    assert!(read("mpt.bash").contains("complete -F"));
    assert!(read("_mpt").starts_with("#compdef mpt"));
    assert!(read("mpt.fish").contains("complete -c mpt"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The README's shell example: a parallel download loop (xargs -P 8 ...
/// mpt run) against a local server it starts itself, at 5 per second.
#[test]
fn crawl_example() {
    let name = Name::new("crawl");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/crawl.sh");
    let started = Instant::now();
    let out = Command::new("sh")
        .arg(&script)
        .env("MPT", MPT)
        .env("NAME", &name.0)
        .output()
        .unwrap();
    let took = started.elapsed();
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{:?}\n{text}\n{}",
        out.status,
        stderr(&out)
    );
    assert!(
        text.contains(&format!("{}: 20 emissions in ", name.0)),
        "{text}"
    );
    assert!(text.ends_with("downloaded 20 pages\n"), "{text}");
    // 20 requests, evenly spaced at 5 per second: 19 intervals of 0.2 s.
    assert!(took >= Duration::from_millis(3750), "{took:?}");
}

/// `--redis URL` (and MPT_REDIS_URL): the same commands on throttles held
/// in a real redis-server (on a free loopback port, stopped afterwards);
/// shell loops in separate processes share one rate there.
#[test]
fn redis_url_throttles() {
    let server = redis_server::RedisServer::start();
    let url = server.url();
    let r = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["--redis".to_string(), url.clone()];
        all.extend(args.iter().map(|a| a.to_string()));
        all
    };
    let run = |args: &[&str], want: i32| {
        let all = r(args);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        expect(&all, want)
    };
    run(
        &["create", "crawl", "20/s", "--hardcap", "one", "--start"],
        0,
    );
    run(
        &["create", "crawl", "20/s", "--hardcap", "one", "--start"],
        0,
    );
    let out = run(&["create", "crawl", "5/s"], 7);
    one_line_error(&out, "configuration");
    let out = run(&["create", "other", "5/s", "--group-shared"], 2);
    one_line_error(&out, "group-shared");

    let script =
        format!("i=0; while [ $i -lt 10 ]; do '{MPT}' acquire crawl || exit $?; i=$((i+1)); done");
    let started = Instant::now();
    let loops: Vec<_> = (0..3)
        .map(|_| {
            Command::new("sh")
                .args(["-c", &script])
                .env("MPT_REDIS_URL", &url)
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for l in loops {
        let out = l.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a loop: {:?} {}",
            out.status,
            stderr(&out)
        );
    }
    let took = started.elapsed();
    // ONE at 20/s: 30 grants are 29 intervals of 50 ms at least.
    assert!(
        took >= Duration::from_millis(1400),
        "30 grants at 20/s in {took:?}: faster than the rate"
    );
    let stats: serde_json::Value = serde_json::from_str(&stdout(&run(
        &["stats", "crawl", "--json", "--sample", "0"],
        0,
    )))
    .unwrap();
    assert_eq!(stats["emissions"], 30, "{stats}");
    assert_eq!(stats["hardcap"], "one", "{stats}");
    let listed: serde_json::Value =
        serde_json::from_str(&stdout(&run(&["ls", "--json"], 0))).unwrap();
    let crawl = listed
        .as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == "crawl"))
        .unwrap_or_else(|| panic!("ls: {listed}"));
    assert_eq!(crawl["rate"], "20/s", "{crawl}");
    assert_eq!(crawl["state"], "running", "{crawl}");
    run(&["stop", "crawl"], 0);
    run(&["acquire", "crawl", "--timeout", "1s"], 4);
    run(&["rm", "crawl"], 0);
    let out = run(&["acquire", "crawl"], 5);
    one_line_error(&out, "no throttle named");
    let port = redis_server::free_port();
    let out = expect(
        &[
            "--redis",
            &format!("redis://127.0.0.1:{port}/0"),
            "acquire",
            "crawl",
        ],
        8,
    );
    one_line_error(&out, "cannot be reached");
}
