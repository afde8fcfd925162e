//! The seam's two traits: a file system and a file opened through it.

use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A file opened through an [`Fs`]. All I/O is positional, so one handle is
/// shared by the writer and any number of readers.
///
/// # Errors
///
/// Every method returns the operation's OS error. The store wraps it in
/// [`Error::Io`](crate::Error::Io) with the operation and the path; a
/// failed write, sync or truncation makes the shape's writer unusable
/// until a new writer recovers the shape.
pub trait FsFile: Send + Sync + Debug {
    /// Reads up to `buf.len()` bytes at `pos`; returns how many were read
    /// (0 at end of file).
    ///
    /// # Errors
    ///
    /// The OS error (see the trait's docs).
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `pos`.
    ///
    /// # Errors
    ///
    /// The OS error (see the trait's docs).
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()>;
    /// Makes the written data durable (`fdatasync`).
    ///
    /// # Errors
    ///
    /// The OS error (see the trait's docs).
    fn sync_data(&self) -> io::Result<()>;
    /// Truncates or extends the file to `len` bytes.
    ///
    /// # Errors
    ///
    /// The OS error (see the trait's docs).
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// The file's current length.
    ///
    /// # Errors
    ///
    /// The OS error (see the trait's docs).
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    ///
    /// # Errors
    ///
    /// As [`FsFile::len`].
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// A file system: the operations the log needs, nothing more.
///
/// # Errors
///
/// Every method returns the operation's OS error, which the store wraps in
/// [`Error::Io`](crate::Error::Io) with the operation and the path.
pub trait Fs: Send + Sync + Debug {
    /// Creates `dir` and its parents if missing.
    ///
    /// # Errors
    ///
    /// The OS error (see the trait's docs).
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Creates a new file for reading and writing; fails if it exists.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::AlreadyExists`] if the file exists; else the OS error.
    fn create(&self, path: &Path) -> io::Result<Arc<dyn FsFile>>;
    /// Opens an existing file for reading and writing.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::NotFound`] if there is no such file; else the OS error.
    fn open(&self, path: &Path) -> io::Result<Arc<dyn FsFile>>;
    /// The paths of the entries of `dir`.
    ///
    /// # Errors
    ///
    /// The OS error (see the trait's docs).
    fn read_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// Calls `each` with the name of every entry of `dir`. The default
    /// lists through [`Fs::read_dir`]; implementations may stream (a store
    /// of a million shapes lists a million names when it opens).
    ///
    /// # Errors
    ///
    /// The OS error (see the trait's docs).
    fn list(&self, dir: &Path, each: &mut dyn FnMut(&std::ffi::OsStr)) -> io::Result<()> {
        for p in self.read_dir(dir)? {
            if let Some(name) = p.file_name() {
                each(name);
            }
        }
        Ok(())
    }
    /// Removes a file.
    ///
    /// # Errors
    ///
    /// The OS error (see the trait's docs).
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Atomically renames `from` to `to`, replacing `to`.
    ///
    /// # Errors
    ///
    /// The OS error (see the trait's docs).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the directory's entries durable (fsync on the directory).
    ///
    /// # Errors
    ///
    /// The OS error (see the trait's docs).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;

    /// Takes an exclusive lock on `path` (creating the file if needed) that
    /// is held until the returned guard is dropped, or fails with
    /// [`io::ErrorKind::WouldBlock`] while another holder, in this process
    /// or another, has it. [`Store`](crate::Store) locks `<dir>/LOCK` so
    /// that two stores (two processes, or a restarted process whose
    /// predecessor has not exited yet) never write one directory's logs at
    /// once. The default takes no lock: an implementation that cannot lock
    /// leaves that protection to its caller.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::WouldBlock`] while another holder has the lock; else the OS error.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn Debug + Send + Sync>> {
        let _ = path;
        Ok(Box::new(()))
    }
}
