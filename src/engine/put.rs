//! The put path: `put`, `try_put`, `put_timeout` and `put_all`.
//!
//! Under the lock, a put either pushes its item into the ring (memory has room and nothing is
//! disk-only), or frames it into the spill buffer: encoded straight into the buffer, with its
//! checksum, no allocation and no hand-off. A record is framed only where its space on disk is
//! reserved; when none is, the put waits for the spill thread to make a segment, and fails
//! with the item back if it cannot.

use super::{Engine, State};
use crate::error::Error;
use crate::log::record::MAX_PAYLOAD_BYTES;
use crate::spill::buffer::AppendError;
use crate::spill::lane::Lane;
use crate::spill::ring::Ring;
use std::sync::MutexGuard;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long a call may wait.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wait {
    /// Not at all.
    No,
    /// Until the instant, or forever.
    Until(Option<Instant>),
}

impl Wait {
    pub(crate) fn for_timeout(timeout: Duration) -> Self {
        Self::Until(Instant::now().checked_add(timeout))
    }

    pub(crate) fn forever() -> Self {
        Self::Until(None)
    }

    /// Whether a call may still wait: its time has not run out.
    pub(super) fn may_wait(self) -> bool {
        match self {
            Self::No => false,
            Self::Until(deadline) => deadline.is_none_or(|d| Instant::now() < d),
        }
    }

    /// The deadline of a call that may wait (`None` inside: forever), or `None` if it may not.
    pub(super) fn deadline(self) -> Option<Option<Instant>> {
        match self {
            Self::No => None,
            Self::Until(deadline) => Some(deadline),
        }
    }
}

/// A refused put: the items come back.
pub(crate) enum Refused<I> {
    Full(I),
    Closed(I),
    Failed(I, Error),
}

impl<I> Refused<I> {
    pub(crate) fn into_error(self) -> Error {
        match self {
            Self::Full(_) => Error::Full,
            Self::Closed(_) => Error::Closed,
            Self::Failed(_, error) => error,
        }
    }
}

/// The error for a payload of `bytes` bytes, more than a record holds.
pub(super) fn too_large(bytes: usize) -> Error {
    Error::TooLarge {
        bytes,
        max_bytes: MAX_PAYLOAD_BYTES,
    }
}

/// What one put call carries: one item, or a batch.
pub(crate) trait Items<T>: Sized {
    fn count(&self) -> usize;
    fn into_ring(self, ring: &mut Ring<T>);
    /// Hands the items over through the lane, if they can go that way now.
    fn into_lane(self, lane: &Lane<T>) -> Result<(), Self>;
    /// Frames the items into the spill buffer, all or none. Returns the end of their
    /// sequence numbers.
    fn frame(
        &mut self,
        engine: &Engine<T>,
        state: &mut State<T>,
    ) -> Result<u64, AppendError<Error>>;
}

impl<T: Send + 'static> Items<T> for T {
    fn count(&self) -> usize {
        1
    }

    fn into_ring(self, ring: &mut Ring<T>) {
        ring.push_new(self);
    }

    fn into_lane(self, lane: &Lane<T>) -> Result<(), Self> {
        lane.push(self)
    }

    fn frame(
        &mut self,
        engine: &Engine<T>,
        state: &mut State<T>,
    ) -> Result<u64, AppendError<Error>> {
        let sequence = state.spill.append(|buf| {
            engine
                .codec
                .encode(self, buf)
                .map_err(|source| Error::Codec {
                    sequence: None,
                    moved_to: None,
                    source,
                })
        })?;
        Ok(sequence + 1)
    }
}

/// A batch from `put_all`: its items, and their payloads once encoded (only when the batch
/// goes to disk: items that go to memory are not encoded until they must be written).
pub(crate) struct Many<T> {
    items: Vec<T>,
    /// The payloads, one after another, and each one's length.
    payloads: Vec<u8>,
    lens: Vec<usize>,
}

impl<T: 'static> Many<T> {
    pub(crate) fn new(items: Vec<T>) -> Self {
        Self {
            items,
            payloads: Vec::new(),
            lens: Vec::new(),
        }
    }

    /// Encodes every item with the engine's codec, once.
    fn encode(&mut self, engine: &Engine<T>) -> Result<(), Error> {
        if self.lens.len() == self.items.len() {
            return Ok(());
        }
        self.payloads.clear();
        self.lens.clear();
        for item in &self.items {
            let start = self.payloads.len();
            if let Err(source) = engine.codec.encode(item, &mut self.payloads) {
                self.lens.clear();
                return Err(Error::Codec {
                    sequence: None,
                    moved_to: None,
                    source,
                });
            }
            self.lens.push(self.payloads.len() - start);
        }
        Ok(())
    }
}

impl<T: Send + 'static> Items<T> for Many<T> {
    fn count(&self) -> usize {
        self.items.len()
    }

    fn into_ring(self, ring: &mut Ring<T>) {
        for item in self.items {
            ring.push_new(item);
        }
    }

    /// Never: a batch must stay contiguous, and lane pushes from two producers interleave.
    fn into_lane(self, _lane: &Lane<T>) -> Result<(), Self> {
        Err(self)
    }

    fn frame(
        &mut self,
        engine: &Engine<T>,
        state: &mut State<T>,
    ) -> Result<u64, AppendError<Error>> {
        if self.lens.is_empty() {
            // Usually the batch fits in the head segment: framed straight into the tail.
            let items = &self.items;
            let direct = state.spill.append_in_head(items.len(), |index, buf| {
                let item = items.get(index).ok_or_else(|| "no such item".into());
                item.and_then(|item| engine.codec.encode(item, buf))
                    .map_err(|source| Error::Codec {
                        sequence: None,
                        moved_to: None,
                        source,
                    })
            })?;
            if let Some(range) = direct {
                return Ok(range.end);
            }
        }
        self.encode(engine).map_err(AppendError::Encode)?;
        let range = state.spill.append_all(&self.payloads, &self.lens)?;
        Ok(range.end)
    }
}

/// What one attempt at a put came to, under the lock.
pub(crate) enum Attempt<I> {
    /// The items are in the queue.
    Done,
    /// The items are in the queue; under `EveryPut`, the call returns once records before this
    /// sequence number are fsynced, and gives the items back if they cannot be.
    Durable(I, u64),
    /// No room (`max_len`): try again once consumers make some.
    Full(I),
    /// No segment has room: try again once the spill thread's attempt `.1` to make one ends.
    Segment(I, u64),
    /// Refused for good.
    Refused(Refused<I>),
}

impl<T: Send + 'static> Engine<T> {
    /// The one path of every put. See the module docs.
    pub(crate) fn put<I: Items<T>>(&self, items: I, wait: Wait) -> Result<(), Refused<I>> {
        // In memory only: no lock (see the module docs of `engine`).
        let items = match items.into_lane(&self.lane) {
            Ok(()) => {
                self.after_lane_push();
                return Ok(());
            }
            Err(items) => items,
        };
        self.put_locked(items, wait)
    }

    /// Hands `item` over through the lane if the queue runs in memory only; else gives it back.
    pub(crate) fn push_lane(&self, item: T) -> Result<(), T> {
        self.lane.push(item)?;
        self.after_lane_push();
        Ok(())
    }

    /// The rest of `put`, under the lock: a function of its own, so that the lane's path stays
    /// small.
    #[inline(never)]
    fn put_locked<I: Items<T>>(&self, mut items: I, wait: Wait) -> Result<(), Refused<I>> {
        let mut state = self.lock();
        loop {
            items = match self.attempt_put(&mut state, items) {
                Attempt::Done => return Ok(()),
                Attempt::Refused(refused) => return Err(refused),
                Attempt::Durable(items, end) => {
                    let (_state, durable) = self.wait_durable(state, end);
                    return durable.map_err(|error| Refused::Failed(items, error));
                }
                Attempt::Full(items) => {
                    let Some(deadline) = wait.deadline() else {
                        return Err(Refused::Full(items));
                    };
                    state.producers_waiting += 1;
                    let (guard, timed_out) = self.wait(&self.room, state, deadline);
                    state = guard;
                    state.producers_waiting -= 1;
                    if timed_out && !state.closed && self.is_full(&state, items.count()) {
                        return Err(Refused::Full(items));
                    }
                    items
                }
                Attempt::Segment(items, attempt) => {
                    let freed = state.spill.space_freed();
                    // `try_put` waits for the segment file being made (no room is waited
                    // for); `put_timeout` no longer than its timeout.
                    let deadline = match wait {
                        Wait::Until(Some(deadline)) => Some(deadline),
                        Wait::No | Wait::Until(None) => None,
                    };
                    let (guard, outcome) = self.wait_for_attempt_until(state, attempt, deadline);
                    state = guard;
                    let Some(outcome) = outcome else {
                        return Err(Refused::Full(items));
                    };
                    match outcome {
                        Ok(()) => items,
                        // At the disk cap: as at `max_len`, wait for consumers to free room.
                        Err(Error::Full) => {
                            let Some(deadline) = wait.deadline() else {
                                return Err(Refused::Full(items));
                            };
                            let (guard, freed) = self.wait_for_space(state, freed, deadline);
                            state = guard;
                            if !freed {
                                return Err(if state.closed {
                                    Refused::Closed(items)
                                } else {
                                    Refused::Full(items)
                                });
                            }
                            items
                        }
                        Err(error) => return Err(Refused::Failed(items, error)),
                    }
                }
            };
        }
    }

    /// One attempt at a put, under the lock: into the lane or the ring, or framed into the
    /// spill buffer, or why not yet.
    pub(crate) fn attempt_put<I: Items<T>>(&self, state: &mut State<T>, items: I) -> Attempt<I> {
        let count = items.count();
        if state.closed {
            return Attempt::Refused(Refused::Closed(items));
        }
        if let Some(failure) = state.spill.failure() {
            return Attempt::Refused(Refused::Failed(items, failure));
        }
        if self.is_full(state, count) {
            return Attempt::Full(items);
        }
        let mut items = items;
        if state.fast {
            // The lane may have room again, or another put closed its gates meanwhile.
            items = match items.into_lane(&self.lane) {
                Ok(()) => {
                    self.wake_consumers(state, 1);
                    return Attempt::Done;
                }
                Err(items) => items,
            };
            self.leave_fast(state);
        }
        // Under EveryPut every item goes through disk, so the caller keeps it until it is
        // durable and gets it back if it cannot be made so.
        if !self.every_put()
            && state.disk_only() == 0
            && state.ring.len() + count <= self.config.cache_size
        {
            items.into_ring(&mut state.ring);
            self.after_put(state, count);
            return Attempt::Done;
        }
        // To disk, after the items only in memory (the log keeps queue order).
        if let Err(want) = self.write_memory(state, false) {
            let attempt = self.want_segments(state, want);
            return Attempt::Segment(items, attempt);
        }
        let end = match items.frame(self, state) {
            Ok(end) => end,
            Err(AppendError::NeedsSegments(want)) => {
                let attempt = self.want_segments(state, want);
                return Attempt::Segment(items, attempt);
            }
            Err(AppendError::Encode(error)) => {
                return Attempt::Refused(Refused::Failed(items, error));
            }
            Err(AppendError::TooLarge(bytes)) => {
                return Attempt::Refused(Refused::Failed(items, too_large(bytes)));
            }
        };
        self.after_put(state, count);
        if !self.every_put() {
            self.wake_spill(state);
            return Attempt::Done;
        }
        state.spill.want_durable(end);
        self.wake_spill(state);
        Attempt::Durable(items, end)
    }

    /// Waits until files are deleted (room under the disk cap) since `freed` (a count from
    /// `Spill::space_freed`), the queue closes, or `deadline`. Returns whether room came.
    fn wait_for_space<'a>(
        &'a self,
        mut state: MutexGuard<'a, State<T>>,
        freed: u64,
        deadline: Option<std::time::Instant>,
    ) -> (MutexGuard<'a, State<T>>, bool) {
        loop {
            if state.spill.space_freed() != freed {
                return (state, true);
            }
            if state.closed || state.spill.failure().is_some() || state.spill.is_stopped() {
                return (state, false);
            }
            state.producers_waiting += 1;
            let (guard, timed_out) = self.wait(&self.room, state, deadline);
            state = guard;
            state.producers_waiting -= 1;
            if timed_out {
                let room = state.spill.space_freed() != freed;
                return (state, room);
            }
        }
    }

    /// Waits until records before `end` are fsynced.
    fn wait_durable<'a>(
        &'a self,
        mut state: MutexGuard<'a, State<T>>,
        end: u64,
    ) -> (MutexGuard<'a, State<T>>, Result<(), Error>) {
        loop {
            if let Some(outcome) = Self::durable_outcome(&state, end) {
                return (state, outcome);
            }
            state.progress_waiting += 1;
            state = self.wait(&self.progress, state, None).0;
            state.progress_waiting -= 1;
        }
    }

    /// Whether records before `end` are fsynced (`Ok`), or will never be (`Err`); `None` while
    /// the spill thread is still on its way.
    pub(crate) fn durable_outcome(state: &State<T>, end: u64) -> Option<Result<(), Error>> {
        if state.spill.is_durable(end) {
            return Some(Ok(()));
        }
        if let Some(failure) = state.spill.failure() {
            return Some(Err(failure));
        }
        state.spill.is_stopped().then_some(Err(Error::Closed))
    }

    /// Whether `count` more items would pass `max_len` (items out for acknowledgement count).
    /// A batch larger than `max_len` fits once the queue is empty.
    fn is_full(&self, state: &State<T>, count: usize) -> bool {
        self.config.max_len.is_some_and(|max| {
            let len = state.len() + state.deliveries_out;
            len > 0 && len + count > max
        })
    }

    /// After an item went through the lane: wake a consumer that sleeps, or is about to (see
    /// `Lane::register_waiter`).
    pub(crate) fn after_lane_push(&self) {
        if self.lane.wake_wanted() {
            // Under the lock, so the consumer is either asleep or has not looked yet.
            self.wake_consumers(&mut self.lock(), 1);
        }
    }

    /// After items went in: wake the consumers that sleep.
    fn after_put(&self, state: &mut State<T>, count: usize) {
        // Written only under the lock: a plain store, not a read-modify-write.
        let puts = self.puts.load(Ordering::Relaxed);
        self.puts.store(puts.wrapping_add(1), Ordering::Release);
        self.wake_consumers(state, count);
    }
}
