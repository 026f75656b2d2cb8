//! [`Builder`]: every option of a queue, with its default.

use crate::codec::{Codec, MsgPack};
use crate::config::{
    Config, DEFAULT_CACHE_SIZE, DEFAULT_CHECKPOINT_EVERY_REMOVALS, DEFAULT_SEGMENT_SIZE_BYTES,
    Durability, MIN_SEGMENT_SIZE_BYTES,
};
use crate::log::{Real, SharedStorage};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::path::{Path, PathBuf};

/// Opens a queue with options other than the defaults. Made by [`Queue::builder`](crate::Queue::builder).
///
/// # Examples
///
/// ```
/// use spillq::{Durability, Queue};
///
/// let dir = tempfile::tempdir()?;
/// let queue = Queue::<String>::builder(dir.path())
///     .cache_size(100)
///     .segment_size(1 << 20)
///     .max_len(10_000)
///     .durability(Durability::EveryPut)
///     .open()?;
/// queue.put("durable once put returns".to_string())?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Builder<T> {
    dir: PathBuf,
    config: Config,
    codec: Box<dyn Codec<T>>,
    /// The file system calls go through this (a fault-injecting layer in tests).
    storage: SharedStorage,
}

impl<T> fmt::Debug for Builder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("dir", &self.dir)
            .field("cache_size", &self.config.cache_size)
            .field("segment_size", &self.config.segment_size_bytes)
            .field("max_len", &self.config.max_len)
            .field("durability", &self.config.durability)
            .finish_non_exhaustive()
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Builder<T> {
    pub(crate) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            config: Config {
                cache_size: DEFAULT_CACHE_SIZE,
                segment_size_bytes: DEFAULT_SEGMENT_SIZE_BYTES,
                max_len: None,
                durability: Durability::OnSync,
                checkpoint_every_removals: DEFAULT_CHECKPOINT_EVERY_REMOVALS,
                max_disk_bytes: None,
            },
            codec: Box::new(MsgPack),
            storage: Real::shared(),
        }
    }

    /// Items kept in memory, decoded, at the head of the queue (default 4096). `0` sends every
    /// item through disk.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::<u8>::builder(dir.path()).cache_size(0).open()?;
    /// queue.put(1)?;
    /// assert_eq!(queue.stats().on_disk, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cache_size(mut self, items: usize) -> Self {
        self.config.cache_size = items;
        self
    }

    /// Size of one segment file in bytes (default 64 MiB, at least 256). An item larger than a
    /// segment gets a segment of its own.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::<u8>::builder(dir.path()).segment_size(1 << 20).open()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.config.segment_size_bytes = bytes.max(MIN_SEGMENT_SIZE_BYTES).next_multiple_of(8);
        self
    }

    /// Bound on the items in the queue, memory and disk together (unbounded by default). At the
    /// bound `put` blocks and `try_put` gives the item back.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::<u8>::builder(dir.path()).max_len(1).open()?;
    /// queue.put(1)?;
    /// assert!(queue.try_put(2).unwrap_err().is_full());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_len(mut self, items: usize) -> Self {
        self.config.max_len = Some(items);
        self
    }

    /// A cap on the bytes of the queue's files on disk (unbounded by default): what
    /// [`Stats::disk_bytes`](crate::Stats::disk_bytes) reports, segments counted at their
    /// reserved size. At the cap a `put` that needs disk waits for consumers to free room (the
    /// segments they leave behind are deleted), `try_put` fails with `Full` and gives the item
    /// back, `put_timeout` fails with `Full` after its timeout: as at `max_len`. Nothing is
    /// dropped to make room. Items already accepted into memory that `sync`, `close` or an
    /// `Interval` tick must write may take up to one segment more; past that, `sync` fails
    /// with [`Error::Full`](crate::Error::Full) and they stay in memory. See `docs/tuning.md`.
    ///
    /// # Errors
    ///
    /// `open` fails with [`Error::InvalidOption`](crate::Error::InvalidOption) for a cap too
    /// small for one segment and the checkpoint and identity files.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::<u64>::builder(dir.path())
    ///     .cache_size(0)
    ///     .segment_size(64 << 10)
    ///     .max_disk_bytes(1 << 20)
    ///     .open()?;
    /// queue.put(1)?;
    /// assert!(queue.stats().disk_bytes <= 1 << 20);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_disk_bytes(mut self, bytes: u64) -> Self {
        self.config.max_disk_bytes = Some(bytes);
        self
    }

    /// When items reach stable storage (default [`Durability::OnSync`]).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// use spillq::Durability;
    /// let queue = spillq::Queue::<u8>::builder(dir.path()).durability(Durability::EveryPut).open()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn durability(mut self, durability: Durability) -> Self {
        self.config.durability = durability;
        self
    }

    /// How items become bytes (default [`MsgPack`]).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::<u8>::builder(dir.path()).codec(spillq::MsgPack).open()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn codec(mut self, codec: impl Codec<T>) -> Self {
        self.codec = Box::new(codec);
        self
    }

    /// Removals between two checkpoints of the read cursor (default 10,000; at least 1). Each
    /// such checkpoint is one 64-byte write, not fsynced; it bounds how many removed items a
    /// crash can deliver again. `sync`, `Interval` ticks and segment rolls checkpoint too.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::<u8>::builder(dir.path()).checkpoint_every_removals(100).open()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn checkpoint_every_removals(mut self, removals: u64) -> Self {
        self.config.checkpoint_every_removals = removals.max(1);
        self
    }

    /// Routes the queue's file system calls through `storage` (tests only).
    #[cfg(test)]
    pub(crate) fn storage(mut self, storage: SharedStorage) -> Self {
        self.storage = storage;
        self
    }

    /// The options, for [`open`](Self::open).
    pub(crate) fn into_parts(self) -> (PathBuf, Config, Box<dyn Codec<T>>, SharedStorage) {
        (self.dir, self.config, self.codec, self.storage)
    }
}
