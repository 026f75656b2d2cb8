//! The spill buffer: records framed by producers, exactly as they will lie in their segment,
//! waiting for the spill thread to write them.
//!
//! A producer frames its record at the end of the tail buffer (under the queue's lock: a copy
//! and a checksum, no allocation); the layout decides where it goes on disk: after the head
//! segment's last record, or at the start of the spare segment when the head is full. A full
//! tail is sealed and handed to the spill thread, which writes whole buffers. Consumers read
//! records not yet written straight from here.
//!
//! Invariant: every framed record has its space on disk reserved (the head segment is cut and
//! reserved, or the spare is), so writing it never needs new space. A record that has no room
//! is not framed: the caller gets [`AppendError::NeedsSegments`] and waits for the spill thread.

use crate::log::Head;
use crate::log::record::{self, FrameError, Rollback, SEGMENT_HEADER_BYTES};
use std::collections::VecDeque;
use std::sync::Arc;

/// A tail this large is sealed and handed to the spill thread: large writes cost the kernel
/// less per byte, and one hand-off is shared by a few thousand small records.
const SEAL_BYTES: usize = 256 << 10;

/// Spent buffers kept for producers to frame into again, at most: allocating them on one
/// thread and freeing them on another is slow in common allocators.
const POOL_BUFFERS: usize = 4;

/// Records framed for one segment, contiguous, in sequence order.
#[derive(Debug, Default)]
pub(crate) struct Buffer {
    /// Sequence number of the first record.
    pub(crate) first_sequence: u64,
    /// Records in it.
    pub(crate) records: u64,
    /// The segment the records go in (its first sequence number), and the offset of the first.
    pub(crate) segment: u64,
    pub(crate) offset: u64,
    /// The spare segment the records start (its id), if they start one: the writer rolls to
    /// it first.
    pub(crate) rolls: Option<u64>,
    pub(crate) bytes: Vec<u8>,
}

impl Buffer {
    /// Sequence number after the last record.
    pub(crate) fn end_sequence(&self) -> u64 {
        self.first_sequence + self.records
    }

    fn holds(&self, sequence: u64) -> bool {
        sequence >= self.first_sequence && sequence < self.end_sequence()
    }
}

/// Why a record was not framed.
#[derive(Debug)]
pub(crate) enum AppendError<E> {
    Encode(E),
    /// The payload has this many bytes, more than a record holds.
    TooLarge(usize),
    /// No segment has room for the records: the spill thread must first make these.
    NeedsSegments(Want),
}

/// The segments records wait for: the head's cut, and spares to reserve, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Want {
    /// The head segment (the last one found on open) must be cut first.
    pub(crate) cut: bool,
    /// The next spares, in the order rolls will claim them, each at least this many bytes.
    pub(crate) spares: Vec<u64>,
    /// For items already accepted (written from memory by `sync`, `close`, a tick, or for a
    /// delivery): they may take the disk cap's slack of one segment; new puts may not.
    pub(crate) slack: bool,
}

impl Want {
    /// Both wants at once: the cut if either has it, each spare as large as either wants.
    pub(crate) fn merge(&mut self, other: Self) {
        self.cut |= other.cut;
        self.slack |= other.slack;
        for (index, bytes) in other.spares.into_iter().enumerate() {
            match self.spares.get_mut(index) {
                Some(mine) => *mine = (*mine).max(bytes),
                None => self.spares.push(bytes),
            }
        }
    }
}

/// Where records go: how many after the head segment's last record, then which spare each
/// following segment is, and the index of the first record that starts it.
struct Plan {
    in_head: usize,
    rolls: Vec<(usize, (u64, u64))>,
}

/// Where a reader of buffered records stands: the next record, in which buffer, at which
/// byte offset (a hint: checked before use).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BufferCursor {
    sequence: u64,
    buffer: u64,
    offset: usize,
}

/// The framed records not yet written, and the layout of the log's head. See the module docs.
#[derive(Debug)]
pub(crate) struct SpillBuffer {
    /// The sequence number the next record gets.
    next_sequence: u64,
    tail: Buffer,
    /// Sealed buffers, oldest first, not yet written.
    sealed: VecDeque<Arc<Buffer>>,
    pool: Vec<Vec<u8>>,
    /// The segment records are framed into.
    head: Head,
    /// Spare segments reserved and not yet claimed by a roll, in the order rolls claim them:
    /// id and length.
    spares: VecDeque<(u64, u64)>,
    /// The id of the last spare a roll claimed: an offer of it (or an older one) is stale.
    claimed: Option<u64>,
    segment_size: u64,
}

impl SpillBuffer {
    pub(crate) fn new(next_sequence: u64, head: Head, segment_size: u64) -> Self {
        Self {
            next_sequence,
            tail: Buffer::default(),
            sealed: VecDeque::new(),
            pool: Vec::new(),
            head,
            spares: VecDeque::new(),
            claimed: None,
            segment_size,
        }
    }

    /// The sequence number the next record gets.
    pub(crate) fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// The head segment as the layout sees it.
    pub(crate) fn head(&self) -> Head {
        self.head
    }

    /// The head segment was cut and can take records.
    pub(crate) fn head_cut(&mut self) {
        self.head.needs_cut = false;
    }

    /// Retires the head segment: records go to a spare from here on, and the spill thread
    /// deletes the head (every record in it removed; see `LogWriter::retire`).
    pub(crate) fn retire_head(&mut self) -> Option<u64> {
        let segment = self.head.segment.take()?;
        self.head = Head {
            segment: None,
            len: 0,
            end: 0,
            needs_cut: false,
        };
        Some(segment)
    }

    /// Spare `id` has `len` bytes reserved (made, or grown). Ignored if a roll claimed it
    /// already (it was grown after the snapshot the spill thread worked from).
    pub(crate) fn offer_spare(&mut self, id: u64, len: u64) {
        if self.claimed.is_some_and(|claimed| id <= claimed) {
            return;
        }
        match self.spares.iter_mut().find(|(current, _)| *current == id) {
            Some(spare) => spare.1 = len,
            None => self.spares.push_back((id, len)),
        }
    }

    /// The unclaimed spares, in the order rolls claim them: id and length.
    pub(crate) fn spares(&self) -> Vec<(u64, u64)> {
        self.spares.iter().copied().collect()
    }

    /// Frames a record whose payload `encode` writes, with the next sequence number. Returns
    /// that number. On error nothing is framed and no number is taken.
    pub(crate) fn append<E>(
        &mut self,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<u64, AppendError<E>> {
        let sequence = self.next_sequence;
        let start = self.tail.bytes.len();
        let size = match record::frame(&mut self.tail.bytes, sequence, encode) {
            Ok(size) => size as u64,
            Err(FrameError::Encode(error)) => return Err(AppendError::Encode(error)),
            Err(FrameError::TooLarge(bytes)) => return Err(AppendError::TooLarge(bytes)),
        };
        // The common case first: the record fits after the head's last record.
        let head = self.head;
        if head.segment.is_some() && !head.needs_cut && head.end + size <= head.len {
            self.start_tail(sequence);
        } else {
            match self.place(&[size]) {
                Ok(plan) if plan.in_head == 1 => self.start_tail(sequence),
                Ok(plan) => {
                    // The record starts a spare segment: it moves to a tail of its own.
                    let mut fresh = self.take_buffer();
                    fresh.extend_from_slice(self.tail.bytes.get(start..).unwrap_or_default());
                    self.tail.bytes.truncate(start);
                    if let Some(&(_, spare)) = plan.rolls.first() {
                        self.roll(spare, sequence, fresh);
                    }
                }
                Err(want) => {
                    self.tail.bytes.truncate(start);
                    return Err(AppendError::NeedsSegments(want));
                }
            }
        }
        self.head.end += size;
        self.tail.records += 1;
        self.next_sequence += 1;
        Ok(sequence)
    }

    /// Frames `count` records whose payloads `encode` writes (given each record's index), with
    /// the next sequence numbers, contiguous, if they all fit after the head's last record:
    /// the common case of a batch, with no copy. `Ok(None)`: they do not all fit, and nothing
    /// is framed (the caller goes through [`append_all`](Self::append_all)). On error nothing
    /// is framed either.
    pub(crate) fn append_in_head<E>(
        &mut self,
        count: usize,
        mut encode: impl FnMut(usize, &mut Vec<u8>) -> Result<(), E>,
    ) -> Result<Option<std::ops::Range<u64>>, AppendError<E>> {
        let head = self.head;
        if head.segment.is_none() || head.needs_cut {
            return Ok(None);
        }
        let first = self.next_sequence;
        let records = self.tail.records;
        let mut end = head.end;
        // Until the whole batch fits, its records are taken back, also if `encode` panics.
        let mut batch = Rollback::new(&mut self.tail.bytes);
        let mut outcome = Ok(None);
        for index in 0..count {
            let sequence = first + index as u64;
            match record::frame(batch.buf(), sequence, |buf| encode(index, buf)) {
                Ok(size) if end + size as u64 <= head.len => end += size as u64,
                Ok(_) => break,
                Err(FrameError::Encode(error)) => {
                    outcome = Err(AppendError::Encode(error));
                    break;
                }
                Err(FrameError::TooLarge(bytes)) => {
                    outcome = Err(AppendError::TooLarge(bytes));
                    break;
                }
            }
            if index + 1 == count {
                batch.keep();
                self.start_tail(first);
                self.tail.records = records + count as u64;
                self.head.end = end;
                self.next_sequence = first + count as u64;
                return Ok(Some(first..self.next_sequence));
            }
        }
        drop(batch);
        outcome
    }

    /// Frames records whose payloads lie one after another in `payloads` (`lens` long each),
    /// with the next sequence numbers, contiguous. Returns their numbers. All or none: on
    /// error nothing is framed.
    pub(crate) fn append_all<E>(
        &mut self,
        payloads: &[u8],
        lens: &[usize],
    ) -> Result<std::ops::Range<u64>, AppendError<E>> {
        let mut sizes = Vec::with_capacity(lens.len());
        for &len in lens {
            let size = record::record_size(len).ok_or(AppendError::TooLarge(len))?;
            sizes.push(size as u64);
        }
        let plan = self.place(&sizes).map_err(AppendError::NeedsSegments)?;
        let first = self.next_sequence;
        let mut rolls = plan.rolls.iter().peekable();
        let mut rest = payloads;
        for (index, &len) in lens.iter().enumerate() {
            let (payload, after) = rest.split_at(len.min(rest.len()));
            rest = after;
            let sequence = first + index as u64;
            match rolls.next_if(|(at, _)| *at == index) {
                Some(&(_, spare)) => {
                    let fresh = self.take_buffer();
                    self.roll(spare, sequence, fresh);
                }
                None => self.start_tail(sequence),
            }
            let framed = record::frame(&mut self.tail.bytes, sequence, |buf| {
                buf.extend_from_slice(payload);
                Ok::<(), std::convert::Infallible>(())
            });
            if let Ok(size) = framed {
                self.head.end += size as u64;
                self.tail.records += 1;
            }
        }
        self.next_sequence = first + lens.len() as u64;
        Ok(first..self.next_sequence)
    }

    /// Where records of `sizes` (framed, in order) go, or the segments they wait for.
    fn place(&self, sizes: &[u64]) -> Result<Plan, Want> {
        let head = self.head;
        let room = match head.segment {
            Some(_) => head.len.saturating_sub(head.end),
            None => 0,
        };
        let mut used = 0;
        let in_head = sizes
            .iter()
            .take_while(|&&size| {
                used += size;
                used <= room
            })
            .count();
        let mut want = Want {
            cut: in_head > 0 && head.needs_cut,
            spares: Vec::new(),
            slack: false,
        };
        let mut plan = Plan {
            in_head,
            rolls: Vec::new(),
        };
        let header = SEGMENT_HEADER_BYTES as u64;
        let mut spares = self.spares.iter().copied();
        let mut index = in_head;
        while let Some(&first) = sizes.get(index) {
            // A new segment starts at record `index`: the next spare if it is large enough for
            // that record, else the size of segment this record wants.
            let spare = spares.next();
            let wanted = if header + first > self.segment_size {
                // A record larger than a segment gets a segment of its own, sized to fit.
                (header + first).next_multiple_of(4096)
            } else {
                self.segment_size
            };
            let len = match spare {
                Some((_, len)) if len >= header + first => len,
                _ => wanted.max(spare.map_or(0, |(_, len)| len)),
            };
            match spare.filter(|&(_, len)| len >= header + first) {
                Some(spare) if want.spares.is_empty() => plan.rolls.push((index, spare)),
                _ => {
                    // Spares before this one are large enough as they are (0: any size).
                    want.spares.resize(plan.rolls.len(), 0);
                    want.spares.push(len);
                    plan.rolls.push((index, (0, 0)));
                }
            }
            let mut used = header;
            while let Some(&size) = sizes.get(index) {
                if used + size > len && used > header {
                    break;
                }
                used += size;
                index += 1;
            }
        }
        if want.cut || !want.spares.is_empty() {
            return Err(want);
        }
        Ok(plan)
    }

    /// Makes the tail start at the head's end if it holds nothing yet.
    fn start_tail(&mut self, sequence: u64) {
        if self.tail.records == 0 {
            self.tail.first_sequence = sequence;
            self.tail.segment = self.head.segment.unwrap_or(sequence);
            self.tail.offset = self.head.end;
            self.tail.rolls = None;
        }
    }

    /// Seals the tail and starts a new one, holding `bytes`, at the start of spare `spare`,
    /// which becomes the head segment with `sequence` its first record.
    fn roll(&mut self, (spare, len): (u64, u64), sequence: u64, bytes: Vec<u8>) {
        self.seal();
        self.tail = Buffer {
            first_sequence: sequence,
            records: 0,
            segment: sequence,
            offset: SEGMENT_HEADER_BYTES as u64,
            rolls: Some(spare),
            bytes,
        };
        self.head = Head {
            segment: Some(sequence),
            len,
            end: SEGMENT_HEADER_BYTES as u64,
            needs_cut: false,
        };
        if self.spares.front().is_some_and(|&(id, _)| id == spare) {
            self.spares.pop_front();
        }
        self.claimed = Some(spare);
    }

    /// Whether the tail is large enough to seal.
    pub(crate) fn tail_is_full(&self) -> bool {
        self.tail.bytes.len() >= SEAL_BYTES
    }

    /// Whether records are framed in the tail, not yet sealed for the spill thread.
    pub(crate) fn tail_has_records(&self) -> bool {
        self.tail.records > 0
    }

    /// Hands the tail to the spill thread, if it holds records.
    pub(crate) fn seal(&mut self) {
        if self.tail.records == 0 {
            self.tail.bytes.clear();
            return;
        }
        let bytes = self.take_buffer();
        let tail = std::mem::replace(
            &mut self.tail,
            Buffer {
                bytes,
                ..Buffer::default()
            },
        );
        self.sealed.push_back(Arc::new(tail));
    }

    fn take_buffer(&mut self) -> Vec<u8> {
        // Room for a full tail and the record that fills it: no reallocation while framing.
        self.pool
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(SEAL_BYTES + SEAL_BYTES / 4))
    }

    /// The sealed buffers, oldest first, for the spill thread to write.
    pub(crate) fn sealed(&self) -> impl Iterator<Item = &Arc<Buffer>> {
        self.sealed.iter()
    }

    /// The spill thread wrote the oldest sealed buffer: it goes (its bytes kept for reuse).
    pub(crate) fn written(&mut self) -> Option<u64> {
        let buffer = self.sealed.pop_front()?;
        let end = buffer.end_sequence();
        if let Ok(mut buffer) = Arc::try_unwrap(buffer)
            && self.pool.len() < POOL_BUFFERS
            && buffer.bytes.capacity() <= 2 * SEAL_BYTES
        {
            buffer.bytes.clear();
            self.pool.push(buffer.bytes);
        }
        Some(end)
    }

    /// Reads up to `max` buffered records from `cursor` on (its sequence number must be at
    /// least the first buffered one), handing each to `visit`. Returns how many.
    pub(crate) fn read(
        &self,
        cursor: &mut BufferCursor,
        max: usize,
        mut visit: impl FnMut(u64, &[u8]),
    ) -> usize {
        let mut visited = 0;
        let buffers = self.sealed.iter().map(|b| &**b).chain([&self.tail]);
        for buffer in buffers {
            if visited >= max {
                break;
            }
            if !buffer.holds(cursor.sequence) {
                continue;
            }
            let mut offset = if cursor.buffer == buffer.first_sequence {
                cursor.offset
            } else {
                0
            };
            let mut sequence = buffer.first_sequence;
            // Framed by this process: sizes can be trusted to walk to the cursor.
            while let Some(bytes) = buffer.bytes.get(offset..) {
                let Some((found, payload)) = record::framed_record(bytes) else {
                    break;
                };
                let Some(size) = record::framed_size(bytes) else {
                    break;
                };
                sequence = found;
                if found >= cursor.sequence {
                    if visited >= max {
                        break;
                    }
                    visit(found, payload);
                    visited += 1;
                    cursor.sequence = found + 1;
                }
                offset += size;
            }
            cursor.buffer = buffer.first_sequence;
            cursor.offset = offset;
            debug_assert!(sequence < buffer.end_sequence());
        }
        visited
    }

    /// A cursor at `sequence`, not yet placed in a buffer (the first read finds it).
    pub(crate) fn cursor_at(sequence: u64) -> BufferCursor {
        BufferCursor {
            sequence,
            buffer: u64::MAX,
            offset: 0,
        }
    }

    /// Where the record `cursor` stands at lies on disk (segment, offset), if the cursor has
    /// walked the buffer before it: for a reader that goes on from the files once the buffer is
    /// written. At the end of a buffer this is where its segment's next record would go; if
    /// that record starts a new segment instead, the reader finds it at that segment's start.
    pub(crate) fn position(&self, cursor: &BufferCursor) -> Option<(u64, usize)> {
        let buffer = self
            .sealed
            .iter()
            .map(|b| &**b)
            .chain([&self.tail])
            .find(|b| b.first_sequence == cursor.buffer && b.records > 0)?;
        let offset = usize::try_from(buffer.offset)
            .ok()?
            .checked_add(cursor.offset)?;
        Some((buffer.segment, offset))
    }
}

impl BufferCursor {
    pub(crate) fn sequence(&self) -> u64 {
        self.sequence
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const SEGMENT: u64 = 1024;
    const HEADER: u64 = SEGMENT_HEADER_BYTES as u64;

    /// A buffer whose head segment (first record 0) has `room` bytes left.
    fn buffer(room: u64) -> SpillBuffer {
        let head = Head {
            segment: Some(0),
            len: SEGMENT,
            end: SEGMENT - room,
            needs_cut: false,
        };
        SpillBuffer::new(0, head, SEGMENT)
    }

    fn put(buffer: &mut SpillBuffer, len: usize) -> Result<u64, AppendError<()>> {
        buffer.append(|buf| {
            buf.resize(buf.len() + len, 7);
            Ok(())
        })
    }

    /// Every buffered record, from `sequence` on.
    fn read(buffer: &SpillBuffer, sequence: u64) -> Vec<(u64, usize)> {
        let mut cursor = SpillBuffer::cursor_at(sequence);
        let mut got = Vec::new();
        buffer.read(&mut cursor, usize::MAX, |s, payload| {
            got.push((s, payload.len()))
        });
        got
    }

    #[test]
    fn records_that_fit_go_after_the_head_and_read_back_from_the_buffer() {
        let mut buffer = buffer(500);
        for len in [10, 20, 30] {
            put(&mut buffer, len).unwrap();
        }
        assert_eq!(buffer.next_sequence(), 3);
        assert_eq!(buffer.head().end, SEGMENT - 500 + 32 + 40 + 48);
        assert_eq!(read(&buffer, 0), [(0, 10), (1, 20), (2, 30)]);
        assert_eq!(read(&buffer, 2), [(2, 30)]);
        buffer.seal();
        let sealed: Vec<_> = buffer.sealed().collect();
        assert_eq!(sealed.len(), 1);
        assert_eq!((sealed[0].segment, sealed[0].offset), (0, SEGMENT - 500));
        assert_eq!(sealed[0].rolls, None);
    }

    #[test]
    fn a_record_with_no_room_waits_for_a_spare_then_starts_it() {
        let mut buffer = buffer(40);
        put(&mut buffer, 10).unwrap();
        let want = match put(&mut buffer, 30) {
            Err(AppendError::NeedsSegments(want)) => want,
            other => panic!("{other:?}"),
        };
        assert_eq!(want.spares, [SEGMENT]);
        assert!(!want.cut);
        // Nothing framed, no number taken.
        assert_eq!(buffer.next_sequence(), 1);
        assert_eq!(read(&buffer, 0), [(0, 10)]);
        buffer.offer_spare(7, SEGMENT);
        assert_eq!(put(&mut buffer, 30).unwrap(), 1);
        let head = buffer.head();
        assert_eq!((head.segment, head.end), (Some(1), HEADER + 48));
        // The tail before the roll was sealed; the new one starts spare 7.
        let sealed: Vec<_> = buffer.sealed().collect();
        assert_eq!(sealed.len(), 1);
        assert_eq!(sealed[0].end_sequence(), 1);
        buffer.seal();
        let rolled = buffer.sealed().nth(1).unwrap();
        assert_eq!(
            (rolled.segment, rolled.offset, rolled.rolls),
            (1, HEADER, Some(7))
        );
        assert_eq!(read(&buffer, 0), [(0, 10), (1, 30)]);
        // A stale offer of the claimed spare changes nothing.
        buffer.offer_spare(7, SEGMENT);
        assert!(buffer.spares().is_empty());
    }

    #[test]
    fn a_record_larger_than_a_segment_wants_a_segment_sized_to_fit() {
        let mut buffer = buffer(100);
        let Err(AppendError::NeedsSegments(want)) = put(&mut buffer, 5000) else {
            panic!("a large record went somewhere");
        };
        assert_eq!(want.spares, [(HEADER + 5016).next_multiple_of(4096)]);
    }

    #[test]
    fn a_batch_spans_as_many_spares_as_it_needs_or_waits_for_all_of_them() {
        let mut buffer = buffer(100);
        let lens = [40usize; 40]; // 56 bytes each framed: 17 per segment after the header
        let payloads = vec![1u8; 40 * 40];
        let Err(AppendError::NeedsSegments(want)) = buffer.append_all::<()>(&payloads, &lens)
        else {
            panic!("no segments, yet the batch went");
        };
        assert_eq!(want.spares.len(), 3);
        buffer.offer_spare(1, SEGMENT);
        let Err(AppendError::NeedsSegments(want)) = buffer.append_all::<()>(&payloads, &lens)
        else {
            panic!("one spare was not enough");
        };
        assert_eq!(want.spares, [0, SEGMENT, SEGMENT]);
        buffer.offer_spare(2, SEGMENT);
        buffer.offer_spare(3, SEGMENT);
        assert_eq!(buffer.append_all::<()>(&payloads, &lens).unwrap(), 0..40);
        buffer.seal();
        let rolls: Vec<_> = buffer
            .sealed()
            .filter_map(|b| b.rolls.map(|id| (id, b.first_sequence)))
            .collect();
        assert_eq!(rolls, [(1, 1), (2, 18), (3, 35)]);
        assert_eq!(read(&buffer, 0).len(), 40);
    }

    #[test]
    fn a_head_found_on_open_is_cut_before_records_go_after_it() {
        let head = Head {
            segment: Some(5),
            len: SEGMENT,
            end: 200,
            needs_cut: true,
        };
        let mut buffer = SpillBuffer::new(9, head, SEGMENT);
        let Err(AppendError::NeedsSegments(want)) = put(&mut buffer, 10) else {
            panic!("framed into a head not cut");
        };
        assert!(want.cut && want.spares.is_empty());
        buffer.head_cut();
        assert_eq!(put(&mut buffer, 10).unwrap(), 9);
        buffer.seal();
        let first = buffer.sealed().next().unwrap();
        assert_eq!(
            (first.segment, first.offset, first.first_sequence),
            (5, 200, 9)
        );
    }

    #[test]
    fn a_failed_encoding_leaves_nothing_behind() {
        let mut buffer = buffer(500);
        put(&mut buffer, 10).unwrap();
        let failed = buffer.append(|buf| {
            buf.extend_from_slice(b"half");
            Err("no")
        });
        assert!(matches!(failed, Err(AppendError::Encode("no"))));
        assert_eq!(put(&mut buffer, 20).unwrap(), 1);
        assert_eq!(read(&buffer, 0), [(0, 10), (1, 20)]);
    }
}
