//! A three-node JetStream cluster with a replicated (R3) stream: the stream's leader is killed
//! (SIGKILL) while items are being forwarded. The two servers left elect a new leader, and the
//! stream holds every item exactly once, in queue order.

mod support;

use spillq_nats::Forwarder;
use std::sync::Arc;
use support::*;

const ITEMS: u64 = 200_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_leader_killed_mid_stream() -> anyhow::Result<()> {
    log_to_stderr();
    let dir = tempfile::tempdir()?;
    let mut servers = Server::cluster(dir.path())?;
    let queue_dir = dir.path().join("queue");
    fill_queue(&queue_dir, ITEMS)?;

    let urls: Vec<String> = servers.iter().map(Server::url).collect();
    let client = connect(&urls).await?;
    let js = async_nats::jetstream::new(client);
    create_stream(&js, stream_config("ITEMS", "items", 3)).await?;

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
    let leader = stream_leader(&js, "ITEMS").await;
    let killed = servers
        .iter_mut()
        .find(|server| server.name == leader)
        .expect("the leader is one of ours");
    killed.kill();
    let left_at_kill = queue.len() + queue.stats().unacked;
    eprintln!("killed the stream leader {leader} with {left_at_kill} items not yet removed");
    assert!(
        left_at_kill > 0,
        "the leader was killed after the forwarding ended"
    );

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
        "the lost leader made the forwarder send again: {stats:?}"
    );
    let new_leader = stream_leader(&js, "ITEMS").await;
    assert_ne!(new_leader, leader, "a new leader took over");
    let items = read_items(&js, "ITEMS").await?;
    assert_exactly_once_in_order(&items, ITEMS);
    Ok(())
}
