//! Forwards a local spillq queue of MessagePack values into NATS JetStream until Ctrl-C or
//! until the queue is closed.
//!
//! ```text
//! cargo run --release --example forward -- <queue dir> <server url> <subject>
//! cargo run --release --example forward -- /var/lib/edge/queue nats://127.0.0.1:4222 events
//! ```
//!
//! A stream must capture the subject (for example `nats stream add EVENTS --subjects events`).
//! The items are read as `rmpv::Value`, any MessagePack value, so the example forwards a queue
//! of any item type written with spillq's default codec; a program of your own would use its
//! item type. Set `RUST_LOG=spillq_nats=debug` for more detail.

use anyhow::Context as _;
use spillq_nats::Forwarder;

/// Any value the producers stored.
type Item = rmpv::Value;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "spillq_nats=info".into()),
        )
        .init();
    let mut args = std::env::args().skip(1);
    let usage = "usage: forward <queue dir> <server url> <subject>";
    let queue_dir = args.next().context(usage)?;
    let url = args.next().context(usage)?;
    let subject = args.next().context(usage)?;

    let queue = spillq::Queue::<Item>::open(&queue_dir)
        .with_context(|| format!("opening the queue in {queue_dir}"))?;
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(url.as_str())
        .await?;
    let forwarder = Forwarder::new(queue.clone(), async_nats::jetstream::new(client), subject);

    let run = forwarder.run();
    tokio::pin!(run);
    let result = tokio::select! {
        result = &mut run => result,
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("Ctrl-C: settling what is in flight");
            forwarder.stop();
            run.await
        }
    };
    let stats = forwarder.stats();
    println!(
        "published {}, acknowledged {}, sent again {}, duplicates {}; {} items left in the queue",
        stats.published,
        stats.acknowledged,
        stats.retried,
        stats.duplicates,
        queue.len()
    );
    // Close explicitly to see a sync error, if any; a queue closed by someone else is fine.
    match queue.close() {
        Ok(()) | Err(spillq::Error::Closed) => {}
        Err(error) => return Err(error.into()),
    }
    Ok(result?)
}
