//! How items become bytes: the [`Codec`] trait and the default, [`MsgPack`]. The only file that
//! names `rmp_serde`.

use crate::error::CodecError;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Turns items into record payloads and back (what `dumps`/`loads` are to a Python queue).
///
/// `encode` runs on the producer's thread (or the thread that calls `sync`), `decode` on the
/// consumer's. Both must be deterministic and must not panic; an error refuses or reports one
/// item and the queue goes on.
///
/// # Examples
///
/// A codec that stores strings as raw UTF-8:
///
/// ```
/// use spillq::{Codec, CodecError, Queue};
///
/// struct Utf8;
///
/// impl Codec<String> for Utf8 {
///     fn encode(&self, item: &String, buf: &mut Vec<u8>) -> Result<(), CodecError> {
///         buf.extend_from_slice(item.as_bytes());
///         Ok(())
///     }
///     fn decode(&self, bytes: &[u8]) -> Result<String, CodecError> {
///         Ok(String::from_utf8(bytes.to_vec())?)
///     }
/// }
///
/// let dir = tempfile::tempdir()?;
/// let queue = Queue::<String>::builder(dir.path()).codec(Utf8).cache_size(0).open()?;
/// queue.put("hello".to_string())?;
/// assert_eq!(queue.get()?, "hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Codec<T>: Send + Sync + 'static {
    /// Appends the encoding of `item` to `buf` (which the caller has cleared).
    fn encode(&self, item: &T, buf: &mut Vec<u8>) -> Result<(), CodecError>;

    /// Decodes one payload written by `encode`.
    fn decode(&self, bytes: &[u8]) -> Result<T, CodecError>;
}

/// The default codec: MessagePack through `rmp-serde`, structs as arrays (compact).
///
/// Byte strings are only compact if the type says so: hold them as `serde_bytes::ByteBuf` (or
/// mark the field `#[serde(with = "serde_bytes")]`); a plain `Vec<u8>` encodes as an array of
/// integers, larger and much slower.
///
/// # Examples
///
/// ```
/// use spillq::{Codec, MsgPack};
///
/// let mut buf = Vec::new();
/// MsgPack.encode(&(1u8, "a".to_string()), &mut buf)?;
/// assert_eq!(buf, [0x92, 0x01, 0xa1, b'a']);
/// let back: (u8, String) = MsgPack.decode(&buf)?;
/// assert_eq!(back, (1, "a".to_string()));
/// # Ok::<(), spillq::CodecError>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct MsgPack;

impl<T: Serialize + DeserializeOwned> Codec<T> for MsgPack {
    fn encode(&self, item: &T, buf: &mut Vec<u8>) -> Result<(), CodecError> {
        rmp_serde::encode::write(buf, item)?;
        Ok(())
    }

    fn decode(&self, bytes: &[u8]) -> Result<T, CodecError> {
        Ok(rmp_serde::from_slice(bytes)?)
    }
}
