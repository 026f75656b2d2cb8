//! Many producers and consumers at once.

mod common;

use spillq::Queue;
use std::thread;
use std::time::Duration;

fn many_producers_and_consumers(cache_size: usize, segment_size: u64) {
    run(4, 4, 250_000, cache_size, segment_size);
}

/// A queue of `(producer, index)` pairs.
fn open_pairs(dir: &std::path::Path, cache_size: usize, segment_size: u64) -> Queue<(u64, u64)> {
    Queue::builder(dir)
        .cache_size(cache_size)
        .segment_size(segment_size)
        .open()
        .unwrap()
}

/// Waits until consumers have taken everything, then closes (which ends their loops).
fn close_when_empty(queue: &Queue<(u64, u64)>) {
    while !queue.is_empty() {
        thread::yield_now();
    }
    queue.close().unwrap();
}

/// What each consumer got: every producer's items in that producer's order, and across all
/// consumers every item exactly once.
fn assert_each_once_in_order(got: Vec<Vec<(u64, u64)>>, producers: u64, per_producer: u64) {
    let mut seen = vec![vec![false; per_producer as usize]; producers as usize];
    let mut total = 0;
    for got in got {
        total += got.len() as u64;
        let mut last = vec![None; producers as usize];
        for (p, i) in got {
            let (p, i) = (p as usize, i as usize);
            assert!(last[p] < Some(i), "producer {p}: {i} after {:?}", last[p]);
            last[p] = Some(i);
            assert!(!seen[p][i], "({p}, {i}) delivered twice");
            seen[p][i] = true;
        }
    }
    assert_eq!(total, producers * per_producer);
    assert!(seen.iter().flatten().all(|&s| s), "items lost");
}

fn run(producers: u64, consumers: usize, per_producer: u64, cache_size: usize, segment_size: u64) {
    let dir = tempfile::tempdir().unwrap();
    let queue = open_pairs(dir.path(), cache_size, segment_size);
    let producer_threads: Vec<_> = (0..producers)
        .map(|p| {
            let queue = queue.clone();
            thread::spawn(move || {
                for i in 0..per_producer {
                    queue.put((p, i)).unwrap();
                }
            })
        })
        .collect();
    let consumer_threads: Vec<_> = (0..consumers)
        .map(|_| {
            let queue = queue.clone();
            thread::spawn(move || {
                let mut got = Vec::new();
                // `iter` ends when the queue is closed below.
                for item in queue.iter() {
                    got.push(item.unwrap());
                }
                got
            })
        })
        .collect();
    for producer in producer_threads {
        producer.join().unwrap();
    }
    close_when_empty(&queue);
    let got = consumer_threads.into_iter().map(|c| c.join().unwrap());
    assert_each_once_in_order(got.collect(), producers, per_producer);
}

#[test]
fn four_producers_four_consumers_small_cache_small_segments() {
    many_producers_and_consumers(16, 64 * 1024);
}

#[test]
fn four_producers_four_consumers_everything_through_disk() {
    many_producers_and_consumers(0, 256 * 1024);
}

/// The long soak: 8 producers and 8 consumers, 10 million items in all, through a small cache
/// and small segments. `cargo test --release --test concurrency -- --ignored`.
#[test]
#[ignore = "long soak: run with --ignored"]
fn soak_eight_producers_eight_consumers_ten_million_items() {
    run(8, 8, 1_250_000, 64, 4 << 20);
}

/// Every way in and out at once, with a small cache so the queue keeps moving between memory
/// and disk (and producers between the lock-free way in and the locked one): each consumer
/// sees each producer's items in order, nothing is lost or repeated, and memory never holds
/// more than `cache_size` items.
#[test]
fn mixed_calls_keep_order_and_the_memory_bound() {
    const CACHE: usize = 64;
    const PRODUCERS: u64 = 3;
    const PER_PRODUCER: u64 = 60_000;
    let dir = tempfile::tempdir().unwrap();
    let queue = open_pairs(dir.path(), CACHE, 64 * 1024);
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let queue = queue.clone();
            thread::spawn(move || {
                let mut rng = common::Rng(p + 1);
                let mut i = 0;
                while i < PER_PRODUCER {
                    match rng.next() % 4 {
                        0 => {
                            // Up to 40: more than twice the lane (16), so a batch can go to disk while the
                            // lane is open.
                            let n = (1 + rng.next() % 40).min(PER_PRODUCER - i);
                            queue.put_all((i..i + n).map(|i| (p, i))).unwrap();
                            i += n;
                        }
                        1 => {
                            queue.try_put((p, i)).unwrap();
                            i += 1;
                        }
                        _ => {
                            queue.put((p, i)).unwrap();
                            i += 1;
                        }
                    }
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..2u64)
        .map(|c| {
            let queue = queue.clone();
            thread::spawn(move || {
                let mut rng = common::Rng(100 + c);
                let mut got = Vec::new();
                loop {
                    let batch = match rng.next() % 3 {
                        0 => queue.get_batch(1 + (rng.next() % 16) as usize, Duration::ZERO),
                        1 => queue.try_get().map(|item| item.into_iter().collect()),
                        _ => queue
                            .get_timeout(Duration::from_millis(1))
                            .map(|item| item.into_iter().collect()),
                    };
                    match batch {
                        Ok(items) => got.extend(items),
                        Err(spillq::Error::Closed) => return got,
                        Err(error) => panic!("{error}"),
                    }
                }
            })
        })
        .collect();
    // Meanwhile: syncs and stats, checking the memory bound.
    let mut checks = 0;
    while producers.iter().any(|p| !p.is_finished()) {
        queue.sync().unwrap();
        let stats = queue.stats();
        assert!(
            stats.in_memory <= CACHE,
            "{} items in memory",
            stats.in_memory
        );
        checks += 1;
    }
    for producer in producers {
        producer.join().unwrap();
    }
    close_when_empty(&queue);
    let got = consumers.into_iter().map(|c| c.join().unwrap());
    assert_each_once_in_order(got.collect(), PRODUCERS, PER_PRODUCER);
    assert!(checks > 0);
}

/// `close` while producers are putting: every put that returned `Ok` is either delivered
/// before the close or found on disk when the queue is opened again, in each producer's order.
#[test]
fn close_keeps_every_accepted_put() {
    const PRODUCERS: u64 = 3;
    let dir = tempfile::tempdir().unwrap();
    let queue = open_pairs(dir.path(), 4096, 64 << 20);
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let queue = queue.clone();
            thread::spawn(move || {
                let mut accepted = 0;
                loop {
                    match queue.put((p, accepted)) {
                        Ok(()) => accepted += 1,
                        Err(spillq::Error::Closed) => return accepted,
                        Err(error) => panic!("{error}"),
                    }
                }
            })
        })
        .collect();
    // Close in the middle of the traffic: once enough has been taken.
    let mut got = Vec::new();
    while got.len() < 50_000 {
        got.extend(queue.get_batch(256, Duration::from_secs(10)).unwrap());
    }
    queue.close().unwrap();
    let accepted: Vec<u64> = producers.into_iter().map(|p| p.join().unwrap()).collect();
    drop(queue);
    let reopened = Queue::<(u64, u64)>::open(dir.path()).unwrap();
    got.extend(reopened.try_iter().map(Result::unwrap));
    let mut next = vec![0; PRODUCERS as usize];
    for (p, i) in got {
        assert_eq!(i, next[p as usize], "producer {p}");
        next[p as usize] += 1;
    }
    assert_eq!(next, accepted);
}

/// One consumer taking items one at a time (from the lane without the queue's lock, while the
/// ring is empty) while another thread keeps moving the lane into the ring (`len`, `stats`,
/// `peek`) and the producer mixes single puts, which go through the lane, with batches,
/// which go through the lock: the consumer sees every item once, in order. An item taken from
/// the lane while older ones sat in the ring would come out early.
#[test]
fn items_taken_without_the_lock_never_pass_the_ring() {
    const ITEMS: u64 = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::<u64>::builder(dir.path())
        .cache_size(64)
        .open()
        .unwrap();
    let producer = {
        let queue = queue.clone();
        thread::spawn(move || {
            let mut rng = common::Rng(7);
            let mut i = 0;
            while i < ITEMS {
                if rng.next().is_multiple_of(8) {
                    let n = (1 + rng.next() % 8).min(ITEMS - i);
                    queue.put_all(i..i + n).unwrap();
                    i += n;
                } else {
                    queue.put(i).unwrap();
                    i += 1;
                }
            }
        })
    };
    let absorber = {
        let queue = queue.clone();
        thread::spawn(move || {
            let mut looks = 0u64;
            while !producer.is_finished() {
                match looks % 3 {
                    0 => drop(queue.len()),
                    1 => drop(queue.stats()),
                    _ => drop(queue.peek().unwrap()),
                }
                looks += 1;
            }
            producer.join().unwrap();
            looks
        })
    };
    for expected in 0..ITEMS {
        assert_eq!(queue.get().unwrap(), expected);
    }
    assert!(absorber.join().unwrap() > 0);
    assert!(queue.is_empty());
}

/// Consumers mixing `get` (which may take from the lane without the lock) with `get_batch`
/// (which takes the lock): a call that waits forever never comes back empty-handed or
/// with `Closed` because another consumer took the item it had seen. Each consumer first
/// claims an item from a shared count, so every claimed `get` has an item to get.
#[test]
fn a_waiting_get_never_loses_its_item_to_another_consumer() {
    use std::sync::atomic::{AtomicU64, Ordering};
    const ITEMS: u64 = 2_000_000;
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::<u64>::builder(dir.path())
        .cache_size(64)
        .open()
        .unwrap();
    let claimed = std::sync::Arc::new(AtomicU64::new(0));
    let consumers: Vec<_> = (0..3u64)
        .map(|c| {
            let (queue, claimed) = (queue.clone(), std::sync::Arc::clone(&claimed));
            thread::spawn(move || {
                let mut got = 0u64;
                while claimed.fetch_add(1, Ordering::Relaxed) < ITEMS {
                    if c == 2 {
                        // Through the lock.
                        let batch = queue.get_batch(1, Duration::from_secs(3600)).unwrap();
                        assert_eq!(batch.len(), 1);
                    } else {
                        queue.get().unwrap();
                    }
                    got += 1;
                }
                got
            })
        })
        .collect();
    for i in 0..ITEMS {
        queue.put(i).unwrap();
    }
    let got: u64 = consumers.into_iter().map(|c| c.join().unwrap()).sum();
    assert_eq!(got, ITEMS);
    assert!(queue.is_empty());
}
