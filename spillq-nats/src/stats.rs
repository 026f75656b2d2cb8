//! [`Stats`]: what a forwarder has done, counted since it was made.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counts of what a [`Forwarder`](crate::Forwarder) has done since it was made, from
/// [`Forwarder::stats`](crate::Forwarder::stats). Every count only grows.
///
/// After a run that forwarded `n` items without a failure, `acknowledged` and the items removed
/// from the queue are `n`, and so is `published` in [`Ordering::Shared`](crate::Ordering::Shared);
/// in [`Ordering::Strict`](crate::Ordering::Strict) it is `n + 1`: the run's first message is a
/// probe the server refuses, naming the stream's last message, and it is sent again (not
/// counted in `retried`). A lost server adds to `retried` (and so to `published`); a restart
/// after a crash adds to `duplicates` (items JetStream already had) or, in `Strict` order, to
/// `found_in_stream`.
///
/// ```
/// let stats = spillq_nats::Stats::default();
/// assert_eq!(stats.published, 0);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Messages sent to JetStream, first attempts and retries.
    pub published: u64,
    /// Messages JetStream acknowledged (stored, or recognised as duplicates). Each is removed
    /// from the queue.
    pub acknowledged: u64,
    /// Messages sent again because an earlier attempt failed or went unanswered.
    pub retried: u64,
    /// Acknowledgements in which JetStream said it already held the message (its
    /// `Nats-Msg-Id` was in the stream's duplicate window), so it was not stored again.
    pub duplicates: u64,
    /// Items removed from the queue without being sent again because the stream's last
    /// message showed that JetStream already held them (see [`Ordering::Strict`](crate::Ordering::Strict)).
    pub found_in_stream: u64,
}

/// The live counters behind [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) acknowledged: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) found_in_stream: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        // Counters are read one by one; no other memory depends on them.
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            published: self.published.load(Ordering::Relaxed),
            acknowledged: self.acknowledged.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            found_in_stream: self.found_in_stream.load(Ordering::Relaxed),
        }
    }
}
