//! The `shapebuf` command-line tool.
//!
//! `shapebuf soak` runs the buffer table under a realistic, adversarial
//! workload and checks every read against an independent model (see
//! `soak.rs` for what it proves). `ls`, `verify`, `cat` and `stats` inspect
//! a store that is not running (`inspect.rs`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

mod inspect;
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
///
/// `ls`, `verify`, `cat` and `stats` inspect a store that is not running
/// (one that a running process holds answers the lock error). Their exit
/// status: 0 when the command did its job and found no damage, 1 when it
/// found damage (a quarantined shape), 2 when it could not run (not a
/// store, locked, unknown shape, I/O error).
#[derive(Parser)]
#[command(
    version,
    about,
    long_about,
    after_help = "Examples:\n  shapebuf soak                         # 20 s on the defaults\n  shapebuf soak --seconds 5             # the CI soak\n  bash -c 'ulimit -n 1024 && shapebuf soak --shapes 100000 --seconds 5'    # CI's scale soak\n  bash -c 'ulimit -n 1024 && shapebuf soak --shapes 1000000 --seconds 30'  # a million shapes (~6 min)\n  RUST_LOG=shapebuf=debug shapebuf soak --seconds 2 --shapes 10 --dir /tmp/sb\n  shapebuf ls /tmp/sb                   # every shape: entries, bytes, last offset\n  shapebuf verify /tmp/sb && echo clean # recover every shape, list the damaged ones\n  shapebuf cat /tmp/sb tenant/../shape-25 --after 3/0 | head  # JSON lines (an id ls printed)\n  shapebuf stats /tmp/sb"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Soak the store at scale: a setup of --shapes shapes, then writers
    /// churning a hot set, readers, a terminate/restart storm and removals
    /// for a while, every read checked against a model, then a reopen
    /// checked exactly.
    ///
    /// Setup gives every shape one committed entry (flushed, terminated;
    /// timed and shown), then the store is reopened, so every shape comes
    /// back from disk on first use. Writer threads each own a subset of the
    /// shapes and keep --hot of them (in all) hot, rotating which: they
    /// append multi-entry transactions (1 to 8 entries) with increasing
    /// transaction numbers, commit, and flush (automatically by size, and
    /// by explicit flush and tick). Shapes are terminated and restarted
    /// mid-traffic, one at a time and in whole-fleet "deploys"; some
    /// writers are dropped without terminate (an owner that panicked), and
    /// the next writer takes over; shapes are removed (through their writer
    /// or the store) and created again with the same id or a new one. Reader
    /// threads tail hot shapes, re-read random ranges and read random idle
    /// shapes through `Store::read`, `ShapeHandle::read` and
    /// `ShapeHandle::visit`, and wait for commits.
    ///
    /// A read is wrong if it has a gap, a duplicate, a reordering, a wrong
    /// payload, an uncommitted entry, or an entry of another incarnation of
    /// the shape (a handle sees only its own). A read that finds its shape
    /// removed counts as a removed read if a removal had begun, else as an
    /// error. At the end every writer is terminated, the store is reopened
    /// and every shape's log must equal the model exactly. The store's
    /// descriptor cache is half of `ulimit -n` (at most 512).
    ///
    /// Prints one `soak:` summary line on stdout (with removes=,
    /// removed_reads=, fds_max= (open descriptors, sampled from
    /// /proc/self/fd), leaked_fds= (descriptors of the store's directory
    /// left open by dropped stores: must be 0), rss_per_shape= (RSS growth from just before the store
    /// opened to the end of traffic, per shape) and the setup, open,
    /// verification and cleanup times); exits non-zero on any wrong read,
    /// unexpected error, reopen mismatch or leaked descriptor.
    Soak(soak::Options),
    /// List every shape of a store that is not running: a header, then one
    /// tab-separated line per shape, in id order: id, committed entries,
    /// payload bytes, last offset (`-` when empty). Ids that are not UTF-8
    /// print as `hex:` and their bytes in hex. A damaged (quarantined)
    /// shape's line has `-` figures and its error in a fifth column, and
    /// the exit status is then 1.
    Ls(inspect::StoreDir),
    /// Recover every shape of a store that is not running
    /// (`Store::verify_all`) and list the damaged ones, one line each:
    /// `quarantined<TAB>ID<TAB>ERROR`, or `unreadable-id<TAB>PATH<TAB>DETAIL`
    /// for a shape damaged where its id is stored; then `verified N shapes:
    /// M damaged`. Exit status 0 only when every shape is clean, 1 when
    /// some are damaged.
    Verify(inspect::StoreDir),
    /// Print a shape's committed entries as JSON lines,
    /// `{"offset":"TX/OP","payload":...}`: the payload a string when it is
    /// valid UTF-8, else `{"base64":"..."}`.
    Cat(inspect::CatOptions),
    /// Print a store's figures as `name=value` lines: shapes, entries,
    /// bytes (payload), corrupt (damaged shapes; exit status 1 if any),
    /// open_files and peak_open_files (log files open after reading every
    /// shape, and at most at once).
    Stats(inspect::StoreDir),
}

fn main() -> ExitCode {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,shapebuf::flush_tracker=error"));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter),
        )
        .with(inspect::DamageLog.with_filter(LevelFilter::ERROR))
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Soak(opts) => soak::run(&opts),
        Command::Ls(opts) => inspect::ls(&opts),
        Command::Verify(opts) => inspect::verify(&opts),
        Command::Cat(opts) => inspect::cat(&opts),
        Command::Stats(opts) => inspect::stats(&opts),
    }
}
