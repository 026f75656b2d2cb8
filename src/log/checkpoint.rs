//! The checkpoint: where reading resumes and where the writer stood, on disk.
//!
//! The file holds two 4096-byte slots, at offsets 0 and 4096 (separate pages, so a torn write
//! damages at most one). A slot is a 64-byte header and the sequence numbers of items that were
//! out with a consumer, unacknowledged, below the read cursor (those are delivered again; the
//! items acknowledged around them are not). The checksum covers the header and that list. Each write goes to the slot not holding the newest generation,
//! with a generation one higher; a reader takes the valid slot with the highest generation. So a
//! write torn by a crash leaves the previous checkpoint readable. Layout in `docs/format.md`.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use super::record::FORMAT_VERSION;
use super::storage::SharedStorage;
use crate::error::Error;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Name of the checkpoint file in a queue directory.
pub(crate) const CHECKPOINT_FILE: &str = "checkpoint";
const MAGIC: [u8; 8] = *b"SPILLQCP";
const SLOT_BYTES: usize = 4096;
const SLOT_HEADER_BYTES: usize = 64;
/// Unacknowledged sequence numbers a slot holds, at most. Beyond that the read cursor is moved
/// back to the oldest of them instead (they and everything after are delivered again).
pub(crate) const MAX_UNACKED: usize = (SLOT_BYTES - SLOT_HEADER_BYTES) / 8;
/// Offsets of the two slots.
const SLOT_OFFSETS: [u64; 2] = [0, 4096];
/// The file's size: both slots.
const FILE_BYTES: u64 = 2 * SLOT_BYTES as u64;

/// What a checkpoint records.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Cursor {
    /// Every record with a smaller sequence number was removed, except those in `unacked`.
    pub(crate) read_sequence: u64,
    /// Records before `read_sequence` that were out with a consumer and not acknowledged,
    /// ascending; at most [`MAX_UNACKED`].
    pub(crate) unacked: Vec<u64>,
    /// First sequence number of the segment the writer was in.
    pub(crate) head_segment: u64,
    /// Byte offset in that segment where the writer's next record goes.
    pub(crate) head_offset: u64,
    /// Sequence number of the writer's next record.
    pub(crate) head_sequence: u64,
}

fn slot_checksum(header: &[u8], list: &[u8]) -> u32 {
    let crc = crc32c::crc32c(header.get(..56).unwrap_or_default());
    crc32c::crc32c_append(crc, list)
}

fn encode_slot(generation: u64, cursor: &Cursor) -> Vec<u8> {
    let unacked = cursor
        .unacked
        .get(..MAX_UNACKED.min(cursor.unacked.len()))
        .unwrap_or_default();
    let mut bytes = vec![0u8; SLOT_HEADER_BYTES + 8 * unacked.len()];
    let count = u32::try_from(unacked.len())
        .unwrap_or_default()
        .to_le_bytes();
    let fields: [(usize, &[u8]); 8] = [
        (0, &MAGIC),
        (8, &FORMAT_VERSION.to_le_bytes()),
        (12, &count),
        (16, &generation.to_le_bytes()),
        (24, &cursor.read_sequence.to_le_bytes()),
        (32, &cursor.head_segment.to_le_bytes()),
        (40, &cursor.head_offset.to_le_bytes()),
        (48, &cursor.head_sequence.to_le_bytes()),
    ];
    for (at, field) in fields {
        if let Some(slot) = bytes.get_mut(at..at + field.len()) {
            slot.copy_from_slice(field);
        }
    }
    for (i, sequence) in unacked.iter().enumerate() {
        let at = SLOT_HEADER_BYTES + 8 * i;
        if let Some(slot) = bytes.get_mut(at..at + 8) {
            slot.copy_from_slice(&sequence.to_le_bytes());
        }
    }
    let (header, list) = bytes.split_at(SLOT_HEADER_BYTES.min(bytes.len()));
    let crc = slot_checksum(header, list);
    if let Some(slot) = bytes.get_mut(56..60) {
        slot.copy_from_slice(&crc.to_le_bytes());
    }
    bytes
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// A decoded slot: `Ok(None)` for a damaged or empty slot, `Err(version)` for one from a newer
/// spillq.
fn decode_slot(bytes: &[u8]) -> Result<Option<(u64, Cursor)>, u32> {
    let (Some(header), Some(stored), Some(count)) = (
        bytes.get(..SLOT_HEADER_BYTES),
        u32_at(bytes, 56),
        u32_at(bytes, 12),
    ) else {
        return Ok(None);
    };
    let Some(count) = usize::try_from(count).ok().filter(|&c| c <= MAX_UNACKED) else {
        return Ok(None);
    };
    let Some(list) = bytes.get(SLOT_HEADER_BYTES..SLOT_HEADER_BYTES + 8 * count) else {
        return Ok(None);
    };
    if slot_checksum(header, list) != stored || header.get(..8) != Some(&MAGIC[..]) {
        return Ok(None);
    }
    let version = u32_at(bytes, 8).unwrap_or(u32::MAX);
    if version > FORMAT_VERSION {
        return Err(version);
    }
    let field = |at| u64_at(bytes, at).unwrap_or_default();
    let unacked = (0..count)
        .map(|i| field(SLOT_HEADER_BYTES + 8 * i))
        .collect();
    Ok(Some((
        field(16),
        Cursor {
            read_sequence: field(24),
            unacked,
            head_segment: field(32),
            head_offset: field(40),
            head_sequence: field(48),
        },
    )))
}

/// What opening the checkpoint found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Loaded {
    /// No checkpoint file: a new queue, or one that crashed before its first checkpoint.
    Missing,
    /// The file exists but neither slot is valid: recovery must scan everything.
    Damaged,
    /// The newest valid slot.
    Found(Cursor),
}

/// Reads the checkpoint of `dir` without creating or changing anything.
pub(crate) fn read(dir: &Path) -> Result<Loaded, Error> {
    let path = dir.join(CHECKPOINT_FILE);
    match File::open(&path) {
        Ok(file) => Ok(read_slots(&file, &path, true)?.1),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Loaded::Missing),
        Err(e) => Err(Error::io(&path, e)),
    }
}

/// The newest valid slot of `file`, with its generation.
fn read_slots(file: &File, path: &Path, existed: bool) -> Result<(u64, Loaded), Error> {
    let mut best: Option<(u64, Cursor)> = None;
    let mut any_bytes = false;
    for offset in SLOT_OFFSETS {
        let mut bytes = vec![0u8; SLOT_BYTES];
        let read = read_up_to(file, &mut bytes, offset).map_err(|e| Error::io(path, e))?;
        any_bytes |= read > 0;
        match decode_slot(&bytes) {
            Ok(Some(slot)) if best.as_ref().is_none_or(|(g, _)| slot.0 > *g) => {
                best = Some(slot);
            }
            Ok(_) => {}
            Err(found) => {
                return Err(Error::UnsupportedVersion {
                    path: path.to_owned(),
                    found,
                    supported: FORMAT_VERSION,
                });
            }
        }
    }
    let generation = best.as_ref().map_or(0, |(g, _)| *g);
    let loaded = match best {
        Some((_, cursor)) => Loaded::Found(cursor),
        None if existed && any_bytes => Loaded::Damaged,
        None => Loaded::Missing,
    };
    Ok((generation, loaded))
}

/// The checkpoint file: both slots' space is reserved when it is created, so a checkpoint can
/// always be written later, even on a full disk (draining a full queue needs that).
pub(crate) struct CheckpointFile {
    storage: SharedStorage,
    dir: PathBuf,
    path: PathBuf,
    /// `None` until the first write creates the file: opening a queue creates nothing.
    file: Option<File>,
    /// The file's length.
    len: u64,
    generation: u64,
}

impl CheckpointFile {
    /// Opens the checkpoint in `dir`, if there is one, and reads the newest valid slot.
    pub(crate) fn open(storage: SharedStorage, dir: &Path) -> Result<(Self, Loaded), Error> {
        let path = dir.join(CHECKPOINT_FILE);
        let (file, generation, loaded) = if path.exists() {
            let file = storage
                .open(&path, false, false)
                .map_err(|e| Error::io(&path, e))?;
            // A file from an older spillq may lack the second slot's space. Best effort: on a
            // full disk this fails, and a write to that slot may fail later the same way.
            let _ = storage.reserve(&file, &path, FILE_BYTES);
            let (generation, loaded) = read_slots(&file, &path, true)?;
            (Some(file), generation, loaded)
        } else {
            (None, 0, Loaded::Missing)
        };
        let len = match &file {
            Some(file) => file.metadata().map_err(|e| Error::io(&path, e))?.len(),
            None => 0,
        };
        Ok((
            Self {
                storage,
                dir: dir.to_owned(),
                path,
                file,
                len,
                generation,
            },
            loaded,
        ))
    }

    /// Creates the file, with both slots reserved, if it does not exist yet. The writer calls
    /// this before it first writes a record, so that once records are on disk a checkpoint can
    /// always be written: draining a queue whose disk is full needs one to delete segments.
    pub(crate) fn create(&mut self) -> Result<(), Error> {
        if self.file.is_none() {
            let path = &self.path;
            let file = self
                .storage
                .open(path, true, false)
                .map_err(|e| Error::io(path, e))?;
            self.storage
                .reserve(&file, path, FILE_BYTES)
                .map_err(|e| Error::io(path, e))?;
            // Without this, a power cut could keep the checkpoint's data but lose its name, and
            // the queue would come back from a full scan with consumed records in it.
            self.storage
                .sync_dir(&self.dir)
                .map_err(|e| Error::io(&self.dir, e))?;
            self.file = Some(file);
            self.len = self.len.max(FILE_BYTES);
        }
        Ok(())
    }

    /// Bytes the file takes (0 before it is created).
    pub(crate) fn file_bytes(&self) -> u64 {
        self.len
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `cursor` into the older slot. Not durable until [`sync`](Self::sync).
    pub(crate) fn write(&mut self, cursor: &Cursor) -> Result<(), Error> {
        let generation = self.generation + 1;
        let slot = SLOT_OFFSETS
            .get(usize::from(generation % 2 == 1))
            .copied()
            .unwrap_or(0);
        let bytes = encode_slot(generation, cursor);
        self.create()?;
        if let Some(file) = &self.file {
            self.storage
                .write_at(file, &self.path, slot, &bytes)
                .map_err(|e| Error::io(&self.path, e))?;
        }
        self.generation = generation;
        Ok(())
    }

    /// fdatasync of the checkpoint file.
    pub(crate) fn sync(&self) -> io::Result<()> {
        match &self.file {
            Some(file) => self.storage.sync(file, &self.path, false),
            None => Ok(()),
        }
    }
}

fn read_up_to(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let Some(rest) = buf.get_mut(filled..) else {
            break;
        };
        match file.read_at(rest, offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn cursor(n: u64) -> Cursor {
        Cursor {
            read_sequence: n,
            unacked: (0..n % 5).collect(),
            head_segment: n / 2,
            head_offset: 32 + n,
            head_sequence: n + 10,
        }
    }

    #[test]
    fn newest_valid_slot_wins_and_a_torn_slot_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let (mut file, loaded) =
            CheckpointFile::open(crate::log::Real::shared(), dir.path()).unwrap();
        assert_eq!(loaded, Loaded::Missing);
        file.write(&cursor(1)).unwrap();
        file.write(&cursor(2)).unwrap();
        file.write(&cursor(3)).unwrap();
        drop(file);
        let (_, loaded) = CheckpointFile::open(crate::log::Real::shared(), dir.path()).unwrap();
        assert_eq!(loaded, Loaded::Found(cursor(3)));

        // Damage the newest slot (generation 3 is in slot 1): the previous one is used.
        let path = dir.path().join(CHECKPOINT_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[4096 + 30] ^= 0x40;
        // Both slots are reserved when the file is created.
        assert_eq!(bytes.len(), 2 * 4096);
        std::fs::write(&path, &bytes).unwrap();
        let (mut file, loaded) =
            CheckpointFile::open(crate::log::Real::shared(), dir.path()).unwrap();
        assert_eq!(loaded, Loaded::Found(cursor(2)));
        // The next write goes over the damaged slot, and wins.
        file.write(&cursor(4)).unwrap();
        drop(file);
        let (_, loaded) = CheckpointFile::open(crate::log::Real::shared(), dir.path()).unwrap();
        assert_eq!(loaded, Loaded::Found(cursor(4)));

        // Both damaged: recovery must scan, never start empty.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[10] ^= 1;
        bytes[4096 + 10] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let (_, loaded) = CheckpointFile::open(crate::log::Real::shared(), dir.path()).unwrap();
        assert_eq!(loaded, Loaded::Damaged);
    }

    #[test]
    fn the_unacknowledged_list_round_trips_and_is_checked() {
        let mut long = cursor(7);
        long.unacked = (0..MAX_UNACKED as u64).collect();
        let bytes = encode_slot(9, &long);
        assert_eq!(decode_slot(&bytes), Ok(Some((9, long))));
        let mut damaged = bytes.clone();
        damaged[64 + 8 * 100] ^= 1;
        assert_eq!(decode_slot(&damaged), Ok(None));
        let mut huge_count = bytes;
        huge_count[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_slot(&huge_count), Ok(None));
    }

    #[test]
    fn a_newer_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = encode_slot(1, &cursor(1));
        bytes[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        let crc = slot_checksum(&bytes[..64], &bytes[64..]);
        bytes[56..60].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(dir.path().join(CHECKPOINT_FILE), bytes).unwrap();
        assert!(matches!(
            CheckpointFile::open(crate::log::Real::shared(), dir.path()),
            Err(Error::UnsupportedVersion { .. })
        ));
    }
}
