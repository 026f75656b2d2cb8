//! The spill layer: the spill buffer producers frame records into, the memory ring, the state
//! of durability (group commit, `sync`), and the spill thread that writes, syncs, checkpoints,
//! deletes consumed segments and reserves the next one.
//!
//! [`Spill`] is this layer's part of the queue's state, kept under the queue's lock. The spill
//! thread reaches that lock, and the few things only the engine knows (the read cursor, the items
//! held only in memory), through the [`Host`] trait, which the engine implements: nothing here
//! imports the engine.

pub(crate) mod buffer;
pub(crate) mod lane;
pub(crate) mod ring;
mod thread;

use crate::config::Durability;
use crate::error::Error;
use crate::log::Progress;
use buffer::{AppendError, SpillBuffer, Want};
use std::ops::DerefMut;
use std::path::PathBuf;
use std::time::Instant;
pub(crate) use thread::SpillThread;

/// Where reading stands, as the next checkpoint should record it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ReadCursor {
    /// Every log record before this one was removed, except those in `unacked`.
    pub(crate) sequence: u64,
    /// Records out with a consumer, unacknowledged, or given back and waiting, ascending.
    pub(crate) unacked: Vec<u64>,
}

/// A failure that ends writing until the queue is reopened.
#[derive(Debug, Clone)]
pub(crate) struct Failure(String);

impl Failure {
    pub(crate) fn to_error(&self) -> Error {
        Error::Poisoned {
            cause: self.0.clone(),
        }
    }
}

/// Why a segment could not be made (no space, a file size limit, a quota): kept to refuse the
/// puts that needed it.
#[derive(Debug, Clone)]
struct SpaceError {
    /// Not an error of the file system: the disk cap leaves no room (`Error::Full`).
    at_cap: bool,
    path: PathBuf,
    code: Option<i32>,
    kind: std::io::ErrorKind,
    message: String,
}

impl SpaceError {
    fn new(error: &Error) -> Self {
        match error {
            Error::Io { path, source } => Self {
                at_cap: false,
                path: path.clone(),
                code: source.raw_os_error(),
                kind: source.kind(),
                message: source.to_string(),
            },
            other => Self {
                at_cap: false,
                path: PathBuf::new(),
                code: None,
                kind: std::io::ErrorKind::Other,
                message: other.to_string(),
            },
        }
    }

    /// The disk cap leaves no room: `Error::Full` to whoever asked.
    fn at_cap() -> Self {
        Self {
            at_cap: true,
            path: PathBuf::new(),
            code: None,
            kind: std::io::ErrorKind::StorageFull,
            message: String::new(),
        }
    }

    fn to_error(&self) -> Error {
        if self.at_cap {
            return Error::Full;
        }
        let source = match self.code {
            Some(code) => std::io::Error::from_raw_os_error(code),
            None => std::io::Error::new(self.kind, self.message.clone()),
        };
        Error::io(self.path.clone(), source)
    }
}

/// Things that happened in a spill round, for the engine to wake whoever waits for them.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Events {
    /// Records became durable, a sync finished, or writing failed.
    pub(crate) progress: bool,
    /// A segment was made (or could not be), or space was freed.
    pub(crate) space: bool,
}

/// The spill layer's part of the queue's state. See the module docs.
#[derive(Debug)]
pub(crate) struct Spill {
    pub(crate) buffer: SpillBuffer,
    /// What readers may read from the segment files.
    pub(crate) progress: Progress,
    /// Records before this one are fsynced.
    durable_end: u64,
    /// Producers under `EveryPut` wait for records before this one to be fsynced.
    durable_wanted: u64,
    /// The records each `EveryPut` producer waits for (the end of its put), ascending: those
    /// not yet fsynced.
    durable_ends: std::collections::VecDeque<u64>,
    syncs_requested: u64,
    syncs_done: u64,
    /// The segments producers wait for.
    segment_wanted: Option<Want>,
    /// Attempts to make a segment that have ended, and the last failed one.
    segment_attempts: u64,
    segment_error: Option<(u64, SpaceError)>,
    failure: Option<Failure>,
    stopping: bool,
    stopped: bool,
    /// Removals since the spill thread last looked at the read cursor.
    removals: u64,
    /// The read cursor may have left a segment behind: a checkpoint would let it be deleted.
    checkpoint_wanted: bool,
    /// Whether the spill thread sleeps, waiting for work: it must then be woken.
    idle: bool,
    /// The spill thread sleeps with a deadline to write the records in the tail (see
    /// `SpillThread::run`): records framed meanwhile need not wake it.
    pub(crate) tail_write_armed: bool,
    disk_bytes: u64,
    segments: usize,
    /// Bumped whenever files are deleted: a put waiting at the disk cap waits for this.
    space_freed: u64,
    /// The last segment asked for was refused at the disk cap.
    at_cap: bool,
    /// Every record on disk was removed while puts wait at the cap: the spill thread should
    /// see whether the segment being written can go (see `SpillThread::plan`).
    retire_wanted: bool,
}

impl Spill {
    pub(crate) fn new(buffer: SpillBuffer, progress: Progress, disk_bytes: u64) -> Self {
        let written = progress.end_sequence;
        Self {
            buffer,
            segments: progress.segments.len(),
            progress,
            durable_end: written,
            durable_wanted: written,
            durable_ends: std::collections::VecDeque::new(),
            syncs_requested: 0,
            syncs_done: 0,
            segment_wanted: None,
            segment_attempts: 0,
            segment_error: None,
            failure: None,
            stopping: false,
            stopped: false,
            removals: 0,
            checkpoint_wanted: false,
            idle: false,
            tail_write_armed: false,
            disk_bytes,
            space_freed: 0,
            at_cap: false,
            retire_wanted: false,
        }
    }

    /// Frames a record (see [`SpillBuffer::append`]); a full tail is sealed for the spill thread.
    pub(crate) fn append<E>(
        &mut self,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<u64, AppendError<E>> {
        let sequence = self.buffer.append(encode)?;
        if self.buffer.tail_is_full() {
            self.buffer.seal();
        }
        Ok(sequence)
    }

    /// Frames a batch straight into the tail if it fits in the head segment (see
    /// [`SpillBuffer::append_in_head`]).
    pub(crate) fn append_in_head<E>(
        &mut self,
        count: usize,
        encode: impl FnMut(usize, &mut Vec<u8>) -> Result<(), E>,
    ) -> Result<Option<std::ops::Range<u64>>, AppendError<E>> {
        let range = self.buffer.append_in_head(count, encode)?;
        if self.buffer.tail_is_full() {
            self.buffer.seal();
        }
        Ok(range)
    }

    /// Frames a batch (see [`SpillBuffer::append_all`]).
    pub(crate) fn append_all<E>(
        &mut self,
        payloads: &[u8],
        lens: &[usize],
    ) -> Result<std::ops::Range<u64>, AppendError<E>> {
        let range = self.buffer.append_all(payloads, lens)?;
        if self.buffer.tail_is_full() {
            self.buffer.seal();
        }
        Ok(range)
    }

    /// The sequence number the next record gets.
    pub(crate) fn next_sequence(&self) -> u64 {
        self.buffer.next_sequence()
    }

    /// Records before this one are in the segment files, readable by a `LogReader`.
    pub(crate) fn written(&self) -> u64 {
        self.progress.end_sequence
    }

    /// Asks the spill thread for the segments records wait for (see
    /// [`AppendError::NeedsSegments`]). Returns the attempt to wait for.
    pub(crate) fn want_segments(&mut self, want: Want) -> u64 {
        match &mut self.segment_wanted {
            Some(wanted) => wanted.merge(want),
            None => self.segment_wanted = Some(want),
        }
        self.segment_attempts + 1
    }

    /// Whether the attempt `attempt` (from [`want_segments`](Self::want_segments)) has ended: with
    /// the error that refuses the put, if it failed (`Error::Full`: at the disk cap).
    pub(crate) fn segment_outcome(&self, attempt: u64) -> Option<Result<(), Error>> {
        if self.segment_attempts < attempt {
            return None;
        }
        Some(match &self.segment_error {
            Some((failed, error)) if *failed >= attempt => Err(error.to_error()),
            _ => Ok(()),
        })
    }

    /// A producer under `EveryPut` waits for records before `end`.
    pub(crate) fn want_durable(&mut self, end: u64) {
        self.durable_wanted = self.durable_wanted.max(end);
        self.durable_ends.push_back(end);
    }

    /// Records before this one are fsynced.
    pub(crate) fn synced_sequence(&self) -> u64 {
        self.durable_end
    }

    /// Whether records before `end` are fsynced.
    pub(crate) fn is_durable(&self, end: u64) -> bool {
        self.durable_end >= end
    }

    /// Asks for a sync: everything sealed so far fsynced, and a durable checkpoint. Returns the
    /// request to wait for.
    pub(crate) fn request_sync(&mut self) -> u64 {
        self.buffer.seal();
        self.syncs_requested += 1;
        self.syncs_requested
    }

    pub(crate) fn is_synced(&self, request: u64) -> bool {
        self.syncs_done >= request
    }

    /// The failure that ended writing, if any.
    pub(crate) fn failure(&self) -> Option<Error> {
        self.failure.as_ref().map(Failure::to_error)
    }

    /// Asks the spill thread to write everything, sync, checkpoint and stop.
    pub(crate) fn stop(&mut self) -> u64 {
        self.stopping = true;
        self.request_sync()
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Counts removals; returns whether the spill thread should be woken to look at the read
    /// cursor now.
    pub(crate) fn removed(&mut self, count: u64, every: u64) -> bool {
        let before = self.removals;
        self.removals += count;
        let wake = self.idle && before < every && self.removals >= every;
        if wake {
            self.idle = false;
        }
        wake
    }

    /// The read cursor may have left a segment behind; returns whether the spill thread should
    /// be woken to checkpoint (and delete it).
    pub(crate) fn cursor_left_segment(&mut self) -> bool {
        let wake = !self.checkpoint_wanted && self.idle;
        self.checkpoint_wanted = true;
        if wake {
            self.idle = false;
        }
        wake
    }

    /// Whether the spill thread sleeps and has work: the caller should wake it. Counts it as
    /// awake from here on, so that the calls after this one do not wake it again.
    pub(crate) fn take_wake(&mut self) -> bool {
        let wake = self.idle && self.has_work();
        if wake {
            self.idle = false;
        }
        wake
    }

    /// Whether the spill thread has something to do now (ticks and removals aside).
    fn has_work(&self) -> bool {
        self.buffer.sealed().next().is_some()
            || self.segment_wanted.is_some()
            || self.syncs_requested > self.syncs_done
            || self.durable_wanted > self.durable_end
            || self.retire_wanted
            || self.stopping
            // The first records framed while the thread sleeps without a deadline: it arms one.
            || (self.buffer.tail_has_records() && !self.tail_write_armed)
    }

    /// Puts wait at the disk cap and every record on disk was removed: asks the spill thread to
    /// retire the segment being written (the only way on at a cap of one segment). Returns
    /// whether it should be woken.
    pub(crate) fn emptied_at_cap(&mut self) -> bool {
        if !self.at_cap || self.retire_wanted {
            return false;
        }
        self.retire_wanted = true;
        let wake = self.idle;
        self.idle = false;
        wake
    }

    /// How many times files were deleted (see `space_freed`).
    pub(crate) fn space_freed(&self) -> u64 {
        self.space_freed
    }

    /// Bytes of the queue's files.
    pub(crate) fn disk_bytes(&self) -> u64 {
        self.disk_bytes
    }

    /// Segment files.
    pub(crate) fn segments(&self) -> usize {
        self.segments
    }
}

/// What the spill thread needs from the engine: its lock, its condition to sleep on, and what
/// only the engine knows. Implemented by the engine's shared state.
pub(crate) trait Host: Send + Sync + 'static {
    /// The locked queue state, seen as its spill part.
    type Guard<'a>: DerefMut<Target = Spill>
    where
        Self: 'a;

    fn lock(&self) -> Self::Guard<'_>;

    /// Sleeps until the engine wakes the spill thread, or until `deadline`.
    fn sleep<'a>(&'a self, guard: Self::Guard<'a>, deadline: Option<Instant>) -> Self::Guard<'a>;

    /// Writes the items held only in memory into the spill buffer (an `Interval` tick). On
    /// `Err` some could not be framed: they wait for these segments.
    fn write_memory(&self, guard: &mut Self::Guard<'_>) -> Result<(), Want>;

    /// The read cursor a checkpoint should record now.
    fn read_cursor(&self, guard: &Self::Guard<'_>) -> ReadCursor;

    /// Wakes whoever waits for `events`.
    fn notify(&self, guard: &mut Self::Guard<'_>, events: Events);
}

/// The spill thread's settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) durability: Durability,
    pub(crate) segment_size: u64,
    pub(crate) checkpoint_every_removals: u64,
    /// The cap on the bytes of the queue's files (`Builder::max_disk_bytes`).
    pub(crate) max_disk_bytes: Option<u64>,
}
