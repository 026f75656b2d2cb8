#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, unreachable_pub, clippy::undocumented_unsafe_blocks)]
//! spillq
mod builder;
mod cache;
mod codec;
mod delivery;
mod error;
mod log;
mod queue;
mod spill;
mod sys;

pub use builder::{Builder, Durability};
pub use codec::{Codec, MsgPack};
pub use delivery::Delivery;
pub use error::{CodecError, Error, PutTimeoutError, TryPutError};
pub use log::CheckpointState;
pub use queue::{Iter, Queue, Stats};
