//! [`Identity`]: the codec of every queue opened from Python.

use spillq::{Codec, CodecError};

/// Stores an item's bytes as the record's payload, unchanged.
///
/// Python items are serialized (pickle, MessagePack, or the user's `dumps`) before they reach
/// the queue, so the payload on disk is exactly that serialization: with `spillq.MSGPACK` it is
/// what `spillq::MsgPack` writes for the same item, and a Rust `Queue<T>` reads it.
pub(crate) struct Identity;

impl Codec<Vec<u8>> for Identity {
    fn encode(&self, item: &Vec<u8>, buf: &mut Vec<u8>) -> Result<(), CodecError> {
        buf.extend_from_slice(item);
        Ok(())
    }

    fn decode(&self, bytes: &[u8]) -> Result<Vec<u8>, CodecError> {
        Ok(bytes.to_vec())
    }
}
