//! Test support: real `nats-server` processes on free loopback ports, with their stores in temp
//! dirs, killed when dropped (so also when a test fails); and the checks a user makes on a
//! stream.

#![allow(dead_code, unreachable_pub)] // Each test file uses a part of this module.

use anyhow::{Context as _, bail, ensure};
use async_nats::jetstream::{self, stream};
use futures_util::StreamExt;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a condition may take before a test gives up on it: generous, so a slow or busy
/// machine does not fail a test, and bounded, so a broken one does not hang.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// The `nats-server` binary: `$NATS_SERVER`, or the first on `PATH` or in `/usr/sbin` (where
/// Debian's package puts it).
pub fn nats_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "nats-server not found on PATH or in /usr/sbin: install Debian's package \
                 `nats-server` (apt-get install -y nats-server), or set NATS_SERVER to the binary"
            )
        })
}

/// `count` distinct free loopback ports. The listeners are held until all are picked, so no
/// port comes twice; another process could still take one before the server binds it, which
/// the server's start-up check reports.
pub fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a loopback port"))
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().expect("local address").port())
        .collect()
}

/// One `nats-server` with JetStream, on a loopback port, its store and log in `dir`.
pub struct Server {
    pub name: String,
    pub port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Server {
    /// A stand-alone server. `extra` goes into its configuration file as is.
    pub fn single(dir: &Path, extra: &str) -> anyhow::Result<Self> {
        let port = free_ports(1)[0];
        let mut server = Self::configure(dir, "single", port, extra)?;
        server.start()?;
        Ok(server)
    }

    /// Three servers forming a JetStream cluster.
    pub fn cluster(dir: &Path) -> anyhow::Result<Vec<Self>> {
        let ports = free_ports(6);
        let (client_ports, route_ports) = ports.split_at(3);
        let routes: Vec<String> = route_ports
            .iter()
            .map(|port| format!("nats-route://127.0.0.1:{port}"))
            .collect();
        let mut servers = Vec::new();
        for (index, (&port, &route_port)) in client_ports.iter().zip(route_ports).enumerate() {
            let cluster = format!(
                "cluster {{\n  name: spillq\n  listen: 127.0.0.1:{route_port}\n  routes: [{}]\n}}\n",
                routes.join(", ")
            );
            servers.push(Self::configure(
                dir,
                &format!("n{}", index + 1),
                port,
                &cluster,
            )?);
        }
        for server in &mut servers {
            server.start()?;
        }
        Ok(servers)
    }

    fn configure(dir: &Path, name: &str, port: u16, extra: &str) -> anyhow::Result<Self> {
        let store = dir.join(name);
        std::fs::create_dir_all(&store)?;
        let config = dir.join(format!("{name}.conf"));
        let text = format!(
            "server_name: {name}\nlisten: 127.0.0.1:{port}\n\
             jetstream {{\n  store_dir: {store:?}\n}}\n{extra}\n",
            store = store.display().to_string(),
        );
        std::fs::write(&config, text)?;
        Ok(Self {
            name: name.to_string(),
            port,
            config,
            log: dir.join(format!("{name}.log")),
            child: None,
        })
    }

    /// Starts the server (again, on the same port and store) and waits until it takes
    /// connections.
    pub fn start(&mut self) -> anyhow::Result<()> {
        ensure!(self.child.is_none(), "{} is already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(nats_server_binary())
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start nats-server")?;
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(child) = &mut self.child
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!(
                    "{} exited at start ({status}); see {}",
                    self.name,
                    self.log.display()
                );
            }
            ensure!(
                started.elapsed() < DEADLINE,
                "{} did not listen on port {} in time",
                self.name,
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Kills the server with SIGKILL, as a crash would, and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A client for tests: reconnects every 50 ms, so tests do not wait on the client's growing
/// reconnect delay.
pub async fn connect(urls: &[String]) -> anyhow::Result<async_nats::Client> {
    let addresses: Vec<async_nats::ServerAddr> = urls
        .iter()
        .map(|url| url.parse())
        .collect::<Result<_, _>>()?;
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .reconnect_delay_callback(|_| Duration::from_millis(50))
        .max_reconnects(None)
        .connect(addresses.as_slice())
        .await?;
    Ok(client)
}

/// Creates the stream `name` capturing `subject`, retrying while JetStream is not ready (a
/// cluster without a meta leader yet).
pub async fn create_stream(
    js: &jetstream::Context,
    config: stream::Config,
) -> anyhow::Result<stream::Stream> {
    let started = Instant::now();
    loop {
        match js.get_or_create_stream(config.clone()).await {
            Ok(stream) => return Ok(stream),
            Err(error) if started.elapsed() < DEADLINE => {
                eprintln!("stream not created yet: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// A stream config capturing one subject, file storage, the given replicas.
pub fn stream_config(name: &str, subject: &str, replicas: usize) -> stream::Config {
    stream::Config {
        name: name.to_string(),
        subjects: vec![subject.to_string()],
        num_replicas: replicas,
        storage: stream::StorageType::File,
        ..Default::default()
    }
}

/// Messages the stream holds, asked until the server answers; fails the test after
/// [`DEADLINE`].
pub async fn stream_messages(js: &jetstream::Context, name: &str) -> u64 {
    let started = Instant::now();
    loop {
        let answer = tokio::time::timeout(Duration::from_secs(5), async {
            js.get_stream(name)
                .await?
                .info()
                .await
                .map(|info| info.state.messages)
                .map_err(anyhow::Error::from)
        })
        .await;
        match answer {
            Ok(Ok(messages)) => return messages,
            Ok(Err(error)) => assert!(
                started.elapsed() < DEADLINE,
                "the stream {name} gave no state: {error:#}"
            ),
            Err(_elapsed) => assert!(
                started.elapsed() < DEADLINE,
                "the stream {name} gave no state in time"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `condition` holds, checking every 20 ms, and fails the test with `what` after
/// [`DEADLINE`].
pub async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !condition().await {
        assert!(
            started.elapsed() < DEADLINE,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every message of the stream, in stream order, decoded as the queue's `u64` items (MessagePack,
/// spillq's default codec). Asks again while the JetStream API does not answer (a cluster that
/// just lost a server).
pub async fn read_items(js: &jetstream::Context, name: &str) -> anyhow::Result<Vec<u64>> {
    let started = Instant::now();
    loop {
        match read_items_once(js, name).await {
            Ok(items) => return Ok(items),
            Err(error) if started.elapsed() < DEADLINE => {
                eprintln!("reading the stream failed, trying again: {error:#}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// The server name of the stream's leader, asked until the API answers with one.
pub async fn stream_leader(js: &jetstream::Context, name: &str) -> String {
    let started = Instant::now();
    loop {
        let answer = tokio::time::timeout(Duration::from_secs(5), async {
            let mut stream = js.get_stream(name).await?;
            let info = stream.info().await?;
            anyhow::Ok(info.cluster.clone().and_then(|cluster| cluster.leader))
        })
        .await;
        if let Ok(Ok(Some(leader))) = answer {
            return leader;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the stream {name} has no leader"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn read_items_once(js: &jetstream::Context, name: &str) -> anyhow::Result<Vec<u64>> {
    let stream = js.get_stream(name).await?;
    let total = stream_messages(js, name).await;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await?;
    let mut messages = consumer.messages().await?;
    let mut items = Vec::with_capacity(total as usize);
    while (items.len() as u64) < total {
        let message = tokio::time::timeout(Duration::from_secs(30), messages.next())
            .await
            .context("no message from the stream for 30 s")?
            .context("the consumer ended")?
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        items.push(rmp_serde::from_slice(&message.payload)?);
    }
    Ok(items)
}

/// Checks that `items` are exactly `0..count`, in order, and says where they are not.
pub fn assert_exactly_once_in_order(items: &[u64], count: u64) {
    let mut seen = vec![0u32; count as usize];
    for &item in items {
        assert!(item < count, "the stream holds {item}, never put");
        seen[item as usize] += 1;
    }
    let missing: Vec<u64> = (0..count).filter(|&i| seen[i as usize] == 0).collect();
    let twice: Vec<u64> = (0..count).filter(|&i| seen[i as usize] > 1).collect();
    assert!(
        missing.is_empty() && twice.is_empty(),
        "{} items missing (first: {:?}), {} twice (first: {:?})",
        missing.len(),
        missing.iter().take(5).collect::<Vec<_>>(),
        twice.len(),
        twice.iter().take(5).collect::<Vec<_>>()
    );
    if let Some(at) = items.windows(2).position(|pair| pair[0] > pair[1]) {
        panic!(
            "out of order at stream position {at}: {} then {}",
            items[at],
            items[at + 1]
        );
    }
}

/// A queue of `count` items `0..count` in `dir`, closed.
pub fn fill_queue(dir: &Path, count: u64) -> anyhow::Result<()> {
    let queue = spillq::Queue::<u64>::open(dir)?;
    let mut next = 0;
    while next < count {
        let end = (next + 10_000).min(count);
        queue.put_all(next..end)?;
        next = end;
    }
    queue.close()?;
    Ok(())
}

/// Installs a log subscriber for the forwarder's warnings (`RUST_LOG` overrides), once.
pub fn log_to_stderr() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "spillq_nats=info".into()),
        )
        .with_test_writer()
        .try_init();
}
