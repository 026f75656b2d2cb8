//! The forwarding process is killed (SIGKILL) mid-stream and started again on the same queue.
//! Items JetStream stored but the queue had not yet removed come out of the queue again; the
//! stream still holds every item exactly once, in order: within the duplicate window JetStream
//! drops them as duplicates, after it the forwarder finds them in the stream.
//!
//! The forwarder runs in a child process: this test binary again, running only
//! `forwarding_child`.

mod support;

use anyhow::Context as _;
use async_nats::jetstream;
use spillq_nats::Forwarder;
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use support::*;

const ITEMS: u64 = 200_000;
const QUEUE_VARIABLE: &str = "SPILLQ_NATS_CHILD_QUEUE";
const URL_VARIABLE: &str = "SPILLQ_NATS_CHILD_URL";

/// A child process, killed and reaped when dropped (also when the test fails).
struct ChildProcess(Child);

impl ChildProcess {
    /// Starts a forwarding child; its standard output goes to `output`.
    fn forwarding(
        queue_dir: &std::path::Path,
        url: &str,
        output: &std::path::Path,
    ) -> anyhow::Result<Self> {
        let child = Command::new(std::env::current_exe()?)
            .args(["--ignored", "--exact", "forwarding_child", "--nocapture"])
            .env(QUEUE_VARIABLE, queue_dir)
            .env(URL_VARIABLE, url)
            .stdout(std::fs::File::create(output)?)
            .spawn()?;
        Ok(Self(child))
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// Waits for the child to exit on its own and checks that it succeeded.
    fn wait_success(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait()? {
                anyhow::ensure!(status.success(), "the forwarding child failed: {status}");
                return Ok(());
            }
            anyhow::ensure!(
                started.elapsed() < DEADLINE,
                "the forwarding child did not finish"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The forwarding process: forwards the queue in `$SPILLQ_NATS_CHILD_QUEUE` to the server at
/// `$SPILLQ_NATS_CHILD_URL` until the queue is drained. Does nothing when run by hand.
#[test]
#[ignore = "the forwarding process of the tests below, started by them"]
fn forwarding_child() -> anyhow::Result<()> {
    let (Some(queue_dir), Some(url)) = (
        std::env::var_os(QUEUE_VARIABLE),
        std::env::var(URL_VARIABLE).ok(),
    ) else {
        return Ok(());
    };
    log_to_stderr();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let queue = spillq::Queue::<u64>::open(&queue_dir)?;
        let js = jetstream::new(connect(&[url]).await?);
        let forwarder = Forwarder::new(queue.clone(), js, "items");
        let run = forwarder.run();
        tokio::pin!(run);
        tokio::select! {
            result = &mut run => result?,
            () = wait_until("the queue is drained", || async {
                queue.is_empty() && queue.stats().unacked == 0
            }) => {
                forwarder.stop();
                run.await?;
            }
        }
        let stats = forwarder.stats();
        println!("forwarding child: {stats:?}");
        println!("FOUND {}", stats.found_in_stream);
        queue.close()?;
        anyhow::Ok(())
    })
}

/// Forwards `ITEMS` items with a child process, kills it when a third is in the stream, waits
/// `pause`, and lets a second child finish the queue. Returns how many items the second child
/// found in the stream (removed from the queue without sending them again).
async fn kill_and_restart(duplicate_window: Duration, pause: Duration) -> anyhow::Result<u64> {
    let dir = tempfile::tempdir()?;
    let server = Server::single(dir.path(), "")?;
    let js = jetstream::new(connect(&[server.url()]).await?);
    let config = jetstream::stream::Config {
        duplicate_window,
        ..stream_config("ITEMS", "items", 1)
    };
    create_stream(&js, config).await?;
    let queue_dir = dir.path().join("queue");
    fill_queue(&queue_dir, ITEMS)?;

    let mut first =
        ChildProcess::forwarding(&queue_dir, &server.url(), &dir.path().join("first.out"))?;
    wait_until("a third of the items is in the stream", || async {
        stream_messages(&js, "ITEMS").await >= ITEMS / 3
    })
    .await;
    first.kill();
    let stored_at_kill = stream_messages(&js, "ITEMS").await;
    tokio::time::sleep(pause).await;
    let left = spillq::Queue::<u64>::open(&queue_dir)?.len() as u64;
    eprintln!("killed with {stored_at_kill} items in the stream and {left} in the queue");
    assert!(
        left + stored_at_kill > ITEMS,
        "some items are both in the stream and back in the queue, or the test tests nothing"
    );

    let output = dir.path().join("second.out");
    let mut second = ChildProcess::forwarding(&queue_dir, &server.url(), &output)?;
    tokio::task::spawn_blocking(move || second.wait_success()).await??;
    let output = std::fs::read_to_string(&output)?;
    let found = output
        .lines()
        .find_map(|line| line.strip_prefix("FOUND "))
        .with_context(|| format!("no FOUND line from the second child: {output}"))?
        .trim()
        .parse()?;

    assert!(spillq::Queue::<u64>::open(&queue_dir)?.is_empty());
    let items = read_items(&js, "ITEMS").await?;
    assert_exactly_once_in_order(&items, ITEMS);
    Ok(found)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarder_killed_and_restarted_within_the_duplicate_window() -> anyhow::Result<()> {
    kill_and_restart(Duration::from_secs(120), Duration::ZERO).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarder_killed_and_restarted_after_the_duplicate_window() -> anyhow::Result<()> {
    // The pause outlasts the window: JetStream no longer knows the ids of the items stored
    // before the kill, and only the stream's last id keeps them from being stored twice.
    let found = kill_and_restart(Duration::from_millis(500), Duration::from_secs(2)).await?;
    assert!(
        found > 0,
        "the items stored before the kill were found in the stream"
    );
    Ok(())
}
