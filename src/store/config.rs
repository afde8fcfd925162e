//! Store settings: what a host may configure, and the defaults production
//! should start from; [`Config::validate`] refuses what the store cannot run
//! with.

use std::time::Duration;

use crate::{Error, Result, MAX_PAYLOAD};

/// Store settings. `Config::default()` is what production should start from.
///
/// [`Store::open_with`](crate::Store::open_with) checks a configuration with
/// [`Config::validate`] before it touches the directory: a value the store
/// cannot run with (one that would panic, abort, spin or allocate absurdly
/// later) is refused there with [`Error::InvalidConfig`] naming the field
/// and its bounds. Each field's doc says what it accepts; values that are
/// merely unusual but safe (no automatic flush, no index, no retention)
/// are accepted and say what they do.
///
/// ```
/// use std::time::Duration;
/// let cfg = shapebuf::Config { flush_bytes: 1 << 20, ..Default::default() };
/// assert_eq!(cfg.flush_interval, Duration::from_secs(1));
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    /// A writer hands a flush batch to the store's flusher threads when this
    /// many bytes are pending (default 64 KiB); see
    /// [`Config::flush_threads`].
    ///
    /// At least 1 (0 is refused: it reads as "never" but would mean "at
    /// every append"); 1 hands over a batch at every append. A writer
    /// counts pending bytes in 32 bits, so values above 4 GiB act as
    /// 4 GiB: `usize::MAX` flushes when the host asks (or at 4 GiB
    /// pending).
    pub flush_bytes: usize,
    /// Back-pressure: while a writer's flush batch is being written,
    /// `append` goes on until this many more bytes are pending, then waits
    /// for the batch (default 1 MiB). The next
    /// batch takes everything pending, so a writer that outruns its disk
    /// gets fewer, bigger syncs (group commit) and waits once per batch,
    /// not once per `flush_bytes`; this bounds its unflushed memory to
    /// about twice this. A writer that does not outrun its disk never
    /// gets near it: it hands over a batch every `flush_bytes`.
    ///
    /// Any value is accepted: below [`Config::flush_bytes`] it acts as
    /// `flush_bytes` (an append that would hand over a batch while one is
    /// in flight waits for it first), and above 4 GiB as 4 GiB.
    pub max_pending_bytes: usize,
    /// Committed data becomes durable at most this long (plus one sync)
    /// after the commit that left it pending, with no further call from
    /// the host (default 1 s): the commit queues the shape on the store's
    /// dirty queue and the store's timer thread flushes it then (see
    /// [`ShapeWriter::commit`](crate::ShapeWriter::commit)). Idle shapes
    /// cost the timer nothing. [`ShapeWriter::tick`](crate::ShapeWriter::tick)
    /// also flushes pending data this long after the writer's last flush.
    ///
    /// From 1 ms to 24 hours; anything else is refused (0 would make a
    /// timed flush run without pause; beyond a day, committed data waits
    /// in memory for days and deadlines overflow).
    ///
    /// ```
    /// use std::time::Duration;
    /// let cfg = shapebuf::Config { flush_interval: Duration::from_millis(100), ..Default::default() };
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = shapebuf::Store::open_with(dir.path(), cfg).unwrap();
    /// # drop(store);
    /// ```
    pub flush_interval: Duration,
    /// Entries a fresh in-memory segment has room for before it grows
    /// (default 7). Memory comes in chunks that double from 1 entry slot
    /// (48 B, allocated at the first append) up to 64 slots (3 KiB), so
    /// this rounds up to whole chunks; a segment grows by adding chunks
    /// (its directory of chunks doubles, no entry is copied). The default
    /// is the chunks of 1, 2 and 4 slots, whose directory (3 pointers) is
    /// the smallest heap block: a shape holding a few entries pays for no
    /// more, and a busy one grows its segment a few times per flush (a
    /// trim sizes the next segment to what it keeps).
    ///
    /// At most 2^20 (1,048,576): the directory is allocated with the
    /// segment, 8 bytes per 64 entries of room (128 KiB at the bound),
    /// by every live shape at every trim; `usize::MAX` would be a 2^61-byte
    /// allocation. 0 acts as 1.
    pub segment_capacity: usize,
    /// After a flush, keep the newest durable entries in memory while their
    /// payloads plus about 48 bytes of slot each add up to at most this many
    /// bytes (default 16 KiB; 0 keeps none). Readers tailing a shape then
    /// read its last entries from memory instead of from disk. The cost is
    /// at most this much memory per shape that has flushed, plus the rest
    /// of the chunk the oldest kept entry sits in (a chunk whose trimmed
    /// part holds more than this is copied rather than kept).
    ///
    /// Any value is accepted; `usize::MAX` keeps every entry in memory for
    /// as long as the shape is open (memory grows with the shape, and each
    /// trim walks what it keeps).
    pub retain_bytes: usize,
    /// One sparse index point per this many bytes of log (default 10 MiB).
    ///
    /// At least 1 (0 is refused: it asks for a point before the first
    /// record, which the file's start already is). An index point costs
    /// 32 bytes of memory while its shape is open, so 1 (a point per entry)
    /// costs about as much as small entries themselves; `u64::MAX` keeps
    /// no index (a read scans its file from the start).
    pub index_interval: u64,
    /// Start a new log file once the current one reaches this size
    /// (default 64 MiB).
    ///
    /// At least 1 (0 is refused); 1 starts a new file at every flush
    /// (a file per flush: every read crosses files, and each costs a
    /// descriptor and a directory sync). `u64::MAX` never starts a second
    /// file.
    pub file_bytes: u64,
    /// Threads per store that write and sync flush batches off the writers'
    /// threads (default 2; started when first needed). With 0, a batch is
    /// written on the writer's thread when it is handed over, as an explicit
    /// [`ShapeWriter::flush`](crate::ShapeWriter::flush) is: the order of
    /// file operations is then deterministic (the crash-point tests rely on
    /// it).
    ///
    /// At most 256 (each is an OS thread, started as batches queue up).
    pub flush_threads: usize,
    /// The largest payload `append` accepts (default 16 MiB); a larger one
    /// is [`Error::PayloadTooLarge`].
    ///
    /// At most [`MAX_PAYLOAD`](crate::MAX_PAYLOAD) (64 MiB - 17, the log
    /// format's own bound; a larger value is refused rather than silently
    /// lowered). 0 accepts only empty payloads.
    pub max_payload: usize,
    /// The most log files the store keeps open at once (default 512, at
    /// least 1): every read, flush and recovery opens its file through one
    /// cache of this many descriptors, evicting the least recently used
    /// one that nobody is using, so any number of shapes runs under a
    /// descriptor limit (`ulimit -n`) above this plus a few (the `LOCK`
    /// file, one directory per flusher thread syncing it). A file evicted
    /// while a read or flush uses it stays open until that use ends; when
    /// all are in use, an open waits for one to be let go.
    ///
    /// 0 is refused. A value above the process's descriptor limit is
    /// accepted (the store cannot know the host's other files), but then
    /// an open past the limit fails with an I/O error instead of waiting.
    pub max_open_files: usize,
}

/// [`Config::flush_interval`]'s bounds.
const MIN_FLUSH_INTERVAL: Duration = Duration::from_millis(1);
const MAX_FLUSH_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);
/// [`Config::segment_capacity`]'s bound.
const MAX_SEGMENT_CAPACITY: usize = 1 << 20;
/// [`Config::flush_threads`]' bound.
const MAX_FLUSH_THREADS: usize = 256;

impl Config {
    /// Checks every field against its bounds (each field's doc states
    /// them). [`Store::open_with`](crate::Store::open_with) runs this first,
    /// before it touches the directory; a host may call it earlier, e.g.
    /// when it reads its settings.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the first field out of its bounds
    /// (in declaration order) and the bounds.
    ///
    /// ```
    /// use shapebuf::{Config, Error};
    /// assert!(Config::default().validate().is_ok());
    /// let bad = Config { index_interval: 0, ..Config::default() };
    /// match bad.validate() {
    ///     Err(Error::InvalidConfig { field, reason }) => {
    ///         assert_eq!(field, "index_interval");
    ///         assert!(reason.contains("at least 1"), "{reason}");
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// ```
    pub fn validate(&self) -> Result<()> {
        fn refuse(field: &'static str, reason: String) -> Result<()> {
            Err(Error::InvalidConfig { field, reason })
        }
        if self.flush_bytes == 0 {
            return refuse(
                "flush_bytes",
                "must be at least 1 (0 would flush at every append; usize::MAX flushes only \
                 when asked)"
                    .into(),
            );
        }
        if !(MIN_FLUSH_INTERVAL..=MAX_FLUSH_INTERVAL).contains(&self.flush_interval) {
            return refuse(
                "flush_interval",
                format!(
                    "must be from {MIN_FLUSH_INTERVAL:?} to {MAX_FLUSH_INTERVAL:?}, got {:?}",
                    self.flush_interval
                ),
            );
        }
        if self.segment_capacity > MAX_SEGMENT_CAPACITY {
            return refuse(
                "segment_capacity",
                format!(
                    "must be at most {MAX_SEGMENT_CAPACITY} entries (every segment allocates \
                     its directory for it), got {}",
                    self.segment_capacity
                ),
            );
        }
        if self.index_interval == 0 {
            return refuse(
                "index_interval",
                "must be at least 1 byte (u64::MAX keeps no index)".into(),
            );
        }
        if self.file_bytes == 0 {
            return refuse(
                "file_bytes",
                "must be at least 1 byte (u64::MAX never starts a second file)".into(),
            );
        }
        if self.flush_threads > MAX_FLUSH_THREADS {
            return refuse(
                "flush_threads",
                format!(
                    "must be at most {MAX_FLUSH_THREADS} (0 flushes on the writer's thread), \
                     got {}",
                    self.flush_threads
                ),
            );
        }
        if self.max_payload > MAX_PAYLOAD {
            return refuse(
                "max_payload",
                format!(
                    "must be at most MAX_PAYLOAD ({MAX_PAYLOAD} bytes, the log format's bound), \
                     got {}",
                    self.max_payload
                ),
            );
        }
        if self.max_open_files == 0 {
            return refuse("max_open_files", "must be at least 1".into());
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            flush_bytes: 64 << 10,
            max_pending_bytes: 1 << 20,
            flush_interval: Duration::from_secs(1),
            segment_capacity: 7,
            retain_bytes: 16 << 10,
            index_interval: 10 << 20,
            file_bytes: 64 << 20,
            max_payload: 16 << 20,
            flush_threads: crate::store::flusher::THREADS,
            max_open_files: 512,
        }
    }
}
