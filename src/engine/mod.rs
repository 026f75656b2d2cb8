//! The engine: the queue's state and the rules every operation follows. The facade
//! (`queue.rs`, `delivery.rs`) only delegates here.
//!
//! One mutex guards the whole state ([`State`]): the memory ring, where disk-only records start,
//! the spill buffer and layout, the consumers' bookkeeping. Every operation takes it for a short
//! while; the I/O happens on the spill thread without it. Waiting callers sleep on one of four
//! conditions: `items` (consumers), `room` (producers at `max_len`, or waiting for a segment),
//! `progress` (`EveryPut` fsyncs, `sync`), and the spill thread's own.
//!
//! While the queue runs in memory only, its items live in the lane (`spill/lane.rs`), a
//! lock-free ring that producers push to and consumers pop from without the lock ("fast
//! mode"). Its gates are open only while the ring is empty, nothing is disk-only, and no item
//! given back waits; anything else first closes them and moves what the lane holds into the
//! ring (`leave_fast`), under the lock; a consumer that empties the ring opens them again
//! (`enter_fast`). Queues with `max_len` or `EveryPut` never use the lane.
//!
//! Invariants (under the lock):
//! - Log records `[loaded, next_sequence)` are only on disk ("disk-only"); every record before
//!   `loaded` is in the ring, out with a consumer, or removed.
//! - Items never written sit at the young end of the ring, and only while nothing is
//!   disk-only: a new item goes to the ring if nothing is disk-only and the ring has room;
//!   otherwise to disk, after the ring's unwritten items are written (so the log keeps queue
//!   order, and a reopen gives it back).

mod get;
mod lifecycle;
mod poll;
mod put;
mod undecodable;

pub(crate) use get::Handed;
pub use lifecycle::Stats;
pub(crate) use poll::{PutState, Registration, SyncState};
pub(crate) use put::{Many, Refused, Wait};

use crate::codec::Codec;
use crate::config::{Config, Durability};
use crate::error::{CodecError, Error};
use crate::log::{CheckpointState, Counters, LogReader, LogWriter, SharedStorage};
use crate::spill::buffer::{AppendError, BufferCursor, SpillBuffer, Want};
use crate::spill::lane::Lane;
use crate::spill::ring::{Ring, Slot, Written};
use crate::spill::{Events, Host, ReadCursor, Settings, Spill, SpillThread};
use crate::wake::WakerList;
use std::collections::BTreeSet;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

/// The state behind the queue's mutex. See the module docs.
pub(crate) struct State<T> {
    ring: Ring<T>,
    /// Records before this one are in memory, out with a consumer, or removed.
    loaded: u64,
    spill: Spill,
    reader: LogReader,
    /// Where a consumer reading records not yet written stands in the spill buffer.
    buffered: BufferCursor,
    /// Where the file reader should look for record `loaded` once it is written.
    position_hint: Option<(u64, (u64, usize))>,
    /// Sequence numbers out with a `Delivery`.
    unacked: BTreeSet<u64>,
    /// Sequence numbers of items given back (by `nack`, or out when the queue last stopped)
    /// and waiting in the ring. Items after them may have been removed, so the checkpoint lists
    /// them instead of moving its cursor back.
    returned: BTreeSet<u64>,
    /// Deliveries out (with or without a sequence number).
    deliveries_out: usize,
    /// Bumped by `clear`, so a late `nack` of a cleared item does not bring it back.
    epoch: u64,
    closed: bool,
    /// Whether the lane's gates are open (fast mode; see the module docs).
    fast: bool,
    /// Callers asleep on each condition, and tasks waiting for it.
    consumers_waiting: usize,
    producers_waiting: usize,
    progress_waiting: usize,
    item_wakers: WakerList,
    room_wakers: WakerList,
    progress_wakers: WakerList,
    /// Items of the ring whose encoding failed, reported by the next `sync`.
    codec_failures: Vec<CodecError>,
    undecodable: u64,
}

impl<T> State<T> {
    fn disk_only(&self) -> u64 {
        self.spill.next_sequence() - self.loaded
    }

    fn len(&self) -> usize {
        self.ring.len() + usize::try_from(self.disk_only()).unwrap_or(usize::MAX)
    }

    /// The read cursor for a checkpoint: everything before it was removed except the records
    /// listed (out for acknowledgement, or given back and waiting in the ring).
    fn read_cursor(&self) -> ReadCursor {
        let mut unacked: Vec<u64> = self.unacked.union(&self.returned).copied().collect();
        unacked.sort_unstable();
        ReadCursor {
            sequence: self.cursor_ignoring_unacked(),
            unacked,
        }
    }

    /// The smallest sequence number not removed, counting unacknowledged ones.
    fn cursor(&self) -> u64 {
        let cursor = self.cursor_ignoring_unacked();
        let cursor = self
            .unacked
            .first()
            .map_or(cursor, |&first| cursor.min(first));
        self.returned
            .first()
            .map_or(cursor, |&first| cursor.min(first))
    }

    /// The oldest record in the ring (not given back), or `loaded`.
    fn cursor_ignoring_unacked(&self) -> u64 {
        for slot in self.ring.iter() {
            match slot.sequence() {
                Some(sequence) if self.returned.contains(&sequence) => {}
                Some(sequence) => return sequence.min(self.loaded),
                // Items never written come after every written one.
                None if matches!(
                    slot,
                    Slot::Item {
                        written: Written::No,
                        ..
                    }
                ) =>
                {
                    break;
                }
                None => {}
            }
        }
        self.loaded
    }
}

/// Everything the handles of one queue share.
pub(crate) struct Engine<T> {
    state: Mutex<State<T>>,
    /// The items of a queue in memory only, without the lock (see the module docs).
    lane: Lane<T>,
    items: Condvar,
    room: Condvar,
    progress: Condvar,
    spill_wake: Condvar,
    config: Config,
    codec: Box<dyn Codec<T>>,
    dir: PathBuf,
    counters: Arc<Counters>,
    checkpoint_state: CheckpointState,
    /// The queue's identity (`log::identity`).
    id: String,
    spill_thread: Mutex<Option<JoinHandle<()>>>,
    /// Live `Queue` handles; the last one to go closes the queue.
    handles: AtomicUsize,
    /// Puts through the lock so far: a consumer about to sleep watches it for a moment first.
    puts: AtomicU64,
}

/// Items the lane holds at most: the whole cache up to this, so that a queue of the default
/// size runs in memory without the lock, while a larger cache does not preallocate its slots.
const MAX_LANE: usize = 4096;

/// The locked state, as the spill thread sees it.
pub(crate) struct SpillGuard<'a, T>(MutexGuard<'a, State<T>>);

impl<T> Deref for SpillGuard<'_, T> {
    type Target = Spill;

    fn deref(&self) -> &Spill {
        &self.0.spill
    }
}

impl<T> DerefMut for SpillGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut Spill {
        &mut self.0.spill
    }
}

impl<T: Send + 'static> Host for Engine<T> {
    type Guard<'a> = SpillGuard<'a, T>;

    fn lock(&self) -> SpillGuard<'_, T> {
        SpillGuard(self.lock())
    }

    fn sleep<'a>(
        &'a self,
        guard: SpillGuard<'a, T>,
        deadline: Option<Instant>,
    ) -> SpillGuard<'a, T> {
        SpillGuard(self.wait(&self.spill_wake, guard.0, deadline).0)
    }

    fn write_memory(&self, guard: &mut SpillGuard<'_, T>) -> Result<(), Want> {
        self.leave_fast(&mut guard.0);
        self.write_memory(&mut guard.0, true)
    }

    fn read_cursor(&self, guard: &SpillGuard<'_, T>) -> ReadCursor {
        guard.0.read_cursor()
    }

    fn notify(&self, guard: &mut SpillGuard<'_, T>, events: Events) {
        let state = &mut guard.0;
        if events.progress {
            self.wake_progress(state);
            if state.spill.failure().is_some() {
                self.wake_consumers(state, usize::MAX);
            }
        }
        if events.space {
            self.wake_producers(state);
        }
    }
}

impl<T: Send + 'static> Engine<T> {
    /// Opens the queue in `dir`: recovers the log, reads back the items that were out for
    /// acknowledgement, and starts the spill thread.
    pub(crate) fn open(
        dir: &Path,
        config: Config,
        codec: Box<dyn Codec<T>>,
        storage: SharedStorage,
    ) -> Result<Arc<Self>, Error> {
        if let Some(cap) = config.max_disk_bytes {
            let least = config.segment_size_bytes + crate::log::FIXED_FILE_BYTES;
            if cap < least {
                return Err(Error::InvalidOption {
                    option: "max_disk_bytes",
                    reason: format!(
                        "{cap} bytes cannot hold one segment of {} bytes with the checkpoint \
                         and identity files; give at least {least}, or a smaller segment_size",
                        config.segment_size_bytes
                    ),
                });
            }
        }
        let counters = Arc::new(Counters::default());
        let (writer, opened) = LogWriter::open(dir, storage, Arc::clone(&counters))?;
        let dir = writer.dir().to_owned();
        // Items that were out for acknowledgement come first.
        let mut ring = Ring::default();
        let mut undecodable = 0;
        for &sequence in &opened.unacked {
            let mut reader = LogReader::new(dir.clone(), Arc::clone(&counters), sequence);
            reader.read(&opened.progress, 1, |found, bytes| {
                if found == sequence {
                    ring.push_read(undecodable::decode(
                        &*codec,
                        &dir,
                        sequence,
                        bytes,
                        &mut undecodable,
                    ));
                }
            })?;
        }
        let returned = ring.iter().filter_map(Slot::sequence).collect();
        let settings = Settings {
            durability: config.durability,
            segment_size: config.segment_size_bytes,
            checkpoint_every_removals: config.checkpoint_every_removals,
            max_disk_bytes: config.max_disk_bytes,
        };
        let buffer = SpillBuffer::new(opened.next_sequence, opened.head, config.segment_size_bytes);
        let lane_allowed = config.cache_size > 0
            && config.max_len.is_none()
            && config.durability != Durability::EveryPut;
        let lane = Lane::with_capacity(lane_allowed.then(|| config.cache_size.min(MAX_LANE)));
        let engine = Arc::new(Self {
            state: Mutex::new(State {
                ring,
                loaded: opened.read_sequence,
                reader: LogReader::new(dir.clone(), Arc::clone(&counters), opened.read_sequence),
                spill: Spill::new(buffer, opened.progress, opened.disk_bytes),
                buffered: SpillBuffer::cursor_at(opened.read_sequence),
                position_hint: None,
                unacked: BTreeSet::new(),
                returned,
                deliveries_out: 0,
                epoch: 0,
                closed: false,
                fast: false,
                consumers_waiting: 0,
                producers_waiting: 0,
                progress_waiting: 0,
                item_wakers: WakerList::default(),
                room_wakers: WakerList::default(),
                progress_wakers: WakerList::default(),
                codec_failures: Vec::new(),
                undecodable,
            }),
            lane,
            items: Condvar::new(),
            room: Condvar::new(),
            progress: Condvar::new(),
            spill_wake: Condvar::new(),
            config,
            codec,
            dir: dir.clone(),
            counters,
            checkpoint_state: opened.checkpoint_state,
            id: opened.id.clone(),
            spill_thread: Mutex::new(None),
            handles: AtomicUsize::new(1),
            puts: AtomicU64::new(0),
        });
        let thread = SpillThread::new(Arc::clone(&engine), writer, settings);
        let handle = std::thread::Builder::new()
            .name("spillq-spill".into())
            .spawn(move || thread.run())
            .map_err(|e| Error::io(&dir, e))?;
        *engine
            .spill_thread
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(handle);
        engine.enter_fast(&mut engine.lock());
        Ok(engine)
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic in user code (a codec) while the lock was held leaves the state usable:
        // every change the codec could interrupt is rolled back or not yet made.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The queue directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The queue's identity.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// The bytes the queue's codec makes of `item`: what a record of it holds.
    pub(crate) fn encode(&self, item: &T) -> Result<Vec<u8>, Error> {
        let mut bytes = Vec::new();
        self.codec
            .encode(item, &mut bytes)
            .map_err(|source| Error::Codec {
                sequence: None,
                moved_to: None,
                source,
            })?;
        Ok(bytes)
    }

    /// A new handle shares this engine.
    pub(crate) fn add_handle(&self) {
        self.handles.fetch_add(1, Ordering::Relaxed);
    }

    /// A handle went; returns whether it was the last.
    pub(crate) fn drop_handle(&self) -> bool {
        self.handles.fetch_sub(1, Ordering::AcqRel) == 1
    }

    fn every_put(&self) -> bool {
        self.config.durability == Durability::EveryPut
    }

    /// Waits on `condvar` until `deadline` (if any). Returns the guard and whether time ran out.
    fn wait<'a>(
        &self,
        condvar: &Condvar,
        guard: MutexGuard<'a, State<T>>,
        deadline: Option<Instant>,
    ) -> (MutexGuard<'a, State<T>>, bool) {
        match deadline {
            None => (
                condvar.wait(guard).unwrap_or_else(|e| e.into_inner()),
                false,
            ),
            Some(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    return (guard, true);
                }
                let (guard, _) = condvar
                    .wait_timeout(guard, deadline - now)
                    .unwrap_or_else(|e| e.into_inner());
                (guard, Instant::now() >= deadline)
            }
        }
    }

    /// Closes the lane's gates and moves what it holds into the ring (young end, only in
    /// memory), so the ring holds every item in memory again. A pop without the lock that
    /// claimed its slot before the gate closed still returns its item: it is older than
    /// everything moved.
    fn leave_fast(&self, state: &mut State<T>) {
        if state.fast {
            self.lane.close();
            self.lane.close_pops();
            state.fast = false;
        }
        while let Some(item) = self.lane.pop() {
            state.ring.push_new(item);
        }
    }

    /// Opens the lane's gates if the queue is in memory only with nothing in the ring (see
    /// the module docs).
    fn enter_fast(&self, state: &mut State<T>) {
        if !state.fast
            && self.lane.capacity() > 0
            && !state.closed
            && state.ring.is_empty()
            && state.disk_only() == 0
            && state.returned.is_empty()
            && state.spill.failure().is_none()
        {
            self.lane.open();
            self.lane.open_pops();
            state.fast = true;
        }
    }

    /// Wakes callers and tasks waiting for items: one for one new item, all for more.
    fn wake_consumers(&self, state: &mut State<T>, count: usize) {
        if state.consumers_waiting > 0 {
            if count == 1 {
                self.items.notify_one();
            } else {
                self.items.notify_all();
            }
        }
        if count == 1 {
            state.item_wakers.wake_one();
        } else {
            state.item_wakers.wake_all();
        }
    }

    /// Wakes callers and tasks waiting for room (`max_len`) or for a segment.
    fn wake_producers(&self, state: &mut State<T>) {
        if state.producers_waiting > 0 {
            self.room.notify_all();
        }
        state.room_wakers.wake_all();
    }

    /// Wakes callers and tasks waiting for the spill thread: an fsync, a sync, the stop.
    fn wake_progress(&self, state: &mut State<T>) {
        if state.progress_waiting > 0 {
            self.progress.notify_all();
        }
        state.progress_wakers.wake_all();
    }

    /// Wakes the spill thread if it sleeps with work to do.
    fn wake_spill(&self, state: &mut State<T>) {
        if state.spill.take_wake() {
            self.spill_wake.notify_one();
        }
    }

    /// Writes the ring's items never written into the spill buffer, oldest first, with the
    /// next sequence numbers. An item that fails to encode stays in memory only, and the
    /// failure waits for `sync`. `Err`: the rest wait for these segments. With `slack`, they
    /// may take the disk cap's slack (they were accepted already: `sync`, `close`, a tick).
    fn write_memory(&self, state: &mut State<T>, slack: bool) -> Result<(), Want> {
        if state.ring.unwritten() == 0 {
            return Ok(());
        }
        debug_assert_eq!(state.disk_only(), 0);
        let State {
            ring,
            spill,
            codec_failures,
            loaded,
            ..
        } = state;
        let mut needs = None;
        ring.write_unwritten(|position, item| {
            match spill.append(|buf| self.codec.encode(item, buf)) {
                Ok(sequence) => {
                    // Kept in step record by record, should a later item's codec panic.
                    *loaded = sequence + 1;
                    Some(Written::At(sequence))
                }
                Err(AppendError::NeedsSegments(want)) => {
                    needs = Some(want);
                    None
                }
                Err(error) => {
                    let cause = match error {
                        AppendError::Encode(source) => source.to_string(),
                        AppendError::TooLarge(bytes) => put::too_large(bytes).to_string(),
                        AppendError::NeedsSegments(_) => String::new(),
                    };
                    codec_failures.push(
                        format!(
                            "the item at position {position} of the queue (0 is the head) could \
                             not be encoded and stays in memory only: {cause}"
                        )
                        .into(),
                    );
                    Some(Written::Never)
                }
            }
        });
        state.loaded = state.spill.next_sequence();
        self.wake_spill(state);
        match needs {
            Some(mut want) => {
                want.slack = slack;
                Err(want)
            }
            None => Ok(()),
        }
    }

    /// Asks the spill thread for the segments records wait for; returns the attempt to wait
    /// for (see [`segment_outcome`](Self::segment_outcome)).
    fn want_segments(&self, state: &mut State<T>, want: Want) -> u64 {
        let attempt = state.spill.want_segments(want);
        self.spill_wake.notify_one();
        attempt
    }

    /// How the spill thread's attempt `attempt` to make segments ended: `Err` with the reason
    /// it could not (no space), or `Closed`; `None` while it is under way.
    fn segment_outcome(state: &State<T>, attempt: u64) -> Option<Result<(), Error>> {
        if let Some(outcome) = state.spill.segment_outcome(attempt) {
            return Some(outcome);
        }
        if let Some(failure) = state.spill.failure() {
            return Some(Err(failure));
        }
        state.spill.is_stopped().then_some(Err(Error::Closed))
    }

    /// Waits until attempt `attempt` to make segments has ended (see `segment_outcome`).
    fn wait_for_attempt<'a>(
        &'a self,
        state: MutexGuard<'a, State<T>>,
        attempt: u64,
    ) -> (MutexGuard<'a, State<T>>, Result<(), Error>) {
        let (state, outcome) = self.wait_for_attempt_until(state, attempt, None);
        (state, outcome.unwrap_or(Err(Error::Full)))
    }

    /// As [`wait_for_attempt`](Self::wait_for_attempt), until `deadline`: `None` if it passed
    /// first (the attempt goes on; a later call finds its segment).
    fn wait_for_attempt_until<'a>(
        &'a self,
        mut state: MutexGuard<'a, State<T>>,
        attempt: u64,
        deadline: Option<Instant>,
    ) -> (MutexGuard<'a, State<T>>, Option<Result<(), Error>>) {
        loop {
            if let Some(outcome) = Self::segment_outcome(&state, attempt) {
                return (state, Some(outcome));
            }
            state.producers_waiting += 1;
            let (guard, timed_out) = self.wait(&self.room, state, deadline);
            state = guard;
            state.producers_waiting -= 1;
            if timed_out {
                let outcome = Self::segment_outcome(&state, attempt);
                return (state, outcome);
            }
        }
    }

    /// Waits until the spill thread has made the segments records wait for.
    fn wait_for_segment<'a>(
        &'a self,
        mut state: MutexGuard<'a, State<T>>,
        want: Want,
    ) -> (MutexGuard<'a, State<T>>, Result<(), Error>) {
        let attempt = self.want_segments(&mut state, want);
        self.wait_for_attempt(state, attempt)
    }
}
