//! The log on its own: a model check across reopen, torn tails, random damage, interrupted
//! recovery, a full disk and the directory lock.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::crash_hooks;
use super::record::{Parsed, SEGMENT_HEADER_BYTES};
use super::test_log::Log;
use super::*;
use crate::error::Error;
use proptest::prelude::*;
use record::RECORD_HEADER_BYTES;
use std::collections::VecDeque;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

/// Every record from the read cursor on: (sequence, payload), and how many were skipped.
fn read_all(log: &Log) -> (Vec<(u64, Vec<u8>)>, u64) {
    let mut reader = log.reader();
    let mut records = Vec::new();
    loop {
        let n = reader
            .read_batch(64, |sequence, bytes| {
                records.push((sequence, bytes.to_vec()))
            })
            .unwrap();
        if n == 0 && reader.expected() >= log.next_sequence() {
            break;
        }
    }
    (records, log.skipped())
}

fn payload(sequence: u64) -> Vec<u8> {
    let len = (sequence * 7 % 50) as usize;
    (0..len)
        .map(|i| (sequence as u8).wrapping_add(i as u8))
        .collect()
}

fn append_n(log: &mut Log, n: u64) {
    for _ in 0..n {
        let sequence = log.next_sequence();
        assert_eq!(log.append(&payload(sequence)).unwrap(), sequence);
    }
    log.publish().unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn segment_paths(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    paths.sort();
    paths
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<u8>),
    /// Appended and not yet written: a kill (a reopen) loses it.
    AppendUnwritten(Vec<u8>),
    Read(usize),
    Checkpoint {
        durable: bool,
    },
    Flush,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..300).prop_map(Op::Append),
        2 => proptest::collection::vec(any::<u8>(), 0..3000).prop_map(Op::AppendUnwritten),
        3 => (1usize..20).prop_map(Op::Read),
        1 => any::<bool>().prop_map(|durable| Op::Checkpoint { durable }),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
    ))]

    /// Appends, reads, checkpoints and reopens with segments small enough to roll every few
    /// records agree with a `VecDeque`: reading resumes at the last checkpoint after a reopen,
    /// and records not yet written whole into the file (left in the writer, as a kill leaves
    /// them) are gone after it, nothing else.
    #[test]
    fn log_agrees_with_a_vecdeque(
        segment_size in 256u64..2048,
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), segment_size).unwrap();
        let mut reader = log.reader();
        // Everything appended and not yet read, and everything after the last checkpoint.
        let mut model: VecDeque<(u64, Vec<u8>)> = VecDeque::new();
        let mut since_checkpoint: VecDeque<(u64, Vec<u8>)> = VecDeque::new();
        let mut read_sequence = 0;
        for op in ops {
            match op {
                Op::Append(bytes) => {
                    let sequence = log.append(&bytes).unwrap();
                    log.publish().unwrap();
                    model.push_back((sequence, bytes));
                }
                Op::AppendUnwritten(bytes) => {
                    let sequence = log.append(&bytes).unwrap();
                    model.push_back((sequence, bytes));
                }
                Op::Read(n) => {
                    let mut got = Vec::new();
                    reader.read_batch(n, |s, b| got.push((s, b.to_vec()))).unwrap();
                    // What is not written yet is not read yet.
                    let unwritten = log.next_sequence() - log.written_sequence();
                    let unwritten = usize::try_from(unwritten).unwrap();
                    for record in got {
                        let expected = model.pop_front();
                        prop_assert_eq!(Some(&record), expected.as_ref());
                        read_sequence = record.0 + 1;
                        since_checkpoint.push_back(record);
                    }
                    prop_assert!(model.len() >= unwritten);
                    prop_assert_eq!(model.len() as u64, log.next_sequence() - reader.expected());
                }
                Op::Checkpoint { durable } => {
                    log.checkpoint(read_sequence, &[], durable).unwrap();
                    since_checkpoint.clear();
                }
                Op::Flush => log.flush().unwrap(),
                Op::Reopen => {
                    let written = log.written_sequence();
                    while model.back().is_some_and(|(sequence, _)| *sequence >= written) {
                        model.pop_back();
                    }
                    drop(reader);
                    drop(log);
                    log = Log::open(dir.path(), segment_size).unwrap();
                    reader = log.reader();
                    // What was read after the last checkpoint is delivered again.
                    while let Some(record) = since_checkpoint.pop_back() {
                        model.push_front(record);
                    }
                    if let Some((first, _)) = model.front() {
                        read_sequence = *first;
                    }
                    prop_assert_eq!(log.recovered_read_sequence(), model.front().map_or(log.next_sequence(), |r| r.0));
                }
            }
        }
        log.publish().unwrap();
        let mut rest = Vec::new();
        while reader.read_batch(64, |s, b| rest.push((s, b.to_vec()))).unwrap() > 0 {}
        prop_assert_eq!(rest, Vec::from(model));
        prop_assert_eq!(log.skipped(), 0);
    }
}

/// Offsets of the records of a segment file: (start, end of payload). Padding after the payload
/// is zeros, so damage there harms nothing.
fn record_spans(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut offset = SEGMENT_HEADER_BYTES;
    while let Parsed::Record { size, payload, .. } = record::parse_at(bytes, offset) {
        spans.push((offset, offset + RECORD_HEADER_BYTES + payload.len()));
        offset += size;
    }
    spans
}

#[test]
fn a_torn_tail_is_cut_at_every_offset() {
    let pristine = tempfile::tempdir().unwrap();
    let total = 40;
    {
        let mut log = Log::open(pristine.path(), 4096).unwrap();
        append_n(&mut log, total);
    }
    let last = segment_paths(pristine.path()).pop().unwrap();
    let bytes = std::fs::read(&last).unwrap();
    let spans = record_spans(&bytes);
    let first_in_last = total - spans.len() as u64;
    let start = spans[spans.len() - 3].0;
    let end = spans.last().unwrap().1;
    for cut in start..end {
        for truncate in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            copy_dir(pristine.path(), dir.path());
            let path = dir.path().join(last.file_name().unwrap());
            let mut torn = bytes.clone();
            if truncate {
                torn.truncate(cut);
            } else {
                torn[cut..end].fill(0);
            }
            std::fs::write(&path, &torn).unwrap();
            let log = Log::open(dir.path(), 4096).unwrap();
            let (records, skipped) = read_all(&log);
            let whole = spans.iter().take_while(|(_, e)| *e <= cut).count() as u64;
            let expected: Vec<_> = (0..first_in_last + whole)
                .map(|s| (s, payload(s)))
                .collect();
            assert_eq!(records, expected, "cut at {cut}, truncate {truncate}");
            assert_eq!(skipped, 0);
            assert_eq!(log.next_sequence(), first_in_last + whole);
        }
    }
}

/// A small random generator, so the damage is the same on every run.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_byte_damage_never_panics_and_loses_only_what_it_hit() {
    let cases: usize = std::env::var("SPILLQ_CORRUPTION_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let pristine = tempfile::tempdir().unwrap();
    let total = 120;
    {
        let mut log = Log::open(pristine.path(), 2048).unwrap();
        append_n(&mut log, total);
        log.checkpoint(0, &[], true).unwrap();
    }
    assert_eq!(segment_paths(pristine.path()).len(), 3);
    let files: Vec<(std::path::PathBuf, Vec<u8>)> = std::fs::read_dir(pristine.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.ends_with(LOCK_FILE))
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    let mut rng = SplitMix(0x5EED);
    let (mut intact, mut skipped_some, mut refused) = (0, 0, 0);
    for case in 0..cases {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(pristine.path(), dir.path());
        let flips = 1 + rng.below(4);
        let mut checkpoint_hit = false;
        for _ in 0..flips {
            let (path, bytes) = &files[rng.below(files.len())];
            // Most flips land where data is, not in the preallocated zeros.
            let used = bytes
                .iter()
                .rposition(|&b| b != 0)
                .map_or(bytes.len(), |p| p + 1);
            let at = rng.below(used.max(1));
            let path = dir.path().join(path.file_name().unwrap());
            let mut damaged = std::fs::read(&path).unwrap();
            damaged[at] ^= 1 << rng.below(8);
            std::fs::write(&path, damaged).unwrap();
            checkpoint_hit |= path.ends_with(checkpoint::CHECKPOINT_FILE);
        }
        let log = match Log::open(dir.path(), 2048) {
            Ok(log) => log,
            Err(Error::Corrupt { .. } | Error::UnsupportedVersion { .. }) => {
                refused += 1;
                continue;
            }
            Err(other) => panic!("case {case}: unexpected {other}"),
        };
        let (records, skipped) = read_all(&log);
        let mut last = None;
        for (sequence, bytes) in &records {
            assert!(last < Some(*sequence), "case {case}: out of order");
            assert_eq!(*bytes, payload(*sequence), "case {case}: wrong payload");
            last = Some(*sequence);
        }
        let accounted = records.len() as u64 + skipped;
        assert!(accounted <= total, "case {case}");
        if !checkpoint_hit {
            assert_eq!(
                accounted, total,
                "case {case}: a lost record was not counted"
            );
        }
        if skipped == 0 && records.len() as u64 == total {
            intact += 1;
        } else {
            skipped_some += 1;
        }
    }
    println!("{cases} cases: {intact} intact, {skipped_some} with skips, {refused} refused");
}

/// A directory whose recovery has something to do at every step.
fn messy_dir(dir: &Path) {
    let mut log = Log::open(dir, 1024).unwrap();
    append_n(&mut log, 60);
    // Consumed: two segments behind the cursor, but the checkpoint that would delete them
    // was not durable.
    let third = log.segments()[2];
    log.checkpoint(third, &[], false).unwrap();
    append_n(&mut log, 5);
    drop(log);
    // A half-created segment, and a torn last record.
    std::fs::write(dir.join("00000000000000099999.seg.tmp"), b"partial").unwrap();
    let last = segment_paths(dir).pop().unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    let (start, end) = *record_spans(&bytes).last().unwrap();
    bytes[(start + end) / 2] ^= 0xFF;
    std::fs::write(&last, bytes).unwrap();
}

/// Opens the log and appends one record (the first write cuts the tail), as a process that
/// crashes at the armed step would.
fn open_and_append(dir: &Path) {
    if let Ok(mut log) = Log::open(dir, 1024) {
        let _ = log.append(b"after").and_then(|_| log.publish());
    }
}

#[test]
fn recovery_interrupted_at_each_step_gives_the_same_records() {
    let pristine = tempfile::tempdir().unwrap();
    messy_dir(pristine.path());
    let (reference, reference_next) = {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(pristine.path(), dir.path());
        let log = Log::open(dir.path(), 1024).unwrap();
        (read_all(&log), log.next_sequence())
    };
    assert!(!reference.0.is_empty());
    let steps = crash_hooks::ALL;
    for (i, &first) in steps.iter().enumerate() {
        for second in steps[i..].iter().copied().map(Some).chain([None]) {
            let dir = tempfile::tempdir().unwrap();
            copy_dir(pristine.path(), dir.path());
            crash_hooks::arm(Some(first));
            open_and_append(dir.path());
            crash_hooks::arm(second);
            open_and_append(dir.path());
            crash_hooks::arm(None);
            let log = Log::open(dir.path(), 1024).unwrap();
            let ((mut records, skipped), next) = (read_all(&log), log.next_sequence());
            // What was there before is there still; after it, only the appends that went
            // through, numbered on from it.
            let appended = records.split_off(reference.0.len());
            assert_eq!(
                (records, skipped),
                reference,
                "crash at {first:?} then {second:?}"
            );
            assert!(appended.iter().all(|(_, bytes)| bytes == b"after"));
            assert_eq!(next, reference_next + appended.len() as u64);
        }
    }
    // A directory whose segments are all gone opens without creating any, and starts over
    // at the checkpoint's sequence when the first record is written.
    let dir = tempfile::tempdir().unwrap();
    copy_dir(pristine.path(), dir.path());
    for path in segment_paths(dir.path()) {
        std::fs::remove_file(path).unwrap();
    }
    let mut log = Log::open(dir.path(), 1024).unwrap();
    assert!(segment_paths(dir.path()).is_empty());
    // The records after the checkpoint's head went with their segments.
    assert_eq!(read_all(&log).0, vec![]);
    assert_eq!(log.next_sequence(), 60);
    assert_eq!(log.append(b"first").unwrap(), 60);
    log.publish().unwrap();
    assert_eq!(segment_paths(dir.path()).len(), 1);
}

#[test]
fn a_second_open_is_locked_until_the_first_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), 4096).unwrap();
    assert!(matches!(
        Log::open(dir.path(), 4096),
        Err(Error::Locked { .. })
    ));
    drop(log);
    Log::open(dir.path(), 4096).unwrap();
}

/// Mounts a tmpfs of `bytes` at a new directory; `None` (with the reason printed) where
/// mounting is not allowed.
pub(crate) struct SmallDisk {
    pub(crate) dir: tempfile::TempDir,
}

impl SmallDisk {
    pub(crate) fn mount(bytes: u64) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status();
        match status {
            Ok(status) if status.success() => Some(Self { dir }),
            _ => {
                let in_ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
                assert!(!in_ci, "cannot mount a tmpfs in CI (needs root)");
                println!("skipped (outside CI only): cannot mount a tmpfs here (needs root)");
                None
            }
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_full_disk_is_an_io_error_and_keeps_what_was_appended() {
    let Some(disk) = SmallDisk::mount(256 * 1024) else {
        return;
    };
    let path = disk.dir.path().join("queue");
    let mut log = Log::open(&path, 32 * 1024).unwrap();
    let record = vec![0xA5u8; 1000];
    let error = loop {
        match log.append(&record) {
            Ok(_) => {}
            Err(error) => break error,
        }
        assert!(log.next_sequence() < 1000, "the disk never filled");
    };
    assert!(
        matches!(&error, Error::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC)),
        "{error}"
    );
    let appended = log.next_sequence();
    // The writer goes on working where it can: a flush and checkpoint still succeed.
    log.publish().unwrap();
    log.flush().unwrap();
    drop(log);
    let log = Log::open(&path, 32 * 1024).unwrap();
    let (records, skipped) = read_all(&log);
    assert_eq!(records.len() as u64, appended);
    assert!(records.iter().all(|(_, b)| *b == record));
    assert_eq!(skipped, 0);
}

/// Found by the model test: records larger than a segment, the first into an empty segment
/// (which grows), the later ones into segments of their own, read back after the fact.
#[test]
fn records_larger_than_a_segment_read_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), 256).unwrap();
    let sizes = [217, 217, 169, 257, 193, 49, 210, 300, 20];
    for (i, n) in sizes.iter().enumerate() {
        log.append(&vec![i as u8; *n]).unwrap();
        log.publish().unwrap();
    }
    let mut reader = log.reader();
    let mut got = Vec::new();
    while reader
        .read_batch(4, |s, b| got.push((s, b.len(), b[0])))
        .unwrap()
        > 0
    {}
    let expected: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(i, n)| (i as u64, *n, i as u8))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(log.skipped(), 0);
}

#[test]
fn a_checkpoint_damaged_in_both_slots_falls_back_to_a_full_scan_not_an_empty_queue() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = Log::open(dir.path(), 1024).unwrap();
        append_n(&mut log, 100);
        log.checkpoint(40, &[], true).unwrap();
        log.checkpoint(50, &[], true).unwrap();
    }
    let path = dir.path().join(checkpoint::CHECKPOINT_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[20] ^= 0xFF;
    bytes[4096 + 20] ^= 0xFF;
    std::fs::write(&path, bytes).unwrap();
    let log = Log::open(dir.path(), 1024).unwrap();
    assert_eq!(log.checkpoint_state(), CheckpointState::Damaged);
    let (records, skipped) = read_all(&log);
    // Everything still on disk comes back (some of it again): nothing is lost.
    let first = records.first().unwrap().0;
    assert!(first <= 50, "started at {first}");
    assert_eq!(
        records,
        (first..100).map(|s| (s, payload(s))).collect::<Vec<_>>()
    );
    assert_eq!(skipped, 0);
}

/// Passes every call on to the real file system and keeps each write: (file name, offset,
/// length, whether all its bytes were zero).
#[derive(Debug, Default)]
struct WriteLog(std::sync::Mutex<Vec<(String, u64, usize, bool)>>);

impl storage::Storage for WriteLog {
    fn open(&self, path: &Path, create: bool, truncate: bool) -> std::io::Result<File> {
        storage::Real.open(path, create, truncate)
    }
    fn write_at(&self, file: &File, path: &Path, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let zeros = bytes.iter().all(|&b| b == 0);
        self.0
            .lock()
            .unwrap()
            .push((name, offset, bytes.len(), zeros));
        storage::Real.write_at(file, path, offset, bytes)
    }
    fn reserve(&self, file: &File, path: &Path, len: u64) -> std::io::Result<()> {
        storage::Real.reserve(file, path, len)
    }
    fn zero_range(&self, file: &File, path: &Path, offset: u64, len: u64) -> std::io::Result<()> {
        storage::Real.zero_range(file, path, offset, len)
    }
    fn sync(&self, file: &File, path: &Path, metadata: bool) -> std::io::Result<()> {
        storage::Real.sync(file, path, metadata)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        storage::Real.rename(from, to)
    }
    fn remove(&self, path: &Path) -> std::io::Result<()> {
        storage::Real.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        storage::Real.sync_dir(dir)
    }
}

/// A flush writes zeros over the reserved space past the records (so later fdatasyncs find
/// written blocks, not unwritten extents), a megabyte at a time, never over a record, and only
/// when the records come within half a megabyte of the zeros; the records read back after a
/// reopen.
#[test]
fn a_flush_writes_zeros_ahead_of_the_records_and_never_over_them() {
    let dir = tempfile::tempdir().unwrap();
    let writes = Arc::new(WriteLog::default());
    let segment_size = 4 << 20;
    let mut log = Log::open_with(dir.path(), segment_size, writes.clone()).unwrap();
    let segment = segment::segment_file_name(0);
    let zero_writes = |from: usize| -> Vec<(u64, usize)> {
        let all = writes.0.lock().unwrap();
        all[from..]
            .iter()
            .filter(|(name, _, _, zeros)| *name == segment && *zeros)
            .map(|&(_, offset, len, _)| (offset, len))
            .collect()
    };
    let mut seen = writes.0.lock().unwrap().len();
    let mut expected = Vec::new();
    let mut zeroed_to = 0u64;
    // 40-byte records: 30,000 of them pass the first megabyte.
    for round in 0..300u64 {
        for _ in 0..100 {
            let sequence = log.next_sequence();
            let payload = vec![(sequence % 251) as u8 + 1; 24];
            log.append(&payload).unwrap();
            expected.push((sequence, payload));
        }
        log.flush().unwrap();
        let end = log.written_offset();
        let zeros = zero_writes(seen);
        seen = writes.0.lock().unwrap().len();
        if let (Some(&(first, _)), Some(&(last, last_len))) = (zeros.first(), zeros.last()) {
            assert!(
                first >= end,
                "round {round}: zeros at {first} over records up to {end}"
            );
            assert!(
                first >= zeroed_to,
                "round {round}: zeros written twice at {first}"
            );
            assert_eq!(first % 4096, 0, "round {round}: zeros start inside a page");
            zeroed_to = last + last_len as u64;
        }
        assert!(
            zeroed_to >= end + (1 << 19),
            "round {round}: zeros reach {zeroed_to}, records {end}"
        );
        assert!(zeroed_to <= end.next_multiple_of(4096) + (1 << 20));
    }
    assert!(zeroed_to > 1 << 20, "the zeros moved on with the records");
    drop(log);
    let log = Log::open(dir.path(), segment_size).unwrap();
    assert_eq!(read_all(&log), (expected, 0));
}
