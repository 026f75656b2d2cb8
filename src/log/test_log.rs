//! A test double: the log driven synchronously, one record at a time, for the tests of the log
//! layer alone (`tests.rs`, `power_cut.rs`). It frames records itself and rolls to a spare
//! segment when one does not fit, the way the spill buffer lays them out, and writes them when
//! told to ([`Log::publish`]); records framed and not yet written are lost by a reopen, as a
//! kill loses them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::record::{self, FrameError, SEGMENT_HEADER_BYTES};
use super::{CheckpointState, Counters, Head, LogReader, LogWriter, Progress, Real, SharedStorage};
use crate::error::Error;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// Records framed and not yet written: where they go, and their bytes.
#[derive(Default)]
struct Pending {
    segment: u64,
    offset: u64,
    rolls: Option<u64>,
    bytes: Vec<u8>,
}

/// See the module docs.
pub(crate) struct Log {
    writer: LogWriter,
    counters: Arc<Counters>,
    dir: PathBuf,
    segment_size: u64,
    head: Head,
    next_sequence: u64,
    pending: Option<Pending>,
    progress: Arc<Mutex<Progress>>,
    read_sequence: u64,
    checkpoint_state: CheckpointState,
}

/// A reader of a [`Log`], seeing what it has written.
pub(crate) struct Reader {
    reader: LogReader,
    progress: Arc<Mutex<Progress>>,
}

impl Reader {
    pub(crate) fn read_batch(
        &mut self,
        max: usize,
        visit: impl FnMut(u64, &[u8]),
    ) -> Result<usize, Error> {
        let progress = self.progress.lock().unwrap().clone();
        self.reader.read(&progress, max, visit)
    }

    pub(crate) fn expected(&self) -> u64 {
        self.reader.expected()
    }
}

impl Log {
    pub(crate) fn open(dir: &Path, segment_size: u64) -> Result<Self, Error> {
        Self::open_with(dir, segment_size, Real::shared())
    }

    pub(crate) fn open_with(
        dir: &Path,
        segment_size: u64,
        storage: SharedStorage,
    ) -> Result<Self, Error> {
        let counters = Arc::new(Counters::default());
        let (writer, opened) = LogWriter::open(dir, storage, Arc::clone(&counters))?;
        Ok(Self {
            dir: writer.dir().to_owned(),
            writer,
            counters,
            segment_size,
            head: opened.head,
            next_sequence: opened.next_sequence,
            pending: None,
            progress: Arc::new(Mutex::new(opened.progress)),
            read_sequence: opened.read_sequence,
            checkpoint_state: opened.checkpoint_state,
        })
    }

    /// Frames one record with the next sequence number; written by the next `publish`.
    pub(crate) fn append(&mut self, payload: &[u8]) -> Result<u64, Error> {
        let sequence = self.next_sequence;
        let mut framed = Vec::new();
        let size = match record::frame(&mut framed, sequence, |buf| {
            buf.extend_from_slice(payload);
            Ok::<(), ()>(())
        }) {
            Ok(size) => size as u64,
            Err(FrameError::TooLarge(bytes)) => {
                return Err(Error::TooLarge {
                    bytes,
                    max_bytes: record::MAX_PAYLOAD_BYTES,
                });
            }
            Err(FrameError::Encode(())) => unreachable!("copying bytes cannot fail"),
        };
        let head = self.head;
        if head.segment.is_some() && head.end + size <= head.len {
            if head.needs_cut {
                self.publish()?;
                self.writer.cut_tail()?;
                self.head.needs_cut = false;
            }
            if self.pending.is_none() {
                self.pending = Some(Pending {
                    segment: head.segment.unwrap_or(sequence),
                    offset: head.end,
                    ..Pending::default()
                });
            }
        } else {
            self.publish()?;
            let header = SEGMENT_HEADER_BYTES as u64;
            let wanted = if header + size > self.segment_size {
                (header + size).next_multiple_of(4096)
            } else {
                self.segment_size
            };
            let (spare, len) = self.writer.prepare(None, wanted)?;
            self.pending = Some(Pending {
                segment: sequence,
                offset: header,
                rolls: Some(spare),
                bytes: Vec::new(),
            });
            self.head = Head {
                segment: Some(sequence),
                len,
                end: header,
                needs_cut: false,
            };
        }
        if let Some(pending) = &mut self.pending {
            pending.bytes.extend_from_slice(&framed);
        }
        self.head.end += size;
        self.next_sequence += 1;
        Ok(sequence)
    }

    /// Writes what was framed, and shows readers. On error it stays framed, to try again.
    pub(crate) fn publish(&mut self) -> Result<(), Error> {
        let Some(pending) = &self.pending else {
            return Ok(());
        };
        self.writer.write(
            pending.segment,
            pending.offset,
            &pending.bytes,
            self.next_sequence,
            pending.rolls,
        )?;
        let mut progress = self.progress.lock().unwrap();
        if pending.rolls.is_some() && progress.segments.back() != Some(&pending.segment) {
            progress.segments.push_back(pending.segment);
        }
        progress.end_sequence = self.next_sequence;
        progress.end_offset = usize::try_from(pending.offset).unwrap() + pending.bytes.len();
        drop(progress);
        self.pending = None;
        Ok(())
    }

    /// Writes what was framed and fsyncs it.
    pub(crate) fn flush(&mut self) -> Result<(), Error> {
        self.publish()?;
        self.writer.flush()
    }

    /// Writes what was framed, then a checkpoint (see [`LogWriter::checkpoint`]).
    pub(crate) fn checkpoint(
        &mut self,
        read_sequence: u64,
        unacked: &[u64],
        durable: bool,
    ) -> Result<(), Error> {
        self.publish()?;
        self.writer.checkpoint(read_sequence, unacked, durable)?;
        let mut progress = self.progress.lock().unwrap();
        progress.segments = self.writer.segments().collect();
        Ok(())
    }

    /// A reader from the read cursor found on open.
    pub(crate) fn reader(&self) -> Reader {
        Reader {
            reader: LogReader::new(
                self.dir.clone(),
                Arc::clone(&self.counters),
                self.read_sequence,
            ),
            progress: Arc::clone(&self.progress),
        }
    }

    pub(crate) fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// Where written records end in the last segment.
    pub(crate) fn written_offset(&self) -> u64 {
        self.progress.lock().unwrap().end_offset as u64
    }

    /// Records before this one are written.
    pub(crate) fn written_sequence(&self) -> u64 {
        self.progress.lock().unwrap().end_sequence
    }

    pub(crate) fn recovered_read_sequence(&self) -> u64 {
        self.read_sequence
    }

    pub(crate) fn checkpoint_state(&self) -> CheckpointState {
        self.checkpoint_state
    }

    /// Records readers found damaged or missing.
    pub(crate) fn skipped(&self) -> u64 {
        self.counters.skipped.load(Ordering::Relaxed)
    }

    /// The live segments' first sequence numbers.
    pub(crate) fn segments(&self) -> Vec<u64> {
        self.writer.segments().collect()
    }
}
