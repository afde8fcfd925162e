//! The soak's shapes and their incarnations, in a few bytes per shape.
//!
//! The soak runs `--shapes` *lanes*. Lane `k` holds one shape at a time:
//! at first the shape with id number `k`, created in the setup phase with
//! one committed entry at [`SETUP`]. When a lane's shape is removed, the
//! lane moves on to its next *incarnation* (`gen + 1`): the same id created
//! again as a new, empty shape, or a new id number (ids past `--shapes`,
//! from a counter, so the id space grows slowly). Ids are computed from
//! their number on demand ([`shape_id`]), never stored.
//!
//! # Memory
//!
//! A lane is a mutex around 20 bytes: the id number, the incarnation, a
//! reader pin count, flags, and the model of what the incarnation
//! committed. The model is *implicit* (no allocation) while the lane was
//! never written during the run: "the setup entry" or "nothing". A lane
//! gets a real [`Model`] when a writer makes it hot (or removes and
//! recreates it), and keeps it, so the models allocated grow with the
//! lanes ever written, not with the lanes.
//!
//! # Which incarnation did a reader read?
//!
//! A reader *pins* the lane ([`Lanes::pin`]: it notes the incarnation and
//! how much of it was committed), reads, and unpins ([`Lanes::unpin`]). The
//! shapes its read could have seen are the incarnations the lane had
//! between the two, and only those: a removal marks the lane `removing`
//! before it calls the library and moves to the next incarnation only after
//! the library returned, and a new incarnation is `created` only once its
//! writer exists. When an incarnation is left while readers are pinned, its
//! final model is kept as a *ghost* until each of those readers has taken
//! it, so every answer is checked against exactly the incarnation it came
//! from (recognised by its entries' payloads, which embed the id number and
//! the incarnation), whatever happened during the read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use shapebuf::LogOffset;

use crate::model::{Model, ShapeModel};

/// Every shape's setup entry: one transaction (tx 1) that touched every
/// shape. Traffic transactions come after it.
pub const SETUP: LogOffset = LogOffset::new(1, 0);

/// The id of id number `n`. Shape ids are untrusted bytes: some carry `/`,
/// `..`, NUL and non-UTF-8.
pub fn shape_id(n: u32) -> Vec<u8> {
    let mut id = format!("tenant/../shape-{n}").into_bytes();
    if n.is_multiple_of(3) {
        id.extend_from_slice(&[0, 0xff]);
    }
    id
}

/// The payload seed of incarnation `gen` of a lane holding id number `id`.
pub fn seed(id: u32, gen: u32) -> u64 {
    (u64::from(id) << 32) | u64::from(gen)
}

/// What an incarnation committed.
#[derive(Clone)]
pub enum View {
    /// The setup entry only (implicit).
    Setup,
    /// Nothing (implicit).
    Empty,
    /// What its writers committed, as they commit it.
    Live(Arc<Model>),
}

impl View {
    /// How many entries are certainly committed by now.
    pub fn committed_len(&self) -> usize {
        match self {
            View::Setup => 1,
            View::Empty => 0,
            View::Live(m) => m.committed_len(),
        }
    }

    /// Runs `f` on the model as of now.
    pub fn with<R>(&self, f: impl FnOnce(&ShapeModel) -> R) -> R {
        match self {
            View::Setup => f(&ShapeModel::with_committed(vec![SETUP])),
            View::Empty => f(&ShapeModel::default()),
            View::Live(m) => f(&m.read()),
        }
    }
}

/// The implicit model is the setup entry (else: empty).
const SETUP_FLAG: u8 = 1;
/// A removal of the incarnation is under way (the library may or may not
/// have removed it yet).
const REMOVING: u8 = 2;
/// The incarnation's shape exists in the store (its writer was created).
const CREATED: u8 = 4;

struct State {
    model: Option<Arc<Model>>,
    id: u32,
    gen: u32,
    pins: u16,
    flags: u8,
}

impl State {
    fn view(&self) -> View {
        match &self.model {
            Some(m) => View::Live(Arc::clone(m)),
            None if self.flags & SETUP_FLAG != 0 => View::Setup,
            None => View::Empty,
        }
    }

    fn seen(&self) -> Seen {
        let view = self.view();
        Seen {
            id: self.id,
            gen: self.gen,
            created: self.flags & CREATED != 0,
            removing: self.flags & REMOVING != 0,
            lo: view.committed_len(),
            view,
        }
    }
}

/// An incarnation of a lane as someone saw it.
#[derive(Clone)]
pub struct Seen {
    pub id: u32,
    pub gen: u32,
    pub created: bool,
    pub removing: bool,
    /// Entries certainly committed when it was seen.
    pub lo: usize,
    pub view: View,
}

impl Seen {
    pub fn seed(&self) -> u64 {
        seed(self.id, self.gen)
    }

    /// The model, which a writer of the lane gets ([`Lanes::hot`]).
    pub fn live(&self) -> Arc<Model> {
        match &self.view {
            View::Live(m) => Arc::clone(m),
            _ => unreachable!("a writer's incarnation has a model"),
        }
    }
}

/// An incarnation that a pinned reader may still have read.
pub struct Ghost {
    pub gen: u32,
    pub id: u32,
    pub view: View,
}

struct Kept {
    id: u32,
    view: View,
    /// Pinned readers that have not taken it yet.
    waiting: u16,
}

/// See the module docs.
pub struct Lanes {
    lanes: Box<[Mutex<State>]>,
    ghosts: Mutex<HashMap<(u32, u32), Kept>>,
    next_id: AtomicU32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Lanes {
    /// `n` lanes, each holding its setup shape.
    pub fn new(n: u32) -> Self {
        Lanes {
            lanes: (0..n)
                .map(|id| {
                    Mutex::new(State {
                        model: None,
                        id,
                        gen: 0,
                        pins: 0,
                        flags: SETUP_FLAG | CREATED,
                    })
                })
                .collect(),
            ghosts: Mutex::default(),
            next_id: AtomicU32::new(n),
        }
    }

    pub fn len(&self) -> usize {
        self.lanes.len()
    }

    /// Id numbers handed out so far (`0..ids()`).
    pub fn ids(&self) -> u32 {
        self.next_id.load(Relaxed)
    }

    fn state(&self, lane: u32) -> MutexGuard<'_, State> {
        lock(&self.lanes[lane as usize])
    }

    /// The lane's incarnation now.
    pub fn peek(&self, lane: u32) -> Seen {
        self.state(lane).seen()
    }

    /// The lane's incarnation now, pinned: [`Lanes::unpin`] must follow.
    pub fn pin(&self, lane: u32) -> Seen {
        let mut s = self.state(lane);
        s.pins += 1;
        s.seen()
    }

    /// Unpins a lane pinned at incarnation `from`: its incarnation now, and
    /// the ones it went through since (`from..now`), oldest first.
    pub fn unpin(&self, lane: u32, from: u32) -> (Seen, Vec<Ghost>) {
        let now = {
            let mut s = self.state(lane);
            s.pins -= 1;
            s.seen()
        };
        let mut passed = Vec::new();
        if now.gen != from {
            let mut ghosts = lock(&self.ghosts);
            for gen in from..now.gen {
                let kept = ghosts
                    .get_mut(&(lane, gen))
                    .expect("a ghost is kept for every reader pinned when it was left");
                kept.waiting -= 1;
                passed.push(Ghost {
                    gen,
                    id: kept.id,
                    view: kept.view.clone(),
                });
                if kept.waiting == 0 {
                    ghosts.remove(&(lane, gen));
                }
            }
        }
        (now, passed)
    }

    /// The lane's incarnation for its writer: its model made real if it
    /// was implicit.
    pub fn hot(&self, lane: u32) -> Seen {
        let mut s = self.state(lane);
        if s.model.is_none() {
            let committed = if s.flags & SETUP_FLAG != 0 {
                vec![SETUP]
            } else {
                Vec::new()
            };
            s.model = Some(Arc::new(Model::with_committed(committed)));
        }
        s.seen()
    }

    /// The writer of incarnation `gen` exists: its shape is in the store.
    pub fn created(&self, lane: u32, gen: u32) {
        let mut s = self.state(lane);
        if s.gen == gen {
            s.flags |= CREATED;
        }
    }

    /// A removal of the lane's shape starts (call before the library's).
    pub fn begin_remove(&self, lane: u32) {
        self.state(lane).flags |= REMOVING;
    }

    /// The removal failed: the incarnation stays.
    pub fn cancel_remove(&self, lane: u32) {
        self.state(lane).flags &= !REMOVING;
    }

    /// The library removed the lane's shape: the lane moves to its next
    /// incarnation, empty and not created yet, with the same id, or with a
    /// new id number if `new_id`.
    pub fn finish_remove(&self, lane: u32, new_id: bool) -> Seen {
        let mut s = self.state(lane);
        if s.pins > 0 {
            lock(&self.ghosts).insert(
                (lane, s.gen),
                Kept {
                    id: s.id,
                    view: s.view(),
                    waiting: s.pins,
                },
            );
        }
        if new_id {
            s.id = self.next_id.fetch_add(1, Relaxed);
        }
        s.gen += 1;
        s.flags = 0;
        s.model = Some(Arc::new(Model::default()));
        s.seen()
    }

    /// Ghosts kept now (all taken once every reader is done: 0).
    pub fn ghosts(&self) -> usize {
        lock(&self.ghosts).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_reader_gets_every_incarnation_it_overlapped() {
        let lanes = Lanes::new(4);
        let a = lanes.pin(2);
        assert_eq!((a.id, a.gen, a.lo), (2, 0, 1));
        let b = lanes.pin(2);
        lanes.begin_remove(2);
        let same = lanes.finish_remove(2, false);
        assert_eq!((same.id, same.gen, same.created), (2, 1, false));
        lanes.created(2, 1);
        let (now, passed) = lanes.unpin(2, b.gen);
        assert_eq!((now.gen, now.created, passed.len()), (1, true, 1));
        let c = lanes.pin(2);
        lanes.begin_remove(2);
        let moved = lanes.finish_remove(2, true);
        assert_eq!((moved.id, moved.gen), (4, 2));
        let (now, passed) = lanes.unpin(2, a.gen);
        assert_eq!(now.gen, 2);
        let ids: Vec<_> = passed.iter().map(|g| (g.id, g.gen)).collect();
        assert_eq!(ids, [(2, 0), (2, 1)]);
        assert!(matches!(passed[0].view, View::Setup));
        let (_, passed) = lanes.unpin(2, c.gen);
        assert_eq!(passed.len(), 1);
        assert_eq!(lanes.ghosts(), 0, "every ghost taken");
        assert_ne!(seed(2, 0), seed(2, 1));
        assert_ne!(seed(2, 1), seed(4, 1));
    }
}
