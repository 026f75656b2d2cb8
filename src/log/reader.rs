//! Reading records back from segment files, in sequence order, from a cursor: the consumers'
//! side of the log. A reader only looks below the end the writer published ([`Progress`]), so it
//! never forms a slice over bytes being written; damaged or missing records are skipped (the
//! scan finds the next valid one) and counted.

use super::Counters;
use super::record::SEGMENT_HEADER_BYTES;
use super::scan::{Scan, Step};
use super::segment::{self, ReadSegment};
use crate::error::Error;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// How far the writer has written, as readers may see it.
#[derive(Debug, Default, Clone)]
pub(crate) struct Progress {
    /// First sequence numbers of the live segments, ascending; the last is being written.
    pub(crate) segments: VecDeque<u64>,
    /// Records with smaller sequence numbers are written.
    pub(crate) end_sequence: u64,
    /// End of written data in the last segment.
    pub(crate) end_offset: usize,
}

/// Reads records in sequence order, from a cursor, as raw bytes.
pub(crate) struct LogReader {
    dir: PathBuf,
    counters: Arc<Counters>,
    segment: Option<ReadSegment>,
    /// Where the next record is looked for: a segment's first sequence number and an offset.
    at: (u64, usize),
    /// The next sequence number wanted.
    expected: u64,
}

impl LogReader {
    pub(crate) fn new(dir: PathBuf, counters: Arc<Counters>, from: u64) -> Self {
        Self {
            dir,
            counters,
            segment: None,
            at: (from, SEGMENT_HEADER_BYTES),
            expected: from,
        }
    }

    /// The next sequence number this reader will return (or count as skipped).
    pub(crate) fn expected(&self) -> u64 {
        self.expected
    }

    /// Moves the cursor forward to `sequence`; records before it are passed over unread. Where
    /// the record is known to lie (`at`: its segment and offset), the reader looks there first.
    pub(crate) fn seek(&mut self, sequence: u64, at: Option<(u64, usize)>) {
        if sequence <= self.expected {
            return;
        }
        self.expected = sequence;
        if let Some(at) = at {
            self.at = at;
        }
    }

    /// Reads up to `max` records that `progress` shows written, handing each to `visit` with its
    /// sequence number. Returns how many were visited. Damaged or missing records are skipped
    /// and counted; the cursor moves past them.
    pub(crate) fn read(
        &mut self,
        progress: &Progress,
        max: usize,
        mut visit: impl FnMut(u64, &[u8]),
    ) -> Result<usize, Error> {
        let segments = &progress.segments;
        let end_sequence = progress.end_sequence;
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
            let limit_sequence = next_first.map_or(end_sequence, |n| n.min(end_sequence));
            let limit_offset = if next_first.is_none() {
                progress.end_offset
            } else {
                usize::MAX
            };
            if self.at.0 != first {
                self.at = (first, SEGMENT_HEADER_BYTES);
            }
            let stale = self.segment.as_ref().is_none_or(|s| {
                s.first_sequence() != first || (next_first.is_none() && s.len() < limit_offset)
            });
            if stale {
                let path = self.dir.join(segment::segment_file_name(first));
                self.segment = Some(ReadSegment::open(&path, first)?);
            }
            let Some(segment) = self.segment.as_ref() else {
                continue;
            };
            let mut scan = Scan::new(
                segment.bytes(limit_offset),
                self.at.1,
                self.expected,
                Some(limit_sequence),
            );
            let mut skipped = 0;
            let mut segment_done = false;
            while visited < max {
                match scan.next() {
                    Some(Step::Record {
                        sequence,
                        payload,
                        missing,
                        ..
                    }) => {
                        skipped += missing;
                        visit(sequence, payload);
                        visited += 1;
                    }
                    Some(Step::Damage { .. }) => {}
                    Some(Step::End { .. }) | None => {
                        segment_done = true;
                        break;
                    }
                }
            }
            self.at.1 = scan.offset();
            self.expected = scan.expected();
            if skipped > 0 {
                self.count_skipped(first, skipped);
            }
            if segment_done && self.expected < limit_sequence {
                // Nothing more this segment can give: the rest of its records are lost.
                self.skip_to(limit_sequence);
                if next_first.is_some() {
                    self.segment = None;
                }
            }
        }
        let (first, offset) = self.at;
        if let Some(segment) = self
            .segment
            .as_mut()
            .filter(|s| s.first_sequence() == first)
        {
            segment.release_before(offset);
        }
        Ok(visited)
    }

    fn skip_to(&mut self, sequence: u64) {
        if sequence > self.expected {
            let segment = self.segment.as_ref().map_or(0, ReadSegment::first_sequence);
            self.count_skipped(segment, sequence - self.expected);
            self.expected = sequence;
        }
    }

    /// `count` records of `segment` were damaged or missing.
    fn count_skipped(&self, segment: u64, count: u64) {
        self.counters.skipped.fetch_add(count, Ordering::Relaxed);
        tracing::warn!(
            segment = %self.dir.join(segment::segment_file_name(segment)).display(),
            records = count,
            "skipped damaged or missing records"
        );
    }
}
