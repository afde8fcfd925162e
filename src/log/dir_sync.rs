//! Grouped directory syncs: a file's directory entry becomes durable with an
//! fsync of its directory, and one fsync covers every entry created before
//! it started. Creating many shapes therefore costs one directory sync per
//! group, not one per shape.
//!
//! # Protocol (group commit)
//!
//! Whoever creates a file takes a [`Ticket`] right after the create returns
//! ([`DirSync::created`]): the ticket's number is above every sync that had
//! started by then. [`DirSync::wait`] returns once a sync that started
//! after the ticket was taken has succeeded: the first waiter with no sync
//! running starts one covering every ticket taken so far; later waiters
//! whose ticket it covers wait for it instead of syncing again. A failed
//! sync fails every ticket it was to cover (the next sync retries for
//! later ones).
//!
//! The store's flusher writes and syncs every file of its batch of jobs
//! first and waits for the directory afterwards, so one sync covers the
//! batch.

use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use crate::fs::Fs;
use crate::{Error, Result};

/// A created directory entry that is not known durable yet (numbered from
/// 1: an `Option<Ticket>` is 8 bytes, and every open shape's log holds one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "the entry is durable only after DirSync::wait"]
pub(crate) struct Ticket(std::num::NonZeroU64);

#[derive(Debug, Default)]
struct State {
    /// Tickets taken so far (the last ticket's number).
    taken: u64,
    /// Every ticket up to this one is durable.
    durable: u64,
    /// A sync is running, covering tickets up to this one.
    running: Option<u64>,
    /// The last failed sync: tickets above `durable` up to this one failed.
    failed: Option<(u64, String)>,
}

/// Group commit of one directory's syncs.
#[derive(Debug)]
pub(crate) struct DirSync {
    dir: PathBuf,
    state: Mutex<State>,
    done: Condvar,
}

impl DirSync {
    pub(crate) fn new(dir: PathBuf) -> Self {
        DirSync {
            dir,
            state: Mutex::default(),
            done: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a ticket for an entry created (or removed) just now.
    pub(crate) fn created(&self) -> Ticket {
        let mut s = self.lock();
        s.taken += 1;
        Ticket(std::num::NonZeroU64::new(s.taken).expect("the first ticket is 1"))
    }

    /// Returns once `ticket`'s entry is durable (a sync that started after
    /// it was taken succeeded), syncing the directory through `fs` if no
    /// running sync covers it.
    pub(crate) fn wait(&self, fs: &dyn Fs, ticket: Ticket) -> Result<()> {
        let mut s = self.lock();
        loop {
            if s.durable >= ticket.0.get() {
                return Ok(());
            }
            if let Some((upto, why)) = &s.failed {
                if ticket.0.get() <= *upto {
                    return Err(Error::Io {
                        op: "sync directory",
                        path: self.dir.clone(),
                        source: std::io::Error::other(why.clone()),
                    });
                }
            }
            match s.running {
                Some(upto) if upto >= ticket.0.get() => {
                    s = self.done.wait(s).unwrap_or_else(PoisonError::into_inner);
                }
                Some(_) => {
                    // A sync that started before this ticket: it may not
                    // cover it. Wait for it, then sync again if needed.
                    s = self.done.wait(s).unwrap_or_else(PoisonError::into_inner);
                }
                None => {
                    let upto = s.taken;
                    s.running = Some(upto);
                    drop(s);
                    let res = fs.sync_dir(&self.dir);
                    s = self.lock();
                    s.running = None;
                    match &res {
                        Ok(()) => s.durable = s.durable.max(upto),
                        Err(e) => s.failed = Some((upto, e.to_string())),
                    }
                    drop(s);
                    self.done.notify_all();
                    return res.map_err(Error::io("sync directory", &self.dir));
                }
            }
        }
    }

    /// Syncs now (covering every ticket taken so far).
    pub(crate) fn sync(&self, fs: &dyn Fs) -> Result<()> {
        let t = self.created();
        self.wait(fs, t)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::fs::{Op, SimFs};

    #[test]
    fn one_sync_covers_every_ticket_taken_before_it() {
        let fs = SimFs::new();
        let d = Path::new("/d");
        let ds = DirSync::new(d.to_path_buf());
        let tickets: Vec<Ticket> = (0..5)
            .map(|i| {
                fs.create(&d.join(format!("f{i}"))).expect("create");
                ds.created()
            })
            .collect();
        let before = fs.ops_of(Op::SyncDir);
        for t in tickets {
            ds.wait(&fs, t).expect("durable");
        }
        assert_eq!(fs.ops_of(Op::SyncDir) - before, 1, "one sync for the group");
        let rebooted = fs.after_power_loss(0);
        for i in 0..5 {
            assert!(rebooted.open(&d.join(format!("f{i}"))).is_ok());
        }
        // A ticket taken after that sync needs a sync of its own.
        fs.create(&d.join("late")).expect("create");
        let t = ds.created();
        ds.wait(&fs, t).expect("durable");
        assert_eq!(fs.ops_of(Op::SyncDir) - before, 2);
    }

    #[test]
    fn a_failed_sync_fails_its_tickets_and_the_next_retries() {
        let fs = SimFs::new();
        let d = Path::new("/d");
        let ds = Arc::new(DirSync::new(d.to_path_buf()));
        fs.create(&d.join("a")).expect("create");
        let t = ds.created();
        fs.fail_at(Op::SyncDir, 0);
        assert!(ds.wait(&fs, t).is_err());
        assert!(ds.wait(&fs, t).is_err(), "a failed ticket stays failed");
        let t2 = ds.created();
        ds.wait(&fs, t2).expect("the retry covers later tickets");
        assert!(fs.after_power_loss(0).open(&d.join("a")).is_ok());
    }
}
