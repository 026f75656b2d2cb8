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
