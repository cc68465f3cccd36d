#!/bin/sh
# check_rust_project.sh: the Rust install path, from a fresh project.
#
# Makes a new cargo project in a temporary directory, outside the repository,
# the way README.md's "Rust" section says: a path dependency on this checkout
# (with the `tokio` feature) and the x86-64 rustflags in its
# .cargo/config.toml. Its main.rs is examples/rust_tutorial.rs, shortened
# (2 s at 4 per second), plus an until_ready().await on a current-thread
# runtime. Builds it offline (the checkout's Cargo.lock pins the versions;
# cargo's registry cache already holds them after `cargo test`) and checks
# what it prints: Total 8 to 10 (units at 0, 0.25, ..., 2 s, the one at 2 s
# racing the stop; 10 only if the stop comes over 250 ms late on a loaded
# machine; a throttle that let a burst through would give more) and the
# tokio grant.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
CARGO=${CARGO:-cargo}

command -v "$CARGO" >/dev/null 2>&1 || {
    echo "check_rust_project: error: cargo not found" >&2
    exit 1
}

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/app/src" "$dir/app/.cargo"
cat >"$dir/app/Cargo.toml" <<TOML
[package]
name = "app"
version = "0.1.0"
edition = "2021"

[dependencies]
mp_throttle = { path = "$repo", features = ["tokio"] }
tokio = { version = "1", default-features = false, features = ["rt"] }
TOML
cat >"$dir/app/.cargo/config.toml" <<'TOML'
[target.x86_64-unknown-linux-gnu]
rustflags = ["-C", "target-feature=+cmpxchg16b"]
TOML
# The versions this checkout was tested with.
cp "$repo/Cargo.lock" "$dir/app/Cargo.lock"
cat >"$dir/app/src/main.rs" <<'RUST'
use mp_throttle::{Error, Throttle};
use std::time::Duration;

fn main() -> Result<(), Error> {
    let throttle = Throttle::new(4, Duration::from_secs(1))?;
    throttle.start()?;
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| while throttle.await_fuel(None).is_ok() {});
        }
        std::thread::sleep(Duration::from_millis(2_000));
        let summary = throttle.stop()?;
        println!("Total: {}", summary.total);
        Ok::<(), Error>(())
    })?;
    let fresh = Throttle::new(1, Duration::from_secs(1))?;
    fresh.start()?;
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async { fresh.until_ready().await })?;
    println!("until_ready: granted");
    Ok(())
}
RUST

cd "$dir/app"
if ! out=$(CARGO_TARGET_DIR="$dir/target" "$CARGO" run --quiet --offline 2>&1); then
    echo "check_rust_project: the fresh project did not build or run:" >&2
    echo "$out" >&2
    exit 1
fi
echo "$out" | sed 's/^/check_rust_project: /'
total=$(echo "$out" | sed -n 's/^Total: //p')
case "$total" in
8 | 9 | 10) ;;
*)
    echo "check_rust_project: FAILED: Total $total, expected 8 to 10" >&2
    exit 1
    ;;
esac
echo "$out" | grep -qx "until_ready: granted" || {
    echo "check_rust_project: FAILED: no until_ready grant" >&2
    exit 1
}
echo "check_rust_project: passed (a project outside the repository, path dependency, offline)"
