//! The example HTTP server (examples/http_server.rs, started in-process on
//! 127.0.0.1) under real HTTP clients (reqwest) that tail shapes with
//! long-polls while an admin client terminates and restarts shapes in a
//! loop. Every client rebuilds each shape's log from the responses; the test
//! checks it against the writer's record: no gap, no duplicate, no 5xx, no
//! request outliving the long-poll limit by more than a generous margin.
//!
//! Bounded by counts (transactions, restarts, requests per client), not by
//! wall time; loopback only.

#[allow(dead_code)]
#[path = "../examples/http_server.rs"]
mod http_server;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_server::{parse_offset, App, Feeder, ServerConfig, MAX_URL_ID};
use percent_encoding::{percent_encode, NON_ALPHANUMERIC};
use shapebuf::{Config, LogOffset, Store};

/// Transactions the writer commits (spread over the shapes).
const TRANSACTIONS: usize = 3000;
/// Tailing clients per shape.
const CLIENTS_PER_SHAPE: usize = 3;
/// A client that needs more requests than this has stalled.
const MAX_REQUESTS_PER_CLIENT: usize = 20_000;
const LONG_POLL: Duration = Duration::from_millis(250);
/// A request that takes longer than this has hung (the long-poll limit plus
/// a margin for a loaded 2-core machine).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Shape ids meant to trip up URL handling.
fn shape_ids() -> Vec<Bytes> {
    vec![
        Bytes::from_static(b"orders"),
        Bytes::from_static(b"with space/slash?and=query#frag"),
        Bytes::from("\u{fc}n\u{ef}c\u{f6}d\u{e9} \u{1f980}"),
        Bytes::from_static(b"\xff\xfe\x00raw bytes"),
        Bytes::from_static(b"%41 literal percent"),
        // (A bare ".." cannot be sent: WHATWG URL parsing, reqwest's,
        // removes a `%2E%2E` segment as a dot segment.)
        Bytes::from_static(b"../../etc/passwd"),
    ]
}

fn url_segment(id: &[u8]) -> String {
    percent_encode(id, NON_ALPHANUMERIC).to_string()
}

#[derive(Default)]
struct Totals {
    requests: AtomicU64,
    entries: AtomicU64,
    long_polls: AtomicU64,
    woken_by_commit: AtomicU64,
    timed_out: AtomicU64,
    terminated: AtomicU64,
    restarts: AtomicU64,
    max_request_ms: AtomicU64,
    /// Long-polls asked for with `live=1` (the others say `live=true`).
    long_polls_live_1: AtomicU64,
}

/// One response: the entries and the control line's offset.
struct Page {
    entries: Vec<(LogOffset, Bytes)>,
    next: LogOffset,
    wait: Option<String>,
}

fn parse_page(body: &str) -> Page {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut entries = Vec::new();
    let mut control = None;
    for line in body.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        let offset = parse_offset(v["offset"].as_str().expect("an offset")).expect("TX/OP");
        if v.get("control").is_some() {
            assert!(control.is_none(), "one control line");
            control = Some((
                offset,
                v.get("wait").and_then(|w| w.as_str()).map(String::from),
            ));
        } else {
            assert!(control.is_none(), "the control line comes last");
            let payload = b64
                .decode(v["payload"].as_str().expect("a payload"))
                .expect("base64");
            entries.push((offset, Bytes::from(payload)));
        }
    }
    let (next, wait) = control.expect("a control line");
    Page {
        entries,
        next,
        wait,
    }
}

/// Tails one shape until it holds `expect`'s last offset once `done` is set;
/// returns the log it rebuilt.
async fn tail(
    client: reqwest::Client,
    base: String,
    id: Bytes,
    done: Arc<AtomicBool>,
    last: Arc<std::sync::Mutex<LogOffset>>,
    totals: Arc<Totals>,
) -> Vec<(LogOffset, Bytes)> {
    let mut log: Vec<(LogOffset, Bytes)> = Vec::new();
    let mut offset = LogOffset::ZERO;
    for n in 0..MAX_REQUESTS_PER_CLIENT {
        // Acquire: pairs with the Release store after the writer's last
        // commit, so `last` is final.
        if done.load(Ordering::Acquire) && offset >= *last.lock().unwrap() {
            return log;
        }
        // Both spellings of the flag, alternately.
        let live = if n % 2 == 0 { "true" } else { "1" };
        let url = format!(
            "{base}/shapes/{}?offset={offset}&live={live}",
            url_segment(&id)
        );
        let started = Instant::now();
        let resp = client.get(&url).send().await.unwrap_or_else(|e| {
            panic!("request {url} failed (a hang past {REQUEST_TIMEOUT:?} included): {e}")
        });
        let status = resp.status();
        let body = resp.text().await.expect("a body");
        let ms = started.elapsed().as_millis() as u64;
        totals.max_request_ms.fetch_max(ms, Ordering::Relaxed);
        totals.requests.fetch_add(1, Ordering::Relaxed);
        assert!(!status.is_server_error(), "{status} for {url}: {body}");
        assert_eq!(status, reqwest::StatusCode::OK, "{url}: {body}");
        let page = parse_page(&body);
        if let Some(w) = &page.wait {
            totals.long_polls.fetch_add(1, Ordering::Relaxed);
            if live == "1" {
                totals.long_polls_live_1.fetch_add(1, Ordering::Relaxed);
            }
            let counter = match w.as_str() {
                "committed" => &totals.woken_by_commit,
                "timed-out" => &totals.timed_out,
                "terminated" => &totals.terminated,
                other => panic!("unexpected wait outcome {other}"),
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        for (o, p) in &page.entries {
            assert!(
                *o > offset,
                "duplicate or out of order: {o} after {offset} on {url}"
            );
            offset = *o;
            log.push((*o, p.clone()));
        }
        assert_eq!(page.next, offset, "the control line names the last entry");
        if page.wait.as_deref() == Some("terminated") && page.entries.is_empty() {
            // The shape is down (here: restarting); a polite client backs
            // off instead of asking again at once.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        totals
            .entries
            .fetch_add(page.entries.len() as u64, Ordering::Relaxed);
    }
    panic!("a client made {MAX_REQUESTS_PER_CLIENT} requests without catching up");
}

#[test]
fn tailing_clients_rebuild_every_log_during_restart_storms() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(storm());
}

async fn storm() {
    let dir = tempfile::tempdir().unwrap();
    // Small flushes and segments: clients read from memory, from disk and
    // across trims while the writers restart.
    let cfg = Config {
        flush_bytes: 2 << 10,
        flush_interval: Duration::from_millis(20),
        segment_capacity: 4,
        file_bytes: 32 << 10,
        ..Config::default()
    };
    let store = Store::open_with(dir.path(), cfg).unwrap();
    let ids = shape_ids();
    let feeder = Feeder::new(store.clone(), ids.clone()).unwrap();
    let app = App::new(
        store.clone(),
        Arc::clone(&feeder),
        ServerConfig {
            long_poll: LONG_POLL,
            max_entries: 64,
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    assert!(addr.ip().is_loopback());
    let base = format!("http://{addr}");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(http_server::serve(listener, app, async {
        let _ = stop_rx.await;
    }));
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .unwrap();

    bad_requests(&client, &base).await;

    let totals = Arc::new(Totals::default());
    let done = Arc::new(AtomicBool::new(false));
    let lasts: Vec<_> = ids
        .iter()
        .map(|_| Arc::new(std::sync::Mutex::new(LogOffset::ZERO)))
        .collect();

    // The writer: a transaction at a time, with pauses so that clients
    // catch up and long-poll.
    let writer = {
        let feeder = Arc::clone(&feeder);
        let done = Arc::clone(&done);
        let lasts = lasts.clone();
        std::thread::spawn(move || {
            for i in 0..TRANSACTIONS {
                let last = feeder.feed(i, 1 + (i as u64 % 3)).expect("feed");
                *lasts[i % lasts.len()].lock().unwrap() = last;
                if i % 2 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            feeder.tick().expect("tick");
            // Release: publishes the final `lasts`.
            done.store(true, Ordering::Release);
        })
    };

    // The admin client: restarts shapes round robin while the writer runs.
    let restarter = {
        let client = client.clone();
        let base = base.clone();
        let ids = ids.clone();
        let done = Arc::clone(&done);
        let totals = Arc::clone(&totals);
        tokio::spawn(async move {
            let mut i = 0;
            // Acquire: a stop flag (pairs with the writer's Release).
            while !done.load(Ordering::Acquire) {
                let url = format!(
                    "{base}/admin/shapes/{}/restart",
                    url_segment(&ids[i % ids.len()])
                );
                let resp = client.post(&url).send().await.expect("restart request");
                let status = resp.status();
                let body = resp.text().await.expect("a body");
                assert_eq!(status, reqwest::StatusCode::OK, "{url}: {body}");
                totals.restarts.fetch_add(1, Ordering::Relaxed);
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    let clients: Vec<_> = (0..ids.len() * CLIENTS_PER_SHAPE)
        .map(|c| {
            let s = c % ids.len();
            let task = tokio::spawn(tail(
                client.clone(),
                base.clone(),
                ids[s].clone(),
                Arc::clone(&done),
                Arc::clone(&lasts[s]),
                Arc::clone(&totals),
            ));
            (s, task)
        })
        .collect();

    let mut rebuilt = Vec::new();
    for (s, task) in clients {
        rebuilt.push((s, task.await.expect("client task")));
    }
    restarter.await.expect("restarter");
    tokio::task::spawn_blocking(move || writer.join().expect("writer"))
        .await
        .unwrap();

    let mut checked = 0;
    for (s, log) in &rebuilt {
        let record = feeder.record(&ids[*s]);
        assert!(!record.is_empty());
        assert_eq!(log.len(), record.len(), "shape {s}: gap or duplicate");
        for (got, want) in log.iter().zip(&record) {
            assert_eq!(got, want, "shape {s}");
        }
        checked += log.len();
    }
    metrics(&client, &base).await;
    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();

    let t = &totals;
    let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
    eprintln!(
        "live tail over HTTP: {} shapes, {} clients, {} transactions, {} restarts; \
         {} requests, {} entries delivered ({checked} checked against the writer's record); \
         {} long-polls: {} woken by a commit, {} timed out, {} ended by a terminate (during the wait or dead at its start); \
         slowest request {} ms (long-poll limit {} ms)",
        ids.len(),
        ids.len() * CLIENTS_PER_SHAPE,
        TRANSACTIONS,
        r(&t.restarts),
        r(&t.requests),
        r(&t.entries),
        r(&t.long_polls),
        r(&t.woken_by_commit),
        r(&t.timed_out),
        r(&t.terminated),
        r(&t.max_request_ms),
        LONG_POLL.as_millis(),
    );
    assert!(r(&t.restarts) > 0, "the storm restarted shapes");
    assert!(
        r(&t.long_polls_live_1) > 0,
        "live=1 long-polls as live=true does"
    );
    assert!(
        r(&t.woken_by_commit) > 0,
        "long-polls were woken by commits"
    );
}

/// Untrusted ids and offsets: 400 for empty, over-long or malformed input,
/// 404 for unknown shapes; never a 5xx.
/// `GET /metrics` serves the store's stats in the Prometheus text format,
/// and they show the storm's flushes and writers.
async fn metrics(client: &reqwest::Client, base: &str) {
    let resp = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.expect("body");
    assert!(
        text.contains("# TYPE shapebuf_flushes_total counter\n"),
        "{text}"
    );
    let value = |name: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("shapebuf_{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {text}"));
        line.rsplit(' ').next().unwrap().parse().expect("a number")
    };
    assert!(value("flushes_total") > 0.0, "{text}");
    assert!(value("shapes") > 0.0, "{text}");
    assert_eq!(value("flush_errors_total"), 0.0, "{text}");
}

async fn bad_requests(client: &reqwest::Client, base: &str) {
    let long = url_segment(&vec![b'x'; MAX_URL_ID + 1]);
    let cases = [
        ("GET", format!("{base}/shapes/"), 400),
        ("GET", format!("{base}/shapes/{long}"), 400),
        ("GET", format!("{base}/shapes/orders?offset=7"), 400),
        ("GET", format!("{base}/shapes/orders?offset=-1/0"), 400),
        ("GET", format!("{base}/shapes/orders?offset=1/2/3"), 400),
        ("GET", format!("{base}/shapes/orders?live=yes"), 400),
        ("GET", format!("{base}/shapes/orders?live=2"), 400),
        ("GET", format!("{base}/shapes/no%20such%20shape"), 404),
        (
            "POST",
            format!("{base}/admin/shapes/no%20such%20shape/restart"),
            404,
        ),
        ("POST", format!("{base}/admin/shapes/{long}/restart"), 400),
    ];
    for (method, url, want) in cases {
        let req = match method {
            "GET" => client.get(&url),
            _ => client.post(&url),
        };
        let resp = req.send().await.expect("request");
        assert_eq!(resp.status().as_u16(), want, "{method} {url}");
    }
    // A hostile id that is valid: decoded exactly, found, read.
    let url = format!(
        "{base}/shapes/{}?offset=0/0",
        url_segment(b"\xff\xfe\x00raw bytes")
    );
    let resp = client.get(&url).send().await.expect("request");
    assert_eq!(resp.status(), reqwest::StatusCode::OK, "{url}");
}

/// Issue 22 item 9: Ctrl-C (here, the same `App::shut_down` the example's
/// main calls when it sees one) ends a long-poll at once with a control
/// line, instead of graceful shutdown waiting out the long-poll limit. The
/// limit here is longer than the client's timeout, so a long-poll that
/// was not ended fails the request instead of answering `timed-out`.
#[test]
fn a_shutdown_ends_long_polls_at_once_with_a_control_line() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let ids = vec![Bytes::from_static(b"quiet")];
        let feeder = Feeder::new(store.clone(), ids).unwrap();
        let app = App::new(
            store.clone(),
            Arc::clone(&feeder),
            ServerConfig {
                long_poll: REQUEST_TIMEOUT * 3,
                max_entries: 64,
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let on_stop = app.clone();
        let server = tokio::spawn(http_server::serve(listener, app, async move {
            let _ = stop_rx.await;
            on_stop.shut_down();
        }));
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .unwrap();
        // Nothing is committed: the request long-polls.
        let url = format!("{base}/shapes/quiet?offset=0/0&live=1");
        let request = tokio::spawn(async move {
            let resp = client
                .get(&url)
                .send()
                .await
                .expect("the long-poll answers");
            (resp.status(), resp.text().await.expect("a body"))
        });
        // Shut down once the request waits on the shape (bounded by a
        // count of checks, not by time).
        let handle = store.handle("quiet").unwrap();
        let mut checks = 0;
        while handle.waiting() == 0 {
            checks += 1;
            assert!(checks < 100_000, "the request never long-polled");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let _ = stop_tx.send(());
        let (status, body) = request.await.unwrap();
        assert_eq!(status, reqwest::StatusCode::OK, "{body}");
        let page = parse_page(&body);
        assert!(page.entries.is_empty(), "{body}");
        assert_eq!(page.next, LogOffset::ZERO, "{body}");
        assert_eq!(page.wait.as_deref(), Some("shutdown"), "{body}");
        server.await.unwrap().unwrap();
    });
}
