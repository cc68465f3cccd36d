//! Placeholder: replaced by the keyed benchmarks.
fn main() {}
