//! A process that both produces and forwards is killed (SIGKILL) again and again, on a queue
//! with the default `Durability::OnSync` and a small cache, so that the forwarder keeps taking
//! items that are only in memory. spillq gives such an item its sequence number when the
//! forwarder takes it, and writes the record later; a kill before then loses the record, and
//! after the reopen the same sequence number goes to a later item. Had the forwarder already
//! published the lost item, JetStream would take the later item for a duplicate of it (same
//! `Nats-Msg-Id`), and the forwarder would remove it from the queue: silently lost. The
//! forwarder publishes only what is durable in the queue, so that cannot happen.
//!
//! What the stream must hold at the end:
//! - no item twice, in queue order;
//! - every item of the last run, which closes its queue cleanly (`close` syncs);
//! - of each killed run, a prefix of its items: those that reached the queue's log before the
//!   kill, and no gap after the first one lost. (Items that never reached the log are lost
//!   with the process, as `OnSync` allows; spillq writes its log in queue order.)
//!
//! The children are this test binary again, running only `producing_child`.

mod support;

use anyhow::Context as _;
use async_nats::jetstream;
use spillq_nats::Forwarder;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncBufReadExt, BufReader};

const QUEUE_VARIABLE: &str = "SPILLQ_NATS_CHILD_QUEUE";
const URL_VARIABLE: &str = "SPILLQ_NATS_CHILD_URL";
const RUN_VARIABLE: &str = "SPILLQ_NATS_CHILD_RUN";
/// Set for the last run only: how many items it puts before it closes the queue.
const LAST_ITEMS_VARIABLE: &str = "SPILLQ_NATS_CHILD_LAST_ITEMS";

/// The items of run `r` are `r * RUN_SPAN + i`, `i` counting from 0.
const RUN_SPAN: u64 = 1_000_000;
/// Runs, the last one not killed.
const RUNS: u64 = 5;
/// A killed run is killed once its forwarder has had this many acknowledgements.
const KILL_AFTER: u64 = 15_000;
/// Items the last run puts.
const LAST_ITEMS: u64 = 30_000;
/// The queue's cache, and its `max_len`: producers wait at the bound, so the queue stays in
/// memory and every item the forwarder takes is one spillq writes only then. Much smaller
/// than what spillq frames before it writes (256 KiB of records, about ten thousand of these
/// items), so that a kill almost always finds items framed, published and not yet written.
const CACHE: usize = 1024;

/// A producer and a forwarder on one queue. Prints `ACKED <n>` lines (the forwarder's
/// acknowledgements so far) until it is killed; the last run puts its items, waits until the
/// queue is drained, closes it and exits. Does nothing when run by hand.
#[test]
#[ignore = "the producing and forwarding process of the test below, started by it"]
fn producing_child() -> anyhow::Result<()> {
    let (Some(queue_dir), Ok(url), Ok(run)) = (
        std::env::var_os(QUEUE_VARIABLE),
        std::env::var(URL_VARIABLE),
        std::env::var(RUN_VARIABLE),
    ) else {
        return Ok(());
    };
    let run: u64 = run.parse()?;
    let last_items: Option<u64> = std::env::var(LAST_ITEMS_VARIABLE)
        .ok()
        .map(|items| items.parse())
        .transpose()?;
    log_to_stderr();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let queue = spillq::Queue::<u64>::builder(&queue_dir)
            .cache_size(CACHE)
            .max_len(CACHE)
            .open()?;
        let js = jetstream::new(connect(&[url]).await?);
        let forwarder = Arc::new(Forwarder::new(queue.clone(), js, "items"));
        let forwarding = tokio::spawn({
            let forwarder = Arc::clone(&forwarder);
            async move { forwarder.run().await }
        });
        let producer = std::thread::spawn({
            let queue = queue.clone();
            move || -> Result<(), spillq::Error> {
                for i in 0..last_items.unwrap_or(RUN_SPAN) {
                    queue.put(run * RUN_SPAN + i)?;
                }
                Ok(())
            }
        });
        loop {
            println!("ACKED {}", forwarder.stats().acknowledged);
            if forwarding.is_finished() {
                // Only an error ends the run while the queue is open.
                forwarding.await??;
                anyhow::bail!("the forwarder returned while the queue was open");
            }
            if producer.is_finished() && queue.is_empty() && queue.stats().unacked == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        producer
            .join()
            .map_err(|_| anyhow::anyhow!("the producer panicked"))??;
        queue.close()?;
        forwarding.await??;
        println!("DONE {:?}", forwarder.stats());
        anyhow::Ok(())
    })
}

/// Starts run `run` of `producing_child`; its stdout is piped, and it is killed when dropped.
fn start_child(
    queue_dir: &std::path::Path,
    url: &str,
    run: u64,
) -> anyhow::Result<tokio::process::Child> {
    let mut command = tokio::process::Command::new(std::env::current_exe()?);
    command
        .args(["--ignored", "--exact", "producing_child", "--nocapture"])
        .env(QUEUE_VARIABLE, queue_dir)
        .env(URL_VARIABLE, url)
        .env(RUN_VARIABLE, run.to_string())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    if run == RUNS - 1 {
        command.env(LAST_ITEMS_VARIABLE, LAST_ITEMS.to_string());
    }
    Ok(command.spawn()?)
}

/// The items of run `run` found in the stream, in stream order.
fn items_of_run(items: &[u64], run: u64) -> Vec<u64> {
    items
        .iter()
        .filter(|&&item| item / RUN_SPAN == run)
        .map(|&item| item % RUN_SPAN)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_killed_before_they_were_written_do_not_cost_later_items() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::single(dir.path(), "")?;
    let js = jetstream::new(connect(&[server.url()]).await?);
    create_stream(&js, stream_config("ITEMS", "items", 1)).await?;
    let queue_dir = dir.path().join("queue");

    for run in 0..RUNS {
        let mut child = start_child(&queue_dir, &server.url(), run)?;
        let stdout = child.stdout.take().context("the child's stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let killed = run < RUNS - 1;
        let mut acked = 0;
        tokio::time::timeout(DEADLINE, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(count) = line.strip_prefix("ACKED ") {
                    acked = count.parse()?;
                    if killed && acked >= KILL_AFTER {
                        // The producer and the forwarder are both busy now.
                        child.kill().await?;
                        return anyhow::Ok(());
                    }
                }
            }
            let status = child.wait().await?;
            anyhow::ensure!(
                !killed && status.success(),
                "run {run} ended on its own ({status}) after {acked} acknowledgements"
            );
            Ok(())
        })
        .await
        .with_context(|| format!("run {run} did not finish in time"))??;
        eprintln!(
            "run {run}: {acked} acknowledged, then {}",
            if killed { "killed" } else { "closed" }
        );
    }

    let queue = spillq::Queue::<u64>::open(&queue_dir)?;
    assert!(queue.is_empty(), "{} items left in the queue", queue.len());
    drop(queue);
    let items = read_items(&js, "ITEMS").await?;

    let mut sorted = items.clone();
    sorted.sort_unstable();
    let twice: Vec<u64> = sorted
        .windows(2)
        .filter(|pair| pair[0] == pair[1])
        .map(|pair| pair[0])
        .collect();
    assert!(
        twice.is_empty(),
        "{} items are in the stream twice (first: {:?})",
        twice.len(),
        twice.iter().take(5).collect::<Vec<_>>()
    );
    let mut gaps = Vec::new();
    for run in 0..RUNS {
        let mut present = items_of_run(&items, run);
        present.sort_unstable();
        let expected = if run == RUNS - 1 {
            LAST_ITEMS
        } else {
            present.last().map_or(0, |last| last + 1)
        };
        let missing: Vec<u64> = (0..expected)
            .filter(|item| present.binary_search(item).is_err())
            .collect();
        eprintln!(
            "run {run}: {} items in the stream, {} missing below {expected}",
            present.len(),
            missing.len()
        );
        if !missing.is_empty() {
            gaps.push(format!(
                "run {run}: {} of its first {expected} items missing (first: {:?})",
                missing.len(),
                missing.iter().take(5).collect::<Vec<_>>()
            ));
        }
    }
    assert!(
        gaps.is_empty(),
        "items taken for duplicates of lost items whose sequence numbers they got: {}",
        gaps.join("; ")
    );
    if let Some(at) = items.windows(2).position(|pair| pair[0] > pair[1]) {
        panic!(
            "out of order at stream position {at}: {} then {}",
            items[at],
            items[at + 1]
        );
    }
    Ok(())
}
