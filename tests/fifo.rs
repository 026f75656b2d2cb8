//! What the seeds' users rely on, at cache sizes 0 (everything through disk), small and large.

mod common;

use common::{CACHE_SIZES, drain, open};
use spillq::{Error, Queue};
use std::thread;
use std::time::Duration;

#[test]
fn items_come_out_in_the_order_they_went_in() {
    for cache in CACHE_SIZES {
        let dir = tempfile::tempdir().unwrap();
        let queue = open(dir.path(), cache);
        for i in 0..500 {
            queue.put(i).unwrap();
        }
        for i in 0..250 {
            assert_eq!(queue.get().unwrap(), i, "cache {cache}");
        }
        for i in 500..700 {
            queue.put(i).unwrap();
        }
        assert_eq!(
            drain(&queue),
            (250..700).collect::<Vec<_>>(),
            "cache {cache}"
        );
    }
}

#[test]
fn len_and_is_empty_are_exact() {
    for cache in CACHE_SIZES {
        let dir = tempfile::tempdir().unwrap();
        let queue = open(dir.path(), cache);
        assert!(queue.is_empty());
        assert_eq!(queue.len(), 0);
        queue.put_all(0..10).unwrap();
        assert_eq!(queue.len(), 10);
        queue.get().unwrap();
        queue.delete(2).unwrap();
        assert_eq!(queue.len(), 7);
        assert!(!queue.is_empty());
        drop(queue);
        // Dropping the last handle closes (and syncs): the count survives a reopen.
        let queue = open(dir.path(), cache);
        assert_eq!(queue.len(), 7, "cache {cache}");
        assert_eq!(queue.stats().len, 7);
    }
}

#[test]
fn peek_shows_the_head_without_removing_it() {
    for cache in CACHE_SIZES {
        let dir = tempfile::tempdir().unwrap();
        let queue = open(dir.path(), cache);
        assert_eq!(queue.peek().unwrap(), None);
        assert_eq!(queue.peek_timeout(Duration::from_millis(1)).unwrap(), None);
        queue.put(1).unwrap();
        queue.put(2).unwrap();
        assert_eq!(queue.peek().unwrap(), Some(1));
        assert_eq!(queue.peek().unwrap(), Some(1));
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.get().unwrap(), 1);
        assert_eq!(queue.peek().unwrap(), Some(2));
    }
}

#[test]
fn delete_removes_up_to_n_and_says_how_many() {
    for cache in CACHE_SIZES {
        let dir = tempfile::tempdir().unwrap();
        let queue = open(dir.path(), cache);
        queue.put_all(0..10).unwrap();
        assert_eq!(queue.delete(0).unwrap(), 0);
        assert_eq!(queue.peek().unwrap(), Some(0));
        assert_eq!(queue.delete(4).unwrap(), 4);
        assert_eq!(queue.peek().unwrap(), Some(4));
        assert_eq!(queue.delete(100).unwrap(), 6);
        assert_eq!(queue.delete(1).unwrap(), 0);
        assert!(queue.is_empty());
        queue.put(10).unwrap();
        assert_eq!(queue.get().unwrap(), 10);
    }
}

#[test]
fn the_seed_consumer_loop_peek_process_delete() {
    for cache in CACHE_SIZES {
        let dir = tempfile::tempdir().unwrap();
        let queue = open(dir.path(), cache);
        queue.put_all(0..100).unwrap();
        let mut uploaded = Vec::new();
        let mut failures = 0;
        while let Some(item) = queue.peek().unwrap() {
            // Every third attempt "fails" and is retried: nothing is lost or skipped.
            if (item + failures) % 3 == 0 {
                failures += 1;
                continue;
            }
            uploaded.push(item);
            assert_eq!(queue.delete(1).unwrap(), 1);
        }
        assert_eq!(uploaded, (0..100).collect::<Vec<_>>());
    }
}

#[test]
fn a_blocked_get_is_woken_by_a_put_from_another_thread() {
    for cache in CACHE_SIZES {
        let dir = tempfile::tempdir().unwrap();
        let queue = open(dir.path(), cache);
        let consumer = {
            let queue = queue.clone();
            thread::spawn(move || queue.get())
        };
        queue.put(7).unwrap();
        assert_eq!(consumer.join().unwrap().unwrap(), 7);
    }
}

#[test]
fn get_timeout_on_an_empty_queue_gives_none() {
    for cache in CACHE_SIZES {
        let dir = tempfile::tempdir().unwrap();
        let queue = open(dir.path(), cache);
        assert_eq!(queue.get_timeout(Duration::from_millis(20)).unwrap(), None);
        assert_eq!(queue.try_get().unwrap(), None);
        assert!(
            queue
                .get_batch(10, Duration::from_millis(5))
                .unwrap()
                .is_empty()
        );
    }
}

#[test]
fn max_len_refuses_with_the_item_back_and_put_waits_for_a_get() {
    for cache in CACHE_SIZES {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::<String>::builder(dir.path())
            .cache_size(cache)
            .segment_size(1024)
            .max_len(2)
            .open()
            .unwrap();
        queue.put("a".into()).unwrap();
        queue.try_put("b".into()).unwrap();
        let refused = queue.try_put("c".into()).unwrap_err();
        assert!(refused.is_full());
        assert_eq!(refused.into_inner(), "c");
        let refused = queue
            .put_timeout("d".into(), Duration::from_millis(10))
            .unwrap_err();
        assert!(refused.is_full());
        assert_eq!(refused.into_inner(), "d");
        let converted: Error = queue.try_put("e".into()).unwrap_err().into();
        assert!(matches!(converted, Error::Full));

        let producer = {
            let queue = queue.clone();
            thread::spawn(move || queue.put("f".into()))
        };
        assert_eq!(queue.get().unwrap(), "a");
        producer.join().unwrap().unwrap();
        let rest: Vec<String> = queue.try_iter().map(Result::unwrap).collect();
        assert_eq!(rest, ["b", "f"]);
    }
}

#[test]
fn close_wakes_blocked_callers_with_closed() {
    for cache in CACHE_SIZES {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::<u64>::builder(dir.path())
            .cache_size(cache)
            .max_len(1)
            .open()
            .unwrap();
        let blocked_get = {
            let queue = queue.clone();
            thread::spawn(move || queue.get())
        };
        queue.close().unwrap();
        assert!(matches!(blocked_get.join().unwrap(), Err(Error::Closed)));

        let queue = Queue::<u64>::builder(dir.path())
            .cache_size(cache)
            .max_len(1)
            .open()
            .unwrap();
        queue.put(1).unwrap();
        let blocked_put = {
            let queue = queue.clone();
            thread::spawn(move || queue.put(2))
        };
        queue.close().unwrap();
        assert!(matches!(blocked_put.join().unwrap(), Err(Error::Closed)));
        // Every later call on any clone is refused.
        assert!(matches!(queue.put(3), Err(Error::Closed)));
        assert!(matches!(queue.get(), Err(Error::Closed)));
        assert!(matches!(queue.try_get(), Err(Error::Closed)));
        assert!(matches!(queue.sync(), Err(Error::Closed)));
        assert!(matches!(queue.clear(), Err(Error::Closed)));
        assert!(matches!(queue.delete(1), Err(Error::Closed)));
        assert!(queue.try_put(4).unwrap_err().into_inner() == 4);
        assert!(queue.iter().next().is_none());
    }
}

#[test]
fn reopening_after_close_yields_what_remained() {
    for cache in CACHE_SIZES {
        let dir = tempfile::tempdir().unwrap();
        let queue = open(dir.path(), cache);
        queue.put_all(0..300).unwrap();
        for i in 0..100 {
            assert_eq!(queue.get().unwrap(), i);
        }
        queue.close().unwrap();
        let queue = open(dir.path(), cache);
        assert_eq!(queue.len(), 200);
        assert_eq!(
            drain(&queue),
            (100..300).collect::<Vec<_>>(),
            "cache {cache}"
        );
    }
}

#[test]
fn clear_removes_everything_durably() {
    for cache in CACHE_SIZES {
        let dir = tempfile::tempdir().unwrap();
        let queue = open(dir.path(), cache);
        queue.put_all(0..300).unwrap();
        queue.sync().unwrap();
        queue.clear().unwrap();
        assert!(queue.is_empty());
        assert_eq!(queue.try_get().unwrap(), None);
        queue.put(1000).unwrap();
        drop(queue);
        let queue = open(dir.path(), cache);
        assert_eq!(drain(&queue), [1000]);
        assert!(queue.stats().segments <= 2);
    }
}

#[test]
fn a_thousand_large_items_survive_rounds_of_get_and_sync() {
    for cache in CACHE_SIZES {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            Queue::<serde_bytes::ByteBuf>::builder(dir.path())
                .cache_size(cache)
                .segment_size(256 * 1024)
                .open()
                .unwrap()
        };
        let item = |i: u32| {
            let mut bytes = vec![(i % 251) as u8; 20_000];
            bytes[..4].copy_from_slice(&i.to_le_bytes());
            serde_bytes::ByteBuf::from(bytes)
        };
        let queue = open();
        for i in 0..1000 {
            queue.put(item(i)).unwrap();
        }
        let mut next = 0;
        for _ in 0..5 {
            for _ in 0..100 {
                assert_eq!(queue.get().unwrap(), item(next));
                next += 1;
            }
            queue.sync().unwrap();
        }
        drop(queue);
        let queue = open();
        assert_eq!(queue.len(), 500);
        while let Some(got) = queue.try_get().unwrap() {
            assert_eq!(got, item(next));
            next += 1;
        }
        assert_eq!(next, 1000);
    }
}

#[test]
fn a_small_cache_spills_across_many_segment_rolls_and_comes_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::<(u64, String)>::builder(dir.path())
        .cache_size(4)
        .segment_size(512)
        .open()
        .unwrap();
    for i in 0..5000 {
        queue.put((i, format!("item {i}"))).unwrap();
    }
    assert!(queue.stats().segments > 100, "{:?}", queue.stats());
    for i in 0..5000 {
        assert_eq!(queue.get().unwrap(), (i, format!("item {i}")));
    }
    queue.sync().unwrap();
    // Consumed segments are deleted: at most the one being written remains.
    assert_eq!(queue.stats().segments, 1, "{:?}", queue.stats());
}

#[test]
fn sync_drop_reopen_yields_every_item() {
    // pydisq's own recovery test, which its implementation fails.
    for cache in CACHE_SIZES {
        let dir = tempfile::tempdir().unwrap();
        let queue = open(dir.path(), cache);
        queue.put_all(0..50).unwrap();
        queue.sync().unwrap();
        std::mem::forget(queue.clone()); // no close: the next open must rely on the sync alone
        drop(queue);
        // The forgotten clone keeps the directory locked in this process; the lock is per open
        // file, so a fresh process would see it free. Here we check the files themselves.
        let copy = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
            }
        }
        let queue = open(copy.path(), cache);
        assert_eq!(drain(&queue), (0..50).collect::<Vec<_>>(), "cache {cache}");
    }
}

#[test]
fn put_all_is_contiguous_among_concurrent_producers() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open(dir.path(), 3);
    let producers: Vec<_> = (0..4u64)
        .map(|p| {
            let queue = queue.clone();
            thread::spawn(move || {
                for batch in 0..50u64 {
                    let base = (p * 1000 + batch) * 10;
                    queue.put_all(base..base + 10).unwrap();
                }
            })
        })
        .collect();
    for producer in producers {
        producer.join().unwrap();
    }
    let items = drain(&queue);
    assert_eq!(items.len(), 2000);
    for chunk in items.chunks(10) {
        assert_eq!(chunk[0] % 10, 0);
        assert!(chunk.windows(2).all(|w| w[1] == w[0] + 1), "{chunk:?}");
    }
}

#[test]
fn get_batch_takes_up_to_max() {
    for cache in CACHE_SIZES {
        let dir = tempfile::tempdir().unwrap();
        let queue = open(dir.path(), cache);
        queue.put_all(0..25).unwrap();
        assert_eq!(
            queue.get_batch(10, Duration::ZERO).unwrap(),
            (0..10).collect::<Vec<_>>()
        );
        assert_eq!(
            queue.get_batch(100, Duration::ZERO).unwrap(),
            (10..25).collect::<Vec<_>>()
        );
        assert_eq!(queue.get_batch(0, Duration::ZERO).unwrap(), vec![]);
    }
}

/// `get_batch` across what the head of the queue can hold: items given back (first in line),
/// items only in memory (which `sync` must then write, and only those left), and records
/// from disk.
#[test]
fn get_batch_keeps_order_with_items_given_back_and_what_is_left_for_sync() {
    for cache in CACHE_SIZES {
        let dir = tempfile::tempdir().unwrap();
        let queue = open(dir.path(), cache);
        queue.put_all(0..20).unwrap();
        let first = queue.get_ack().unwrap();
        let second = queue.get_ack().unwrap();
        second.nack().unwrap();
        first.nack().unwrap();
        assert_eq!(
            queue.get_batch(5, Duration::ZERO).unwrap(),
            [0, 1, 2, 3, 4],
            "cache {cache}"
        );
        queue.put_all(20..30).unwrap();
        assert_eq!(
            queue.get_batch(7, Duration::ZERO).unwrap(),
            (5..12).collect::<Vec<_>>(),
            "cache {cache}"
        );
        queue.sync().unwrap();
        drop(queue);
        let queue = open(dir.path(), cache);
        assert_eq!(drain(&queue), (12..30).collect::<Vec<_>>(), "cache {cache}");
    }
}

#[test]
fn iter_ends_when_the_queue_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open(dir.path(), 3);
    let consumer = {
        let queue = queue.clone();
        thread::spawn(move || queue.iter().map(Result::unwrap).collect::<Vec<_>>())
    };
    queue.put_all(0..20).unwrap();
    // Wait (without sleeping) until the consumer has taken everything, then close.
    while !queue.is_empty() {
        thread::yield_now();
    }
    queue.close().unwrap();
    assert_eq!(consumer.join().unwrap(), (0..20).collect::<Vec<_>>());
}

#[test]
fn a_queue_is_send_sync_and_cheap_to_clone() {
    fn send_sync<Q: Send + Sync + Clone + 'static>(_: &Q) {}
    let dir = tempfile::tempdir().unwrap();
    let queue = open(dir.path(), 3);
    send_sync(&queue);
    let clone = queue.clone();
    clone.put(1).unwrap();
    // All clones share one queue.
    assert_eq!(queue.get().unwrap(), 1);
    drop(queue);
    clone.put(2).unwrap();
    assert_eq!(clone.get().unwrap(), 2);
}
