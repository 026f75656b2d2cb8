//! The `Nats-Msg-Id` of an item: the queue's identity and the item's sequence number, so the
//! same item always gets the same id (across a crash and a reopen) and no two items share one.
//! JetStream's duplicate window drops a message whose id it has stored already; in
//! [`Ordering::Strict`](crate::Ordering::Strict) the id of the previous item also goes into
//! `Nats-Expected-Last-Msg-Id`, and the server's refusals name the stream's last id, which
//! [`parse`] turns back into a sequence number.

/// An id no message has: the expected last id of the first message of a run, whose refusal
/// names the stream's last id.
pub(crate) const PROBE: &str = "spillq-nats-probe";

/// The id of the item with sequence number `sequence` in the queue with identity `queue_id`.
pub(crate) fn format(queue_id: &str, sequence: u64) -> String {
    format!("{queue_id}-{sequence}")
}

/// What the id of the stream's last message says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LastId {
    /// An item of this queue: the stream holds it and, in `Strict` order, every item before it.
    Ours(u64),
    /// The server does not know the last id (it restarted and the last message is older than
    /// the duplicate window, or the last message had no id).
    Unknown,
    /// A message some other publisher sent.
    Foreign(String),
}

/// Reads an id as [`format`] wrote it.
pub(crate) fn parse(queue_id: &str, id: &str) -> LastId {
    if id.is_empty() {
        return LastId::Unknown;
    }
    id.strip_prefix(queue_id)
        .and_then(|rest| rest.strip_prefix('-'))
        .and_then(|sequence| sequence.parse().ok())
        .map_or_else(|| LastId::Foreign(id.to_string()), LastId::Ours)
}

/// The last id named by the server's "wrong last msg ID" refusal, as async-nats displays it:
/// `wrong last msg ID: <id> (code 400, error code 10070)`; the id is empty when the server does
/// not know it. `None` if the text has another form.
pub(crate) fn from_refusal(text: &str) -> Option<&str> {
    const PREFIX: &str = "wrong last msg ID:";
    let start = text.find(PREFIX)? + PREFIX.len();
    let rest = text.get(start..)?;
    // Ids hold no blanks; the server writes one blank after the colon, async-nats one before
    // the parenthesis.
    let id = rest.trim_start_matches(' ');
    Some(id.split([' ', '(']).next().unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUEUE: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn an_id_reads_back_as_its_sequence() {
        for sequence in [0, 1, 999, u64::MAX] {
            assert_eq!(
                parse(QUEUE, &format(QUEUE, sequence)),
                LastId::Ours(sequence)
            );
        }
    }

    #[test]
    fn ids_of_other_queues_and_publishers_are_foreign() {
        let other = "ffffffffffffffffffffffffffffffff";
        assert!(matches!(
            parse(QUEUE, &format(other, 5)),
            LastId::Foreign(_)
        ));
        assert!(matches!(parse(QUEUE, "order-17"), LastId::Foreign(_)));
        assert!(matches!(
            parse(QUEUE, &format!("{QUEUE}-x")),
            LastId::Foreign(_)
        ));
        assert!(matches!(
            parse(QUEUE, &format!("{QUEUE}5")),
            LastId::Foreign(_)
        ));
        assert_eq!(parse(QUEUE, ""), LastId::Unknown);
    }

    #[test]
    fn the_refusal_names_the_last_id() {
        let known = format!("wrong last msg ID: {QUEUE}-41 (code 400, error code 10070)");
        assert_eq!(from_refusal(&known), Some(format!("{QUEUE}-41").as_str()));
        let wrapped = format!("wrong last message id: {known}");
        assert_eq!(from_refusal(&wrapped), Some(format!("{QUEUE}-41").as_str()));
        let unknown = "wrong last msg ID:  (code 400, error code 10070)";
        assert_eq!(from_refusal(unknown), Some(""));
        assert_eq!(from_refusal("wrong last msg ID: "), Some(""));
        assert_eq!(from_refusal("timed out"), None);
    }
}
