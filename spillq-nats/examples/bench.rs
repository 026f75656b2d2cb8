//! Figures for `docs/benchmarks.md` (forwarding to JetStream), on loopback against one local
//! JetStream server that this program starts (Debian's `nats-server`, or `$NATS_SERVER`):
//!
//! 1. Forwarding rate: the forwarder draining a queue backlog, against a bare async-nats
//!    publisher with the same ack window publishing the same payloads, each into a fresh
//!    stream: without headers, with `Nats-Msg-Id` only (what the forwarder sends in `Shared`
//!    order, and the least its contract allows), and with both of the forwarder's headers
//!    (what it sends in `Strict` order).
//! 2. Drain time: a backlog in the queue while the server is down; the time from the server's
//!    start to an empty queue.
//!
//! ```text
//! cargo run --release --example bench -- [--items 200000] [--backlog 1000000] [--runs 5] [--window 512] [--ordering strict|shared]
//! ```

use anyhow::{Context as _, bail};
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use spillq_nats::Forwarder;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes of an item's text: a small event.
const ITEM_BYTES: usize = 100;

struct Options {
    items: u64,
    backlog: u64,
    runs: usize,
    window: usize,
    ordering: spillq_nats::Ordering,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        items: 200_000,
        backlog: 1_000_000,
        runs: 5,
        window: 512,
        ordering: spillq_nats::Ordering::Strict,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--items" => options.items = value.parse()?,
            "--backlog" => options.backlog = value.parse()?,
            "--runs" => options.runs = value.parse()?,
            "--window" => options.window = value.parse()?,
            "--ordering" => {
                options.ordering = match value.as_str() {
                    "strict" => spillq_nats::Ordering::Strict,
                    "shared" => spillq_nats::Ordering::Shared,
                    _ => bail!("--ordering is strict or shared"),
                }
            }
            _ => bail!("unknown flag {flag}"),
        }
    }
    Ok(options)
}

fn item(index: u64) -> String {
    format!("{index:0width$}", width = ITEM_BYTES)
}

/// The local server: killed when dropped.
struct Server {
    port: u16,
    config: PathBuf,
    child: Option<Child>,
}

impl Server {
    fn new(dir: &Path) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config = dir.join("server.conf");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{port}\njetstream {{\n  store_dir: {:?}\n}}\n",
                dir.join("store").display().to_string()
            ),
        )?;
        Ok(Self {
            port,
            config,
            child: None,
        })
    }

    fn start(&mut self) -> anyhow::Result<()> {
        let binary = std::env::var_os("NATS_SERVER")
            .map(PathBuf::from)
            .or_else(|| {
                ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
                    .map(PathBuf::from)
                    .into_iter()
                    .find(|path| path.is_file())
            })
            .context("nats-server not found: install Debian's package `nats-server`")?;
        self.child = Some(
            Command::new(binary)
                .arg("-c")
                .arg(&self.config)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn fresh_stream(js: &jetstream::Context) -> anyhow::Result<()> {
    let _ = js.delete_stream("BENCH").await;
    js.create_stream(stream::Config {
        name: "BENCH".into(),
        subjects: vec!["bench".into()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await?;
    Ok(())
}

/// The headers a bare publisher sends, with the ids the forwarder would give the same items.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Headers {
    None,
    /// `Nats-Msg-Id`, as the forwarder in `Shared` order.
    MessageId,
    /// `Nats-Msg-Id` and `Nats-Expected-Last-Msg-Id`, as the forwarder in `Strict` order.
    Both,
}

/// A bare publisher: the same payloads, `window` acks in flight, with `headers`. Returns items
/// per second.
async fn bare(
    js: &jetstream::Context,
    payloads: &[Bytes],
    window: usize,
    headers: Headers,
) -> anyhow::Result<f64> {
    fresh_stream(js).await?;
    let started = Instant::now();
    let mut in_flight = FuturesOrdered::new();
    for (index, payload) in payloads.iter().enumerate() {
        if in_flight.len() >= window
            && let Some(answer) = in_flight.next().await
        {
            let _: async_nats::jetstream::publish::PublishAck = answer?;
        }
        let mut message = jetstream::message::PublishMessage::build().payload(payload.clone());
        if headers != Headers::None {
            message = message.message_id(format!("0123456789abcdef0123456789abcdef-{index}"));
            if headers == Headers::Both && index > 0 {
                message = message.expected_last_message_id(format!(
                    "0123456789abcdef0123456789abcdef-{}",
                    index - 1
                ));
            }
        }
        in_flight.push_back(js.send_publish("bench", message).await?.into_future());
    }
    while let Some(answer) = in_flight.next().await {
        answer?;
    }
    Ok(payloads.len() as f64 / started.elapsed().as_secs_f64())
}

fn fill(queue: &spillq::Queue<String>, count: u64) -> anyhow::Result<()> {
    let mut next = 0;
    while next < count {
        let end = (next + 10_000).min(count);
        queue.put_all((next..end).map(item))?;
        next = end;
    }
    queue.sync()?;
    Ok(())
}

/// The forwarder draining a backlog of `count` items. Returns items per second.
async fn forwarder(
    js: &jetstream::Context,
    count: u64,
    window: usize,
    ordering: spillq_nats::Ordering,
) -> anyhow::Result<f64> {
    fresh_stream(js).await?;
    let dir = tempfile::tempdir()?;
    let queue = spillq::Queue::<String>::open(dir.path())?;
    fill(&queue, count)?;
    let forwarder = Arc::new(
        Forwarder::new(queue.clone(), js.clone(), "bench")
            .window_messages(window)
            .ordering(ordering),
    );
    let started = Instant::now();
    let run = tokio::spawn({
        let forwarder = Arc::clone(&forwarder);
        async move { forwarder.run().await }
    });
    drained(&queue).await;
    let elapsed = started.elapsed();
    queue.close()?;
    run.await??;
    Ok(count as f64 / elapsed.as_secs_f64())
}

async fn drained(queue: &spillq::Queue<String>) {
    // A 1 ms poll adds at most 1 ms to a figure measured in seconds.
    while !(queue.is_empty() && queue.stats().unacked == 0) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A backlog of `count` items waiting while the server is down; the time from the server's
/// start to an empty queue.
async fn drain_after_outage(
    server: &mut Server,
    count: u64,
    window: usize,
) -> anyhow::Result<Duration> {
    let client = connect(&server.url()).await?;
    let js = jetstream::new(client.clone());
    fresh_stream(&js).await?;
    let dir = tempfile::tempdir()?;
    let queue = spillq::Queue::<String>::open(dir.path())?;
    server.kill();
    while client.connection_state() == async_nats::connection::State::Connected {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let forwarder =
        Arc::new(Forwarder::new(queue.clone(), js.clone(), "bench").window_messages(window));
    let run = tokio::spawn({
        let forwarder = Arc::clone(&forwarder);
        async move { forwarder.run().await }
    });
    fill(&queue, count)?;
    // The forwarder has met the outage: its first window went unanswered.
    while forwarder.stats().published == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let started = Instant::now();
    server.start()?;
    drained(&queue).await;
    let elapsed = started.elapsed();
    queue.close()?;
    run.await??;
    println!(
        "  drain run: {:.2} s, {:?}",
        elapsed.as_secs_f64(),
        forwarder.stats()
    );
    Ok(elapsed)
}

/// A client that reconnects every 100 ms (the default delay grows to 4 s).
async fn connect(url: &str) -> anyhow::Result<async_nats::Client> {
    Ok(async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .reconnect_delay_callback(|_| Duration::from_millis(100))
        .connect(url)
        .await?)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let options = options()?;
    let dir = tempfile::tempdir()?;
    let mut server = Server::new(dir.path())?;
    server.start()?;
    let client = connect(&server.url()).await?;
    let js = jetstream::new(client);
    let payloads: Vec<Bytes> = {
        let dir = tempfile::tempdir()?;
        let queue = spillq::Queue::<String>::open(dir.path())?;
        (0..options.items)
            .map(|index| queue.encode(&item(index)).map(Bytes::from))
            .collect::<Result<_, _>>()?
    };
    println!(
        "{} items of {} bytes, window {}, {} runs each",
        options.items,
        payloads[0].len(),
        options.window,
        options.runs
    );

    let (mut plain, mut with_id, mut with_both, mut forwarded) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..options.runs {
        let window = options.window;
        plain.push(bare(&js, &payloads, window, Headers::None).await?);
        with_id.push(bare(&js, &payloads, window, Headers::MessageId).await?);
        with_both.push(bare(&js, &payloads, window, Headers::Both).await?);
        forwarded.push(forwarder(&js, options.items, window, options.ordering).await?);
        println!(
            "  run {run}: bare {:.0}/s, bare with Nats-Msg-Id {:.0}/s, bare with both headers \
             {:.0}/s, forwarder ({:?}) {:.0}/s",
            plain[run], with_id[run], with_both[run], options.ordering, forwarded[run]
        );
    }
    let (plain, with_id, with_both, forwarded) = (
        median(plain),
        median(with_id),
        median(with_both),
        median(forwarded),
    );
    println!("median: bare publisher {plain:.0} items/s");
    println!("median: bare publisher with Nats-Msg-Id {with_id:.0} items/s");
    println!("median: bare publisher with both of the forwarder's headers {with_both:.0} items/s");
    println!(
        "median: forwarder ({:?}) {forwarded:.0} items/s = {:.2} of bare, {:.2} of bare with \
         Nats-Msg-Id, {:.2} of bare with both headers",
        options.ordering,
        forwarded / plain,
        forwarded / with_id,
        forwarded / with_both
    );

    let mut drains = Vec::new();
    for _ in 0..options.runs.min(3) {
        drains.push(
            drain_after_outage(&mut server, options.backlog, options.window)
                .await?
                .as_secs_f64(),
        );
    }
    println!(
        "median: {} items drained {:.2} s after the server started",
        options.backlog,
        median(drains)
    );
    Ok(())
}
