//! A producer faster than its consumer: the backlog spills to disk, stats are printed as it
//! goes, and `sync()` makes the backlog durable at the end. Run it again and the second run
//! resumes the backlog the first one left, in order.
//!
//! ```text
//! cargo run --release --example pipeline            # produces, leaves a backlog
//! cargo run --release --example pipeline            # resumes and drains it
//! cargo run --release --example pipeline -- DIR     # use another queue directory
//! ```

use anyhow::{Context, ensure};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use spillq::Queue;
use std::thread;
use std::time::{Duration, Instant};

/// The record of the benchmarks: an id and 92 payload bytes.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    id: u64,
    payload: ByteBuf,
}

const RECORDS: u64 = 1_000_000;

fn payload(id: u64) -> ByteBuf {
    let mut bytes = [0u8; 92];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        let word = id
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(i as u32 * 7);
        chunk.copy_from_slice(&word.to_le_bytes()[..chunk.len()]);
    }
    ByteBuf::from(bytes.to_vec())
}

/// The record must be the one expected next, payload intact.
fn check(record: &Record, expected: u64) -> anyhow::Result<()> {
    ensure!(
        record.id == expected,
        "expected {expected}, got {}",
        record.id
    );
    ensure!(
        record.payload == payload(record.id),
        "payload of {} changed",
        record.id
    );
    Ok(())
}

fn print_stats(label: &str, queue: &Queue<Record>) {
    let stats = queue.stats();
    println!(
        "{label:>10}: {:>8} queued ({:>5} in memory, {:>8} on disk), {:>3} segments, {:>6.1} MiB on disk",
        stats.len,
        stats.in_memory,
        stats.on_disk,
        stats.segments,
        stats.disk_bytes as f64 / (1 << 20) as f64
    );
}

fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .map(Into::into)
        .unwrap_or_else(|| std::env::temp_dir().join("spillq-pipeline-demo"));
    let queue: Queue<Record> = Queue::builder(&dir)
        .cache_size(10_000)
        .segment_size(16 << 20)
        .open()
        .with_context(|| format!("opening {}", dir.display()))?;
    println!("queue directory: {}", dir.display());

    if !queue.is_empty() {
        return resume(queue);
    }

    let started = Instant::now();
    let producer = {
        let queue = queue.clone();
        thread::spawn(move || -> anyhow::Result<()> {
            for id in 0..RECORDS {
                queue.put(Record {
                    id,
                    payload: payload(id),
                })?;
            }
            Ok(())
        })
    };
    // A slow consumer: it takes a batch now and then, so the backlog builds up on disk.
    let mut consumed = 0u64;
    let mut next_report = Instant::now();
    while consumed < RECORDS / 2 {
        for record in queue.get_batch(500, Duration::from_millis(100))? {
            check(&record, consumed)?;
            consumed += 1;
        }
        thread::sleep(Duration::from_micros(200));
        if Instant::now() >= next_report {
            print_stats("running", &queue);
            next_report += Duration::from_millis(250);
        }
    }
    producer.join().expect("producer thread")?;
    queue.sync()?;
    print_stats("synced", &queue);
    println!(
        "produced {RECORDS} and consumed {consumed} records in {:.2?}; the backlog of {} is durable.",
        started.elapsed(),
        queue.len()
    );
    println!("Run the example again to resume it.");
    queue.close()?;
    Ok(())
}

fn resume(queue: Queue<Record>) -> anyhow::Result<()> {
    print_stats("reopened", &queue);
    let started = Instant::now();
    let first = queue
        .peek()?
        .context("a backlog was there a moment ago")?
        .id;
    let mut expected = first;
    for record in queue.try_iter() {
        check(&record?, expected)?;
        expected += 1;
    }
    queue.sync()?;
    print_stats("drained", &queue);
    println!(
        "resumed at record {first} and drained {} records in order in {:.2?}.",
        expected - first,
        started.elapsed()
    );
    queue.close()?;
    Ok(())
}
