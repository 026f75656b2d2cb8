//! Disk as a bounded, recoverable resource: a queue whose disk is full opens, reports, and
//! drains, and draining frees the space that lets puts go on; a disk cap (`max_disk_bytes`)
//! holds producers back as `max_len` does, and usage never passes it by more than a segment.

mod common;

use common::{Mount, read_then_kill, spawn_child};
use serde_bytes::ByteBuf;
use spillq::{Durability, Error, Queue};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

const SEGMENT: u64 = 64 * 1024;
/// The checkpoint (both slots) and the identity file, beside the segments.
const FIXED: u64 = 2 * 4096 + 33;

/// Items of about 1 KiB that say which they are.
fn item(id: u64) -> ByteBuf {
    let mut bytes = vec![(id % 251) as u8; 1000];
    bytes[..8].copy_from_slice(&id.to_le_bytes());
    ByteBuf::from(bytes)
}

fn id_of(item: &ByteBuf) -> u64 {
    u64::from_le_bytes(item[..8].try_into().unwrap())
}

fn open(dir: &Path) -> Result<Queue<ByteBuf>, Error> {
    Queue::builder(dir)
        .cache_size(4)
        .segment_size(64 * 1024)
        .open()
}

/// Puts items from `next` on until a put fails for lack of space; returns the next id and the
/// error.
fn fill(queue: &Queue<ByteBuf>, mut next: u64) -> (u64, Error) {
    loop {
        match queue.put(item(next)) {
            Ok(()) => next += 1,
            Err(error) => return (next, error),
        }
        assert!(next < 100_000, "the disk never filled");
    }
}

/// How a full-disk test goes on after the disk filled.
#[derive(Clone, Copy, PartialEq)]
enum After {
    /// Close (whatever close says), reopen on the still-full disk, drain.
    Reopen,
    /// Drain in the same process.
    Drain,
}

fn open_with(dir: &Path, durability: Durability) -> Result<Queue<ByteBuf>, Error> {
    Queue::builder(dir)
        .cache_size(4)
        .segment_size(SEGMENT)
        .durability(durability)
        .open()
}

/// Fills the disk under `dir` until a put fails, then (closing and reopening, or not) checks
/// that the queue reports and drains on the full disk, in order and without an item a put
/// refused, that draining frees space, and that puts work again in the same process.
fn fill_drain_put_again(dir: &Path, durability: Durability, after: After) {
    let queue = open_with(dir, durability).unwrap();
    let (next, error) = fill(&queue, 0);
    assert!(matches!(error, Error::Io { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains(&dir.display().to_string()), "{message}");
    let queue = match after {
        After::Reopen => {
            // Whatever close says, the items that reached disk are kept.
            let closed = queue.close();
            drop(queue);
            let queue = open_with(dir, durability).expect("a queue on a full disk opens");
            if closed.is_ok() || durability == Durability::EveryPut {
                assert_eq!(queue.len() as u64, next, "close said {closed:?}");
            }
            queue
        }
        After::Drain => {
            assert_eq!(queue.len() as u64, next);
            queue
        }
    };
    let stats = queue.stats();
    assert!(stats.len > 0 && stats.disk_bytes > 0, "{stats:?}");
    let held = stats.len;
    println!("{next} puts accepted before the disk filled ({message}); {held} held");
    let mut seen = Vec::new();
    while let Some(got) = queue.try_get().expect("get on a full disk") {
        assert_eq!(got, item(id_of(&got)), "an item came back damaged");
        seen.push(id_of(&got));
    }
    assert_eq!(seen.len(), held, "len said {held}");
    // The refused item (`next`) is not among them; what was kept is the first ones, in order.
    assert_eq!(seen, (0..held as u64).collect::<Vec<_>>());
    // Draining freed the space: consumed segments are gone once the checkpoint passes them,
    // and puts work again in the same process.
    queue.sync().unwrap();
    assert!(queue.stats().disk_bytes < stats.disk_bytes);
    let again = next + 1;
    for id in again..again + 300 {
        queue.put(item(id)).unwrap();
    }
    queue.sync().unwrap();
    for id in again..again + 300 {
        assert_eq!(id_of(&queue.get().unwrap()), id);
    }
    queue.close().unwrap();
}

#[test]
fn a_queue_on_a_full_disk_reopens_drains_and_takes_puts_again() {
    let Some(disk) = Mount::tmpfs(1024 * 1024) else {
        return;
    };
    fill_drain_put_again(
        &disk.dir.path().join("q"),
        Durability::OnSync,
        After::Reopen,
    );
}

#[test]
fn a_queue_on_a_full_disk_drains_and_takes_puts_again_without_a_close() {
    let Some(disk) = Mount::tmpfs(1024 * 1024) else {
        return;
    };
    fill_drain_put_again(&disk.dir.path().join("q"), Durability::OnSync, After::Drain);
}

#[test]
fn a_disk_filled_with_every_put_keeps_every_acknowledged_put_and_no_refused_one() {
    for after in [After::Reopen, After::Drain] {
        let Some(disk) = Mount::tmpfs(1024 * 1024) else {
            return;
        };
        fill_drain_put_again(&disk.dir.path().join("q"), Durability::EveryPut, after);
    }
}

#[test]
fn a_disk_filled_with_interval_durability_reopens_and_drains() {
    for after in [After::Reopen, After::Drain] {
        let Some(disk) = Mount::tmpfs(1024 * 1024) else {
            return;
        };
        let interval = Durability::Interval(Duration::from_millis(5));
        fill_drain_put_again(&disk.dir.path().join("q"), interval, after);
    }
}

#[test]
fn a_full_ext4_file_system_reopens_drains_and_takes_puts_again() {
    for (durability, after) in [
        (Durability::OnSync, After::Reopen),
        (Durability::OnSync, After::Drain),
        (Durability::EveryPut, After::Reopen),
    ] {
        let Some(disk) = Mount::ext4(4 * 1024 * 1024) else {
            return;
        };
        fill_drain_put_again(&disk.dir.path().join("q"), durability, after);
    }
}

/// A queue of 1000-byte items, all through disk, in 64 KiB segments.
fn through_disk(dir: &Path) -> Queue<ByteBuf> {
    Queue::builder(dir)
        .cache_size(0)
        .segment_size(64 * 1024)
        .open()
        .unwrap()
}

#[test]
fn a_put_refused_for_space_leaves_nothing_behind_and_puts_work_again_once_there_is_room() {
    let Some(disk) = Mount::tmpfs(1024 * 1024) else {
        return;
    };
    let dir = disk.dir.path().join("queue");
    let ballast = disk.dir.path().join("ballast");
    std::fs::write(&ballast, vec![1u8; 600 * 1024]).unwrap();
    let queue = through_disk(&dir);
    let (next, error) = fill(&queue, 0);
    assert!(matches!(error, Error::Io { .. }), "{error}");
    // The refused item is not in the queue, and nothing waits to be written.
    assert_eq!(queue.len() as u64, next);
    queue.sync().unwrap();
    let refused = queue.try_put(item(next)).unwrap_err();
    assert_eq!(id_of(&refused.into_inner()), next);
    // Room again: puts work in the same process.
    std::fs::remove_file(&ballast).unwrap();
    queue.put(item(next)).unwrap();
    queue.close().unwrap();
    let queue = through_disk(&dir);
    let ids: Vec<u64> = queue.try_iter().map(|item| id_of(&item.unwrap())).collect();
    assert_eq!(ids, (0..=next).collect::<Vec<_>>());
}

#[test]
fn close_on_a_full_disk_reports_what_it_could_not_write_instead_of_waiting() {
    let Some(disk) = Mount::tmpfs(256 * 1024) else {
        return;
    };
    let dir = disk.dir.path().join("queue");
    let queue = open(&dir).unwrap();
    // Held in memory; then the disk fills before anything of the queue is on it.
    for id in 0..3 {
        queue.put(item(id)).unwrap();
    }
    let ballast = disk.dir.path().join("ballast");
    let _ = std::fs::write(&ballast, vec![1u8; 256 * 1024]);
    assert!(matches!(queue.close(), Err(Error::Io { .. })));
    assert!(matches!(queue.put(item(3)), Err(Error::Closed)));
}

/// What the queue's files take, as the file system says (the lock file is empty; records moved
/// aside are not the queue's).
fn files_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| entry.metadata().ok())
                .filter(std::fs::Metadata::is_file)
                .map(|metadata| metadata.len())
                .sum()
        })
        .unwrap_or(0)
}

fn capped(dir: &Path, cache: usize, cap: u64) -> Result<Queue<ByteBuf>, Error> {
    Queue::builder(dir)
        .cache_size(cache)
        .segment_size(SEGMENT)
        .max_disk_bytes(cap)
        .open()
}

#[test]
fn a_cap_too_small_for_one_segment_is_refused_at_open_with_what_to_give() {
    let dir = tempfile::tempdir().unwrap();
    let error = capped(dir.path(), 0, SEGMENT).unwrap_err();
    assert!(
        matches!(
            &error,
            Error::InvalidOption {
                option: "max_disk_bytes",
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("at least"), "{error}");
    // One segment and the fixed files: enough.
    let queue = capped(dir.path(), 0, SEGMENT + FIXED).unwrap();
    queue.put(item(0)).unwrap();
    assert_eq!(id_of(&queue.get().unwrap()), 0);
}

#[test]
fn at_the_cap_try_put_gives_the_item_back_put_timeout_gives_up_and_put_waits_for_a_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let cap = 4 * SEGMENT + FIXED;
    let queue = capped(dir.path(), 0, cap).unwrap();
    let mut next = 0;
    let refused = loop {
        match queue.try_put(item(next)) {
            Ok(()) => next += 1,
            Err(refused) => break refused,
        }
        assert!(next < 10_000, "the cap never held");
    };
    assert!(refused.is_full());
    assert_eq!(id_of(&refused.into_inner()), next);
    assert!(queue.stats().disk_bytes <= cap, "{:?}", queue.stats());
    assert!(files_bytes(dir.path()) <= cap);
    let refused = queue
        .put_timeout(item(next), Duration::from_millis(20))
        .unwrap_err();
    assert!(refused.is_full());
    // A blocking put waits until a consumer has freed a segment, then goes in.
    let consumer = {
        let queue = queue.clone();
        std::thread::spawn(move || {
            (0..SEGMENT / 1000 * 2)
                .map(|_| id_of(&queue.get().unwrap()))
                .collect::<Vec<_>>()
        })
    };
    queue.put(item(next)).unwrap();
    let taken = consumer.join().unwrap();
    assert_eq!(taken, (0..taken.len() as u64).collect::<Vec<_>>());
    let rest: Vec<u64> = queue.try_iter().map(|i| id_of(&i.unwrap())).collect();
    assert_eq!(rest, (taken.len() as u64..=next).collect::<Vec<_>>());
}

#[test]
fn disk_bytes_is_what_the_files_take() {
    let dir = tempfile::tempdir().unwrap();
    let queue = capped(dir.path(), 8, 8 * SEGMENT + FIXED).unwrap();
    assert_eq!(queue.stats().disk_bytes, files_bytes(dir.path()));
    for round in 0..6u64 {
        for id in round * 150..(round + 1) * 150 {
            queue.put(item(id)).unwrap();
        }
        for _ in 0..100 {
            queue.get().unwrap();
        }
        // Once the spill thread has caught up (a sync waits for it), the two agree.
        queue.sync().unwrap();
        assert_eq!(
            queue.stats().disk_bytes,
            files_bytes(dir.path()),
            "round {round}"
        );
    }
}

/// Four producers and four consumers through a cap of a few segments: every item once, each
/// producer's in order, and the files (sampled as it runs) never above the cap and a segment.
#[test]
fn four_producers_four_consumers_at_the_cap_exactly_once_in_order_within_a_segment_over() {
    const PER_PRODUCER: u64 = 3_000;
    let dir = tempfile::tempdir().unwrap();
    let cap = 3 * SEGMENT + FIXED;
    let queue = capped(dir.path(), 16, cap).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (dir, done) = (dir.path().to_owned(), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut most = 0;
            while !done.load(Ordering::Relaxed) {
                most = most.max(files_bytes(&dir));
                std::thread::yield_now();
            }
            most
        })
    };
    let producers: Vec<_> = (0..4u64)
        .map(|p| {
            let queue = queue.clone();
            std::thread::spawn(move || {
                for i in 0..PER_PRODUCER {
                    queue.put(item(i * 4 + p)).unwrap();
                }
            })
        })
        .collect();
    let taken = Arc::new(AtomicU64::new(0));
    let consumers: Vec<_> = (0..4)
        .map(|_| {
            let (queue, taken) = (queue.clone(), Arc::clone(&taken));
            std::thread::spawn(move || {
                let mut got = Vec::new();
                while taken.fetch_add(1, Ordering::SeqCst) < 4 * PER_PRODUCER {
                    got.push(id_of(&queue.get().unwrap()));
                }
                got
            })
        })
        .collect();
    for producer in producers {
        producer.join().unwrap();
    }
    let mut all = BTreeSet::new();
    for consumer in consumers {
        let got = consumer.join().unwrap();
        let mut last = [None; 4];
        for id in got {
            let slot = &mut last[(id % 4) as usize];
            assert!(slot.is_none_or(|l| id > l), "{id} out of order");
            *slot = Some(id);
            assert!(all.insert(id), "{id} twice");
        }
    }
    done.store(true, Ordering::Relaxed);
    let most = sampler.join().unwrap();
    assert_eq!(all.len() as u64, 4 * PER_PRODUCER);
    assert!(queue.stats().next_sequence > 0, "nothing went to disk");
    println!(
        "cap {cap} bytes: at most {most} bytes of files seen ({} over)",
        most.saturating_sub(cap)
    );
    assert!(
        most <= cap + SEGMENT,
        "{most} bytes of files against a cap of {cap}"
    );
}

/// A cap that holds one segment: the head is deleted once every record in it was taken, and
/// the next begins; producers wait for that.
#[test]
fn a_cap_of_one_segment_goes_on_one_segment_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let cap = SEGMENT + FIXED;
    let queue = capped(dir.path(), 0, cap).unwrap();
    let n = 5 * SEGMENT / 1000;
    let producer = {
        let queue = queue.clone();
        std::thread::spawn(move || {
            for id in 0..n {
                queue.put(item(id)).unwrap();
            }
        })
    };
    let mut most = 0;
    let got: Vec<u64> = (0..n)
        .map(|_| {
            most = most.max(files_bytes(dir.path()));
            id_of(&queue.get().unwrap())
        })
        .collect();
    producer.join().unwrap();
    assert_eq!(got, (0..n).collect::<Vec<_>>());
    assert!(most <= cap + SEGMENT, "{most} bytes against a cap of {cap}");
}

/// What a child that fills a disk (or a cap) reported before it was killed.
#[derive(Default)]
struct Reported {
    put: BTreeSet<u64>,
    refused: BTreeSet<u64>,
    got: BTreeSet<u64>,
}

/// Kills, at random points, children (4, or `SPILLQ_DISK_KILLS`) that put (two producers, `EveryPut`) into a queue whose
/// disk is full or which stands at its cap while a slower consumer takes items; each child
/// reopens what the last one left. Then every acknowledged put that was not taken is there,
/// each producer's in order, no refused item ever is, and (at a cap) the files never stood
/// more than a segment above it.
fn kill_while_full(dir: &Path, cap: Option<u64>) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("seed {seed}");
    let mut rng = common::Rng(seed);
    let mut reported = Reported::default();
    let mut most = 0;
    let rounds: u64 = std::env::var("SPILLQ_DISK_KILLS").map_or(4, |n| n.parse().unwrap());
    for round in 0..rounds {
        let mut env = vec![
            ("SPILLQ_DISK_DIR", dir.display().to_string()),
            ("SPILLQ_FIRST_ID", (round * 1_000_000).to_string()),
        ];
        if let Some(cap) = cap {
            env.push(("SPILLQ_DISK_CAP", cap.to_string()));
        }
        let child = spawn_child("fill_while_taking_child", &env);
        let stop_after = 1000 + rng.below(4000);
        let (mut lines, mut refusals) = (0, 0);
        read_then_kill(child, |line| {
            let mut words = line.split_whitespace();
            let (Some(what), Some(id)) = (words.next(), words.next()) else {
                return true;
            };
            let Ok(id) = id.parse::<u64>() else {
                return true;
            };
            match what {
                "PUT" => assert!(reported.put.insert(id)),
                "REFUSED" => {
                    assert!(reported.refused.insert(id));
                    refusals += 1;
                }
                "GOT" => {
                    reported.got.insert(id);
                }
                _ => return true,
            }
            if cap.is_some() {
                most = most.max(files_bytes(dir));
            }
            lines += 1;
            lines < stop_after || refusals < 10
        });
        assert!(
            refusals >= 10,
            "round {round}: the child stopped before it was killed"
        );
    }
    let queue = Queue::<ByteBuf>::builder(dir)
        .segment_size(SEGMENT)
        .open()
        .expect("a queue on a full disk opens after a kill");
    let drained: Vec<u64> = queue.try_iter().map(|i| id_of(&i.unwrap())).collect();
    for &id in &drained {
        assert!(
            !reported.refused.contains(&id),
            "{id} was refused, yet delivered"
        );
    }
    let held: BTreeSet<u64> = drained.iter().copied().collect();
    assert_eq!(held.len(), drained.len(), "an item twice");
    let lost: Vec<_> = reported
        .put
        .difference(&reported.got)
        .filter(|id| !held.contains(id))
        .collect();
    assert!(lost.is_empty(), "acknowledged puts lost: {lost:?}");
    for producer in 0..2 {
        let ids: Vec<u64> = drained
            .iter()
            .copied()
            .filter(|id| id % 2 == producer)
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "out of order: {ids:?}");
    }
    println!(
        "{} acknowledged, {} refused, {} taken, {} left; files at most {most} bytes",
        reported.put.len(),
        reported.refused.len(),
        reported.got.len(),
        drained.len()
    );
    if let Some(cap) = cap {
        assert!(
            most <= cap + SEGMENT,
            "{most} bytes of files against a cap of {cap}"
        );
    }
}

#[test]
fn a_kill_while_the_disk_is_full_loses_no_acknowledged_put() {
    let Some(disk) = Mount::tmpfs(1024 * 1024) else {
        return;
    };
    kill_while_full(&disk.dir.path().join("q"), None);
}

#[test]
fn a_kill_at_the_disk_cap_loses_no_acknowledged_put() {
    let dir = tempfile::tempdir().unwrap();
    kill_while_full(dir.path(), Some(4 * SEGMENT + FIXED));
}

#[test]
#[ignore = "run as a child process by the kill tests above"]
fn fill_while_taking_child() {
    let Ok(dir) = std::env::var("SPILLQ_DISK_DIR") else {
        return;
    };
    let first: u64 = std::env::var("SPILLQ_FIRST_ID").unwrap().parse().unwrap();
    let mut builder = Queue::builder(&dir)
        .cache_size(4)
        .segment_size(SEGMENT)
        .durability(Durability::EveryPut);
    if let Ok(cap) = std::env::var("SPILLQ_DISK_CAP") {
        builder = builder.max_disk_bytes(cap.parse().unwrap());
    }
    let queue: Queue<ByteBuf> = builder.open().unwrap();
    for producer in 0..2 {
        let queue = queue.clone();
        std::thread::spawn(move || {
            for i in 0.. {
                let id = first + i * 2 + producer;
                match queue.put_timeout(item(id), Duration::from_millis(1)) {
                    Ok(()) => println!("PUT {id}"),
                    Err(_) => println!("REFUSED {id}"),
                }
            }
        });
    }
    // Slower than the producers, so the disk stays full, yet it frees space all along. An
    // item is acknowledged only once it was reported: one a kill took before that comes back.
    loop {
        let got = queue.get_ack().unwrap();
        println!("GOT {}", id_of(&got));
        got.ack().unwrap();
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Items accepted into memory that `sync` must write go over the cap by at most a segment;
/// past that `sync` fails with `Full`, and they stay in the queue, in order, for consumers.
#[test]
fn sync_at_the_cap_fails_with_full_and_keeps_the_items() {
    let dir = tempfile::tempdir().unwrap();
    let cap = 2 * SEGMENT + FIXED;
    let queue = capped(dir.path(), 1000, cap).unwrap();
    for id in 0..1000 {
        queue.put(item(id)).unwrap();
    }
    assert!(matches!(queue.sync(), Err(Error::Full)));
    assert!(files_bytes(dir.path()) <= cap + SEGMENT);
    assert_eq!(queue.len(), 1000);
    let ids: Vec<u64> = (0..1000).map(|_| id_of(&queue.get().unwrap())).collect();
    assert_eq!(ids, (0..1000).collect::<Vec<_>>());
    // Drained, the queue syncs and takes puts again.
    queue.sync().unwrap();
    queue.put(item(1000)).unwrap();
    queue.close().unwrap();
    let queue = capped(dir.path(), 1000, cap).unwrap();
    assert_eq!(id_of(&queue.get().unwrap()), 1000);
}

/// `close` at the cap writes what fits (a segment over it at most) and says `Full` for the rest,
/// which was only in memory; what it wrote is the oldest items, in order.
#[test]
fn close_at_the_cap_fails_with_full_and_keeps_the_oldest_items() {
    let dir = tempfile::tempdir().unwrap();
    let cap = 2 * SEGMENT + FIXED;
    let queue = capped(dir.path(), 1000, cap).unwrap();
    for id in 0..1000 {
        queue.put(item(id)).unwrap();
    }
    assert!(matches!(queue.close(), Err(Error::Full)));
    assert!(files_bytes(dir.path()) <= cap + SEGMENT);
    let queue = capped(dir.path(), 1000, cap).unwrap();
    let ids: Vec<u64> = queue.try_iter().map(|i| id_of(&i.unwrap())).collect();
    assert!(!ids.is_empty());
    assert_eq!(ids, (0..ids.len() as u64).collect::<Vec<_>>());
}
