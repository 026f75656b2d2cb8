//! Many producers, many consumers, one queue: each producer's items come out in its order,
//! every item exactly once, while the backlog spills to disk.
//!
//! `cargo run --release --example mpmc`

use spillq::Queue;
use std::collections::HashMap;
use std::thread;

const PRODUCERS: u64 = 4;
const CONSUMERS: usize = 4;
const PER_PRODUCER: u64 = 100_000;

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let queue = Queue::<(u64, u64)>::builder(dir.path())
        .cache_size(256)
        .segment_size(4 << 20)
        .open()?;

    let producers: Vec<_> = (0..PRODUCERS)
        .map(|producer| {
            let queue = queue.clone();
            thread::spawn(move || -> Result<(), spillq::Error> {
                for i in 0..PER_PRODUCER {
                    queue.put((producer, i))?;
                }
                Ok(())
            })
        })
        .collect();
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            let queue = queue.clone();
            // `iter` ends when the queue is closed.
            thread::spawn(move || queue.iter().collect::<Result<Vec<_>, _>>())
        })
        .collect();

    for producer in producers {
        producer.join().expect("producer")?;
    }
    println!(
        "produced {}; backlog now {:?}",
        PRODUCERS * PER_PRODUCER,
        queue.stats()
    );
    while !queue.is_empty() {
        thread::yield_now();
    }
    queue.close()?;

    let mut total = 0;
    for (n, consumer) in consumers.into_iter().enumerate() {
        let items = consumer.join().expect("consumer")?;
        let mut last: HashMap<u64, u64> = HashMap::new();
        for (producer, i) in &items {
            let previous = last.insert(*producer, *i);
            anyhow::ensure!(
                previous.is_none_or(|p| p < *i),
                "producer {producer} out of order"
            );
        }
        println!(
            "consumer {n}: {} items, each producer's in order",
            items.len()
        );
        total += items.len() as u64;
    }
    anyhow::ensure!(total == PRODUCERS * PER_PRODUCER, "{total} items came out");
    println!("all {total} items delivered exactly once");
    Ok(())
}
