//! The spill thread: the one owner of the log's writer. Each round it takes, under the queue's
//! lock, what there is to do (sealed buffers, a segment a producer waits for, a sync, the
//! fsync `EveryPut` producers wait for, an `Interval` tick, a checkpoint the read cursor calls
//! for), does the I/O without the lock, then publishes the outcome under the lock and wakes
//! whoever waits for it. Records framed while it works go in the next round, so concurrent
//! producers share one fsync (group commit).
//!
//! Failures: a segment that cannot be made (no space, a file size limit) refuses the puts that
//! needed it and nothing else; the next put that needs one tries again. A failed write, fsync or
//! checkpoint poisons the queue: Linux may have dropped the dirty pages, so nothing written
//! after it can be trusted, and writes are refused until the queue is reopened.

use super::buffer::{Buffer, Want};
use super::{Events, Failure, Host, ReadCursor, Settings, SpaceError, Spill};
use crate::config::Durability;
use crate::error::Error;
use crate::log::{Head, LogWriter};
use std::sync::Arc;
use std::time::Instant;

/// What one round does, taken under the lock.
#[derive(Default)]
struct Round {
    buffers: Vec<Arc<Buffer>>,
    /// fdatasync what is written (a sync, a tick, `EveryPut` producers, the stop).
    flush: bool,
    /// The sync requests this round answers (`Spill::syncs_requested` when it was taken).
    syncs: u64,
    /// The read cursor, when a checkpoint may be due.
    cursor: Option<ReadCursor>,
    /// Checkpoint durably (a sync, a tick, the stop).
    durable_checkpoint: bool,
    /// The segments producers wait for.
    segment: Option<Want>,
    /// The head and the unclaimed spares as the layout saw them.
    head: Option<Head>,
    spares: Vec<(u64, u64)>,
    /// The head segment retired (every record in it removed, and the disk cap leaves no room
    /// for the next): deleted before the spare is made.
    retire: Option<u64>,
    stop: bool,
}

/// What the round's I/O came to.
#[derive(Default)]
struct Outcome {
    written: usize,
    /// The first failure of a write, fsync or checkpoint: it poisons the queue.
    failed: Option<Error>,
    flushed: bool,
    deleted: bool,
    /// The segments made for producers: spares (id and length) made or grown.
    segment: Option<Result<Vec<(u64, u64)>, Error>>,
    /// A spare made ahead of need.
    ahead: Option<(u64, u64)>,
}

/// The spill thread. See the module docs.
pub(crate) struct SpillThread<H: Host> {
    host: Arc<H>,
    writer: LogWriter,
    settings: Settings,
    next_tick: Option<Instant>,
    /// An `Interval` tick whose items in memory could not all be framed yet.
    tick_pending: bool,
    /// A segment was rolled to since the last checkpoint.
    rolled: bool,
    /// Making a spare ahead of need failed: try again only when space may have been freed.
    ahead_blocked: bool,
    /// `EveryPut` producers waiting when the last fsync ended.
    last_group: usize,
    /// The thread was idle for [`IDLE_WRITE`] with records in the tail: write them.
    write_tail: bool,
}

/// Records framed in the tail are written once the thread has been idle this long, so that a
/// producer that stops mid-buffer leaves nothing only in memory for longer (a kill loses what
/// is not in the file). Short next to what a person notices; long next to the time a busy
/// producer takes to fill a buffer, so it adds no write while records keep coming.
const IDLE_WRITE: std::time::Duration = std::time::Duration::from_millis(1);

/// Longest wait for more durable puts before an fsync (see `gather`): short next to an fsync,
/// long enough for the producers an fsync woke to be scheduled and put again.
const GATHER_WAIT: std::time::Duration = std::time::Duration::from_micros(200);

impl<H: Host> SpillThread<H> {
    pub(crate) fn new(host: Arc<H>, writer: LogWriter, settings: Settings) -> Self {
        let next_tick = match settings.durability {
            Durability::Interval(period) => Instant::now().checked_add(period),
            _ => None,
        };
        Self {
            host,
            writer,
            settings,
            next_tick,
            tick_pending: false,
            rolled: false,
            ahead_blocked: false,
            last_group: 0,
            write_tail: false,
        }
    }

    /// The thread's body: rounds until the queue asks it to stop.
    pub(crate) fn run(mut self) {
        let host = Arc::clone(&self.host);
        let _unwind = FailOnUnwind(Arc::clone(&host));
        loop {
            let round = {
                let mut guard = host.lock();
                loop {
                    guard = self.gather(&host, guard);
                    if let Some(round) = self.plan(&mut guard) {
                        break round;
                    }
                    let idle_write = guard
                        .buffer
                        .tail_has_records()
                        .then(|| Instant::now().checked_add(IDLE_WRITE))
                        .flatten();
                    let wake_at = match (self.next_tick, idle_write) {
                        (Some(tick), Some(write)) => Some(tick.min(write)),
                        (tick, write) => tick.or(write),
                    };
                    guard.idle = true;
                    guard.tail_write_armed = idle_write.is_some();
                    guard = host.sleep(guard, wake_at);
                    guard.idle = false;
                    guard.tail_write_armed = false;
                    self.write_tail = idle_write.is_some_and(|at| Instant::now() >= at);
                }
            };
            let outcome = self.perform(&round);
            let mut guard = host.lock();
            if self.settle(&mut guard, round, outcome) {
                break;
            }
        }
    }

    /// Group commit: before an fsync that `EveryPut` producers wait for, gives the producers
    /// the last fsync released a moment (at most [`GATHER_WAIT`]) to put their next items, so
    /// that they share this fsync instead of waiting for the next; without it, producers
    /// released by one fsync and those that put during it settle into taking turns, two groups
    /// of half the size. Each durable put wakes the thread to count again.
    fn gather<'a>(&self, host: &'a H, mut guard: H::Guard<'a>) -> H::Guard<'a> {
        let gathering = |spill: &Spill| {
            spill.durable_wanted > spill.durable_end
                && spill.durable_ends.len() < self.last_group
                && spill.syncs_requested == spill.syncs_done
                && !spill.stopping
                && spill.failure.is_none()
        };
        if !gathering(&guard) {
            return guard;
        }
        let deadline = Instant::now() + GATHER_WAIT;
        while gathering(&guard) && Instant::now() < deadline {
            guard.idle = true;
            guard = host.sleep(guard, Some(deadline));
            guard.idle = false;
        }
        guard
    }

    /// Takes what there is to do, or `None` if nothing is.
    fn plan(&mut self, guard: &mut H::Guard<'_>) -> Option<Round> {
        let now = Instant::now();
        let tick = self.next_tick.is_some_and(|at| now >= at);
        if tick && let Durability::Interval(period) = self.settings.durability {
            self.next_tick = now.checked_add(period);
            self.tick_pending = true;
        }
        let mut round = Round::default();
        let spill: &mut Spill = guard;
        if spill.stopped {
            return None;
        }
        if spill.failure.is_some() {
            // Nothing more is written once writing failed; only the stop is left to do.
            return spill.stopping.then(|| Round {
                stop: true,
                ..Round::default()
            });
        }
        if self.tick_pending {
            match self.host.write_memory(guard) {
                Ok(()) => self.tick_pending = false,
                Err(want) => {
                    let spill: &mut Spill = guard;
                    spill.want_segments(want);
                }
            }
            round.flush = true;
            round.durable_checkpoint = true;
        }
        let spill: &mut Spill = guard;
        round.stop = spill.stopping;
        if spill.syncs_requested > spill.syncs_done || spill.stopping {
            round.flush = true;
            round.durable_checkpoint = true;
        }
        if spill.durable_wanted > spill.durable_end {
            round.flush = true;
        }
        round.segment = spill.segment_wanted.take();
        let retire_wanted = std::mem::take(&mut spill.retire_wanted);
        let write_tail = std::mem::take(&mut self.write_tail);
        if round.flush || round.segment.is_some() || retire_wanted || write_tail {
            // Everything framed so far goes now; a segment wanted may be waiting for the roll
            // in the tail to be written before its spare can be made.
            spill.buffer.seal();
        }
        round.syncs = spill.syncs_requested;
        round.buffers = spill.buffer.sealed().cloned().collect();
        round.spares = spill.buffer.spares();
        if (round.segment.is_some() || retire_wanted)
            && self.settings.max_disk_bytes.is_some()
            && !round.stop
        {
            // At a cap that holds one segment, a head whose records were all removed must go
            // before the next can come: retired now, so no record goes after its last (those
            // framed already are written first, in this round).
            let cursor = self.host.read_cursor(guard);
            let spill: &mut Spill = guard;
            if cursor.unacked.is_empty()
                && cursor.sequence >= spill.buffer.next_sequence()
                && round.spares.is_empty()
                && self.writer.disk_bytes() + self.settings.segment_size
                    > self.settings.max_disk_bytes.unwrap_or(u64::MAX)
            {
                round.retire = spill.buffer.retire_head();
                round.cursor = Some(cursor);
            }
        }
        let spill: &mut Spill = guard;
        round.head = Some(spill.buffer.head());
        let look_at_cursor = round.cursor.is_none()
            && (round.durable_checkpoint
                || spill.removals >= self.settings.checkpoint_every_removals
                || spill.checkpoint_wanted
                || self.rolled);
        if look_at_cursor {
            spill.removals = 0;
            spill.checkpoint_wanted = false;
            round.cursor = Some(self.host.read_cursor(guard));
        }
        let idle = round.buffers.is_empty()
            && !round.flush
            && round.segment.is_none()
            && round.cursor.is_none()
            && !round.stop
            && !self.wants_spare_ahead(&round);
        (!idle).then_some(round)
    }

    /// Whether to reserve the next segment now: the head is more than half full and no spare
    /// is there for it.
    fn wants_spare_ahead(&self, round: &Round) -> bool {
        !self.ahead_blocked
            && round.spares.is_empty()
            && round
                .head
                .is_some_and(|h| h.segment.is_some() && !h.needs_cut && h.end > h.len / 2)
            && self.fits_cap(self.settings.segment_size, false)
    }

    /// Whether `bytes` more fit under the disk cap; with `slack`, one segment over it (for
    /// items already accepted: see `Want::slack`).
    fn fits_cap(&self, bytes: u64, slack: bool) -> bool {
        self.settings.max_disk_bytes.is_none_or(|cap| {
            let cap = if slack {
                cap.saturating_add(self.settings.segment_size)
            } else {
                cap
            };
            self.writer.disk_bytes().saturating_add(bytes) <= cap
        })
    }

    /// The round's I/O, without the lock.
    fn perform(&mut self, round: &Round) -> Outcome {
        let mut outcome = Outcome::default();
        for buffer in &round.buffers {
            let written = self.writer.write(
                buffer.segment,
                buffer.offset,
                &buffer.bytes,
                buffer.end_sequence(),
                buffer.rolls,
            );
            if let Err(error) = written {
                outcome.failed = Some(error);
                return outcome;
            }
            self.rolled |= buffer.rolls.is_some();
            outcome.written += 1;
        }
        if round.flush {
            if let Err(error) = self.writer.flush() {
                outcome.failed = Some(error);
                return outcome;
            }
            outcome.flushed = true;
        }
        if let Some(cursor) = &round.cursor {
            match self.checkpoint(cursor, round.durable_checkpoint) {
                Ok(deleted) => outcome.deleted = deleted,
                Err(error) => {
                    outcome.failed = Some(error);
                    return outcome;
                }
            }
        }
        if let (Some(segment), Some(cursor)) = (round.retire, &round.cursor) {
            match self.writer.retire(segment, cursor.sequence) {
                Ok(retired) => outcome.deleted |= retired,
                Err(error) => {
                    outcome.failed = Some(error);
                    return outcome;
                }
            }
        }
        if let Some(want) = &round.segment {
            outcome.segment = Some(self.make_segments(round, want));
        }
        if outcome.deleted {
            self.ahead_blocked = false;
        }
        if !round.stop && outcome.segment.is_none() && self.wants_spare_ahead(round) {
            match self.writer.prepare(None, self.settings.segment_size) {
                Ok(spare) => outcome.ahead = Some(spare),
                Err(error) => {
                    tracing::debug!(%error, "could not reserve the next segment ahead of need");
                    self.ahead_blocked = true;
                }
            }
        }
        if round.stop {
            self.writer.discard_spares();
        }
        outcome
    }

    /// A checkpoint if one is due: durable when asked, or when the cursor has left a segment
    /// behind (which is then deleted); otherwise written only after a roll or enough removals.
    /// Returns whether segments were deleted.
    fn checkpoint(&mut self, cursor: &ReadCursor, durable: bool) -> Result<bool, Error> {
        let consumed = self
            .writer
            .has_consumed_segment(cursor.sequence, &cursor.unacked);
        self.rolled = false;
        self.writer
            .checkpoint(cursor.sequence, &cursor.unacked, durable || consumed)
    }

    /// Cuts the head if wanted, and reserves the spares wanted: each of the unclaimed spares
    /// grown to its wanted size, new ones made for the rest. Returns the spares made or grown.
    fn make_segments(&mut self, round: &Round, want: &Want) -> Result<Vec<(u64, u64)>, Error> {
        if want.cut && round.head.is_some_and(|h| h.needs_cut) {
            self.writer.cut_tail()?;
        }
        let mut made = Vec::new();
        for (index, &bytes) in want.spares.iter().enumerate() {
            let current = round.spares.get(index).copied();
            let bytes = match current {
                Some((_, len)) if len >= bytes => continue,
                Some(_) => bytes,
                None => bytes.max(self.settings.segment_size),
            };
            let more = bytes.saturating_sub(current.map_or(0, |(_, len)| len));
            if !self.fits_cap(more, want.slack) {
                // Made so far stays (for the next try); the rest waits for room.
                return if made.is_empty() {
                    Err(Error::Full)
                } else {
                    Ok(made)
                };
            }
            made.push(self.writer.prepare(current.map(|(id, _)| id), bytes)?);
        }
        Ok(made)
    }

    /// Publishes the round's outcome under the lock and wakes whoever waits for it. Returns
    /// whether the thread is done.
    fn settle(&mut self, guard: &mut H::Guard<'_>, round: Round, outcome: Outcome) -> bool {
        let round_cut = round
            .segment
            .as_ref()
            .is_some_and(|want| want.cut && round.head.is_some_and(|h| h.needs_cut));
        let Round {
            buffers,
            syncs,
            stop,
            ..
        } = round;
        drop(buffers);
        let mut events = Events::default();
        let mut refused_at_cap = false;
        let spill: &mut Spill = guard;
        for _ in 0..outcome.written {
            let Some(buffer) = spill.buffer.sealed().next() else {
                break;
            };
            let (segment, rolls) = (buffer.segment, buffer.rolls.is_some());
            let end_offset =
                usize::try_from(buffer.offset).unwrap_or(usize::MAX) + buffer.bytes.len();
            let progress = &mut spill.progress;
            if rolls && progress.segments.back() != Some(&segment) {
                progress.segments.push_back(segment);
            }
            progress.end_offset = end_offset;
            // The buffer goes back to the pool only if no other reference to it is alive.
            if let Some(end) = spill.buffer.written() {
                spill.progress.end_sequence = end;
            }
        }
        if outcome.deleted {
            spill.progress.segments = self.writer.segments().collect();
            spill.space_freed += 1;
            spill.at_cap = false;
            events.space = true;
        }
        if outcome.flushed {
            spill.durable_end = spill.progress.end_sequence;
            // Those this fsync releases, and those that put while it ran: all of them are
            // back for the next one (see `gather`).
            self.last_group = spill.durable_ends.len();
            while spill
                .durable_ends
                .front()
                .is_some_and(|&end| end <= spill.durable_end)
            {
                spill.durable_ends.pop_front();
            }
            // A sync is done only with its checkpoint durable too.
            if outcome.failed.is_none() {
                spill.syncs_done = spill.syncs_done.max(syncs);
            }
            events.progress = true;
        }
        if let Some(segment) = outcome.segment {
            spill.segment_attempts += 1;
            match segment {
                Ok(made) => {
                    if round_cut {
                        spill.buffer.head_cut();
                    }
                    for (id, len) in made {
                        spill.buffer.offer_spare(id, len);
                    }
                }
                Err(Error::Full) => {
                    spill.segment_error = Some((spill.segment_attempts, SpaceError::at_cap()));
                    spill.at_cap = true;
                    refused_at_cap = true;
                }
                Err(error) => {
                    tracing::warn!(%error, "could not make a segment for a put");
                    spill.segment_error = Some((spill.segment_attempts, SpaceError::new(&error)));
                }
            }
            events.space = true;
        }
        if let Some((id, len)) = outcome.ahead {
            spill.buffer.offer_spare(id, len);
        }
        if let Some(error) = outcome.failed {
            tracing::error!(%error, "the spill thread failed; the queue refuses writes until reopened");
            spill.failure = Some(Failure(error.to_string()));
            events.progress = true;
            events.space = true;
        }
        spill.disk_bytes = self.writer.disk_bytes();
        spill.segments = self.writer.segment_count();
        if refused_at_cap {
            // Consumers may have emptied the queue while the segment was refused, and asked
            // for nothing then (the cap was not reached yet): ask for the retirement now.
            let cursor = self.host.read_cursor(guard);
            let spill: &mut Spill = guard;
            if cursor.unacked.is_empty() && cursor.sequence >= spill.buffer.next_sequence() {
                spill.retire_wanted = true;
            }
        }
        let spill: &mut Spill = guard;
        let done = stop;
        if done {
            spill.stopped = true;
            events.progress = true;
            events.space = true;
        }
        self.host.notify(guard, events);
        done
    }
}

/// Should the spill thread unwind (a codec that panics while an `Interval` tick writes items
/// held in memory), the queue fails as after an I/O error and stops, so that callers waiting
/// for the thread (`sync`, `close`, `EveryPut` puts) get an error instead of waiting for ever.
struct FailOnUnwind<H: Host>(Arc<H>);

impl<H: Host> Drop for FailOnUnwind<H> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let mut guard = self.0.lock();
        let spill: &mut Spill = &mut guard;
        spill
            .failure
            .get_or_insert_with(|| Failure("the spill thread panicked".into()));
        spill.stopped = true;
        let events = Events {
            progress: true,
            space: true,
        };
        self.0.notify(&mut guard, events);
    }
}
