//! What a failed publish means for the forwarder: retry, put the stream's order right, or stop.
//! Pure mapping of async-nats errors; the forwarder acts on it.

use crate::error::Error;
use crate::message_id::{self, LastId};
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::{Error as ApiError, ErrorCode};

/// JetStream error codes (`err_code`) that retrying does not cure.
const MESSAGE_TOO_LARGE: ErrorCode = ErrorCode(10054);
const HEADERS_TOO_LARGE: ErrorCode = ErrorCode(10097);
const STREAM_SEALED: ErrorCode = ErrorCode(10109);
const JETSTREAM_NOT_ENABLED: ErrorCode = ErrorCode(10076);
const JETSTREAM_NOT_ENABLED_FOR_ACCOUNT: ErrorCode = ErrorCode(10039);

/// The message an item became, for error reports.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sent {
    pub(crate) sequence: u64,
    pub(crate) bytes: usize,
}

#[derive(Debug)]
pub(crate) enum Failure {
    /// The server, the cluster or the link is away or overloaded: send again later.
    Transient(String),
    /// Nobody answered on the subject: no stream, or none reachable yet. The forwarder asks
    /// the JetStream API which.
    NoResponders,
    /// In `Strict` order, the server refused a message because the stream's last message is
    /// not the one it named.
    OutOfOrder(LastId),
    /// Retrying cannot help.
    Fatal(Error),
}

/// Classifies a failed publish or acknowledgement of the message `sent`.
pub(crate) fn classify(
    error: &PublishError,
    queue_id: &str,
    sent: Sent,
    max_payload_bytes: usize,
) -> Failure {
    match error.kind() {
        PublishErrorKind::StreamNotFound => Failure::NoResponders,
        PublishErrorKind::MaxPayloadExceeded => Failure::Fatal(Error::TooLarge {
            sequence: sent.sequence,
            bytes: sent.bytes,
            max_payload_bytes: Some(max_payload_bytes),
        }),
        PublishErrorKind::WrongLastMessageId => {
            let text = error.to_string();
            match message_id::from_refusal(&text) {
                Some(id) => Failure::OutOfOrder(message_id::parse(queue_id, id)),
                None => Failure::OutOfOrder(LastId::Unknown),
            }
        }
        PublishErrorKind::Other => match api_error(error) {
            Some(api) => classify_api(api, sent),
            None => Failure::Transient(error.to_string()),
        },
        _ => Failure::Transient(error.to_string()),
    }
}

/// Classifies JetStream's own refusal of a message.
pub(crate) fn classify_api(api: &ApiError, sent: Sent) -> Failure {
    let code = api.error_code();
    if code == MESSAGE_TOO_LARGE || code == HEADERS_TOO_LARGE {
        Failure::Fatal(Error::TooLarge {
            sequence: sent.sequence,
            bytes: sent.bytes,
            max_payload_bytes: None,
        })
    } else if code == STREAM_SEALED
        || code == JETSTREAM_NOT_ENABLED
        || code == JETSTREAM_NOT_ENABLED_FOR_ACCOUNT
    {
        Failure::Fatal(Error::Refused {
            sequence: sent.sequence,
            code: code.0,
            description: api.to_string(),
        })
    } else {
        // Storage or account limits, a stream at its message limit with the `new` discard
        // policy, a cluster without a leader: space or a leader may come back.
        Failure::Transient(api.to_string())
    }
}

/// JetStream's error inside an async-nats error, if it carries one.
pub(crate) fn api_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a ApiError> {
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        if let Some(api) = inner.downcast_ref::<ApiError>() {
            return Some(api);
        }
        source = inner.source();
    }
    None
}

/// Whether JetStream's answer to an API request says it is not enabled at all.
pub(crate) fn jetstream_disabled(api: &ApiError) -> bool {
    let code = api.error_code();
    code == JETSTREAM_NOT_ENABLED || code == JETSTREAM_NOT_ENABLED_FOR_ACCOUNT
}
