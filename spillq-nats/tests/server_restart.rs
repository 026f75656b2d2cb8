//! One JetStream server, killed (SIGKILL) while a million items are being forwarded and
//! restarted on the same store: the stream holds every item exactly once, in queue order.

mod support;

use spillq_nats::Forwarder;
use std::sync::Arc;
use support::*;

const ITEMS: u64 = 1_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_and_restarted_mid_stream() -> anyhow::Result<()> {
    log_to_stderr();
    let dir = tempfile::tempdir()?;
    let mut server = Server::single(dir.path(), "")?;
    let queue_dir = dir.path().join("queue");
    fill_queue(&queue_dir, ITEMS)?;

    let client = connect(&[server.url()]).await?;
    let js = async_nats::jetstream::new(client.clone());
    create_stream(&js, stream_config("ITEMS", "items", 1)).await?;

    let queue = spillq::Queue::<u64>::open(&queue_dir)?;
    let forwarder = Arc::new(Forwarder::new(queue.clone(), js.clone(), "items"));
    let run = tokio::spawn({
        let forwarder = Arc::clone(&forwarder);
        async move { forwarder.run().await }
    });

    wait_until("a third of the items is in the stream", || async {
        stream_messages(&js, "ITEMS").await >= ITEMS / 3
    })
    .await;
    server.kill();
    wait_until("the client saw the server go", || async {
        client.connection_state() != async_nats::connection::State::Connected
    })
    .await;
    server.start()?;

    wait_until("the queue is drained", || async {
        queue.is_empty() && queue.stats().unacked == 0
    })
    .await;
    queue.close()?;
    run.await??;

    let stats = forwarder.stats();
    eprintln!("{stats:?}");
    assert!(
        stats.retried > 0,
        "the outage made the forwarder send again: {stats:?}"
    );
    let items = read_items(&js, "ITEMS").await?;
    assert_exactly_once_in_order(&items, ITEMS);
    Ok(())
}

/// Items JetStream stored whose acknowledgements never reached the forwarder (a killed
/// forwarder, a lost link), then a server restart after the duplicate window: the server no
/// longer knows the stream's last id, and the forwarder reads it from the stream's last message
/// rather than store those items again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restarted_after_the_duplicate_window() -> anyhow::Result<()> {
    use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage};
    use std::time::{Duration, Instant};

    const ITEMS: u64 = 100;
    const STORED: usize = 40;
    const WINDOW: Duration = Duration::from_secs(1);
    log_to_stderr();
    let dir = tempfile::tempdir()?;
    let mut server = Server::single(dir.path(), "")?;
    let js = jetstream::new(connect(&[server.url()]).await?);
    let config = jetstream::stream::Config {
        duplicate_window: WINDOW,
        ..stream_config("ITEMS", "items", 1)
    };
    create_stream(&js, config).await?;
    let queue = spillq::Queue::<u64>::open(dir.path().join("queue"))?;
    queue.put_all(0..ITEMS)?;
    queue.sync()?;

    // The first items' messages, as the forwarder sends them, stored; the items stay in the
    // queue when their guards drop.
    let held: Vec<_> = (0..STORED)
        .map(|_| queue.get_ack())
        .collect::<Result<_, _>>()?;
    for delivery in &held {
        let sequence = delivery
            .sequence()
            .expect("a queued item has a sequence number");
        let message = PublishMessage::build()
            .payload(queue.encode(delivery)?.into())
            .message_id(format!("{}-{sequence}", queue.id()));
        js.send_publish("items", message).await?.await?;
    }
    let stored_at = Instant::now();
    drop(held);
    assert_eq!(queue.len() as u64, ITEMS);

    // Past the duplicate window, so the restarted server rebuilds no last id.
    tokio::time::sleep(WINDOW.saturating_sub(stored_at.elapsed()) + Duration::from_millis(500))
        .await;
    server.kill();
    server.start()?;
    let started = Instant::now();
    loop {
        let probe = PublishMessage::build()
            .payload("probe".into())
            .expected_last_message_id("nobody");
        let answer = match js.send_publish("items", probe).await {
            Ok(ack) => ack.await,
            Err(error) => Err(error),
        };
        match answer {
            Err(error) if error.kind() == PublishErrorKind::WrongLastMessageId => {
                let text = format!("{error}: {:?}", std::error::Error::source(&error));
                assert!(
                    !text.contains(queue.id()),
                    "the restarted server still knows the last id, the test tests nothing: {text}"
                );
                break;
            }
            Ok(ack) => panic!("the probe was stored: {ack:?}"),
            Err(error) => {
                assert!(
                    started.elapsed() < DEADLINE,
                    "JetStream did not come back: {error}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    let forwarder = Arc::new(Forwarder::new(queue.clone(), js.clone(), "items"));
    let run = tokio::spawn({
        let forwarder = Arc::clone(&forwarder);
        async move { forwarder.run().await }
    });
    wait_until("the queue is drained", || async {
        queue.is_empty() && queue.stats().unacked == 0
    })
    .await;
    queue.close()?;
    run.await??;

    let stats = forwarder.stats();
    assert_eq!(stats.found_in_stream, STORED as u64, "{stats:?}");
    assert_exactly_once_in_order(&read_items(&js, "ITEMS").await?, ITEMS);
    Ok(())
}
