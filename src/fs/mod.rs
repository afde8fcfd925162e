//! The file-system seam: every file operation of the log goes through the
//! [`Fs`] and [`FsFile`] traits.
//!
//! Production uses [`RealFs`], a thin layer over `std::fs` with positional
//! I/O. Tests substitute an implementation that fails chosen operations or
//! simulates power loss, and the log cannot tell the difference: there is no
//! other path to the disk.
//!
//! # Durability contract
//!
//! - Data written to a file is durable after [`FsFile::sync_data`] returns Ok.
//! - A created, renamed or removed directory entry is durable after
//!   [`Fs::sync_dir`] on its parent returns Ok.

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A file opened through an [`Fs`]. All I/O is positional, so one handle is
/// shared by the writer and any number of readers.
pub trait FsFile: Send + Sync + Debug {
    /// Reads up to `buf.len()` bytes at `pos`; returns how many were read
    /// (0 at end of file).
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `pos`.
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()>;
    /// Makes the written data durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// Truncates or extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// The file's current length.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// A file system: the operations the log needs, nothing more.
pub trait Fs: Send + Sync + Debug {
    /// Creates `dir` and its parents if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Creates a new file for reading and writing; fails if it exists.
    fn create(&self, path: &Path) -> io::Result<Arc<dyn FsFile>>;
    /// Opens an existing file for reading and writing.
    fn open(&self, path: &Path) -> io::Result<Arc<dyn FsFile>>;
    /// The paths of the entries of `dir`.
    fn read_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// Calls `each` with the name of every entry of `dir`. The default
    /// lists through [`Fs::read_dir`]; implementations may stream (a store
    /// of a million shapes lists a million names when it opens).
    fn list(&self, dir: &Path, each: &mut dyn FnMut(&std::ffi::OsStr)) -> io::Result<()> {
        for p in self.read_dir(dir)? {
            if let Some(name) = p.file_name() {
                each(name);
            }
        }
        Ok(())
    }
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Atomically renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the directory's entries durable (fsync on the directory).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;

    /// Takes an exclusive lock on `path` (creating the file if needed) that
    /// is held until the returned guard is dropped, or fails with
    /// [`io::ErrorKind::WouldBlock`] while another holder, in this process
    /// or another, has it. [`Store`](crate::Store) locks `<dir>/LOCK` so
    /// that two stores (two processes, or a restarted process whose
    /// predecessor has not exited yet) never write one directory's logs at
    /// once. The default takes no lock: an implementation that cannot lock
    /// leaves that protection to its caller.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn Debug + Send + Sync>> {
        let _ = path;
        Ok(Box::new(()))
    }
}

/// The real file system.
///
/// ```
/// use shapebuf::fs::{Fs, RealFs};
/// let dir = tempfile::tempdir().unwrap();
/// let f = RealFs.create(&dir.path().join("a")).unwrap();
/// f.write_all_at(b"hi", 0).unwrap();
/// f.sync_data().unwrap();
/// RealFs.sync_dir(dir.path()).unwrap();
/// let mut buf = [0u8; 2];
/// assert_eq!(f.read_at(&mut buf, 0).unwrap(), 2);
/// assert_eq!(&buf, b"hi");
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct RealFs;

#[derive(Debug)]
struct RealFile(File);

impl FsFile for RealFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        loop {
            match self.0.read_at(buf, pos) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.0.write_all_at(buf, pos)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

impl Fs for RealFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }
    fn create(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        Ok(Arc::new(RealFile(f)))
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        let f = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Arc::new(RealFile(f)))
    }
    fn read_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.path()))
            .collect()
    }
    fn list(&self, dir: &Path, each: &mut dyn FnMut(&std::ffi::OsStr)) -> io::Result<()> {
        for e in std::fs::read_dir(dir)? {
            each(&e?.file_name());
        }
        Ok(())
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
    /// An advisory `flock` on the file (`File::try_lock`), released when the
    /// guard, which owns the open file, is dropped or the process dies.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn Debug + Send + Sync>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match f.try_lock() {
            Ok(()) => Ok(Box::new(f)),
            Err(std::fs::TryLockError::WouldBlock) => Err(io::ErrorKind::WouldBlock.into()),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

mod sim;
pub use sim::{Op, Refused, SimFs};
