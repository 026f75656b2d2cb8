//! The on-disk log: segment files of checksummed records, a checkpointed read cursor, and
//! recovery. Crate-internal; its one user is the spill thread (the writer side, [`Log`]) and the
//! queue's consumers (the reader side, [`LogReader`]).
//!
//! Sequence numbers are contiguous: the writer appends record `n + 1` right after `n`. A gap
//! seen by a reader therefore means records were lost (damage, or unsynced data after a power
//! cut), and its size is exactly how many; it is counted in [`LogShared::skipped`].
//!
//! The writer publishes how far it has written ([`Progress`]) after each batch; a reader never
//! looks past that, so it never forms a slice over bytes being written.

pub(crate) mod checkpoint;
pub(crate) mod record;
pub(crate) mod recovery;
pub(crate) mod segment;
pub(crate) mod storage;

#[cfg(test)]
pub(crate) mod fault;

#[cfg(test)]
mod power_cut;
#[cfg(test)]
mod tests;

use crate::error::Error;
use checkpoint::{CheckpointFile, Cursor};
use record::{Parsed, SEGMENT_HEADER_BYTES};
pub use recovery::CheckpointState;
use segment::{ReadSegment, WriteSegment};
use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
pub(crate) use storage::{Real, SharedStorage};

/// Name of the lock file in a queue directory.
pub(crate) const LOCK_FILE: &str = "lock";

/// Rolled segments whose data is not yet fsynced are kept open for the next flush; past this
/// many, the oldest is fsynced at once, so the open files stay bounded.
const MAX_UNSYNCED_SEGMENTS: usize = 16;

/// How far the writer has written, as readers may see it.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// First sequence numbers of the live segments, ascending; the last is being written.
    pub(crate) segments: VecDeque<u64>,
    /// Records with smaller sequence numbers are written.
    pub(crate) end_sequence: u64,
    /// End of written data in the last segment.
    pub(crate) end_offset: usize,
}

/// What the writer and the readers share.
#[derive(Debug)]
pub(crate) struct LogShared {
    pub(crate) dir: PathBuf,
    pub(crate) storage: SharedStorage,
    progress: Mutex<Progress>,
    /// Records found missing or damaged by readers.
    pub(crate) skipped: AtomicU64,
    /// fsync/fdatasync calls on data, checkpoint and directory.
    pub(crate) fsyncs: AtomicU64,
    /// Bytes of segment files on disk.
    pub(crate) disk_bytes: AtomicU64,
}

impl LogShared {
    pub(crate) fn progress(&self) -> MutexGuard<'_, Progress> {
        // A panic while holding this lock leaves consistent data (plain stores), so go on.
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one fsync of `path`: counts it, and reports it when it is slow.
    fn fsync(&self, path: &Path, sync: impl FnOnce() -> std::io::Result<()>) -> Result<(), Error> {
        let started = std::time::Instant::now();
        let result = sync();
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        let took = started.elapsed();
        if took >= SLOW_FSYNC {
            tracing::warn!(path = %path.display(), ?took, "slow fsync");
        }
        result.map_err(|e| {
            tracing::error!(path = %path.display(), error = %e, "fsync failed");
            Error::io(path, e)
        })
    }
}

/// An fsync that takes this long is reported (`tracing` warning).
const SLOW_FSYNC: std::time::Duration = std::time::Duration::from_millis(100);

/// Directories this process has open, so a second open here is refused at once.
static OPEN_DIRECTORIES: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// How long an open waits for a lock that no queue of this process holds. A child process
/// forked by another thread keeps a copy of the lock file's descriptor until it calls exec;
/// that can outlast the queue that closed it by a moment, and must not fail a reopen.
const LOCK_GRACE: std::time::Duration = std::time::Duration::from_millis(200);

/// The exclusive lock on a queue directory: an entry in this process's list, and a `flock`
/// on the `lock` file for other processes. Released on drop.
struct DirectoryLock {
    path: PathBuf,
    _file: File,
}

impl DirectoryLock {
    fn acquire(dir: &Path) -> Result<Self, Error> {
        let path = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
        let locked = || Error::Locked {
            path: dir.to_owned(),
        };
        {
            let mut open = OPEN_DIRECTORIES.lock().unwrap_or_else(|e| e.into_inner());
            if open.contains(&path) {
                return Err(locked());
            }
            open.push(path.clone());
        }
        let file = match Self::open_file(dir) {
            Ok(file) => file,
            Err(e) => {
                // Take the entry out again, or this process could never open the directory.
                let mut open = OPEN_DIRECTORIES.lock().unwrap_or_else(|e| e.into_inner());
                open.retain(|p| *p != path);
                return Err(e);
            }
        };
        // From here on, dropping `guard` takes the entry out again.
        let guard = Self { path, _file: file };
        let deadline = std::time::Instant::now() + LOCK_GRACE;
        loop {
            match guard._file.try_lock() {
                Ok(()) => return Ok(guard),
                Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(std::fs::TryLockError::WouldBlock) => return Err(locked()),
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(Error::io(dir.join(LOCK_FILE), e));
                }
            }
        }
    }

    fn open_file(dir: &Path) -> Result<File, Error> {
        let lock_path = dir.join(LOCK_FILE);
        File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))
    }
}

impl Drop for DirectoryLock {
    fn drop(&mut self) {
        let mut open = OPEN_DIRECTORIES.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|p| *p != self.path);
    }
}

/// The writer side of the log. Owned by the spill thread.
pub(crate) struct Log {
    shared: Arc<LogShared>,
    _lock: DirectoryLock,
    segment_size: u64,
    /// The segment being written; opened when the first record is appended, so that opening a
    /// queue needs no new space (see `recovery`).
    writer: Option<WriteSegment>,
    /// The last segment found on open, with the tail to cut before writing into it.
    tail: Option<recovery::Tail>,
    /// Where the writer goes on, until it is opened: the segment and offset.
    head: (u64, usize),
    /// Sequence number of the next record.
    next_sequence: u64,
    /// Records before this one are written into the file (the rest are gathered in the writer).
    written_sequence: u64,
    /// Segments created since the last publish, to be shown to readers with the data in them.
    unpublished: Vec<u64>,
    /// All live segments, ascending (the writer's own copy).
    segments: VecDeque<u64>,
    /// Rolled segments with data not yet fsynced.
    unsynced: VecDeque<(PathBuf, File)>,
    /// Whether the current segment has data not yet fsynced.
    dirty: bool,
    checkpoint: CheckpointFile,
    /// The read cursor and unacknowledged list of the last checkpoint written.
    checkpointed: (u64, Vec<u64>),
    /// The oldest record the last durable checkpoint keeps: segments before it can go.
    durable_checkpointed: u64,
    recovered_read_sequence: u64,
    recovered_unacked: Vec<u64>,
    checkpoint_state: CheckpointState,
}

impl Log {
    /// Opens (creating if needed) the log in `dir`: takes the directory lock, then recovers.
    #[cfg(test)]
    pub(crate) fn open(dir: &Path, segment_size: u64) -> Result<Self, Error> {
        Self::open_with(dir, segment_size, Real::shared())
    }

    /// [`open`](Self::open) through the given storage layer.
    pub(crate) fn open_with(
        dir: &Path,
        segment_size: u64,
        storage: SharedStorage,
    ) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let lock = DirectoryLock::acquire(dir)?;
        let recovered = recovery::recover(&storage, dir, segment_size)?;
        let last = recovered
            .segments
            .last()
            .copied()
            .unwrap_or(recovered.next_sequence);
        let segments: VecDeque<u64> = recovered.segments.into_iter().collect();
        let shared = Arc::new(LogShared {
            dir: dir.to_owned(),
            storage,
            progress: Mutex::new(Progress {
                segments: segments.clone(),
                end_sequence: recovered.next_sequence,
                end_offset: recovered.end_offset,
            }),
            skipped: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            disk_bytes: AtomicU64::new(recovered.disk_bytes),
        });
        Ok(Self {
            shared,
            _lock: lock,
            segment_size,
            writer: None,
            tail: recovered.tail,
            head: (last, recovered.end_offset),
            next_sequence: recovered.next_sequence,
            written_sequence: recovered.next_sequence,
            unpublished: Vec::new(),
            segments,
            unsynced: VecDeque::new(),
            dirty: false,
            checkpoint: recovered.checkpoint,
            checkpointed: (recovered.read_sequence, recovered.unacked.clone()),
            durable_checkpointed: recovered
                .unacked
                .first()
                .map_or(recovered.read_sequence, |&u| u.min(recovered.read_sequence)),
            recovered_read_sequence: recovered.read_sequence,
            recovered_unacked: recovered.unacked,
            checkpoint_state: recovered.checkpoint_state,
        })
    }

    pub(crate) fn shared(&self) -> &Arc<LogShared> {
        &self.shared
    }

    /// A reader starting at the read cursor found on open.
    pub(crate) fn reader(&self) -> LogReader {
        LogReader::new(Arc::clone(&self.shared), self.recovered_read_sequence)
    }

    /// Sequence number of the next record appended.
    pub(crate) fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// The read cursor found on open.
    pub(crate) fn recovered_read_sequence(&self) -> u64 {
        self.recovered_read_sequence
    }

    /// Records before the read cursor that were unacknowledged at the checkpoint: delivered
    /// first after a reopen.
    pub(crate) fn recovered_unacked(&self) -> &[u64] {
        &self.recovered_unacked
    }

    pub(crate) fn checkpoint_state(&self) -> CheckpointState {
        self.checkpoint_state
    }

    pub(crate) fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Appends one record with the next sequence number, rolling to a new segment when it does
    /// not fit. Readers see it after [`publish`](Self::publish). On error nothing was written
    /// and the record can be appended again.
    pub(crate) fn append(&mut self, payload: &[u8]) -> Result<u64, Error> {
        let Some(size) = record::record_size(payload.len()) else {
            return Err(Error::TooLarge {
                bytes: payload.len(),
                max_bytes: record::MAX_PAYLOAD_BYTES,
            });
        };
        if !self.open_writer()?.fits(payload.len()) {
            self.roll(size)?;
        }
        if self.open_writer()?.is_full() {
            // Before the record, so that an error means it was not appended.
            self.write_whole_pages()?;
        }
        let sequence = self.next_sequence;
        self.open_writer()?.append(sequence, payload);
        self.next_sequence += 1;
        self.dirty = true;
        Ok(sequence)
    }

    /// The segment being written, opened first if need be: the last segment found on open,
    /// its tail cut, or a first segment if there is none. This is where a queue reopened on a
    /// full disk first needs space; until then it reads, removes and deletes without any.
    fn open_writer(&mut self) -> Result<&mut WriteSegment, Error> {
        let writer = match self.writer.take() {
            Some(writer) => writer,
            None => self.open_head()?,
        };
        Ok(self.writer.insert(writer))
    }

    fn open_head(&mut self) -> Result<WriteSegment, Error> {
        use recovery::crash_point::{Step, hit};
        self.checkpoint.create()?;
        let storage = Arc::clone(&self.shared.storage);
        if let Some(tail) = &self.tail {
            let before = std::fs::metadata(&tail.path).map_or(tail.size_bytes, |m| m.len());
            segment::cut(storage.as_ref(), &tail.path, tail.offset, tail.size_bytes)?;
            hit(Step::TailReserved)?;
            let writer = WriteSegment::open(
                storage,
                &tail.path,
                self.head.0,
                self.head.1,
                tail.size_bytes,
            )?;
            let grown = (writer.len() as u64).saturating_sub(before);
            self.shared.disk_bytes.fetch_add(grown, Ordering::Relaxed);
            self.tail = None;
            return Ok(writer);
        }
        let first = self.next_sequence;
        let path = segment::create(storage.as_ref(), &self.shared.dir, first, self.segment_size)?;
        hit(Step::FirstSegmentCreated)?;
        let writer = WriteSegment::open(
            storage,
            &path,
            first,
            SEGMENT_HEADER_BYTES,
            self.segment_size,
        )?;
        self.shared
            .disk_bytes
            .fetch_add(writer.len() as u64, Ordering::Relaxed);
        self.segments.push_back(first);
        self.unpublished.push(first);
        self.head = (first, SEGMENT_HEADER_BYTES);
        Ok(writer)
    }

    /// The segment and offset where the next record goes.
    fn head(&self) -> (u64, usize) {
        self.writer
            .as_ref()
            .map_or(self.head, |w| (w.first_sequence(), w.visible()))
    }

    /// Writes the records appended so far into the file (readers and fsyncs see only those).
    /// On error they stay gathered, and the next call writes them again.
    fn write_out(&mut self) -> Result<(), Error> {
        if let Some(writer) = &mut self.writer {
            writer.write_out()?;
        }
        self.written_sequence = self.next_sequence;
        Ok(())
    }

    /// [`write_out`](Self::write_out) up to the last page boundary (see
    /// [`WriteSegment::write_whole_pages`]): records cut by it stay unwritten.
    fn write_whole_pages(&mut self) -> Result<(), Error> {
        if let Some(writer) = &mut self.writer {
            writer.write_whole_pages()?;
            self.written_sequence = self.next_sequence - writer.unwritten_records() as u64;
        }
        Ok(())
    }

    /// Starts a new segment big enough for a record of `record_bytes`.
    fn roll(&mut self, record_bytes: usize) -> Result<(), Error> {
        self.write_out()?;
        let Some(current) = &self.writer else {
            return Ok(());
        };
        let needed = (SEGMENT_HEADER_BYTES + record_bytes) as u64;
        let size = if needed > self.segment_size {
            // A record larger than a segment gets a segment of its own.
            needed.next_multiple_of(4096)
        } else {
            self.segment_size
        };
        if current.end() == SEGMENT_HEADER_BYTES {
            // The segment holds no record yet (so this record is larger than a segment): grow
            // it rather than make a second segment with the same first sequence number.
            let path = current.path().to_owned();
            let before = current.len() as u64;
            let writer = WriteSegment::open(
                Arc::clone(&self.shared.storage),
                &path,
                self.next_sequence,
                SEGMENT_HEADER_BYTES,
                size,
            )?;
            self.shared.disk_bytes.fetch_add(
                (writer.len() as u64).saturating_sub(before),
                Ordering::Relaxed,
            );
            self.writer = Some(writer);
            tracing::debug!(segment = %path.display(), size, "grew an empty segment for a large record");
            return Ok(());
        }
        let storage = Arc::clone(&self.shared.storage);
        let path = segment::create(storage.as_ref(), &self.shared.dir, self.next_sequence, size)?;
        // Creation fsyncs the file and the directory.
        self.shared.fsyncs.fetch_add(2, Ordering::Relaxed);
        tracing::debug!(segment = %path.display(), size, "rolled to a new segment");
        let opened = WriteSegment::open(
            Arc::clone(&storage),
            &path,
            self.next_sequence,
            SEGMENT_HEADER_BYTES,
            size,
        );
        let writer = match opened {
            Ok(writer) => writer,
            Err(e) => {
                // Leave no segment behind that readers and recovery do not know about yet.
                let _ = storage.remove(&path);
                return Err(e);
            }
        };
        let old = self.writer.replace(writer);
        if self.dirty
            && let Some(old) = old
        {
            let file = old.try_clone_file()?;
            self.unsynced.push_back((old.path().to_owned(), file));
            if self.unsynced.len() > MAX_UNSYNCED_SEGMENTS
                && let Some((path, file)) = self.unsynced.pop_front()
            {
                self.shared
                    .fsync(&path, || storage.sync(&file, &path, false))?;
            }
        }
        self.dirty = false;
        self.segments.push_back(self.next_sequence);
        self.unpublished.push(self.next_sequence);
        self.shared.disk_bytes.fetch_add(size, Ordering::Relaxed);
        Ok(())
    }

    /// Writes out and shows readers everything appended so far. If the write fails, readers
    /// are shown what was written before, and the error returned.
    pub(crate) fn publish(&mut self) -> Result<(), Error> {
        let written = self.write_out();
        self.show_written();
        written
    }

    /// [`publish`](Self::publish) up to the last page boundary: the rest (less than a page)
    /// waits for the next publish, flush or checkpoint, which the caller must make sure comes.
    #[cfg(test)]
    pub(crate) fn publish_whole_pages(&mut self) -> Result<(), Error> {
        let written = self.write_whole_pages();
        self.show_written();
        written
    }

    /// Records before this one are written, and readers may be shown them.
    pub(crate) fn written_sequence(&self) -> u64 {
        self.written_sequence
    }

    /// Whether appended records wait in the writer's buffer.
    pub(crate) fn has_unwritten(&self) -> bool {
        self.writer
            .as_ref()
            .is_some_and(|w| w.unwritten_records() > 0)
    }

    /// Shows readers what is written, writing nothing more.
    pub(crate) fn show_written(&mut self) {
        let mut progress = self.shared.progress();
        progress.segments.extend(self.unpublished.drain(..));
        progress.end_sequence = self.written_sequence;
        progress.end_offset = self.head().1;
    }

    /// Makes every appended record durable: fdatasync of the rolled segments and of the current
    /// one.
    pub(crate) fn flush(&mut self) -> Result<(), Error> {
        self.write_out()?;
        let storage = &self.shared.storage;
        while let Some((path, file)) = self.unsynced.front() {
            self.shared
                .fsync(path, || storage.sync(file, path, false))?;
            self.unsynced.pop_front();
        }
        if self.dirty {
            if let Some(writer) = &mut self.writer {
                writer.zero_ahead();
                let writer = &*writer;
                self.shared.fsync(writer.path(), || writer.sync())?;
            }
            self.dirty = false;
        }
        Ok(())
    }

    /// Whether appended data awaits an fsync.
    pub(crate) fn has_unsynced(&self) -> bool {
        self.dirty || !self.unsynced.is_empty()
    }

    /// Whether the read cursor has left the oldest segment behind, so a durable checkpoint
    /// would let it be deleted.
    pub(crate) fn has_consumed_segment(&self, read_sequence: u64, unacked: &[u64]) -> bool {
        let (read_sequence, unacked) = self.clamp(read_sequence, unacked);
        let oldest = unacked
            .first()
            .map_or(read_sequence, |&u| u.min(read_sequence));
        self.segments.get(1).is_some_and(|&second| second <= oldest)
            && oldest > self.durable_checkpointed
    }

    /// Whether a checkpoint with this cursor would say something new.
    pub(crate) fn checkpoint_is_stale(&self, read_sequence: u64, unacked: &[u64]) -> bool {
        self.clamp(read_sequence, unacked) != self.checkpointed
    }

    /// The cursor a checkpoint can record: no further than what is appended, and with no more
    /// unacknowledged records than a slot holds (else the cursor steps back to the oldest).
    fn clamp(&self, read_sequence: u64, unacked: &[u64]) -> (u64, Vec<u64>) {
        let read_sequence = read_sequence.min(self.next_sequence);
        let below: Vec<u64> = unacked
            .iter()
            .copied()
            .filter(|&u| u < read_sequence)
            .collect();
        if below.len() > checkpoint::MAX_UNACKED {
            return (below.first().copied().unwrap_or(read_sequence), Vec::new());
        }
        (read_sequence, below)
    }

    /// Writes the checkpoint: the read cursor (clamped to what is appended), the unacknowledged
    /// records before it (`unacked`, ascending), and the writer's position. With `durable`,
    /// fsyncs it, then deletes the segments wholly behind what it keeps and fsyncs the
    /// directory. Segments are only ever deleted behind a durable checkpoint, so a power cut
    /// never leaves a checkpoint that points into a deleted segment.
    pub(crate) fn checkpoint(
        &mut self,
        read_sequence: u64,
        unacked: &[u64],
        durable: bool,
    ) -> Result<(), Error> {
        // The head the checkpoint names must be in the file.
        self.write_out()?;
        let (read_sequence, unacked) = self.clamp(read_sequence, unacked);
        let cursor = Cursor {
            read_sequence,
            unacked,
            head_segment: self.head().0,
            head_offset: self.head().1 as u64,
            head_sequence: self.next_sequence,
        };
        self.checkpoint.write(&cursor)?;
        let oldest = cursor
            .unacked
            .first()
            .map_or(read_sequence, |&u| u.min(read_sequence));
        self.checkpointed = (read_sequence, cursor.unacked);
        if !durable {
            return Ok(());
        }
        let checkpoint = &self.checkpoint;
        self.shared.fsync(checkpoint.path(), || checkpoint.sync())?;
        self.durable_checkpointed = oldest;
        self.delete_consumed()
    }

    /// Deletes segments whose records all lie before the durable read cursor; never the one
    /// being written.
    fn delete_consumed(&mut self) -> Result<(), Error> {
        let mut deleted = false;
        while self.segments.len() > 1
            && self
                .segments
                .get(1)
                .is_some_and(|&next| next <= self.durable_checkpointed)
        {
            let Some(first) = self.segments.pop_front() else {
                break;
            };
            let path = self.shared.dir.join(segment::segment_file_name(first));
            // A rolled segment with unsynced data that is now consumed needs no fsync.
            self.unsynced.retain(|(p, _)| *p != path);
            let len = std::fs::metadata(&path).map_or(0, |m| m.len());
            match self.shared.storage.remove(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&path, e)),
            }
            self.shared.disk_bytes.fetch_sub(len, Ordering::Relaxed);
            tracing::debug!(segment = %path.display(), "deleted a consumed segment");
            let mut progress = self.shared.progress();
            if progress.segments.front() == Some(&first) {
                progress.segments.pop_front();
            }
            deleted = true;
        }
        if deleted {
            let dir = &self.shared.dir;
            self.shared
                .fsync(dir, || self.shared.storage.sync_dir(dir))?;
        }
        Ok(())
    }
}

/// Reads records in sequence order, from a cursor, as raw bytes.
pub(crate) struct LogReader {
    shared: Arc<LogShared>,
    segment: Option<ReadSegment>,
    offset: usize,
    /// The next sequence number wanted.
    expected: u64,
}

impl LogReader {
    pub(crate) fn new(shared: Arc<LogShared>, from: u64) -> Self {
        Self {
            shared,
            segment: None,
            offset: SEGMENT_HEADER_BYTES,
            expected: from,
        }
    }

    /// The next sequence number this reader will return (or count as skipped).
    pub(crate) fn expected(&self) -> u64 {
        self.expected
    }

    /// Moves the cursor forward to `sequence`; records before it are passed over unread.
    pub(crate) fn seek(&mut self, sequence: u64) {
        if sequence > self.expected {
            self.expected = sequence;
            // The current segment may no longer be the right one; found again on the next read.
            if self
                .segment
                .as_ref()
                .is_some_and(|s| s.first_sequence() > sequence)
            {
                self.segment = None;
            }
        }
    }

    /// Reads up to `max` records that the writer has published, handing each to `visit` with its
    /// sequence number. Returns how many were visited. Damaged or missing records are skipped
    /// and counted; the cursor moves past them.
    pub(crate) fn read_batch(
        &mut self,
        max: usize,
        mut visit: impl FnMut(u64, &[u8]),
    ) -> Result<usize, Error> {
        let (end_sequence, end_offset, segments) = {
            let progress = self.shared.progress();
            if self.expected >= progress.end_sequence {
                return Ok(0);
            }
            // Only the segments from the reader's position on matter.
            let from = progress
                .segments
                .partition_point(|&first| first <= self.expected)
                .saturating_sub(1);
            let segments: Vec<u64> = progress.segments.range(from..).copied().collect();
            (progress.end_sequence, progress.end_offset, segments)
        };
        let mut visited = 0;
        while visited < max && self.expected < end_sequence {
            // Find (or keep) the segment holding `expected`.
            let index = segments
                .partition_point(|&first| first <= self.expected)
                .saturating_sub(1);
            let Some(&first) = segments.get(index) else {
                return Ok(visited);
            };
            if first > self.expected {
                // The segment that held `expected` is gone: those records are lost.
                self.skip_to(first);
                continue;
            }
            let next_first = segments.get(index + 1).copied();
            // The last segment may have grown (for a record larger than a segment) since it
            // was mapped: map it again to see the new end.
            let grown = next_first.is_none()
                && self
                    .segment
                    .as_ref()
                    .is_some_and(|s| s.first_sequence() == first && s.len() < end_offset);
            if grown
                || self
                    .segment
                    .as_ref()
                    .is_none_or(|s| s.first_sequence() != first)
            {
                let path = self.shared.dir.join(segment::segment_file_name(first));
                if !grown {
                    self.offset = SEGMENT_HEADER_BYTES;
                }
                self.segment = Some(ReadSegment::open(&path, first)?);
            }
            let limit_sequence = next_first.map_or(end_sequence, |n| n.min(end_sequence));
            let limit_offset = if next_first.is_none() {
                end_offset
            } else {
                usize::MAX
            };
            let Some(segment) = self.segment.as_ref() else {
                continue;
            };
            let bytes = segment.bytes(limit_offset);
            // Record after record in this segment (segment and limits found once for all).
            while visited < max && self.expected < limit_sequence {
                let Parsed::Record {
                    sequence,
                    payload,
                    size,
                } = record::parse_at(bytes, self.offset)
                else {
                    break;
                };
                if sequence >= limit_sequence {
                    break;
                }
                self.offset += size;
                if sequence < self.expected {
                    continue;
                }
                if sequence > self.expected {
                    self.count_skipped(first, self.expected, sequence);
                }
                self.expected = sequence + 1;
                visit(sequence, payload);
                visited += 1;
            }
            if visited >= max || self.expected >= limit_sequence {
                continue;
            }
            // No record of this segment at the offset: damaged or missing records.
            let expected = self.expected;
            let wanted = |s: u64| s >= expected && s < limit_sequence;
            match record::find_next_valid(bytes, self.offset, wanted) {
                Some(next) => self.offset = next,
                None => {
                    // Nothing more this segment can give: the rest of its records are lost.
                    self.skip_to(limit_sequence);
                    self.segment = None;
                }
            }
        }
        if let Some(segment) = self.segment.as_mut() {
            segment.release_before(self.offset);
        }
        Ok(visited)
    }

    fn skip_to(&mut self, sequence: u64) {
        if sequence > self.expected {
            let segment = self.segment.as_ref().map_or(0, |s| s.first_sequence());
            self.count_skipped(segment, self.expected, sequence);
            self.expected = sequence;
        }
    }

    /// Records `[from, to)` were damaged or missing.
    fn count_skipped(&self, segment: u64, from: u64, to: u64) {
        self.shared.skipped.fetch_add(to - from, Ordering::Relaxed);
        tracing::warn!(
            segment = %self.shared.dir.join(segment::segment_file_name(segment)).display(),
            from,
            to,
            "skipped damaged or missing records"
        );
    }
}
