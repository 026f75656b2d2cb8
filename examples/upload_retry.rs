//! The seed libraries' consumer loop: peek, upload, delete only on success. Then the same with
//! `get_ack`, which lets several consumers share the work.
//!
//! `cargo run --example upload_retry`

use spillq::Queue;
use std::sync::atomic::{AtomicU32, Ordering};

/// A flaky upload: every third attempt fails.
fn upload(reading: &str, attempts: &AtomicU32) -> bool {
    let attempt = attempts.fetch_add(1, Ordering::Relaxed);
    let ok = attempt % 3 != 2;
    println!(
        "  upload {reading:?}: {}",
        if ok { "ok" } else { "failed, will retry" }
    );
    ok
}

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let queue = Queue::<String>::open(dir.path())?;
    let attempts = AtomicU32::new(0);

    println!("peek, upload, delete on success:");
    queue.put_all((1..=5).map(|i| format!("sensor reading {i}")))?;
    while let Some(reading) = queue.peek()? {
        if upload(&reading, &attempts) {
            queue.delete(1)?;
        }
    }

    println!("get_ack, ack on success (a failed item goes back to the head):");
    queue.put_all((6..=10).map(|i| format!("sensor reading {i}")))?;
    while let Some(delivery) = queue.try_get_ack()? {
        if upload(&delivery, &attempts) {
            delivery.ack()?;
        } else {
            delivery.nack()?;
        }
    }
    assert!(queue.is_empty());
    println!("every reading uploaded exactly once, in order");
    Ok(())
}
