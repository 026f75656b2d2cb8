//! The async front end under real executors (tokio multi-thread and current-thread, smol,
//! `futures::executor`): waiting tasks never block their thread, blocking and async callers
//! mix, `close` wakes every waiting task, the stream and the sink, cancelled futures lose
//! nothing, and a queue killed mid-stream reopens with what was synced.

#![cfg(feature = "async")]

mod common;

use common::{Rng, read_then_kill, spawn_child};
use futures::{SinkExt, StreamExt};
use spillq::{Durability, Error, Queue};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

fn open(dir: &std::path::Path, cache: usize) -> Queue<u64> {
    Queue::builder(dir)
        .cache_size(cache)
        .segment_size(64 * 1024)
        .open()
        .unwrap()
}

/// Each consumer's items: each producer's ids in order (producer p puts p, p + k, ...); all of
/// them together: every id in 0..n once.
fn assert_each_once_in_order(consumers: &[Vec<u64>], n: u64, producers: u64) {
    for got in consumers {
        let mut last = vec![None; producers as usize];
        for &id in got {
            let slot = &mut last[(id % producers) as usize];
            assert!(slot.is_none_or(|l| id > l), "{id} out of order");
            *slot = Some(id);
        }
    }
    let all: Vec<u64> = consumers.iter().flatten().copied().collect();
    let set: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(set.len(), all.len(), "an item came out twice");
    assert_eq!(set, (0..n).collect(), "items lost");
}

/// One thread runs a producer and a consumer task; `max_len` 1 makes each wait for the other
/// at every item: if a waiting task blocked the thread, this would never finish.
#[test]
fn a_producer_and_a_consumer_share_one_thread_under_max_len_1() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::<u64>::builder(dir.path()).max_len(1).open().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let got = runtime.block_on(async {
        let producer = {
            let queue = queue.clone();
            tokio::spawn(async move {
                for id in 0..2000 {
                    queue.put_async(id).await.unwrap();
                }
            })
        };
        let mut got = Vec::new();
        while got.len() < 2000 {
            got.push(queue.get_async().await.unwrap());
        }
        producer.await.unwrap();
        got
    });
    assert_eq!(got, (0..2000).collect::<Vec<_>>());
}

/// The same at a disk cap of two segments: the producer task waits for the consumer to free a
/// segment, without blocking the one thread they share.
#[test]
fn a_producer_waits_at_the_disk_cap_without_blocking_its_thread() {
    const SEGMENT: u64 = 64 * 1024;
    let cap = 2 * SEGMENT + 2 * 4096 + 33;
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::<serde_bytes::ByteBuf>::builder(dir.path())
        .cache_size(0)
        .segment_size(SEGMENT)
        .max_disk_bytes(cap)
        .open()
        .unwrap();
    let n = 10 * SEGMENT / 1000;
    let item = |id: u64| {
        let mut bytes = vec![id as u8; 1000];
        bytes[..8].copy_from_slice(&id.to_le_bytes());
        serde_bytes::ByteBuf::from(bytes)
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let got = runtime.block_on(async {
        let producer = {
            let queue = queue.clone();
            tokio::spawn(async move {
                for id in 0..n {
                    queue.put_async(item(id)).await.unwrap();
                }
            })
        };
        // The producer runs into the cap before anything is taken.
        while queue.stats().disk_bytes + SEGMENT <= cap {
            tokio::task::yield_now().await;
        }
        assert!((queue.len() as u64) < n);
        let mut got = Vec::new();
        while (got.len() as u64) < n {
            let bytes = queue.get_async().await.unwrap();
            got.push(u64::from_le_bytes(bytes[..8].try_into().unwrap()));
        }
        producer.await.unwrap();
        got
    });
    assert_eq!(got, (0..n).collect::<Vec<_>>());
}

/// Four producer and four consumer tasks on a multi-thread runtime, through a small cache: the
/// backlog spills, and every item comes out once, each producer's in order.
#[test]
fn tasks_on_a_multi_thread_runtime_spill_and_get_everything_once_in_order() {
    const N: u64 = 40_000;
    let dir = tempfile::tempdir().unwrap();
    let queue = open(dir.path(), 64);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let got = runtime.block_on(async {
        let taken = Arc::new(AtomicU64::new(0));
        let mut consumers = Vec::new();
        for _ in 0..4 {
            let (queue, taken) = (queue.clone(), Arc::clone(&taken));
            consumers.push(tokio::spawn(async move {
                let mut got = Vec::new();
                while taken.fetch_add(1, Ordering::SeqCst) < N {
                    got.push(queue.get_async().await.unwrap());
                }
                got
            }));
        }
        for p in 0..4 {
            let queue = queue.clone();
            tokio::spawn(async move {
                for id in (p..N).step_by(4) {
                    queue.put_async(id).await.unwrap();
                }
            });
        }
        let mut got = Vec::new();
        for consumer in consumers {
            got.push(consumer.await.unwrap());
        }
        got
    });
    assert!(queue.stats().next_sequence > 0, "nothing spilled");
    assert_each_once_in_order(&got, N, 4);
}

/// Blocking threads and async tasks on one queue, both sides: nothing lost or repeated.
#[test]
fn blocking_and_async_callers_mix_on_one_queue() {
    const N: u64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let queue = open(dir.path(), 32);
    let blocking_producer = {
        let queue = queue.clone();
        std::thread::spawn(move || {
            for id in (0..N).step_by(2) {
                queue.put(id).unwrap();
            }
        })
    };
    let blocking_consumer = {
        let queue = queue.clone();
        std::thread::spawn(move || (0..N / 2).map(|_| queue.get().unwrap()).collect::<Vec<_>>())
    };
    let async_side = futures::executor::block_on(async {
        let producer = async {
            for id in (1..N).step_by(2) {
                queue.put_async(id).await.unwrap();
            }
        };
        let consumer = async {
            let mut got = Vec::new();
            for _ in 0..N / 2 {
                got.push(queue.get_async().await.unwrap());
            }
            got
        };
        futures::join!(producer, consumer).1
    });
    blocking_producer.join().unwrap();
    let mut got = blocking_consumer.join().unwrap();
    got.extend(async_side);
    got.sort_unstable();
    assert_eq!(got, (0..N).collect::<Vec<_>>());
}

/// `close` wakes every task waiting for an item, for room, or in a stream, with `Closed` (the
/// stream ends).
#[test]
fn close_wakes_every_waiting_task_and_ends_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::<u64>::builder(dir.path()).max_len(1).open().unwrap();
    queue.put(0).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let empty_dir = tempfile::tempdir().unwrap();
        let empty = open(empty_dir.path(), 16);
        let getters: Vec<_> = (0..3)
            .map(|_| {
                let empty = empty.clone();
                tokio::spawn(async move { empty.get_async().await })
            })
            .collect();
        let mut stream = empty.stream();
        let streamer = tokio::spawn(async move { stream.next().await.is_none() });
        let putter = {
            let queue = queue.clone();
            tokio::spawn(async move { queue.put_async(1).await })
        };
        // Give them all time to wait; whether they do or not, the answer must be the same.
        tokio::time::sleep(Duration::from_millis(20)).await;
        empty.close().unwrap();
        queue.close().unwrap();
        for getter in getters {
            assert!(matches!(getter.await.unwrap(), Err(Error::Closed)));
        }
        assert!(streamer.await.unwrap(), "the stream did not end");
        assert!(matches!(putter.await.unwrap(), Err(Error::Closed)));
    });
}

/// The sink puts what is sent, waits for room, and flushes; closing it leaves the queue open.
#[test]
fn the_sink_puts_in_order_waits_for_room_and_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::<u64>::builder(dir.path()).max_len(8).open().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async {
        let consumer = {
            let queue = queue.clone();
            tokio::spawn(async move {
                let mut stream = queue.stream();
                let mut got = Vec::new();
                while got.len() < 1000 {
                    got.push(stream.next().await.unwrap().unwrap());
                }
                got
            })
        };
        let mut sink = queue.sink();
        for id in 0..1000 {
            sink.send(id).await.unwrap();
        }
        sink.close().await.unwrap();
        assert_eq!(consumer.await.unwrap(), (0..1000).collect::<Vec<_>>());
    });
    // Closing the sink closed nothing else.
    queue.put(5).unwrap();
    assert_eq!(queue.get().unwrap(), 5);
}

/// `get_async` futures dropped at random points (timeouts of zero to a few microseconds) while
/// producers run: every item still comes out exactly once.
#[test]
fn dropped_get_futures_lose_no_item() {
    const N: u64 = 30_000;
    let dir = tempfile::tempdir().unwrap();
    let queue = open(dir.path(), 16);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let (got, cancelled) = runtime.block_on(async {
        for p in 0..2 {
            let queue = queue.clone();
            tokio::spawn(async move {
                for id in (p..N).step_by(2) {
                    queue.put_async(id).await.unwrap();
                    if id % 64 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            });
        }
        let taken = Arc::new(AtomicU64::new(0));
        let consumers: Vec<_> = (0..3u64)
            .map(|c| {
                let (queue, taken) = (queue.clone(), Arc::clone(&taken));
                tokio::spawn(async move {
                    let mut rng = Rng(c + 1);
                    let (mut got, mut cancelled) = (Vec::new(), 0u64);
                    while taken.load(Ordering::SeqCst) < N {
                        let wait = Duration::from_micros(rng.below(4));
                        match tokio::time::timeout(wait, queue.get_async()).await {
                            Ok(id) => {
                                got.push(id.unwrap());
                                taken.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(_) => cancelled += 1,
                        }
                    }
                    (got, cancelled)
                })
            })
            .collect();
        let (mut got, mut cancelled) = (Vec::new(), 0);
        for consumer in consumers {
            let (part, part_cancelled) = consumer.await.unwrap();
            got.extend(part);
            cancelled += part_cancelled;
        }
        (got, cancelled)
    });
    assert!(
        cancelled > 0,
        "no future was dropped: the test tested nothing"
    );
    let mut sorted = got;
    sorted.sort_unstable();
    assert_eq!(sorted, (0..N).collect::<Vec<_>>());
    assert!(queue.is_empty());
}

/// `put_async` futures dropped at random points while they wait for room (`max_len` 4): a
/// dropped put leaves nothing in the queue (each producer puts an id again until a put of it
/// completes, and every id comes out exactly once).
#[test]
fn a_dropped_put_future_leaves_its_item_out_of_the_queue() {
    const N: u64 = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::<u64>::builder(dir.path()).max_len(4).open().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let (got, cancelled) = runtime.block_on(async {
        let producers: Vec<_> = (0..2u64)
            .map(|p| {
                let queue = queue.clone();
                tokio::spawn(async move {
                    let mut rng = Rng(p + 7);
                    let mut cancelled = 0u64;
                    for id in (p..N).step_by(2) {
                        loop {
                            let wait = Duration::from_micros(rng.below(4));
                            match tokio::time::timeout(wait, queue.put_async(id)).await {
                                Ok(put) => break put.unwrap(),
                                Err(_) => cancelled += 1,
                            }
                        }
                    }
                    cancelled
                })
            })
            .collect();
        let mut got = Vec::new();
        while got.len() < N as usize {
            got.push(queue.get_async().await.unwrap());
        }
        let mut cancelled = 0;
        for producer in producers {
            cancelled += producer.await.unwrap();
        }
        (got, cancelled)
    });
    assert!(
        cancelled > 0,
        "no future was dropped: the test tested nothing"
    );
    assert_each_once_in_order(&[got], N, 2);
    assert!(queue.is_empty());
}

/// Under smol's executor, with `EveryPut`: sixteen producer tasks share fsyncs, and every put
/// that returned is durable (read back after a reopen).
#[test]
fn every_put_tasks_under_smol_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::<u64>::builder(dir.path())
        .durability(Durability::EveryPut)
        .open()
        .unwrap();
    let before = queue.stats().fsyncs;
    smol::block_on(async {
        let tasks: Vec<_> = (0..16u64)
            .map(|p| {
                let queue = queue.clone();
                smol::spawn(async move {
                    for i in 0..50 {
                        queue.put_async(p * 1000 + i).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await;
        }
    });
    let fsyncs = queue.stats().fsyncs - before;
    assert!(fsyncs < 800, "{fsyncs} fsyncs for 800 puts: not shared");
    drop(queue);
    let queue = open(dir.path(), 16);
    assert_eq!(queue.len(), 800);
}

/// The child for `a_queue_killed_mid_stream_reopens_with_what_was_synced`: a producer task and a
/// consumer task under tokio, the consumer syncing now and then and printing what the sync
/// covered.
#[test]
#[ignore = "run as a child process by the async tests"]
fn async_child() {
    let Ok(dir) = std::env::var("SPILLQ_ASYNC_DIR") else {
        return;
    };
    let queue = open(std::path::Path::new(&dir), 64);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async {
        let producer = {
            let queue = queue.clone();
            tokio::spawn(async move {
                let mut sink = queue.sink();
                for id in 0.. {
                    sink.send(id).await.unwrap();
                }
            })
        };
        let mut stream = queue.stream();
        let mut last = None;
        for round in 0u64.. {
            for _ in 0..10 {
                last = Some(stream.next().await.unwrap().unwrap());
            }
            if round % 5 == 0 {
                queue.sync_async().await.unwrap();
                let put = queue.stats().next_sequence;
                println!("SYNCED {} {put}", last.unwrap_or(0));
            }
        }
        producer.await.unwrap();
    });
}

/// A queue used from async tasks and killed (SIGKILL) mid-stream: reopened, nothing removed
/// before a sync comes back, and what the sync covered is there, in order.
#[test]
fn a_queue_killed_mid_stream_reopens_with_what_was_synced() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("SPILLQ_ASYNC_DIR", dir.path().display().to_string())];
    let child = spawn_child("async_child", &env);
    let mut synced = None;
    let mut lines = 0;
    read_then_kill(child, |line| {
        if let Some(rest) = line.strip_prefix("SYNCED ") {
            let removed: u64 = rest.split(' ').next().unwrap().parse().unwrap();
            synced = Some(removed);
            lines += 1;
        }
        lines < 20
    });
    let removed = synced.expect("the child synced nothing");
    let queue = open(dir.path(), 64);
    let items: Vec<u64> = queue.try_iter().map(Result::unwrap).collect();
    assert!(!items.is_empty());
    assert!(
        items.iter().all(|&id| id > removed),
        "a removed item came back"
    );
    assert!(
        items.windows(2).all(|w| w[1] == w[0] + 1),
        "a gap or disorder"
    );
    assert_eq!(
        items[0],
        removed + 1,
        "an item after the synced removals was lost"
    );
}
