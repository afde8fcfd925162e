//! The `shapebuf` command-line tool (placeholder until the soak lands).
fn main() {}
