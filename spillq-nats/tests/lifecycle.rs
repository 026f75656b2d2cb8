//! How a run ends (the queue closed, `stop`), what the stats say, and the stream's order
//! against other publishers.

mod support;

use async_nats::jetstream;
use spillq_nats::{Error, Forwarder, Ordering};
use std::sync::Arc;
use support::*;

struct Setup {
    _dir: tempfile::TempDir,
    _server: Server,
    js: jetstream::Context,
    queue: spillq::Queue<u64>,
}

async fn setup() -> anyhow::Result<Setup> {
    let dir = tempfile::tempdir()?;
    let server = Server::single(dir.path(), "")?;
    let js = jetstream::new(connect(&[server.url()]).await?);
    create_stream(&js, stream_config("ITEMS", "items", 1)).await?;
    let queue = spillq::Queue::open(dir.path().join("queue"))?;
    Ok(Setup {
        _dir: dir,
        _server: server,
        js,
        queue,
    })
}

async fn drained(queue: &spillq::Queue<u64>) {
    wait_until("the queue is drained", || async {
        queue.is_empty() && queue.stats().unacked == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returns_once_the_queue_is_closed() -> anyhow::Result<()> {
    let Setup {
        js,
        queue,
        _dir,
        _server,
    } = setup().await?;
    queue.put_all(0..1000)?;
    let forwarder = Arc::new(Forwarder::new(queue.clone(), js.clone(), "items"));
    let run = tokio::spawn({
        let forwarder = Arc::clone(&forwarder);
        async move { forwarder.run().await }
    });
    drained(&queue).await;
    queue.put_all(1000..2000)?; // items that come while it runs
    drained(&queue).await;
    queue.close()?;
    run.await??;

    // Each item left the queue once, acknowledged or found in the stream; every message sent
    // was answered or sent again.
    let stats = forwarder.stats();
    assert_eq!(
        stats.acknowledged + stats.found_in_stream,
        2000,
        "{stats:?}"
    );
    assert!(stats.published >= stats.acknowledged, "{stats:?}");
    assert_exactly_once_in_order(&read_items(&js, "ITEMS").await?, 2000);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_settles_what_is_in_flight() -> anyhow::Result<()> {
    let Setup {
        js,
        queue,
        _dir,
        _server,
    } = setup().await?;
    let count = 100_000;
    queue.put_all(0..count)?;
    let forwarder = Forwarder::new(queue.clone(), js.clone(), "items");
    let run = forwarder.run();
    tokio::pin!(run);
    tokio::select! {
        result = &mut run => panic!("run returned before stop: {result:?}"),
        () = wait_until("some items are forwarded", || async { forwarder.stats().acknowledged > 1000 }) => {}
    }
    forwarder.stop();
    run.await?;

    // Every item is either in the stream or in the queue, never both, never neither.
    assert_eq!(queue.stats().unacked, 0);
    let in_queue = queue.get_batch(count as usize, std::time::Duration::ZERO)?;
    let in_stream = read_items(&js, "ITEMS").await?;
    let all: Vec<u64> = in_stream.iter().chain(&in_queue).copied().collect();
    assert_exactly_once_in_order(&all, count);
    assert!(
        forwarder.run().await.is_ok(),
        "a stopped forwarder returns at once"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_at_a_time() -> anyhow::Result<()> {
    let Setup {
        js,
        queue,
        _dir,
        _server,
    } = setup().await?;
    let forwarder = Forwarder::new(queue.clone(), js, "items");
    let first = forwarder.run();
    tokio::pin!(first);
    // Poll the first run once so that it holds the forwarder.
    assert!(futures_util::poll!(&mut first).is_pending());
    assert!(matches!(forwarder.run().await, Err(Error::AlreadyRunning)));
    queue.close()?;
    first.await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_per_queue() -> anyhow::Result<()> {
    let Setup {
        js,
        queue,
        _dir,
        _server,
    } = setup().await?;
    queue.put_all(0..100)?;
    let first = Forwarder::new(queue.clone(), js.clone(), "items");
    let second = Forwarder::new(queue.clone(), js.clone(), "items");
    let run = first.run();
    tokio::pin!(run);
    assert!(futures_util::poll!(&mut run).is_pending());
    let error = second
        .run()
        .await
        .expect_err("the queue has a forwarder running");
    assert!(matches!(error, Error::AlreadyRunning), "{error:?}");
    first.stop();
    run.await?;

    // Once the first run ended, the queue may be forwarded again.
    let run = second.run();
    tokio::pin!(run);
    tokio::select! {
        result = &mut run => panic!("the second run returned early: {result:?}"),
        () = drained(&queue) => queue.close()?,
    }
    run.await?;
    assert_exactly_once_in_order(&read_items(&js, "ITEMS").await?, 100);
    Ok(())
}

/// A context that allows fewer acknowledgements in flight than the forwarder's window: the
/// forwarder takes acknowledgements while it waits for the client, instead of waiting for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_larger_than_the_clients_limit() -> anyhow::Result<()> {
    let Setup {
        js,
        queue,
        _dir,
        _server,
    } = setup().await?;
    queue.put_all(0..5000)?;
    let limited = jetstream::ContextBuilder::new()
        .max_ack_inflight(4)
        .build(js.client());
    let forwarder = Forwarder::new(queue.clone(), limited, "items").window_messages(64);
    let run = forwarder.run();
    tokio::pin!(run);
    tokio::select! {
        result = &mut run => panic!("run returned before the queue was closed: {result:?}"),
        () = drained(&queue) => queue.close()?,
    }
    run.await?;
    assert_exactly_once_in_order(&read_items(&js, "ITEMS").await?, 5000);
    Ok(())
}

/// Forwards an item, lets another publisher write to the stream, then forwards another.
async fn after_another_publisher(ordering: Ordering) -> anyhow::Result<(Result<(), Error>, u64)> {
    let Setup {
        js,
        queue,
        _dir,
        _server,
    } = setup().await?;
    queue.put(0)?;
    let forwarder = Arc::new(Forwarder::new(queue.clone(), js.clone(), "items").ordering(ordering));
    let run = tokio::spawn({
        let forwarder = Arc::clone(&forwarder);
        async move { forwarder.run().await }
    });
    drained(&queue).await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "someone-else-1");
    js.publish_with_headers("items", headers, "x".into())
        .await?
        .await?;
    queue.put(1)?;
    let result = tokio::select! {
        result = run => result?,
        () = drained(&queue) => {
            queue.close()?;
            Ok(())
        }
    };
    Ok((result, stream_messages(&js, "ITEMS").await))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_order_refuses_a_stream_with_another_publisher() -> anyhow::Result<()> {
    let (result, in_stream) = after_another_publisher(Ordering::Strict).await?;
    let error = result.expect_err("the stream has another publisher");
    assert!(
        matches!(&error, Error::OtherPublisher { last_message_id, .. } if last_message_id == "someone-else-1"),
        "{error:?}"
    );
    assert!(error.to_string().contains("Ordering::Shared"), "{error}");
    assert_eq!(
        in_stream, 2,
        "the second item is not stored after the other message"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_order_accepts_another_publisher() -> anyhow::Result<()> {
    let (result, in_stream) = after_another_publisher(Ordering::Shared).await?;
    result?;
    assert_eq!(in_stream, 3);
    Ok(())
}
