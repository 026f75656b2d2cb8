//! The calls that concern the whole queue: `sync`, `clear`, `close`, `len` and `stats`.

use super::{Engine, State};
use crate::error::Error;
use crate::log::CheckpointState;
use std::sync::MutexGuard;
use std::sync::atomic::Ordering;

/// Counts and sizes of a queue, from [`Queue::stats`](crate::Queue::stats).
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let queue = spillq::Queue::builder(dir.path()).cache_size(2).open()?;
/// queue.put_all(0..5)?;
/// let stats = queue.stats();
/// assert_eq!(stats.len, 5);
/// assert_eq!(stats.in_memory + stats.on_disk as usize, 5);
/// assert_eq!(stats.skipped, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Items in the queue (as [`Queue::len`](crate::Queue::len)).
    pub len: usize,
    /// Items held decoded in memory.
    pub in_memory: usize,
    /// Items only on disk.
    pub on_disk: u64,
    /// Items out with a [`Delivery`](crate::Delivery), not yet acknowledged (not counted in
    /// `len`).
    pub unacked: usize,
    /// Segment files.
    pub segments: usize,
    /// Bytes of the queue's files on disk: segments at their reserved size (the spare segment
    /// made ahead of need included) and the checkpoint.
    pub disk_bytes: u64,
    /// Records found damaged or missing and skipped since the queue was opened.
    pub skipped: u64,
    /// Records that did not decode as `T` and were moved to `undecodable/`.
    pub undecodable: u64,
    /// fsync/fdatasync calls made since the queue was opened.
    pub fsyncs: u64,
    /// Sequence number the next item written to disk gets.
    pub next_sequence: u64,
    /// Records with smaller sequence numbers were found on disk when the queue was opened, or
    /// have been fsynced since: what a power cut cannot take (with `EveryPut`, every put that
    /// returned; with `Interval`, what the last tick wrote).
    pub synced_sequence: u64,
    /// The read cursor: every record before it was removed.
    pub read_sequence: u64,
    /// What recovery found of the checkpoint when the queue was opened.
    pub checkpoint: CheckpointState,
}

impl<T: Send + 'static> Engine<T> {
    pub(crate) fn len(&self) -> usize {
        self.lock().len() + self.lane.len()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    pub(crate) fn stats(&self) -> Stats {
        let state = self.lock();
        let lane = self.lane.len();
        Stats {
            len: state.len() + lane,
            in_memory: state.ring.len() + lane,
            on_disk: state.disk_only(),
            unacked: state.deliveries_out,
            segments: state.spill.segments(),
            disk_bytes: state.spill.disk_bytes(),
            skipped: self.counters.skipped.load(Ordering::Relaxed),
            undecodable: state.undecodable,
            fsyncs: self.counters.fsyncs.load(Ordering::Relaxed),
            next_sequence: state.spill.next_sequence(),
            synced_sequence: state.spill.synced_sequence(),
            read_sequence: state.cursor(),
            checkpoint: self.checkpoint_state,
        }
    }

    /// Writes the items held only in memory, waiting for segments as they need them.
    fn write_all_memory<'a>(
        &'a self,
        mut state: MutexGuard<'a, State<T>>,
    ) -> (MutexGuard<'a, State<T>>, Result<(), Error>) {
        while let Err(want) = self.write_memory(&mut state, true) {
            let (guard, outcome) = self.wait_for_segment(state, want);
            state = guard;
            if outcome.is_err() {
                return (state, outcome);
            }
        }
        (state, Ok(()))
    }

    /// Waits for sync request `request`.
    fn wait_synced<'a>(
        &'a self,
        mut state: MutexGuard<'a, State<T>>,
        request: u64,
    ) -> (MutexGuard<'a, State<T>>, Result<(), Error>) {
        self.wake_spill(&mut state);
        loop {
            if state.spill.is_synced(request) {
                return (state, Ok(()));
            }
            if let Some(failure) = state.spill.failure() {
                return (state, Err(failure));
            }
            if state.spill.is_stopped() {
                return (state, Err(Error::Closed));
            }
            state.progress_waiting += 1;
            state = self.wait(&self.progress, state, None).0;
            state.progress_waiting -= 1;
        }
    }

    /// Returns once every item put before the call and not yet removed, and the read cursor,
    /// are on stable storage. An item held in memory that could not be encoded is reported.
    pub(crate) fn sync(&self) -> Result<(), Error> {
        let mut state = self.lock();
        if state.closed {
            return Err(Error::Closed);
        }
        self.leave_fast(&mut state);
        let (mut state, written) = self.write_all_memory(state);
        written?;
        let failures = std::mem::take(&mut state.codec_failures);
        let request = state.spill.request_sync();
        let (_state, synced) = self.wait_synced(state, request);
        synced?;
        match failures.into_iter().next() {
            Some(source) => Err(Error::Codec {
                sequence: None,
                moved_to: None,
                source,
            }),
            None => Ok(()),
        }
    }

    /// Removes every item, durably.
    pub(crate) fn clear(&self) -> Result<(), Error> {
        let mut state = self.lock();
        if state.closed {
            return Err(Error::Closed);
        }
        self.leave_fast(&mut state);
        state.ring.clear();
        state.loaded = state.spill.next_sequence();
        state.unacked.clear();
        state.returned.clear();
        state.deliveries_out = 0;
        state.epoch += 1;
        state.codec_failures.clear();
        self.wake_producers(&mut state);
        let request = state.spill.request_sync();
        let (mut state, synced) = self.wait_synced(state, request);
        self.enter_fast(&mut state);
        synced
    }

    /// Syncs, stops the spill thread and releases the directory. Blocked callers wake with
    /// `Closed`, and every later call gets it.
    pub(crate) fn close(&self) -> Result<(), Error> {
        let mut state = self.lock();
        if state.closed {
            return Err(Error::Closed);
        }
        self.leave_fast(&mut state);
        let (mut state, written) = self.write_all_memory(state);
        state.closed = true;
        let failures = std::mem::take(&mut state.codec_failures);
        let request = state.spill.stop();
        self.wake_consumers(&mut state, usize::MAX);
        self.wake_producers(&mut state);
        let (mut state, synced) = self.wait_synced(state, request);
        while !state.spill.is_stopped() {
            state.progress_waiting += 1;
            state = self.wait(&self.progress, state, None).0;
            state.progress_waiting -= 1;
        }
        // Release memory: what was in it is on disk now (or reported).
        state.ring.clear();
        self.wake_progress(&mut state);
        drop(state);
        if let Some(thread) = self
            .spill_thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = thread.join();
        }
        written?;
        synced?;
        match failures.into_iter().next() {
            Some(source) => Err(Error::Codec {
                sequence: None,
                moved_to: None,
                source,
            }),
            None => Ok(()),
        }
    }
}
