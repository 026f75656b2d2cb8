//! The server refuses: no stream for the subject, a message larger than the stream or the
//! server accepts. `run` returns a clear error and the item stays in the queue, in its place;
//! the items before it are forwarded.

mod support;

use async_nats::jetstream;
use spillq_nats::{Error, Forwarder};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stream_for_the_subject() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::single(dir.path(), "")?;
    let js = jetstream::new(connect(&[server.url()]).await?);
    let queue = spillq::Queue::<u64>::open(dir.path().join("queue"))?;
    queue.put_all([1, 2, 3])?;

    let error = Forwarder::new(queue.clone(), js, "nowhere")
        .run()
        .await
        .unwrap_err();

    assert!(
        matches!(&error, Error::StreamNotFound { subject } if subject == "nowhere"),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("\"nowhere\"") && message.contains("create a stream"),
        "{message}"
    );
    assert_eq!(queue.len(), 3, "every item stays in the queue");
    assert_eq!(queue.stats().unacked, 0);
    assert_eq!(queue.get_batch(10, std::time::Duration::ZERO)?, [1, 2, 3]);
    Ok(())
}

/// Runs a forwarder over `items` until it fails, and returns the error, what the stream holds
/// and what the queue holds.
async fn forward_until_refused(
    server_config: &str,
    max_message_bytes: i32,
    items: Vec<String>,
) -> anyhow::Result<(Error, Vec<String>, Vec<String>)> {
    let dir = tempfile::tempdir()?;
    let server = Server::single(dir.path(), server_config)?;
    let js = jetstream::new(connect(&[server.url()]).await?);
    let config = jetstream::stream::Config {
        max_message_size: max_message_bytes,
        ..stream_config("ITEMS", "items", 1)
    };
    let stream = create_stream(&js, config).await?;
    let queue = spillq::Queue::<String>::open(dir.path().join("queue"))?;
    queue.put_all(items)?;

    let error = Forwarder::new(queue.clone(), js.clone(), "items")
        .run()
        .await
        .expect_err("the server refuses an item");

    let stored = stream.get_info().await?.state.messages;
    let mut in_stream = Vec::new();
    for sequence in 1..=stored {
        let message = stream.get_raw_message(sequence).await?;
        in_stream.push(rmp_serde::from_slice(&message.payload)?);
    }
    assert_eq!(queue.stats().unacked, 0);
    let in_queue = queue.get_batch(100, std::time::Duration::ZERO)?;
    Ok((error, in_stream, in_queue))
}

fn items(big_bytes: usize) -> Vec<String> {
    vec!["a".into(), "b".into(), "x".repeat(big_bytes), "c".into()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_larger_than_the_stream_accepts() -> anyhow::Result<()> {
    let (error, in_stream, in_queue) = forward_until_refused("", 1024, items(4096)).await?;

    assert!(
        matches!(
            error,
            Error::TooLarge {
                sequence: 2,
                max_payload_bytes: None,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("max_msg_size"), "{error}");
    assert_eq!(in_stream, ["a", "b"]);
    assert_eq!(in_queue, items(4096)[2..], "the big item stays at the head");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_larger_than_the_server_accepts() -> anyhow::Result<()> {
    let (error, in_stream, in_queue) =
        forward_until_refused("max_payload: 8192", -1, items(20_000)).await?;

    assert!(
        matches!(
            error,
            Error::TooLarge {
                sequence: 2,
                max_payload_bytes: Some(8192),
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("max_payload"), "{error}");
    assert_eq!(in_stream, ["a", "b"]);
    assert_eq!(
        in_queue,
        items(20_000)[2..],
        "the big item stays at the head"
    );
    Ok(())
}
