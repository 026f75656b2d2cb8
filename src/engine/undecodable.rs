//! Records that do not decode as `T` (the type changed, or another program wrote them): moved
//! aside to `undecodable/` in the queue directory, reported once as `Error::Codec` naming the
//! record, and the queue goes on after them.

use crate::codec::Codec;
use crate::spill::ring::{Slot, Written};
use std::path::{Path, PathBuf};

/// Directory (inside the queue's) where records that fail to decode are moved.
pub(crate) const UNDECODABLE_DIR: &str = "undecodable";

/// A record read from the log, as a ring slot. A record that does not decode is moved aside.
pub(super) fn decode<T: 'static>(
    codec: &dyn Codec<T>,
    dir: &Path,
    sequence: u64,
    bytes: &[u8],
    undecodable: &mut u64,
) -> Slot<T> {
    match codec.decode(bytes) {
        Ok(item) => Slot::Item {
            item,
            written: Written::At(sequence),
        },
        Err(error) => {
            *undecodable += 1;
            tracing::warn!(sequence, %error, "a record did not decode; moving it aside");
            Slot::Undecodable {
                sequence,
                moved_to: move_aside(dir, sequence, bytes),
                message: error.to_string(),
            }
        }
    }
}

/// Saves an undecodable record's bytes in `undecodable/`, so nothing is lost when the queue
/// moves past it. Best effort: the path if it worked.
fn move_aside(dir: &Path, sequence: u64, bytes: &[u8]) -> Option<PathBuf> {
    let aside = dir.join(UNDECODABLE_DIR);
    std::fs::create_dir_all(&aside).ok()?;
    let path = aside.join(format!("{sequence:020}.bin"));
    std::fs::write(&path, bytes).ok()?;
    std::fs::File::open(&path).and_then(|f| f.sync_all()).ok()?;
    crate::sys::sync_dir(&aside).ok()?;
    Some(path)
}
