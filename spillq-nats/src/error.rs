//! [`Error`]: why [`Forwarder::run`](crate::Forwarder::run) gave up. Only failures that
//! retrying cannot cure end a run; a server or cluster that went away is retried instead.

use std::fmt;

/// Why [`Forwarder::run`](crate::Forwarder::run) returned without the queue being closed.
///
/// Whatever the error, no item was lost: every item not acknowledged by JetStream is back in the
/// queue, in order, and the next run sends it again. Each message says what to do.
///
/// ```
/// let error = spillq_nats::Error::StreamNotFound { subject: "events".into() };
/// assert!(error.to_string().contains("create a stream"));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// No JetStream stream captures the subject (the server said so when asked).
    StreamNotFound {
        /// The subject the forwarder publishes to.
        subject: String,
    },
    /// An item is larger than the server (its `max_payload`) or the stream (its
    /// `max_msg_size`) accepts. It stays at the head of the queue.
    TooLarge {
        /// The item's sequence number in the queue.
        sequence: u64,
        /// The message's size: the item's bytes and the forwarder's headers.
        bytes: usize,
        /// The server's `max_payload`, when that is the limit; `None` when the stream's
        /// `max_msg_size` refused it.
        max_payload_bytes: Option<usize>,
    },
    /// JetStream refused an item for a reason that retrying does not cure (a sealed stream,
    /// JetStream disabled). The item stays in the queue.
    Refused {
        /// The item's sequence number in the queue.
        sequence: u64,
        /// JetStream's error code (`err_code`), 0 if it gave none.
        code: u64,
        /// What JetStream said.
        description: String,
    },
    /// JetStream is not enabled on the server or for the account (the JetStream API said so
    /// when asked about the stream). Every item stays in the queue.
    JetStreamDisabled {
        /// JetStream's error code (`err_code`).
        code: u64,
        /// What JetStream said.
        description: String,
    },
    /// In [`Ordering::Strict`](crate::Ordering::Strict), the stream's last message was sent by
    /// another publisher, so this forwarder cannot keep the queue's order in it.
    OtherPublisher {
        /// The subject the forwarder publishes to.
        subject: String,
        /// The `Nats-Msg-Id` of the other publisher's message.
        last_message_id: String,
    },
    /// An item cannot be encoded by the queue's codec (or has no sequence number, which only an
    /// item that could not be encoded lacks). It stays at the head of the queue.
    Encode {
        /// The item's sequence number, if it has one.
        sequence: Option<u64>,
        /// What the queue said.
        source: spillq::Error,
    },
    /// The queue failed (a disk error, a poisoned queue). See [`spillq::Error`].
    Queue(spillq::Error),
    /// The NATS client was closed (drained or dropped), so nothing can be published with it.
    ClientClosed,
    /// [`run`](crate::Forwarder::run) was called while another run on the same queue (by this
    /// forwarder or another one in this process) was still running.
    AlreadyRunning,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const STAYS: &str = "the item stays at the head of the queue";
        match self {
            Self::StreamNotFound { subject } => write!(
                f,
                "no JetStream stream captures subject {subject:?}: create a stream whose subjects \
                 include it (for example `nats stream add --subjects {subject:?}`), then run the \
                 forwarder again; every item stays in the queue"
            ),
            Self::TooLarge {
                sequence,
                bytes,
                max_payload_bytes: Some(max),
            } => write!(
                f,
                "item {sequence} makes a message of {bytes} bytes, more than the server's \
                 max_payload ({max} bytes): raise max_payload in the server's configuration, \
                 or take the item out of the queue (Queue::get) to skip it; {STAYS}"
            ),
            Self::TooLarge {
                sequence, bytes, ..
            } => write!(
                f,
                "item {sequence} makes a message of {bytes} bytes, more than the stream's \
                 max_msg_size: raise it (`nats stream edit --max-msg-size`), or take the item \
                 out of the queue (Queue::get) to skip it; {STAYS}"
            ),
            Self::Refused {
                sequence,
                code,
                description,
            } => write!(
                f,
                "JetStream refused item {sequence}: {description} (error code {code}); fix the \
                 stream or the server and run the forwarder again; {STAYS}"
            ),
            Self::JetStreamDisabled { code, description } => write!(
                f,
                "JetStream is not available: {description} (error code {code}); run the \
                 forwarder again once it is; every item stays in the queue"
            ),
            Self::OtherPublisher {
                subject,
                last_message_id,
            } => write!(
                f,
                "another publisher writes to the stream of {subject:?} (its last message has id \
                 {last_message_id:?}), so the queue's order cannot be kept in it: give the \
                 forwarder a stream of its own, or choose Ordering::Shared; every item not yet \
                 acknowledged stays in the queue"
            ),
            Self::Encode { sequence, source } => {
                match sequence {
                    Some(sequence) => write!(f, "item {sequence} cannot be encoded: {source}")?,
                    None => write!(f, "an item cannot be encoded: {source}")?,
                }
                write!(
                    f,
                    "; take it out of the queue (Queue::get) to go on; {STAYS}"
                )
            }
            Self::Queue(source) => write!(f, "the queue failed: {source}"),
            Self::ClientClosed => f.write_str(
                "the NATS client was closed: connect again and make a new forwarder; every item \
                 not yet acknowledged stays in the queue",
            ),
            Self::AlreadyRunning => {
                f.write_str("a forwarder is already running on this queue; run one forwarder per queue, once at \
                 a time")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Encode { source, .. } | Self::Queue(source) => Some(source),
            _ => None,
        }
    }
}
