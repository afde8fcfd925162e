//! The `shapebuf` command-line tool.
//!
//! `shapebuf soak` runs the buffer table under a realistic, adversarial
//! workload and checks every read against an independent model (see
//! `soak.rs` for what it proves).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

mod lanes;
mod model;
mod soak;
mod sys;
mod traffic;

/// shapebuf: a lock-free in-memory buffer table with safe concurrent reader
/// teardown, backed by a checksummed on-disk log.
///
/// Set RUST_LOG (e.g. RUST_LOG=shapebuf=debug) for tracing output on
/// stderr; the default is `warn`, except the flush tracker's per-drop loss
/// warnings, which the soak provokes on purpose (hundreds per run).
#[derive(Parser)]
#[command(
    version,
    about,
    long_about,
    after_help = "Examples:\n  shapebuf soak                         # 20 s on the defaults\n  shapebuf soak --seconds 5             # the CI soak\n  RUST_LOG=shapebuf=debug shapebuf soak --seconds 2 --shapes 10 --dir /tmp/sb"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Soak the store: writers, readers and a terminate/restart storm for a
    /// while, every read checked against a model, then a reopen checked
    /// exactly.
    ///
    /// Writer threads each own a subset of the shapes and append
    /// multi-entry transactions (1 to 8 entries) with increasing
    /// transaction numbers, commit, and flush (automatically by size, and
    /// by explicit flush and tick). Shapes are terminated and restarted
    /// mid-traffic, one at a time and in whole-fleet "deploys"; some
    /// writers are dropped without terminate (an owner that panicked), and
    /// the next writer takes over. Reader threads tail shapes and re-read
    /// random ranges through `Store::read`, `ShapeHandle::read` and
    /// `ShapeHandle::visit`.
    ///
    /// A read is wrong if it has a gap, a duplicate, a reordering, a wrong
    /// payload or an uncommitted entry. At the end every writer is
    /// terminated, the store is reopened and every shape's log must equal
    /// the model exactly. Prints one `soak:` summary line on stdout; exits
    /// non-zero on any wrong read, unexpected error or reopen mismatch.
    Soak(soak::Options),
}

fn main() -> ExitCode {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,shapebuf::flush_tracker=error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Soak(opts) => soak::run(&opts),
    }
}
