//! The options of a queue, with their defaults, and [`Durability`]: read by every layer.

use std::time::Duration;

/// Items kept in memory by default.
pub(crate) const DEFAULT_CACHE_SIZE: usize = 4096;
/// Segment file size by default: 64 MiB.
pub(crate) const DEFAULT_SEGMENT_SIZE_BYTES: u64 = 64 << 20;
/// The smallest segment accepted: a header and a few small records.
pub(crate) const MIN_SEGMENT_SIZE_BYTES: u64 = 256;
/// Removals between two checkpoints of the read cursor by default.
pub(crate) const DEFAULT_CHECKPOINT_EVERY_REMOVALS: u64 = 10_000;

/// When items reach stable storage. See the table in the crate docs.
///
/// # Examples
///
/// ```
/// use spillq::{Durability, Queue};
/// use std::time::Duration;
///
/// let dir = tempfile::tempdir()?;
/// let queue = Queue::<u64>::builder(dir.path())
///     .durability(Durability::Interval(Duration::from_millis(100)))
///     .open()?;
/// queue.put(7)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// Items in memory reach disk when they overflow the cache, or at `sync()` / `close()`.
    /// The fastest; what the Python queues spillq replaces do.
    #[default]
    OnSync,
    /// As `OnSync`, and the spill thread also writes and fsyncs whatever is new at least this
    /// often: a power cut loses at most this window.
    Interval(Duration),
    /// `put` returns once its item is fsynced. Concurrent producers share one fsync (group
    /// commit); `put_all` costs one fsync per batch.
    EveryPut,
}

/// The options of a queue, read by the queue and its spill thread.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) cache_size: usize,
    pub(crate) segment_size_bytes: u64,
    pub(crate) max_len: Option<usize>,
    pub(crate) durability: Durability,
    pub(crate) checkpoint_every_removals: u64,
    pub(crate) max_disk_bytes: Option<u64>,
}
