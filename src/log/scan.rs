//! The one walk over a segment's records, shared by recovery (where does valid data end?), the
//! reader (which records come next, and what was lost?) and the inspector (what is where?).
//!
//! A scan expects sequence numbers from `expected` on, below `limit` (the next segment's first
//! sequence number, or the end the writer published). At each offset it finds a record it wants,
//! an old copy to step over, or damage: zeros or bytes that do not check. After damage it looks
//! for the next record it wants, 8 bytes at a time, so it never hangs and never trusts a length
//! it has not checked. Pure: it reads a byte slice and returns steps.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use super::record::{self, Parsed};

/// One step of a scan.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step<'a> {
    /// A record wanted next. `missing` records before it were not found (damage, or lost).
    Record {
        sequence: u64,
        payload: &'a [u8],
        offset: usize,
        missing: u64,
    },
    /// Bytes from `offset` to `resume` held no record wanted (damage, an old copy, or a zeroed
    /// page inside the data); the scan goes on at `resume`.
    Damage { offset: usize, resume: usize },
    /// Nothing wanted lies at `offset` or after it: zeros to the end (`damaged` false), or a
    /// torn or damaged tail (`damaged` true).
    End { offset: usize, damaged: bool },
}

/// A walk over the records of one segment's bytes. See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct Scan<'a> {
    bytes: &'a [u8],
    offset: usize,
    expected: u64,
    limit: Option<u64>,
    zero_window: Option<usize>,
    ended: bool,
}

impl<'a> Scan<'a> {
    /// A scan of `bytes` from `offset`, wanting `expected` next and nothing at or past `limit`.
    pub(crate) fn new(bytes: &'a [u8], offset: usize, expected: u64, limit: Option<u64>) -> Self {
        Self {
            bytes,
            offset,
            expected,
            limit,
            zero_window: None,
            ended: false,
        }
    }

    /// After zeros, looks for a record only this far on (the end of the last segment, whose
    /// reserved tail is zeros by design); without it, through the rest of the bytes.
    pub(crate) fn zero_window(mut self, bytes: usize) -> Self {
        self.zero_window = Some(bytes);
        self
    }

    /// The offset the next step starts at.
    pub(crate) fn offset(&self) -> usize {
        self.offset
    }

    /// The sequence number wanted next.
    pub(crate) fn expected(&self) -> u64 {
        self.expected
    }

    fn wanted(&self, sequence: u64) -> bool {
        sequence >= self.expected && self.limit.is_none_or(|limit| sequence < limit)
    }

    /// The next wanted record at or after `from` (exclusive), within `window` bytes.
    fn search(&self, from: usize, window: &[u8]) -> Option<usize> {
        let (expected, limit) = (self.expected, self.limit);
        record::find_next_valid(window, from, |s| {
            s >= expected && limit.is_none_or(|limit| s < limit)
        })
    }

    fn end(&mut self, damaged: bool) -> Step<'a> {
        self.ended = true;
        Step::End {
            offset: self.offset,
            damaged,
        }
    }
}

impl<'a> Iterator for Scan<'a> {
    type Item = Step<'a>;

    fn next(&mut self) -> Option<Step<'a>> {
        if self.ended {
            return None;
        }
        let offset = self.offset;
        let found = match record::parse_at(self.bytes, offset) {
            Parsed::Record {
                sequence,
                payload,
                size,
            } if self.wanted(sequence) => {
                let missing = sequence - self.expected;
                self.expected = sequence.saturating_add(1);
                self.offset = offset.saturating_add(size);
                return Some(Step::Record {
                    sequence,
                    payload,
                    offset,
                    missing,
                });
            }
            Parsed::Record { sequence, size, .. } if sequence < self.expected => {
                // An old copy (a record written again after a crash cut the tail): its own
                // checksum vouches for its size.
                self.offset = offset.saturating_add(size);
                return Some(Step::Damage {
                    offset,
                    resume: self.offset,
                });
            }
            // At or past the limit: the rest belongs to the next segment, or is stale.
            Parsed::Record { .. } => return Some(self.end(true)),
            Parsed::Zero => {
                let window = match self.zero_window {
                    Some(window) => {
                        let end = offset.saturating_add(window).min(self.bytes.len());
                        self.bytes.get(..end).unwrap_or(self.bytes)
                    }
                    None => self.bytes,
                };
                self.search(offset, window).ok_or(false)
            }
            Parsed::Invalid => self.search(offset, self.bytes).ok_or(true),
        };
        Some(match found {
            Ok(resume) => {
                self.offset = resume;
                Step::Damage { offset, resume }
            }
            Err(damaged) => self.end(damaged),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn log(records: &[(u64, &[u8])]) -> Vec<u8> {
        let mut bytes = vec![0u8; 32];
        for &(sequence, payload) in records {
            record::frame(&mut bytes, sequence, |buf| {
                buf.extend_from_slice(payload);
                Ok::<(), ()>(())
            })
            .unwrap();
        }
        bytes.resize(bytes.len() + 256, 0);
        bytes
    }

    fn sequences(scan: Scan<'_>) -> Vec<(u64, u64)> {
        scan.filter_map(|step| match step {
            Step::Record {
                sequence, missing, ..
            } => Some((sequence, missing)),
            _ => None,
        })
        .collect()
    }

    #[test]
    fn records_in_order_then_the_end_of_data() {
        let bytes = log(&[(5, b"a"), (6, b"bb"), (7, b"")]);
        let steps: Vec<_> = Scan::new(&bytes, 32, 5, None).collect();
        assert_eq!(steps.len(), 4);
        assert!(matches!(steps[3], Step::End { damaged: false, .. }));
        assert_eq!(
            sequences(Scan::new(&bytes, 32, 5, None)),
            [(5, 0), (6, 0), (7, 0)]
        );
    }

    #[test]
    fn damage_is_stepped_over_and_what_it_cost_counted() {
        let mut bytes = log(&[(0, b"first"), (1, b"second"), (2, b"third")]);
        bytes[32 + 24 + 17] ^= 1; // in record 1's payload
        let steps: Vec<_> = Scan::new(&bytes, 32, 0, None).collect();
        assert!(matches!(steps[1], Step::Damage { .. }));
        assert_eq!(sequences(Scan::new(&bytes, 32, 0, None)), [(0, 0), (2, 1)]);
    }

    #[test]
    fn the_limit_ends_a_segment_and_old_copies_are_stepped_over() {
        let bytes = log(&[(3, b"x"), (2, b"old"), (4, b"y"), (9, b"next segment's")]);
        assert_eq!(
            sequences(Scan::new(&bytes, 32, 3, Some(9))),
            [(3, 0), (4, 0)]
        );
        let last = Scan::new(&bytes, 32, 3, Some(9)).last().unwrap();
        assert!(matches!(last, Step::End { damaged: true, .. }));
    }

    #[test]
    fn a_zero_window_bounds_the_search_after_zeros() {
        let mut bytes = log(&[(0, b"a")]);
        let gap = bytes.len() + 4096;
        bytes.resize(gap, 0);
        record::frame(&mut bytes, 1, |buf| {
            buf.extend_from_slice(b"far");
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(sequences(Scan::new(&bytes, 32, 0, None)), [(0, 0), (1, 0)]);
        assert_eq!(
            sequences(Scan::new(&bytes, 32, 0, None).zero_window(1024)),
            [(0, 0)]
        );
    }
}
