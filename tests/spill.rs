//! Spilling: items past the cache go to disk and come back in order, memory never holds more
//! than the cache, items held only in memory reach the log before later ones, consumed segments
//! are deleted as the queue drains, and a queue whose consumers caught up runs in memory again.
//! Each at cache sizes 0, small and large (`common::CACHE_SIZES`).

mod common;

use common::{CACHE_SIZES, drain, open};

#[test]
fn items_past_the_cache_spill_and_come_back_in_order() {
    for cache in CACHE_SIZES {
        let dir = tempfile::tempdir().unwrap();
        let queue = open(dir.path(), cache);
        for id in 0..2_000u64 {
            queue.put(id).unwrap();
            let stats = queue.stats();
            assert!(stats.in_memory <= cache.max(1), "cache {cache}: {stats:?}");
        }
        let stats = queue.stats();
        assert_eq!(stats.len, 2_000);
        assert_eq!(stats.in_memory as u64 + stats.on_disk, 2_000, "{stats:?}");
        if cache < 2_000 {
            assert!(stats.on_disk > 0, "cache {cache}: nothing spilled");
        }
        assert_eq!(
            drain(&queue),
            (0..2_000).collect::<Vec<_>>(),
            "cache {cache}"
        );
    }
}

/// Items that were only in memory when the queue began to spill are written before the items
/// after them: a reopen gives everything back in order.
#[test]
fn items_held_in_memory_reach_the_log_before_later_ones() {
    for cache in CACHE_SIZES {
        let dir = tempfile::tempdir().unwrap();
        let queue = open(dir.path(), cache);
        for id in 0..cache as u64 + 500 {
            queue.put(id).unwrap();
        }
        // Two taken from the head, then the rest survives a close and a reopen, in order.
        assert_eq!(queue.get().unwrap(), 0);
        assert_eq!(queue.get().unwrap(), 1);
        queue.close().unwrap();
        drop(queue);
        let queue = open(dir.path(), cache);
        assert_eq!(
            drain(&queue),
            (2..cache as u64 + 500).collect::<Vec<_>>(),
            "cache {cache}"
        );
    }
}

#[test]
fn consumed_segments_are_deleted_as_the_queue_drains() {
    for cache in CACHE_SIZES {
        let dir = tempfile::tempdir().unwrap();
        let queue = open(dir.path(), cache);
        for id in 0..5_000u64 {
            queue.put(id).unwrap();
        }
        queue.sync().unwrap();
        let full = queue.stats();
        assert!(full.segments > 3, "cache {cache}: {full:?}");
        assert_eq!(drain(&queue).len(), 5_000);
        queue.sync().unwrap();
        let drained = queue.stats();
        assert!(drained.segments <= 2, "cache {cache}: {drained:?}");
        assert!(drained.disk_bytes < full.disk_bytes, "cache {cache}");
    }
}

/// Once consumers have read everything that went to disk, new items stay in memory again.
#[test]
fn a_queue_whose_consumers_caught_up_runs_in_memory_again() {
    let dir = tempfile::tempdir().unwrap();
    let cache = 64;
    let queue = open(dir.path(), cache);
    for id in 0..1_000u64 {
        queue.put(id).unwrap();
    }
    assert!(queue.stats().on_disk > 0);
    assert_eq!(drain(&queue).len(), 1_000);
    let written = queue.stats().next_sequence;
    for id in 0..cache as u64 / 2 {
        queue.put(id).unwrap();
    }
    let stats = queue.stats();
    assert_eq!(stats.on_disk, 0, "{stats:?}");
    assert_eq!(
        stats.next_sequence, written,
        "items in memory were written: {stats:?}"
    );
    assert_eq!(drain(&queue), (0..cache as u64 / 2).collect::<Vec<_>>());
}
