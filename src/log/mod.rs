//! The on-disk log: segment files of checksummed records, a checkpointed read cursor, and
//! recovery. The spill thread owns the writer ([`LogWriter`]); consumers read with a
//! [`LogReader`]; the inspector reads files directly through the same scanner.
//!
//! Sequence numbers are contiguous: record `n + 1` follows `n`. A gap a reader sees therefore
//! means records were lost (damage, or unsynced data after a power cut), and its size is
//! exactly how many; it is counted in [`Counters::skipped`].

pub(crate) mod checkpoint;
pub(crate) mod crash_hooks;
pub(crate) mod identity;
pub(crate) mod lock;
pub(crate) mod reader;
pub(crate) mod record;
pub(crate) mod recovery;
pub(crate) mod scan;
pub(crate) mod segment;
pub(crate) mod storage;
pub(crate) mod writer;

#[cfg(test)]
pub(crate) mod fault;
#[cfg(test)]
mod power_cut;
#[cfg(test)]
mod test_log;
#[cfg(test)]
mod tests;

use crate::error::Error;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) use lock::LOCK_FILE;
pub(crate) use reader::{LogReader, Progress};
pub use recovery::CheckpointState;
pub(crate) use storage::{Real, SharedStorage};
pub(crate) use writer::{Head, LogWriter};

/// Bytes of the files a queue has besides its segments: the checkpoint (both slots) and the
/// identity (32 hex digits and a newline). The least a disk cap must allow is one segment and
/// these.
pub(crate) const FIXED_FILE_BYTES: u64 = 2 * 4096 + 33;

/// Counts kept for [`stats`](crate::Queue::stats), shared by the writer and the readers.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Records found missing or damaged by readers.
    pub(crate) skipped: AtomicU64,
    /// fsync/fdatasync calls on data, checkpoint and directory.
    pub(crate) fsyncs: AtomicU64,
}

/// An fsync that takes this long is reported (`tracing` warning).
const SLOW_FSYNC: std::time::Duration = std::time::Duration::from_millis(100);

impl Counters {
    /// Runs one fsync of `path`: counts it, and reports it when it is slow or fails.
    pub(crate) fn fsync(
        &self,
        path: &Path,
        sync: impl FnOnce() -> std::io::Result<()>,
    ) -> Result<(), Error> {
        let started = std::time::Instant::now();
        let result = sync();
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        let took = started.elapsed();
        if took >= SLOW_FSYNC {
            tracing::warn!(path = %path.display(), ?took, "slow fsync");
        }
        result.map_err(|e| {
            tracing::error!(path = %path.display(), error = %e, "fsync failed");
            Error::io(path, e)
        })
    }
}
