//! One segment file: create and reserve it, write records into it, flush, map it for reading and
//! release the pages read, and cut a damaged tail.
//!
//! # Soundness of the maps
//!
//! A memory map turns file changes made by anyone into changes of memory Rust believes it owns,
//! and a read past the end of a shrunk file into SIGBUS. spillq keeps both out:
//! - The directory lock (`log/lock.rs`) keeps every other spillq process out of the directory,
//!   and no file is ever shrunk: files only grow (`fallocate`), and [`cut`] zeroes a range
//!   without changing the length.
//! - A file is reserved with `fallocate` before it is written, so the writer never needs a block
//!   the disk does not have.
//! - No `&[u8]` is held over bytes another thread writes: the writer only writes at and beyond
//!   its published end, and a reader only forms slices below the end the writer published (the
//!   spill thread publishes it under the queue's mutex, which readers hold while they read it).
//!
//! Files changed by a process that ignores the lock are outside what spillq can defend against.

use super::record::{self, SEGMENT_HEADER_BYTES, SegmentHeader};
use super::storage::{SharedStorage, Storage};
use crate::error::Error;
use memmap2::{Mmap, UncheckedAdvice};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Suffix of segment files.
pub(crate) const SEGMENT_SUFFIX: &str = ".seg";
/// Suffix of a segment still being created; deleted on open.
pub(crate) const TEMP_SUFFIX: &str = ".tmp";
/// Mapped pages are handed back to the kernel in steps of this many bytes.
const RELEASE_STEP_BYTES: usize = 1 << 20;

/// The file name of the segment whose first record has sequence number `first_sequence`:
/// zero-padded to 20 digits so names sort in sequence order.
pub(crate) fn segment_file_name(first_sequence: u64) -> String {
    format!("{first_sequence:020}{SEGMENT_SUFFIX}")
}

/// The first sequence number a segment file name stands for, if it is one.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn page_size() -> usize {
    // SAFETY: sysconf only reads a system constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096).max(4096)
}

/// Reads a segment's header bytes (fewer if the file is shorter).
pub(crate) fn read_header(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(SEGMENT_HEADER_BYTES);
    File::open(path)?
        .take(SEGMENT_HEADER_BYTES as u64)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Cuts a segment at `offset`: everything from there on reads as zeros, the file keeps its
/// length and is reserved to at least `size_bytes`, then fsynced. Done by the writer before it
/// first writes into the last segment found on open, so stale bytes past the end of valid data
/// (a torn record, unsynced data after a zeroed page) can never be read as records once new
/// ones follow them. Open itself changes nothing here, so a queue on a full disk still opens.
pub(crate) fn cut(
    storage: &dyn Storage,
    path: &Path,
    offset: u64,
    size_bytes: u64,
) -> Result<(), Error> {
    let file = storage
        .open(path, false, false)
        .map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    storage
        .zero_range(&file, path, offset, len.saturating_sub(offset))
        .map_err(|e| Error::io(path, e))?;
    super::crash_hooks::hit(super::crash_hooks::Crash::TailCut)?;
    storage
        .reserve(&file, path, size_bytes.max(len))
        .map_err(|e| Error::io(path, e))?;
    storage
        .sync(&file, path, true)
        .map_err(|e| Error::io(path, e))
}

/// How far ahead of the records a flush makes the reserved space written zeros (see
/// [`OpenSegment::zero_ahead`]), and the buffer that writes them.
const ZERO_AHEAD_BYTES: u64 = 1 << 20;
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// The name of spare segment `id`: made and reserved ahead of need under this name, then given
/// its header and its real name when the writer rolls to it. Deleted on open, like any `.tmp`.
fn spare_name(id: u64) -> String {
    format!("spare-{id:020}{SEGMENT_SUFFIX}{TEMP_SUFFIX}")
}

/// A segment file open for writing: the one being written, or one rolled with data not yet
/// fsynced.
///
/// Records are written with `pwrite`, not through a writable map: a page of a new file that is
/// first touched through a map is zero-filled by the kernel and then overwritten. Readers still
/// map the file: the page cache is the same.
pub(crate) struct OpenSegment {
    storage: SharedStorage,
    pub(crate) first_sequence: u64,
    pub(crate) path: PathBuf,
    file: File,
    /// The file's length, all of it reserved.
    pub(crate) len: u64,
    /// Whether it holds data not yet fsynced.
    pub(crate) dirty: bool,
    /// The file holds written blocks (records, or zeros from `zero_ahead`) up to here, at least.
    zeroed: u64,
}

impl OpenSegment {
    /// Opens an existing segment for writing (the last one found on open, after its cut).
    pub(crate) fn open(
        storage: SharedStorage,
        path: &Path,
        first_sequence: u64,
        end: u64,
    ) -> Result<Self, Error> {
        let file = storage
            .open(path, false, false)
            .map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        Ok(Self {
            storage,
            first_sequence,
            path: path.to_owned(),
            file,
            len,
            dirty: false,
            zeroed: end,
        })
    }

    /// Writes `bytes` at `offset`. The caller keeps within the reserved length.
    pub(crate) fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), Error> {
        self.storage
            .write_at(&self.file, &self.path, offset, bytes)
            .map_err(|e| Error::io(&self.path, e))?;
        self.dirty = true;
        self.zeroed = self.zeroed.max(offset + bytes.len() as u64);
        Ok(())
    }

    /// Before an fdatasync: writes zeros over the reserved space just ahead of `end`, so that
    /// the fdatasyncs after this one find written blocks there. `fallocate` reserves space as
    /// unwritten extents, and the first fdatasync of data in each new page must also commit the
    /// filesystem's journal to mark it written (`docs/format.md` has the cost). Writing zeros over zeros changes nothing a reader or recovery sees, so a
    /// failure here is not an error: the space stays as it was. Does nothing while the zeros
    /// reach at least half of [`ZERO_AHEAD_BYTES`] past `end`.
    pub(crate) fn zero_ahead(&mut self, end: u64) {
        let from = end.next_multiple_of(4096);
        let to = from.saturating_add(ZERO_AHEAD_BYTES).min(self.len);
        let mut offset = self.zeroed.max(from);
        if offset >= from.saturating_add(ZERO_AHEAD_BYTES / 2).min(self.len) {
            return;
        }
        while offset < to {
            let len = usize::try_from(to - offset).map_or(ZEROS.len(), |n| n.min(ZEROS.len()));
            let zeros = ZEROS.get(..len).unwrap_or_default();
            if let Err(error) = self.storage.write_at(&self.file, &self.path, offset, zeros) {
                tracing::debug!(segment = %self.path.display(), %error, "could not write zeros ahead");
                return;
            }
            offset += len as u64;
            self.zeroed = offset;
        }
    }

    /// fdatasync: every record written so far reaches stable storage.
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.storage.sync(&self.file, &self.path, false)
    }
}

/// A segment file made ahead of need: reserved, not yet named for its first record.
pub(crate) struct Spare {
    pub(crate) id: u64,
    path: PathBuf,
    file: File,
    pub(crate) len: u64,
}

impl Spare {
    /// Makes spare segment `id` in `dir` with `size_bytes` reserved. The only place segment
    /// space is taken: a put that needs a segment gets one here, or fails here.
    pub(crate) fn create(
        storage: &dyn Storage,
        dir: &Path,
        id: u64,
        size_bytes: u64,
    ) -> Result<Self, Error> {
        let path = dir.join(spare_name(id));
        let file = storage
            .open(&path, true, true)
            .map_err(|e| Error::io(&path, e))?;
        let mut spare = Self {
            id,
            path,
            file,
            len: 0,
        };
        if let Err(error) = spare.grow(storage, size_bytes) {
            // Give back what a partial reservation took.
            spare.discard(storage);
            return Err(error);
        }
        Ok(spare)
    }

    /// Reserves the spare up to at least `size_bytes`.
    pub(crate) fn grow(&mut self, storage: &dyn Storage, size_bytes: u64) -> Result<(), Error> {
        if self.len < size_bytes {
            storage
                .reserve(&self.file, &self.path, size_bytes)
                .map_err(|e| Error::io(&self.path, e))?;
            self.len = size_bytes;
        }
        Ok(())
    }

    /// Deletes the spare (at close, or after a failed reservation).
    pub(crate) fn discard(self, storage: &dyn Storage) {
        drop(self.file);
        if let Err(error) = storage.remove(&self.path) {
            tracing::debug!(path = %self.path.display(), %error, "could not delete the spare segment");
        }
    }

    /// Makes the spare the segment whose first record is `first_sequence`: header, fsync,
    /// rename, directory fsync, so a segment file under its real name always has a whole header
    /// and its space. Renaming over an existing file replaces it (an empty segment that a
    /// record too large for it made the writer roll from).
    pub(crate) fn install(
        self,
        storage: SharedStorage,
        dir: &Path,
        first_sequence: u64,
    ) -> Result<OpenSegment, Error> {
        let header = SegmentHeader {
            version: record::FORMAT_VERSION,
            first_sequence,
        }
        .encode();
        let path = dir.join(segment_file_name(first_sequence));
        storage
            .write_at(&self.file, &self.path, 0, &header)
            .and_then(|()| storage.sync(&self.file, &self.path, true))
            .map_err(|e| Error::io(&self.path, e))?;
        storage
            .rename(&self.path, &path)
            .map_err(|e| Error::io(&path, e))?;
        storage.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
        Ok(OpenSegment {
            storage,
            first_sequence,
            path,
            file: self.file,
            len: self.len,
            dirty: false,
            zeroed: SEGMENT_HEADER_BYTES as u64,
        })
    }
}

/// A read-only map of a segment.
pub(crate) struct ReadSegment {
    map: Mmap,
    first_sequence: u64,
    released: usize,
}

impl ReadSegment {
    pub(crate) fn open(path: &Path, first_sequence: u64) -> Result<Self, Error> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: see the module docs: no spillq process shrinks a mapped segment, and slices
        // are only formed below the end the writer published (`bytes`).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        Ok(Self {
            map,
            first_sequence,
            released: 0,
        })
    }

    pub(crate) fn first_sequence(&self) -> u64 {
        self.first_sequence
    }

    /// Bytes mapped.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The first `limit` bytes (or the whole file if shorter). The caller guarantees that no
    /// thread writes below `limit` any more: either the segment is finished, or `limit` is the
    /// end the writer published.
    pub(crate) fn bytes(&self, limit: usize) -> &[u8] {
        let len = limit.min(self.map.len());
        // SAFETY: `len` is within the map; the bytes below it are no longer written (the
        // caller's guarantee above), so a shared slice over them is sound.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), len) }
    }

    /// Hands pages before `offset` back to the kernel, a megabyte at a time: pages read once
    /// need not stay in the process's resident memory.
    pub(crate) fn release_before(&mut self, offset: usize) {
        let end = offset - offset % page_size();
        if end < self.released + RELEASE_STEP_BYTES || end > self.map.len() {
            return;
        }
        // SAFETY: the range lies inside the map and is page-aligned; this is a shared read-only
        // file mapping, so DONTNEED only drops page table entries and the bytes read back the same.
        let advised = unsafe {
            self.map.unchecked_advise_range(
                UncheckedAdvice::DontNeed,
                self.released,
                end - self.released,
            )
        };
        if advised.is_ok() {
            self.released = end;
        }
    }
}
