//! The C side, run by `cargo test`: `make check-c` (the C
//! test programs of `tests/c/` in both link modes, the header as C99 and
//! C++, the double-include link, the asan and valgrind runs) and
//! `make check-examples` (every program of `examples-c/`, its output
//! checked). The exported symbols and the SONAME: `tests/abi.rs`.
//!
//! `cargo test` builds the library only for `target/debug`; the Makefile's
//! `lib` target runs `cargo build --release` itself. That nested cargo works
//! on the same target directory because the outer one released its build
//! lock before running the tests.
//!
//! The two make runs take turns (a lock), so that the timing-sensitive C
//! tests and examples do not compete for this machine's cores.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn make(target: &str) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let started = Instant::now();
    let mut cmd = Command::new("make");
    cmd.arg("--no-print-directory")
        .arg(target)
        .current_dir(root)
        // The same cargo that runs this test builds the release library.
        .env("CARGO", env!("CARGO"))
        // cargo test points LD_LIBRARY_PATH at target/debug/deps; the C
        // programs must load the release library their rpath names.
        .env_remove("LD_LIBRARY_PATH")
        // A `make test` above us: do not inherit its jobserver or flags.
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL")
        .env_remove("CARGO_MAKEFLAGS");
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) => panic!("cannot run `make {target}` (is GNU make installed?): {e}"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "`make {target}` failed ({}) after {:.1} s\n\
         ---- what failed ----\n{}\n\
         ---- stdout ----\n{stdout}\n---- stderr ----\n{stderr}",
        out.status,
        started.elapsed().as_secs_f64(),
        what_failed(&stdout, &stderr),
    );
    // Shown with `cargo test -- --nocapture`.
    println!(
        "`make {target}` passed in {:.1} s\n{stdout}",
        started.elapsed().as_secs_f64()
    );
}

/// The lines that say what failed, each after the `== program` heading it
/// came under, so that a report that keeps only the start of a long log
/// still names the failing program and check. The whole log follows them.
fn what_failed(stdout: &str, stderr: &str) -> String {
    let mut heading = "";
    let mut shown = "";
    let mut lines = Vec::new();
    for line in stdout.lines().chain(stderr.lines()) {
        if line.starts_with("== ") {
            heading = line;
        } else if line.starts_with("FAIL")
            || line.starts_with("** ")
            || line.contains("Sanitizer")
            || line.contains("runtime error")
            || is_valgrind_report(line)
        {
            if shown != heading {
                lines.push(heading.to_string());
                shown = heading;
            }
            lines.push(line.to_string());
        }
    }
    if lines.is_empty() {
        "(no FAIL line; see the whole log)".to_string()
    } else {
        lines.join("\n")
    }
}

/// Valgrind's own lines start with `==<pid>==`; under `-q` it prints only
/// errors.
fn is_valgrind_report(line: &str) -> bool {
    line.strip_prefix("==")
        .and_then(|rest| rest.split_once("=="))
        .is_some_and(|(pid, _)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

#[test]
fn c_tests_and_header() {
    make("check-c");
}

#[test]
fn c_examples() {
    make("check-examples");
}
