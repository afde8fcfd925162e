//! Store settings: what a host may configure, and the defaults production
//! should start from.

use std::time::Duration;

/// Store settings. `Config::default()` is what production should start from.
///
/// ```
/// use std::time::Duration;
/// let cfg = shapebuf::Config { flush_bytes: 1 << 20, ..Default::default() };
/// assert_eq!(cfg.flush_interval, Duration::from_secs(1));
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    /// A writer hands a flush batch to the store's flusher threads when this
    /// many bytes are pending (default 64 KiB; at most 4 GiB); see
    /// [`Config::flush_threads`].
    pub flush_bytes: usize,
    /// Back-pressure: while a writer's flush batch is being written,
    /// `append` goes on until this many more bytes are pending, then waits
    /// for the batch (default 1 MiB, at least `flush_bytes`, at most 4 GiB). The next
    /// batch takes everything pending, so a writer that outruns its disk
    /// gets fewer, bigger syncs (group commit) and waits once per batch,
    /// not once per `flush_bytes`; this bounds its unflushed memory to
    /// about twice this. A writer that does not outrun its disk never
    /// gets near it: it hands over a batch every `flush_bytes`.
    pub max_pending_bytes: usize,
    /// Committed data becomes durable at most this long (plus one sync)
    /// after the commit that left it pending, with no further call from
    /// the host (default 1 s): the commit queues the shape on the store's
    /// dirty queue and the store's timer thread flushes it then (see
    /// [`ShapeWriter::commit`](crate::ShapeWriter::commit)). Idle shapes
    /// cost the timer nothing. [`ShapeWriter::tick`] also flushes pending
    /// data this long after the writer's last flush.
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
    pub segment_capacity: usize,
    /// After a flush, keep the newest durable entries in memory while their
    /// payloads plus about 48 bytes of slot each add up to at most this many
    /// bytes (default 16 KiB; 0 keeps none). Readers tailing a shape then
    /// read its last entries from memory instead of from disk. The cost is
    /// at most this much memory per shape that has flushed, plus the rest
    /// of the chunk the oldest kept entry sits in (a chunk whose trimmed
    /// part holds more than this is copied rather than kept).
    pub retain_bytes: usize,
    /// One sparse index point per this many bytes of log (default 10 MiB).
    pub index_interval: u64,
    /// Start a new log file once the current one reaches this size
    /// (default 64 MiB).
    pub file_bytes: u64,
    /// Threads per store that write and sync flush batches off the writers'
    /// threads (default 2; started when first needed). With 0, a batch is
    /// written on the writer's thread when it is handed over, as an explicit
    /// [`ShapeWriter::flush`] is: the order of file operations is then
    /// deterministic (the crash-point tests rely on it).
    pub flush_threads: usize,
    /// The largest payload `append` accepts (default 16 MiB, at most
    /// [`MAX_PAYLOAD`](crate::MAX_PAYLOAD)).
    pub max_payload: usize,
    /// The most log files the store keeps open at once (default 512, at
    /// least 1): every read, flush and recovery opens its file through one
    /// cache of this many descriptors, evicting the least recently used
    /// one that nobody is using, so any number of shapes runs under a
    /// descriptor limit (`ulimit -n`) above this plus a few (the `LOCK`
    /// file, one directory per flusher thread syncing it). A file evicted
    /// while a read or flush uses it stays open until that use ends; when
    /// all are in use, an open waits for one to be let go.
    pub max_open_files: usize,
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
