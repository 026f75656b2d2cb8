//! The engine's side of the async front end: each blocking wait has a poll function that does
//! what the blocking call does up to the point where it would wait, and then registers the
//! task's waker (in the list for items, for room, or for the spill thread's progress) instead
//! of sleeping. Whoever makes that condition true wakes the list (`wake_consumers`,
//! `wake_producers`, `wake_progress`). The check and the registration happen under one lock, so
//! no wake-up is lost; for the lane, the consumer also counts itself as a waiter, as a blocking
//! consumer does (see `Lane::register_waiter`).
//!
//! A future keeps a [`Registration`] between polls, and hands it to [`Engine::cancel`] when
//! dropped: a wake-up it received and did not act on goes to the next task waiting.

use super::get::{AckAttempt, Handed};
use super::put::{Attempt, Items, Refused};
use super::{Engine, State};
use crate::error::CodecError;
use crate::error::Error;
use std::sync::MutexGuard;
use std::task::{Context, Poll};

/// Which condition a task waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum List {
    Items,
    Room,
    Progress,
}

/// A task's place among the waiting, kept by its future between polls.
#[derive(Debug, Default)]
pub(crate) struct Registration {
    /// The list and the entry in it, while registered.
    entry: Option<(List, u64)>,
    /// Counted as a waiter of the lane (see `Lane::register_waiter`).
    lane: bool,
}

/// Where an async put stands between polls.
pub(crate) enum PutState<I> {
    /// Not yet attempted, or to attempt again once woken.
    Ready(I),
    /// Waiting for the spill thread's attempt to make a segment; with the count of deletions
    /// (`Spill::space_freed`) when it began.
    Segment(I, u64, u64),
    /// At the disk cap: waiting for files to be deleted since the count.
    Cap(I, u64),
    /// Put; under `EveryPut`, waiting for records before the end to be fsynced.
    Durable(I, u64),
    /// Finished (polled to completion).
    Done,
}

/// Where an async sync stands between polls.
pub(crate) enum SyncState {
    Start,
    /// Items in memory wait for the spill thread's attempt to make a segment.
    Segment(u64),
    /// Requested, with the codec failures to report once it is done.
    Requested(u64, Vec<CodecError>),
    Done,
}

impl<T: Send + 'static> Engine<T> {
    /// Takes the task out of the list it waits in, and out of the lane's waiters. Returns
    /// whether it was still registered (not woken).
    fn deregister(&self, state: &mut State<T>, registration: &mut Registration) -> bool {
        if std::mem::take(&mut registration.lane) {
            self.lane.unregister_waiter();
        }
        match registration.entry.take() {
            Some((list, id)) => self.list(state, list).remove(id),
            None => false,
        }
    }

    fn list<'a>(&self, state: &'a mut State<T>, list: List) -> &'a mut crate::wake::WakerList {
        match list {
            List::Items => &mut state.item_wakers,
            List::Room => &mut state.room_wakers,
            List::Progress => &mut state.progress_wakers,
        }
    }

    fn register(
        &self,
        state: &mut State<T>,
        registration: &mut Registration,
        list: List,
        cx: &Context<'_>,
    ) {
        let id = self.list(state, list).register(None, cx.waker());
        registration.entry = Some((list, id));
    }

    /// For a future dropped before it completed: takes it out of the waiting, and passes on a
    /// wake-up it received and did not act on.
    pub(crate) fn cancel(&self, registration: &mut Registration) {
        if registration.entry.is_none() && !registration.lane {
            return;
        }
        let mut state = self.lock();
        if std::mem::take(&mut registration.lane) {
            self.lane.unregister_waiter();
        }
        if let Some((list, id)) = registration.entry.take() {
            self.list(&mut state, list).cancel(id);
        }
    }

    /// Registers a consumer to be woken for an item, counting it among the lane's waiters in
    /// fast mode. `false`: an item arrived in the lane meanwhile; look again.
    fn register_consumer(
        &self,
        state: &mut State<T>,
        registration: &mut Registration,
        cx: &Context<'_>,
    ) -> bool {
        if state.fast {
            registration.lane = true;
            if !self.lane.register_waiter() {
                self.lane.unregister_waiter();
                registration.lane = false;
                return false;
            }
        }
        self.register(state, registration, List::Items, cx);
        true
    }

    /// Locks the state for a poll, after taking the task out of the waiting.
    fn lock_for_poll(&self, registration: &mut Registration) -> MutexGuard<'_, State<T>> {
        let mut state = self.lock();
        self.deregister(&mut state, registration);
        state
    }

    /// `get_async`: the head item once there is one.
    pub(crate) fn poll_get(
        &self,
        cx: &Context<'_>,
        registration: &mut Registration,
    ) -> Poll<Result<T, Error>> {
        if registration.entry.is_none()
            && !registration.lane
            && let Some(item) = self.lane.pop_without_lock()
        {
            return Poll::Ready(Ok(item));
        }
        let mut state = self.lock_for_poll(registration);
        loop {
            match self.find_head(&mut state, false) {
                Err(error) => return Poll::Ready(Err(error)),
                Ok(true) => {
                    // The lane's head may have gone to a consumer without the lock: look again.
                    if let Some(slot) = self.pop_head(&mut state) {
                        let taken = self.finish_take(&mut state, slot);
                        self.enter_fast(&mut state);
                        return Poll::Ready(taken);
                    }
                }
                Ok(false) => {
                    if self.register_consumer(&mut state, registration, cx) {
                        return Poll::Pending;
                    }
                }
            }
        }
    }

    /// `get_batch_async`: up to `max` items once there is one.
    pub(crate) fn poll_get_batch(
        &self,
        cx: &Context<'_>,
        registration: &mut Registration,
        max: usize,
    ) -> Poll<Result<Vec<T>, Error>> {
        let first = match self.poll_get(cx, registration) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Ready(Ok(first)) => first,
        };
        let mut items = vec![first];
        if max > 1 {
            // What else is there now, without waiting.
            // An error (a record that does not decode, the close) is reported by the next call.
            if let Ok(more) = self.get_batch(max - 1, super::Wait::No) {
                items.extend(more);
            }
        }
        Poll::Ready(Ok(items))
    }

    /// `peek_async`: a copy of the head item once there is one.
    pub(crate) fn poll_peek(
        &self,
        cx: &Context<'_>,
        registration: &mut Registration,
    ) -> Poll<Result<T, Error>> {
        let mut state = self.lock_for_poll(registration);
        loop {
            match self.find_head(&mut state, true) {
                Err(error) => return Poll::Ready(Err(error)),
                Ok(true) => {
                    return Poll::Ready(match self.copy_head(&state) {
                        Ok(Some(item)) => Ok(item),
                        Ok(None) => continue,
                        Err(error) => Err(error),
                    });
                }
                Ok(false) => {
                    if self.register_consumer(&mut state, registration, cx) {
                        return Poll::Pending;
                    }
                }
            }
        }
    }

    /// `get_ack_async`: the head item for acknowledged delivery once there is one.
    pub(crate) fn poll_get_ack(
        &self,
        cx: &Context<'_>,
        registration: &mut Registration,
        segment: &mut Option<u64>,
    ) -> Poll<Result<Handed<T>, Error>> {
        let mut state = self.lock_for_poll(registration);
        loop {
            if let Some(attempt) = *segment {
                match Self::segment_outcome(&state, attempt) {
                    None => {
                        self.register(&mut state, registration, List::Room, cx);
                        return Poll::Pending;
                    }
                    Some(Err(error)) => return Poll::Ready(Err(error)),
                    Some(Ok(())) => *segment = None,
                }
            }
            match self.find_head(&mut state, true) {
                Err(error) => return Poll::Ready(Err(error)),
                Ok(true) => match self.attempt_get_ack(&mut state) {
                    Err(error) => return Poll::Ready(Err(error)),
                    Ok(AckAttempt::Handed(handed)) => return Poll::Ready(Ok(handed)),
                    Ok(AckAttempt::Empty) => {}
                    Ok(AckAttempt::Segment(attempt)) => *segment = Some(attempt),
                },
                Ok(false) => {
                    if self.register_consumer(&mut state, registration, cx) {
                        return Poll::Pending;
                    }
                }
            }
        }
    }

    /// `put_async` and the sink: the items in the queue (durable under `EveryPut`), or why not.
    pub(crate) fn poll_put<I: Items<T>>(
        &self,
        cx: &Context<'_>,
        registration: &mut Registration,
        put: &mut PutState<I>,
    ) -> Poll<Result<(), Refused<I>>> {
        let mut state = self.lock_for_poll(registration);
        loop {
            let outcome = match std::mem::replace(put, PutState::Done) {
                PutState::Done => return Poll::Ready(Ok(())),
                PutState::Ready(items) => self.attempt_put(&mut state, items),
                PutState::Segment(items, attempt, freed) => {
                    match Self::segment_outcome(&state, attempt) {
                        None => Attempt::Segment(items, attempt),
                        Some(Err(Error::Full)) => {
                            *put = PutState::Cap(items, freed);
                            continue;
                        }
                        Some(Err(error)) => Attempt::Refused(Refused::Failed(items, error)),
                        Some(Ok(())) => {
                            *put = PutState::Ready(items);
                            continue;
                        }
                    }
                }
                PutState::Cap(items, freed) => {
                    if state.spill.space_freed() != freed {
                        *put = PutState::Ready(items);
                        continue;
                    }
                    if state.closed || state.spill.is_stopped() {
                        return Poll::Ready(Err(Refused::Closed(items)));
                    }
                    *put = PutState::Cap(items, freed);
                    self.register(&mut state, registration, List::Room, cx);
                    return Poll::Pending;
                }
                PutState::Durable(items, end) => Attempt::Durable(items, end),
            };
            match outcome {
                Attempt::Done => return Poll::Ready(Ok(())),
                Attempt::Refused(refused) => return Poll::Ready(Err(refused)),
                Attempt::Full(items) => {
                    *put = PutState::Ready(items);
                    self.register(&mut state, registration, List::Room, cx);
                    return Poll::Pending;
                }
                Attempt::Segment(items, attempt) => {
                    let freed = state.spill.space_freed();
                    *put = PutState::Segment(items, attempt, freed);
                    if Self::segment_outcome(&state, attempt).is_some() {
                        continue;
                    }
                    self.register(&mut state, registration, List::Room, cx);
                    return Poll::Pending;
                }
                Attempt::Durable(items, end) => match Self::durable_outcome(&state, end) {
                    Some(Ok(())) => return Poll::Ready(Ok(())),
                    Some(Err(error)) => return Poll::Ready(Err(Refused::Failed(items, error))),
                    None => {
                        *put = PutState::Durable(items, end);
                        self.register(&mut state, registration, List::Progress, cx);
                        return Poll::Pending;
                    }
                },
            }
        }
    }

    /// `sync_async`: everything put before it durable, with the read cursor.
    pub(crate) fn poll_sync(
        &self,
        cx: &Context<'_>,
        registration: &mut Registration,
        sync: &mut SyncState,
    ) -> Poll<Result<(), Error>> {
        let mut state = self.lock_for_poll(registration);
        loop {
            match std::mem::replace(sync, SyncState::Done) {
                SyncState::Done => return Poll::Ready(Ok(())),
                SyncState::Start => {
                    if state.closed {
                        return Poll::Ready(Err(Error::Closed));
                    }
                    self.leave_fast(&mut state);
                    if let Err(want) = self.write_memory(&mut state, true) {
                        *sync = SyncState::Segment(self.want_segments(&mut state, want));
                        continue;
                    }
                    let failures = std::mem::take(&mut state.codec_failures);
                    let request = state.spill.request_sync();
                    self.wake_spill(&mut state);
                    *sync = SyncState::Requested(request, failures);
                }
                SyncState::Segment(attempt) => match Self::segment_outcome(&state, attempt) {
                    None => {
                        *sync = SyncState::Segment(attempt);
                        self.register(&mut state, registration, List::Room, cx);
                        return Poll::Pending;
                    }
                    Some(Err(error)) => return Poll::Ready(Err(error)),
                    Some(Ok(())) => *sync = SyncState::Start,
                },
                SyncState::Requested(request, failures) => {
                    if state.spill.is_synced(request) {
                        return Poll::Ready(match failures.into_iter().next() {
                            Some(source) => Err(Error::Codec {
                                sequence: None,
                                moved_to: None,
                                source,
                            }),
                            None => Ok(()),
                        });
                    }
                    if let Some(failure) = state.spill.failure() {
                        return Poll::Ready(Err(failure));
                    }
                    if state.spill.is_stopped() {
                        return Poll::Ready(Err(Error::Closed));
                    }
                    *sync = SyncState::Requested(request, failures);
                    self.register(&mut state, registration, List::Progress, cx);
                    return Poll::Pending;
                }
            }
        }
    }
}
