//! Disk as a bounded, recoverable resource: a queue whose disk is full opens, reports, and
//! drains, and draining frees the space that lets puts go on.

mod common;

use common::Mount;
use serde_bytes::ByteBuf;
use spillq::{Error, Queue};
use std::path::Path;

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

#[test]
fn a_queue_on_a_full_disk_reopens_drains_and_takes_puts_again() {
    let Some(disk) = Mount::tmpfs(1024 * 1024) else {
        return;
    };
    let dir = disk.dir.path().join("queue");
    let queue = open(&dir).unwrap();
    let (next, error) = fill(&queue, 0);
    assert!(matches!(error, Error::Io { .. }), "{error}");
    // Whatever close says, the items that reached disk are kept.
    let _ = queue.close();
    drop(queue);

    // The disk is still full: opening must need no new space.
    let queue = open(&dir).expect("a queue on a full disk opens");
    let stats = queue.stats();
    assert!(stats.len > 0, "{stats:?}");
    assert!(stats.disk_bytes > 0, "{stats:?}");
    let held = stats.len;
    println!("{next} puts accepted before the disk filled; {held} kept after the reopen");
    let mut seen = Vec::new();
    while let Some(got) = queue.try_get().expect("get on a full disk") {
        assert_eq!(got, item(id_of(&got)), "an item came back damaged");
        seen.push(id_of(&got));
    }
    assert_eq!(seen.len(), held, "len said {held}");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "out of order");
    assert!(seen.iter().all(|&id| id < next));
    // Draining freed the space: consumed segments are gone once the checkpoint passes them,
    // and puts work again in the same process.
    queue.sync().unwrap();
    assert!(queue.stats().disk_bytes < stats.disk_bytes);
    for id in next..next + 100 {
        queue.put(item(id)).unwrap();
    }
    queue.sync().unwrap();
    for id in next..next + 100 {
        assert_eq!(id_of(&queue.get().unwrap()), id);
    }
    queue.close().unwrap();
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
