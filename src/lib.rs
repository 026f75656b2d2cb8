//! A persistent, thread-safe FIFO queue for high-throughput pipelines.
//!
//! Up to `cache_size` items live in memory, decoded, at the head of the queue. The overflow
//! spills to disk: a background thread appends it, as checksummed MessagePack records, to
//! segment files that are reserved with `fallocate` and memory-mapped for reading. The read
//! cursor is checkpointed, so a queue reopened after a crash resumes where it stopped, and
//! [`sync`](Queue::sync) makes everything durable. Segments whose items are all consumed are
//! deleted: no manual flush, no unbounded growth.
//!
//! # Quickstart
//!
//! ```
//! use spillq::Queue;
//!
//! let dir = tempfile::tempdir()?;
//! let queue = Queue::builder(dir.path()).cache_size(2).open()?;
//! for word in ["a", "b", "c", "d"] {
//!     queue.put(word.to_string())?; // "c" and "d" spill to disk
//! }
//! assert_eq!(queue.get()?, "a");
//! queue.sync()?; // "b", "c" and "d" are on stable storage
//! drop(queue);
//!
//! let queue = Queue::<String>::open(dir.path())?;
//! assert_eq!(queue.len(), 3);
//! assert_eq!(queue.get()?, "b");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Producers and consumers on many threads share one queue through clones of the handle.
//! [`peek`](Queue::peek) then [`delete`](Queue::delete) is the "delete only after the work
//! succeeded" loop; [`get_ack`](Queue::get_ack) does the same for many consumers, with an item
//! out with one consumer at a time until it is acknowledged.
//!
//! # Async
//!
//! Under the default feature `async`, every call that may wait has an awaitable form that
//! parks the task instead of the thread, on any executor (tokio, smol, `futures::executor`):
//! [`put_async`](Queue::put_async), [`get_async`](Queue::get_async),
//! [`peek_async`](Queue::peek_async), [`get_ack_async`](Queue::get_ack_async),
//! [`get_batch_async`](Queue::get_batch_async) and [`sync_async`](Queue::sync_async), with
//! [`stream`](Queue::stream) (a [`GetStream`], ending when the queue is closed) and
//! [`sink`](Queue::sink) (a [`PutSink`]). Blocking and async callers mix freely on one queue.
//!
//! ```
//! # #[cfg(feature = "async")]
//! # futures::executor::block_on(async {
//! use futures::StreamExt;
//!
//! let dir = tempfile::tempdir()?;
//! let queue = spillq::Queue::builder(dir.path()).cache_size(2).open()?;
//! for n in 0..4u32 {
//!     queue.put_async(n).await?; // 2 and 3 spill to disk
//! }
//! assert_eq!(queue.get_async().await?, 0);
//! queue.sync_async().await?; // 1, 2 and 3 are on stable storage
//! // A stream of items as they come (it ends when the queue is closed).
//! let rest: Vec<u32> = queue.stream().take(3).map(Result::unwrap).collect().await;
//! assert_eq!(rest, [1, 2, 3]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! Cancel safety: dropping a `get_async`, `get_ack_async` or `get_batch_async` future that
//! has not completed loses no item (an item is removed only in the poll that returns it). A
//! `put_async` future dropped while it waits for room leaves its item out of the queue; under
//! `EveryPut`, dropped while it waits for its fsync, its item is in the queue and durable once
//! that fsync is done. `docs/async.md` has more, and `examples/async_pipeline.rs` a whole
//! pipeline on tokio.
//!
//! # Bounds
//!
//! Unbounded by default. [`Builder::max_len`] caps the items, [`Builder::max_disk_bytes`] the
//! bytes of the queue's files; at either, `put` waits for consumers, `try_put` and
//! `put_timeout` fail with [`Error::Full`] and give the item back. Nothing is ever dropped to
//! make room. A full disk is an error, never a trap: a queue on a full disk opens and drains,
//! and puts work again once there is space.
//!
//! # Durability
//!
//! | event | what survives |
//! |---|---|
//! | the process is killed (`kill -9`, abort) | everything written to the mapped segments, synced or not, and everything covered by the last `sync()` |
//! | power loss, kernel crash | everything covered by the last completed `sync()`, by the `Interval` window, or, with `EveryPut`, every `put` that returned |
//!
//! Items come back in the order they were put, across memory and disk. An item whose removal
//! the last checkpoint covers is never delivered again; one removed after it may be (at least
//! once). Items out with an unacknowledged [`Delivery`] are delivered again after a crash.
//!
//! ## Choosing a mode
//!
//! - [`Durability::OnSync`] (the default): the fastest. Items in memory reach disk when they
//!   overflow the cache, or at `sync()` / `close()`. Call `sync()` where your pipeline has a
//!   natural commit point.
//! - [`Durability::Interval`]: as `OnSync`, and a power cut loses at most the last interval.
//! - [`Durability::EveryPut`]: `put` returns once its item is fsynced. Concurrent producers
//!   share fsyncs (group commit) and `put_all` costs one, so throughput grows with producers
//!   and batch size.
//!
//! # Errors and bad input
//!
//! Every failure is an [`Error`] that says what and where. Damaged records are skipped and
//! counted in [`Stats::skipped`]; a record that does not decode as `T` is moved aside (see
//! [`Queue::get`]); after a failed fsync the queue refuses writes until reopened
//! ([`Error::Poisoned`]). Nothing on disk makes spillq panic.
//!
//! The on-disk format and the recovery algorithm are specified in `docs/format.md`.
//!
//! # Further reading
//!
//! In the repository's `docs/`: `durability.md` (what each mode keeps, and how),
//! `tuning.md` (`cache_size`, segment size, `max_len`, `max_disk_bytes`), `reliability.md`
//! (the crash, power-loss, corruption and fuzz runs), `benchmarks.md` (figures beside the
//! other queues), `architecture.md`, `async.md`, `scale-out.md` (the `spillq-nats` crate,
//! forwarding to NATS JetStream) and `python.md` (the Python package).

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, unreachable_pub, clippy::undocumented_unsafe_blocks)]

// Layers, each importing only those below it (checked by `tests/layers.rs`):
// facade: queue, builder, delivery, inspect, futures; engine; spill; log; leaves: config, codec,
// error, sys, wake.
mod builder;
mod codec;
mod config;
mod delivery;
mod engine;
mod error;
#[cfg(test)]
mod faults;
#[cfg(feature = "async")]
mod futures;
pub mod inspect;
mod log;
mod queue;
mod spill;
mod sys;
mod wake;

pub use builder::Builder;
pub use codec::{Codec, MsgPack};
pub use config::Durability;
pub use delivery::Delivery;
pub use engine::Stats;
pub use error::{CodecError, Error, PutTimeoutError, TryPutError};
#[cfg(feature = "async")]
pub use futures::{GetStream, PutSink};
pub use log::CheckpointState;
pub use queue::{Iter, Queue};

/// Internals for the fuzz targets and micro-benchmarks. Not part of the API: no stability
/// promise, hidden from the docs.
#[doc(hidden)]
pub mod __fuzz {
    use crate::log::record;

    /// Frames `payload` as the record with sequence number `sequence`, padding included.
    pub fn encode_record(sequence: u64, payload: &[u8]) -> Vec<u8> {
        let mut bytes = record::encode_header(sequence, payload).to_vec();
        bytes.extend_from_slice(payload);
        bytes.resize(record::record_size(payload.len()).unwrap_or(bytes.len()), 0);
        bytes
    }

    /// Parses the record at `offset` of `bytes`: its sequence number, payload length and size.
    pub fn parse_record(bytes: &[u8], offset: usize) -> Option<(u64, usize, usize)> {
        match record::parse_at(bytes, offset) {
            record::Parsed::Record {
                sequence,
                payload,
                size,
            } => Some((sequence, payload.len(), size)),
            _ => None,
        }
    }
}
