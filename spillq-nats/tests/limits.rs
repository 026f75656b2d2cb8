//! A stream at its message limit with the `new` discard policy refuses the next item while
//! the server is reachable: the forwarder backs off instead of sending the window again at full
//! speed, and once the limit is raised every item arrives once, in queue order.

mod support;

use async_nats::jetstream::{self, stream};
use spillq_nats::Forwarder;
use std::sync::Arc;
use std::time::Duration;
use support::*;

const LIMIT: i64 = 1000;
const ITEMS: u64 = 3000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_stream_is_retried_with_backoff() -> anyhow::Result<()> {
    log_to_stderr();
    let dir = tempfile::tempdir()?;
    let server = Server::single(dir.path(), "")?;
    let js = jetstream::new(connect(&[server.url()]).await?);
    let limited = stream::Config {
        max_messages: LIMIT,
        discard: stream::DiscardPolicy::New,
        ..stream_config("ITEMS", "items", 1)
    };
    create_stream(&js, limited.clone()).await?;
    let queue = spillq::Queue::<u64>::open(dir.path().join("queue"))?;
    queue.put_all(0..ITEMS)?;

    let forwarder = Arc::new(
        Forwarder::new(queue.clone(), js.clone(), "items")
            .window_messages(64)
            .initial_backoff(Duration::from_millis(50))
            .max_backoff(Duration::from_millis(500)),
    );
    let run = tokio::spawn({
        let forwarder = Arc::clone(&forwarder);
        async move { forwarder.run().await }
    });

    wait_until("the stream is full", || async {
        stream_messages(&js, "ITEMS").await == LIMIT as u64
    })
    .await;
    wait_until("the forwarder met the limit and sent again", || async {
        forwarder.stats().retried > 0
    })
    .await;
    // A forwarder that resent the window without waiting would publish tens of thousands of
    // messages in this time; one that backs off sends a few windows. A slower machine only
    // makes the count smaller.
    let before = forwarder.stats().published;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let published = forwarder.stats().published - before;
    assert!(
        published < 2000,
        "{published} messages published against a full stream: {:?}",
        forwarder.stats()
    );
    assert_eq!(stream_messages(&js, "ITEMS").await, LIMIT as u64);

    js.update_stream(stream::Config {
        max_messages: -1,
        ..limited
    })
    .await?;
    wait_until("the queue is drained", || async {
        queue.is_empty() && queue.stats().unacked == 0
    })
    .await;
    queue.close()?;
    run.await??;

    assert_exactly_once_in_order(&read_items(&js, "ITEMS").await?, ITEMS);
    Ok(())
}
