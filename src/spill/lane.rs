//! The lane: the lock-free bounded queue that holds the queue's items while it runs in memory
//! only, with gates that holders of the queue's lock close and open (where it sits among the
//! queue's invariants: `engine/mod.rs`).
//!
//! It is a ring of slots with a stamp each, after Dmitry Vyukov's bounded multi-producer
//! multi-consumer queue, and the gate is one bit of the push position. A push claims its slot
//! with one compare-and-swap of that position, which fails once the bit is set: the gate costs
//! a push nothing more, so a push is one atomic read-modify-write, as a bounded channel's send
//! is. Closing sets the bit. A push that claimed its slot before goes on to write it, and a pop
//! that reaches a claimed slot waits for that write, so a closer that then takes everything
//! out of the lane takes every push that got in.
//!
//! Pops have a gate of their own, the same bit of the pop position, for consumers that take
//! from the lane without the queue's lock: such a pop claims its slot with a compare-and-swap
//! that fails once the bit is set. Holders of the lock pop whatever the bit, and set it before
//! they move lane items into the ring or add to the ring in any other way, so an item taken
//! without the lock is never younger than one in the ring.
//!
//! Positions count slots from the start: `lap + index`, with `index` below the capacity and
//! `lap` a multiple of `2 * mark`, where `mark` (the gate's bit) is the power of two above the
//! capacity. A slot's stamp says what it waits for: a push at position `p` while it is `p`, a
//! pop at `p` while it is `p + 1`; a pop sets it to the position of the slot one lap later.

use std::mem::MaybeUninit;
use std::ops::Deref;
use std::sync::atomic::Ordering;

/// Times a producer finding the lane full tries again (after 2, 4 and 8 spin-loop hints, a
/// fraction of a microsecond in all) before taking the lock. Short on purpose: longer, and a
/// producer faster than its consumers would be held to their pace instead of running ahead
/// into memory and disk, which is the point of the queue.
const LANE_RETRIES: u32 = 3;

/// The lane's atomics and cells: loom's under `--cfg spillq_loom`, so its model checker can run the
/// lane's protocols (`lane_loom` tests below).
#[cfg(spillq_loom)]
use loom::cell::UnsafeCell as ValueCell;
#[cfg(spillq_loom)]
use loom::sync::atomic::{AtomicUsize as LaneAtomic, fence as lane_fence};
#[cfg(not(spillq_loom))]
use std::sync::atomic::{AtomicUsize as LaneAtomic, fence as lane_fence};

/// `std`'s cell with loom's interface.
#[cfg(not(spillq_loom))]
struct ValueCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(spillq_loom))]
impl<T> ValueCell<T> {
    fn new(value: T) -> Self {
        Self(std::cell::UnsafeCell::new(value))
    }

    fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// Steps of a wait loop that spin (2^step spin-loop hints) before later steps yield.
pub(crate) const SPIN_STEPS: u32 = 6;

/// Step `step` of a wait loop's backoff: spin, or from [`SPIN_STEPS`] on, yield the processor.
/// Under loom, a yield point of the model.
pub(crate) fn pause(step: u32) {
    #[cfg(spillq_loom)]
    {
        let _ = step;
        loom::thread::yield_now();
    }
    #[cfg(not(spillq_loom))]
    if step < SPIN_STEPS {
        for _ in 0..(1u32 << step) {
            std::hint::spin_loop();
        }
    } else {
        std::thread::yield_now();
    }
}

/// A value on cache lines of its own (two: processors fetch lines in adjacent pairs), so that
/// the producers' and the consumers' positions do not share one.
#[repr(align(128))]
struct Padded<T>(T);

impl<T> Deref for Padded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

struct Slot<T> {
    /// What the slot waits for (see the module docs).
    stamp: LaneAtomic,
    value: ValueCell<MaybeUninit<T>>,
}

/// The bounded queue with its gate (see the module docs).
struct Ring<T> {
    /// Position of the next pop, plus `mark` while pops without the lock are shut out.
    head: Padded<LaneAtomic>,
    /// Position of the next push, plus `mark` while the gate is closed.
    tail: Padded<LaneAtomic>,
    slots: Box<[Slot<T>]>,
    /// The gate's bit: the power of two above the capacity. A lap is `2 * mark` positions.
    mark: usize,
}

// SAFETY: a slot's value is written only by the push that claimed the slot (the tail's
// compare-and-swap gives each position to one thread) and read only by the pop that claimed it
// (the head's), and the stamp's release and acquire order the write before the read and the
// read before the next lap's write. Values move between threads (hence `T: Send`) and are
// never shared.
unsafe impl<T: Send> Send for Ring<T> {}
// SAFETY: as for `Send`: no `&T` is ever handed out, so `T: Sync` is not needed.
unsafe impl<T: Send> Sync for Ring<T> {}

impl<T> Ring<T> {
    /// A ring of `capacity` slots (at least 1), both its gates closed.
    fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let mark = (capacity + 1).next_power_of_two();
        Self {
            head: Padded(LaneAtomic::new(mark)),
            tail: Padded(LaneAtomic::new(mark)),
            slots: (0..capacity)
                .map(|index| Slot {
                    stamp: LaneAtomic::new(index),
                    value: ValueCell::new(MaybeUninit::uninit()),
                })
                .collect(),
            mark,
        }
    }

    fn lap(&self) -> usize {
        self.mark * 2
    }

    fn slot(&self, position: usize) -> &Slot<T> {
        // The index is below the capacity by construction (see `next`).
        &self.slots[position & (self.mark - 1)]
    }

    /// The position after `position`.
    fn next(&self, position: usize) -> usize {
        let index = position & (self.mark - 1);
        if index + 1 < self.slots.len() {
            position + 1
        } else {
            (position & !(self.lap() - 1)).wrapping_add(self.lap())
        }
    }

    /// Pushes `value` unless the gate is closed or every slot is full. On refusal, the value
    /// and whether the ring was only full (gate open).
    fn push(&self, value: T) -> Result<(), (T, bool)> {
        let mut tail = self.tail.load(Ordering::Relaxed);
        let mut step = 0;
        loop {
            if tail & self.mark != 0 {
                return Err((value, false));
            }
            let slot = self.slot(tail);
            let stamp = slot.stamp.load(Ordering::Acquire);
            if stamp == tail {
                // Free at this lap: claim it. Acquire-release, for the wake-up protocol (see
                // `Lane::register_waiter`).
                match self.tail.compare_exchange_weak(
                    tail,
                    self.next(tail),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        slot.value.with_mut(|cell| {
                            // SAFETY: the compare-and-swap gave this position to this thread
                            // alone, and the stamp (acquired above) says the pop of the lap
                            // before has read the slot's last value out: nobody reads or
                            // writes the cell until the store below publishes it.
                            unsafe { cell.write(MaybeUninit::new(value)) }
                        });
                        slot.stamp.store(tail.wrapping_add(1), Ordering::Release);
                        return Ok(());
                    }
                    Err(current) => tail = current,
                }
                continue;
            }
            if stamp.wrapping_add(self.lap()) == tail.wrapping_add(1) {
                // The slot holds the value of the lap before: full, unless a pop is under way.
                lane_fence(Ordering::SeqCst);
                let head = self.head.load(Ordering::Relaxed) & !self.mark;
                if head.wrapping_add(self.lap()) == tail {
                    return Err((value, true));
                }
            }
            // Another push claimed the slot first, or a pop is emptying it.
            pause(step);
            step = (step + 1).min(SPIN_STEPS);
            tail = self.tail.load(Ordering::Relaxed);
        }
    }

    /// Takes the oldest value. A slot claimed by a push is waited for until it is written.
    /// With `gated`, returns `None` while the pop gate is closed (a pop without the lock).
    fn pop(&self, gated: bool) -> Option<T> {
        let mut current = self.head.load(Ordering::Relaxed);
        let mut step = 0;
        loop {
            let shut = current & self.mark;
            if gated && shut != 0 {
                return None;
            }
            let head = current & !self.mark;
            let slot = self.slot(head);
            let stamp = slot.stamp.load(Ordering::Acquire);
            if stamp == head.wrapping_add(1) {
                // The gate's bit goes along unchanged: a closer that set it meanwhile makes
                // this fail, and a pop without the lock then sees it.
                match self.head.compare_exchange_weak(
                    current,
                    self.next(head) | shut,
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        let value = slot.value.with_mut(|cell| {
                            // SAFETY: the compare-and-swap gave this position to this thread
                            // alone, and the stamp (acquired above) says its push wrote the
                            // value; the store below hands the slot to the next lap's push
                            // only after the read.
                            unsafe { cell.read().assume_init() }
                        });
                        slot.stamp
                            .store(head.wrapping_add(self.lap()), Ordering::Release);
                        return Some(value);
                    }
                    Err(now) => current = now,
                }
                continue;
            }
            if stamp == head {
                // Free at this lap: empty, unless a push has claimed the slot and not yet
                // written it.
                lane_fence(Ordering::SeqCst);
                let tail = self.tail.load(Ordering::Relaxed);
                if tail & !self.mark == head {
                    return None;
                }
            }
            pause(step);
            step = (step + 1).min(SPIN_STEPS);
            current = self.head.load(Ordering::Relaxed);
        }
    }

    fn is_empty(&self) -> bool {
        let head = self.head.load(Ordering::SeqCst) & !self.mark;
        // An item written at the head says so without a look at the tail, which producers
        // write on every push (the head's slot is the line a pop reads next anyway).
        if self.slot(head).stamp.load(Ordering::Acquire) == head.wrapping_add(1) {
            return false;
        }
        let tail = self.tail.load(Ordering::SeqCst);
        tail & !self.mark == head
    }

    /// Items in the ring: exact while nobody pushes or pops.
    fn len(&self) -> usize {
        let head = self.head.load(Ordering::SeqCst) & !self.mark;
        let tail = self.tail.load(Ordering::SeqCst) & !self.mark;
        // A position is `lap + index`: as a count of slots from the start, `laps * capacity
        // + index`.
        let linear = |position: usize| {
            (position / self.lap())
                .wrapping_mul(self.slots.len())
                .wrapping_add(position & (self.mark - 1))
        };
        linear(tail)
            .wrapping_sub(linear(head))
            .min(self.slots.len())
    }

    fn open(&self) {
        self.tail.fetch_and(!self.mark, Ordering::Release);
    }

    fn close(&self) {
        self.tail.fetch_or(self.mark, Ordering::SeqCst);
    }

    fn open_pops(&self) {
        self.head.fetch_and(!self.mark, Ordering::Release);
    }

    fn close_pops(&self) {
        self.head.fetch_or(self.mark, Ordering::SeqCst);
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        while self.pop(false).is_some() {}
    }
}

/// The lock-free front of the memory ring (see the module docs, and `engine/mod.rs`).
pub(crate) struct Lane<T> {
    /// `None` when the queue's options never allow it.
    ring: Option<Ring<T>>,
    /// Consumers about to sleep, or sleeping, on the queue's `items` condition variable: a producer that pushed wakes them.
    /// Read after every push, written only by consumers going to sleep: a line of its own.
    waiters: Padded<LaneAtomic>,
}

impl<T> Lane<T> {
    /// A lane of `capacity` items, both gates closed; `None` for a queue that never uses one.
    pub(crate) fn with_capacity(capacity: Option<usize>) -> Self {
        Self {
            ring: capacity.map(Ring::new),
            waiters: Padded(LaneAtomic::new(0)),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.ring.as_ref().map_or(0, |ring| ring.slots.len())
    }

    /// Hands `item` over if the gate is open and the lane has room; else gives it back. A full
    /// lane is tried again a few times first (see [`LANE_RETRIES`]).
    pub(crate) fn push(&self, mut item: T) -> Result<(), T> {
        for attempt in 0..=LANE_RETRIES {
            if attempt > 0 {
                pause(attempt);
            }
            match self.try_push(item) {
                Ok(()) => return Ok(()),
                Err((back, true)) => item = back,
                Err((back, false)) => return Err(back),
            }
        }
        Err(item)
    }

    /// One attempt; on refusal, the item and whether the lane was only full (gate open).
    fn try_push(&self, item: T) -> Result<(), (T, bool)> {
        match &self.ring {
            Some(ring) => ring.push(item),
            None => Err((item, false)),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ring.as_ref().is_none_or(Ring::is_empty)
    }

    /// Items in the lane: exact while nobody pushes or pops.
    pub(crate) fn len(&self) -> usize {
        self.ring.as_ref().map_or(0, Ring::len)
    }

    /// Call with the queue's lock held (which also keeps `State::lane_open`, the gate's state
    /// as the lock holders set it, so they need not read the word producers write).
    pub(crate) fn open(&self) {
        if let Some(ring) = &self.ring {
            ring.open();
        }
    }

    /// Closes the gate. Call with the queue's lock held, and then take what is in the lane:
    /// that takes every push that got in (a pop waits for a claimed slot's write).
    pub(crate) fn close(&self) {
        if let Some(ring) = &self.ring {
            ring.close();
        }
    }

    /// A consumer about to sleep on the queue's `items` condition variable, under the queue's lock: counts itself, then
    /// looks at the lane once more. Returns whether it is still empty (so the consumer may
    /// sleep). With [`Lane::wake_wanted`]: either this look sees a producer's item, or that
    /// producer sees the count and wakes the consumer (through the lock, so not before it
    /// sleeps). The look is an acquire-release update of the tail that changes nothing: if a
    /// push's claim of its slot comes after it in the tail's order, the claim reads from it and
    /// so sees the count; if before, this sees the claim.
    pub(crate) fn register_waiter(&self) -> bool {
        self.waiters.fetch_add(1, Ordering::Relaxed);
        let Some(ring) = &self.ring else {
            return true;
        };
        let tail = ring.tail.fetch_or(0, Ordering::AcqRel);
        tail & !ring.mark == ring.head.load(Ordering::Acquire) & !ring.mark
    }

    pub(crate) fn unregister_waiter(&self) {
        self.waiters.fetch_sub(1, Ordering::Relaxed);
    }

    /// After a push that succeeded: whether a consumer may be asleep, or about to sleep, and
    /// needs a wake-up (see [`Lane::register_waiter`]).
    pub(crate) fn wake_wanted(&self) -> bool {
        self.waiters.load(Ordering::Relaxed) > 0
    }

    /// Takes the oldest item. Call with the queue's lock held.
    pub(crate) fn pop(&self) -> Option<T> {
        self.ring.as_ref()?.pop(false)
    }

    /// Takes the oldest item without the queue's lock, if the pop gate is open (see the module
    /// docs); `None` if it is shut or the lane is empty.
    pub(crate) fn pop_without_lock(&self) -> Option<T> {
        self.ring.as_ref()?.pop(true)
    }

    /// Lets consumers take from the lane without the lock. Call with the lock held, and only
    /// while the ring is empty (see `Shared::settle`).
    pub(crate) fn open_pops(&self) {
        if let Some(ring) = &self.ring {
            ring.open_pops();
        }
    }

    /// Shuts out pops without the lock; a pop that claimed its slot before still returns its
    /// item, which is older than every item the lane holds after it. Call with the lock held,
    /// before the ring grows.
    pub(crate) fn close_pops(&self) {
        if let Some(ring) = &self.ring {
            ring.close_pops();
        }
    }
}

#[cfg(all(test, not(spillq_loom)))]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::Lane;
    use std::collections::VecDeque;
    use std::sync::Arc;

    /// Single-threaded, against a `VecDeque`: pushes, pops with and without the lock, and both
    /// gates closing and opening, over many laps of a ring of every small capacity (a capacity
    /// of 3 has a lap that is not all used).
    #[test]
    fn the_lane_agrees_with_a_vecdeque_over_many_laps() {
        for capacity in 1..=5 {
            let lane = Lane::with_capacity(Some(capacity));
            lane.open();
            let mut model = VecDeque::new();
            let mut open = true;
            let mut pops_open = false;
            let mut next = 0u64;
            // A fixed pseudo-random walk: a linear congruential generator.
            let mut seed = 0x2545_f491_4f6c_dd1du64;
            for _ in 0..20_000 {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                match seed >> 61 {
                    0..=3 => {
                        let accepted = lane.try_push(next);
                        let expected = open && model.len() < capacity;
                        assert_eq!(accepted.is_ok(), expected, "push {next}");
                        match accepted {
                            Ok(()) => model.push_back(next),
                            Err((back, full)) => {
                                assert_eq!(back, next);
                                assert_eq!(full, open);
                            }
                        }
                        next += 1;
                    }
                    4 => assert_eq!(lane.pop(), model.pop_front()),
                    5 => {
                        let expected = if pops_open { model.pop_front() } else { None };
                        assert_eq!(lane.pop_without_lock(), expected);
                    }
                    6 => match seed >> 59 & 3 {
                        0 => {
                            lane.close();
                            open = false;
                        }
                        1 => {
                            lane.open();
                            open = true;
                        }
                        2 => {
                            lane.close_pops();
                            pops_open = false;
                        }
                        _ => {
                            lane.open_pops();
                            pops_open = true;
                        }
                    },
                    _ => assert_eq!(lane.pop(), model.pop_front()),
                }
                assert_eq!(lane.is_empty(), model.is_empty());
                assert_eq!(lane.register_waiter(), model.is_empty());
                lane.unregister_waiter();
            }
        }
    }

    /// Items left in the lane are dropped with it.
    #[test]
    fn items_left_in_the_lane_are_dropped_with_it() {
        let item = Arc::new(());
        let lane = Lane::with_capacity(Some(4));
        lane.open();
        for _ in 0..3 {
            lane.try_push(Arc::clone(&item)).unwrap();
        }
        drop(lane.pop());
        drop(lane);
        assert_eq!(Arc::strong_count(&item), 1);
    }

    /// Two producers push through a small lane while a consumer takes and, now and then,
    /// closes the gate, takes everything, and opens it again: every accepted item comes out
    /// once, each producer's in order, and none gets in while the gate is closed.
    #[test]
    fn items_pass_between_threads_in_order_across_closes() {
        const PER_PRODUCER: u64 = 200_000;
        let lane = Arc::new(Lane::with_capacity(Some(8)));
        lane.open();
        let producers: Vec<_> = (0..2u64)
            .map(|p| {
                let lane = Arc::clone(&lane);
                std::thread::spawn(move || {
                    let mut i = 0;
                    while i < PER_PRODUCER {
                        match lane.try_push((p, i)) {
                            Ok(()) => i += 1,
                            Err(_) => std::thread::yield_now(),
                        }
                    }
                })
            })
            .collect();
        let mut next = [0u64; 2];
        let mut round = 0u64;
        while next.iter().sum::<u64>() < 2 * PER_PRODUCER {
            round += 1;
            if round.is_multiple_of(64) {
                lane.close();
                while let Some((p, i)) = lane.pop() {
                    assert_eq!(i, next[p as usize]);
                    next[p as usize] += 1;
                }
                // Shut and taken: nothing may arrive until it opens.
                for _ in 0..100 {
                    assert_eq!(lane.pop(), None);
                    std::hint::spin_loop();
                }
                lane.open();
            } else if let Some((p, i)) = lane.pop() {
                assert_eq!(i, next[p as usize]);
                next[p as usize] += 1;
            }
        }
        for producer in producers {
            producer.join().unwrap();
        }
        assert_eq!(lane.pop(), None);
    }
}

/// The lane's protocols under loom, which runs the interleavings of the threads (and every
/// value a load may see under the memory model) for the lane's atomics and cells.
#[cfg(all(test, spillq_loom))]
mod lane_loom {
    #![allow(clippy::unwrap_used)]

    use super::Lane;
    use loom::sync::{Arc, Condvar, Mutex};
    use loom::thread;

    /// After `close` returns and the closer has taken what is in the lane, no push gets in:
    /// a push that reported success put its item in the lane before, for the closer to take.
    #[test]
    fn no_push_gets_in_once_the_gate_is_closed() {
        // Three preemptions cover every order of the two producers' steps around the
        // closer's; without a bound the model takes minutes for nothing more.
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(3);
        model.check(|| {
            let lane = Arc::new(Lane::with_capacity(Some(4)));
            lane.open();
            let producers: Vec<_> = (0..2u32)
                .map(|p| {
                    let lane = Arc::clone(&lane);
                    thread::spawn(move || lane.try_push(p).is_ok())
                })
                .collect();
            lane.close();
            let mut taken = Vec::new();
            while let Some(item) = lane.pop() {
                taken.push(item);
            }
            for (p, producer) in (0..2u32).zip(producers) {
                let accepted = producer.join().unwrap();
                assert_eq!(accepted, taken.contains(&p), "producer {p}");
            }
            assert!(lane.try_push(9).is_err());
        });
    }

    /// A consumer pops without the lock while the lock holder shuts the pop gate and takes
    /// what is in the lane: every item comes out once, and an item the consumer got is older
    /// than all the lock holder took (it never takes one younger than the ring's).
    #[test]
    fn no_pop_without_the_lock_gets_in_once_its_gate_is_closed() {
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(3);
        model.check(|| {
            let lane = Arc::new(Lane::with_capacity(Some(4)));
            lane.open();
            lane.open_pops();
            for item in 0..3u32 {
                assert!(lane.try_push(item).is_ok());
            }
            let consumer = {
                let lane = Arc::clone(&lane);
                thread::spawn(move || lane.pop_without_lock())
            };
            lane.close_pops();
            let mut taken = Vec::new();
            while let Some(item) = lane.pop() {
                taken.push(item);
            }
            let got = consumer.join().unwrap();
            assert_eq!(lane.pop_without_lock(), None);
            match got {
                Some(item) => {
                    assert_eq!(item, 0);
                    assert_eq!(taken, [1, 2]);
                }
                None => assert_eq!(taken, [0, 1, 2]),
            }
        });
    }

    /// Pushes and pops across the end of a lap of a ring of two, a producer and a consumer on
    /// their own threads: every item comes out once, in order (loom also checks the cells:
    /// no read of a value while it is written).
    #[test]
    fn items_cross_laps_in_order() {
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(3);
        model.check(|| {
            let lane = Arc::new(Lane::with_capacity(Some(2)));
            lane.open();
            let producer = {
                let lane = Arc::clone(&lane);
                thread::spawn(move || {
                    for item in 0..3u32 {
                        while lane.try_push(item).is_err() {
                            thread::yield_now();
                        }
                    }
                })
            };
            let mut next = 0;
            while next < 3 {
                match lane.pop() {
                    Some(item) => {
                        assert_eq!(item, next);
                        next += 1;
                    }
                    None => thread::yield_now(),
                }
            }
            producer.join().unwrap();
            assert_eq!(lane.pop(), None);
        });
    }

    /// A consumer that finds the lane empty and goes to sleep, as `wait_for_head` does, is
    /// always woken by a producer's push, as `after_lane_push` does it: loom fails the model
    /// if any interleaving leaves it asleep.
    #[test]
    fn a_push_always_wakes_a_consumer_going_to_sleep() {
        loom::model(|| {
            let lane = Arc::new(Lane::with_capacity(Some(2)));
            lane.open();
            let sleep = Arc::new((Mutex::new(()), Condvar::new()));
            let producer = {
                let (lane, sleep) = (Arc::clone(&lane), Arc::clone(&sleep));
                thread::spawn(move || {
                    assert!(lane.try_push(7u32).is_ok());
                    if lane.wake_wanted() {
                        drop(sleep.0.lock().unwrap());
                        sleep.1.notify_one();
                    }
                })
            };
            let mut guard = sleep.0.lock().unwrap();
            let item = loop {
                if let Some(item) = lane.pop() {
                    break item;
                }
                if lane.register_waiter() {
                    guard = sleep.1.wait(guard).unwrap();
                }
                lane.unregister_waiter();
            };
            drop(guard);
            assert_eq!(item, 7);
            producer.join().unwrap();
        });
    }
}
