//! The comparison harness: spillq side by side with the queues a Rust user would pick instead,
//! and with the limits of the machine, in one run. `cargo bench --bench compare`.
//!
//! Every run is a child process (this binary, re-run with `--child`), so each gets a fresh heap
//! and its peak RSS is measured (`wait4`). Every run checks order and count on the way out.
//! Figures are medians of `SPILLQ_BENCH_RUNS` runs (default 3); ratios are medians of the
//! ratios within each round of runs (paired), which a machine whose speed drifts moves less
//! than a ratio of two medians. Rounds go through the cases forwards and backwards in turn, and
//! every run starts after a `sync` of the machine, so that no run pays for another's writeback.
//! Options after `--`:
//! - `--quick`: a hundredth of the items, one run (a smoke test of the harness);
//! - `--only NAME`: only the workloads whose name contains NAME;
//! - `--json PATH`: also write the medians as JSON lines;
//! - `--svg PATH`: also draw the ratios to spillq as an SVG chart.
//!
//! Two kinds of items, each a workload of its own:
//! - typed records, `{ id: u64, payload: 92 bytes }` (the payload a `serde_bytes::ByteBuf` of
//!   incompressible bytes): queues that store bytes get each encoded with MessagePack, as
//!   spillq's default codec does, into a fresh `Vec`;
//! - byte records (workloads named `bytes ...`): 100 bytes (the id, then the payload) that every
//!   queue stores as they are; spillq as a `Queue<serde_bytes::ByteBuf>`.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bytes of data in one record: the id and the payload.
const RECORD_BYTES: f64 = 100.0;
const PAYLOAD_BYTES: usize = 92;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Record {
    id: u64,
    payload: ByteBuf,
}

/// Incompressible payloads, generated once: records take one of them by id, so making a
/// record is an allocation and a copy, the same for every queue.
struct Payloads(Vec<[u8; PAYLOAD_BYTES]>);

impl Payloads {
    fn new() -> Self {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        Self(
            (0..1024)
                .map(|_| {
                    let mut bytes = [0u8; PAYLOAD_BYTES];
                    for chunk in bytes.chunks_mut(8) {
                        let word = next().to_le_bytes();
                        chunk.copy_from_slice(&word[..chunk.len()]);
                    }
                    bytes
                })
                .collect(),
        )
    }

    fn record(&self, id: u64) -> Record {
        Record {
            id,
            payload: ByteBuf::from(self.0[(id % 1024) as usize].to_vec()),
        }
    }

    fn check(&self, record: &Record) {
        assert_eq!(
            record.payload.as_slice(),
            &self.0[(record.id % 1024) as usize][..],
            "record {} came out with other bytes",
            record.id
        );
    }
}

/// A byte record: the id's 8 bytes, then the payload.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(transparent)]
struct Bytes(ByteBuf);

/// What the workloads move: typed records or byte records.
trait Item: Serialize + serde::de::DeserializeOwned + Send + 'static {
    fn make(payloads: &Payloads, id: u64) -> Self;
    fn id(&self) -> u64;
    fn check(&self, payloads: &Payloads);
    /// The bytes a queue that stores bytes keeps for it.
    fn into_bytes(self) -> Vec<u8>;
    fn from_vec(bytes: Vec<u8>) -> Self;
    fn from_slice(bytes: &[u8]) -> Self;
}

impl Item for Record {
    fn make(payloads: &Payloads, id: u64) -> Self {
        payloads.record(id)
    }
    fn id(&self) -> u64 {
        self.id
    }
    fn check(&self, payloads: &Payloads) {
        payloads.check(self);
    }
    fn into_bytes(self) -> Vec<u8> {
        encode(&self)
    }
    fn from_vec(bytes: Vec<u8>) -> Self {
        decode(&bytes)
    }
    fn from_slice(bytes: &[u8]) -> Self {
        decode(bytes)
    }
}

impl Item for Bytes {
    fn make(payloads: &Payloads, id: u64) -> Self {
        let mut bytes = Vec::with_capacity(8 + PAYLOAD_BYTES);
        bytes.extend_from_slice(&id.to_le_bytes());
        bytes.extend_from_slice(&payloads.0[(id % 1024) as usize]);
        Self(ByteBuf::from(bytes))
    }
    fn id(&self) -> u64 {
        u64::from_le_bytes(self.0[..8].try_into().unwrap())
    }
    fn check(&self, payloads: &Payloads) {
        assert_eq!(
            &self.0[8..],
            &payloads.0[(self.id() % 1024) as usize][..],
            "record {} came out with other bytes",
            self.id()
        );
    }
    fn into_bytes(self) -> Vec<u8> {
        self.0.into_vec()
    }
    fn from_vec(bytes: Vec<u8>) -> Self {
        Self(ByteBuf::from(bytes))
    }
    fn from_slice(bytes: &[u8]) -> Self {
        Self(ByteBuf::from(bytes.to_vec()))
    }
}

/// Calls `f` with the ids `from, from + step, ...` below `end`, `batch` at a time, without
/// holding them all: ten million ids would add 80 MB to the peak RSS being measured.
fn for_batches(from: u64, end: u64, step: u64, batch: usize, mut f: impl FnMut(&[u64])) {
    let mut ids = Vec::with_capacity(batch);
    let mut id = from;
    while id < end {
        ids.clear();
        while ids.len() < batch && id < end {
            ids.push(id);
            id += step;
        }
        f(&ids);
    }
}

fn encode(record: &Record) -> Vec<u8> {
    rmp_serde::to_vec(record).unwrap()
}

fn decode(bytes: &[u8]) -> Record {
    rmp_serde::from_slice(bytes).unwrap()
}

/// Ids of producer `p` of `producers`: p, p + producers, p + 2 producers, ...; consumers check
/// that each producer's ids come in order.
struct OrderCheck {
    last: Vec<Option<u64>>,
    count: u64,
}

impl OrderCheck {
    fn new(producers: u64) -> Self {
        Self {
            last: vec![None; producers as usize],
            count: 0,
        }
    }

    fn see<I: Item>(&mut self, payloads: &Payloads, record: &I) {
        record.check(payloads);
        let id = record.id();
        let producers = self.last.len() as u64;
        let slot = &mut self.last[(id % producers) as usize];
        assert!(
            slot.is_none_or(|last| id > last),
            "record {id} out of order"
        );
        *slot = Some(id);
        self.count += 1;
    }
}

// ---------------------------------------------------------------------------------------------
// The queues, behind one small interface for the throughput workloads.

/// A queue under test. `put` and `take` may be called from several threads (the queue is
/// shared by `Arc`); queues that only allow one sender or receiver say so in `Peer::mpmc`.
trait Queue<I>: Send + Sync {
    fn put(&self, records: Vec<I>);
    /// Takes up to `max` records, waiting for at least one.
    fn take(&self, max: usize) -> Vec<I>;
    /// One record per call (the call users make most), without the `Vec` of `put`.
    fn put_one(&self, record: I) {
        self.put(vec![record]);
    }
    /// Takes one record, waiting for it, without the `Vec` of `take`.
    fn take_one(&self) -> I {
        self.take(1).pop().unwrap()
    }
    /// Called by a producer after its last `put`: makes what it put visible to consumers.
    fn flush(&self) {}
    /// What the queue reports of the run, for the child's `RESULT` line.
    fn report(&self) -> String {
        String::new()
    }
}

struct Spillq<I: Item> {
    queue: spillq::Queue<I>,
}

impl<I: Item> Queue<I> for Spillq<I> {
    fn put(&self, records: Vec<I>) {
        if records.len() == 1 {
            for record in records {
                self.queue.put(record).unwrap();
            }
        } else {
            self.queue.put_all(records).unwrap();
        }
    }

    fn take(&self, max: usize) -> Vec<I> {
        if max == 1 {
            vec![self.queue.get().unwrap()]
        } else {
            self.queue.get_batch(max, Duration::from_secs(60)).unwrap()
        }
    }

    fn put_one(&self, record: I) {
        self.queue.put(record).unwrap();
    }

    fn take_one(&self) -> I {
        self.queue.get().unwrap()
    }

    fn report(&self) -> String {
        // Sequence numbers go only to items written to disk.
        format!("spilled={}", self.queue.stats().next_sequence)
    }
}

struct Crossbeam<I> {
    send: crossbeam_channel::Sender<I>,
    receive: crossbeam_channel::Receiver<I>,
}

impl<I: Item> Queue<I> for Crossbeam<I> {
    fn put(&self, records: Vec<I>) {
        for record in records {
            self.send.send(record).unwrap();
        }
    }

    fn take(&self, max: usize) -> Vec<I> {
        let first = self.receive.recv().unwrap();
        let mut out = vec![first];
        out.extend(self.receive.try_iter().take(max - 1));
        out
    }

    fn put_one(&self, record: I) {
        self.send.send(record).unwrap();
    }

    fn take_one(&self) -> I {
        self.receive.recv().unwrap()
    }
}

/// hopper: one sender (cloneable) and one receiver; both take `&mut self`.
struct Hopper<I: Item> {
    send: Mutex<hopper::Sender<I>>,
    receive: Mutex<hopper::Receiver<I>>,
    /// A producer has finished: from now on the consumer flushes before each receive.
    finished: AtomicBool,
}

impl<I: Item> Queue<I> for Hopper<I> {
    fn put(&self, records: Vec<I>) {
        let mut send = self.send.lock().unwrap();
        for record in records {
            if send.send(record).is_err() {
                panic!("hopper refused a record");
            }
        }
    }

    /// hopper keeps records that went to disk out of the receiver's sight until a flush finds
    /// room in its memory buffer for a marker; a flush with no room fails, and is tried again
    /// by the consumer.
    fn flush(&self) {
        self.finished.store(true, Ordering::Release);
        let _ = self.send.lock().unwrap().flush();
    }

    fn take(&self, _max: usize) -> Vec<I> {
        if self.finished.load(Ordering::Acquire) {
            // Else records stranded on disk would wait for a producer that has gone.
            let _ = self.send.lock().unwrap().flush();
        }
        // hopper's iterator blocks, and has no batch form: one at a time.
        vec![self.take_one()]
    }

    fn put_one(&self, record: I) {
        if self.send.lock().unwrap().send(record).is_err() {
            panic!("hopper refused a record");
        }
    }

    fn take_one(&self) -> I {
        if self.finished.load(Ordering::Acquire) {
            let _ = self.send.lock().unwrap().flush();
        }
        let mut receive = self.receive.lock().unwrap();
        receive.iter().next().unwrap()
    }
}

/// yaque: an async sender and receiver, driven with `futures::executor::block_on`.
struct Yaque {
    send: Mutex<yaque::Sender>,
    receive: Mutex<yaque::Receiver>,
}

impl<I: Item> Queue<I> for Yaque {
    fn put(&self, records: Vec<I>) {
        let mut send = self.send.lock().unwrap();
        if records.len() == 1 {
            let record = records.into_iter().next().unwrap();
            futures::executor::block_on(send.send(record.into_bytes())).unwrap();
        } else {
            let encoded: Vec<Vec<u8>> = records.into_iter().map(I::into_bytes).collect();
            futures::executor::block_on(send.send_batch(encoded)).unwrap();
        }
    }

    fn take(&self, max: usize) -> Vec<I> {
        let mut receive = self.receive.lock().unwrap();
        if max == 1 {
            let guard = futures::executor::block_on(receive.recv()).unwrap();
            let record = I::from_slice(&guard);
            guard.commit().unwrap();
            vec![record]
        } else {
            let guard = futures::executor::block_on(receive.recv_batch_up_to(max)).unwrap();
            let records = guard.iter().map(|b| I::from_slice(b)).collect();
            guard.commit().unwrap();
            records
        }
    }

    fn put_one(&self, record: I) {
        let mut send = self.send.lock().unwrap();
        futures::executor::block_on(send.send(record.into_bytes())).unwrap();
    }

    fn take_one(&self) -> I {
        let mut receive = self.receive.lock().unwrap();
        let guard = futures::executor::block_on(receive.recv()).unwrap();
        let record = I::from_slice(&guard);
        guard.commit().unwrap();
        record
    }
}

/// queue-file: one file, `&mut self`, so a mutex around it; consumers poll.
struct QueueFile(Mutex<queue_file::QueueFile>);

impl<I: Item> Queue<I> for QueueFile {
    fn put(&self, records: Vec<I>) {
        let mut queue = self.0.lock().unwrap();
        if records.len() == 1 {
            let record = records.into_iter().next().unwrap();
            queue.add(&record.into_bytes()).unwrap();
        } else {
            queue.add_n(records.into_iter().map(I::into_bytes)).unwrap();
        }
    }

    fn take(&self, max: usize) -> Vec<I> {
        loop {
            let mut queue = self.0.lock().unwrap();
            let records: Vec<I> = queue.iter().take(max).map(|b| I::from_slice(&b)).collect();
            if !records.is_empty() {
                queue.remove_n(records.len()).unwrap();
                return records;
            }
            drop(queue);
            std::thread::yield_now();
        }
    }

    fn put_one(&self, record: I) {
        self.0.lock().unwrap().add(&record.into_bytes()).unwrap();
    }

    fn take_one(&self) -> I {
        loop {
            let mut queue = self.0.lock().unwrap();
            let record = queue.iter().next().map(|b| I::from_slice(&b));
            if let Some(record) = record {
                queue.remove().unwrap();
                return record;
            }
            drop(queue);
            std::thread::yield_now();
        }
    }
}

/// disk-queue: `&self` methods; consumers poll.
struct DiskQueue(disk_queue::DiskQueue);

impl<I: Item> Queue<I> for DiskQueue {
    fn put(&self, records: Vec<I>) {
        for record in records {
            self.0.enqueue(record.into_bytes());
        }
    }

    fn take(&self, max: usize) -> Vec<I> {
        loop {
            let mut out = Vec::new();
            while out.len() < max {
                match self.0.dequeue() {
                    Some(bytes) => out.push(I::from_vec(bytes)),
                    None => break,
                }
            }
            if !out.is_empty() {
                return out;
            }
            std::thread::yield_now();
        }
    }

    fn put_one(&self, record: I) {
        self.0.enqueue(record.into_bytes());
    }

    fn take_one(&self) -> I {
        loop {
            if let Some(bytes) = self.0.dequeue() {
                return I::from_vec(bytes);
            }
            std::thread::yield_now();
        }
    }
}

/// The queues, by name, each opened in `dir` with room for `cache` records in memory.
fn open_peer<I: Item>(name: &str, dir: &Path, cache: usize) -> Box<dyn Queue<I>> {
    match name {
        "spillq" | "spillq-batch" => Box::new(Spillq {
            queue: spillq::Queue::builder(dir)
                .cache_size(cache)
                .open()
                .unwrap(),
        }),
        "crossbeam" => {
            let (send, receive) = crossbeam_channel::bounded(cache);
            Box::new(Crossbeam { send, receive })
        }
        "hopper" | "hopper-default" => {
            let memory = if name == "hopper" {
                cache * std::mem::size_of::<I>()
            } else {
                0x100_000
            };
            let (send, receive) =
                hopper::channel_with_explicit_capacity("bench", dir, memory, 64 << 20, usize::MAX)
                    .unwrap();
            Box::new(Hopper {
                send: Mutex::new(send),
                receive: Mutex::new(receive),
                finished: AtomicBool::new(false),
            })
        }
        "yaque" | "yaque-batch" => {
            let (send, receive) = yaque::channel(dir).unwrap();
            Box::new(Yaque {
                send: Mutex::new(send),
                receive: Mutex::new(receive),
            })
        }
        "queue-file" | "queue-file-batch" | "queue-file-sync" => {
            let mut queue = queue_file::QueueFile::open(dir.join("queue")).unwrap();
            queue.set_sync_writes(name == "queue-file-sync");
            Box::new(QueueFile(Mutex::new(queue)))
        }
        "disk-queue" => Box::new(DiskQueue(disk_queue::DiskQueue::open(
            dir.join("queue").to_str().unwrap(),
        ))),
        other => panic!("no queue named {other}"),
    }
}

/// Whether the peer's fastest mode moves records in batches.
fn batch_size(name: &str) -> usize {
    if name.ends_with("-batch") { 256 } else { 1 }
}

/// Peers with one receiver only (or one sender).
fn single_consumer(name: &str) -> bool {
    name.starts_with("hopper")
}

// ---------------------------------------------------------------------------------------------
// Workloads, as run inside a child.

/// Producers and consumers at once: `threads` producers put `n` records in all, as many
/// consumers take them (one, for queues with a single receiver). Returns seconds. With `lead`,
/// producers stay at most that many items ahead of the consumers (the memory workload:
/// "consumers keeping up, the cache never fills"); without, they run free and the backlog
/// builds.
fn run_concurrent<I: Item>(
    peer: &str,
    dir: &Path,
    cache: usize,
    n: u64,
    threads: u64,
    lead: Option<u64>,
) -> (f64, String) {
    let payloads = Arc::new(Payloads::new());
    // Items taken so far, by all consumers.
    let taken = Arc::new(AtomicU64::new(0));
    let queue: Arc<dyn Queue<I>> = Arc::from(open_peer::<I>(peer, dir, cache));
    let batch = batch_size(peer);
    let consumers = if single_consumer(peer) { 1 } else { threads };
    let started = Instant::now();
    let mut handles = Vec::new();
    for p in 0..threads {
        let (queue, payloads, taken) = (
            Arc::clone(&queue),
            Arc::clone(&payloads),
            Arc::clone(&taken),
        );
        handles.push(std::thread::spawn(move || {
            for_batches(p, n, threads, batch, |chunk| {
                // Ids are global positions: producer p puts p, p + threads, ...
                let last = chunk.last().copied().unwrap_or(0);
                while lead.is_some_and(|lead| last >= taken.load(Ordering::Acquire) + lead) {
                    std::thread::yield_now();
                }
                if batch == 1 {
                    queue.put_one(I::make(&payloads, last));
                } else {
                    queue.put(chunk.iter().map(|&id| I::make(&payloads, id)).collect());
                }
            });
            queue.flush();
            0
        }));
    }
    let share = n / consumers;
    for c in 0..consumers {
        let (queue, payloads, taken) = (
            Arc::clone(&queue),
            Arc::clone(&payloads),
            Arc::clone(&taken),
        );
        let take = if c == consumers - 1 {
            n - share * (consumers - 1)
        } else {
            share
        };
        handles.push(std::thread::spawn(move || {
            let mut check = OrderCheck::new(threads);
            while check.count < take {
                if batch == 1 {
                    let record = queue.take_one();
                    taken.fetch_add(1, Ordering::Release);
                    check.see(&payloads, &record);
                    continue;
                }
                let want = batch.min((take - check.count) as usize);
                let records = queue.take(want);
                taken.fetch_add(records.len() as u64, Ordering::Release);
                for record in records {
                    check.see(&payloads, &record);
                }
            }
            check.count
        }));
    }
    let taken: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(taken, n, "{peer}: count");
    (seconds, queue.report())
}

/// Puts all `n` records, then takes them all.
fn run_sequential<I: Item>(peer: &str, dir: &Path, cache: usize, n: u64) -> f64 {
    let payloads = Payloads::new();
    let queue = open_peer::<I>(peer, dir, cache);
    let batch = batch_size(peer);
    let started = Instant::now();
    if batch == 1 {
        for id in 0..n {
            queue.put_one(I::make(&payloads, id));
        }
    } else {
        for_batches(0, n, 1, batch, |chunk| {
            queue.put(chunk.iter().map(|&id| I::make(&payloads, id)).collect());
        });
    }
    queue.flush();
    let mut check = OrderCheck::new(1);
    while check.count < n {
        if batch == 1 {
            check.see(&payloads, &queue.take_one());
            continue;
        }
        let want = batch.min((n - check.count) as usize);
        for record in queue.take(want) {
            check.see(&payloads, &record);
        }
    }
    started.elapsed().as_secs_f64()
}

/// The bare append log: length-prefixed records through a buffered writer into one file,
/// then read back; with `sync_every`, an fdatasync after that many records.
fn run_bare_log(dir: &Path, n: u64, sync_every: Option<u64>) -> f64 {
    let payloads = Payloads::new();
    let path = dir.join("log");
    let started = Instant::now();
    let file = std::fs::File::create(&path).unwrap();
    let mut writer = BufWriter::with_capacity(1 << 16, file);
    for id in 0..n {
        let record = payloads.record(id);
        writer.write_all(&100u32.to_le_bytes()).unwrap();
        writer.write_all(&record.id.to_le_bytes()).unwrap();
        writer.write_all(&record.payload).unwrap();
        if let Some(every) = sync_every
            && (id + 1) % every == 0
        {
            writer.flush().unwrap();
            writer.get_ref().sync_data().unwrap();
        }
    }
    writer.flush().unwrap();
    drop(writer);
    if sync_every.is_some() {
        // Only the write side: this figure is the bound for durable appends.
        return started.elapsed().as_secs_f64();
    }
    let mut reader = BufReader::with_capacity(1 << 16, std::fs::File::open(&path).unwrap());
    let mut check = OrderCheck::new(1);
    let mut frame = [0u8; 104];
    for _ in 0..n {
        reader.read_exact(&mut frame).unwrap();
        let record = Record {
            id: u64::from_le_bytes(frame[4..12].try_into().unwrap()),
            payload: ByteBuf::from(frame[12..].to_vec()),
        };
        check.see(&payloads, &record);
    }
    started.elapsed().as_secs_f64()
}

/// `EveryPut` puts from `threads` threads, `n` in all (or `put_all` batches of `batch`).
fn run_durable_spillq(dir: &Path, n: u64, threads: u64, batch: usize) -> f64 {
    let payloads = Arc::new(Payloads::new());
    let queue = Arc::new(
        spillq::Queue::<Record>::builder(dir)
            .durability(spillq::Durability::EveryPut)
            .open()
            .unwrap(),
    );
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|p| {
            let (queue, payloads) = (Arc::clone(&queue), Arc::clone(&payloads));
            std::thread::spawn(move || {
                for_batches(p, n, threads, batch, |chunk| {
                    if batch == 1 {
                        queue.put(payloads.record(chunk[0])).unwrap();
                    } else {
                        queue
                            .put_all(chunk.iter().map(|&id| payloads.record(id)))
                            .unwrap();
                    }
                });
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut check = OrderCheck::new(threads);
    while check.count < n {
        for record in queue.get_batch(1024, Duration::ZERO).unwrap() {
            check.see(&payloads, &record);
        }
    }
    seconds
}

/// queue-file with a sync after every add (its default), or `add_n` batches.
fn run_durable_queue_file(dir: &Path, n: u64, batch: usize) -> f64 {
    let payloads = Payloads::new();
    let mut queue = queue_file::QueueFile::open(dir.join("queue")).unwrap();
    queue.set_sync_writes(true);
    let started = Instant::now();
    for_batches(0, n, 1, batch, |chunk| {
        queue
            .add_n(chunk.iter().map(|&id| encode(&payloads.record(id))))
            .unwrap();
    });
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(queue.size() as u64, n);
    seconds
}

/// Median latency of appending 4 KiB and fdatasync, over `n` appends.
fn run_fdatasync_latency(dir: &Path, n: u64) -> f64 {
    let file = std::fs::File::create(dir.join("sync")).unwrap();
    let block = vec![0x5Au8; 4096];
    let mut samples = Vec::new();
    for i in 0..n {
        let started = Instant::now();
        file.write_all_at(&block, i * 4096).unwrap();
        file.sync_data().unwrap();
        samples.push(started.elapsed().as_secs_f64());
    }
    median(&mut samples)
}

/// Fills a queue with `n` records and a sync, puts a few more unsynced, says `READY`, and
/// waits to be killed.
fn run_fill_and_wait(dir: &Path, n: u64) -> ! {
    let payloads = Payloads::new();
    let queue = spillq::Queue::<Record>::open(dir).unwrap();
    let have = queue.len() as u64;
    for_batches(have, n.max(have), 1, 4096, |chunk| {
        queue
            .put_all(chunk.iter().map(|&id| payloads.record(id)))
            .unwrap();
    });
    queue.sync().unwrap();
    let next = n.max(have);
    queue
        .put_all((next..next + 1000).map(|id| payloads.record(id)))
        .unwrap();
    println!("READY");
    std::io::stdout().flush().unwrap();
    loop {
        std::thread::park();
    }
}

/// Opens the queue left by a killed filler: returns seconds for `open`, and checks the head.
fn run_open_after_kill(dir: &Path) -> f64 {
    let started = Instant::now();
    let queue = spillq::Queue::<Record>::open(dir).unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let head = queue.peek().unwrap().unwrap();
    assert_eq!(head.id, 0);
    std::mem::forget(queue); // as the process ends: no close, no sync
    seconds
}

/// Pushes `n` records through a queue with the default options and drains them, reporting
/// disk use during the backlog and after the drain.
fn run_footprint(dir: &Path, n: u64) -> (f64, String) {
    let payloads = Payloads::new();
    let queue = spillq::Queue::<Record>::open(dir).unwrap();
    let started = Instant::now();
    for_batches(0, n, 1, 1024, |chunk| {
        queue
            .put_all(chunk.iter().map(|&id| payloads.record(id)))
            .unwrap();
    });
    queue.sync().unwrap();
    let backlog = queue.stats();
    let mut check = OrderCheck::new(1);
    while check.count < n {
        for record in queue.get_batch(1024, Duration::ZERO).unwrap() {
            check.see(&payloads, &record);
        }
    }
    queue.sync().unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let after = queue.stats();
    let extra = format!(
        "disk_per_byte={:.3} segments_after={} disk_after={}",
        backlog.disk_bytes as f64 / (n as f64 * RECORD_BYTES),
        after.segments,
        after.disk_bytes
    );
    (seconds, extra)
}

/// The throughput workloads: `memory/peer/threads`, `spill-seq/peer`, `spill-concurrent/peer`.
/// The async rows: `peer` (`spillq-async` or `yaque-async`) driven by tasks on a tokio runtime,
/// byte records through a cache of 1024. Sequential: one task puts all `n`, then takes them
/// all (a current-thread runtime). Concurrent: a producer task and a consumer task on a
/// runtime of two worker threads. Returns seconds.
fn run_async<I: Item>(peer: &str, dir: &Path, n: u64, concurrent: bool) -> f64 {
    let runtime = if concurrent {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    };
    let payloads = Arc::new(Payloads::new());
    match peer {
        "spillq-async" => {
            let queue = spillq::Queue::<I>::builder(dir)
                .cache_size(1024)
                .open()
                .unwrap();
            runtime.block_on(async move {
                let started = Instant::now();
                let producer = {
                    let (queue, payloads) = (queue.clone(), Arc::clone(&payloads));
                    async move {
                        for id in 0..n {
                            queue.put_async(I::make(&payloads, id)).await.unwrap();
                        }
                    }
                };
                let consumer = async move {
                    let mut check = OrderCheck::new(1);
                    while check.count < n {
                        check.see(&payloads, &queue.get_async().await.unwrap());
                    }
                };
                producer_then_consumer(concurrent, producer, consumer).await;
                started.elapsed().as_secs_f64()
            })
        }
        "yaque-async" => {
            let (mut send, mut receive) = yaque::channel(dir).unwrap();
            runtime.block_on(async move {
                let started = Instant::now();
                let producer = {
                    let payloads = Arc::clone(&payloads);
                    async move {
                        for id in 0..n {
                            send.send(I::make(&payloads, id).into_bytes())
                                .await
                                .unwrap();
                        }
                    }
                };
                let consumer = async move {
                    let mut check = OrderCheck::new(1);
                    while check.count < n {
                        let guard = receive.recv().await.unwrap();
                        let record = I::from_slice(&guard);
                        guard.commit().unwrap();
                        check.see(&payloads, &record);
                    }
                };
                producer_then_consumer(concurrent, producer, consumer).await;
                started.elapsed().as_secs_f64()
            })
        }
        other => panic!("no async queue named {other}"),
    }
}

/// Runs the producer and the consumer side by side on the runtime's threads, or one after the
/// other.
async fn producer_then_consumer(
    concurrent: bool,
    producer: impl std::future::Future<Output = ()> + Send + 'static,
    consumer: impl std::future::Future<Output = ()> + Send + 'static,
) {
    if concurrent {
        let producer = tokio::spawn(producer);
        tokio::spawn(consumer).await.unwrap();
        producer.await.unwrap();
    } else {
        producer.await;
        consumer.await;
    }
}

fn run_throughput<I: Item>(parts: &[&str], dir: &Path, n: u64) -> (f64, String) {
    match parts {
        ["memory", peer, threads] => {
            let lead = Some(4096 / 2);
            run_concurrent::<I>(peer, dir, 4096, n, threads.parse().unwrap(), lead)
        }
        ["spill-seq", peer] => (run_sequential::<I>(peer, dir, 1024, n), String::new()),
        ["spill-concurrent", peer] => run_concurrent::<I>(peer, dir, 1024, n, 1, None),
        _ => panic!("unknown case {parts:?}"),
    }
}

fn child(args: &[String]) {
    let (case, n, dir) = (
        &args[0],
        args[1].parse::<u64>().unwrap(),
        Path::new(&args[2]),
    );
    let parts: Vec<&str> = case.split('/').collect();
    let mut extra = String::new();
    let seconds = match parts.as_slice() {
        [workload, "bare-log"] if workload.ends_with("spill-seq") => run_bare_log(dir, n, None),
        ["memory" | "spill-seq" | "spill-concurrent", ..] => {
            let (seconds, report) = run_throughput::<Record>(&parts, dir, n);
            extra = report;
            seconds
        }
        [kind, rest @ ..] if kind.starts_with("bytes-") => {
            let mut parts = vec![&kind["bytes-".len()..]];
            parts.extend(rest);
            let (seconds, report) = run_throughput::<Bytes>(&parts, dir, n);
            extra = report;
            seconds
        }
        ["async-spill-seq", peer] => run_async::<Bytes>(peer, dir, n, false),
        ["async-spill-concurrent", peer] => run_async::<Bytes>(peer, dir, n, true),
        ["durable", "spillq-every-put", threads] => {
            run_durable_spillq(dir, n, threads.parse().unwrap(), 1)
        }
        ["durable", "spillq-put-all-1000", _] => run_durable_spillq(dir, n, 1, 1000),
        ["durable", "queue-file-sync", _] => run_durable_queue_file(dir, n, 1),
        ["durable", "queue-file-add-n-1000-sync", _] => run_durable_queue_file(dir, n, 1000),
        ["durable", "bare-log-fdatasync-per-1000", _] => run_bare_log(dir, n, Some(1000)),
        ["durable", "fdatasync-4k-latency", _] => run_fdatasync_latency(dir, n),
        ["recovery", "fill"] => run_fill_and_wait(dir, n),
        ["recovery", "open"] => run_open_after_kill(dir),
        ["footprint", "spillq"] => {
            let (seconds, more) = run_footprint(dir, n);
            extra = more;
            seconds
        }
        _ => panic!("unknown case {case}"),
    };
    println!("RESULT {seconds} {extra}");
}

// ---------------------------------------------------------------------------------------------
// The parent: runs the children, takes medians, prints and writes the tables.

struct Outcome {
    seconds: f64,
    max_rss_kib: i64,
    extra: String,
}

fn spawn(case: &str, n: u64, dir: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--child", case, &n.to_string(), dir.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The children's `key=value` reports of one case, one word per key: `key=value` when every
/// run gave the same value, `key=first/second/...` (in run order) when they differ.
fn merge_reports(reports: &[String]) -> String {
    let runs: Vec<Vec<&str>> = reports
        .iter()
        .map(|r| r.split_whitespace().collect())
        .collect();
    let Some(first) = runs.first() else {
        return String::new();
    };
    let mut words = Vec::new();
    for (j, word) in first.iter().enumerate() {
        let Some((key, _)) = word.split_once('=') else {
            words.push(word.to_string());
            continue;
        };
        let mut values: Vec<&str> = runs
            .iter()
            .filter_map(|run| run.get(j).and_then(|w| w.split_once('=')).map(|(_, v)| v))
            .collect();
        if values.windows(2).all(|pair| pair[0] == pair[1]) {
            values.truncate(1);
        }
        words.push(format!("{key}={}", values.join("/")));
    }
    words.join(" ")
}

/// Reaps `child`, returning its peak RSS in KiB.
fn reap(child: &std::process::Child) -> (i32, i64) {
    let mut status = 0;
    // SAFETY: `rusage` is plain data, written by wait4; the pid is our unreaped child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; both pointers are valid for the call.
    let rc = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(rc, child.id() as i32, "wait4");
    (status, usage.ru_maxrss)
}

#[allow(
    clippy::zombie_processes,
    reason = "reap() waits with wait4, which std's wait does not offer, for the peak RSS"
)]
fn run_child(case: &str, n: u64, dir: &Path) -> Outcome {
    let mut child = spawn(case, n, dir);
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let (status, max_rss_kib) = reap(&child);
    assert_eq!(status, 0, "{case} failed:\n{out}");
    let line = out.lines().find(|l| l.starts_with("RESULT")).unwrap();
    let mut words = line.split_whitespace().skip(1);
    let seconds = words.next().unwrap().parse().unwrap();
    Outcome {
        seconds,
        max_rss_kib,
        extra: words.collect::<Vec<_>>().join(" "),
    }
}

/// Writes every dirty page of the machine to disk, between runs: else a run that wrote much
/// (or deleted its files) leaves the writeback to the kernel's threads during the next run,
/// which then pays for it in processor time and in slower fsyncs.
fn write_back() {
    // SAFETY: sync(2) takes no arguments, touches no memory of this process, and cannot fail.
    unsafe { libc::sync() };
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[samples.len() / 2]
}

struct Row {
    workload: String,
    peer: String,
    n: u64,
    seconds: f64,
    rss_mib: f64,
    extra: String,
    /// This queue's rate over the workload's first queue's, taken run by run within a round
    /// (runs seconds apart, where two medians may come from runs minutes apart), then the
    /// median.
    paired: Option<f64>,
}

impl Row {
    fn rate(&self) -> f64 {
        self.n as f64 / self.seconds
    }
}

struct Bench {
    runs: usize,
    scale: f64,
    only: Option<String>,
    rows: Vec<Row>,
}

impl Bench {
    fn wanted(&self, workload: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| workload.contains(o.as_str()))
    }

    fn items(&self, n: u64) -> u64 {
        ((n as f64 * self.scale) as u64).max(100)
    }

    /// Runs `case` (`workload/peer[/threads]`) `runs` times in fresh directories.
    /// Runs every case of one workload, in turn, forwards and then backwards (A B C C B A ...),
    /// so that a machine whose speed drifts during the call slows every peer alike and the
    /// ratios hold, whichever place a case has in the list. Each case is
    /// `(child case, name in the table, items)`.
    fn measure(&mut self, workload: &str, cases: &[(String, String, u64)]) {
        if !self.wanted(workload) {
            return;
        }
        let mut seconds = vec![Vec::new(); cases.len()];
        let mut rss = vec![Vec::new(); cases.len()];
        let mut extra = vec![Vec::new(); cases.len()];
        for round in 0..self.runs {
            let order: Vec<usize> = if round % 2 == 0 {
                (0..cases.len()).collect()
            } else {
                (0..cases.len()).rev().collect()
            };
            for i in order {
                let (case, _, n) = &cases[i];
                let dir = tempfile::tempdir().unwrap();
                let outcome = run_child(case, self.items(*n), dir.path());
                drop(dir);
                write_back();
                seconds[i].push(outcome.seconds);
                rss[i].push(outcome.max_rss_kib as f64 / 1024.0);
                extra[i].push(outcome.extra);
            }
        }
        // Before the medians sort the samples: round by round, against the first case.
        let paired: Vec<f64> = cases
            .iter()
            .enumerate()
            .map(|(i, (_, _, n))| {
                let (n, first_n) = (self.items(*n) as f64, self.items(cases[0].2) as f64);
                let mut ratios: Vec<f64> = seconds[i]
                    .iter()
                    .zip(&seconds[0])
                    .map(|(s, first)| (n / s) / (first_n / first))
                    .collect();
                median(&mut ratios)
            })
            .collect();
        for (i, (_, peer, n)) in cases.iter().enumerate() {
            let row = Row {
                workload: workload.to_string(),
                peer: peer.clone(),
                n: self.items(*n),
                seconds: median(&mut seconds[i]),
                rss_mib: median(&mut rss[i]),
                extra: merge_reports(&extra[i]),
                paired: Some(paired[i]),
            };
            eprintln!(
                "{:<18} {:<32} {:>12.0} msgs/s  {:>7.1} MiB peak RSS {}",
                row.workload,
                row.peer,
                row.rate(),
                row.rss_mib,
                row.extra
            );
            self.rows.push(row);
        }
    }

    /// Open time after SIGKILL with `n` records queued: a filler child builds the queue and is
    /// killed; then each run, an opener child times `open`, and a new filler is killed again.
    #[allow(clippy::zombie_processes, reason = "reap() waits with wait4")]
    fn recovery(&mut self, n: u64) {
        let workload = "recovery";
        if !self.wanted(workload) {
            return;
        }
        let n = self.items(n);
        let dir = tempfile::tempdir().unwrap();
        let mut seconds = Vec::new();
        for _ in 0..self.runs {
            let mut filler = spawn("recovery/fill", n, dir.path());
            let stdout = filler.stdout.take().unwrap();
            let ready = BufReader::new(stdout)
                .lines()
                .any(|l| l.is_ok_and(|l| l == "READY"));
            assert!(ready, "the filler died");
            filler.kill().unwrap();
            reap(&filler);
            write_back();
            seconds.push(run_child("recovery/open", n, dir.path()).seconds);
        }
        let row = Row {
            workload: workload.to_string(),
            peer: format!("spillq open after SIGKILL, {} queued", human(n)),
            n,
            seconds: median(&mut seconds),
            rss_mib: 0.0,
            extra: String::new(),
            paired: None,
        };
        eprintln!(
            "{:<18} {:<32} {:>9.2} ms",
            workload,
            row.peer,
            row.seconds * 1e3
        );
        self.rows.push(row);
    }
}

fn human(n: u64) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

fn print_tables(rows: &[Row]) -> String {
    let mut out = String::new();
    let mut by_workload: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for row in rows {
        by_workload
            .entry(row.workload.as_str())
            .or_default()
            .push(row);
    }
    for (workload, rows) in by_workload {
        out.push_str(&format!("\n### {workload}\n\n"));
        if workload == "recovery" {
            out.push_str("| case | open (ms), median |\n|---|---|\n");
            for row in rows {
                out.push_str(&format!("| {} | {:.2} |\n", row.peer, row.seconds * 1e3));
            }
            continue;
        }
        if workload == "durable" {
            out.push_str(
                "| case | items | msgs/s | MB/s | ratio to the first row | peak RSS (MiB) |\n\
                 |---|---|---|---|---|---|\n",
            );
            for row in rows {
                if row.peer.contains("latency") {
                    out.push_str(&format!(
                        "| {} | {} | {:.3} ms per append+fdatasync | | | |\n",
                        row.peer,
                        row.n,
                        row.seconds * 1e3
                    ));
                } else {
                    out.push_str(&format!(
                        "| {} | {} | {:.0} | {:.1} | {} | {:.1} |\n",
                        row.peer,
                        row.n,
                        row.rate(),
                        row.rate() * RECORD_BYTES / 1e6,
                        row.paired.map_or(String::new(), |r| format!("{r:.2}")),
                        row.rss_mib
                    ));
                }
            }
            continue;
        }
        out.push_str(
            "| queue | items | msgs/s | MB/s | ratio to spillq | peak RSS (MiB) | notes |\n\
             |---|---|---|---|---|---|---|\n",
        );
        for row in rows {
            let ratio = row.paired.map_or(String::new(), |r| format!("{r:.2}"));
            out.push_str(&format!(
                "| {} | {} | {:.0} | {:.1} | {} | {:.1} | {} |\n",
                row.peer,
                row.n,
                row.rate(),
                row.rate() * RECORD_BYTES / 1e6,
                ratio,
                row.rss_mib,
                row.extra
            ));
        }
    }
    out
}

/// A horizontal bar chart of each workload's rates relative to spillq (spillq = 1).
fn svg(rows: &[Row]) -> String {
    let bars: Vec<(String, f64)> = rows
        .iter()
        .filter(|r| !matches!(r.workload.as_str(), "recovery" | "durable" | "footprint"))
        .filter_map(|row| Some((format!("{}: {}", row.workload, row.peer), row.paired?)))
        .collect();
    let max = bars.iter().map(|b| b.1).fold(1.0, f64::max);
    let (label_width, bar_width, row_height) = (330.0, 420.0, 22.0);
    let height = 40.0 + row_height * bars.len() as f64;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n\
         <text x=\"4\" y=\"16\" font-weight=\"bold\">throughput relative to spillq (1.0 = spillq; \
         longer is faster)</text>\n",
        label_width + bar_width + 60.0
    );
    let one = label_width + bar_width / max;
    out.push_str(&format!(
        "<line x1=\"{one}\" y1=\"24\" x2=\"{one}\" y2=\"{height}\" stroke=\"#888\" stroke-dasharray=\"3,3\"/>\n"
    ));
    for (i, (label, ratio)) in bars.iter().enumerate() {
        let y = 30.0 + row_height * i as f64;
        let width = bar_width * ratio / max;
        let colour = if label.contains(": spillq") {
            "#d9534f"
        } else {
            "#5b8def"
        };
        out.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{label}</text>\n\
             <rect x=\"{label_width}\" y=\"{y}\" width=\"{width:.1}\" height=\"{}\" fill=\"{colour}\"/>\n\
             <text x=\"{:.1}\" y=\"{}\">{ratio:.2}</text>\n",
            label_width - 6.0,
            y + 13.0,
            row_height - 6.0,
            label_width + width + 4.0,
            y + 13.0
        ));
    }
    out.push_str("</svg>\n");
    out
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(at) = args.iter().position(|a| a == "--child") {
        child(&args[at + 1..]);
        return;
    }
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .map(|i| args[i + 1].clone())
    };
    let quick = args.iter().any(|a| a == "--quick");
    let runs = std::env::var("SPILLQ_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 1 } else { 3 });
    let mut bench = Bench {
        runs,
        scale: if quick { 0.01 } else { 1.0 },
        only: flag("--only"),
        rows: Vec::new(),
    };

    let case = |case: String, peer: &str, n: u64| (case, peer.to_string(), n);
    // Byte records first: the rows the targets are set on.
    for (name, prefix) in [("bytes ", "bytes-"), ("", "")] {
        // 1. Memory: consumers keep up, the cache (4096) never fills.
        for threads in [1, 2] {
            let peers: &[&str] = if threads == 1 {
                &["spillq", "spillq-batch", "crossbeam", "hopper"]
            } else {
                &["spillq", "spillq-batch", "crossbeam"]
            };
            let cases: Vec<_> = peers
                .iter()
                .map(|peer| case(format!("{prefix}memory/{peer}/{threads}"), peer, 10_000_000))
                .collect();
            bench.measure(&format!("{name}memory {threads}P{threads}C"), &cases);
        }
        // 2. Spill: 1M records through a cache of 1024.
        let spill_peers = [
            "spillq",
            "spillq-batch",
            "yaque",
            "yaque-batch",
            "queue-file",
            "queue-file-batch",
            "disk-queue",
            "hopper",
            "hopper-default",
        ];
        let cases: Vec<_> = spill_peers
            .iter()
            .chain(["bare-log"].iter())
            .map(|peer| case(format!("{prefix}spill-seq/{peer}"), peer, 1_000_000))
            .collect();
        bench.measure(&format!("{name}spill seq"), &cases);
        let cases: Vec<_> = spill_peers
            .iter()
            .map(|peer| case(format!("{prefix}spill-concurrent/{peer}"), peer, 1_000_000))
            .collect();
        bench.measure(&format!("{name}spill concurrent"), &cases);
    }
    // Async, one item per call (byte records): spillq's async calls beside its blocking ones
    // (threads) and yaque's async sender and receiver, 1 producer and 1 consumer.
    for (name, workload) in [("seq", "spill-seq"), ("concurrent", "spill-concurrent")] {
        let cases = vec![
            case(
                format!("async-{workload}/spillq-async"),
                "spillq-async",
                1_000_000,
            ),
            case(
                format!("bytes-{workload}/spillq"),
                "spillq (blocking)",
                1_000_000,
            ),
            case(
                format!("async-{workload}/yaque-async"),
                "yaque-async",
                1_000_000,
            ),
        ];
        bench.measure(&format!("async spill {name}"), &cases);
    }
    // 3. Durable.
    let mut cases: Vec<_> = [1, 4, 16]
        .iter()
        .map(|threads| {
            case(
                format!("durable/spillq-every-put/{threads}"),
                &format!("spillq EveryPut, {threads} producers"),
                2000 * threads,
            )
        })
        .collect();
    cases.extend([
        case(
            "durable/spillq-put-all-1000/1".into(),
            "spillq EveryPut, put_all of 1000",
            200_000,
        ),
        case(
            "durable/queue-file-sync/1".into(),
            "queue-file, sync on",
            2000,
        ),
        case(
            "durable/queue-file-add-n-1000-sync/1".into(),
            "queue-file, sync on, add_n of 1000",
            200_000,
        ),
        case(
            "durable/bare-log-fdatasync-per-1000/1".into(),
            "bare log, fdatasync per 1000",
            200_000,
        ),
        case(
            "durable/fdatasync-4k-latency/1".into(),
            "fdatasync latency, 4 KiB append",
            500,
        ),
    ]);
    bench.measure("durable", &cases);
    // 4. Recovery.
    bench.recovery(1_000_000);
    bench.recovery(10_000_000);
    // 5. Footprint.
    bench.measure(
        "footprint",
        &[case(
            "footprint/spillq".into(),
            "spillq, 10M pushed then drained",
            10_000_000,
        )],
    );

    let tables = print_tables(&bench.rows);
    println!("{tables}");
    if let Some(path) = flag("--json") {
        let mut out = String::new();
        for row in &bench.rows {
            out.push_str(&format!(
                "{{\"workload\":\"{}\",\"queue\":\"{}\",\"items\":{},\"seconds\":{},\"rss_mib\":{:.1},\"paired_ratio\":{},\"extra\":\"{}\"}}\n",
                row.workload,
                row.peer,
                row.n,
                row.seconds,
                row.rss_mib,
                row.paired.map_or("null".to_string(), |r| r.to_string()),
                row.extra
            ));
        }
        std::fs::write(PathBuf::from(path), out).unwrap();
    }
    if let Some(path) = flag("--svg") {
        std::fs::write(PathBuf::from(path), svg(&bench.rows)).unwrap();
    }
}
