//! Record framing: the bytes of one record and of a segment header. Pure: no I/O, no allocation,
//! and no panic whatever the input, because every byte it parses may come from a damaged disk.
//!
//! A record is a 16-byte header (payload length, checksum, sequence number), then the payload,
//! then zero padding up to a multiple of [`RECORD_ALIGN`]. The checksum is CRC-32C over the
//! length, the sequence number and the payload, so a torn, zeroed or shifted record never
//! checks. See `docs/format.md` for the byte-by-byte layout.
//!
//! Callers: the log writer ([`encode_header`]) and every scan of a segment ([`parse_at`]).

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

/// Bytes of a record header: length (u32), checksum (u32), sequence number (u64).
pub(crate) const RECORD_HEADER_BYTES: usize = 16;

/// Records start at offsets that are multiples of this, so a scan for the next valid record
/// after damage steps 8 bytes at a time and a header's sequence number is naturally aligned.
pub(crate) const RECORD_ALIGN: usize = 8;

/// The largest payload spillq writes: 1 GiB. Larger items are refused with
/// `Error::TooLarge`. A record of this size gets a segment of its own.
pub(crate) const MAX_PAYLOAD_BYTES: usize = 1 << 30;

/// Bytes of a segment header (see [`SegmentHeader`]).
pub(crate) const SEGMENT_HEADER_BYTES: usize = 32;

/// The first eight bytes of every segment file.
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"SPILLQSG";

/// The segment format this build writes and the newest it reads.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// Bytes a record of `payload_len` bytes takes in a segment, padding included. `None` if the
/// length is beyond anything spillq writes.
pub(crate) fn record_size(payload_len: usize) -> Option<usize> {
    if payload_len > MAX_PAYLOAD_BYTES {
        return None;
    }
    let raw = RECORD_HEADER_BYTES.checked_add(payload_len)?;
    raw.checked_next_multiple_of(RECORD_ALIGN)
}

/// CRC-32C of the length, the sequence number and the payload, in that order.
fn checksum(length: [u8; 4], sequence: [u8; 8], payload: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: `checksum_sse42` only needs SSE 4.2, which the check above found.
        return unsafe { checksum_sse42(length, sequence, payload) };
    }
    checksum_portable(length, sequence, payload)
}

/// [`checksum`] through the `crc32c` crate (two calls, not three: each call has a fixed cost
/// that shows on small records).
fn checksum_portable(length: [u8; 4], sequence: [u8; 8], payload: &[u8]) -> u32 {
    let mut fields = [0u8; 12];
    let (len_part, seq_part) = fields.split_at_mut(4);
    len_part.copy_from_slice(&length);
    seq_part.copy_from_slice(&sequence);
    crc32c::crc32c_append(crc32c::crc32c(&fields), payload)
}

/// [`checksum`] with the processor's CRC-32C instructions in one chain, the payload read eight
/// unaligned bytes at a time: the `crc32c` crate is built for long buffers (it aligns its input
/// a byte at a time, and a record costs it two calls), which makes it several times slower on
/// records of a hundred bytes. The same function; `checksum_agrees_with_the_crate` checks it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn checksum_sse42(length: [u8; 4], sequence: [u8; 8], payload: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u8, _mm_crc32_u16, _mm_crc32_u32, _mm_crc32_u64};
    let crc = _mm_crc32_u32(!0, u32::from_le_bytes(length));
    let mut wide = _mm_crc32_u64(u64::from(crc), u64::from_le_bytes(sequence));
    let (words, rest) = payload.as_chunks::<8>();
    for word in words {
        wide = _mm_crc32_u64(wide, u64::from_le_bytes(*word));
    }
    // The instruction leaves the 32-bit remainder in the low half.
    let mut crc = wide as u32;
    let (quads, rest) = rest.as_chunks::<4>();
    for quad in quads {
        crc = _mm_crc32_u32(crc, u32::from_le_bytes(*quad));
    }
    let (pairs, rest) = rest.as_chunks::<2>();
    for pair in pairs {
        crc = _mm_crc32_u16(crc, u16::from_le_bytes(*pair));
    }
    for &byte in rest {
        crc = _mm_crc32_u8(crc, byte);
    }
    !crc
}

/// The 16 header bytes of a record holding `payload` with sequence number `sequence`.
/// The caller has checked `payload.len() <= MAX_PAYLOAD_BYTES`.
pub(crate) fn encode_header(sequence: u64, payload: &[u8]) -> [u8; RECORD_HEADER_BYTES] {
    let length = u32::try_from(payload.len())
        .unwrap_or(u32::MAX)
        .to_le_bytes();
    let sequence = sequence.to_le_bytes();
    let crc = checksum(length, sequence, payload).to_le_bytes();
    let mut header = [0u8; RECORD_HEADER_BYTES];
    let (len_part, rest) = header.split_at_mut(4);
    let (crc_part, seq_part) = rest.split_at_mut(4);
    len_part.copy_from_slice(&length);
    crc_part.copy_from_slice(&crc);
    seq_part.copy_from_slice(&sequence);
    header
}

/// Why [`frame`] wrote no record.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FrameError<E> {
    /// The payload's encoder failed.
    Encode(E),
    /// The payload has this many bytes, more than [`MAX_PAYLOAD_BYTES`].
    TooLarge(usize),
}

/// Takes `buf` back to `len` bytes when dropped, unless [`keep`](Self::keep) was called: a
/// record whose encoding fails, or panics, leaves nothing behind.
/// Truncates a buffer back to its length at creation when dropped, unless told to keep what
/// was appended: framing that fails, or whose encoder panics, leaves nothing behind.
pub(crate) struct Rollback<'a> {
    buf: &'a mut Vec<u8>,
    len: usize,
    keep: bool,
}

impl<'a> Rollback<'a> {
    pub(crate) fn new(buf: &'a mut Vec<u8>) -> Self {
        let len = buf.len();
        Self {
            buf,
            len,
            keep: false,
        }
    }

    /// The buffer, to append to.
    pub(crate) fn buf(&mut self) -> &mut Vec<u8> {
        self.buf
    }

    pub(crate) fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        if !self.keep {
            self.buf.truncate(self.len);
        }
    }
}

/// Appends one whole record with sequence number `sequence` to `buf`: the header, the payload
/// that `encode` appends, and the padding. Returns the record's size (header and padding
/// included). On error, or if `encode` panics, `buf` is left as it was.
pub(crate) fn frame<E>(
    buf: &mut Vec<u8>,
    sequence: u64,
    encode: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<usize, FrameError<E>> {
    let start = buf.len();
    let rollback = Rollback::new(buf);
    rollback.buf.extend_from_slice(&[0u8; RECORD_HEADER_BYTES]);
    encode(rollback.buf).map_err(FrameError::Encode)?;
    let payload_start = start + RECORD_HEADER_BYTES;
    let payload = rollback.buf.get(payload_start..).unwrap_or_default();
    let payload_len = payload.len();
    let Some(size) = record_size(payload_len) else {
        return Err(FrameError::TooLarge(payload_len));
    };
    let header = encode_header(sequence, payload);
    if let Some(slot) = rollback.buf.get_mut(start..payload_start) {
        slot.copy_from_slice(&header);
    }
    rollback.buf.resize(start + size, 0);
    rollback.keep();
    Ok(size)
}

/// The size of the whole record that starts `bytes` (one [`frame`] wrote), read from its length
/// field without checking it: for walking buffers this process framed itself.
pub(crate) fn framed_size(bytes: &[u8]) -> Option<usize> {
    let length = read_u32(bytes, 0)?;
    record_size(usize::try_from(length).ok()?)
}

/// The sequence number and payload of the record that starts `bytes` (one [`frame`] wrote),
/// without checking its checksum.
pub(crate) fn framed_record(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let length = usize::try_from(read_u32(bytes, 0)?).ok()?;
    let sequence = read_u64(bytes, 8)?;
    let payload = bytes.get(RECORD_HEADER_BYTES..RECORD_HEADER_BYTES.checked_add(length)?)?;
    Some((sequence, payload))
}

/// What lies at an offset of a segment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed<'a> {
    /// A whole record whose checksum holds.
    Record {
        /// Its sequence number.
        sequence: u64,
        /// Its payload.
        payload: &'a [u8],
        /// Bytes it takes, padding included: the next record starts this far on.
        size: usize,
    },
    /// Sixteen zero bytes (or fewer left in the segment): nothing was ever written here.
    Zero,
    /// Anything else: a torn, damaged or misplaced record.
    Invalid,
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let array: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(array))
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let array: [u8; 8] = bytes.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(array))
}

/// Parses the record at `offset` of `bytes` (a segment's readable prefix). The length is
/// checked against what is left of `bytes` before the payload is touched, so a damaged length
/// costs nothing.
pub(crate) fn parse_at(bytes: &[u8], offset: usize) -> Parsed<'_> {
    let Some(header) = bytes
        .get(offset..)
        .and_then(<[u8]>::first_chunk::<RECORD_HEADER_BYTES>)
    else {
        // Fewer than 16 bytes left: a record cannot start here. Zero if they are all zero.
        return match bytes.get(offset..) {
            Some(rest) if rest.iter().any(|&b| b != 0) => Parsed::Invalid,
            _ => Parsed::Zero,
        };
    };
    // The 16 bytes as one little-endian number: length, checksum, then sequence number, from
    // the low bits up (one load and one comparison for every item read back from disk).
    let header = u128::from_le_bytes(*header);
    if header == 0 {
        return Parsed::Zero;
    }
    let length = header as u32;
    let stored_crc = (header >> 32) as u32;
    let sequence = (header >> 64) as u64;
    let Ok(payload_len) = usize::try_from(length) else {
        return Parsed::Invalid;
    };
    let Some(size) = record_size(payload_len) else {
        return Parsed::Invalid;
    };
    let Some(payload_start) = offset.checked_add(RECORD_HEADER_BYTES) else {
        return Parsed::Invalid;
    };
    let Some(payload) = payload_start
        .checked_add(payload_len)
        .and_then(|end| bytes.get(payload_start..end))
    else {
        return Parsed::Invalid;
    };
    if checksum(length.to_le_bytes(), sequence.to_le_bytes(), payload) != stored_crc {
        return Parsed::Invalid;
    }
    Parsed::Record {
        sequence,
        payload,
        size,
    }
}

/// Scans forward from `from` (exclusive) in steps of [`RECORD_ALIGN`] for the first valid record
/// whose sequence number satisfies `wanted`. Returns its offset. Used after damage: the scan is
/// bounded by `bytes` and each step costs a header check, so it never hangs.
pub(crate) fn find_next_valid(
    bytes: &[u8],
    from: usize,
    wanted: impl Fn(u64) -> bool,
) -> Option<usize> {
    let mut offset = from.checked_next_multiple_of(RECORD_ALIGN)?;
    if offset == from {
        offset = offset.checked_add(RECORD_ALIGN)?;
    }
    while offset < bytes.len() {
        if let Parsed::Record { sequence, .. } = parse_at(bytes, offset)
            && wanted(sequence)
        {
            return Some(offset);
        }
        offset = offset.checked_add(RECORD_ALIGN)?;
    }
    None
}

/// The header at the start of every segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    /// Format version the segment was written with.
    pub(crate) version: u32,
    /// Sequence number of the segment's first record (also its file name).
    pub(crate) first_sequence: u64,
}

/// Why a segment header could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderProblem {
    /// Too short, or the checksum fails: damaged bytes.
    Damaged,
    /// The checksum holds but the magic number is not spillq's: not our file.
    ForeignMagic,
    /// A whole, checked header from a newer spillq.
    NewerVersion(u32),
}

impl SegmentHeader {
    /// The 32 header bytes: magic, version, reserved, first sequence, reserved, CRC-32C of the rest.
    pub(crate) fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut bytes = [0u8; SEGMENT_HEADER_BYTES];
        let (magic, rest) = bytes.split_at_mut(8);
        magic.copy_from_slice(&SEGMENT_MAGIC);
        let (version, rest) = rest.split_at_mut(4);
        version.copy_from_slice(&self.version.to_le_bytes());
        let (_reserved, rest) = rest.split_at_mut(4);
        let (first, _rest) = rest.split_at_mut(8);
        first.copy_from_slice(&self.first_sequence.to_le_bytes());
        let crc = crc32c::crc32c(bytes.get(..28).unwrap_or_default()).to_le_bytes();
        if let Some(tail) = bytes.get_mut(28..32) {
            tail.copy_from_slice(&crc);
        }
        bytes
    }

    /// Parses a segment header, checksum first, so damage is never mistaken for a newer version.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, HeaderProblem> {
        let body = bytes.get(..28).ok_or(HeaderProblem::Damaged)?;
        let stored = read_u32(bytes, 28).ok_or(HeaderProblem::Damaged)?;
        if crc32c::crc32c(body) != stored {
            return Err(HeaderProblem::Damaged);
        }
        if body.get(..8) != Some(&SEGMENT_MAGIC[..]) {
            return Err(HeaderProblem::ForeignMagic);
        }
        let version = read_u32(bytes, 8).ok_or(HeaderProblem::Damaged)?;
        if version > FORMAT_VERSION {
            return Err(HeaderProblem::NewerVersion(version));
        }
        let first_sequence = read_u64(bytes, 16).ok_or(HeaderProblem::Damaged)?;
        Ok(Self {
            version,
            first_sequence,
        })
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The record checksum is the same function on every path: the on-disk format depends
        /// on it.
        #[test]
        fn checksum_agrees_with_the_crate(
            length in any::<u32>(),
            sequence in any::<u64>(),
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            start in 0usize..8,
        ) {
            let payload = bytes.get(start.min(bytes.len())..).unwrap_or_default();
            let (length, sequence) = (length.to_le_bytes(), sequence.to_le_bytes());
            let expected = checksum_portable(length, sequence, payload);
            prop_assert_eq!(checksum(length, sequence, payload), expected);
            // The same CRC-32C over the three fields as one buffer.
            let mut whole = length.to_vec();
            whole.extend_from_slice(&sequence);
            whole.extend_from_slice(payload);
            prop_assert_eq!(crc32c::crc32c(&whole), expected);
        }
    }

    fn record(sequence: u64, payload: &[u8]) -> Vec<u8> {
        let mut bytes = encode_header(sequence, payload).to_vec();
        bytes.extend_from_slice(payload);
        bytes.resize(record_size(payload.len()).unwrap(), 0);
        bytes
    }

    #[test]
    fn round_trip() {
        let bytes = record(7, b"hello");
        assert_eq!(bytes.len(), 24);
        assert_eq!(
            parse_at(&bytes, 0),
            Parsed::Record {
                sequence: 7,
                payload: b"hello",
                size: 24
            }
        );
    }

    #[test]
    fn an_empty_record_at_sequence_zero_is_not_zero_bytes() {
        // The end of written data is recognised by zero bytes; no record may look like that.
        let bytes = record(0, b"");
        assert!(bytes.iter().any(|&b| b != 0));
        assert!(matches!(parse_at(&bytes, 0), Parsed::Record { .. }));
    }

    #[test]
    fn zeros_and_short_tails() {
        assert_eq!(parse_at(&[0u8; 64], 0), Parsed::Zero);
        assert_eq!(parse_at(&[0u8; 8], 0), Parsed::Zero);
        assert_eq!(parse_at(&[0u8, 1, 0], 0), Parsed::Invalid);
        assert_eq!(parse_at(&[0u8; 8], 100), Parsed::Zero);
    }

    #[test]
    fn every_single_bit_flip_is_caught() {
        let bytes = record(42, b"payload bytes");
        for bit in 0..(RECORD_HEADER_BYTES + 13) * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                !matches!(parse_at(&damaged, 0), Parsed::Record { sequence: 42, payload, .. } if payload == b"payload bytes"),
                "flip of bit {bit} went unnoticed"
            );
        }
    }

    #[test]
    fn every_truncation_is_caught() {
        let bytes = record(3, &[0xAB; 40]);
        for cut in 0..RECORD_HEADER_BYTES + 40 {
            assert!(!matches!(parse_at(&bytes[..cut], 0), Parsed::Record { .. }));
        }
    }

    #[test]
    fn a_huge_length_is_refused_without_touching_the_payload() {
        let mut bytes = record(1, b"x");
        bytes[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse_at(&bytes, 0), Parsed::Invalid);
    }

    #[test]
    fn find_next_valid_skips_damage() {
        let mut bytes = record(1, b"first");
        bytes.extend(record(2, b"second"));
        bytes[20] ^= 0xFF;
        let next = find_next_valid(&bytes, 0, |s| s > 1).unwrap();
        assert_eq!(next, 24);
        assert_eq!(find_next_valid(&bytes, 0, |s| s > 2), None);
    }

    #[test]
    fn segment_header_round_trip_and_problems() {
        let header = SegmentHeader {
            version: FORMAT_VERSION,
            first_sequence: 99,
        };
        let bytes = header.encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(header));
        let mut damaged = bytes;
        damaged[17] ^= 1;
        assert_eq!(SegmentHeader::decode(&damaged), Err(HeaderProblem::Damaged));
        let newer = SegmentHeader {
            version: FORMAT_VERSION + 1,
            first_sequence: 99,
        }
        .encode();
        assert_eq!(
            SegmentHeader::decode(&newer),
            Err(HeaderProblem::NewerVersion(FORMAT_VERSION + 1))
        );
        assert_eq!(
            SegmentHeader::decode(&bytes[..10]),
            Err(HeaderProblem::Damaged)
        );
    }
}
