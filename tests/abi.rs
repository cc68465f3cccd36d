//! The shared library's ABI: it exports exactly the `mpt_` functions the
//! header declares, under the SONAME `libmp_throttle.so.<MPT_ABI_VERSION>`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Builds the release cdylib (as `make lib` does) and returns its path.
fn cdylib() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--lib", "--quiet"])
        .current_dir(root())
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build --release failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    target.join("release/libmp_throttle.so")
}

fn output(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Names of the functions the header declares: every `mpt_name(` outside
/// comments.
fn header_functions() -> BTreeSet<String> {
    let header = std::fs::read_to_string(root().join("include/mp_throttle.h")).expect("header");
    let mut names = BTreeSet::new();
    for line in header
        .lines()
        .filter(|l| !l.trim_start().starts_with(['*', '/']))
    {
        for (at, _) in line.match_indices("mpt_") {
            let name: String = line[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if line[at + name.len()..].starts_with('(') {
                names.insert(name);
            }
        }
    }
    names
}

#[test]
fn exports_exactly_the_header_functions() {
    let lib = cdylib();
    let nm = output("nm", &["-D", "--defined-only", lib.to_str().expect("path")]);
    let exported: BTreeSet<String> = nm
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .filter(|s| s.starts_with("mpt_"))
        .map(str::to_owned)
        .collect();
    let declared = header_functions();
    assert!(declared.len() >= 20, "header parse found only {declared:?}");
    assert_eq!(exported, declared, "nm -D of the library vs the header");
    let stray: Vec<&str> = nm
        .lines()
        .filter(|l| l.contains(" T "))
        .filter_map(|l| l.split_whitespace().nth(2))
        .filter(|s| !s.starts_with("mpt_"))
        .collect();
    assert!(
        stray.is_empty(),
        "the library exports functions that are not mpt_: {stray:?}"
    );
}

#[test]
fn soname_is_the_abi_version() {
    let lib = cdylib();
    let dynamic = output("readelf", &["-d", lib.to_str().expect("path")]);
    let want = format!("[libmp_throttle.so.{}]", env!("CARGO_PKG_VERSION_MAJOR"));
    assert!(
        dynamic
            .lines()
            .any(|l| l.contains("(SONAME)") && l.contains(&want)),
        "no SONAME {want} in:\n{dynamic}"
    );
}
