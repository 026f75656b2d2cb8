//! The spill thread: the one owner of the log's writer. Producers hand it encoded records in
//! batches through a bounded channel (so a slow disk pushes back on them); it appends them in
//! sequence order, flushes, writes checkpoints, deletes consumed segments, and runs `Interval`
//! ticks. It holds only a `Weak` handle to the queue and exits when told to, or when every
//! sender is gone.
//!
//! Failures: a reservation that fails for lack of space (ENOSPC, EDQUOT, EFBIG) keeps the batch
//! pending and is retried on the next command, so the queue goes on once there is room (an
//! `EveryPut` producer told of the failure gets its item back, yet the pending record is still
//! written then: retrying it may store it twice). A failed
//! fsync poisons the queue: Linux may have dropped the dirty pages, so nothing written after it
//! can be trusted, and every write is refused until the queue is reopened.

use crate::builder::Durability;
use crate::cache::Shared;
use crate::error::Error;
use crate::log::Log;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// Encoded records with consecutive sequence numbers.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub(crate) first_sequence: u64,
    pub(crate) bytes: Vec<u8>,
    pub(crate) lens: Vec<usize>,
    /// Records already appended (after a failure part-way through).
    done: usize,
    done_bytes: usize,
    /// A producer waits until this batch is fsynced (`EveryPut`).
    pub(crate) durable: bool,
    /// The producer thread that waits for it (see [`producer_id`]), for group commit.
    pub(crate) producer: u64,
    /// The share of the in-flight budget this batch holds, given back when it is dropped
    /// (appended, or thrown away).
    reservation: Option<Reservation>,
}

impl Batch {
    pub(crate) fn new(first_sequence: u64) -> Self {
        Self {
            first_sequence,
            ..Self::default()
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Sequence number after the last record.
    pub(crate) fn end_sequence(&self) -> u64 {
        self.first_sequence + self.lens.len() as u64
    }

    /// Adds a record encoded by `encode` into the batch buffer; on error the buffer is as before.
    pub(crate) fn push_with<E>(
        &mut self,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<usize, E> {
        let start = self.bytes.len();
        match encode(&mut self.bytes) {
            Ok(()) => {
                let len = self.bytes.len() - start;
                self.lens.push(len);
                Ok(len)
            }
            Err(e) => {
                self.bytes.truncate(start);
                Err(e)
            }
        }
    }

    /// Appends the records of `other` (encoded ahead, numbered from here on).
    pub(crate) fn extend(&mut self, other: Batch) {
        self.bytes.extend_from_slice(&other.bytes);
        self.lens.extend_from_slice(&other.lens);
        if other.reservation.is_some() {
            self.reservation = other.reservation;
        }
    }

    /// Takes this batch's bytes out of the in-flight budget, waiting while other batches hold
    /// it (see [`Signals::reserve`]).
    pub(crate) fn reserve(&mut self, signals: &Arc<Signals>) {
        self.reservation = Some(signals.reserve(self.bytes.len()));
    }

    /// Moves the records of `other` to the end of this batch in one copy, leaving `other`
    /// empty, its buffers kept.
    pub(crate) fn take_from(&mut self, other: &mut Batch) {
        self.bytes.extend_from_slice(&other.bytes);
        self.lens.extend_from_slice(&other.lens);
        other.clear();
    }

    /// Empties the batch of records, its buffers kept.
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.lens.clear();
    }

    /// Drops the last record pushed.
    pub(crate) fn pop(&mut self) {
        if let Some(len) = self.lens.pop() {
            self.bytes.truncate(self.bytes.len() - len);
        }
    }
}

/// A number for the calling thread, the same for every call it makes: group commit waits for
/// the producers of the last group by this.
pub(crate) fn producer_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static ID: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    ID.with(|id| *id)
}

/// What producers and consumers ask of the spill thread.
pub(crate) enum Command {
    Append(Batch),
    /// Flush everything up to `up_to`, checkpoint durably, reply.
    Sync {
        up_to: u64,
        reply: Sender<Result<(), Error>>,
    },
    /// As `Sync`, with the read cursor moved to `up_to` (every item removed).
    Clear {
        up_to: u64,
        reply: Sender<Result<(), Error>>,
    },
    /// Look at the read cursor: a segment may be consumed, or a checkpoint due.
    Wake,
    /// Append up to `up_to`, flush, checkpoint, release the directory, reply, exit.
    Shutdown {
        up_to: u64,
        reply: Sender<Result<(), Error>>,
    },
}

/// A failure of the writer, kept so later calls can report it.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    /// A segment could not be created, reserved or written (out of space, over a file size limit):
    /// nothing was written, and the append is retried on the next command.
    NoSpace { path: PathBuf, message: String },
    /// An fsync or msync failed: writes are refused until reopened.
    Poisoned(String),
}

impl Failure {
    pub(crate) fn to_error(&self) -> Error {
        match self {
            Self::NoSpace { path, message } => {
                Error::io(path, std::io::Error::other(message.clone()))
            }
            Self::Poisoned(cause) => Error::Poisoned {
                cause: cause.clone(),
            },
        }
    }

    /// An I/O error while appending (creating or reserving a segment) wrote nothing and is
    /// retried; any failure while flushing, and anything else, poisons.
    fn from_error(error: &Error, flushing: bool) -> Self {
        match error {
            Error::Io { path, source } if !flushing => Self::NoSpace {
                path: path.clone(),
                message: source.to_string(),
            },
            Error::Poisoned { cause } => Self::Poisoned(cause.clone()),
            other => Self::Poisoned(other.to_string()),
        }
    }
}

/// Where reading stands, as the next checkpoint should record it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ReadCursor {
    /// Every log record before this one was removed, except those in `unacked`.
    pub(crate) sequence: u64,
    /// Records out with a consumer, unacknowledged, ascending.
    pub(crate) unacked: Vec<u64>,
}

/// What the spill thread and the queue both see.
#[derive(Debug, Default)]
pub(crate) struct Signals {
    /// Published by consumers under the queue's lock; one mutex, so the cursor and the
    /// unacknowledged list are always read as a pair.
    read: Mutex<ReadCursor>,
    /// The sequence of `read` when its unacknowledged list is empty, else `u64::MAX`: lets a
    /// consumer see without a lock that it has nothing new to publish.
    published: AtomicU64,
    /// Removals since the last checkpoint request.
    pub(crate) removals: AtomicU64,
    /// Consumers waiting for records the spill thread has not appended yet.
    pub(crate) disk_waiters: AtomicUsize,
    /// Whether the spill thread has left appended records unwritten (see `publish_round`): a
    /// consumer that waits for records then sends it a wake-up.
    pub(crate) unwritten: AtomicBool,
    /// Set with `durable.failure`, read without the lock.
    pub(crate) failed: AtomicBool,
    durable: Mutex<Durable>,
    durable_changed: Condvar,
    /// Records before this sequence number are fsynced. Written only under `durable`'s lock
    /// (so a producer that looked under it and sleeps is woken), read also without it (see
    /// `wait_durable`).
    durable_end: AtomicU64,
    /// The spill thread has stopped; written and read as `durable_end`.
    stopped: AtomicBool,
    /// Producers in `wait_durable`.
    durable_waiters: AtomicUsize,
    /// Producers whose puts the last group commit made durable.
    last_group: AtomicUsize,
    /// The spill thread's recent fdatasync time in nanoseconds (a moving average), or 0
    /// before the first.
    flush_nanos: AtomicU64,
    /// Encoded bytes handed to the spill thread (or about to be) and not yet appended.
    in_flight: AtomicUsize,
    /// Producers waiting for `in_flight` to go down.
    budget_waiters: AtomicUsize,
    budget_lock: Mutex<()>,
    budget_freed: Condvar,
    /// Buffers of appended batches, for producers to encode into again: allocating them on
    /// one thread and freeing them on another is slow in common allocators.
    spare: Mutex<Spare>,
}

/// Buffers kept for reuse, and the bytes they hold.
#[derive(Debug, Default)]
struct Spare {
    buffers: Vec<(Vec<u8>, Vec<usize>)>,
    bytes: usize,
}

fn buffer_bytes((bytes, lens): &(Vec<u8>, Vec<usize>)) -> usize {
    bytes.capacity() + lens.capacity() * std::mem::size_of::<usize>()
}

/// Spare batch buffers kept, at most: a round's worth, as the spill thread recycles a round of
/// batches at once, and a producer of one record per put takes them one by one (with fewer,
/// it allocated a new batch for almost every put while the spill thread freed the rest).
const SPARE_BUFFERS: usize = MAX_COMMANDS_PER_ROUND;
/// Bytes kept in spare buffers, at most, and the largest buffer kept.
const SPARE_BYTES: usize = 1 << 20;
const SPARE_MAX_BYTES: usize = 256 << 10;

/// Encoded bytes that may be on their way to the spill thread before a producer waits: without
/// a bound, a producer faster than the disk piles batches up in the channel and the spill
/// thread's reorder buffer (about 130 MB of `put_all` batches of 1,024 small records).
pub(crate) const IN_FLIGHT_BYTES: usize = 4 << 20;

/// The in-flight budget while a consumer waits for records on their way to disk. A consumer
/// that has read everything written waits for the spill thread; with up to 4 MiB (36,000
/// records of 100 bytes) always ahead of it, it could not catch up with the producers, and
/// every put went on spilling until the producers stopped. Holding producers to this much
/// lets the consumer catch up, and the queue go back to memory, within a few batches: in
/// paired runs of spill concurrent with batches, half as many records went to disk (median
/// 135,000 of 1M against 252,000) and runs took 1.10x to 1.17x less time (40 and 30 pairs).
pub(crate) const WAITED_IN_FLIGHT_BYTES: usize = IN_FLIGHT_BYTES / 16;

/// A batch's share of the in-flight budget; dropping it gives the share back.
#[derive(Debug)]
pub(crate) struct Reservation {
    signals: Arc<Signals>,
    bytes: usize,
}

impl Reservation {
    /// Takes over `other`'s share, to give both back at once.
    fn absorb(&mut self, mut other: Reservation) {
        self.bytes += std::mem::take(&mut other.bytes);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.signals.release(self.bytes);
        }
    }
}

#[derive(Debug, Default)]
struct Durable {
    /// Producers asleep on `durable_changed`: `set_durable` wakes them, and only them.
    sleepers: usize,
    failure: Option<Failure>,
}

impl Signals {
    pub(crate) fn new(read: ReadCursor, durable_end: u64) -> Self {
        let signals = Self::default();
        signals.set_read(read);
        signals.durable_end.store(durable_end, Ordering::Release);
        signals
    }

    /// Publishes the read cursor. Called under the queue's lock.
    pub(crate) fn set_read(&self, read: ReadCursor) {
        let mut current = self.read.lock().unwrap_or_else(|e| e.into_inner());
        let published = if read.unacked.is_empty() {
            read.sequence
        } else {
            u64::MAX
        };
        self.published.store(published, Ordering::Relaxed);
        *current = read;
    }

    /// The cursor's sequence as last published, if it listed nothing unacknowledged. Read
    /// under the queue's lock, like every `set_read`.
    pub(crate) fn published_sequence(&self) -> Option<u64> {
        let published = self.published.load(Ordering::Relaxed);
        (published != u64::MAX).then_some(published)
    }

    pub(crate) fn read(&self) -> ReadCursor {
        self.read.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn lock(&self) -> MutexGuard<'_, Durable> {
        self.durable.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An empty batch, in recycled buffers if there are some.
    pub(crate) fn batch(&self) -> Batch {
        let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        let (bytes, lens) = match spare.buffers.pop() {
            Some(buffer) => {
                spare.bytes -= buffer_bytes(&buffer);
                buffer
            }
            None => Default::default(),
        };
        drop(spare);
        Batch {
            bytes,
            lens,
            ..Batch::default()
        }
    }

    /// Keeps the buffers of appended batches for [`Signals::batch`], those the spare list has
    /// room for, taking its lock once; the others are freed after it is released.
    fn recycle(&self, buffers: &mut Vec<(Vec<u8>, Vec<usize>)>) {
        if buffers.is_empty() {
            return;
        }
        let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        buffers.retain_mut(|buffer| {
            let size = buffer_bytes(buffer);
            let keep = spare.buffers.len() < SPARE_BUFFERS
                && size <= SPARE_MAX_BYTES
                && spare.bytes + size <= SPARE_BYTES;
            if keep {
                spare.bytes += size;
                spare.buffers.push(std::mem::take(buffer));
            }
            !keep
        });
        drop(spare);
        buffers.clear();
    }

    /// The writer's failure, if it has one.
    pub(crate) fn failure(&self) -> Option<Failure> {
        if !self.failed.load(Ordering::Acquire) {
            return None;
        }
        self.lock().failure.clone()
    }

    fn set_failure(&self, failure: Option<Failure>) {
        let mut durable = self.lock();
        self.failed.store(failure.is_some(), Ordering::Release);
        durable.failure = failure;
        drop(durable);
        self.durable_changed.notify_all();
        // Producers waiting for the budget go on, to meet the failure.
        self.wake_budget_waiters();
    }

    /// Adds `bytes` to the in-flight budget, first waiting while it is in use and would go over
    /// [`IN_FLIGHT_BYTES`] ([`WAITED_IN_FLIGHT_BYTES`] while a consumer waits for records on
    /// their way to disk). A batch alone is never held back, nor is anything while the writer
    /// has failed (the caller then meets the failure).
    ///
    /// The caller must hold no sequence numbers yet: batches already numbered must be able to
    /// reach the spill thread, or the ones after them could never be appended and give the
    /// budget back.
    pub(crate) fn reserve(self: &Arc<Self>, bytes: usize) -> Reservation {
        let fits = |current: usize| {
            let limit = if self.disk_waiters.load(Ordering::Relaxed) > 0 {
                WAITED_IN_FLIGHT_BYTES
            } else {
                IN_FLIGHT_BYTES
            };
            current == 0
                || current.saturating_add(bytes) <= limit
                || self.failed.load(Ordering::Acquire)
        };
        loop {
            let current = self.in_flight.load(Ordering::SeqCst);
            if fits(current) {
                let next = current.saturating_add(bytes);
                if self
                    .in_flight
                    .compare_exchange(current, next, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
                {
                    return Reservation {
                        signals: Arc::clone(self),
                        bytes,
                    };
                }
                continue;
            }
            // Register, then look once more: either `release` sees us waiting and wakes us
            // through the lock we hold until we wait, or we see what it gave back.
            let guard = self.budget_lock.lock().unwrap_or_else(|e| e.into_inner());
            self.budget_waiters.fetch_add(1, Ordering::SeqCst);
            let guard = if fits(self.in_flight.load(Ordering::SeqCst)) {
                guard
            } else {
                self.budget_freed
                    .wait(guard)
                    .unwrap_or_else(|e| e.into_inner())
            };
            self.budget_waiters.fetch_sub(1, Ordering::SeqCst);
            drop(guard);
        }
    }

    fn release(&self, bytes: usize) {
        self.in_flight.fetch_sub(bytes, Ordering::SeqCst);
        if self.budget_waiters.load(Ordering::SeqCst) > 0 {
            self.wake_budget_waiters();
        }
    }

    fn wake_budget_waiters(&self) {
        drop(self.budget_lock.lock().unwrap_or_else(|e| e.into_inner()));
        self.budget_freed.notify_all();
    }

    /// Blocks until every record before `end` is fsynced (`EveryPut`).
    ///
    /// While other producers wait for an fsync too, and fsyncs are quick, a producer first
    /// yields the processor in a loop, looking for its fsync without the lock, for up to
    /// about twice the recent fsync time (see [`spin_window`]); only then does it sleep.
    /// Producers that are still runnable when the fsync ends need no wake-up: with sixteen
    /// of them, waking each (a few microseconds apiece, one after another on the spill
    /// thread) took 34 to 68 µs of every group commit, up to a fifth of it. One
    /// producer alone sleeps at once: its one wake-up is cheap next to the processor a
    /// yield loop would take for the whole fsync.
    pub(crate) fn wait_durable(&self, end: u64) -> Result<(), Error> {
        // The first producer of a group to arrive sees nobody waiting yet, and is told by the
        // size of the group before.
        let others = self.durable_waiters.fetch_add(1, Ordering::SeqCst) > 0
            || self.last_group.load(Ordering::Relaxed) > 1;
        let result = self.wait_durable_registered(end, others);
        self.durable_waiters.fetch_sub(1, Ordering::SeqCst);
        result
    }

    fn wait_durable_registered(&self, end: u64, others: bool) -> Result<(), Error> {
        let window = spin_window(self.flush_nanos.load(Ordering::Relaxed));
        if others && let Some(window) = window {
            let started = Instant::now();
            loop {
                if self.durable_end.load(Ordering::Acquire) >= end {
                    return Ok(());
                }
                if self.failed.load(Ordering::Acquire)
                    || self.stopped.load(Ordering::Acquire)
                    || started.elapsed() >= window
                {
                    break;
                }
                std::thread::yield_now();
            }
        }
        let mut durable = self.lock();
        loop {
            if self.durable_end.load(Ordering::Acquire) >= end {
                return Ok(());
            }
            if let Some(failure) = &durable.failure {
                return Err(failure.to_error());
            }
            if self.stopped.load(Ordering::Acquire) {
                return Err(Error::Closed);
            }
            durable.sleepers += 1;
            durable = self
                .durable_changed
                .wait(durable)
                .unwrap_or_else(|e| e.into_inner());
            durable.sleepers -= 1;
        }
    }

    fn set_durable(&self, end: u64) {
        let durable = self.lock();
        if end > self.durable_end.load(Ordering::Relaxed) {
            self.durable_end.store(end, Ordering::Release);
            let sleepers = durable.sleepers;
            drop(durable);
            if sleepers > 0 {
                self.durable_changed.notify_all();
            }
        }
    }

    /// Takes an fdatasync's time into the moving average producers read.
    fn note_flush(&self, took: Duration) {
        let took = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let recent = self.flush_nanos.load(Ordering::Relaxed);
        let average = if recent == 0 {
            took
        } else {
            recent - recent / 8 + took / 8
        };
        self.flush_nanos.store(average.max(1), Ordering::Relaxed);
    }

    fn stop(&self) {
        let durable = self.lock();
        self.stopped.store(true, Ordering::Release);
        drop(durable);
        self.durable_changed.notify_all();
    }
}

/// Batches received and not yet appended, in the order of the sequence number each goes on
/// from. They arrive nearly in order (a producer numbers its batch under the queue's lock and
/// sends it right after), so a batch almost always joins at the back: a sorted deque, cheaper
/// per batch than a tree when batches hold one record each.
#[derive(Default)]
struct Pending(VecDeque<Batch>);

impl Pending {
    /// The sequence number of the batch's first record not yet appended.
    fn next_sequence(batch: &Batch) -> u64 {
        batch.first_sequence + batch.done as u64
    }

    fn insert(&mut self, batch: Batch) {
        let key = Self::next_sequence(&batch);
        if self
            .0
            .back()
            .is_none_or(|last| Self::next_sequence(last) < key)
        {
            self.0.push_back(batch);
        } else {
            let at = self
                .0
                .partition_point(|queued| Self::next_sequence(queued) < key);
            self.0.insert(at, batch);
        }
    }
}

/// The spill thread's state.
pub(crate) struct Spill<T> {
    queue: Weak<Shared<T>>,
    signals: Arc<Signals>,
    log: Log,
    commands: Receiver<Command>,
    durability: Durability,
    checkpoint_every_removals: u64,
    /// Batches received and not yet appended.
    pending: Pending,
    /// Records up to here were appended by a batch that asked to be made durable.
    durable_wanted: u64,
    /// Producers whose `EveryPut` batches arrived since the last fsync.
    durable_producers: Vec<u64>,
    /// Those the last fsync released.
    last_group: Vec<u64>,
    /// Bytes of batches appended since the log last published.
    unpublished_bytes: usize,
    /// The in-flight budget and the buffers of batches appended, given back together (one
    /// atomic update and one lock for many batches, see `give_back`).
    appended_budget: Option<Reservation>,
    appended_buffers: Vec<(Vec<u8>, Vec<usize>)>,
    syncs: Vec<(u64, Sender<Result<(), Error>>)>,
    clears: Vec<(u64, Sender<Result<(), Error>>)>,
    shutdown: Option<(u64, Sender<Result<(), Error>>)>,
    rolled_segments: usize,
    next_tick: Option<Instant>,
    /// Since when appended records have waited unwritten (roughly: the end of the first round
    /// that left some), if they do.
    unwritten_since: Option<Instant>,
}

/// How long appended records may stay unwritten (in the writer's buffer, not yet visible to
/// readers) when no consumer asks for them, about: the first round after it writes them.
const LINGER: Duration = Duration::from_millis(1);

/// Consumers this many records or more behind what readers are shown have enough to read for a
/// while: the spill thread then writes only as its chunks fill (see `publish_round`).
const LAZY_LEAD: u64 = 16_384;

/// While consumers wait for records on their way to disk, the spill thread shows them what it
/// has appended once it has this much, without waiting for the end of its round: small enough
/// that a consumer waits a few tens of microseconds, large enough that the wake-up (of every
/// waiting consumer) is shared by hundreds of records even when batches hold one each.
const EARLY_PUBLISH_BYTES: usize = 16 << 10;

/// The spill thread gives the in-flight budget back to producers once it holds this much of it
/// (or at the end of its round): often enough that producers waiting for it keep encoding while
/// it appends, seldom enough that batches of one record do not each cost an update shared with
/// the producers.
const GIVE_BACK_BYTES: usize = IN_FLIGHT_BYTES / 16;

/// Commands handled before one flush, at most: a bound on a group commit's latency.
const MAX_COMMANDS_PER_ROUND: usize = 1024;
/// Producers waiting for an fsync yield in a loop before they sleep only while fsyncs take
/// less than this (see `Signals::wait_durable`): on a disk slower than that, the wake-up is a
/// small part of the wait, and the loop would take a processor for nothing.
const SPIN_FSYNC_LIMIT: Duration = Duration::from_millis(1);

/// How long a producer waiting for an fsync yields in a loop before it sleeps, given the
/// recent fsync time in nanoseconds: about twice that (an fsync under way when it arrived, and
/// its own), or `None` when fsyncs are slow or none has been timed yet.
fn spin_window(flush_nanos: u64) -> Option<Duration> {
    let recent = Duration::from_nanos(flush_nanos);
    (flush_nanos > 0 && recent < SPIN_FSYNC_LIMIT).then(|| recent * 2 + Duration::from_micros(50))
}

/// Longest wait for more durable puts before an fsync (see `gather_durable`): short next to
/// an fsync, long enough for woken producers to be scheduled.
const GATHER_WAIT: Duration = Duration::from_micros(200);

impl<T: Send + 'static> Spill<T> {
    pub(crate) fn new(
        queue: Weak<Shared<T>>,
        signals: Arc<Signals>,
        log: Log,
        commands: Receiver<Command>,
        durability: Durability,
        checkpoint_every_removals: u64,
    ) -> Self {
        let next_tick = match durability {
            Durability::Interval(period) => Some(Instant::now() + period),
            _ => None,
        };
        let rolled_segments = log.segment_count();
        Self {
            queue,
            signals,
            log,
            commands,
            durability,
            checkpoint_every_removals,
            pending: Pending::default(),
            durable_wanted: 0,
            durable_producers: Vec::new(),
            last_group: Vec::new(),
            unpublished_bytes: 0,
            appended_budget: None,
            appended_buffers: Vec::new(),
            syncs: Vec::new(),
            clears: Vec::new(),
            shutdown: None,
            rolled_segments,
            next_tick,
            unwritten_since: None,
        }
    }

    /// The thread's body.
    pub(crate) fn run(mut self) {
        loop {
            // Records left unwritten wait at most `LINGER`, then the next round writes them.
            let linger = self.unwritten_since.map(|since| since + LINGER);
            let deadline = match (self.next_tick, linger) {
                (Some(tick), Some(linger)) => Some(tick.min(linger)),
                (tick, linger) => tick.or(linger),
            };
            let first = match deadline {
                Some(deadline) => match self.commands.recv_deadline(deadline) {
                    Ok(command) => Some(command),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match self.commands.recv() {
                    Ok(command) => Some(command),
                    Err(_) => break,
                },
            };
            let mut tick = false;
            if let Some(command) = first {
                self.accept(command);
                self.accept_waiting();
                if !self.durable_producers.is_empty() {
                    self.gather_durable();
                }
            }
            if let (Some(deadline), Durability::Interval(period)) =
                (self.next_tick, self.durability)
                && Instant::now() >= deadline
            {
                tick = true;
                self.next_tick = Some(Instant::now() + period);
            }
            if tick {
                self.take_memory();
            }
            self.round(tick);
            let unwritten = self.log.has_unwritten();
            // After a failed write, retries come with commands as before, not every `LINGER`.
            self.unwritten_since = if unwritten && !self.signals.failed.load(Ordering::Acquire) {
                Some(self.unwritten_since.unwrap_or_else(Instant::now))
            } else {
                None
            };
            if self.signals.unwritten.load(Ordering::Relaxed) != unwritten {
                self.signals.unwritten.store(unwritten, Ordering::SeqCst);
            }
            // Leave once everything asked for is appended, or when it cannot be (the writer
            // failed): `finish` then reports the failure to the closer.
            if let Some((up_to, _)) = &self.shutdown
                && (self.log.next_sequence() >= *up_to || self.signals.failure().is_some())
            {
                break;
            }
        }
        self.finish();
    }

    /// Takes the commands already in the channel, up to a round's worth. Returns how many.
    fn accept_waiting(&mut self) -> usize {
        for taken in 0..MAX_COMMANDS_PER_ROUND {
            match self.commands.try_recv() {
                Ok(command) => self.accept(command),
                Err(_) => return taken,
            }
        }
        MAX_COMMANDS_PER_ROUND
    }

    /// Group commit: before an fsync that producers wait for, give the producers the last one
    /// released a moment (at most `GATHER_WAIT`) to send their next puts, so that they share
    /// this fsync instead of waiting for the next. Waiting for those producers by name, not for
    /// as many puts, matters: producers released by one fsync and producers that sent during
    /// it would otherwise take turns, two groups of half the size. With one producer there is
    /// nothing to wait for.
    fn gather_durable(&mut self) {
        let deadline = Instant::now() + GATHER_WAIT;
        while self
            .last_group
            .iter()
            .any(|id| !self.durable_producers.contains(id))
            && Instant::now() < deadline
        {
            std::thread::yield_now();
            self.accept_waiting();
        }
    }

    fn accept(&mut self, command: Command) {
        match command {
            Command::Append(batch) => {
                if batch.durable && !self.durable_producers.contains(&batch.producer) {
                    self.durable_producers.push(batch.producer);
                }
                self.pending.insert(batch);
            }
            Command::Sync { up_to, reply } => self.syncs.push((up_to, reply)),
            Command::Clear { up_to, reply } => self.clears.push((up_to, reply)),
            Command::Wake => {}
            Command::Shutdown { up_to, reply } => self.shutdown = Some((up_to, reply)),
        }
    }

    /// `Interval` tick: encode what sits only in memory so it can be written.
    fn take_memory(&mut self) {
        if let Some(queue) = self.queue.upgrade()
            && let Some(batch) = queue.take_unwritten()
        {
            self.pending.insert(batch);
        }
    }

    /// Appends what can be appended, then flushes and checkpoints as asked.
    fn round(&mut self, tick: bool) {
        let appended = self.append_pending();
        // When this round may flush, everything is written now, in one write with the rest.
        let flush_coming =
            tick || self.durable_wanted > 0 || !self.syncs.is_empty() || !self.clears.is_empty();
        let published = if flush_coming {
            self.publish()
        } else {
            self.publish_round()
        };
        let appended = appended.and(published);
        if let Err(error) = appended {
            let failure = Failure::from_error(&error, false);
            self.fail(&failure);
            return;
        }
        if matches!(self.signals.failure(), Some(Failure::NoSpace { .. })) {
            // Everything pending went through: there is room again.
            self.signals.set_failure(None);
        }
        let appended_to = self.log.next_sequence();
        let syncs_ready = self.syncs.iter().any(|(up_to, _)| *up_to <= appended_to)
            || self.clears.iter().any(|(up_to, _)| *up_to <= appended_to);
        let read = self.signals.read();
        let tick = tick
            && (self.log.has_unsynced()
                || self.log.checkpoint_is_stale(read.sequence, &read.unacked));
        let need_flush = syncs_ready || self.durable_wanted > 0 || tick;
        if need_flush && let Err(error) = self.flush_and_checkpoint(syncs_ready || tick) {
            self.fail(&Failure::from_error(&error, true));
            return;
        }
        if need_flush {
            if self.durable_wanted > 0 {
                self.last_group = std::mem::take(&mut self.durable_producers);
                self.signals
                    .last_group
                    .store(self.last_group.len(), Ordering::Relaxed);
            }
            self.durable_wanted = 0;
            self.signals.set_durable(appended_to);
        }
        self.reply_ready(appended_to);
        if let Err(error) = self.housekeeping() {
            self.fail(&Failure::from_error(&error, true));
        }
    }

    /// Appends the batches whose turn has come.
    fn append_pending(&mut self) -> Result<(), Error> {
        let appended = self.append_ready();
        self.give_back();
        appended
    }

    /// Gives the budget and the buffers of the batches appended back to producers.
    fn give_back(&mut self) {
        self.signals.recycle(&mut self.appended_buffers);
        self.appended_budget = None;
    }

    /// Keeps an appended batch's share of the budget and its buffers for `give_back`, which
    /// runs once they add up to enough.
    fn set_aside(&mut self, mut batch: Batch) {
        if let Some(budget) = batch.reservation.take() {
            match &mut self.appended_budget {
                Some(held) => held.absorb(budget),
                None => self.appended_budget = Some(budget),
            }
        }
        let Batch {
            mut bytes,
            mut lens,
            ..
        } = batch;
        bytes.clear();
        lens.clear();
        self.appended_buffers.push((bytes, lens));
        let held = self.appended_budget.as_ref().map_or(0, |held| held.bytes);
        if self.appended_buffers.len() >= SPARE_BUFFERS || held >= GIVE_BACK_BYTES {
            self.give_back();
        }
    }

    fn append_ready(&mut self) -> Result<(), Error> {
        if let Some(Failure::Poisoned(cause)) = self.signals.failure() {
            return Err(Error::Poisoned { cause });
        }
        while let Some(batch) = self.pending.0.front_mut() {
            if Pending::next_sequence(batch) != self.log.next_sequence() {
                break;
            }
            while let Some(&len) = batch.lens.get(batch.done) {
                let payload = batch
                    .bytes
                    .get(batch.done_bytes..batch.done_bytes + len)
                    .unwrap_or_default();
                self.log.append(payload)?;
                batch.done += 1;
                batch.done_bytes += len;
            }
            if batch.durable {
                self.durable_wanted = self.log.next_sequence();
            }
            let Some(batch) = self.pending.0.pop_front() else {
                break;
            };
            self.unpublished_bytes += batch.bytes.len();
            self.set_aside(batch);
            if self.unpublished_bytes >= EARLY_PUBLISH_BYTES
                && self.signals.disk_waiters.load(Ordering::SeqCst) > 0
            {
                // A consumer has read everything appended: show it what is ready now, not
                // after the whole backlog of batches (up to `IN_FLIGHT_BYTES`, milliseconds).
                self.give_back();
                self.publish()?;
            }
        }
        Ok(())
    }

    /// Writes out what was appended, shows it to readers, then wakes the consumers waiting for
    /// it (published first, so a consumer that registered too late to be seen sees the records).
    fn publish(&mut self) -> Result<(), Error> {
        self.unpublished_bytes = 0;
        let published = self.log.publish();
        if self.signals.disk_waiters.load(Ordering::SeqCst) > 0
            && let Some(queue) = self.queue.upgrade()
        {
            queue.wake_consumers();
        }
        published
    }

    /// The publish that ends a round. While every consumer reads far behind what readers are
    /// shown (`LAZY_LEAD` records or more) and none waits, records are written only as the
    /// writer fills its chunks, whole pages at a time: large writes cost the kernel half as much
    /// per page as a write per round of about one batch (see `WriteSegment::write_whole_pages`).
    /// The rest is written, and everything shown, once a consumer comes near or waits (it then
    /// sends a wake-up, see `Signals::unwritten`), or once it has waited `LINGER`.
    fn publish_round(&mut self) -> Result<(), Error> {
        let lingered = self
            .unwritten_since
            .is_some_and(|since| since.elapsed() >= LINGER);
        if lingered
            || self.shutdown.is_some()
            || self.signals.disk_waiters.load(Ordering::SeqCst) > 0
            || self.consumer_near()
        {
            return self.publish();
        }
        // Consumers are told first, then looked at once more: either a consumer about to wait
        // sees the flag and sends a wake-up, or this sees the consumer.
        self.signals.unwritten.store(true, Ordering::SeqCst);
        if self.signals.disk_waiters.load(Ordering::SeqCst) > 0 {
            return self.publish();
        }
        self.unpublished_bytes = 0;
        self.log.show_written();
        Ok(())
    }

    /// Whether consumers may soon reach the end of what readers are shown: the read cursor is
    /// less than `LAZY_LEAD` records behind it (or not known).
    fn consumer_near(&self) -> bool {
        self.signals
            .published_sequence()
            .is_none_or(|read| self.log.written_sequence().saturating_sub(read) < LAZY_LEAD)
    }

    /// fdatasync of the data; with `checkpoint`, a durable checkpoint too.
    fn flush_and_checkpoint(&mut self, checkpoint: bool) -> Result<(), Error> {
        let syncs = self.log.has_unsynced();
        let started = Instant::now();
        self.log.flush()?;
        if syncs {
            self.signals.note_flush(started.elapsed());
        }
        if checkpoint {
            let read = self.signals.read();
            self.log.checkpoint(read.sequence, &read.unacked, true)?;
        }
        Ok(())
    }

    fn reply_ready(&mut self, appended_to: u64) {
        let mut index = 0;
        while let Some((up_to, _)) = self.syncs.get(index) {
            if *up_to <= appended_to {
                let (_, reply) = self.syncs.swap_remove(index);
                let _ = reply.send(Ok(()));
            } else {
                index += 1;
            }
        }
        let ready: Vec<_> = {
            let (ready, waiting) = std::mem::take(&mut self.clears)
                .into_iter()
                .partition(|(up_to, _)| *up_to <= appended_to);
            self.clears = waiting;
            ready
        };
        for (up_to, reply) in ready {
            let result = self.log.checkpoint(up_to, &[], true);
            if let Err(error) = &result {
                let failure = Failure::from_error(error, true);
                self.signals.set_failure(Some(failure));
            }
            let _ = reply.send(result);
        }
    }

    /// Records a failure and tells everyone waiting on the writer.
    fn fail(&mut self, failure: &Failure) {
        tracing::error!(?failure, "the spill thread failed");
        self.signals.set_failure(Some(failure.clone()));
        self.fail_waiters(failure);
        if let Some(queue) = self.queue.upgrade() {
            queue.wake_consumers();
        }
    }

    fn fail_waiters(&mut self, failure: &Failure) {
        for (_, reply) in self.syncs.drain(..).chain(self.clears.drain(..)) {
            let _ = reply.send(Err(failure.to_error()));
        }
    }

    /// Checkpoints nobody asked for: after a roll, after many removals, and (durably, so the
    /// segment can go) once the read cursor has left a segment behind.
    fn housekeeping(&mut self) -> Result<(), Error> {
        if self.signals.failed.load(Ordering::Acquire) {
            return Ok(());
        }
        let read = self.signals.read();
        let rolled = self.log.segment_count() != self.rolled_segments;
        self.rolled_segments = self.log.segment_count();
        let removals = self.signals.removals.load(Ordering::Relaxed);
        if self.log.has_consumed_segment(read.sequence, &read.unacked) {
            self.signals.removals.store(0, Ordering::Relaxed);
            return self.log.checkpoint(read.sequence, &read.unacked, true);
        }
        if (rolled || removals >= self.checkpoint_every_removals)
            && self.log.checkpoint_is_stale(read.sequence, &read.unacked)
        {
            self.signals.removals.store(0, Ordering::Relaxed);
            return self.log.checkpoint(read.sequence, &read.unacked, false);
        }
        Ok(())
    }

    /// Leaves: everything appended is flushed and checkpointed, the log (and its lock) dropped,
    /// and the closer told.
    fn finish(mut self) {
        self.take_memory_on_disconnect();
        let appended = self.append_pending();
        let mut result = appended.and(self.publish());
        if result.is_ok() {
            result = self.flush_and_checkpoint(true);
        }
        if let Err(error) = &result {
            let failure = Failure::from_error(error, true);
            self.fail_waiters(&failure);
        } else {
            self.reply_ready(self.log.next_sequence());
        }
        self.signals.set_durable(self.log.next_sequence());
        self.signals.stop();
        let Self { log, shutdown, .. } = self;
        drop(log);
        if let Some((_, reply)) = shutdown {
            let _ = reply.send(result);
        }
    }

    /// Without a shutdown command every sender is gone: nothing more can arrive.
    fn take_memory_on_disconnect(&mut self) {
        while let Ok(command) = self.commands.try_recv() {
            self.accept(command);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Waits (without sleeping on a guess) until a producer is registered as waiting.
    fn until_waiting(signals: &Signals) {
        while signals.budget_waiters.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
    }

    /// Runs `f` (a call that may wait) on a thread of its own, which says so on the receiver
    /// once the call has returned; the thread's result is the call's.
    fn in_thread<R: Send + 'static>(
        signals: &Arc<Signals>,
        f: impl FnOnce(&Arc<Signals>) -> R + Send + 'static,
    ) -> (std::thread::JoinHandle<R>, crossbeam_channel::Receiver<()>) {
        let (sent, received) = crossbeam_channel::bounded(1);
        let waiting = std::thread::spawn({
            let signals = Arc::clone(signals);
            move || {
                let result = f(&signals);
                sent.send(()).unwrap();
                result
            }
        });
        (waiting, received)
    }

    /// Reserves `bytes` on a thread of its own (see [`in_thread`]).
    fn reserve_in_thread(
        signals: &Arc<Signals>,
        bytes: usize,
    ) -> (
        std::thread::JoinHandle<Reservation>,
        crossbeam_channel::Receiver<()>,
    ) {
        in_thread(signals, move |signals| signals.reserve(bytes))
    }

    fn batch_of(first_sequence: u64, records: usize) -> Batch {
        let mut batch = Batch::new(first_sequence);
        for record in 0..records {
            batch
                .push_with(|buf| {
                    buf.push(record as u8);
                    Ok::<(), ()>(())
                })
                .unwrap();
        }
        batch
    }

    #[test]
    fn pending_batches_come_out_in_sequence_order_whatever_order_they_came_in() {
        let mut pending = Pending::default();
        for first in [0, 5, 3, 9, 4, 7] {
            pending.insert(batch_of(first, 1));
        }
        // A batch appended in part (a failure part-way) goes on from where it stopped.
        let mut partial = batch_of(1, 2);
        partial.done = 1;
        partial.done_bytes = 1;
        pending.insert(partial);
        let order: Vec<u64> = pending.0.iter().map(Pending::next_sequence).collect();
        assert_eq!(order, [0, 2, 3, 4, 5, 7, 9]);
    }

    #[test]
    fn spare_buffers_are_kept_up_to_their_bounds_and_handed_out_again() {
        let signals = Signals::default();
        let mut buffers: Vec<_> = (0..SPARE_BUFFERS + 10)
            .map(|_| (Vec::with_capacity(100), Vec::with_capacity(1)))
            .collect();
        signals.recycle(&mut buffers);
        assert!(buffers.is_empty());
        let spare = signals.spare.lock().unwrap();
        assert_eq!(spare.buffers.len(), SPARE_BUFFERS);
        assert_eq!(spare.bytes, spare.buffers.iter().map(buffer_bytes).sum());
        drop(spare);
        // Too large to keep at all; the small one after it is kept.
        let signals = Signals::default();
        signals.recycle(&mut vec![
            (Vec::with_capacity(SPARE_MAX_BYTES + 1), Vec::new()),
            (Vec::with_capacity(100), Vec::new()),
        ]);
        assert_eq!(signals.spare.lock().unwrap().buffers.len(), 1);
        let small = signals.batch();
        assert!(small.bytes.capacity() < SPARE_MAX_BYTES);
        // Bytes are bounded too: of large buffers, SPARE_BYTES' worth is kept.
        let mut large: Vec<_> = (0..SPARE_BYTES / SPARE_MAX_BYTES + 3)
            .map(|_| (Vec::with_capacity(SPARE_MAX_BYTES), Vec::new()))
            .collect();
        signals.recycle(&mut large);
        assert_eq!(
            signals.spare.lock().unwrap().buffers.len(),
            SPARE_BYTES / SPARE_MAX_BYTES
        );
        // Handed out empty, and counted out.
        let batch = signals.batch();
        assert!(batch.bytes.is_empty() && batch.bytes.capacity() >= SPARE_MAX_BYTES);
        let spare = signals.spare.lock().unwrap();
        assert_eq!(spare.buffers.len(), SPARE_BYTES / SPARE_MAX_BYTES - 1);
        assert_eq!(spare.bytes, spare.buffers.iter().map(buffer_bytes).sum());
    }

    #[test]
    fn producers_yield_for_about_two_fsyncs_only_while_fsyncs_are_quick() {
        assert_eq!(spin_window(0), None, "no fsync timed yet");
        assert_eq!(
            spin_window(150_000),
            Some(Duration::from_micros(350)),
            "150 us fsyncs"
        );
        let slow = u64::try_from(SPIN_FSYNC_LIMIT.as_nanos()).unwrap();
        assert_eq!(spin_window(slow), None, "fsyncs of a slow disk");
        // The average follows the fsyncs, a step at a time.
        let signals = Signals::default();
        signals.note_flush(Duration::from_micros(800));
        assert_eq!(signals.flush_nanos.load(Ordering::Relaxed), 800_000);
        for _ in 0..64 {
            signals.note_flush(Duration::from_millis(5));
        }
        assert!(spin_window(signals.flush_nanos.load(Ordering::Relaxed)).is_none());
    }

    /// Waits on a thread of its own for `end` to be durable (see [`in_thread`]).
    fn wait_durable_in_thread(
        signals: &Arc<Signals>,
        end: u64,
    ) -> (
        std::thread::JoinHandle<Result<(), Error>>,
        crossbeam_channel::Receiver<()>,
    ) {
        in_thread(signals, move |signals| signals.wait_durable(end))
    }

    fn until_asleep(signals: &Signals, sleepers: usize) {
        while signals.lock().sleepers < sleepers {
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_producer_past_its_yield_loop_sleeps_until_its_fsync() {
        let signals = Arc::new(Signals::new(ReadCursor::default(), 0));
        // Quick fsyncs and a group of two: waiters yield first, then sleep.
        signals.note_flush(Duration::from_micros(100));
        signals.last_group.store(2, Ordering::Relaxed);
        let (first, first_done) = wait_durable_in_thread(&signals, 5);
        let (second, second_done) = wait_durable_in_thread(&signals, 9);
        until_asleep(&signals, 2);
        signals.set_durable(5);
        // A lost wake-up would hang here: a minute is an error, not a race.
        let woken = first_done.recv_timeout(Duration::from_secs(60));
        woken.expect("not woken by its fsync");
        assert!(first.join().unwrap().is_ok());
        assert!(second_done.try_recv().is_err(), "woken before its fsync");
        until_asleep(&signals, 1);
        signals.set_durable(9);
        let woken = second_done.recv_timeout(Duration::from_secs(60));
        woken.expect("not woken by its fsync");
        assert!(second.join().unwrap().is_ok());
        assert_eq!(signals.durable_waiters.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn producers_waiting_for_an_fsync_meet_the_failure_and_the_close() {
        let signals = Arc::new(Signals::new(ReadCursor::default(), 0));
        signals.note_flush(Duration::from_micros(100));
        signals.last_group.store(2, Ordering::Relaxed);
        let (waiting, _done) = wait_durable_in_thread(&signals, 5);
        signals.set_failure(Some(Failure::Poisoned("test".into())));
        assert!(waiting.join().unwrap().is_err());
        signals.set_failure(None);
        let (waiting, _done) = wait_durable_in_thread(&signals, 5);
        signals.stop();
        assert!(matches!(waiting.join().unwrap(), Err(Error::Closed)));
    }

    #[test]
    fn absorbed_reservations_give_their_bytes_back_once_together() {
        let signals = Arc::new(Signals::default());
        let mut held = signals.reserve(100);
        held.absorb(signals.reserve(50));
        assert_eq!(signals.in_flight.load(Ordering::SeqCst), 150);
        drop(held);
        assert_eq!(signals.in_flight.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_producer_over_the_in_flight_budget_waits_until_bytes_are_appended() {
        let signals = Arc::new(Signals::default());
        let first = signals.reserve(IN_FLIGHT_BYTES - 10);
        // Room for 10 more bytes: this goes through.
        let small = signals.reserve(10);
        let (waiting, received) = reserve_in_thread(&signals, 1000);
        until_waiting(&signals);
        // Registered, and the budget is still full: it cannot have gone on.
        assert!(received.try_recv().is_err());
        drop(small);
        // 10 bytes back is not enough for 1000.
        assert!(received.try_recv().is_err());
        drop(first);
        received.recv().unwrap();
        let reservation = waiting.join().unwrap();
        assert_eq!(signals.in_flight.load(Ordering::SeqCst), 1000);
        drop(reservation);
        assert_eq!(signals.in_flight.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn while_a_consumer_waits_for_disk_producers_keep_less_in_flight() {
        let signals = Arc::new(Signals::default());
        signals.disk_waiters.fetch_add(1, Ordering::SeqCst);
        let first = signals.reserve(WAITED_IN_FLIGHT_BYTES - 10);
        let (waiting, received) = reserve_in_thread(&signals, 1000);
        until_waiting(&signals);
        assert!(received.try_recv().is_err());
        drop(first);
        received.recv().unwrap();
        drop(waiting.join().unwrap());
        // Without a consumer waiting, the same two fit together.
        signals.disk_waiters.fetch_sub(1, Ordering::SeqCst);
        let first = signals.reserve(WAITED_IN_FLIGHT_BYTES - 10);
        let second = signals.reserve(1000);
        assert_eq!(
            signals.in_flight.load(Ordering::SeqCst),
            WAITED_IN_FLIGHT_BYTES + 990
        );
        drop((first, second));
    }

    #[test]
    fn a_batch_larger_than_the_budget_goes_alone_and_a_failure_lets_waiters_through() {
        let signals = Arc::new(Signals::default());
        let huge = signals.reserve(3 * IN_FLIGHT_BYTES);
        let waiting = std::thread::spawn({
            let signals = Arc::clone(&signals);
            move || drop(signals.reserve(1))
        });
        until_waiting(&signals);
        // The writer fails with the budget full: the producer goes on to meet the failure.
        signals.set_failure(Some(Failure::Poisoned("test".into())));
        waiting.join().unwrap();
        drop(huge);
        assert_eq!(signals.in_flight.load(Ordering::SeqCst), 0);
    }
}
