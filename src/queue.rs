//! [`Queue`]: the public operations. The rules they follow live in `cache.rs` (memory or disk)
//! and `spill.rs` (writing); this file only composes them.

use crate::builder::{Builder, Config};
use crate::cache::{Shared, Slot, State, Written, decode_record};
use crate::codec::Codec;
use crate::delivery::Delivery;
use crate::error::{Error, PutTimeoutError, TryPutError};
use crate::lane::{Lane, SPIN_STEPS, pause};
use crate::log::{CheckpointState, Log, LogReader};
use crate::spill::{Batch, Command, Failure, ReadCursor, Signals, Spill};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::cell::RefCell;
use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Commands in flight to the spill thread, at most; a producer that finds the channel full waits,
/// so a slow disk slows producers instead of growing memory.
const COMMAND_CAPACITY: usize = 256;

/// A persistent, thread-safe FIFO queue of `T`. Cheap to clone: all clones share one queue.
///
/// See the [crate docs](crate) for how it works and what survives a crash.
///
/// # Examples
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let queue = spillq::Queue::open(dir.path())?;
/// queue.put("a".to_string())?;
/// queue.put("b".to_string())?;
/// assert_eq!(queue.get()?, "a");
/// queue.sync()?; // "b" is on stable storage
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Queue<T: Send + 'static> {
    shared: Arc<Shared<T>>,
}

/// Counts and sizes of a queue, from [`Queue::stats`].
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
    /// Items in the queue (as [`Queue::len`]).
    pub len: usize,
    /// Items held decoded in memory.
    pub in_memory: usize,
    /// Items only on disk.
    pub on_disk: u64,
    /// Items out with a [`Delivery`], not yet acknowledged (not counted in `len`).
    pub unacked: usize,
    /// Segment files.
    pub segments: usize,
    /// Bytes of segment files on disk (reserved space included).
    pub disk_bytes: u64,
    /// Records found damaged or missing and skipped since the queue was opened.
    pub skipped: u64,
    /// Records that did not decode as `T` and were moved to `undecodable/`.
    pub undecodable: u64,
    /// fsync/fdatasync calls made since the queue was opened.
    pub fsyncs: u64,
    /// Sequence number the next item written to disk gets.
    pub next_sequence: u64,
    /// The read cursor: every record before it was removed.
    pub read_sequence: u64,
    /// What recovery found of the checkpoint when the queue was opened.
    pub checkpoint: CheckpointState,
}

/// How long a call may wait.
#[derive(Clone, Copy)]
enum Wait {
    /// Not at all.
    No,
    /// Until the instant, or forever.
    Until(Option<Instant>),
}

impl Wait {
    fn for_timeout(timeout: Duration) -> Self {
        Self::Until(Instant::now().checked_add(timeout))
    }

    fn deadline(self) -> Option<Option<Instant>> {
        match self {
            Self::No => None,
            Self::Until(deadline) => Some(deadline),
        }
    }
}

/// The queue's state, locked.
type Guard<'a, T> = MutexGuard<'a, State<T>>;

/// Why a put found no room.
enum NoRoom {
    Full,
    Closed,
}

/// What one put call carries: one item, or a batch.
trait Items<T> {
    fn count_items(&self) -> usize;
    fn encode_items(&self, shared: &Shared<T>, batch: &mut Batch) -> Result<(), Error>;
    fn into_ring(self, ring: &mut VecDeque<Slot<T>>);
    /// Hands the items over through the lane, if they can go that way now.
    fn into_lane(self, lane: &Lane<T>) -> Result<(), Self>
    where
        Self: Sized;
}

impl<T: Send + 'static> Items<T> for T {
    fn count_items(&self) -> usize {
        1
    }

    fn encode_items(&self, shared: &Shared<T>, batch: &mut Batch) -> Result<(), Error> {
        shared.encode(self, batch)
    }

    fn into_ring(self, ring: &mut VecDeque<Slot<T>>) {
        ring.push_back(Slot::Item {
            item: self,
            written: Written::No,
        });
    }

    fn into_lane(self, lane: &Lane<T>) -> Result<(), Self> {
        lane.push(self)
    }
}

/// A batch from `put_all`.
struct Many<T>(Vec<T>);

/// Bytes a producer encodes into its scratch batch before it copies them into the batch it
/// sends: half of a first-level data cache here.
const SCRATCH_BYTES: usize = 16 << 10;

thread_local! {
    /// Where a producer thread encodes a `put_all` batch, a chunk at a time, before it copies
    /// the chunk into the batch buffer it sends. Batch buffers are recycled from the spill
    /// thread, which read them last: the encoder's stores into them waited for their cache
    /// lines to come back from the other core, in some runs and not others (`perf`: the
    /// encoding took 25 ms per million records in fast runs of spill seq, 150 ms in slow
    /// ones). A chunk encoded here stays in this core's cache, and one copy moves it.
    static SCRATCH: RefCell<Batch> = RefCell::new(Batch::default());
}

impl<T: Send + 'static> Items<T> for Many<T> {
    fn count_items(&self) -> usize {
        self.0.len()
    }

    /// Through the thread's scratch batch, [`SCRATCH_BYTES`] at a time (see [`SCRATCH`]).
    fn encode_items(&self, shared: &Shared<T>, batch: &mut Batch) -> Result<(), Error> {
        let through_scratch = SCRATCH.try_with(|scratch| {
            // In use only if the codec itself calls `put_all` from inside `encode`.
            let Ok(mut scratch) = scratch.try_borrow_mut() else {
                return None;
            };
            // Empty, unless a codec panicked part-way through the last batch.
            scratch.clear();
            let mut result = Ok(());
            for item in &self.0 {
                result = shared.encode(item, &mut scratch);
                if result.is_err() {
                    break;
                }
                if scratch.bytes.len() >= SCRATCH_BYTES {
                    batch.take_from(&mut scratch);
                }
            }
            batch.take_from(&mut scratch);
            if scratch.bytes.capacity() > 2 * SCRATCH_BYTES {
                // One large record must not keep its buffer for good.
                *scratch = Batch::default();
            }
            Some(result)
        });
        match through_scratch {
            Ok(Some(result)) => result,
            // The thread is exiting (a `put_all` from a thread-local's destructor), or the
            // scratch batch is in use further up this thread's stack.
            _ => self
                .0
                .iter()
                .try_for_each(|item| shared.encode(item, batch)),
        }
    }

    fn into_ring(self, ring: &mut VecDeque<Slot<T>>) {
        ring.extend(self.0.into_iter().map(|item| Slot::Item {
            item,
            written: Written::No,
        }));
    }

    /// Never: a batch must stay contiguous, and lane pushes from two producers interleave.
    fn into_lane(self, _lane: &Lane<T>) -> Result<(), Self> {
        Err(self)
    }
}

/// A refused put, before the item was accepted; it comes back.
enum Refused<T> {
    Full(T),
    Closed(T),
    Failed(T, Error),
}

impl<T> Refused<T> {
    fn into_error(self) -> Error {
        match self {
            Self::Full(_) => Error::Full,
            Self::Closed(_) => Error::Closed,
            Self::Failed(_, error) => error,
        }
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Queue<T> {
    /// Opens, or creates, the queue kept in directory `dir`, with the default options.
    ///
    /// # Errors
    ///
    /// [`Error::Locked`] if another open queue holds `dir`; [`Error::Io`], [`Error::Corrupt`]
    /// or [`Error::UnsupportedVersion`] if it cannot be used.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::<u32>::open(dir.path())?;
    /// assert!(matches!(spillq::Queue::<u32>::open(dir.path()), Err(spillq::Error::Locked { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, Error> {
        Builder::new(dir.as_ref()).open()
    }

    /// A [`Builder`] to open the queue in `dir` with other options.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::<u32>::builder(dir.path()).cache_size(10).open()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder(dir: impl AsRef<Path>) -> Builder<T> {
        Builder::new(dir.as_ref())
    }
}

impl<T: Send + 'static> Queue<T> {
    pub(crate) fn from_parts(
        dir: &Path,
        config: Config,
        codec: Box<dyn Codec<T>>,
    ) -> Result<Self, Error> {
        let log = Log::open_with(dir, config.segment_size_bytes, Arc::clone(&config.storage))?;
        let next_sequence = log.next_sequence();
        let read_sequence = log.recovered_read_sequence();
        // Items that were out for acknowledgement before the cursor come first.
        let mut ring = VecDeque::new();
        let mut undecodable = 0;
        for &sequence in log.recovered_unacked() {
            let mut reader = LogReader::new(Arc::clone(log.shared()), sequence);
            reader.read_batch(1, |found, bytes| {
                if found == sequence {
                    ring.push_back(decode_record(
                        &*codec,
                        dir,
                        sequence,
                        bytes,
                        &mut undecodable,
                    ));
                }
            })?;
        }
        let signals = Arc::new(Signals::new(
            ReadCursor {
                sequence: read_sequence,
                unacked: log.recovered_unacked().to_vec(),
            },
            next_sequence,
        ));
        let (commands, receiver) = crossbeam_channel::bounded(COMMAND_CAPACITY);
        let durability = config.durability;
        let checkpoint_every_removals = config.checkpoint_every_removals;
        let lane = Lane::new(&config);
        let shared = Arc::new(Shared {
            lane,
            state: Mutex::new(State {
                returned: ring.iter().filter_map(Slot::sequence).collect(),
                ring,
                next_sequence,
                loaded: read_sequence,
                unwritten: 0,
                reader: Some(log.reader()),
                unacked: BTreeSet::new(),
                deliveries_out: 0,
                epoch: 0,
                closed: false,
                consumers_waiting: 0,
                lane_open: false,
                pops_open: false,
                removals: 0,
                cursor_at_wake: None,
                producers_waiting: 0,
                codec_failures: Vec::new(),
                undecodable,
            }),
            not_empty: Default::default(),
            not_full: Default::default(),
            config,
            codec,
            log: Arc::clone(log.shared()),
            signals: Arc::clone(&signals),
            commands,
            spill_thread: Mutex::new(None),
            handles: AtomicUsize::new(1),
            spilling: AtomicBool::new(false),
            puts: AtomicU64::new(0),
            checkpoint_state: log.checkpoint_state(),
        });
        let spill = Spill::new(
            Arc::downgrade(&shared),
            signals,
            log,
            receiver,
            durability,
            checkpoint_every_removals,
        );
        shared.settle(&mut shared.lock());
        let thread = std::thread::Builder::new()
            .name("spillq-spill".into())
            .spawn(move || spill.run())
            .map_err(|e| Error::io(dir, e))?;
        *shared
            .spill_thread
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(thread);
        Ok(Self { shared })
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.shared.lock()
    }

    /// Appends `item`. Blocks while the queue holds `max_len` items, and under
    /// [`Durability::EveryPut`](crate::Durability::EveryPut) until the item is fsynced.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`]; [`Error::Codec`] or [`Error::TooLarge`] if the item must be encoded now
    /// and cannot be (the queue goes on); [`Error::Io`] or [`Error::Poisoned`] if the disk failed.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::open(dir.path())?;
    /// queue.put(vec![1, 2, 3])?;
    /// assert_eq!(queue.get()?, vec![1, 2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn put(&self, item: T) -> Result<(), Error> {
        self.put_inner(item, Wait::Until(None))
            .map_err(Refused::into_error)
    }

    /// Appends `item` if the queue has room now; never waits for room.
    ///
    /// # Errors
    ///
    /// The item comes back in the error: [`TryPutError::Full`] at `max_len`,
    /// [`TryPutError::Closed`], or [`TryPutError::Failed`] with the reason.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::builder(dir.path()).max_len(1).open()?;
    /// queue.try_put(1)?;
    /// let refused = queue.try_put(2).unwrap_err();
    /// assert!(refused.is_full());
    /// assert_eq!(refused.into_inner(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_put(&self, item: T) -> Result<(), TryPutError<T>> {
        self.put_inner(item, Wait::No)
            .map_err(|refused| match refused {
                Refused::Full(item) => TryPutError::Full(item),
                Refused::Closed(item) => TryPutError::Closed(item),
                Refused::Failed(item, error) => TryPutError::Failed(item, error),
            })
    }

    /// Appends `item`, waiting up to `timeout` for room.
    ///
    /// # Errors
    ///
    /// The item comes back in the error: [`PutTimeoutError::Full`] if there was no room in time,
    /// [`PutTimeoutError::Closed`], or [`PutTimeoutError::Failed`] with the reason.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// use std::time::Duration;
    /// let queue = spillq::Queue::builder(dir.path()).max_len(1).open()?;
    /// queue.put_timeout(1, Duration::from_millis(10))?;
    /// assert!(queue.put_timeout(2, Duration::from_millis(10)).unwrap_err().is_full());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutTimeoutError<T>> {
        self.put_inner(item, Wait::for_timeout(timeout))
            .map_err(|refused| match refused {
                Refused::Full(item) => PutTimeoutError::Full(item),
                Refused::Closed(item) => PutTimeoutError::Closed(item),
                Refused::Failed(item, error) => PutTimeoutError::Failed(item, error),
            })
    }

    /// Waits for room for `count` items (a batch larger than `max_len` waits for an empty
    /// queue). Returns the guard, or why not.
    fn wait_for_room<'a>(
        &'a self,
        mut state: Guard<'a, T>,
        count: usize,
        wait: Wait,
    ) -> Result<Guard<'a, T>, NoRoom> {
        let shared = &*self.shared;
        loop {
            if state.closed {
                return Err(NoRoom::Closed);
            }
            if !self.is_full(&state, count) {
                return Ok(state);
            }
            let Some(deadline) = wait.deadline() else {
                return Err(NoRoom::Full);
            };
            state.producers_waiting += 1;
            let (guard, timed_out) = shared.wait(&shared.not_full, state, deadline);
            state = guard;
            state.producers_waiting -= 1;
            if timed_out && !state.closed && self.is_full(&state, count) {
                return Err(NoRoom::Full);
            }
        }
    }

    /// Whether `count` more items would pass `max_len` (items out for acknowledgement count).
    /// A batch larger than `max_len` fits once the queue is empty.
    fn is_full(&self, state: &State<T>, count: usize) -> bool {
        self.shared.config.max_len.is_some_and(|max| {
            let len = state.len() + state.deliveries_out;
            len > 0 && len + count > max
        })
    }

    /// The one path of `put`, `try_put`, `put_timeout` and `put_all`.
    ///
    /// When the item will probably go to disk it is encoded before the lock is taken, so
    /// producers encode in parallel; a wrong guess costs an encoding, or a second pass. A
    /// codec failure refuses the items only if they really must be encoded now.
    fn put_inner<I: Items<T>>(&self, items: I, wait: Wait) -> Result<(), Refused<I>> {
        let shared = &*self.shared;
        // The common case: memory has room and nothing is on disk; no lock. (A writer that
        // has failed sends every put the long way, to meet the failure.)
        let items = if shared.signals.failed.load(Ordering::Acquire) {
            items
        } else {
            match items.into_lane(&shared.lane) {
                Ok(()) => {
                    self.after_lane_push();
                    return Ok(());
                }
                Err(items) => items,
            }
        };
        self.put_locked(items, wait)
    }

    /// The rest of `put_inner`, under the lock: a function of its own, so that the lane's
    /// path stays small.
    #[inline(never)]
    fn put_locked<I: Items<T>>(&self, items: I, wait: Wait) -> Result<(), Refused<I>> {
        let shared = &*self.shared;
        let every_put = shared.every_put();
        let count = items.count_items();
        let mut encoded: Option<Result<Batch, Error>> = None;
        let mut encode_first = every_put || shared.spilling.load(Ordering::Relaxed);
        loop {
            if encode_first && encoded.is_none() {
                let mut batch = shared.signals.batch();
                let result = items.encode_items(shared, &mut batch);
                if result.is_ok() {
                    // Before the lock, holding no sequence numbers (see `Signals::reserve`).
                    batch.reserve(&shared.signals);
                }
                encoded = Some(result.map(|()| batch));
            }
            let mut state = match self.wait_for_room(self.lock(), count, wait) {
                Ok(state) => state,
                Err(NoRoom::Full) => return Err(Refused::Full(items)),
                Err(NoRoom::Closed) => return Err(Refused::Closed(items)),
            };
            // Nothing may enter through the lane while this put decides where its items go:
            // they must come after every lane item, and lane items must stay in memory.
            shared.close_lane(&mut state);
            // After a failed fsync nothing new is taken, not even into memory: it could never
            // be made durable.
            if let Some(failure @ Failure::Poisoned(_)) = shared.signals.failure() {
                return Err(Refused::Failed(items, failure.to_error()));
            }
            // Under EveryPut every item goes through disk, so the caller keeps it until it is
            // durable and gets it back if it cannot be made so.
            if !every_put && shared.routes_to_memory(&state, count) {
                shared.shut_pops(&mut state);
                items.into_ring(&mut state.ring);
                state.unwritten += count;
                self.after_put(&mut state, count);
                return Ok(());
            }
            let bytes = match encoded.take() {
                Some(Ok(bytes)) => bytes,
                Some(Err(error)) => return Err(Refused::Failed(items, error)),
                None => {
                    encode_first = true;
                    continue;
                }
            };
            if let Some(failure) = shared.signals.failure() {
                return Err(Refused::Failed(items, failure.to_error()));
            }
            let mut batch = if state.unwritten == 0 {
                // The usual case while spilling: the encoded batch goes as it is.
                let mut batch = bytes;
                batch.first_sequence = state.next_sequence;
                batch
            } else {
                let mut batch = Batch::new(state.next_sequence);
                shared.write_unwritten(&mut state, &mut batch);
                batch.extend(bytes);
                batch
            };
            batch.durable = every_put;
            if every_put {
                batch.producer = crate::spill::producer_id();
            }
            state.next_sequence = batch.end_sequence();
            let end = state.next_sequence;
            self.after_put(&mut state, count);
            drop(state);
            if shared.send(batch).is_err() {
                return Err(Refused::Closed(items));
            }
            if every_put && let Err(error) = shared.signals.wait_durable(end) {
                return Err(Refused::Failed(items, error));
            }
            return Ok(());
        }
    }

    /// After an item went through the lane: wake a consumer that sleeps, or is about to.
    fn after_lane_push(&self) {
        let shared = &*self.shared;
        if shared.lane.wake_wanted() {
            // Under the lock, so the consumer is either asleep or has not looked yet.
            drop(shared.lock_only());
            shared.not_empty.notify_one();
        }
    }

    fn after_put(&self, state: &mut State<T>, count: usize) {
        self.shared.puts.fetch_add(1, Ordering::Release);
        self.shared.settle(state);
        if state.consumers_waiting > 0 {
            if count == 1 {
                self.shared.not_empty.notify_one();
            } else {
                self.shared.not_empty.notify_all();
            }
        }
    }

    /// Appends every item of `items`, in order and contiguous: no other producer's item lands
    /// inside the batch. Under [`Durability::EveryPut`](crate::Durability::EveryPut) the whole batch costs one fsync.
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put). If any item cannot be encoded, none is put.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::open(dir.path())?;
    /// queue.put_all([1, 2, 3])?;
    /// assert_eq!(queue.get_batch(10, std::time::Duration::ZERO)?, vec![1, 2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn put_all(&self, items: impl IntoIterator<Item = T>) -> Result<(), Error> {
        let items: Vec<T> = items.into_iter().collect();
        if items.is_empty() {
            return if self.lock().closed {
                Err(Error::Closed)
            } else {
                Ok(())
            };
        }
        self.put_inner(Many(items), Wait::Until(None))
            .map_err(Refused::into_error)
    }

    /// Removes the head slot, waiting as `wait` allows. `Ok(None)`: nothing in time.
    fn take<'a>(&'a self, wait: Wait) -> Result<(Guard<'a, T>, Option<Slot<T>>), Error> {
        let mut state = self.wait_for_head(wait)?;
        let slot = self.shared.pop_head(&mut state);
        Ok((state, slot))
    }

    /// Waits until the queue has a head (in the ring, refilled from disk if need be, or in the
    /// lane), or `wait` runs out. The lane is left as it is: consumers take from it directly
    /// once the ring is empty (`Shared::pop_head`), so a consumer that keeps up keeps the
    /// ring empty and the lane open.
    fn wait_for_head(&self, wait: Wait) -> Result<MutexGuard<'_, State<T>>, Error> {
        let shared = &*self.shared;
        let mut state = shared.lock_only();
        loop {
            if state.closed {
                return Err(Error::Closed);
            }
            if state.ring.is_empty() && state.disk_only() > 0 {
                shared.refill(&mut state)?;
                if state.ring.is_empty() && state.disk_only() > 0 {
                    // The records are on their way to disk (already accepted, so even `try_`
                    // calls wait for them). Register, then look once more, so the spill thread
                    // either sees us waiting or we see its progress.
                    shared.signals.disk_waiters.fetch_add(1, Ordering::SeqCst);
                    let mut refilled = shared.refill(&mut state);
                    if refilled.is_ok() && state.ring.is_empty() && state.disk_only() > 0 {
                        if let Some(failure) = shared.signals.failure() {
                            refilled = Err(failure.to_error());
                        } else {
                            // No deadline: these items are in the queue already, only in
                            // flight, or appended and not yet written. In that case ask the
                            // spill thread to write them (if the channel is full it has rounds
                            // ahead, each of which sees this consumer waiting).
                            if shared.signals.unwritten.load(Ordering::SeqCst) {
                                let _ = shared.commands.try_send(Command::Wake);
                            }
                            state = shared.wait(&shared.not_empty, state, None).0;
                        }
                    }
                    shared.signals.disk_waiters.fetch_sub(1, Ordering::SeqCst);
                    refilled?;
                    continue;
                }
            }
            if !state.ring.is_empty() {
                return Ok(state);
            }
            if !shared.lane.is_empty() {
                // Shut out consumers without the lock first, then look again: what this sees
                // in the lane stays there for this lock holder (until `settle` reopens).
                shared.shut_pops(&mut state);
                if !shared.lane.is_empty() {
                    return Ok(state);
                }
            }
            let Some(deadline) = wait.deadline() else {
                return Ok(state);
            };
            // A producer is often a moment away: watch for a put without the lock for a few
            // microseconds before going to sleep (a sleep and a wake-up cost far more).
            let seen = shared.puts.load(Ordering::Acquire);
            drop(state);
            let put_meanwhile = spin_until(|| {
                shared.puts.load(Ordering::Acquire) != seen || !shared.lane.is_empty()
            });
            state = shared.lock_only();
            if put_meanwhile
                || !state.ring.is_empty()
                || !shared.lane.is_empty()
                || state.disk_only() > 0
                || state.closed
            {
                continue;
            }
            state.consumers_waiting += 1;
            // Counted first, then one more look at the lane (see `Lane::register_waiter`).
            let (guard, timed_out) = if shared.lane.register_waiter() {
                shared.wait(&shared.not_empty, state, deadline)
            } else {
                (state, false)
            };
            state = guard;
            shared.lane.unregister_waiter();
            state.consumers_waiting -= 1;
            if timed_out
                && state.ring.is_empty()
                && shared.lane.is_empty()
                && state.disk_only() == 0
            {
                return if state.closed {
                    Err(Error::Closed)
                } else {
                    Ok(state)
                };
            }
        }
    }

    /// Turns a removed slot into the caller's item, publishing the removal.
    fn finish_take(&self, state: &mut State<T>, slot: Slot<T>) -> Result<T, Error> {
        self.shared.removed(state, 1);
        match slot {
            Slot::Item { item, .. } => Ok(item),
            Slot::Undecodable {
                sequence,
                moved_to,
                message,
            } => Err(Error::Codec {
                sequence: Some(sequence),
                moved_to,
                source: message.into(),
            }),
        }
    }

    fn get_inner(&self, wait: Wait) -> Result<Option<T>, Error> {
        // While the ring is empty and the lane is in use, the head is the lane's: taken
        // without the lock, and with nothing to record (an item only in memory leaves the
        // read cursor where it was).
        if let Some(item) = self.shared.lane.pop_without_lock() {
            return Ok(Some(item));
        }
        let (mut state, slot) = self.take(wait)?;
        slot.map(|slot| self.finish_take(&mut state, slot))
            .transpose()
    }

    /// Removes and returns the head item, waiting until there is one.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] (also when the queue is closed while waiting); [`Error::Codec`] if the
    /// head record does not decode as `T`: that record is moved aside to the `undecodable/`
    /// folder of the queue directory, and the next call goes on with the next item.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::open(dir.path())?;
    /// let producer = queue.clone();
    /// std::thread::spawn(move || producer.put(42));
    /// assert_eq!(queue.get()?, 42);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self) -> Result<T, Error> {
        self.get_inner(Wait::Until(None))?.ok_or(Error::Closed)
    }

    /// Removes and returns the head item if there is one now.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::<u8>::open(dir.path())?;
    /// assert_eq!(queue.try_get()?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_get(&self) -> Result<Option<T>, Error> {
        self.get_inner(Wait::No)
    }

    /// Removes and returns the head item, waiting up to `timeout`; `None` if none came.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::<u8>::open(dir.path())?;
    /// assert_eq!(queue.get_timeout(std::time::Duration::from_millis(5))?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<Option<T>, Error> {
        self.get_inner(Wait::for_timeout(timeout))
    }

    /// Removes and returns up to `max` items: waits up to `timeout` for the first, then takes
    /// what is there without waiting.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get). A record that does not decode ends the batch before it; the next
    /// call reports it.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::open(dir.path())?;
    /// queue.put_all(0..5)?;
    /// assert_eq!(queue.get_batch(3, std::time::Duration::ZERO)?, vec![0, 1, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_batch(&self, max: usize, timeout: Duration) -> Result<Vec<T>, Error> {
        let mut items = Vec::new();
        if max == 0 {
            return Ok(items);
        }
        let shared = &*self.shared;
        let mut state = self.wait_for_head(Wait::for_timeout(timeout))?;
        while items.len() < max {
            if state.ring.is_empty() && state.disk_only() > 0 {
                shared.refill(&mut state)?;
            }
            if !items.is_empty() && matches!(state.ring.front(), Some(Slot::Undecodable { .. })) {
                // Reported by the next call, on its own.
                break;
            }
            if state.take_items(max - items.len(), &mut items) > 0 {
                continue;
            }
            match shared.pop_head(&mut state) {
                Some(Slot::Item { item, .. }) => items.push(item),
                Some(undecodable) => {
                    return self
                        .finish_take(&mut state, undecodable)
                        .map(|item| vec![item]);
                }
                None => break,
            }
        }
        if !items.is_empty() {
            shared.removed(&mut state, items.len() as u64);
        }
        Ok(items)
    }

    fn peek_inner(&self, wait: Wait) -> Result<Option<T>, Error> {
        let mut state = self.wait_for_head(wait)?;
        self.shared.absorb_lane(&mut state);
        match state.ring.front() {
            None => Ok(None),
            Some(Slot::Item { item, .. }) => {
                // A copy through the codec, so `T` need not be `Clone`.
                let mut batch = Batch::new(0);
                self.shared.encode(item, &mut batch)?;
                self.shared
                    .codec
                    .decode(&batch.bytes)
                    .map(Some)
                    .map_err(|source| Error::Codec {
                        sequence: None,
                        moved_to: None,
                        source,
                    })
            }
            Some(Slot::Undecodable {
                sequence,
                moved_to,
                message,
            }) => Err(Error::Codec {
                sequence: Some(*sequence),
                moved_to: moved_to.clone(),
                source: message.clone().into(),
            }),
        }
    }

    /// The head item, not removed; `None` if the queue is empty. Never waits. The item is a
    /// copy made through the codec (so `T` need not be `Clone`).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`]; [`Error::Codec`] if the head does not encode or decode (an undecodable
    /// record leaves on the next `get` or `delete`).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::open(dir.path())?;
    /// assert_eq!(queue.peek()?, None);
    /// queue.put(1)?;
    /// assert_eq!(queue.peek()?, Some(1));
    /// assert_eq!(queue.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn peek(&self) -> Result<Option<T>, Error> {
        self.peek_inner(Wait::No)
    }

    /// As [`peek`](Self::peek), waiting up to `timeout` for an item.
    ///
    /// # Errors
    ///
    /// As [`peek`](Self::peek).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::<u8>::open(dir.path())?;
    /// assert_eq!(queue.peek_timeout(std::time::Duration::from_millis(5))?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn peek_timeout(&self, timeout: Duration) -> Result<Option<T>, Error> {
        self.peek_inner(Wait::for_timeout(timeout))
    }

    /// Removes up to `n` head items without decoding them; returns how many. With
    /// [`peek`](Self::peek) this is the seeds' loop: peek, process, delete on success.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::open(dir.path())?;
    /// queue.put_all([1, 2, 3])?;
    /// assert_eq!(queue.delete(2)?, 2);
    /// assert_eq!(queue.delete(5)?, 1);
    /// assert_eq!(queue.delete(1)?, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete(&self, n: usize) -> Result<usize, Error> {
        let mut state = self.lock();
        if state.closed {
            return Err(Error::Closed);
        }
        let mut removed = 0;
        while removed < n && state.pop_front().is_some() {
            removed += 1;
        }
        let from_disk = usize::try_from(state.disk_only())
            .unwrap_or(usize::MAX)
            .min(n - removed);
        state.loaded += from_disk as u64;
        removed += from_disk;
        self.shared.removed(&mut state, removed as u64);
        Ok(removed)
    }

    fn get_ack_inner(&self, wait: Wait) -> Result<Option<Delivery<T>>, Error> {
        let shared = &*self.shared;
        let (mut state, slot) = self.take(wait)?;
        let (item, written) = match slot {
            None => return Ok(None),
            Some(Slot::Item { item, written }) => (item, written),
            Some(undecodable) => return self.finish_take(&mut state, undecodable).map(|_| None),
        };
        // Out with a consumer, the item must survive a crash: write it now if only in memory.
        // It is the head, so every other unwritten item comes after it and order holds.
        let mut batch = Batch::new(state.next_sequence);
        let sequence = match written {
            Written::At(sequence) => Some(sequence),
            Written::Never => None,
            Written::No => match shared.encode(&item, &mut batch) {
                Ok(()) => {
                    let sequence = state.next_sequence;
                    state.next_sequence += 1;
                    state.loaded = state.next_sequence;
                    Some(sequence)
                }
                Err(_) => None,
            },
        };
        if let Some(sequence) = sequence {
            state.unacked.insert(sequence);
        }
        state.deliveries_out += 1;
        let epoch = state.epoch;
        shared.settle(&mut state);
        shared.signals.set_read(state.read_cursor());
        drop(state);
        shared.send(batch)?;
        Ok(Some(Delivery::new(
            Arc::clone(&self.shared),
            item,
            sequence,
            epoch,
        )))
    }

    /// Takes the head item for acknowledged delivery, waiting until there is one. The item is
    /// out with this consumer only; see [`Delivery`].
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::open(dir.path())?;
    /// queue.put(5)?;
    /// let delivery = queue.get_ack()?;
    /// assert_eq!(*delivery, 5);
    /// drop(delivery); // not acknowledged: back at the head
    /// assert_eq!(queue.get()?, 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_ack(&self) -> Result<Delivery<T>, Error> {
        self.get_ack_inner(Wait::Until(None))?.ok_or(Error::Closed)
    }

    /// As [`get_ack`](Self::get_ack), without waiting.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::<u8>::open(dir.path())?;
    /// assert!(queue.try_get_ack()?.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_get_ack(&self) -> Result<Option<Delivery<T>>, Error> {
        self.get_ack_inner(Wait::No)
    }

    /// As [`get_ack`](Self::get_ack), waiting up to `timeout`.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::<u8>::open(dir.path())?;
    /// assert!(queue.get_ack_timeout(std::time::Duration::from_millis(5))?.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_ack_timeout(&self, timeout: Duration) -> Result<Option<Delivery<T>>, Error> {
        self.get_ack_inner(Wait::for_timeout(timeout))
    }

    /// A blocking iterator over removed items; it ends when the queue is closed.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::open(dir.path())?;
    /// queue.put_all([1, 2])?;
    /// let closer = queue.clone();
    /// std::thread::spawn(move || {
    ///     std::thread::sleep(std::time::Duration::from_millis(20));
    ///     closer.close()
    /// });
    /// let items: Vec<i32> = queue.iter().collect::<Result<_, _>>()?;
    /// assert_eq!(items, [1, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn iter(&self) -> Iter<'_, T> {
        Iter {
            queue: self,
            wait: Wait::Until(None),
        }
    }

    /// An iterator over the items there now; it ends when the queue is empty (or closed).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::open(dir.path())?;
    /// queue.put_all([1, 2])?;
    /// let items: Vec<i32> = queue.try_iter().collect::<Result<_, _>>()?;
    /// assert_eq!(items, [1, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_iter(&self) -> Iter<'_, T> {
        Iter {
            queue: self,
            wait: Wait::No,
        }
    }

    /// Items in the queue, memory and disk together; exact whenever no call is in flight.
    /// Items out with an unacknowledged [`Delivery`] are not counted (see [`Stats::unacked`]).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::open(dir.path())?;
    /// queue.put_all(["a", "b"].map(String::from))?;
    /// assert_eq!(queue.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether [`len`](Self::len) is 0.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::<u8>::open(dir.path())?;
    /// assert!(queue.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counts and sizes: items in memory and on disk, segments, bytes on disk, records skipped
    /// as corrupt, fsyncs.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::builder(dir.path()).cache_size(1).open()?;
    /// queue.put_all([1, 2, 3])?;
    /// let stats = queue.stats();
    /// assert_eq!((stats.len, stats.in_memory, stats.on_disk), (3, 0, 3));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stats(&self) -> Stats {
        let state = self.lock();
        let log = &self.shared.log;
        Stats {
            len: state.len(),
            in_memory: state.ring.len(),
            on_disk: state.disk_only(),
            unacked: state.deliveries_out,
            segments: log.progress().segments.len(),
            disk_bytes: log.disk_bytes.load(Ordering::Relaxed),
            skipped: log.skipped.load(Ordering::Relaxed),
            undecodable: state.undecodable,
            fsyncs: log.fsyncs.load(Ordering::Relaxed),
            next_sequence: state.next_sequence,
            read_sequence: state.cursor(),
            checkpoint: self.shared.checkpoint_state,
        }
    }

    /// Returns once every item put before the call and not yet removed, and the read cursor,
    /// are on stable storage.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`]; [`Error::Io`] or [`Error::Poisoned`] if the disk failed;
    /// [`Error::Codec`] if an item held in memory could not be encoded (it stays in memory
    /// only, and every other item reached disk).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::open(dir.path())?;
    /// queue.put(1)?;
    /// queue.sync()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sync(&self) -> Result<(), Error> {
        let (reply, failures) =
            self.request(|up_to, reply| Command::Sync { up_to, reply }, false)?;
        reply?;
        failures
    }

    /// Sends the ring's unwritten items and then `command`; waits for its reply.
    #[allow(clippy::type_complexity)]
    fn request(
        &self,
        command: impl FnOnce(u64, crossbeam_channel::Sender<Result<(), Error>>) -> Command,
        close: bool,
    ) -> Result<(Result<(), Error>, Result<(), Error>), Error> {
        let shared = &*self.shared;
        let mut state = self.lock();
        if state.closed {
            return Err(Error::Closed);
        }
        if close {
            // Items already in the lane are in the queue; none may enter after this.
            shared.close_lane(&mut state);
        }
        let mut batch = Batch::new(state.next_sequence);
        shared.write_unwritten(&mut state, &mut batch);
        let failures = std::mem::take(&mut state.codec_failures);
        let up_to = state.next_sequence;
        if close {
            state.closed = true;
            shared.settle(&mut state);
            shared.not_empty.notify_all();
            shared.not_full.notify_all();
        }
        drop(state);
        shared.send(batch)?;
        let (reply, answer) = crossbeam_channel::bounded(1);
        shared
            .commands
            .send(command(up_to, reply))
            .map_err(|_| Error::Closed)?;
        let result = answer.recv().unwrap_or(Err(Error::Closed));
        let failures = match failures.into_iter().next() {
            Some(source) => Err(Error::Codec {
                sequence: None,
                moved_to: None,
                source,
            }),
            None => Ok(()),
        };
        Ok((result, failures))
    }

    /// Removes every item, durably.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`]; [`Error::Io`] or [`Error::Poisoned`] if the disk failed.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::open(dir.path())?;
    /// queue.put_all([1, 2, 3])?;
    /// queue.clear()?;
    /// assert!(queue.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clear(&self) -> Result<(), Error> {
        let shared = &*self.shared;
        let mut state = self.lock();
        if state.closed {
            return Err(Error::Closed);
        }
        state.ring.clear();
        state.unwritten = 0;
        state.loaded = state.next_sequence;
        state.unacked.clear();
        state.returned.clear();
        state.deliveries_out = 0;
        state.epoch += 1;
        state.codec_failures.clear();
        let up_to = state.next_sequence;
        shared.removed(&mut state, 0);
        drop(state);
        let (reply, answer) = crossbeam_channel::bounded(1);
        shared
            .commands
            .send(Command::Clear { up_to, reply })
            .map_err(|_| Error::Closed)?;
        answer.recv().unwrap_or(Err(Error::Closed))
    }

    /// Syncs, stops the spill thread and releases the directory. Blocked callers wake with
    /// [`Error::Closed`], and every later call on any clone gets it. Dropping the last clone
    /// closes the same way but cannot report errors.
    ///
    /// # Errors
    ///
    /// As [`sync`](Self::sync); [`Error::Closed`] if already closed.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::open(dir.path())?;
    /// queue.put(1)?;
    /// queue.close()?;
    /// assert!(matches!(queue.put(2), Err(spillq::Error::Closed)));
    /// let queue = spillq::Queue::<i32>::open(dir.path())?;
    /// assert_eq!(queue.get()?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(&self) -> Result<(), Error> {
        let shared = &*self.shared;
        let outcome = self.request(|up_to, reply| Command::Shutdown { up_to, reply }, true);
        if let Some(thread) = shared
            .spill_thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = thread.join();
        }
        {
            // Release memory: the items are on disk now.
            let mut state = self.lock();
            state.ring.clear();
            state.reader = None;
        }
        let (reply, failures) = outcome?;
        reply?;
        failures
    }
}

impl<T: Send + 'static> Clone for Queue<T> {
    fn clone(&self) -> Self {
        self.shared.handles.fetch_add(1, Ordering::Relaxed);
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T: Send + 'static> Drop for Queue<T> {
    fn drop(&mut self) {
        if self.shared.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _ = self.close();
        }
    }
}

impl<T: Send + 'static> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("dir", &self.shared.log.dir)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

/// Spins, then yields, for a short while until `done` holds. Returns whether it did.
fn spin_until(done: impl Fn() -> bool) -> bool {
    const YIELDS: u32 = 10;
    for step in 0..SPIN_STEPS + YIELDS {
        if done() {
            return true;
        }
        pause(step);
    }
    done()
}

/// Iterator over removed items, from [`Queue::iter`] (blocking) or [`Queue::try_iter`].
/// Yields `Err` for an item that fails to decode and goes on after it.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let queue = spillq::Queue::open(dir.path())?;
/// queue.put_all(["x", "y"].map(String::from))?;
/// let mut items = queue.try_iter();
/// assert_eq!(items.next().transpose()?, Some("x".to_string()));
/// assert_eq!(items.next().transpose()?, Some("y".to_string()));
/// assert!(items.next().is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Iter<'a, T: Send + 'static> {
    queue: &'a Queue<T>,
    wait: Wait,
}

impl fmt::Debug for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::No => f.write_str("No"),
            Self::Until(_) => f.write_str("Until"),
        }
    }
}

impl<T: Send + 'static> Iterator for Iter<'_, T> {
    type Item = Result<T, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.queue.get_inner(self.wait) {
            Ok(Some(item)) => Some(Ok(item)),
            Ok(None) | Err(Error::Closed) => None,
            Err(error) => Some(Err(error)),
        }
    }
}
