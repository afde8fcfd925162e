//! What every log of a store shares: the directory, its catalog and grouped
//! directory syncs, the descriptor cache, and the layout settings.

use std::path::PathBuf;
use std::sync::Arc;

use super::catalog::{Catalog, Stem};
use super::descriptors::Descriptors;
use super::dir_sync::DirSync;
use crate::fs::Fs;
use crate::Result;

/// Log layout settings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LogConfig {
    /// Start a new file once the current one is at least this long.
    pub(crate) file_bytes: u64,
    /// One sparse index point per this many bytes of records.
    pub(crate) index_interval: u64,
}

/// What every log of a store shares: the directory, its catalog and its
/// grouped syncs, the descriptor cache, the layout settings.
#[derive(Debug)]
pub(crate) struct LogCtx {
    pub(crate) dir: PathBuf,
    pub(crate) cfg: LogConfig,
    pub(crate) descriptors: Descriptors,
    pub(crate) dir_sync: DirSync,
    pub(crate) catalog: Catalog,
}

impl LogCtx {
    pub(crate) fn new(
        dir: PathBuf,
        cfg: LogConfig,
        fs: Arc<dyn Fs>,
        max_open_files: usize,
    ) -> Self {
        LogCtx {
            dir_sync: DirSync::new(dir.clone()),
            dir,
            cfg,
            descriptors: Descriptors::new(fs, max_open_files),
            catalog: Catalog::new(),
        }
    }

    pub(crate) fn fs(&self) -> &dyn Fs {
        &**self.descriptors.fs()
    }

    /// The path of `stem`'s file starting at entry `start`.
    pub(crate) fn path(&self, stem: Stem, start: u64) -> PathBuf {
        self.dir.join(stem.file_name(start))
    }

    /// Syncs the directory (grouped with any sync under way).
    pub(crate) fn sync_dir(&self) -> Result<()> {
        self.dir_sync.sync(self.fs())
    }
}
