//! Model test of the flush tracker: random interleavings of fragment
//! deliveries, commits, flushes (including flushes inside an open
//! transaction), terminates, crashes and re-registrations, checked step by
//! step against a straightforward model.
//!
//! - Safety: the global durable offset never exceeds the last commit that
//!   every live shape has made durable (everything it received up to it).
//! - Precision: it equals that commit (nothing is held back needlessly).
//! - Monotonicity: subscribers see strictly increasing advances, the last
//!   of which is the global offset.
//! - Liveness: once every writer has flushed or gone, it is the last commit.
//!
//! Plus a threaded run: writers report from their own threads while the
//! host commits, and every advance is checked against what the writers had
//! published as durable before reporting it.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use shapebuf::{FlushEvent, FlushTracker, LogOffset, TrackedShape};

const SHAPES: usize = 4;

#[derive(Clone, Debug)]
enum Op {
    /// A fragment gives `n` entries of the open transaction to a shape.
    Deliver { shape: usize, n: u64 },
    /// The open transaction has `n` entries for no tracked shape.
    Untracked { n: u64 },
    /// The open transaction commits.
    Commit,
    /// A shape reports one of the offsets it received as durable.
    Flush { shape: usize, pick: usize },
    /// A shape flushes everything it received, then terminates.
    Terminate { shape: usize },
    /// A shape's writer dies.
    Crash { shape: usize },
    /// A new writer registers for a shape.
    Register { shape: usize },
}

fn op() -> impl Strategy<Value = Op> {
    let s = 0..SHAPES;
    prop_oneof![
        4 => (s.clone(), 1..4u64).prop_map(|(shape, n)| Op::Deliver { shape, n }),
        1 => (1..3u64).prop_map(|n| Op::Untracked { n }),
        3 => Just(Op::Commit),
        4 => (s.clone(), any::<usize>()).prop_map(|(shape, pick)| Op::Flush { shape, pick }),
        1 => s.clone().prop_map(|shape| Op::Terminate { shape }),
        1 => s.clone().prop_map(|shape| Op::Crash { shape }),
        2 => s.prop_map(|shape| Op::Register { shape }),
    ]
}

/// One registration of a shape, as the model sees it.
struct Incarnation {
    handle: TrackedShape,
    /// Every offset it received, with the end of its transaction once that
    /// committed.
    received: Vec<(LogOffset, Option<LogOffset>)>,
    durable: LogOffset,
}

impl Incarnation {
    /// The last committed offset it received and has not made durable.
    fn pending_through(&self) -> Option<LogOffset> {
        self.received
            .iter()
            .filter(|(o, end)| end.is_some() && *o > self.durable)
            .map(|(o, _)| *o)
            .max()
    }
}

fn id(shape: usize) -> String {
    format!("shape-{shape}")
}

/// The highest commit (or ZERO) such that every live shape has durable
/// everything it received of every transaction up to it.
fn oracle(commits: &[LogOffset], live: &[Option<Incarnation>]) -> LogOffset {
    let blocked = live
        .iter()
        .flatten()
        .flat_map(|inc| {
            inc.received
                .iter()
                .filter(|(o, _)| *o > inc.durable)
                .filter_map(|(_, end)| *end)
        })
        .min();
    commits
        .iter()
        .copied()
        .filter(|c| blocked.is_none_or(|b| *c < b))
        .max()
        .unwrap_or(LogOffset::ZERO)
}

fn run(ops: Vec<Op>, crash_at_end: bool) -> Result<(), TestCaseError> {
    let t = FlushTracker::new();
    let events = t.subscribe();
    let mut live: Vec<Option<Incarnation>> = (0..SHAPES).map(|_| None).collect();
    let mut commits: Vec<LogOffset> = Vec::new();
    let mut tx_no = 1u64;
    let mut next_op = 0u64;
    let mut tx = t.transaction();
    let mut last_event = LogOffset::ZERO;
    let mut last_global = LogOffset::ZERO;

    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Deliver { shape, n } => {
                let last = LogOffset::new(tx_no, next_op + n - 1);
                let bound = tx.received(id(shape), last);
                prop_assert_eq!(bound, live[shape].is_some());
                if let Some(inc) = &mut live[shape] {
                    for op in next_op..next_op + n {
                        inc.received.push((LogOffset::new(tx_no, op), None));
                    }
                }
                next_op += n;
            }
            Op::Untracked { n } => {
                prop_assert!(!tx.received("untracked", LogOffset::new(tx_no, next_op)));
                next_op += n;
            }
            Op::Commit => {
                next_op = next_op.max(1);
                let end = LogOffset::new(tx_no, next_op - 1);
                let done = std::mem::replace(&mut tx, t.transaction());
                done.commit(end).expect("commits are in order");
                for inc in live.iter_mut().flatten() {
                    for (o, e) in &mut inc.received {
                        if o.tx == tx_no {
                            *e = Some(end);
                        }
                    }
                }
                commits.push(end);
                tx_no += 1;
                next_op = 0;
            }
            Op::Flush { shape, pick } => {
                if let Some(inc) = &mut live[shape] {
                    if !inc.received.is_empty() {
                        let o = inc.received[pick % inc.received.len()].0;
                        inc.handle.flushed(o);
                        inc.durable = inc.durable.max(o);
                        prop_assert_eq!(inc.handle.durable(), inc.durable);
                    }
                }
            }
            Op::Terminate { shape } => {
                if let Some(inc) = live[shape].take() {
                    if let Some((o, _)) = inc.received.last() {
                        inc.handle.flushed(*o);
                    }
                    prop_assert_eq!(inc.handle.remove(), None, "flushed: no loss");
                }
            }
            Op::Crash { shape } => {
                if let Some(inc) = live[shape].take() {
                    let expected = inc.pending_through();
                    let loss = inc.handle.crashed(inc.durable);
                    let loss = loss.expect("a crash is always reported");
                    prop_assert_eq!(loss.after, inc.durable);
                    prop_assert_eq!(loss.received_through, expected);
                    let want_id = id(shape);
                    prop_assert_eq!(&loss.shape[..], want_id.as_bytes());
                }
            }
            Op::Register { shape } => {
                if live[shape].is_none() {
                    live[shape] = Some(Incarnation {
                        handle: t.register(id(shape)),
                        received: Vec::new(),
                        durable: LogOffset::ZERO,
                    });
                }
            }
        }
        let want = oracle(&commits, &live);
        let global = t.global();
        prop_assert!(
            global <= want,
            "step {}: unsafe: {} > {}",
            step,
            global,
            want
        );
        prop_assert_eq!(global, want, "step {}: held back", step);
        prop_assert!(global >= last_global, "step {}: went back", step);
        last_global = global;
        for e in events.try_iter() {
            if let FlushEvent::Advanced(o) = e {
                prop_assert!(
                    o > last_event,
                    "step {}: advance {} after {}",
                    step,
                    o,
                    last_event
                );
                last_event = o;
            }
        }
        prop_assert_eq!(last_event, global);
        for (s, inc) in live.iter().enumerate() {
            if let Some(inc) = inc {
                prop_assert_eq!(
                    inc.handle.is_pending(),
                    inc.pending_through().is_some(),
                    "shape {}",
                    s
                );
            }
        }
        let pending = live
            .iter()
            .flatten()
            .filter(|i| i.pending_through().is_some())
            .count();
        prop_assert_eq!(t.pending_shapes(), pending);
    }

    // Liveness: the open transaction commits, then every writer flushes
    // everything and terminates, or dies.
    let end = LogOffset::new(tx_no, next_op);
    tx.commit(end).expect("in order");
    for inc in live.iter_mut().filter_map(Option::take) {
        if crash_at_end {
            inc.handle.crashed(inc.durable);
        } else {
            if let Some((o, _)) = inc.received.last() {
                inc.handle.flushed(*o);
            }
            prop_assert_eq!(inc.handle.remove(), None);
        }
    }
    prop_assert_eq!(t.global(), end);
    prop_assert_eq!(t.pending_shapes(), 0);
    prop_assert_eq!(t.shapes(), 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn model_safety_precision_liveness(ops in prop::collection::vec(op(), 1..80), crash_at_end: bool) {
        run(ops, crash_at_end)?;
    }
}

/// Writers report from their own threads while the host commits; every
/// advance is checked (in the subscriber callback) against what each writer
/// had published as durable before reporting it.
#[test]
fn threaded_advances_never_pass_what_writers_published() {
    const N: usize = 16;
    const TXS: u64 = if cfg!(miri) { 50 } else { 4_000 };
    let t = FlushTracker::new();
    let shapes: Vec<TrackedShape> = (0..N).map(|i| t.register(id(i))).collect();
    // Per shape: the transactions that touched it (host writes, before the
    // commit), the last delivered transaction (host), and the transaction
    // the writer has published as durable before reporting it.
    let touched: Arc<Mutex<Vec<BTreeMap<u64, ()>>>> =
        Arc::new(Mutex::new(vec![BTreeMap::new(); N]));
    let delivered: Arc<Vec<AtomicU64>> = Arc::new((0..N).map(|_| AtomicU64::new(0)).collect());
    let published: Arc<Vec<AtomicU64>> = Arc::new((0..N).map(|_| AtomicU64::new(0)).collect());
    let violations = Arc::new(AtomicUsize::new(0));
    let advances = Arc::new(AtomicUsize::new(0));
    {
        let (touched, published, violations, advances) = (
            touched.clone(),
            published.clone(),
            violations.clone(),
            advances.clone(),
        );
        t.on_event(move |e| {
            let FlushEvent::Advanced(g) = e else { return };
            advances.fetch_add(1, Ordering::Relaxed);
            let touched = touched.lock().unwrap();
            for (s, txs) in touched.iter().enumerate() {
                if let Some((&last, _)) = txs.range(..=g.tx).next_back() {
                    if published[s].load(Ordering::SeqCst) < last {
                        violations.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let shapes: Vec<(usize, TrackedShape)> = shapes
                .iter()
                .cloned()
                .enumerate()
                .filter(|(i, _)| i % 2 == w)
                .collect();
            let (delivered, published, done) = (delivered.clone(), published.clone(), done.clone());
            std::thread::spawn(move || loop {
                let finished = done.load(Ordering::SeqCst);
                for (i, s) in &shapes {
                    let d = delivered[*i].load(Ordering::SeqCst);
                    if d > published[*i].load(Ordering::SeqCst) {
                        published[*i].store(d, Ordering::SeqCst);
                        s.flushed(LogOffset::new(d, *i as u64));
                    }
                }
                if finished {
                    return;
                }
                std::thread::yield_now();
            })
        })
        .collect();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for tx_no in 1..=TXS {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let mut tx = t.transaction();
        for s in 0..N {
            if rng >> s & 1 == 1 && (rng >> (s + 20)) & 3 == 0 {
                touched.lock().unwrap()[s].insert(tx_no, ());
                delivered[s].store(tx_no, Ordering::SeqCst);
                assert!(tx.received(id(s), LogOffset::new(tx_no, s as u64)));
            }
        }
        tx.commit(LogOffset::new(tx_no, N as u64)).unwrap();
    }
    done.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(
        violations.load(Ordering::Relaxed),
        0,
        "advanced past non-durable data"
    );
    assert_eq!(t.global(), LogOffset::new(TXS, N as u64), "liveness");
    assert!(advances.load(Ordering::Relaxed) > 1);
}
