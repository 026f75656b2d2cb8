//! Opening a log: read the checkpoint, check the segment headers, delete what was consumed, and
//! find the end of written data by scanning only what was written after the checkpoint.
//!
//! Recovery only ever frees space (it deletes leftovers and consumed segments): it creates,
//! reserves and cuts nothing, so a queue whose disk is full still opens and drains. What lies
//! past the end of valid data is cut by the writer before it first writes there ([`Tail`]).
//!
//! Every step is idempotent, so a crash during recovery followed by another open gives the same
//! log. Records before the checkpoint's head are not read here: the reader checks each record as
//! it reaches it, and skips (and counts) damage then. That keeps open time proportional to the
//! unsynced tail, not to the length of the queue.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use super::checkpoint::{CheckpointFile, Cursor, Loaded};
use super::record::{FORMAT_VERSION, HeaderProblem, SEGMENT_HEADER_BYTES, SegmentHeader};
use super::scan::{Scan, Step};
use super::segment::{self, ReadSegment, TEMP_SUFFIX};
use super::storage::SharedStorage;
use crate::error::Error;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// After a run of zeros in the last segment, valid records are looked for this far on. A zeroed
/// page in the unsynced tail (a power cut can leave one) is stepped over; past this window the
/// zeros are taken as the end of written data.
pub(crate) const ZERO_LOOKAHEAD_BYTES: usize = 64 * 1024;

/// What recovery hands the log.
pub(crate) struct Recovered {
    /// The segments, ascending: first sequence number and length. Empty when none is left:
    /// the first segment is made when the first record is written.
    pub(crate) segments: Vec<(u64, u64)>,
    /// Records before this one were removed, except those in `unacked`.
    pub(crate) read_sequence: u64,
    /// Records before `read_sequence` still out with a consumer when the checkpoint was written.
    pub(crate) unacked: Vec<u64>,
    /// Where the writer goes on: the last segment, the offset of the end of valid data in it,
    /// and the next sequence number.
    pub(crate) end_offset: usize,
    /// The last segment's tail, to cut before the writer first writes into it.
    pub(crate) tail: Option<Tail>,
    pub(crate) next_sequence: u64,
    pub(crate) checkpoint: CheckpointFile,
    /// What the checkpoint looked like, for stats and the inspector.
    pub(crate) checkpoint_state: CheckpointState,
}

/// Where the last segment's valid data ends, and the size it is reserved back to when the writer
/// cuts what lies after (see [`segment::cut`]).
#[derive(Debug, Clone)]
pub(crate) struct Tail {
    pub(crate) path: PathBuf,
    pub(crate) offset: u64,
    pub(crate) size_bytes: u64,
}

/// How the checkpoint was found on open.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let queue = spillq::Queue::<u8>::open(dir.path())?;
/// assert_eq!(queue.stats().checkpoint, spillq::CheckpointState::Missing);
/// queue.put(1)?;
/// queue.close()?;
/// let queue = spillq::Queue::<u8>::open(dir.path())?;
/// assert_eq!(queue.stats().checkpoint, spillq::CheckpointState::Used);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointState {
    /// A valid checkpoint was used.
    Used,
    /// There was none (a new queue, or a crash before the first one).
    Missing,
    /// It was damaged (or pointed at a segment that is gone): every segment was scanned.
    Damaged,
}

use super::crash_hooks::{Crash, hit};

/// A segment file found in a queue directory.
pub(crate) struct SegmentFile {
    pub(crate) first_sequence: u64,
    pub(crate) path: PathBuf,
    pub(crate) len: u64,
}

/// Lists the segments, sorted, and the leftovers of interrupted segment creation. Changes
/// nothing.
pub(crate) fn list_segments(dir: &Path) -> Result<(Vec<SegmentFile>, Vec<PathBuf>), Error> {
    let mut segments = Vec::new();
    let mut temps = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = entry.path();
        if name.ends_with(TEMP_SUFFIX) {
            temps.push(path);
            continue;
        }
        let Some(first_sequence) = segment::parse_segment_file_name(name) else {
            continue;
        };
        let len = entry.metadata().map_err(|e| Error::io(&path, e))?.len();
        segments.push(SegmentFile {
            first_sequence,
            path,
            len,
        });
    }
    segments.sort_by_key(|s| s.first_sequence);
    Ok((segments, temps))
}

/// Refuses segments spillq cannot read: from a newer version, not spillq's, or named for a
/// sequence number other than the one in their header (renamed or copied by hand). A header
/// whose checksum fails is let through: its records carry their own checksums.
pub(crate) fn check_header(segment: &SegmentFile) -> Result<(), Error> {
    let bytes = segment::read_header(&segment.path).map_err(|e| Error::io(&segment.path, e))?;
    match SegmentHeader::decode(&bytes) {
        Ok(header) if header.first_sequence != segment.first_sequence => Err(Error::corrupt(
            &segment.path,
            16,
            format!(
                "the file name says the first record is {} but the header says {}; \
                 the file was renamed or copied",
                segment.first_sequence, header.first_sequence
            ),
        )),
        Ok(_) | Err(HeaderProblem::Damaged) => Ok(()),
        Err(HeaderProblem::ForeignMagic) => Err(Error::corrupt(
            &segment.path,
            0,
            "not a spillq segment (wrong magic number)",
        )),
        Err(HeaderProblem::NewerVersion(found)) => Err(Error::UnsupportedVersion {
            path: segment.path.clone(),
            found,
            supported: FORMAT_VERSION,
        }),
    }
}

/// Scans one segment from `offset`, expecting `sequence` next, and returns where valid data
/// ends: (offset, next sequence). `limit` is the next segment's first sequence number, if any;
/// records at or past it belong to that segment. In the last segment, zeros end the data unless
/// a record follows within [`ZERO_LOOKAHEAD_BYTES`] (a zeroed page in the unsynced tail).
fn scan_segment(
    bytes: &[u8],
    offset: usize,
    sequence: u64,
    limit: Option<u64>,
    is_last: bool,
) -> (usize, u64) {
    let mut scan = Scan::new(bytes, offset, sequence, limit);
    if is_last {
        scan = scan.zero_window(ZERO_LOOKAHEAD_BYTES);
    }
    for step in scan.by_ref() {
        if let Step::End { offset, .. } = step {
            return (offset, scan.expected());
        }
    }
    (scan.offset(), scan.expected())
}

/// Recovers the log in `dir` (already locked by the caller).
pub(crate) fn recover(storage: &SharedStorage, dir: &Path) -> Result<Recovered, Error> {
    let (mut segments, temps) = list_segments(dir)?;
    for temp in &temps {
        storage.remove(temp).map_err(|e| Error::io(temp, e))?;
    }
    if !temps.is_empty() {
        storage.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    }
    hit(Crash::TempFilesRemoved)?;
    for segment in &segments {
        check_header(segment)?;
    }
    let (checkpoint, loaded) = CheckpointFile::open(Arc::clone(storage), dir)?;

    let mut checkpoint_state = match loaded {
        Loaded::Found(_) => CheckpointState::Used,
        Loaded::Missing => CheckpointState::Missing,
        Loaded::Damaged => CheckpointState::Damaged,
    };
    let cursor = match loaded {
        Loaded::Found(cursor) => Some(cursor),
        _ => None,
    };
    let read_sequence = match &cursor {
        Some(cursor) => cursor.read_sequence,
        None => segments.first().map_or(0, |s| s.first_sequence),
    };
    let unacked = cursor.as_ref().map_or_else(Vec::new, |c| c.unacked.clone());
    let oldest_kept = unacked
        .first()
        .map_or(read_sequence, |&u| u.min(read_sequence));

    // Segments wholly before the read cursor were consumed; a crash kept them. Never the last.
    let consumed = segments
        .windows(2)
        .take_while(|pair| {
            pair.get(1)
                .is_some_and(|next| next.first_sequence <= oldest_kept)
        })
        .count();
    if consumed > 0 {
        for segment in segments.drain(..consumed) {
            tracing::debug!(segment = %segment.path.display(), "deleting a segment consumed before a crash");
            storage
                .remove(&segment.path)
                .map_err(|e| Error::io(&segment.path, e))?;
        }
        storage.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    }
    hit(Crash::ConsumedSegmentsDeleted)?;

    if segments.is_empty() {
        let first = match &cursor {
            Some(Cursor { head_sequence, .. }) => (*head_sequence).max(read_sequence),
            None => read_sequence,
        };
        return Ok(Recovered {
            segments: Vec::new(),
            read_sequence: first,
            unacked: Vec::new(),
            end_offset: SEGMENT_HEADER_BYTES,
            tail: None,
            next_sequence: first,
            checkpoint,
            checkpoint_state,
        });
    }

    // Where the tail scan starts: the checkpoint's head if it names a segment that is there and
    // an offset inside it, else the first segment (a full scan).
    // If the head's segment was deleted as consumed, the scan starts at the next segment.
    let start = cursor.as_ref().and_then(|c| {
        let index = segments
            .iter()
            .position(|s| s.first_sequence >= c.head_segment)?;
        let segment = segments.get(index)?;
        if segment.first_sequence > c.head_segment {
            return Some((index, SEGMENT_HEADER_BYTES, segment.first_sequence));
        }
        let offset = usize::try_from(c.head_offset).ok()?;
        let len = usize::try_from(segment.len).ok()?;
        (offset >= SEGMENT_HEADER_BYTES && offset <= len).then_some((
            index,
            offset,
            c.head_sequence,
        ))
    });
    if cursor.is_some() && start.is_none() {
        checkpoint_state = CheckpointState::Damaged;
    }
    if checkpoint_state == CheckpointState::Damaged {
        tracing::warn!(dir = %dir.display(), "checkpoint damaged: scanning every segment");
    }
    let (mut index, mut offset, mut sequence) = start.unwrap_or_else(|| {
        let first = segments.first().map_or(0, |s| s.first_sequence);
        (0, SEGMENT_HEADER_BYTES, first)
    });

    let last_index = segments.len() - 1;
    while let Some(segment) = segments.get(index) {
        let next_first = segments.get(index + 1).map(|s| s.first_sequence);
        let map = ReadSegment::open(&segment.path, segment.first_sequence)?;
        let (end, next) = scan_segment(
            map.bytes(usize::MAX),
            offset,
            sequence.max(segment.first_sequence),
            next_first,
            index == last_index,
        );
        drop(map);
        match next_first {
            Some(first) => {
                index += 1;
                offset = SEGMENT_HEADER_BYTES;
                sequence = next.max(first);
            }
            None => {
                offset = end;
                sequence = next;
                break;
            }
        }
    }

    tracing::info!(
        dir = %dir.display(),
        checkpoint = ?checkpoint_state,
        segments = segments.len(),
        read_sequence,
        next_sequence = sequence,
        "recovered"
    );
    let last = segments
        .get(last_index)
        .ok_or_else(|| Error::corrupt(dir, 0, "no segment left after recovery (internal error)"))?;
    let tail = Tail {
        path: last.path.clone(),
        offset: offset as u64,
        // Kept at its own size: a reopen with another segment size applies to new segments.
        size_bytes: last.len,
    };
    Ok(Recovered {
        segments: segments.iter().map(|s| (s.first_sequence, s.len)).collect(),
        read_sequence: read_sequence.min(sequence),
        unacked,
        end_offset: offset,
        tail: Some(tail),
        next_sequence: sequence,
        checkpoint,
        checkpoint_state,
    })
}
