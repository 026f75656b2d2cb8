//! The queue's identity: 128 random bits, in hex, in the file `id` of its directory, made when
//! the queue is first opened and kept for good. Whoever forwards the queue's items elsewhere
//! names each by this and its sequence number, so that a receiver can drop what a crash made
//! the sender send twice.
//!
//! Open must not need new space: if the file cannot be written (a full disk), the identity is
//! kept in memory and written when the writer next takes space (see `LogWriter`).

use super::storage::Storage;
use crate::error::Error;
use std::path::Path;

/// Name of the identity file in a queue directory.
pub(crate) const ID_FILE: &str = "id";
const ID_HEX_CHARS: usize = 32;

/// The queue's identity, and whether it is on disk.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) id: String,
    pub(crate) stored: bool,
}

/// Reads the identity of the queue in `dir`, or makes one (and writes it, if it can).
pub(crate) fn read_or_create(storage: &dyn Storage, dir: &Path) -> Result<Identity, Error> {
    let path = dir.join(ID_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let id = bytes.trim_ascii();
            if id.len() == ID_HEX_CHARS && id.iter().all(u8::is_ascii_hexdigit) {
                return Ok(Identity {
                    id: String::from_utf8_lossy(id).to_ascii_lowercase(),
                    stored: true,
                });
            }
            // Damage: a new identity risks messages sent again being taken as new (duplicates
            // downstream), never messages dropped as old.
            tracing::warn!(path = %path.display(), "the queue's identity is damaged: making a new one");
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&path, e)),
    }
    let mut bytes = [0u8; ID_HEX_CHARS / 2];
    crate::sys::random(&mut bytes).map_err(|e| Error::io(&path, e))?;
    let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut identity = Identity { id, stored: false };
    store(storage, dir, &mut identity);
    Ok(identity)
}

/// Bytes the identity file takes (0 while it is not written).
pub(crate) fn file_bytes(identity: &Identity) -> u64 {
    if identity.stored {
        identity.id.len() as u64 + 1
    } else {
        0
    }
}

/// Writes the identity if it is not on disk yet: a new file, fsynced, renamed into place, the
/// directory fsynced. A failure (no space) leaves it for the next try.
pub(crate) fn store(storage: &dyn Storage, dir: &Path, identity: &mut Identity) {
    if identity.stored {
        return;
    }
    let path = dir.join(ID_FILE);
    let temp = dir.join(format!("{ID_FILE}.tmp"));
    let written = (|| {
        let file = storage.open(&temp, true, true)?;
        storage.write_at(&file, &temp, 0, format!("{}\n", identity.id).as_bytes())?;
        storage.sync(&file, &temp, true)?;
        drop(file);
        storage.rename(&temp, &path)?;
        storage.sync_dir(dir)
    })();
    match written {
        Ok(()) => identity.stored = true,
        Err(error) => {
            let _ = storage.remove(&temp);
            tracing::warn!(path = %path.display(), %error, "could not write the queue's identity yet");
        }
    }
}
