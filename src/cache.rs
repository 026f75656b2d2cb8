//! The memory ring and the rule that routes each item to memory or to disk; the state every
//! handle of a queue shares.
//!
//! Items have one order across memory and disk. The ring holds the oldest items, decoded; disk
//! holds the younger overflow. Every item that reaches the log gets the next sequence number
//! there, in queue order, so the log alone gives the order back after a crash.
//!
//! Invariants (under `Shared::state`):
//! - Log records `[loaded, next_sequence)` are only on disk ("disk-only"); every record before
//!   `loaded` is in the ring, out for acknowledgement, or removed.
//! - Items in the ring that were never written (`Written::No`) come after every written one, and
//!   exist only while nothing is disk-only. So a new item may go to the ring only while nothing
//!   is disk-only; when one must go to disk, the unwritten ring items are written first.
//! - A new item goes to the ring if nothing is disk-only and the ring holds fewer than
//!   `cache_size` items; otherwise to disk.
//!
//! The lane (`lane.rs`): a lock-free bounded queue in front of the ring, so that a producer in
//! the common case (memory has room, nothing on disk) hands its item over without the lock.
//! Lane items are the youngest, unwritten items of the ring that have not been moved into it
//! yet: lock holders move them in first (`Shared::lock`), except consumers, which take from the
//! lane directly once the ring is empty (`Shared::pop_head`, or without the lock while the
//! lane's pop gate is open, which it is only while the ring is empty: see `Shared::shut_pops`)
//! and so never grow the ring. The gate is open only while the ring holds at most
//! `cache_size - 2 * capacity` items and nothing is disk-only (and the queue is open, not
//! poisoned, and has no `max_len` and no `EveryPut`). Anything that could leave that state
//! closes the gate first, under the lock, and takes what is in the lane, which waits for the
//! pushes that got in before the gate shut (`Shared::close_lane`). So lane items never coexist
//! with disk-only records, and ring plus lane never hold more than `cache_size` items: a lock
//! holder moves at most `capacity` items in and then closes the gate if the ring has passed the
//! mark, with at most `capacity` more in the lane.

use crate::builder::{Config, Durability};
use crate::codec::Codec;
use crate::error::{CodecError, Error};
use crate::lane::Lane;
use crate::log::LogReader;
use crate::log::record::MAX_PAYLOAD_BYTES;
use crate::log::{CheckpointState, LogShared};
use crate::spill::{Batch, Command, ReadCursor, Signals};
use crossbeam_channel::Sender;
use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

/// Records decoded into the ring per refill, at most: bounds how long a refill holds the lock.
const MAX_REFILL: usize = 1024;

/// Directory (inside the queue's) where records that fail to decode are moved.
pub(crate) const UNDECODABLE_DIR: &str = "undecodable";

/// Whether an item in the ring is in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    /// Only in memory.
    No,
    /// In the log with this sequence number.
    At(u64),
    /// Its encoding failed; it stays in memory only.
    Never,
}

/// One entry of the ring.
pub(crate) enum Slot<T> {
    Item {
        item: T,
        written: Written,
    },
    /// A record that did not decode as `T`; its bytes were moved aside.
    Undecodable {
        sequence: u64,
        moved_to: Option<PathBuf>,
        message: String,
    },
}

impl<T> Slot<T> {
    pub(crate) fn sequence(&self) -> Option<u64> {
        match self {
            Self::Item {
                written: Written::At(sequence),
                ..
            }
            | Self::Undecodable { sequence, .. } => Some(*sequence),
            _ => None,
        }
    }
}

/// The state behind the queue's mutex.
pub(crate) struct State<T> {
    pub(crate) ring: VecDeque<Slot<T>>,
    /// Sequence number the next item written to the log gets.
    pub(crate) next_sequence: u64,
    /// See the module docs.
    pub(crate) loaded: u64,
    /// `Written::No` slots in the ring.
    pub(crate) unwritten: usize,
    pub(crate) reader: Option<LogReader>,
    /// Sequence numbers out with a `Delivery`.
    pub(crate) unacked: BTreeSet<u64>,
    /// Sequence numbers of items given back (by `nack`, or as unacknowledged before a crash)
    /// and waiting at the head of the ring, older than the rest of it. Items after them may
    /// have been removed, so the checkpoint lists them instead of moving its cursor back.
    pub(crate) returned: BTreeSet<u64>,
    /// Deliveries out (with or without a sequence number).
    pub(crate) deliveries_out: usize,
    /// Bumped by `clear`, so a late `nack` of a cleared item does not bring it back.
    pub(crate) epoch: u64,
    pub(crate) closed: bool,
    pub(crate) consumers_waiting: usize,
    /// Whether the lane's gate is open; changed only with the lock held (see `Lane::open`).
    pub(crate) lane_open: bool,
    /// Whether consumers may take from the lane without the lock (`Lane::open_pops`): only
    /// while the ring is empty. Changed only with the lock held.
    pub(crate) pops_open: bool,
    /// Removals not yet counted in `Signals::removals` (published a checkpoint's worth at a time).
    pub(crate) removals: u64,
    /// The published read cursor when removals last woke the spill thread.
    pub(crate) cursor_at_wake: Option<u64>,
    pub(crate) producers_waiting: usize,
    /// Items of the ring whose encoding failed, reported by the next `sync`.
    pub(crate) codec_failures: Vec<CodecError>,
    pub(crate) undecodable: u64,
}

impl<T> State<T> {
    pub(crate) fn disk_only(&self) -> u64 {
        self.next_sequence - self.loaded
    }

    pub(crate) fn len(&self) -> usize {
        self.ring.len() + usize::try_from(self.disk_only()).unwrap_or(usize::MAX)
    }

    /// Removes the head slot, keeping the counts that depend on it.
    pub(crate) fn pop_front(&mut self) -> Option<Slot<T>> {
        let slot = self.ring.pop_front()?;
        if let Slot::Item {
            written: Written::No,
            ..
        } = &slot
        {
            self.unwritten -= 1;
        }
        if let Some(sequence) = slot.sequence() {
            self.returned.remove(&sequence);
        }
        Some(slot)
    }

    /// Moves up to `max` items from the head of the ring into `out`, stopping at an
    /// undecodable record: `pop_front` in bulk, for `get_batch`. Returns how many; 0 (and
    /// nothing moved) while items given back wait at the head, which `pop_front` handles.
    pub(crate) fn take_items(&mut self, max: usize, out: &mut Vec<T>) -> usize {
        if !self.returned.is_empty() {
            return 0;
        }
        let count = self
            .ring
            .iter()
            .take(max)
            .take_while(|slot| matches!(slot, Slot::Item { .. }))
            .count();
        let mut unwritten = 0;
        out.extend(self.ring.drain(..count).filter_map(|slot| match slot {
            Slot::Item { item, written } => {
                unwritten += usize::from(written == Written::No);
                Some(item)
            }
            Slot::Undecodable { .. } => None,
        }));
        self.unwritten -= unwritten;
        count
    }

    /// The read cursor for a checkpoint: everything before it was removed except the records
    /// listed (out for acknowledgement, or given back and waiting at the head).
    pub(crate) fn read_cursor(&self) -> ReadCursor {
        let mut unacked: Vec<u64> = self.unacked.union(&self.returned).copied().collect();
        unacked.sort_unstable();
        ReadCursor {
            sequence: self.cursor_ignoring_unacked(),
            unacked,
        }
    }

    /// The smallest sequence number not removed, counting unacknowledged ones.
    pub(crate) fn cursor(&self) -> u64 {
        let cursor = self.cursor_ignoring_unacked();
        let cursor = self
            .unacked
            .first()
            .map_or(cursor, |&first| cursor.min(first));
        self.returned
            .first()
            .map_or(cursor, |&first| cursor.min(first))
    }

    fn cursor_ignoring_unacked(&self) -> u64 {
        let mut cursor = self.loaded;
        for slot in &self.ring {
            match slot.sequence() {
                Some(sequence) if self.returned.contains(&sequence) => {}
                Some(sequence) => {
                    cursor = cursor.min(sequence);
                    break;
                }
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
        cursor
    }
}

/// Everything the handles of one queue share.
pub(crate) struct Shared<T> {
    pub(crate) state: Mutex<State<T>>,
    /// The lock-free front of the ring (see the module docs).
    pub(crate) lane: Lane<T>,
    pub(crate) not_empty: Condvar,
    pub(crate) not_full: Condvar,
    pub(crate) config: Config,
    pub(crate) codec: Box<dyn Codec<T>>,
    pub(crate) log: Arc<LogShared>,
    pub(crate) signals: Arc<Signals>,
    pub(crate) commands: Sender<Command>,
    pub(crate) spill_thread: Mutex<Option<JoinHandle<()>>>,
    /// Live `Queue` handles; the last one to go closes the queue.
    pub(crate) handles: AtomicUsize,
    /// A hint for producers, read without the lock: the next item will probably go to disk,
    /// so encode it before taking the lock.
    pub(crate) spilling: AtomicBool,
    /// Puts so far; consumers watch it for a moment before sleeping.
    pub(crate) puts: AtomicU64,
    /// What recovery found of the checkpoint.
    pub(crate) checkpoint_state: CheckpointState,
}

impl<T: Send + 'static> Shared<T> {
    /// Locks the state, with the lane's items moved into the ring.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State<T>> {
        let mut state = self.lock_only();
        self.absorb_lane(&mut state);
        state
    }

    /// Moves the lane's items into the ring, and closes the gate if the ring has grown past
    /// the mark.
    pub(crate) fn absorb_lane(&self, state: &mut State<T>) {
        self.take_lane(state);
        if state.lane_open && !self.lane_may_open(state) {
            self.close_lane(state);
        }
    }

    /// Removes the head: the ring's, or once the ring is empty, the lane's.
    pub(crate) fn pop_head(&self, state: &mut State<T>) -> Option<Slot<T>> {
        // The lane is never behind disk-only records (see the module docs), so with the ring
        // empty its oldest item is the head.
        state.pop_front().or_else(|| {
            self.lane.pop().map(|item| Slot::Item {
                item,
                written: Written::No,
            })
        })
    }

    /// Locks the state and nothing else: for a producer that only wakes a sleeper.
    pub(crate) fn lock_only(&self) -> MutexGuard<'_, State<T>> {
        // A panic in user code (a codec) while the lock was held leaves the state usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves up to a lane's worth of items into the ring.
    fn take_lane(&self, state: &mut State<T>) {
        if self.lane.is_empty() {
            // What a producer pushes from now on stays in the lane, younger than the ring.
            return;
        }
        self.shut_pops(state);
        let mut moved = 0;
        while moved < self.lane.capacity() {
            let Some(item) = self.lane.pop() else {
                break;
            };
            state.ring.push_back(Slot::Item {
                item,
                written: Written::No,
            });
            moved += 1;
        }
        state.unwritten += moved;
    }

    /// Closes the lane's gate and moves what is left in it into the ring. After this, until
    /// the gate opens again (under the lock), no item enters the queue without the lock.
    pub(crate) fn close_lane(&self, state: &mut State<T>) {
        if state.lane_open {
            self.lane.close();
            state.lane_open = false;
        }
        self.take_lane(state);
    }

    /// Shuts out consumers that take from the lane without the lock. Call with the lock held
    /// before anything is added to the ring (they must never take an item younger than one in
    /// it), and before counting on an item seen in the lane. `settle` lets them in again once
    /// the ring is empty.
    pub(crate) fn shut_pops(&self, state: &mut State<T>) {
        if state.pops_open {
            self.lane.close_pops();
            state.pops_open = false;
        }
    }

    /// Opens the lane's gate if the state allows it, else closes it; opens its pop gate while
    /// the ring is empty too (see `shut_pops`).
    fn settle_lane(&self, state: &mut State<T>) {
        if self.lane_may_open(state) {
            if !state.lane_open && self.lane.capacity() > 0 {
                self.lane.open();
                state.lane_open = true;
            }
        } else if state.lane_open {
            self.close_lane(state);
        }
        let pops = state.lane_open && state.ring.is_empty();
        if pops != state.pops_open {
            if pops {
                self.lane.open_pops();
            } else {
                self.lane.close_pops();
            }
            state.pops_open = pops;
        }
    }

    /// Whether producers may use the lane now (see the module docs).
    fn lane_may_open(&self, state: &State<T>) -> bool {
        state.disk_only() == 0
            && !state.closed
            && state.ring.len() + 2 * self.lane.capacity() <= self.config.cache_size
            && !self.signals.failed.load(Ordering::Acquire)
    }

    pub(crate) fn encode(&self, item: &T, batch: &mut Batch) -> Result<(), Error> {
        let len = batch
            .push_with(|buf| self.codec.encode(item, buf))
            .map_err(|source| Error::Codec {
                sequence: None,
                moved_to: None,
                source,
            })?;
        if len > MAX_PAYLOAD_BYTES {
            batch.pop();
            return Err(Error::TooLarge {
                bytes: len,
                max_bytes: MAX_PAYLOAD_BYTES,
            });
        }
        Ok(())
    }

    /// Whether an item put now goes to memory.
    pub(crate) fn routes_to_memory(&self, state: &State<T>, count: usize) -> bool {
        state.disk_only() == 0 && state.ring.len() + count <= self.config.cache_size
    }

    /// Encodes the ring's unwritten items into `batch`, giving them the next sequence numbers.
    /// An item that fails to encode stays in memory only, and the failure waits for `sync`.
    pub(crate) fn write_unwritten(&self, state: &mut State<T>, batch: &mut Batch) {
        if state.unwritten == 0 {
            return;
        }
        debug_assert_eq!(state.disk_only(), 0);
        debug_assert_eq!(batch.end_sequence(), state.next_sequence);
        // Unwritten items are the ring's tail (with `Never` items in between).
        let mut start = state.ring.len();
        let mut seen = 0;
        while seen < state.unwritten && start > 0 {
            start -= 1;
            if matches!(
                state.ring.get(start),
                Some(Slot::Item {
                    written: Written::No,
                    ..
                })
            ) {
                seen += 1;
            }
        }
        let State {
            ring,
            next_sequence,
            codec_failures,
            ..
        } = state;
        for (position, slot) in ring.range_mut(start..).enumerate() {
            let Slot::Item { item, written } = slot else {
                continue;
            };
            if *written != Written::No {
                continue;
            }
            match self.encode(item, batch) {
                Ok(()) => {
                    *written = Written::At(*next_sequence);
                    *next_sequence += 1;
                }
                Err(error) => {
                    *written = Written::Never;
                    let cause = match error {
                        Error::Codec { source, .. } => source.to_string(),
                        other => other.to_string(),
                    };
                    codec_failures.push(
                        format!(
                            "the item at position {} of the queue (0 is the head) could not \
                             be encoded and stays in memory only: {cause}",
                            start + position
                        )
                        .into(),
                    );
                }
            }
        }
        state.unwritten = 0;
        state.loaded = state.next_sequence;
    }

    /// For `Interval` ticks: the ring's unwritten items, encoded, if any.
    pub(crate) fn take_unwritten(&self) -> Option<Batch> {
        let mut state = self.lock();
        if state.unwritten == 0 {
            return None;
        }
        let mut batch = Batch::new(state.next_sequence);
        self.write_unwritten(&mut state, &mut batch);
        (!batch.is_empty()).then_some(batch)
    }

    /// Hands a batch to the spill thread.
    pub(crate) fn send(&self, batch: Batch) -> Result<(), Error> {
        if batch.is_empty() {
            return Ok(());
        }
        self.commands
            .send(Command::Append(batch))
            .map_err(|_| Error::Closed)
    }

    /// Wakes consumers waiting for records the spill thread has now appended.
    pub(crate) fn wake_consumers(&self) {
        drop(self.lock());
        self.not_empty.notify_all();
    }

    /// Decodes up to a ring's worth of disk-only records into the ring.
    pub(crate) fn refill(&self, state: &mut State<T>) -> Result<(), Error> {
        let want = self.config.cache_size.clamp(1, MAX_REFILL);
        let want = want.saturating_sub(state.ring.len()).max(1);
        let Some(mut reader) = state.reader.take() else {
            return Err(Error::Closed);
        };
        self.shut_pops(state);
        reader.seek(state.loaded);
        let dir = &self.log.dir;
        let result = reader.read_batch(want, |sequence, bytes| {
            let slot = decode_record(&*self.codec, dir, sequence, bytes, &mut state.undecodable);
            state.ring.push_back(slot);
        });
        // Records found missing moved the reader past them too.
        state.loaded = state.loaded.max(reader.expected()).min(state.next_sequence);
        state.reader = Some(reader);
        result.map(|_| ())
    }

    /// After items left the queue: publish the read cursor, count removals, wake producers.
    /// Every `checkpoint_every_removals` removals the spill thread is woken to checkpoint the
    /// cursor and delete the segments it has left behind.
    pub(crate) fn removed(&self, state: &mut State<T>, count: u64) {
        if state.unacked.is_empty() && state.returned.is_empty() {
            // The usual case, made cheap: nothing to list, and often nothing moved (items
            // that were only in memory leave the cursor where it was).
            let sequence = state.cursor_ignoring_unacked();
            if self.signals.published_sequence() != Some(sequence) {
                self.signals.set_read(ReadCursor {
                    sequence,
                    unacked: Vec::new(),
                });
            }
        } else {
            self.signals.set_read(state.read_cursor());
        }
        self.settle(state);
        state.removals += count;
        if state.removals >= self.config.checkpoint_every_removals {
            self.signals
                .removals
                .fetch_add(std::mem::take(&mut state.removals), Ordering::Relaxed);
            // Removals of items that were only in memory leave the cursor where it was, and
            // give the spill thread nothing to checkpoint or delete: no wake-up for them (it
            // would take a processor from a producer or a consumer for nothing).
            let cursor = self.signals.published_sequence();
            if cursor.is_none() || cursor != state.cursor_at_wake {
                state.cursor_at_wake = cursor;
                let _ = self.commands.try_send(Command::Wake);
            }
        }
        if state.producers_waiting > 0 {
            self.not_full.notify_all();
        }
    }

    /// After the ring or the disk backlog changed: updates the spilling hint, and opens or
    /// closes the lane's gate to match.
    pub(crate) fn settle(&self, state: &mut State<T>) {
        let spilling = state.disk_only() > 0 || state.ring.len() >= self.config.cache_size;
        // Stored only on a change: the line is read by every producer.
        if self.spilling.load(Ordering::Relaxed) != spilling {
            self.spilling.store(spilling, Ordering::Relaxed);
        }
        self.settle_lane(state);
    }

    pub(crate) fn every_put(&self) -> bool {
        self.config.durability == Durability::EveryPut
    }

    /// Waits on `condvar` until `deadline` (if any). Returns the guard and whether time ran out.
    pub(crate) fn wait<'a>(
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
}

/// A record read from the log, as a ring slot. A record that does not decode is moved aside.
pub(crate) fn decode_record<T: 'static>(
    codec: &dyn Codec<T>,
    dir: &std::path::Path,
    sequence: u64,
    bytes: &[u8],
    undecodable: &mut u64,
) -> Slot<T> {
    match codec.decode(bytes) {
        Ok(item) => Slot::Item {
            item,
            written: Written::At(sequence),
        },
        Err(error) => {
            *undecodable += 1;
            tracing::warn!(sequence, %error, "a record did not decode; moving it aside");
            Slot::Undecodable {
                sequence,
                moved_to: move_aside(dir, sequence, bytes),
                message: error.to_string(),
            }
        }
    }
}

/// Saves an undecodable record's bytes in `undecodable/`, so nothing is lost when the queue moves
/// past it. Best effort: the path if it worked.
fn move_aside(dir: &std::path::Path, sequence: u64, bytes: &[u8]) -> Option<PathBuf> {
    let aside = dir.join(UNDECODABLE_DIR);
    std::fs::create_dir_all(&aside).ok()?;
    let path = aside.join(format!("{sequence:020}.bin"));
    std::fs::write(&path, bytes).ok()?;
    std::fs::File::open(&path).and_then(|f| f.sync_all()).ok()?;
    crate::sys::sync_dir(&aside).ok()?;
    Some(path)
}
