//! `shapebuf ls`, `verify`, `cat` and `stats`: an operator's look at a store
//! that is not running, through the library's public API only.
//!
//! Each command opens the directory with [`Store::open_with`], which takes
//! the store's `LOCK`: a store held by a running process answers
//! [`Error::Locked`] and the command exits with status 2 without touching
//! anything, so a command can never be a second writer. Opening a store
//! finishes what the library finishes on every open (removals under way),
//! and recovering a shape repairs a torn tail the way any open does (see
//! docs/format.md, "Recovery on open"); a quarantined shape's files are
//! left exactly as they are.
//!
//! Exit status: 0 when the command did its job and found no damage; 1 when
//! it ran but found damage (a quarantined shape, or one whose id cannot be
//! read); 2 when it could not run (not a store, locked, unknown shape, an
//! I/O error).

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Mutex, PoisonError};

use base64::Engine as _;
use shapebuf::bytes::Bytes;
use shapebuf::{Config, Error, LogOffset, Store};

use crate::sys;

/// The exit status of a command that found damage.
const DAMAGED: u8 = 1;
/// The exit status of a command that could not run.
const FAILED: u8 = 2;

/// The store directory argument of every inspection command.
#[derive(clap::Args, Debug)]
pub struct StoreDir {
    /// The store's directory (the one given to `Store::open`: it holds
    /// `LOCK` and `shapes/`).
    dir: PathBuf,
}

/// Options of `shapebuf cat`.
#[derive(clap::Args, Debug)]
pub struct CatOptions {
    #[command(flatten)]
    store: StoreDir,
    /// The shape's id (as `ls` prints it; with --hex, its bytes in hex).
    id: String,
    /// Print only entries after this offset, `TX/OP` (e.g. `7/0`).
    #[arg(long, value_name = "TX/OP", value_parser = parse_offset)]
    after: Option<LogOffset>,
    /// ID is hexadecimal (`ls` prints ids that are not UTF-8 as `hex:...`).
    #[arg(long)]
    hex: bool,
}

/// Why a command stopped: damage found, or it could not run; each with the
/// message printed on stderr (empty: already printed).
enum Failure {
    Damaged(String),
    Failed(String),
    /// stdout was closed (`shapebuf cat ... | head`): not an error.
    Closed,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        match e {
            Error::Corrupt { .. } => Failure::Damaged(e.to_string()),
            Error::Locked(_) => Failure::Failed(format!(
                "{e}: a running process holds this store; stop it first (shapebuf inspects \
                 only stores that are not running, and never opens one a second time)"
            )),
            e => Failure::Failed(e.to_string()),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        if e.kind() == io::ErrorKind::BrokenPipe {
            return Failure::Closed;
        }
        Failure::Failed(format!("write output: {e}"))
    }
}

/// Runs a command body and turns its outcome into the exit status.
fn finish(cmd: &str, run: impl FnOnce() -> Result<bool, Failure>) -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(DAMAGED),
        Err(Failure::Closed) => ExitCode::SUCCESS,
        Err(Failure::Damaged(m)) => {
            eprintln!("shapebuf {cmd}: {m}");
            ExitCode::from(DAMAGED)
        }
        Err(Failure::Failed(m)) => {
            eprintln!("shapebuf {cmd}: {m}");
            ExitCode::from(FAILED)
        }
    }
}

/// Opens the store in `dir`, refusing a directory that is not one (rather
/// than creating a store there, as `Store::open` would).
fn open(dir: &Path) -> Result<Store, Failure> {
    let shapes = dir.join("shapes");
    if !shapes.is_dir() {
        return Err(Failure::Failed(format!(
            "{} is not a shapebuf store (no {} directory)",
            dir.display(),
            shapes.display()
        )));
    }
    let config = Config {
        max_open_files: crate::soak::max_open_files(sys::fd_limit()),
        ..Config::default()
    };
    Ok(Store::open_with(dir, config)?)
}

/// How `ls` prints an id: UTF-8 ids as text (tabs, newlines and the like
/// escaped), others as `hex:` and their bytes in hex.
fn show_id(id: &[u8]) -> String {
    match std::str::from_utf8(id) {
        Ok(s) => s.escape_debug().to_string(),
        Err(_) => {
            let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
            format!("hex:{hex}")
        }
    }
}

/// One shape's figures: its committed entries, their payload bytes and the
/// last offset, or the error reading it gave.
struct Summary {
    id: Bytes,
    read: Result<(u64, u64, LogOffset), Error>,
}

/// Every shape's summary, in id order.
fn scan(store: &Store) -> Result<Vec<Summary>, Failure> {
    let mut ids = store.shapes()?;
    ids.sort();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let read = store.handle(&id).and_then(|h| {
            let (mut n, mut bytes, mut last) = (0u64, 0u64, LogOffset::ZERO);
            h.visit(LogOffset::ZERO, LogOffset::MAX, |e| {
                n += 1;
                bytes += e.payload.len() as u64;
                last = e.offset;
            })?;
            Ok((n, bytes, last))
        });
        match read {
            // Only damage is a finding; anything else stops the command.
            Ok(_) | Err(Error::Corrupt { .. }) => out.push(Summary { id, read }),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// `shapebuf ls DIR`: a header, then one tab-separated line per shape: id,
/// entries, payload bytes, last offset (`-` for an empty shape). A damaged
/// shape's line has `-` in each figure and the error in a fifth column.
pub fn ls(opts: &StoreDir) -> ExitCode {
    finish("ls", || {
        let store = open(&opts.dir)?;
        let shapes = scan(&store)?;
        let mut out = BufWriter::new(io::stdout().lock());
        writeln!(out, "id\tentries\tbytes\tlast")?;
        let mut clean = true;
        for s in &shapes {
            match &s.read {
                Ok((n, bytes, last)) => {
                    let last = if *n == 0 {
                        "-".to_string()
                    } else {
                        last.to_string()
                    };
                    writeln!(out, "{}\t{n}\t{bytes}\t{last}", show_id(&s.id))?;
                }
                Err(e) => {
                    clean = false;
                    writeln!(out, "{}\t-\t-\t-\t{e}", show_id(&s.id))?;
                }
            }
        }
        out.flush()?;
        Ok(clean)
    })
}

/// A shape `Store::verify_all` found damaged where its id is stored: the
/// library names it in a `tracing` error (it has no id to list it under),
/// which [`DamageLog`] keeps.
#[derive(Clone, Debug)]
pub struct Unreadable {
    path: String,
    detail: String,
}

/// The errors about shapes with damaged ids seen so far (filled by
/// [`DamageLog`], read by `verify`).
static UNREADABLE: Mutex<Vec<Unreadable>> = Mutex::new(Vec::new());

/// A `tracing` layer that keeps the library's errors naming a damaged file
/// by `path` with a `detail` but no `shape` (the ones `Store::verify_all`
/// logs for shapes whose id cannot be read), so that `verify` can list
/// them.
pub struct DamageLog;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for DamageLog {
    fn on_event(&self, e: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let meta = e.metadata();
        if *meta.level() != tracing::Level::ERROR || !meta.target().starts_with("shapebuf") {
            return;
        }
        #[derive(Default)]
        struct Fields {
            path: Option<String>,
            detail: Option<String>,
            shape: bool,
        }
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                match f.name() {
                    "path" => self.path = Some(format!("{v:?}")),
                    "detail" => self.detail = Some(format!("{v:?}")),
                    "shape" => self.shape = true,
                    _ => {}
                }
            }
            fn record_str(&mut self, f: &tracing::field::Field, v: &str) {
                self.record_debug(f, &format_args!("{v}"));
            }
        }
        let mut fields = Fields::default();
        e.record(&mut fields);
        // A quarantine's error names its shape: `corrupt_shapes` lists it.
        if fields.shape {
            return;
        }
        if let (Some(path), Some(detail)) = (fields.path, fields.detail) {
            UNREADABLE
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Unreadable { path, detail });
        }
    }
}

/// `shapebuf verify DIR`: recovers every shape (`Store::verify_all`), then
/// prints one line per damaged shape, `quarantined\tID\tERROR` (or
/// `unreadable-id\tPATH\tDETAIL` for a shape whose id cannot be read), and
/// a last line `verified N shapes: M damaged`. Exit status 0 only when
/// every shape is clean.
pub fn verify(opts: &StoreDir) -> ExitCode {
    finish("verify", || {
        let store = open(&opts.dir)?;
        UNREADABLE
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        let damaged = store.verify_all()?;
        let mut corrupt = store.corrupt_shapes();
        corrupt.sort_by(|a, b| a.0.cmp(&b.0));
        let unreadable =
            std::mem::take(&mut *UNREADABLE.lock().unwrap_or_else(PoisonError::into_inner));
        let mut out = BufWriter::new(io::stdout().lock());
        for (id, e) in &corrupt {
            writeln!(out, "quarantined\t{}\t{e}", show_id(id))?;
        }
        for u in &unreadable {
            writeln!(out, "unreadable-id\t{}\t{}", u.path, u.detail)?;
        }
        let listed = corrupt.len() + unreadable.len();
        if listed < damaged {
            // Only if the layer missed an event (a filtered build, say).
            writeln!(
                out,
                "unreadable-id\t?\t{} more damaged shape(s) whose id cannot be read: see stderr",
                damaged - listed
            )?;
        }
        writeln!(
            out,
            "verified {} shapes: {damaged} damaged",
            store.shape_count()
        )?;
        out.flush()?;
        Ok(damaged == 0)
    })
}

/// Parses `TX/OP`.
fn parse_offset(s: &str) -> Result<LogOffset, String> {
    let bad = || format!("{s:?} is not an offset: give TX/OP, two unsigned integers (e.g. 7/0)");
    let (tx, op) = s.split_once('/').ok_or_else(bad)?;
    Ok(LogOffset::new(
        tx.parse().map_err(|_| bad())?,
        op.parse().map_err(|_| bad())?,
    ))
}

/// Parses a hexadecimal id.
fn parse_hex(s: &str) -> Result<Vec<u8>, Failure> {
    let s = s.strip_prefix("hex:").unwrap_or(s);
    let bad = || Failure::Failed(format!("{s:?} is not an even number of hexadecimal digits"));
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return Err(bad());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| bad()))
        .collect()
}

/// One entry as a JSON line: `{"offset":"TX/OP","payload":...}`, the
/// payload a JSON string when it is valid UTF-8, else `{"base64":"..."}`.
fn json_line(offset: LogOffset, payload: &[u8]) -> String {
    let payload = match std::str::from_utf8(payload) {
        Ok(s) => serde_json::Value::from(s),
        Err(_) => serde_json::json!({
            "base64": base64::engine::general_purpose::STANDARD.encode(payload)
        }),
    };
    serde_json::json!({ "offset": offset.to_string(), "payload": payload }).to_string()
}

/// `shapebuf cat DIR ID [--after TX/OP]`: the shape's committed entries
/// (after the offset) as JSON lines. The whole range is read (into memory)
/// before it is printed.
pub fn cat(opts: &CatOptions) -> ExitCode {
    finish("cat", || {
        let id = if opts.hex {
            parse_hex(&opts.id)?
        } else {
            opts.id.as_bytes().to_vec()
        };
        let store = open(&opts.store.dir)?;
        let after = opts.after.unwrap_or(LogOffset::ZERO);
        let read = store.read(&id, after, LogOffset::MAX)?;
        let mut out = BufWriter::new(io::stdout().lock());
        for e in &read.entries {
            writeln!(out, "{}", json_line(e.offset, &e.payload))?;
        }
        out.flush()?;
        Ok(true)
    })
}

/// `shapebuf stats DIR`: `name=value` lines: shapes, entries, payload
/// bytes, damaged shapes, and the store's open and peak open log files
/// after reading every shape.
pub fn stats(opts: &StoreDir) -> ExitCode {
    finish("stats", || {
        let store = open(&opts.dir)?;
        let damaged = store.verify_all()?;
        let shapes = scan(&store)?;
        let (mut entries, mut bytes) = (0u64, 0u64);
        for s in &shapes {
            if let Ok((n, b, _)) = &s.read {
                entries += n;
                bytes += b;
            }
        }
        let mut out = BufWriter::new(io::stdout().lock());
        writeln!(out, "shapes={}", store.shape_count())?;
        writeln!(out, "entries={entries}")?;
        writeln!(out, "bytes={bytes}")?;
        writeln!(out, "corrupt={damaged}")?;
        // The store's own snapshot, in the same key=value form.
        for kv in store.stats().to_string().split(' ') {
            if !kv.starts_with("shapes=") {
                writeln!(out, "{kv}")?;
            }
        }
        out.flush()?;
        Ok(damaged == 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse_and_bad_ones_say_why() {
        assert_eq!(parse_offset("7/3"), Ok(LogOffset::new(7, 3)));
        for bad in ["", "7", "7/", "/3", "a/b", "-1/0", "1/2/3"] {
            let e = parse_offset(bad).expect_err(bad);
            assert!(e.contains("TX/OP"), "{e}");
        }
    }

    #[test]
    fn hex_ids_parse() {
        assert!(matches!(parse_hex("hex:00ff"), Ok(v) if v == [0, 0xff]));
        assert!(matches!(parse_hex("0aF0"), Ok(v) if v == [0x0a, 0xf0]));
        for bad in ["0", "zz", "é0"] {
            assert!(matches!(parse_hex(bad), Err(Failure::Failed(_))), "{bad}");
        }
    }

    #[test]
    fn payloads_print_as_text_or_base64() {
        assert_eq!(
            json_line(LogOffset::new(1, 2), b"a \"b\"\n"),
            r#"{"offset":"1/2","payload":"a \"b\"\n"}"#
        );
        assert_eq!(
            json_line(LogOffset::new(3, 0), &[0xff, 0x00]),
            r#"{"offset":"3/0","payload":{"base64":"/wA="}}"#
        );
    }

    #[test]
    fn ids_show_as_text_or_hex() {
        assert_eq!(show_id(b"orders"), "orders");
        assert_eq!(show_id(b"a\tb"), "a\\tb");
        assert_eq!(show_id(&[0xff, 1]), "hex:ff01");
    }
}
