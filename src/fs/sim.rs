//! A simulated file system for fault injection and power-loss testing.
//!
//! [`SimFs`] keeps every file in memory with two images: what the page cache
//! holds (what reads see) and what is durable (what survives a power cut).
//! Directory entries have the same two states. It implements [`Fs`], so the
//! store runs on it unchanged; the seam is the only way the log touches a
//! disk.
//!
//! - [`SimFs::fail_at`] makes the `n`th operation of a kind fail with an I/O
//!   error (that operation has no effect).
//! - [`SimFs::refused`] tells which operation the fault or power cut hit
//!   first (for a write, with its length), so a test can tell which
//!   failures a caller is meant to see.
//! - [`SimFs::cut_power_at`] makes the `n`th operation (of any kind) and
//!   every later one fail, as if the machine lost power just before it;
//!   [`SimFs::after_power_loss`] then builds the file system a reboot would
//!   find: unsynced writes are lost, or kept up to a torn byte position;
//!   unsynced directory changes (create, rename, remove) are undone.
//!
//! # Model
//!
//! - `write_all_at` changes the cache image only; `sync_data` copies the
//!   cache image to the durable one.
//! - `create`, `rename`, `remove_file` change the cache directory only;
//!   `sync_dir` makes the directory durable. A file whose creation was never
//!   made durable does not exist after a power cut, even if its data was
//!   synced.
//! - On a power cut with a torn position `t`, a file's durable image is
//!   extended by the first `t` bytes of its unsynced tail (as if the page
//!   cache had written some of it back), but never past the cache image.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::seam::{Fs, FsFile};

/// An operation kind of the file-system seam.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// `Fs::create_dir_all`
    CreateDir,
    /// `Fs::create`
    Create,
    /// `Fs::open`
    Open,
    /// `Fs::read_dir`
    ReadDir,
    /// `Fs::remove_file`
    Remove,
    /// `Fs::rename`
    Rename,
    /// `Fs::sync_dir`
    SyncDir,
    /// `FsFile::read_at`
    Read,
    /// `FsFile::write_all_at`
    Write,
    /// `FsFile::sync_data`
    Sync,
    /// `FsFile::set_len`
    SetLen,
    /// `FsFile::len`
    Len,
}

impl Op {
    /// Every operation kind.
    pub const ALL: [Op; 12] = [
        Op::CreateDir,
        Op::Create,
        Op::Open,
        Op::ReadDir,
        Op::Remove,
        Op::Rename,
        Op::SyncDir,
        Op::Read,
        Op::Write,
        Op::Sync,
        Op::SetLen,
        Op::Len,
    ];

    /// Whether the operation changes what is on disk (the ones a power cut
    /// can interrupt meaningfully).
    pub fn mutates(self) -> bool {
        matches!(
            self,
            Op::CreateDir
                | Op::Create
                | Op::Remove
                | Op::Rename
                | Op::SyncDir
                | Op::Write
                | Op::Sync
                | Op::SetLen
        )
    }
}

#[derive(Clone, Debug, Default)]
struct Inode {
    cache: Vec<u8>,
    durable: Vec<u8>,
}

/// The first operation an armed fault ([`SimFs::fail_at`]) or power cut
/// ([`SimFs::cut_power_at`]) refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    /// Its kind.
    pub op: Op,
    /// Its number among the operations of its kind (0-based, counted from
    /// the file system's creation).
    pub n: u64,
    /// For a write, the bytes it would have written; 0 for other kinds.
    pub len: usize,
}

/// A closure run just before a chosen operation.
struct Hook(Box<dyn FnOnce() + Send>);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

#[derive(Debug, Default)]
struct State {
    inodes: Vec<Inode>,
    /// What reads see: path -> inode.
    names: BTreeMap<PathBuf, usize>,
    /// What survives a power cut: path -> inode.
    durable_names: BTreeMap<PathBuf, usize>,
    /// Operations started so far, all kinds.
    ops: u64,
    /// Operations started so far, per kind.
    per_kind: BTreeMap<Op, u64>,
    fail: Option<(Op, u64)>,
    hook: Option<(Op, u64, Hook)>,
    power_cut_at: Option<u64>,
    powered_off: bool,
    /// File handles alive now (what a real file system counts as open
    /// descriptors), and the most ever alive at once.
    handles: usize,
    peak_handles: usize,
    refused: Option<Refused>,
    /// Paths locked by [`Fs::lock`] (not file-system operations: never
    /// counted, failed or cut; a power loss releases them all).
    locked: std::collections::BTreeSet<PathBuf>,
}

/// An in-memory file system with a page-cache model, fault injection and
/// simulated power loss. Clones share the same state.
///
/// ```
/// use std::path::Path;
/// use shapebuf::fs::{Fs, SimFs};
/// let fs = SimFs::new();
/// let d = Path::new("/d");
/// fs.create_dir_all(d).unwrap();
/// let f = fs.create(&d.join("a")).unwrap();
/// f.write_all_at(b"hello", 0).unwrap();
/// f.sync_data().unwrap();
/// // The directory entry was never synced: after a power cut the file is gone.
/// let rebooted = fs.after_power_loss(0);
/// assert!(rebooted.open(&d.join("a")).is_err());
/// ```
#[derive(Clone, Debug, Default)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected failure: {what}"))
}

fn not_found(p: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", p.display()),
    )
}

impl SimFs {
    /// An empty file system.
    pub fn new() -> Self {
        SimFs::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes the `n`th (0-based, counted from now on) operation of kind `op`
    /// fail with an I/O error and no effect.
    pub fn fail_at(&self, op: Op, n: u64) {
        let mut s = self.lock();
        let seen = s.per_kind.get(&op).copied().unwrap_or(0);
        s.fail = Some((op, seen + n));
    }

    /// Runs `f` just before the `n`th (0-based, counted from now on)
    /// operation of kind `op` takes effect, on the thread that makes it and
    /// with no lock held, so `f` may use this file system (and the store on
    /// it). Forces an interleaving deterministically: e.g. collect a file
    /// between a reader resolving it and reading it.
    pub fn before_op(&self, op: Op, n: u64, f: impl FnOnce() + Send + 'static) {
        let mut s = self.lock();
        let seen = s.per_kind.get(&op).copied().unwrap_or(0);
        s.hook = Some((op, seen + n, Hook(Box::new(f))));
    }

    /// Cuts the power just before the `n`th (0-based, counted from now on)
    /// operation: it and every later one fail.
    pub fn cut_power_at(&self, n: u64) {
        let mut s = self.lock();
        s.power_cut_at = Some(s.ops + n);
    }

    /// Whether the power has been cut.
    pub fn is_powered_off(&self) -> bool {
        self.lock().powered_off
    }

    /// The first operation a fault or the power cut refused, if any.
    pub fn refused(&self) -> Option<Refused> {
        self.lock().refused
    }

    /// Operations started so far (all kinds).
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// Operations of kind `op` started so far.
    pub fn ops_of(&self, op: Op) -> u64 {
        self.lock().per_kind.get(&op).copied().unwrap_or(0)
    }

    /// File handles ([`Fs::create`], [`Fs::open`]) alive now: what a real
    /// file system would count as open descriptors.
    pub fn open_handles(&self) -> usize {
        self.lock().handles
    }

    /// The most file handles alive at once since the file system was made
    /// or [`SimFs::reset_peak_open_handles`] last ran.
    pub fn peak_open_handles(&self) -> usize {
        self.lock().peak_handles
    }

    /// Restarts [`SimFs::peak_open_handles`] from the handles alive now.
    pub fn reset_peak_open_handles(&self) {
        let mut s = self.lock();
        s.peak_handles = s.handles;
    }

    /// A handle on inode `ino`, counted until it drops.
    fn handle(&self, mut s: MutexGuard<'_, State>, ino: usize) -> Arc<dyn FsFile> {
        s.handles += 1;
        s.peak_handles = s.peak_handles.max(s.handles);
        drop(s);
        Arc::new(SimFile {
            fs: self.clone(),
            ino,
        })
    }

    /// The file system a reboot finds after a power cut now: only durable
    /// directory entries, each file's durable image extended by at most
    /// `torn` bytes of its unsynced tail. The result is a separate file
    /// system with no faults armed.
    pub fn after_power_loss(&self, torn: usize) -> SimFs {
        let s = self.lock();
        let mut inodes = Vec::with_capacity(s.inodes.len());
        for ino in &s.inodes {
            let mut img = ino.durable.clone();
            // Torn write-back: cache bytes from the first difference on, up
            // to `torn` of them, reach the disk (as pages written back before
            // the cut); the rest of the durable image is unchanged.
            let common = img
                .iter()
                .zip(&ino.cache)
                .take_while(|(a, b)| a == b)
                .count();
            let upto = (common + torn).min(ino.cache.len());
            if upto > common {
                if img.len() < upto {
                    img.resize(upto, 0);
                }
                img[common..upto].copy_from_slice(&ino.cache[common..upto]);
            }
            inodes.push(Inode {
                cache: img.clone(),
                durable: img,
            });
        }
        SimFs {
            state: Arc::new(Mutex::new(State {
                inodes,
                names: s.durable_names.clone(),
                durable_names: s.durable_names.clone(),
                ..State::default()
            })),
        }
    }

    /// Counts an operation, runs a hook armed for it, and decides whether
    /// it fails.
    fn begin(&self, op: Op) -> io::Result<MutexGuard<'_, State>> {
        self.begin_sized(op, 0)
    }

    /// [`SimFs::begin`] for an operation of `len` bytes (a write).
    fn begin_sized(&self, op: Op, len: usize) -> io::Result<MutexGuard<'_, State>> {
        let mut s = self.lock();
        let due = s.per_kind.get(&op).copied().unwrap_or(0);
        if s.hook
            .as_ref()
            .is_some_and(|(o, n, _)| *o == op && *n == due)
        {
            if let Some((_, _, Hook(f))) = s.hook.take() {
                drop(s);
                f();
                s = self.lock();
            }
        }
        let n = s.ops;
        s.ops += 1;
        let k = s.per_kind.entry(op).or_insert(0);
        let kn = *k;
        *k += 1;
        if s.power_cut_at.is_some_and(|at| n >= at) {
            s.powered_off = true;
        }
        let refused = Some(Refused { op, n: kn, len });
        if s.powered_off {
            s.refused = s.refused.or(refused);
            return Err(injected("power is off"));
        }
        if s.fail == Some((op, kn)) {
            s.fail = None;
            s.refused = s.refused.or(refused);
            return Err(injected(&format!("{op:?} #{kn}")));
        }
        Ok(s)
    }

    fn inode_of(s: &State, path: &Path) -> io::Result<usize> {
        s.names.get(path).copied().ok_or_else(|| not_found(path))
    }
}

#[derive(Debug)]
struct SimFile {
    fs: SimFs,
    ino: usize,
}

impl Drop for SimFile {
    fn drop(&mut self) {
        self.fs.lock().handles -= 1;
    }
}

impl FsFile for SimFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        let s = self.fs.begin(Op::Read)?;
        let data = &s.inodes[self.ino].cache;
        let pos = usize::try_from(pos).unwrap_or(usize::MAX);
        if pos >= data.len() {
            return Ok(0);
        }
        let n = buf.len().min(data.len() - pos);
        buf[..n].copy_from_slice(&data[pos..pos + n]);
        Ok(n)
    }

    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        let mut s = self.fs.begin_sized(Op::Write, buf.len())?;
        let data = &mut s.inodes[self.ino].cache;
        let pos = usize::try_from(pos).map_err(|_| io::Error::other("position too large"))?;
        if data.len() < pos + buf.len() {
            data.resize(pos + buf.len(), 0);
        }
        data[pos..pos + buf.len()].copy_from_slice(buf);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut s = self.fs.begin(Op::Sync)?;
        let ino = &mut s.inodes[self.ino];
        ino.durable = ino.cache.clone();
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut s = self.fs.begin(Op::SetLen)?;
        let len = usize::try_from(len).map_err(|_| io::Error::other("length too large"))?;
        s.inodes[self.ino].cache.resize(len, 0);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        let s = self.fs.begin(Op::Len)?;
        Ok(s.inodes[self.ino].cache.len() as u64)
    }
}

/// A held [`Fs::lock`] of a [`SimFs`]; dropping it releases the path.
#[derive(Debug)]
struct SimLock {
    state: Arc<Mutex<State>>,
    path: PathBuf,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.locked.remove(&self.path);
    }
}

impl Fs for SimFs {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        // Directories are implicit in paths; nothing to make durable.
        self.begin(Op::CreateDir).map(drop)
    }

    fn create(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        let mut s = self.begin(Op::Create)?;
        if s.names.contains_key(path) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists", path.display()),
            ));
        }
        s.inodes.push(Inode::default());
        let ino = s.inodes.len() - 1;
        s.names.insert(path.to_path_buf(), ino);
        Ok(self.handle(s, ino))
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        let s = self.begin(Op::Open)?;
        let ino = Self::inode_of(&s, path)?;
        Ok(self.handle(s, ino))
    }

    fn read_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let s = self.begin(Op::ReadDir)?;
        Ok(s.names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .cloned()
            .collect())
    }

    fn list(&self, dir: &Path, each: &mut dyn FnMut(&std::ffi::OsStr)) -> io::Result<()> {
        let names: Vec<PathBuf> = self.read_dir(dir)?;
        for p in &names {
            if let Some(n) = p.file_name() {
                each(n);
            }
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.begin(Op::Remove)?;
        s.names
            .remove(path)
            .map(drop)
            .ok_or_else(|| not_found(path))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.begin(Op::Rename)?;
        let ino = s.names.remove(from).ok_or_else(|| not_found(from))?;
        s.names.insert(to.to_path_buf(), ino);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.begin(Op::SyncDir)?;
        let State {
            names,
            durable_names,
            ..
        } = &mut *s;
        durable_names.retain(|p, _| p.parent() != Some(dir));
        for (p, ino) in names.iter() {
            if p.parent() == Some(dir) {
                durable_names.insert(p.clone(), *ino);
            }
        }
        Ok(())
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn std::fmt::Debug + Send + Sync>> {
        if !self.lock().locked.insert(path.to_path_buf()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(Box::new(SimLock {
            state: Arc::clone(&self.state),
            path: path.to_path_buf(),
        }))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn unsynced_writes_are_lost_or_torn() {
        let fs = SimFs::new();
        let d = Path::new("/d");
        let f = fs.create(&d.join("f")).expect("create");
        fs.sync_dir(d).expect("sync dir");
        f.write_all_at(b"abc", 0).expect("write");
        f.sync_data().expect("sync");
        f.write_all_at(b"defg", 3).expect("write");
        let lost = fs.after_power_loss(0);
        let g = lost.open(&d.join("f")).expect("durable entry");
        assert_eq!(g.len().expect("len"), 3);
        let torn = fs.after_power_loss(2);
        let g = torn.open(&d.join("f")).expect("durable entry");
        let mut buf = [0u8; 8];
        let n = g.read_at(&mut buf, 0).expect("read");
        assert_eq!(&buf[..n], b"abcde");
    }

    #[test]
    fn faults_fire_once_and_power_cuts_stick() {
        let fs = SimFs::new();
        let f = fs.create(Path::new("/f")).expect("create");
        fs.fail_at(Op::Sync, 1);
        f.sync_data().expect("first sync succeeds");
        assert!(f.sync_data().is_err(), "second sync fails");
        f.sync_data().expect("third sync succeeds");
        fs.cut_power_at(1);
        f.write_all_at(b"x", 0).expect("one more op");
        assert!(f.write_all_at(b"yz", 0).is_err());
        assert!(f.sync_data().is_err());
        assert!(fs.is_powered_off());
        assert_eq!(
            fs.refused(),
            Some(Refused {
                op: Op::Sync,
                n: 1,
                len: 0
            }),
            "the first refusal was the injected sync failure"
        );
    }

    #[test]
    fn unsynced_removal_comes_back() {
        let fs = SimFs::new();
        let d = Path::new("/d");
        let f = fs.create(&d.join("f")).expect("create");
        f.write_all_at(b"keep", 0).expect("write");
        f.sync_data().expect("sync");
        fs.sync_dir(d).expect("sync dir");
        fs.remove_file(&d.join("f")).expect("remove");
        let back = fs.after_power_loss(0);
        assert!(back.open(&d.join("f")).is_ok());
    }
}
