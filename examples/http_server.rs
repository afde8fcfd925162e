//! Live tail over HTTP: shapebuf embedded in an axum server.
//!
//! ```text
//! GET  /shapes/{id}?offset=TX/OP&live=true   committed entries after TX/OP, as JSON lines
//!                                             (`live=1` works too)
//! POST /admin/shapes/{id}/restart             terminate the shape's writer and start a new one
//! GET  /metrics                                the store's stats, Prometheus text format
//! ```
//!
//! A writer thread (the [`Feeder`]) commits small transactions to a few
//! shapes. A client reads a shape from `offset=0/0`, then asks again from the
//! offset of the last line it got; with `live=true` a request that finds
//! nothing new long-polls ([`ShapeHandle::wait_for_async`]) until a commit,
//! a terminate, or the long-poll limit. Each response is JSON lines: one per
//! entry, then a control line with the offset to continue from.
//!
//! ```text
//! {"offset":"12/0","payload":"aGVsbG8="}
//! {"offset":"12/1","payload":"d29ybGQ="}
//! {"control":"up-to-date","offset":"12/1","wait":"committed"}
//! ```
//!
//! `payload` is base64 (payloads are bytes). `control` is `up-to-date`, or
//! `more` when the response was cut at the entry limit; `wait` is present
//! when the request long-polled (`committed`, `timed-out`, `terminated`,
//! `writer-dropped`, `shutdown`). A `terminated` shape answers at once (it
//! may be restarting): a client should back off before asking again. When
//! the server shuts down (Ctrl-C), every long-poll ends at once with
//! `"wait":"shutdown"` (and the offset to continue from elsewhere), so the
//! server stops without waiting out the long-poll limit.
//!
//! Shape ids in URLs are untrusted: the path segment is percent-decoded to
//! bytes (any bytes, `%2F` included) and an empty or over-long id is a 400.
//! The admin endpoint has no authentication: the server binds 127.0.0.1
//! only.
//!
//! Run it and tail a shape:
//!
//! ```text
//! cargo run --example http_server -- [DIR] [PORT]
//! curl 'http://127.0.0.1:3000/shapes/orders?offset=0/0'
//! curl 'http://127.0.0.1:3000/shapes/orders?offset=5/0&live=true'
//! curl -X POST 'http://127.0.0.1:3000/admin/shapes/orders/restart'
//! ```
//!
//! `tests/live_tail_http.rs` includes this file and starts the same router
//! in-process.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use bytes::Bytes;
use percent_encoding::percent_decode_str;
use serde::Deserialize;
use serde::Deserializer;
use shapebuf::{Error, LogOffset, PackedRead, ShapeHandle, ShapeWriter, Store, WaitOutcome};

/// The longest shape id accepted in a URL (after percent-decoding). The
/// store takes up to [`shapebuf::MAX_ID`]; a URL is a worse place for long
/// ids.
pub const MAX_URL_ID: usize = 1024;

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// How long a `live=true` request waits for a commit.
    pub long_poll: Duration,
    /// The most entries in one response (the client continues from the
    /// control line's offset).
    pub max_entries: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            long_poll: Duration::from_secs(20),
            max_entries: 1000,
        }
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct App {
    store: Store,
    feeder: Arc<Feeder>,
    cfg: ServerConfig,
    /// Set once, by [`App::shut_down`]: long-polls end at once.
    shutdown: Arc<tokio::sync::watch::Sender<bool>>,
}

impl App {
    /// Serves `store`, whose writers `feeder` owns.
    pub fn new(store: Store, feeder: Arc<Feeder>, cfg: ServerConfig) -> App {
        App {
            store,
            feeder,
            cfg,
            shutdown: Arc::new(tokio::sync::watch::Sender::new(false)),
        }
    }

    /// Ends every long-poll now, and every later one at once, each with a
    /// `"wait":"shutdown"` control line: call it when the server starts
    /// shutting down, so that graceful shutdown does not wait out the
    /// long-poll limit.
    pub fn shut_down(&self) {
        self.shutdown.send_replace(true);
    }

    /// Resolves once [`App::shut_down`] was called (at once if it was).
    fn shutting_down(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.shutdown.subscribe();
        async move {
            // An error means the sender is gone: the app is gone too.
            let _ = rx.wait_for(|down| *down).await;
        }
    }
}

/// The routes (see the module docs).
pub fn router(app: App) -> Router {
    Router::new()
        .route("/shapes/", get(empty_id))
        .route("/shapes/{id}", get(tail))
        .route("/admin/shapes/{id}/restart", post(restart))
        .route("/metrics", get(metrics))
        .with_state(app)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The writer side: owns one [`ShapeWriter`] per shape, commits
/// transactions to them, restarts them, and records every committed entry
/// (the log a client must reconstruct).
pub struct Feeder {
    store: Store,
    shapes: Vec<Bytes>,
    /// Per shape: its writer (`None` only inside a restart that failed).
    writers: HashMap<Bytes, Mutex<Shape>>,
    next_tx: AtomicU64,
}

struct Shape {
    writer: Option<ShapeWriter>,
    /// Every committed entry, in order.
    record: Vec<(LogOffset, Bytes)>,
}

impl Feeder {
    /// Opens a writer for each of `shapes` (recovering what `store` holds)
    /// and continues after the largest committed transaction.
    pub fn new(store: Store, shapes: Vec<Bytes>) -> shapebuf::Result<Arc<Feeder>> {
        let mut writers = HashMap::new();
        let mut last_tx = 0;
        for id in &shapes {
            let w = store.writer(id)?;
            let record = store
                .read(id, LogOffset::ZERO, LogOffset::MAX)?
                .entries
                .into_iter()
                .map(|e| (e.offset, e.payload))
                .collect::<Vec<_>>();
            last_tx = last_tx.max(record.last().map_or(0, |(o, _)| o.tx));
            writers.insert(
                id.clone(),
                Mutex::new(Shape {
                    writer: Some(w),
                    record,
                }),
            );
        }
        Ok(Arc::new(Feeder {
            store,
            shapes,
            writers,
            next_tx: AtomicU64::new(last_tx + 1),
        }))
    }

    /// The shapes this feeder writes.
    pub fn shapes(&self) -> &[Bytes] {
        &self.shapes
    }

    /// Commits one transaction of `ops` entries to shape number `i`;
    /// returns its last offset.
    pub fn feed(&self, i: usize, ops: u64) -> shapebuf::Result<LogOffset> {
        let id = &self.shapes[i % self.shapes.len()];
        let mut shape = lock(&self.writers[id]);
        let shape = &mut *shape;
        let Some(w) = shape.writer.as_mut() else {
            return Err(Error::WriterActive("restart in progress".into()));
        };
        // Relaxed: a unique number; offsets per shape only need to grow,
        // and this shape's lock orders its transactions.
        let tx = self.next_tx.fetch_add(1, Ordering::Relaxed);
        let mut batch = Vec::new();
        for op in 0..ops.max(1) {
            let offset = LogOffset::new(tx, op);
            let payload = Bytes::from(format!("{tx}/{op} \"q\" \u{e9}\n"));
            w.append(offset, payload.clone())?;
            batch.push((offset, payload));
        }
        let last = w.commit()?;
        // Visible now: record it before anything else can fail.
        shape.record.extend(batch);
        w.tick()?;
        Ok(last)
    }

    /// Terminates shape `id`'s writer and opens a new one (the log
    /// continues). `None` if this feeder does not write `id`.
    pub fn restart(&self, id: &[u8]) -> Option<shapebuf::Result<LogOffset>> {
        let mut shape = lock(self.writers.get(id)?);
        let result = (|| {
            if let Some(w) = shape.writer.take() {
                w.terminate()?;
            }
            let w = self.store.writer(id)?;
            let last = w.last_appended();
            shape.writer = Some(w);
            Ok(last)
        })();
        Some(result)
    }

    /// Flushes every shape that has waited [`shapebuf::Config::flush_interval`].
    pub fn tick(&self) -> shapebuf::Result<()> {
        for m in self.writers.values() {
            if let Some(w) = lock(m).writer.as_mut() {
                w.tick()?;
            }
        }
        Ok(())
    }

    /// Every entry committed to shape `id` so far.
    pub fn record(&self, id: &[u8]) -> Vec<(LogOffset, Bytes)> {
        self.writers
            .get(id)
            .map(|m| lock(m).record.clone())
            .unwrap_or_default()
    }

    /// Runs on a thread of its own: one transaction every `every`, round
    /// robin over the shapes, until `stop` is set.
    pub fn run(
        self: Arc<Self>,
        every: Duration,
        stop: Arc<AtomicBool>,
    ) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let mut i = 0;
            // Relaxed: a stop flag; nothing is published through it.
            while !stop.load(Ordering::Relaxed) {
                if let Err(e) = self.feed(i, 1 + (i as u64 % 3)) {
                    eprintln!("feeder: {e}");
                }
                if i % 16 == 0 {
                    let _ = self.tick();
                }
                i += 1;
                std::thread::sleep(every);
            }
        })
    }
}

/// A shape id from the raw (still percent-encoded) path: the segment after
/// `prefix` and before `suffix`, decoded to bytes; why not, for a 400.
fn shape_id(path: &str, prefix: &str, suffix: &str) -> Result<Bytes, &'static str> {
    let raw = path
        .strip_prefix(prefix)
        .and_then(|p| p.strip_suffix(suffix))
        .unwrap_or("");
    // Each decoded byte takes at most three characters.
    if raw.len() > 3 * MAX_URL_ID {
        return Err("shape id too long");
    }
    let id: Vec<u8> = percent_decode_str(raw).collect();
    if id.is_empty() {
        return Err("empty shape id");
    }
    if id.len() > MAX_URL_ID {
        return Err("shape id too long");
    }
    Ok(Bytes::from(id))
}

/// Parses `TX/OP`.
pub fn parse_offset(s: &str) -> Option<LogOffset> {
    let (tx, op) = s.split_once('/')?;
    Some(LogOffset::new(tx.parse().ok()?, op.parse().ok()?))
}

fn bad_request(why: &'static str) -> Response {
    (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response()
}

fn error_response(e: Error) -> Response {
    let status = match e {
        Error::UnknownShape(_) => StatusCode::NOT_FOUND,
        Error::BadShapeId { .. } => StatusCode::BAD_REQUEST,
        Error::OffsetCollected { .. } => StatusCode::GONE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, format!("{e}\n")).into_response()
}

/// `GET /metrics`: [`Store::stats`] in the Prometheus text format. Taken
/// off the async runtime: the snapshot walks the registry.
async fn metrics(State(app): State<App>) -> Response {
    let store = app.store.clone();
    match tokio::task::spawn_blocking(move || store.stats().to_prometheus()).await {
        Ok(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn empty_id() -> Response {
    bad_request("empty shape id")
}

/// Query of `GET /shapes/{id}`.
#[derive(Debug, Deserialize)]
pub struct TailQuery {
    /// `TX/OP`: return entries after this one (default `0/0`, everything).
    pub offset: Option<String>,
    /// Long-poll when nothing is new: `live=true` or `live=1` (`false`, `0`
    /// or absent: no long-poll; anything else is a 400).
    #[serde(default, deserialize_with = "flag")]
    pub live: bool,
}

/// A query flag: `true`/`1` or `false`/`0`.
fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let s = String::deserialize(d)?;
    match s.as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(serde::de::Error::custom(format!(
            "expected true, false, 1 or 0, got {s:?}"
        ))),
    }
}

/// Reads at most `max` entries of `(after, MAX]` off the async runtime (a
/// read may go to disk), as one buffer (no reference count per entry).
async fn read(h: &ShapeHandle, after: LogOffset, max: usize) -> Result<PackedRead, Response> {
    let h = h.clone();
    match tokio::task::spawn_blocking(move || h.read_packed(after, LogOffset::MAX, max)).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(error_response(e)),
        Err(_) => Err((StatusCode::INTERNAL_SERVER_ERROR, "read task failed\n").into_response()),
    }
}

async fn tail(State(app): State<App>, uri: Uri, Query(q): Query<TailQuery>) -> Response {
    let id = match shape_id(uri.path(), "/shapes/", "") {
        Ok(id) => id,
        Err(why) => return bad_request(why),
    };
    let Some(after) = parse_offset(q.offset.as_deref().unwrap_or("0/0")) else {
        return bad_request("offset must be TX/OP");
    };
    let handle = match app.store.handle(&id) {
        Ok(h) => h,
        Err(e) => return error_response(e),
    };
    let max = app.cfg.max_entries;
    let mut entries = match read(&handle, after, max).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let mut waited = None;
    if entries.is_empty() && q.live {
        // A shutdown ends the long-poll at once (`None`).
        let out = tokio::select! {
            out = handle.wait_for_async(after, app.cfg.long_poll) => Some(out),
            () = app.shutting_down() => None,
        };
        waited = Some(out);
        if let Some(WaitOutcome::Committed(_)) = out {
            entries = match read(&handle, after, max).await {
                Ok(v) => v,
                Err(r) => return r,
            };
        }
    }
    let more = entries.more;
    let mut body = String::new();
    let b64 = base64::engine::general_purpose::STANDARD;
    for (offset, payload) in entries.iter() {
        let line = serde_json::json!({
            "offset": offset.to_string(),
            "payload": b64.encode(payload),
        });
        body.push_str(&line.to_string());
        body.push('\n');
    }
    let next = entries.last().unwrap_or(after);
    let mut control = serde_json::json!({
        "control": if more { "more" } else { "up-to-date" },
        "offset": next.to_string(),
    });
    if let Some(out) = waited {
        control["wait"] = match out {
            Some(WaitOutcome::Committed(_)) => "committed",
            Some(WaitOutcome::TimedOut) => "timed-out",
            Some(WaitOutcome::Terminated) => "terminated",
            Some(WaitOutcome::WriterDropped) => "writer-dropped",
            None => "shutdown",
            Some(_) => "other",
        }
        .into();
    }
    body.push_str(&control.to_string());
    body.push('\n');
    (
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

async fn restart(State(app): State<App>, uri: Uri) -> Response {
    let id = match shape_id(uri.path(), "/admin/shapes/", "/restart") {
        Ok(id) => id,
        Err(why) => return bad_request(why),
    };
    let feeder = Arc::clone(&app.feeder);
    let key = id.clone();
    // Terminate flushes and syncs: off the async runtime.
    let done = tokio::task::spawn_blocking(move || feeder.restart(&key)).await;
    match done {
        Ok(Some(Ok(last))) => {
            let body = serde_json::json!({ "restarted": true, "offset": last.to_string() });
            (
                [(header::CONTENT_TYPE, "application/json")],
                format!("{body}\n"),
            )
                .into_response()
        }
        Ok(Some(Err(e))) => error_response(e),
        Ok(None) => (StatusCode::NOT_FOUND, "no writer for this shape\n").into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "restart task failed\n").into_response(),
    }
}

/// Serves `app` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: App,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown)
        .await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let tmp;
    let dir = match args.next() {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let port: u16 = args.next().map_or(Ok(3000), |p| p.parse())?;
    let store = Store::open(&dir)?;
    let shapes = ["orders", "users", "with space/and slash"]
        .map(|s| Bytes::from_static(s.as_bytes()))
        .to_vec();
    let feeder = Feeder::new(store.clone(), shapes)?;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = Arc::clone(&feeder).run(Duration::from_millis(200), Arc::clone(&stop));
    // Loopback only: the admin endpoint is unauthenticated.
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("store in {}; serving on http://{addr}", dir.display());
    println!("try: curl 'http://{addr}/shapes/orders?offset=0/0'");
    let app = App::new(store, feeder, ServerConfig::default());
    let on_ctrl_c = app.clone();
    serve(listener, app, async move {
        let _ = tokio::signal::ctrl_c().await;
        // Long-polls end now, with a control line; graceful shutdown then
        // has nothing to wait for.
        on_ctrl_c.shut_down();
    })
    .await?;
    // Relaxed: a stop flag.
    stop.store(true, Ordering::Relaxed);
    let _ = writer.join();
    Ok(())
}
