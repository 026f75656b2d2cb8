//! Simulated power cuts through the fault-injecting storage layer (`log/fault.rs`): a random run
//! of appends, reads, flushes and checkpoints is cut at a random call, the unsynced writes are
//! dropped or torn, and the log is recovered (sometimes through a second cut during recovery).
//! What a flush covered must all be there, in order, from the read cursor of the last durable
//! checkpoint (or a later one) on; nothing may come back that a durable checkpoint removed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::fault::{Faulty, Tear};
use super::test_log::Log;
use super::*;
use proptest::prelude::*;
use std::path::Path;
use std::sync::Arc;

fn payload(sequence: u64) -> Vec<u8> {
    let len = (sequence * 13 % 90) as usize;
    (0..len)
        .map(|i| (sequence as u8) ^ (i as u8).wrapping_mul(31))
        .collect()
}

#[derive(Debug, Clone)]
enum Step {
    Append(u64),
    Read(usize),
    Flush,
    Checkpoint { durable: bool },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (1u64..12).prop_map(Step::Append),
        3 => (1usize..16).prop_map(Step::Read),
        2 => Just(Step::Flush),
        2 => any::<bool>().prop_map(|durable| Step::Checkpoint { durable }),
    ]
}

fn tear() -> impl Strategy<Value = Tear> {
    prop_oneof![
        Just(Tear::DropAll),
        (0usize..6, prop_oneof![Just(1u64), Just(512), Just(4096)])
            .prop_map(|(kept, boundary)| Tear::Prefix { kept, boundary }),
        any::<u64>().prop_map(|seed| Tear::Random { seed }),
    ]
}

/// What the run promised, for the check after the cut.
#[derive(Debug, Default)]
struct Promised {
    /// Records below this were covered by a flush that returned.
    synced_end: u64,
    /// The read cursor of the last checkpoint fsynced.
    durable_read: u64,
    /// The largest read cursor any checkpoint write was started with.
    max_read_written: u64,
}

/// Runs `steps` through a log on `storage` until the first failing call (the power cut).
fn run(dir: &Path, segment_size: u64, storage: SharedStorage, steps: &[Step]) -> Promised {
    let mut promised = Promised::default();
    let Ok(mut log) = Log::open_with(dir, segment_size, storage) else {
        return promised;
    };
    let mut reader = log.reader();
    for step in steps {
        let alive = match *step {
            Step::Append(n) => (0..n).all(|_| {
                let sequence = log.next_sequence();
                log.append(&payload(sequence)).is_ok()
            }),
            Step::Read(n) => {
                let mut ok = true;
                let read = reader.read_batch(n, |sequence, bytes| {
                    ok &= bytes == payload(sequence).as_slice();
                });
                assert!(ok, "a record read back before any cut differs");
                read.is_ok()
            }
            Step::Flush => {
                let end = log.next_sequence();
                let flushed = log.flush().is_ok();
                if flushed {
                    promised.synced_end = end;
                }
                flushed
            }
            Step::Checkpoint { durable } => {
                let read = reader.expected();
                promised.max_read_written = promised.max_read_written.max(read);
                let written = log.checkpoint(read, &[], durable).is_ok();
                if written && durable {
                    promised.durable_read = read;
                }
                written
            }
        };
        let published = log.publish().is_ok();
        if !alive || !published {
            break;
        }
    }
    promised
}

/// Every record from the read cursor on, checked for content.
fn read_all(log: &Log) -> Vec<u64> {
    let mut reader = log.reader();
    let mut sequences = Vec::new();
    while reader.expected() < log.next_sequence() {
        reader
            .read_batch(64, |sequence, bytes| {
                assert_eq!(
                    bytes,
                    payload(sequence).as_slice(),
                    "record {sequence} damaged"
                );
                sequences.push(sequence);
            })
            .unwrap();
    }
    sequences
}

fn check(dir: &Path, segment_size: u64, promised: &Promised) -> Result<(), TestCaseError> {
    let mut log = Log::open(dir, segment_size)
        .map_err(|e| TestCaseError::fail(format!("recovery failed: {e}")))?;
    let read = log.recovered_read_sequence();
    prop_assert!(
        read >= promised.durable_read && read <= promised.max_read_written,
        "read cursor {read} outside [{}, {}]",
        promised.durable_read,
        promised.max_read_written
    );
    let sequences = read_all(&log);
    prop_assert!(
        sequences.windows(2).all(|w| w[0] < w[1]),
        "out of order: {sequences:?}"
    );
    prop_assert!(
        sequences.first().is_none_or(|&s| s >= read),
        "a removed record came back"
    );
    for sequence in read..promised.synced_end {
        prop_assert!(
            sequences.binary_search(&sequence).is_ok(),
            "lost synced record {sequence}; have {sequences:?}, promised {promised:?}"
        );
    }
    // The recovered log goes on: new records land after the old ones and survive a reopen.
    let first_new = log.next_sequence();
    for _ in 0..3 {
        let sequence = log.next_sequence();
        log.append(&payload(sequence)).unwrap();
    }
    log.publish().unwrap();
    log.flush().unwrap();
    drop(log);
    let log = Log::open(dir, segment_size).unwrap();
    let mut expected = sequences;
    expected.extend(first_new..first_new + 3);
    prop_assert_eq!(read_all(&log), expected);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
    ))]

    /// A power cut at any call, with unsynced writes dropped, torn or kept at random, and
    /// sometimes a second cut during recovery, loses nothing a flush covered and brings back
    /// nothing a durable checkpoint removed.
    #[test]
    fn a_power_cut_keeps_what_was_flushed(
        segment_size in 256u64..1500,
        steps in proptest::collection::vec(step(), 1..50),
        cut_at in 0u64..300,
        tear in tear(),
        recovery_cut in proptest::option::of((0u64..12, tear())),
    ) {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("running");
        let storage = Arc::new(Faulty::default().fail_from(cut_at));
        let promised = run(&dir, segment_size, storage.clone(), &steps);
        let image = root.path().join("after-cut");
        std::fs::create_dir(&image).unwrap();
        storage.power_cut_image(&image, tear);
        let image = match recovery_cut {
            None => image,
            Some((at, tear)) => {
                let storage = Arc::new(Faulty::over(&image).fail_from(at));
                // The open may fail (the cut) or succeed (the cut came later than recovery).
                drop(Log::open_with(&image, segment_size, storage.clone()));
                let again = root.path().join("after-second-cut");
                std::fs::create_dir(&again).unwrap();
                storage.power_cut_image(&again, tear);
                again
            }
        };
        check(&image, segment_size, &promised)?;
    }
}
