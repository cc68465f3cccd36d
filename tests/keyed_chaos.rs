//! Placeholder: replaced by the keyed chaos test.
fn main() {}
