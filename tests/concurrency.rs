//! Many producers and consumers at once.

mod common;

use spillq::Queue;
use std::collections::HashMap;
use std::thread;

fn many_producers_and_consumers(cache_size: usize, segment_size: u64) {
    run(4, 4, 250_000, cache_size, segment_size);
}

fn run(producers: u64, consumers: usize, per_producer: u64, cache_size: usize, segment_size: u64) {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::<(u64, u64)>::builder(dir.path())
        .cache_size(cache_size)
        .segment_size(segment_size)
        .open()
        .unwrap();
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
    while !queue.is_empty() {
        thread::yield_now();
    }
    queue.close().unwrap();
    let mut seen: HashMap<u64, Vec<bool>> = HashMap::new();
    let mut total = 0;
    for consumer in consumer_threads {
        let got = consumer.join().unwrap();
        total += got.len() as u64;
        // Each consumer sees every producer's items in that producer's order.
        let mut last: HashMap<u64, u64> = HashMap::new();
        for (p, i) in got {
            if let Some(&previous) = last.get(&p) {
                assert!(i > previous, "producer {p}: {i} after {previous}");
            }
            last.insert(p, i);
            let flags = seen
                .entry(p)
                .or_insert_with(|| vec![false; per_producer as usize]);
            assert!(!flags[i as usize], "({p}, {i}) delivered twice");
            flags[i as usize] = true;
        }
    }
    assert_eq!(total, producers * per_producer);
    assert!(seen.values().all(|flags| flags.iter().all(|&f| f)));
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
