//! The get path: `get` and its forms, `get_batch`, `peek`, `delete`, and acknowledged delivery.
//!
//! Consumers take from the ring. When it is empty and records are disk-only, a consumer reads a
//! ring's worth (at most [`MAX_REFILL`]) and decodes them into it: from the segment files for
//! records the spill thread has written, straight from the spill buffer for the rest.

use super::put::Wait;
use super::{Engine, State, undecodable};
use crate::error::Error;
use crate::spill::buffer::{AppendError, SpillBuffer};
use crate::spill::ring::{Slot, Written};
use std::sync::MutexGuard;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Records decoded into the ring per refill, at most: bounds how long a refill holds the lock.
const MAX_REFILL: usize = 1024;

/// How long a consumer that finds the queue empty watches for a put before it sleeps, in spins
/// then yields: a producer is often a moment away, and a sleep and a wake-up cost far more.
const SPINS: u32 = 64;
const YIELDS: u32 = 8;

/// The head taken out, with the lock still held.
type Taken<'a, T> = (MutexGuard<'a, State<T>>, Slot<T>);

/// What an attempt at `get_ack` came to.
pub(crate) enum AckAttempt<T> {
    Handed(Handed<T>),
    /// Nothing at the head (another consumer took it).
    Empty,
    /// The head must be written first, and waits for the spill thread's attempt to make a
    /// segment.
    Segment(u64),
}

/// An item handed out for acknowledgement: what `Delivery` holds.
pub(crate) struct Handed<T> {
    pub(crate) item: T,
    pub(crate) sequence: Option<u64>,
    pub(crate) epoch: u64,
}

impl<T: Send + 'static> Engine<T> {
    /// Waits until the ring has a head (refilled from disk if need be), or `wait` runs out
    /// (`Ok` with an empty ring).
    /// With `in_ring`, a head in the lane is moved into the ring first (fast mode left); else
    /// the head may be the lane's, which a consumer without the lock may take first: the
    /// caller then waits again.
    fn wait_for_head(&self, wait: Wait, in_ring: bool) -> Result<MutexGuard<'_, State<T>>, Error> {
        let mut state = self.lock();
        loop {
            if self.find_head(&mut state, in_ring)? {
                return Ok(state);
            }
            let Some(deadline) = wait.deadline() else {
                return Ok(state);
            };
            let seen = self.puts.load(Ordering::Acquire);
            drop(state);
            let put_meanwhile = self.watch_for_put(seen, deadline);
            state = self.lock();
            if put_meanwhile || !state.ring.is_empty() || state.disk_only() > 0 || state.closed {
                continue;
            }
            // Counted first, then one more look at the lane (see `Lane::register_waiter`).
            let fast = state.fast;
            if fast && !self.lane.register_waiter() {
                self.lane.unregister_waiter();
                continue;
            }
            state.consumers_waiting += 1;
            let (guard, timed_out) = self.wait(&self.items, state, deadline);
            state = guard;
            state.consumers_waiting -= 1;
            if fast {
                self.lane.unregister_waiter();
            }
            if timed_out && state.ring.is_empty() && self.lane.is_empty() && state.disk_only() == 0
            {
                return if state.closed {
                    Err(Error::Closed)
                } else {
                    Ok(state)
                };
            }
        }
    }

    /// Whether the queue has a head now: in the ring (refilled from disk if need be), or with
    /// `in_ring` false also in the lane (see `wait_for_head`). Never waits.
    pub(crate) fn find_head(&self, state: &mut State<T>, in_ring: bool) -> Result<bool, Error> {
        loop {
            if state.closed {
                return Err(Error::Closed);
            }
            if !state.ring.is_empty() {
                return Ok(true);
            }
            if state.fast && !self.lane.is_empty() {
                if !in_ring {
                    return Ok(true);
                }
                self.leave_fast(state);
                continue;
            }
            if state.disk_only() == 0 {
                return Ok(false);
            }
            self.refill(state)?;
        }
    }

    /// Spins, then yields, for a short while until a put happens. Returns whether one did.
    fn watch_for_put(&self, seen: u64, deadline: Option<Instant>) -> bool {
        for step in 0..SPINS + YIELDS {
            if self.puts.load(Ordering::Acquire) != seen || !self.lane.is_empty() {
                return true;
            }
            if step < SPINS {
                std::hint::spin_loop();
            } else {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return false;
                }
                std::thread::yield_now();
            }
        }
        self.puts.load(Ordering::Acquire) != seen
    }

    /// Reads and decodes up to a ring's worth of disk-only records into the ring: from the
    /// segment files for what is written, else from the spill buffer.
    fn refill(&self, state: &mut State<T>) -> Result<(), Error> {
        let want = self
            .config
            .cache_size
            .clamp(1, MAX_REFILL)
            .saturating_sub(state.ring.len())
            .max(1);
        let State {
            ring,
            loaded,
            spill,
            reader,
            buffered,
            position_hint,
            undecodable: undecodable_count,
            ..
        } = state;
        let dir = &self.dir;
        let codec = &*self.codec;
        let mut visit = |sequence, bytes: &[u8]| {
            ring.push_read(undecodable::decode(
                codec,
                dir,
                sequence,
                bytes,
                undecodable_count,
            ));
        };
        if *loaded < spill.written() {
            let hint = position_hint.filter(|(sequence, _)| sequence == loaded);
            reader.seek(*loaded, hint.map(|(_, at)| at));
            let read = reader.read(&spill.progress, want, &mut visit);
            // Records found missing moved the reader past them too; on an error (opening the
            // next segment), the records read before it are in the ring and count as loaded.
            *loaded = reader.expected().max(*loaded).min(spill.next_sequence());
            read?;
        } else {
            if buffered.sequence() != *loaded {
                *buffered = SpillBuffer::cursor_at(*loaded);
            }
            spill.buffer.read(buffered, want, &mut visit);
            *loaded = buffered.sequence();
            *position_hint = spill.buffer.position(buffered).map(|at| (*loaded, at));
        }
        if state
            .spill
            .progress
            .segments
            .get(1)
            .is_some_and(|&second| second <= state.loaded)
            && state.spill.cursor_left_segment()
        {
            self.spill_wake.notify_one();
        }
        Ok(())
    }

    /// After items left the queue: count the removals, and wake producers waiting for room.
    fn removed(&self, state: &mut State<T>, count: u64) {
        if state
            .spill
            .removed(count, self.config.checkpoint_every_removals)
        {
            self.spill_wake.notify_one();
        }
        if self.config.max_len.is_some() {
            self.wake_producers(state);
        }
        if state.ring.is_empty()
            && state.disk_only() == 0
            && state.unacked.is_empty()
            && state.spill.emptied_at_cap()
        {
            self.spill_wake.notify_one();
        }
    }

    /// Takes the head slot out of the ring, or in fast mode out of the lane.
    pub(super) fn pop_head(&self, state: &mut State<T>) -> Option<Slot<T>> {
        let Some(slot) = state.ring.pop_front() else {
            let item = if state.fast { self.lane.pop() } else { None };
            return item.map(|item| Slot::Item {
                item,
                written: Written::No,
            });
        };
        if let Some(sequence) = slot.sequence() {
            state.returned.remove(&sequence);
        }
        Some(slot)
    }

    /// Turns a removed slot into the caller's item, counting the removal.
    pub(super) fn finish_take(&self, state: &mut State<T>, slot: Slot<T>) -> Result<T, Error> {
        self.removed(state, 1);
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

    /// `get`, `try_get`, `get_timeout`: `Ok(None)` when nothing came in time.
    pub(crate) fn get(&self, wait: Wait) -> Result<Option<T>, Error> {
        // In memory only, the head is the lane's: taken without the lock, and with nothing to
        // record (an item only in memory leaves the read cursor where it was).
        if let Some(item) = self.lane.pop_without_lock() {
            return Ok(Some(item));
        }
        let Some((mut state, slot)) = self.take(wait)? else {
            return Ok(None);
        };
        let taken = self.finish_take(&mut state, slot);
        self.enter_fast(&mut state);
        taken.map(Some)
    }

    /// Waits for the head as `wait` allows and takes it out: `None` if nothing came in time.
    fn take(&self, wait: Wait) -> Result<Option<Taken<'_, T>>, Error> {
        loop {
            let mut state = self.wait_for_head(wait, false)?;
            if let Some(slot) = self.pop_head(&mut state) {
                return Ok(Some((state, slot)));
            }
            // Nothing in time, or a consumer without the lock took the lane's head first.
            if !wait.may_wait() {
                return Ok(None);
            }
        }
    }

    /// Up to `max` items: waits as `wait` allows for the first, then takes what is there.
    pub(crate) fn get_batch(&self, max: usize, wait: Wait) -> Result<Vec<T>, Error> {
        let mut items = Vec::new();
        if max == 0 {
            return Ok(items);
        }
        let Some((mut state, first)) = self.take(wait)? else {
            return Ok(items);
        };
        match first {
            Slot::Item { item, .. } => items.push(item),
            undecodable => {
                let taken = self.finish_take(&mut state, undecodable);
                return taken.map(|item| vec![item]);
            }
        }
        while items.len() < max {
            if state.ring.is_empty() && state.disk_only() > 0 {
                self.refill(&mut state)?;
            }
            if !items.is_empty() && matches!(state.ring.front(), Some(Slot::Undecodable { .. })) {
                // Reported by the next call, on its own.
                break;
            }
            if state.returned.is_empty() && state.ring.take_items(max - items.len(), &mut items) > 0
            {
                continue;
            }
            match self.pop_head(&mut state) {
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
            self.removed(&mut state, items.len() as u64);
        }
        self.enter_fast(&mut state);
        Ok(items)
    }

    /// The head item, not removed: a copy through the codec (so `T` need not be `Clone`).
    pub(crate) fn peek(&self, wait: Wait) -> Result<Option<T>, Error> {
        // The head stays where it is while it is copied: in the ring, not the lane.
        let state = self.wait_for_head(wait, true)?;
        self.copy_head(&state)
    }

    /// A copy of the ring's head item, through the codec (so `T` need not be `Clone`); `None`
    /// if the ring is empty.
    pub(crate) fn copy_head(&self, state: &State<T>) -> Result<Option<T>, Error> {
        match state.ring.front() {
            None => Ok(None),
            Some(Slot::Item { item, .. }) => {
                let codec_error = |source| Error::Codec {
                    sequence: None,
                    moved_to: None,
                    source,
                };
                let mut bytes = Vec::new();
                self.codec.encode(item, &mut bytes).map_err(codec_error)?;
                self.codec.decode(&bytes).map(Some).map_err(codec_error)
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

    /// Removes up to `n` head items without decoding them; returns how many.
    pub(crate) fn delete(&self, n: usize) -> Result<usize, Error> {
        let mut state = self.lock();
        if state.closed {
            return Err(Error::Closed);
        }
        self.leave_fast(&mut state);
        let mut removed = 0;
        while removed < n && self.pop_head(&mut state).is_some() {
            removed += 1;
        }
        let from_disk = usize::try_from(state.disk_only())
            .unwrap_or(usize::MAX)
            .min(n - removed);
        state.loaded += from_disk as u64;
        removed += from_disk;
        self.removed(&mut state, removed as u64);
        self.enter_fast(&mut state);
        Ok(removed)
    }

    /// Takes the head item for acknowledged delivery. It must survive a crash while out, so an
    /// item only in memory is written first.
    pub(crate) fn get_ack(&self, wait: Wait) -> Result<Option<Handed<T>>, Error> {
        loop {
            let mut state = self.wait_for_head(wait, true)?;
            match self.attempt_get_ack(&mut state)? {
                AckAttempt::Handed(handed) => return Ok(Some(handed)),
                AckAttempt::Empty if !wait.may_wait() => return Ok(None),
                AckAttempt::Empty => {}
                AckAttempt::Segment(attempt) => self.wait_for_attempt(state, attempt).1?,
            }
        }
    }

    /// Takes the ring's head for acknowledged delivery, writing it first if it is only in
    /// memory (the caller found the head in the ring: `find_head` with `in_ring`).
    pub(crate) fn attempt_get_ack(&self, state: &mut State<T>) -> Result<AckAttempt<T>, Error> {
        let (item, written) = match self.pop_head(state) {
            None => return Ok(AckAttempt::Empty),
            Some(Slot::Item { item, written }) => (item, written),
            Some(undecodable) => {
                return self
                    .finish_take(state, undecodable)
                    .map(|_| AckAttempt::Empty);
            }
        };
        // The head only in memory: every other unwritten item comes after it, and nothing is
        // disk-only, so writing it now keeps the log in queue order.
        let sequence = match written {
            Written::At(sequence) => Some(sequence),
            Written::Never => None,
            Written::No => match state.spill.append(|buf| self.codec.encode(&item, buf)) {
                Ok(sequence) => {
                    state.loaded = state.spill.next_sequence();
                    self.wake_spill(state);
                    Some(sequence)
                }
                Err(AppendError::NeedsSegments(mut want)) => {
                    // Back at the head while the spill thread makes room (the item was
                    // accepted already: it may take the disk cap's slack).
                    want.slack = true;
                    state.ring.insert(0, Slot::Item { item, written });
                    return Ok(AckAttempt::Segment(self.want_segments(state, want)));
                }
                // It cannot be written: out without a sequence number (see `Delivery`).
                Err(_) => None,
            },
        };
        if let Some(sequence) = sequence {
            state.unacked.insert(sequence);
        }
        state.deliveries_out += 1;
        Ok(AckAttempt::Handed(Handed {
            item,
            sequence,
            epoch: state.epoch,
        }))
    }

    /// Settles a delivery: `item` given back (`nack`, or the guard dropped) goes back to its
    /// place at the head; `None` (`ack`) removes it for good.
    pub(crate) fn settle(
        &self,
        sequence: Option<u64>,
        epoch: u64,
        item: Option<T>,
    ) -> Result<(), Error> {
        let mut state = self.lock();
        if state.closed {
            return Err(Error::Closed);
        }
        if state.epoch != epoch {
            // `clear` removed everything, this item included.
            return Ok(());
        }
        self.leave_fast(&mut state);
        state.deliveries_out -= 1;
        if let Some(sequence) = sequence {
            state.unacked.remove(&sequence);
        }
        match item {
            Some(item) => {
                let (written, at) = match sequence {
                    Some(sequence) => {
                        let at = state
                            .ring
                            .iter()
                            .position(|slot| slot_after(slot, sequence))
                            .unwrap_or(state.ring.len());
                        (Written::At(sequence), at)
                    }
                    None => (Written::Never, 0),
                };
                state.ring.insert(at, Slot::Item { item, written });
                if let Some(sequence) = sequence {
                    state.returned.insert(sequence);
                }
                self.wake_consumers(&mut state, 1);
            }
            None => {
                self.removed(&mut state, 1);
                self.enter_fast(&mut state);
            }
        }
        Ok(())
    }
}

/// Whether `slot` belongs after the given-back record `sequence`.
fn slot_after<T>(slot: &Slot<T>, sequence: u64) -> bool {
    match slot.sequence() {
        Some(other) => other > sequence,
        None => true,
    }
}
