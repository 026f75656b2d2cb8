//! Read-only inspection of a queue directory: what the `spillq` inspector binary shows, for
//! operators' own tools too. Nothing here creates, changes or deletes a file.
//!
//! # Examples
//!
//! ```
//! use std::ops::ControlFlow;
//!
//! let dir = tempfile::tempdir()?;
//! let queue = spillq::Queue::builder(dir.path()).cache_size(0).open()?;
//! queue.put_all(["a", "b", "c"].map(String::from))?;
//! queue.get()?;
//! queue.close()?;
//!
//! let inspection = spillq::inspect::Inspection::open(dir.path())?;
//! assert!(!inspection.locked());
//! let mut queued = Vec::new();
//! let summary = inspection.scan(|event| {
//!     if let spillq::inspect::Event::Record { sequence, queued: true, .. } = event {
//!         queued.push(sequence);
//!     }
//!     ControlFlow::Continue(())
//! })?;
//! assert_eq!(queued, [1, 2]);
//! assert_eq!((summary.records, summary.queued, summary.skipped), (3, 2, 0));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::error::Error;
use crate::log::LOCK_FILE;
use crate::log::checkpoint::{self, Loaded};
use crate::log::record::SEGMENT_HEADER_BYTES;
use crate::log::recovery::{self, CheckpointState, SegmentFile};
use crate::log::scan::{Scan, Step};
use std::fs::File;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

/// The checkpoint as found on disk.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let queue = spillq::Queue::<u8>::open(dir.path())?;
/// queue.put(7)?;
/// queue.close()?;
/// let inspection = spillq::inspect::Inspection::open(dir.path())?;
/// assert_eq!(inspection.segments().len(), 1);
/// assert!(inspection.checkpoint().is_some());
/// let summary = inspection.scan(|_event| std::ops::ControlFlow::Continue(()))?;
/// assert_eq!(summary.records, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Checkpoint {
    /// Every record before this one was removed, except `unacked`.
    pub read_sequence: u64,
    /// Records before `read_sequence` out with a consumer, unacknowledged.
    pub unacked: Vec<u64>,
    /// First sequence number of the segment the writer was in.
    pub head_segment: u64,
    /// Offset of the writer's next record in that segment.
    pub head_offset: u64,
    /// The writer's next sequence number.
    pub head_sequence: u64,
}

/// One segment file.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let queue = spillq::Queue::<u8>::open(dir.path())?;
/// queue.put(7)?;
/// queue.close()?;
/// let inspection = spillq::inspect::Inspection::open(dir.path())?;
/// assert_eq!(inspection.segments().len(), 1);
/// assert!(inspection.checkpoint().is_some());
/// let summary = inspection.scan(|_event| std::ops::ControlFlow::Continue(()))?;
/// assert_eq!(summary.records, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Segment {
    /// Sequence number of its first record.
    pub first_sequence: u64,
    /// The file.
    pub path: PathBuf,
    /// Its length in bytes (reserved space included).
    pub bytes: u64,
}

/// What a [`scan`](Inspection::scan) meets, in order.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let queue = spillq::Queue::<u8>::open(dir.path())?;
/// queue.put(7)?;
/// queue.close()?;
/// let inspection = spillq::inspect::Inspection::open(dir.path())?;
/// assert_eq!(inspection.segments().len(), 1);
/// assert!(inspection.checkpoint().is_some());
/// let summary = inspection.scan(|_event| std::ops::ControlFlow::Continue(()))?;
/// assert_eq!(summary.records, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A record whose checksum holds.
    Record {
        /// Its sequence number.
        sequence: u64,
        /// Whether it is still in the queue (not removed as far as the checkpoint knows).
        queued: bool,
        /// Its payload, as the codec wrote it.
        payload: &'a [u8],
    },
    /// Bytes that are not a valid record, where records were expected.
    Damage {
        /// The file.
        path: &'a Path,
        /// Offset of the damage.
        offset: u64,
        /// Records lost with it (from the gap in sequence numbers), where that is known.
        records: u64,
    },
    /// A segment was read to its end.
    SegmentDone {
        /// Bytes of that segment.
        bytes: u64,
    },
}

/// Totals of a scan.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let queue = spillq::Queue::<u8>::open(dir.path())?;
/// queue.put(7)?;
/// queue.close()?;
/// let inspection = spillq::inspect::Inspection::open(dir.path())?;
/// assert_eq!(inspection.segments().len(), 1);
/// assert!(inspection.checkpoint().is_some());
/// let summary = inspection.scan(|_event| std::ops::ControlFlow::Continue(()))?;
/// assert_eq!(summary.records, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Summary {
    /// Valid records on disk.
    pub records: u64,
    /// Of those, records still in the queue.
    pub queued: u64,
    /// Records found damaged or missing.
    pub skipped: u64,
    /// Places where damage was found.
    pub damaged_regions: u64,
    /// Sequence number after the last valid record.
    pub next_sequence: u64,
}

/// A queue directory opened for reading only.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let queue = spillq::Queue::<u8>::open(dir.path())?;
/// queue.put(7)?;
/// queue.close()?;
/// let inspection = spillq::inspect::Inspection::open(dir.path())?;
/// assert_eq!(inspection.segments().len(), 1);
/// assert!(inspection.checkpoint().is_some());
/// let summary = inspection.scan(|_event| std::ops::ControlFlow::Continue(()))?;
/// assert_eq!(summary.records, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Inspection {
    dir: PathBuf,
    segments: Vec<Segment>,
    checkpoint: Option<Checkpoint>,
    checkpoint_state: CheckpointState,
    locked: bool,
    /// A shared lock held while inspecting, so no queue opens (and recovers) meanwhile.
    _shared_lock: Option<File>,
}

impl Inspection {
    /// Reads the directory's segment list, headers and checkpoint. Creates nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the directory cannot be read; [`Error::Corrupt`] or
    /// [`Error::UnsupportedVersion`] as opening the queue would.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # spillq::Queue::<u8>::builder(dir.path()).cache_size(0).open()?.put_all([1, 2])?;
    /// let inspection = spillq::inspect::Inspection::open(dir.path())?;
    /// assert_eq!(inspection.dir(), dir.path());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, Error> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(Error::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such queue directory"),
            ));
        }
        let (shared_lock, locked) = match File::open(dir.join(LOCK_FILE)) {
            Ok(file) => match file.try_lock_shared() {
                Ok(()) => (Some(file), false),
                Err(std::fs::TryLockError::WouldBlock) => (None, true),
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(Error::io(dir.join(LOCK_FILE), e));
                }
            },
            Err(_) => (None, false),
        };
        let (files, _temps) = recovery::list_segments(dir)?;
        for file in &files {
            recovery::check_header(file)?;
        }
        let (checkpoint, checkpoint_state) = match checkpoint::read(dir)? {
            Loaded::Found(cursor) => (
                Some(Checkpoint {
                    read_sequence: cursor.read_sequence,
                    unacked: cursor.unacked,
                    head_segment: cursor.head_segment,
                    head_offset: cursor.head_offset,
                    head_sequence: cursor.head_sequence,
                }),
                CheckpointState::Used,
            ),
            Loaded::Missing => (None, CheckpointState::Missing),
            Loaded::Damaged => (None, CheckpointState::Damaged),
        };
        Ok(Self {
            dir: dir.to_owned(),
            segments: files
                .into_iter()
                .map(
                    |SegmentFile {
                         first_sequence,
                         path,
                         len,
                     }| Segment {
                        first_sequence,
                        path,
                        bytes: len,
                    },
                )
                .collect(),
            checkpoint,
            checkpoint_state,
            locked,
            _shared_lock: shared_lock,
        })
    }

    /// The directory.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # spillq::Queue::<u8>::builder(dir.path()).cache_size(0).open()?.put_all([1, 2])?;
    /// let inspection = spillq::inspect::Inspection::open(dir.path())?;
    /// assert_eq!(inspection.dir(), dir.path());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether a running process has the queue open. What is on disk may then be changing.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # spillq::Queue::<u8>::builder(dir.path()).cache_size(0).open()?.put_all([1, 2])?;
    /// let inspection = spillq::inspect::Inspection::open(dir.path())?;
    /// assert!(!inspection.locked()); // the queue above was closed when dropped
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn locked(&self) -> bool {
        self.locked
    }

    /// The checkpoint, if a valid one was found.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # spillq::Queue::<u8>::builder(dir.path()).cache_size(0).open()?.put_all([1, 2])?;
    /// let inspection = spillq::inspect::Inspection::open(dir.path())?;
    /// assert_eq!(inspection.checkpoint().map(|c| c.read_sequence), Some(0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn checkpoint(&self) -> Option<&Checkpoint> {
        self.checkpoint.as_ref()
    }

    /// Whether the checkpoint was valid, missing or damaged.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # spillq::Queue::<u8>::builder(dir.path()).cache_size(0).open()?.put_all([1, 2])?;
    /// let inspection = spillq::inspect::Inspection::open(dir.path())?;
    /// assert_eq!(inspection.checkpoint_state(), spillq::CheckpointState::Used);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn checkpoint_state(&self) -> CheckpointState {
        self.checkpoint_state
    }

    /// The segment files, in sequence order.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # spillq::Queue::<u8>::builder(dir.path()).cache_size(0).open()?.put_all([1, 2])?;
    /// let inspection = spillq::inspect::Inspection::open(dir.path())?;
    /// assert_eq!(inspection.segments()[0].first_sequence, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Bytes of all segment files.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # spillq::Queue::<u8>::builder(dir.path()).cache_size(0).open()?.put_all([1, 2])?;
    /// let inspection = spillq::inspect::Inspection::open(dir.path())?;
    /// assert!(inspection.disk_bytes() > 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn disk_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Whether the record `sequence` is still in the queue, as far as the checkpoint knows.
    fn queued(&self, sequence: u64) -> bool {
        match &self.checkpoint {
            Some(c) => sequence >= c.read_sequence || c.unacked.binary_search(&sequence).is_ok(),
            None => true,
        }
    }

    /// Reads every segment from its start, handing each record and each damaged place to
    /// `visit` (which may stop the scan). Each segment is read into memory one at a time, so
    /// memory stays within one segment's size.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if a segment cannot be read.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # spillq::Queue::<u8>::builder(dir.path()).cache_size(0).open()?.put_all([1, 2])?;
    /// let inspection = spillq::inspect::Inspection::open(dir.path())?;
    /// let summary = inspection.scan(|_| std::ops::ControlFlow::Continue(()))?;
    /// assert_eq!((summary.records, summary.queued), (2, 2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn scan(
        &self,
        mut visit: impl FnMut(Event<'_>) -> ControlFlow<()>,
    ) -> Result<Summary, Error> {
        let mut summary = Summary::default();
        let mut expected = self.segments.first().map_or(0, |s| s.first_sequence);
        for (index, segment) in self.segments.iter().enumerate() {
            let limit = self.segments.get(index + 1).map(|s| s.first_sequence);
            let is_last = limit.is_none();
            if segment.first_sequence > expected {
                // Records between here and the segment's start are gone (a missing file).
                summary.skipped += segment.first_sequence - expected;
                summary.damaged_regions += 1;
                if visit(Event::Damage {
                    path: &segment.path,
                    offset: 0,
                    records: segment.first_sequence - expected,
                })
                .is_break()
                {
                    return Ok(summary);
                }
            }
            expected = expected.max(segment.first_sequence);
            let bytes = std::fs::read(&segment.path).map_err(|e| Error::io(&segment.path, e))?;
            let mut scan = Scan::new(&bytes, SEGMENT_HEADER_BYTES, expected, limit);
            if is_last {
                // Zeros at the end of the last segment are its reserved space, not damage.
                scan = scan.zero_window(recovery::ZERO_LOOKAHEAD_BYTES);
            }
            // Where damage began that has not been reported yet.
            let mut damaged_at = None;
            // Set once the records up to the next segment are counted as lost.
            let mut counted_to = None;
            while let Some(step) = scan.next() {
                let event = match step {
                    Step::Record {
                        sequence,
                        payload,
                        offset,
                        missing,
                    } => {
                        if missing > 0 || damaged_at.is_some() {
                            // Damage before this record, and the records it cost (if any).
                            summary.skipped += missing;
                            summary.damaged_regions += 1;
                            let offset = damaged_at.take().unwrap_or(offset) as u64;
                            let damage = Event::Damage {
                                path: &segment.path,
                                offset,
                                records: missing,
                            };
                            if visit(damage).is_break() {
                                return Ok(summary);
                            }
                        }
                        let queued = self.queued(sequence);
                        summary.records += 1;
                        summary.queued += u64::from(queued);
                        Event::Record {
                            sequence,
                            queued,
                            payload,
                        }
                    }
                    Step::Damage { offset, .. } => {
                        damaged_at.get_or_insert(offset);
                        continue;
                    }
                    Step::End { offset, damaged } => {
                        if !damaged && damaged_at.is_none() {
                            break;
                        }
                        // A torn or damaged tail: what it cost shows in the next segment's
                        // first sequence number.
                        let lost = limit.map_or(0, |l| l.saturating_sub(scan.expected()));
                        summary.skipped += lost;
                        counted_to = limit;
                        summary.damaged_regions += 1;
                        Event::Damage {
                            path: &segment.path,
                            offset: damaged_at.take().unwrap_or(offset) as u64,
                            records: lost,
                        }
                    }
                };
                if visit(event).is_break() {
                    return Ok(summary);
                }
            }
            expected = scan.expected().max(counted_to.unwrap_or(0));
            if visit(Event::SegmentDone {
                bytes: segment.bytes,
            })
            .is_break()
            {
                return Ok(summary);
            }
        }
        summary.next_sequence = expected;
        Ok(summary)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::Queue;

    /// Every file of `dir` with its bytes.
    fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let path = e.unwrap().path();
                let bytes = std::fs::read(&path).unwrap_or_default();
                (path, bytes)
            })
            .collect();
        files.sort();
        files
    }

    fn scan_all(dir: &Path) -> (Vec<(u64, bool)>, Summary) {
        let inspection = Inspection::open(dir).unwrap();
        let mut records = Vec::new();
        let summary = inspection
            .scan(|event| {
                if let Event::Record {
                    sequence, queued, ..
                } = event
                {
                    records.push((sequence, queued));
                }
                ControlFlow::Continue(())
            })
            .unwrap();
        (records, summary)
    }

    #[test]
    fn inspection_changes_nothing_and_sees_damage() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::<u64>::builder(dir.path())
            .cache_size(0)
            .segment_size(512)
            .open()
            .unwrap();
        queue.put_all(0..60).unwrap();
        queue.delete(10).unwrap();
        queue.close().unwrap();
        let before = snapshot(dir.path());
        let (records, summary) = scan_all(dir.path());
        assert_eq!(summary.skipped, 0);
        assert_eq!(summary.queued, 50);
        assert!(records.iter().all(|&(s, queued)| queued == (s >= 10)));
        assert!(records.windows(2).all(|w| w[0].0 < w[1].0));
        let after = snapshot(dir.path());
        assert_eq!(before, after);

        // Damage a record in the middle of a segment: it is found and counted.
        let segments = Inspection::open(dir.path()).unwrap().segments().to_vec();
        let victim = &segments[segments.len() / 2];
        let mut bytes = std::fs::read(&victim.path).unwrap();
        bytes[SEGMENT_HEADER_BYTES + 12] ^= 0xFF; // in the first record's sequence number
        std::fs::write(&victim.path, bytes).unwrap();
        let (_, damaged) = scan_all(dir.path());
        assert_eq!(damaged.skipped, 1);
        assert_eq!(damaged.damaged_regions, 1);
        assert_eq!(damaged.records, summary.records - 1);
    }

    #[test]
    fn an_open_queue_is_reported_as_locked() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::<u64>::open(dir.path()).unwrap();
        assert!(Inspection::open(dir.path()).unwrap().locked());
        drop(queue);
        assert!(!Inspection::open(dir.path()).unwrap().locked());
    }
}
