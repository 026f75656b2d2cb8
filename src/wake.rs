//! Tasks waiting for a condition of the queue, by their wakers: the async front end's side of
//! what condition variables do for blocking callers. Each waiting future holds the id of its
//! entry; whoever makes the condition true takes entries out and wakes them.
//!
//! A future dropped after it was woken and before it looked again would swallow the wake-up
//! meant for someone else: it passes it on ([`WakerList::cancel`]).

use std::task::Waker;

/// The wakers of tasks waiting for one condition, oldest first.
#[derive(Debug, Default)]
pub(crate) struct WakerList {
    entries: Vec<(u64, Waker)>,
    next_id: u64,
}

impl WakerList {
    /// Registers `waker` as waiting: under `id` if it is still there (its waker updated), or
    /// under a new id. Returns the id.
    pub(crate) fn register(&mut self, id: Option<u64>, waker: &Waker) -> u64 {
        if let Some(id) = id
            && let Some((_, current)) = self.entries.iter_mut().find(|(other, _)| *other == id)
        {
            if !current.will_wake(waker) {
                current.clone_from(waker);
            }
            return id;
        }
        self.next_id += 1;
        self.entries.push((self.next_id, waker.clone()));
        self.next_id
    }

    /// Takes entry `id` out; returns whether it was still there (not yet woken).
    pub(crate) fn remove(&mut self, id: u64) -> bool {
        match self.entries.iter().position(|(other, _)| *other == id) {
            Some(index) => {
                self.entries.remove(index);
                true
            }
            None => false,
        }
    }

    /// Takes entry `id` out for a future that is dropped; if it was woken already, the wake-up
    /// goes to the next task waiting, which may be the one it was meant for.
    pub(crate) fn cancel(&mut self, id: u64) {
        if !self.remove(id) {
            self.wake_one();
        }
    }

    /// Wakes the task waiting longest.
    pub(crate) fn wake_one(&mut self) {
        if !self.entries.is_empty() {
            let (_, waker) = self.entries.remove(0);
            waker.wake();
        }
    }

    /// Wakes every waiting task.
    pub(crate) fn wake_all(&mut self) {
        for (_, waker) in self.entries.drain(..) {
            waker.wake();
        }
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (Arc::clone(&count), Waker::from(count))
    }

    #[test]
    fn tasks_are_woken_oldest_first_and_a_dropped_woken_task_passes_its_wake_up_on() {
        let mut list = WakerList::default();
        let (first, first_waker) = waker();
        let (second, second_waker) = waker();
        let a = list.register(None, &first_waker);
        let b = list.register(None, &second_waker);
        // Registering again keeps the place in line.
        assert_eq!(list.register(Some(a), &first_waker), a);
        list.wake_one();
        assert_eq!(first.0.load(Ordering::SeqCst), 1);
        assert_eq!(second.0.load(Ordering::SeqCst), 0);
        // The first task is dropped before it looked: the second gets the wake-up.
        list.cancel(a);
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
        // A task still waiting is just taken out.
        let (third, third_waker) = waker();
        let c = list.register(None, &third_waker);
        list.cancel(c);
        assert_eq!(third.0.load(Ordering::SeqCst), 0);
        assert!(!list.remove(b));
        assert!(list.is_empty());
    }
}
