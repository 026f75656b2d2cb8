//! One segment file: create and reserve it, write records into it, flush, map it for reading and
//! release the pages read, and cut a damaged tail.
//!
//! # Soundness of the maps
//!
//! A memory map turns file changes made by anyone into changes of memory Rust believes it owns,
//! and a read past the end of a shrunk file into SIGBUS. spillq keeps both out:
//! - The directory lock (`log/mod.rs`) keeps every other spillq process out of the directory,
//!   and no file is ever shrunk: files only grow (`fallocate`), and [`cut`] zeroes a range
//!   without changing the length.
//! - A file is reserved with `fallocate` before it is written, so the writer never needs a block
//!   the disk does not have.
//! - No `&[u8]` is held over bytes another thread writes: the writer only writes at and beyond
//!   its published end, and a reader only forms slices below the end the writer published (with
//!   release/acquire ordering through the log's progress mutex).
//!
//! Files changed by a process that ignores the lock are outside what spillq can defend against.

use super::record::{self, SEGMENT_HEADER_BYTES, SegmentHeader};
use super::storage::{SharedStorage, Storage};
use crate::error::Error;
use memmap2::{Mmap, UncheckedAdvice};
use std::collections::VecDeque;
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

/// Creates the segment for `first_sequence` of `size_bytes` bytes: written under a temporary
/// name, reserved, given its header, fsynced, renamed into place and the directory fsynced, so a
/// segment file that exists under its real name always has a whole header and its space.
pub(crate) fn create(
    storage: &dyn Storage,
    dir: &Path,
    first_sequence: u64,
    size_bytes: u64,
) -> Result<PathBuf, Error> {
    let path = dir.join(segment_file_name(first_sequence));
    let temp = dir.join(format!(
        "{}{TEMP_SUFFIX}",
        segment_file_name(first_sequence)
    ));
    let file = storage
        .open(&temp, true, true)
        .map_err(|e| Error::io(&temp, e))?;
    let result = (|| {
        storage.reserve(&file, &temp, size_bytes)?;
        let header = SegmentHeader {
            version: record::FORMAT_VERSION,
            first_sequence,
        }
        .encode();
        storage.write_at(&file, &temp, 0, &header)?;
        storage.sync(&file, &temp, true)
    })();
    if let Err(e) = result {
        drop(file);
        // Leave no half-made segment behind; a leftover would be deleted on open anyway.
        let _ = storage.remove(&temp);
        return Err(Error::io(&temp, e));
    }
    drop(file);
    storage
        .rename(&temp, &path)
        .map_err(|e| Error::io(&path, e))?;
    storage.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    Ok(path)
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
    super::recovery::crash_point::hit(super::recovery::crash_point::Step::TailCut)?;
    storage
        .reserve(&file, path, size_bytes.max(len))
        .map_err(|e| Error::io(path, e))?;
    storage
        .sync(&file, path, true)
        .map_err(|e| Error::io(path, e))
}

/// Appended records are gathered in memory and written to the file in chunks of this size (and
/// whenever the log publishes, flushes or rolls).
const WRITE_CHUNK_BYTES: usize = 256 << 10;

/// The page size that [`WriteSegment::write_whole_pages`] aligns writes to.
const PAGE_BYTES: usize = 4096;

/// How far ahead of the records a flush makes the reserved space written zeros (see
/// [`WriteSegment::zero_ahead`]), and the buffer that writes them.
const ZERO_AHEAD_BYTES: usize = 1 << 20;
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// The segment the writer appends to.
///
/// Records are written with `pwrite`, not through a writable map: a page of a new file that is
/// first touched through a map is zero-filled by the kernel and then overwritten, which cost a
/// quarter of the spill thread's time; a write of whole pages skips that. Readers still map the
/// file: the page cache is the same.
pub(crate) struct WriteSegment {
    storage: SharedStorage,
    path: PathBuf,
    file: File,
    /// The file's length (reserved).
    len: usize,
    first_sequence: u64,
    /// End of what is written into the file; everything after it is zeros, or `buffer`'s to
    /// write. It may cut a record: see [`write_whole_pages`](Self::write_whole_pages).
    written: usize,
    /// End of the last whole record written into the file: what readers may see.
    visible: usize,
    /// Bytes appended after `written`, not yet written.
    buffer: Vec<u8>,
    /// Where each record not yet whole in the file ends, in file offsets, ascending.
    ends: VecDeque<usize>,
    /// The file holds written blocks (records or zeros written by `zero_ahead`) up to here, at
    /// least.
    zeroed: usize,
}

impl WriteSegment {
    /// Opens `path` for appending at `offset`, reserving it to at least `size_bytes` first.
    pub(crate) fn open(
        storage: SharedStorage,
        path: &Path,
        first_sequence: u64,
        offset: usize,
        size_bytes: u64,
    ) -> Result<Self, Error> {
        let file = storage
            .open(path, false, false)
            .map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let len = len.max(size_bytes);
        storage
            .reserve(&file, path, len)
            .map_err(|e| Error::io(path, e))?;
        let len = usize::try_from(len).map_err(|_| {
            Error::corrupt(
                path,
                0,
                "the segment is larger than this machine can address",
            )
        })?;
        if len < offset {
            return Err(Error::corrupt(
                path,
                offset as u64,
                "the write position lies past the end of the segment",
            ));
        }
        Ok(Self {
            storage,
            path: path.to_owned(),
            file,
            len,
            first_sequence,
            written: offset,
            visible: offset,
            buffer: Vec::new(),
            ends: VecDeque::new(),
            zeroed: offset,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn first_sequence(&self) -> u64 {
        self.first_sequence
    }

    /// The file's length (reserved).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// End of the whole records in the file (not counting those still to write).
    pub(crate) fn visible(&self) -> usize {
        self.visible
    }

    /// Records appended and not yet whole in the file.
    pub(crate) fn unwritten_records(&self) -> usize {
        self.ends.len()
    }

    /// End of every record appended, written or not.
    pub(crate) fn end(&self) -> usize {
        self.written + self.buffer.len()
    }

    /// Whether a record with a payload of `payload_len` bytes fits after what is appended.
    pub(crate) fn fits(&self, payload_len: usize) -> bool {
        record::record_size(payload_len)
            .and_then(|size| self.end().checked_add(size))
            .is_some_and(|end| end <= self.len)
    }

    /// Whether enough is gathered that it should be written before more is appended.
    pub(crate) fn is_full(&self) -> bool {
        self.buffer.len() >= WRITE_CHUNK_BYTES
    }

    /// Appends one record. The caller has checked [`fits`](Self::fits).
    pub(crate) fn append(&mut self, sequence: u64, payload: &[u8]) {
        let header = record::encode_header(sequence, payload);
        let size = record::record_size(payload.len()).unwrap_or(0);
        let start = self.buffer.len();
        self.buffer.extend_from_slice(&header);
        self.buffer.extend_from_slice(payload);
        // Padding: zeros, as the reserved file already holds there.
        self.buffer.resize(start + size, 0);
        self.ends.push_back(self.written + start + size);
    }

    /// Writes what was appended into the file. On error nothing counts as written, and the
    /// next call writes it all again (at the same offset).
    pub(crate) fn write_out(&mut self) -> Result<(), Error> {
        self.write_up_to(self.end())
    }

    /// Writes what was appended up to the last page boundary, and keeps the rest (less than a
    /// page, perhaps part of a record) for the next write. Writing whole pages costs the kernel
    /// less than half as much per page as writing a page in two parts: measured on ext4, about
    /// 1.2 µs per 4 KiB page for 256 KiB writes starting and ending on page boundaries, 3 µs
    /// for 29 KiB writes that do not. Readers see only the whole records written.
    pub(crate) fn write_whole_pages(&mut self) -> Result<(), Error> {
        let page_end = self.end() / PAGE_BYTES * PAGE_BYTES;
        if page_end <= self.written {
            return Ok(());
        }
        self.write_up_to(page_end)
    }

    /// Writes the buffer's bytes up to file offset `to`. On error nothing counts as written.
    fn write_up_to(&mut self, to: usize) -> Result<(), Error> {
        let count = to.saturating_sub(self.written);
        let Some(bytes) = self.buffer.get(..count).filter(|bytes| !bytes.is_empty()) else {
            return Ok(());
        };
        self.storage
            .write_at(&self.file, &self.path, self.written as u64, bytes)
            .map_err(|e| Error::io(&self.path, e))?;
        self.written = to;
        let whole = self.ends.partition_point(|&end| end <= to);
        if let Some(&end) = whole.checked_sub(1).and_then(|last| self.ends.get(last)) {
            self.visible = end;
        }
        self.ends.drain(..whole);
        if count == self.buffer.len() {
            self.buffer.clear();
        } else {
            self.buffer.copy_within(count.., 0);
            self.buffer.truncate(self.buffer.len() - count);
        }
        if self.buffer.capacity() > 2 * WRITE_CHUNK_BYTES {
            // One large batch must not keep its buffer for good.
            self.buffer.shrink_to(WRITE_CHUNK_BYTES);
        }
        Ok(())
    }

    /// Before an fdatasync: writes zeros over the reserved space just ahead of the records, so
    /// that the fdatasyncs after this one find written blocks there. `fallocate` reserves space
    /// as unwritten extents, and the first fdatasync of data in each new page must also commit
    /// the filesystem's journal to mark it written (on ext4, about 50 µs more than an fdatasync
    /// of data alone). Writing zeros over zeros changes nothing a reader or recovery sees, so a
    /// failure here is not an error: the space stays as it was. Does nothing while the zeros
    /// reach at least half of [`ZERO_AHEAD_BYTES`] past the records.
    pub(crate) fn zero_ahead(&mut self) {
        let from = self.end().next_multiple_of(4096);
        let to = from.saturating_add(ZERO_AHEAD_BYTES).min(self.len);
        let mut offset = self.zeroed.max(from);
        if offset >= from.saturating_add(ZERO_AHEAD_BYTES / 2).min(self.len) {
            return;
        }
        while offset < to {
            let len = (to - offset).min(ZEROS.len());
            let zeros = ZEROS.get(..len).unwrap_or_default();
            if let Err(error) = self
                .storage
                .write_at(&self.file, &self.path, offset as u64, zeros)
            {
                tracing::debug!(segment = %self.path.display(), %error, "could not write zeros ahead");
                return;
            }
            offset += len;
            self.zeroed = offset;
        }
    }

    /// fdatasync: every record written so far reaches stable storage.
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.storage.sync(&self.file, &self.path, false)
    }

    /// A handle to fsync this segment later.
    pub(crate) fn try_clone_file(&self) -> Result<File, Error> {
        self.file.try_clone().map_err(|e| Error::io(&self.path, e))
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

    /// Hands pages before `offset` back to the kernel (see `WriteSegment::release`).
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
