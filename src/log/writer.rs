//! The writer side of the log, owned by the spill thread: writes framed records where the
//! layout put them, rolls to the spare segment, flushes, checkpoints, and deletes the segments
//! the read cursor has left behind.
//!
//! Space is taken in one place only: the spare segment ([`LogWriter::prepare`]), made ahead of
//! need. A record is framed into a segment only once its space is reserved, so writing it never
//! needs space, and a full disk shows up as a failed preparation, which refuses the put that
//! needed it and nothing else.

use super::Counters;
use super::checkpoint::{self, CheckpointFile, Cursor};
use super::identity::{self, Identity};
use super::lock::DirectoryLock;
use super::reader::Progress;
use super::recovery::{self, CheckpointState, Tail};
use super::segment::{self, OpenSegment, Spare};
use super::storage::SharedStorage;
use crate::error::Error;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Rolled segments whose data is not yet fsynced are kept open for the next flush; past this
/// many, the oldest is fsynced at once, so the open files stay bounded.
const MAX_UNSYNCED_SEGMENTS: usize = 16;

/// What opening the log found: where reading resumes and where writing goes on.
#[derive(Debug)]
pub(crate) struct Opened {
    /// Records before this one were removed, except those in `unacked`.
    pub(crate) read_sequence: u64,
    /// Records before `read_sequence` that were out with a consumer at the last checkpoint.
    pub(crate) unacked: Vec<u64>,
    /// The sequence number the next record gets.
    pub(crate) next_sequence: u64,
    pub(crate) checkpoint_state: CheckpointState,
    /// What readers may read.
    pub(crate) progress: Progress,
    /// Where the next record goes.
    pub(crate) head: Head,
    /// Bytes of the queue's files.
    pub(crate) disk_bytes: u64,
    /// The queue's identity (see `identity`).
    pub(crate) id: String,
}

/// The segment records are framed into, as the layout sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    /// Its first sequence number, or `None` when there is no segment yet.
    pub(crate) segment: Option<u64>,
    /// Its length (all of it reserved).
    pub(crate) len: u64,
    /// Where the next record goes in it.
    pub(crate) end: u64,
    /// Whether the writer must cut it before the first write (the last segment found on open).
    pub(crate) needs_cut: bool,
}

/// The end of what is written: segment, offset in it, and the next sequence number.
#[derive(Debug, Clone, Copy)]
struct Position {
    segment: u64,
    offset: u64,
    sequence: u64,
}

/// See the module docs.
pub(crate) struct LogWriter {
    dir: PathBuf,
    storage: SharedStorage,
    counters: Arc<Counters>,
    _lock: DirectoryLock,
    /// The segment being written.
    current: Option<OpenSegment>,
    /// The last segment found on open, cut before its first write.
    tail: Option<Tail>,
    /// Rolled segments with data not yet fsynced.
    unsynced: VecDeque<OpenSegment>,
    /// Spare segments: the one not yet claimed by a roll, and those claimed by rolls whose
    /// records are not yet written.
    spares: Vec<Spare>,
    next_spare: u64,
    /// Live segments, ascending: first sequence number and length.
    segments: VecDeque<(u64, u64)>,
    checkpoint: CheckpointFile,
    /// The read cursor and unacknowledged list of the last checkpoint written.
    checkpointed: (u64, Vec<u64>),
    /// The oldest record the last durable checkpoint keeps: segments before it can go.
    durable_checkpointed: u64,
    /// A checkpoint was written and not yet fsynced.
    checkpoint_unsynced: bool,
    /// The writer's next sequence number as the last checkpoint recorded it.
    checkpointed_head: u64,
    /// The queue's identity, written (if it could not be on open) when space is next taken.
    identity: Identity,
    written: Position,
}

impl LogWriter {
    /// Opens (creating the directory if needed) the log in `dir`: takes the directory lock, then
    /// recovers. Creates, reserves and cuts nothing: a queue whose disk is full opens.
    pub(crate) fn open(
        dir: &Path,
        storage: SharedStorage,
        counters: Arc<Counters>,
    ) -> Result<(Self, Opened), Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let lock = DirectoryLock::acquire(dir)?;
        let recovered = recovery::recover(&storage, dir)?;
        let identity = identity::read_or_create(storage.as_ref(), dir)?;
        let segments: VecDeque<(u64, u64)> = recovered.segments.iter().copied().collect();
        let last = segments.back().copied();
        let head = Head {
            segment: last.map(|(first, _)| first),
            len: last.map_or(0, |(_, len)| len),
            end: recovered.end_offset as u64,
            needs_cut: recovered.tail.is_some(),
        };
        let oldest_kept = recovered
            .unacked
            .first()
            .map_or(recovered.read_sequence, |&u| u.min(recovered.read_sequence));
        let opened = Opened {
            read_sequence: recovered.read_sequence,
            unacked: recovered.unacked.clone(),
            next_sequence: recovered.next_sequence,
            checkpoint_state: recovered.checkpoint_state,
            progress: Progress {
                segments: segments.iter().map(|&(first, _)| first).collect(),
                end_sequence: recovered.next_sequence,
                end_offset: recovered.end_offset,
            },
            head,
            disk_bytes: segments.iter().map(|&(_, len)| len).sum::<u64>()
                + recovered.checkpoint.file_bytes()
                + identity::file_bytes(&identity),
            id: identity.id.clone(),
        };
        let writer = Self {
            dir: dir.to_owned(),
            storage,
            counters,
            _lock: lock,
            current: None,
            tail: recovered.tail,
            unsynced: VecDeque::new(),
            spares: Vec::new(),
            next_spare: 0,
            segments,
            checkpoint: recovered.checkpoint,
            checkpointed: (recovered.read_sequence, recovered.unacked),
            durable_checkpointed: oldest_kept,
            checkpoint_unsynced: false,
            checkpointed_head: recovered.next_sequence,
            identity,
            written: Position {
                segment: last.map_or(recovered.next_sequence, |(first, _)| first),
                offset: recovered.end_offset as u64,
                sequence: recovered.next_sequence,
            },
        };
        Ok((writer, opened))
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of the queue's files: segments (at their reserved size), spares, the checkpoint
    /// and the identity.
    pub(crate) fn disk_bytes(&self) -> u64 {
        self.segments.iter().map(|&(_, len)| len).sum::<u64>()
            + self.spares.iter().map(|spare| spare.len).sum::<u64>()
            + self.checkpoint.file_bytes()
            + identity::file_bytes(&self.identity)
    }

    /// First sequence numbers of the live segments.
    pub(crate) fn segments(&self) -> impl Iterator<Item = u64> + '_ {
        self.segments.iter().map(|&(first, _)| first)
    }

    /// Cuts the last segment found on open, so records can be written into it (see
    /// [`segment::cut`]), and makes sure the checkpoint file exists: once records are on disk, a
    /// checkpoint must always be writable.
    pub(crate) fn cut_tail(&mut self) -> Result<(), Error> {
        use super::crash_hooks::{Crash, hit};
        self.checkpoint.create()?;
        identity::store(self.storage.as_ref(), &self.dir, &mut self.identity);
        let Some(tail) = &self.tail else {
            return Ok(());
        };
        // A segment made before `RLIMIT_FSIZE` was lowered: writing into it would fail (and
        // raise SIGXFSZ); refused here like a new segment, as a lack of space.
        crate::sys::within_file_size_limit(tail.size_bytes)
            .map_err(|error| Error::io(&tail.path, error))?;
        segment::cut(
            self.storage.as_ref(),
            &tail.path,
            tail.offset,
            tail.size_bytes,
        )?;
        hit(Crash::TailReserved)?;
        let first = self.written.segment;
        let current = OpenSegment::open(Arc::clone(&self.storage), &tail.path, first, tail.offset)?;
        if let Some(last) = self.segments.back_mut() {
            last.1 = current.len;
        }
        self.current = Some(current);
        self.tail = None;
        Ok(())
    }

    /// Reserves a spare segment of at least `size_bytes`: spare `grow` made larger if it is
    /// given (and still there), else a new one. Returns its id and length.
    pub(crate) fn prepare(
        &mut self,
        grow: Option<u64>,
        size_bytes: u64,
    ) -> Result<(u64, u64), Error> {
        self.checkpoint.create()?;
        identity::store(self.storage.as_ref(), &self.dir, &mut self.identity);
        let storage = self.storage.as_ref();
        if let Some(spare) = self.spares.iter_mut().find(|s| Some(s.id) == grow) {
            spare.grow(storage, size_bytes)?;
            return Ok((spare.id, spare.len));
        }
        let id = self.next_spare;
        let spare = Spare::create(storage, &self.dir, id, size_bytes)?;
        self.next_spare += 1;
        let len = spare.len;
        self.spares.push(spare);
        Ok((id, len))
    }

    /// Writes framed records `bytes` at `offset` of segment `segment`, whose records end before
    /// `end_sequence`. With `rolls`, the spare becomes that segment first.
    pub(crate) fn write(
        &mut self,
        segment: u64,
        offset: u64,
        bytes: &[u8],
        end_sequence: u64,
        rolls: Option<u64>,
    ) -> Result<(), Error> {
        if let Some(spare) = rolls {
            self.roll(segment, spare)?;
        }
        let current = match self.current.as_mut() {
            Some(current) if current.first_sequence == segment => current,
            _ => {
                return Err(Error::corrupt(
                    self.dir.join(segment::segment_file_name(segment)),
                    offset,
                    "records framed for a segment the writer does not have open (internal error)",
                ));
            }
        };
        current.write(offset, bytes)?;
        self.written = Position {
            segment,
            offset: offset + bytes.len() as u64,
            sequence: end_sequence,
        };
        Ok(())
    }

    /// Makes spare `id` the segment whose first record is `first_sequence`.
    fn roll(&mut self, first_sequence: u64, id: u64) -> Result<(), Error> {
        let Some(index) = self.spares.iter().position(|s| s.id == id) else {
            return Err(Error::corrupt(
                &self.dir,
                0,
                "a roll to a spare segment that is not there (internal error)",
            ));
        };
        let spare = self.spares.swap_remove(index);
        let storage = Arc::clone(&self.storage);
        let installed = spare.install(Arc::clone(&storage), &self.dir, first_sequence)?;
        // The header's fsync and the directory's.
        self.counters.fsyncs.fetch_add(2, Ordering::Relaxed);
        tracing::debug!(segment = %installed.path.display(), size = installed.len, "rolled to a new segment");
        let len = installed.len;
        if let Some(old) = self.current.replace(installed) {
            if old.first_sequence == first_sequence {
                // An empty segment, replaced by a larger one for a large record.
                if let Some(last) = self.segments.back_mut() {
                    last.1 = len;
                }
                return Ok(());
            }
            if old.dirty {
                self.unsynced.push_back(old);
                if self.unsynced.len() > MAX_UNSYNCED_SEGMENTS
                    && let Some(oldest) = self.unsynced.pop_front()
                {
                    self.counters.fsync(&oldest.path, || oldest.sync())?;
                }
            }
        }
        self.segments.push_back((first_sequence, len));
        Ok(())
    }

    /// Makes every record written durable: fdatasync of the rolled segments and of the current
    /// one.
    pub(crate) fn flush(&mut self) -> Result<(), Error> {
        while let Some(segment) = self.unsynced.front() {
            self.counters.fsync(&segment.path, || segment.sync())?;
            self.unsynced.pop_front();
        }
        let end = self.written.offset;
        if let Some(current) = self.current.as_mut().filter(|c| c.dirty) {
            current.zero_ahead(end);
            let current = &*current;
            self.counters.fsync(&current.path, || current.sync())?;
        }
        if let Some(current) = self.current.as_mut() {
            current.dirty = false;
        }
        Ok(())
    }

    /// Whether the read cursor has left the oldest segment behind, so a durable checkpoint
    /// would let it be deleted.
    pub(crate) fn has_consumed_segment(&self, read_sequence: u64, unacked: &[u64]) -> bool {
        let (read_sequence, unacked) = self.clamp(read_sequence, unacked);
        let oldest = unacked
            .first()
            .map_or(read_sequence, |&u| u.min(read_sequence));
        self.segments
            .get(1)
            .is_some_and(|&(second, _)| second <= oldest)
            && oldest > self.durable_checkpointed
    }

    /// The cursor a checkpoint can record: no further than what is written, and with no more
    /// unacknowledged records than a slot holds (else the cursor steps back to the oldest).
    fn clamp(&self, read_sequence: u64, unacked: &[u64]) -> (u64, Vec<u64>) {
        let read_sequence = read_sequence.min(self.written.sequence);
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

    /// Writes the checkpoint if it would say something new: the read cursor (clamped to what is
    /// written), the unacknowledged records before it (`unacked`, ascending), and where writing
    /// stands. With `durable`, makes the last checkpoint durable, then deletes the segments
    /// wholly behind what it keeps and fsyncs the directory. Segments are only ever deleted
    /// behind a durable checkpoint, so a power cut never leaves a checkpoint that points into
    /// a deleted segment. Returns whether segments were deleted.
    pub(crate) fn checkpoint(
        &mut self,
        read_sequence: u64,
        unacked: &[u64],
        durable: bool,
    ) -> Result<bool, Error> {
        if self.segments.is_empty() && self.checkpoint.file_bytes() == 0 {
            // Nothing was ever written: nothing to record.
            return Ok(false);
        }
        let (read_sequence, unacked) = self.clamp(read_sequence, unacked);
        let head_moved = self.written.sequence != self.checkpointed_head;
        if head_moved || (read_sequence, &unacked) != (self.checkpointed.0, &self.checkpointed.1) {
            let cursor = Cursor {
                read_sequence,
                unacked,
                head_segment: self.written.segment,
                head_offset: self.written.offset,
                head_sequence: self.written.sequence,
            };
            self.checkpoint.write(&cursor)?;
            self.checkpointed = (read_sequence, cursor.unacked);
            self.checkpointed_head = self.written.sequence;
            self.checkpoint_unsynced = true;
        }
        if !durable || !self.checkpoint_unsynced {
            return Ok(false);
        }
        let checkpoint = &self.checkpoint;
        self.counters
            .fsync(checkpoint.path(), || checkpoint.sync())?;
        self.checkpoint_unsynced = false;
        let (read_sequence, unacked) = &self.checkpointed;
        self.durable_checkpointed = unacked
            .first()
            .map_or(*read_sequence, |&u| u.min(*read_sequence));
        self.delete_consumed()
    }

    /// Deletes the segment being written, every record of it removed: under a disk cap that
    /// leaves no room for the next segment, the only way on. The read cursor (`read_sequence`,
    /// past every record written) is made durable first, so recovery never looks for it.
    pub(crate) fn retire(&mut self, segment: u64, read_sequence: u64) -> Result<bool, Error> {
        self.checkpoint(read_sequence, &[], true)?;
        if self.segments.back().map(|&(first, _)| first) != Some(segment)
            || read_sequence < self.written.sequence
            || self.segments.len() > 1
        {
            return Ok(false);
        }
        let path = self.dir.join(segment::segment_file_name(segment));
        self.current = None;
        self.unsynced.clear();
        self.tail = None;
        self.segments.clear();
        match self.storage.remove(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&path, e)),
        }
        let dir = &self.dir;
        self.counters.fsync(dir, || self.storage.sync_dir(dir))?;
        tracing::debug!(segment = %path.display(), "retired the segment being written: the disk cap leaves no room for another");
        Ok(true)
    }

    /// Deletes segments whose records all lie before the durable read cursor; never the one
    /// being written.
    fn delete_consumed(&mut self) -> Result<bool, Error> {
        let mut deleted = false;
        while self.segments.len() > 1
            && self
                .segments
                .get(1)
                .is_some_and(|&(next, _)| next <= self.durable_checkpointed)
        {
            let Some((first, _)) = self.segments.pop_front() else {
                break;
            };
            let path = self.dir.join(segment::segment_file_name(first));
            // A rolled segment with unsynced data that is now consumed needs no fsync.
            self.unsynced.retain(|s| s.path != path);
            match self.storage.remove(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&path, e)),
            }
            tracing::debug!(segment = %path.display(), "deleted a consumed segment");
            deleted = true;
        }
        if deleted {
            let dir = &self.dir;
            self.counters.fsync(dir, || self.storage.sync_dir(dir))?;
        }
        Ok(deleted)
    }

    /// Deletes the spare segments (at close: they are made again when needed).
    pub(crate) fn discard_spares(&mut self) {
        for spare in self.spares.drain(..) {
            spare.discard(self.storage.as_ref());
        }
    }

    /// Segment files.
    pub(crate) fn segment_count(&self) -> usize {
        self.segments.len()
    }
}
