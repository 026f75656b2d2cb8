//! The forwarder's options and their defaults.

use std::time::Duration;

/// Messages in flight (published, not yet acknowledged) by default: enough to keep a loopback
/// or LAN link busy, small enough that a lost server leaves few messages to send again.
pub(crate) const DEFAULT_WINDOW_MESSAGES: usize = 512;
/// The first wait after a failed attempt.
pub(crate) const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two attempts.
pub(crate) const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How the forwarder keeps the queue's order in the stream.
///
/// Messages are published in queue order, several in flight at once. When a connection or a
/// stream leader is lost, the messages that were in flight are sent again; meanwhile the client
/// may deliver, on its new connection, messages it had queued after them. So a message can
/// reach the stream before an earlier one that is being sent again. `Strict` makes the server
/// refuse that; `Shared` lets it happen.
///
/// ```
/// # async fn demo(queue: spillq::Queue<String>, js: async_nats::jetstream::Context) {
/// // A stream that other publishers write to as well:
/// let forwarder = spillq_nats::Forwarder::new(queue, js, "events.edge-7")
///     .ordering(spillq_nats::Ordering::Shared);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Ordering {
    /// The forwarder is the only publisher to its stream (the default). Each message names the
    /// one before it in `Nats-Expected-Last-Msg-Id`, and the server stores it only right after
    /// that one: the stream holds the queue's items in queue order, each once, across lost
    /// connections, restarted servers and new leaders. When the server refuses a message
    /// because another publisher's message came last, [`run`](crate::Forwarder::run) returns
    /// [`Error::OtherPublisher`](crate::Error::OtherPublisher).
    ///
    /// A bonus: the server's refusals name the last item it stored, so after an outage longer
    /// than the duplicate window the forwarder still knows which items the stream holds and
    /// does not store them twice. A server restarted after its last message left the window no
    /// longer knows its last id; the forwarder then reads the stream's last message instead.
    #[default]
    Strict,
    /// Other publishers write to the stream too. No order header is sent. Each item is stored
    /// once (within the stream's duplicate window), and in queue order except around a lost
    /// connection or leader, where an item sent again may land after items published after it.
    Shared,
}
