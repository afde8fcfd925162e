//! Recovery: rebuilding a shape's log state from its files alone.
//!
//! Recovery reads only the files it was handed and builds a fresh
//! [`ShapeLog`]; it never consults state shared with other threads.
//!
//! For each shape, files are taken in entry order and every record is
//! verified (length bound, checksum, increasing offsets, contiguous entry
//! numbers). Then:
//!
//! - a torn or corrupt tail of the **last** file is truncated at the last
//!   good record (with a warning);
//! - a last file whose header never became durable is removed;
//! - the uncommitted tail (entries after the last commit record) is
//!   truncated, so a transaction whose commit never reached the disk is
//!   discarded;
//! - damage anywhere else (a middle file) is an [`Error::Corrupt`]: those
//!   records were acknowledged and cannot be repaired by truncation.
//!
//! The sparse index is rebuilt during the scan.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tracing::{info, warn};

use super::file::{IndexPoint, LogFile, Next};
use super::record::{Header, Record};
use super::{Durable, LogConfig, ShapeLog};
use crate::fs::Fs;
use crate::{Error, LogOffset, Result};

/// Log files found in `dir`, grouped by stem and sorted by start entry.
/// Names that are not log files are ignored.
pub(crate) fn list_logs(fs: &dyn Fs, dir: &Path) -> Result<BTreeMap<String, Vec<(u64, PathBuf)>>> {
    let mut out: BTreeMap<String, Vec<(u64, PathBuf)>> = BTreeMap::new();
    for path in fs.read_dir(dir).map_err(Error::io("list", dir))? {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(rest) = name.strip_suffix(".log") else {
            continue;
        };
        let Some((stem, start)) = rest.rsplit_once('.') else {
            continue;
        };
        let Ok(start) = start.parse::<u64>() else {
            continue;
        };
        out.entry(stem.to_string()).or_default().push((start, path));
    }
    for files in out.values_mut() {
        files.sort();
    }
    Ok(out)
}

/// An opened file with its decoded header and the header's length.
type Opened = (Arc<dyn crate::fs::FsFile>, Header, u64);

/// What a file's first bytes hold.
enum HeaderRead {
    Ok(Opened),
    /// The file ends inside its header: it was created but its header never
    /// became durable, so it holds nothing that was acknowledged.
    Torn,
    /// A complete header that fails verification: damage, not a crash.
    Corrupt(&'static str),
}

fn read_header(fs: &dyn Fs, path: &Path) -> Result<HeaderRead> {
    let f = fs.open(path).map_err(Error::io("open", path))?;
    let mut buf = vec![0u8; 4096];
    let mut have = 0;
    loop {
        let n = f
            .read_at(&mut buf[have..], have as u64)
            .map_err(Error::io("read", path))?;
        have += n;
        match Header::decode(&buf[..have]) {
            Ok((h, len)) => return Ok(HeaderRead::Ok((f, h, len as u64))),
            Err(super::record::Bad::Short { need }) if n > 0 => {
                if need > buf.len() {
                    buf.resize(need, 0);
                }
            }
            Err(super::record::Bad::Short { .. }) => return Ok(HeaderRead::Torn),
            Err(super::record::Bad::Corrupt(why)) => return Ok(HeaderRead::Corrupt(why)),
        }
    }
}

/// Rebuilds the log of shape `stem` from `files` (sorted by start). Returns
/// `None` when no file holds even a valid header (the shape was never
/// durably created).
pub(crate) fn recover(
    fs: Arc<dyn Fs>,
    dir: &Path,
    stem: &str,
    files: &[(u64, PathBuf)],
    cfg: LogConfig,
) -> Result<Option<(ShapeLog, Durable)>> {
    let mut logs: Vec<Arc<LogFile>> = Vec::new();
    let mut id: Option<Bytes> = None;
    let mut d = Durable::default();
    let mut end = 0;
    let mut commit_at: Option<(usize, u64)> = None; // (file index, position after the commit record)
    let mut removed = false;

    for (k, (start, path)) in files.iter().enumerate() {
        let last_file = k + 1 == files.len();
        let (f, h, data_start) = match read_header(fs.as_ref(), path)? {
            HeaderRead::Ok(opened) => opened,
            HeaderRead::Torn if last_file => {
                warn!(path = %path.display(), "removing log file whose header never became durable");
                fs.remove_file(path).map_err(Error::io("remove", path))?;
                removed = true;
                continue;
            }
            HeaderRead::Torn => {
                return Err(Error::Corrupt {
                    path: path.clone(),
                    detail: "torn header in a file that is not the last".into(),
                })
            }
            HeaderRead::Corrupt(why) => {
                return Err(Error::Corrupt {
                    path: path.clone(),
                    detail: format!("header: {why}"),
                })
            }
        };
        if k == 0 && h.start > 0 {
            // Collection removed the files before this one; every entry in
            // them was committed (files roll only when all is committed).
            d = Durable {
                entries: h.start,
                last: h.base,
                committed: h.start,
                last_committed: h.base,
            };
        }
        if h.start != *start || h.start != d.entries || id.as_ref().is_some_and(|i| *i != h.id) {
            return Err(Error::Corrupt {
                path: path.clone(),
                detail: format!(
                    "file starts at entry {} (name says {start}) but the log so far holds {} entries, or belongs to another shape",
                    h.start, d.entries
                ),
            });
        }
        id.get_or_insert(h.id.clone());
        let lf = Arc::new(LogFile::new(h.start, h.base, path.clone(), f, data_start));
        if d.committed == d.entries {
            // Everything before this file is committed.
            commit_at = Some((logs.len(), data_start));
        }
        let mut cur = lf.cursor(data_start);
        let mut since = 0u64;
        let mut good = data_start;
        loop {
            match cur.next()? {
                Next::Record(rec, after) => {
                    match rec {
                        Record::Entry { offset, .. } => {
                            if offset <= d.last && d.entries > 0 || offset == LogOffset::ZERO {
                                return Err(Error::Corrupt {
                                    path: path.clone(),
                                    detail: format!("entry {offset} does not follow {}", d.last),
                                });
                            }
                            if since >= cfg.index_interval {
                                lf.push_index(IndexPoint {
                                    seq: d.entries,
                                    pos: good,
                                    prev: d.last,
                                });
                                since = 0;
                            }
                            since += after - good;
                            d.entries += 1;
                            d.last = offset;
                        }
                        Record::Commit { committed, last } => {
                            if committed > d.entries || committed < d.committed {
                                return Err(Error::Corrupt {
                                    path: path.clone(),
                                    detail: format!(
                                        "commit of {committed} entries with {} on disk",
                                        d.entries
                                    ),
                                });
                            }
                            d.committed = committed;
                            d.last_committed = last;
                            commit_at = Some((logs.len(), after));
                        }
                    }
                    good = after;
                }
                Next::End => break,
                Next::Bad(why) => {
                    if !last_file {
                        return Err(Error::Corrupt {
                            path: path.clone(),
                            detail: format!("{why} at byte {good} of a file that is not the last"),
                        });
                    }
                    warn!(path = %path.display(), at = good, why, "truncating torn log tail");
                    lf.file.set_len(good).map_err(Error::io("truncate", path))?;
                    lf.file.sync_data().map_err(Error::io("sync", path))?;
                    break;
                }
            }
        }
        end = good;
        logs.push(lf);
    }
    if removed {
        fs.sync_dir(dir).map_err(Error::io("sync directory", dir))?;
    }
    let Some(id) = id else {
        return Ok(None);
    };

    // Discard the uncommitted tail: truncate the file holding the last commit
    // point, remove any later files.
    if d.entries > d.committed {
        let (k, pos) = commit_at.unwrap_or((0, 0));
        let dropped = d.entries - d.committed;
        for lf in logs.drain(k + 1..) {
            fs.remove_file(&lf.path)
                .map_err(Error::io("remove", &lf.path))?;
        }
        let lf = &logs[k];
        lf.file
            .set_len(pos)
            .map_err(Error::io("truncate", &lf.path))?;
        lf.file.sync_data().map_err(Error::io("sync", &lf.path))?;
        fs.sync_dir(dir).map_err(Error::io("sync directory", dir))?;
        lf.truncate_index(pos);
        info!(
            stem,
            dropped, "discarded entries of transactions whose commit never became durable"
        );
        d.entries = d.committed;
        d.last = d.last_committed;
        end = pos;
    }
    let log = ShapeLog::from_parts(
        super::Where {
            fs,
            dir,
            stem: stem.to_string(),
            id,
            cfg,
        },
        logs,
        d,
        end,
    );
    Ok(Some((log, d)))
}
