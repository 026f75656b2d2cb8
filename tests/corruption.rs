//! Damaged queue directories, as a user would meet them: each case copies a queue (2,000 items
//! over a dozen segments, the first 300 removed), damages the copy, opens it (under a watchdog:
//! a hang fails the test), drains it and sorts the outcome into:
//! - intact: opened, and every item came out;
//! - skipped: opened, some items missing and counted in `stats().skipped` (or cut off
//!   at the very end, as a torn tail is);
//! - refused: `open` returned a clear error.
//!
//! Whatever the damage: no panic, no hang, no SIGBUS (it would kill this process); what comes
//! out is in order with no duplicates, and an item removed before the damage comes back only
//! if the checkpoint itself was hit. The long form, `SPILLQ_CORRUPTION_FULL=1`, cuts the last
//! segment at every byte offset and runs 20,000 seeded bit-flip cases (the short form: every
//! fourth offset, 2,000 cases); `SPILLQ_BIT_FLIPS` sets the number of bit-flip cases.

mod common;

use common::Rng;
use serde_bytes::ByteBuf;
use spillq::{Error, Queue};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

const ITEMS: u64 = 2000;
const REMOVED: u64 = 300;
const SEGMENT_BYTES: u64 = 16 * 1024;
/// An open and drain that takes longer than this is a hang.
const WATCHDOG: Duration = Duration::from_secs(60);

fn item(id: u64) -> ByteBuf {
    let mut bytes = id.to_le_bytes().to_vec();
    bytes.resize(8 + (id % 200) as usize, (id * 7) as u8);
    ByteBuf::from(bytes)
}

fn open(dir: &Path) -> Result<Queue<ByteBuf>, Error> {
    Queue::builder(dir)
        .cache_size(16)
        .segment_size(SEGMENT_BYTES)
        .open()
}

/// The queue every case starts from: written, partly drained, closed.
fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let queue = open(dir.path()).unwrap();
    queue.put_all((0..ITEMS).map(item)).unwrap();
    for _ in 0..REMOVED {
        queue.try_get().unwrap().unwrap();
    }
    queue.close().unwrap();
    dir
}

/// A directory for one case: in memory where there is a tmpfs (fsync is free there, and the
/// cases are many), else in the temporary directory.
fn case_dir() -> tempfile::TempDir {
    tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap())
}

fn copy(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    paths.sort();
    paths
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Intact,
    Skipped,
    Refused,
}

/// Opens and drains `dir` on another thread, so a hang is seen as one.
fn open_and_drain(dir: &Path) -> Result<(Vec<u64>, u64, bool), String> {
    let dir = dir.to_owned();
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        let result = match open(&dir) {
            Err(error) => Err(error.to_string()),
            Ok(queue) => {
                let mut ids = Vec::new();
                let mut bad = None;
                for got in queue.try_iter() {
                    match got {
                        Ok(bytes) => {
                            let id = u64::from_le_bytes(bytes[..8].try_into().unwrap());
                            if bytes != item(id) {
                                bad = Some(id);
                            }
                            ids.push(id);
                        }
                        Err(error) => {
                            bad.get_or_insert(u64::MAX);
                            eprintln!("{error}");
                        }
                    }
                }
                let stats = queue.stats();
                let checkpoint_used = stats.checkpoint == spillq::CheckpointState::Used;
                let _ = queue.close();
                match bad {
                    Some(id) => Err(format!("item {id} came out with wrong bytes")),
                    None => Ok((ids, stats.skipped, checkpoint_used)),
                }
            }
        };
        let _ = send.send(result);
    });
    match receive.recv_timeout(WATCHDOG) {
        Ok(Ok(ok)) => Ok(ok),
        Ok(Err(refused)) => Err(refused),
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("open and drain hung on {}", "a case"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("open or drain panicked"),
    }
}

/// Runs one case: copies the fixture, damages it with `damage`, and checks and classifies.
fn run_case(
    fixture: &Path,
    name: &str,
    hits_checkpoint: bool,
    damage: impl FnOnce(&Path),
) -> Outcome {
    let dir = case_dir();
    copy(fixture, dir.path());
    damage(dir.path());
    let (ids, skipped, _checkpoint_used) = match open_and_drain(dir.path()) {
        Ok(drained) => drained,
        Err(error) if error.contains("came out with wrong bytes") => panic!("{name}: {error}"),
        Err(_refused) => return Outcome::Refused,
    };
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "{name}: out of order or duplicated"
    );
    assert!(ids.iter().all(|&id| id < ITEMS), "{name}: an id never put");
    if !hits_checkpoint {
        assert!(
            ids.iter().all(|&id| id >= REMOVED),
            "{name}: a removed item came back though the checkpoint was not touched"
        );
    }
    let kept: Vec<u64> = ids.iter().copied().filter(|&id| id >= REMOVED).collect();
    if kept == (REMOVED..ITEMS).collect::<Vec<_>>() {
        return Outcome::Intact;
    }
    // Items missing before the last one that came out were skipped, and must be counted.
    let last = kept.last().copied().unwrap_or(REMOVED);
    let missing_inside = (REMOVED..last)
        .filter(|id| kept.binary_search(id).is_err())
        .count() as u64;
    assert!(
        skipped >= missing_inside.min(1),
        "{name}: {missing_inside} items missing and none counted as skipped"
    );
    Outcome::Skipped
}

#[derive(Default)]
struct Table(BTreeMap<&'static str, BTreeMap<Outcome, u64>>);

impl Table {
    fn add(&mut self, class: &'static str, outcome: Outcome) {
        *self.0.entry(class).or_default().entry(outcome).or_default() += 1;
    }

    fn print(&self) {
        println!("| damage | cases | intact | skipped (counted) | refused |");
        println!("|---|---|---|---|---|");
        for (class, outcomes) in &self.0 {
            let n = |o| outcomes.get(&o).copied().unwrap_or(0);
            let total: u64 = outcomes.values().sum();
            println!(
                "| {class} | {total} | {} | {} | {} |",
                n(Outcome::Intact),
                n(Outcome::Skipped),
                n(Outcome::Refused)
            );
        }
    }
}

/// The long form: `SPILLQ_CORRUPTION_FULL=1`.
fn full() -> bool {
    std::env::var_os("SPILLQ_CORRUPTION_FULL").is_some()
}

fn bit_flips() -> u64 {
    std::env::var("SPILLQ_BIT_FLIPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full() { 20_000 } else { 2000 })
}

#[test]
fn no_damage_makes_open_panic_hang_or_lose_uncounted_items() {
    let fixture = fixture();
    let fixture = fixture.path();
    let segs = segments(fixture);
    assert!(segs.len() >= 8, "the fixture should span many segments");
    let last = segs.last().unwrap().clone();
    let last_len = std::fs::metadata(&last).unwrap().len();
    let mut table = Table::default();

    // The last segment cut at every offset through its records (every fourth in the short
    // form; records are 8-byte aligned, so that still cuts each field), then every 64th
    // through the zeros after them.
    let data_end = std::fs::read(&last)
        .unwrap()
        .iter()
        .rposition(|&b| b != 0)
        .unwrap() as u64
        + 1;
    let stride = if full() { 1 } else { 4 };
    for offset in (0..last_len).filter(|o| (*o <= data_end && o % stride == 0) || o % 64 == 0) {
        let name = format!("last segment cut at {offset}");
        let last = last.file_name().unwrap().to_owned();
        let outcome = run_case(fixture, &name, false, |dir| {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(dir.join(&last))
                .unwrap();
            // A plain truncate of a closed file, as a user or a broken copy would do.
            #[allow(clippy::disallowed_methods)]
            file.set_len(offset).unwrap();
        });
        table.add("last segment truncated at every offset", outcome);
    }

    // Seeded bit flips in any file: one to four bits in one file per case.
    let mut rng = Rng(0xB17F_11B5);
    let mut files: Vec<PathBuf> = segs.clone();
    files.push(fixture.join("checkpoint"));
    for case in 0..bit_flips() {
        let file = files[rng.below(files.len() as u64) as usize]
            .file_name()
            .unwrap()
            .to_owned();
        let is_checkpoint = file == "checkpoint";
        let flips: Vec<(u64, u8)> = (0..1 + rng.below(4))
            .map(|_| (rng.next(), 1 << rng.below(8)))
            .collect();
        let name = format!("bit flip case {case} in {}", file.to_string_lossy());
        let outcome = run_case(fixture, &name, is_checkpoint, |dir| {
            let path = dir.join(&file);
            let mut bytes = std::fs::read(&path).unwrap();
            if bytes.is_empty() {
                return;
            }
            for (at, bit) in &flips {
                let len = bytes.len() as u64;
                bytes[(at % len) as usize] ^= bit;
            }
            std::fs::write(&path, bytes).unwrap();
        });
        table.add(
            if is_checkpoint {
                "bit flips in the checkpoint"
            } else {
                "bit flips in a segment"
            },
            outcome,
        );
    }

    // Every 4 KiB page of every segment zeroed, one at a time.
    for seg in &segs {
        let pages = std::fs::metadata(seg).unwrap().len().div_ceil(4096);
        for page in 0..pages {
            let file = seg.file_name().unwrap().to_owned();
            let name = format!("page {page} of {} zeroed", file.to_string_lossy());
            let outcome = run_case(fixture, &name, false, |dir| {
                let path = dir.join(&file);
                let mut bytes = std::fs::read(&path).unwrap();
                let start = (page * 4096) as usize;
                let end = (start + 4096).min(bytes.len());
                bytes[start..end].fill(0);
                std::fs::write(&path, bytes).unwrap();
            });
            table.add("a 4 KiB page zeroed", outcome);
        }
    }

    // Segments deleted, copied under another segment's name, and renamed.
    for (i, seg) in segs.iter().enumerate() {
        let file = seg.file_name().unwrap().to_owned();
        let outcome = run_case(
            fixture,
            &format!("{} deleted", file.to_string_lossy()),
            false,
            |dir| {
                std::fs::remove_file(dir.join(&file)).unwrap();
            },
        );
        table.add("a segment missing", outcome);
        if let Some(next) = segs.get(i + 1) {
            let next = next.file_name().unwrap().to_owned();
            let outcome = run_case(
                fixture,
                &format!("{} copied over the next", file.to_string_lossy()),
                false,
                |dir| {
                    std::fs::copy(dir.join(&file), dir.join(&next)).unwrap();
                },
            );
            table.add("a segment duplicated under another's name", outcome);
        }
        let outcome = run_case(
            fixture,
            &format!("{} renamed", file.to_string_lossy()),
            false,
            |dir| {
                let first: u64 = file
                    .to_str()
                    .unwrap()
                    .trim_end_matches(".seg")
                    .parse()
                    .unwrap();
                std::fs::rename(dir.join(&file), dir.join(format!("{:020}.seg", first + 5)))
                    .unwrap();
            },
        );
        table.add("a segment renamed", outcome);
    }

    // The checkpoint: gone, empty, zeroed, truncated mid-slot, each slot overwritten.
    type Damage = fn(&Path);
    let checkpoint_damage: [(&str, Damage); 5] = [
        ("deleted", |p| std::fs::remove_file(p).unwrap()),
        ("emptied", |p| std::fs::write(p, []).unwrap()),
        ("zeroed", |p| {
            let len = std::fs::metadata(p).unwrap().len() as usize;
            std::fs::write(p, vec![0; len]).unwrap()
        }),
        ("cut in the first slot", |p| {
            let bytes = std::fs::read(p).unwrap();
            std::fs::write(p, &bytes[..30]).unwrap()
        }),
        ("both slots scribbled", |p| {
            let mut bytes = std::fs::read(p).unwrap();
            bytes.resize(8192, 0);
            bytes[20..40].fill(0xAB);
            bytes[4096 + 20..4096 + 40].fill(0xAB);
            std::fs::write(p, bytes).unwrap()
        }),
    ];
    for (what, damage) in checkpoint_damage {
        let outcome = run_case(fixture, &format!("checkpoint {what}"), true, |dir| {
            damage(&dir.join("checkpoint"))
        });
        table.add("the checkpoint damaged", outcome);
    }

    // Files that claim a newer format version (with valid checksums): refused, by name.
    let first = segs[0].file_name().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    copy(fixture, dir.path());
    let path = dir.path().join(&first);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..28]);
    bytes[28..32].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    let refused = open(dir.path()).expect_err("a newer segment was opened");
    assert!(
        matches!(refused, Error::UnsupportedVersion { found: 2, .. }),
        "{refused}"
    );
    table.add("a file from a newer version", Outcome::Refused);

    let dir = tempfile::tempdir().unwrap();
    copy(fixture, dir.path());
    let path = dir.path().join("checkpoint");
    let mut bytes = std::fs::read(&path).unwrap();
    for slot in [0usize, 4096] {
        if bytes.len() < slot + 64 {
            continue;
        }
        let count = u32::from_le_bytes(bytes[slot + 12..slot + 16].try_into().unwrap()) as usize;
        bytes[slot + 8..slot + 12].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32c::crc32c_append(
            crc32c::crc32c(&bytes[slot..slot + 56]),
            &bytes[slot + 64..slot + 64 + 8 * count],
        );
        bytes[slot + 56..slot + 60].copy_from_slice(&crc.to_le_bytes());
    }
    std::fs::write(&path, bytes).unwrap();
    let refused = open(dir.path()).expect_err("a newer checkpoint was opened");
    assert!(
        matches!(refused, Error::UnsupportedVersion { found: 2, .. }),
        "{refused}"
    );
    table.add("a file from a newer version", Outcome::Refused);

    println!("0 panics, 0 hangs, 0 SIGBUS; every loss inside the queue counted");
    table.print();
}
