//! The async pipeline: on a tokio runtime, a producer task outruns a consumer task, the
//! backlog spills to disk, and `sync_async` makes what is left durable before the program
//! exits. Run it again and the consumer first drains what the last run left, in order.
//!
//! ```text
//! cargo run --release --example async_pipeline            # leaves a backlog
//! cargo run --release --example async_pipeline            # drains it, leaves another
//! cargo run --release --example async_pipeline -- DIR     # use another queue directory
//! ```

use anyhow::{Context, ensure};
use serde::{Deserialize, Serialize};
use spillq::Queue;
use std::time::{Duration, Instant};

#[derive(Debug, Serialize, Deserialize)]
struct Event {
    /// Which run put it, and its place in that run.
    run: u64,
    id: u64,
    #[serde(with = "serde_bytes")]
    body: Vec<u8>,
}

const EVENTS: u64 = 500_000;
/// The consumer takes this share of the events; the rest stays for the next run.
const TAKEN: u64 = EVENTS * 3 / 5;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/async-pipeline-queue".to_string());
    let queue: Queue<Event> = Queue::builder(&dir)
        .cache_size(1024)
        .open()
        .with_context(|| format!("opening the queue in {dir}"))?;
    let left = queue.len();
    // Runs are told apart (and ordered) by their start time, in microseconds.
    let run = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_micros(),
    )?;
    println!("{dir}: {left} events left by the last run");
    let started = Instant::now();

    // The producer: as fast as it can, one `put_async` per event. It never blocks a runtime
    // thread, not even under `max_len` or a disk cap, where it would wait for room.
    let producer = {
        let queue = queue.clone();
        tokio::spawn(async move {
            for id in 0..EVENTS {
                let body = format!("event {id} of run {run}").into_bytes();
                queue.put_async(Event { run, id, body }).await?;
            }
            anyhow::Ok(())
        })
    };

    // The consumer: slower (it "works" a little on every 1,000th event), so a backlog builds.
    let consumer = {
        let queue = queue.clone();
        tokio::spawn(async move {
            let (mut from_last_run, mut this_run) = (0u64, 0u64);
            let mut last: Option<(u64, u64)> = None;
            while this_run < TAKEN {
                let event = queue.get_async().await?;
                // In order: within a run by id, and every earlier run before this one.
                if let Some((run, id)) = last {
                    ensure!(
                        (event.run, event.id) > (run, id),
                        "out of order: {}/{} after {run}/{id}",
                        event.run,
                        event.id
                    );
                }
                last = Some((event.run, event.id));
                if event.run == run {
                    this_run += 1;
                } else {
                    from_last_run += 1;
                }
                if event.id % 1000 == 0 {
                    tokio::time::sleep(Duration::from_micros(50)).await;
                }
            }
            anyhow::Ok(from_last_run)
        })
    };

    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    while !producer.is_finished() || !consumer.is_finished() {
        ticker.tick().await;
        let stats = queue.stats();
        println!(
            "{:>6.2} s: {:>7} queued ({:>4} in memory, {:>7} on disk, {} segments)",
            started.elapsed().as_secs_f64(),
            stats.len,
            stats.in_memory,
            stats.on_disk,
            stats.segments
        );
    }
    producer.await??;
    let from_last_run = consumer.await??;

    // What is left is durable before the program exits; the next run resumes it.
    queue.sync_async().await?;
    let stats = queue.stats();
    println!(
        "took {from_last_run} events from the last run and {TAKEN} of this one's {EVENTS} in \
         {:.2} s; {} left on disk for the next run ({} fsyncs)",
        started.elapsed().as_secs_f64(),
        stats.len,
        stats.fsyncs
    );
    ensure!(
        stats.len as u64 == left as u64 + EVENTS - TAKEN - from_last_run,
        "the count is off"
    );
    queue.close()?;
    Ok(())
}
